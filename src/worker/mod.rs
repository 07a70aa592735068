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
//!  writer       batches outcomes into one fenced UPDATE per batch, retries, flushes at stop
//!  plugin-<id>  each plugin with an interval
//! ```

mod backoff;
mod child;
mod config;
mod context;
mod executions;
mod executor;
mod fetch;
mod flag;
mod heartbeat;
mod horizon;
mod hub;
mod identity;
mod lifecycle;
mod listener;
mod manager;
mod panics;
mod process;
mod queues;
mod runner;
mod scheduler;
pub(crate) mod signals;
mod slots;
mod writer;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::GenericClient;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::plugin::Plugin;
use crate::pool::Conn;
use crate::queue::{Queue, PROCESS_EXECUTOR};
use crate::Chancy;

pub use child::{run_child_if_requested, CHILD_ENV};
pub use config::{
    DEFAULT_HEARTBEAT_POLL_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_QUEUE_CHANGE_POLL_INTERVAL,
    DEFAULT_SEND_OUTGOING_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT,
};
pub use context::{Handler, JobContext, JobError, JobErrorKind, Registry};
pub use flag::Flag;
pub use horizon::{DEFAULT_HORIZON_CHECK_INTERVAL, HORIZON_HELD_BACK};
pub use hub::{Event, HandlerId, Hub};
pub use identity::WORKER_PING;
pub use listener::LISTENER_RECONNECTED;
pub use manager::{Manager, ServiceInfo, ServiceState, SERVICE_PASSED};
pub use process::DEFAULT_MAXIMUM_JOBS_PER_CHILD;
pub use runner::{QUEUE_FULL, QUEUE_POLLED, QUEUE_REMOVED, QUEUE_STARTED, QUEUE_UPDATED};
pub use writer::Outgoing;

pub(crate) use backoff::random_fraction;
use config::WorkerConfig;
use executions::Executions;
#[cfg(feature = "cli")]
pub(crate) use fetch::CLAIM_SETTINGS;
use flag::Shutdown;
use manager::LoopSpec;
use runner::{QueueRunner, STOP_POLL};

/// Local hub event: the worker started.
pub const WORKER_STARTED: &str = "worker.started";
/// Local hub event: the worker stopped cleanly.
pub const WORKER_STOPPED: &str = "worker.stopped";
/// Local hub event: the worker stopped, but running jobs outlived `shutdown_timeout`.
pub const WORKER_SHUTDOWN_TIMEOUT: &str = "worker.shutdown_timeout";

/// State shared by every thread of a worker.
/// Verdicts of the queues loop on tag lists, see `queues::serves`.
pub(crate) type TagVerdicts =
    HashMap<(String, BTreeSet<String>), std::result::Result<bool, String>>;

pub(crate) struct WorkerShared {
    pub(crate) chancy: Chancy,
    pub(crate) config: WorkerConfig,
    pub(crate) worker_id: String,
    /// `chancy.session=<uuid>`, new for every worker built: written into the worker row and
    /// checked by every statement that acts as this worker id (see `identity.rs`).
    pub(crate) session_tag: String,
    pub(crate) tags: BTreeSet<String>,
    pub(crate) registry: Registry,
    pub(crate) hub: Hub,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) is_leader: Flag,
    pub(crate) manager: Manager,
    pub(crate) outgoing: Outgoing,
    pub(crate) executions: Executions,
    pub(crate) runners: Mutex<HashMap<String, Arc<QueueRunner>>>,
    pub(crate) queues_wake: Arc<Flag>,
    /// Wakes the fetch scheduler (set by every queue's wake-up and by shutdown).
    pub(crate) fetch_wake: Arc<scheduler::FetchWake>,
    /// Loops of this worker waiting for a pooled connection now (writer, fetch threads): the
    /// others give theirs back after each use while it is not zero.
    pub(crate) conn_waiters: AtomicUsize,
    /// (queue, tag list) → whether the tags are usable and match this worker (only the
    /// queues loop uses it).
    pub(crate) tag_matches: Mutex<TagVerdicts>,
    /// Wakes the heartbeat loop (a `worker.ping` for this id).
    pub(crate) heartbeat_wake: Arc<Flag>,
    /// Set once `start` took this worker id's row (see `identity.rs`).
    pub(crate) claimed_id: AtomicBool,
    /// Claims fetched by this worker whose outcome is not yet written: anything else this
    /// worker holds as `running` in the database is an orphan (see `heartbeat`).
    pub(crate) claims: Mutex<std::collections::HashSet<Uuid>>,
    /// Set once the "process-executor queue on threads" warning was logged.
    warned_no_children: AtomicBool,
    started: AtomicBool,
    stop_lock: Mutex<Option<bool>>,
    stopped: Flag,
    signals: AtomicUsize,
}

