//! Metrics (upstream's `Metrics`, 0.26.0 storage v2): counters, gauges and histograms
//! buffered in memory per worker session and flushed into `<prefix>metric_definitions` and
//! `<prefix>metrics` in the layout Python's dashboard reads.

mod buffer;
mod read;
mod store;
mod types;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::Mutex;
use serde_json::Value;
use uuid::Uuid;

use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::migrate::{embed_migrations, Migrations};
use crate::worker::plugin::{Plugin, PluginContext};
use crate::worker::{Event, HandlerId};

use buffer::{Buffer, Origin, Rejected};

pub use read::{Metric, MetricPoint, MetricValue, MetricsQuery};
pub use types::{MetricType, Resolution};

/// The identifier of [`Metrics`].
pub const METRICS: &str = "chancy.metrics";
/// The metrics plugin's tables (key `metrics`, versions 1..=2 as in Python Chancy 0.26.0).
pub const METRICS_MIGRATIONS: Migrations = Migrations::new(
    "metrics",
    embed_migrations!("metrics": "001_initial", "002_buckets"),
);
/// Hub event consumed by [`Metrics`]: `{key, value, unit}` adds to a counter.
pub const METRICS_COUNTER: &str = "metrics.counter";
/// Hub event consumed by [`Metrics`]: `{key, value, unit}` sets a gauge.
pub const METRICS_GAUGE: &str = "metrics.gauge";
/// Hub event consumed by [`Metrics`]: `{key, value, unit}` adds a histogram observation.
pub const METRICS_HISTOGRAM: &str = "metrics.histogram";
/// Default [`MetricsBuilder::sync_interval`]: 60 s, as upstream.
pub const DEFAULT_METRICS_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// Default [`MetricsBuilder::collection_interval`]: 30 s, as upstream.
pub const DEFAULT_METRICS_COLLECTION_INTERVAL: Duration = Duration::from_secs(30);
/// Default [`MetricsBuilder::maximum_metric_age`]: 90 days, as upstream.
pub const DEFAULT_MAXIMUM_METRIC_AGE: Duration = Duration::from_secs(90 * 86_400);
/// Default [`MetricsBuilder::max_buffered_points`]: 10,000 buckets, as upstream.
pub const DEFAULT_MAX_BUFFERED_POINTS: usize = 10_000;
/// Buckets per row of the metrics table.
pub const CHUNK_SIZE: i64 = 12;
/// Default unit of counters.
pub const COUNTER_UNIT: &str = "count";
/// Default unit of gauges and histograms.
pub const NUMBER_UNIT: &str = "number";

const WARNING_INTERVAL: Duration = Duration::from_secs(60);
const EVENTS: [(&str, MetricType); 3] = [
    (METRICS_COUNTER, MetricType::Counter),
    (METRICS_GAUGE, MetricType::Gauge),
    (METRICS_HISTOGRAM, MetricType::Histogram),
];

/// Settings of [`Metrics`]; see [`Metrics::builder`].
#[derive(Debug, Clone)]
pub struct MetricsBuilder {
    sync_interval: Duration,
    collection_interval: Duration,
    maximum_metric_age: Duration,
    max_points: [u32; 4],
    max_buffered_points: usize,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        MetricsBuilder {
            sync_interval: DEFAULT_METRICS_SYNC_INTERVAL,
            collection_interval: DEFAULT_METRICS_COLLECTION_INTERVAL,
            maximum_metric_age: DEFAULT_MAXIMUM_METRIC_AGE,
            max_points: Resolution::ALL.map(Resolution::default_points),
            max_buffered_points: DEFAULT_MAX_BUFFERED_POINTS,
        }
    }
}

