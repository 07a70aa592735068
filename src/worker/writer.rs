//! The update writer: one thread that batches job outcomes and writes each batch with one
//! fenced statement per round, retrying on database errors without losing anything.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Atomics: `accepting` and `pending` use SeqCst so a push that saw `accepting` is counted
// before the stop reads `pending` to decide the last flush (no outcome can slip past the
// final batch). Per outcome, not per row; the cost does not show in profiles.

use chrono::{DateTime, Utc};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde_json::Value;
use uuid::Uuid;

use super::backoff::Backoff;
use super::claims::{ClaimGuard, Unchanged};
use super::connections::Connections;
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::pool::{Conn, PooledConn};

/// Most outcomes per batch.
pub(crate) const MAX_BATCH: usize = 1000;
/// Outcomes waiting for the writer before executors block (backpressure).
pub(crate) const HIGH_WATER: usize = 20_000;
/// The writer gives its pooled connection back after this long without outcomes.
const RELEASE_IDLE: Duration = Duration::from_secs(1);
/// Longest single wait for a pooled connection (the wait repeats; a short one lets the
/// writer log and notice shutdown).
const CONNECTION_WAIT: Duration = Duration::from_secs(2);

/// An outcome waiting for the writer, with the guard holding its claim (none for outcomes
/// queued with [`Worker::queue_update`](super::Worker::queue_update)): the writer drops the
/// guard once the outcome's batch is written.
type Pending = (QueuedJob, Option<ClaimGuard>);

/// The queue of pending updates (`outgoing`): executors put outcomes in, the writer takes
/// them out.
pub struct Outgoing {
    tx: Sender<Pending>,
    rx: Receiver<Pending>,
    accepting: AtomicBool,
    pending: AtomicUsize,
}

impl Default for Outgoing {
    fn default() -> Self {
        let (tx, rx) = bounded(HIGH_WATER);
        Outgoing {
            tx,
            rx,
            accepting: AtomicBool::new(true),
            pending: AtomicUsize::new(0),
        }
    }
}

