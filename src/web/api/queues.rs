//! `/api/v1/queues`: list, pause and resume.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{queue_json, Out};
use crate::web::http::{Reply, Req};
use crate::Chancy;

/// `GET /api/v1/queues`: every queue, by name.
pub(super) fn list(chancy: &Chancy) -> Out {
    let queues = chancy.get_all_queues()?;
    Ok(Reply::json(Value::Array(
        queues.iter().map(queue_json).collect(),
    )))
}

/// `POST /api/v1/queues/{name}/pause` with `{"resume_at": ISO 8601 | null}`.
pub(super) fn pause(req: &Req, chancy: &Chancy, name: &str) -> Out {
    let body = req.json()?;
    let resume_at = match body.get("resume_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    Reply::error(
                        400,
                        format!("resume_at must be an ISO 8601 time with a zone, got {s:?} ({e})"),
                    )
                })?,
        ),
        Some(other) => {
            return Err(Reply::error(
                400,
                format!("resume_at must be a string or null, got {other}"),
            ))
        }
    };
    chancy.pause_queue(name, resume_at)?;
    Ok(Reply::json(queue_json(&chancy.get_queue(name)?)))
}

/// `POST /api/v1/queues/{name}/resume`.
pub(super) fn resume(chancy: &Chancy, name: &str) -> Out {
    chancy.resume_queue(name)?;
    Ok(Reply::json(queue_json(&chancy.get_queue(name)?)))
}
