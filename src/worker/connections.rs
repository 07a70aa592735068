//! How the worker's loops share the application pool: a loop that holds a pooled
//! connection between uses (the writer, the fetch threads) gives it back after each use
//! while another loop of this worker waits for one, or while the pool has none left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::app::Chancy;
use crate::error::Result;
use crate::pool::PooledConn;

/// The application pool as the worker's loops borrow from it.
pub(crate) struct Connections {
    chancy: Chancy,
    /// Loops of this worker waiting for a pooled connection now. Written by every borrower
    /// around its wait, read by the loops holding one; SeqCst like the pool's own state that
    /// [`Connections::wanted`] reads next to it (a cheap counter off the hot path).
    waiters: AtomicUsize,
}

impl Connections {
    pub(crate) fn new(chancy: Chancy) -> Connections {
        Connections {
            chancy,
            waiters: AtomicUsize::new(0),
        }
    }

    /// A pooled connection, waiting up to `wait`; counted as a waiter meanwhile.
    ///
    /// # Errors
    /// An unavailable error (with the server's message) when none could be had in time.
    pub(crate) fn borrow(&self, wait: Duration) -> Result<PooledConn> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let conn = self.chancy.connection_within(wait);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        conn
    }

    /// Whether a loop holding a pooled connection should give it back after this use:
    /// another loop of this worker waits for one, or the pool has none left to give.
    pub(crate) fn wanted(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > 0 || self.chancy.pool_exhausted()
    }
}
