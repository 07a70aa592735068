//! What the fetch threads share with the queue runners they visit: the wake-up of every
//! fetch thread ([`FetchWake`]) and the claim connection a fetch thread borrows from the
//! application pool ([`FetchConn`]). Apart from the scheduler (`scheduler.rs`) so the queue
//! runners and the scheduler do not import each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetch::FetchDeps;
use crate::pool::PooledConn;
use crate::sync::Flag;

/// One wait for a fetch connection (short, so the scheduler notices shutdown).
const CONNECTION_WAIT: Duration = Duration::from_secs(1);
/// The connection goes back to the pool after this long without a claim (and after every
/// pass while the pool has none to spare).
const RELEASE_IDLE: Duration = Duration::from_secs(1);
/// After a failed wait, the pause before the next try.
const CONNECTION_RETRY: Duration = Duration::from_millis(500);
/// A worker that cannot get a connection says so at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);

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
    pub(crate) fn get(&mut self, deps: &FetchDeps) -> Option<&mut crate::pool::Conn> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            let borrowed = deps
                .connections
                .borrow(CONNECTION_WAIT)
                .and_then(|mut conn| {
                    // Behind transaction pooling each claim sets them locally instead.
                    if !conn.transaction_pooling() {
                        conn.client
                            .batch_execute(&super::fetch::claim_settings(deps, false))
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
                            deps.me.worker_id,
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
                            deps.me.worker_id,
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
    pub(crate) fn release_if_unneeded(&mut self, deps: &FetchDeps) {
        if self.conn.is_some()
            && (deps.connections.wanted() || self.last_used.elapsed() >= RELEASE_IDLE)
        {
            self.release();
        }
    }

    /// Gives the connection back to the pool with the claim settings undone (or closes it
    /// when that fails).
    pub(crate) fn release(&mut self) {
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
