//! The JSON forms of jobs and queues shared by the CLI's `--json` output and the web API:
//! keys are the database column names, times ISO 8601 as Python's `datetime.isoformat()`
//! writes them (`+00:00`, microseconds).
//!
//! serde_json's `Map` keeps its keys sorted (we do not turn on its `preserve_order` feature,
//! which would change `Map` for every crate in the user's build), so the forms are built as
//! [`Ordered`] field lists: serialized directly they keep the column order (the CLI's
//! `--json`); converted to a [`Value`] they are ordinary objects (the web API).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::{Queue, QueuedJob};

/// A time as Python's `datetime.isoformat()` writes it.
pub(crate) fn iso(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, false))
}

/// [`iso`] or `null`.
pub(crate) fn iso_opt(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, iso)
}

/// A JSON object whose keys serialize in the listed order.
pub(crate) struct Ordered(Vec<(&'static str, Value)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl From<Ordered> for Value {
    fn from(o: Ordered) -> Value {
        Value::Object(
            o.0.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<Map<_, _>>(),
        )
    }
}

fn v(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A job row, every column in table order (like upstream's `SELECT *`).
pub(crate) fn job_fields(job: &QueuedJob) -> Ordered {
    Ordered(vec![
        ("id", v(job.id.to_string())),
        ("queue", v(&job.queue)),
        ("func", v(&job.func)),
        ("kwargs", v(&job.kwargs)),
        ("limits", v(&job.limits)),
        ("meta", v(&job.meta)),
        ("state", v(job.state.as_str())),
        ("priority", v(job.priority)),
        ("attempts", v(job.attempts)),
        ("max_attempts", v(job.max_attempts)),
        ("taken_by", v(&job.taken_by)),
        ("created_at", iso(&job.created_at)),
        ("started_at", iso_opt(&job.started_at)),
        ("completed_at", iso_opt(&job.completed_at)),
        ("scheduled_at", iso(&job.scheduled_at)),
        ("unique_key", v(&job.unique_key)),
        ("errors", v(&job.errors)),
        ("claim_id", v(job.claim_id.map(|c| c.to_string()))),
    ])
}

/// [`job_fields`] as a JSON object.
pub(crate) fn job_json(job: &QueuedJob) -> Value {
    job_fields(job).into()
}

/// A queue as upstream's `Queue.pack()`, in its key order.
pub(crate) fn queue_fields(q: &Queue) -> Ordered {
    Ordered(vec![
        ("name", v(&q.name)),
        ("concurrency", v(q.concurrency)),
        ("tags", v(q.tags.iter().collect::<Vec<_>>())),
        ("state", v(q.state.as_str())),
        ("executor", v(&q.executor)),
        ("executor_options", v(&q.executor_options)),
        ("polling_interval", v(q.polling_interval.as_secs())),
        ("rate_limit", v(q.rate_limit)),
        (
            "rate_limit_window",
            v(q.rate_limit_window.map(|w| w.as_secs())),
        ),
        ("resume_at", iso_opt(&q.resume_at)),
        ("eager_polling", v(q.eager_polling)),
    ])
}

/// [`queue_fields`] as a JSON object.
pub(crate) fn queue_json(q: &Queue) -> Value {
    queue_fields(q).into()
}
