//! Runs one claimed job and records its outcome exactly like Python Chancy: success →
//! `succeeded`; failure → `retrying` or `failed` by `max_attempts`, with an
//! `{"attempt", "traceback"}` entry. Where the handler runs (this thread or a child process)
//! is the caller's choice.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::context::{JobContext, JobError, JobErrorKind, Registry};
use super::executions::Executions;
use super::panics;
use super::writer::Outgoing;
use crate::app::Chancy;
use crate::job::{ErrorRecord, JobState, JsonObject, LimitKind, QueuedJob};

/// What running a handler produced: the outcome and, if the job changed it, its meta.
pub(crate) type RunResult = (Result<(), JobError>, Option<JsonObject>);

/// What running jobs uses, and nothing else of the worker: built once in
/// `WorkerBuilder::build`, shared by every executor thread (and read by `Worker` for its
/// registry and running executions). Fields are set at build and never replaced.
pub(crate) struct ExecDeps {
    /// The client, for its plugins' job hooks. Read-only.
    pub(crate) chancy: Chancy,
    /// This worker's id, passed to hooks and handlers. Read-only.
    pub(crate) worker_id: String,
    /// The job handlers by func. Read-only after build.
    pub(crate) registry: Registry,
    /// Running executions by job id (its own lock, a leaf): registered by executor threads
    /// around each handler, read by `Worker::cancel_*`, the stop and stats.
    pub(crate) executions: Executions,
    /// The writer's queue: executor threads push each outcome with its claim guard.
    pub(crate) outgoing: Arc<Outgoing>,
}

/// Runs `job` through `run` (which gets the job and its cancel flag, and hands the job back
/// with the result, so the job is moved rather than copied) with the plugin hooks around it,
/// and returns the job as it must be written back.
pub(crate) fn execute(
    deps: &ExecDeps,
    job: QueuedJob,
    run: impl FnOnce(QueuedJob, Arc<AtomicBool>) -> (QueuedJob, RunResult),
) -> QueuedJob {
    let guard = deps.executions.register(job.id, job.claim_id);
    for plugin in deps.chancy.plugins() {
        plugin.on_job_starting(&job, &deps.worker_id);
    }
    let (job, (result, meta)) = run(job, Arc::clone(&guard.cancelled));
    drop(guard);
    let mut done = record_outcome(job, result.as_ref().err(), Utc::now());
    if let Some(meta) = meta {
        done.meta = meta;
    }
    for plugin in deps.chancy.plugins() {
        done = plugin.on_job_completed(done, result.as_ref().err());
    }
    if let Err(err) = &result {
        log_failed_attempt(&done, err);
    }
    done
}

/// One WARN line per failed attempt, so the worker log shows what failed: the job, its
/// func and queue, attempt n of max, the first line of the error, and what happens next.
fn log_failed_attempt(done: &QueuedJob, err: &JobError) {
    let first_line = err.text().lines().next().unwrap_or("");
    let next = match done.state {
        JobState::Retrying => "will retry",
        JobState::Succeeded => "marked succeeded by a plugin",
        _ => "failed for good",
    };
    let level = match err.kind() {
        JobErrorKind::Cancelled => log::Level::Info,
        _ => log::Level::Warn,
    };
    log::log!(
        level,
        "job {} ({:?}, queue {:?}) attempt {}/{} failed: {first_line} ({next})",
        done.id,
        done.func,
        done.queue,
        done.attempts,
        done.max_attempts
    );
}

/// The thread-pool way: the handler runs on this thread. Memory limits cannot be enforced
/// here, so such jobs fail (as on upstream's thread executor).
pub(crate) fn run_on_thread(
    deps: &ExecDeps,
    job: QueuedJob,
    cancelled: Arc<AtomicBool>,
) -> (QueuedJob, RunResult) {
    if job.limit(LimitKind::Memory).is_some() {
        let text = "ValueError: the thread executor does not support memory limits; \
                    run this job on a process-executor queue of a program that calls \
                    chancy::run_child_if_requested";
        let error = JobError::with_kind(JobErrorKind::Failed, text.into());
        return (job, (Err(error), None));
    }
    run_handler(&deps.registry, &deps.worker_id, job, cancelled)
}

