//! One queue served by this worker: the state the fetch scheduler keeps for it (it claims
//! exactly the free slots) and the executor threads, started on demand, that run what it
//! claims.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Atomics here use SeqCst on purpose: `visit` reads several flags together (wake/refill
// `pending`, `removed`, `draining`, `in_flight`) that other threads set just before waking the
// scheduler, and one total order means a flag set before a wake-up is never missed by the
// visit that wake-up causes. They are touched per visit or per job, never per row, so the
// cost does not show in any profile.

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::backoff::Backoff;
use super::child::ChildProgram;
use super::claims::Claimed;
use super::executor::{execute, run_on_thread, ExecDeps};
use super::fetch::FetchDeps;
use super::fetch_conn::FetchWake;
use super::hub::Hub;
use super::process::{ChildSlot, DEFAULT_MAXIMUM_JOBS_PER_CHILD};
use super::slots::JobQueue;
use crate::pool::Conn;
use crate::queue::{
    Queue, QueueState, ASYNC_EXECUTOR, PROCESS_EXECUTOR, SUB_INTERPRETER_EXECUTOR,
    THREADED_EXECUTOR,
};
use crate::sync::{Flag, Shutdown};

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
/// Local hub event: a due visit of the queue ended (`{queue, worker, claimed}`: how many
/// jobs it claimed; 0 when the scheduler's probe found nothing, the queue is paused or full,
/// or the claim failed). Of two visits that end after a push, the second began (probe and
/// claim) after it: that is how a caller waits for a claim that must not happen.
pub const QUEUE_POLLED: &str = "worker.queue.polled";

