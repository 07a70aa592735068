//! The executions running in this worker, so `job.cancelled` / `job.recovered` events can
//! reach them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

struct Execution {
    key: u64,
    claim_id: Option<Uuid>,
    cancelled: Arc<AtomicBool>,
}

/// Running executions by job id.
#[derive(Default)]
pub(crate) struct Executions {
    next: AtomicU64,
    by_job: Mutex<HashMap<Uuid, Vec<Execution>>>,
}

/// Unregisters its execution when dropped.
pub(crate) struct ExecutionGuard<'a> {
    executions: &'a Executions,
    job_id: Uuid,
    key: u64,
    pub(crate) cancelled: Arc<AtomicBool>,
}

impl Executions {
    pub(crate) fn register(&self, job_id: Uuid, claim_id: Option<Uuid>) -> ExecutionGuard<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let cancelled = Arc::new(AtomicBool::new(false));
        self.by_job
            .lock()
            .entry(job_id)
            .or_default()
            .push(Execution {
                key,
                claim_id,
                cancelled: Arc::clone(&cancelled),
            });
        ExecutionGuard {
            executions: self,
            job_id,
            key,
            cancelled,
        }
    }

    /// Cancels every execution of `job_id`; returns how many.
    pub(crate) fn cancel_job(&self, job_id: Uuid) -> usize {
        self.cancel_where(job_id, |_| true)
    }

    /// Cancels the execution of `job_id` under `claim_id` only.
    pub(crate) fn cancel_execution(&self, job_id: Uuid, claim_id: Uuid) -> usize {
        self.cancel_where(job_id, |e| e.claim_id == Some(claim_id))
    }

    /// Cancels everything (used when a stop runs past its timeout).
    pub(crate) fn cancel_all(&self) -> usize {
        let map = self.by_job.lock();
        let mut n = 0;
        for e in map.values().flatten() {
            e.cancelled.store(true, Ordering::Relaxed);
            n += 1;
        }
        n
    }

    fn cancel_where(&self, job_id: Uuid, pred: impl Fn(&Execution) -> bool) -> usize {
        let map = self.by_job.lock();
        let mut n = 0;
        for e in map.get(&job_id).into_iter().flatten().filter(|e| pred(e)) {
            e.cancelled.store(true, Ordering::Relaxed);
            n += 1;
        }
        n
    }

    /// Running executions not yet told to stop, as (job id, claim id): what the
    /// cancellation poll checks (an execution already told is not reported again, however
    /// long its handler takes to notice).
    pub(crate) fn running_uncancelled(&self) -> Vec<(Uuid, Option<Uuid>)> {
        let map = self.by_job.lock();
        map.iter()
            .flat_map(|(job, list)| {
                list.iter()
                    .filter(|e| !e.cancelled.load(Ordering::Relaxed))
                    .map(|e| (*job, e.claim_id))
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_job.lock().values().map(Vec::len).sum()
    }
}

impl Drop for ExecutionGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.executions.by_job.lock();
        if let Some(list) = map.get_mut(&self.job_id) {
            list.retain(|e| e.key != self.key);
            if list.is_empty() {
                map.remove(&self.job_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_by_job_and_by_claim() {
        let ex = Executions::default();
        let job = Uuid::new_v4();
        let (c1, c2) = (Uuid::new_v4(), Uuid::new_v4());
        let a = ex.register(job, Some(c1));
        let b = ex.register(job, Some(c2));
        assert_eq!(ex.cancel_execution(job, c2), 1);
        assert!(!a.cancelled.load(Ordering::Relaxed));
        assert!(b.cancelled.load(Ordering::Relaxed));
        assert_eq!(ex.cancel_job(job), 2);
        drop(a);
        drop(b);
        assert_eq!(ex.len(), 0);
    }
}
