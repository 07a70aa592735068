//! The `chancy` command line, embeddable in your own binary with your own job handlers:
//!
//! ```no_run
//! use chancy::{Registry, JobContext};
//! fn main() {
//!     let registry = Registry::new().job("myapp.hello", |_ctx: &JobContext| Ok(()));
//!     std::process::exit(chancy::cli::run(registry));
//! }
//! ```

mod bench;
mod migrate;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::worker::Registry;
use crate::{Chancy, DEFAULT_DATABASE_URL};

/// `chancy` — operate a Postgres job queue compatible with Python Chancy 0.26.0.
#[derive(Debug, Parser)]
#[command(name = "chancy", version, about, long_about = None)]
pub struct Cli {
    /// Database URL [default: $DATABASE_URL, else postgresql://postgres@localhost/postgres]
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Table prefix.
    #[arg(long, global = true, default_value = "chancy_")]
    pub prefix: String,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade (or, with --to-version, downgrade) the schema.
    ///
    /// Example: chancy migrate; chancy migrate --plugin cron; chancy migrate --to-version 0
    Migrate(migrate::MigrateArgs),
    /// Show, per migration key, the recorded and the latest version (exit 1 when behind).
    CheckMigrations,
    /// Measure push and drain throughput and push→start latency on private tables.
    ///
    /// Example: chancy bench --jobs 20000 --concurrency 16
    Bench(bench::BenchArgs),
}

/// Parses the process arguments, runs the command and returns the exit code. Errors are
/// printed as one line on stderr.
pub fn run(registry: Registry) -> i32 {
    crate::run_child_if_requested(&registry);
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match dispatch(&cli, registry) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().filter_or("CHANCY_LOG", format!("chancy={level},warn"));
    let _ = env_logger::Builder::from_env(env)
        .format_target(false)
        .try_init();
}

fn dispatch(cli: &Cli, _registry: Registry) -> Result<i32> {
    if let Command::Bench(args) = &cli.command {
        return bench::bench(&database_url(cli), &cli.prefix, args);
    }
    let chancy = app(cli)?;
    match &cli.command {
        Command::Bench(_) => unreachable!("handled above"),
        Command::Migrate(args) => migrate::migrate(&chancy, args),
        Command::CheckMigrations => migrate::check(&chancy),
    }
}

/// The application for the global flags.
fn app(cli: &Cli) -> Result<Chancy> {
    Chancy::builder(database_url(cli))
        .prefix(cli.prefix.clone())
        .connection_timeout(std::time::Duration::from_secs(10))
        .build()
}

fn database_url(cli: &Cli) -> String {
    cli.database_url
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}
