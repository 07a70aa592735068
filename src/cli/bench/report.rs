//! The results of a bench run: one serializable report, shown as a table or as JSON.

use std::time::Duration;

use serde::Serialize;

use super::cost::{ClaimCost, Costs};
use super::stats::{cpus, load_average, Idle, TableStats};
use super::{BenchArgs, JobKind, Mode};
use crate::cli::table::Table;
use crate::Chancy;

/// Everything one `chancy bench` run measured. Sections of modes that did not run are
/// `null` in the JSON.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub database: String,
    pub prefix: String,
    pub cpus: usize,
    /// 1, 5 and 15 minute load averages when the run started.
    pub load_average: Vec<f64>,
    pub settings: Settings,
    pub enqueue: Option<Enqueue>,
    pub drain: Option<Drain>,
    pub latency: Option<Latency>,
    pub steady: Option<Steady>,
    pub idle: Option<Idle>,
    /// The jobs table after the run.
    pub jobs_table: Option<TableStats>,
}

/// The options the run used.
#[derive(Debug, Serialize)]
pub(super) struct Settings {
    pub mode: &'static str,
    /// Jobs of a drain (`drain` and `all` modes).
    pub jobs: usize,
    /// Arrivals per second and their duration (`steady` mode).
    pub rate: u32,
    pub seconds: u64,
    pub concurrency: i32,
    pub queues: u32,
    pub kind: &'static str,
    pub sleep_ms: u64,
    pub executor: String,
    /// Worker processes of the drain (`--workers`); `null`: one worker in this process.
    pub workers: Option<u32>,
    /// `synchronous_commit` of the draining worker's fetch and write connections.
    pub synchronous_commit: bool,
    /// Identifiers of the plugins the worker ran with.
    pub plugins: Vec<&'static str>,
}

/// `push_many` of every drain job in one call.
#[derive(Debug, Serialize)]
pub(super) struct Enqueue {
    pub jobs: usize,
    pub seconds: f64,
    pub jobs_per_second: f64,
    pub wal_bytes_per_job: f64,
}

/// The worker(s) draining the pushed jobs: from the start until the last outcome is
/// committed (with `--workers`: from just before the processes are spawned until the last
/// job's `completed_at`, on the database clock).
#[derive(Debug, Serialize)]
pub(super) struct Drain {
    pub jobs: usize,
    pub seconds: f64,
    pub jobs_per_second: f64,
    /// Rows in state `succeeded` afterwards (equals `jobs` unless something was lost).
    pub succeeded: i64,
    /// Succeeded rows with `attempts = 1`: equal to `jobs` when every job ran exactly once.
    pub ran_once: i64,
    pub wal_bytes_per_job: f64,
    /// What the drain cost the database and this process, per job.
    pub costs: Costs,
    /// `EXPLAIN (ANALYZE, BUFFERS, WAL)` of one claim of `concurrency` rows, run (and
    /// rolled back) on the full backlog just before the drain.
    pub claim: ClaimCost,
    /// The worker processes of `--workers N`; `null` for the in-process worker.
    pub processes: Option<Processes>,
}

/// N `chancy worker start` processes draining one backlog (`--workers N`).
#[derive(Debug, Serialize)]
pub(super) struct Processes {
    pub workers: u32,
    /// Each process's connection budget (`Worker::connection_budget`: its pool's
    /// `max_connection_pool_size` + 1 listener).
    pub connection_budget: u32,
    /// From the spawn to the first job's start (process start, connect, schema check,
    /// queue discovery), database clock.
    pub startup_seconds: f64,
    /// From the first job's start to the last job's completion, database clock.
    pub busy_seconds: f64,
    pub busy_jobs_per_second: f64,
    /// Most connections the processes held together in one sample (`pg_stat_activity`
    /// by `application_name`, every 250 ms).
    pub max_connections_total: i64,
    /// CPU (user + system) of all worker processes from their start to the drain's end;
    /// `drain.costs.worker_cpu_*` counts them too.
    pub cpu_seconds: f64,
    pub per_worker: Vec<WorkerProcess>,
}

/// One worker process of `--workers N`.
#[derive(Debug, Serialize)]
pub(super) struct WorkerProcess {
    pub worker_id: String,
    /// The `application_name` of its connections.
    pub application_name: String,
    /// Succeeded jobs this process claimed (`taken_by`).
    pub jobs: i64,
    /// Most connections it held in one sample (every 250 ms).
    pub max_connections: i64,
    /// CPU (user + system) from its start to the drain's end.
    pub cpu_seconds: f64,
    /// Exit code after SIGTERM (0: a clean stop).
    pub exit_code: Option<i32>,
}

