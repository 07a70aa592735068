//! Workflows: DAGs of jobs (Python's `chancy.workflow_plugin`, migration key `workflow`).
//!
//! A workflow and its steps live in `<prefix>workflows` / `<prefix>workflow_steps`; a
//! step's state is the state of the job it pushed. The leader's scheduler pushes each step
//! once its dependencies succeeded and moves the workflow through pending → running →
//! completed/failed. It reacts at once to `workflow.created` and
//! `workflow.step_completed` (sent by every worker's writer transaction, Python's or
//! ours) and sweeps all active workflows every `polling_interval` as a safety net.

mod model;
mod store;

use crate::unnamed::Unnamed;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::GenericClient;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::in_transaction;
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::events;
use crate::job::{JobState, QueuedJob};
use crate::migrate::{embed_migrations, Migrations};
use crate::worker::plugin::{Plugin, PluginContext};
use crate::worker::{Flag, HandlerId, Hub};

pub use model::{Sequence, Workflow, WorkflowState, WorkflowStep};
use store::Transition;

/// The workflow plugin's tables (key `workflow`, versions 1..=3 as in Python Chancy 0.26.0).
pub const WORKFLOW_MIGRATIONS: Migrations = Migrations::new(
    "workflow",
    embed_migrations!("workflow": "001_initial", "002_jsonb", "003_active_index"),
);
/// Default for [`WorkflowPlugin::polling_interval`]: 30 s, as upstream.
pub const DEFAULT_WORKFLOW_POLLING_INTERVAL: Duration = Duration::from_secs(30);
/// Default for [`WorkflowPlugin::max_workflows_per_run`]: 1000, as upstream.
pub const DEFAULT_MAX_WORKFLOWS_PER_RUN: usize = 1000;
/// Default for [`WorkflowPlugin::max_pending_workflows`]: 10000, as upstream.
pub const DEFAULT_MAX_PENDING_WORKFLOWS: usize = 10_000;
/// Default for [`WorkflowPlugin::pruning_age`]: one day, as upstream.
pub const DEFAULT_WORKFLOW_PRUNING_AGE: Duration = Duration::from_secs(86_400);
/// How often [`WorkflowPlugin::wait_for_workflow`] looks at the row.
pub const DEFAULT_WORKFLOW_WAIT_INTERVAL: Duration = Duration::from_millis(200);
/// The service loop's longest sleep: the sweep deadline is checked at least this often.
const TICK: Duration = Duration::from_secs(1);

/// The workflow plugin (`chancy.workflow_plugin`, depends on `chancy.leadership`).
///
/// ```no_run
/// use chancy::{Chancy, Job};
/// use chancy::plugins::{Workflow, WorkflowPlugin};
///
/// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
/// let wf = Workflow::new("report")
///     .add("fetch", Job::new("app.fetch"), &[])
///     .add("render", Job::new("app.render"), &["fetch"]);
/// let id = WorkflowPlugin::push(&chancy, &wf)?;
/// let done = WorkflowPlugin::wait_for_workflow(&chancy, id, std::time::Duration::from_secs(60))?;
/// println!("{}: {}", done.name, done.state);
/// # Ok::<(), chancy::Error>(())
/// ```
pub struct WorkflowPlugin {
    polling_interval: Duration,
    max_workflows_per_run: usize,
    max_pending_workflows: usize,
    pruning_age: Duration,
    scheduler: Arc<Scheduler>,
}

/// State shared by the service pass and the hub handlers.
#[derive(Default)]
struct Scheduler {
    wake: Arc<Flag>,
    pending: Mutex<Pending>,
    sweep: Mutex<Sweep>,
    handlers: Mutex<Vec<(Hub, HandlerId)>>,
}

/// Workflow ids hinted by events, insertion-ordered and de-duplicated.
#[derive(Default)]
struct Pending {
    order: VecDeque<Uuid>,
    set: HashSet<Uuid>,
}

/// Progress of the periodic sweep over active workflows.
#[derive(Default)]
struct Sweep {
    after: Option<Uuid>,
    until: Option<Uuid>,
    next_poll: Option<Instant>,
}

