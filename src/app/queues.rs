//! Declaring, reading, pausing, resuming and deleting queues.

use crate::unnamed::Unnamed;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::json;

use super::{in_transaction, Chancy};
use crate::error::{Error, Result};
use crate::events;
use crate::job::validate_queue_name;
use crate::queue::Queue;

impl Chancy {
    /// Declares `queue` if it does not exist and NOTIFYs `queue.declared`. An existing queue
    /// is left unchanged; the stored declaration is returned either way.
    ///
    /// # Errors
    /// An invalid-input error for a bad declaration (nothing written), or a database error.
    pub fn declare(&self, queue: &Queue) -> Result<Queue> {
        self.declare_with(queue, false)
    }

    /// Declares `queue`, overwriting every setting of an existing queue of that name
    /// (`created_at` is kept), and NOTIFYs `queue.declared` so workers pick it up.
    ///
    /// # Errors
    /// As [`Chancy::declare`].
    pub fn declare_upsert(&self, queue: &Queue) -> Result<Queue> {
        self.declare_with(queue, true)
    }

    fn declare_with(&self, queue: &Queue, upsert: bool) -> Result<Queue> {
        queue.validate()?;
        in_transaction(self, "declaring a queue", |tx| {
            let stored = self.declare_in(tx, queue, upsert)?;
            self.notify_in(tx, &[(events::QUEUE_DECLARED, json!({ "q": queue.name }))])?;
            Ok(stored)
        })
    }

    /// Declares on the caller's client, without NOTIFY.
    ///
    /// # Errors
    /// As [`Chancy::declare`].
    pub fn declare_in(
        &self,
        client: &mut impl GenericClient,
        queue: &Queue,
        upsert: bool,
    ) -> Result<Queue> {
        queue.validate()?;
        let c = queue.columns();
        let sql = if upsert {
            &self.sql().declare_upsert
        } else {
            &self.sql().declare
        };
        let row = client
            .query_one_unnamed(
                sql.as_str(),
                &[
                    &queue.name,
                    &queue.state.as_str(),
                    &queue.concurrency,
                    &c.tags,
                    &queue.executor,
                    &c.options,
                    &c.polling,
                    &queue.rate_limit,
                    &c.window,
                    &queue.resume_at,
                    &queue.eager_polling,
                ],
            )
            .map_err(|e| Error::database("declaring a queue", e))?;
        Queue::from_row(&row)
    }

    /// The queue named `name`.
    ///
    /// # Errors
    /// A not-found error when there is no such queue.
    pub fn get_queue(&self, name: &str) -> Result<Queue> {
        let mut conn = self.connection()?;
        let row = conn
            .client
            .query_opt_unnamed(self.sql().get_queue.as_str(), &[&name])
            .map_err(|e| Error::database("reading a queue", e))?;
        match row {
            Some(row) => Queue::from_row(&row),
            None => Err(Error::not_found(format!("queue {name:?} not found"))),
        }
    }

    /// Every declared queue chancy can read, by name. A row another client wrote with a
    /// value chancy cannot read (say state `'zzz'`) is left out with a warning in the log;
    /// [`Chancy::list_queues`] names those rows too. (Upstream's `get_all_queues`, which
    /// has no such rows to meet.)
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn get_all_queues(&self) -> Result<Vec<Queue>> {
        let listing = self.list_queues()?;
        for bad in &listing.unreadable {
            log::warn!("skipping an unreadable queue row: {}", bad.reason);
        }
        Ok(listing.queues)
    }

