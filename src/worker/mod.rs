//! The worker: threads that claim jobs, run them and write their outcomes back.
//!
//! ```text
//!  listener     own connection, LISTEN <prefix>events, reconnects ─► Hub (events)
//!  heartbeat    announce_worker every heartbeat_poll_interval
//!  queues       on queue.* events or every queue_change_poll_interval: start/retune/stop
//!               one runner per queue whose tags match the worker's tags
//!  fetch(-1)    two fetch threads for every queue: visit a queue when woken (NOTIFY, freed
//!               slots, reconnect) or due (polling_interval) and claim exactly its free
//!               slots on a connection borrowed from the pool ─► the queue's
//!               exec-<q> threads (started on demand up to its concurrency, retired idle)
//!  writer       batches outcomes into one fenced UPDATE per batch, retries, flushes at stop,
//!               publishes each committed batch (eager queues and plugins subscribe)
//!  plugin-<id>  each plugin with an interval
//!  cancellations  only without a listener: every cancellation_poll_interval, read the
//!               claims of the running jobs; a claim taken away stops its execution
//! ```
//!
//! A claimed job carries a guard from the fetch to the writer's commit (`claims.rs`); the
//! worker's life is one state (`lifecycle.rs`). Services get their own dependencies, not the
//! whole worker: `WriterDeps`, `ListenerDeps`, `HeartbeatDeps`, `MaintenanceDeps` (queue
//! maintenance), `QueueDeps` (the fetch scheduler and the queue runners) made of `FetchDeps`
//! (claiming) and `ExecDeps` (executor threads). `QueueDeps` is built once in
//! `WorkerBuilder::build` (the worker's API reads its runners map and executions); the
//! others in `spawn_services`. [`WorkerShared`] keeps the worker's own state and handles.
//!
//! **Lock order** (never take an earlier one while holding a later one): `runners` →
//! a runner's `visit` (only `try_lock`) → its `desired`. `claims`, `lifecycle`,
//! `executions`, `tag_matches`, identity's set of ids held in this process, the hub's handler
//! list and the writer's subscriber list are leaves (the hub and the writer call their
//! handlers with no lock held).

mod backoff;
mod cancellations;
mod child;
mod claims;
mod config;
mod connections;
mod context;
mod executions;
mod executor;
mod fetch;
mod fetch_conn;
mod heartbeat;
mod horizon;
mod hub;
mod identity;
mod lifecycle;
mod listener;
mod manager;
mod panics;
pub(crate) mod plugin;
mod process;
mod queues;
mod runner;
mod scheduler;
mod slots;
mod tooling;
mod writer;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::pool::Conn;
use crate::queue::{Queue, PROCESS_EXECUTOR};

pub use crate::sync::Flag;
pub use child::{run_child_if_requested, CHILD_ENV};
#[allow(unused_imports)]
pub(crate) use config::{
    DEFAULT_CANCELLATION_POLL_INTERVAL, DEFAULT_HEARTBEAT_POLL_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_QUEUE_CHANGE_POLL_INTERVAL, DEFAULT_SEND_OUTGOING_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT,
};
pub use context::{Handler, JobContext, JobError, JobErrorKind, Registry};
#[allow(unused_imports)]
pub(crate) use horizon::DEFAULT_HORIZON_CHECK_INTERVAL;
pub use horizon::HORIZON_HELD_BACK;
pub use hub::{Event, HandlerId, Hub};
#[cfg(feature = "cli")]
pub(crate) use identity::SESSION_TAG_PREFIX;
pub use identity::WORKER_PING;
pub use listener::LISTENER_RECONNECTED;
pub use manager::{Manager, ServiceInfo, ServiceState, SERVICE_PASSED};
pub use plugin::{check_dependencies, Plugin, PluginContext};
#[allow(unused_imports)]
pub(crate) use process::DEFAULT_MAXIMUM_JOBS_PER_CHILD;
pub use runner::{QUEUE_FULL, QUEUE_POLLED, QUEUE_REMOVED, QUEUE_STARTED, QUEUE_UPDATED};
pub use tooling::WorkerTooling;
pub use writer::Outgoing;

thread_local! {
    /// Set on every thread the worker starts (services, fetchers, executors, child readers):
    /// a stop called there would wait for its own thread.
    static WORKER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts a named thread of the worker, marked as one ([`on_worker_thread`]). Threads that
/// run a stop (signal, drop, identity lost) use [`crate::sync::spawn_named`] instead.
pub(crate) fn spawn_named<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    crate::sync::spawn_named(name, move || {
        WORKER_THREAD.with(|w| w.set(true));
        f()
    })
}

/// Whether this thread is one a worker started: a hub handler, plugin hook or job handler
/// runs on one.
pub(crate) fn on_worker_thread() -> bool {
    WORKER_THREAD.with(std::cell::Cell::get)
}
use crate::sync::Shutdown;
pub(crate) use backoff::random_fraction;
use config::WorkerConfig;
use executions::Executions;
#[cfg(feature = "cli")]
pub(crate) use fetch::claim_settings_sql;
use manager::LoopSpec;
use runner::STOP_POLL;

