//! [`WorkerTooling`]: a worker's steps one at a time, for benchmarks, test harnesses and
//! operational tools (re-exported as `chancy::tooling`, whose docs say why it is apart).

use postgres::GenericClient;

use super::writer::Outgoing;
use super::{fetch, heartbeat, writer, Worker};
use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::pool::Conn;
use crate::queue::Queue;

mod sealed {
    /// Only [`Worker`](crate::Worker) implements the tooling trait, so methods can be added
    /// to it without breaking anyone.
    pub trait Sealed {}
    impl Sealed for crate::worker::Worker {}
}

/// The steps a running [`Worker`] takes by itself (claim, write outcomes, announce), callable
/// by hand. Bring it into scope with `use chancy::tooling::WorkerTooling;`.
///
/// **Not covered by the crate's semver promise**: these methods expose the worker's
/// internals (claim fencing, the writer's queue, the heartbeat row) and follow them when
/// they change, in any release. Application code does not need them.
///
/// ```no_run
/// # fn main() -> chancy::Result<()> {
/// use chancy::tooling::WorkerTooling;
/// use chancy::{Chancy, JobState, Queue, Worker};
/// let chancy = Chancy::builder("postgresql://localhost/postgres").build()?;
/// let worker = Worker::builder(&chancy).build()?;
/// let mut conn = chancy.connection()?;
/// let mut jobs = worker.fetch_jobs(&Queue::new("default"), &mut conn, 10)?;
/// for job in &mut jobs {
///     job.state = JobState::Succeeded;
///     job.completed_at = Some(chrono::Utc::now());
/// }
/// assert_eq!(worker.write_updates(&mut conn, &jobs)?, jobs.len());
/// # Ok(())
/// # }
/// ```
pub trait WorkerTooling: sealed::Sealed {
    /// Claims up to `up_to` jobs of `queue` for this worker on `conn` (the claim sets
    /// `running`, `started_at`, `taken_by` and a fresh `claim_id`, fenced by this worker's
    /// session tag), honouring the queue's rate limit, in Chancy's order (priority
    /// descending, then id). A claimed row another client wrote with kwargs that are not a
    /// JSON object or limits that cannot be read is not returned: its attempt fails at once
    /// with a `TypeError` / `ValueError` text (queued for the writer). Upstream:
    /// `Worker.fetch_jobs(queue, conn, up_to)`.
    ///
    /// # Errors
    /// When a statement fails.
    fn fetch_jobs(&self, queue: &Queue, conn: &mut Conn, up_to: usize) -> Result<Vec<QueuedJob>>;

    /// Writes outcomes now, on `conn`, the way the update writer writes one batch: one
    /// transaction, one fenced `UPDATE … FROM unnest(…)` (a row changes only while its
    /// `claim_id` still matches), the plugins' in-transaction hooks. Returns how many
    /// updates were accepted. After-commit hooks are not called.
    ///
    /// # Errors
    /// When a statement or a plugin hook fails (nothing is written then).
    fn write_updates(&self, conn: &mut Conn, jobs: &[QueuedJob]) -> Result<usize>;

    /// Queues an outcome for the writer thread (upstream: `Worker.queue_update`). Returns
    /// false (dropped) after the stop's cut-off. Blocks while the writer is far behind.
    fn queue_update(&self, job: QueuedJob) -> bool;

    /// Upserts this worker's row, prunes expired workers and NOTIFYs `worker.announced`, on
    /// `client` (commit is the caller's), as one heartbeat does (upstream:
    /// `Worker.announce_worker`). The row is written only while it is absent or belongs to
    /// this worker process (see [`Worker::start`]).
    ///
    /// # Errors
    /// When a statement fails; a configuration error when another live process holds this
    /// worker id's row.
    fn announce_worker<C: GenericClient>(&self, client: &mut C) -> Result<()>;

    /// The writer's queue of pending updates (upstream: `Worker.outgoing`); its size is
    /// [`Worker::pending_updates`].
    fn outgoing(&self) -> &Outgoing;
}

impl WorkerTooling for Worker {
    fn fetch_jobs(&self, queue: &Queue, conn: &mut Conn, up_to: usize) -> Result<Vec<QueuedJob>> {
        // Claimed by hand: the caller, not this worker, holds the claims.
        let claimed = fetch::fetch_jobs(&self.shared.queues.fetch, queue, conn, up_to)?;
        Ok(claimed.into_iter().map(|c| c.job).collect())
    }

    fn write_updates(&self, conn: &mut Conn, jobs: &[QueuedJob]) -> Result<usize> {
        let s = &self.shared;
        writer::write_batch(&s.chancy, s.config.synchronous_commit, conn, jobs, &[])
            .map(|accepted| accepted.len())
    }

    fn queue_update(&self, job: QueuedJob) -> bool {
        self.shared.outgoing.push(job, None)
    }

    fn announce_worker<C: GenericClient>(&self, client: &mut C) -> Result<()> {
        if heartbeat::announce(self.shared.me(), &self.shared.queue_names(), client)? {
            Ok(())
        } else {
            Err(Error::config(format!(
                "worker id {:?} is held by another process's live row",
                self.shared.worker_id
            )))
        }
    }

    fn outgoing(&self) -> &Outgoing {
        &self.shared.outgoing
    }
}
