//! Claiming jobs: Chancy's fetch semantics (order, eligibility, rate-limit windows) with a
//! fresh `claim_id` per claim.

use chrono::Utc;

use super::claims::Claimed;
use super::context::{JobError, JobErrorKind};
use super::executor::record_outcome;
use std::sync::Arc;

use super::claims::Claims;
use super::connections::Connections;
use super::heartbeat::Identity;
use super::lifecycle::Lifecycle;
use super::writer::Outgoing;
use crate::error::{Error, Result};
use crate::job::read_row;
use crate::pool::{Conn, Prepared};
use crate::queue::Queue;
use postgres::GenericClient;

/// What claiming uses, and nothing else of the worker: built once in `WorkerBuilder::build`,
/// read by the fetch threads (and, for `claims`/`outgoing`, the queue runners they visit).
/// Every field is set at build and never replaced; the locks are inside the handles.
pub(crate) struct FetchDeps {
    /// Who claims: the client (SQL, pool), the worker id and session tag written into every
    /// claimed row. Read-only.
    pub(crate) me: Identity,
    /// The worker's life (its own lock, a leaf): a claim is fenced by the session tag once
    /// this process holds the worker id (`took_id`). Written by start/stop, read per claim.
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// `WorkerBuilder::synchronous_commit`, for the claim connection's settings.
    pub(crate) synchronous_commit: bool,
    /// Claims fetched and not yet written (its own lock, a leaf): every claimed job gets a
    /// guard here; the writer releases it after the outcome's commit.
    pub(crate) claims: Arc<Claims>,
    /// The writer's queue: rows that cannot run fail at once through it.
    pub(crate) outgoing: Arc<Outgoing>,
    /// The application pool as the worker's loops borrow from it (fetch connections).
    pub(crate) connections: Arc<Connections>,
}

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

/// The statements that prepare a connection for claims: [`CLAIM_SETTINGS`] (and
/// `synchronous_commit = off` when the worker turned it off), as `SET` for the session, or
/// as `SET LOCAL` for one claim's transaction (`local`, behind transaction pooling).
pub(crate) fn claim_settings(deps: &FetchDeps, local: bool) -> String {
    claim_settings_sql(deps.synchronous_commit, local)
}

/// [`claim_settings`] for a given `synchronous_commit`.
pub(crate) fn claim_settings_sql(synchronous_commit: bool, local: bool) -> String {
    let mut sql = CLAIM_SETTINGS.to_string();
    if !synchronous_commit {
        sql.push_str("; SET synchronous_commit = off");
    }
    if local {
        sql = sql.replace("SET ", "SET LOCAL ");
    }
    sql
}