impl Outgoing {
    /// Queues an update with the guard of its claim; false (dropped, and the claim released)
    /// once the worker's stop has passed its cut-off. Blocks while the writer is `HIGH_WATER`
    /// updates behind.
    pub(crate) fn push(&self, job: QueuedJob, claim: Option<ClaimGuard>) -> bool {
        if !self.accepting.load(Ordering::SeqCst) {
            return false;
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send((job, claim)).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Updates queued or being written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Takes one queued update without the writer (tests).
    #[cfg(test)]
    pub(crate) fn try_take(&self) -> Option<Pending> {
        let taken = self.rx.try_recv().ok()?;
        self.pending.fetch_sub(1, Ordering::SeqCst);
        Some(taken)
    }
}

/// A batch the writer committed: every outcome it wrote (`jobs`) and those the database
/// accepted (`accepted`: their row still carried the outcome's claim), in batch order.
pub(crate) struct CommittedBatch<'a> {
    pub(crate) jobs: &'a [QueuedJob],
    pub(crate) accepted: Vec<&'a QueuedJob>,
}

type Subscriber = Arc<dyn Fn(&CommittedBatch<'_>) + Send + Sync>;

/// "Batch committed": the writer publishes each committed batch here instead of calling
/// whoever cares (eager queues, plugins' `on_jobs_updated`); they subscribe once, at start.
/// Subscribers run on the writer thread after the commit, in subscription order, with no
/// lock held; one that panics is logged and the others still run.
#[derive(Default)]
pub(crate) struct Committed {
    subscribers: parking_lot::RwLock<Vec<(String, Subscriber)>>,
}

impl Committed {
    /// Adds `subscriber`, named `name` in the log should it panic.
    pub(crate) fn subscribe(
        &self,
        name: impl Into<String>,
        subscriber: impl Fn(&CommittedBatch<'_>) + Send + Sync + 'static,
    ) {
        self.subscribers
            .write()
            .push((name.into(), Arc::new(subscriber)));
    }

    /// Tells every subscriber about `batch`.
    pub(crate) fn publish(&self, batch: &CommittedBatch<'_>) {
        let subscribers = self.subscribers.read().clone();
        for (name, subscriber) in &subscribers {
            let call = std::panic::AssertUnwindSafe(|| subscriber(batch));
            if std::panic::catch_unwind(call).is_err() {
                log::error!("chancy-writer: {name} panicked on a committed batch");
            }
        }
    }
}

/// What the writer thread uses, and nothing else of the worker.
pub(crate) struct WriterDeps {
    pub(crate) chancy: Chancy,
    pub(crate) worker_id: String,
    /// Executors put outcomes in; this thread takes them out.
    pub(crate) outgoing: Arc<Outgoing>,
    pub(crate) connections: Arc<Connections>,
    /// Where committed batches are published.
    pub(crate) committed: Arc<Committed>,
    /// `WorkerBuilder::synchronous_commit`.
    pub(crate) synchronous_commit: bool,
    /// The batching window after a batch's first outcome.
    pub(crate) send_outgoing_interval: Duration,
    /// After the stop's cut-off, how long a failing write is retried before giving up.
    pub(crate) shutdown_timeout: Duration,
    /// Retry backoff: first and largest delay.
    pub(crate) backoff: (Duration, Duration),
}

/// The writer thread's body.
pub(crate) fn run(w: WriterDeps) {
    // Borrowed from the application pool while outcomes keep coming, given back when idle:
    // the writer owns no connection of its own (see README, "Connections").
    let mut conn: Option<PooledConn> = None;
    let mut last_write = Instant::now();
    let mut backoff = Backoff::new(w.backoff.0, w.backoff.1);
    let out = &w.outgoing;
    loop {
        let first = match out.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) if out.is_accepting() || !out.rx.is_empty() => {
                if conn.is_some() && last_write.elapsed() >= RELEASE_IDLE {
                    conn = None;
                }
                continue;
            }
            Err(_) => break,
        };
        let gathered = gather(&out.rx, first, w.send_outgoing_interval);
        let unchanged: Vec<Unchanged> = gathered
            .iter()
            .map(|(job, claim)| claim.as_ref().map(|c| c.unchanged(job)).unwrap_or_default())
            .collect();
        let (batch, claims): (Vec<QueuedJob>, Vec<Option<ClaimGuard>>) =
            gathered.into_iter().unzip();
        let n = batch.len();
        write_until_done(&w, &mut conn, &mut backoff, batch, unchanged, Attempt::AsIs);
        last_write = Instant::now();
        if w.connections.wanted() {
            // Another loop of this worker (or your code) may be waiting for a connection.
            conn = None;
        }
        // Written (or, at a stop that outlived the database, given up): the claims are no
        // longer held, so the orphan sweep may release any row the write did not reach.
        drop(claims);
        out.pending.fetch_sub(n, Ordering::SeqCst);
    }
    log::debug!("update writer of {} finished", w.worker_id);
}

/// `first` plus whatever arrives within `window` of it, up to [`MAX_BATCH`].
fn gather(rx: &Receiver<Pending>, first: Pending, window: Duration) -> Vec<Pending> {
    let deadline = crate::duration::deadline(Instant::now(), window);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => match rx.recv_deadline(deadline) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            },
        }
    }
    batch
}

/// How [`write_until_done`] treats a batch the database refuses as data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The outcomes as the executors produced them.
    AsIs,
    /// One outcome already refused: its meta dropped and a note added.
    Degraded,
}

