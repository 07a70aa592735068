//! `chancy worker start` and `chancy worker list`.

use std::time::Duration;

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::args;
use super::plugins::{self, Intervals};
use super::table::Table;
use crate::app::{DEFAULT_HORIZON_WARN_AFTER, DEFAULT_MAX_POOL_SIZE};
use crate::error::{Error, Result};
use crate::prometheus::{MetricsServer, Prometheus};
use crate::worker::{
    Registry, Worker, DEFAULT_CANCELLATION_POLL_INTERVAL, DEFAULT_HEARTBEAT_POLL_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_HORIZON_CHECK_INTERVAL, DEFAULT_QUEUE_CHANGE_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_TIMEOUT,
};
use crate::{Chancy, ChancyBuilder};

/// The `worker` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Run a worker until Ctrl-C or SIGTERM (a second signal forces the exit).
    #[command(
        after_help = "The worker serves every queue whose tags match its own and runs the \
built-in handlers (chancy.builtin.noop, .sleep, .fail, .echo) plus any the embedding \
program registered. It exits 0 after a clean stop, 1 if jobs were still running at \
--shutdown-timeout or the schema needs `chancy migrate`.\n\n\
Examples:\n  \
chancy worker start\n  \
chancy worker start --worker-id web-1 --tags has=gpu --tags region=eu\n  \
chancy worker start --transaction-pooling   (behind PgBouncer pool_mode = transaction)\n  \
chancy worker start --max-connection-pool-size 4   (at most 4 + 1 listener connections)\n  \
chancy worker start --plugins leadership,recovery,workflow,cron --cron-poll-interval 5\n  \
chancy worker start --plugins none\n  \
chancy worker start --metrics-addr 127.0.0.1:9464   (Prometheus /metrics, /health, /ready)\n\n\
Plugins (--plugins, comma-separated; identifiers such as chancy.cron work too):\n  \
leadership  elects one leader (the leader-only plugins below need it)\n  \
pruner      deletes finished jobs older than a day (leader)\n  \
recovery    puts jobs of vanished workers back to pending (leader)\n  \
workflow    runs workflows (leader; tables from `chancy migrate`)\n  \
cron        pushes scheduled jobs (tables from `chancy migrate --plugin cron`)\n  \
retry       delays retries with backoff (job meta retry_settings)\n  \
trigger     owns the triggers table (`chancy migrate --plugin trigger`)\n\
Without --plugins: leadership,pruner,recovery,workflow."
    )]
    Start(Box<StartArgs>),
    /// Show the live workers: id, leader, last heartbeat, queues and tags.
    #[command(after_help = "Example:\n  chancy worker list")]
    List,
}

