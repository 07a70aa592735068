-- The packed job becomes JSONB.
-- up
ALTER TABLE "{prefix}cron" ALTER COLUMN job TYPE JSONB USING job::JSONB;
-- down
ALTER TABLE "{prefix}cron" ALTER COLUMN job TYPE JSON USING job::JSON;
