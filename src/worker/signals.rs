//! The process's one SIGINT/SIGTERM handler. It first runs the exit hooks registered with
//! `on_signal_exit_if` (the private PostgreSQL servers of `crate::pgtemp` register one that
//! stops them all) and exits with 130 when one of them says so; otherwise the first signal stops
//! every registered worker gracefully and a second one exits the process at once (with no
//! worker registered, it runs the stop callbacks registered with [`on_stop`] — `chancy web`
//! uses one — and with none of those either it exits at once, as the default action would).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{spawn_named, Worker, WorkerShared};
use crate::error::{Error, Result};

static TARGETS: Mutex<Vec<Weak<WorkerShared>>> = Mutex::new(Vec::new());

type Stopper = Box<dyn FnOnce() + Send>;
static STOPPERS: Mutex<Vec<Stopper>> = Mutex::new(Vec::new());

/// Cleanup run first on every signal; `true` when the process should exit at once.
type ExitHook = fn() -> bool;
static EXIT_HOOKS: Mutex<Vec<ExitHook>> = Mutex::new(Vec::new());

/// Runs `hook` first at every SIGINT/SIGTERM (on the signal thread) and exits the process
/// with 130 when it returns `true`, installing the process handler on first use. Register a
/// hook once: each registration runs.
#[cfg(feature = "pgtemp")]
pub(crate) fn on_signal_exit_if(hook: ExitHook) -> Result<()> {
    EXIT_HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(hook);
    ensure_handler()
}

/// Runs `stop` (once, on its own thread) at the first SIGINT/SIGTERM, installing the
/// process handler on first use; a second signal exits the process.
#[cfg(feature = "cli")]
pub(crate) fn on_stop(stop: impl FnOnce() + Send + 'static) -> Result<()> {
    STOPPERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(stop));
    ensure_handler()
}

/// Registers `shared` for signals, installing the process handler on first use.
pub(crate) fn install(shared: &Arc<WorkerShared>) -> Result<()> {
    TARGETS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(shared));
    ensure_handler()
}

/// Installs the process handler once (`ctrlc` allows one per process); later calls return
/// the first outcome.
fn ensure_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| ctrlc::set_handler(on_process_signal).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::config(format!("cannot install signal handlers: {e}")))
}

fn on_process_signal() {
    let hooks: Vec<ExitHook> = EXIT_HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut exit = false;
    for hook in hooks {
        exit |= hook();
    }
    if exit {
        std::process::exit(130);
    }
    let live: Vec<Arc<WorkerShared>> = TARGETS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let stoppers = std::mem::take(&mut *STOPPERS.lock().unwrap_or_else(|e| e.into_inner()));
    if live.is_empty() && stoppers.is_empty() {
        std::process::exit(130);
    }
    for stop in stoppers {
        log::info!("received a stop signal; stopping (send it again to force)");
        spawn_or_run_here(stop);
    }
    for shared in live {
        on_signal(&shared);
    }
}

pub(crate) fn on_signal(shared: &Arc<WorkerShared>) {
    let seen = shared.signals.fetch_add(1, Ordering::SeqCst);
    if seen == 0 {
        log::info!("received a stop signal; stopping gracefully (send it again to force)");
        let worker = Worker::internal(shared);
        spawn_or_run_here(move || {
            worker.stop();
        });
    } else {
        log::warn!(
            "received the stop signal again, forcing exit: abandoning {} running job(s) and \
             {} outcome(s) not yet written; {}",
            shared.executions.len(),
            shared.outgoing.pending(),
            shared.how_abandoned_jobs_come_back()
        );
        std::process::exit(130);
    }
}

/// Runs `stop` on its own thread, or on the signal thread itself when no thread can be
/// started (a stop must happen either way; it never panics).
fn spawn_or_run_here(stop: impl FnOnce() + Send + 'static) {
    let cell = Arc::new(std::sync::Mutex::new(Some(stop)));
    let theirs = Arc::clone(&cell);
    let started = spawn_named("chancy-signal-stop", move || {
        let stop = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            stop();
        }
    });
    if let Err(e) = started {
        log::error!("cannot start the stop thread ({e}); stopping on the signal thread");
        let stop = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            stop();
        }
    }
}
