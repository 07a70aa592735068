//! A worker's life: one state ([`Phase`]) with its legal transitions, and what keeps a worker
//! running (the handles the application holds).
//!
//! ```text
//!  Built ──start──► Starting ──id taken──► Starting{id} ──► Running ──stop──► Stopping ──► Stopped
//!    │                 │  start failed, or a stop arrived before the plugins started   ▲
//!    │                 └───────────────────────────────────────────────────────────────┤
//!    └──stop (never started)────────────────────────────────────────────────────────────┘
//! ```
//!
//! A stop that arrives while the worker is starting (another thread, a signal) triggers the
//! shutdown, which ends the start at its next checkpoint, and waits for the start to end;
//! then it stops what the start got to run.
//!
//! Every [`Worker`] handle the application gets (from `build()`, and its clones) shares one
//! [`Owner`]; the handles the worker's own threads, plugins and the signal path use
//! ([`Worker::internal`]) do not. When the last `Owner` reference is dropped, the worker is
//! stopped as [`Worker::stop`] does.

use std::sync::atomic::Ordering;
use std::sync::Arc;

// Atomics: the signal counter decides first vs second signal across threads; SeqCst so two
// signals racing are counted in one order (runs once per signal).

use parking_lot::{Condvar, Mutex};

use super::{Worker, WorkerShared};
use crate::error::{Error, Result};

/// Where a worker is in its life (see the module docs for the transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Built, never started.
    Built,
    /// `start` is running; `id` once it holds the worker id's row.
    Starting { id: bool },
    /// Started: every service runs.
    Running,
    /// `stop` is running (the worker holds its id).
    Stopping,
    /// Stopped for good. `drained`: no job was left running (the value `stop` returns);
    /// `had_id`: the worker held its id at some point (claims stay fenced by its session).
    Stopped { drained: bool, had_id: bool },
}

/// What [`Lifecycle::begin_stop`] tells its caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopTurn {
    /// This caller stops the running worker and then calls [`Lifecycle::stopped`].
    Stop,
    /// Nothing (more) to do: the worker is stopped; `stop` returns this.
    Done(bool),
}

/// The worker's [`Phase`] under a mutex, with a condvar for the threads that wait for a
/// change (`wait_for_shutdown`, a stop waiting for a start). Written by `start` and `stop`;
/// read by the fetch (the session fence), identity release, the signal path and the owner's
/// drop. A leaf lock.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Mutex::new(Phase::Built),
            changed: Condvar::new(),
        }
    }
}

impl Lifecycle {
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        *self.phase.lock()
    }

    fn set(&self, phase: &mut Phase, next: Phase) {
        *phase = next;
        self.changed.notify_all();
    }

    /// Built → Starting.
    ///
    /// # Errors
    /// A configuration error when the worker was started or stopped before.
    pub(crate) fn begin_start(&self) -> Result<()> {
        let mut phase = self.phase.lock();
        match *phase {
            Phase::Built => {
                self.set(&mut phase, Phase::Starting { id: false });
                Ok(())
            }
            Phase::Stopped { .. } => Err(Error::config("this worker was stopped; build a new one")),
            _ => Err(Error::config("this worker was already started")),
        }
    }

    /// Starting → Starting{id}: the start took the worker id's row.
    pub(crate) fn id_taken(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Starting { id: false } = *phase {
            self.set(&mut phase, Phase::Starting { id: true });
        }
    }

    /// Whether this worker took its id's row at some point (and so acts under its session).
    pub(crate) fn took_id(&self) -> bool {
        matches!(
            *self.phase.lock(),
            Phase::Starting { id: true }
                | Phase::Running
                | Phase::Stopping
                | Phase::Stopped { had_id: true, .. }
        )
    }

    /// Starting → Running.
    pub(crate) fn started(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Starting { .. } = *phase {
            self.set(&mut phase, Phase::Running);
        }
    }

    /// Starting or Stopping → Stopped (a failed or interrupted start, the end of a stop).
    pub(crate) fn stopped(&self, drained: bool) {
        let mut phase = self.phase.lock();
        let had_id = matches!(
            *phase,
            Phase::Starting { id: true } | Phase::Running | Phase::Stopping
        );
        if !matches!(*phase, Phase::Stopped { .. }) {
            self.set(&mut phase, Phase::Stopped { drained, had_id });
        }
    }

    /// A stop: Running → Stopping (the caller stops), Built → Stopped, Stopped → its result;
    /// while Starting, calls `interrupt_start` (once) and waits for the start to end; while
    /// another stop runs, waits for its result.
    pub(crate) fn begin_stop(&self, interrupt_start: impl FnOnce()) -> StopTurn {
        let mut interrupt = Some(interrupt_start);
        let mut phase = self.phase.lock();
        loop {
            match *phase {
                Phase::Built => {
                    self.set(
                        &mut phase,
                        Phase::Stopped {
                            drained: true,
                            had_id: false,
                        },
                    );
                    return StopTurn::Done(true);
                }
                Phase::Running => {
                    self.set(&mut phase, Phase::Stopping);
                    return StopTurn::Stop;
                }
                Phase::Stopped { drained, .. } => return StopTurn::Done(drained),
                Phase::Starting { .. } => {
                    if let Some(interrupt) = interrupt.take() {
                        // Not under the lock: the start reads the phase at its checkpoints.
                        parking_lot::MutexGuard::unlocked(&mut phase, interrupt);
                        continue;
                    }
                    self.changed.wait(&mut phase);
                }
                Phase::Stopping => self.changed.wait(&mut phase),
            }
        }
    }

    /// Blocks until Stopped.
    pub(crate) fn wait_stopped(&self) {
        let mut phase = self.phase.lock();
        while !matches!(*phase, Phase::Stopped { .. }) {
            self.changed.wait(&mut phase);
        }
    }

    /// Built or Stopped: nothing runs that a stop would end.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(*self.phase.lock(), Phase::Built | Phase::Stopped { .. })
    }
}

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
        if shared.lifecycle.is_idle() {
            return;
        }
        log::info!(
            "worker {}: the last handle was dropped, stopping",
            shared.worker_id
        );
        // On one of the worker's own threads (a handler dropped the last handle), stopping
        // here would wait for this very thread: stop from a new one instead.
        if super::on_worker_thread() {
            stop_from_own_thread(shared, "chancy-drop-stop");
        } else {
            Worker::internal(shared).stop();
        }
    }
}

