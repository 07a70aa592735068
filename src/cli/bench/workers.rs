//! `--workers N`: the drain by N worker processes, each `chancy worker start` (this very
//! program, spawned as a user would run it) with its own pool and listener, on one database.
//!
//! Each process connects with its own `application_name` (`<run>-w<i>`), so its connections
//! are counted in `pg_stat_activity` and its backends' CPU lands in the run's PostgreSQL
//! cost. The parent polls the jobs table every [`POLL`] until every job succeeded and times
//! the drain on the database clock: from just before the spawn to the last job's
//! `completed_at`. The processes are stopped with SIGTERM (a graceful stop) afterwards and
//! on every error path ([`Fleet`]'s drop).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;

use super::cost::{self, Meter};
use super::report::{Processes, WorkerProcess};
use super::stats::{count_succeeded, process_cpu_seconds, rate};
use super::BenchArgs;
use super::Target;
use crate::cli::{Cli, Command as CliCommand, WorkerCommand};
use crate::error::{Error, Result};
use crate::unnamed::Unnamed;
use crate::{Chancy, Worker};

/// How often the parent reads the jobs table and `pg_stat_activity` during the drain.
const POLL: Duration = Duration::from_millis(250);
/// A drain that finishes no job for this long while every process is alive fails the run.
const STALL: Duration = Duration::from_secs(120);
/// How long a process gets to exit after SIGTERM (its jobs are done: a stop is quick).
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// What the drain by processes measured, besides the per-job costs.
pub(super) struct Drained {
    /// From just before the spawn to the last job's completion (database clock).
    pub elapsed: Duration,
    pub start: cost::Start,
    pub end: cost::End,
    pub processes: Processes,
}

/// The running worker processes of one drain.
struct Fleet {
    members: Vec<Member>,
}

struct Member {
    worker_id: String,
    application_name: String,
    child: Child,
    max_connections: i64,
    cpu_seconds: f64,
    exit_code: Option<i32>,
}

/// Spawns `n` worker processes on the pushed backlog (`jobs` jobs) and waits until every
/// job succeeded; reads the meter before the processes stop.
pub(super) fn drain(
    chancy: &Chancy,
    target: &Target<'_>,
    meter: &Meter,
    args: &BenchArgs,
    n: u32,
    jobs: usize,
) -> Result<Drained> {
    let (url, app) = (target.url, target.app);
    let argvs: Vec<Vec<String>> = (0..n).map(|i| worker_argv(chancy, args, i)).collect();
    let connection_budget = budget_of(&argvs[0], url, chancy)?;
    let start = meter.start(chancy)?;
    let spawned_at = db_clock(chancy)?;
    let mut fleet = Fleet {
        members: Vec::with_capacity(n as usize),
    };
    for (i, argv) in (0..n).zip(&argvs) {
        fleet.spawn(argv, &worker_id(i), url, &format!("{app}-w{i}"))?;
    }
    let mut max_total = 0;
    let (mut done, mut progress_at) = (0, Instant::now());
    while done < jobs {
        std::thread::sleep(POLL);
        fleet.check_alive()?;
        max_total = max_total.max(fleet.sample_connections(chancy, app)?);
        let now = count_succeeded(chancy)? as usize;
        if now > done {
            (done, progress_at) = (now, Instant::now());
        } else if progress_at.elapsed() > STALL {
            return Err(Error::timeout(format!(
                "the {n} worker processes finished no job for {STALL:?} ({done} of {jobs} \
                 succeeded)"
            )));
        }
    }
    let end = meter.end(chancy)?;
    for m in &mut fleet.members {
        m.cpu_seconds = process_cpu_seconds(m.child.id());
    }
    fleet.stop();
    let (first_start, last_completion) = span(chancy)?;
    let secs = |d: chrono::TimeDelta| d.to_std().unwrap_or_default();
    let elapsed = secs(last_completion - spawned_at);
    let busy = secs(last_completion - first_start);
    let by_worker = jobs_by_worker(chancy)?;
    let per_worker: Vec<WorkerProcess> = fleet
        .members
        .drain(..)
        .map(|m| WorkerProcess {
            jobs: by_worker
                .iter()
                .find(|(id, _)| *id == m.worker_id)
                .map_or(0, |(_, c)| *c),
            worker_id: m.worker_id,
            application_name: m.application_name,
            max_connections: m.max_connections,
            cpu_seconds: m.cpu_seconds,
            exit_code: m.exit_code,
        })
        .collect();
    Ok(Drained {
        elapsed,
        start,
        end,
        processes: Processes {
            workers: n,
            connection_budget,
            startup_seconds: secs(first_start - spawned_at).as_secs_f64(),
            busy_seconds: busy.as_secs_f64(),
            busy_jobs_per_second: rate(jobs, busy),
            max_connections_total: max_total,
            cpu_seconds: per_worker.iter().map(|w| w.cpu_seconds).sum(),
            per_worker,
        },
    })
}

