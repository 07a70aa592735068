//! What a run costs the database and this process, per job: PostgreSQL CPU, worker CPU,
//! WAL, commits and statements; and the buffers one claim touches per row.
//!
//! PostgreSQL CPU comes from /proc when the server runs on this machine (found by reading
//! the pid of one of our own backends and its parent, the postmaster): the utime + stime of
//! the postmaster, of its reaped children (cutime + cstime) and of every live child, so
//! backends that start or exit during the run are counted too. When the server is elsewhere
//! it comes from `pg_stat_statements` (time inside statements, when the extension is
//! installed and loaded), and the report says which source it used.
//!
//! Every database-wide counter (WAL position, `pg_stat_database.xact_commit`,
//! `pg_stat_statements`, CPU of all postgres processes) includes other sessions' work: on a
//! shared server, read them as upper bounds. The `own` CPU figure counts only this run's
//! backends (matched by `application_name`) and the server's background processes.

use crate::unnamed::Unnamed;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::Chancy;

/// How long the bench waits for backends to flush their cumulative statistics
/// (`pg_stat_database`) after they go idle: PostgreSQL flushes at most once a second.
pub(super) const STATS_FLUSH: Duration = Duration::from_millis(1100);

/// Per-job costs of one measured period (a drain or a steady run).
#[derive(Debug, Clone, Serialize)]
pub(super) struct Costs {
    /// Jobs the period processed (the divisor of every `*_per_job`).
    pub jobs: usize,
    pub seconds: f64,
    /// CPU (user + system) of this process, which runs the worker, over the period.
    pub worker_cpu_seconds: f64,
    pub worker_cpu_us_per_job: f64,
    /// `proc` (CPU of the local server's processes), `pg_stat_statements` (time inside
    /// statements, remote server) or `unavailable`.
    pub postgres_cpu_source: &'static str,
    /// How to read `postgres_cpu_*`, or why it is missing.
    pub postgres_cpu_note: String,
    /// All processes of the server (`proc`), or statement time of every session in this
    /// database (`pg_stat_statements`).
    pub postgres_cpu_seconds: Option<f64>,
    pub postgres_cpu_us_per_job: Option<f64>,
    /// `proc` only: this run's backends plus the server's background processes (WAL
    /// writer, checkpointer, autovacuum, ...), leaving out other clients' backends.
    pub postgres_own_cpu_seconds: Option<f64>,
    pub postgres_own_cpu_us_per_job: Option<f64>,
    /// Processes counted in `postgres_own_*`: this run's backends and the background processes seen at the end of the period (`proc` only).
    pub own_processes: Option<usize>,
    /// WAL the whole server wrote over the period.
    pub wal_bytes: i64,
    pub wal_bytes_per_job: f64,
    /// WAL records and full-page images (`pg_stat_wal`, whole server) over the period.
    pub wal_records: i64,
    pub wal_records_per_job: f64,
    pub wal_fpi: i64,
    pub wal_fpi_per_job: f64,
    /// `pg_stat_database.xact_commit` delta of this database (every session in it).
    pub commits: i64,
    pub commits_per_job: f64,
    /// `pg_stat_statements` calls delta of this database, when available.
    pub statements: Option<i64>,
    pub statements_per_job: Option<f64>,
    /// `pg_stat_statements` when `statements` is set, otherwise why it is missing.
    pub statements_note: String,
}

/// `EXPLAIN (ANALYZE, BUFFERS, WAL)` of one claim, in a transaction that is rolled back.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ClaimCost {
    /// Rows asked for (the queue's concurrency: what a fetcher with every slot free claims).
    pub limit: i64,
    /// Rows the claim returned.
    pub rows: i64,
    /// Waiting jobs in the queue when it ran.
    pub waiting: i64,
    pub execution_ms: f64,
    pub shared_hit: i64,
    pub shared_read: i64,
    pub shared_dirtied: i64,
    pub shared_written: i64,
    /// (`shared_hit` + `shared_read`) / `rows`.
    pub buffers_per_row: f64,
    pub wal_records: i64,
    pub wal_bytes: i64,
    pub wal_fpi: i64,
    pub wal_records_per_row: f64,
    pub wal_bytes_per_row: f64,
}

/// Where the figures come from, decided once per run.
pub(super) struct Meter {
    /// Pid of the local server's postmaster, when the server is local.
    postmaster: Option<u32>,
    /// Why the server is not treated as local.
    not_local: String,
    /// `application_name` of this run's connections.
    app: String,
}

/// Counters read at the start of a period.
pub(super) struct Start {
    at: Instant,
    worker_cpu: Duration,
    server: Option<ServerTicks>,
    wal: i64,
    counters: Counters,
}

/// What is read the moment a period ends (before the worker stops).
pub(super) struct End {
    at: Instant,
    worker_cpu: Duration,
    server: Option<ServerTicks>,
    own_pids: HashSet<u32>,
    wal: i64,
}