/// Stops the worker from one of its own threads (which the stop would wait for): on a new
/// thread named `name`, or, when no thread can be started, by triggering the shutdown so
/// every loop ends.
pub(crate) fn stop_from_own_thread(s: &Arc<WorkerShared>, name: &str) {
    let worker = Worker::internal(s);
    // Not a worker thread: the stop runs here for good instead of handing itself on.
    if let Err(e) = crate::sync::spawn_named(name, move || {
        worker.stop();
    }) {
        log::error!(
            "worker {}: cannot start the stop thread ({e}); triggering shutdown",
            s.worker_id
        );
        s.shutdown.trigger();
    }
}

/// SIGINT/SIGTERM (with `register_signal_handlers`): the first stops the worker gracefully on
/// a thread of its own, a second one exits the process at once.
impl crate::signals::Target for WorkerShared {
    fn on_signal(self: Arc<Self>) {
        on_signal(&self);
    }
}

/// What [`Worker::on_signal`] and the installed handlers do.
pub(crate) fn on_signal(shared: &Arc<WorkerShared>) {
    let seen = shared.signals.fetch_add(1, Ordering::SeqCst);
    if seen == 0 {
        log::info!("received a stop signal; stopping gracefully (send it again to force)");
        let worker = Worker::internal(shared);
        crate::signals::spawn_or_run_here(move || {
            worker.stop();
        });
    } else {
        log::warn!(
            "received the stop signal again, forcing exit: abandoning {} running job(s) and \
             {} outcome(s) not yet written; {}",
            shared.executions().len(),
            shared.outgoing.pending(),
            shared.how_abandoned_jobs_come_back()
        );
        std::process::exit(130);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn a_worker_runs_once_through_its_phases() {
        let life = Lifecycle::default();
        assert!(life.is_idle() && !life.took_id());
        life.begin_start().unwrap();
        assert!(life.begin_start().is_err(), "started twice");
        assert!(!life.took_id());
        life.id_taken();
        assert!(life.took_id());
        life.started();
        assert_eq!(life.phase(), Phase::Running);
        assert_eq!(life.begin_stop(|| unreachable!()), StopTurn::Stop);
        assert_eq!(life.phase(), Phase::Stopping);
        life.stopped(false);
        assert_eq!(
            life.phase(),
            Phase::Stopped {
                drained: false,
                had_id: true
            }
        );
        assert_eq!(
            life.begin_stop(|| unreachable!()),
            StopTurn::Done(false),
            "the first result"
        );
        assert!(
            life.took_id(),
            "claims stay fenced by the session after the stop"
        );
        let err = life.begin_start().unwrap_err().to_string();
        assert!(err.contains("stopped"), "{err}");
        life.wait_stopped();
    }

    #[test]
    fn a_stop_before_the_start_stops_for_good() {
        let life = Lifecycle::default();
        assert_eq!(life.begin_stop(|| unreachable!()), StopTurn::Done(true));
        assert!(
            life.begin_start().is_err(),
            "a stopped worker does not start"
        );
        assert!(!life.took_id());
    }

    /// A stop on another thread while `life` is starting; returns once it interrupted the
    /// start, with its thread and how many times it interrupted.
    fn stop_during_start(
        life: &Arc<Lifecycle>,
    ) -> (std::thread::JoinHandle<StopTurn>, Arc<AtomicUsize>) {
        let interrupts = Arc::new(AtomicUsize::new(0));
        let stopper = {
            let (life, interrupts) = (Arc::clone(life), Arc::clone(&interrupts));
            std::thread::spawn(move || {
                life.begin_stop(|| {
                    interrupts.fetch_add(1, Ordering::Relaxed);
                })
            })
        };
        while interrupts.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        (stopper, interrupts)
    }

    #[test]
    fn a_stop_during_the_start_interrupts_it_and_waits_for_it() {
        let life = Arc::new(Lifecycle::default());
        life.begin_start().unwrap();
        let (stopper, interrupts) = stop_during_start(&life);
        assert!(
            !stopper.is_finished(),
            "the stop waits for the start to end"
        );
        // The start noticed the interruption at a checkpoint and gave up.
        life.stopped(true);
        assert_eq!(stopper.join().unwrap(), StopTurn::Done(true));
        assert_eq!(interrupts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_start_that_completes_despite_a_stop_is_then_stopped_by_it() {
        let life = Arc::new(Lifecycle::default());
        life.begin_start().unwrap();
        let (stopper, _) = stop_during_start(&life);
        life.id_taken();
        life.started();
        assert_eq!(stopper.join().unwrap(), StopTurn::Stop);
        assert_eq!(life.phase(), Phase::Stopping);
    }
}
