//! `chancy demo`: a zero-config tour on private tables (`<prefix>demo_<run>_*`, `<run>` six
//! random hex digits), so it never touches real data and two runs on one database never see
//! each other's jobs: migrate, declare a queue, push a mix of jobs, run a worker in-process
//! with a progress line, print a summary, drop the tables.

use crate::unnamed::Unnamed;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::builtins::{ECHO, FAIL, NOOP, SLEEP};
use super::table::{truncate, Table};
use crate::app::JobFilter;
use crate::error::{Error, Result};
use crate::job::{Job, JobState, QueuedJob, Reference};
use crate::worker::{JobContext, JobError, Registry, Worker};
use crate::{Chancy, Queue};

/// Arguments of `chancy demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many `chancy.builtin.noop` jobs to push besides the others.
    #[arg(long, default_value_t = 12)]
    pub jobs: usize,
    /// Keep the demo tables afterwards (prefix `<prefix>demo_<run>_`, printed on the first
    /// line), e.g. to inspect them with `chancy --prefix <prefix>demo_<run>_ job list`.
    #[arg(long)]
    pub keep: bool,
}

/// A demo-only handler: fails its first attempt, succeeds on the retry.
const FLAKY: &str = "chancy.demo.flaky";
const QUEUE: &str = "demo";
const SCHEDULE_DELAY: Duration = Duration::from_millis(1500);
/// The whole run must finish well within this.
const DEADLINE: Duration = Duration::from_secs(60);

pub(super) fn demo(url: &str, prefix: &str, args: &DemoArgs, registry: Registry) -> Result<i32> {
    let demo_prefix = format!("{prefix}demo_{}_", run_id());
    let chancy = Chancy::builder(url)
        .prefix(demo_prefix.clone())
        .no_default_plugins()
        .connection_timeout(Duration::from_secs(10))
        .build()?;
    outln!(
        "chancy demo on {} using private tables {demo_prefix}*",
        chancy.database()
    );
    chancy.migrate()?;
    outln!("1. migrated the schema");
    let result = tour(&chancy, args, registry);
    if args.keep {
        outln!("kept the demo tables (prefix {demo_prefix})");
    } else {
        teardown(&chancy)?;
        outln!("cleaned up: dropped every {demo_prefix}* table");
    }
    result.map(|()| 0)
}

/// Six random hex digits naming this run's tables.
fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

/// Drops every table of `chancy`'s prefix, including the version table (the demo's and the
/// bench's private prefixes).
pub(super) fn teardown(chancy: &Chancy) -> Result<()> {
    chancy.migrate_to(0)?;
    let mut conn = chancy.connection()?;
    let sql = format!(
        "DROP TABLE IF EXISTS {}",
        chancy.prefix().table("schema_version")
    );
    conn.client
        .batch_execute(&sql)
        .map_err(|e| Error::database("dropping the version table", e))
}

fn tour(chancy: &Chancy, args: &DemoArgs, registry: Registry) -> Result<()> {
    chancy.declare_upsert(
        &Queue::new(QUEUE)
            .concurrency(4)
            .polling_interval(Duration::from_secs(1))
            .eager_polling(true),
    )?;
    outln!("2. declared queue {QUEUE:?} (4 threads, eager polling)");
    let pushed = push_jobs(chancy, args.jobs)?;
    let worker = Worker::builder(chancy)
        .registry(super::builtin_registry().merge(registry))
        .job(FLAKY, flaky)
        .shutdown_timeout(Duration::from_secs(5))
        .build()?;
    worker.start()?;
    outln!("4. started a worker in this process");
    let waited = watch(chancy, pushed.total);
    worker.stop();
    let elapsed = waited?;
    outln!();
    summary(chancy, &pushed, elapsed)
}

/// What was pushed, for the summary.
struct Pushed {
    total: usize,
    unique: (Reference, Reference),
    scheduled: Reference,
}

fn push_jobs(chancy: &Chancy, noops: usize) -> Result<Pushed> {
    let job = |func: &str| Job::new(func).queue(QUEUE);
    let mut jobs: Vec<Job> = (0..noops).map(|_| job(NOOP)).collect();
    jobs.extend((1..=2).map(|n| job(ECHO).kwargs(json!({"greeting": "hello", "n": n}))));
    jobs.extend((0..2).map(|_| job(SLEEP).kwargs(json!({"seconds": 0.3}))));
    jobs.push(job(FLAKY).max_attempts(3));
    jobs.push(
        job(FAIL)
            .kwargs(json!({"message": "this job always fails"}))
            .max_attempts(2),
    );
    chancy.push_many(&jobs)?;
    let scheduled = chancy.push(
        &job(ECHO)
            .kwargs(json!({"scheduled": true}))
            .delay(SCHEDULE_DELAY),
    )?;
    let once = job(NOOP).unique_key("demo-unique");
    let unique = (chancy.push(&once)?, chancy.push(&once)?);
    let total = jobs.len() + 2;
    outln!(
        "3. pushed {total} jobs: {noops} noop, 2 echo, 2 sleep, 1 flaky (fails once), \
         1 fail (2 attempts), 1 echo scheduled {:.1} s ahead, 1 noop pushed twice with a \
         unique key",
        SCHEDULE_DELAY.as_secs_f64()
    );
    Ok(Pushed {
        total,
        unique,
        scheduled,
    })
}