/// Looks up and runs the handler of `job` under `catch_unwind`, with its deadline, and hands
/// the job back with the result. A job that returns after its deadline is a timeout, like
/// upstream's cooperative limits.
pub(crate) fn run_handler(
    registry: &Registry,
    worker_id: &str,
    job: QueuedJob,
    cancelled: Arc<AtomicBool>,
) -> (QueuedJob, RunResult) {
    let Some(handler) = registry.get(&job.func) else {
        let text = format!(
            "LookupError: no handler is registered for job function {:?} on worker {worker_id}",
            job.func
        );
        return (
            job,
            (Err(JobError::with_kind(JobErrorKind::Failed, text)), None),
        );
    };
    let deadline = job
        .limit(LimitKind::Time)
        .and_then(|l| l.as_duration())
        .map(|d| crate::duration::deadline(Instant::now(), d));
    let ctx = JobContext::new(job, cancelled, deadline, worker_id.to_string());
    let outcome = match panics::catch(|| handler(&ctx)) {
        Ok(result) => result,
        Err(panic) => Err(JobError::with_kind(
            JobErrorKind::Failed,
            format!("Panic: job {:?} {panic}", ctx.job().func),
        )),
    };
    let outcome = match outcome {
        Ok(()) if deadline.is_some_and(|d| Instant::now() > d) => Err(JobError::timeout()),
        other => other,
    };
    let meta = ctx.take_meta();
    (ctx.into_job(), (outcome, meta))
}

/// The job after one attempt with `error` (`None` = success), completed at `now`.
pub(crate) fn record_outcome(
    mut job: QueuedJob,
    error: Option<&JobError>,
    now: DateTime<Utc>,
) -> QueuedJob {
    let attempt_before = job.attempts;
    job.attempts += 1;
    match error {
        None => {
            job.state = JobState::Succeeded;
            job.completed_at = Some(now);
        }
        Some(err) => {
            if job.attempts >= job.max_attempts {
                job.state = JobState::Failed;
                job.completed_at = Some(now);
            } else {
                job.state = JobState::Retrying;
                job.completed_at = None;
            }
            job.errors.push(ErrorRecord {
                attempt: i64::from(attempt_before),
                traceback: err.text().to_string(),
            });
        }
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: i32, max: i32) -> QueuedJob {
        QueuedJob {
            attempts,
            max_attempts: max,
            ..QueuedJob::claimed_for_test("f")
        }
    }

    #[test]
    fn outcomes_follow_upstream_rules() {
        let now = Utc::now();
        let ok = record_outcome(job(0, 1), None, now);
        assert_eq!(
            (ok.state, ok.attempts, ok.completed_at),
            (JobState::Succeeded, 1, Some(now))
        );

        let err = JobError::new("nope");
        let retry = record_outcome(job(0, 3), Some(&err), now);
        assert_eq!(
            (retry.state, retry.attempts, retry.completed_at),
            (JobState::Retrying, 1, None)
        );
        assert_eq!(retry.errors[0].attempt, 0);
        assert_eq!(retry.errors[0].traceback, "JobError: nope");

        let failed = record_outcome(job(2, 3), Some(&err), now);
        assert_eq!((failed.state, failed.attempts), (JobState::Failed, 3));
        assert_eq!(failed.errors[0].attempt, 2);
        assert_eq!(failed.completed_at, Some(now));
    }

    #[test]
    fn unknown_functions_fail_with_a_clear_text() {
        let (_, (result, meta)) = run_handler(
            &Registry::new(),
            "w1",
            job(0, 1),
            Arc::new(AtomicBool::new(false)),
        );
        assert!(result
            .unwrap_err()
            .text()
            .contains("no handler is registered for job function \"f\""));
        assert!(meta.is_none());
    }
}
