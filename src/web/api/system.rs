//! `/api/v1/configuration`, `/api/v1/system` and our `/api/v1/overview`.

use crate::unnamed::Unnamed;
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::Out;
use crate::error::Error;
use crate::web::http::Reply;
use crate::Chancy;

/// What upstream's API tells about each of its plugins, by identifier: `(class name,
/// migrate_package, api_plugin)`. Upstream's UI shows a navigation entry only when
/// `/configuration` lists the class it needs (`Cron`, `WorkflowPlugin`, `Metrics`).
const UPSTREAM_PLUGINS: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("chancy.leadership", "Leadership", None, None),
    ("chancy.pruner", "Pruner", None, None),
    ("chancy.recovery", "Recovery", None, None),
    ("chancy.reprioritize", "Reprioritize", None, None),
    ("chancy.retry_plugin", "RetryPlugin", None, None),
    (
        "chancy.cron",
        "Cron",
        Some("chancy.plugins.cron.migrations"),
        Some("chancy.plugins.cron.api.CronApiPlugin"),
    ),
    (
        "chancy.workflow_plugin",
        "WorkflowPlugin",
        Some("chancy.plugins.workflow.migrations"),
        Some("chancy.plugins.workflow.api.WorkflowApiPlugin"),
    ),
    (
        "chancy.metrics",
        "Metrics",
        Some("chancy.plugins.metrics.migrations"),
        Some("chancy.plugins.metrics.api.MetricsApiPlugin"),
    ),
    (
        "chancy.trigger",
        "Trigger",
        Some("chancy.plugins.trigger.migrations"),
        None,
    ),
];

/// `(class name, migrate_package, api_plugin)` for a plugin identifier; a plugin upstream
/// does not have is named by its identifier, with neither.
fn upstream_names(identifier: &str) -> (&str, Option<&'static str>, Option<&'static str>) {
    UPSTREAM_PLUGINS
        .iter()
        .find(|(id, ..)| *id == identifier)
        .map_or((identifier, None, None), |(_, class, package, api)| {
            (class, *package, *api)
        })
}

/// `GET /api/v1/configuration`: `{"plugins": [class names]}` as upstream (its Python class
/// names, e.g. `Cron`, `WorkflowPlugin`, `Metrics`; see [`UPSTREAM_PLUGINS`]).
pub(super) fn configuration(chancy: &Chancy) -> Out {
    let plugins: Vec<&str> = chancy
        .plugins()
        .iter()
        .map(|p| upstream_names(p.identifier()).0)
        .collect();
    Ok(Reply::json(json!({ "plugins": plugins })))
}

/// `GET /api/v1/plugins`: per plugin upstream's `identifier`, `tables`, `migrate_key`,
/// `migrate_package`, `api_plugin`, `dependencies` and `scope` (always `worker`, as in
/// 0.26.0).
pub(super) fn plugins(chancy: &Chancy) -> Out {
    let rows: Vec<Value> = chancy
        .plugins()
        .iter()
        .map(|p| {
            let (_, package, api) = upstream_names(p.identifier());
            json!({
                "identifier": p.identifier(),
                "tables": p.tables(),
                "migrate_key": p.migrations().map(|m| m.key()),
                "migrate_package": package,
                "api_plugin": api,
                "dependencies": p.dependencies(),
                "scope": "worker",
            })
        })
        .collect();
    Ok(Reply::json(Value::Array(rows)))
}

/// `GET /api/v1/system`: this crate's version, the server's version and the prefix.
pub(super) fn system(chancy: &Chancy) -> Out {
    let mut conn = chancy.connection()?;
    let row = conn
        .client
        .query_one_unnamed("SHOW server_version", &[])
        .map_err(|e| Error::database("reading the server version", e))?;
    let version: String = row.get(0);
    Ok(Reply::json(json!({
        "chancy_version": env!("CARGO_PKG_VERSION"),
        "database": { "version": version, "prefix": chancy.prefix().as_str() },
    })))
}

