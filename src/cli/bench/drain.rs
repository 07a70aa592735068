//! Drain mode: push every job with `push_many`, then one worker drains them (or, with
//! `--workers N`, N worker processes: [`super::workers`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cost::{self, wal_position, Meter, STATS_FLUSH};
use super::report::{Drain, Enqueue};
use super::stats::{count_ran_once, count_succeeded, rate};
use super::{BenchArgs, JobKind, Target};
use crate::cli::builtins::{NOOP, SLEEP};
use crate::error::Result;
use crate::{Chancy, Job, Queue, Worker};

/// Pushes `args.jobs` jobs, explains one claim, then drains them with one worker in this
/// process, or with `--workers N` processes; returns both measurements.
pub(super) fn run(
    chancy: &Chancy,
    meter: &Meter,
    target: &Target<'_>,
    args: &BenchArgs,
) -> Result<(Enqueue, Drain)> {
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

    // The push's statistics (WAL records, its commit) reach pg_stat_* within a second.
    std::thread::sleep(STATS_FLUSH);
    let (elapsed, start, end, processes) = match args.workers {
        None => {
            let (elapsed, start, end) = in_process(chancy, meter, args, jobs.len(), &names)?;
            (elapsed, start, end, None)
        }
        Some(n) => {
            let d = super::workers::drain(chancy, target, meter, args, n, jobs.len())?;
            (d.elapsed, d.start, d.end, Some(d.processes))
        }
    };
    let succeeded = count_succeeded(chancy)?;
    let ran_once = count_ran_once(chancy)?;
    std::thread::sleep(STATS_FLUSH);
    let mut costs = meter.costs(chancy, &start, &end, jobs.len())?;
    if let Some(p) = &processes {
        // The workers ran in other processes: their CPU is the worker CPU.
        costs.worker_cpu_seconds += p.cpu_seconds;
        costs.worker_cpu_us_per_job = costs.worker_cpu_seconds * 1e6 / jobs.len().max(1) as f64;
    }
    let drain = Drain {
        jobs: jobs.len(),
        seconds: elapsed.as_secs_f64(),
        jobs_per_second: rate(jobs.len(), elapsed),
        succeeded,
        ran_once,
        wal_bytes_per_job: costs.wal_bytes_per_job,
        costs,
        claim,
        processes,
    };
    Ok((enqueue, drain))
}

/// One worker in this process drains the backlog; returns the time from its start until
/// the last outcome is committed and the meter's readings around it (the end read before
/// the worker stops).
fn in_process(
    chancy: &Chancy,
    meter: &Meter,
    args: &BenchArgs,
    jobs: usize,
    names: &[String],
) -> Result<(Duration, cost::Start, cost::End)> {
    let done = Arc::new(AtomicUsize::new(0));
    let worker = counting_worker(chancy, args, Arc::clone(&done))?;
    let start = meter.start(chancy)?;
    let t = Instant::now();
    worker.start()?;
    if args.executor == "process" || names.len() > 1 {
        // Children run the built-ins (or several queues finish at different times): watch
        // the table until every job is recorded as succeeded.
        while (count_succeeded(chancy)? as usize) < jobs {
            std::thread::sleep(Duration::from_millis(10));
        }
    } else {
        // Every handler ran and every outcome is committed: the last completion is in the
        // database.
        while done.load(Ordering::Relaxed) < jobs || worker.pending_updates() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let elapsed = t.elapsed();
    let end = meter.end(chancy)?;
    worker.stop();
    Ok((elapsed, start, end))
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

fn per_job(bytes: i64, jobs: usize) -> f64 {
    bytes as f64 / jobs.max(1) as f64
}
