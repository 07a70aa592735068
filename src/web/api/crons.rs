//! `/api/v1/crons`: the Cron plugin's schedules.

use serde_json::{json, Value};

use super::{iso, iso_opt, job_definition_json, Out};
use crate::plugins::Cron;
use crate::web::http::Reply;
use crate::Chancy;

/// `GET /api/v1/crons`: `[{"unique_key", "cron", "timezone", "next_run", "last_run",
/// "job"}]`; an empty list when the cron tables do not exist for this prefix.
pub(super) fn list(chancy: &Chancy) -> Out {
    let schedules = match Cron::get_schedules(chancy, None) {
        Ok(s) => s,
        Err(e) if e.is_migrations_needed() => return Ok(Reply::json(json!([]))),
        Err(e) => return Err(e.into()),
    };
    let rows: Vec<Value> = schedules
        .values()
        .map(|s| {
            json!({
                "unique_key": s.unique_key,
                "cron": s.cron,
                "timezone": s.timezone,
                "next_run": iso(&s.next_run),
                "last_run": iso_opt(&s.last_run),
                "job": job_definition_json(&s.job),
            })
        })
        .collect();
    Ok(Reply::json(Value::Array(rows)))
}