impl WorkerShared {
    /// A pooled connection for one of the worker's loops, counted in `conn_waiters` while it
    /// waits.
    pub(crate) fn borrow_connection(&self, wait: Duration) -> Result<crate::pool::PooledConn> {
        self.conn_waiters.fetch_add(1, Ordering::SeqCst);
        let conn = self.chancy.connection_within(wait);
        self.conn_waiters.fetch_sub(1, Ordering::SeqCst);
        conn
    }

    /// Whether a loop holding a pooled connection should give it back after this use:
    /// another loop of this worker waits for one, or the pool has none left to give.
    pub(crate) fn connections_wanted(&self) -> bool {
        self.conn_waiters.load(Ordering::SeqCst) > 0 || self.chancy.pool_exhausted()
    }

    /// For the log when jobs are abandoned (shutdown timeout, forced exit): how they come
    /// back.
    pub(crate) fn how_abandoned_jobs_come_back(&self) -> String {
        let wait = self.config.heartbeat_timeout.as_secs_f64();
        let by = if self.chancy.has_plugin(crate::plugins::RECOVERY) {
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

    pub(crate) fn queue_update(&self, job: QueuedJob) -> bool {
        let claim = job.claim_id;
        let queued = self.outgoing.push(job);
        if !queued {
            self.forget_claims([claim]);
        }
        queued
    }

    pub(crate) fn remember_claims(&self, jobs: &[QueuedJob]) {
        let mut claims = self.claims.lock();
        claims.extend(jobs.iter().filter_map(|j| j.claim_id));
    }

    pub(crate) fn forget_claims(&self, claims: impl IntoIterator<Item = Option<Uuid>>) {
        let mut held = self.claims.lock();
        for claim in claims.into_iter().flatten() {
            held.remove(&claim);
        }
    }

    /// The program started as the child of process-executor queue `queue`, or `None` when
    /// the program did not opt in: then the queue runs on threads, and the first such queue
    /// logs one warning saying what that loses and how to opt in.
    ///
    /// Opting in is calling [`run_child_if_requested`] (this program serves the child role)
    /// or naming another program with [`WorkerBuilder::process_executable`]. Without it a
    /// worker never starts a copy of its own program: that program's `main` would run again
    /// instead of serving jobs, and start a worker of its own, and so on.
    pub(crate) fn child_executable(&self, queue: &str) -> Option<std::path::PathBuf> {
        if let Some(path) = &self.config.process_executable {
            return Some(path.clone());
        }
        let exe = child::child_role_declared()
            .then(std::env::current_exe)
            .and_then(|exe| match exe {
                Ok(exe) => Some(exe),
                Err(e) => {
                    log::error!("cannot find this program's path to start executor children: {e}");
                    None
                }
            });
        if exe.is_none() && !self.warned_no_children.swap(true, Ordering::SeqCst) {
            log::warn!(
                "queue {queue:?} uses the process executor, but this program never called \
                 chancy::run_child_if_requested, so its jobs (and those of every other \
                 process-executor queue of worker {}) run on threads in this process: a job \
                 that overruns its time limit cannot be killed (it only sees its deadline) \
                 and a job with a memory limit fails. To run them in child processes, call \
                 chancy::run_child_if_requested(&registry) first thing in main, or set \
                 WorkerBuilder::process_executable",
                self.worker_id
            );
        }
        exe
    }

    pub(crate) fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .runners
            .lock()
            .iter()
            .filter(|(_, r)| !r.removed.load(Ordering::SeqCst))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    pub(crate) fn wake_all_queues(&self) {
        for runner in self.runners.lock().values() {
            runner.wake.set();
        }
    }

    pub(crate) fn after_commit(
        &self,
        batch: &[QueuedJob],
        accepted: &std::collections::HashSet<Uuid>,
    ) {
        let jobs: Vec<&QueuedJob> = batch.iter().filter(|j| accepted.contains(&j.id)).collect();
        for plugin in self.plugins() {
            plugin.on_jobs_updated(&jobs);
        }
        self.wake_eager_queues(batch);
    }

    /// Eager queues poll again once outcomes are committed, so a job just put back to
    /// `retrying` is claimable at that poll.
    fn wake_eager_queues(&self, batch: &[QueuedJob]) {
        let queues: BTreeSet<&str> = batch
            .iter()
            .filter(|j| j.state == crate::JobState::Retrying)
            .map(|j| j.queue.as_str())
            .collect();
        if queues.is_empty() {
            return;
        }
        let runners = self.runners.lock();
        for name in queues {
            if let Some(r) = runners.get(name).filter(|r| r.desired.lock().eager_polling) {
                r.wake.set();
            }
        }
    }
}

/// Starts a named thread. Failing to start one (the process or user is out of threads or
/// memory) is an error the caller handles for what that thread was for: it never panics.
pub(crate) fn spawn_named<F: FnOnce() + Send + 'static>(
    name: &str,
    f: F,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f)
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

