//! `/api/v1/jobs`: keyset-paginated listing with filters, detail, functions, and the
//! cancel / retry / purge actions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::types::ToSql;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{job_json, page, parse_limit, parse_uuid, wants_pagination, Out};
use crate::error::Error;
use crate::web::http::{Reply, Req};
use crate::{Chancy, JobOutcome, QueuedJob, Reference};

/// Job states accepted in filters and counted in the overview: the five chancy writes,
/// plus two some upstream versions show.
pub(super) const STATES: [&str; 7] = [
    "pending",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
];

/// A WHERE clause under construction: conditions with `$n` placeholders and their values.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync>>,
}

impl Where {
    /// Adds `<column> <op> $n` for a whitelisted column and operator.
    fn add(&mut self, column: &'static str, op: &'static str, value: Box<dyn ToSql + Sync>) {
        self.params.push(value);
        self.conditions
            .push(format!("{column} {op} ${}", self.params.len()));
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// `GET /api/v1/jobs?state=&queue=&func=&filters=&before=&limit=&pagination=`.
pub(super) fn list(req: &Req, chancy: &Chancy) -> Out {
    let limit = parse_limit(req)?;
    let paginate = wants_pagination(req)?;
    let mut w = Where::default();
    if let Some(state) = req.param("state") {
        w.add("state", "=", Box::new(check_state(state)?));
    }
    if let Some(queue) = req.param("queue") {
        w.add("queue", "=", Box::new(queue.to_string()));
    }
    if let Some(func) = req.param("func") {
        w.add("func", "ILIKE", Box::new(contains(func)));
    }
    if let Some(filters) = req.param("filters") {
        add_filters(&mut w, filters)?;
    }
    if let Some(before) = req.param("before") {
        w.add("id", "<", Box::new(parse_uuid(before, "before")?));
    }
    let sql = format!(
        "SELECT * FROM {} {} ORDER BY id DESC LIMIT {}",
        chancy.prefix().table("jobs"),
        w.sql(),
        limit + 1
    );
    let params: Vec<&(dyn ToSql + Sync)> = w.params.iter().map(|p| p.as_ref()).collect();
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query(sql.as_str(), &params)
        .map_err(|e| Error::database("listing jobs", e))?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(match QueuedJob::from_row(row) {
            Ok(job) => (job.id, job_json(&job)),
            Err(e) => unreadable_json(row, &e),
        });
    }
    Ok(page(items, limit, paginate))
}

fn check_state(state: &str) -> Result<String, Reply> {
    if STATES.contains(&state) {
        Ok(state.to_string())
    } else {
        Err(Reply::error(
            400,
            format!(
                "unknown state {state:?}; expected one of {}",
                STATES.join(", ")
            ),
        ))
    }
}

/// `%text%` for ILIKE, with `%`, `_` and `\` taken literally.
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Upstream's `filters`: a JSON list of `[field, op, value]`.
fn add_filters(w: &mut Where, text: &str) -> Result<(), Reply> {
    let bad = |why: String| Reply::error(400, format!("bad filters: {why}"));
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let list = value
        .as_array()
        .ok_or_else(|| bad("expected a JSON list of [field, op, value]".into()))?;
    for item in list {
        let triple = item.as_array().filter(|t| t.len() == 3);
        let Some([field, op, value]) = triple.map(Vec::as_slice) else {
            return Err(bad(format!("{item} is not a [field, op, value] triple")));
        };
        let (Some(field), Some(op)) = (field.as_str(), op.as_str()) else {
            return Err(bad(format!("{item}: field and op must be strings")));
        };
        add_filter(w, field, op, value).map_err(|why| bad(format!("{item}: {why}")))?;
    }
    Ok(())
}

fn add_filter(w: &mut Where, field: &str, op: &str, value: &Value) -> Result<(), String> {
    let text = || {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{field} needs a string value"))
    };
    match (field, op) {
        ("state", "=") => {
            let state = text()?;
            check_state(&state).map_err(|_| format!("unknown state {state:?}"))?;
            w.add("state", "=", Box::new(state));
        }
        ("queue", "=") => w.add("queue", "=", Box::new(text()?)),
        ("func", "=") => w.add("func", "=", Box::new(text()?)),
        ("func", "~") => w.add("func", "ILIKE", Box::new(contains(&text()?))),
        ("priority" | "attempts", _) => {
            let column = if field == "priority" {
                "priority"
            } else {
                "attempts"
            };
            let op = match op {
                "=" => "=",
                ">" => ">",
                "<" => "<",
                ">=" => ">=",
                "<=" => "<=",
                other => return Err(format!("operator {other:?} is not allowed for {field}")),
            };
            let n = value
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("{field} needs an integer value"))?;
            w.add(column, op, Box::new(n));
        }
        _ => {
            return Err(format!(
                "unsupported filter {field} {op} (state =, queue =, func = or ~, priority and \
                 attempts = > < >= <=)"
            ))
        }
    }
    Ok(())
}

/// How long the list of functions is cached (upstream: 60 s). Reading it scans the whole
/// jobs table (about 0.1 s per million rows), and the dashboard asks on every page load.
const FUNCTIONS_TTL: Duration = Duration::from_secs(30);

type FunctionsCache = HashMap<(String, String), (Instant, Vec<String>)>;