fn write_until_done(
    w: &WriterDeps,
    conn: &mut Option<PooledConn>,
    backoff: &mut Backoff,
    batch: Vec<QueuedJob>,
    unchanged: Vec<Unchanged>,
    attempt: Attempt,
) {
    let give_up_after = w.shutdown_timeout;
    let mut closed_since: Option<Instant> = None;
    loop {
        let written = connected(&w.connections, conn)
            .and_then(|c| write_batch(&w.chancy, w.synchronous_commit, c, &batch, &unchanged));
        match written {
            Ok(accepted) => {
                backoff.reset();
                w.committed.publish(&CommittedBatch {
                    accepted: batch.iter().filter(|j| accepted.contains(&j.id)).collect(),
                    jobs: &batch,
                });
                return;
            }
            Err(err) if err.is_rejected_data() => {
                // Retrying the same values cannot succeed, and must not hold up every other
                // outcome: find the culprit alone and store it without what was refused.
                reject(w, conn, backoff, batch, unchanged, attempt, &err);
                return;
            }
            Err(err) => {
                if let Some(mut c) = conn.take() {
                    c.discard();
                }
                let delay = backoff.fail();
                log::error!(
                    "chancy-writer: writing {} job update(s) failed (attempt {}), retrying in {delay:?}: {err}",
                    batch.len(),
                    backoff.failures()
                );
                if !w.outgoing.is_accepting() {
                    let since = *closed_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > give_up_after {
                        let ids: Vec<String> = batch.iter().map(|j| j.id.to_string()).collect();
                        log::error!(
                            "chancy-writer: giving up at shutdown; these jobs stay running until \
                             recovery: {}",
                            ids.join(", ")
                        );
                        return;
                    }
                }
                std::thread::sleep(delay);
            }
        }
    }
}

/// A batch the database refused as data: several outcomes are written one by one; a single
/// one is written again without its meta and with a note in its errors; if even that is
/// refused it is dropped with an error log (the row stays `running` until the heartbeat's
/// orphan sweep releases it).
fn reject(
    w: &WriterDeps,
    conn: &mut Option<PooledConn>,
    backoff: &mut Backoff,
    batch: Vec<QueuedJob>,
    unchanged: Vec<Unchanged>,
    attempt: Attempt,
    err: &Error,
) {
    if batch.len() > 1 {
        log::warn!(
            "chancy-writer: the database refused a batch of {} job updates ({err}); writing them one by one",
            batch.len()
        );
        let mut unchanged = unchanged.into_iter();
        for job in batch {
            let u = unchanged.next().unwrap_or_default();
            write_until_done(w, conn, backoff, vec![job], vec![u], Attempt::AsIs);
        }
        return;
    }
    let Some(mut job) = batch.into_iter().next() else {
        return;
    };
    if attempt == Attempt::Degraded {
        log::error!(
            "chancy-writer: the database refused even the reduced outcome of job {} ({err}); \
             dropping it, the row stays running until the orphan sweep releases it",
            job.id
        );
        return;
    }
    log::error!(
        "chancy-writer: the database refused the outcome of job {} ({:?}): {err}; storing it \
         without its meta",
        job.id,
        job.func
    );
    job.meta = serde_json::Map::new();
    job.errors.push(crate::job::ErrorRecord {
        attempt: i64::from(job.attempts - 1),
        traceback: format!(
            "chancy: the database refused this attempt's outcome as written ({err}); it was \
             stored without its meta"
        ),
    });
    // Both columns changed now: written as they are.
    write_until_done(w, conn, backoff, vec![job], Vec::new(), Attempt::Degraded);
}

/// The writer's connection, borrowed from the application pool if it holds none. When the
/// pool cannot give one the error (with the server's message) goes to the caller, which logs
/// it, keeps the batch and retries with backoff.
fn connected<'a>(
    connections: &Connections,
    conn: &'a mut Option<PooledConn>,
) -> Result<&'a mut Conn> {
    if conn.is_none() {
        *conn = Some(connections.borrow(CONNECTION_WAIT)?);
    }
    Ok(&mut **conn.as_mut().expect("connection was just set"))
}

