-- Cron schedules, one per unique_key.
-- up
CREATE TABLE "{prefix}cron" (
    unique_key TEXT PRIMARY KEY,
    job JSON NOT NULL,
    cron TEXT NOT NULL,
    last_run TIMESTAMPTZ,
    next_run TIMESTAMPTZ NOT NULL
);
-- down
DROP TABLE "{prefix}cron";
