//! Listing jobs, newest first, filtered by queue, state and function.

use super::Chancy;
use crate::error::{Error, Result};
use crate::job::{JobState, QueuedJob};
use crate::unnamed::Unnamed;

/// Default [`JobFilter::limit`].
pub(crate) const DEFAULT_LIST_LIMIT: u32 = 100;

/// Which jobs [`Chancy::list_jobs`] returns. A `None` field matches every job; the fields
/// that are set must all match.
///
/// ```
/// use chancy::{JobFilter, JobState};
/// let filter = JobFilter::new().queue("emails").state(JobState::Failed);
/// assert_eq!(filter.limit, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this handler name (exact match).
    pub func: Option<String>,
    /// At most this many jobs (default 100).
    pub limit: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            queue: None,
            state: None,
            func: None,
            limit: DEFAULT_LIST_LIMIT,
        }
    }
}

impl JobFilter {
    /// Every job, at most 100 (the same as `JobFilter::default()`).
    pub fn new() -> JobFilter {
        JobFilter::default()
    }

    /// Only jobs of this queue.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> JobFilter {
        self.queue = Some(queue.into());
        self
    }

    /// Only jobs in this state.
    #[must_use]
    pub fn state(mut self, state: JobState) -> JobFilter {
        self.state = Some(state);
        self
    }

    /// Only jobs of this handler name (exact match).
    #[must_use]
    pub fn func(mut self, func: impl Into<String>) -> JobFilter {
        self.func = Some(func.into());
        self
    }

    /// At most this many jobs (default 100).
    #[must_use]
    pub fn limit(mut self, limit: u32) -> JobFilter {
        self.limit = limit;
        self
    }
}

impl Chancy {
    /// The jobs matching `filter`, newest first (by id, which is time-ordered), at most
    /// `filter.limit` of them. Every filter value is a bound parameter.
    ///
    /// ```no_run
    /// use chancy::{Chancy, JobFilter, JobState};
    /// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
    /// let failed = chancy.list_jobs(&JobFilter::new().state(JobState::Failed).limit(10))?;
    /// for job in failed {
    ///     println!("{} {} {:?}", job.id, job.func, job.errors.last());
    /// }
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// Rows chancy cannot read (written by another client with, say, an unknown state) are
    /// left out with a logged warning.
    ///
    /// # Errors
    /// When the database is unreachable or the schema is not migrated.
    pub fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<QueuedJob>> {
        let sql = format!(
            "SELECT * FROM {} \
             WHERE ($1::text IS NULL OR queue = $1) \
               AND ($2::text IS NULL OR state = $2) \
               AND ($3::text IS NULL OR func = $3) \
             ORDER BY id DESC LIMIT $4",
            self.prefix().table("jobs")
        );
        let state = filter.state.map(JobState::as_str);
        let limit = i64::from(filter.limit);
        let mut conn = self.connection()?;
        let rows = conn
            .client
            .query_unnamed(sql.as_str(), &[&filter.queue, &state, &filter.func, &limit])
            .map_err(|e| Error::database("listing jobs", e))?;
        Ok(rows.iter().filter_map(readable).collect())
    }
}

/// A listed row as a job; a row another client filled with something chancy cannot read
/// (say an unknown state) is left out of the list with a warning instead of failing it.
fn readable(row: &postgres::Row) -> Option<QueuedJob> {
    match QueuedJob::from_row(row) {
        Ok(job) => Some(job),
        Err(e) => {
            log::warn!("skipping an unreadable job row: {e}");
            None
        }
    }
}
