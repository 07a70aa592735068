//! Steady mode: open-loop arrivals at a fixed rate into a running worker, timed from each
//! job's scheduled arrival to its handler starting.
//!
//! Job `i` is due at `t0 + i / rate`, whatever happened to the jobs before it (open loop:
//! a slow worker or a slow push does not slow the arrivals down, so queueing delay shows in
//! the latency instead of hiding in a lower rate). [`PUSHERS`] threads share the arrivals
//! round robin; a pusher that finds several of its jobs already due pushes them in one
//! `push_many` (up to [`MAX_BATCH`]), and their latency still counts from when each was due.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use super::cost::{Meter, STATS_FLUSH};
use super::report::{Percentiles, Steady};
use super::BenchArgs;
use crate::error::{Error, Result};
use crate::{Chancy, Job, Queue, Worker};

/// The handler name of steady-mode jobs.
const STEADY: &str = "chancy.bench.steady";
/// Threads pushing arrivals.
const PUSHERS: usize = 4;
/// Most due jobs one pusher sends in one round trip.
const MAX_BATCH: usize = 500;
/// How long the worker may take, after the last arrival, to start every job.
const SETTLE: Duration = Duration::from_secs(60);
/// Most jobs one steady run may push.
const MAX_JOBS: u64 = 10_000_000;

/// Pushes `args.rate` jobs a second for `args.seconds` into a running worker.
pub(super) fn run(chancy: &Chancy, meter: &Meter, args: &BenchArgs) -> Result<Steady> {
    let total = u64::from(args.rate) * args.seconds;
    if total > MAX_JOBS {
        return Err(Error::config(format!(
            "--rate × --seconds is {total} jobs; a steady run is limited to {MAX_JOBS}"
        )));
    }
    let total = total as usize;
    chancy.declare_upsert(&Queue::new("bench").concurrency(args.concurrency))?;
    let base = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (samples, started) = (Arc::clone(&samples), Arc::clone(&started));
        Worker::builder(chancy)
            .synchronous_commit(!args.async_commit)
            .job(STEADY, move |ctx| {
                let now = Instant::now();
                let due = ctx
                    .job()
                    .kwargs
                    .get("t")
                    .and_then(|t| t.as_u64())
                    .unwrap_or(0);
                let due = base + Duration::from_nanos(due);
                samples.lock().push(now.saturating_duration_since(due));
                started.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .build()?
    };
    worker.start()?;
    // Let the listener and the fetcher settle, and earlier statistics reach pg_stat_*,
    // before the clock starts.
    std::thread::sleep(STATS_FLUSH);
    let result = measure(chancy, meter, args, &worker, base, total, &started);
    worker.stop();
    let (pushes, lag, pushed_in, end) = result?;
    std::thread::sleep(STATS_FLUSH);
    let costs = meter.costs(chancy, &end.0, &end.1, total)?;
    let samples = std::mem::take(&mut *samples.lock());
    Ok(Steady {
        rate: args.rate,
        seconds: args.seconds,
        jobs: total,
        achieved_rate: total as f64 / pushed_in.as_secs_f64().max(1e-9),
        pushes,
        max_push_lag_ms: lag.as_secs_f64() * 1000.0,
        push_to_start_ms: Percentiles::of(samples),
        costs,
    })
}

type Period = (super::cost::Start, super::cost::End);

/// Runs the arrivals and waits until every job started and every outcome is written.
fn measure(
    chancy: &Chancy,
    meter: &Meter,
    args: &BenchArgs,
    worker: &Worker,
    base: Instant,
    total: usize,
    started: &AtomicUsize,
) -> Result<(usize, Duration, Duration, Period)> {
    let start = meter.start(chancy)?;
    let t0 = Instant::now() + Duration::from_millis(10);
    let interval = 1.0 / f64::from(args.rate);
    let due = |i: usize| t0 + Duration::from_secs_f64(i as f64 * interval);
    let due = &due;
    let outcomes: Vec<Result<(usize, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..PUSHERS)
            .map(|k| s.spawn(move || push_share(chancy, k, total, base, due)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::config("a steady-mode pusher panicked")))
            })
            .collect()
    });
    let pushed_in = t0.elapsed();
    let (mut pushes, mut lag) = (0, Duration::ZERO);
    for outcome in outcomes {
        let (n, l) = outcome?;
        pushes += n;
        lag = lag.max(l);
    }
    let deadline = Instant::now() + SETTLE;
    while started.load(Ordering::Relaxed) < total || worker.pending_updates() > 0 {
        if Instant::now() > deadline {
            return Err(Error::timeout(format!(
                "{} of {total} steady-mode jobs started within {SETTLE:?} of the last arrival",
                started.load(Ordering::Relaxed)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = meter.end(chancy)?;
    Ok((pushes, lag, pushed_in, (start, end)))
}

/// Pusher `k`'s share: jobs `k`, `k + PUSHERS`, …; returns its round trips and its largest
/// lag behind an arrival.
fn push_share(
    chancy: &Chancy,
    k: usize,
    total: usize,
    base: Instant,
    due: &(dyn Fn(usize) -> Instant + Sync),
) -> Result<(usize, Duration)> {
    let (mut i, mut pushes, mut lag) = (k, 0, Duration::ZERO);
    while i < total {
        let at = due(i);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let now = Instant::now();
        lag = lag.max(now.saturating_duration_since(at));
        let mut batch = Vec::new();
        while i < total && due(i) <= now && batch.len() < MAX_BATCH {
            let t = due(i).duration_since(base).as_nanos() as u64;
            batch.push(Job::new(STEADY).queue("bench").kwargs(json!({ "t": t })));
            i += PUSHERS;
        }
        match batch.len() {
            0 => continue,
            1 => drop(chancy.push(&batch[0])?),
            _ => drop(chancy.push_many(&batch)?),
        }
        pushes += 1;
    }
    Ok((pushes, lag))
}
