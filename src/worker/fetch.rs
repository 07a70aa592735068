//! Claiming jobs: Chancy's fetch semantics (order, eligibility, rate-limit windows) with a
//! fresh `claim_id` per claim.

use chrono::Utc;

use super::claims::Claimed;
use super::context::{JobError, JobErrorKind};
use super::executor::record_outcome;
use super::WorkerShared;
use crate::error::{Error, Result};
use crate::job::read_row;
use crate::pool::Conn;
use crate::queue::Queue;

/// Planner settings the fetch scheduler sets on the pooled connection it borrows, for as
/// long as it holds it ([`RESET_CLAIM_SETTINGS`] undoes them before the connection goes back
/// to the pool, so your queries never see them). Right after a bulk push the table's
/// statistics are stale and the planner may pick a bitmap scan plus a sort of the whole
/// backlog for the claim (measured: 94 ms per claim with 50k waiting jobs, against 0.5 ms
/// on the `chancy_rs` fetch-order index). Sorting is never the better plan for a claim of a
/// few rows, so the claims rule it out.
pub(crate) const CLAIM_SETTINGS: &str = "SET enable_sort = off; SET enable_bitmapscan = off";
/// Undoes [`CLAIM_SETTINGS`] (and `synchronous_commit`).
pub(crate) const RESET_CLAIM_SETTINGS: &str =
    "RESET enable_sort; RESET enable_bitmapscan; RESET synchronous_commit";

/// The statements that prepare a borrowed connection for claims.
pub(crate) fn claim_settings(shared: &WorkerShared) -> String {
    let mut sql = CLAIM_SETTINGS.to_string();
    if !shared.config.synchronous_commit {
        sql.push_str("; SET synchronous_commit = off");
    }
    sql
}

/// The queues among `queues` that have a job to claim now (one statement).
pub(crate) fn queues_with_work(
    shared: &WorkerShared,
    conn: &mut Conn,
    queues: &[String],
) -> Result<std::collections::HashSet<String>> {
    let stmt = conn.prepared(&shared.chancy.sql().queues_with_work)?;
    let rows = conn
        .client
        .query(&stmt, &[&queues])
        .map_err(|e| Error::database("looking for queues with work", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Claims up to `up_to` jobs of `queue` for this worker in one transaction. Each claimed job
/// comes with the guard that holds its claim (see `claims.rs`) from the moment its row is read.
pub(crate) fn fetch_jobs(
    shared: &WorkerShared,
    queue: &Queue,
    conn: &mut Conn,
    up_to: usize,
) -> Result<Vec<Claimed>> {
    let sql = shared.chancy.sql();
    let fetch = conn.prepared(&sql.fetch)?;
    let limit = match queue.rate_limit.filter(|l| *l > 0) {
        None => return claim(shared, conn, &fetch, queue, up_to as i64),
        Some(limit) => limit,
    };
    let window = queue.rate_limit_window.map_or(1, |w| w.as_secs().max(1)) as i64;
    let open = conn.prepared(&sql.rate_limit_window)?;
    let bump = conn.prepared(&sql.rate_limit_bump)?;
    let mut tx = conn
        .client
        .transaction()
        .map_err(|e| Error::database("fetching jobs", e))?;
    let count: i32 = tx
        .query_one(&open, &[&queue.name, &window])
        .map_err(|e| Error::database("reading the rate-limit window", e))?
        .get(0);
    if count >= limit {
        tx.commit()
            .map_err(|e| Error::database("fetching jobs", e))?;
        return Ok(Vec::new());
    }
    let up_to = (up_to as i64).min(i64::from(limit - count));
    let rows = tx
        .query(
            &fetch,
            &[
                &queue.name,
                &up_to,
                &shared.worker_id,
                &session_fence(shared),
            ],
        )
        .map_err(|e| Error::database("claiming jobs", e))?;
    if !rows.is_empty() {
        tx.execute(&bump, &[&queue.name, &(rows.len() as i32)])
            .map_err(|e| Error::database("counting rate-limited jobs", e))?;
    }
    tx.commit()
        .map_err(|e| Error::database("fetching jobs", e))?;
    Ok(runnable(shared, &rows))
}

/// The session tag the claim is fenced by (see the fetch statement): this process's, once it
/// holds the worker id.
fn session_fence(shared: &WorkerShared) -> Option<&str> {
    shared
        .lifecycle
        .took_id()
        .then_some(shared.session_tag.as_str())
}

/// The claim without a rate limit: one statement, one round trip.
fn claim(
    shared: &WorkerShared,
    conn: &mut Conn,
    fetch: &postgres::Statement,
    queue: &Queue,
    up_to: i64,
) -> Result<Vec<Claimed>> {
    let rows = conn
        .client
        .query(
            fetch,
            &[
                &queue.name,
                &up_to,
                &shared.worker_id,
                &session_fence(shared),
            ],
        )
        .map_err(|e| Error::database("claiming jobs", e))?;
    Ok(runnable(shared, &rows))
}

/// The claimed rows that can run. Rows another client wrote with columns chancy cannot use
/// (see [`read_row`]) fail their attempt at once with a clear error instead of running with a
/// guess; a row that cannot be read at all is logged and left to the heartbeat's orphan sweep.
fn runnable(shared: &WorkerShared, rows: &[postgres::Row]) -> Vec<Claimed> {
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        match read_row(row) {
            Ok((job, None)) => jobs.push(Claimed::new(&shared.claims, job)),
            Ok((job, Some(text))) => {
                log::error!("job {} ({:?}) cannot run: {text}", job.id, job.func);
                let error = JobError::with_kind(JobErrorKind::Failed, text);
                let Claimed { job, guard } = Claimed::new(&shared.claims, job);
                let outcome = record_outcome(job, Some(&error), Utc::now());
                shared.outgoing.push(outcome, Some(guard));
            }
            Err(err) => {
                let id = row.try_get::<_, uuid::Uuid>("id").ok();
                log::error!("chancy-fetch: cannot read claimed job {id:?}: {err}");
            }
        }
    }
    jobs
}