/// Local hub event: the worker started.
pub const WORKER_STARTED: &str = "worker.started";
/// The service of a worker without a listener that reads its running jobs' claims.
const CANCELLATIONS_SERVICE: &str = "cancellations";
/// Local hub event: the worker stopped cleanly.
pub const WORKER_STOPPED: &str = "worker.stopped";
/// Local hub event: the worker stopped, but running jobs outlived `shutdown_timeout`.
pub const WORKER_SHUTDOWN_TIMEOUT: &str = "worker.shutdown_timeout";

/// The worker's own state and the handles its API and lifecycle use; the fetch scheduler,
/// the queue runners and executor threads get [`runner::QueueDeps`] (built here once, in
/// `WorkerBuilder::build`), the other services their own deps struct (built in
/// `spawn_services`). Fields are set at build and never replaced unless noted; each handle
/// holds its own lock (see the lock order above).
pub(crate) struct WorkerShared {
    /// The client: plugins, SQL, pool. Read-only.
    pub(crate) chancy: Chancy,
    /// The builder's settings. Read-only.
    pub(crate) config: WorkerConfig,
    pub(crate) worker_id: String,
    /// Local events (its handler list is a leaf lock; handlers run with no lock held).
    pub(crate) hub: Hub,
    /// Set once by the stop (or a signal); every loop waits on it.
    pub(crate) shutdown: Arc<Shutdown>,
    /// Written by the leadership plugin, read by leader-only services.
    pub(crate) is_leader: Flag,
    pub(crate) manager: Manager,
    /// The writer's queue: executor threads and the fetch push outcomes, the writer drains.
    pub(crate) outgoing: Arc<Outgoing>,
    /// The writer publishes every committed batch here; eager queues and plugins subscribe.
    pub(crate) committed: Arc<writer::Committed>,
    /// What the fetch scheduler, queue runners and executor threads use: the runners map
    /// (first in the lock order), the fetch wake-up, the registry and running executions.
    pub(crate) queues: Arc<runner::QueueDeps>,
    /// Wakes the queues loop (a `queue.*` event, listener reconnect).
    pub(crate) queues_wake: Arc<Flag>,
    /// Wakes the heartbeat loop (a `worker.ping` for this id).
    pub(crate) heartbeat_wake: Arc<Flag>,
    /// Claims fetched by this worker whose outcome is not yet written, held by guards that
    /// travel with the jobs: anything else this worker holds as `running` in the database is
    /// an orphan (see `claims.rs`, `heartbeat`).
    pub(crate) claims: Arc<claims::Claims>,
    /// Built → Starting → Running → Stopping → Stopped (see `lifecycle.rs`); the fetch reads
    /// it too (`FetchDeps::lifecycle`), hence the `Arc`.
    pub(crate) lifecycle: Arc<lifecycle::Lifecycle>,
    /// SIGINT/SIGTERM seen (the signal thread): the first stops, the second exits.
    signals: AtomicUsize,
}

impl WorkerShared {
    /// Who this worker process is: id, tags and `chancy.session=<uuid>` (new for every worker
    /// built: written into the worker row and checked by every statement that acts as this
    /// worker id, see `identity.rs`).
    pub(crate) fn me(&self) -> &heartbeat::Identity {
        &self.queues.fetch.me
    }

    /// The served queues by name (first in the lock order).
    pub(crate) fn runners(&self) -> &runner::Runners {
        &self.queues.runners
    }

    /// Running executions by job id.
    pub(crate) fn executions(&self) -> &Executions {
        &self.queues.exec.executions
    }

    /// For the log when jobs are abandoned (shutdown timeout, forced exit): how they come
    /// back.
    pub(crate) fn how_abandoned_jobs_come_back(&self) -> String {
        let wait = self.config.heartbeat_timeout.as_secs_f64();
        let by = if self.chancy.has_plugin(plugin::RECOVERY) {
            "the leader's recovery plugin"
        } else {
            "a leader running the recovery plugin (not configured in this process)"
        };
        format!(
            "they stay `running` until {by} puts them back to `pending`, once this worker \
             ({}) has not heartbeated for heartbeat_timeout ({wait:.0} s); the lost attempt \
             does not count against max_attempts",
            self.worker_id
        )
    }

    pub(crate) fn plugins(&self) -> &[Arc<dyn Plugin>] {
        self.chancy.plugins()
    }

    pub(crate) fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .runners()
            .lock()
            .iter()
            .filter(|(_, r)| !r.removed.load(Ordering::SeqCst))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    pub(crate) fn wake_all_queues(&self) {
        for runner in self.runners().lock().values() {
            runner.wake.set();
        }
    }

    /// Eager queues poll again once outcomes are committed, so a job just put back to
    /// `retrying` is claimable at that poll.
    pub(crate) fn wake_eager_queues(&self, batch: &[QueuedJob]) {
        let queues: BTreeSet<&str> = batch
            .iter()
            .filter(|j| j.state == crate::job::JobState::Retrying)
            .map(|j| j.queue.as_str())
            .collect();
        if queues.is_empty() {
            return;
        }
        let runners = self.runners().lock();
        for name in queues {
            if let Some(r) = runners.get(name).filter(|r| r.desired.lock().eager_polling) {
                r.wake.set();
            }
        }
    }
}

/// Configures a [`Worker`]. Created by [`Worker::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct WorkerBuilder {
    chancy: Chancy,
    worker_id: Option<String>,
    tags: BTreeSet<String>,
    config: WorkerConfig,
    registry: Registry,
}

