//! Cancellation without a listener: a worker that cannot `LISTEN` (transaction pooling, or
//! notifications off) learns that a job it runs was cancelled or recovered by reading the
//! claims of those jobs, every `cancellation_poll_interval`. A listening worker reads them
//! once each time its listener reconnects (NOTIFYs sent while it was away are lost).
//!
//! One statement per pass, bounded by the executions running in this worker and not yet
//! told to stop (none: no statement at all), so a handler that ignores its cancellation
//! gets the event once, as with NOTIFY. A job whose row no longer carries the claim this worker runs it
//! under was taken away: `failed` means cancelled, and the pass emits `job.cancelled
//! {"j"}` on the worker's hub; any other state (a recovery reset it, or it was cancelled and
//! retried between two passes) emits `job.recovered {"j", "c"}` for this execution alone.
//! The hub handlers a NOTIFY would reach do the rest, so the execution stops the same way
//! and its outcome is fenced out the same way. A purged row is left running, as with
//! NOTIFY (a purge sends none).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::WorkerShared;
use crate::error::{Error, Result};
use crate::events;
use crate::unnamed::Unnamed;

/// One pass: compares the claim of every running execution with its row.
pub(crate) fn poll(s: &Arc<WorkerShared>) -> Result<()> {
    let running: Vec<(Uuid, Uuid)> = s
        .executions()
        .running_uncancelled()
        .into_iter()
        .filter_map(|(job, claim)| Some((job, claim?)))
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<Uuid> = running.iter().map(|(job, _)| *job).collect();
    ids.sort_unstable();
    ids.dedup();
    let sql = format!(
        "SELECT id, claim_id, state FROM {} WHERE id = ANY($1)",
        s.chancy.prefix().table("jobs")
    );
    let mut conn = s.chancy.connection()?;
    let rows = conn
        .query_unnamed(sql.as_str(), &[&ids])
        .map_err(|e| Error::database("reading the claims of running jobs", e))?;
    drop(conn);
    let rows: HashMap<Uuid, (Option<Uuid>, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    for (job, claim) in running {
        let Some((now, state)) = rows.get(&job) else {
            continue;
        };
        if *now == Some(claim) {
            continue;
        }
        if state == "failed" {
            s.hub
                .emit(events::JOB_CANCELLED, json!({ "j": job.to_string() }));
        } else {
            s.hub.emit(
                events::JOB_RECOVERED,
                json!({ "j": job.to_string(), "c": claim.to_string() }),
            );
        }
    }
    Ok(())
}
