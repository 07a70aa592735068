//! The plugin API: the [`Plugin`] trait and the [`PluginContext`] through which a plugin
//! sees the worker it runs in.
//!
//! Layers, bottom up: model → client ([`Chancy`]) → worker (this file) → plugins → web →
//! cli. A plugin is configured on the client ([`ChancyBuilder::plugin`](crate::ChancyBuilder::plugin),
//! like Python's `Chancy(plugins=[…])`), but the client does not know this trait: it carries
//! the list opaquely (see [`carry`]) and reads only each plugin's identifier and migrations.
//! The worker runs the list: hooks, and one service thread per plugin with an interval.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use postgres::Transaction;

use super::context::JobError;
use super::hub::Hub;
use super::WorkerShared;
use crate::app::{CarriedPlugins, Chancy};
use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::migrate::Migrations;
use crate::sync::Flag;

/// The identifier of the recovery plugin, which the worker names in its shutdown messages
/// (the plugin itself is defined above the worker, in [`crate::plugins`]).
pub(crate) const RECOVERY: &str = "chancy.recovery";

/// A plugin. Every method has a default, so a plugin implements only what it needs.
///
/// A plugin with an [`interval`](Plugin::interval) runs as a service thread named
/// `chancy-plugin-<identifier>`: [`run_once`](Plugin::run_once) every interval (the first
/// time one interval after start, like upstream), retried with capped backoff when it fails.
/// A plugin whose service only the leader may run says so once with
/// [`leader_only`](Plugin::leader_only); the worker then skips its passes on every other
/// worker (calling [`on_pass_skipped`](Plugin::on_pass_skipped) instead).
///
/// Hooks run on the worker's threads: keep them short, and never block on the job they
/// are called for.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use chancy::{JobError, Plugin, PluginContext, QueuedJob};
///
/// #[derive(Default)]
/// struct CountFailures(AtomicUsize);
///
/// impl Plugin for CountFailures {
///     fn identifier(&self) -> &'static str { "myapp.count_failures" }
///     fn on_job_completed(&self, job: QueuedJob, error: Option<&JobError>) -> QueuedJob {
///         if error.is_some() { self.0.fetch_add(1, Ordering::Relaxed); }
///         job
///     }
///     // A leader-only service: every 60 s on the worker that holds the leadership.
///     fn interval(&self) -> Option<Duration> { Some(Duration::from_secs(60)) }
///     fn leader_only(&self) -> bool { true }
///     fn run_once(&self, ctx: &PluginContext) -> chancy::Result<()> {
///         let failed = self.0.swap(0, Ordering::Relaxed);
///         ctx.hub().emit("myapp.failures", serde_json::json!({ "n": failed }));
///         Ok(())
///     }
/// }
/// ```
pub trait Plugin: Send + Sync {
    /// A unique identifier, the same as Python Chancy's for the plugins it ships (e.g.
    /// `chancy.leadership`). Two plugins with one identifier are a configuration error.
    fn identifier(&self) -> &'static str;

    /// Identifiers of plugins that must be configured too (checked when a worker starts).
    fn dependencies(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// This plugin's tables, as one migration key and its `.sql` steps; `None` (the
    /// default) when it has none. [`Chancy::migrate`] applies the migrations of every
    /// configured plugin, and a worker refuses to start while they are behind.
    fn migrations(&self) -> Option<&'static Migrations> {
        None
    }

