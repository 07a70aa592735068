//! The job state rules: cancel, retry and purge, decided once here for the library, the CLI,
//! the API and the dashboard, each job reported with its own [`JobOutcome`].
//!
//! Every change locks the job row first (`FOR UPDATE`), decides from the state it finds,
//! and writes in a savepoint, so one job that cannot change never undoes the others. A batch
//! runs in one transaction: a database failure (not a rule) fails the whole call and
//! changes nothing.

use crate::unnamed::Unnamed;
use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::GenericClient;
use serde_json::{json, Value};

use super::{in_transaction, Chancy};
use crate::error::{Error, Result};
use crate::events;
use crate::job::Reference;

/// What a state change did to one job.
///
/// The API renders these as 200 / 409 / 409 / 404, the CLI as exit codes 0 / 4 / 5 / 3
/// (see the README), and the dashboard shows the message ([`fmt::Display`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobOutcome {
    /// The change was made.
    Done,
    /// The change does not apply to the job in its current `state`; nothing changed.
    NotApplicable {
        /// The job's state when it was looked at (as stored).
        state: String,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// Retrying would make a second unfinished job with `unique_key`; `holder` is the
    /// unfinished job that holds the key (`None` if it finished in between). Nothing changed.
    Conflict {
        /// The job's unique key.
        unique_key: String,
        /// The unfinished job holding that key.
        holder: Option<Reference>,
    },
    /// There is no such job (never pushed, pruned or purged). Nothing was sent.
    NotFound,
}

impl JobOutcome {
    /// Whether the change was made.
    pub fn is_done(&self) -> bool {
        matches!(self, JobOutcome::Done)
    }
}

impl fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobOutcome::Done => f.write_str("done"),
            JobOutcome::NotApplicable { reason, .. } => f.write_str(reason),
            JobOutcome::Conflict {
                unique_key,
                holder: Some(holder),
            } => write!(
                f,
                "job {holder} is waiting or running with the same unique_key {unique_key:?}; \
                 it must finish (or be cancelled) before this one can run again"
            ),
            JobOutcome::Conflict {
                unique_key,
                holder: None,
            } => write!(
                f,
                "another unfinished job holds the unique_key {unique_key:?}"
            ),
            JobOutcome::NotFound => f.write_str("job not found"),
        }
    }
}

/// The row as the rules see it.
struct Locked {
    state: String,
    queue: String,
    unique_key: Option<String>,
    scheduled_at: Option<DateTime<Utc>>,
    /// `scheduled_at` is after the database's `now()`.
    later: bool,
    /// `attempts >= max_attempts`: a waiting job that will never be fetched again.
    exhausted: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Cancel,
    Retry,
    Purge,
}

impl Chancy {
    /// Cancels one job: a `pending`, `retrying` or `running` job becomes `failed`
    /// (`claim_id` cleared, `completed_at = now()`) and `job.cancelled {"j": id}` is
    /// NOTIFYd, so a worker running it stops it and its own outcome is fenced out.
    ///
    /// A finished job (`succeeded`, `failed`) is left as it is:
    /// [`JobOutcome::NotApplicable`]. Upstream 0.26.0 marks even a succeeded job `failed`
    /// here (its dashboard refuses); chancy applies the dashboard's rule everywhere. So is a
    /// job whose state another client wrote and chancy does not know (upstream would mark
    /// it `failed`): `NotApplicable` naming the state.
    /// An unknown id is [`JobOutcome::NotFound`] and nothing is NOTIFYd.
    ///
    /// # Errors
    /// Only database failures (nothing changed then).
    pub fn cancel_job(&self, reference: &Reference) -> Result<JobOutcome> {
        single(self.cancel_jobs(std::slice::from_ref(reference))?)
    }

    /// [`Chancy::cancel_job`] on the caller's client or transaction (the NOTIFY is sent
    /// when it commits).
    ///
    /// # Errors
    /// As [`Chancy::cancel_job`].
    pub fn cancel_job_in(
        &self,
        client: &mut impl GenericClient,
        reference: &Reference,
    ) -> Result<JobOutcome> {
        single(self.apply_in(client, Action::Cancel, std::slice::from_ref(reference))?)
    }

    /// [`Chancy::cancel_job`] for each job, in one transaction: one outcome per distinct id,
    /// in order.
    ///
    /// # Errors
    /// Only database failures (nothing changed then).
    pub fn cancel_jobs(&self, references: &[Reference]) -> Result<Vec<(Reference, JobOutcome)>> {
        self.apply(Action::Cancel, references)
    }

