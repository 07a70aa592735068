//! The claims this worker holds in memory, as guards.
//!
//! A claim (a job's `claim_id` set by this worker's fetch) is *held* from the moment the
//! fetch reads the claimed row until the writer has committed that job's outcome: the fetch
//! creates a [`ClaimGuard`] per claimed job, the guard travels with the job (the executor's
//! hand-off queue, the executor thread, the writer's queue `outgoing`) and the writer drops
//! it after the batch holding the outcome is written. A job abandoned on any path that never
//! writes its outcome (a plugin hook panicked, the writer's queue closed at the stop, a queue
//! reconfigured with jobs still in its hand-off queue) drops its guard there, so the claim is
//! released from memory at once.
//!
//! Who reads it: the heartbeat's orphan sweep (`heartbeat::release_orphans`) puts back to
//! `pending` every claim this worker holds in the *database* that is not held here (older
//! than a grace period, or at once after a claim whose response was lost). So a claim held
//! here too long would keep a lost job `running` until restart, and one released too early
//! would let a job run twice.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use crate::job::{ErrorRecord, JsonObject, QueuedJob};

/// The claim ids held in memory. Written by the fetch scheduler (new guards) and by whoever
/// drops a guard (the writer, an executor thread, a dropped hand-off queue); read by the
/// heartbeat's orphan sweep. A leaf lock: nothing else is locked while it is held.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    held: Mutex<HashSet<Uuid>>,
}

impl Claims {
    /// Holds the claim of `job` until the returned guard is dropped. A job without a claim
    /// id (never claimed by a worker) gets a guard that holds nothing.
    pub(crate) fn hold(self: &Arc<Self>, job: &QueuedJob) -> ClaimGuard {
        let claim = job.claim_id;
        if let Some(claim) = claim {
            self.held.lock().insert(claim);
        }
        ClaimGuard {
            claims: Arc::clone(self),
            claim,
            as_claimed: claim.map(|_| AsClaimed {
                meta: job.meta.clone(),
                errors: job.errors.clone(),
            }),
        }
    }

    /// Whether `claim` is held in memory now.
    #[cfg(test)]
    pub(crate) fn is_held(&self, claim: &Uuid) -> bool {
        self.held.lock().contains(claim)
    }

    /// The pairs of `(job id, claim id)` whose claim is *not* held in memory.
    pub(crate) fn not_held(
        &self,
        claimed: impl IntoIterator<Item = (Uuid, Uuid)>,
    ) -> Vec<(Uuid, Uuid)> {
        let held = self.held.lock();
        claimed
            .into_iter()
            .filter(|(_, claim)| !held.contains(claim))
            .collect()
    }

    /// How many claims are held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.lock().len()
    }
}

/// One claimed job's hold on its claim: dropping it releases the claim (see the module docs
/// for who drops it when).
#[derive(Debug)]
#[must_use = "the claim is released when the guard is dropped"]
pub(crate) struct ClaimGuard {
    claims: Arc<Claims>,
    claim: Option<Uuid>,
    /// The job's `meta` and `errors` as the claim read them (None for a job without a
    /// claim): the writer leaves a column the run did not change as the row holds it.
    as_claimed: Option<AsClaimed>,
}

#[derive(Debug)]
struct AsClaimed {
    meta: JsonObject,
    errors: Vec<ErrorRecord>,
}

/// Which jsonb columns of a job's outcome still hold what its claim read, so the writer
/// need not send them: an UPDATE that assigns a column a value from outside stores it
/// anew, and a value PostgreSQL had moved out of line (TOAST, over ~2 kB compressed) is
/// then written out again in full, WAL included; left as the row holds it, the new row
/// version keeps pointing at the stored value (BENCHMARKS.md, issue 19 third pass).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Unchanged {
    pub(crate) meta: bool,
    pub(crate) errors: bool,
}

impl ClaimGuard {
    /// Which of `outcome`'s `meta` and `errors` are as this guard's claim read them (none
    /// for a guard that holds no claim).
    pub(crate) fn unchanged(&self, outcome: &QueuedJob) -> Unchanged {
        match &self.as_claimed {
            Some(c) if self.claim == outcome.claim_id => Unchanged {
                meta: c.meta == outcome.meta,
                errors: c.errors == outcome.errors,
            },
            _ => Unchanged::default(),
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(claim) = self.claim {
            self.claims.held.lock().remove(&claim);
        }
    }
}

/// A claimed job with the guard that holds its claim: what the fetch hands to the executors.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) job: QueuedJob,
    pub(crate) guard: ClaimGuard,
}

