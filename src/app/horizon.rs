//! Sessions that hold back the xmin horizon: while a transaction keeps an old snapshot
//! (typically a session left `idle in transaction` after a read at REPEATABLE READ, or a very
//! long query), VACUUM cannot remove the dead job rows every claim and outcome leaves
//! behind, so claims slow down as they step over them. The leader checks this periodically
//! and warns (see `Worker`), the dashboard's overview lists them.

use crate::unnamed::Unnamed;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Chancy;
use crate::error::{Error, Result};

/// Default age of a snapshot-holding transaction after which it is reported (60 s).
pub(crate) const DEFAULT_HORIZON_WARN_AFTER: Duration = Duration::from_secs(60);
/// How many sessions one check reports at most (oldest first).
pub(crate) const MAX_HORIZON_HOLDERS: i64 = 20;

/// Sessions of this database (or walsenders, which feed standbys' horizons) whose
/// transaction holds a snapshot (`backend_xmin`) and started before now - $1 seconds.
/// `pg_stat_activity` shows other roles' sessions only to superusers and members of
/// `pg_read_all_stats`; others see just their own role's.
const HOLDERS: &str = "\
SELECT pid, usename::text, application_name, state, xact_start,
       EXTRACT(EPOCH FROM clock_timestamp() - xact_start)::float8,
       age(backend_xmin)::int8, left(query, 200)
FROM pg_stat_activity
WHERE backend_xmin IS NOT NULL
  AND pid <> pg_backend_pid()
  AND (datname = current_database() OR datname IS NULL)
  AND xact_start < clock_timestamp() - make_interval(secs => $1)
ORDER BY xact_start
LIMIT $2";

/// A session whose open transaction holds back the xmin horizon (dead job rows cannot be
/// vacuumed while it stays open).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HorizonHolder {
    /// The backend's process id (`SELECT pg_terminate_backend(pid)` ends it).
    pub pid: i32,
    /// Its role, when visible.
    pub user: Option<String>,
    /// Its `application_name`, when set.
    pub application_name: Option<String>,
    /// `active`, `idle in transaction`, ... (None when not visible to this role).
    pub state: Option<String>,
    /// When its transaction began.
    pub transaction_started_at: Option<DateTime<Utc>>,
    /// How long its transaction has been open (database clock).
    pub transaction_age: Duration,
    /// How many transactions old its snapshot is (`age(backend_xmin)`).
    pub xmin_age: i64,
    /// The start of its last statement (200 characters at most), when visible.
    pub query: Option<String>,
}

impl HorizonHolder {
    /// One line for logs and the dashboard.
    pub fn describe(&self) -> String {
        format!(
            "backend pid {} ({}{}) has held a snapshot for {:.0} s ({} transactions old), \
             state {}, last statement {:?}: VACUUM cannot remove dead job rows meanwhile, \
             so claims slow down; end that transaction (or SELECT pg_terminate_backend({}))",
            self.pid,
            self.user.as_deref().unwrap_or("?"),
            self.application_name
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(|a| format!(", {a}"))
                .unwrap_or_default(),
            self.transaction_age.as_secs_f64(),
            self.xmin_age,
            self.state.as_deref().unwrap_or("unknown"),
            self.query.as_deref().unwrap_or(""),
            self.pid
        )
    }
}

impl Chancy {
    /// Sessions whose transaction has held a snapshot for longer than `older_than`, oldest
    /// first, at most 20. Not in upstream.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn held_back_horizons(&self, older_than: Duration) -> Result<Vec<HorizonHolder>> {
        let mut conn = self.connection()?;
        let rows = conn
            .client
            .query_unnamed(HOLDERS, &[&older_than.as_secs_f64(), &MAX_HORIZON_HOLDERS])
            .map_err(|e| Error::database("reading pg_stat_activity", e))?;
        Ok(rows
            .iter()
            .map(|r| HorizonHolder {
                pid: r.get(0),
                user: r.get(1),
                application_name: r.get(2),
                state: r.get(3),
                transaction_started_at: r.get(4),
                transaction_age: crate::duration::from_secs_lossy(
                    r.get::<_, Option<f64>>(5).unwrap_or(0.0),
                ),
                xmin_age: r.get::<_, Option<i64>>(6).unwrap_or(0),
                query: r.get(7),
            })
            .collect())
    }
}
