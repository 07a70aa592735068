-- max_attempts becomes NOT NULL with default 1 (the Job default).
-- up
UPDATE "{prefix}jobs" SET max_attempts = 1 WHERE max_attempts IS NULL;
ALTER TABLE "{prefix}jobs"
    ALTER COLUMN max_attempts SET NOT NULL,
    ALTER COLUMN max_attempts SET DEFAULT 1;
-- down
ALTER TABLE "{prefix}jobs"
    ALTER COLUMN max_attempts DROP NOT NULL,
    ALTER COLUMN max_attempts DROP DEFAULT;