impl Default for WorkflowPlugin {
    fn default() -> Self {
        WorkflowPlugin {
            polling_interval: DEFAULT_WORKFLOW_POLLING_INTERVAL,
            max_workflows_per_run: DEFAULT_MAX_WORKFLOWS_PER_RUN,
            max_pending_workflows: DEFAULT_MAX_PENDING_WORKFLOWS,
            pruning_age: DEFAULT_WORKFLOW_PRUNING_AGE,
            scheduler: Arc::default(),
        }
    }
}

impl WorkflowPlugin {
    /// A workflow plugin with upstream's defaults.
    pub fn new() -> WorkflowPlugin {
        WorkflowPlugin::default()
    }

    /// How often every active workflow is re-examined, besides the event-driven
    /// processing (default 30 s; the first sweep is one interval after start).
    pub fn polling_interval(mut self, interval: Duration) -> Self {
        self.polling_interval = interval;
        self
    }

    /// Workflows per transaction, for sweeps and hint batches (default 1000).
    pub fn max_workflows_per_run(mut self, n: usize) -> Self {
        self.max_workflows_per_run = n.max(1);
        self
    }

    /// Distinct hinted workflows kept waiting; further hints rely on the sweep (default
    /// 10000).
    pub fn max_pending_workflows(mut self, n: usize) -> Self {
        self.max_pending_workflows = n;
        self
    }

    /// The pruner's [`cleanup`](Plugin::cleanup) deletes finished workflows created longer
    /// ago than this (default one day, upstream's `Age() > 86400` rule).
    pub fn pruning_age(mut self, age: Duration) -> Self {
        self.pruning_age = age;
        self
    }

    /// Validates and saves `workflow` in its own transaction; returns its id.
    ///
    /// # Errors
    /// An invalid-input error for an empty workflow, an unknown dependency, a cycle or a
    /// step whose job [`Job::validate`](crate::Job::validate) refuses (nothing written); a
    /// database error otherwise.
    pub fn push(chancy: &Chancy, workflow: &Workflow) -> Result<Uuid> {
        workflow.validate_jobs()?;
        let mut wf = workflow.clone();
        in_transaction(chancy, "pushing a workflow", |tx| {
            store::push_in(tx, chancy, &mut wf)
        })
    }

    /// [`WorkflowPlugin::push`] inside the caller's transaction; also sets the workflow's
    /// `created_at`/`updated_at`. Sends `workflow.created` (or `workflow.updated` for an
    /// existing id) with the transaction.
    ///
    /// # Errors
    /// As [`WorkflowPlugin::push`].
    pub fn push_in(
        client: &mut impl GenericClient,
        chancy: &Chancy,
        workflow: &mut Workflow,
    ) -> Result<Uuid> {
        workflow.validate_jobs()?;
        store::push_in(client, chancy, workflow)
    }

    /// The workflow `id` with its steps, or `None`.
    ///
    /// # Errors
    /// A database error.
    pub fn fetch_workflow(chancy: &Chancy, id: Uuid) -> Result<Option<Workflow>> {
        Ok(Self::fetch_workflows(chancy, None, Some(&[id]), 1)?.pop())
    }

    /// Workflows in any of `states` and among `ids` (`None` = no filter), at most `limit`
    /// (upstream's default is 100), ordered by id.
    ///
    /// # Errors
    /// A database error.
    pub fn fetch_workflows(
        chancy: &Chancy,
        states: Option<&[WorkflowState]>,
        ids: Option<&[Uuid]>,
        limit: i64,
    ) -> Result<Vec<Workflow>> {
        let mut conn = chancy.connection()?;
        store::fetch_in(&mut conn.client, chancy, states, ids, limit)
    }

    /// Waits until workflow `id` is completed or failed and returns it.
    ///
    /// # Errors
    /// A not-found error if it does not exist, a timeout error after `timeout`.
    pub fn wait_for_workflow(chancy: &Chancy, id: Uuid, timeout: Duration) -> Result<Workflow> {
        Self::wait_for_workflow_with(chancy, id, DEFAULT_WORKFLOW_WAIT_INTERVAL, timeout)
    }

