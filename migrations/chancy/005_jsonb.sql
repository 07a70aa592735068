-- JSON columns become JSONB (their defaults keep the original json literals).
-- up
ALTER TABLE "{prefix}jobs"
    ALTER COLUMN kwargs TYPE JSONB USING kwargs::JSONB,
    ALTER COLUMN limits TYPE JSONB USING limits::JSONB,
    ALTER COLUMN meta TYPE JSONB USING meta::JSONB,
    ALTER COLUMN errors TYPE JSONB USING errors::JSONB;
ALTER TABLE "{prefix}queues"
    ALTER COLUMN executor_options TYPE JSONB USING
        CASE WHEN executor_options IS NULL THEN NULL ELSE executor_options::JSONB END;
-- down
ALTER TABLE "{prefix}jobs"
    ALTER COLUMN kwargs TYPE JSON USING kwargs::JSON,
    ALTER COLUMN limits TYPE JSON USING limits::JSON,
    ALTER COLUMN meta TYPE JSON USING meta::JSON,
    ALTER COLUMN errors TYPE JSON USING errors::JSON;
ALTER TABLE "{prefix}queues"
    ALTER COLUMN executor_options TYPE JSON USING
        CASE WHEN executor_options IS NULL THEN NULL ELSE executor_options::JSON END;