impl WorkerBuilder {
    /// The worker's id (default: a random UUID).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Extra tags, matched by queue tag regexes.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// How often the worker announces itself (default 5 s; upstream 30 s).
    pub fn heartbeat_poll_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat_poll_interval = d;
        self
    }

    /// How long the worker's row lives without a heartbeat (default 20 s; upstream 90 s).
    /// Recovery treats the jobs of a worker silent for longer as abandoned, and a process
    /// restarted under the same worker id after a crash waits at most this long.
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.config.heartbeat_timeout = d;
        self
    }

    /// How often the queues table is re-read even without `queue.*` events (default 10 s).
    pub fn queue_change_poll_interval(mut self, d: Duration) -> Self {
        self.config.queue_change_poll_interval = d;
        self
    }

    /// How often a worker that does not `LISTEN` (transaction pooling, or notifications
    /// off) reads the claims of the jobs it is running, to learn that one was cancelled or
    /// recovered (default 1 s; must be positive). One statement per pass, only while jobs
    /// run. A cancelled job's handler sees [`JobContext::is_cancelled`] within about one
    /// interval instead of at once, with the same outcome as with NOTIFY (the row stays
    /// `failed`; the run's own outcome is fenced out). Upstream 0.26.0 has no such poll: its
    /// workers learn of cancellations only by NOTIFY. Unused by a listening worker.
    pub fn cancellation_poll_interval(mut self, d: Duration) -> Self {
        self.config.cancellation_poll_interval = d;
        self
    }

    /// On the leader, every `interval` (default 30 s), look for sessions whose transaction
    /// has held a snapshot for longer than `warn_after` (default 60 s, see
    /// [`Chancy::held_back_horizons`]) and warn about each (log and the
    /// [`HORIZON_HELD_BACK`] hub event). Not in upstream.
    pub fn horizon_check(mut self, interval: Duration, warn_after: Duration) -> Self {
        self.config.horizon_check_interval = interval;
        self.config.horizon_warn_after = warn_after;
        self
    }

    /// How long [`Worker::stop`] waits for running jobs (default 30 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// The writer's batching window after the first outcome of a batch (default 5 ms).
    pub fn send_outgoing_interval(mut self, d: Duration) -> Self {
        self.config.send_outgoing_interval = d;
        self
    }

    /// Whether the worker's claim and outcome transactions wait for their WAL flush (default
    /// `true`, PostgreSQL's default). `false` sets `synchronous_commit = off` on the fetcher
    /// and writer connections only: a commit returns before the WAL reaches disk, which saves
    /// a flush wait per claim and per outcome batch. Nothing is weaker than at-least-once: if
    /// the *database server* crashes, its last fraction of a second of these commits may be
    /// lost — a lost claim leaves the job claimable again (it may run twice), a lost outcome
    /// leaves the job `running` until recovery puts it back (it runs again). Pushes, queue
    /// changes and your own transactions are not affected.
    ///
    /// ```
    /// # fn main() -> chancy::Result<()> {
    /// let chancy = chancy::Chancy::builder("postgresql://localhost/postgres").build()?;
    /// let worker = chancy::Worker::builder(&chancy)
    ///     .synchronous_commit(false)
    ///     .build()?;
    /// assert!(!worker.synchronous_commit());
    /// # Ok(())
    /// # }
    /// ```
    pub fn synchronous_commit(mut self, on: bool) -> Self {
        self.config.synchronous_commit = on;
        self
    }

    /// Install SIGINT/SIGTERM handlers: the first signal stops gracefully, the second exits
    /// at once (default off for library use; the CLI turns it on).
    pub fn register_signal_handlers(mut self, on: bool) -> Self {
        self.config.register_signal_handlers = on;
        self
    }

    /// Install a process-wide panic hook at [`Worker::start`] (once per process; it calls
    /// the hook that was set before for every panic outside a job) so that a panicking
    /// handler's error text includes the panic's source location and the panic is not also
    /// printed to stderr. Default off: a panic in a handler is still caught and fails the
    /// attempt with the panic's message, and your process's panic hook reports it as for
    /// any thread. The CLI turns it on. (Process-executor children always capture it.)
    pub fn panic_hook(mut self, on: bool) -> Self {
        self.config.panic_hook = on;
        self
    }

    /// First and largest delay of the retry backoff of every worker loop (defaults 1 s, 60 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// The program started as the child process of process-executor queues. Default: the
    /// running program, but only if it called [`run_child_if_requested`] (first thing in
    /// `main`); otherwise those queues run on threads. Setting a path is an opt-in too: the
    /// program must call [`run_child_if_requested`] first thing, or it is killed when it does
    /// not answer within 10 s and the job's attempt fails.
    pub fn process_executable(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.process_executable = Some(path.into());
        self
    }

    /// Registers a job handler under `func`.
    pub fn job<F>(mut self, func: impl Into<String>, handler: F) -> Self
    where
        F: Fn(&JobContext) -> std::result::Result<(), JobError> + Send + Sync + 'static,
    {
        self.registry.insert(func, handler);
        self
    }

    /// Adds every handler of `registry`.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = self.registry.merge(registry);
        self
    }

    /// Validates the settings and the names of the registered handlers (the rule of
    /// [`Job::validate`](crate::Job::validate) for `func`).
    ///
    /// # Errors
    /// A configuration error naming the bad setting or handler name.
    pub fn build(self) -> Result<Worker> {
        self.config.validate()?;
        // A handler whose name no push accepts would never run: say so now.
        for name in self.registry.names() {
            crate::job::validate_func(name).map_err(|e| {
                Error::config(format!(
                    "handler registered under a name no job can have: {e}"
                ))
            })?;
        }
        let worker_id = self.worker_id.unwrap_or_else(|| Uuid::new_v4().to_string());
        if worker_id.is_empty() {
            return Err(Error::config("worker_id must not be empty"));
        }
        let tags = config::worker_tags(&worker_id, &self.tags);
        let me = heartbeat::Identity {
            chancy: self.chancy.clone(),
            worker_id: worker_id.clone(),
            session_tag: identity::session_tag(&Uuid::new_v4()),
            tags,
            heartbeat_timeout: self.config.heartbeat_timeout,
        };
        let shutdown = Arc::new(Shutdown::default());
        let hub = Hub::default();
        let outgoing: Arc<Outgoing> = Arc::default();
        let claims: Arc<claims::Claims> = Arc::default();
        let lifecycle: Arc<lifecycle::Lifecycle> = Arc::default();
        let exec = Arc::new(executor::ExecDeps {
            chancy: self.chancy.clone(),
            worker_id: worker_id.clone(),
            registry: self.registry,
            executions: Executions::default(),
            outgoing: Arc::clone(&outgoing),
        });
        let queues = Arc::new(runner::QueueDeps {
            fetch: fetch::FetchDeps {
                me: me.clone(),
                lifecycle: Arc::clone(&lifecycle),
                synchronous_commit: self.config.synchronous_commit,
                claims: Arc::clone(&claims),
                outgoing: Arc::clone(&outgoing),
                connections: Arc::new(connections::Connections::new(self.chancy.clone())),
            },
            exec,
            hub: hub.clone(),
            shutdown: Arc::clone(&shutdown),
            fetch_wake: Arc::new(fetch_conn::FetchWake::new(scheduler::DEFAULT_FETCH_THREADS)),
            runners: Arc::default(),
            children: child::ChildProgram::new(self.config.process_executable.clone()),
            backoff: (self.config.backoff_initial, self.config.backoff_max),
        });
        let mut worker = Worker {
            shared: Arc::new(WorkerShared {
                chancy: self.chancy,
                config: self.config,
                worker_id,
                hub,
                shutdown,
                is_leader: Flag::new(),
                manager: Manager::default(),
                outgoing,
                committed: Arc::default(),
                queues,
                queues_wake: Arc::new(Flag::new()),
                heartbeat_wake: Arc::new(Flag::new()),
                claims,
                lifecycle,
                signals: AtomicUsize::new(0),
            }),
            _owner: None,
        };
        worker._owner = Some(lifecycle::Owner::new(&worker.shared));
        Ok(worker)
    }
}

