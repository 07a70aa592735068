//! The process's one SIGINT/SIGTERM handler (lock order: `TARGETS`, then `STOPPERS`), installed only when something asks for it (a
//! worker with `register_signal_handlers`, `chancy web`, a private PostgreSQL server). It
//! first runs the exit hooks registered with `on_signal_exit_if` (the private PostgreSQL
//! servers register one that stops them all) and exits with 130 when one of them says so;
//! otherwise every registered [`Target`] (a worker: the first signal stops it gracefully, a
//! second one exits the process) gets the signal. With no target registered, it runs the stop
//! callbacks registered with `on_stop` (`chancy web` uses one), and with none of those either
//! it exits at once, as the default action would — unless a target is about to register: see
//! `hold_for_target`.
//!
//! This module knows none of its users: they register hooks, callbacks and targets.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

// Atomics: SeqCst, because the signal handler thread and the thread installing handlers
// race on HOLD/HELD at start-up, and a signal held before the worker registers must be seen
// by that registration (runs once per signal: cost irrelevant).

use crate::error::{Error, Result};
use crate::sync::spawn_named;

/// Something the process's signals are delivered to (a worker).
pub(crate) trait Target: Send + Sync {
    /// One SIGINT/SIGTERM, on the signal thread (it must not block).
    fn on_signal(self: Arc<Self>);
}

static TARGETS: Mutex<Vec<Weak<dyn Target>>> = Mutex::new(Vec::new());

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

/// Set by `hold_for_target`: a signal that arrives before any target or stop callback is
/// registered is kept for the next target that registers instead of ending the process.
static HOLD: AtomicBool = AtomicBool::new(false);
/// Signals kept while [`HOLD`] is on and no target was registered.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Installs the process handler now, for a program that is about to start a worker with
/// signal handlers (`chancy worker start`): a SIGINT/SIGTERM that arrives before the worker
/// registers is kept, and is delivered to that worker as soon as it registers (at the very
/// beginning of `Worker::start`); a second one exits at once.
#[cfg(feature = "cli")]
pub(crate) fn hold_for_target() -> Result<()> {
    HOLD.store(true, Ordering::SeqCst);
    ensure_handler()
}

/// Undoes [`hold_for_target`] for a program that will not start a worker after all: a signal
/// already held ends the process now (exit 130, as an unhandled second signal would).
#[cfg(feature = "cli")]
pub(crate) fn release_hold() {
    HOLD.store(false, Ordering::SeqCst);
    if HELD.swap(0, Ordering::SeqCst) > 0 {
        std::process::exit(130);
    }
}

/// Registers `target` for signals, installing the process handler on first use. A signal
/// kept by [`hold_for_target`] is delivered to it at once.
pub(crate) fn install<T: Target + 'static>(target: &Arc<T>) -> Result<()> {
    let weak: Weak<dyn Target> = Arc::downgrade(target) as Weak<dyn Target>;
    let held = {
        // Under the lock the signal path decides "no target, hold it" with.
        let mut targets = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
        targets.push(weak);
        HELD.swap(0, Ordering::SeqCst)
    };
    ensure_handler()?;
    if held > 0 {
        Arc::clone(target).on_signal();
    }
    Ok(())
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
    let (live, stoppers) = {
        let targets = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
        let live: Vec<Arc<dyn Target>> = targets.iter().filter_map(Weak::upgrade).collect();
        let stoppers = std::mem::take(&mut *STOPPERS.lock().unwrap_or_else(|e| e.into_inner()));
        if live.is_empty() && stoppers.is_empty() {
            if HOLD.load(Ordering::SeqCst) && HELD.fetch_add(1, Ordering::SeqCst) == 0 {
                log::info!(
                    "received a stop signal while starting; stopping gracefully as soon as \
                     possible (send it again to force)"
                );
                return;
            }
            std::process::exit(130);
        }
        (live, stoppers)
    };
    for stop in stoppers {
        log::info!("received a stop signal; stopping (send it again to force)");
        spawn_or_run_here(stop);
    }
    for target in live {
        target.on_signal();
    }
}

/// Runs `stop` on its own thread, or on the signal thread itself when no thread can be
/// started (a stop must happen either way; it never panics).
pub(crate) fn spawn_or_run_here(stop: impl FnOnce() + Send + 'static) {
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
