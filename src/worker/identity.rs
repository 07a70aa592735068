//! One worker id = one live process.
//!
//! Each worker process gets a session token at build time and writes it into its
//! `<prefix>workers` row as the tag `chancy.session=<uuid>`. The row is the lease on the id:
//! every write that acts *as* the worker checks that the row still carries this session —
//! the heartbeat's upsert (`ANNOUNCE_WORKER`), the release of orphaned claims
//! (`HELD_CLAIMS`), the release of the leader lease — so a process never releases claims or
//! leadership of another process that runs under the same id.
//!
//! At start, [`claim`] takes the row when it is absent or expired (`expires_at < now()`, the
//! database's clock; upstream's heartbeat deletes such rows). When another session's row is
//! still live, that process is either running or has just died (a crash, SIGKILL, a lost
//! node). [`claim`] pings it (`worker.ping {worker_id}`, which a running Rust worker answers
//! with a heartbeat at once; Python workers heartbeat on their own schedule) and watches the
//! row: a new heartbeat means the id is in use and the start fails naming the id and how long
//! ago it was seen; the row expiring means the old process is gone and this one takes over.
//! That wait is at most the old row's remaining lifetime: `heartbeat_timeout` after the old
//! process's last heartbeat. A clean stop deletes the worker's own row, so a restart after
//! a graceful stop takes the id at once.

use crate::unnamed::Unnamed;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::json;

use super::WorkerShared;
use crate::error::{Error, Result};

/// Rust-only event asking the running worker with this id to heartbeat now:
/// `worker.ping {"worker_id": id}`. Other listeners ignore it.
pub const WORKER_PING: &str = "worker.ping";

/// How often a starting worker re-reads a live row of its id.
const IDENTITY_POLL: Duration = Duration::from_millis(200);

/// Margin over the row's remaining lifetime before a starting worker gives up waiting.
const EXPIRY_SLACK: Duration = Duration::from_secs(5);

/// What the session tag of a worker row starts with (`chancy.session=<uuid>`).
pub(crate) const SESSION_TAG_PREFIX: &str = "chancy.session=";

/// The tag that carries a worker process's session in its row.
pub(crate) fn session_tag(session: &uuid::Uuid) -> String {
    format!("{SESSION_TAG_PREFIX}{session}")
}

/// Session tags of the workers of this process that hold their id's row now: a live row
/// carrying one of them belongs to another `Worker` of this same process, not another
/// process. Written when a worker takes its id and when it releases it; read when a start
/// finds its id held. A leaf lock.
static HELD_HERE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether the row's holder is another `Worker` of this process.
fn held_here(holder: &Holder) -> bool {
    holder
        .session
        .as_ref()
        .is_some_and(|s| HELD_HERE.lock().contains(s))
}

/// The live row of another process holding our id.
#[derive(Debug, Clone, PartialEq)]
struct Holder {
    seen_ago: f64,
    last_seen: DateTime<Utc>,
    expires_in: f64,
    session: Option<String>,
}

/// Takes this worker's id, waiting while another session's row is live and fails if that
/// process turns out to be alive (see the module docs).
///
/// # Errors
/// A configuration error naming the id and how long ago its row was seen when another live
/// process runs under it; a database error when the statements fail.
pub(crate) fn claim(shared: &WorkerShared) -> Result<()> {
    let mut first: Option<(Holder, Instant)> = None;
    loop {
        let holder = match try_claim(shared)? {
            Claim::Owned => None,
            Claim::Retry => continue,
            Claim::Held(holder) => Some(holder),
        };
        let Some(holder) = holder else {
            if let Some((old, _)) = first {
                log::warn!(
                    "worker {}: took over the id; the process that last heartbeated under it \
                     {:.1} s before this start never did again (it died)",
                    shared.worker_id,
                    old.seen_ago
                );
            }
            HELD_HERE.lock().insert(shared.me().session_tag.clone());
            shared.lifecycle.id_taken();
            return Ok(());
        };
        match &first {
            None => {
                log::warn!(
                    "worker {}: {} for this id was seen {:.1} s ago; \
                     waiting up to {:.1} s (until that row expires) for it to heartbeat (then \
                     this start fails: the id is in use) or not (then it died and this worker \
                     takes over)",
                    shared.worker_id,
                    if held_here(&holder) {
                        "the row of another Worker in this process"
                    } else {
                        "another process's row"
                    },
                    holder.seen_ago,
                    holder.expires_in.max(0.0)
                );
                shared.chancy.notify(
                    WORKER_PING,
                    &json!({ "worker_id": shared.worker_id.as_str() }),
                )?;
                let expires_in = crate::duration::from_secs_lossy(holder.expires_in);
                let deadline = crate::duration::deadline(
                    Instant::now(),
                    expires_in.saturating_add(EXPIRY_SLACK),
                );
                first = Some((holder, deadline));
            }
            Some((old, deadline)) => {
                if holder.last_seen != old.last_seen || holder.session != old.session {
                    return Err(in_use(shared, old, "and it heartbeated again since"));
                }
                if Instant::now() > *deadline {
                    return Err(in_use(shared, old, "and its row has not expired since"));
                }
            }
        }
        if shared.shutdown.sleep(IDENTITY_POLL) {
            // A stop arrived while waiting: the start gives up without the id.
            return Ok(());
        }
    }
}

