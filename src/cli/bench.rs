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
    let queue = Queue::new("bench")
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
    while done.load(Ordering::Relaxed) < args.jobs || worker.outgoing().pending() > 0 {
        std::thread::sleep(Duration::from_millis(1));
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
    Ok(())
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
