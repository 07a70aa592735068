//! `chancy worker start` and `chancy worker list`.

use std::time::Duration;

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::args;
use super::table::Table;
use crate::error::{Error, Result};
use crate::worker::{Registry, Worker};
use crate::Chancy;

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
chancy worker start --shutdown-timeout 60 --no-notifications   (behind pgbouncer)"
    )]
    Start(StartArgs),
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
    /// Seconds between heartbeats.
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = "30")]
    pub heartbeat_poll_interval: Duration,
    /// Seconds without a heartbeat after which this worker counts as gone.
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = "90")]
    pub heartbeat_timeout: Duration,
    /// Seconds between re-reads of the queues table (queue events also trigger one).
    #[arg(long, value_parser = args::positive_seconds, value_name = "S",
          default_value = "10")]
    pub queue_change_poll_interval: Duration,
    /// Seconds running jobs get to finish after the first stop signal.
    #[arg(long, value_parser = args::seconds, value_name = "S",
          default_value = "30")]
    pub shutdown_timeout: Duration,
    /// Do not LISTEN/NOTIFY (for transaction-pooling proxies); rely on polling alone.
    #[arg(long)]
    pub no_notifications: bool,
}

pub(super) fn start(chancy: &Chancy, a: &StartArgs, registry: Registry) -> Result<i32> {
    let mut builder = Worker::builder(chancy)
        .tags(a.tags.iter().cloned())
        .heartbeat_poll_interval(a.heartbeat_poll_interval)
        .heartbeat_timeout(a.heartbeat_timeout)
        .queue_change_poll_interval(a.queue_change_poll_interval)
        .shutdown_timeout(a.shutdown_timeout)
        .register_signal_handlers(true)
        .registry(super::builtin_registry().merge(registry));
    if let Some(id) = &a.worker_id {
        builder = builder.worker_id(id);
    }
    let worker = builder.build()?;
    if !chancy.is_up_to_date()? {
        // Only the one-line "run `chancy migrate`" error, without the warnings before it.
        log::set_max_level(log::LevelFilter::Error);
        chancy.ensure_migrated()?;
    }
    worker.start()?;
    log::info!(
        "worker {} serving {} handler(s); Ctrl-C or SIGTERM stops it",
        worker.worker_id(),
        worker.registry().names().len()
    );
    worker.wait_for_shutdown();
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

pub(super) fn list(chancy: &Chancy) -> Result<i32> {
    let workers = chancy.get_all_workers()?;
    let mut t = Table::new(&["WORKER", "LEADER", "LAST SEEN", "QUEUES", "TAGS"]);
    for w in &workers {
        let mut tags: Vec<&str> = w
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "*" && !t.starts_with("worker_id="))
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
        println!("no live workers");
    } else {
        t.print();
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::{
        DEFAULT_HEARTBEAT_POLL_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT,
        DEFAULT_QUEUE_CHANGE_POLL_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT,
    };

    use super::WorkerCommand;

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
    }
}
