//! The fetch scheduler: [`DEFAULT_FETCH_THREADS`] threads that visit every served queue when
//! woken (NOTIFY, a freed slot, a reconnect) or due (`polling_interval`, first thread only,
//! quiet queues probed together), and claim on a connection borrowed from the application
//! pool. A queue is visited by one thread at a time (the others skip it). No queue owns a
//! thread or a connection, so a worker's threads and connections do not grow with its number
//! of queues.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::runner::QueueRunner;
use super::WorkerShared;
use crate::pool::PooledConn;
use crate::sync::Flag;

/// Longest sleep of the scheduler between visits when no queue is due sooner.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// One wait for a fetch connection (short, so the scheduler notices shutdown).
const CONNECTION_WAIT: Duration = Duration::from_secs(1);
/// The connection goes back to the pool after this long without a claim (and after every
/// pass while the pool has none to spare).
const RELEASE_IDLE: Duration = Duration::from_secs(1);
/// After a failed wait, the pause before the next try.
const CONNECTION_RETRY: Duration = Duration::from_millis(500);
/// A worker that cannot get a connection says so at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Default number of fetch threads: each borrows a connection while it is busy and visits
/// the queues the others are not visiting, so claims of different queues run in parallel.
pub(crate) const DEFAULT_FETCH_THREADS: usize = 2;

/// Wakes every fetch thread (each waits on its own flag, so one wake-up reaches them all).
#[derive(Debug, Default)]
pub(crate) struct FetchWake {
    flags: Vec<Arc<Flag>>,
}

impl FetchWake {
    pub(crate) fn new(threads: usize) -> FetchWake {
        FetchWake {
            flags: (0..threads.max(1)).map(|_| Arc::new(Flag::new())).collect(),
        }
    }

    /// Wakes every fetch thread.
    pub(crate) fn set(&self) {
        for flag in &self.flags {
            flag.set();
        }
    }

    pub(crate) fn flags(&self) -> &[Arc<Flag>] {
        &self.flags
    }
}

/// The scheduler's claim connection, borrowed from the application pool.
pub(crate) struct FetchConn {
    conn: Option<PooledConn>,
    last_used: Instant,
    /// No new attempt to connect before this (after a failure).
    retry_at: Option<Instant>,
    last_report: Option<Instant>,
    failures: u32,
}

impl FetchConn {
    pub(crate) fn new() -> FetchConn {
        FetchConn {
            conn: None,
            last_used: Instant::now(),
            retry_at: None,
            last_report: None,
            failures: 0,
        }
    }

    /// The connection, borrowed now if needed; `None` when the pool cannot give one (logged
    /// with the server's message at most every [`REPORT_EVERY`]).
    pub(crate) fn get(&mut self, shared: &WorkerShared) -> Option<&mut crate::pool::Conn> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            let borrowed = shared
                .borrow_connection(CONNECTION_WAIT)
                .and_then(|mut conn| {
                    // Behind transaction pooling each claim sets them locally instead.
                    if !conn.transaction_pooling() {
                        conn.client
                            .batch_execute(&super::fetch::claim_settings(shared, false))
                            .map_err(|e| {
                                crate::error::Error::database(
                                    "preparing a connection for claims",
                                    e,
                                )
                            })?;
                    }
                    Ok(conn)
                });
            match borrowed {
                Ok(conn) => {
                    if self.failures > 0 {
                        log::info!(
                            "chancy-fetch: worker {} has a database connection again after {} failed attempt(s)",
                            shared.worker_id,
                            self.failures
                        );
                    }
                    self.failures = 0;
                    self.retry_at = None;
                    self.conn = Some(conn);
                }
                Err(err) => {
                    self.failures += 1;
                    self.retry_at = Some(Instant::now() + CONNECTION_RETRY);
                    if self
                        .last_report
                        .map_or(true, |t| t.elapsed() >= REPORT_EVERY)
                    {
                        self.last_report = Some(Instant::now());
                        log::error!(
                            "chancy-fetch: worker {} cannot get a database connection to claim \
                             jobs ({} attempt(s) so far; retrying): {err}",
                            shared.worker_id,
                            self.failures
                        );
                    }
                    return None;
                }
            }
        }
        self.last_used = Instant::now();
        self.conn.as_deref_mut()
    }

    /// Gives the connection back when the pool has none to spare (another loop of this
    /// worker, or your code, may be waiting) or when it was not used for a while.
    fn release_if_unneeded(&mut self, shared: &WorkerShared) {
        if self.conn.is_some()
            && (shared.connections_wanted() || self.last_used.elapsed() >= RELEASE_IDLE)
        {
            self.release();
        }
    }

    /// Gives the connection back to the pool with the claim settings undone (or closes it
    /// when that fails).
    fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if !conn.transaction_pooling()
                && conn
                    .client
                    .batch_execute(super::fetch::RESET_CLAIM_SETTINGS)
                    .is_err()
            {
                conn.discard();
            }
        }
    }

    /// When the next attempt to connect may be made.
    pub(crate) fn retry_at(&self) -> Instant {
        self.retry_at
            .unwrap_or_else(|| Instant::now() + CONNECTION_RETRY)
    }

    /// A statement failed: the connection is closed, not reused (its state is unknown).
    pub(crate) fn discard(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.discard();
        }
    }
}

/// The queues whose polling timer is due that have nothing to claim, found with one
/// statement (so an idle worker with many queues costs one query per polling interval, not
/// one claim per queue). Empty when the probe could not run: then every due queue claims.
fn probe(
    shared: &WorkerShared,
    fetch: &mut FetchConn,
    runners: &[Arc<QueueRunner>],
) -> HashSet<String> {
    if shared.shutdown.is_triggered() {
        return HashSet::new();
    }
    let now = Instant::now();
    let due: Vec<String> = runners.iter().filter_map(|r| r.due_for_poll(now)).collect();
    if due.len() < 2 {
        return HashSet::new();
    }
    let Some(conn) = fetch.get(shared) else {
        return HashSet::new();
    };
    match super::fetch::queues_with_work(shared, conn, &due) {
        Ok(with_work) => due.into_iter().filter(|q| !with_work.contains(q)).collect(),
        Err(err) => {
            fetch.discard();
            log::warn!(
                "chancy-fetch: probing {} queue(s) for work failed: {err}",
                due.len()
            );
            HashSet::new()
        }
    }
}

/// The scheduler thread's body: visits until shutdown, then until every queue's running jobs
/// are done (or the stop gave up waiting for them).
pub(crate) fn run(shared: Arc<WorkerShared>, index: usize) {
    let mut fetch = FetchConn::new();
    let wake = Arc::clone(&shared.fetch_wake.flags()[index]);
    loop {
        let runners: Vec<Arc<QueueRunner>> = shared.runners.lock().values().cloned().collect();
        let mut next = Instant::now() + IDLE_WAIT;
        let timer_polls = index == 0;
        let without_work = if timer_polls {
            probe(&shared, &mut fetch, &runners)
        } else {
            HashSet::new()
        };
        for runner in &runners {
            if let Some(at) = runner.visit(&shared, &mut fetch, &without_work, timer_polls) {
                next = next.min(at);
            }
        }
        fetch.release_if_unneeded(&shared);
        if shared.shutdown.is_triggered() {
            fetch.release();
            let all_done = runners.iter().all(|r| r.finished.is_set());
            if all_done || !shared.outgoing.is_accepting() {
                break;
            }
        }
        wake.wait_and_clear(next.saturating_duration_since(Instant::now()));
    }
    log::debug!("fetch scheduler of {} finished", shared.worker_id);
}
