//! The `chancy` command line, embeddable in your own binary with your own job handlers:
//!
//! ```no_run
//! use chancy::{Registry, JobContext};
//! fn main() {
//!     let registry = Registry::new().job("myapp.hello", |_ctx: &JobContext| Ok(()));
//!     std::process::exit(chancy::cli::run(registry));
//! }
//! ```
//!
//! `worker start` and `demo` run the handlers of that registry plus the built-in ones
//! ([`builtin_registry`]); yours win on a name clash.

// All output to stdout goes through `out!`/`outln!` (see `out`), which survive a reader
// that went away.
#![deny(clippy::print_stdout)]

#[macro_use]
mod out;
mod args;
mod bench;
mod builtins;
mod cron;
mod demo;
mod job;
mod migrate;
mod plugins;
mod queue;
mod table;
mod web;
mod worker;
mod workflow;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::pgtemp::{self, TempPostgres};
use crate::worker::Registry;
use crate::{Chancy, ChancyBuilder, DEFAULT_DATABASE_URL};

pub use builtins::{builtin_registry, ECHO, FAIL, NOOP, SLEEP};
pub use job::{
    EXIT_CONFLICT, EXIT_NOT_APPLICABLE, EXIT_NOT_FOUND, WAIT_FAILED, WAIT_SUCCEEDED, WAIT_TIMEOUT,
};

// The clap-derived argument types stay inside the crate, so clap's major version is not
// part of chancy's public API: an embedding program calls `run` (all it needs).
use cron::CronCommand;
use job::JobCommand;
use queue::QueueCommand;
use worker::WorkerCommand;
use workflow::WorkflowCommand;

/// Exit code of every command that failed with an error (printed as one `error: …` line).
pub const EXIT_ERROR: i32 = 1;

const AFTER_HELP: &str = "\
Examples:
  chancy demo                                    a 5-second tour on private tables
  chancy migrate                                 create or upgrade the schema
  chancy queue declare emails --concurrency 4
  chancy job push chancy.builtin.echo --queue emails --kwargs '{\"hi\": 1}'
  chancy worker start --tags has=smtp
  chancy job list --state failed
  chancy migrate --plugin cron && chancy cron schedule '0 * * * *' myapp.hourly --unique-key hourly

Every command takes --database-url (or $DATABASE_URL), --prefix and --transaction-pooling
(behind PgBouncer pool_mode = transaction). Errors print one line
`error: …` on stderr and exit non-zero.";

/// `chancy` — operate a Postgres job queue compatible with Python Chancy 0.26.0.
#[derive(Debug, Parser)]
#[command(name = "chancy", version, about, long_about = None, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Database URL (default: $DATABASE_URL, else postgresql://postgres@localhost/postgres;
    /// when nothing answers there, `demo` and `bench` start a private throwaway PostgreSQL).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Table prefix.
    #[arg(long, global = true, default_value = crate::Prefix::DEFAULT)]
    pub prefix: String,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The database URL is a transaction-pooling proxy (PgBouncer `pool_mode = transaction`):
    /// no LISTEN (workers find jobs by polling), no session settings, no named prepared
    /// statements. Not needed for session pooling or a direct connection.
    #[arg(long, global = true)]
    pub transaction_pooling: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or upgrade (or, with --to-version, downgrade) the schema.
    #[command(after_help = "Examples:\n  \
        chancy migrate\n  \
        chancy migrate --plugin cron\n  \
        chancy migrate --to-version 0      (drops the core tables)")]
    Migrate(migrate::MigrateArgs),
    /// Show, per migration key, the recorded and the latest version (exit 1 when behind).
    #[command(after_help = "Example:\n  chancy check-migrations || chancy migrate")]
    CheckMigrations,
    /// Declare, list, inspect, pause, resume and delete queues.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        chancy queue declare emails --concurrency 4\n  \
        chancy queue list\n  \
        chancy queue pause emails --resume-in 600"
    )]
    Queue(QueueCommand),
    /// Push, inspect, list, cancel, retry and wait for jobs.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        chancy job push chancy.builtin.sleep --kwargs '{\"seconds\": 2}'\n  \
        chancy job list --state failed\n  \
        chancy job wait <ID> --timeout 30"
    )]
    Job(JobCommand),
    /// Run a worker, or list the live workers.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        chancy worker start --tags has=gpu\n  \
        chancy worker list"
    )]
    Worker(WorkerCommand),
    /// Schedule jobs on cron expressions (needs `chancy migrate --plugin cron`).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        chancy migrate --plugin cron\n  \
        chancy cron schedule '*/5 * * * *' chancy.builtin.noop --unique-key tick\n  \
        chancy cron list\n  \
        chancy cron unschedule tick\n  \
        chancy worker start --plugins leadership,pruner,recovery,workflow,cron"
    )]
    Cron(CronCommand),
    /// List and inspect workflows (DAGs of jobs pushed by programs).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        chancy workflow list --state running\n  \
        chancy workflow get <ID>"
    )]
    Workflow(WorkflowCommand),
    /// A zero-config tour on private tables (the prefix + demo_ + a run id): migrate, declare a queue, push
    /// a mix of jobs, run a worker, print a summary, clean up.
    #[command(after_help = "Examples:\n  \
        chancy demo\n  \
        chancy demo --jobs 1000\n  \
        chancy demo --keep     (then: chancy --prefix <printed prefix> job list)")]
    Demo(demo::DemoArgs),
    /// Measure push and drain throughput and push→start latency on private tables.
    #[command(after_help = "Example:\n  chancy bench --jobs 20000 --concurrency 16")]
    Bench(bench::BenchArgs),
    /// Serve the dashboard and its JSON API (login required; loopback by default).
    #[command(after_help = "Examples:\n  \
        chancy web                                 http://127.0.0.1:8000/, password printed\n  \
        CHANCY_WEB_PASSWORD=s3cret chancy web --port 9000\n  \
        chancy web --host 0.0.0.0 --allow-origin https://ops.example.com   (behind TLS)")]
    Web(web::WebArgs),
}