impl MetricsBuilder {
    /// How often buffered observations are saved (default 60 s; must be positive).
    #[must_use]
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.sync_interval = d;
        self
    }

    /// How often the leader samples table sizes (default 30 s; must be positive).
    #[must_use]
    pub fn collection_interval(mut self, d: Duration) -> Self {
        self.collection_interval = d;
        self
    }

    /// Data older than this is deleted by [`Plugin::cleanup`] (default 90 days; at least 1 s).
    #[must_use]
    pub fn maximum_metric_age(mut self, d: Duration) -> Self {
        self.maximum_metric_age = d;
        self
    }

    /// Buckets retained at `resolution` (defaults 60, 288, 168 and 90; must be positive).
    #[must_use]
    pub fn max_points_per_resolution(mut self, resolution: Resolution, points: u32) -> Self {
        self.max_points[resolution.index()] = points;
        self
    }

    /// Most buckets held in memory (default 10,000; must be positive); new buckets beyond
    /// it are dropped with a warning until a flush frees room.
    #[must_use]
    pub fn max_buffered_points(mut self, n: usize) -> Self {
        self.max_buffered_points = n;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A configuration error naming the setting that is not positive.
    pub fn build(self) -> Result<Metrics> {
        let checks = [
            ("sync_interval", self.sync_interval.is_zero()),
            ("collection_interval", self.collection_interval.is_zero()),
            ("maximum_metric_age", self.maximum_metric_age.as_secs() == 0),
            ("max_points_per_resolution", self.max_points.contains(&0)),
            ("max_buffered_points", self.max_buffered_points == 0),
        ];
        if let Some((name, _)) = checks.iter().find(|(_, bad)| *bad) {
            return Err(Error::config(format!("metrics: {name} must be positive")));
        }
        Ok(Metrics {
            inner: Arc::new(Inner {
                config: self,
                default_origin: Origin {
                    session: Uuid::new_v4(),
                    worker_id: String::new(),
                },
                buffer: Mutex::new(Buffer::default()),
                sessions: Mutex::new(HashMap::new()),
                flush_lock: Mutex::new(()),
                last_warning: Mutex::new(None),
                clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            }),
        })
    }
}

/// One worker registration: its session, its hub handlers and service timers.
struct Session {
    origin: Origin,
    handlers: Vec<HandlerId>,
    last_flush: Instant,
    last_collection: Instant,
}

struct Inner {
    config: MetricsBuilder,
    default_origin: Origin,
    buffer: Mutex<Buffer>,
    sessions: Mutex<HashMap<String, Session>>,
    flush_lock: Mutex<()>,
    last_warning: Mutex<Option<Instant>>,
    /// The database clock minus this machine's, in ms, as last measured (each flush and
    /// each read): buckets and windows follow the database clock.
    clock_offset_ms: std::sync::atomic::AtomicI64,
}

/// Collects counters, gauges and histograms and saves them, every `sync_interval` and when
/// a worker stops, into the 0.26.0 metrics tables. Identifier `chancy.metrics`, migration
/// key `metrics`; part of the default set.
///
/// Sources: every job update a worker commits (`job:<func>:<state>`,
/// `global:status:<state>`, `queue:<queue>:throughput`, `queue:<queue>:<state>` counters;
/// `job:<func>:execution_time` and `queue:<queue>:execution_time` histograms in seconds),
/// the worker's hub events [`METRICS_COUNTER`], [`METRICS_GAUGE`], [`METRICS_HISTOGRAM`]
/// (`{key, value, unit}`), the recording methods below, and on the leader every
/// `collection_interval` the sizes of chancy's tables (`table:<name>:total_size_bytes`,
/// `…:table_size_bytes`, `…:index_size_bytes` gauges).
///
/// `Metrics` is a cheap handle (clones share the buffer): keep a clone to record or flush.
///
/// ```no_run
/// use std::time::Duration;
/// use chancy::plugins::Metrics;
/// let metrics = Metrics::builder().sync_interval(Duration::from_secs(10)).build()?;
/// let chancy = chancy::Chancy::builder("postgresql://postgres@localhost/postgres")
///     .plugin(metrics.clone())
///     .build()?;
/// metrics.increment_counter("myapp:emails:sent", 1.0, "count");
/// metrics.flush(&chancy)?;
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::builder()
            .build()
            .expect("the default metrics settings are valid")
    }
}

