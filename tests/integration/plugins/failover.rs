//! Failover with real worker processes (the `chancy` binary), killed with SIGKILL.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chancy::plugins::Recovery;
use chancy::tooling::WorkerTooling;
use chancy::{ImmediateLeadership, Job, JobState, Queue};
use parking_lot::Mutex;
use serde_json::json;

use super::{fast_worker, wait_for, WAIT};
use crate::common::{database_url, TestApp};

/// `chancy worker start` as a separate process on `app`'s prefix (the binary runs the default
/// plugins, so their tables are migrated first).
fn worker_process(app: &TestApp, id: &str, extra: &[&str]) -> Child {
    for key in [
        chancy::plugins::METRICS_MIGRATIONS.key(),
        chancy::plugins::WORKFLOW_MIGRATIONS.key(),
    ] {
        app.chancy.migrate_key(key, None).unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_chancy"))
        .args([
            "--database-url",
            &database_url(),
            "--prefix",
            &app.prefix,
            "-q",
        ])
        .args([
            "worker",
            "start",
            "--worker-id",
            id,
            "--heartbeat-poll-interval",
            "1",
        ])
        .args([
            "--heartbeat-timeout",
            "3",
            "--queue-change-poll-interval",
            "1",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the chancy binary")
}

fn kill9(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

fn running_by(app: &TestApp, worker: &str) -> i64 {
    app.client()
        .query_one(
            &app.sql("SELECT count(*) FROM {jobs} WHERE state = 'running' AND taken_by = $1"),
            &[&worker],
        )
        .unwrap()
        .get(0)
}

#[test]
fn jobs_of_a_sigkilled_worker_are_recovered_and_run_exactly_once_more() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(Recovery::new().poll_interval(Duration::from_millis(500)))
    });
    app.chancy
        .declare(
            &Queue::new("victims")
                .concurrency(20)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let mut doomed = worker_process(&app, "doomed", &[]);
    let jobs: Vec<Job> = (0..20)
        .map(|_| {
            Job::new("chancy.builtin.sleep")
                .queue("victims")
                .kwargs(json!({"seconds": 30}))
        })
        .collect();
    let refs = app.chancy.push_many(&jobs).unwrap();
    assert!(
        wait_for(WAIT, || running_by(&app, "doomed") == 20),
        "the process claimed every job"
    );
    kill9(&mut doomed);

    // A survivor (the leader, with Recovery) runs what the dead worker held.
    let runs: Arc<Mutex<HashMap<uuid::Uuid, u32>>> = Arc::default();
    let r = Arc::clone(&runs);
    let survivor = fast_worker(&app)
        .worker_id("survivor")
        .heartbeat_timeout(Duration::from_secs(3))
        .job("chancy.builtin.sleep", move |ctx| {
            *r.lock().entry(ctx.job().id).or_default() += 1;
            Ok(())
        })
        .build()
        .unwrap();
    survivor.start().unwrap();
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(60))
        .unwrap();
    survivor.stop();
    assert_eq!(done.len(), 20);
    for job in &done {
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(
            (job.attempts, job.max_attempts),
            (1, 2),
            "recovery added one attempt"
        );
        assert_eq!(job.taken_by.as_deref(), Some("survivor"));
    }
    let runs = runs.lock();
    assert_eq!(runs.len(), 20);
    assert!(
        runs.values().all(|n| *n == 1),
        "each job ran exactly once more: {runs:?}"
    );
}

#[test]
fn leadership_fails_over_between_three_processes_within_the_lease() {
    // Three worker processes with the default plugins (leadership renews every 5 s with a
    // 15 s lease); the test only reads the lease row.
    let app = TestApp::new();
    let mut children: HashMap<String, Child> = ["p1", "p2", "p3"]
        .iter()
        .map(|id| (id.to_string(), worker_process(&app, id, &[])))
        .collect();
    let leader_row = || -> Option<String> {
        app.client()
            .query_opt(
                &app.sql("SELECT worker_id FROM {leader} WHERE expires_at > NOW()"),
                &[],
            )
            .unwrap()
            .map(|r| r.get(0))
    };
    assert!(
        wait_for(WAIT, || leader_row().is_some()),
        "one process leads"
    );
    let first = leader_row().unwrap();
    kill9(children.get_mut(&first).unwrap());
    // The killed leader cannot release its lease (15 s, the default): a successor takes
    // over once it expires and before two more renewal periods pass.
    let takeover = wait_for(Duration::from_secs(45), || {
        leader_row().is_some_and(|l| l != first)
    });
    let second = leader_row();
    for (id, child) in children.iter_mut() {
        if *id != first {
            kill9(child);
        }
    }
    assert!(takeover, "a surviving process took over the lease");
    assert!(second.is_some_and(|s| s != first));
}

#[test]
fn sigterm_during_a_busy_drain_writes_every_finished_outcome_and_loses_nothing() {
    let app = TestApp::new();
    app.chancy
        .declare(
            &Queue::new("busy")
                .concurrency(16)
                .eager_polling(true)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let jobs: Vec<Job> = (0..3000)
        .map(|_| {
            Job::new("chancy.builtin.sleep")
                .queue("busy")
                .kwargs(json!({"seconds": 0.02}))
        })
        .collect();
    app.chancy.push_many(&jobs).unwrap();
    let mut worker = worker_process(&app, "terminated", &["--shutdown-timeout", "20"]);
    let succeeded = || -> i64 {
        app.client()
            .query_one(
                &app.sql("SELECT count(*) FROM {jobs} WHERE state = 'succeeded'"),
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert!(
        wait_for(WAIT, || succeeded() > 200),
        "the drain is under way"
    );
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = worker.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "graceful stop");
    let states: HashMap<String, i64> = app
        .client()
        .query(
            &app.sql("SELECT state, count(*) FROM {jobs} GROUP BY 1"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        states.get("running"),
        None,
        "nothing left running: {states:?}"
    );
    let done = states.get("succeeded").copied().unwrap_or(0);
    let left = states.get("pending").copied().unwrap_or(0);
    assert_eq!(
        done + left,
        3000,
        "every job is finished or still claimable: {states:?}"
    );
    assert!(left > 0, "the stop interrupted the drain: {states:?}");
}

#[test]
fn sigkill_with_1000_jobs_in_flight_recovers_every_job_once_and_fences_the_dead_claims() {
    const N: usize = 1000;
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(Recovery::new().poll_interval(Duration::from_millis(500)))
    });
    app.chancy
        .declare(
            &Queue::new("crowd")
                .concurrency(N as i32)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let jobs: Vec<Job> = (0..N)
        .map(|_| {
            Job::new("chancy.builtin.sleep")
                .queue("crowd")
                .kwargs(json!({"seconds": 60}))
        })
        .collect();
    let refs = app.chancy.push_many(&jobs).unwrap();
    let mut doomed = worker_process(&app, "doomed-1000", &[]);
    assert!(
        wait_for(Duration::from_secs(60), || running_by(&app, "doomed-1000")
            == N as i64),
        "the process claimed all {N} jobs"
    );
    let dead_claims: HashMap<uuid::Uuid, Option<uuid::Uuid>> = app
        .client()
        .query(&app.sql("SELECT id, claim_id FROM {jobs}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(dead_claims.values().all(Option::is_some));
    kill9(&mut doomed);

    let runs: Arc<Mutex<HashMap<uuid::Uuid, u32>>> = Arc::default();
    let r = Arc::clone(&runs);
    let survivor = fast_worker(&app)
        .worker_id("survivor-1000")
        .heartbeat_timeout(Duration::from_secs(3))
        .job("chancy.builtin.sleep", move |ctx| {
            *r.lock().entry(ctx.job().id).or_default() += 1;
            Ok(())
        })
        .build()
        .unwrap();
    survivor.start().unwrap();
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(90))
        .unwrap();
    assert_eq!(done.len(), N);
    for job in &done {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(
            (job.attempts, job.max_attempts),
            (1, 2),
            "the killed run never finished an attempt; recovery added one"
        );
        assert_eq!(job.taken_by.as_deref(), Some("survivor-1000"));
        assert_ne!(job.claim_id, dead_claims[&job.id], "a fresh claim");
    }
    {
        let runs = runs.lock();
        assert_eq!(runs.len(), N, "every job ran on the survivor");
        assert!(runs.values().all(|n| *n == 1), "each exactly once");
    }

    // Fencing: a late outcome of the killed run (its claim) changes nothing.
    let snapshot = || {
        app.client()
            .query(
                &app.sql("SELECT id, state, attempts, errors::text FROM {jobs} ORDER BY id"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| -> (uuid::Uuid, String, i32, String) {
                (r.get(0), r.get(1), r.get(2), r.get(3))
            })
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    for job in done.iter().take(50) {
        let mut late = job.clone();
        late.claim_id = dead_claims[&job.id];
        late.state = JobState::Failed;
        late.attempts = 7;
        late.errors
            .push(chancy::ErrorRecord::new(0, "late outcome of a killed run"));
        assert!(survivor.queue_update(late));
    }
    assert!(
        wait_for(WAIT, || survivor.pending_updates() == 0),
        "the writer handled the late outcomes"
    );
    let after = snapshot();
    survivor.stop();
    assert_eq!(
        before, after,
        "outcomes under the dead claims were fenced out"
    );
}

/// Issue #14 (item 7): with every setting at its default, the jobs of a SIGKILLed worker (the
/// leader, since it started first) are back and running on a survivor within 30 s (bound
/// 45 s): its row expires 20 s after its last heartbeat (every 5 s), the survivor's lease
/// attempt (every 5 s) wins 15 s after the last renewal, and its recovery passes run every
/// 5 s.
#[test]
fn with_the_defaults_a_sigkilled_workers_jobs_are_recovered_within_30_s() {
    let app = TestApp::with(|b| b);
    app.chancy
        .declare(
            &Queue::new("victims")
                .concurrency(8)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let refs = app
        .chancy
        .push_many(&vec![
            Job::new("chancy.builtin.sleep")
                .queue("victims")
                .kwargs(json!({"seconds": 600}));
            8
        ])
        .unwrap();
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_chancy"))
        .args([
            "--database-url",
            &database_url(),
            "--prefix",
            &app.prefix,
            "-q",
        ])
        .args(["worker", "start", "--worker-id", "doomed-defaults"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if !wait_for(WAIT, || running_by(&app, "doomed-defaults") == 8) {
        kill9(&mut doomed);
        panic!("the worker never claimed the jobs");
    }
    let runs: Arc<Mutex<HashMap<uuid::Uuid, u32>>> = Arc::default();
    let r = Arc::clone(&runs);
    let survivor = chancy::Worker::builder(&app.chancy)
        .worker_id("survivor-defaults")
        .job("chancy.builtin.sleep", move |ctx| {
            *r.lock().entry(ctx.job().id).or_default() += 1;
            Ok(())
        })
        .build()
        .unwrap();
    survivor.start().unwrap();
    kill9(&mut doomed);
    let killed = std::time::Instant::now();
    let recovered = wait_for(Duration::from_secs(45), || {
        running_by(&app, "doomed-defaults") == 0
    });
    let took = killed.elapsed();
    let done = app.chancy.wait_for_jobs(&refs, Duration::from_secs(30));
    survivor.stop();
    assert!(recovered, "not recovered within 45 s");
    println!("recovered {took:?} after the SIGKILL");
    let done = done.unwrap();
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    assert!(done
        .iter()
        .all(|j| j.taken_by.as_deref() == Some("survivor-defaults")));
    let runs = runs.lock();
    assert_eq!(runs.len(), 8);
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
}