/// Whether the process arguments name `worker start` (`worker` followed later by `start`),
/// checked before clap parses them so signals can be held from the first instruction.
fn looks_like_worker_start() -> bool {
    let mut args = std::env::args_os().skip(1);
    args.any(|a| a == "worker") && args.any(|a| a == "start")
}

/// Parses the process arguments, runs the command and returns the exit code. Errors are
/// printed as one line on stderr (`error: …`) and give [`EXIT_ERROR`]; usage errors are
/// reported by clap (exit 2).
pub fn run(registry: Registry) -> i32 {
    let held = looks_like_worker_start() && std::env::var_os(crate::CHILD_ENV).is_none();
    if held {
        // First thing, before the command line is even parsed: from here on a SIGINT/SIGTERM
        // stops the worker gracefully, even one that arrives before the worker registers its
        // handlers (while logging starts, the pool is built or the web server binds): it is
        // kept and delivered when the worker registers. (Parsed as something else after all,
        // the hold is released below.)
        if let Err(err) = crate::signals::hold_for_target() {
            eprintln!("error: {err}");
            return EXIT_ERROR;
        }
    }
    crate::run_child_if_requested(&builtin_registry().merge(registry.clone()));
    let cli = Cli::parse();
    if held && !matches!(cli.command, Command::Worker(WorkerCommand::Start(_))) {
        crate::signals::release_hold();
    }
    init_logging(&cli);
    let code = match dispatch(&cli, registry) {
        Ok(code) => code,
        Err(err) if err.is_unavailable() => {
            eprintln!("error: {err} (pass --database-url or set DATABASE_URL to use another server; only `chancy demo` and `chancy bench` start a private one)");
            EXIT_ERROR
        }
        Err(err) => {
            eprintln!("error: {err}");
            EXIT_ERROR
        }
    };
    match out::finish() {
        Some(e) if code == 0 => {
            eprintln!("error: cannot write to stdout: {e}");
            EXIT_ERROR
        }
        _ => code,
    }
}

fn init_logging(cli: &Cli) {
    let chatty = matches!(
        cli.command,
        Command::Migrate(_)
            | Command::Worker(WorkerCommand::Start(_))
            | Command::Bench(_)
            | Command::Web(_)
    );
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) if chatty => "info",
        (false, 0) => "warn",
        (false, 1) => "debug",
        _ => "trace",
    };
    // r2d2 logs every failed connection attempt; the one-line error says it all.
    let env =
        env_logger::Env::default().filter_or("RUST_LOG", format!("chancy={level},r2d2=off,warn"));
    let _ = env_logger::Builder::from_env(env)
        .format_target(false)
        .try_init();
}

