-- Indexes for listing by queue/state and for fetching and pruning.
-- up
CREATE INDEX IF NOT EXISTS "{prefix}idx_jobs_queue_state" ON "{prefix}jobs" (queue, state);
CREATE INDEX IF NOT EXISTS "{prefix}idx_jobs_fetch_prune" ON "{prefix}jobs"
    (queue, state, attempts, scheduled_at, priority DESC, id DESC)
    WHERE state IN ('pending', 'retrying');
-- down
DROP INDEX IF EXISTS "{prefix}idx_jobs_queue_state";
DROP INDEX IF EXISTS "{prefix}idx_jobs_fetch_prune";