    /// Runs finished jobs again: a `succeeded` or `failed` job (or a waiting one that has
    /// used all its attempts and would never be fetched) becomes `retrying` with
    /// `attempts = 0`, due now (`started_at`, `completed_at`, `taken_by`, `claim_id`
    /// cleared, errors kept), and `queue.pushed` is NOTIFYd once per queue touched.
    ///
    /// Per job: a job in a state chancy does not know (written by another client), a
    /// `running` job, or a `pending`/`retrying` job still waiting for its turn
    /// (for instance scheduled for later), is [`JobOutcome::NotApplicable`] (upstream 0.26.0
    /// moves a job scheduled for later to now without saying so). A finished job whose
    /// `unique_key` is now held by another unfinished job is [`JobOutcome::Conflict`]
    /// naming that job (upstream fails the whole call with the constraint error). Missing
    /// ids are [`JobOutcome::NotFound`]. One outcome per distinct id, in order; the call
    /// never fails as a whole because of one job.
    ///
    /// # Errors
    /// Only database failures (nothing changed then).
    pub fn retry_jobs(&self, references: &[Reference]) -> Result<Vec<(Reference, JobOutcome)>> {
        self.apply(Action::Retry, references)
    }

    /// [`Chancy::retry_jobs`] on the caller's client or transaction.
    ///
    /// # Errors
    /// As [`Chancy::retry_jobs`].
    pub fn retry_jobs_in(
        &self,
        client: &mut impl GenericClient,
        references: &[Reference],
    ) -> Result<Vec<(Reference, JobOutcome)>> {
        self.apply_in(client, Action::Retry, references)
    }

    /// [`Chancy::retry_jobs`] for one job.
    ///
    /// # Errors
    /// As [`Chancy::retry_jobs`].
    pub fn retry_job(&self, reference: &Reference) -> Result<JobOutcome> {
        single(self.retry_jobs(std::slice::from_ref(reference))?)
    }

    /// Deletes jobs outright, in any state (like upstream: a running execution's outcome
    /// is then dropped because its row is gone). No NOTIFY. One outcome per distinct id:
    /// [`JobOutcome::Done`] or [`JobOutcome::NotFound`]. A workflow whose step job is
    /// deleted fails at its next scheduling pass (see the workflow plugin).
    ///
    /// # Errors
    /// Only database failures (nothing changed then).
    pub fn purge_jobs(&self, references: &[Reference]) -> Result<Vec<(Reference, JobOutcome)>> {
        self.apply(Action::Purge, references)
    }

    /// [`Chancy::purge_jobs`] on the caller's client or transaction.
    ///
    /// # Errors
    /// As [`Chancy::purge_jobs`].
    pub fn purge_jobs_in(
        &self,
        client: &mut impl GenericClient,
        references: &[Reference],
    ) -> Result<Vec<(Reference, JobOutcome)>> {
        self.apply_in(client, Action::Purge, references)
    }

    /// [`Chancy::purge_jobs`] for one job.
    ///
    /// # Errors
    /// As [`Chancy::purge_jobs`].
    pub fn purge_job(&self, reference: &Reference) -> Result<JobOutcome> {
        single(self.purge_jobs(std::slice::from_ref(reference))?)
    }

    fn apply(
        &self,
        action: Action,
        references: &[Reference],
    ) -> Result<Vec<(Reference, JobOutcome)>> {
        if references.is_empty() {
            return Ok(Vec::new());
        }
        in_transaction(self, "changing jobs", |tx| {
            self.apply_in(tx, action, references)
        })
    }

    fn apply_in(
        &self,
        client: &mut impl GenericClient,
        action: Action,
        references: &[Reference],
    ) -> Result<Vec<(Reference, JobOutcome)>> {
        let mut seen = BTreeSet::new();
        let mut outcomes = Vec::new();
        let mut notes: Vec<(&str, Value)> = Vec::new();
        let mut pushed_queues = BTreeSet::new();
        for r in references {
            if !seen.insert(*r) {
                continue;
            }
            let (outcome, queue) = self.apply_one(client, action, r)?;
            if outcome.is_done() {
                match action {
                    Action::Cancel => {
                        notes.push((events::JOB_CANCELLED, json!({ "j": r.to_string() })))
                    }
                    Action::Retry => {
                        pushed_queues.insert(queue);
                    }
                    Action::Purge => {}
                }
            }
            outcomes.push((*r, outcome));
        }
        notes.extend(
            pushed_queues
                .into_iter()
                .map(|q| (events::QUEUE_PUSHED, json!({ "q": q }))),
        );
        if !notes.is_empty() {
            self.notify_in(client, &notes)?;
        }
        Ok(outcomes)
    }