    /// [`WorkflowPlugin::wait_for_workflow`] looking every `interval`.
    ///
    /// # Errors
    /// As [`WorkflowPlugin::wait_for_workflow`].
    pub fn wait_for_workflow_with(
        chancy: &Chancy,
        id: Uuid,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Workflow> {
        let deadline = crate::duration::deadline(Instant::now(), timeout);
        loop {
            let wf = Self::fetch_workflow(chancy, id)?
                .ok_or_else(|| Error::not_found(format!("Workflow {id} not found")))?;
            if wf.is_complete() {
                return Ok(wf);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::timeout(format!(
                    "workflow {id} did not finish within {timeout:?} (state {})",
                    wf.state
                )));
            }
            std::thread::sleep(interval.min(deadline - now));
        }
    }

    /// One scheduling iteration of `workflow` on the caller's transaction: pushes every
    /// step whose dependencies all succeeded (with `meta.workflow_id`) and updates the
    /// state. Returns whether anything changed; the caller saves it with
    /// [`WorkflowPlugin::push_in`].
    ///
    /// # Errors
    /// A database error, or an invalid step job.
    pub fn process_workflow(
        client: &mut impl GenericClient,
        chancy: &Chancy,
        workflow: &mut Workflow,
    ) -> Result<bool> {
        store::process_workflow(client, chancy, workflow)
    }

    /// Queues a hinted workflow id and wakes the service (no database work here).
    fn hint_into(scheduler: &Scheduler, max: usize, body: &Value) {
        let id = body
            .get("workflow_id")
            .or_else(|| body.get("id"))
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        let Some(id) = id else { return };
        let mut pending = scheduler.pending.lock();
        if pending.set.len() < max && pending.set.insert(id) {
            pending.order.push_back(id);
        }
        drop(pending);
        scheduler.wake.set();
    }

    /// Processes one batch of hinted workflows (locked with SKIP LOCKED; the sweep picks
    /// up any that were locked elsewhere). Returns whether hints remain, and what the batch
    /// did.
    fn process_pending(&self, chancy: &Chancy) -> Result<(bool, Vec<Transition>)> {
        let ids: Vec<Uuid> = {
            let mut pending = self.scheduler.pending.lock();
            let n = pending.order.len().min(self.max_workflows_per_run);
            let ids: Vec<Uuid> = pending.order.drain(..n).collect();
            ids.iter().for_each(|id| {
                pending.set.remove(id);
            });
            ids
        };
        if ids.is_empty() {
            return Ok((false, Vec::new()));
        }
        let sql = chancy.prefix().render(LOCK_HINTED);
        let transitions = in_transaction(chancy, "processing workflows", |tx| {
            let rows = tx
                .query_unnamed(sql.as_str(), &[&ids])
                .map_err(|e| Error::database("locking workflows", e))?;
            let locked: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
            store::process_locked(tx, chancy, &locked)
        })?;
        Ok((!self.scheduler.pending.lock().order.is_empty(), transitions))
    }

    /// One batch of the sweep over active workflows, continuing where the last one
    /// stopped, up to the highest active id seen when the sweep began. Returns what the batch
    /// did.
    fn poll(&self, chancy: &Chancy) -> Result<Vec<Transition>> {
        let prefix = chancy.prefix();
        let (bound_sql, batch_sql) = (prefix.render(SWEEP_BOUND), prefix.render(SWEEP_BATCH));
        let limit = self.max_workflows_per_run as i64;
        let (mut after, mut until) = {
            let s = self.scheduler.sweep.lock();
            (s.after, s.until)
        };
        in_transaction(chancy, "sweeping workflows", |tx| {
            let mut ids: Vec<Uuid> = Vec::new();
            for _ in 0..2 {
                if until.is_none() {
                    let row = tx
                        .query_opt_unnamed(bound_sql.as_str(), &[])
                        .map_err(|e| Error::database("sweeping workflows", e))?;
                    match row {
                        Some(r) => until = Some(r.get(0)),
                        None => {
                            self.set_sweep(None, None);
                            return Ok(Vec::new());
                        }
                    }
                }
                ids = tx
                    .query_unnamed(batch_sql.as_str(), &[&until, &after, &limit])
                    .map_err(|e| Error::database("sweeping workflows", e))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if !ids.is_empty() {
                    break;
                }
                if after.is_none() {
                    self.set_sweep(None, None);
                    return Ok(Vec::new());
                }
                (after, until) = (None, None);
            }
            let transitions = store::process_locked(tx, chancy, &ids)?;
            let last = ids.last().copied();
            if ids.len() < self.max_workflows_per_run || last == until {
                self.set_sweep(None, None);
            } else {
                self.set_sweep(last, until);
            }
            Ok(transitions)
        })
    }

