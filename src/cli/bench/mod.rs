//! `chancy bench`: a reproducible throughput and latency run on a private table prefix.
//!
//! Modes: `drain` (push every job first, then one worker drains them, or `--workers N`
//! worker processes), `latency` (single
//! pushes into an idle worker), `steady` (open-loop arrivals at a fixed rate into a running
//! worker), `all` (drain, then latency). Drain and steady runs also report what they cost
//! the database per job ([`cost`]). Results come out as a table or, with `--json`, as one
//! JSON object ([`report::Report`]).

mod cost;
mod drain;
mod latency;
mod report;
mod stats;
mod steady;
mod workers;

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};
use crate::Chancy;

use report::Report;

/// What a benchmark job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobKind {
    /// Returns at once (`chancy.builtin.noop`).
    Noop,
    /// Sleeps `--sleep` milliseconds (`chancy.builtin.sleep`).
    Sleep,
}

/// Which measurements to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Push all jobs, then one worker drains them.
    Drain,
    /// Single pushes into an idle worker: push→start and push→completed percentiles.
    Latency,
    /// Open-loop arrivals at `--rate` jobs/s for `--seconds` into a running worker:
    /// arrival→start percentiles and the cost per job.
    Steady,
    /// Drain, then latency.
    All,
}

/// Arguments of `chancy bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Jobs pushed before the worker starts (drain mode).
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Executor slots of each benchmark queue.
    #[arg(long, default_value_t = 16)]
    pub concurrency: i32,
    /// Benchmark queues the jobs are spread over (round robin), each with `--concurrency`
    /// slots, all served by the one worker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub queues: u32,
    /// What each job does.
    #[arg(long, value_enum, default_value_t = JobKind::Noop)]
    pub kind: JobKind,
    /// Milliseconds each `--kind sleep` job sleeps.
    #[arg(long, default_value_t = 1, value_parser = crate::cli::args::sleep_millis)]
    pub sleep: u64,
    /// Drain with this many worker processes (`chancy worker start`, this program, each
    /// with its own pool and listener) instead of one worker in this process: scale-out
    /// jobs/s, connections per process, and whether every job ran exactly once. Drain and
    /// all modes only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: Option<u32>,
    /// With `--workers`: each worker process's pool size (`worker start
    /// --max-connection-pool-size`) [default: 10]. Its connection budget is this + 1
    /// listener; before spawning, the bench refuses a run whose processes would need more
    /// connections than the server has free.
    #[arg(long, value_name = "N", requires = "workers",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_connection_pool_size: Option<u32>,
    /// Which measurements to run.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    pub mode: Mode,
    /// Arrivals per second in steady mode.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Seconds of arrivals in steady mode.
    #[arg(long, default_value_t = 10, value_parser = crate::cli::args::bench_seconds)]
    pub seconds: u64,
    /// Single pushes timed in latency mode (0 skips the latency run).
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
    /// Also measure an idle worker serving `--idle-queues` empty queues for this many
    /// seconds (CPU and RSS of this process from /proc, threads, connections), then the time
    /// until one job pushed to each of them has run.
    #[arg(long, default_value_t = 0, value_parser = crate::cli::args::idle_seconds)]
    pub idle_seconds: u64,
    /// Empty queues of the idle measurement (e.g. 500 to see that connections and threads
    /// do not grow with the number of queues).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub idle_queues: u32,
    /// Executor of the benchmark queues: `thread` (default) or `process` (one child process
    /// per slot; measures the per-job overhead of process isolation).
    #[arg(long, default_value = "thread", value_parser = ["thread", "process"])]
    pub executor: String,
    /// Run without the default plugin set (leadership, pruner, recovery, metrics, workflow),
    /// to measure what it costs. By default the worker runs with it, as a real one does.
    #[arg(long)]
    pub no_default_plugins: bool,
    /// `synchronous_commit = off` on the worker's fetch and write connections
    /// (`WorkerBuilder::synchronous_commit(false)`; see the README's tuning notes).
    #[arg(long)]
    pub async_commit: bool,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep the benchmark tables afterwards (they use the prefix `<prefix>bench_`).
    #[arg(long)]
    pub keep: bool,
}