impl Claimed {
    /// Holds the claim of `job` in `claims`.
    pub(crate) fn new(claims: &Arc<Claims>, job: QueuedJob) -> Claimed {
        let guard = claims.hold(&job);
        Claimed { job, guard }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::slots::JobQueue;
    use crate::worker::writer::Outgoing;
    use std::time::Duration;

    fn claimed(claims: &Arc<Claims>) -> (Uuid, Claimed) {
        let job = QueuedJob::claimed_for_test("f");
        let claim = job.claim_id.expect("a claimed job has a claim id");
        (claim, Claimed::new(claims, job))
    }

    #[test]
    fn a_claim_is_held_until_its_guard_is_dropped() {
        let claims = Arc::new(Claims::default());
        let (a, first) = claimed(&claims);
        let (b, second) = claimed(&claims);
        assert!(claims.is_held(&a) && claims.is_held(&b));
        let stranger = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            claims.not_held([(first.job.id, a), stranger]),
            vec![stranger],
            "the sweep sees only claims nobody holds"
        );
        drop(first);
        assert!(!claims.is_held(&a));
        assert!(claims.is_held(&b));
        drop(second);
        assert_eq!(claims.len(), 0);
    }

    #[test]
    fn a_guard_tells_which_of_meta_and_errors_the_run_left_as_claimed() {
        let claims = Arc::new(Claims::default());
        let mut job = QueuedJob::claimed_for_test("f");
        job.meta.insert("k".into(), serde_json::json!(1));
        let guard = claims.hold(&job);
        let both = Unchanged {
            meta: true,
            errors: true,
        };
        assert_eq!(guard.unchanged(&job), both);
        let mut outcome = job.clone();
        outcome.meta.insert("k".into(), serde_json::json!(2));
        assert_eq!(
            guard.unchanged(&outcome),
            Unchanged {
                meta: false,
                errors: true
            }
        );
        let mut outcome = job.clone();
        outcome.errors.push(ErrorRecord {
            attempt: 0,
            traceback: "boom".into(),
        });
        assert_eq!(
            guard.unchanged(&outcome),
            Unchanged {
                meta: true,
                errors: false
            }
        );
        let mut other_claim = job.clone();
        other_claim.claim_id = Some(Uuid::new_v4());
        assert_eq!(guard.unchanged(&other_claim), Unchanged::default());
        let mut unclaimed = job.clone();
        unclaimed.claim_id = None;
        let no_claim = claims.hold(&unclaimed);
        assert_eq!(no_claim.unchanged(&unclaimed), Unchanged::default());
    }

    #[test]
    fn a_job_without_a_claim_id_holds_nothing() {
        let claims = Arc::new(Claims::default());
        let mut job = QueuedJob::claimed_for_test("f");
        job.claim_id = None;
        let guard = claims.hold(&job);
        assert_eq!(claims.len(), 0);
        drop(guard);
        assert_eq!(claims.len(), 0);
    }

    #[test]
    fn a_claim_stays_held_through_the_hand_off_and_the_writer_queue() {
        let claims = Arc::new(Claims::default());
        let (claim, job) = claimed(&claims);
        let handoff: JobQueue<Claimed> = JobQueue::new(1, Duration::from_millis(10));
        assert!(handoff.push_all(vec![job]).is_ok());
        let Claimed { job, guard } = handoff.pop().expect("the job waits in the hand-off");
        assert!(claims.is_held(&claim), "held while the executor runs it");
        let outgoing = Outgoing::default();
        assert!(outgoing.push(job, Some(guard)));
        assert!(
            claims.is_held(&claim),
            "held while the outcome waits for the writer"
        );
        let (_, guard) = outgoing.try_take().expect("the outcome is queued");
        assert!(claims.is_held(&claim));
        drop(guard);
        assert!(
            !claims.is_held(&claim),
            "released once the writer is done with it"
        );
    }

    #[test]
    fn abandoned_claims_are_released() {
        let claims = Arc::new(Claims::default());
        // The writer's queue closed at the stop: the outcome is dropped, the claim released.
        let (claim, Claimed { job, guard }) = claimed(&claims);
        let outgoing = Outgoing::default();
        outgoing.close();
        assert!(!outgoing.push(job, Some(guard)));
        assert!(!claims.is_held(&claim));
        // A hand-off queue dropped with jobs nobody ran (a queue rebuilt or removed).
        let (claim, job) = claimed(&claims);
        let handoff: JobQueue<Claimed> = JobQueue::new(1, Duration::from_millis(10));
        assert!(handoff.push_all(vec![job]).is_ok());
        drop(handoff);
        assert!(!claims.is_held(&claim));
        // A closed hand-off queue hands the jobs back; dropping them releases the claims.
        let (claim, job) = claimed(&claims);
        let handoff: JobQueue<Claimed> = JobQueue::new(1, Duration::from_millis(10));
        handoff.close();
        drop(handoff.push_all(vec![job]).expect_err("closed"));
        assert!(!claims.is_held(&claim));
        assert_eq!(claims.len(), 0);
    }
}
