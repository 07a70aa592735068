//! Queue maintenance: starts, retunes and stops one runner per queue whose tags match this
//! worker, on `queue.*` events or every `queue_change_poll_interval`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::runner::{QueueDeps, QueueRunner};
use crate::error::Result;
use crate::queue::Queue;

/// Verdicts of the queues loop on tag lists, see [`serves`].
pub(crate) type TagVerdicts =
    HashMap<(String, BTreeSet<String>), std::result::Result<bool, String>>;

/// What queue maintenance uses, and nothing else of the worker: built once in
/// `WorkerBuilder::build`, held by the `queues` loop only.
pub(crate) struct MaintenanceDeps {
    /// The scheduler's side: the runners map it writes, the client it reads the queues
    /// table with, the worker's tags, and what a new runner needs.
    pub(crate) queues: Arc<QueueDeps>,
    /// (queue, tag list) → whether the tags are usable and match this worker. Only the
    /// queues loop locks it (a leaf).
    pub(crate) tag_matches: Mutex<TagVerdicts>,
}

/// Most (queue, tag list) verdicts remembered by [`serves`].
const TAG_CACHE_LIMIT: usize = 10_000;

/// Whether this worker serves `queue`: `Err` with the reason when the row is out of bounds or
/// unusable ([`crate::Queue::validate`]), else whether its tag regexes match this worker. The
/// tag part (validating and matching compile every regex) is remembered per queue and tag
/// list: compiling the regexes of 500 queues on every pass cost more CPU than everything else
/// an idle worker does.
fn serves(
    deps: &MaintenanceDeps,
    queue: &crate::queue::Queue,
) -> std::result::Result<bool, String> {
    queue.validate_settings().map_err(|e| e.to_string())?;
    let key = (queue.name.clone(), queue.tags.clone());
    let mut cache = deps.tag_matches.lock();
    if let Some(verdict) = cache.get(&key) {
        return verdict.clone();
    }
    if cache.len() >= TAG_CACHE_LIMIT {
        cache.clear();
    }
    let verdict = queue
        .validate_tags()
        .map(|()| queue.matches_tags(&deps.queues.fetch.me.tags))
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
pub(crate) fn reconcile(deps: &MaintenanceDeps) -> Result<()> {
    let mut unreadable = Vec::new();
    let mut wanted = Vec::new();
    for (name, row) in deps.queues.fetch.me.chancy.read_queue_rows()? {
        match row {
            Ok(q) => match serves(deps, &q) {
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
                // Logged like an unusable row: once per reason, not on every pass.
                report_unusable(&name, &format!("cannot read its row: {err}"));
                unreadable.push(name);
            }
        }
    }
    // A row fixed since is logged again if it breaks again.
    UNUSABLE.with(|seen| seen.borrow_mut().retain(|n, _| unreadable.contains(n)));
    let mut runners = deps.queues.runners.lock();
    let running: HashMap<&str, Running> = runners
        .iter()
        .map(|(name, r)| {
            let state = Running {
                removed: r.removed.load(std::sync::atomic::Ordering::SeqCst),
                finished: r.finished.is_set(),
                desired: r.desired.lock().clone(),
            };
            (name.as_str(), state)
        })
        .collect();
    let plan = plan(&running, wanted, &unreadable);
    for name in &plan.remove {
        if let Some(runner) = runners.get(name) {
            runner.remove();
        }
    }
    for name in &plan.forget {
        runners.remove(name);
    }
    for queue in plan.retune {
        if let Some(runner) = runners.get(&queue.name) {
            *runner.desired.lock() = queue;
            runner.wake.set();
        }
    }
    let mut started = Vec::with_capacity(plan.start.len());
    for queue in plan.start {
        if deps.queues.shutdown.is_triggered() {
            break;
        }
        let name = queue.name.clone();
        let runner = QueueRunner::start(&deps.queues, queue);
        runners.insert(name, Arc::clone(&runner));
        started.push(runner);
    }
    // Announced with the map released: a `worker.queue.started` handler may read the
    // worker's queues. A new runner is not polled before its announcement wakes it.
    drop(runners);
    for runner in started {
        runner.announce_started(&deps.queues);
    }
    Ok(())
}

/// A runner as [`plan`] sees it.
#[derive(Debug, Clone)]
struct Running {
    /// Told to stop serving its queue (its running jobs may still be finishing).
    removed: bool,
    /// Stopped for good: every job it ran is done.
    finished: bool,
    /// The configuration it was last told to serve.
    desired: Queue,
}

/// What one queues pass changes.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Runners to stop: their queue is gone, or no longer matches this worker's tags.
    remove: Vec<String>,
    /// Finished runners to drop from the map.
    forget: Vec<String>,
    /// Runners to give a new configuration.
    retune: Vec<Queue>,
    /// Queues to start a runner for.
    start: Vec<Queue>,
}

