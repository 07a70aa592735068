//! Workflow rows: push (upsert + NOTIFY), fetch (with step states from the jobs table) and
//! one scheduling step (`process_workflow`), all on a caller's client or transaction.

use crate::unnamed::Unnamed;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{Workflow, WorkflowState, WorkflowStep};
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::events;
use crate::job::{Job, JobState};

/// Validates `workflow` and upserts it with its steps; NOTIFYs `workflow.created` (new
/// row) or `workflow.updated` in the same transaction. Sets `created_at`/`updated_at`.
pub(crate) fn push_in(
    client: &mut impl GenericClient,
    chancy: &Chancy,
    workflow: &mut Workflow,
) -> Result<Uuid> {
    workflow.validate()?;
    persist(client, chancy, workflow)
}

/// Upserts without validation (the scheduler persists legacy empty workflows as failed).
pub(crate) fn persist(
    client: &mut impl GenericClient,
    chancy: &Chancy,
    workflow: &mut Workflow,
) -> Result<Uuid> {
    let ctx = "saving a workflow";
    let prefix = chancy.prefix();
    let row = client
        .query_one_unnamed(
            prefix.render(UPSERT_WORKFLOW).as_str(),
            &[&workflow.id, &workflow.name, &workflow.state.as_str()],
        )
        .map_err(|e| Error::database(ctx, e))?;
    workflow.id = row.get(0);
    workflow.created_at = row.get(1);
    workflow.updated_at = row.get(2);
    let inserted: bool = row.get(3);
    let ids: Vec<&str> = workflow.steps.iter().map(|s| s.step_id.as_str()).collect();
    let jobs: Vec<Value> = workflow.steps.iter().map(|s| s.job.pack()).collect();
    let deps: Vec<Value> = workflow
        .steps
        .iter()
        .map(|s| json!(s.dependencies))
        .collect();
    let job_ids: Vec<Option<Uuid>> = workflow.steps.iter().map(|s| s.job_id).collect();
    client
        .execute_unnamed(
            prefix.render(UPSERT_STEPS).as_str(),
            &[&workflow.id, &ids, &jobs, &deps, &job_ids],
        )
        .map_err(|e| Error::database(ctx, e))?;
    let event = if inserted {
        events::WORKFLOW_CREATED
    } else {
        events::WORKFLOW_UPDATED
    };
    let body = json!({"id": workflow.id.to_string(), "name": workflow.name});
    chancy.notify_in(client, &[(event, body)])?;
    Ok(workflow.id)
}

