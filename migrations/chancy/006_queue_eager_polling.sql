-- Queues can ask to be polled again as soon as one of their jobs finishes.
-- up
ALTER TABLE "{prefix}queues" ADD COLUMN IF NOT EXISTS eager_polling BOOLEAN NOT NULL DEFAULT FALSE;
-- down
ALTER TABLE "{prefix}queues" DROP COLUMN IF EXISTS eager_polling;
