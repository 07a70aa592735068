//! # chancy
//!
//! A Postgres-backed job queue and worker for synchronous Rust, schema- and wire-compatible
//! with Python [Chancy](https://github.com/TkTech/chancy) 0.26.0: Python and Rust
//! producers and workers can share one database.
//!
//! No async runtime: a [`Worker`] is a set of OS threads.
//!
//! ```text
//!  application threads ── Chancy (r2d2 pool) ── push / push_many / push_in / declare / cancel_job
//!                                                      │ NOTIFY <prefix>events
//!  Worker ──────────────────────────────────────────────────────────────────────────────
//!   chancy-listener     own connection, LISTEN, reconnects with backoff ─► Hub (events)
//!   chancy-heartbeat    announce_worker every heartbeat_poll_interval
//!   chancy-queues       on queue.* events / every queue_change_poll_interval: one runner per queue
//!   chancy-fetch(-1)    two fetch threads for every queue: on NOTIFY | freed slots |
//!                       polling_interval claims exactly a queue's free slots, on a
//!                       connection borrowed from the pool ─► the queue's executor threads
//!   chancy-exec-<q>     run handlers (catch_unwind, deadline, cancel flag) ─► writer;
//!                       started on demand up to the queue's concurrency, retired when idle
//!   chancy-writer       one fenced UPDATE per batch, retries, flushes at stop
//!   chancy-plugin-<id>  plugin services (leadership, recovery, pruner, ...)
//!   chancy-horizon      on the leader: warn about sessions holding back the xmin horizon
//!  prometheus::MetricsServer (optional) ──────────────────────────────────────────────────
//!   chancy-metrics      /metrics, /health, /ready (tiny blocking listener, no auth)
//!  web::WebServer (optional) ─────────────────────────────────────────────────────────────
//!   chancy-web          HTTP edge (hyper on a one-thread tokio runtime): limits, timeouts,
//!                       /api/v1/ws event stream
//!   chancy-web-<n>      dashboard + JSON API handlers (blocking, complete requests only)
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use serde_json::json;
//! use chancy::{Chancy, Job, JobContext, JobError, Queue, Worker};
//!
//! let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
//! chancy.migrate()?;
//! chancy.declare(&Queue::new("emails").concurrency(4).polling_interval(Duration::from_secs(1)))?;
//! let r = chancy.push(&Job::new("myapp.send_email").queue("emails").kwargs(json!({"to": "a@b"})))?;
//!
//! let worker = Worker::builder(&chancy)
//!     .job("myapp.send_email", |ctx: &JobContext| -> Result<(), JobError> {
//!         let to: String = ctx.job().kwargs["to"].as_str().unwrap_or_default().into();
//!         ctx.set_meta("sent_to", json!(to));
//!         Ok(())
//!     })
//!     .build()?;
//! worker.start()?;
//! let job = chancy.wait_for_job(&r, Duration::from_secs(10))?;
//! worker.stop();
//! # Ok::<(), chancy::Error>(())
//! ```
//!
//! ## Typed jobs
//!
//! A [`JobArgs`] type names its job's `func` once and carries its kwargs with serde; push it
//! with [`Chancy::push_args`] or [`Job::from_args`], handle it with [`WorkerBuilder::handle`].
//! The wire is unchanged (`func` string + JSON kwargs), so Python producers and workers see
//! an ordinary job. See `examples/typed_jobs.rs`.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use chancy::{Chancy, JobArgs, JobContext, JobError, Worker};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail { to: String }
//!
//! impl JobArgs for SendEmail {
//!     const FUNC: &'static str = "myapp.tasks.send_email";
//! }
//!
//! let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
//! chancy.push_args(&SendEmail { to: "a@example.com".into() })?;
//! let worker = Worker::builder(&chancy)
//!     .handle(|ctx: &JobContext, args: SendEmail| -> Result<(), JobError> {
//!         ctx.set_meta("sent_to", serde_json::json!(args.to));
//!         Ok(())
//!     })
//!     .build()?;
//! # Ok::<(), chancy::Error>(())
//! ```
//!
//! ## Layers
//!
//! Each layer imports only the ones below it (checked with an import-graph tool; no
//! circles between files or folders):
//!
//! ```text
//!  cli           the `chancy` binary's commands
//!  web           dashboard + /api/v1 (and prometheus' /metrics server)
//!  builder       ChancyBuilder: settings + your plugins + upstream's default set
//!  plugins       Leadership, Pruner, Recovery, Metrics, WorkflowPlugin, Cron, ...
//!  worker        the threads; the plugin API (Plugin, PluginContext) it runs
//!  client        Chancy (app/): pool, producer and admin calls, migrations; it carries
//!                the configured plugins without knowing their trait
//!  model         job, queue, id, error, prefix, sql, events, migrate, pool
//! ```
//!
//! A plugin sees the worker only through [`PluginContext`] and declares its own
//! [`migrations`](Plugin::migrations) and whether it is [`leader_only`](Plugin::leader_only).
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | [`cli`]: the `chancy` binary's commands (clap, env_logger); turns on `web`, `prometheus`, `cron`, `pgtemp` |
//! | `web` | via `cli` | [`web`]: the dashboard and `/api/v1` JSON API server (hyper, tokio); turns on `cron`, `prometheus` |
//! | `prometheus` | via `cli` | [`prometheus`]: the Prometheus plugin and its `/metrics` server |
//! | `cron` | via `cli` | [`plugins::Cron`] (croner, chrono-tz); the cron tables are migrated either way |
//! | `pgtemp` | via `cli` | [`pgtemp`]: a private throwaway PostgreSQL for demos and tests |
//!
//! With `default-features = false` you get the producer ([`Chancy`]), the [`Worker`] and
//! every other plugin.
//!
//! ## Stability
//!
//! Enums and structs that may grow are `#[non_exhaustive]` (match them with a `_` arm;
//! build structs such as [`WaitOptions`] or [`JobFilter`] with their constructors). The
//! worker's step-by-step methods for benchmarks and tools live in [`tooling`], which is
//! outside the semver promise. Names that are part of the wire contract with Python Chancy
//! (job states, event names, executor class paths, migration keys) are public constants;
//! tuning defaults are documented on their setters instead.
#![warn(missing_docs)]