struct Counters {
    commits: i64,
    wal_records: i64,
    wal_fpi: i64,
    /// (calls, milliseconds inside statements) or why pg_stat_statements is unavailable.
    statements: std::result::Result<(i64, f64), String>,
}

/// CPU clock ticks of one server: the total (postmaster with its reaped children, plus
/// every live child) and each live child's own.
struct ServerTicks {
    total: u64,
    postmaster_self: u64,
    children: HashMap<u32, u64>,
}

impl Meter {
    /// Finds out whether the server is local (one of our backends is a child of a postgres
    /// process on this machine).
    pub(super) fn detect(chancy: &Chancy, app: &str) -> Result<Meter> {
        let mut conn = chancy.connection()?;
        let pid: i32 = conn
            .client
            .query_one_unnamed("SELECT pg_backend_pid()", &[])
            .map_err(|e| Error::database("reading the backend pid", e))?
            .get(0);
        let (postmaster, not_local) = match proc_stat(pid as u32) {
            Some(backend) if backend.comm == "postgres" => match proc_stat(backend.ppid) {
                Some(parent) if parent.comm == "postgres" => (Some(backend.ppid), String::new()),
                _ => (
                    None,
                    format!("backend {pid}'s parent is not a postgres process"),
                ),
            },
            _ => (
                None,
                format!("backend pid {pid} is not a postgres process on this machine"),
            ),
        };
        Ok(Meter {
            postmaster,
            not_local,
            app: app.to_string(),
        })
    }

    /// Reads every counter at the start of a period (wait [`STATS_FLUSH`] after earlier
    /// work first, so its cumulative statistics are not counted in this period).
    pub(super) fn start(&self, chancy: &Chancy) -> Result<Start> {
        let counters = counters(chancy)?;
        Ok(Start {
            wal: wal_position(chancy)?,
            server: self.postmaster.and_then(server_ticks),
            worker_cpu: own_cpu(),
            at: Instant::now(),
            counters,
        })
    }

    /// Reads CPU and WAL the moment a period ends (call before stopping the worker, so its
    /// backends are still there to be attributed).
    pub(super) fn end(&self, chancy: &Chancy) -> Result<End> {
        let at = Instant::now();
        let worker_cpu = own_cpu();
        let server = self.postmaster.and_then(server_ticks);
        let wal = wal_position(chancy)?;
        let own_pids = if self.postmaster.is_some() {
            own_pids(chancy, &self.app)?
        } else {
            HashSet::new()
        };
        Ok(End {
            at,
            worker_cpu,
            server,
            own_pids,
            wal,
        })
    }

    /// The per-job costs of a period, reading the commit and statement counters now (call
    /// after the worker stopped and [`STATS_FLUSH`] passed, so its backends flushed them).
    pub(super) fn costs(
        &self,
        chancy: &Chancy,
        start: &Start,
        end: &End,
        jobs: usize,
    ) -> Result<Costs> {
        let now = counters(chancy)?;
        let per_job = |x: f64| x / jobs.max(1) as f64;
        let worker_cpu = end
            .worker_cpu
            .saturating_sub(start.worker_cpu)
            .as_secs_f64();
        let mut costs = Costs {
            jobs,
            seconds: end.at.duration_since(start.at).as_secs_f64(),
            worker_cpu_seconds: worker_cpu,
            worker_cpu_us_per_job: per_job(worker_cpu * 1e6),
            postgres_cpu_source: "unavailable",
            postgres_cpu_note: String::new(),
            postgres_cpu_seconds: None,
            postgres_cpu_us_per_job: None,
            postgres_own_cpu_seconds: None,
            postgres_own_cpu_us_per_job: None,
            own_processes: None,
            wal_bytes: end.wal - start.wal,
            wal_bytes_per_job: per_job((end.wal - start.wal) as f64),
            wal_records: now.wal_records - start.counters.wal_records,
            wal_records_per_job: per_job((now.wal_records - start.counters.wal_records) as f64),
            wal_fpi: now.wal_fpi - start.counters.wal_fpi,
            wal_fpi_per_job: per_job((now.wal_fpi - start.counters.wal_fpi) as f64),
            commits: now.commits - start.counters.commits,
            commits_per_job: per_job((now.commits - start.counters.commits) as f64),
            statements: None,
            statements_per_job: None,
            statements_note: String::new(),
        };
        match (&start.counters.statements, &now.statements) {
            (Ok((calls0, _)), Ok((calls1, _))) => {
                costs.statements = Some(calls1 - calls0);
                costs.statements_per_job = Some(per_job((calls1 - calls0) as f64));
                costs.statements_note =
                    "pg_stat_statements calls of every session in this database".into();
            }
            (Err(why), _) | (_, Err(why)) => costs.statements_note = why.clone(),
        }
        if let (Some(s), Some(e)) = (&start.server, &end.server) {
            let tick = ticks_per_second();
            let all = e.total.saturating_sub(s.total) as f64 / tick;
            let mut own_ticks = e.postmaster_self.saturating_sub(s.postmaster_self);
            for (pid, ticks) in &e.children {
                if end.own_pids.contains(pid) {
                    own_ticks += ticks.saturating_sub(s.children.get(pid).copied().unwrap_or(0));
                }
            }
            let own = own_ticks as f64 / tick;
            costs.postgres_cpu_source = "proc";
            costs.postgres_cpu_note = "local server: utime+stime of all its processes from /proc; \
                own = this run's backends + background processes"
                .into();
            costs.postgres_cpu_seconds = Some(all);
            costs.postgres_cpu_us_per_job = Some(per_job(all * 1e6));
            costs.postgres_own_cpu_seconds = Some(own);
            costs.postgres_own_cpu_us_per_job = Some(per_job(own * 1e6));
            costs.own_processes = Some(
                end.own_pids
                    .iter()
                    .filter(|p| e.children.contains_key(p))
                    .count(),
            );
        } else if let (Ok((_, ms0)), Ok((_, ms1))) = (&start.counters.statements, &now.statements) {
            let secs = (ms1 - ms0) / 1000.0;
            costs.postgres_cpu_source = "pg_stat_statements";
            costs.postgres_cpu_note = format!(
                "server not local ({}): total_exec_time + total_plan_time of every session in \
                 this database (time inside statements, including waits; not process CPU)",
                self.not_local
            );
            costs.postgres_cpu_seconds = Some(secs);
            costs.postgres_cpu_us_per_job = Some(per_job(secs * 1e6));
        } else {
            costs.postgres_cpu_note = format!(
                "server not local ({}) and pg_stat_statements unavailable",
                self.not_local
            );
        }
        Ok(costs)
    }
}