/// Arguments of `worker start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The worker's id [default: a random UUID].
    #[arg(long, short = 'w', value_name = "ID")]
    pub worker_id: Option<String>,
    /// Extra worker tags matched by queue tag regexes (repeatable), e.g. `has=gpu`.
    #[arg(long = "tags", short = 't', value_name = "T")]
    pub tags: Vec<String>,
    /// Seconds between heartbeats (upstream 30).
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_HEARTBEAT_POLL_INTERVAL))]
    pub heartbeat_poll_interval: Duration,
    /// Seconds without a heartbeat after which this worker counts as gone (upstream 90).
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_HEARTBEAT_TIMEOUT))]
    pub heartbeat_timeout: Duration,
    /// Seconds between re-reads of the queues table (queue events also trigger one).
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_QUEUE_CHANGE_POLL_INTERVAL))]
    pub queue_change_poll_interval: Duration,
    /// Seconds between reads of the running jobs' claims when no NOTIFY arrives
    /// (--transaction-pooling or --no-notifications): how soon a cancelled job is stopped.
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_CANCELLATION_POLL_INTERVAL))]
    pub cancellation_poll_interval: Duration,
    /// Seconds running jobs get to finish after the first stop signal.
    #[arg(long, value_parser = args::seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_SHUTDOWN_TIMEOUT))]
    pub shutdown_timeout: Duration,
    /// Most pooled connections of this worker (the fetch scheduler, the writer, the
    /// heartbeat, the plugins and the metrics listener share them). The worker's connection
    /// budget is this + 1 listener (none with --no-notifications); at least 2 is sensible.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_POOL_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_connection_pool_size: u32,
    /// Do not LISTEN/NOTIFY; rely on polling alone. (Behind a transaction-pooling proxy use
    /// the global `--transaction-pooling` instead.)
    #[arg(long)]
    pub no_notifications: bool,
    /// `synchronous_commit = off` on this worker's claim and outcome connections: commits
    /// do not wait for the WAL flush. Still at-least-once; see the README's tuning notes.
    #[arg(long)]
    pub async_commit: bool,
    /// Comma-separated plugins to run (short names or identifiers), or `none`
    /// [default: leadership,pruner,recovery,workflow].
    #[arg(long, value_name = "LIST")]
    pub plugins: Option<String>,
    /// Seconds between leader elections (leadership plugin) [default: 5].
    #[arg(long, value_parser = args::positive_seconds, value_name = "S")]
    pub leadership_poll_interval: Option<Duration>,
    /// Seconds a leader lease lasts without renewal (leadership plugin; at least the poll
    /// interval) [default: 15].
    #[arg(long, value_parser = args::positive_seconds, value_name = "S")]
    pub leadership_timeout: Option<Duration>,
    /// Seconds between the leader's looks for abandoned jobs in the declared queues (recovery
    /// plugin; every 60 s it looks at all running jobs) [default: 5].
    #[arg(long, value_parser = args::positive_seconds, value_name = "S")]
    pub recovery_poll_interval: Option<Duration>,
    /// Seconds between the leader's pruning passes (pruner plugin) [default: 60].
    #[arg(long, value_parser = args::positive_seconds, value_name = "S")]
    pub pruner_poll_interval: Option<Duration>,
    /// Seconds between looks for due schedules (cron plugin) [default: 60].
    #[arg(long, value_parser = args::positive_seconds, value_name = "S")]
    pub cron_poll_interval: Option<Duration>,
    /// Seconds between sweeps over all active workflows, besides the event-driven
    /// scheduling (workflow plugin) [default: 30].
    #[arg(long, value_parser = args::positive_seconds, value_name = "S")]
    pub workflow_poll_interval: Option<Duration>,
    /// Seconds between the leader's looks for sessions holding back the xmin horizon.
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_HORIZON_CHECK_INTERVAL))]
    pub horizon_check_interval: Duration,
    /// Warn about a session whose transaction has held a snapshot this many seconds.
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = args::seconds_text(DEFAULT_HORIZON_WARN_AFTER))]
    pub horizon_warn_after: Duration,
    /// Serve Prometheus `/metrics`, `/health` and `/ready` on this address (`HOST:PORT`, or
    /// just `PORT` for 127.0.0.1). No authentication: keep it on loopback or a private
    /// network.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Also serve the dashboard and JSON API (credentials from CHANCY_WEB_USERNAME,
    /// CHANCY_WEB_PASSWORD, CHANCY_WEB_SECRET; a random password is printed when unset).
    #[arg(long)]
    pub web: bool,
    /// Address of the dashboard with --web.
    #[arg(long, value_name = "HOST", default_value = crate::web::DEFAULT_HOST)]
    pub web_host: String,
    /// Port of the dashboard with --web (0 = any free port).
    #[arg(long, value_name = "PORT", default_value_t = crate::web::DEFAULT_PORT)]
    pub web_port: u16,
}

impl StartArgs {
    /// The plugin interval flags.
    pub(crate) fn intervals(&self) -> Intervals {
        Intervals {
            leadership_poll: self.leadership_poll_interval,
            leadership_timeout: self.leadership_timeout,
            recovery_poll: self.recovery_poll_interval,
            pruner_poll: self.pruner_poll_interval,
            cron_poll: self.cron_poll_interval,
            workflow_poll: self.workflow_poll_interval,
        }
    }

    /// The application for these flags: no default plugins, exactly the chosen ones (so
    /// the migration keys checked at start follow them).
    pub(crate) fn app(&self, base: ChancyBuilder) -> Result<Chancy> {
        let names = plugins::parse_list(self.plugins.as_deref())?;
        let base = match self.metrics_addr.is_some() || self.web {
            true => base.plugin(Prometheus::for_worker()),
            false => base,
        };
        plugins::add_all(
            base.notifications(!self.no_notifications)
                .max_connection_pool_size(self.max_connection_pool_size)
                .no_default_plugins(),
            &names,
            &self.intervals(),
        )?
        .build()
    }
}