/// Where the worker processes of `--workers` connect: the database URL and the run's
/// `application_name` (each process adds `-w<i>`).
struct Target<'a> {
    url: &'a str,
    app: &'a str,
}

impl BenchArgs {
    /// The sleep of a `--kind sleep` job.
    fn sleep_duration(&self) -> Duration {
        Duration::from_millis(self.sleep)
    }

    /// Names of the benchmark queues: `bench`, `bench1`, `bench2`, …
    fn queue_names(&self) -> Vec<String> {
        (0..self.queues)
            .map(|i| {
                if i == 0 {
                    "bench".to_string()
                } else {
                    format!("bench{i}")
                }
            })
            .collect()
    }
}

/// `transaction_pooling`: `url` is a transaction-pooling proxy (the global
/// `--transaction-pooling` flag; [`ChancyBuilder::transaction_pooling`](crate::ChancyBuilder::transaction_pooling)).
pub(super) fn bench(
    url: &str,
    prefix: &str,
    transaction_pooling: bool,
    args: &BenchArgs,
) -> Result<i32> {
    if args.workers.is_some() && !matches!(args.mode, Mode::Drain | Mode::All) {
        return Err(Error::invalid_input(
            "--workers applies to the drain: use it with --mode drain or --mode all",
        ));
    }
    let bench_prefix = format!("{prefix}bench_");
    let probe = latency::CompletionProbe::new();
    // Our backends carry this name, so the cost meter can tell them from other clients'.
    let app = format!("chancy-bench-{}", std::process::id());
    let mut builder = Chancy::builder(cost::with_application_name(url, &app))
        .prefix(bench_prefix.clone())
        .transaction_pooling(transaction_pooling)
        .plugin_arc(probe.clone());
    if args.no_default_plugins {
        builder = builder.no_default_plugins();
    }
    let chancy = builder.build()?;
    if let (Some(n), false) = (args.workers, transaction_pooling) {
        workers::check_connections(&chancy, url, args, n)?;
    }
    chancy.migrate_to(0)?;
    chancy.migrate()?;
    if !args.json {
        outln!(
            "chancy bench on {} (prefix {bench_prefix}), {} cpus, load average {}",
            chancy.database(),
            stats::cpus(),
            stats::load_average()
                .iter()
                .map(|l| format!("{l:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let target = Target { url, app: &app };
    let result =
        cost::Meter::detect(&chancy, &app).and_then(|m| run(&chancy, &m, &target, &probe, args));
    if !args.keep {
        crate::cli::demo::teardown(&chancy)?;
    }
    let report = result?;
    if args.json {
        super::print_json(&report);
    } else {
        report.table().print();
    }
    Ok(0)
}

fn run(
    chancy: &Chancy,
    meter: &cost::Meter,
    target: &Target<'_>,
    probe: &std::sync::Arc<latency::CompletionProbe>,
    args: &BenchArgs,
) -> Result<Report> {
    let mut report = Report::new(chancy, args);
    if matches!(args.mode, Mode::Drain | Mode::All) {
        let (enqueue, drain) = drain::run(chancy, meter, target, args)?;
        report.enqueue = Some(enqueue);
        report.drain = Some(drain);
    }
    if matches!(args.mode, Mode::Latency | Mode::All) && args.latency_samples > 0 {
        report.latency = Some(latency::run(chancy, probe, args)?);
    }
    if args.mode == Mode::Steady {
        report.steady = Some(steady::run(chancy, meter, args)?);
    }
    if args.idle_seconds > 0 {
        report.idle = Some(stats::idle(
            chancy,
            Duration::from_secs(args.idle_seconds),
            args.idle_queues as usize,
        )?);
    }
    report.jobs_table = Some(stats::table_stats(chancy)?);
    Ok(report)
}