impl Metrics {
    /// Settings, starting from upstream's defaults.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder::default()
    }

    /// How long data at `resolution` is kept: `min(points × width, maximum_metric_age)`.
    pub fn retention(&self, resolution: Resolution) -> Duration {
        Duration::from_secs(self.retention_secs(resolution.seconds()) as u64)
    }

    /// The `[start, end)` window `query` reads, in Unix seconds (as `get_metrics` uses it).
    #[cfg(feature = "web")]
    pub(crate) fn window(&self, query: &MetricsQuery) -> Result<(i64, i64)> {
        read::window(
            query,
            self.retention_secs(query.resolution.seconds()),
            self.now().timestamp(),
        )
    }

    /// Now by the database clock, as of the last measurement ([`Metrics::sync_clock`]).
    fn now(&self) -> chrono::DateTime<Utc> {
        let offset = self
            .inner
            .clock_offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        Utc::now() + chrono::Duration::milliseconds(offset)
    }

    /// Measures the database clock against this machine's (one `SELECT NOW()`), so buckets
    /// and read windows are placed by the database clock even when this machine's is off.
    fn sync_clock(&self, chancy: &Chancy) -> Result<()> {
        let before = Utc::now();
        let db = chancy.database_now()?;
        let after = Utc::now();
        let local = before + (after - before) / 2;
        self.inner.clock_offset_ms.store(
            (db - local).num_milliseconds(),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }

    fn retention_secs(&self, seconds: i64) -> i64 {
        let config = &self.inner.config;
        let points = Resolution::from_seconds(seconds)
            .map_or(1, |r| i64::from(config.max_points[r.index()]));
        let age = i64::try_from(config.maximum_metric_age.as_secs()).unwrap_or(i64::MAX);
        (points * seconds).min(age)
    }

    /// Adds `value` to the counter `key` (upstream's default unit is [`COUNTER_UNIT`]).
    /// Returns whether it was recorded: invalid keys/units/values, a type or unit other
    /// than earlier observations of `key`, and a full buffer drop it with a rate-limited
    /// warning.
    pub fn increment_counter(&self, key: &str, value: f64, unit: &str) -> bool {
        self.record(key, value, MetricType::Counter, unit, None)
    }

    /// Sets the gauge `key` to `value` (upstream's default unit is [`NUMBER_UNIT`]);
    /// returns whether it was recorded, as [`Metrics::increment_counter`].
    pub fn record_gauge(&self, key: &str, value: f64, unit: &str) -> bool {
        self.record(key, value, MetricType::Gauge, unit, None)
    }

    /// Adds an observation to the histogram `key` (upstream's default unit is
    /// [`NUMBER_UNIT`]); returns whether it was recorded, as [`Metrics::increment_counter`].
    pub fn record_histogram_value(&self, key: &str, value: f64, unit: &str) -> bool {
        self.record(key, value, MetricType::Histogram, unit, None)
    }

    /// Buckets currently buffered in memory.
    pub fn buffered_points(&self) -> usize {
        self.inner.buffer.lock().len()
    }

    fn origin_of(&self, worker_id: Option<&str>) -> Origin {
        worker_id
            .and_then(|id| self.inner.sessions.lock().get(id).map(|s| s.origin.clone()))
            .unwrap_or_else(|| self.inner.default_origin.clone())
    }

    fn record(
        &self,
        key: &str,
        value: f64,
        kind: MetricType,
        unit: &str,
        worker_id: Option<&str>,
    ) -> bool {
        self.record_values(key, &[value], kind, unit, worker_id)
    }

    /// Records several observations of one metric at once (see [`Buffer::record_many`]).
    fn record_values(
        &self,
        key: &str,
        values: &[f64],
        kind: MetricType,
        unit: &str,
        worker_id: Option<&str>,
    ) -> bool {
        let origin = self.origin_of(worker_id);
        let max = self.inner.config.max_buffered_points;
        let result =
            self.inner
                .buffer
                .lock()
                .record_many(key, values, kind, unit, &origin, self.now(), max);
        match result {
            Ok(()) => true,
            Err(why) => {
                self.warn(&match why {
                    Rejected::Invalid => "dropped an invalid metric: keys must be 1-1024 bytes, \
                                          units 1-64 characters and values finite numbers"
                        .to_string(),
                    Rejected::Conflict => {
                        format!("dropped metric {key:?} with a conflicting type or unit")
                    }
                    Rejected::Full => "the metrics buffer is full; dropping new buckets until \
                                       it can be flushed"
                        .to_string(),
                    Rejected::Overflow => format!("dropped overflowing metric {key:?}"),
                });
                false
            }
        }
    }

    /// Invalid observations must neither flood the log nor stop a worker.
    fn warn(&self, message: &str) {
        let mut last = self.inner.last_warning.lock();
        if last.map_or(true, |t| t.elapsed() >= WARNING_INTERVAL) {
            log::warn!("metrics: {message}");
            *last = Some(Instant::now());
        }
    }

    fn active_sessions(&self) -> HashSet<Uuid> {
        let mut active: HashSet<Uuid> = self
            .inner
            .sessions
            .lock()
            .values()
            .map(|s| s.origin.session)
            .collect();
        active.insert(self.inner.default_origin.session);
        active
    }

    fn prune_buffer(&self) {
        let active = self.active_sessions();
        self.inner
            .buffer
            .lock()
            .prune(self.now(), |s| self.retention_secs(s), &active);
    }

    /// Saves every buffered observation not saved yet (definitions first, then one upsert
    /// per chunk row, in batches of 250 chunks per transaction). On failure the
    /// observations stay buffered, so it can be retried.
    ///
    /// # Errors
    /// When the database is unreachable or a statement fails.
    pub fn flush(&self, chancy: &Chancy) -> Result<()> {
        let _serial = self.inner.flush_lock.lock();
        self.sync_clock(chancy)?;
        self.prune_buffer();
        let snapshot = self.inner.buffer.lock().snapshot();
        let chunks: Vec<_> = snapshot.into_iter().collect();
        for batch in chunks.chunks(store::BATCH_CHUNKS) {
            let conflicts = store::write_batch(chancy, batch)?;
            for key in conflicts {
                self.warn(&format!(
                    "dropped metric {key:?}: it conflicts with its stored definition"
                ));
            }
            let mut buffer = self.inner.buffer.lock();
            for (_, points) in batch {
                buffer.written(points);
            }
        }
        self.prune_buffer();
        Ok(())
    }

    /// Samples the sizes of chancy's tables (core tables plus every plugin's) as gauges.
    /// The service does this on the leader every `collection_interval`.
    ///
    /// # Errors
    /// When the database is unreachable or a table does not exist.
    pub fn collect_table_sizes(&self, chancy: &Chancy, worker_id: Option<&str>) -> Result<()> {
        let sizes = store::table_sizes(chancy)?;
        for (name, total, table, index) in sizes {
            for (what, value) in [
                ("total_size_bytes", total),
                ("table_size_bytes", table),
                ("index_size_bytes", index),
            ] {
                let key = format!("table:{name}:{what}");
                self.record(&key, value as f64, MetricType::Gauge, "bytes", worker_id);
            }
        }
        Ok(())
    }

    /// Reads saved metrics, combining every session and worker per bucket (counters sum,
    /// gauges latest, histograms weighted), like upstream's `get_metrics`.
    ///
    /// # Errors
    /// An invalid-input error for a window beyond retention or 1,000 buckets, or a prefix
    /// matching more than 100 keys; a database error otherwise.
    pub fn get_metrics(
        &self,
        chancy: &Chancy,
        query: &MetricsQuery,
    ) -> Result<std::collections::BTreeMap<String, Metric>> {
        let retention = self.retention_secs(query.resolution.seconds());
        self.sync_clock(chancy)?;
        read::get_metrics(chancy, query, retention, self.now().timestamp())
    }

    /// Keys of every saved metric, in order.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn list_metrics(&self, chancy: &Chancy) -> Result<Vec<String>> {
        read::list_metrics(chancy)
    }

    fn handle_event(&self, event: &Event, worker_id: &str) {
        let Some(kind) = EVENTS
            .iter()
            .find(|(name, _)| *name == event.name)
            .map(|(_, k)| *k)
        else {
            return;
        };
        let key = event.body.get("key").and_then(Value::as_str).unwrap_or("");
        // A JSON bool is not a number, as upstream rejects bools.
        let value = event
            .body
            .get("value")
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let unit = event
            .body
            .get("unit")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .unwrap_or(if kind == MetricType::Counter {
                COUNTER_UNIT
            } else {
                NUMBER_UNIT
            });
        self.record(key, value, kind, unit, Some(worker_id));
    }

    /// Whether the worker's timer `pick` is due (with half a tick of slack); resets it if so.
    fn due(
        &self,
        worker_id: &str,
        period: Duration,
        pick: fn(&mut Session) -> &mut Instant,
    ) -> bool {
        let tick = self.tick();
        let mut sessions = self.inner.sessions.lock();
        let Some(session) = sessions.get_mut(worker_id) else {
            return true;
        };
        let last = pick(session);
        if last.elapsed() + tick / 2 >= period {
            *last = Instant::now();
            true
        } else {
            false
        }
    }

    fn tick(&self) -> Duration {
        let c = &self.inner.config;
        c.sync_interval.min(c.collection_interval)
    }

    fn register(&self, ctx: &PluginContext) {
        let id = ctx.worker_id().to_string();
        if self.inner.sessions.lock().contains_key(&id) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let handlers = EVENTS
            .iter()
            .map(|(name, _)| {
                let weak = weak.clone();
                let worker_id = id.clone();
                ctx.hub().on(name, move |e| {
                    if let Some(inner) = weak.upgrade() {
                        Metrics { inner }.handle_event(e, &worker_id);
                    }
                })
            })
            .collect();
        let session = Session {
            origin: Origin {
                session: Uuid::new_v4(),
                worker_id: id.clone(),
            },
            handlers,
            last_flush: Instant::now(),
            last_collection: Instant::now(),
        };
        self.inner.sessions.lock().insert(id, session);
    }
}