/// Open-loop arrivals at a fixed rate into a running worker (`--mode steady`).
#[derive(Debug, Serialize)]
pub(super) struct Steady {
    /// Requested arrivals per second.
    pub rate: u32,
    /// Requested duration of the arrivals.
    pub seconds: u64,
    pub jobs: usize,
    /// Jobs pushed ÷ time from the first arrival to the last push's return.
    pub achieved_rate: f64,
    /// Round trips the pushers made (several due jobs go in one `push_many`).
    pub pushes: usize,
    /// The largest delay of a push behind its arrival time.
    pub max_push_lag_ms: f64,
    /// From each job's scheduled arrival to its handler starting.
    pub push_to_start_ms: Percentiles,
    /// From the first arrival until every job's outcome is written.
    pub costs: Costs,
}

/// Single pushes into an idle worker.
#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub samples: usize,
    /// From just before `push` to the handler starting.
    pub push_to_start_ms: Percentiles,
    /// From just before `push` to the writer's commit of the outcome.
    pub push_to_completed_ms: Percentiles,
}

/// Percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub(super) struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub(super) fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort();
        let pct = |p: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
            samples[i].as_secs_f64() * 1000.0
        };
        Percentiles {
            p50: pct(0.5),
            p95: pct(0.95),
            p99: pct(0.99),
            max: pct(1.0),
        }
    }
}

impl Report {
    pub(super) fn new(chancy: &Chancy, args: &BenchArgs) -> Report {
        Report {
            database: chancy.database().to_string(),
            prefix: chancy.prefix().to_string(),
            cpus: cpus(),
            load_average: load_average(),
            settings: Settings {
                mode: match args.mode {
                    Mode::Drain => "drain",
                    Mode::Latency => "latency",
                    Mode::Steady => "steady",
                    Mode::All => "all",
                },
                jobs: args.jobs,
                rate: args.rate,
                seconds: args.seconds,
                concurrency: args.concurrency,
                queues: args.queues,
                kind: match args.kind {
                    JobKind::Noop => "noop",
                    JobKind::Sleep => "sleep",
                },
                sleep_ms: args.sleep,
                executor: args.executor.clone(),
                workers: args.workers,
                synchronous_commit: !args.async_commit,
                plugins: chancy
                    .plugins()
                    .iter()
                    .map(|p| p.identifier())
                    .filter(|id| !id.starts_with("chancy.bench."))
                    .collect(),
            },
            enqueue: None,
            drain: None,
            latency: None,
            steady: None,
            idle: None,
            jobs_table: None,
        }
    }

    /// The human-readable form: one row per figure.
    pub(super) fn table(&self) -> Table {
        let mut t = Table::new(&["measure", "value"]);
        let s = &self.settings;
        t.row(vec![
            "settings".into(),
            format!(
                "{}, {} queue(s) × {} slots, {} jobs{}, {} executor{}, plugins: {}",
                if s.mode == "steady" {
                    format!("{} jobs/s for {} s", s.rate, s.seconds)
                } else {
                    format!("{} jobs", s.jobs)
                },
                s.queues,
                s.concurrency,
                s.kind,
                if s.kind == "sleep" {
                    format!(" ({} ms)", s.sleep_ms)
                } else {
                    String::new()
                },
                s.executor,
                if s.synchronous_commit {
                    ""
                } else {
                    ", synchronous_commit off"
                },
                if s.plugins.is_empty() {
                    "none".to_string()
                } else {
                    s.plugins.join(", ")
                }
            ),
        ]);
        if let Some(e) = &self.enqueue {
            t.row(vec![
                "enqueue (push_many)".into(),
                format!(
                    "{:.0} jobs/s ({} jobs in {:.3} s)",
                    e.jobs_per_second, e.jobs, e.seconds
                ),
            ]);
            t.row(vec![
                "enqueue WAL".into(),
                format!("{:.0} bytes/job", e.wal_bytes_per_job),
            ]);
        }
        if let Some(d) = &self.drain {
            t.row(vec![
                match &d.processes {
                    Some(p) => format!("drain ({} worker processes)", p.workers),
                    None => "drain (one worker)".into(),
                },
                format!(
                    "{:.0} jobs/s ({} jobs in {:.3} s, {} succeeded, {} ran exactly once)",
                    d.jobs_per_second, d.jobs, d.seconds, d.succeeded, d.ran_once
                ),
            ]);
            if let Some(p) = &d.processes {
                process_rows(&mut t, p);
            }
            let who = match &d.processes {
                Some(p) => format!("this process and its {} worker processes", p.workers),
                None => "this process".into(),
            };
            cost_rows(&mut t, "drain", &who, &d.costs);
            let c = &d.claim;
            t.row(vec![
                format!("one claim of {} ({} waiting)", c.limit, c.waiting),
                format!(
                    "{} rows in {:.2} ms: {:.1} buffers/row ({} hit, {} read, {} dirtied), \
                     {:.1} WAL records and {:.0} WAL bytes/row",
                    c.rows,
                    c.execution_ms,
                    c.buffers_per_row,
                    c.shared_hit,
                    c.shared_read,
                    c.shared_dirtied,
                    c.wal_records_per_row,
                    c.wal_bytes_per_row
                ),
            ]);
        }
        if let Some(s) = &self.steady {
            t.row(vec![
                format!("steady {} jobs/s for {} s", s.rate, s.seconds),
                format!(
                    "{} jobs at {:.0} jobs/s in {} pushes (max push lag {:.1} ms)",
                    s.jobs, s.achieved_rate, s.pushes, s.max_push_lag_ms
                ),
            ]);
            let p = &s.push_to_start_ms;
            t.row(vec![
                "steady arrival→start".into(),
                format!(
                    "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    p.p50, p.p95, p.p99, p.max
                ),
            ]);
            cost_rows(&mut t, "steady", "this process", &s.costs);
        }
        if let Some(l) = &self.latency {
            for (name, p) in [
                ("push→start", &l.push_to_start_ms),
                ("push→completed", &l.push_to_completed_ms),
            ] {
                t.row(vec![
                    format!("{name} ({} samples)", l.samples),
                    format!(
                        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        p.p50, p.p95, p.p99, p.max
                    ),
                ]);
            }
        }
        if let Some(i) = &self.idle {
            t.row(vec![
                format!("idle worker ({} queues)", i.queues),
                format!(
                    "{:.2}% of one core, RSS {:.1} MB, {} threads, {} connections (budget {}), \
                     one job per queue all run in {}",
                    i.cpu_percent,
                    i.rss_mb,
                    i.threads,
                    i.connections,
                    i.budget,
                    i.serve_all_seconds
                        .map_or("(not within 120 s)".to_string(), |s| format!("{s:.2} s"))
                ),
            ]);
        }
        if let Some(j) = &self.jobs_table {
            t.row(vec![
                "jobs table after the run".into(),
                format!(
                    "{} rows, {} dead tuples, {} vacuum(s)",
                    j.rows, j.dead_tuples, j.vacuums
                ),
            ]);
        }
        t
    }
}

