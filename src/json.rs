//! The JSON forms of jobs, queues, job definitions and workflows shared by the CLI's `--json`
//! output and the web API:
//! keys are the database column names, times ISO 8601 as Python's `datetime.isoformat()`
//! writes them (`+00:00`, microseconds).
//!
//! serde_json's `Map` keeps its keys sorted (we do not turn on its `preserve_order` feature,
//! which would change `Map` for every crate in the user's build), so the forms are built as
//! [`Ordered`] field lists: serialized directly they keep the column order (the CLI's
//! `--json`); converted to a [`Value`] they are ordinary objects (the web API).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use crate::job::{Job, QueuedJob};
use crate::plugins::Workflow;
use crate::queue::Queue;

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

/// A job definition (cron, workflow step) as upstream's API writes a `Job` dataclass:
/// `func`, `queue`, `kwargs`, `priority`, `max_attempts`, `scheduled_at` (ISO 8601),
/// `limits` as `[{"type_": "time"|"memory", "value": n}]`, `unique_key`, `meta`.
pub(crate) fn job_definition_json(job: &Job) -> Value {
    let packed = job.pack();
    let key = |k: &str| packed.get(k).cloned().unwrap_or(Value::Null);
    let scheduled = packed
        .get("s")
        .and_then(Value::as_f64)
        .and_then(|s| DateTime::from_timestamp_micros((s * 1e6).round() as i64))
        .map_or(Value::Null, |t| iso(&t));
    let limits: Vec<Value> = job
        .limits
        .iter()
        .map(|l| {
            let packed = json!(l);
            json!({ "type_": packed["t"], "value": packed["v"] })
        })
        .collect();
    json!({
        "func": key("f"),
        "queue": key("q"),
        "kwargs": key("k"),
        "priority": key("p"),
        "max_attempts": key("a"),
        "limits": limits,
        "unique_key": key("u"),
        "meta": key("m"),
        "scheduled_at": scheduled,
    })
}

/// A workflow as upstream's API writes it (`GET /api/v1/workflows/{id}`, and `chancy workflow
/// get`): `id`, `name`, `state`, `created_at`, `updated_at` (ISO 8601) and `steps`, an object
/// keyed by `step_id` whose values carry `step_id`, `state` (the step's job state, `null`
/// before it is pushed), `job_id`, `dependencies` and `job` ([`job_definition_json`]).
pub(crate) fn workflow_json(w: &Workflow) -> Value {
    let steps: Map<String, Value> = w
        .steps
        .iter()
        .map(|s| {
            let step = json!({
                "step_id": s.step_id,
                "state": s.state.map(|st| st.as_str()),
                "job_id": s.job_id.map(|j| j.to_string()),
                "dependencies": s.dependencies,
                "job": job_definition_json(&s.job),
            });
            (s.step_id.clone(), step)
        })
        .collect();
    json!({
        "id": w.id.to_string(),
        "name": w.name,
        "state": w.state.as_str(),
        "created_at": iso_opt(&w.created_at),
        "updated_at": iso_opt(&w.updated_at),
        "steps": steps,
    })
}
