//! SIGINT/SIGTERM: the first signal stops every registered worker gracefully, a second one
//! exits the process at once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::{spawn_named, Worker, WorkerShared};
use crate::error::{Error, Result};

static TARGETS: OnceLock<Mutex<Vec<Weak<WorkerShared>>>> = OnceLock::new();

/// Registers `shared` for signals, installing the process handler on first use.
pub(crate) fn install(shared: &Arc<WorkerShared>) -> Result<()> {
    let mut first = false;
    let targets = TARGETS.get_or_init(|| {
        first = true;
        Mutex::new(Vec::new())
    });
    targets.lock().push(Arc::downgrade(shared));
    if first {
        ctrlc::set_handler(|| {
            let live: Vec<Arc<WorkerShared>> = TARGETS
                .get()
                .map(|t| t.lock().iter().filter_map(Weak::upgrade).collect())
                .unwrap_or_default();
            for shared in live {
                on_signal(&shared);
            }
        })
        .map_err(|e| Error::config(format!("cannot install signal handlers: {e}")))?;
    }
    Ok(())
}

pub(crate) fn on_signal(shared: &Arc<WorkerShared>) {
    let seen = shared.signals.fetch_add(1, Ordering::SeqCst);
    if seen == 0 {
        log::info!("received a stop signal; stopping gracefully (send it again to force)");
        let worker = Worker {
            shared: Arc::clone(shared),
        };
        spawn_named("chancy-signal-stop", move || {
            worker.stop();
        });
    } else {
        log::warn!("received signal again, forcing shutdown");
        std::process::exit(130);
    }
}
