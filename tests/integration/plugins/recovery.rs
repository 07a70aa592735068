//! Recovery: running jobs of workers without a fresh heartbeat go back to pending, fenced.

use std::time::Duration;

use chancy::plugins::Recovery;
use chancy::tooling::WorkerTooling;
use chancy::{ImmediateLeadership, Job, JobState, Queue};
use serde_json::json;
use uuid::Uuid;

use super::{events_named, fast_worker, listen, wait_for};
use crate::common::TestApp;

/// Marks job `id` as running under `worker` with a fresh claim; returns the claim.
fn take(app: &TestApp, id: Uuid, worker: &str) -> Uuid {
    let claim = Uuid::new_v4();
    app.client()
        .execute(
            &app.sql(
                "UPDATE {jobs} SET state = 'running', taken_by = $2, claim_id = $3, \
                 started_at = NOW(), attempts = 1 WHERE id = $1",
            ),
            &[&id, &worker, &claim],
        )
        .unwrap();
    claim
}

#[test]
fn recovery_resets_jobs_of_dead_workers_and_fences_their_late_outcome() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(Recovery::new().poll_interval(Duration::from_millis(200)))
    });
    // A queue no worker serves, so the recovered job stays pending for inspection.
    let parked = Queue::new("parked").tags(["nobody-serves-this"]);
    app.chancy.declare_upsert(&parked).unwrap();
    let job = Job::new("t.noop").queue("parked").max_attempts(2);
    let dead = app.chancy.push(&job).unwrap();
    let alive = app.chancy.push(&job).unwrap();
    let dead_claim = take(&app, dead.id(), "dead-worker");
    let alive_claim = take(&app, alive.id(), "alive-worker");
    app.client()
        .execute(
            &app.sql(
                "INSERT INTO {workers} (worker_id, last_seen, expires_at) \
                 VALUES ('alive-worker', NOW(), NOW() + INTERVAL '1 hour')",
            ),
            &[],
        )
        .unwrap();
    let before = app.chancy.get_job(&dead).unwrap().unwrap();
    let mut events = listen(&app);

    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    assert!(wait_for(Duration::from_secs(10), || app
        .chancy
        .get_job(&dead)
        .unwrap()
        .is_some_and(|j| j.state == JobState::Pending)));

    // The lost run reports late: its claim no longer matches, so nothing changes.
    let mut late = before.clone();
    late.state = JobState::Succeeded;
    late.attempts = 2;
    late.completed_at = Some(chrono::Utc::now());
    assert!(worker.queue_update(late));
    assert!(wait_for(Duration::from_secs(5), || worker
        .pending_updates()
        == 0));
    assert!(worker.stop());

    let row = app.chancy.get_job(&dead).unwrap().unwrap();
    assert_eq!(row.state, JobState::Pending, "the late outcome is fenced");
    assert_eq!((row.attempts, row.max_attempts), (1, 3));
    assert_eq!(row.taken_by, None);
    assert_eq!(row.claim_id, None);
    assert_eq!(row.started_at, None);
    let kept = app.chancy.get_job(&alive).unwrap().unwrap();
    assert_eq!(kept.state, JobState::Running, "a live worker's job is kept");
    assert_eq!(kept.claim_id, Some(alive_claim));
    assert_eq!(kept.max_attempts, 2);

    let payloads = events.collect(Duration::from_millis(500));
    let recovered = events_named(&payloads, "job.recovered");
    assert_eq!(
        recovered,
        vec![
            json!({"t": "job.recovered", "j": dead.id().to_string(), "c": dead_claim.to_string()})
        ]
    );
    let passes = events_named(&payloads, "recovery.recovered");
    assert!(
        passes
            .iter()
            .any(|p| p["rows_recovered"] == 1 && p["elapsed"].is_f64()),
        "{passes:?}"
    );
}

#[test]
fn recover_counts_rows_and_ignores_finished_and_live_jobs() {
    let app = TestApp::new();
    let pending = app.chancy.push(&Job::new("t.noop")).unwrap();
    let running = app.chancy.push(&Job::new("t.noop")).unwrap();
    take(&app, running.id(), "gone");
    let done = app.chancy.push(&Job::new("t.noop")).unwrap();
    take(&app, done.id(), "gone");
    app.client()
        .execute(
            &app.sql("UPDATE {jobs} SET state = 'succeeded' WHERE id = $1"),
            &[&done.id()],
        )
        .unwrap();
    let n = Recovery::recover(&app.chancy, Duration::from_secs(90)).unwrap();
    assert_eq!(n, 1);
    let states: Vec<JobState> = [&pending, &running, &done]
        .iter()
        .map(|r| app.chancy.get_job(r).unwrap().unwrap().state)
        .collect();
    assert_eq!(
        states,
        vec![JobState::Pending, JobState::Pending, JobState::Succeeded]
    );
    assert_eq!(
        Recovery::recover(&app.chancy, Duration::from_secs(90)).unwrap(),
        0
    );
}