fn in_use(shared: &WorkerShared, old: &Holder, since: &str) -> Error {
    in_use_message(&shared.worker_id, old, held_here(old), since)
}

/// The error of a start whose id is held by a live worker: `here` when that worker is
/// another `Worker` of this process (two builders given the same `worker_id`).
fn in_use_message(worker_id: &str, old: &Holder, here: bool, since: &str) -> Error {
    let (who, fix) = if here {
        (
            "another Worker in this process",
            "stop that Worker, or give each Worker of this process its own worker id",
        )
    } else {
        (
            "another live process",
            "stop the other process, or start this one with another worker id",
        )
    };
    Error::config(format!(
        "worker id {worker_id:?} is in use by {who}: its row was last seen {:.1} s ago \
         (it counts as live for heartbeat_timeout after each heartbeat) {since}. One worker \
         id can be served by one worker at a time: {fix}",
        old.seen_ago
    ))
}

enum Claim {
    /// This process owns the row now.
    Owned,
    /// The row vanished between the two statements.
    Retry,
    /// Another session's live row.
    Held(Holder),
}

/// One attempt to take the row.
fn try_claim(shared: &WorkerShared) -> Result<Claim> {
    crate::app::in_transaction(&shared.chancy, "claiming the worker id", |tx| {
        if super::heartbeat::announce(shared.me(), &shared.queue_names(), tx)? {
            return Ok(Claim::Owned);
        }
        let sql = shared.chancy.sql();
        let row = tx
            .query_opt_unnamed(sql.worker_holder.as_str(), &[&shared.worker_id])
            .map_err(|e| Error::database("reading the worker row", e))?;
        let Some(row) = row else {
            return Ok(Claim::Retry);
        };
        let tags: Vec<String> = row.get(3);
        Ok(Claim::Held(Holder {
            seen_ago: row.get(0),
            last_seen: row.get(1),
            expires_in: row.get(2),
            session: tags.into_iter().find(|t| t.starts_with(SESSION_TAG_PREFIX)),
        }))
    })
}

/// Deletes this process's own row (a clean stop, or a start that failed after taking it),
/// so a successor under the same id starts at once. Best effort: on failure the row
/// expires by itself. Nothing to do when this process never took the row.
pub(crate) fn release(shared: &WorkerShared) {
    HELD_HERE.lock().remove(&shared.me().session_tag);
    if !shared.lifecycle.took_id() {
        return;
    }
    let sql = shared.chancy.sql();
    let released = shared.chancy.connection().and_then(|mut conn| {
        conn.client
            .execute_unnamed(
                sql.release_worker.as_str(),
                &[&shared.worker_id, &shared.me().session_tag],
            )
            .map_err(|e| Error::database("deleting the worker row", e))
    });
    if let Err(err) = released {
        log::warn!(
            "worker {}: could not delete its row, it expires in heartbeat_timeout: {err}",
            shared.worker_id
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(session: &str) -> Holder {
        Holder {
            seen_ago: 0.5,
            last_seen: Utc::now(),
            expires_in: 19.5,
            session: Some(session.to_string()),
        }
    }

    #[test]
    fn a_holder_in_this_process_is_named_as_such() {
        let mine = session_tag(&uuid::Uuid::new_v4());
        let other = holder(&session_tag(&uuid::Uuid::new_v4()));
        HELD_HERE.lock().insert(mine.clone());
        assert!(held_here(&holder(&mine)));
        assert!(!held_here(&other));
        HELD_HERE.lock().remove(&mine);
        assert!(!held_here(&holder(&mine)));

        let here = in_use_message("w", &holder(&mine), true, "since").to_string();
        assert!(
            here.contains("in use by another Worker in this process"),
            "{here}"
        );
        assert!(!here.contains("another live process"), "{here}");
        let away = in_use_message("w", &other, false, "since").to_string();
        assert!(away.contains("in use by another live process"), "{away}");
    }
}