/// Writes one batch in one transaction (with the plugins' in-transaction hooks); returns the
/// ids whose update was accepted. `synchronous_commit`: `WorkerBuilder::synchronous_commit`.
/// `unchanged`: per job of `batch` (or empty: every column written), whether its `meta` and
/// `errors` are as its claim read them; those are sent as NULL and left as the row holds
/// them.
pub(crate) fn write_batch(
    chancy: &Chancy,
    synchronous_commit: bool,
    c: &mut Conn,
    batch: &[QueuedJob],
    unchanged: &[Unchanged],
) -> Result<HashSet<Uuid>> {
    let stmt = c.statement(&chancy.sql().update_batch)?;
    let mut tx = c
        .client
        .transaction()
        .map_err(|e| Error::database("writing job updates", e))?;
    if !synchronous_commit {
        // Local to this transaction: the connection goes back to the application's pool.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .map_err(|e| Error::database("setting synchronous_commit", e))?;
    }
    let mut accepted = HashSet::with_capacity(batch.len());
    for round in rounds(batch) {
        let cols = UpdateColumns::from_jobs(&round, unchanged);
        let local_now = chrono::Utc::now();
        let rows = stmt
            .query(
                &mut tx,
                &[
                    &cols.ids,
                    &cols.claims,
                    &cols.states,
                    &cols.started,
                    &cols.completed,
                    &cols.scheduled,
                    &cols.attempts,
                    &cols.errors,
                    &cols.metas,
                    &cols.max_attempts,
                    &local_now,
                ],
            )
            .map_err(|e| Error::database("writing job updates", e))?;
        accepted.extend(rows.iter().map(|r| r.get::<_, Uuid>(0)));
    }
    let accepted_jobs: Vec<&QueuedJob> =
        batch.iter().filter(|j| accepted.contains(&j.id)).collect();
    for plugin in chancy.plugins() {
        plugin.on_jobs_updated_in_transaction(chancy, &accepted_jobs, &mut tx)?;
    }
    tx.commit()
        .map_err(|e| Error::database("committing job updates", e))?;
    Ok(accepted)
}

/// The jobs of one statement of a batch, each with its index in the batch.
type Round<'a> = Vec<(usize, &'a QueuedJob)>;

/// Splits a batch into rounds with distinct job ids (an UPDATE … FROM touches a row once),
/// each sorted by `(unique_key or "", id)` — the lock order pushes use too. Each job comes
/// with its index in `batch`.
fn rounds(batch: &[QueuedJob]) -> Vec<Round<'_>> {
    let mut rounds: Vec<(HashSet<Uuid>, Round<'_>)> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        match rounds.iter_mut().find(|(ids, _)| !ids.contains(&job.id)) {
            Some((ids, jobs)) => {
                ids.insert(job.id);
                jobs.push((i, job));
            }
            None => rounds.push((HashSet::from([job.id]), vec![(i, job)])),
        }
    }
    rounds
        .into_iter()
        .map(|(_, mut jobs)| {
            jobs.sort_by(|(_, a), (_, b)| {
                let ka = a.unique_key.as_deref().unwrap_or("");
                let kb = b.unique_key.as_deref().unwrap_or("");
                ka.cmp(kb).then(a.id.cmp(&b.id))
            });
            jobs
        })
        .collect()
}

struct UpdateColumns {
    ids: Vec<Uuid>,
    claims: Vec<Option<Uuid>>,
    states: Vec<&'static str>,
    started: Vec<Option<DateTime<Utc>>>,
    completed: Vec<Option<DateTime<Utc>>>,
    scheduled: Vec<DateTime<Utc>>,
    attempts: Vec<i32>,
    /// None: as the claim read it (left as the row holds it).
    errors: Vec<Option<Value>>,
    metas: Vec<Option<Value>>,
    max_attempts: Vec<i32>,
}

impl UpdateColumns {
    fn from_jobs(round: &[(usize, &QueuedJob)], unchanged: &[Unchanged]) -> UpdateColumns {
        let kept = |i: usize| unchanged.get(i).copied().unwrap_or_default();
        let jobs: Vec<&QueuedJob> = round.iter().map(|(_, j)| *j).collect();
        UpdateColumns {
            ids: jobs.iter().map(|j| j.id).collect(),
            claims: jobs.iter().map(|j| j.claim_id).collect(),
            states: jobs.iter().map(|j| j.state.as_str()).collect(),
            started: jobs.iter().map(|j| j.started_at).collect(),
            completed: jobs.iter().map(|j| j.completed_at).collect(),
            scheduled: jobs.iter().map(|j| j.scheduled_at).collect(),
            attempts: jobs.iter().map(|j| j.attempts).collect(),
            errors: round
                .iter()
                .map(|&(i, j)| (!kept(i).errors).then(|| without_nul(serde_json::json!(j.errors))))
                .collect(),
            metas: round
                .iter()
                .map(|&(i, j)| (!kept(i).meta).then(|| without_nul(Value::Object(j.meta.clone()))))
                .collect(),
            max_attempts: jobs.iter().map(|j| j.max_attempts).collect(),
        }
    }
}