/// `GET /api/v1/overview`: per queue its settings and job counts by state (`declared: false`
/// for a queue that has jobs but no declaration), the number of live workers, the leader and
/// `warnings` (`[{kind: "xmin_horizon", pid, age, message}]`, see `Chancy::held_back_horizons`,
/// and `[{kind: "unreadable_queue", queue, message}]` for a queue row chancy cannot read,
/// which is listed with `unreadable: reason` and its raw state).
pub(super) fn overview(chancy: &Chancy) -> Out {
    let p = chancy.prefix();
    let counts_sql = format!(
        "SELECT queue, state, count(*) FROM {} GROUP BY queue, state",
        p.table("jobs")
    );
    let workers_sql = format!(
        "SELECT (SELECT count(*) FROM {} WHERE expires_at > NOW()), \
                (SELECT worker_id FROM {} WHERE expires_at > NOW() LIMIT 1)",
        p.table("workers"),
        p.table("leader")
    );
    let listing = chancy.list_queues()?;
    let queues = listing.queues;
    let mut conn = chancy.connection()?;
    let db = |e| Error::database("reading the overview", e);
    let mut counts: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for row in conn
        .client
        .query_unnamed(counts_sql.as_str(), &[])
        .map_err(db)?
    {
        let (queue, state, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        counts
            .entry(queue)
            .or_insert_with(zero_counts)
            .insert(state, json!(n));
    }
    let row = conn
        .client
        .query_one_unnamed(workers_sql.as_str(), &[])
        .map_err(db)?;
    let workers: i64 = row.get(0);
    let leader: Option<String> = row.get(1);
    let mut rows: Vec<Value> = queues
        .iter()
        .map(|q| {
            json!({
                "name": q.name,
                "declared": true,
                "state": q.state.as_str(),
                "executor": q.executor,
                "concurrency": q.concurrency,
                "counts": counts.remove(&q.name).unwrap_or_else(zero_counts),
            })
        })
        .collect();
    // Rows another client wrote that chancy cannot read: listed with their raw state and
    // the reason (and a warning), never failing the page.
    let mut warnings = warnings(chancy);
    for u in &listing.unreadable {
        let mut row = super::queues::unreadable_queue_json(u);
        row["declared"] = json!(true);
        row["executor"] = Value::Null;
        row["concurrency"] = Value::Null;
        row["counts"] = Value::Object(counts.remove(&u.name).unwrap_or_else(zero_counts));
        rows.push(row);
        warnings.push(json!({
            "kind": "unreadable_queue",
            "queue": u.name,
            "message": format!(
                "queue {:?} is unreadable, so no worker serves it: {}",
                u.name, u.reason
            ),
        }));
    }
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    // Jobs of queues that were never declared (or were deleted) still show up.
    for (name, c) in counts {
        rows.push(json!({
            "name": name, "declared": false, "state": null, "executor": null,
            "concurrency": null, "counts": c,
        }));
    }
    Ok(Reply::json(json!({
        "queues": rows,
        "workers": workers,
        "leader": leader,
        "warnings": warnings,
    })))
}

/// Problems an operator should see on the overview: sessions holding back the xmin horizon
/// (the same check and threshold as the leader's warning). Best effort: a failure to read
/// `pg_stat_activity` leaves the list empty.
fn warnings(chancy: &Chancy) -> Vec<Value> {
    match chancy.held_back_horizons(crate::app::DEFAULT_HORIZON_WARN_AFTER) {
        Ok(holders) => holders
            .iter()
            .map(|h| {
                json!({
                    "kind": "xmin_horizon",
                    "pid": h.pid,
                    "age": h.transaction_age.as_secs_f64(),
                    "message": h.describe(),
                })
            })
            .collect(),
        Err(e) => {
            log::debug!("overview: cannot check the xmin horizon: {e}");
            Vec::new()
        }
    }
}

fn zero_counts() -> Map<String, Value> {
    super::jobs::STATES
        .iter()
        .map(|s| (s.to_string(), json!(0)))
        .collect()
}