    /// Decides and applies `action` to one job in a savepoint; returns the outcome and the
    /// job's queue.
    fn apply_one(
        &self,
        client: &mut impl GenericClient,
        action: Action,
        reference: &Reference,
    ) -> Result<(JobOutcome, String)> {
        let ctx = "changing a job";
        let sql = self.sql();
        let mut sp = client.transaction().map_err(|e| Error::database(ctx, e))?;
        let row = sp
            .query_opt_unnamed(sql.lock_job.as_str(), &[&reference.0])
            .map_err(|e| Error::database("locking a job", e))?;
        let Some(row) = row else {
            return Ok((JobOutcome::NotFound, String::new()));
        };
        let job = Locked {
            state: row.get("state"),
            queue: row.get("queue"),
            unique_key: row.get("unique_key"),
            scheduled_at: row.get("scheduled_at"),
            later: row.get::<_, Option<bool>>("later").unwrap_or(false),
            exhausted: row.get::<_, Option<bool>>("exhausted").unwrap_or(false),
        };
        if let Some(outcome) = refusal(action, &job) {
            return Ok((outcome, job.queue));
        }
        let (statement, what) = match action {
            Action::Cancel => (&sql.cancel_job, "cancelling a job"),
            Action::Retry => (&sql.retry_job, "retrying a job"),
            Action::Purge => (&sql.purge_job, "purging a job"),
        };
        match sp.execute_unnamed(statement.as_str(), &[&reference.0]) {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && action == Action::Retry => {
                sp.rollback().map_err(|e| Error::database(ctx, e))?;
                let key = job.unique_key.clone().unwrap_or_default();
                let holder = client
                    .query_opt_unnamed(sql.unique_key_holder.as_str(), &[&key, &reference.0])
                    .map_err(|e| Error::database("finding the job holding a unique key", e))?
                    .map(|r| Reference(r.get(0)));
                return Ok((
                    JobOutcome::Conflict {
                        unique_key: key,
                        holder,
                    },
                    job.queue,
                ));
            }
            Err(e) => return Err(Error::database(what, e)),
        }
        sp.commit().map_err(|e| Error::database(ctx, e))?;
        Ok((JobOutcome::Done, job.queue))
    }
}

/// The state rules: `Some(outcome)` when `action` does not apply to `job` as it is.
fn refusal(action: Action, job: &Locked) -> Option<JobOutcome> {
    let not = |reason: String| {
        Some(JobOutcome::NotApplicable {
            state: job.state.clone(),
            reason,
        })
    };
    // A state another client wrote that chancy does not know: no rule says what cancel or
    // retry would mean for it, so it is left as it is (purge deletes it like any row).
    if action != Action::Purge && job.state.parse::<crate::job::JobState>().is_err() {
        return not(format!(
            "the job's state {:?} is not one chancy knows (pending, retrying, running, \
             succeeded, failed); it was left as it is (purge deletes it)",
            job.state
        ));
    }
    let finished = job.state == "succeeded" || job.state == "failed";
    match action {
        Action::Cancel if finished => not(format!(
            "the job already finished ({}); there is nothing to cancel",
            job.state
        )),
        Action::Retry if job.state == "running" => not(
            "the job is running; it can be retried once it finishes (or cancel it first)".into(),
        ),
        Action::Retry if !finished && !job.exhausted => {
            let when = match (job.later, job.scheduled_at) {
                (true, Some(at)) => format!("it is scheduled for {}", at.to_rfc3339()),
                _ => "it is due now".to_string(),
            };
            not(format!(
                "the job is {} and has not finished ({when}); only finished jobs are retried",
                job.state
            ))
        }
        _ => None,
    }
}

fn single(mut outcomes: Vec<(Reference, JobOutcome)>) -> Result<JobOutcome> {
    Ok(outcomes.pop().map_or(JobOutcome::NotFound, |(_, o)| o))
}
