//! Waiting without guessing: one bounded polling loop for what a test cannot be told about
//! (a row another process writes, a child's exit, a socket), and [`holds_for`] for the few
//! checks whose subject is elapsed time. In-process workers are waited on through their hub
//! instead (`support::events`).
//!
//! Every wait has a deadline and fails with what it waited for; none returns silently.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often [`eventually`] probes.
pub const PROBE_EVERY: Duration = Duration::from_millis(20);

/// The deadline the tests use for "soon" (a pass or two of a worker on a busy machine).
pub const SOON: Duration = Duration::from_secs(30);

/// Probes until `probe` returns `Some` or `within` passes; `None` on timeout.
pub fn poll<T>(within: Duration, probe: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(PROBE_EVERY, within, probe)
}

/// [`poll`] probing every `every` (a sampler that must not miss a short-lived state). The
/// one polling loop of the test suite.
pub fn poll_every<T>(
    every: Duration,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let until = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        std::thread::sleep(every.min(until - now));
    }
}

/// The first `Some` of `probe` within `within`; panics `timed out after … waiting for {what}`.
pub fn eventually_some<T>(within: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll(within, probe).unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Returns once `cond` holds; panics `timed out after … waiting for {what}` after `within`.
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    eventually_some(within, what, || cond().then_some(()));
}

/// Asserts that `cond` holds at every probe for `span` (elapsed time is what is under test:
/// "nothing happens for N seconds"); panics at the first probe where it does not.
pub fn holds_for(span: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    let broke = poll(span, || (!cond()).then(|| started.elapsed()));
    if let Some(after) = broke {
        panic!("{what} stopped holding after {after:?} (it must hold for {span:?})");
    }
}

/// Runs `sample` every `every` for `span` (a span whose length is the subject, e.g. idle CPU
/// over 5 s, watched all along).
pub fn sample_for(span: Duration, every: Duration, mut sample: impl FnMut()) {
    let none: Option<()> = poll_every(every, span, || {
        sample();
        None
    });
    debug_assert!(none.is_none());
}

/// The exit status of `child` within `within`; kills it and panics otherwise.
pub fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let status = poll(within, || child.try_wait().expect("poll a child process"));
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("process {} did not exit within {within:?}", child.id())
    })
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -TERM {} failed", child.id());
}

/// A child process that is killed and reaped when dropped, so a failing test leaves no
/// process behind.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A gate a job handler waits at until the test opens it (or the job is cancelled), in
/// place of a handler that sleeps "long enough".
#[derive(Clone, Default)]
pub struct Gate(std::sync::Arc<chancy::Flag>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every waiting (and later) handler through.
    pub fn open(&self) {
        self.0.set();
    }

    /// In a handler: returns `Ok` once the gate opens, `Err(cancelled)` once the job is
    /// cancelled (the context offers only a flag to read, so that is read every 10 ms).
    pub fn pass(&self, ctx: &chancy::JobContext) -> Result<(), chancy::JobError> {
        self.pass_within(ctx, Duration::MAX).map(|_| ())
    }

    /// [`Gate::pass`] for at most `limit` (a job that runs that long unless cancelled):
    /// `Ok(true)` when the gate opened, `Ok(false)` when `limit` passed first.
    pub fn pass_within(
        &self,
        ctx: &chancy::JobContext,
        limit: Duration,
    ) -> Result<bool, chancy::JobError> {
        let until = Instant::now().checked_add(limit);
        loop {
            if self.0.wait_timeout(Duration::from_millis(10)) {
                return Ok(true);
            }
            if ctx.is_cancelled() {
                return Err(chancy::JobError::cancelled());
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
        }
    }
}

/// Sends SIGTERM and returns the exit status within `within` (kills and panics otherwise).
pub fn terminate(child: &mut Child, within: Duration) -> ExitStatus {
    sigterm(child);
    exit_within(child, within)
}

/// A count that job handlers raise and tests wait on ("the handler ran N times").
#[derive(Clone, Default)]
pub struct Counter(std::sync::Arc<(parking_lot::Mutex<usize>, parking_lot::Condvar)>);

impl Counter {
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Adds one; returns the new count.
    pub fn add(&self) -> usize {
        let mut n = self.0 .0.lock();
        *n += 1;
        self.0 .1.notify_all();
        *n
    }

    pub fn get(&self) -> usize {
        *self.0 .0.lock()
    }

    /// Returns once the count is at least `n`; panics after `within` naming `what`.
    pub fn wait_for(&self, n: usize, within: Duration, what: &str) {
        let until = Instant::now() + within;
        let mut count = self.0 .0.lock();
        while *count < n {
            if self.0 .1.wait_until(&mut count, until).timed_out() && *count < n {
                panic!("{what}: {} of {n} within {within:?}", *count);
            }
        }
    }
}
