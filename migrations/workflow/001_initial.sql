-- Workflows and their steps (a step's state is its job's state).
-- up
CREATE TABLE "{prefix}workflows" (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE TABLE "{prefix}workflow_steps" (
    id SERIAL PRIMARY KEY,
    workflow_id UUID REFERENCES "{prefix}workflows"(id) ON DELETE CASCADE,
    step_id TEXT NOT NULL,
    job_data JSON NOT NULL,
    dependencies JSON NOT NULL,
    job_id UUID,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX "{prefix}workflow_steps_workflow_id_idx" ON "{prefix}workflow_steps" (workflow_id);
CREATE INDEX "{prefix}workflows_state_idx" ON "{prefix}workflows" (state);
CREATE UNIQUE INDEX "{prefix}workflows_steps_unique_idx" ON "{prefix}workflow_steps" (workflow_id, step_id);
-- down
DROP TABLE IF EXISTS "{prefix}workflow_steps";
DROP TABLE IF EXISTS "{prefix}workflows";
