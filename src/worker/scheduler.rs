//! The fetch scheduler: [`DEFAULT_FETCH_THREADS`] threads that visit every served queue when
//! woken (NOTIFY, a freed slot, a reconnect) or due (`polling_interval`, first thread only,
//! quiet queues probed together), and claim on a connection borrowed from the application
//! pool. A queue is visited by one thread at a time (the others skip it). No queue owns a
//! thread or a connection, so a worker's threads and connections do not grow with its number
//! of queues.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetch_conn::FetchConn;
use super::runner::QueueDeps;
use super::runner::QueueRunner;

/// Longest sleep of the scheduler between visits when no queue is due sooner.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Default number of fetch threads: each borrows a connection while it is busy and visits
/// the queues the others are not visiting, so claims of different queues run in parallel.
pub(crate) const DEFAULT_FETCH_THREADS: usize = 2;

/// The queues whose polling timer is due that have nothing to claim, found with one
/// statement (so an idle worker with many queues costs one query per polling interval, not
/// one claim per queue). Empty when the probe could not run: then every due queue claims.
fn probe(deps: &QueueDeps, fetch: &mut FetchConn, runners: &[Arc<QueueRunner>]) -> HashSet<String> {
    if deps.shutdown.is_triggered() {
        return HashSet::new();
    }
    let now = Instant::now();
    let due: Vec<String> = runners.iter().filter_map(|r| r.due_for_poll(now)).collect();
    if due.len() < 2 {
        return HashSet::new();
    }
    let Some(conn) = fetch.get(&deps.fetch) else {
        return HashSet::new();
    };
    match super::fetch::queues_with_work(&deps.fetch, conn, &due) {
        Ok(with_work) => due.into_iter().filter(|q| !with_work.contains(q)).collect(),
        Err(err) => {
            fetch.discard();
            log::warn!(
                "chancy-fetch: probing {} queue(s) for work failed: {err}",
                due.len()
            );
            HashSet::new()
        }
    }
}

/// The scheduler thread's body: visits until shutdown, then until every queue's running jobs
/// are done (or the stop gave up waiting for them).
pub(crate) fn run(deps: Arc<QueueDeps>, index: usize) {
    let mut fetch = FetchConn::new();
    let wake = Arc::clone(&deps.fetch_wake.flags()[index]);
    loop {
        let runners: Vec<Arc<QueueRunner>> = deps.runners.lock().values().cloned().collect();
        let mut next = Instant::now() + IDLE_WAIT;
        let timer_polls = index == 0;
        let without_work = if timer_polls {
            probe(&deps, &mut fetch, &runners)
        } else {
            HashSet::new()
        };
        for runner in &runners {
            if let Some(at) = runner.visit(&deps, &mut fetch, &without_work, timer_polls) {
                next = next.min(at);
            }
        }
        fetch.release_if_unneeded(&deps.fetch);
        if deps.shutdown.is_triggered() {
            fetch.release();
            let all_done = runners.iter().all(|r| r.finished.is_set());
            if all_done || !deps.fetch.outgoing.is_accepting() {
                break;
            }
        }
        wake.wait_and_clear(next.saturating_duration_since(Instant::now()));
    }
    log::debug!("fetch scheduler of {} finished", deps.fetch.me.worker_id);
}