fn dispatch(cli: &Cli, registry: Registry) -> Result<i32> {
    match &cli.command {
        Command::Bench(args) => {
            let db = zero_config_database(cli)?;
            bench::bench(&db.url, &cli.prefix, cli.transaction_pooling, args)
        }
        Command::Demo(args) => {
            let db = zero_config_database(cli)?;
            demo::demo(&db.url, &cli.prefix, args, registry)
        }
        Command::Migrate(args) => migrate::migrate(&app(cli, true)?, args),
        Command::CheckMigrations => migrate::check(&app(cli, true)?),
        Command::Queue(command) => queue::run(&app(cli, true)?, command),
        Command::Job(command) => job::run(&app(cli, true)?, command),
        Command::Worker(WorkerCommand::Start(args)) => {
            worker::start(&args.app(builder(cli))?, args, registry)
        }
        Command::Cron(command) => cron::run(&app(cli, true)?, command),
        Command::Workflow(command) => workflow::run(&app(cli, true)?, command),
        Command::Worker(WorkerCommand::List) => worker::list(&app(cli, true)?),
        Command::Web(args) => web::run(
            &web::app(|| {
                builder(cli)
                    .notifications(true)
                    .plugin(crate::prometheus::Prometheus::new())
            })?,
            args,
        ),
    }
}

/// The application for the global flags, with the default plugins.
fn app(cli: &Cli, notifications: bool) -> Result<Chancy> {
    builder(cli).notifications(notifications).build()
}

/// The builder for the global flags.
fn builder(cli: &Cli) -> ChancyBuilder {
    Chancy::builder(database_url(cli))
        .prefix(cli.prefix.clone())
        .connection_timeout(Duration::from_secs(10))
        .transaction_pooling(cli.transaction_pooling)
}

fn database_url(cli: &Cli) -> String {
    cli.database_url
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// The database of `demo` and `bench`, and the private server behind it, if any (stopped
/// and deleted when this is dropped).
struct ZeroConfig {
    url: String,
    _private: Option<TempPostgres>,
}

/// `--database-url` / `$DATABASE_URL` when given, else the default server when it answers,
/// else a private throwaway PostgreSQL ([`crate::pgtemp`]). Only `demo` and `bench` call this.
fn zero_config_database(cli: &Cli) -> Result<ZeroConfig> {
    if let Some(url) = &cli.database_url {
        return Ok(ZeroConfig {
            url: url.clone(),
            _private: None,
        });
    }
    if pgtemp::answers(DEFAULT_DATABASE_URL, PROBE_TIMEOUT) {
        return Ok(ZeroConfig {
            url: DEFAULT_DATABASE_URL.to_string(),
            _private: None,
        });
    }
    let server = TempPostgres::start()?;
    outln!(
        "using a private PostgreSQL {} in {} (nothing answers at {DEFAULT_DATABASE_URL}; it is \
         deleted on exit); pass --database-url to use yours",
        server.version(),
        server.dir().display()
    );
    Ok(ZeroConfig {
        url: server.url().to_string(),
        _private: Some(server),
    })
}

/// How long `demo` and `bench` wait for the default server before starting a private one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Pretty JSON on stdout (object keys in the order `value` serializes them).
fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => outln!("null (not representable as JSON: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_examples_in_its_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let help = sub.get_after_help().map(ToString::to_string);
                assert!(
                    help.is_some_and(|h| h.contains("Example")),
                    "`{name} --help` has no examples"
                );
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "chancy");
    }

    #[test]
    fn bad_times_and_states_are_usage_errors() {
        for argv in [
            &["chancy", "job", "list", "--state", "done"][..],
            &["chancy", "job", "push", "f", "--delay", "-1"],
            &["chancy", "queue", "pause", "q", "--resume-at", "tomorrow"],
            &[
                "chancy",
                "job",
                "push",
                "f",
                "--delay",
                "1",
                "--scheduled-at",
                "2030-01-01T00:00:00Z",
            ],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?} parsed");
        }
        assert!(Cli::try_parse_from(["chancy", "job", "wait", "x", "--timeout", "0.5"]).is_ok());
    }
}
