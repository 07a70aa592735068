//! Queue maintenance: starts, retunes and stops one runner per queue whose tags match this
//! worker, on `queue.*` events or every `queue_change_poll_interval`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::runner::QueueRunner;
use super::WorkerShared;
use crate::error::Result;

/// Most (queue, tag list) verdicts remembered by [`serves`].
const TAG_CACHE_LIMIT: usize = 10_000;

/// Whether this worker serves `queue`: `Err` with the reason when the row is out of bounds or
/// unusable ([`crate::Queue::validate`]), else whether its tag regexes match this worker. The
/// tag part (validating and matching compile every regex) is remembered per queue and tag
/// list: compiling the regexes of 500 queues on every pass cost more CPU than everything else
/// an idle worker does.
fn serves(shared: &WorkerShared, queue: &crate::queue::Queue) -> std::result::Result<bool, String> {
    queue.validate_settings().map_err(|e| e.to_string())?;
    let key = (queue.name.clone(), queue.tags.clone());
    let mut cache = shared.tag_matches.lock();
    if let Some(verdict) = cache.get(&key) {
        return verdict.clone();
    }
    if cache.len() >= TAG_CACHE_LIMIT {
        cache.clear();
    }
    let verdict = queue
        .validate_tags()
        .map(|()| queue.matches_tags(&shared.tags))
        .map_err(|e| e.to_string());
    cache.insert(key, verdict.clone());
    verdict
}

/// How often the same unusable queue row is logged again at ERROR.
const REPEAT_UNUSABLE_LOG: Duration = Duration::from_secs(600);

thread_local! {
    /// Unusable queue rows this worker's queues thread logged: name → (reason, when).
    static UNUSABLE: RefCell<HashMap<String, (String, Instant)>> = RefCell::new(HashMap::new());
}

/// Logs an unusable queue row at ERROR when it is new, its reason changed or it was last
/// logged [`REPEAT_UNUSABLE_LOG`] ago; at DEBUG otherwise (the queues pass runs every few
/// seconds).
fn report_unusable(name: &str, reason: &str) {
    let fresh = UNUSABLE.with(|seen| {
        let mut seen = seen.borrow_mut();
        let fresh = !seen
            .get(name)
            .is_some_and(|(r, at)| r == reason && at.elapsed() < REPEAT_UNUSABLE_LOG);
        if fresh {
            seen.insert(name.to_string(), (reason.to_string(), Instant::now()));
        }
        fresh
    });
    if fresh {
        log::error!("chancy-queues: not serving queue {name:?}: {reason}");
    } else {
        log::debug!("chancy-queues: still not serving queue {name:?}: {reason}");
    }
}

/// One pass: reconcile the runners with the queues table.
pub(crate) fn reconcile(shared: &Arc<WorkerShared>) -> Result<()> {
    let mut unreadable = Vec::new();
    let mut wanted = Vec::new();
    for (name, row) in shared.chancy.read_queue_rows()? {
        match row {
            Ok(q) => match serves(shared, &q) {
                Ok(true) => wanted.push(q),
                Ok(false) => {}
                Err(reason) => {
                    // Out of bounds or unusable (say concurrency 2147483647 or a tag that is
                    // not a regex, written by another client): never served with such
                    // settings, whatever its tags; the other queues are served.
                    report_unusable(&name, &reason);
                    unreadable.push(name);
                }
            },
            Err(err) => {
                // Written by another client with values chancy cannot read: skip it (a
                // runner already serving it keeps its last good settings), serve the rest.
                log::error!("chancy-queues: ignoring queue {name:?}: {err}");
                unreadable.push(name);
            }
        }
    }
    // A row fixed since is logged again if it breaks again.
    UNUSABLE.with(|seen| seen.borrow_mut().retain(|n, _| unreadable.contains(n)));
    let names: HashSet<&str> = wanted
        .iter()
        .map(|q| q.name.as_str())
        .chain(unreadable.iter().map(String::as_str))
        .collect();
    let mut runners = shared.runners.lock();
    for (name, runner) in runners.iter() {
        if !names.contains(name.as_str()) {
            runner.remove();
        }
    }
    runners.retain(|name, runner| names.contains(name.as_str()) || !runner.finished.is_set());
    for queue in wanted {
        match runners.get(&queue.name) {
            Some(runner) if !runner.removed.load(std::sync::atomic::Ordering::SeqCst) => {
                let mut desired = runner.desired.lock();
                if *desired != queue {
                    *desired = queue;
                    runner.wake.set();
                }
            }
            Some(_) => {}
            None => {
                if shared.shutdown.is_triggered() {
                    break;
                }
                let name = queue.name.clone();
                runners.insert(name, QueueRunner::start(shared, queue));
            }
        }
    }
    Ok(())
}
