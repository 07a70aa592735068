-- Metrics v2: definitions plus chunked per-session buckets. Old metrics are erased.
-- up
DROP TABLE "{prefix}metrics";
CREATE TABLE "{prefix}metric_definitions" (
    id BIGSERIAL PRIMARY KEY,
    key TEXT COLLATE "C" NOT NULL UNIQUE,
    metric_type TEXT NOT NULL CHECK (metric_type IN ('counter', 'gauge', 'histogram')),
    unit TEXT NOT NULL
);
CREATE TABLE "{prefix}metrics" (
    metric_id BIGINT NOT NULL REFERENCES "{prefix}metric_definitions"(id) ON DELETE RESTRICT,
    resolution INTEGER NOT NULL,
    chunk TIMESTAMPTZ NOT NULL,
    session_id UUID NOT NULL,
    worker_id TEXT NOT NULL,
    buckets TIMESTAMPTZ[] NOT NULL,
    counts BIGINT[],
    totals DOUBLE PRECISION[],
    minimums DOUBLE PRECISION[],
    maximums DOUBLE PRECISION[],
    gauges DOUBLE PRECISION[],
    sampled_at TIMESTAMPTZ[] NOT NULL,
    PRIMARY KEY (metric_id, resolution, chunk, session_id)
);
CREATE INDEX "{prefix}metrics_expiry_idx" ON "{prefix}metrics" (resolution, chunk);
-- down
DROP TABLE "{prefix}metrics";
DROP TABLE "{prefix}metric_definitions";
CREATE TABLE IF NOT EXISTS "{prefix}metrics" (
    metric_key VARCHAR(255) NOT NULL,
    resolution VARCHAR(10) NOT NULL,
    worker_id VARCHAR(255) NOT NULL,
    timestamps TIMESTAMPTZ[] NOT NULL,
    values JSONB[] NOT NULL,
    metric_type VARCHAR(20) NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (metric_key, resolution, worker_id)
);
CREATE INDEX IF NOT EXISTS "{prefix}metrics_updated_idx" ON "{prefix}metrics" (updated_at);
