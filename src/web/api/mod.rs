//! The `/api/v1/` resources, one file each, and the JSON shapes they share (keys are the
//! database column names, times ISO 8601 like Python's `isoformat()`).

mod crons;
mod jobs;
mod metrics;
mod queues;
mod system;
mod workers;
mod workflows;

use serde_json::{json, Value};
use uuid::Uuid;

use super::http::{Reply, Req};
use crate::error::Error;
pub(crate) use crate::json::{iso, iso_opt, job_json, queue_json};
use crate::Chancy;

/// A handler's answer: the error side is also a reply (`{"title": …}` with its status, see
/// [`error`]).
pub(crate) type Out = Result<Reply, Reply>;

/// An error reply as upstream's API writes it: `{"title": message}` with `status`
/// (upstream's UI shows the title). Validation errors use 422 like upstream.
pub(crate) use crate::json::job_definition_json;

pub(crate) fn error(status: u16, title: impl Into<String>) -> Reply {
    Reply::json_status(status, json!({ "title": title.into() }))
}

/// Status of a request upstream refuses as invalid (its `422 Unprocessable Entity`).
pub(crate) const INVALID: u16 = 422;

/// Upstream's answer to a single-object action that happened: `{"ok": true}`.
pub(crate) fn ok() -> Reply {
    Reply::json(json!({ "ok": true }))
}

/// Largest page of jobs or workflows.
pub(crate) const MAX_LIMIT: u32 = 100;

/// Routes an authenticated `/api/v1/<segs>` request. A NUL character anywhere in the path,
/// the query or a JSON body is refused here with 422 (PostgreSQL's `text` and `jsonb`
/// cannot hold it, so it would otherwise surface as a database error), and so is a query
/// parameter that is not valid percent-encoded UTF-8 (it would otherwise be ignored).
pub(crate) fn dispatch(req: &Req, chancy: &Chancy, segs: &[&str]) -> Out {
    if let Some(name) = &req.undecodable_query {
        return Err(error(
            INVALID,
            format!(
                "query parameter {name:?} is not valid percent-encoded UTF-8 \
                 (encode text as UTF-8, then escape each byte as %XX)"
            ),
        ));
    }
    refuse_nul(req, segs)?;
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
        _ => Err(error(
            404,
            format!("no route for {} {}", req.method, req.path),
        )),
    }
}

fn refuse_nul(req: &Req, segs: &[&str]) -> Result<(), Reply> {
    let nul = |what: &str| error(INVALID, format!("{what} must not contain a NUL character"));
    if segs.iter().any(|s| s.contains('\0')) {
        return Err(nul("the path"));
    }
    if let Some((name, _)) = req
        .query
        .iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(nul(&format!("query parameter {name:?}")));
    }
    if !req.body.is_empty() && req.is_json() {
        if let Ok(body) = serde_json::from_slice::<Value>(&req.body) {
            if crate::job::json_has_nul(&body) {
                return Err(nul("the request body"));
            }
        }
    }
    Ok(())
}

/// A library error as upstream-shaped reply: invalid input and data the server refused
/// (with its own message) → 422, not found → 404, database unreachable → 503, a stored row
/// chancy cannot read → 500 with the reason; anything else → 500 with a generic title (the full text goes to the log, not to the client).
impl From<Error> for Reply {
    fn from(err: Error) -> Reply {
        if err.is_invalid_input() || err.is_rejected_data() {
            return error(INVALID, err.to_string());
        }
        if err.is_not_found() {
            return error(404, err.to_string());
        }
        log::warn!("web: {err}");
        if err.is_unreadable_row() {
            // Bad data in the database, not in the request: a server error, with the
            // reason (it names the row and the value, nothing secret).
            return error(500, err.to_string());
        }
        if err.is_unavailable() {
            return error(503, "the database is unavailable; try again shortly");
        }
        error(500, "Internal Server Error (see the server log)")
    }
}

/// A JSON number for a PostgreSQL `integer` (int4) column named `field`, or the message
/// for a 422: a non-integer says so, an integer out of range names the range.
pub(crate) fn int4(field: &str, value: &Value) -> Result<i32, String> {
    match (value.as_i64(), value.as_u64()) {
        (Some(n), _) => i32::try_from(n).ok(),
        (None, Some(_)) => None,
        (None, None) => return Err(format!("{field} needs an integer value, got {value}")),
    }
    .ok_or_else(|| {
        format!(
            "{field} must be an integer from {} to {}, got {value}",
            i32::MIN,
            i32::MAX
        )
    })
}

/// A UUID from a path segment or parameter, or 422 naming `what` (upstream: "before must
/// be a valid UUID").
pub(crate) fn parse_uuid(text: &str, what: &str) -> Result<Uuid, Reply> {
    Uuid::parse_str(text.trim()).map_err(|_| {
        error(
            INVALID,
            format!("{what} must be a valid UUID, got {text:?}"),
        )
    })
}

/// A UUID in a path (a job or workflow id): anything else cannot name an object, so 404
/// like upstream (whose lookup finds nothing).
pub(crate) fn path_uuid(text: &str, what: &str) -> Result<Uuid, Reply> {
    Uuid::parse_str(text.trim()).map_err(|_| error(404, format!("{what} not found")))
}

/// `limit` (default [`MAX_LIMIT`]): a positive integer, capped at [`MAX_LIMIT`] like
/// upstream; anything else is 422.
pub(crate) fn parse_limit(req: &Req) -> Result<u32, Reply> {
    match req.param("limit") {
        None => Ok(MAX_LIMIT),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(i64::from(MAX_LIMIT)) as u32),
            _ => Err(error(
                INVALID,
                format!("limit must be a positive integer, got {text:?}"),
            )),
        },
    }
}

/// `pagination=true` selects the page form, anything else the plain list (upstream).
pub(crate) fn wants_pagination(req: &Req) -> bool {
    matches!(req.param("pagination"), Some("true") | Some("1"))
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

/// Most filter triples one request may give (each becomes a bound parameter).
pub(crate) const MAX_FILTERS: usize = 50;

/// Upstream's `filters` parameter: a JSON array of `[key, operator, value]` with string
/// keys and operators, at most [`MAX_FILTERS`]; anything else is 422 with a message.
pub(crate) fn filter_triples(text: &str) -> Result<Vec<(String, String, Value)>, Reply> {
    let bad = |why: String| error(INVALID, format!("bad filters: {why}"));
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("Invalid JSON in filters parameter ({e})")))?;
    let list = value
        .as_array()
        .ok_or_else(|| bad("filters must be an array".into()))?;
    if list.len() > MAX_FILTERS {
        return Err(bad(format!(
            "{} filters given; at most {MAX_FILTERS} are accepted",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item.as_array().map(Vec::as_slice) {
            Some([Value::String(key), Value::String(op), value]) => {
                if crate::job::json_has_nul(value) || key.contains('\0') {
                    return Err(bad(format!(
                        "filter {key:?} has a NUL character, which no stored text can hold"
                    )));
                }
                out.push((key.clone(), op.clone(), value.clone()));
            }
            _ => {
                return Err(bad(format!(
                    "each filter must be [key, operator, value] with string key and operator, \
                     got {}",
                    short(item)
                )))
            }
        }
    }
    Ok(out)
}

/// `value` as JSON text, cut to 200 characters for an error message.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}