/// Workflows matching the filters (`None` = any), at most `limit`, ordered by id; steps
/// ordered by step id, each with the state of its job.
pub(crate) fn fetch_in(
    client: &mut impl GenericClient,
    chancy: &Chancy,
    states: Option<&[WorkflowState]>,
    ids: Option<&[Uuid]>,
    limit: i64,
) -> Result<Vec<Workflow>> {
    let states: Option<Vec<&str>> = states.map(|s| s.iter().map(|s| s.as_str()).collect());
    let ids: Option<Vec<Uuid>> = ids.map(<[Uuid]>::to_vec);
    let rows = client
        .query_unnamed(
            chancy.prefix().render(FETCH).as_str(),
            &[&states, &ids, &limit],
        )
        .map_err(|e| Error::database("reading workflows", e))?;
    rows.iter()
        .map(|row| {
            let steps: Value = row.get(5);
            Ok(Workflow {
                id: row.get(0),
                name: row.get(1),
                state: WorkflowState::from_str(row.get(2))?,
                created_at: row.get::<_, Option<DateTime<Utc>>>(3),
                updated_at: row.get::<_, Option<DateTime<Utc>>>(4),
                steps: steps
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(step_from_json)
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

fn step_from_json(v: &Value) -> Result<WorkflowStep> {
    let text = |key: &str| v.get(key).and_then(Value::as_str);
    let step_id =
        text("step_id").ok_or_else(|| Error::invalid_input("a workflow step without step_id"))?;
    let dependencies = v
        .get("dependencies")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(WorkflowStep {
        step_id: step_id.to_string(),
        job: Job::unpack(v.get("job_data").unwrap_or(&Value::Null))?,
        dependencies,
        state: text("state").map(JobState::from_str).transpose()?,
        job_id: text("job_id")
            .map(|s| {
                Uuid::parse_str(s)
                    .map_err(|e| Error::invalid_input(format!("bad step job_id {s:?}: {e}")))
            })
            .transpose()?,
    })
}

/// One scheduling iteration: pushes every step whose dependencies all succeeded (with
/// `meta.workflow_id`), then moves the workflow to running/completed/failed. Returns
/// whether anything changed (the caller writes it back).
pub(crate) fn process_workflow(
    client: &mut impl GenericClient,
    chancy: &Chancy,
    workflow: &mut Workflow,
) -> Result<bool> {
    if workflow.state.is_terminal() {
        return Ok(false);
    }
    let starting = workflow.state;
    let mut changed = false;
    // A step whose job was pushed but no longer exists (deleted, purged or pruned before
    // the workflow finished) can never succeed: it counts as failed, so the workflow fails
    // instead of staying running forever (upstream leaves it running).
    for step in &mut workflow.steps {
        if step.job_id.is_some() && step.state.is_none() {
            log::warn!(
                "workflow {} ({:?}): the job of step {:?} no longer exists; failing the step",
                workflow.id,
                workflow.name,
                step.step_id
            );
            step.state = Some(JobState::Failed);
        }
    }
    for i in 0..workflow.steps.len() {
        let step = &workflow.steps[i];
        if matches!(step.state, Some(JobState::Succeeded | JobState::Failed)) {
            continue;
        }
        let ready = step.dependencies.iter().all(|d| {
            workflow
                .step(d)
                .is_some_and(|s| s.state == Some(JobState::Succeeded))
        });
        if !ready || step.job_id.is_some() {
            continue;
        }
        let mut meta = step.job.meta.as_object().cloned().unwrap_or_default();
        meta.insert("workflow_id".into(), json!(workflow.id.to_string()));
        let job = step.job.clone().meta(Value::Object(meta));
        if let Err(e) = job.validate() {
            // Another client stored it (chancy refuses such steps at push): fail the step,
            // and so the workflow, instead of failing every scheduling pass.
            log::error!(
                "workflow {} step {}: its job cannot be pushed, the step fails: {e}",
                workflow.id,
                crate::job::shown(&step.step_id)
            );
            workflow.steps[i].state = Some(JobState::Failed);
            changed = true;
            continue;
        }
        let reference = chancy.push_in(client, &job)?;
        workflow.steps[i].job_id = Some(reference.0);
        changed = true;
    }
    if workflow.state == WorkflowState::Pending && workflow.steps.iter().any(|s| s.job_id.is_some())
    {
        workflow.state = WorkflowState::Running;
    }
    let count = |state| {
        workflow
            .steps
            .iter()
            .filter(|s| s.state == Some(state))
            .count()
    };
    if !workflow.steps.is_empty() && count(JobState::Succeeded) == workflow.steps.len() {
        workflow.state = WorkflowState::Completed;
    } else if workflow.steps.is_empty() || count(JobState::Failed) > 0 {
        workflow.state = WorkflowState::Failed;
    }
    Ok(changed || starting != workflow.state)
}

/// Loads the (already locked) workflows `ids`, advances each and writes back the changed
/// ones. Returns how many were loaded.
pub(crate) fn process_locked(
    client: &mut impl GenericClient,
    chancy: &Chancy,
    ids: &[Uuid],
) -> Result<Vec<Transition>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut workflows = fetch_in(client, chancy, None, Some(ids), ids.len() as i64)?;
    let mut transitions = Vec::with_capacity(workflows.len());
    for wf in &mut workflows {
        let previous = wf.state;
        let pushed_before = wf.steps.iter().filter(|s| s.job_id.is_some()).count();
        if process_workflow(client, chancy, wf)? {
            if wf.steps.is_empty() {
                persist(client, chancy, wf)?;
            } else {
                push_in(client, chancy, wf)?;
            }
        }
        let pushed = wf.steps.iter().filter(|s| s.job_id.is_some()).count();
        transitions.push(Transition {
            name: wf.name.clone(),
            previous,
            state: wf.state,
            queued: pushed.saturating_sub(pushed_before),
            seconds: match (wf.created_at, wf.updated_at) {
                (Some(c), Some(u)) => Some((u - c).num_milliseconds() as f64 / 1000.0),
                _ => None,
            },
        });
    }
    Ok(transitions)
}

/// What one scheduling pass did to one workflow, for the scheduler's metrics (published
/// only after the pass's transaction commits, as upstream's `_record_transitions`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transition {
    pub(crate) name: String,
    pub(crate) previous: WorkflowState,
    pub(crate) state: WorkflowState,
    /// Steps pushed as jobs in this pass.
    pub(crate) queued: usize,
    /// `updated_at - created_at` in seconds, when both are known.
    pub(crate) seconds: Option<f64>,
}

const UPSERT_WORKFLOW: &str = r#"
INSERT INTO "{prefix}workflows" (id, name, state, created_at, updated_at)
VALUES ($1, $2, $3, NOW(), NOW())
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, state = EXCLUDED.state, updated_at = NOW()
RETURNING id, created_at, updated_at, (xmax = 0) AS inserted"#;

const UPSERT_STEPS: &str = r#"
INSERT INTO "{prefix}workflow_steps" (workflow_id, step_id, job_data, dependencies, job_id)
SELECT $1, s.step_id, s.job_data, s.dependencies, s.job_id
FROM unnest($2::text[], $3::jsonb[], $4::jsonb[], $5::uuid[])
     WITH ORDINALITY AS s(step_id, job_data, dependencies, job_id, n)
ORDER BY s.n
ON CONFLICT (workflow_id, step_id) DO UPDATE
SET job_data = EXCLUDED.job_data,
    dependencies = EXCLUDED.dependencies,
    job_id = EXCLUDED.job_id,
    updated_at = NOW()"#;

const FETCH: &str = r#"
SELECT w.id, w.name, w.state, w.created_at, w.updated_at,
       COALESCE(json_agg(
           json_build_object(
               'step_id', ws.step_id,
               'job_data', ws.job_data,
               'dependencies', ws.dependencies,
               'state', j.state,
               'job_id', ws.job_id
           ) ORDER BY ws.step_id
       ) FILTER (WHERE ws.step_id IS NOT NULL), '[]'::json)::jsonb AS steps
FROM "{prefix}workflows" w
LEFT JOIN "{prefix}workflow_steps" ws ON w.id = ws.workflow_id
LEFT JOIN "{prefix}jobs" j ON ws.job_id = j.id
WHERE ($1::text[] IS NULL OR w.state = ANY($1::text[]))
  AND ($2::uuid[] IS NULL OR w.id = ANY($2::uuid[]))
GROUP BY w.id, w.name, w.state
ORDER BY w.id
LIMIT $3"#;