/// Refuses a `--workers n` run the server cannot hold, before anything is created or
/// spawned: `n` × each process's connection budget ([`Worker::connection_budget`]: its
/// pool + 1 listener, the README's deployment formula) against `max_connections` minus the
/// slots reserved for superusers (`superuser_reserved_connections`, and
/// `reserved_connections` on PostgreSQL 16+) minus the client connections open now
/// (`pg_stat_activity`, this bench's own among them). The error gives every number and the
/// three ways out. Not checked behind a transaction pooler, where worker connections are
/// PgBouncer's clients and its pool size bounds the server side.
pub(super) fn check_connections(
    chancy: &Chancy,
    url: &str,
    args: &BenchArgs,
    n: u32,
) -> Result<()> {
    let argv = worker_argv(chancy, args, 0);
    let each = budget_of(&argv, url, chancy)?;
    let row = chancy
        .connection()?
        .query_one_unnamed(
            "SELECT current_setting('max_connections')::int, \
                    current_setting('superuser_reserved_connections')::int \
                    + COALESCE(current_setting('reserved_connections', true)::int, 0), \
                    (SELECT count(*)::int FROM pg_stat_activity \
                      WHERE backend_type = 'client backend')",
            &[],
        )
        .map_err(|e| Error::database("reading the server's connection limit", e))?;
    let (max, reserved, in_use): (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
    let free = i64::from(max) - i64::from(reserved) - i64::from(in_use);
    let needed = i64::from(n) * i64::from(each);
    if needed <= free {
        return Ok(());
    }
    let pool = each - u32::from(chancy.listens());
    let fits = if each == 0 {
        0
    } else {
        free.max(0) / i64::from(each)
    };
    Err(Error::unavailable(format!(
        "--workers {n} needs {needed} connections ({n} worker processes x {each}: pool \
         {pool}{listener}) but the server has {free} free (max_connections {max} - {reserved} \
         reserved - {in_use} in use); nothing was started. Run at most {fits} workers, give \
         each a smaller pool with --max-connection-pool-size (at least 2), or raise \
         max_connections on the server",
        listener = if chancy.listens() {
            " + 1 listener"
        } else {
            ""
        },
    )))
}

/// The command line of worker `i` (after the program name): the bench's prefix, an id of
/// its own, the bench's plugin choice, commit mode and transaction pooling.
fn worker_argv(chancy: &Chancy, args: &BenchArgs, i: u32) -> Vec<String> {
    let mut argv: Vec<String> = [
        "chancy",
        "--prefix",
        chancy.prefix().as_str(),
        "worker",
        "start",
        "--worker-id",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    if chancy.transaction_pooling() {
        // A global flag: it goes before the subcommand.
        argv.insert(1, "--transaction-pooling".into());
    }
    argv.push(worker_id(i));
    if args.no_default_plugins {
        argv.extend(["--plugins".into(), crate::cli::plugins::NONE.into()]);
    }
    if args.async_commit {
        argv.push("--async-commit".into());
    }
    if let Some(size) = args.max_connection_pool_size {
        argv.extend(["--max-connection-pool-size".into(), size.to_string()]);
    }
    argv
}

/// The id of worker process `i`.
fn worker_id(i: u32) -> String {
    format!("bench-w{i}")
}

/// The connection budget of a worker started with `argv`: the worker `chancy worker start`
/// builds from it ([`Worker::connection_budget`]), built here without starting (its pool
/// connects lazily and keeps nothing open).
fn budget_of(argv: &[String], url: &str, chancy: &Chancy) -> Result<u32> {
    let cli = Cli::try_parse_from(argv)
        .map_err(|e| Error::config(format!("bench worker command line {argv:?}: {e}")))?;
    let CliCommand::Worker(WorkerCommand::Start(start)) = &cli.command else {
        return Err(Error::config(format!("{argv:?} is not `worker start`")));
    };
    let app = start.app(
        Chancy::builder(url)
            .prefix(chancy.prefix().as_str())
            .transaction_pooling(cli.transaction_pooling)
            .min_connection_pool_size(0),
    )?;
    Ok(Worker::builder(&app).build()?.connection_budget())
}

impl Fleet {
    fn spawn(
        &mut self,
        argv: &[String],
        worker_id: &str,
        url: &str,
        application_name: &str,
    ) -> Result<()> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::config(format!("cannot find this program to spawn: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args(&argv[1..])
            .env(
                "DATABASE_URL",
                cost::with_application_name(url, application_name),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var_os("RUST_LOG").is_none() {
            // Warnings and errors only (connection trouble, failed jobs), on our stderr.
            cmd.env("RUST_LOG", "chancy=warn,r2d2=off,warn");
        }
        let child = cmd.spawn().map_err(|e| {
            Error::config(format!("cannot spawn bench worker {application_name}: {e}"))
        })?;
        self.members.push(Member {
            worker_id: worker_id.to_string(),
            application_name: application_name.to_string(),
            child,
            max_connections: 0,
            cpu_seconds: 0.0,
            exit_code: None,
        });
        Ok(())
    }

    /// Fails when a worker process exited during the drain.
    fn check_alive(&mut self) -> Result<()> {
        for m in &mut self.members {
            if let Ok(Some(status)) = m.child.try_wait() {
                m.exit_code = status.code();
                return Err(Error::config(format!(
                    "bench worker {} exited during the drain ({status}); its error is on stderr",
                    m.worker_id
                )));
            }
        }
        Ok(())
    }

    /// Records each process's connections now (its backends by `application_name`);
    /// returns their sum.
    fn sample_connections(&mut self, chancy: &Chancy, app: &str) -> Result<i64> {
        let mut conn = chancy.connection()?;
        let rows = conn
            .client
            .query_unnamed(
                "SELECT application_name, count(*) FROM pg_stat_activity \
                 WHERE application_name LIKE $1 || '-w%' GROUP BY 1",
                &[&app],
            )
            .map_err(|e| Error::database("reading pg_stat_activity", e))?;
        let mut total = 0;
        for row in rows {
            let (name, count): (String, i64) = (row.get(0), row.get(1));
            total += count;
            if let Some(m) = self.members.iter_mut().find(|m| m.application_name == name) {
                m.max_connections = m.max_connections.max(count);
            }
        }
        Ok(total)
    }

    /// SIGTERM to every process still running (a graceful stop), then waits for each; one
    /// that outlives [`STOP_WITHIN`] is killed.
    fn stop(&mut self) {
        for m in &mut self.members {
            if m.exit_code.is_none() && matches!(m.child.try_wait(), Ok(None)) {
                // SAFETY: kill(2) with a pid this process spawned and has not reaped.
                unsafe { libc::kill(m.child.id() as libc::pid_t, libc::SIGTERM) };
            }
        }
        let until = Instant::now() + STOP_WITHIN;
        for m in &mut self.members {
            loop {
                match m.child.try_wait() {
                    Ok(Some(status)) => {
                        m.exit_code = m.exit_code.or(status.code());
                        break;
                    }
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        log::warn!(
                            "bench worker {} did not stop within {STOP_WITHIN:?}; killing it",
                            m.worker_id
                        );
                        let _ = m.child.kill();
                        let _ = m.child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The database's clock now.
fn db_clock(chancy: &Chancy) -> Result<DateTime<Utc>> {
    let mut conn = chancy.connection()?;
    let row = conn
        .client
        .query_one_unnamed("SELECT clock_timestamp()", &[])
        .map_err(|e| Error::database("reading the database clock", e))?;
    Ok(row.get(0))
}

/// The first job's start and the last job's completion.
fn span(chancy: &Chancy) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let mut conn = chancy.connection()?;
    let sql = format!(
        "SELECT min(started_at), max(completed_at) FROM {} WHERE state = 'succeeded'",
        chancy.prefix().table("jobs")
    );
    let row = conn
        .client
        .query_one_unnamed(sql.as_str(), &[])
        .map_err(|e| Error::database("reading the drain's time span", e))?;
    match (row.get(0), row.get(1)) {
        (Some(first), Some(last)) => Ok((first, last)),
        _ => Err(Error::config(
            "no job succeeded: the drain has no time span",
        )),
    }
}

/// Succeeded jobs per worker id (`taken_by`).
fn jobs_by_worker(chancy: &Chancy) -> Result<Vec<(String, i64)>> {
    let mut conn = chancy.connection()?;
    let sql = format!(
        "SELECT coalesce(taken_by, ''), count(*) FROM {} WHERE state = 'succeeded' GROUP BY 1",
        chancy.prefix().table("jobs")
    );
    let rows = conn
        .client
        .query_unnamed(sql.as_str(), &[])
        .map_err(|e| Error::database("counting jobs per worker", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
