//! The JSON forms of jobs and queues shared by the CLI's `--json` output and the web API:
//! keys are the database column names, times ISO 8601 as Python's `datetime.isoformat()`
//! writes them (`+00:00`, microseconds).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::{Queue, QueuedJob};

/// A time as Python's `datetime.isoformat()` writes it.
pub(crate) fn iso(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, false))
}

/// [`iso`] or `null`.
pub(crate) fn iso_opt(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, iso)
}

/// A job row as JSON (every column, like upstream's `SELECT *`).
pub(crate) fn job_json(job: &QueuedJob) -> Value {
    json!({
        "id": job.id.to_string(),
        "queue": job.queue,
        "func": job.func,
        "kwargs": job.kwargs,
        "limits": job.limits,
        "meta": job.meta,
        "state": job.state.as_str(),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "taken_by": job.taken_by,
        "created_at": iso(&job.created_at),
        "started_at": iso_opt(&job.started_at),
        "completed_at": iso_opt(&job.completed_at),
        "scheduled_at": iso(&job.scheduled_at),
        "unique_key": job.unique_key,
        "errors": job.errors,
        "claim_id": job.claim_id.map(|c| c.to_string()),
    })
}

/// A queue as upstream's `Queue.pack()`.
pub(crate) fn queue_json(q: &Queue) -> Value {
    json!({
        "name": q.name,
        "concurrency": q.concurrency,
        "tags": q.tags.iter().collect::<Vec<_>>(),
        "state": q.state.as_str(),
        "executor": q.executor,
        "executor_options": q.executor_options,
        "polling_interval": q.polling_interval.as_secs(),
        "rate_limit": q.rate_limit,
        "rate_limit_window": q.rate_limit_window.map(|w| w.as_secs()),
        "resume_at": iso_opt(&q.resume_at),
        "eager_polling": q.eager_polling,
    })
}
