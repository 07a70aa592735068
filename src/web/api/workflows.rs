//! `/api/v1/workflows` (keyset pages, newest first, with per-state step counts) and
//! `/api/v1/workflows/{id}` (steps keyed by step id), as upstream's workflow API.

use crate::unnamed::Unnamed;
use postgres::types::ToSql;
use serde_json::json;
use uuid::Uuid;

use super::{
    error, filter_triples, iso_opt, page, parse_limit, parse_uuid, path_uuid, wants_pagination,
    Out, INVALID,
};
use crate::error::Error;
use crate::plugins::{WorkflowPlugin, WorkflowState};
use crate::web::http::{Reply, Req};
use crate::Chancy;

/// Upstream's list query: each workflow with its step counts (`waiting` = no job yet; a
/// step whose job was deleted counts only in `total`).
const LIST: &str = "SELECT w.id, w.name, w.state, w.created_at, w.updated_at, \
    COALESCE(s.total, 0) AS total_steps, COALESCE(s.waiting, 0) AS waiting_steps, \
    COALESCE(s.pending, 0) AS pending_steps, COALESCE(s.running, 0) AS running_steps, \
    COALESCE(s.succeeded, 0) AS succeeded_steps, COALESCE(s.failed, 0) AS failed_steps, \
    COALESCE(s.retrying, 0) AS retrying_steps \
  FROM {workflows} w \
  LEFT JOIN LATERAL ( \
    SELECT count(*) AS total, count(*) FILTER (WHERE ws.job_id IS NULL) AS waiting, \
      count(*) FILTER (WHERE j.state = 'pending') AS pending, \
      count(*) FILTER (WHERE j.state = 'running') AS running, \
      count(*) FILTER (WHERE j.state = 'succeeded') AS succeeded, \
      count(*) FILTER (WHERE j.state = 'failed') AS failed, \
      count(*) FILTER (WHERE j.state = 'retrying') AS retrying \
    FROM {workflow_steps} ws LEFT JOIN {jobs} j ON j.id = ws.job_id \
    WHERE ws.workflow_id = w.id) s ON TRUE";

/// `GET /api/v1/workflows?filters=&before=&limit=&pagination=` (and our `state=`): rows
/// `{id, name, state, created_at, updated_at, total_steps, waiting_steps, pending_steps,
/// running_steps, succeeded_steps, failed_steps, retrying_steps}`, newest first; filters
/// `state =`, `name =` and `name ~` (contains). An empty list when the workflow tables do
/// not exist for this prefix.
pub(super) fn list(req: &Req, chancy: &Chancy) -> Out {
    let limit = parse_limit(req)?;
    let paginate = wants_pagination(req);
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut add = |condition: &str, value: Box<dyn ToSql + Sync>| {
        params.push(value);
        conditions.push(condition.replace('?', &format!("${}", params.len())));
    };
    if let Some(state) = req.param("state") {
        add("w.state = ?", Box::new(check_state(state)?));
    }
    if let Some(text) = req.param("filters") {
        for (key, op, value) in filter_triples(text)? {
            let Some(text) = value.as_str().map(str::to_string) else {
                return Err(error(
                    INVALID,
                    format!("filter {key} {op} needs a string value"),
                ));
            };
            match (key.as_str(), op.as_str()) {
                ("state", "=") => add("w.state = ?", Box::new(text)),
                ("name", "=") => add("w.name = ?", Box::new(text)),
                ("name", "~") => add("w.name ILIKE ?", Box::new(contains(&text))),
                ("state" | "name", _) => {
                    return Err(error(
                        INVALID,
                        format!("Operator '{op}' not allowed for field '{key}'"),
                    ))
                }
                _ => return Err(error(INVALID, format!("Unknown filter field: {key}"))),
            }
        }
    }
    if let Some(before) = req.param("before") {
        add("w.id < ?", Box::new(parse_uuid(before, "before")?));
    }
    let p = chancy.prefix();
    let sql = format!(
        "{} {} ORDER BY w.id DESC LIMIT {}",
        LIST.replace("{workflows}", &p.table("workflows"))
            .replace("{workflow_steps}", &p.table("workflow_steps"))
            .replace("{jobs}", &p.table("jobs")),
        if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        },
        limit + 1
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
    let mut conn = chancy.connection()?;
    let rows = match conn.client.query_unnamed(sql.as_str(), &refs) {
        Ok(rows) => rows,
        Err(e) => {
            let err = Error::database("listing workflows", e);
            if err.is_migrations_needed() {
                return Ok(page(Vec::new(), limit, paginate));
            }
            return Err(err.into());
        }
    };
    let items = rows
        .iter()
        .map(|row| {
            let id: Uuid = row.get("id");
            let count = |name: &str| row.get::<_, i64>(name);
            let value = json!({
                "id": id.to_string(),
                "name": row.get::<_, String>("name"),
                "state": row.get::<_, String>("state"),
                "created_at": iso_opt(&row.get("created_at")),
                "updated_at": iso_opt(&row.get("updated_at")),
                "total_steps": count("total_steps"),
                "waiting_steps": count("waiting_steps"),
                "pending_steps": count("pending_steps"),
                "running_steps": count("running_steps"),
                "succeeded_steps": count("succeeded_steps"),
                "failed_steps": count("failed_steps"),
                "retrying_steps": count("retrying_steps"),
            });
            (id, value)
        })
        .collect();
    Ok(page(items, limit, paginate))
}

fn check_state(state: &str) -> Result<String, Reply> {
    state
        .parse::<WorkflowState>()
        .map(|_| state.to_string())
        .map_err(|_| {
            error(
                INVALID,
                format!(
                    "unknown workflow state {state:?}; expected pending, running, completed or \
                     failed"
                ),
            )
        })
}

/// `%text%` for ILIKE, with `%`, `_` and `\` taken literally.
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// `GET /api/v1/workflows/{id}`: `{id, name, state, created_at, updated_at, steps}` with
/// `steps` keyed by step id like upstream (`{step_id, job, dependencies, state, job_id}`).
pub(super) fn get(chancy: &Chancy, id: &str) -> Out {
    let id = path_uuid(id, "Workflow")?;
    match WorkflowPlugin::fetch_workflow(chancy, id) {
        Ok(Some(w)) => Ok(Reply::json(crate::json::workflow_json(&w))),
        Ok(None) => Err(error(404, "Workflow not found")),
        Err(e) if e.is_migrations_needed() => Err(error(404, "Workflow not found")),
        Err(e) => Err(e.into()),
    }
}
