//! `/api/v1/queues`: list, create, update, delete, pause and resume.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{error, ok, queue_json, Out, INVALID};
use crate::web::http::{Reply, Req};
use crate::{Chancy, Queue};

/// `GET /api/v1/queues`: every queue, by name, in upstream's shape. A row another client
/// wrote with values chancy cannot read is listed among them as
/// `{"name", "state" (raw text), "unreadable": reason}` (as `/api/v1/jobs` lists such job
/// rows), so one bad row never fails the page.
pub(super) fn list(chancy: &Chancy) -> Out {
    let listing = chancy.list_queues()?;
    let mut items: Vec<(String, Value)> = listing
        .queues
        .iter()
        .map(|q| (q.name.clone(), queue_json(q)))
        .collect();
    items.extend(
        listing
            .unreadable
            .iter()
            .map(|u| (u.name.clone(), unreadable_queue_json(u))),
    );
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Reply::json(Value::Array(
        items.into_iter().map(|(_, v)| v).collect(),
    )))
}

/// A queue row chancy cannot read, for listings: its name, raw state and the reason
/// (logged at warn, as unreadable job rows are).
pub(super) fn unreadable_queue_json(u: &crate::UnreadableQueue) -> Value {
    log::warn!("listing an unreadable queue row: {}", u.reason);
    serde_json::json!({
        "name": u.name,
        "state": u.state,
        "unreadable": u.reason.to_string(),
    })
}

/// `POST /api/v1/queues/{name}/pause` with `{"resume_at": ISO 8601 | null}`: `{"ok": true}`
/// like upstream.
pub(super) fn pause(req: &Req, chancy: &Chancy, name: &str) -> Out {
    let body = req.json()?;
    let resume_at = match body.get("resume_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    error(
                        INVALID,
                        format!("resume_at must be an ISO 8601 time with a zone, got {s:?} ({e})"),
                    )
                })?,
        ),
        Some(other) => {
            return Err(error(
                INVALID,
                format!("resume_at must be a string or null, got {other}"),
            ))
        }
    };
    chancy.get_queue(name)?;
    chancy.pause_queue(name, resume_at)?;
    Ok(ok())
}

/// `POST /api/v1/queues/{name}/resume`: `{"ok": true}` like upstream (404 for an unknown
/// queue, where upstream answers ok without doing anything).
pub(super) fn resume(chancy: &Chancy, name: &str) -> Out {
    chancy.get_queue(name)?;
    chancy.resume_queue(name)?;
    Ok(ok())
}

/// `POST /api/v1/queues`: the body's fields over `Queue::new(name)`'s defaults, upserted
/// (upstream's create). Answers the stored queue.
pub(super) fn create(req: &Req, chancy: &Chancy) -> Out {
    let body = req.json()?;
    let fields = body
        .as_object()
        .ok_or_else(|| error(INVALID, "the body must be a JSON object"))?;
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| error(INVALID, "name is required"))?;
    let queue = apply(Queue::new(name), fields)?;
    Ok(Reply::json(queue_json(&chancy.declare_upsert(&queue)?)))
}

/// `PATCH /api/v1/queues/{name}`: the given fields over the stored queue, upserted.
pub(super) fn update(req: &Req, chancy: &Chancy, name: &str) -> Out {
    let body = req.json()?;
    let fields = body
        .as_object()
        .ok_or_else(|| error(INVALID, "the body must be a JSON object"))?;
    if fields.get("name").is_some_and(|n| n.as_str() != Some(name)) {
        return Err(error(INVALID, "a queue cannot be renamed"));
    }
    let queue = apply(chancy.get_queue(name)?, fields)?;
    Ok(Reply::json(queue_json(&chancy.declare_upsert(&queue)?)))
}

/// `DELETE /api/v1/queues/{name}?purge_jobs=true|false` (default true): `{"ok": true}`;
/// 404 for an unknown queue (upstream answers ok).
pub(super) fn delete(req: &Req, chancy: &Chancy, name: &str) -> Out {
    let purge = match req.param("purge_jobs") {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(other) => {
            return Err(error(
                INVALID,
                format!("purge_jobs must be true or false, got {other:?}"),
            ))
        }
    };
    // 404 for an unknown queue without touching jobs (the library call would still purge
    // jobs that name it).
    chancy.get_queue(name)?;
    if chancy.delete_queue(name, purge)? {
        Ok(ok())
    } else {
        Err(error(404, format!("queue {name:?} not found")))
    }
}

/// Sets the fields of `queue` named in `fields` (the `Queue.pack()` keys); unknown keys
/// and wrong types are a 400 naming the field.
fn apply(mut queue: Queue, fields: &serde_json::Map<String, Value>) -> Result<Queue, Reply> {
    let bad = |key: &str, what: &str| error(INVALID, format!("{key} must be {what}"));
    let int = |key: &str, v: &Value| -> Result<Option<i32>, Reply> {
        match v {
            Value::Null => Ok(None),
            v => super::int4(key, v)
                .map(Some)
                .map_err(|e| error(INVALID, format!("{e} (or null)"))),
        }
    };
    let seconds = |key: &str, v: &Value| -> Result<Option<Duration>, Reply> {
        int(key, v)?
            .map(|n| u64::try_from(n).map(Duration::from_secs))
            .transpose()
            .map_err(|_| bad(key, "a non-negative number of seconds"))
    };
    for (key, v) in fields {
        match key.as_str() {
            "name" => {}
            "concurrency" => queue.concurrency = int(key, v)?,
            "tags" => {
                let tags = v.as_array().ok_or_else(|| bad(key, "a list of strings"))?;
                queue.tags = tags
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad(key, "a list of strings"))?;
            }
            "state" => {
                let s = v.as_str().ok_or_else(|| bad(key, "active or paused"))?;
                queue.state = s.parse().map_err(|_| bad(key, "active or paused"))?;
            }
            "executor" => {
                queue.executor = v.as_str().ok_or_else(|| bad(key, "a string"))?.to_string();
            }
            "executor_options" => {
                queue.executor_options = match v {
                    Value::Null => serde_json::Map::new(),
                    Value::Object(m) => m.clone(),
                    _ => return Err(bad(key, "a JSON object")),
                };
            }
            "polling_interval" => {
                queue.polling_interval =
                    seconds(key, v)?.ok_or_else(|| bad(key, "a number of seconds"))?;
            }
            "rate_limit" => queue.rate_limit = int(key, v)?,
            "rate_limit_window" => queue.rate_limit_window = seconds(key, v)?,
            "resume_at" => {
                queue.resume_at = match v {
                    Value::Null => None,
                    Value::String(s) => Some(
                        DateTime::parse_from_rfc3339(s)
                            .map(|t| t.with_timezone(&Utc))
                            .map_err(|_| bad(key, "an ISO 8601 time with a zone or null"))?,
                    ),
                    _ => return Err(bad(key, "an ISO 8601 time with a zone or null")),
                };
            }
            "eager_polling" => {
                queue.eager_polling = v.as_bool().ok_or_else(|| bad(key, "true or false"))?;
            }
            other => return Err(error(INVALID, format!("unknown queue field {other:?}"))),
        }
    }
    Ok(queue)
}
