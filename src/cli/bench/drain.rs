//! Drain mode: push every job with `push_many`, then one worker drains them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cost::{self, wal_position, Meter, STATS_FLUSH};
use super::report::{Drain, Enqueue};
use super::stats::count_succeeded;
use super::{BenchArgs, JobKind};
use crate::cli::builtins::{NOOP, SLEEP};
use crate::error::Result;
use crate::{Chancy, Job, Queue, Worker};

/// Pushes `args.jobs` jobs, explains one claim, then drains them with one worker; returns
/// both measurements.
pub(super) fn run(chancy: &Chancy, meter: &Meter, args: &BenchArgs) -> Result<(Enqueue, Drain)> {
    let executor = if args.executor == "process" {
        crate::PROCESS_EXECUTOR
    } else {
        crate::THREADED_EXECUTOR
    };
    let names = args.queue_names();
    for name in &names {
        chancy.declare_upsert(
            &Queue::new(name.as_str())
                .executor(executor)
                .concurrency(args.concurrency)
                .eager_polling(true)
                .polling_interval(Duration::from_secs(1)),
        )?;
    }
    let jobs = make_jobs(args, &names);

    let wal = wal_position(chancy)?;
    let t = Instant::now();
    chancy.push_many(&jobs)?;
    let push = t.elapsed();
    let push_wal = wal_position(chancy)? - wal;
    let enqueue = Enqueue {
        jobs: jobs.len(),
        seconds: push.as_secs_f64(),
        jobs_per_second: rate(jobs.len(), push),
        wal_bytes_per_job: per_job(push_wal, jobs.len()),
    };

    // One claim as large as a fetcher with every slot free makes, over the full backlog.
    let claim = cost::explain_claim(chancy, &names[0], i64::from(args.concurrency))?;

    let done = Arc::new(AtomicUsize::new(0));
    let worker = counting_worker(chancy, args, Arc::clone(&done))?;
    // The push's statistics (WAL records, its commit) reach pg_stat_* within a second.
    std::thread::sleep(STATS_FLUSH);
    let start = meter.start(chancy)?;
    let t = Instant::now();
    worker.start()?;
    if executor == crate::PROCESS_EXECUTOR || names.len() > 1 {
        // Children run the built-ins (or several queues finish at different times): watch
        // the table until every job is recorded as succeeded.
        while (count_succeeded(chancy)? as usize) < jobs.len() {
            std::thread::sleep(Duration::from_millis(10));
        }
    } else {
        // Every handler ran and every outcome is committed: the last completion is in the
        // database.
        while done.load(Ordering::Relaxed) < jobs.len() || worker.pending_updates() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let elapsed = t.elapsed();
    let end = meter.end(chancy)?;
    let succeeded = count_succeeded(chancy)?;
    worker.stop();
    std::thread::sleep(STATS_FLUSH);
    let costs = meter.costs(chancy, &start, &end, jobs.len())?;
    let drain = Drain {
        jobs: jobs.len(),
        seconds: elapsed.as_secs_f64(),
        jobs_per_second: rate(jobs.len(), elapsed),
        succeeded,
        wal_bytes_per_job: costs.wal_bytes_per_job,
        costs,
        claim,
    };
    Ok((enqueue, drain))
}

fn make_jobs(args: &BenchArgs, names: &[String]) -> Vec<Job> {
    let seconds = args.sleep_duration().as_secs_f64();
    (0..args.jobs)
        .map(|i| {
            let queue = names[i % names.len()].as_str();
            match args.kind {
                JobKind::Noop => Job::new(NOOP).queue(queue),
                JobKind::Sleep => Job::new(SLEEP)
                    .queue(queue)
                    .kwargs(json!({ "seconds": seconds })),
            }
        })
        .collect()
}

/// A worker whose handlers count finished jobs (children of the process executor run the
/// binary's built-ins instead).
fn counting_worker(chancy: &Chancy, args: &BenchArgs, done: Arc<AtomicUsize>) -> Result<Worker> {
    let sleep = args.sleep_duration();
    let d = Arc::clone(&done);
    Worker::builder(chancy)
        .synchronous_commit(!args.async_commit)
        .job(NOOP, move |_| {
            d.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .job(SLEEP, move |_| {
            std::thread::sleep(sleep);
            done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .build()
}

pub(super) fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn per_job(bytes: i64, jobs: usize) -> f64 {
    bytes as f64 / jobs.max(1) as f64
}
