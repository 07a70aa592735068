//! Reading and waiting for jobs (cancel, retry and purge are in `transitions`).

use crate::unnamed::Unnamed;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Chancy;
use crate::error::{Error, Result};
use crate::job::{JobState, QueuedJob, Reference};

/// How [`Chancy::wait_for_job_with`] waits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaitOptions {
    /// Time between polls (default 100 ms).
    pub interval: Duration,
    /// Give up after this long (default: never).
    pub timeout: Option<Duration>,
    /// States that end the wait (default: `succeeded`, `failed`).
    pub states: Vec<JobState>,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            interval: Duration::from_millis(100),
            timeout: None,
            states: vec![JobState::Succeeded, JobState::Failed],
        }
    }
}

impl WaitOptions {
    /// Default options with a timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chancy::{JobState, WaitOptions};
    /// let opts = WaitOptions::timeout(Duration::from_secs(5))
    ///     .states([JobState::Running])
    ///     .interval(Duration::from_millis(20));
    /// assert_eq!(opts.states, [JobState::Running]);
    /// ```
    pub fn timeout(timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout: Some(timeout),
            ..WaitOptions::default()
        }
    }

    /// The time between polls (default 100 ms).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> WaitOptions {
        self.interval = interval;
        self
    }

    /// The states that end the wait (default `succeeded`, `failed`).
    #[must_use]
    pub fn states(mut self, states: impl IntoIterator<Item = JobState>) -> WaitOptions {
        self.states = states.into_iter().collect();
        self
    }
}

impl Chancy {
    /// The job, or `None` if it does not exist (never pushed, pruned or purged).
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn get_job(&self, reference: &Reference) -> Result<Option<QueuedJob>> {
        let mut conn = self.connection()?;
        let row = conn
            .client
            .query_opt_unnamed(self.sql().get_job.as_str(), &[&reference.0])
            .map_err(|e| Error::database("reading a job", e))?;
        row.as_ref().map(QueuedJob::from_row).transpose()
    }

    /// The jobs that exist among `references`, in no particular order.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn get_jobs(&self, references: &[Reference]) -> Result<Vec<QueuedJob>> {
        if references.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids_of(references);
        let mut conn = self.connection()?;
        let rows = conn
            .client
            .query_unnamed(self.sql().get_jobs.as_str(), &[&ids])
            .map_err(|e| Error::database("reading jobs", e))?;
        rows.iter().map(QueuedJob::from_row).collect()
    }

    /// Waits until the job is `succeeded` or `failed` and returns it; `None` if the job no
    /// longer exists (a deleted job ends the wait).
    ///
    /// # Errors
    /// A timeout error after `timeout`.
    pub fn wait_for_job(
        &self,
        reference: &Reference,
        timeout: Duration,
    ) -> Result<Option<QueuedJob>> {
        self.wait_for_job_with(reference, &WaitOptions::timeout(timeout))
    }

    /// [`Chancy::wait_for_job`] with explicit options.
    ///
    /// # Errors
    /// A timeout error when `options.timeout` passes first.
    pub fn wait_for_job_with(
        &self,
        reference: &Reference,
        options: &WaitOptions,
    ) -> Result<Option<QueuedJob>> {
        let mut done = self.wait_for_jobs_with(std::slice::from_ref(reference), options)?;
        Ok(done.pop())
    }

    /// Waits until every job is in one of `options.states` (or gone) and returns the
    /// finished jobs; jobs that no longer exist are dropped from the result.
    ///
    /// # Errors
    /// A timeout error when `options.timeout` passes first.
    pub fn wait_for_jobs_with(
        &self,
        references: &[Reference],
        options: &WaitOptions,
    ) -> Result<Vec<QueuedJob>> {
        let started = Instant::now();
        let mut pending: BTreeSet<Reference> = references.iter().copied().collect();
        let mut finished: HashMap<Reference, QueuedJob> = HashMap::new();
        loop {
            let wanted: Vec<Reference> = pending.iter().copied().collect();
            let found = self.get_jobs(&wanted)?;
            let present: BTreeSet<Reference> = found.iter().map(QueuedJob::reference).collect();
            pending.retain(|r| present.contains(r));
            for job in found {
                if options.states.contains(&job.state) {
                    pending.remove(&job.reference());
                    finished.insert(job.reference(), job);
                }
            }
            if pending.is_empty() {
                return Ok(references
                    .iter()
                    .filter_map(|r| finished.remove(r))
                    .collect());
            }
            let waited = started.elapsed();
            if let Some(timeout) = options.timeout {
                if waited >= timeout {
                    return Err(Error::timeout(format!(
                        "timed out after {timeout:?} waiting for {} job(s), e.g. {}",
                        pending.len(),
                        pending
                            .iter()
                            .next()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    )));
                }
                std::thread::sleep(options.interval.min(timeout - waited));
            } else {
                std::thread::sleep(options.interval);
            }
        }
    }

    /// Waits for several jobs to be `succeeded` or `failed`.
    ///
    /// # Errors
    /// A timeout error after `timeout`.
    pub fn wait_for_jobs(
        &self,
        references: &[Reference],
        timeout: Duration,
    ) -> Result<Vec<QueuedJob>> {
        self.wait_for_jobs_with(references, &WaitOptions::timeout(timeout))
    }
}

fn ids_of(references: &[Reference]) -> Vec<Uuid> {
    references.iter().map(|r| r.0).collect()
}
