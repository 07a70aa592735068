//! What keeps a worker running: the handles the application holds.
//!
//! Every [`Worker`] handle the application gets (from `build()`, and its clones) shares one
//! [`Owner`]; the handles the worker's own threads, plugins and the signal path use
//! ([`Worker::internal`]) do not. When the last `Owner` reference is dropped, the worker is
//! stopped as [`Worker::stop`] does.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{spawn_named, Worker, WorkerShared};

/// Stops its worker when dropped (see the lifecycle notes on [`Worker`]).
pub(crate) struct Owner(Arc<WorkerShared>);

impl Owner {
    pub(crate) fn new(shared: &Arc<WorkerShared>) -> Arc<Owner> {
        Arc::new(Owner(Arc::clone(shared)))
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let shared = &self.0;
        if !shared.started.load(Ordering::SeqCst) || shared.stopped.is_set() {
            return;
        }
        log::info!(
            "worker {}: the last handle was dropped, stopping",
            shared.worker_id
        );
        let worker = Worker::internal(shared);
        // On one of the worker's own threads (a handler dropped the last handle), stopping
        // here would wait for this very thread: stop from a new one instead.
        let own_thread = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("chancy-"));
        if own_thread {
            let started = spawn_named("chancy-drop-stop", move || {
                worker.stop();
            });
            if let Err(e) = started {
                // Stopping on this thread would wait for itself: end every loop instead.
                log::error!(
                    "worker {}: cannot start the stop thread ({e}); triggering shutdown",
                    shared.worker_id
                );
                shared.shutdown.trigger();
            }
        } else {
            worker.stop();
        }
    }
}

impl Worker {
    /// A handle for the worker's own threads and plugins: it does not keep the worker
    /// running.
    pub(crate) fn internal(shared: &Arc<WorkerShared>) -> Worker {
        Worker {
            shared: Arc::clone(shared),
            _owner: None,
        }
    }
}
