//! One queue served by this worker: a fetcher thread that claims exactly the free slots, and
//! a pool of executor threads that run what it claims.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use super::backoff::Backoff;
use super::executor::{execute, run_on_thread};
use super::flag::Flag;
use super::process::{ChildSlot, DEFAULT_MAXIMUM_JOBS_PER_CHILD};
use super::slots::JobQueue;
use super::{spawn_named, WorkerShared};
use crate::job::QueuedJob;
use crate::pool::Conn;
use crate::queue::{
    Queue, QueueState, ASYNC_EXECUTOR, PROCESS_EXECUTOR, SUB_INTERPRETER_EXECUTOR,
    THREADED_EXECUTOR,
};

/// Executor strings a worker knows. Any other (e.g. a custom Python executor class) runs on
/// the thread pool, with a warning when the queue starts.
const KNOWN_EXECUTORS: [&str; 4] = [
    THREADED_EXECUTOR,
    ASYNC_EXECUTOR,
    SUB_INTERPRETER_EXECUTOR,
    PROCESS_EXECUTOR,
];

/// Local hub events of a queue runner.
pub const QUEUE_STARTED: &str = "worker.queue.started";
/// The queue is no longer served.
pub const QUEUE_REMOVED: &str = "worker.queue.removed";
/// The queue's configuration changed and its executor was rebuilt.
pub const QUEUE_UPDATED: &str = "worker.queue.updated";
/// A wake-up found no free slot.
pub const QUEUE_FULL: &str = "worker.queue.full";

/// The handle the queue-maintenance loop keeps for each served queue.
pub(crate) struct QueueRunner {
    pub(crate) desired: Arc<Mutex<Queue>>,
    pub(crate) wake: Arc<Flag>,
    pub(crate) removed: Arc<AtomicBool>,
    pub(crate) finished: Arc<Flag>,
    handle: Option<JoinHandle<()>>,
}

