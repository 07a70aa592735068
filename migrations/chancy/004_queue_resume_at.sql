-- Paused queues can resume by themselves at resume_at.
-- up
ALTER TABLE "{prefix}queues" ADD COLUMN resume_at TIMESTAMP WITH TIME ZONE;
-- down
ALTER TABLE "{prefix}queues" DROP COLUMN resume_at;
