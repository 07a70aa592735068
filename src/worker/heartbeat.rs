//! The heartbeat: upserts this worker's row, prunes expired workers, NOTIFYs
//! `worker.announced`.

use crate::unnamed::Unnamed;
use std::sync::Arc;

use postgres::GenericClient;
use serde_json::json;

use super::WorkerShared;
use crate::error::{Error, Result};
use crate::events;

/// One heartbeat on `client` (the caller commits): prunes expired rows, upserts this
/// worker's row if this process owns it (see `identity.rs`) and NOTIFYs `worker.announced`.
/// Returns whether this process owns the row.
pub(crate) fn announce(shared: &WorkerShared, client: &mut impl GenericClient) -> Result<bool> {
    let sql = shared.chancy.sql();
    client
        .execute_unnamed(sql.delete_expired_workers.as_str(), &[])
        .map_err(|e| Error::database("pruning expired workers", e))?;
    let mut tags: Vec<String> = shared.tags.iter().cloned().collect();
    tags.push(shared.session_tag.clone());
    let queues = shared.queue_names();
    let timeout = shared.config.heartbeat_timeout.as_secs_f64();
    let owned = client
        .query_opt_unnamed(
            sql.announce_worker.as_str(),
            &[
                &shared.worker_id,
                &timeout,
                &tags,
                &queues,
                &shared.session_tag,
            ],
        )
        .map_err(|e| Error::database("announcing the worker", e))?
        .is_some();
    if owned {
        shared.chancy.notify_ex(
            client,
            &[(
                events::WORKER_ANNOUNCED,
                json!({ "worker_id": shared.worker_id }),
            )],
        )?;
    }
    Ok(owned)
}

/// A claim this old that no thread of this worker holds was lost between the database and
/// the worker (e.g. the connection died after the claim committed): it is released.
pub(crate) const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One pass of the heartbeat service: announce, then release orphaned claims. When another
/// process has taken this worker's id (its row expired while this one missed heartbeats for
/// longer than `heartbeat_timeout`, and a new process started under the id), this worker
/// must not act as that id any more: it logs an error and stops.
pub(crate) fn beat(shared: &Arc<WorkerShared>) -> Result<()> {
    let owned = crate::app::in_transaction(&shared.chancy, "sending a heartbeat", |tx| {
        if !announce(shared, tx)? {
            return Ok(false);
        }
        release_orphans(shared, tx, &shared.queue_names(), ORPHAN_GRACE)?;
        Ok(true)
    })?;
    if !owned && !shared.shutdown.is_triggered() {
        log::error!(
            "worker {}: another process now runs under this worker id (this worker missed \
             heartbeats for longer than heartbeat_timeout and its row expired); stopping this \
             worker so that the id has one live process",
            shared.worker_id
        );
        let worker = super::Worker::internal(shared);
        let started = super::spawn_named("chancy-identity-lost", move || {
            worker.stop();
        });
        if let Err(e) = started {
            // Stopping from this (heartbeat) thread would wait for itself: trigger the
            // shutdown so every loop ends, and say so.
            log::error!(
                "worker {}: cannot start the stop thread ({e}); triggering shutdown",
                shared.worker_id
            );
            shared.shutdown.trigger();
        }
    }
    Ok(())
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
        .query_unnamed(
            sql.held_claims.as_str(),
            &[&queues, &shared.worker_id, &grace, &shared.session_tag],
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
        .query_unnamed(sql.release_orphans.as_str(), &[&ids, &claims])
        .map_err(|e| Error::database("releasing orphaned claims", e))?;
    log::warn!(
        "worker {}: released {} claim(s) held under this worker id that no executor of this \
         process runs (never reached one, or claimed by an earlier process under this id) \
         back to pending",
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