/// A worker process's engine: claims jobs from the queues it serves, runs them on thread
/// pools and records their outcomes. Cheap to clone (shared inside).
///
/// **Lifecycle.** [`start`](Worker::start) returns at once; the worker runs until
/// [`stop`](Worker::stop), a signal (with
/// [`register_signal_handlers`](WorkerBuilder::register_signal_handlers)), or until the
/// last `Worker` handle your code holds is dropped: that drop stops it gracefully, as `stop`
/// does (bounded by `shutdown_timeout`), and waits for it — except when the last handle is
/// dropped on one of the worker's own threads (e.g. inside a job handler), where the stop
/// runs on a new thread instead. The clones the worker's threads and plugins hold do not
/// keep it running. Keep a handle for as long as the worker should run (`wait_for_shutdown`
/// blocks on one).
///
/// ```no_run
/// use chancy::{Chancy, JobContext, JobError, Worker};
/// #[derive(serde::Deserialize)]
/// struct Greet { name: String }
///
/// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
/// let worker = Worker::builder(&chancy)
///     .job("myapp.greet", |ctx: &JobContext| -> Result<(), JobError> {
///         let args: Greet = ctx.kwargs()?;
///         ctx.set_meta("greeted", serde_json::json!(args.name));
///         Ok(())
///     })
///     .build()?;
/// worker.start()?;
/// worker.wait_for_shutdown();
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Clone)]
pub struct Worker {
    shared: Arc<WorkerShared>,
    /// Set in the handles given to the application (and their clones), `None` in the handles
    /// the worker's own threads and plugins hold: the worker stops when the last `Owner`
    /// is dropped.
    _owner: Option<Arc<lifecycle::Owner>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.shared.worker_id)
            .finish()
    }
}

impl Worker {
    /// Starts configuring a worker for `chancy`.
    pub fn builder(chancy: &Chancy) -> WorkerBuilder {
        WorkerBuilder {
            chancy: chancy.clone(),
            worker_id: None,
            tags: BTreeSet::new(),
            config: WorkerConfig::default(),
            registry: Registry::new(),
        }
    }

