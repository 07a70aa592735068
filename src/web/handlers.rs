//! The handler pool: a fixed number of named threads (`chancy-web-<n>`) that run the
//! blocking request handlers (database reads and writes), fed by a bounded queue.
//!
//! Only complete requests reach the pool (the connection task has read the whole body), so
//! a slow or idle client never holds a handler thread. When every thread is busy and the
//! queue is full, [`Pool::submit`] refuses at once and the client gets 503. A panicking
//! handler is caught, logged and answered 500; the thread goes on serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::http::{Reply, Req};
use crate::error::{Error, Result};

/// What answers a request: the router in production, a stub in the transport's tests.
pub(crate) type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

type Task = (Req, oneshot::Sender<Reply>);

/// The threads and the queue that feeds them.
pub(crate) struct Pool {
    /// Dropped by `stop`: the threads see the disconnection and exit after their request.
    tx: Mutex<Option<Sender<Task>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `threads` handler threads behind a queue of `queue` waiting requests.
    ///
    /// # Errors
    /// When the operating system refuses a thread.
    pub fn start(threads: usize, queue: usize, handler: Handler) -> Result<Pool> {
        let (tx, rx) = crossbeam_channel::bounded::<Task>(queue);
        let mut handles = Vec::with_capacity(threads);
        for n in 0..threads {
            let (rx, handler) = (rx.clone(), Arc::clone(&handler));
            let handle = crate::sync::spawn_named(&format!("chancy-web-{n}"), move || {
                for (req, reply_to) in rx {
                    // The client may have gone: then nobody waits for the reply.
                    let _ = reply_to.send(run_guarded(&handler, &req));
                }
            })
            .map_err(|e| Error::config(format!("cannot start a web thread: {e}")))?;
            handles.push(handle);
        }
        Ok(Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        })
    }

    /// Queues `req`; the receiver gets the reply. `Err(503 reply)` when the queue is full
    /// or the pool is stopping.
    pub fn submit(&self, req: Req) -> std::result::Result<oneshot::Receiver<Reply>, Reply> {
        let (reply_to, reply) = oneshot::channel();
        let tx = self.tx.lock().clone();
        let Some(tx) = tx else {
            return Err(Reply::error(503, "the server is stopping"));
        };
        match tx.try_send((req, reply_to)) {
            Ok(()) => Ok(reply),
            Err(TrySendError::Full(_)) => Err(Reply::error(
                503,
                "every handler is busy and the queue of waiting requests is full; try again",
            )
            .with_header("Retry-After", "1")),
            Err(TrySendError::Disconnected(_)) => Err(Reply::error(503, "the server is stopping")),
        }
    }

    /// Stops taking requests and joins the threads once they finished the queued ones.
    /// Idempotent.
    pub fn stop(&self) {
        self.tx.lock().take();
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for t in threads {
            if t.join().is_err() {
                log::error!("web: a handler thread panicked outside a request");
            }
        }
    }
}

/// Runs `handler` on `req`, turning a panic into a logged 500.
pub(crate) fn run_guarded(handler: &Handler, req: &Req) -> Reply {
    match catch_unwind(AssertUnwindSafe(|| handler(req))) {
        Ok(reply) => reply,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!(
                "web: handler for {} {} panicked: {what}",
                req.method,
                req.path
            );
            Reply::error(500, "internal error")
        }
    }
}