#[test]
fn recovery_waits_for_leadership() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(super::leadership(
                Duration::from_millis(200),
                Duration::from_secs(1),
            ))
            .plugin(Recovery::new().poll_interval(Duration::from_millis(200)))
    });
    // Someone else leads for the whole test.
    app.client()
        .execute(
            &app.sql(
                "INSERT INTO {leader} (id, worker_id, expires_at) \
                 VALUES (1, 'other', NOW() + INTERVAL '1 hour')",
            ),
            &[],
        )
        .unwrap();
    let parked = Queue::new("parked").tags(["nobody-serves-this"]);
    app.chancy.declare_upsert(&parked).unwrap();
    let r = app
        .chancy
        .push(&Job::new("t.noop").queue("parked"))
        .unwrap();
    take(&app, r.id(), "dead-worker");
    let worker = fast_worker(&app).build().unwrap();
    let events = crate::support::events::start(&worker);
    // Whole passes of recovery (and of the election) on this non-leader worker.
    events.passes("plugin-chancy.recovery", 3, Duration::from_secs(10));
    events.passes("plugin-chancy.leadership", 2, Duration::from_secs(10));
    assert!(!worker.is_leader().is_set());
    let row = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!(row.state, JobState::Running, "only the leader recovers");
    worker.stop();
}

/// A worker row is alive while its own `expires_at` holds, whatever the leader's
/// `heartbeat_timeout`: a Python worker (heartbeat every 30 s, rows living 90 s) seen 30 s
/// ago keeps its jobs under a Rust leader with a 20 s timeout; once its row expired and it
/// was not seen within the leader's timeout either, they come back.
#[test]
fn a_worker_is_alive_until_its_own_expiry_even_past_the_leaders_timeout() {
    let app = TestApp::new();
    let parked = Queue::new("parked").tags(["nobody-serves-this"]);
    app.chancy.declare_upsert(&parked).unwrap();
    let job = app
        .chancy
        .push(&Job::new("t.noop").queue("parked"))
        .unwrap();
    take(&app, job.id(), "python-worker");
    app.client()
        .execute(
            &app.sql(
                "INSERT INTO {workers} (worker_id, last_seen, expires_at) VALUES \
                 ('python-worker', NOW() - INTERVAL '30 seconds', NOW() + INTERVAL '60 seconds')",
            ),
            &[],
        )
        .unwrap();
    let leader_timeout = Duration::from_secs(20);
    assert_eq!(Recovery::recover(&app.chancy, leader_timeout).unwrap(), 0);
    assert_eq!(
        app.chancy.get_job(&job).unwrap().unwrap().state,
        JobState::Running
    );
    app.client()
        .execute(
            &app.sql(
                "UPDATE {workers} SET expires_at = NOW() - INTERVAL '1 second' \
                 WHERE worker_id = 'python-worker'",
            ),
            &[],
        )
        .unwrap();
    assert_eq!(Recovery::recover(&app.chancy, leader_timeout).unwrap(), 1);
    assert_eq!(
        app.chancy.get_job(&job).unwrap().unwrap().state,
        JobState::Pending
    );
}

/// Between full scans, the frequent passes look only at the declared queues' running jobs;
/// the full scan (at the first pass as leader, then every `full_scan_interval`) also
/// recovers jobs of queues that no longer exist.
#[test]
fn frequent_passes_cover_declared_queues_and_full_scans_cover_the_rest() {
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(ImmediateLeadership).plugin(
            Recovery::new()
                .poll_interval(Duration::from_millis(200))
                .full_scan_interval(Duration::from_secs(3600)),
        )
    });
    let parked = Queue::new("parked").tags(["nobody-serves-this"]);
    app.chancy.declare_upsert(&parked).unwrap();
    let worker = fast_worker(&app).build().unwrap();
    let events = crate::support::events::start(&worker);
    // Let the first (full) pass happen with nothing to recover.
    events.passes("plugin-chancy.recovery", 2, Duration::from_secs(10));
    let declared = app
        .chancy
        .push(&Job::new("t.noop").queue("parked"))
        .unwrap();
    let gone = app
        .chancy
        .push(&Job::new("t.noop").queue("deleted-queue"))
        .unwrap();
    take(&app, declared.id(), "dead-worker");
    take(&app, gone.id(), "dead-worker");
    let state = |r: &chancy::Reference| app.chancy.get_job(r).unwrap().unwrap().state;
    assert!(wait_for(Duration::from_secs(10), || state(&declared)
        == JobState::Pending));
    // Two more (frequent) passes after the declared queue's job came back.
    events.passes("plugin-chancy.recovery", 2, Duration::from_secs(10));
    assert_eq!(state(&gone), JobState::Running, "not a declared queue");
    worker.stop();
    assert_eq!(
        Recovery::recover(&app.chancy, Duration::from_secs(20)).unwrap(),
        1
    );
    assert_eq!(
        state(&gone),
        JobState::Pending,
        "the full statement covers it"
    );
}
