-- Core tables: jobs, leader lease, workers, rate-limit windows, queues.
-- up
CREATE TABLE "{prefix}jobs" (
    id UUID PRIMARY KEY,
    queue TEXT NOT NULL,
    func TEXT NOT NULL,
    kwargs JSON NOT NULL DEFAULT '{}',
    limits JSON NOT NULL DEFAULT '[]',
    meta JSON NOT NULL DEFAULT '{}',
    state VARCHAR (25) NOT NULL DEFAULT 'pending',
    priority INTEGER DEFAULT 0,
    attempts INTEGER DEFAULT 0,
    max_attempts INTEGER DEFAULT 1,
    taken_by TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    scheduled_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    unique_key TEXT,
    errors JSON NOT NULL DEFAULT '[]'
);
-- At most one non-finished job per unique_key: the de-duplication mechanism.
CREATE UNIQUE INDEX "{prefix}jobs_unique_key" ON "{prefix}jobs" (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed');
CREATE UNLOGGED TABLE "{prefix}leader" (
    id BIGSERIAL PRIMARY KEY,
    worker_id TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE "{prefix}leader"
    ADD CONSTRAINT "{prefix}leader_worker_id_unique" UNIQUE (worker_id);
CREATE UNLOGGED TABLE "{prefix}workers" (
    worker_id TEXT NOT NULL PRIMARY KEY,
    tags TEXT[],
    queues TEXT[],
    last_seen TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE UNLOGGED TABLE "{prefix}queue_rate_limits" (
    queue VARCHAR(255) PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE "{prefix}queues" (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'active',
    concurrency INTEGER DEFAULT 1,
    tags TEXT[],
    executor TEXT NOT NULL DEFAULT 'chancy.executors.process.ProcessExecutor',
    executor_options JSON,
    polling_interval INTEGER DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    rate_limit INTEGER,
    rate_limit_window INTEGER
);
-- down
DROP TABLE IF EXISTS "{prefix}jobs";
DROP TABLE IF EXISTS "{prefix}leader";
DROP TABLE IF EXISTS "{prefix}workers";
DROP TABLE IF EXISTS "{prefix}queues";
DROP TABLE IF EXISTS "{prefix}queue_rate_limits";