impl QueueRunner {
    /// Starts the fetcher thread of `queue`.
    ///
    /// # Errors
    /// When the thread cannot be started: an error for this queue only.
    pub(crate) fn start(shared: &Arc<WorkerShared>, queue: Queue) -> crate::Result<QueueRunner> {
        let name = queue.name.clone();
        let state = RunnerState {
            shared: Arc::clone(shared),
            desired: Arc::new(Mutex::new(queue)),
            wake: Arc::new(Flag::new()),
            removed: Arc::new(AtomicBool::new(false)),
            finished: Arc::new(Flag::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            draining: Arc::new(AtomicBool::new(false)),
        };
        let runner = QueueRunner {
            desired: Arc::clone(&state.desired),
            wake: Arc::clone(&state.wake),
            removed: Arc::clone(&state.removed),
            finished: Arc::clone(&state.finished),
            handle: None,
        };
        let wake = Arc::clone(&state.wake);
        let handle = match spawn_named(&format!("chancy-fetch-{name}"), move || state.run()) {
            Ok(handle) => handle,
            Err(e) => {
                return Err(crate::error::Error::invalid_input(format!(
                    "queue {name:?}: cannot start its fetcher thread: {e}"
                )));
            }
        };
        // Registered after the spawn; `register` sets the flag if shutdown already began.
        shared.shutdown.register(&wake);
        Ok(QueueRunner {
            handle: Some(handle),
            ..runner
        })
    }

    /// Stops serving the queue once its running jobs finish.
    pub(crate) fn remove(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.wake.set();
    }

    /// Joins the fetcher thread if it has finished.
    pub(crate) fn join_if_finished(&mut self) {
        if self.finished.is_set() {
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }
}

struct RunnerState {
    shared: Arc<WorkerShared>,
    desired: Arc<Mutex<Queue>>,
    wake: Arc<Flag>,
    removed: Arc<AtomicBool>,
    finished: Arc<Flag>,
    in_flight: Arc<AtomicUsize>,
    /// Set while a reconfiguration waits for running jobs: finishing jobs wake the fetcher.
    draining: Arc<AtomicBool>,
}

/// The executor threads of one configuration of a queue.
struct Pool {
    queue: Arc<JobQueue>,
    threads: Vec<JoinHandle<()>>,
    concurrency: usize,
}

impl RunnerState {
    fn run(self) {
        let mut active = self.desired.lock().clone();
        let mut pool = self.start_pool(&active);
        if pool.concurrency == 0 {
            log::error!(
                "queue {:?}: no executor thread could be started; not serving it (the worker \
                 tries again at its next queue refresh)",
                active.name
            );
            self.finished.set();
            return;
        }
        self.emit(QUEUE_STARTED, &active, pool.concurrency);
        let mut conn: Option<Conn> = None;
        // Set when a claim failed: its commit may have happened with the response lost.
        let mut claims_in_doubt = false;
        let mut backoff = Backoff::new(
            self.shared.config.backoff_initial,
            self.shared.config.backoff_max,
        );
        self.wake.set();
        loop {
            self.wake.wait_and_clear(active.polling_interval);
            if self.shared.shutdown.is_triggered() || self.removed.load(Ordering::SeqCst) {
                break;
            }
            let changed = *self.desired.lock() != active;
            if changed {
                if self.in_flight.load(Ordering::SeqCst) > 0 {
                    self.draining.store(true, Ordering::SeqCst);
                    continue;
                }
                self.draining.store(false, Ordering::SeqCst);
                self.emit(QUEUE_UPDATED, &active, pool.concurrency);
                pool.stop();
                active = self.desired.lock().clone();
                pool = self.start_pool(&active);
            }
            if active.state == QueueState::Paused {
                self.maybe_resume(&mut active);
                continue;
            }
            let free = pool
                .concurrency
                .saturating_sub(self.in_flight.load(Ordering::SeqCst));
            if free == 0 {
                self.emit(QUEUE_FULL, &active, pool.concurrency);
                continue;
            }
            match self.fetch(&mut conn, &mut claims_in_doubt, &active, free) {
                Ok(jobs) => {
                    backoff.reset();
                    self.dispatch(&pool, jobs);
                }
                Err(err) => {
                    conn = None;
                    claims_in_doubt = true;
                    let delay = backoff.fail();
                    log::error!(
                        "chancy-fetch-{}: fetching jobs failed (attempt {}), retrying in {delay:?}: {err}",
                        active.name,
                        backoff.failures()
                    );
                    self.shared.shutdown.sleep(delay);
                    self.wake.set();
                }
            }
        }
        pool.stop();
        self.emit(QUEUE_REMOVED, &active, pool.concurrency);
        self.finished.set();
    }

    fn fetch(
        &self,
        conn: &mut Option<Conn>,
        claims_in_doubt: &mut bool,
        queue: &Queue,
        up_to: usize,
    ) -> crate::Result<Vec<QueuedJob>> {
        if conn.is_none() {
            *conn = Some(super::fetch::connect_for_claims(&self.shared)?);
        }
        let c = conn.as_mut().expect("connection was just set");
        if *claims_in_doubt {
            // A claim whose response was lost committed rows no thread holds. Only this
            // thread claims this queue for this worker and every claim it dispatched is in
            // `shared.claims` until its outcome is written, so such rows can be released at
            // once instead of after the heartbeat's grace period.
            super::heartbeat::release_orphans(
                &self.shared,
                &mut c.client,
                std::slice::from_ref(&queue.name),
                Duration::ZERO,
            )?;
            *claims_in_doubt = false;
        }
        super::fetch::fetch_jobs(&self.shared, queue, c, up_to)
    }

    fn dispatch(&self, pool: &Pool, jobs: Vec<QueuedJob>) {
        self.shared.remember_claims(&jobs);
        let n = jobs.len();
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        if pool.queue.push_all(jobs).is_err() {
            self.in_flight.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Paused queue: resume it when `resume_at` has passed by the database clock (like
    /// upstream, no fetch now; upstream compares with the worker's clock).
    fn maybe_resume(&self, active: &mut Queue) {
        let Some(at) = active.resume_at else { return };
        match self.shared.chancy.resume_queue_if_due(&active.name) {
            Ok(false) => {}
            Ok(true) => {
                log::info!(
                    "queue {:?} resumed automatically (resume_at {at})",
                    active.name
                );
                active.state = QueueState::Active;
                active.resume_at = None;
                let mut desired = self.desired.lock();
                if desired.name == active.name {
                    desired.state = QueueState::Active;
                    desired.resume_at = None;
                }
                self.wake.set();
            }
            Err(err) => log::error!("resuming queue {:?} failed: {err}", active.name),
        }
    }

    fn start_pool(&self, queue: &Queue) -> Pool {
        if !KNOWN_EXECUTORS.contains(&queue.executor.as_str()) {
            log::warn!(
                "queue {:?}: unknown executor {:?}; running its jobs on the thread pool (as {THREADED_EXECUTOR})",
                queue.name,
                queue.executor
            );
        }
        let wanted = effective_concurrency(queue);
        let child_exe = uses_processes(queue)
            .then(|| self.shared.child_executable(&queue.name))
            .flatten();
        let jobs = Arc::new(JobQueue::default());
        let mut threads = Vec::new();
        for i in 0..wanted {
            let spawned = {
                let jobs = Arc::clone(&jobs);
                let shared = Arc::clone(&self.shared);
                let done = JobDone {
                    in_flight: Arc::clone(&self.in_flight),
                    wake: Arc::clone(&self.wake),
                    draining: Arc::clone(&self.draining),
                    eager: queue.eager_polling,
                    refill_at: wanted / 2,
                };
                let mut slot = child_exe
                    .clone()
                    .map(|exe| ChildSlot::new(exe, max_jobs_per_child(queue)));
                spawn_named(&format!("chancy-exec-{}-{i}", queue.name), move || {
                    while let Some(job) = jobs.pop() {
                        let (id, claim) = (job.id, job.claim_id);
                        // Handlers run under catch_unwind already; this guards the plugin
                        // hooks around them, so a panicking hook cannot kill the thread.
                        let run = std::panic::AssertUnwindSafe(|| match slot.as_mut() {
                            Some(slot) => execute(&shared, job, |j, c| {
                                let result = slot.run(&shared.worker_id, &j, c);
                                (j, result)
                            }),
                            None => execute(&shared, job, |j, c| run_on_thread(&shared, j, c)),
                        });
                        match std::panic::catch_unwind(run) {
                            Ok(outcome) => {
                                shared.queue_update(outcome);
                            }
                            Err(_) => {
                                log::error!(
                                    "a plugin hook panicked around job {id}; its row stays running \
                                     until the claim is released"
                                );
                                shared.forget_claims([claim]);
                            }
                        }
                        done.finish();
                    }
                })
            };
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    // Out of threads (or memory): serve the queue with what started rather
                    // than take the worker down; with none it is not served (see `run`).
                    log::error!(
                        "queue {:?}: cannot start executor thread {} of {wanted}: {e}; serving it with {i} thread(s)",
                        queue.name,
                        i + 1
                    );
                    break;
                }
            }
        }
        let concurrency = threads.len();
        Pool {
            queue: jobs,
            threads,
            concurrency,
        }
    }

    fn emit(&self, event: &str, queue: &Queue, concurrency: usize) {
        self.shared.hub.emit(
            event,
            json!({
                "queue": queue.name,
                "executor": queue.executor,
                "concurrency": concurrency,
                "worker": self.shared.worker_id,
            }),
        );
    }
}

/// Frees a slot when a job finishes and wakes the fetcher if it should poll again.
struct JobDone {
    in_flight: Arc<AtomicUsize>,
    wake: Arc<Flag>,
    draining: Arc<AtomicBool>,
    eager: bool,
    /// Eager queues re-poll once this many jobs are still running (half the slots free), so
    /// a busy queue claims in batches instead of one job per finished job.
    refill_at: usize,
}

impl JobDone {
    fn finish(&self) {
        let running = self.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        let refill = self.eager && running <= self.refill_at;
        if refill || self.draining.load(Ordering::SeqCst) {
            self.wake.set();
        }
    }
}

impl Pool {
    /// Closes the job queue and waits for the executor threads to finish their jobs.
    fn stop(&mut self) {
        self.queue.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The queue's concurrency, or the executor's default when it is NULL (as upstream: process
/// → CPU count, async → 100, threaded and others → min(32, CPU + 4)).
pub(crate) fn effective_concurrency(queue: &Queue) -> usize {
    if let Some(c) = queue.concurrency {
        // Rows are validated before a runner starts; the clamp keeps this total anyway.
        return c.clamp(1, crate::queue::MAX_CONCURRENCY) as usize;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match queue.executor.as_str() {
        PROCESS_EXECUTOR => cpus,
        ASYNC_EXECUTOR => 100,
        _ => (cpus + 4).min(32),
    }
}

/// Whether the queue's jobs run in child processes (upstream's process executor).
fn uses_processes(queue: &Queue) -> bool {
    queue.executor == PROCESS_EXECUTOR
}

/// `executor_options.maximum_jobs_per_worker`, as upstream's process executor reads it.
fn max_jobs_per_child(queue: &Queue) -> u32 {
    queue
        .executor_options
        .get("maximum_jobs_per_worker")
        .and_then(serde_json::Value::as_u64)
        .map_or(DEFAULT_MAXIMUM_JOBS_PER_CHILD, |n| {
            n.clamp(1, u64::from(u32::MAX)) as u32
        })
}

/// How long the stop waits between checks of its runners.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_concurrency_uses_the_executor_default_like_upstream() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let q = |e: &str| Queue::new("q").executor(e);
        assert_eq!(effective_concurrency(&q(PROCESS_EXECUTOR)), cpus);
        assert_eq!(effective_concurrency(&q(ASYNC_EXECUTOR)), 100);
        assert_eq!(
            effective_concurrency(&q(THREADED_EXECUTOR)),
            (cpus + 4).min(32)
        );
        assert_eq!(
            effective_concurrency(&q(THREADED_EXECUTOR).concurrency(7)),
            7
        );
    }
}