fn flaky(ctx: &JobContext) -> Result<(), JobError> {
    if ctx.job().attempts == 0 {
        return Err(JobError::new("flaky: the first attempt fails on purpose"));
    }
    Ok(())
}

/// Shows a progress line until every job is finished; returns how long that took.
fn watch(chancy: &Chancy, total: usize) -> Result<Duration> {
    let started = Instant::now();
    let live = std::io::stderr().is_terminal();
    loop {
        let counts = count_states(chancy)?;
        let done = counts.get("succeeded").unwrap_or(&0) + counts.get("failed").unwrap_or(&0);
        if live {
            let line = JobState::ALL
                .iter()
                .map(|s| format!("{} {}", counts.get(s.as_str()).unwrap_or(&0), s))
                .collect::<Vec<_>>()
                .join(" · ");
            eprint!("\r\x1b[2K   {done}/{total} finished  ({line})");
            let _ = std::io::stderr().flush();
        }
        if done as usize >= total {
            if live {
                eprintln!();
            }
            let took = started.elapsed();
            outln!(
                "5. all {total} jobs finished in {:.2} s",
                took.as_secs_f64()
            );
            return Ok(took);
        }
        if started.elapsed() > DEADLINE {
            return Err(Error::timeout(format!(
                "the demo's jobs did not finish within {DEADLINE:?} ({done}/{total} done)"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count_states(chancy: &Chancy) -> Result<BTreeMap<String, i64>> {
    let mut conn = chancy.connection()?;
    let sql = format!(
        "SELECT state, count(*) FROM {} WHERE queue = $1 GROUP BY state",
        chancy.prefix().table("jobs")
    );
    let rows = conn
        .client
        .query_unnamed(sql.as_str(), &[&QUEUE])
        .map_err(|e| Error::database("counting the demo's jobs", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[derive(Default)]
struct FuncStats {
    jobs: usize,
    succeeded: usize,
    failed: usize,
    attempts: i64,
    last_error: Option<String>,
}

fn summary(chancy: &Chancy, pushed: &Pushed, took: Duration) -> Result<()> {
    let jobs = chancy.list_jobs(&JobFilter {
        queue: Some(QUEUE.into()),
        limit: 10_000,
        ..JobFilter::default()
    })?;
    let mut by_func: BTreeMap<&str, FuncStats> = BTreeMap::new();
    for j in &jobs {
        let s = by_func.entry(j.func.as_str()).or_default();
        s.jobs += 1;
        s.succeeded += usize::from(j.state == JobState::Succeeded);
        s.failed += usize::from(j.state == JobState::Failed);
        s.attempts += i64::from(j.attempts);
        if let Some(e) = j.errors.last() {
            s.last_error = Some(e.traceback.lines().next().unwrap_or("").to_string());
        }
    }
    let mut t = Table::new(&[
        "FUNC",
        "JOBS",
        "SUCCEEDED",
        "FAILED",
        "ATTEMPTS",
        "LAST ERROR",
    ]);
    for (func, s) in &by_func {
        t.row(vec![
            func.to_string(),
            s.jobs.to_string(),
            s.succeeded.to_string(),
            s.failed.to_string(),
            s.attempts.to_string(),
            s.last_error
                .as_deref()
                .map_or("-".into(), |e| truncate(e, 50)),
        ]);
    }
    t.print();
    let succeeded: usize = by_func.values().map(|s| s.succeeded).sum();
    let failed: usize = by_func.values().map(|s| s.failed).sum();
    outln!();
    outln!(
        "total: {} jobs, succeeded {succeeded}, failed {failed}",
        jobs.len()
    );
    let (n, span) = busy_span(&jobs, pushed.scheduled);
    outln!(
        "throughput: {n} unscheduled jobs ran within {:.2} s = {:.0} jobs/s (all finished after \
         {:.2} s; the scheduled job waits {:.1} s on purpose)",
        span,
        n as f64 / span.max(1e-3),
        took.as_secs_f64(),
        SCHEDULE_DELAY.as_secs_f64()
    );
    notes(&jobs, pushed);
    if jobs.len() != pushed.total {
        return Err(Error::invalid_input(format!(
            "expected {} demo jobs in the table, found {}",
            pushed.total,
            jobs.len()
        )));
    }
    Ok(())
}

/// How many jobs other than `scheduled` ran, and seconds from the first start to the last
/// completion among them.
fn busy_span(jobs: &[QueuedJob], scheduled: Reference) -> (usize, f64) {
    let others: Vec<&QueuedJob> = jobs.iter().filter(|j| j.id != scheduled.id()).collect();
    let first = others.iter().filter_map(|j| j.started_at).min();
    let last = others.iter().filter_map(|j| j.completed_at).max();
    let span = match (first, last) {
        (Some(a), Some(b)) => (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => 0.0,
    };
    (others.len(), span)
}

fn notes(jobs: &[QueuedJob], pushed: &Pushed) {
    let (a, b) = pushed.unique;
    outln!(
        "unique key: the second push returned the first job's id ({}): {}",
        a,
        if a == b { "yes" } else { "no" }
    );
    if let Some(j) = jobs.iter().find(|j| j.id == pushed.scheduled.id()) {
        let ran = j
            .started_at
            .map(|s| (s - j.created_at).num_milliseconds() as f64 / 1000.0);
        if let Some(after) = ran {
            outln!("scheduled job: started {after:.1} s after it was pushed");
        }
        if let Some(echo) = j.meta.get("echo") {
            outln!("echo: meta.echo = {echo}");
        }
    }
}