    fn set_sweep(&self, after: Option<Uuid>, until: Option<Uuid>) {
        let mut s = self.scheduler.sweep.lock();
        s.after = after;
        s.until = until;
    }

    /// The leader's pass: the sweep when due, then every hinted workflow. Each batch's
    /// metrics are published after its transaction commits.
    fn schedule(&self, ctx: &PluginContext) -> Result<()> {
        let chancy = ctx.chancy();
        let now = Instant::now();
        let due = {
            let mut s = self.scheduler.sweep.lock();
            let next = *s
                .next_poll
                .get_or_insert(crate::duration::deadline(now, self.polling_interval));
            if now >= next {
                s.next_poll = Some(crate::duration::deadline(now, self.polling_interval));
            }
            now >= next
        };
        if due {
            ctx.increment_counter("workflows:poll_runs", 1.0, "count");
            record_transitions(ctx, &self.poll(chancy)?);
        }
        loop {
            let (more, transitions) = self.process_pending(chancy)?;
            record_transitions(ctx, &transitions);
            if !more {
                return Ok(());
            }
        }
    }
}

/// The scheduler's metrics for one committed batch, with upstream's keys (unit `count`
/// unless noted): `workflows:steps:queued` (steps pushed as jobs), and for each workflow
/// whose state changed `workflows:state:<state>` and `workflow:<name>:<label>` (label
/// `started` for `running`, else the state), plus, when it completed or failed, the
/// histograms `workflows:execution_time` and `workflow:<name>:execution_time` (seconds from
/// creation to its last update).
fn record_transitions(ctx: &PluginContext, transitions: &[Transition]) {
    for t in transitions {
        if t.queued > 0 {
            ctx.increment_counter("workflows:steps:queued", t.queued as f64, "count");
        }
        if t.previous == t.state {
            continue;
        }
        let state = t.state.as_str();
        ctx.increment_counter(&format!("workflows:state:{state}"), 1.0, "count");
        let label = if t.state == WorkflowState::Running {
            "started"
        } else {
            state
        };
        ctx.increment_counter(&format!("workflow:{}:{label}", t.name), 1.0, "count");
        if matches!(t.state, WorkflowState::Completed | WorkflowState::Failed) {
            if let Some(seconds) = t.seconds {
                for key in [
                    "workflows:execution_time".to_string(),
                    format!("workflow:{}:execution_time", t.name),
                ] {
                    ctx.record_histogram_value(&key, seconds, "seconds");
                }
            }
        }
    }
}

