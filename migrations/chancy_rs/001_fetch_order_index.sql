-- Rust-only (Python ignores this key): an index that serves the claim's
-- ORDER BY priority DESC, id ASC directly, so a claim reads only the rows it takes instead
-- of sorting the whole backlog of the queue. Python workers use it too.
-- up
CREATE INDEX IF NOT EXISTS "{prefix}jobs_fetch_order" ON "{prefix}jobs" (queue, priority DESC, id)
    WHERE state IN ('pending', 'retrying');
-- down
DROP INDEX IF EXISTS "{prefix}jobs_fetch_order";
