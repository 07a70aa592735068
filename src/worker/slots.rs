//! The hand-off from a queue's fetcher to its executor threads: a FIFO under a mutex with a
//! condvar. Idle executor threads park at once (a shared channel made dozens of idle
//! threads spin and `sched_yield` on every hand-off), and exactly one is woken per job.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

use crate::job::QueuedJob;

#[derive(Default)]
struct State {
    jobs: VecDeque<QueuedJob>,
    closed: bool,
}

/// Claimed jobs waiting for an executor thread.
#[derive(Default)]
pub(crate) struct JobQueue {
    state: Mutex<State>,
    ready: Condvar,
}

impl JobQueue {
    /// Hands over `jobs`; returns them back if the queue was closed.
    pub(crate) fn push_all(&self, jobs: Vec<QueuedJob>) -> Result<(), Vec<QueuedJob>> {
        let n = jobs.len();
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(jobs);
            }
            state.jobs.extend(jobs);
        }
        for _ in 0..n {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next job; `None` once the queue is closed and empty.
    pub(crate) fn pop(&self) -> Option<QueuedJob> {
        let mut state = self.state.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            self.ready.wait(&mut state);
        }
    }

    /// No more jobs: threads finish what is queued, then `pop` returns `None`.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}
