//! The worker's named service threads and their state (`manager`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::backoff::Backoff;
use crate::error::Result;
use crate::sync::{Flag, Shutdown};

/// What a service thread is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceState {
    /// Running normally.
    Running,
    /// Its last pass failed; it waits before retrying.
    #[non_exhaustive]
    BackingOff {
        /// Consecutive failures.
        failures: u32,
        /// The last error's text.
        last_error: String,
    },
    /// Finished (the worker stopped).
    Stopped,
}

/// A service thread and its state, as listed by [`Manager::services`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The service name (e.g. `heartbeat`; its thread is `chancy-heartbeat`).
    pub name: String,
    /// Its state.
    pub state: ServiceState,
}

struct Entry {
    name: String,
    state: Arc<Mutex<ServiceState>>,
    handle: Option<JoinHandle<()>>,
}

/// The named service threads of a worker.
#[derive(Default)]
pub struct Manager {
    entries: Mutex<Vec<Entry>>,
}

/// How a periodic service loop runs.
pub(crate) struct LoopSpec {
    pub name: String,
    pub interval: Duration,
    pub run_first: bool,
    pub wake: Arc<Flag>,
    pub backoff: Backoff,
    /// Where [`SERVICE_PASSED`] is emitted after each pass.
    pub hub: super::Hub,
}

/// Local hub event after each pass of a periodic service (`{service, ok}`: the service's
/// name, e.g. `queues`, `heartbeat`, `plugin-chancy.leadership`, and whether the pass
/// succeeded). Lets a caller (and the tests) wait for "the next pass" instead of a sleep.
pub const SERVICE_PASSED: &str = "worker.service.passed";

impl Manager {
    /// Every service started so far, with its state.
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.entries
            .lock()
            .iter()
            .map(|e| ServiceInfo {
                name: e.name.clone(),
                state: e.state.lock().clone(),
            })
            .collect()
    }

    /// The state of one service.
    pub fn state_of(&self, name: &str) -> Option<ServiceState> {
        self.entries
            .lock()
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.state.lock().clone())
    }

    /// Starts a thread `chancy-<name>` running `body` with a handle to its state.
    ///
    /// # Errors
    /// When the thread cannot be started (out of threads or memory).
    pub(crate) fn spawn(
        &self,
        name: &str,
        body: impl FnOnce(Arc<Mutex<ServiceState>>) + Send + 'static,
    ) -> Result<()> {
        let state = Arc::new(Mutex::new(ServiceState::Running));
        let s = Arc::clone(&state);
        let handle = super::spawn_named(&format!("chancy-{name}"), move || {
            body(Arc::clone(&s));
            *s.lock() = ServiceState::Stopped;
        })
        .map_err(|e| {
            crate::error::Error::invalid_input(format!(
                "cannot start the worker's {name} thread: {e}"
            ))
        })?;
        self.entries.lock().push(Entry {
            name: name.to_string(),
            state,
            handle: Some(handle),
        });
        Ok(())
    }

    /// Starts a periodic service: `pass` every `interval` (or when woken), with capped
    /// exponential backoff after failures, until shutdown.
    pub(crate) fn spawn_loop(
        &self,
        shutdown: Arc<Shutdown>,
        spec: LoopSpec,
        mut pass: impl FnMut() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        shutdown.register(&spec.wake);
        let name = spec.name.clone();
        self.spawn(&name, move |state| {
            let LoopSpec {
                name,
                interval,
                run_first,
                wake,
                mut backoff,
                hub,
            } = spec;
            if !run_first {
                wake.wait_and_clear(interval);
            }
            while !shutdown.is_triggered() {
                // A panicking pass (e.g. in a plugin) is an error like any other.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut pass))
                    .unwrap_or_else(|p| {
                        Err(crate::error::Error::invalid_input(format!(
                            "the pass panicked: {}",
                            super::panics::payload_text(p.as_ref())
                        )))
                    });
                let ok = outcome.is_ok();
                hub.emit(
                    SERVICE_PASSED,
                    serde_json::json!({ "service": name, "ok": ok }),
                );
                match outcome {
                    Ok(()) => {
                        backoff.reset();
                        *state.lock() = ServiceState::Running;
                        wake.wait_and_clear(interval);
                    }
                    Err(err) => {
                        let delay = backoff.fail();
                        log::error!(
                            "chancy-{name}: pass failed (attempt {}), retrying in {delay:?}: {err}",
                            backoff.failures()
                        );
                        *state.lock() = ServiceState::BackingOff {
                            failures: backoff.failures(),
                            last_error: err.to_string(),
                        };
                        shutdown.sleep(delay);
                    }
                }
            }
        })
    }

    /// Joins every finished-or-finishing service except `skip` (waits for each).
    pub(crate) fn join_all(&self, skip: &[&str]) {
        let handles: Vec<JoinHandle<()>> = self
            .entries
            .lock()
            .iter_mut()
            .filter(|e| !skip.contains(&e.name.as_str()))
            .filter_map(|e| e.handle.take())
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }

    /// Joins one service.
    pub(crate) fn join(&self, name: &str) {
        let handle = self
            .entries
            .lock()
            .iter_mut()
            .find(|e| e.name == name)
            .and_then(|e| e.handle.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}