mod app;
mod builder;
#[cfg(feature = "cli")]
pub mod cli;
mod connect;
mod duration;
mod error;
pub mod events;
mod id;
mod job;
#[cfg(feature = "web")]
mod json;
pub mod migrate;
#[cfg(feature = "pgtemp")]
pub mod pgtemp;
pub mod plugins;
mod pool;
mod prefix;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod queue;
mod signals;
mod sql;
mod sync;
pub mod tooling;
mod typed;
mod unnamed;
#[cfg(feature = "web")]
pub mod web;
mod worker;

pub use app::{
    Chancy, HorizonHolder, JobFilter, JobOutcome, QueueListing, UnreadableQueue, WaitOptions,
    WorkerInfo, DEFAULT_DATABASE_URL,
};
pub use builder::ChancyBuilder;
pub use error::{Error, ErrorKind, Result};
pub use id::new_job_id;
pub use job::{
    ErrorRecord, Job, JobState, JsonObject, Limit, LimitKind, QueuedJob, Reference, MAX_FUNC_LEN,
    MAX_UNIQUE_KEY_LEN,
};
pub use migrate::MigrationStatus;
pub use plugins::{
    ImmediateLeadership, Leadership, Pruner, Recovery, Reprioritize, RetryPlugin, RetrySettings,
    Rule,
};
pub use pool::{Conn, ConnectionManager, PooledConn};
pub use prefix::Prefix;
pub use queue::{
    Queue, QueueState, ASYNC_EXECUTOR, PROCESS_EXECUTOR, SUB_INTERPRETER_EXECUTOR,
    THREADED_EXECUTOR,
};
pub use typed::JobArgs;
/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use worker::{
    check_dependencies, run_child_if_requested, Event, Flag, Handler, HandlerId, Hub, JobContext,
    JobError, JobErrorKind, Manager, Plugin, PluginContext, Registry, ServiceInfo, ServiceState,
    Worker, WorkerBuilder, CHILD_ENV, HORIZON_HELD_BACK, LISTENER_RECONNECTED, QUEUE_FULL,
    QUEUE_POLLED, QUEUE_REMOVED, QUEUE_STARTED, QUEUE_UPDATED, SERVICE_PASSED, WORKER_PING,
    WORKER_SHUTDOWN_TIMEOUT, WORKER_STARTED, WORKER_STOPPED,
};