    /// Validates the settings.
    ///
    /// # Errors
    /// A configuration error naming the bad setting.
    pub fn build(self) -> Result<Worker> {
        self.config.validate()?;
        let worker_id = self.worker_id.unwrap_or_else(|| Uuid::new_v4().to_string());
        if worker_id.is_empty() {
            return Err(Error::config("worker_id must not be empty"));
        }
        let tags = config::worker_tags(&worker_id, &self.tags);
        let mut worker = Worker {
            shared: Arc::new(WorkerShared {
                chancy: self.chancy,
                config: self.config,
                worker_id,
                session_tag: identity::session_tag(&Uuid::new_v4()),
                tags,
                registry: self.registry,
                hub: Hub::default(),
                shutdown: Arc::new(Shutdown::default()),
                is_leader: Flag::new(),
                manager: Manager::default(),
                outgoing: Outgoing::default(),
                executions: Executions::default(),
                runners: Mutex::new(HashMap::new()),
                queues_wake: Arc::new(Flag::new()),
                fetch_wake: Arc::new(scheduler::FetchWake::new(scheduler::DEFAULT_FETCH_THREADS)),
                tag_matches: Mutex::new(HashMap::new()),
                conn_waiters: AtomicUsize::new(0),
                heartbeat_wake: Arc::new(Flag::new()),
                claimed_id: AtomicBool::new(false),
                claims: Mutex::new(std::collections::HashSet::new()),
                warned_no_children: AtomicBool::new(false),
                started: AtomicBool::new(false),
                stop_lock: Mutex::new(None),
                stopped: Flag::new(),
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
    /// # Errors
    /// A migrations-needed, configuration or connection error; nothing keeps running then.
    /// A configuration error naming the id and how long ago its row was seen when another
    /// live process runs under this worker id.
    pub fn start(&self) -> Result<()> {
        if self.shared.started.swap(true, Ordering::SeqCst) {
            return Err(Error::config("this worker was already started"));
        }
        let result = self.start_inner();
        if result.is_err() {
            self.shared.shutdown.trigger();
            self.shared.outgoing.close();
            self.shared.manager.join_all(&[]);
            // Frees the id if this start had taken it (a no-op on another process's row).
            identity::release(&self.shared);
            self.shared.stopped.set();
        }
        result
    }

    fn start_inner(&self) -> Result<()> {
        let s = &self.shared;
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
        crate::plugin::check_dependencies(s.chancy.plugins())?;
        identity::claim(s).map_err(no_pool)?;
        self.register_hub_handlers();
        if s.config.panic_hook {
            panics::install_hook();
        }
        let internal = Worker::internal(s);
        for plugin in s.plugins() {
            plugin.on_worker_started(&internal)?;
        }
        // Held while the listener connects: both at once is the least a worker needs.
        let pooled = s.chancy.connection().map_err(no_pool)?;
        let listener_conn = if s.chancy.notifications() {
            let conn = listener::connect(s)
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
            if s.chancy.notifications() {
                " + listener 1"
            } else {
                ""
            }
        );
        // Before any service or queue thread: under a thread limit the queues' executor
        // threads may take every thread left, and the handler needs one of its own.
        if s.config.register_signal_handlers {
            signals::install(&self.shared)?;
        }
        self.spawn_services(listener_conn)?;
        s.chancy
            .declare(&Queue::new("default").executor(PROCESS_EXECUTOR))?;
        s.hub.emit(WORKER_STARTED, json!({ "worker": s.worker_id }));
        log::info!("worker {} started", s.worker_id);
        Ok(())
    }

    fn register_hub_handlers(&self) {
        let s = &self.shared;
        let weak = Arc::downgrade(s);
        s.hub.on(crate::events::QUEUE_PUSHED, move |e| {
            let Some(s) = weak.upgrade() else { return };
            if let Some(q) = e.body.get("q").and_then(Value::as_str) {
                if let Some(r) = s.runners.lock().get(q) {
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
            let n = s.executions.cancel_job(id);
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
                s.executions.cancel_execution(id, claim);
            }
        });
    }

    /// The most PostgreSQL connections this worker opens, whatever its number of queues:
    /// the application pool's `max_connection_pool_size` (shared by the fetch scheduler, the
    /// writer, the heartbeat, the queue loop, the plugins and your own calls on the same
    /// [`Chancy`]) + 1 listener when notifications are on. Default 10 + 1 = 11.
    pub fn connection_budget(&self) -> u32 {
        let s = &self.shared;
        s.chancy.max_pool_size() + u32::from(s.chancy.notifications())
    }

    /// The error of a start that cannot have the connections a worker needs at least.
    fn budget_error(&self, what: &str, err: &Error) -> Error {
        let s = &self.shared;
        let listening = s.chancy.notifications();
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
            .runners
            .lock()
            .values()
            .map(|r| r.executor_threads())
            .sum()
    }

    fn spawn_services(&self, listener_conn: Option<Conn>) -> Result<()> {
        let s = &self.shared;
        let shared = Arc::clone(s);
        s.manager.spawn("writer", move |_| writer::run(shared))?;
        for (i, flag) in s.fetch_wake.flags().iter().enumerate() {
            s.shutdown.register(flag);
            let shared = Arc::clone(s);
            let name = if i == 0 {
                "fetch".to_string()
            } else {
                format!("fetch-{i}")
            };
            s.manager.spawn(&name, move |_| scheduler::run(shared, i))?;
        }
        if let Some(conn) = listener_conn {
            let shared = Arc::clone(s);
            s.manager
                .spawn("listener", move |state| listener::run(shared, conn, state))?;
        }
        let shared = Arc::clone(s);
        s.manager.spawn_loop(
            Arc::clone(&s.shutdown),
            self.loop_spec(
                "heartbeat",
                s.config.heartbeat_poll_interval,
                true,
                Arc::clone(&s.heartbeat_wake),
            ),
            move || heartbeat::beat(&shared),
        )?;
        let shared = Arc::clone(s);
        s.manager.spawn_loop(
            Arc::clone(&s.shutdown),
            self.loop_spec(
                "queues",
                s.config.queue_change_poll_interval,
                true,
                Arc::clone(&s.queues_wake),
            ),
            move || queues::reconcile(&shared),
        )?;
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
            let worker = Worker::internal(s);
            let plugin = Arc::clone(plugin);
            let name = format!("plugin-{}", plugin.identifier());
            let wake = plugin.wake().unwrap_or_else(|| Arc::new(Flag::new()));
            s.manager.spawn_loop(
                Arc::clone(&s.shutdown),
                self.loop_spec(&name, interval, false, wake),
                move || plugin.run_once(&worker),
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
    pub fn stop(&self) -> bool {
        let mut result = self.shared.stop_lock.lock();
        if let Some(done) = *result {
            return done;
        }
        let drained = if self.shared.started.load(Ordering::SeqCst) {
            self.stop_inner()
        } else {
            true
        };
        *result = Some(drained);
        self.shared.stopped.set();
        drained
    }

    fn stop_inner(&self) -> bool {
        let s = &self.shared;
        log::info!("worker {} stopping", s.worker_id);
        s.shutdown.trigger();
        s.manager.join("queues");
        let drained = self.drain(Instant::now() + s.config.shutdown_timeout);
        if !drained {
            let n = s.executions.cancel_all();
            log::warn!(
                "worker {}: {n} job(s) still running at the shutdown timeout were told to \
                 stop; {}",
                s.worker_id,
                s.how_abandoned_jobs_come_back()
            );
        }
        s.outgoing.close();
        s.manager.join_all(&[]);
        let internal = Worker::internal(s);
        for plugin in s.plugins() {
            plugin.on_worker_stopped(&internal);
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
                let runners = self.shared.runners.lock();
                runners.values().all(|r| r.finished.is_set())
            };
            if all_done {
                self.shared.runners.lock().clear();
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
        self.shared.stopped.wait();
    }

    /// Handles SIGINT/SIGTERM as the installed handlers do: the first one starts a graceful
    /// stop on a background thread; a second one exits the process at once.
    pub fn on_signal(&self) {
        signals::on_signal(&self.shared);
    }

    /// Upserts this worker's row, prunes expired workers and NOTIFYs `worker.announced`,
    /// on `client` (commit is the caller's). The row is written only while it is absent or
    /// belongs to this worker process (see [`Worker::start`]).
    ///
    /// # Errors
    /// When a statement fails; a configuration error when another live process holds this
    /// worker id's row.
    pub fn announce_worker(&self, client: &mut impl GenericClient) -> Result<()> {
        if heartbeat::announce(&self.shared, client)? {
            Ok(())
        } else {
            Err(Error::config(format!(
                "worker id {:?} is held by another process's live row",
                self.shared.worker_id
            )))
        }
    }

    /// This worker process's session tag (`chancy.session=<uuid>`) in its row: the fence
    /// that statements acting as this worker id check.
    pub(crate) fn session_tag(&self) -> &str {
        &self.shared.session_tag
    }

    /// Claims up to `up_to` jobs of `queue` for this worker (the claim sets `running`,
    /// `started_at`, `taken_by` and a fresh `claim_id`), honouring the queue's rate limit.
    /// A claimed row another client wrote with kwargs that are not a JSON object or limits
    /// that cannot be read is not returned: its attempt fails at once with a `TypeError` /
    /// `ValueError` text (queued for the writer).
    ///
    /// # Errors
    /// When a statement fails.
    pub fn fetch_jobs(
        &self,
        queue: &Queue,
        conn: &mut Conn,
        up_to: usize,
    ) -> Result<Vec<QueuedJob>> {
        fetch::fetch_jobs(&self.shared, queue, conn, up_to)
    }

    /// Writes outcomes now, on `conn`, the way the update writer writes one batch: one
    /// transaction, one fenced `UPDATE … FROM unnest(…)` (a row changes only while its
    /// `claim_id` still matches), the plugins' in-transaction hooks. Returns how many
    /// updates were accepted. A running worker's writer thread does this by itself; this is
    /// for tools and benchmarks that claim by hand with [`Worker::fetch_jobs`]. After-commit
    /// hooks are not called.
    ///
    /// ```no_run
    /// # fn main() -> chancy::Result<()> {
    /// use chancy::{Chancy, JobState, Queue, Worker};
    /// let chancy = Chancy::builder("postgresql://localhost/postgres").build()?;
    /// let worker = Worker::builder(&chancy).build()?;
    /// let mut conn = chancy.connection()?;
    /// let mut jobs = worker.fetch_jobs(&Queue::new("default"), &mut conn, 10)?;
    /// for job in &mut jobs {
    ///     job.state = JobState::Succeeded;
    ///     job.completed_at = Some(chrono::Utc::now());
    /// }
    /// assert_eq!(worker.write_updates(&mut conn, &jobs)?, jobs.len());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When a statement or a plugin hook fails (nothing is written then).
    pub fn write_updates(&self, conn: &mut Conn, jobs: &[QueuedJob]) -> Result<usize> {
        writer::write_batch(&self.shared, conn, jobs).map(|accepted| accepted.len())
    }

    /// Queues an outcome for the writer. Returns false (dropped) after the stop's cut-off.
    pub fn queue_update(&self, job: QueuedJob) -> bool {
        self.shared.queue_update(job)
    }

    /// This worker's tags: `*`, `hostname=`, `worker_id=`, `rust=`, `os=`, `arch=` and extras.
    pub fn worker_tags(&self) -> &BTreeSet<String> {
        &self.shared.tags
    }

    /// The application handle.
    pub fn chancy(&self) -> &Chancy {
        &self.shared.chancy
    }

    /// The worker's id.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Heartbeat interval.
    pub fn heartbeat_poll_interval(&self) -> Duration {
        self.shared.config.heartbeat_poll_interval
    }

    /// Heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.shared.config.heartbeat_timeout
    }

    /// Queue-change poll interval.
    pub fn queue_change_poll_interval(&self) -> Duration {
        self.shared.config.queue_change_poll_interval
    }

    /// Shutdown timeout.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shared.config.shutdown_timeout
    }

    /// The writer's batching window.
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

    /// The pending job updates.
    pub fn outgoing(&self) -> &Outgoing {
        &self.shared.outgoing
    }

    /// Names of the queues this worker serves now.
    pub fn queues(&self) -> Vec<String> {
        self.shared.queue_names()
    }

    /// The registered handlers.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Jobs running in this worker now.
    pub fn running_jobs(&self) -> usize {
        self.shared.executions.len()
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
        let body = json!({ "key": key, "value": value, "unit": unit });
        self.shared.hub.emit(event, body);
    }
}

fn uuid_field(body: &Value, key: &str) -> Option<Uuid> {
    body.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}