/// PostgreSQL's `jsonb` cannot hold the character U+0000 (`\u0000`), which a handler's meta
/// or error text may contain: it is replaced by U+FFFD in every string and key.
fn without_nul(value: Value) -> Value {
    fn clean(v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.replace('\0', "\u{FFFD}")),
            Value::Array(a) => Value::Array(a.into_iter().map(clean).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), clean(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    if crate::job::json_has_nul(&value) {
        clean(value)
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: Uuid, key: Option<&str>) -> QueuedJob {
        QueuedJob {
            id,
            unique_key: key.map(str::to_string),
            ..QueuedJob::claimed_for_test("f")
        }
    }

    fn ids(round: &[(usize, &QueuedJob)]) -> Vec<Uuid> {
        round.iter().map(|(_, j)| j.id).collect()
    }

    #[test]
    fn a_batch_of_distinct_jobs_is_one_round_in_lock_order() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let batch = vec![job(c, None), job(b, Some("k")), job(a, None)];
        let rounds = rounds(&batch);
        assert_eq!(rounds.len(), 1);
        // (unique_key or "", id): the unkeyed jobs first by id, then the keyed one.
        assert_eq!(ids(&rounds[0]), vec![a, c, b]);
        assert!(super::rounds(&[]).is_empty());
    }

    #[test]
    fn outcomes_of_one_job_go_to_successive_rounds_in_batch_order() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut first = job(a, None);
        first.attempts = 1;
        let mut second = job(a, None);
        second.attempts = 2;
        let mut third = job(a, None);
        third.attempts = 3;
        let batch = vec![first, job(b, None), second, third];
        let rounds = rounds(&batch);
        assert_eq!(rounds.len(), 3, "an UPDATE … FROM touches a row once");
        assert_eq!(ids(&rounds[0]), vec![a, b]);
        assert_eq!(ids(&rounds[1]), vec![a]);
        assert_eq!(ids(&rounds[2]), vec![a]);
        let attempts: Vec<i32> = rounds.iter().map(|r| r[0].1.attempts).collect();
        assert_eq!(attempts, vec![1, 2, 3], "the later outcome is written last");
        for round in &rounds {
            let distinct: HashSet<Uuid> = round.iter().map(|(_, j)| j.id).collect();
            assert_eq!(distinct.len(), round.len());
        }
    }

    #[test]
    fn committed_batches_reach_every_subscriber_in_order_even_past_a_panic() {
        let committed = Committed::default();
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let first = Arc::clone(&seen);
        committed.subscribe("first", move |b| {
            first.lock().push(("first", b.accepted.len()))
        });
        committed.subscribe("panicking", |_| panic!("a subscriber fails"));
        let last = Arc::clone(&seen);
        committed.subscribe("last", move |b| last.lock().push(("last", b.jobs.len())));
        let jobs = vec![job(Uuid::from_u128(1), None), job(Uuid::from_u128(2), None)];
        committed.publish(&CommittedBatch {
            jobs: &jobs,
            accepted: vec![&jobs[0]],
        });
        assert_eq!(*seen.lock(), vec![("first", 1), ("last", 2)]);
    }

    #[test]
    fn nul_characters_are_replaced_everywhere_and_clean_values_are_untouched() {
        let dirty = json!({"a\0": ["x\0y", {"k": "\0"}], "n": 1});
        assert_eq!(
            without_nul(dirty),
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "n": 1})
        );
        let clean = json!({"a": ["b", 2, null, {"c": true}]});
        assert_eq!(without_nul(clean.clone()), clean);
    }
}