/// `GET /api/v1/jobs/functions`: every distinct `func`, sorted (cached per database and
/// prefix for [`FUNCTIONS_TTL`]).
pub(super) fn functions(chancy: &Chancy) -> Out {
    static CACHE: Mutex<Option<FunctionsCache>> = Mutex::new(None);
    let key = (
        chancy.database().to_string(),
        chancy.prefix().as_str().to_string(),
    );
    if let Some((at, names)) = CACHE.lock().get_or_insert_with(HashMap::new).get(&key) {
        if at.elapsed() < FUNCTIONS_TTL {
            return Ok(Reply::json(json!(names)));
        }
    }
    let sql = format!(
        "SELECT DISTINCT func FROM {} ORDER BY func",
        chancy.prefix().table("jobs")
    );
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query(sql.as_str(), &[])
        .map_err(|e| Error::database("listing job functions", e))?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let reply = Reply::json(json!(names));
    CACHE
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(key, (Instant::now(), names));
    Ok(reply)
}

/// `GET /api/v1/jobs/{id}`.
pub(super) fn get(chancy: &Chancy, id: &str) -> Out {
    let id = parse_uuid(id, "the job id")?;
    match chancy.get_job(&Reference(id))? {
        Some(job) => Ok(Reply::json(job_json(&job))),
        None => Err(Reply::error(404, "Job not found")),
    }
}

/// `DELETE /api/v1/jobs/{id}`: deletes the job (any state); 404 when missing.
pub(super) fn purge(chancy: &Chancy, id: &str) -> Out {
    let id = parse_uuid(id, "the job id")?;
    single(act(chancy, Action::Purge, id)?)
}

/// `POST /api/v1/jobs/{id}/cancel`: 404 when missing, 409 when already finished (the
/// library's rule, [`Chancy::cancel_job`]).
pub(super) fn cancel(chancy: &Chancy, id: &str) -> Out {
    let id = parse_uuid(id, "the job id")?;
    single(act(chancy, Action::Cancel, id)?)
}

/// `POST /api/v1/jobs/{id}/retry`: 404 when missing, 409 when running, not finished, or
/// when another unfinished job holds its unique key ([`Chancy::retry_jobs`]).
pub(super) fn retry(chancy: &Chancy, id: &str) -> Out {
    let id = parse_uuid(id, "the job id")?;
    single(act(chancy, Action::Retry, id)?)
}

/// Renders the library's outcome: 200, 404, or 409 with its reason.
fn single(outcome: JobOutcome) -> Out {
    match outcome {
        JobOutcome::Done => Ok(Reply::json(json!({ "success": true }))),
        JobOutcome::NotFound => Err(Reply::error(404, "Job not found")),
        other => Err(Reply::error(409, other.to_string())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Purge,
    Cancel,
}

/// `POST /api/v1/jobs` `{"action": "retry"|"purge"|"cancel", "ids": [...]}`: each id (in
/// order, duplicates dropped) in its own transaction.
pub(super) fn batch(req: &Req, chancy: &Chancy) -> Out {
    let body = req.json()?;
    let action = match body.get("action").and_then(Value::as_str) {
        Some("retry") => Action::Retry,
        Some("purge") => Action::Purge,
        Some("cancel") => Action::Cancel,
        other => {
            return Err(Reply::error(
                400,
                format!("action must be retry, purge or cancel, got {other:?}"),
            ))
        }
    };
    let Some(raw) = body.get("ids").and_then(Value::as_array) else {
        return Err(Reply::error(400, "ids must be a list of job ids"));
    };
    let mut ids: Vec<Uuid> = Vec::new();
    for v in raw {
        let text = v.as_str().unwrap_or_default();
        let id = parse_uuid(text, "every id")?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let refs: Vec<Reference> = ids.into_iter().map(Reference).collect();
    let results: Vec<Value> = apply(chancy, action, &refs)?
        .into_iter()
        .map(|(id, outcome)| match outcome {
            JobOutcome::Done => json!({ "id": id.to_string(), "status": "completed" }),
            JobOutcome::NotFound => {
                json!({ "id": id.to_string(), "status": "skipped", "message": "Job not found" })
            }
            other => {
                json!({ "id": id.to_string(), "status": "skipped", "message": other.to_string() })
            }
        })
        .collect();
    Ok(Reply::json(json!({ "ok": true, "results": results })))
}

/// The library's rule for `action` (one outcome per id, in order).
fn apply(
    chancy: &Chancy,
    action: Action,
    refs: &[Reference],
) -> Result<Vec<(Reference, JobOutcome)>, Error> {
    match action {
        Action::Retry => chancy.retry_jobs(refs),
        Action::Purge => chancy.purge_jobs(refs),
        Action::Cancel => chancy.cancel_jobs(refs),
    }
}

/// One job through [`apply`].
fn act(chancy: &Chancy, action: Action, id: Uuid) -> Result<JobOutcome, Error> {
    let outcomes = apply(chancy, action, &[Reference(id)])?;
    Ok(outcomes
        .into_iter()
        .next()
        .map_or(JobOutcome::NotFound, |(_, o)| o))
}

/// A row another client filled with something chancy cannot read (say an unknown state):
/// listed with its raw id, queue, func and state and the reason, so the page still loads
/// and pagination stays exact.
fn unreadable_json(row: &postgres::Row, err: &Error) -> (Uuid, Value) {
    let text = |name: &str| row.try_get::<_, Option<String>>(name).ok().flatten();
    let id: Uuid = row.try_get("id").unwrap_or_default();
    log::warn!("listing an unreadable job row: {err}");
    let value = json!({
        "id": id.to_string(),
        "queue": text("queue"),
        "func": text("func"),
        "state": text("state"),
        "unreadable": err.to_string(),
    });
    (id, value)
}
