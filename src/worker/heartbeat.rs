//! The heartbeat: upserts this worker's row, prunes expired workers, NOTIFYs
//! `worker.announced`, and releases orphaned claims.

use crate::unnamed::Unnamed;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use postgres::GenericClient;
use serde_json::json;

use super::claims::Claims;
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::events;
use crate::sync::Shutdown;

/// Who this worker process is, as its row and the statements that act as its worker id
/// carry it (see `identity.rs`).
#[derive(Clone)]
pub(crate) struct Identity {
    pub(crate) chancy: Chancy,
    pub(crate) worker_id: String,
    /// `chancy.session=<uuid>`: this process's fence.
    pub(crate) session_tag: String,
    pub(crate) tags: BTreeSet<String>,
    /// How long the row lives without a heartbeat.
    pub(crate) heartbeat_timeout: Duration,
}

/// What the heartbeat loop uses, and nothing else of the worker.
pub(crate) struct HeartbeatDeps {
    pub(crate) me: Identity,
    /// Claims held in memory: the others this worker holds in the database are orphans.
    pub(crate) claims: Arc<Claims>,
    pub(crate) shutdown: Arc<Shutdown>,
    /// The queues this worker serves now (for its row and the orphan sweep).
    pub(crate) queue_names: Box<dyn Fn() -> Vec<String> + Send>,
    /// Called once another process has taken this worker's id: stops this worker.
    pub(crate) on_identity_lost: Box<dyn Fn() + Send>,
}

/// One heartbeat on `client` (the caller commits): prunes expired rows, upserts this
/// worker's row (serving `queues`) if this process owns it (see `identity.rs`) and NOTIFYs
/// `worker.announced`. Returns whether this process owns the row.
pub(crate) fn announce(
    me: &Identity,
    queues: &[String],
    client: &mut impl GenericClient,
) -> Result<bool> {
    let sql = me.chancy.sql();
    client
        .execute_unnamed(sql.delete_expired_workers.as_str(), &[])
        .map_err(|e| Error::database("pruning expired workers", e))?;
    let mut tags: Vec<String> = me.tags.iter().cloned().collect();
    tags.push(me.session_tag.clone());
    let timeout = me.heartbeat_timeout.as_secs_f64();
    let owned = client
        .query_opt_unnamed(
            sql.announce_worker.as_str(),
            &[&me.worker_id, &timeout, &tags, &queues, &me.session_tag],
        )
        .map_err(|e| Error::database("announcing the worker", e))?
        .is_some();
    if owned {
        me.chancy.notify_in(
            client,
            &[(
                events::WORKER_ANNOUNCED,
                json!({ "worker_id": me.worker_id }),
            )],
        )?;
    }
    Ok(owned)
}

/// A claim this old that no thread of this worker holds was lost between the database and
/// the worker (e.g. the connection died after the claim committed): it is released.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// One pass of the heartbeat service: announce, then release orphaned claims. When another
/// process has taken this worker's id (its row expired while this one missed heartbeats for
/// longer than `heartbeat_timeout`, and a new process started under the id), this worker
/// must not act as that id any more: it logs an error and stops.
pub(crate) fn beat(h: &HeartbeatDeps) -> Result<()> {
    let queues = (h.queue_names)();
    let owned = crate::app::in_transaction(&h.me.chancy, "sending a heartbeat", |tx| {
        if !announce(&h.me, &queues, tx)? {
            return Ok(false);
        }
        release_orphans(&h.me, &h.claims, tx, &queues, ORPHAN_GRACE)?;
        Ok(true)
    })?;
    if !owned && !h.shutdown.is_triggered() {
        log::error!(
            "worker {}: another process now runs under this worker id (this worker missed \
             heartbeats for longer than heartbeat_timeout and its row expired); stopping this \
             worker so that the id has one live process",
            h.me.worker_id
        );
        (h.on_identity_lost)();
    }
    Ok(())
}

/// Claims of `queues` older than `grace` that this worker holds in the database but no
/// longer in memory go back to pending (attempts unchanged: they never ran), with
/// `queue.pushed` so a worker picks them up. Returns how many were released.
pub(crate) fn release_orphans(
    me: &Identity,
    held: &Claims,
    client: &mut impl GenericClient,
    queues: &[String],
    grace: Duration,
) -> Result<usize> {
    let sql = me.chancy.sql();
    let grace = grace.as_secs_f64();
    let rows = client
        .query_unnamed(
            sql.held_claims.as_str(),
            &[&queues, &me.worker_id, &grace, &me.session_tag],
        )
        .map_err(|e| Error::database("looking for orphaned claims", e))?;
    let (ids, claims): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = held
        .not_held(
            rows.iter()
                .map(|r| (r.get::<_, uuid::Uuid>(0), r.get::<_, uuid::Uuid>(1))),
        )
        .into_iter()
        .unzip();
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
        me.worker_id,
        released.len()
    );
    let queues: std::collections::BTreeSet<String> = released.iter().map(|r| r.get(0)).collect();
    let notes: Vec<(&str, serde_json::Value)> = queues
        .iter()
        .map(|q| (events::QUEUE_PUSHED, json!({ "q": q })))
        .collect();
    me.chancy.notify_in(client, &notes)?;
    Ok(released.len())
}
