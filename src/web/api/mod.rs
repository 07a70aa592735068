//! The `/api/v1/` resources, one file each, and the JSON shapes they share (keys are the
//! database column names, times ISO 8601 like Python's `isoformat()`).

mod crons;
mod jobs;
mod metrics;
mod queues;
mod system;
mod workers;
mod workflows;

use chrono::DateTime;
use serde_json::{json, Value};
use uuid::Uuid;

use super::http::{Reply, Req};
use crate::error::Error;
pub(crate) use crate::json::{iso, iso_opt, job_json, queue_json};
use crate::{Chancy, Job};

/// A handler's answer: the error side is also a reply (`{"error": …}` with its status).
pub(crate) type Out = Result<Reply, Reply>;

/// Largest page of jobs or workflows.
pub(crate) const MAX_LIMIT: u32 = 100;

/// Routes an authenticated `/api/v1/<segs>` request.
pub(crate) fn dispatch(req: &Req, chancy: &Chancy, segs: &[&str]) -> Out {
    match (req.method.as_str(), segs) {
        ("GET", ["configuration"]) => system::configuration(chancy),
        ("GET", ["system"]) => system::system(chancy),
        ("GET", ["overview"]) => system::overview(chancy),
        ("GET", ["plugins"]) => system::plugins(chancy),
        ("GET", ["queues"]) => queues::list(chancy),
        ("POST", ["queues"]) => queues::create(req, chancy),
        ("PATCH", ["queues", name]) => queues::update(req, chancy, name),
        ("DELETE", ["queues", name]) => queues::delete(req, chancy, name),
        ("POST", ["queues", name, "pause"]) => queues::pause(req, chancy, name),
        ("POST", ["queues", name, "resume"]) => queues::resume(chancy, name),
        ("GET", ["workers"]) => workers::list(chancy),
        ("GET", ["jobs"]) => jobs::list(req, chancy),
        ("POST", ["jobs"]) => jobs::batch(req, chancy),
        ("GET", ["jobs", "functions"]) => jobs::functions(chancy),
        ("GET", ["jobs", id]) => jobs::get(chancy, id),
        ("DELETE", ["jobs", id]) => jobs::purge(chancy, id),
        ("POST", ["jobs", id, "cancel"]) => jobs::cancel(chancy, id),
        ("POST", ["jobs", id, "retry"]) => jobs::retry(chancy, id),
        ("GET", ["crons"]) => crons::list(chancy),
        ("GET", ["metrics"]) => metrics::categories(chancy),
        ("GET", ["metrics", prefix]) => metrics::detail(req, chancy, prefix),
        ("GET", ["workflows"]) => workflows::list(req, chancy),
        ("GET", ["workflows", id]) => workflows::get(chancy, id),
        _ => Err(Reply::error(
            404,
            format!("no route for {} {}", req.method, req.path),
        )),
    }
}

impl From<Error> for Reply {
    fn from(err: Error) -> Reply {
        let status = if err.is_invalid_input() {
            400
        } else if err.is_not_found() {
            404
        } else if err.is_unavailable() {
            503
        } else {
            500
        };
        if status >= 500 {
            log::warn!("web: {err}");
        }
        Reply::error(status, err.to_string())
    }
}

/// A job definition (cron, workflow step) with readable keys instead of the packed
/// one-letter ones: `func`, `queue`, `kwargs`, `priority`, `max_attempts`, `limits`,
/// `unique_key`, `meta`, `scheduled_at`.
pub(crate) fn job_definition_json(job: &Job) -> Value {
    let packed = job.pack();
    let key = |k: &str| packed.get(k).cloned().unwrap_or(Value::Null);
    let scheduled = packed
        .get("s")
        .and_then(Value::as_f64)
        .and_then(|s| DateTime::from_timestamp_micros((s * 1e6).round() as i64))
        .map_or(Value::Null, |t| iso(&t));
    json!({
        "func": key("f"),
        "queue": key("q"),
        "kwargs": key("k"),
        "priority": key("p"),
        "max_attempts": key("a"),
        "limits": key("l"),
        "unique_key": key("u"),
        "meta": key("m"),
        "scheduled_at": scheduled,
    })
}

/// A UUID from a path segment or parameter, or 400 naming `what`.
pub(crate) fn parse_uuid(text: &str, what: &str) -> Result<Uuid, Reply> {
    Uuid::parse_str(text.trim())
        .map_err(|_| Reply::error(400, format!("{what} must be a UUID, got {text:?}")))
}

/// `limit` (default [`MAX_LIMIT`]), 1..=[`MAX_LIMIT`], or 400.
pub(crate) fn parse_limit(req: &Req) -> Result<u32, Reply> {
    match req.param("limit") {
        None => Ok(MAX_LIMIT),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(Reply::error(
                400,
                format!("limit must be an integer from 1 to {MAX_LIMIT}, got {text:?}"),
            )),
        },
    }
}

/// `pagination=true|1` (anything else is false; a typo is a 400).
pub(crate) fn wants_pagination(req: &Req) -> Result<bool, Reply> {
    match req.param("pagination") {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(Reply::error(
            400,
            format!("pagination must be true or false, got {other:?}"),
        )),
    }
}

/// A page (`{"items", "has_more", "next_cursor"}`) or a plain list. `rows` holds up to
/// `limit + 1` items (the extra one only tells that there is more).
pub(crate) fn page(mut rows: Vec<(Uuid, Value)>, limit: u32, paginate: bool) -> Reply {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|(id, _)| Value::String(id.to_string()))
    } else {
        None
    };
    let items: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
    if paginate {
        Reply::json(json!({
            "items": items,
            "has_more": has_more,
            "next_cursor": next_cursor,
        }))
    } else {
        Reply::json(Value::Array(items))
    }
}