/// Reconciles the running queues with the `wanted` ones (served by this worker, in table
/// order). A queue whose row is `unreadable` keeps its runner (with its last good
/// settings). A queue removed while its runner still finishes jobs is not started again
/// until that runner finished (then it starts anew).
fn plan(running: &HashMap<&str, Running>, wanted: Vec<Queue>, unreadable: &[String]) -> Plan {
    let keep: HashSet<&str> = wanted
        .iter()
        .map(|q| q.name.as_str())
        .chain(unreadable.iter().map(String::as_str))
        .collect();
    let mut plan = Plan::default();
    for (name, r) in running {
        if !keep.contains(name) {
            if !r.removed {
                plan.remove.push(name.to_string());
            }
            if r.finished {
                plan.forget.push(name.to_string());
            }
        }
    }
    for queue in wanted {
        match running.get(queue.name.as_str()) {
            Some(r) if r.removed && r.finished => {
                plan.forget.push(queue.name.clone());
                plan.start.push(queue);
            }
            Some(r) if r.removed => {}
            Some(r) if r.desired != queue => plan.retune.push(queue),
            Some(_) => {}
            None => plan.start.push(queue),
        }
    }
    plan.remove.sort();
    plan.forget.sort();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(queue: Queue, removed: bool, finished: bool) -> Running {
        Running {
            removed,
            finished,
            desired: queue,
        }
    }

    #[test]
    fn new_queues_start_changed_ones_retune_and_gone_ones_stop() {
        let same = Queue::new("same");
        let old = Queue::new("changed").concurrency(1);
        let new = Queue::new("changed").concurrency(4);
        let map = HashMap::from([
            ("same", running(same.clone(), false, false)),
            ("changed", running(old, false, false)),
            ("gone", running(Queue::new("gone"), false, false)),
        ]);
        let fresh = Queue::new("fresh");
        let plan = plan(&map, vec![same, new.clone(), fresh.clone()], &[]);
        assert_eq!(
            plan,
            Plan {
                remove: vec!["gone".into()],
                forget: vec![],
                retune: vec![new],
                start: vec![fresh],
            }
        );
    }

    #[test]
    fn an_unreadable_row_keeps_its_runner_and_finished_runners_are_forgotten() {
        let map = HashMap::from([
            (
                "unreadable",
                running(Queue::new("unreadable"), false, false),
            ),
            ("stopping", running(Queue::new("stopping"), true, false)),
            ("stopped", running(Queue::new("stopped"), true, true)),
        ]);
        let plan = plan(&map, vec![], &["unreadable".to_string()]);
        assert_eq!(
            plan,
            Plan {
                remove: vec![],
                forget: vec!["stopped".into()],
                retune: vec![],
                start: vec![],
            },
            "removed runners are not removed twice"
        );
    }

    #[test]
    fn a_queue_back_while_its_old_runner_finishes_waits_for_that_runner() {
        let q = Queue::new("back");
        let finishing = HashMap::from([("back", running(q.clone(), true, false))]);
        assert_eq!(plan(&finishing, vec![q.clone()], &[]), Plan::default());
        let finished = HashMap::from([("back", running(q.clone(), true, true))]);
        assert_eq!(
            plan(&finished, vec![q.clone()], &[]),
            Plan {
                forget: vec!["back".into()],
                start: vec![q],
                ..Plan::default()
            }
        );
    }
}
