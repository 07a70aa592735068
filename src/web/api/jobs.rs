//! `/api/v1/jobs`: keyset-paginated listing with filters, detail, functions, and the
//! cancel / retry / purge actions.

use crate::unnamed::Unnamed;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::types::ToSql;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    error, filter_triples, job_json, ok, page, parse_limit, parse_uuid, path_uuid,
    wants_pagination, Out, INVALID,
};
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

/// Largest `kwargs`, `meta` or `errors` (as JSON text, bytes) a job list row carries;
/// a bigger value is replaced by a marker and `GET /api/v1/jobs/{id}` gives it in full.
/// This bounds a page (at most [`super::MAX_LIMIT`] rows) to well under 2 MB, whatever the
/// jobs hold (upstream sends every value in full).
pub(crate) const LIST_VALUE_LIMIT: i32 = 4096;

/// Most entries of a truncated `errors` list a row keeps (the newest), and how many
/// characters of each traceback.
const LIST_ERRORS_KEPT: i32 = 3;
const LIST_TRACEBACK_CHARS: i32 = 1000;

/// The job columns of a list row, with `kwargs`, `meta` and `errors` bounded in the
/// database (so a 50 MB value never leaves PostgreSQL for a list): a `kwargs` or `meta`
/// over [`LIST_VALUE_LIMIT`] becomes `{"_truncated": {"bytes": n, "detail":
/// "/api/v1/jobs/<id>"}}`, `errors` keeps its newest entries with shortened tracebacks,
/// and `truncated` lists the columns that were cut. `$1` is the limit.
fn bounded_columns() -> String {
    let marker = |col: &str| {
        format!(
            "CASE WHEN {col} IS NULL OR octet_length({col}::text) <= $1 THEN {col} \
             ELSE jsonb_build_object('_truncated', jsonb_build_object(\
             'bytes', octet_length({col}::text), 'detail', '/api/v1/jobs/' || id)) END AS {col}"
        )
    };
    // A func or unique_key longer than a push accepts (a row another client wrote) is cut
    // to its first 64 characters too.
    let text = |col: &str, max: usize| {
        format!(
            "CASE WHEN octet_length({col}) <= {max} THEN {col} \
             ELSE left({col}, 64) || '…' END AS {col}"
        )
    };
    format!(
        "id, queue, {func}, {kwargs}, limits, {meta}, state, priority, attempts, max_attempts, \
         taken_by, created_at, started_at, completed_at, scheduled_at, {unique_key}, claim_id, \
         CASE WHEN errors IS NULL OR octet_length(errors::text) <= $1 \
           OR jsonb_typeof(errors) <> 'array' \
         THEN errors ELSE COALESCE((\
           SELECT jsonb_agg(CASE WHEN jsonb_typeof(e) = 'object' THEN e || jsonb_build_object(\
             'traceback', CASE WHEN length(e->>'traceback') > {chars} \
               THEN left(e->>'traceback', {chars}) || ' … [truncated; the job detail has the rest]' \
               ELSE e->>'traceback' END) ELSE e END ORDER BY n) \
           FROM jsonb_array_elements(errors) WITH ORDINALITY AS x(e, n) \
           WHERE n > jsonb_array_length(errors) - {kept}), '[]'::jsonb) END AS errors, \
         array_remove(ARRAY[\
           CASE WHEN octet_length(kwargs::text) > $1 THEN 'kwargs' END, \
           CASE WHEN octet_length(meta::text) > $1 THEN 'meta' END, \
           CASE WHEN octet_length(errors::text) > $1 THEN 'errors' END, \
           CASE WHEN octet_length(func) > {max_func} THEN 'func' END, \
           CASE WHEN octet_length(unique_key) > {max_key} THEN 'unique_key' END], NULL) AS truncated",
        func = text("func", crate::job::MAX_FUNC_LEN),
        unique_key = text("unique_key", crate::job::MAX_UNIQUE_KEY_LEN),
        max_func = crate::job::MAX_FUNC_LEN,
        max_key = crate::job::MAX_UNIQUE_KEY_LEN,
        kwargs = marker("kwargs"),
        meta = marker("meta"),
        chars = LIST_TRACEBACK_CHARS,
        kept = LIST_ERRORS_KEPT,
    )
}

/// `GET /api/v1/jobs?state=&queue=&func=&filters=&before=&limit=&pagination=`: newest
/// first, rows bounded (see [`LIST_VALUE_LIMIT`]).
pub(super) fn list(req: &Req, chancy: &Chancy) -> Out {
    let limit = parse_limit(req)?;
    let paginate = wants_pagination(req);
    let mut w = Where::default();
    w.params.push(Box::new(LIST_VALUE_LIMIT));
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
        "SELECT {} FROM {} {} ORDER BY id DESC LIMIT {}",
        bounded_columns(),
        chancy.prefix().table("jobs"),
        w.sql(),
        limit + 1
    );
    let params: Vec<&(dyn ToSql + Sync)> = w.params.iter().map(|p| p.as_ref()).collect();
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query_unnamed(sql.as_str(), &params)
        .map_err(|e| Error::database("listing jobs", e))?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(match QueuedJob::from_row(row) {
            Ok(job) => {
                let mut value = job_json(&job);
                let cut: Vec<String> = row.try_get("truncated").unwrap_or_default();
                if !cut.is_empty() {
                    value["truncated"] = json!(cut);
                }
                (job.id, value)
            }
            Err(e) => unreadable_json(row, &e),
        });
    }
    Ok(page(items, limit, paginate))
}