    /// Starts every thread and returns. Refuses to start when the schema needs migrating
    /// or a plugin's dependency is missing, and when the first LISTEN connection fails.
    /// Declares the `default` queue (like upstream) if it does not exist.
    ///
    /// One worker id is served by one live process. Before anything else, `start` takes the
    /// id's `<prefix>workers` row. If another process's row for the id is still live (its
    /// last heartbeat plus its `heartbeat_timeout` is in the future, by the database's
    /// clock), `start` asks that process to heartbeat and watches the row: a fresh heartbeat
    /// means the id is in use and `start` fails; the row expiring means that process died
    /// (a crash, SIGKILL) and this worker takes over. So a restart after a crash waits at
    /// most `heartbeat_timeout` after the dead process's last heartbeat; after a clean stop
    /// (which deletes the row) it starts at once.
    ///
    /// A [`stop`](Worker::stop) (or, with
    /// [`register_signal_handlers`](WorkerBuilder::register_signal_handlers), a SIGINT/SIGTERM:
    /// the handlers are installed first thing) that arrives while `start` runs is graceful:
    /// before the plugins and services started, `start` gives up (freeing the id if it took
    /// it) and returns `Ok` with the worker stopped; after, the start completes and the stop
    /// then stops it. A worker starts once: a stopped worker is not started again.
    ///
    /// # Errors
    /// A migrations-needed, configuration or connection error; nothing keeps running then.
    /// A configuration error naming the id and how long ago its row was seen when another
    /// live process runs under this worker id, and when the worker was started or stopped
    /// before.
    pub fn start(&self) -> Result<()> {
        let s = &self.shared;
        s.lifecycle.begin_start()?;
        let result = self.start_inner();
        if let Ok(Started::Yes) = result {
            s.lifecycle.started();
            return Ok(());
        }
        s.shutdown.trigger();
        s.outgoing.close();
        s.manager.join_all(&[]);
        // Frees the id if this start had taken it (a no-op on another process's row).
        identity::release(s);
        s.lifecycle.stopped(true);
        match result {
            Err(err) => Err(err),
            Ok(_) => {
                s.hub.emit(WORKER_STOPPED, json!({ "worker": s.worker_id }));
                log::info!("worker {} stopped while starting", s.worker_id);
                Ok(())
            }
        }
    }

    /// The start's steps; `Started::Interrupted` when a stop arrived before the plugins and
    /// services started (the start's checkpoints), so nothing of this worker runs.
    fn start_inner(&self) -> Result<Started> {
        let s = &self.shared;
        // First, so a SIGTERM during the rest of the start (which may wait for the worker
        // id, see `identity.rs`) stops the worker gracefully instead of killing the process;
        // and before any service or queue thread: under a thread limit the queues' executor
        // threads may take every thread left, and the handler needs one of its own.
        if s.config.register_signal_handlers {
            crate::signals::install(&self.shared)?;
        }
        let interrupted = || s.shutdown.is_triggered();
        // Start fails here, with the server's message, when the least a worker needs (one
        // pooled connection and the listener's, at the same time) cannot be had.
        let no_pool = |e: Error| {
            if e.is_unavailable() {
                self.budget_error("a connection from the application pool", &e)
            } else {
                e
            }
        };
        s.chancy.ensure_migrated().map_err(no_pool)?;
        check_dependencies(s.chancy.plugins())?;
        if interrupted() {
            return Ok(Started::Interrupted);
        }
        identity::claim(s).map_err(no_pool)?;
        if interrupted() {
            return Ok(Started::Interrupted);
        }
        self.register_hub_handlers();
        if s.config.panic_hook {
            panics::install_hook();
        }
        let ctx = PluginContext::new(s);
        for plugin in s.plugins() {
            plugin.on_worker_started(&ctx)?;
        }
        // Held while the listener connects: both at once is the least a worker needs.
        let pooled = s.chancy.connection().map_err(no_pool)?;
        let listener_conn = if s.chancy.listens() {
            let conn = listener::connect(&s.chancy)
                .map_err(|e| self.budget_error("the listener connection", &e))?;
            Some(conn)
        } else {
            None
        };
        drop(pooled);
        log::info!(
            "worker {}: connection budget {} (application pool {}{})",
            s.worker_id,
            self.connection_budget(),
            s.chancy.max_pool_size(),
            if s.chancy.listens() {
                " + listener 1"
            } else {
                ""
            }
        );
        self.spawn_services(listener_conn)?;
        s.chancy
            .declare(&Queue::new("default").executor(PROCESS_EXECUTOR))?;
        s.hub.emit(WORKER_STARTED, json!({ "worker": s.worker_id }));
        log::info!("worker {} started", s.worker_id);
        Ok(Started::Yes)
    }