/// The queues among `queues` that have a job to claim now (one statement).
pub(crate) fn queues_with_work(
    deps: &FetchDeps,
    conn: &mut Conn,
    queues: &[String],
) -> Result<std::collections::HashSet<String>> {
    let stmt = conn.statement(&deps.me.chancy.sql().queues_with_work)?;
    let rows = stmt
        .query(&mut conn.client, &[&queues])
        .map_err(|e| Error::database("looking for queues with work", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Claims up to `up_to` jobs of `queue` for this worker in one transaction. Each claimed job
/// comes with the guard that holds its claim (see `claims.rs`) from the moment its row is read.
/// Behind transaction pooling the claim runs in a transaction of its own that sets the claim
/// settings locally (no session state survives between transactions there).
pub(crate) fn fetch_jobs(
    deps: &FetchDeps,
    queue: &Queue,
    conn: &mut Conn,
    up_to: usize,
) -> Result<Vec<Claimed>> {
    let sql = deps.me.chancy.sql();
    let fetch = conn.statement(&sql.fetch)?;
    let rate_limit = match queue.rate_limit.filter(|l| *l > 0) {
        None => None,
        Some(limit) => Some(RateLimit {
            limit,
            window: queue.rate_limit_window.map_or(1, |w| w.as_secs().max(1)) as i64,
            open: conn.statement(&sql.rate_limit_window)?,
            bump: conn.statement(&sql.rate_limit_bump)?,
        }),
    };
    let up_to = up_to as i64;
    let rows = if conn.transaction_pooling() {
        let mut tx = conn
            .client
            .transaction()
            .map_err(|e| Error::database("fetching jobs", e))?;
        tx.batch_execute(&claim_settings(deps, true))
            .map_err(|e| Error::database("setting the claim settings", e))?;
        let rows = claim(deps, &mut tx, &fetch, rate_limit.as_ref(), queue, up_to)?;
        tx.commit()
            .map_err(|e| Error::database("fetching jobs", e))?;
        rows
    } else {
        claim(
            deps,
            &mut conn.client,
            &fetch,
            rate_limit.as_ref(),
            queue,
            up_to,
        )?
    };
    Ok(runnable(deps, &rows))
}

/// A queue's rate limit and the statements that keep its window.
struct RateLimit {
    limit: i32,
    /// Window length in seconds.
    window: i64,
    open: Prepared,
    bump: Prepared,
}

/// The session tag the claim is fenced by (see the fetch statement): this process's, once it
/// holds the worker id.
fn session_fence(deps: &FetchDeps) -> Option<&str> {
    deps.lifecycle
        .took_id()
        .then_some(deps.me.session_tag.as_str())
}

/// The claimed rows: without a rate limit one statement, one round trip; with one, the
/// window is read, the claim bounded by what is left of it and the window counted, in one
/// transaction (a savepoint when `client` is a transaction already).
fn claim<C: GenericClient>(
    deps: &FetchDeps,
    client: &mut C,
    fetch: &Prepared,
    rate_limit: Option<&RateLimit>,
    queue: &Queue,
    up_to: i64,
) -> Result<Vec<postgres::Row>> {
    let Some(rl) = rate_limit else {
        return fetch
            .query(
                client,
                &[
                    &queue.name,
                    &up_to,
                    &deps.me.worker_id,
                    &session_fence(deps),
                ],
            )
            .map_err(|e| Error::database("claiming jobs", e));
    };
    let mut tx = client
        .transaction()
        .map_err(|e| Error::database("fetching jobs", e))?;
    let count: i32 = rl
        .open
        .query_one(&mut tx, &[&queue.name, &rl.window])
        .map_err(|e| Error::database("reading the rate-limit window", e))?
        .get(0);
    if count >= rl.limit {
        tx.commit()
            .map_err(|e| Error::database("fetching jobs", e))?;
        return Ok(Vec::new());
    }
    let up_to = up_to.min(i64::from(rl.limit - count));
    let rows = fetch
        .query(
            &mut tx,
            &[
                &queue.name,
                &up_to,
                &deps.me.worker_id,
                &session_fence(deps),
            ],
        )
        .map_err(|e| Error::database("claiming jobs", e))?;
    if !rows.is_empty() {
        rl.bump
            .execute(&mut tx, &[&queue.name, &(rows.len() as i32)])
            .map_err(|e| Error::database("counting rate-limited jobs", e))?;
    }
    tx.commit()
        .map_err(|e| Error::database("fetching jobs", e))?;
    Ok(rows)
}

/// The claimed rows that can run. Rows another client wrote with columns chancy cannot use
/// (see [`read_row`]) fail their attempt at once with a clear error instead of running with a
/// guess; a row that cannot be read at all is logged and left to the heartbeat's orphan sweep.
fn runnable(deps: &FetchDeps, rows: &[postgres::Row]) -> Vec<Claimed> {
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        match read_row(row) {
            Ok((job, None)) => jobs.push(Claimed::new(&deps.claims, job)),
            Ok((job, Some(text))) => {
                log::error!(
                    "job {} ({}) cannot run: {text}",
                    job.id,
                    crate::job::shown(&job.func)
                );
                let error = JobError::with_kind(JobErrorKind::Failed, text);
                let Claimed { job, guard } = Claimed::new(&deps.claims, job);
                let outcome = record_outcome(job, Some(&error), Utc::now());
                deps.outgoing.push(outcome, Some(guard));
            }
            Err(err) => {
                let id = row.try_get::<_, uuid::Uuid>("id").ok();
                log::error!("chancy-fetch: cannot read claimed job {id:?}: {err}");
            }
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_settings_are_session_or_local_and_add_synchronous_commit_only_when_off() {
        assert_eq!(claim_settings_sql(true, false), CLAIM_SETTINGS);
        assert_eq!(
            claim_settings_sql(false, false),
            "SET enable_sort = off; SET enable_bitmapscan = off; SET synchronous_commit = off"
        );
        assert_eq!(
            claim_settings_sql(false, true),
            "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL synchronous_commit = off"
        );
        // Every setting made is undone before the connection goes back to the pool.
        for setting in ["enable_sort", "enable_bitmapscan", "synchronous_commit"] {
            assert!(RESET_CLAIM_SETTINGS.contains(&format!("RESET {setting}")));
        }
    }
}
