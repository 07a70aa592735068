//! Prometheus metrics, `/health` and `/ready` for operators. Not in upstream.
//!
//! [`Prometheus`] is a plugin: add it to the [`Chancy`] a worker uses and it counts outcomes
//! from the writer's after-commit hook ([`Plugin::on_jobs_updated`], off the executors' hot
//! path); gauges (jobs running, writer backlog, pool use, leadership) are read from the
//! worker at scrape time; queue depth by state is one bounded query per scrape, cached for
//! 5 s (a 2 s statement timeout, at most 10,000 series). [`MetricsServer`] serves it on its own small listener
//! (`chancy worker start --metrics-addr`); `chancy web` serves `/metrics` too.
//!
//! The text is the OpenMetrics flavour of the Prometheus exposition format (what the
//! `prometheus-client` crate writes; Prometheus scrapes it natively):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `chancy_jobs_total` | counter | `queue`, `func`, `outcome` = `succeeded` / `failed` / `retried` |
//! | `chancy_job_execution_seconds` | histogram | `queue` (started → outcome) |
//! | `chancy_job_claim_wait_seconds` | histogram | `queue` (due → claimed: `scheduled_at` → `started_at`) |
//! | `chancy_worker_jobs_running` | gauge | — (claimed jobs executing now) |
//! | `chancy_worker_writer_backlog` | gauge | — (outcomes waiting to be written) |
//! | `chancy_worker_is_leader` | gauge | — (1 on the leader) |
//! | `chancy_worker_info` | gauge (1) | `worker_id`, `version` |
//! | `chancy_pool_connections` | gauge | `state` = `open` / `idle` / `max` |
//! | `chancy_queue_jobs` | gauge | `queue`, `state` (from the jobs table) |
//! | `chancy_database_up` | gauge | — (1 when the last depth query succeeded) |
//!
//! ```no_run
//! use chancy::prometheus::{MetricsServer, Prometheus};
//! use chancy::{Chancy, Worker};
//!
//! let chancy = Chancy::builder("postgresql://postgres@localhost/postgres")
//!     .plugin(Prometheus::new())
//!     .build()?;
//! let worker = Worker::builder(&chancy).build()?;
//! let server = MetricsServer::start("127.0.0.1:9464", &chancy)?;
//! worker.start()?;
//! println!("metrics at http://{}/metrics", server.local_addr());
//! worker.wait_for_shutdown();
//! # Ok::<(), chancy::Error>(())
//! ```

mod server;

use crate::unnamed::Unnamed;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::{JobState, QueuedJob};
use crate::worker::plugin::{Plugin, PluginContext};

pub use server::MetricsServer;
#[allow(unused_imports)]
pub(crate) use server::{MAX_CONNECTIONS, MAX_REQUEST_HEAD, READ_TIMEOUT};

/// The identifier of [`Prometheus`].
pub const PROMETHEUS: &str = "chancy.prometheus";
/// The `func` label of jobs whose name breaks the push rule (see [`crate::Job::validate`]).
pub(crate) const INVALID_FUNC_LABEL: &str = "<invalid>";
/// How long one queue-depth reading is reused by later scrapes.
pub(crate) const DEPTH_CACHE: Duration = Duration::from_secs(5);
/// The queue-depth query's `statement_timeout`.
pub(crate) const DEPTH_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many (queue, state) series from the depth query.
pub(crate) const MAX_DEPTH_SERIES: i64 = 10_000;
/// The `Content-Type` of [`Prometheus::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// The metrics of one process (see the module docs): a plugin (identifier
/// `chancy.prometheus`) that a [`MetricsServer`] and `chancy web` find among the plugins of
/// the [`Chancy`] it was added to ([`of`]).
pub struct Prometheus {
    registry: Registry,
    jobs: Family<Labels, Counter>,
    execution: Family<Labels, Histogram>,
    claim_wait: Family<Labels, Histogram>,
    running: Gauge,
    backlog: Gauge,
    leader: Gauge,
    info: Family<Labels, Gauge>,
    pool: Family<Labels, Gauge>,
    depth: Family<Labels, Gauge>,
    database_up: Gauge,
    /// The worker this plugin serves, set by `on_worker_started`, cleared at stop.
    worker: Mutex<WorkerSlot>,
    /// When `depth` was last refreshed; [`Prometheus::render`] holds it for the whole
    /// scrape, so scrapes run one at a time.
    depth_read_at: Mutex<Option<Instant>>,
    /// Whether `/ready` waits for a worker ([`Prometheus::for_worker`]).
    expect_worker: bool,
}

