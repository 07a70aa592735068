//! `/api/v1/workflows` (keyset pages, newest first) and `/api/v1/workflows/{id}`.

use postgres::types::ToSql;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{iso_opt, job_definition_json, page, parse_limit, parse_uuid, wants_pagination, Out};
use crate::error::Error;
use crate::plugins::{Workflow, WorkflowPlugin, WorkflowState};
use crate::web::http::{Reply, Req};
use crate::Chancy;

/// `GET /api/v1/workflows?state=&before=&limit=&pagination=`; an empty list when the
/// workflow tables do not exist for this prefix.
pub(super) fn list(req: &Req, chancy: &Chancy) -> Out {
    let limit = parse_limit(req)?;
    let paginate = wants_pagination(req)?;
    let state = req
        .param("state")
        .map(|s| {
            s.parse::<WorkflowState>().map(|_| s.to_string()).map_err(|_| {
                Reply::error(
                    400,
                    format!("unknown workflow state {s:?}; expected pending, running, completed or failed"),
                )
            })
        })
        .transpose()?;
    let before = req
        .param("before")
        .map(|b| parse_uuid(b, "before"))
        .transpose()?;
    let sql = format!(
        "SELECT id FROM {} WHERE ($1::text IS NULL OR state = $1) \
         AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        chancy.prefix().table("workflows")
    );
    let fetch = i64::from(limit) + 1;
    let params: [&(dyn ToSql + Sync); 3] = [&state, &before, &fetch];
    let ids: Vec<Uuid> = {
        let mut conn = chancy.connection()?;
        match conn.client.query(sql.as_str(), &params) {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => {
                let err = Error::database("listing workflows", e);
                if err.is_migrations_needed() {
                    return Ok(page(Vec::new(), limit, paginate));
                }
                return Err(err.into());
            }
        }
    };
    let mut found = WorkflowPlugin::fetch_workflows(chancy, None, Some(&ids), ids.len() as i64)?;
    let items: Vec<(Uuid, Value)> = ids
        .iter()
        .filter_map(|id| {
            let at = found.iter().position(|w| w.id == *id)?;
            let w = found.swap_remove(at);
            Some((w.id, workflow_json(&w)))
        })
        .collect();
    Ok(page(items, limit, paginate))
}

/// `GET /api/v1/workflows/{id}`.
pub(super) fn get(chancy: &Chancy, id: &str) -> Out {
    let id = parse_uuid(id, "the workflow id")?;
    match WorkflowPlugin::fetch_workflow(chancy, id) {
        Ok(Some(w)) => Ok(Reply::json(workflow_json(&w))),
        Ok(None) => Err(Reply::error(404, "Workflow not found")),
        Err(e) if e.is_migrations_needed() => Err(Reply::error(404, "Workflow not found")),
        Err(e) => Err(e.into()),
    }
}

fn workflow_json(w: &Workflow) -> Value {
    let steps: Vec<Value> = w
        .steps
        .iter()
        .map(|s| {
            json!({
                "step_id": s.step_id,
                "state": s.state.map(|st| st.as_str()),
                "job_id": s.job_id.map(|j| j.to_string()),
                "dependencies": s.dependencies,
                "job": job_definition_json(&s.job),
            })
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
