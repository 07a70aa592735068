-- Serves the scheduler's sweep over active workflows.
-- up
CREATE INDEX "{prefix}workflows_active_id_idx" ON "{prefix}workflows" (id)
    WHERE state IN ('pending', 'running');
-- down
DROP INDEX "{prefix}workflows_active_id_idx";
