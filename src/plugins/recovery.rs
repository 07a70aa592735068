//! Recovery (upstream's `Recovery`): running jobs whose worker stopped heartbeating go back
//! to `pending`.
//!
//! One statement on the leader, locking the rows it resets (`FOR UPDATE ... SKIP LOCKED`):
//! `state = 'pending'`, `taken_by`, `claim_id` and `started_at` cleared, `max_attempts + 1`
//! (the lost attempt does not count against the job), `attempts` unchanged. Clearing the
//! claim fences the lost run: its late outcome matches no row. In the same transaction every
//! recovered claim is announced with `job.recovered {j, c}` (a worker still running that
//! execution cancels it), then `recovery.recovered {elapsed, rows_recovered}`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::in_transaction;
use crate::error::{Error, Result};
use crate::events;
use crate::plugin::Plugin;
use crate::worker::Worker;
use crate::Chancy;

use super::leadership::LEADERSHIP;

/// The identifier of [`Recovery`].
pub const RECOVERY: &str = "chancy.recovery";
/// Default [`Recovery::poll_interval`]: 60 s, as upstream.
pub const DEFAULT_RECOVERY_POLL_INTERVAL: Duration = Duration::from_secs(60);

const RECOVER: &str = r#"
WITH abandoned AS (
    SELECT cj.id, cj.claim_id
    FROM "{prefix}jobs" cj
    WHERE NOT EXISTS (
        SELECT 1 FROM "{prefix}workers" cw
        WHERE cw.worker_id = cj.taken_by
          AND cw.last_seen >= NOW() - make_interval(secs => $1)
    )
    AND cj.state = 'running'
    FOR UPDATE OF cj SKIP LOCKED
)
UPDATE "{prefix}jobs" cj
SET state = 'pending', taken_by = NULL, claim_id = NULL, started_at = NULL,
    max_attempts = max_attempts + 1
FROM abandoned
WHERE cj.id = abandoned.id
RETURNING cj.id, abandoned.claim_id"#;

/// Puts the running jobs of workers without a fresh heartbeat back to `pending`, on the
/// leader. Identifier `chancy.recovery`; needs `chancy.leadership`; part of the default set.
#[derive(Debug, Clone)]
pub struct Recovery {
    poll_interval: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            poll_interval: DEFAULT_RECOVERY_POLL_INTERVAL,
        }
    }
}

impl Recovery {
    /// A recovery plugin with the defaults.
    pub fn new() -> Recovery {
        Recovery::default()
    }

    /// How often the leader looks for abandoned jobs (default 60 s).
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Recovers the running jobs whose `taken_by` worker has not been seen within
    /// `heartbeat_timeout`; returns how many. Sends the events described in the module docs.
    ///
    /// # Errors
    /// When the database is unreachable or the statement fails (nothing is changed then).
    pub fn recover(chancy: &Chancy, heartbeat_timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        let sql = chancy.prefix().render(RECOVER);
        in_transaction(chancy, "recovering abandoned jobs", |tx| {
            let rows = tx
                .query(sql.as_str(), &[&heartbeat_timeout.as_secs_f64()])
                .map_err(|e| Error::database("recovering abandoned jobs", e))?;
            let mut notes: Vec<(&str, Value)> = rows
                .iter()
                .filter_map(|row| {
                    let id: Uuid = row.get(0);
                    let claim: Option<Uuid> = row.get(1);
                    claim.map(|c| {
                        (
                            events::JOB_RECOVERED,
                            json!({ "j": id.to_string(), "c": c.to_string() }),
                        )
                    })
                })
                .collect();
            notes.push((
                events::RECOVERY_RECOVERED,
                json!({
                    "elapsed": started.elapsed().as_secs_f64(),
                    "rows_recovered": rows.len(),
                }),
            ));
            chancy.notify_ex(tx, &notes)?;
            if !rows.is_empty() {
                log::warn!(
                    "recovery: {} abandoned job(s) put back to pending",
                    rows.len()
                );
            }
            Ok(rows.len() as u64)
        })
    }
}

impl Plugin for Recovery {
    fn identifier(&self) -> &'static str {
        RECOVERY
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![LEADERSHIP]
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.poll_interval)
    }

    /// Leader only: other workers skip the pass.
    fn run_once(&self, worker: &Worker) -> Result<()> {
        if !worker.is_leader().is_set() {
            return Ok(());
        }
        Recovery::recover(worker.chancy(), worker.heartbeat_timeout()).map(|_| ())
    }
}
