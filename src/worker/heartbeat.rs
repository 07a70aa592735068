//! The heartbeat: upserts this worker's row, prunes expired workers, NOTIFYs
//! `worker.announced`.

use postgres::GenericClient;
use serde_json::json;

use super::WorkerShared;
use crate::error::{Error, Result};
use crate::events;

/// One heartbeat on `client` (the caller commits).
pub(crate) fn announce(shared: &WorkerShared, client: &mut impl GenericClient) -> Result<()> {
    let sql = shared.chancy.sql();
    client
        .execute(sql.delete_expired_workers.as_str(), &[])
        .map_err(|e| Error::database("pruning expired workers", e))?;
    let tags: Vec<String> = shared.tags.iter().cloned().collect();
    let queues = shared.queue_names();
    let timeout = shared.config.heartbeat_timeout.as_secs_f64();
    client
        .execute(
            sql.announce_worker.as_str(),
            &[&shared.worker_id, &timeout, &tags, &queues],
        )
        .map_err(|e| Error::database("announcing the worker", e))?;
    shared.chancy.notify_ex(
        client,
        &[(
            events::WORKER_ANNOUNCED,
            json!({ "worker_id": shared.worker_id }),
        )],
    )
}

/// A claim this old that no thread of this worker holds was lost between the database and
/// the worker (e.g. the connection died after the claim committed): it is released.
pub(crate) const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One pass of the heartbeat service: announce, then release orphaned claims.
pub(crate) fn beat(shared: &WorkerShared) -> Result<()> {
    crate::app::in_transaction(&shared.chancy, "sending a heartbeat", |tx| {
        announce(shared, tx)?;
        release_orphans(shared, tx, &shared.queue_names(), ORPHAN_GRACE).map(drop)
    })
}

/// Claims of `queues` older than `grace` that this worker holds in the database but no
/// longer in memory go back to pending (attempts unchanged: they never ran), with
/// `queue.pushed` so a worker picks them up. Returns how many were released.
pub(crate) fn release_orphans(
    shared: &WorkerShared,
    client: &mut impl GenericClient,
    queues: &[String],
    grace: std::time::Duration,
) -> Result<usize> {
    let sql = shared.chancy.sql();
    let grace = grace.as_secs_f64();
    let rows = client
        .query(
            sql.held_claims.as_str(),
            &[&queues, &shared.worker_id, &grace],
        )
        .map_err(|e| Error::database("looking for orphaned claims", e))?;
    let (ids, claims): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = {
        let held = shared.claims.lock();
        rows.iter()
            .map(|r| (r.get::<_, uuid::Uuid>(0), r.get::<_, uuid::Uuid>(1)))
            .filter(|(_, claim)| !held.contains(claim))
            .unzip()
    };
    if ids.is_empty() {
        return Ok(0);
    }
    let released = client
        .query(sql.release_orphans.as_str(), &[&ids, &claims])
        .map_err(|e| Error::database("releasing orphaned claims", e))?;
    log::warn!(
        "worker {}: released {} claim(s) that never reached an executor",
        shared.worker_id,
        released.len()
    );
    let queues: std::collections::BTreeSet<String> = released.iter().map(|r| r.get(0)).collect();
    let notes: Vec<(&str, serde_json::Value)> = queues
        .iter()
        .map(|q| (events::QUEUE_PUSHED, json!({ "q": q })))
        .collect();
    shared.chancy.notify_ex(client, &notes)?;
    Ok(released.len())
}