/// Executor threads of a threaded queue retire after this long without a job.
const THREAD_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Executor threads of a process-executor queue (each owns a child process, which is slow
/// to start) retire after this long without a job.
const PROCESS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A queue whose last claim filled every free slot claims again when half its slots are
/// free, but not sooner than this after that claim (eager queues: at once).
pub(crate) const REFILL_COOLDOWN: Duration = Duration::from_millis(20);
/// A queue whose poll is due within this is polled with the others due now, so quiet
/// queues are probed together instead of one wake-up each.
const POLL_SLACK: Duration = Duration::from_millis(100);

/// The queues this worker serves, by name. Written by queue maintenance (start, forget),
/// read by the fetch scheduler (a snapshot per pass), the writer's "batch committed"
/// subscriber (eager queues) and `Worker::queues`. First in the lock order.
pub(crate) type Runners = Mutex<HashMap<String, Arc<QueueRunner>>>;

/// What the fetch scheduler and the queue runners it visits use, and nothing else of the
/// worker: built once in `WorkerBuilder::build`, shared (one `Arc`) by the fetch threads and
/// queue maintenance. Fields are set at build and never replaced; locks are inside handles.
pub(crate) struct QueueDeps {
    /// Claiming: identity, claims, the writer's queue, connections (see [`FetchDeps`]).
    pub(crate) fetch: FetchDeps,
    /// Running: handed (one `Arc` clone) to every executor thread a runner starts.
    pub(crate) exec: Arc<ExecDeps>,
    /// Local events: runners emit `worker.queue.*` with no worker lock held.
    pub(crate) hub: Hub,
    /// The worker's stop: read by every visit (retire) and the scheduler loop.
    pub(crate) shutdown: Arc<Shutdown>,
    /// Wakes the fetch threads: every runner's wake-ups poke it; the stop sets it too.
    pub(crate) fetch_wake: Arc<FetchWake>,
    /// The served queues (see [`Runners`]): the scheduler snapshots it, maintenance writes.
    pub(crate) runners: Arc<Runners>,
    /// The program process-executor queues start as children (read when a pool is built).
    pub(crate) children: ChildProgram,
    /// First and largest retry delay after a failed claim (`WorkerBuilder::backoff`).
    pub(crate) backoff: (Duration, Duration),
}

/// A wake-up of one queue: marks the queue and pokes the fetch scheduler.
pub(crate) struct Wake {
    pending: AtomicBool,
    scheduler: Arc<FetchWake>,
}

impl Wake {
    fn new(scheduler: &Arc<FetchWake>) -> Wake {
        Wake {
            pending: AtomicBool::new(false),
            scheduler: Arc::clone(scheduler),
        }
    }

    /// Asks the scheduler to visit the queue now.
    pub(crate) fn set(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.scheduler.set();
    }

    fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Keeps a wake-up for a later visit without poking the scheduler again.
    fn keep(&self) {
        self.pending.store(true, Ordering::SeqCst);
    }
}

/// One queue this worker serves: what the queue-maintenance loop wants it to be, and the
/// state the fetch scheduler keeps between its visits. No thread of its own: the fetch
/// scheduler visits it, and executor threads exist only while it has jobs.
pub(crate) struct QueueRunner {
    /// Written by the queue-maintenance loop, read by the scheduler.
    pub(crate) desired: Mutex<Queue>,
    /// NOTIFY, listener reconnects, writer commits, finished jobs while draining.
    pub(crate) wake: Wake,
    /// Set by finished jobs after a claim that filled every free slot (backlog).
    refill: Wake,
    pub(crate) removed: AtomicBool,
    pub(crate) finished: Flag,
    in_flight: AtomicUsize,
    /// Set while a reconfiguration waits for running jobs: finishing jobs wake the scheduler.
    draining: AtomicBool,
    /// The last claim filled every free slot: there is probably more waiting.
    refill_armed: AtomicBool,
    /// Only the fetch scheduler locks it (`try_lock`: a visit in progress is skipped).
    visit: Mutex<Visit>,
}

struct Visit {
    active: Queue,
    pool: ExecPool,
    next_poll: Instant,
    last_claim: Instant,
    backoff: Backoff,
    /// Set when a claim failed: its commit may have happened with the response lost.
    claims_in_doubt: bool,
    retiring: bool,
    done: bool,
    /// Hub events of this visit, emitted by [`QueueRunner::visit`] once it released the
    /// visit lock (handlers run on the emitting thread and may call back into the worker).
    events: Vec<(&'static str, Value)>,
}

/// The executor threads of one configuration of a queue, started on demand.
struct ExecPool {
    jobs: Arc<JobQueue<Claimed>>,
    concurrency: usize,
    eager: bool,
    /// The program to start as executor children and the jobs each runs, for process-executor
    /// queues of a program that opted in (see `ChildProgram::for_queue`); `None` runs
    /// the queue's jobs on threads.
    children: Option<(std::path::PathBuf, u32)>,
}

impl QueueRunner {
    pub(crate) fn start(deps: &QueueDeps, queue: Queue) -> Arc<QueueRunner> {
        if !KNOWN_EXECUTORS.contains(&queue.executor.as_str()) {
            log::warn!(
                "queue {:?}: unknown executor {:?}; running its jobs on the thread pool (as {THREADED_EXECUTOR})",
                queue.name,
                queue.executor
            );
        }
        let now = Instant::now();
        let pool = ExecPool::new(deps, &queue);
        Arc::new(QueueRunner {
            desired: Mutex::new(queue.clone()),
            wake: Wake::new(&deps.fetch_wake),
            refill: Wake::new(&deps.fetch_wake),
            removed: AtomicBool::new(false),
            finished: Flag::new(),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            refill_armed: AtomicBool::new(false),
            visit: Mutex::new(Visit {
                pool,
                // Not due by the timer before `announce_started` wakes it.
                next_poll: crate::duration::deadline(now, queue.polling_interval),
                last_claim: now,
                backoff: Backoff::new(deps.backoff.0, deps.backoff.1),
                claims_in_doubt: false,
                retiring: false,
                done: false,
                events: Vec::new(),
                active: queue,
            }),
        })
    }

    /// Announces `worker.queue.started` and asks for the runner's first poll. Called by the
    /// queues pass after [`QueueRunner::start`] once the runner is in the worker's map and
    /// with no lock held: a hub handler may call `Worker::queues`, which takes the map, and
    /// the event comes before the queue's first poll (nothing wakes the runner before).
    pub(crate) fn announce_started(&self, deps: &QueueDeps) {
        let started = {
            let v = self.visit.lock();
            Self::event(deps, QUEUE_STARTED, &v.active, v.pool.concurrency)
        };
        deps.hub.emit(started.0, started.1);
        self.wake.set();
    }

    /// Stops serving the queue once its running jobs finish.
    pub(crate) fn remove(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.wake.set();
    }

    /// One visit of the fetch scheduler: retune, resume, or claim exactly the free slots if
    /// the queue is due. Returns when it wants the next visit (`None`: only when woken).
    /// The queue's name if only its polling timer is due (not woken, no refill, active,
    /// configuration unchanged): the scheduler probes such queues with one statement and
    /// claims only for those with work.
    pub(crate) fn due_for_poll(&self, now: Instant) -> Option<String> {
        let v = self.visit.try_lock()?;
        let quiet = !v.done
            && !v.retiring
            && v.active.state == QueueState::Active
            && now + POLL_SLACK >= v.next_poll
            && !self.wake.pending.load(Ordering::SeqCst)
            && !self.refill.pending.load(Ordering::SeqCst)
            && !self.removed.load(Ordering::SeqCst)
            && *self.desired.lock() == v.active;
        quiet.then(|| v.active.name.clone())
    }

    /// `without_work`: queues the scheduler's probe found with nothing to claim now.
    /// `timer_polls`: whether this fetch thread serves polls that are merely due (the first
    /// one, which probes them together); the others only serve wake-ups and refills.
    pub(crate) fn visit(
        self: &Arc<Self>,
        deps: &QueueDeps,
        fetch: &mut super::fetch_conn::FetchConn,
        without_work: &std::collections::HashSet<String>,
        timer_polls: bool,
    ) -> Option<Instant> {
        let mut guard = self.visit.try_lock()?;
        let next = self.visit_locked(deps, fetch, &mut guard, without_work, timer_polls);
        let events = std::mem::take(&mut guard.events);
        let finished_now = guard.done && !self.finished.is_set();
        drop(guard);
        for (name, body) in events {
            deps.hub.emit(name, body);
        }
        if finished_now {
            // After `worker.queue.removed`: whoever waits for the runner to finish sees
            // its last event first.
            self.finished.set();
        }
        next
    }

    fn visit_locked(
        self: &Arc<Self>,
        deps: &QueueDeps,
        fetch: &mut super::fetch_conn::FetchConn,
        v: &mut Visit,
        without_work: &std::collections::HashSet<String>,
        timer_polls: bool,
    ) -> Option<Instant> {
        if v.done {
            return None;
        }
        let now = Instant::now();
        if deps.shutdown.is_triggered() || self.removed.load(Ordering::SeqCst) {
            return self.retire(deps, v, now);
        }
        let woken = self.wake.take();
        let changed = *self.desired.lock() != v.active;
        if changed {
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                self.draining.store(true, Ordering::SeqCst);
                return Some(v.next_poll);
            }
            self.draining.store(false, Ordering::SeqCst);
            let updated = Self::event(deps, QUEUE_UPDATED, &v.active, v.pool.concurrency);
            v.events.push(updated);
            v.pool.jobs.close();
            v.active = self.desired.lock().clone();
            v.pool = ExecPool::new(deps, &v.active);
            v.next_poll = now;
        }
        let refill = self.refill.take();
        let cooldown = if v.active.eager_polling {
            Duration::ZERO
        } else {
            REFILL_COOLDOWN
        };
        let refill_at = v.last_claim + cooldown;
        let refill_now = refill && now >= refill_at;
        let timer_due = timer_polls && now + POLL_SLACK >= v.next_poll;
        if !(woken || timer_due || refill_now) {
            // Only the thread that serves timer polls wakes up for them.
            let poll = timer_polls.then_some(v.next_poll);
            if refill {
                self.refill.keep();
                return Some(poll.map_or(refill_at, |p| p.min(refill_at)));
            }
            return poll;
        }
        if refill && !refill_now {
            self.refill.keep();
        }
        v.next_poll = crate::duration::deadline(now, v.active.polling_interval);
        let (next, claimed) = self.poll(deps, fetch, v, woken || refill_now, without_work, now);
        if let Some(claimed) = claimed {
            let body = json!({
                "queue": v.active.name,
                "worker": deps.fetch.me.worker_id,
                "claimed": claimed,
            });
            v.events.push((QUEUE_POLLED, body));
        }
        next
    }

    /// The due part of [`QueueRunner::visit`]: when to come back, and how many jobs were
    /// claimed (`None` when no connection was free: the poll did not happen).
    fn poll(
        self: &Arc<Self>,
        deps: &QueueDeps,
        fetch: &mut super::fetch_conn::FetchConn,
        v: &mut Visit,
        woken: bool,
        without_work: &std::collections::HashSet<String>,
        now: Instant,
    ) -> (Option<Instant>, Option<usize>) {
        // Jobs already claimed whose executor thread could not be started (out of threads)
        // get another start on every poll, whether or not the queue has new work or is
        // paused: they are `running` in the table and nothing else would run them.
        v.pool.start_missing_threads(deps, self);
        if !woken && without_work.contains(&v.active.name) {
            return (Some(v.next_poll), Some(0));
        }
        if v.active.state == QueueState::Paused {
            self.maybe_resume(deps, &mut v.active);
            return (Some(v.next_poll), Some(0));
        }
        let free = v
            .pool
            .concurrency
            .saturating_sub(self.in_flight.load(Ordering::SeqCst));
        if free == 0 {
            let full = Self::event(deps, QUEUE_FULL, &v.active, v.pool.concurrency);
            v.events.push(full);
            return (Some(v.next_poll), Some(0));
        }
        let Some(conn) = fetch.get(&deps.fetch) else {
            // No connection now: stay due; the scheduler retries soon.
            self.wake.keep();
            return (Some(fetch.retry_at()), None);
        };
        v.last_claim = now;
        let mut claimed = 0;
        match self.claim(deps, conn, v, free) {
            Ok(jobs) => {
                claimed = jobs.len();
                v.backoff.reset();
                let full = !jobs.is_empty() && jobs.len() >= free;
                self.refill_armed.store(full, Ordering::SeqCst);
                self.dispatch(deps, v, jobs);
            }
            Err(err) => {
                fetch.discard();
                v.claims_in_doubt = true;
                let delay = v.backoff.fail();
                log::error!(
                    "chancy-fetch: fetching jobs of queue {:?} failed (attempt {}), retrying in {delay:?}: {err}",
                    v.active.name,
                    v.backoff.failures()
                );
                v.next_poll = crate::duration::deadline(now, delay);
            }
        }
        if self.wake.pending.load(Ordering::SeqCst) {
            // Woken while this visit claimed: another fetch thread skipped the queue.
            return (Some(Instant::now()), Some(claimed));
        }
        (Some(v.next_poll), Some(claimed))
    }

    /// Removed or shutting down: no more claims; finished once the running jobs are done.
    fn retire(&self, deps: &QueueDeps, v: &mut Visit, now: Instant) -> Option<Instant> {
        if !v.retiring {
            v.retiring = true;
            v.pool.jobs.close();
        }
        if !v.pool.jobs.is_drained() {
            // The last executor thread to end wakes the scheduler; this is a backstop.
            return Some(now + Duration::from_millis(200));
        }
        v.done = true;
        let removed = Self::event(deps, QUEUE_REMOVED, &v.active, v.pool.concurrency);
        v.events.push(removed);
        None
    }

    fn claim(
        &self,
        deps: &QueueDeps,
        c: &mut Conn,
        v: &mut Visit,
        up_to: usize,
    ) -> crate::error::Result<Vec<Claimed>> {
        if v.claims_in_doubt {
            // A claim whose response was lost committed rows no thread holds. Only the
            // scheduler claims this queue for this worker (one visit at a time) and every
            // claim it dispatched is held by a guard until its outcome is written, so such
            // rows can be released at once instead of after the heartbeat's grace period.
            super::heartbeat::release_orphans(
                &deps.fetch.me,
                &deps.fetch.claims,
                &mut c.client,
                std::slice::from_ref(&v.active.name),
                Duration::ZERO,
            )?;
            v.claims_in_doubt = false;
        }
        super::fetch::fetch_jobs(&deps.fetch, &v.active, c, up_to)
    }

    fn dispatch(self: &Arc<Self>, deps: &QueueDeps, v: &Visit, jobs: Vec<Claimed>) {
        if jobs.is_empty() {
            return;
        }
        let n = jobs.len();
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        match v.pool.jobs.push_all(jobs) {
            Ok(start) => v.pool.start_threads(deps, self, start),
            Err(abandoned) => {
                // Cannot happen (the pool closes only under this lock). Dropping the jobs
                // releases their claims: the orphan sweep puts the rows back to pending.
                self.in_flight.fetch_sub(n, Ordering::SeqCst);
                drop(abandoned);
            }
        }
    }

    /// Frees a slot when a job finishes and wakes the scheduler if the queue should claim.
    fn job_finished(&self, eager: bool, refill_at: usize) {
        let running = self.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        if running <= refill_at {
            if eager {
                self.wake.set();
            } else if self.refill_armed.swap(false, Ordering::SeqCst) {
                self.refill.set();
            }
        }
        if self.draining.load(Ordering::SeqCst) {
            self.wake.set();
        }
    }

    /// Paused queue: resume it when `resume_at` has passed by the database clock (like
    /// upstream, no fetch now; upstream compares with the worker's clock).
    fn maybe_resume(&self, deps: &QueueDeps, active: &mut Queue) {
        let Some(at) = active.resume_at else { return };
        match deps.fetch.me.chancy.resume_queue_if_due(&active.name) {
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

    /// A `worker.queue.*` event of this queue, to emit once no lock is held.
    fn event(
        deps: &QueueDeps,
        event: &'static str,
        queue: &Queue,
        concurrency: usize,
    ) -> (&'static str, Value) {
        let body = json!({
            "queue": queue.name,
            "executor": queue.executor,
            "concurrency": concurrency,
            "worker": deps.fetch.me.worker_id,
        });
        (event, body)
    }

    /// Executor threads of this queue alive now (for tests and stats).
    pub(crate) fn executor_threads(&self) -> usize {
        self.visit.lock().pool.jobs.threads()
    }
}

impl ExecPool {
    fn new(deps: &QueueDeps, queue: &Queue) -> ExecPool {
        let concurrency = effective_concurrency(queue);
        let process = uses_processes(queue);
        let idle = if process {
            PROCESS_IDLE_TIMEOUT
        } else {
            THREAD_IDLE_TIMEOUT
        };
        ExecPool {
            jobs: Arc::new(JobQueue::new(concurrency, idle)),
            concurrency,
            eager: queue.eager_polling,
            children: process
                .then(|| {
                    deps.children
                        .for_queue(&queue.name, &deps.fetch.me.worker_id)
                })
                .flatten()
                .map(|exe| (exe, max_jobs_per_child(queue))),
        }
    }

    /// Starts threads for jobs that are waiting with no thread to take them (a start that
    /// failed earlier).
    fn start_missing_threads(&self, deps: &QueueDeps, runner: &Arc<QueueRunner>) {
        let n = self.jobs.threads_needed();
        self.start_threads(deps, runner, n);
    }

    /// Starts `n` executor threads (already counted by the job queue). One that cannot be
    /// started is an error for this queue, not a panic: its jobs wait for the next visit.
    fn start_threads(&self, deps: &QueueDeps, runner: &Arc<QueueRunner>, n: usize) {
        for _ in 0..n {
            let name = format!("chancy-exec-{}", runner.desired.lock().name);
            let jobs = Arc::clone(&self.jobs);
            let (exec, runner2) = (Arc::clone(&deps.exec), Arc::clone(runner));
            let (eager, refill_at, children) =
                (self.eager, self.concurrency / 2, self.children.clone());
            let started = super::spawn_named(&name, move || {
                executor_thread(&exec, &runner2, &jobs, eager, refill_at, children)
            });
            if let Err(err) = started {
                self.jobs.start_failed();
                log::error!(
                    "{name}: cannot start an executor thread ({err}); retrying at the next poll"
                );
            }
        }
    }
}

/// The body of an executor thread: run jobs until the queue closes or stays idle.
fn executor_thread(
    exec: &ExecDeps,
    runner: &Arc<QueueRunner>,
    jobs: &JobQueue<Claimed>,
    eager: bool,
    refill_at: usize,
    children: Option<(std::path::PathBuf, u32)>,
) {
    let mut slot = children.map(|(exe, max)| ChildSlot::new(exe, max));
    while let Some(Claimed { job, guard }) = jobs.pop() {
        let id = job.id;
        // Handlers run under catch_unwind already; this guards the plugin hooks around
        // them, so a panicking hook cannot kill the thread.
        let run = std::panic::AssertUnwindSafe(|| match slot.as_mut() {
            Some(slot) => execute(exec, job, |j, c| {
                let result = slot.run(&exec.worker_id, &j, c);
                (j, result)
            }),
            None => execute(exec, job, |j, c| run_on_thread(exec, j, c)),
        });
        match std::panic::catch_unwind(run) {
            Ok(outcome) => {
                // The guard goes with the outcome; the writer drops it after the commit (or
                // the push drops it when the stop's cut-off has passed).
                exec.outgoing.push(outcome, Some(guard));
            }
            Err(_) => {
                log::error!(
                    "a plugin hook panicked around job {id}; its row stays running until the \
                     orphan sweep releases its claim"
                );
                drop(guard);
            }
        }
        runner.job_finished(eager, refill_at);
    }
    drop(slot);
    if jobs.exited() {
        runner.wake.set();
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
    fn a_queue_wake_marks_the_queue_and_wakes_every_fetch_thread() {
        let fetch = Arc::new(FetchWake::new(2));
        let wake = Wake::new(&fetch);
        assert!(!wake.take(), "nothing pending at first");
        wake.set();
        assert!(fetch.flags().iter().all(|f| f.is_set()));
        assert!(wake.take());
        assert!(!wake.take(), "a wake-up is taken once");
        for f in fetch.flags() {
            f.wait_and_clear(Duration::ZERO);
        }
        wake.keep();
        assert!(
            fetch.flags().iter().all(|f| !f.is_set()),
            "keep does not poke the scheduler"
        );
        assert!(wake.take(), "a kept wake-up is seen by the next visit");
    }

    #[test]
    fn jobs_per_child_reads_the_upstream_option_and_clamps_it() {
        let q = Queue::new("q").executor(PROCESS_EXECUTOR);
        assert_eq!(max_jobs_per_child(&q), DEFAULT_MAXIMUM_JOBS_PER_CHILD);
        let with = |v: serde_json::Value| {
            let mut q = q.clone();
            q.executor_options
                .insert("maximum_jobs_per_worker".into(), v);
            max_jobs_per_child(&q)
        };
        assert_eq!(with(json!(3)), 3);
        assert_eq!(with(json!(0)), 1);
        assert_eq!(with(json!(u64::MAX)), u32::MAX);
        assert_eq!(with(json!("7")), DEFAULT_MAXIMUM_JOBS_PER_CHILD);
        assert!(uses_processes(&q));
        assert!(!uses_processes(&Queue::new("q")));
    }

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