pub(super) fn start(chancy: &Chancy, a: &StartArgs, registry: Registry) -> Result<i32> {
    // Signals are held for the worker since `cli::run` parsed the command line.
    let mut builder = Worker::builder(chancy)
        .tags(a.tags.iter().cloned())
        .heartbeat_poll_interval(a.heartbeat_poll_interval)
        .heartbeat_timeout(a.heartbeat_timeout)
        .queue_change_poll_interval(a.queue_change_poll_interval)
        .cancellation_poll_interval(a.cancellation_poll_interval)
        .shutdown_timeout(a.shutdown_timeout)
        .synchronous_commit(!a.async_commit)
        .horizon_check(a.horizon_check_interval, a.horizon_warn_after)
        .register_signal_handlers(true)
        .panic_hook(true)
        .registry(super::builtin_registry().merge(registry));
    if let Some(id) = &a.worker_id {
        builder = builder.worker_id(id);
    }
    let worker = builder.build()?;
    // One line naming the `chancy migrate` command(s) for the chosen plugins' tables.
    plugins::ensure_keys(chancy, &chancy.migration_keys())?;
    // Bound before the worker starts, so a busy port fails the command cleanly.
    let web = match a.web {
        true => Some(super::web::for_worker(chancy, &a.web_host, a.web_port)?),
        false => None,
    };
    let metrics = match &a.metrics_addr {
        Some(addr) => Some(MetricsServer::start(&metrics_addr(addr), chancy)?),
        None => None,
    };
    worker.start()?;
    let names: Vec<&str> = chancy.plugins().iter().map(|p| p.identifier()).collect();
    // (Not when a signal already stopped it during the start.)
    if !worker.shutdown_event().is_set() {
        log::info!(
            "worker {} serving {} handler(s) with plugins [{}]; Ctrl-C or SIGTERM stops it",
            worker.worker_id(),
            worker.registry().names().len(),
            names.join(", ")
        );
    }
    worker.wait_for_shutdown();
    if let Some(server) = web {
        server.stop();
    }
    if let Some(server) = metrics {
        server.stop();
    }
    // Returns the outcome of the stop the signal started.
    if worker.stop() {
        Ok(0)
    } else {
        Err(Error::timeout(format!(
            "jobs were still running after the {:?} shutdown timeout; they stay `running` until \
             recovery picks them up",
            a.shutdown_timeout
        )))
    }
}

/// `PORT` alone means loopback: `127.0.0.1:PORT`.
fn metrics_addr(addr: &str) -> String {
    match addr.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => addr.to_string(),
    }
}

pub(super) fn list(chancy: &Chancy) -> Result<i32> {
    let workers = chancy.get_all_workers()?;
    let mut t = Table::new(&["WORKER", "LEADER", "LAST SEEN", "QUEUES", "TAGS"]);
    for w in &workers {
        let mut tags: Vec<&str> = w
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| {
                *t != "*"
                    && !t.starts_with("worker_id=")
                    && !t.starts_with(crate::worker::SESSION_TAG_PREFIX)
            })
            .collect();
        tags.sort_unstable();
        t.row(vec![
            w.worker_id.clone(),
            if w.is_leader { "yes" } else { "no" }.into(),
            w.last_seen.to_rfc3339_opts(SecondsFormat::Secs, true),
            w.queues.join(","),
            tags.join(","),
        ]);
    }
    if t.is_empty() {
        outln!("no live workers");
    } else {
        t.print();
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    use super::*;

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["chancy", "worker", "start"]).unwrap();
        let Command::Worker(WorkerCommand::Start(a)) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(a.heartbeat_poll_interval, DEFAULT_HEARTBEAT_POLL_INTERVAL);
        assert_eq!(a.heartbeat_timeout, DEFAULT_HEARTBEAT_TIMEOUT);
        assert_eq!(
            a.queue_change_poll_interval,
            DEFAULT_QUEUE_CHANGE_POLL_INTERVAL
        );
        assert_eq!(a.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(
            a.cancellation_poll_interval,
            DEFAULT_CANCELLATION_POLL_INTERVAL
        );
        assert_eq!(a.max_connection_pool_size, DEFAULT_MAX_POOL_SIZE);
        assert_eq!(a.horizon_check_interval, DEFAULT_HORIZON_CHECK_INTERVAL);
        assert_eq!(a.horizon_warn_after, DEFAULT_HORIZON_WARN_AFTER);
    }
}
