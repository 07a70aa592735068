//! Measurements from /proc (CPU, RSS, load) and from PostgreSQL (WAL position, table stats).

use crate::unnamed::Unnamed;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::{Chancy, Queue, Worker};

/// An idle worker serving empty queues.
#[derive(Debug, Serialize)]
pub(super) struct Idle {
    pub seconds: f64,
    pub queues: usize,
    /// CPU time of this process over the period, in percent of one core.
    pub cpu_percent: f64,
    pub rss_mb: f64,
    /// Threads of this process (the worker's and the bench's own) at the end of the period.
    pub threads: usize,
    /// Most connections the process held (pool, sampled, + listener).
    pub connections: u32,
    /// The worker's connection budget.
    pub budget: u32,
    /// Seconds from pushing one job to every queue until all ran (`None`: not within 120 s).
    pub serve_all_seconds: Option<f64>,
}

/// The jobs table: row count and `pg_stat_user_tables` figures.
#[derive(Debug, Serialize)]
pub(super) struct TableStats {
    /// Rows in the table (counted).
    pub rows: i64,
    pub dead_tuples: i64,
    /// (Auto)vacuums of the table during the run.
    pub vacuums: i64,
}

/// An idle worker with `queues` empty queues (concurrency 4, default polling, notifications
/// on): its CPU share and RSS over `period`, the threads of this process and the connections
/// it holds, then the time until one job pushed to every queue has run.
pub(super) fn idle(chancy: &Chancy, period: Duration, queues: usize) -> Result<Idle> {
    let names: Vec<String> = (0..queues).map(|i| format!("idle{i}")).collect();
    for name in &names {
        chancy.declare_upsert(&Queue::new(name.as_str()).concurrency(4))?;
    }
    let worker = Worker::builder(chancy)
        .job(crate::cli::builtins::NOOP, |_| Ok(()))
        .build()?;
    worker.start()?;
    let until = Instant::now() + Duration::from_secs(60);
    while worker.queues().len() < queues && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks();
    let t = Instant::now();
    let mut connections = 0;
    while t.elapsed() < period {
        std::thread::sleep(Duration::from_millis(200));
        connections = connections.max(chancy.open_connections());
    }
    let used = cpu_ticks().saturating_sub(before) as f64 / super::cost::ticks_per_second();
    let seconds = t.elapsed().as_secs_f64();
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let jobs: Vec<crate::Job> = names
        .iter()
        .map(|q| crate::Job::new(crate::cli::builtins::NOOP).queue(q.as_str()))
        .collect();
    let pushed = Instant::now();
    let refs = chancy.push_many(&jobs)?;
    let served = chancy.wait_for_jobs(&refs, Duration::from_secs(120));
    let serve_all_seconds = pushed.elapsed().as_secs_f64();
    connections = connections.max(chancy.open_connections());
    let listener = u32::from(chancy.listens());
    let idle = Idle {
        seconds,
        queues: worker.queues().len(),
        cpu_percent: used / seconds * 100.0,
        rss_mb: rss_kb() as f64 / 1024.0,
        threads,
        connections: connections + listener,
        budget: worker.connection_budget(),
        serve_all_seconds: served.is_ok().then_some(serve_all_seconds),
    };
    worker.stop();
    Ok(idle)
}

/// Rows and dead tuples of the jobs table. Rows are counted exactly; dead tuples come from
/// `pg_stat_user_tables`, which the worker's connections update when they close (read after
/// the worker stopped), so it is exact unless autovacuum ran (`vacuums` says so).
pub(super) fn table_stats(chancy: &Chancy) -> Result<TableStats> {
    // Backends flush their counters when they exit or go idle; give the last ones a moment.
    std::thread::sleep(super::cost::STATS_FLUSH);
    let mut conn = chancy.connection()?;
    let row = conn
        .client
        .query_one_unnamed(
            format!(
                "SELECT (SELECT count(*) FROM {table}), coalesce(n_dead_tup, 0), \
                        coalesce(autovacuum_count, 0) + coalesce(vacuum_count, 0) \
                 FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                table = chancy.prefix().table("jobs")
            )
            .as_str(),
            &[&chancy.prefix().table("jobs")],
        )
        .map_err(|e| Error::database("reading table statistics", e))?;
    Ok(TableStats {
        rows: row.get(0),
        dead_tuples: row.get(1),
        vacuums: row.get(2),
    })
}

/// Jobs of the benchmark prefix in state `succeeded`.
pub(super) fn count_succeeded(chancy: &Chancy) -> Result<i64> {
    count_jobs(chancy, "state = 'succeeded'")
}

/// Jobs of the benchmark prefix in state `succeeded` that took exactly one attempt: with
/// [`count_succeeded`], the exactly-once check of a drain (every pushed job succeeded, none
/// was claimed again after a failed or lost attempt).
pub(super) fn count_ran_once(chancy: &Chancy) -> Result<i64> {
    count_jobs(chancy, "state = 'succeeded' AND attempts = 1")
}

/// Rows of the benchmark prefix's jobs table matching `condition` (a constant SQL
/// condition).
fn count_jobs(chancy: &Chancy, condition: &str) -> Result<i64> {
    let mut conn = chancy.connection()?;
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {condition}",
        chancy.prefix().table("jobs")
    );
    let row = conn
        .client
        .query_one_unnamed(sql.as_str(), &[])
        .map_err(|e| Error::database("counting jobs", e))?;
    Ok(row.get(0))
}

/// `n` jobs in `d`, per second.
pub(super) fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// The 1, 5 and 15 minute load averages of this machine.
pub(super) fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

pub(super) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// utime + stime of process `pid` (0 when it cannot be read), in seconds.
pub(super) fn process_cpu_seconds(pid: u32) -> f64 {
    proc_cpu_ticks(&pid.to_string()) as f64 / super::cost::ticks_per_second()
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    proc_cpu_ticks("self")
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks (0 when it cannot be read).
fn proc_cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
