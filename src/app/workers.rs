//! Reading the workers table.

use crate::unnamed::Unnamed;
use chrono::{DateTime, Utc};

use super::Chancy;
use crate::error::{Error, Result};
use crate::job::col;

/// A row of the workers table, with whether that worker holds the leader lease.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id.
    pub worker_id: String,
    /// Its tags at the last heartbeat.
    pub tags: Vec<String>,
    /// The queues it served at the last heartbeat.
    pub queues: Vec<String>,
    /// Last heartbeat.
    pub last_seen: DateTime<Utc>,
    /// When the row expires without another heartbeat.
    pub expires_at: DateTime<Utc>,
    /// Whether it is the current leader.
    pub is_leader: bool,
}

impl Chancy {
    /// Every worker that has announced itself and not yet expired, with leadership.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn get_all_workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut conn = self.connection()?;
        let rows = conn
            .client
            .query_unnamed(self.sql().all_workers.as_str(), &[])
            .map_err(|e| Error::database("reading workers", e))?;
        rows.iter()
            .map(|row| {
                Ok(WorkerInfo {
                    worker_id: col(row, "worker_id")?,
                    tags: col::<Option<Vec<String>>>(row, "tags")?.unwrap_or_default(),
                    queues: col::<Option<Vec<String>>>(row, "queues")?.unwrap_or_default(),
                    last_seen: col(row, "last_seen")?,
                    expires_at: col(row, "expires_at")?,
                    is_leader: col(row, "is_leader")?,
                })
            })
            .collect()
    }
}
