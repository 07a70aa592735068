-- Each schedule is evaluated in an IANA time zone; existing ones keep UTC.
-- up
ALTER TABLE "{prefix}cron" ADD COLUMN timezone TEXT NOT NULL DEFAULT 'Etc/UTC';
-- down
ALTER TABLE "{prefix}cron" DROP COLUMN timezone;
