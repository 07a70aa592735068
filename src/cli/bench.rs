//! `chancy bench`: a reproducible throughput and latency run on a private table prefix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::unbounded;

use crate::error::{Error, Result};
use crate::{Chancy, Job, Queue, Worker};

/// Arguments of `chancy bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// No-op jobs pushed before the worker starts.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Executor threads of the benchmark queue.
    #[arg(long, default_value_t = 16)]
    pub concurrency: i32,
    /// Single pushes timed for push→start latency (0 skips the latency run).
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
    /// Also measure an idle worker serving 10 empty queues for this many seconds (CPU and
    /// RSS of this process, from /proc).
    #[arg(long, default_value_t = 0)]
    pub idle_seconds: u64,
    /// Executor of the benchmark queue: `thread` (default) or `process` (one child process
    /// per slot; measures the per-job overhead of process isolation).
    #[arg(long, default_value = "thread", value_parser = ["thread", "process"])]
    pub executor: String,
    /// Keep the benchmark tables afterwards (they use the prefix `<prefix>bench_`).
    #[arg(long)]
    pub keep: bool,
}

const NOOP: &str = "chancy.builtin.noop";

pub(super) fn bench(url: &str, prefix: &str, args: &BenchArgs) -> Result<i32> {
    let bench_prefix = format!("{prefix}bench_");
    let chancy = Chancy::builder(url)
        .prefix(bench_prefix.clone())
        .no_default_plugins()
        .build()?;
    chancy.migrate_to(0)?;
    chancy.migrate()?;
    println!(
        "chancy bench on {} (prefix {bench_prefix}), {} cpus",
        chancy.database(),
        cpus()
    );
    let result = run(&chancy, args);
    if !args.keep {
        chancy.migrate_to(0)?;
    }
    result.map(|()| 0)
}

fn run(chancy: &Chancy, args: &BenchArgs) -> Result<()> {
    let executor = if args.executor == "process" {
        crate::PROCESS_EXECUTOR
    } else {
        crate::THREADED_EXECUTOR
    };
    let queue = Queue::new("bench")
        .executor(executor)
        .concurrency(args.concurrency)
        .eager_polling(true)
        .polling_interval(Duration::from_secs(1));
    chancy.declare(&queue)?;
    let jobs: Vec<Job> = (0..args.jobs)
        .map(|_| Job::new(NOOP).queue("bench"))
        .collect();
    let t = Instant::now();
    chancy.push_many(&jobs)?;
    let push = t.elapsed();
    println!(
        "push_many: {} jobs in {:.3} s = {:.0} jobs/s",
        args.jobs,
        push.as_secs_f64(),
        rate(args.jobs, push)
    );

    let done = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&done);
    let worker = Worker::builder(chancy)
        .job(NOOP, move |_| {
            d.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .build()?;
    let t = Instant::now();
    worker.start()?;
    if executor == crate::PROCESS_EXECUTOR {
        // The handler runs in the children (this binary's built-ins): watch the table.
        while (count_succeeded(chancy)? as usize) < args.jobs {
            std::thread::sleep(Duration::from_millis(10));
        }
    } else {
        while done.load(Ordering::Relaxed) < args.jobs || worker.outgoing().pending() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let drain = t.elapsed();
    let succeeded = count_succeeded(chancy)?;
    println!(
        "drain: {} jobs in {:.3} s = {:.0} jobs/s (succeeded rows: {succeeded})",
        args.jobs,
        drain.as_secs_f64(),
        rate(args.jobs, drain)
    );
    worker.stop();
    if args.latency_samples > 0 {
        latency(chancy, args.latency_samples)?;
    }
    if args.idle_seconds > 0 {
        idle(chancy, Duration::from_secs(args.idle_seconds))?;
    }
    Ok(())
}

/// CPU share and RSS of a worker with 10 empty queues (default polling, notifications on).
fn idle(chancy: &Chancy, period: Duration) -> Result<()> {
    for i in 0..10 {
        chancy.declare_upsert(&Queue::new(format!("idle{i}")).concurrency(4))?;
    }
    let worker = Worker::builder(chancy).build()?;
    worker.start()?;
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks();
    let t = Instant::now();
    std::thread::sleep(period);
    let used = cpu_ticks().saturating_sub(before) as f64 / ticks_per_second();
    let share = used / t.elapsed().as_secs_f64() * 100.0;
    println!(
        "idle worker, {} queues: {share:.2}% of one core, RSS {:.1} MB",
        worker.queues().len(),
        rss_kb() as f64 / 1024.0
    );
    worker.stop();
    Ok(())
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn latency(chancy: &Chancy, samples: usize) -> Result<()> {
    let (tx, rx) = unbounded::<Instant>();
    let worker = Worker::builder(chancy)
        .job("chancy.builtin.latency", move |_| {
            let _ = tx.send(Instant::now());
            Ok(())
        })
        .build()?;
    chancy.declare_upsert(
        &Queue::new("bench")
            .concurrency(4)
            .polling_interval(Duration::from_secs(60)),
    )?;
    worker.start()?;
    std::thread::sleep(Duration::from_millis(500));
    let mut lat = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        chancy.push(&Job::new("chancy.builtin.latency").queue("bench"))?;
        let started = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::timeout("a latency job did not start within 10 s"))?;
        lat.push(started.duration_since(t));
        std::thread::sleep(Duration::from_millis(5));
    }
    worker.stop();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "push→start latency over {samples} single pushes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
    Ok(())
}

fn count_succeeded(chancy: &Chancy) -> Result<i64> {
    let mut conn = chancy.connection()?;
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'succeeded'",
        chancy.prefix().table("jobs")
    );
    let row = conn
        .client
        .query_one(sql.as_str(), &[])
        .map_err(|e| Error::database("counting jobs", e))?;
    Ok(row.get(0))
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
