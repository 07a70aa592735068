//! The crate's thread primitives, used by every part that owns threads (the worker, the web
//! server, the metrics server):
//!
//! * [`Flag`]: a boolean threads wait on (the worker's `shutdown_event`, `is_leader`, the
//!   wake-ups of its loops).
//! * [`Shutdown`]: the one way to stop a set of threads — a flag that also pokes every
//!   registered wake-up flag, so every loop that waits on it (or sleeps with
//!   [`Shutdown::sleep`]) notices at once; nothing polls.
//! * [`spawn_named`]: every thread is named and a failed start is an error, never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A boolean that threads can wait on, like Python's `asyncio.Event` or a one-slot latch.
///
/// ```
/// use std::time::Duration;
/// use chancy::Flag;
/// let flag = Flag::new();
/// assert!(!flag.wait_timeout(Duration::from_millis(1)));
/// flag.set();
/// assert!(flag.is_set());
/// assert!(flag.wait_timeout(Duration::from_secs(1)));
/// ```
#[derive(Debug, Default)]
pub struct Flag {
    state: Mutex<bool>,
    changed: Condvar,
}

impl Flag {
    /// A cleared flag.
    pub fn new() -> Flag {
        Flag::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut state = self.state.lock();
        *state = true;
        self.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        *self.state.lock() = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *self.state.lock()
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        let mut state = self.state.lock();
        while !*state {
            self.changed.wait(&mut state);
        }
    }

    /// Blocks until the flag is set or `timeout` passes; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        self.wait_locked(&mut state, timeout);
        *state
    }

    /// Waits with `state` locked until it is set or `timeout` passes. A timeout too long
    /// for the clock (a setting of years) waits for the flag alone instead of panicking.
    fn wait_locked(&self, state: &mut parking_lot::MutexGuard<'_, bool>, timeout: Duration) {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            while !**state {
                self.changed.wait(state);
            }
            return;
        };
        while !**state {
            if self.changed.wait_until(state, deadline).timed_out() {
                break;
            }
        }
    }

    /// Waits like [`Flag::wait_timeout`], then clears the flag; returns whether it was set.
    /// The wake-up primitive of the worker's loops.
    pub fn wait_and_clear(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        self.wait_locked(&mut state, timeout);
        std::mem::replace(&mut *state, false)
    }
}

/// A shutdown signal: a flag that also pokes every registered wake-up flag, so every loop
/// notices at once. Triggered once; triggering again does nothing more.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    flag: Flag,
    wakers: Mutex<Vec<Arc<Flag>>>,
}

impl Shutdown {
    /// Registers a loop's wake-up flag; it is set when shutdown triggers (or already has).
    pub(crate) fn register(&self, waker: &Arc<Flag>) {
        self.wakers.lock().push(Arc::clone(waker));
        if self.flag.is_set() {
            waker.set();
        }
    }

    pub(crate) fn trigger(&self) {
        self.flag.set();
        for waker in self.wakers.lock().iter() {
            waker.set();
        }
    }

    pub(crate) fn is_triggered(&self) -> bool {
        self.flag.is_set()
    }

    pub(crate) fn flag(&self) -> &Flag {
        &self.flag
    }

    /// Sleeps up to `timeout`; returns true if shutdown triggered meanwhile.
    pub(crate) fn sleep(&self, timeout: Duration) -> bool {
        self.flag.wait_timeout(timeout)
    }

    /// Blocks until shutdown triggers.
    #[cfg(feature = "web")]
    pub(crate) fn wait(&self) {
        self.flag.wait();
    }
}

/// Starts a named thread. Failing to start one (the process or user is out of threads or
/// memory) is an error the caller handles for what that thread was for: it never panics.
pub(crate) fn spawn_named<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_past_the_clocks_range_waits_for_the_flag_instead_of_panicking() {
        let flag = Arc::new(Flag::new());
        let setter = Arc::clone(&flag);
        let t = std::thread::spawn(move || setter.wait_and_clear(Duration::MAX));
        flag.set();
        assert!(t.join().expect("no panic"));
        flag.set();
        assert!(flag.wait_timeout(Duration::MAX));
    }

    #[test]
    fn shutdown_wakes_registered_flags() {
        let shutdown = Shutdown::default();
        let waker = Arc::new(Flag::new());
        shutdown.register(&waker);
        let w = Arc::clone(&waker);
        let t = std::thread::spawn(move || w.wait_and_clear(Duration::from_secs(10)));
        shutdown.trigger();
        assert!(t.join().unwrap());
        assert!(shutdown.is_triggered());
        let late = Arc::new(Flag::new());
        shutdown.register(&late);
        assert!(late.is_set());
    }
}
