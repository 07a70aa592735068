-- Step job data and dependencies become JSONB.
-- up
ALTER TABLE "{prefix}workflow_steps"
    ALTER COLUMN job_data TYPE JSONB USING job_data::JSONB,
    ALTER COLUMN dependencies TYPE JSONB USING dependencies::JSONB;
-- down
ALTER TABLE "{prefix}workflow_steps"
    ALTER COLUMN job_data TYPE JSON USING job_data::JSON,
    ALTER COLUMN dependencies TYPE JSON USING dependencies::JSON;
