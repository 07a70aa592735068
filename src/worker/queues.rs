//! Queue maintenance: starts, retunes and stops one runner per queue whose tags match this
//! worker, on `queue.*` events or every `queue_change_poll_interval`.

use std::collections::HashSet;
use std::sync::Arc;

use super::runner::QueueRunner;
use super::WorkerShared;
use crate::error::Result;

/// Most distinct tag lists remembered by [`matches`].
const TAG_CACHE_LIMIT: usize = 10_000;

/// Whether `queue`'s tag regexes match this worker, remembered per tag list: compiling the
/// regexes of 500 queues on every pass cost more CPU than everything else an idle worker does.
fn matches(shared: &WorkerShared, queue: &crate::Queue) -> bool {
    let mut cache = shared.tag_matches.lock();
    if let Some(hit) = cache.get(&queue.tags) {
        return *hit;
    }
    if cache.len() >= TAG_CACHE_LIMIT {
        cache.clear();
    }
    let hit = queue.matches_tags(&shared.tags);
    cache.insert(queue.tags.clone(), hit);
    hit
}

/// One pass: reconcile the runners with the queues table.
pub(crate) fn reconcile(shared: &Arc<WorkerShared>) -> Result<()> {
    let mut unreadable = Vec::new();
    let mut wanted = Vec::new();
    for (name, row) in shared.chancy.read_queue_rows()? {
        match row {
            Ok(q) if matches(shared, &q) => wanted.push(q),
            Ok(_) => {}
            Err(err) => {
                // Written by another client with values chancy cannot read: skip it (a
                // runner already serving it keeps its last good settings), serve the rest.
                log::error!("chancy-queues: ignoring queue {name:?}: {err}");
                unreadable.push(name);
            }
        }
    }
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