    /// What the worker's parts do on each other's events: hub events (NOTIFYs and local
    /// ones) and the writer's committed batches.
    fn register_hub_handlers(&self) {
        let s = &self.shared;
        // Plugins, then eager queues: they poll again once outcomes are committed, so a job
        // just put back to `retrying` is claimable at that poll.
        for plugin in s.plugins() {
            let plugin = Arc::clone(plugin);
            let name = format!("plugin {}'s on_jobs_updated", plugin.identifier());
            s.committed
                .subscribe(name, move |b| plugin.on_jobs_updated(&b.accepted));
        }
        let weak = Arc::downgrade(s);
        s.committed.subscribe("the eager-queue wake-up", move |b| {
            if let Some(s) = weak.upgrade() {
                s.wake_eager_queues(b.jobs);
            }
        });
        // NOTIFYs may have been missed while the listener was away: every queue looks, and
        // the claims of the running jobs are read once (a cancel sent in the gap is found).
        let weak = Arc::downgrade(s);
        s.hub.on(LISTENER_RECONNECTED, move |_| {
            if let Some(s) = weak.upgrade() {
                s.wake_all_queues();
                if let Err(e) = cancellations::poll(&s) {
                    log::warn!(
                        "worker {}: reading running jobs' claims after the listener \
                         reconnected failed (a cancel sent meanwhile takes effect at the \
                         job's outcome): {e}",
                        s.worker_id
                    );
                }
            }
        });
        let weak = Arc::downgrade(s);
        s.hub.on(crate::events::QUEUE_PUSHED, move |e| {
            let Some(s) = weak.upgrade() else { return };
            if let Some(q) = e.body.get("q").and_then(Value::as_str) {
                if let Some(r) = s.runners().lock().get(q) {
                    r.wake.set();
                }
            }
        });
        for event in [
            crate::events::QUEUE_DECLARED,
            crate::events::QUEUE_PAUSED,
            crate::events::QUEUE_RESUMED,
        ] {
            let wake = Arc::clone(&s.queues_wake);
            s.hub.on(event, move |_| wake.set());
        }
        let weak = Arc::downgrade(s);
        s.hub.on(crate::events::JOB_CANCELLED, move |e| {
            let (Some(s), Some(id)) = (weak.upgrade(), uuid_field(&e.body, "j")) else {
                return;
            };
            let n = s.executions().cancel_job(id);
            log::info!("job {id} was cancelled ({n} running execution(s) told to stop)");
        });
        let (wake, me) = (Arc::clone(&s.heartbeat_wake), s.worker_id.clone());
        s.hub.on(WORKER_PING, move |e| {
            if e.body.get("worker_id").and_then(Value::as_str) == Some(me.as_str()) {
                wake.set();
            }
        });
        let weak = Arc::downgrade(s);
        s.hub.on(crate::events::JOB_RECOVERED, move |e| {
            let Some(s) = weak.upgrade() else { return };
            if let (Some(id), Some(claim)) = (uuid_field(&e.body, "j"), uuid_field(&e.body, "c")) {
                s.executions().cancel_execution(id, claim);
            }
        });
    }

    /// The most PostgreSQL connections this worker opens, whatever its number of queues:
    /// the application pool's `max_connection_pool_size` (shared by the fetch scheduler, the
    /// writer, the heartbeat, the queue loop, the plugins and your own calls on the same
    /// [`Chancy`]) + 1 listener when notifications are on and transaction pooling is off
    /// ([`ChancyBuilder::transaction_pooling`](crate::ChancyBuilder::transaction_pooling)).
    /// Default 10 + 1 = 11.
    pub fn connection_budget(&self) -> u32 {
        let s = &self.shared;
        s.chancy.max_pool_size() + u32::from(s.chancy.listens())
    }

    /// The error of a start that cannot have the connections a worker needs at least.
    fn budget_error(&self, what: &str, err: &Error) -> Error {
        let s = &self.shared;
        let listening = s.chancy.listens();
        Error::unavailable(format!(
            "worker {} cannot start: it needs {} connection(s) at the same time (1 from the \
             application pool{}) and could not get {what}: {err}",
            s.worker_id,
            1 + u32::from(listening),
            if listening { ", 1 listener" } else { "" },
        ))
    }

    /// Executor threads alive now, over every queue (they start on demand and retire when
    /// idle).
    pub fn executor_threads(&self) -> usize {
        self.shared
            .runners()
            .lock()
            .values()
            .map(|r| r.executor_threads())
            .sum()
    }

