-- The first metrics layout (one row per key, resolution and worker); replaced by 002.
-- up
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
-- down
DROP TABLE IF EXISTS "{prefix}metrics";