    /// Every queue row, by name: the readable ones as [`Queue`]s and, apart, the rows
    /// another client wrote with values chancy cannot read (an unknown state, a negative
    /// polling interval…), each with its name, raw state and the reason. One bad row never
    /// hides the others: the CLI, the API and the dashboard list through this.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn list_queues(&self) -> Result<QueueListing> {
        let mut listing = QueueListing::default();
        for (name, state, row) in self.read_raw_queue_rows()? {
            match row {
                Ok(queue) => listing.queues.push(queue),
                Err(reason) => listing.unreadable.push(UnreadableQueue {
                    name,
                    state,
                    reason,
                }),
            }
        }
        Ok(listing)
    }

    /// Every queue row parsed on its own, with its name: a row another client wrote with
    /// values chancy cannot read is an error for that queue only (the worker skips it).
    pub(crate) fn read_queue_rows(&self) -> Result<Vec<(String, Result<Queue>)>> {
        Ok(self
            .read_raw_queue_rows()?
            .into_iter()
            .map(|(name, _, queue)| (name, queue))
            .collect())
    }

    /// As [`Chancy::read_queue_rows`], with each row's raw `state` text.
    fn read_raw_queue_rows(&self) -> Result<Vec<RawQueueRow>> {
        let mut conn = self.connection()?;
        let rows = conn
            .client
            .query_unnamed(self.sql().all_queues.as_str(), &[])
            .map_err(|e| Error::database("reading queues", e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let name = r.try_get::<_, String>("name").unwrap_or_default();
                let state = r.try_get::<_, Option<String>>("state").ok().flatten();
                (name, state, Queue::from_row(r))
            })
            .collect())
    }

    /// Pauses a queue (workers stop claiming from it) until [`Chancy::resume_queue`] or, if
    /// given, `resume_at`. NOTIFYs `queue.paused`.
    ///
    /// # Errors
    /// A not-found error when there is no such queue; an invalid-input error for a
    /// `resume_at` after 9999-12-31T23:59:59Z (Python's `datetime.max`: a Python worker or
    /// dashboard reads the row too), as [`Job::validate`](crate::job::Job::validate) refuses
    /// such a `scheduled_at`.
    pub fn pause_queue(&self, name: &str, resume_at: Option<DateTime<Utc>>) -> Result<()> {
        let latest = crate::job::latest_schedulable();
        if let Some(at) = resume_at.filter(|at| *at > latest) {
            return Err(Error::invalid_input(format!(
                "resume_at {} is after {}, the latest time Python's datetime can read",
                at.to_rfc3339(),
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        self.set_queue_state(
            name,
            &self.sql().pause_queue,
            Some(resume_at),
            events::QUEUE_PAUSED,
        )
    }

    /// Resumes a paused queue and NOTIFYs `queue.resumed`.
    ///
    /// # Errors
    /// A not-found error when there is no such queue.
    pub fn resume_queue(&self, name: &str) -> Result<()> {
        self.set_queue_state(name, &self.sql().resume_queue, None, events::QUEUE_RESUMED)
    }

    /// The database's clock (`SELECT NOW()`), the one clock every time decision uses.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn database_now(&self) -> Result<DateTime<Utc>> {
        let mut conn = self.connection()?;
        let row = conn
            .client
            .query_one_unnamed("SELECT NOW()", &[])
            .map_err(|e| Error::database("reading the database clock", e))?;
        Ok(row.get(0))
    }

    /// Resumes a paused queue whose `resume_at` has passed by the database clock, and
    /// NOTIFYs `queue.resumed`. Returns whether it resumed (false: not paused, no
    /// `resume_at`, not due yet, or no such queue). Workers call this instead of comparing
    /// `resume_at` with their own clock.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn resume_queue_if_due(&self, name: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = 'active', resume_at = NULL \
             WHERE name = $1 AND state = 'paused' AND resume_at <= NOW()",
            self.prefix().table("queues")
        );
        in_transaction(self, "resuming a queue", |tx| {
            let n = tx
                .execute_unnamed(sql.as_str(), &[&name])
                .map_err(|e| Error::database("resuming a queue", e))?;
            if n > 0 {
                self.notify_in(tx, &[(events::QUEUE_RESUMED, json!({ "q": name }))])?;
            }
            Ok(n > 0)
        })
    }

    fn set_queue_state(
        &self,
        name: &str,
        sql: &str,
        resume_at: Option<Option<DateTime<Utc>>>,
        event: &str,
    ) -> Result<()> {
        validate_queue_name(name)?;
        in_transaction(self, "changing a queue's state", |tx| {
            let n = match &resume_at {
                Some(at) => tx.execute_unnamed(sql, &[&name, at]),
                None => tx.execute_unnamed(sql, &[&name]),
            }
            .map_err(|e| Error::database("changing a queue's state", e))?;
            if n == 0 {
                return Err(Error::not_found(format!("queue {name:?} not found")));
            }
            self.notify_in(tx, &[(event, json!({ "q": name }))])
        })
    }

    /// Deletes a queue and, with `purge_jobs`, every job in it. Returns whether the queue
    /// existed. Workers stop serving it at their next queue refresh.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn delete_queue(&self, name: &str, purge_jobs: bool) -> Result<bool> {
        in_transaction(self, "deleting a queue", |tx| {
            let n = tx
                .execute_unnamed(self.sql().delete_queue.as_str(), &[&name])
                .map_err(|e| Error::database("deleting a queue", e))?;
            if purge_jobs {
                tx.execute_unnamed(self.sql().delete_queue_jobs.as_str(), &[&name])
                    .map_err(|e| Error::database("deleting a queue's jobs", e))?;
            }
            Ok(n > 0)
        })
    }
}

/// A queue row's name, raw `state` text and the row parsed as a [`Queue`].
type RawQueueRow = (String, Option<String>, Result<Queue>);

/// What [`Chancy::list_queues`] found: the queues chancy can read and the rows it cannot.
#[derive(Debug, Default)]
pub struct QueueListing {
    /// The readable queues, by name.
    pub queues: Vec<Queue>,
    /// The rows another client wrote with values chancy cannot read, by name.
    pub unreadable: Vec<UnreadableQueue>,
}

/// A queue row chancy cannot read: listed apart so the other queues still show, and
/// skipped by workers.
#[derive(Debug)]
pub struct UnreadableQueue {
    /// The row's `name`.
    pub name: String,
    /// The row's raw `state` text (`None` when NULL).
    pub state: Option<String>,
    /// Why it cannot be read, e.g. `unknown queue state "zzz" (expected active or paused)`.
    pub reason: Error,
}