    fn spawn_services(&self, listener_conn: Option<Conn>) -> Result<()> {
        let s = &self.shared;
        let deps = writer::WriterDeps {
            chancy: s.chancy.clone(),
            worker_id: s.worker_id.clone(),
            outgoing: Arc::clone(&s.outgoing),
            connections: Arc::clone(&s.queues.fetch.connections),
            committed: Arc::clone(&s.committed),
            synchronous_commit: s.config.synchronous_commit,
            send_outgoing_interval: s.config.send_outgoing_interval,
            shutdown_timeout: s.config.shutdown_timeout,
            backoff: (s.config.backoff_initial, s.config.backoff_max),
        };
        s.manager.spawn("writer", move |_| writer::run(deps))?;
        for (i, flag) in s.queues.fetch_wake.flags().iter().enumerate() {
            s.shutdown.register(flag);
            let deps = Arc::clone(&s.queues);
            let name = if i == 0 {
                "fetch".to_string()
            } else {
                format!("fetch-{i}")
            };
            s.manager.spawn(&name, move |_| scheduler::run(deps, i))?;
        }
        if let Some(conn) = listener_conn {
            let deps = listener::ListenerDeps {
                chancy: s.chancy.clone(),
                hub: s.hub.clone(),
                shutdown: Arc::clone(&s.shutdown),
                backoff: (s.config.backoff_initial, s.config.backoff_max),
            };
            s.manager
                .spawn("listener", move |state| listener::run(deps, conn, state))?;
        }
        let (names, lost) = (Arc::downgrade(s), Arc::downgrade(s));
        let deps = heartbeat::HeartbeatDeps {
            me: s.me().clone(),
            claims: Arc::clone(&s.claims),
            shutdown: Arc::clone(&s.shutdown),
            queue_names: Box::new(move || {
                names.upgrade().map(|s| s.queue_names()).unwrap_or_default()
            }),
            on_identity_lost: Box::new(move || {
                if let Some(s) = lost.upgrade() {
                    lifecycle::stop_from_own_thread(&s, "chancy-identity-lost");
                }
            }),
        };
        s.manager.spawn_loop(
            Arc::clone(&s.shutdown),
            self.loop_spec(
                "heartbeat",
                s.config.heartbeat_poll_interval,
                true,
                Arc::clone(&s.heartbeat_wake),
            ),
            move || heartbeat::beat(&deps),
        )?;
        let deps = queues::MaintenanceDeps {
            queues: Arc::clone(&s.queues),
            tag_matches: Mutex::new(HashMap::new()),
        };
        s.manager.spawn_loop(
            Arc::clone(&s.shutdown),
            self.loop_spec(
                "queues",
                s.config.queue_change_poll_interval,
                true,
                Arc::clone(&s.queues_wake),
            ),
            move || queues::reconcile(&deps),
        )?;
        if !s.chancy.listens() {
            // No NOTIFY reaches this worker: it reads the claims of its running jobs.
            let shared = Arc::clone(s);
            s.manager.spawn_loop(
                Arc::clone(&s.shutdown),
                self.loop_spec(
                    CANCELLATIONS_SERVICE,
                    s.config.cancellation_poll_interval,
                    false,
                    Arc::new(Flag::new()),
                ),
                move || cancellations::poll(&shared),
            )?;
        }
        let shared = Arc::clone(s);
        let watch = horizon::HorizonWatch::default();
        s.manager.spawn_loop(
            Arc::clone(&s.shutdown),
            self.loop_spec(
                "horizon",
                s.config.horizon_check_interval,
                false,
                Arc::new(Flag::new()),
            ),
            move || horizon::check(&shared, &watch),
        )?;
        for plugin in s.plugins() {
            let Some(interval) = plugin.interval() else {
                continue;
            };
            let ctx = PluginContext::new(s);
            let plugin = Arc::clone(plugin);
            let name = format!("plugin-{}", plugin.identifier());
            let wake = plugin.wake().unwrap_or_else(|| Arc::new(Flag::new()));
            s.manager.spawn_loop(
                Arc::clone(&s.shutdown),
                self.loop_spec(&name, interval, false, wake),
                move || plugin::run_pass(plugin.as_ref(), &ctx),
            )?;
        }
        Ok(())
    }

    fn loop_spec(
        &self,
        name: &str,
        interval: Duration,
        run_first: bool,
        wake: Arc<Flag>,
    ) -> LoopSpec {
        LoopSpec {
            name: name.to_string(),
            interval,
            run_first,
            wake,
            backoff: backoff::Backoff::new(
                self.shared.config.backoff_initial,
                self.shared.config.backoff_max,
            ),
            hub: self.shared.hub.clone(),
        }
    }

    /// Stops gracefully: no new claims; running jobs get up to `shutdown_timeout` to finish;
    /// every outcome queued before the cut-off is written; then every thread ends. Returns
    /// `false` if jobs were still running at the timeout (they are told to cancel; their rows
    /// stay `running` until recovery). After a clean stop the worker's row is deleted (only
    /// if it is still this process's), so the id can start again at once; otherwise it
    /// expires after `heartbeat_timeout`. Safe to call from several threads; later calls
    /// return the first result.
    ///
    /// Called on one of the worker's own threads (from a hub handler, a plugin hook or a job
    /// handler), the stop — which waits for those threads — runs on a thread of its own and
    /// this call returns `false` at once; [`Worker::wait_for_shutdown`] elsewhere sees it end.
    pub fn stop(&self) -> bool {
        let s = &self.shared;
        if on_worker_thread() {
            lifecycle::stop_from_own_thread(s, "chancy-stop");
            return false;
        }
        // A stop during the start triggers the shutdown (the start gives up at its next
        // checkpoint) and waits for the start to end.
        match s.lifecycle.begin_stop(|| s.shutdown.trigger()) {
            lifecycle::StopTurn::Done(drained) => drained,
            lifecycle::StopTurn::Stop => {
                let drained = self.stop_inner();
                s.lifecycle.stopped(drained);
                drained
            }
        }
    }

    fn stop_inner(&self) -> bool {
        let s = &self.shared;
        log::info!("worker {} stopping", s.worker_id);
        s.shutdown.trigger();
        s.manager.join("queues");
        let drained = self.drain(crate::duration::deadline(
            Instant::now(),
            s.config.shutdown_timeout,
        ));
        if !drained {
            let n = s.executions().cancel_all();
            log::warn!(
                "worker {}: {n} job(s) still running at the shutdown timeout were told to \
                 stop; {}",
                s.worker_id,
                s.how_abandoned_jobs_come_back()
            );
        }
        s.outgoing.close();
        s.manager.join_all(&[]);
        let ctx = PluginContext::new(s);
        for plugin in s.plugins() {
            plugin.on_worker_stopped(&ctx);
        }
        if drained {
            // Nothing of this process is left running: free the id for a successor now.
            // Otherwise the row expires after heartbeat_timeout and recovery re-queues the
            // abandoned jobs then.
            identity::release(s);
        }
        let event = if drained {
            WORKER_STOPPED
        } else {
            WORKER_SHUTDOWN_TIMEOUT
        };
        s.hub.emit(event, json!({ "worker": s.worker_id }));
        log::info!("worker {} stopped", s.worker_id);
        drained
    }

