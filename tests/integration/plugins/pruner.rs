//! Pruner and the rules DSL against real rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chancy::plugins::{Pruner, Rule};
use chancy::{Chancy, ImmediateLeadership, Job, Plugin, Reference};

use super::{events_named, fast_worker, listen, wait_for};
use crate::common::TestApp;

/// Pushes a job to `queue` and forces its state.
fn job_in(app: &TestApp, queue: &str, state: &str) -> Reference {
    let r = app.chancy.push(&Job::new("t.noop").queue(queue)).unwrap();
    app.client()
        .execute(
            &app.sql("UPDATE {jobs} SET state = $2 WHERE id = $1"),
            &[&r.id(), &state],
        )
        .unwrap();
    r
}

fn exists(app: &TestApp, r: &Reference) -> bool {
    app.chancy.get_job(r).unwrap().is_some()
}

fn age(app: &TestApp, r: &Reference, secs: f64) {
    app.client()
        .execute(
            &app.sql(
                "UPDATE {jobs} SET created_at = NOW() - make_interval(secs => $2) WHERE id = $1",
            ),
            &[&r.id(), &secs],
        )
        .unwrap();
}

#[test]
fn prune_deletes_only_finished_jobs_matching_the_rule() {
    let app = TestApp::new();
    let succeeded = job_in(&app, "test_queue", "succeeded");
    let failed = job_in(&app, "test_queue", "failed");
    let kept: Vec<Reference> = ["pending", "running", "retrying"]
        .iter()
        .map(|s| job_in(&app, "test_queue", s))
        .collect();
    let other = job_in(&app, "other_queue", "succeeded");
    let pruner = Pruner::new(Rule::queue().eq("test_queue"));
    assert_eq!(pruner.prune(&app.chancy).unwrap(), 2);
    assert!(!exists(&app, &succeeded) && !exists(&app, &failed));
    assert!(kept.iter().all(|r| exists(&app, r)), "unfinished jobs stay");
    assert!(exists(&app, &other), "other queues do not match");
    assert_eq!(pruner.prune(&app.chancy).unwrap(), 0);
}

#[test]
fn prune_combines_rules_with_age() {
    let app = TestApp::new();
    let fresh = job_in(&app, "test_queue", "succeeded");
    let old = job_in(&app, "test_queue", "succeeded");
    let old_elsewhere = job_in(&app, "elsewhere", "failed");
    age(&app, &old, 20.0);
    age(&app, &old_elsewhere, 20.0);
    let pruner = Pruner::new(Rule::queue().eq("test_queue").and(Rule::age().gt(10)));
    assert_eq!(pruner.prune(&app.chancy).unwrap(), 1);
    assert!(exists(&app, &fresh), "a fresh job is younger than 10 s");
    assert!(!exists(&app, &old));
    assert!(exists(&app, &old_elsewhere));
    age(&app, &fresh, 11.0);
    assert_eq!(pruner.prune(&app.chancy).unwrap(), 1);
    assert!(!exists(&app, &fresh), "deleted once it is older than 10 s");

    // OR, contains (wildcards literal) and ilike.
    let a = job_in(&app, "mail_50%", "succeeded");
    let b = job_in(&app, "mailX50Y", "succeeded");
    let c = job_in(&app, "reports", "failed");
    let rule = Rule::queue()
        .contains("_50%")
        .or(Rule::queue().ilike("REPORT%"));
    assert_eq!(Pruner::new(rule).prune(&app.chancy).unwrap(), 2);
    assert!(!exists(&app, &a) && !exists(&app, &c));
    assert!(exists(&app, &b), "contains() treats _ and % literally");
    let hostile = Pruner::new(Rule::queue().eq("x' OR '1'='1"));
    assert_eq!(hostile.prune(&app.chancy).unwrap(), 0);
    assert!(exists(&app, &b), "values are bound, never spliced");
}

#[test]
fn prune_works_in_bounded_batches() {
    let app = TestApp::new();
    for _ in 0..7 {
        job_in(&app, "q", "succeeded");
    }
    let pruner = Pruner::new(Rule::age().ge(0)).maximum_to_prune(3);
    let counts: Vec<u64> = (0..4).map(|_| pruner.prune(&app.chancy).unwrap()).collect();
    assert_eq!(counts, vec![3, 3, 1, 0]);
}

/// Counts cleanup calls.
struct Counting(Arc<AtomicUsize>);

impl Plugin for Counting {
    fn identifier(&self) -> &'static str {
        "test.counting"
    }

    fn cleanup(&self, _chancy: &Chancy) -> chancy::Result<Option<u64>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Some(0))
    }
}

#[test]
fn the_pruner_service_prunes_on_the_leader_notifies_and_cleans_up() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counting = Counting(Arc::clone(&calls));
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(counting)
            .plugin(Pruner::new(Rule::queue().eq("q")).poll_interval(Duration::from_millis(200)))
    });
    let mut events = listen(&app);
    let done = job_in(&app, "q", "succeeded");
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    assert!(wait_for(Duration::from_secs(10), || !exists(&app, &done)));
    assert!(wait_for(Duration::from_secs(5), || calls
        .load(Ordering::SeqCst)
        > 0));
    worker.stop();
    let payloads = events.collect(Duration::from_millis(500));
    let removed = events_named(&payloads, "pruner.removed");
    assert!(
        removed
            .iter()
            .any(|e| e["rows_removed"] == 1 && e["elapsed"].is_f64()),
        "{removed:?}"
    );
}

#[test]
fn the_pruner_service_does_nothing_on_a_follower() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(super::leadership(
                Duration::from_millis(200),
                Duration::from_secs(1),
            ))
            .plugin(Pruner::new(Rule::queue().eq("q")).poll_interval(Duration::from_millis(200)))
    });
    app.client()
        .execute(
            &app.sql(
                "INSERT INTO {leader} (id, worker_id, expires_at) \
                 VALUES (1, 'other', NOW() + INTERVAL '1 hour')",
            ),
            &[],
        )
        .unwrap();
    let done = job_in(&app, "q", "succeeded");
    let worker = fast_worker(&app).build().unwrap();
    let events = crate::support::events::start(&worker);
    // Whole passes of the pruner on this (non-leader) worker.
    events.passes("plugin-chancy.pruner", 3, Duration::from_secs(10));
    assert!(exists(&app, &done), "only the leader prunes");
    worker.stop();
}