impl Plugin for Metrics {
    fn identifier(&self) -> &'static str {
        METRICS
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&METRICS_MIGRATIONS)
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["metrics", "metric_definitions"]
    }

    /// Wakes every `min(sync_interval, collection_interval)`.
    fn interval(&self) -> Option<Duration> {
        Some(self.tick())
    }

    /// Table sizes (leader only) when `collection_interval` is due, then a flush when
    /// `sync_interval` is due.
    fn run_once(&self, ctx: &PluginContext) -> Result<()> {
        let id = ctx.worker_id();
        let c = &self.inner.config;
        // Not a leader-only plugin: every worker flushes its own observations; only the
        // table sizes (one reading for the whole database) are the leader's.
        if self.due(id, c.collection_interval, |s| &mut s.last_collection) && ctx.is_leader() {
            if let Err(err) = self.collect_table_sizes(ctx.chancy(), Some(id)) {
                log::error!("metrics: could not collect table sizes: {err}");
            }
        }
        if self.due(id, c.sync_interval, |s| &mut s.last_flush) {
            self.flush(ctx.chancy())?;
        }
        Ok(())
    }

    /// Gives the worker its own session and subscribes to its `metrics.*` events.
    fn on_worker_started(&self, ctx: &PluginContext) -> Result<()> {
        if let Err(err) = self.sync_clock(ctx.chancy()) {
            log::warn!("metrics: cannot read the database clock yet ({err}); using this machine's until the first flush");
        }
        self.register(ctx);
        Ok(())
    }

    /// Saves what is buffered, then ends the worker's session. If the flush fails, the
    /// session and its observations stay for a retry.
    fn on_worker_stopped(&self, ctx: &PluginContext) {
        if let Err(err) = self.flush(ctx.chancy()) {
            log::error!("metrics: the final flush failed; observations stay buffered: {err}");
            return;
        }
        let session = self.inner.sessions.lock().remove(ctx.worker_id());
        if let Some(session) = session {
            for id in session.handlers {
                ctx.hub().remove(id);
            }
        }
        self.prune_buffer();
    }

    /// Counts the update and, for a finished run, its execution time.
    fn on_job_updated(&self, job: &QueuedJob) {
        self.on_jobs_updated(&[job]);
    }

    /// [`Plugin::on_job_updated`] for a whole batch: the observations of every job,
    /// grouped by metric key (in first-seen order), each key recorded once with all its
    /// values. Same buckets as one record per observation, a fraction of the hashing.
    fn on_jobs_updated(&self, jobs: &[&QueuedJob]) {
        let mut order: Vec<(String, Option<&str>)> = Vec::new();
        let mut groups: HashMap<(String, Option<&str>), Group> = HashMap::new();
        for job in jobs {
            let worker = job.taken_by.as_deref();
            for (key, kind, unit, value) in job_observations(job) {
                let slot = (key, worker);
                match groups.get_mut(&slot) {
                    Some(group) => group.2.push(value),
                    None => {
                        order.push(slot.clone());
                        groups.insert(slot, (kind, unit, vec![value]));
                    }
                }
            }
        }
        for slot in order {
            if let Some((kind, unit, values)) = groups.remove(&slot) {
                self.record_values(&slot.0, &values, kind, unit, slot.1);
            }
        }
    }

    /// Deletes up to 10,000 expired chunk rows and up to 1,000 orphaned definitions;
    /// returns the number of chunk rows deleted.
    fn cleanup(&self, chancy: &Chancy) -> Result<Option<u64>> {
        let cutoffs: Vec<(i32, i64)> = Resolution::ALL
            .iter()
            .map(|r| {
                let s = r.seconds();
                let now = buffer::bucket_start(self.now().timestamp(), s);
                let cutoff = now + s - self.retention_secs(s);
                (
                    s as i32,
                    buffer::chunk_start(buffer::bucket_start(cutoff, s), s),
                )
            })
            .collect();
        let removed = store::cleanup(chancy, &cutoffs)?;
        Ok((removed > 0).then_some(removed))
    }
}

/// The observations of one metric key in a batch: type, unit, values in order.
type Group = (MetricType, &'static str, Vec<f64>);

/// What one job update adds to the metrics (upstream's keys): its execution time for a
/// finished run, and a count per state, function and queue.
fn job_observations(job: &QueuedJob) -> Vec<(String, MetricType, &'static str, f64)> {
    let state = job.state.as_str();
    let mut out = Vec::with_capacity(6);
    if let (Some(start), Some(end)) = (job.started_at, job.completed_at) {
        let secs = (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        for key in [
            format!("job:{}:execution_time", job.func),
            format!("queue:{}:execution_time", job.queue),
        ] {
            out.push((key, MetricType::Histogram, "seconds", secs));
        }
    }
    for key in [
        format!("job:{}:{state}", job.func),
        format!("global:status:{state}"),
        format!("queue:{}:throughput", job.queue),
        format!("queue:{}:{state}", job.queue),
    ] {
        out.push((key, MetricType::Counter, COUNTER_UNIT, 1.0));
    }
    out
}