    /// Waits until every queue runner finished its running jobs, or `deadline`.
    fn drain(&self, deadline: Instant) -> bool {
        loop {
            let all_done = {
                let runners = self.shared.runners().lock();
                runners.values().all(|r| r.finished.is_set())
            };
            if all_done {
                self.shared.runners().lock().clear();
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(STOP_POLL);
        }
    }

    /// Blocks until the worker has stopped (after [`Worker::stop`] or a signal).
    pub fn wait_for_shutdown(&self) {
        self.shared.lifecycle.wait_stopped();
    }

    /// Handles SIGINT/SIGTERM as the installed handlers do: the first one starts a graceful
    /// stop on a background thread; a second one exits the process at once.
    pub fn on_signal(&self) {
        lifecycle::on_signal(&self.shared);
    }

    /// This worker's tags: `*`, `hostname=`, `worker_id=`, `rust=`, `os=`, `arch=` and extras.
    pub fn worker_tags(&self) -> &BTreeSet<String> {
        &self.shared.me().tags
    }

    /// The application handle.
    pub fn chancy(&self) -> &Chancy {
        &self.shared.chancy
    }

    /// The worker's id.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// How often this worker announces itself ([`WorkerBuilder::heartbeat_poll_interval`]).
    pub fn heartbeat_poll_interval(&self) -> Duration {
        self.shared.config.heartbeat_poll_interval
    }

    /// How long this worker's row lives without a heartbeat
    /// ([`WorkerBuilder::heartbeat_timeout`]).
    pub fn heartbeat_timeout(&self) -> Duration {
        self.shared.config.heartbeat_timeout
    }

    /// How often the queues table is re-read without `queue.*` events
    /// ([`WorkerBuilder::queue_change_poll_interval`]).
    pub fn queue_change_poll_interval(&self) -> Duration {
        self.shared.config.queue_change_poll_interval
    }

    /// How often a worker without a listener reads its running jobs' claims
    /// ([`WorkerBuilder::cancellation_poll_interval`]).
    pub fn cancellation_poll_interval(&self) -> Duration {
        self.shared.config.cancellation_poll_interval
    }

    /// How long [`Worker::stop`] waits for running jobs ([`WorkerBuilder::shutdown_timeout`]).
    pub fn shutdown_timeout(&self) -> Duration {
        self.shared.config.shutdown_timeout
    }

    /// The writer's batching window ([`WorkerBuilder::send_outgoing_interval`]).
    pub fn send_outgoing_interval(&self) -> Duration {
        self.shared.config.send_outgoing_interval
    }

    /// Whether the fetcher and writer commits wait for the WAL flush
    /// ([`WorkerBuilder::synchronous_commit`]).
    pub fn synchronous_commit(&self) -> bool {
        self.shared.config.synchronous_commit
    }

    /// Whether signal handlers are installed at start.
    pub fn register_signal_handlers(&self) -> bool {
        self.shared.config.register_signal_handlers
    }

    /// The event hub.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// Set while this worker holds the leader lease.
    pub fn is_leader(&self) -> &Flag {
        &self.shared.is_leader
    }

    /// Set once the worker starts stopping.
    pub fn shutdown_event(&self) -> &Flag {
        self.shared.shutdown.flag()
    }

    /// The named service threads and their state.
    pub fn manager(&self) -> &Manager {
        &self.shared.manager
    }

    /// Job outcomes waiting for the writer or being written now (a backlog that stays high
    /// means the database cannot keep up with the executors).
    pub fn pending_updates(&self) -> usize {
        self.shared.outgoing.pending()
    }

    /// Names of the queues this worker serves now.
    pub fn queues(&self) -> Vec<String> {
        self.shared.queue_names()
    }

    /// The registered handlers.
    pub fn registry(&self) -> &Registry {
        &self.shared.queues.exec.registry
    }

    /// Jobs running in this worker now.
    pub fn running_jobs(&self) -> usize {
        self.shared.executions().len()
    }

    /// Emits `metrics.counter {key, value, unit}` (recorded by the Metrics plugin), like
    /// upstream's `Worker.increment_counter` (unit default there: `count`).
    pub fn increment_counter(&self, key: &str, value: f64, unit: &str) {
        self.emit_metric("metrics.counter", key, value, unit);
    }

    /// Emits `metrics.gauge {key, value, unit}` (upstream's `record_gauge`).
    pub fn record_gauge(&self, key: &str, value: f64, unit: &str) {
        self.emit_metric("metrics.gauge", key, value, unit);
    }

    /// Emits `metrics.histogram {key, value, unit}` (upstream's `record_histogram_value`).
    pub fn record_histogram_value(&self, key: &str, value: f64, unit: &str) {
        self.emit_metric("metrics.histogram", key, value, unit);
    }

    fn emit_metric(&self, event: &str, key: &str, value: f64, unit: &str) {
        emit_metric(&self.shared.hub, event, key, value, unit);
    }
}

/// Emits one `metrics.*` hub event `{key, value, unit}`: what the Metrics plugin records.
/// The one place the worker and [`PluginContext`] build that event.
pub(crate) fn emit_metric(hub: &Hub, event: &str, key: &str, value: f64, unit: &str) {
    hub.emit(event, json!({ "key": key, "value": value, "unit": unit }));
}

/// How a start ended without an error.
enum Started {
    /// Every service runs.
    Yes,
    /// A stop arrived first; nothing of the worker runs.
    Interrupted,
}

fn uuid_field(body: &Value, key: &str) -> Option<Uuid> {
    body.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}