enum WorkerSlot {
    None,
    Running(PluginContext),
    Stopped,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").finish_non_exhaustive()
    }
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus::new()
    }
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Prometheus {
    /// An exporter with every metric registered and no values yet.
    pub fn new() -> Prometheus {
        let mut registry = Registry::with_prefix("chancy");
        let jobs = Family::<Labels, Counter>::default();
        let execution =
            Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        let claim_wait =
            Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        let (running, backlog, leader, database_up) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        let (info, pool, depth) = (
            Family::<Labels, Gauge>::default(),
            Family::<Labels, Gauge>::default(),
            Family::<Labels, Gauge>::default(),
        );
        registry.register(
            "jobs",
            "Job attempts whose outcome this worker wrote, by queue, func and outcome",
            jobs.clone(),
        );
        registry.register(
            "job_execution_seconds",
            "Seconds from a job's start to its outcome",
            execution.clone(),
        );
        registry.register(
            "job_claim_wait_seconds",
            "Seconds from when a job was due (scheduled_at) until a worker claimed it",
            claim_wait.clone(),
        );
        registry.register(
            "worker_jobs_running",
            "Claimed jobs executing on this worker now",
            running.clone(),
        );
        registry.register(
            "worker_writer_backlog",
            "Job outcomes waiting to be written by this worker",
            backlog.clone(),
        );
        registry.register(
            "worker_is_leader",
            "1 when this worker holds the leadership",
            leader.clone(),
        );
        registry.register(
            "worker_info",
            "Always 1; labels name the worker",
            info.clone(),
        );
        registry.register(
            "pool_connections",
            "Connections of this process's pool: open, idle and the maximum",
            pool.clone(),
        );
        registry.register(
            "queue_jobs",
            "Jobs in the jobs table by queue and state (read at most every 5 s)",
            depth.clone(),
        );
        registry.register(
            "database_up",
            "1 when the last queue-depth query succeeded",
            database_up.clone(),
        );
        Prometheus {
            registry,
            jobs,
            execution,
            claim_wait,
            running,
            backlog,
            leader,
            info,
            pool,
            depth,
            database_up,
            worker: Mutex::new(WorkerSlot::None),
            depth_read_at: Mutex::new(None),
            expect_worker: false,
        }
    }

    /// Like [`Prometheus::new`], for a process that runs a worker: [`Prometheus::ready`]
    /// also requires that the worker has started and is not stopping.
    pub fn for_worker() -> Prometheus {
        Prometheus {
            expect_worker: true,
            ..Prometheus::new()
        }
    }

    /// The current metrics as OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    /// Reads the worker's gauges and, when the cached reading is older than 5 s, the queue
    /// depth from `chancy`.
    pub fn render(&self, chancy: &Chancy) -> String {
        // One scrape at a time: a concurrent refresh must not clear the depth series while
        // this one encodes them.
        let mut read_at = self.depth_read_at.lock();
        self.refresh_gauges(chancy);
        self.refresh_depth(chancy, &mut read_at);
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            log::error!("prometheus: encoding the metrics failed");
        }
        text
    }

    fn refresh_gauges(&self, chancy: &Chancy) {
        let (open, idle, max) = chancy.pool_use();
        for (state, n) in [("open", open), ("idle", idle), ("max", max)] {
            self.pool
                .get_or_create(&vec![("state".into(), state.into())])
                .set(i64::from(n));
        }
        if let WorkerSlot::Running(worker) = &*self.worker.lock() {
            self.running.set(worker.running_jobs() as i64);
            self.backlog.set(worker.pending_updates() as i64);
            self.leader.set(i64::from(worker.is_leader()));
        } else {
            self.running.set(0);
            self.backlog.set(0);
            self.leader.set(0);
        }
    }

    fn refresh_depth(&self, chancy: &Chancy, read_at: &mut Option<Instant>) {
        if read_at.is_some_and(|at| at.elapsed() < DEPTH_CACHE) {
            return;
        }
        *read_at = Some(Instant::now());
        match queue_depth(chancy) {
            Ok(rows) => {
                self.depth.clear();
                for (queue, state, n) in rows {
                    self.depth
                        .get_or_create(&vec![("queue".into(), queue), ("state".into(), state)])
                        .set(n);
                }
                self.database_up.set(1);
            }
            Err(e) => {
                log::warn!("prometheus: reading the queue depth failed: {e}");
                self.database_up.set(0);
            }
        }
    }

    /// `Ok` when this process is ready for work: the database answers, the schema is
    /// migrated, no worker using this plugin is stopping or stopped, and (for
    /// [`Prometheus::for_worker`]) the worker has started.
    /// Otherwise the reason.
    ///
    /// # Errors
    /// The reason it is not ready, one sentence.
    pub fn ready(&self, chancy: &Chancy) -> std::result::Result<(), String> {
        match &*self.worker.lock() {
            WorkerSlot::Running(w) if w.shutdown_event().is_set() => {
                return Err("the worker is shutting down".into())
            }
            WorkerSlot::Stopped => return Err("the worker has stopped".into()),
            WorkerSlot::None if self.expect_worker => {
                return Err("the worker has not started yet".into())
            }
            _ => {}
        }
        match chancy.is_up_to_date() {
            Ok(true) => Ok(()),
            Ok(false) => Err("the schema needs migrating (`chancy migrate`)".into()),
            Err(e) => Err(format!("database not ready: {e}")),
        }
    }

    fn record(&self, job: &QueuedJob) {
        let outcome = match job.state {
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Retrying => "retried",
            _ => return,
        };
        // A func outside the push rule (a row another client wrote: control characters, or
        // megabytes) would break the exposition format or bloat every scrape: one label
        // stands for all of them (the job itself failed with a ValueError naming it).
        let func = match crate::job::validate_func(&job.func) {
            Ok(()) => job.func.clone(),
            Err(_) => INVALID_FUNC_LABEL.to_string(),
        };
        self.jobs
            .get_or_create(&vec![
                ("queue".into(), job.queue.clone()),
                ("func".into(), func),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        let queue = vec![("queue".to_string(), job.queue.clone())];
        if let Some(started) = job.started_at {
            let ended = job.completed_at.unwrap_or_else(Utc::now);
            let seconds = (ended - started).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.execution
                .get_or_create(&queue)
                .observe(seconds.max(0.0));
            let waited = (started - job.scheduled_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.claim_wait
                .get_or_create(&queue)
                .observe(waited.max(0.0));
        }
    }
}

impl Plugin for Prometheus {
    fn identifier(&self) -> &'static str {
        PROMETHEUS
    }

    fn on_worker_started(&self, ctx: &PluginContext) -> Result<()> {
        self.info.clear();
        self.info
            .get_or_create(&vec![
                ("worker_id".into(), ctx.worker_id().to_string()),
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
            ])
            .set(1);
        *self.worker.lock() = WorkerSlot::Running(ctx.clone());
        Ok(())
    }

    fn on_worker_stopped(&self, _ctx: &PluginContext) {
        *self.worker.lock() = WorkerSlot::Stopped;
    }

    fn on_jobs_updated(&self, jobs: &[&QueuedJob]) {
        for job in jobs {
            self.record(job);
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// The exporter configured on `chancy`, if any.
pub fn of(chancy: &Chancy) -> Option<&Prometheus> {
    chancy
        .plugins()
        .iter()
        .find_map(|p| p.as_any()?.downcast_ref::<Prometheus>())
}

/// `(queue, state, count)` from the jobs table: one statement under a
/// [`DEPTH_QUERY_TIMEOUT`] and at most [`MAX_DEPTH_SERIES`] rows.
fn queue_depth(chancy: &Chancy) -> Result<Vec<(String, String, i64)>> {
    let sql = format!(
        "SELECT queue, state, count(*) FROM {} GROUP BY queue, state ORDER BY 1, 2 LIMIT $1",
        chancy.prefix().table("jobs")
    );
    crate::app::in_transaction(chancy, "reading the queue depth", |tx| {
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            DEPTH_QUERY_TIMEOUT.as_millis()
        ))
        .map_err(|e| Error::database("setting the statement timeout", e))?;
        let rows = tx
            .query_unnamed(sql.as_str(), &[&MAX_DEPTH_SERIES])
            .map_err(|e| Error::database("reading the queue depth", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_func_no_push_accepts_is_counted_under_one_label() {
        let p = Prometheus::new();
        let mut job = QueuedJob::claimed_for_test("ok.func");
        job.state = JobState::Failed;
        p.record(&job);
        for odd in ["a\n# forged 1".to_string(), "x".repeat(1 << 16)] {
            job.func = odd;
            p.record(&job);
        }
        let mut text = String::new();
        encode(&mut text, &p.registry).unwrap();
        let jobs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("chancy_jobs_total"))
            .collect();
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert!(jobs
            .iter()
            .any(|l| l.contains("func=\"ok.func\"") && l.ends_with(" 1")));
        assert!(jobs
            .iter()
            .any(|l| l.contains("func=\"<invalid>\"") && l.ends_with(" 2")));
        assert!(!text.contains("forged"), "{text}");
    }
}