/// The rows of `--workers N`: the drain without startup, then one row per process.
fn process_rows(t: &mut Table, p: &Processes) {
    t.row(vec![
        "drain without startup".into(),
        format!(
            "{:.0} jobs/s (first start → last completion {:.3} s; startup {:.3} s)",
            p.busy_jobs_per_second, p.busy_seconds, p.startup_seconds
        ),
    ]);
    t.row(vec![
        "worker connections".into(),
        format!(
            "at most {} together (budget {} each, {} for all)",
            p.max_connections_total,
            p.connection_budget,
            p.connection_budget * p.workers
        ),
    ]);
    for w in &p.per_worker {
        t.row(vec![
            format!("worker {}", w.worker_id),
            format!(
                "{} jobs, at most {} connections, {:.2} s CPU, exit {}",
                w.jobs,
                w.max_connections,
                w.cpu_seconds,
                w.exit_code
                    .map_or("by signal".to_string(), |c| c.to_string())
            ),
        ]);
    }
}

/// The per-job cost rows of one measured period; `who` ran the worker(s).
fn cost_rows(t: &mut Table, what: &str, who: &str, c: &Costs) {
    t.row(vec![
        format!("{what} PostgreSQL CPU ({})", c.postgres_cpu_source),
        match (c.postgres_cpu_us_per_job, c.postgres_own_cpu_us_per_job) {
            (Some(all), Some(own)) => format!(
                "{all:.1} µs/job all server processes, {own:.1} µs/job own backends + \
                 background ({} processes)",
                c.own_processes.unwrap_or(0)
            ),
            (Some(all), None) => format!("{all:.1} µs/job ({})", c.postgres_cpu_note),
            _ => c.postgres_cpu_note.clone(),
        },
    ]);
    t.row(vec![
        format!("{what} worker CPU"),
        format!(
            "{:.1} µs/job ({who}, {:.2} s)",
            c.worker_cpu_us_per_job, c.worker_cpu_seconds
        ),
    ]);
    t.row(vec![
        format!("{what} WAL"),
        format!(
            "{:.0} bytes/job, {:.2} records/job, {:.3} full-page images/job (whole server)",
            c.wal_bytes_per_job, c.wal_records_per_job, c.wal_fpi_per_job
        ),
    ]);
    t.row(vec![
        format!("{what} commits"),
        format!(
            "{:.3}/job ({} in this database, every session)",
            c.commits_per_job, c.commits
        ),
    ]);
    t.row(vec![
        format!("{what} statements"),
        match c.statements_per_job {
            Some(s) => format!("{s:.3}/job ({})", c.statements_note),
            None => c.statements_note.clone(),
        },
    ]);
}