/// Runs one claim of `limit` rows of `queue` (the worker's own statement, under the
/// fetcher's planner settings) with `EXPLAIN (ANALYZE, BUFFERS, WAL)`, and rolls it back.
pub(super) fn explain_claim(chancy: &Chancy, queue: &str, limit: i64) -> Result<ClaimCost> {
    let mut conn = chancy.connect_dedicated()?;
    let client = &mut conn.client;
    let err = |e| Error::database("explaining a claim", e);
    let waiting: i64 = client
        .query_one_unnamed(
            format!(
                "SELECT count(*) FROM {} WHERE queue = $1 AND state IN ('pending', 'retrying')",
                chancy.prefix().table("jobs")
            )
            .as_str(),
            &[&queue],
        )
        .map_err(err)?
        .get(0);
    let sql = format!(
        "EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) {}",
        chancy.sql().fetch
    );
    let mut tx = client.transaction().map_err(err)?;
    // The planner settings the fetch scheduler claims under: the explained claim is the real
    // one (local to this transaction, so they hold behind transaction pooling too).
    tx.batch_execute(&crate::worker::claim_settings_sql(true, true))
        .map_err(err)?;
    let row = tx
        .query_one_unnamed(
            sql.as_str(),
            &[&queue, &limit, &"chancy-bench-explain", &None::<&str>],
        )
        .map_err(err)?;
    tx.rollback().map_err(err)?;
    let plan: Value = row.get(0);
    Ok(claim_cost(&plan, limit, waiting))
}

/// Reads the top plan node's counters (they include the children's).
fn claim_cost(explain: &Value, limit: i64, waiting: i64) -> ClaimCost {
    let top = &explain[0];
    let plan = &top["Plan"];
    let int = |k: &str| plan[k].as_i64().unwrap_or(0);
    let rows = int("Actual Rows");
    let per_row = |x: i64| x as f64 / rows.max(1) as f64;
    ClaimCost {
        limit,
        rows,
        waiting,
        execution_ms: top["Execution Time"].as_f64().unwrap_or(0.0),
        shared_hit: int("Shared Hit Blocks"),
        shared_read: int("Shared Read Blocks"),
        shared_dirtied: int("Shared Dirtied Blocks"),
        shared_written: int("Shared Written Blocks"),
        buffers_per_row: per_row(int("Shared Hit Blocks") + int("Shared Read Blocks")),
        wal_records: int("WAL Records"),
        wal_bytes: int("WAL Bytes"),
        wal_fpi: int("WAL FPI"),
        wal_records_per_row: per_row(int("WAL Records")),
        wal_bytes_per_row: per_row(int("WAL Bytes")),
    }
}

/// The server's current WAL insert position, in bytes.
pub(super) fn wal_position(chancy: &Chancy) -> Result<i64> {
    let mut conn = chancy.connection()?;
    let row = conn
        .client
        .query_one_unnamed(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8",
            &[],
        )
        .map_err(|e| Error::database("reading the WAL position", e))?;
    Ok(row.get(0))
}