    /// Unprefixed names of the tables this plugin owns (shown by `/api/v1/plugins`).
    fn tables(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// How often [`Plugin::run_once`] runs in a worker; `None` (the default) = no service
    /// thread.
    fn interval(&self) -> Option<Duration> {
        None
    }

    /// Whether only the leader runs this plugin's service (default `false`). When `true`,
    /// a pass on a worker that does not hold the leadership (see
    /// [`PluginContext::is_leader`]) calls [`Plugin::on_pass_skipped`] instead of
    /// [`Plugin::run_once`]. Upstream's pruner, recovery, reprioritize and workflow
    /// scheduler check this inside every pass; here it is declared once.
    fn leader_only(&self) -> bool {
        false
    }

    /// A flag that wakes the plugin's service loop before its interval is up (e.g. set
    /// from a hub handler); the loop clears it and runs a pass. `None` = the loop wakes
    /// only on its interval and at shutdown.
    fn wake(&self) -> Option<Arc<Flag>> {
        None
    }

    /// One pass of the plugin's service (on its `chancy-plugin-<identifier>` thread).
    ///
    /// # Errors
    /// A failed pass is logged with the plugin's identifier and retried with backoff; it
    /// never stops the worker.
    fn run_once(&self, _ctx: &PluginContext) -> Result<()> {
        Ok(())
    }

    /// Called instead of [`Plugin::run_once`] for a [`leader_only`](Plugin::leader_only)
    /// plugin on a pass where this worker does not lead: drop state only a leader keeps
    /// (e.g. "the next pass as leader is a full scan"). Must be cheap; default: nothing.
    fn on_pass_skipped(&self, _ctx: &PluginContext) {}

    /// Called by `Worker::start` before any service thread starts (subscribe to hub
    /// events here).
    ///
    /// # Errors
    /// An error aborts the start.
    fn on_worker_started(&self, _ctx: &PluginContext) -> Result<()> {
        Ok(())
    }

    /// Called by `Worker::stop` after the final flush of job updates and after every
    /// service thread ended.
    fn on_worker_stopped(&self, _ctx: &PluginContext) {}

    /// Called on the executor thread before a job runs; `worker_id` is the running
    /// worker's id.
    fn on_job_starting(&self, _job: &QueuedJob, _worker_id: &str) {}

    /// Called with the outcome of an attempt before it is queued for writing; may change it
    /// (e.g. reschedule a retry). `error` is `None` for a success.
    fn on_job_completed(&self, job: QueuedJob, _error: Option<&JobError>) -> QueuedJob {
        job
    }

    /// Called inside the writer's transaction with the accepted updates of a batch, before
    /// commit.
    ///
    /// # Errors
    /// Any error rolls back the batch; the writer retries it.
    fn on_jobs_updated_in_transaction(
        &self,
        _chancy: &Chancy,
        _jobs: &[&QueuedJob],
        _tx: &mut Transaction<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// Called after commit for each accepted update, in batch order.
    fn on_job_updated(&self, _job: &QueuedJob) {}

    /// Called after commit with all accepted updates of one writer batch, in batch order.
    /// The default calls [`Plugin::on_job_updated`] for each; override it to handle a batch
    /// at once (the metrics plugin aggregates per metric key here).
    fn on_jobs_updated(&self, jobs: &[&QueuedJob]) {
        for job in jobs {
            self.on_job_updated(job);
        }
    }

    /// The plugin as `Any`, so code that knows a concrete plugin type can find it among
    /// [`Chancy::plugins`] (e.g. the web server finds the `Prometheus` exporter). `None` by
    /// default.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// Called by the pruner on the leader; returns how many rows it removed, if it counts.
    ///
    /// # Errors
    /// Logged by the pruner.
    fn cleanup(&self, _chancy: &Chancy) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// What a plugin sees of the worker it runs in: the client, the event hub, the leadership
/// flag, the worker's identity and the settings plugins use. Passed to
/// [`Plugin::run_once`], [`Plugin::on_worker_started`] and friends.
///
/// Cheap to clone (shared inside); a plugin may keep one (e.g. to read
/// [`running_jobs`](PluginContext::running_jobs) at scrape time). A kept context does not
/// keep the worker running, but it keeps the worker's memory alive until dropped: release
/// it in [`Plugin::on_worker_stopped`].
#[derive(Clone)]
pub struct PluginContext {
    shared: Arc<WorkerShared>,
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("worker_id", &self.shared.worker_id)
            .finish()
    }
}

impl PluginContext {
    pub(crate) fn new(shared: &Arc<WorkerShared>) -> PluginContext {
        PluginContext {
            shared: Arc::clone(shared),
        }
    }

    /// The application handle: pooled connections ([`Chancy::connection`]), the prefix,
    /// pushes and NOTIFYs. Calls on it share the worker's pool.
    pub fn chancy(&self) -> &Chancy {
        &self.shared.chancy
    }

    /// The worker's id (`<prefix>workers.worker_id`, the `taken_by` of its jobs).
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// This worker process's session tag, `chancy.session=<uuid>`: new for every worker
    /// built and written into its `<prefix>workers` row. A statement that acts as this
    /// worker id (e.g. deleting its own leader lease) checks that the row still carries
    /// it, so it never acts on another process's row under the same id.
    pub fn session_tag(&self) -> &str {
        &self.shared.me().session_tag
    }

    /// The worker's event hub: database NOTIFY events (`queue.pushed`, `job.cancelled`,
    /// ...) and local ones (`worker.started`, `metrics.counter`, ...). Subscribe in
    /// [`Plugin::on_worker_started`] and remove the handler in
    /// [`Plugin::on_worker_stopped`]; a handler runs on the emitting thread, so it must be
    /// quick (set a flag, push to a bounded buffer).
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// Emits `metrics.counter {key, value, unit}` on this worker's hub, recorded by the
    /// Metrics plugin when it is configured (upstream's `Worker.increment_counter`; unit
    /// `count` there by default).
    pub fn increment_counter(&self, key: &str, value: f64, unit: &str) {
        super::emit_metric(&self.shared.hub, "metrics.counter", key, value, unit);
    }

    /// Emits `metrics.histogram {key, value, unit}` (upstream's `record_histogram_value`;
    /// e.g. unit `seconds`).
    pub fn record_histogram_value(&self, key: &str, value: f64, unit: &str) {
        super::emit_metric(&self.shared.hub, "metrics.histogram", key, value, unit);
    }

    /// Whether this worker holds the leader lease now. Set and cleared by the leadership
    /// plugin ([`set_leader`](PluginContext::set_leader)); a
    /// [`leader_only`](Plugin::leader_only) plugin's passes run only while it is set.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader.is_set()
    }

    /// Records whether this worker leads. For leadership plugins only (the one that
    /// elects); every other plugin reads [`is_leader`](PluginContext::is_leader).
    pub fn set_leader(&self, leads: bool) {
        if leads {
            self.shared.is_leader.set();
        } else {
            self.shared.is_leader.clear();
        }
    }

    /// How long the worker's row lives without a heartbeat (its
    /// [`heartbeat_timeout`](crate::WorkerBuilder::heartbeat_timeout)): after that, a
    /// worker counts as gone and its running jobs as abandoned.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.shared.config.heartbeat_timeout
    }

