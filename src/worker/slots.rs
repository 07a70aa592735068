//! The hand-off from the fetch scheduler to a queue's executor threads: a FIFO under a mutex
//! with a condvar, and the count of threads serving it.
//!
//! Executor threads are started on demand, never more than the queue's concurrency, and
//! retire after `idle_timeout` without a job, so a worker's idle thread count does not grow
//! with the sum of its queues' concurrency. Idle threads park at once (a shared channel made
//! dozens of idle threads spin and `sched_yield` on every hand-off), and exactly one is woken
//! per job.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

struct State<T> {
    jobs: VecDeque<T>,
    closed: bool,
    /// Threads started and not yet exited (running a job, parked, or starting).
    threads: usize,
    /// Threads parked in `pop`.
    idle: usize,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        State {
            jobs: VecDeque::new(),
            closed: false,
            threads: 0,
            idle: 0,
        }
    }
}

/// Claimed jobs (`T`: a job with its claim guard) waiting for an executor thread. Jobs still
/// in it when it is dropped are dropped with it (their claims are released).
pub(crate) struct JobQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    max_threads: usize,
    idle_timeout: Duration,
}

impl<T> JobQueue<T> {
    /// A queue served by at most `max_threads` threads, each retiring after `idle_timeout`.
    pub(crate) fn new(max_threads: usize, idle_timeout: Duration) -> JobQueue<T> {
        JobQueue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            max_threads: max_threads.max(1),
            idle_timeout,
        }
    }

    /// Hands over `jobs`; returns how many threads the caller must start now (counted as
    /// started already; call [`JobQueue::start_failed`] for each that could not be), or the
    /// jobs back if the queue was closed.
    pub(crate) fn push_all(&self, jobs: Vec<T>) -> Result<usize, Vec<T>> {
        let n = jobs.len();
        let start = {
            let mut state = self.state.lock();
            if state.closed {
                return Err(jobs);
            }
            state.jobs.extend(jobs);
            self.reserve_threads(&mut state)
        };
        for _ in 0..n {
            self.ready.notify_one();
        }
        Ok(start)
    }

    /// Threads to start for the jobs waiting now (after an earlier start failed).
    pub(crate) fn threads_needed(&self) -> usize {
        let mut state = self.state.lock();
        if state.closed {
            return 0;
        }
        self.reserve_threads(&mut state)
    }

    fn reserve_threads(&self, state: &mut State<T>) -> usize {
        let uncovered = state.jobs.len().saturating_sub(state.idle);
        let start = uncovered.min(self.max_threads.saturating_sub(state.threads));
        state.threads += start;
        start
    }

    /// A thread counted by `push_all` could not be started.
    pub(crate) fn start_failed(&self) {
        self.state.lock().threads -= 1;
    }

    /// The next job; `None` once the queue is closed and empty, or after `idle_timeout`
    /// without a job. The caller's thread must then call [`JobQueue::exited`] and end.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut state = self.state.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            let waited = self.ready.wait_for(&mut state, self.idle_timeout);
            state.idle -= 1;
            if waited.timed_out() && state.jobs.is_empty() {
                return None;
            }
        }
    }

    /// A thread ended; returns whether the queue is now closed with no thread left.
    pub(crate) fn exited(&self) -> bool {
        let mut state = self.state.lock();
        state.threads -= 1;
        state.closed && state.threads == 0
    }

    /// No more jobs: threads finish what is queued, then `pop` returns `None`.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    /// Closed, and every thread has ended.
    pub(crate) fn is_drained(&self) -> bool {
        let state = self.state.lock();
        state.closed && state.threads == 0
    }

    /// Threads started and not yet ended.
    pub(crate) fn threads(&self) -> usize {
        self.state.lock().threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    #[test]
    fn threads_start_on_demand_up_to_the_limit_and_retire_when_idle() {
        let q = std::sync::Arc::new(JobQueue::<usize>::new(3, Duration::from_millis(50)));
        assert_eq!(q.threads(), 0);
        assert_eq!(q.push_all(jobs(2)).unwrap(), 2);
        assert_eq!(q.push_all(jobs(5)).unwrap(), 1, "capped at max_threads");
        assert_eq!(q.threads(), 3);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let q = std::sync::Arc::clone(&q);
                std::thread::spawn(move || {
                    let mut n = 0;
                    while q.pop().is_some() {
                        n += 1;
                    }
                    q.exited();
                    n
                })
            })
            .collect();
        let ran: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ran, 7);
        assert_eq!(q.threads(), 0, "idle threads retired");
        assert!(!q.is_drained(), "not closed");
        q.close();
        assert!(q.is_drained());
        assert!(q.push_all(jobs(1)).is_err());
    }

    #[test]
    fn failed_starts_are_asked_for_again_and_never_past_the_limit() {
        let q = JobQueue::<usize>::new(2, Duration::from_secs(60));
        assert_eq!(q.push_all(jobs(3)).unwrap(), 2, "capped at max_threads");
        assert_eq!(q.threads_needed(), 0, "both already counted");
        q.start_failed();
        q.start_failed();
        assert_eq!(q.threads(), 0);
        assert_eq!(q.threads_needed(), 2, "three jobs wait with no thread");
        assert_eq!(q.threads_needed(), 0);
        q.close();
        q.start_failed();
        q.start_failed();
        assert_eq!(q.threads_needed(), 0, "a closed queue starts nothing");
        assert_eq!(JobQueue::<usize>::new(0, Duration::ZERO).max_threads, 1);
    }

    #[test]
    fn parked_threads_take_new_jobs_before_a_thread_is_started() {
        let q = std::sync::Arc::new(JobQueue::<usize>::new(4, Duration::from_secs(60)));
        assert_eq!(q.push_all(jobs(2)).unwrap(), 2);
        let (tx, rx) = crossbeam_channel::unbounded();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (q, tx) = (std::sync::Arc::clone(&q), tx.clone());
                std::thread::spawn(move || {
                    while let Some(job) = q.pop() {
                        tx.send(job).unwrap();
                    }
                    q.exited()
                })
            })
            .collect();
        let parked = |n: usize| {
            while q.state.lock().idle != n {
                std::thread::yield_now();
            }
        };
        for _ in 0..2 {
            rx.recv().unwrap();
        }
        parked(2);
        assert_eq!(q.push_all(jobs(1)).unwrap(), 0, "a parked thread takes it");
        rx.recv().unwrap();
        parked(2);
        assert_eq!(
            q.push_all(jobs(3)).unwrap(),
            1,
            "three jobs, two parked threads: one more thread"
        );
        assert_eq!(q.threads(), 3);
        q.start_failed();
        q.close();
        let exited: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(rx.try_iter().count(), 3, "the parked threads ran every job");
        assert_eq!(exited.iter().filter(|last| **last).count(), 1);
        assert!(q.is_drained());
    }
}