fn counters(chancy: &Chancy) -> Result<Counters> {
    let mut conn = chancy.connection()?;
    let commits: i64 = conn
        .client
        .query_one_unnamed(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .map_err(|e| Error::database("reading pg_stat_database", e))?
        .get(0);
    let wal = conn
        .client
        .query_one_unnamed("SELECT wal_records, wal_fpi FROM pg_stat_wal", &[])
        .map_err(|e| Error::database("reading pg_stat_wal", e))?;
    // A failed query (extension not created, or not in shared_preload_libraries) leaves
    // the pooled connection usable: it runs outside a transaction.
    let statements = conn
        .client
        .query_one_unnamed(
            "SELECT coalesce(sum(calls), 0)::int8, \
                    coalesce(sum(total_exec_time + total_plan_time), 0)::float8 \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1)))
        .map_err(|e| {
            let text = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string());
            format!("pg_stat_statements unavailable: {text}")
        });
    Ok(Counters {
        commits,
        wal_records: wal.get(0),
        wal_fpi: wal.get(1),
        statements,
    })
}

/// Backends of this run (by `application_name`: this process's, and `<app>-w<i>` of the
/// `--workers` processes) and the server's non-client processes.
fn own_pids(chancy: &Chancy, app: &str) -> Result<HashSet<u32>> {
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query_unnamed(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 OR application_name LIKE $1 || '-w%' \
                OR backend_type <> 'client backend'",
            &[&app],
        )
        .map_err(|e| Error::database("reading pg_stat_activity", e))?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
}

/// The fields of /proc/<pid>/stat the meter uses.
struct ProcStat {
    comm: String,
    ppid: u32,
    /// utime + stime
    ticks: u64,
    /// cutime + cstime (reaped children)
    child_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let (head, rest) = text.rsplit_once(") ")?;
    let comm = head.get(open + 1..)?.to_string();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // After the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    Some(ProcStat {
        comm,
        ppid: num(1)? as u32,
        ticks: num(11)? + num(12)?,
        child_ticks: num(13)? + num(14)?,
    })
}

fn server_ticks(postmaster: u32) -> Option<ServerTicks> {
    let pm = proc_stat(postmaster)?;
    let mut children = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = proc_stat(pid).filter(|s| s.ppid == postmaster) {
            children.insert(pid, stat.ticks);
        }
    }
    Some(ServerTicks {
        total: pm.ticks + pm.child_ticks + children.values().sum::<u64>(),
        postmaster_self: pm.ticks,
        children,
    })
}

/// User + system CPU of this process (all threads).
pub(super) fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub(super) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// `dsn` with `application_name` set to `name` (a URL or a libpq `key=value` string; a
/// later setting overrides an earlier one).
pub(super) fn with_application_name(dsn: &str, name: &str) -> String {
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let sep = if dsn.contains('?') { '&' } else { '?' };
        format!("{dsn}{sep}application_name={name}")
    } else {
        format!("{dsn} application_name={name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let s = parse_stat("42 (post gres) S 7 42 42 0 -1 4194560 1 0 0 0 5 3 2 1 20 0 1")
            .expect("parses");
        assert_eq!(s.comm, "post gres");
        assert_eq!(s.ppid, 7);
        assert_eq!(s.ticks, 8);
        assert_eq!(s.child_ticks, 3);
    }

    #[test]
    fn application_name_is_appended_to_both_dsn_forms() {
        assert_eq!(
            with_application_name("postgresql://u@h/db", "x"),
            "postgresql://u@h/db?application_name=x"
        );
        assert_eq!(
            with_application_name("postgresql://u@h/db?sslmode=disable", "x"),
            "postgresql://u@h/db?sslmode=disable&application_name=x"
        );
        assert_eq!(
            with_application_name("host=h user=u", "x"),
            "host=h user=u application_name=x"
        );
    }

    #[test]
    fn claim_cost_reads_the_top_node() {
        let plan = serde_json::json!([{
            "Plan": {"Actual Rows": 4, "Shared Hit Blocks": 30, "Shared Read Blocks": 2,
                     "Shared Dirtied Blocks": 1, "Shared Written Blocks": 0,
                     "WAL Records": 12, "WAL Bytes": 800, "WAL FPI": 0},
            "Execution Time": 0.5
        }]);
        let c = claim_cost(&plan, 4, 100);
        assert_eq!(c.rows, 4);
        assert_eq!(c.buffers_per_row, 8.0);
        assert_eq!(c.wal_records_per_row, 3.0);
        assert_eq!(c.wal_bytes_per_row, 200.0);
        assert_eq!(c.execution_ms, 0.5);
    }
}