    /// Set once the worker starts stopping; waitable (`wait_timeout`), so a long pass can
    /// end early.
    pub fn shutdown_event(&self) -> &Flag {
        self.shared.shutdown.flag()
    }

    /// Jobs running in this worker now.
    pub fn running_jobs(&self) -> usize {
        self.shared.executions().len()
    }

    /// Job outcomes queued for the writer and not yet written.
    pub fn pending_updates(&self) -> usize {
        self.shared.outgoing.pending()
    }
}

/// One pass of `plugin`'s service: [`Plugin::run_once`], or for a leader-only plugin on a
/// worker that does not lead, [`Plugin::on_pass_skipped`]. The one place leader-only
/// services are gated.
pub(crate) fn run_pass(plugin: &dyn Plugin, ctx: &PluginContext) -> Result<()> {
    if plugin.leader_only() && !ctx.is_leader() {
        plugin.on_pass_skipped(ctx);
        return Ok(());
    }
    plugin.run_once(ctx)
}

/// The plugins of a [`Chancy`], in hook order: the list the builder packed with [`carry`].
type PluginList = Vec<Arc<dyn Plugin>>;

/// Packs `plugins` for the client to carry: their identifiers and the list itself, which
/// the client keeps as an opaque `Any` (it sits below this trait). Only this file packs
/// ([`carry`]) and unpacks ([`Chancy::plugins`]) the list.
pub(crate) fn carry(plugins: PluginList) -> CarriedPlugins {
    CarriedPlugins {
        identifiers: plugins.iter().map(|p| p.identifier()).collect(),
        list: Box::new(plugins),
    }
}

impl Chancy {
    /// The configured plugins, in hook order (the ones added with
    /// [`ChancyBuilder::plugin`](crate::ChancyBuilder::plugin), then the default set).
    pub fn plugins(&self) -> &[Arc<dyn Plugin>] {
        self.carried_plugins()
            .downcast_ref::<PluginList>()
            .map_or(&[], Vec::as_slice)
    }
}

/// Two plugins with one identifier are a configuration error, as in Python.
pub(crate) fn check_unique(plugins: &[Arc<dyn Plugin>]) -> Result<()> {
    for (i, p) in plugins.iter().enumerate() {
        if plugins[..i]
            .iter()
            .any(|q| q.identifier() == p.identifier())
        {
            return Err(Error::config(format!(
                "plugin {:?} is configured twice",
                p.identifier()
            )));
        }
    }
    Ok(())
}

/// Fails when a configured plugin depends on one that is not configured.
///
/// # Errors
/// A configuration error naming the plugin and what it is missing.
pub fn check_dependencies(plugins: &[Arc<dyn Plugin>]) -> Result<()> {
    for p in plugins {
        let missing: Vec<&str> = p
            .dependencies()
            .into_iter()
            .filter(|d| !plugins.iter().any(|q| q.identifier() == *d))
            .collect();
        if !missing.is_empty() {
            return Err(Error::config(format!(
                "plugin {:?} has unsatisfied dependencies: {}",
                p.identifier(),
                missing.join(", ")
            )));
        }
    }
    Ok(())
}
