//! The leader's watch for sessions that hold back the xmin horizon
//! ([`Chancy::held_back_horizons`](crate::Chancy::held_back_horizons)): every
//! `horizon_check_interval`, on the leader only, one query on `pg_stat_activity`; each
//! offending session is logged at WARN (again every [`REPEAT_WARNING`] while it persists)
//! and announced on the hub as [`HORIZON_HELD_BACK`]. Not in upstream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::json;

use super::WorkerShared;
use crate::error::Result;

/// Local hub event: a session holds back the xmin horizon. Body: `{"pid", "age" (seconds),
/// "xmin_age", "state", "message"}`.
pub const HORIZON_HELD_BACK: &str = "horizon.held_back";
/// Default [`WorkerBuilder::horizon_check`](super::WorkerBuilder::horizon_check) interval.
pub(crate) const DEFAULT_HORIZON_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How often the same session is logged again while it keeps holding the horizon.
pub(crate) const REPEAT_WARNING: Duration = Duration::from_secs(600);

type SessionKey = (i32, Option<DateTime<Utc>>);

/// When each offending session (pid + transaction start) was last logged.
#[derive(Default)]
pub(crate) struct HorizonWatch {
    warned: Mutex<HashMap<SessionKey, Instant>>,
}

/// One pass: nothing unless this worker is the leader.
pub(crate) fn check(shared: &WorkerShared, watch: &HorizonWatch) -> Result<()> {
    if !shared.is_leader.is_set() {
        return Ok(());
    }
    let holders = shared
        .chancy
        .held_back_horizons(shared.config.horizon_warn_after)?;
    let mut warned = watch.warned.lock();
    warned.retain(|key, _| {
        holders
            .iter()
            .any(|h| (h.pid, h.transaction_started_at) == *key)
    });
    for h in &holders {
        let key = (h.pid, h.transaction_started_at);
        let due = warned
            .get(&key)
            .map_or(true, |at| at.elapsed() >= REPEAT_WARNING);
        let message = h.describe();
        if due {
            log::warn!("xmin horizon held back: {message}");
            warned.insert(key, Instant::now());
        }
        shared.hub.emit(
            HORIZON_HELD_BACK,
            json!({
                "pid": h.pid,
                "age": h.transaction_age.as_secs_f64(),
                "xmin_age": h.xmin_age,
                "state": h.state,
                "message": message,
            }),
        );
    }
    Ok(())
}