fn check_state(state: &str) -> Result<String, Reply> {
    if STATES.contains(&state) {
        Ok(state.to_string())
    } else {
        Err(error(
            INVALID,
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

/// Upstream's `filters`: a JSON list of `[key, operator, value]`.
fn add_filters(w: &mut Where, text: &str) -> Result<(), Reply> {
    for (key, op, value) in filter_triples(text)? {
        add_filter(w, &key, &op, &value)
            .map_err(|why| error(INVALID, format!("bad filter {key} {op}: {why}")))?;
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
            // Both columns are PostgreSQL `integer` (int4).
            let n = super::int4(field, value)?;
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

/// Most names `GET /api/v1/jobs/functions` lists.
const MAX_FUNCTIONS: usize = 10_000;

type FunctionsCache = HashMap<(String, String), (Instant, Vec<String>)>;

/// `GET /api/v1/jobs/functions`: every distinct `func`, sorted (cached per database and
/// prefix for [`FUNCTIONS_TTL`]), bounded: names a push would refuse as too long (rows
/// other clients wrote) are left out and at most [`MAX_FUNCTIONS`] names are listed
/// (upstream lists every one).
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
        "SELECT DISTINCT func FROM {} WHERE octet_length(func) <= {} ORDER BY func LIMIT {}",
        chancy.prefix().table("jobs"),
        crate::job::MAX_FUNC_LEN,
        MAX_FUNCTIONS
    );
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query_unnamed(sql.as_str(), &[])
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
    let id = path_uuid(id, "Job")?;
    match chancy.get_job(&Reference(id))? {
        Some(job) => Ok(Reply::json(job_json(&job))),
        None => Err(error(404, "Job not found")),
    }
}

/// `DELETE /api/v1/jobs/{id}`: deletes the job (any state); 404 when missing.
pub(super) fn purge(chancy: &Chancy, id: &str) -> Out {
    let id = path_uuid(id, "Job")?;
    single(act(chancy, Action::Purge, id)?)
}

/// `POST /api/v1/jobs/{id}/cancel`: 404 when missing, 409 when already finished (the
/// library's rule, [`Chancy::cancel_job`]).
pub(super) fn cancel(chancy: &Chancy, id: &str) -> Out {
    let id = path_uuid(id, "Job")?;
    single(act(chancy, Action::Cancel, id)?)
}

/// `POST /api/v1/jobs/{id}/retry`: 404 when missing, 409 when running, not finished, or
/// when another unfinished job holds its unique key ([`Chancy::retry_jobs`]).
pub(super) fn retry(chancy: &Chancy, id: &str) -> Out {
    let id = path_uuid(id, "Job")?;
    single(act(chancy, Action::Retry, id)?)
}

/// A single-job action's outcome as upstream answers it: `{"ok": true}` when done; 404 /
/// 409 `{"title": …}` (the library's reason) where upstream would answer ok without doing
/// anything.
fn single(outcome: JobOutcome) -> Out {
    match outcome {
        JobOutcome::Done => Ok(ok()),
        JobOutcome::NotFound => Err(error(404, "Job not found")),
        other => Err(error(409, other.to_string())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Purge,
    Cancel,
}

/// Most ids one batch request may name.
const MAX_BATCH_IDS: usize = 1000;

/// `POST /api/v1/jobs` `{"action": "retry"|"purge"|"cancel", "ids": [...]}`: each id (in
/// order, duplicates dropped) in its own transaction; `{"ok", "results": [{"id", "status":
/// "completed"|"skipped"|"failed", "message"?}]}` like upstream (`ok` only when every item
/// completed; an id that is not a UUID is a failed item).
pub(super) fn batch(req: &Req, chancy: &Chancy) -> Out {
    let body = req.json()?;
    let action = match body
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
        .as_deref()
    {
        Some("retry") => Action::Retry,
        Some("purge") => Action::Purge,
        Some("cancel") => Action::Cancel,
        _ => return Err(error(INVALID, "Invalid batch action")),
    };
    let raw = body
        .get("ids")
        .and_then(Value::as_array)
        .filter(|ids| !ids.is_empty() && ids.iter().all(Value::is_string))
        .ok_or_else(|| error(INVALID, "ids must be a nonempty array of strings"))?;
    if raw.len() > MAX_BATCH_IDS {
        return Err(error(
            INVALID,
            format!(
                "{} ids given; at most {MAX_BATCH_IDS} per request",
                raw.len()
            ),
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for v in raw {
        let text = v.as_str().unwrap_or_default();
        if !seen.contains(&text) {
            seen.push(text);
        }
    }
    let results: Vec<Value> = seen
        .iter()
        .map(|text| {
            let Ok(id) = Uuid::parse_str(text.trim()) else {
                return json!({ "id": text, "status": "failed", "message": "Invalid job ID" });
            };
            match act(chancy, action, id) {
                Ok(JobOutcome::Done) => json!({ "id": text, "status": "completed" }),
                Ok(JobOutcome::NotFound) => {
                    json!({ "id": text, "status": "skipped", "message": "Job no longer exists" })
                }
                Ok(other) => {
                    json!({ "id": text, "status": "skipped", "message": other.to_string() })
                }
                Err(e) => {
                    let status = Reply::from(e).status;
                    let message = if status == INVALID {
                        "The database refused the change"
                    } else {
                        "Action failed; see server logs"
                    };
                    json!({ "id": text, "status": "failed", "message": message })
                }
            }
        })
        .collect();
    let all_done = results.iter().all(|r| r["status"] == "completed");
    Ok(Reply::json(json!({ "ok": all_done, "results": results })))
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