impl Plugin for WorkflowPlugin {
    fn identifier(&self) -> &'static str {
        "chancy.workflow_plugin"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["chancy.leadership"]
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&WORKFLOW_MIGRATIONS)
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["workflows", "workflow_steps"]
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.polling_interval.min(TICK))
    }

    fn wake(&self) -> Option<Arc<Flag>> {
        Some(Arc::clone(&self.scheduler.wake))
    }

    fn on_worker_started(&self, ctx: &PluginContext) -> Result<()> {
        self.scheduler.sweep.lock().next_poll = Some(crate::duration::deadline(
            Instant::now(),
            self.polling_interval,
        ));
        let hub = ctx.hub();
        for event in [events::WORKFLOW_CREATED, events::WORKFLOW_STEP_COMPLETED] {
            let scheduler = Arc::clone(&self.scheduler);
            let max = self.max_pending_workflows;
            let id = hub.on(event, move |e| Self::hint_into(&scheduler, max, &e.body));
            self.scheduler.handlers.lock().push((hub.clone(), id));
        }
        Ok(())
    }

    fn on_worker_stopped(&self, _ctx: &PluginContext) {
        for (hub, id) in self.scheduler.handlers.lock().drain(..) {
            hub.remove(id);
        }
    }

    /// Only the leader schedules workflows.
    fn leader_only(&self) -> bool {
        true
    }

    /// Not leading: hints are dropped, as upstream's handler does.
    fn on_pass_skipped(&self, _ctx: &PluginContext) {
        let mut pending = self.scheduler.pending.lock();
        pending.order.clear();
        pending.set.clear();
    }

    fn run_once(&self, ctx: &PluginContext) -> Result<()> {
        self.schedule(ctx).inspect_err(|_| {
            // The commit may be uncertain and hints were consumed: restart the sweep now
            // (after the loop's backoff).
            let mut s = self.scheduler.sweep.lock();
            (s.after, s.until, s.next_poll) = (None, None, Some(Instant::now()));
        })
    }

    fn on_jobs_updated_in_transaction(
        &self,
        chancy: &Chancy,
        jobs: &[&QueuedJob],
        tx: &mut postgres::Transaction<'_>,
    ) -> Result<()> {
        let mut seen: Vec<&Value> = Vec::new();
        for job in jobs {
            if !matches!(job.state, JobState::Succeeded | JobState::Failed) {
                continue;
            }
            if let Some(id) = job.meta.get("workflow_id").filter(|v| is_truthy(v)) {
                if !seen.contains(&id) {
                    seen.push(id);
                }
            }
        }
        let notes: Vec<(&str, Value)> = seen
            .into_iter()
            .map(|id| {
                (
                    events::WORKFLOW_STEP_COMPLETED,
                    json!({ "workflow_id": id }),
                )
            })
            .collect();
        chancy.notify_in(tx, &notes)
    }

    fn cleanup(&self, chancy: &Chancy) -> Result<Option<u64>> {
        let sql = chancy.prefix().render(CLEANUP);
        let mut conn = chancy.connection()?;
        let n = conn
            .client
            .execute_unnamed(sql.as_str(), &[&self.pruning_age.as_secs_f64()])
            .map_err(|e| Error::database("pruning workflows", e))?;
        Ok(Some(n))
    }
}

/// Python truthiness of a JSON value (`meta.get("workflow_id")` must be truthy).
fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl std::fmt::Debug for WorkflowPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowPlugin")
            .field("polling_interval", &self.polling_interval)
            .field("max_workflows_per_run", &self.max_workflows_per_run)
            .field("max_pending_workflows", &self.max_pending_workflows)
            .field("pruning_age", &self.pruning_age)
            .finish()
    }
}

const LOCK_HINTED: &str = r#"
SELECT id FROM "{prefix}workflows"
WHERE id = ANY($1::uuid[]) AND state IN ('pending', 'running')
ORDER BY id
FOR UPDATE SKIP LOCKED"#;

const SWEEP_BOUND: &str = r#"
SELECT id FROM "{prefix}workflows"
WHERE state IN ('pending', 'running')
ORDER BY id DESC LIMIT 1"#;

const SWEEP_BATCH: &str = r#"
SELECT id FROM "{prefix}workflows" w
WHERE w.state IN ('pending', 'running')
  AND w.id <= $1::uuid
  AND ($2::uuid IS NULL OR w.id > $2::uuid)
ORDER BY w.id
LIMIT $3
FOR UPDATE SKIP LOCKED"#;

const CLEANUP: &str = r#"
DELETE FROM "{prefix}workflows"
WHERE state NOT IN ('pending', 'running')
  AND EXTRACT(EPOCH FROM (NOW() - created_at)) > $1::float8"#;
