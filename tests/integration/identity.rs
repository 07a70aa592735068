//! One worker identity = one live process (issue #14, item 2): a second process under a live
//! worker id fails to start and touches nothing of the first; a restart under the id of a
//! SIGKILLed worker resumes once the dead row expires; a worker whose id was taken over stops.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chancy::{ImmediateLeadership, Job, JobState, Queue, WorkerBuilder};
use parking_lot::Mutex;
use serde_json::json;

use crate::common::{capture_warnings, captured_warnings, database_url, fast_worker, TestApp};
use crate::plugins::{leadership, wait_for};

type Runs = Arc<Mutex<HashMap<uuid::Uuid, u32>>>;

/// A worker under `id` whose `t.sleep` handler counts its runs per job.
fn counting_worker(app: &TestApp, id: &str, runs: &Runs) -> WorkerBuilder {
    let runs = Arc::clone(runs);
    fast_worker(app)
        .worker_id(id)
        .heartbeat_timeout(Duration::from_secs(4))
        .job("t.sleep", move |ctx| {
            *runs.lock().entry(ctx.job().id).or_default() += 1;
            // Runs as long as asked: outliving the orphan grace is what some tests check.
            let secs = ctx.job().kwargs["seconds"].as_f64().unwrap_or(1.0);
            std::thread::sleep(Duration::from_secs_f64(secs));
            Ok(())
        })
}

fn sleepers(app: &TestApp, n: usize, seconds: f64) -> Vec<chancy::Reference> {
    app.chancy.declare(&Queue::new("q").concurrency(4)).unwrap();
    let jobs = vec![
        Job::new("t.sleep")
            .queue("q")
            .kwargs(json!({ "seconds": seconds }));
        n
    ];
    app.chancy.push_many(&jobs).unwrap()
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

fn worker_rows(app: &TestApp, id: &str) -> Vec<Vec<String>> {
    app.client()
        .query(
            &app.sql("SELECT tags FROM {workers} WHERE worker_id = $1"),
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_second_worker_under_a_live_id_fails_and_the_first_keeps_its_jobs_and_lease() {
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(leadership(
            Duration::from_millis(300),
            Duration::from_secs(5),
        ))
    });
    // Longer than the 10 s orphan grace: the old defect released these claims to be re-run.
    let refs = sleepers(&app, 2, 13.0);
    let runs: Runs = Arc::default();
    let first = counting_worker(&app, "dup", &runs).build().unwrap();
    let events = crate::support::events::start(&first);
    assert!(first.is_leader().wait_timeout(Duration::from_secs(10)));
    assert!(wait_for(Duration::from_secs(20), || running_by(
        &app, "dup"
    ) == 2));

    let second = counting_worker(&app, "dup", &runs).build().unwrap();
    let err = second.start().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("worker id \"dup\" is in use"), "{text}");
    // Both workers live in this test's process: the message says so, not "another process".
    assert!(
        text.contains("in use by another Worker in this process"),
        "{text}"
    );
    assert!(
        text.contains("last seen") && text.contains("s ago"),
        "{text}"
    );
    assert!(err.is_config());
    second.stop();

    // Two more leadership passes of the first worker after the failed start.
    events.passes("plugin-chancy.leadership", 2, Duration::from_secs(10));
    assert!(first.is_leader().is_set(), "the first keeps its lease");
    let lease: i64 = app
        .client()
        .query_one(
            &app.sql(
                "SELECT count(*) FROM {leader} WHERE worker_id = 'dup' AND expires_at > NOW()",
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        lease, 1,
        "the failed start did not release the first one's lease"
    );
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(60))
        .unwrap();
    assert!(first.stop());
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    let runs = runs.lock();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.values().all(|n| *n == 1),
        "each ran exactly once: {runs:?}"
    );
}

#[test]
fn a_clean_stop_frees_the_id_at_once() {
    let app = TestApp::new();
    let first = fast_worker(&app).worker_id("again").build().unwrap();
    first.start().unwrap();
    assert_eq!(worker_rows(&app, "again").len(), 1);
    assert!(first.stop());
    assert!(
        worker_rows(&app, "again").is_empty(),
        "a clean stop deletes its row"
    );
    let second = fast_worker(&app).worker_id("again").build().unwrap();
    second.start().unwrap();
    assert_eq!(worker_rows(&app, "again").len(), 1);
    assert!(second.stop());
}

#[test]
fn a_worker_whose_id_was_taken_over_stops_without_touching_the_new_row() {
    let app = TestApp::new();
    let worker = fast_worker(&app).worker_id("usurped").build().unwrap();
    worker.start().unwrap();
    // Another process's session now holds the row (as after this worker stalled past its
    // heartbeat_timeout and a new process started under the id).
    app.client()
        .execute(
            &app.sql(
                "UPDATE {workers} SET tags = ARRAY['chancy.session=someone-else'], \
                 expires_at = NOW() + INTERVAL '1 hour' WHERE worker_id = 'usurped'",
            ),
            &[],
        )
        .unwrap();
    assert!(
        worker
            .shutdown_event()
            .wait_timeout(Duration::from_secs(15)),
        "the heartbeat notices and the worker stops"
    );
    worker.wait_for_shutdown();
    assert_eq!(
        worker_rows(&app, "usurped"),
        vec![vec!["chancy.session=someone-else".to_string()]],
        "neither overwritten nor deleted"
    );
}

#[test]
fn a_worker_whose_id_was_taken_over_claims_nothing_before_its_heartbeat_notices() {
    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("fenced").polling_interval(Duration::from_secs(1)))
        .unwrap();
    // A long heartbeat: the takeover below stays unnoticed for the whole test, as for a
    // process that stalled past its heartbeat_timeout.
    let worker = chancy::Worker::builder(&app.chancy)
        .worker_id("stalled")
        .heartbeat_poll_interval(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(120))
        .job("t.work", |_| Ok(()))
        .build()
        .unwrap();
    let events = crate::support::events::start(&worker);
    let first = app
        .chancy
        .push(&Job::new("t.work").queue("fenced"))
        .unwrap();
    let done = app
        .chancy
        .wait_for_job(&first, Duration::from_secs(20))
        .unwrap()
        .unwrap();
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "the worker claims while it holds its id"
    );
    app.client()
        .execute(
            &app.sql(
                "UPDATE {workers} SET tags = ARRAY['chancy.session=someone-else'], \
                 expires_at = NOW() + INTERVAL '1 hour' WHERE worker_id = 'stalled'",
            ),
            &[],
        )
        .unwrap();
    let second = app
        .chancy
        .push(&Job::new("t.work").queue("fenced"))
        .unwrap();
    // The push's NOTIFY and the 1 s poll would claim it: two visits of the queue that began
    // after the push claimed nothing.
    events.forget();
    for _ in 0..2 {
        let poll = events.next_poll("fenced", Duration::from_secs(10));
        assert_eq!(poll.body["claimed"], 0, "a claim under a taken-over id");
    }
    let job = app.chancy.get_job(&second).unwrap().unwrap();
    assert_eq!(
        (job.state, job.taken_by.as_deref()),
        (JobState::Pending, None),
        "claimed by a process whose id another session holds"
    );
    worker.stop();
}

/// `chancy worker start --worker-id <id>` on `app`'s prefix with short heartbeats.
fn cli_worker(app: &TestApp, id: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chancy"));
    cmd.args(["--database-url", &database_url(), "--prefix", &app.prefix])
        .args(["worker", "start", "--worker-id", id])
        .args(["--heartbeat-poll-interval", "1", "--heartbeat-timeout", "4"])
        .args(["--queue-change-poll-interval", "1"]);
    cmd
}

fn migrated_for_cli(app: &TestApp) {
    for key in [
        chancy::plugins::METRICS_MIGRATIONS.key(),
        chancy::plugins::WORKFLOW_MIGRATIONS.key(),
    ] {
        app.chancy.migrate_key(key, None).unwrap();
    }
}

fn kill9(child: &mut Child) {
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn cli_a_second_worker_start_under_a_live_id_exits_with_the_message() {
    let app = TestApp::new();
    migrated_for_cli(&app);
    app.chancy.declare(&Queue::new("q").concurrency(4)).unwrap();
    let cli_refs = app
        .chancy
        .push_many(&vec![
            Job::new("chancy.builtin.sleep")
                .queue("q")
                .kwargs(json!({"seconds": 12}));
            2
        ])
        .unwrap();
    let mut first = cli_worker(&app, "twin")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let claimed = wait_for(Duration::from_secs(30), || {
        app.chancy
            .get_jobs(&cli_refs)
            .unwrap()
            .iter()
            .all(|j| j.state == JobState::Running)
    });
    if !claimed {
        kill9(&mut first);
        panic!("the first worker never ran the jobs");
    }
    let started = Instant::now();
    let second = cli_worker(&app, "twin").output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&second.stderr);
    let still_running = first.try_wait().unwrap().is_none();
    // The CLI runs the default plugins: the first process leads, and keeps its lease.
    let lease_holder: Option<String> = app
        .client()
        .query_opt(
            &app.sql("SELECT worker_id FROM {leader} WHERE id = 1 AND expires_at > NOW()"),
            &[],
        )
        .unwrap()
        .map(|r| r.get(0));
    let done = app.chancy.wait_for_jobs(&cli_refs, Duration::from_secs(60));
    kill9(&mut first);
    assert!(!second.status.success(), "the second start fails");
    assert!(stderr.contains("worker id \"twin\" is in use"), "{stderr}");
    assert!(
        stderr.contains("in use by another live process"),
        "{stderr}"
    );
    assert!(stderr.contains("last seen"), "{stderr}");
    assert!(
        took < Duration::from_secs(20),
        "fails once the first heartbeats: {took:?}"
    );
    assert!(still_running, "the first worker keeps running");
    assert_eq!(
        lease_holder,
        Some("twin".to_string()),
        "its lease is untouched"
    );
    let done = done.unwrap();
    for job in &done {
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.attempts, 1, "ran once: {:?}", job.errors);
        assert_eq!(job.max_attempts, 1, "never recovered or released");
    }
}

#[test]
fn cli_restart_under_the_id_of_a_sigkilled_worker_resumes_its_jobs() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(ImmediateLeadership));
    migrated_for_cli(&app);
    app.chancy.declare(&Queue::new("q").concurrency(4)).unwrap();
    // The dead process claims builtin sleeps; the heir counts its own runs of them.
    let refs = app
        .chancy
        .push_many(&vec![
            Job::new("chancy.builtin.sleep")
                .queue("q")
                .kwargs(json!({"seconds": 300}));
            2
        ])
        .unwrap();
    let mut doomed = cli_worker(&app, "phoenix")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let claimed = wait_for(Duration::from_secs(30), || running_by(&app, "phoenix") == 2);
    if !claimed {
        kill9(&mut doomed);
        panic!("the worker never claimed the jobs");
    }
    kill9(&mut doomed);

    let runs: Runs = Arc::default();
    let r = Arc::clone(&runs);
    let heir = fast_worker(&app)
        .worker_id("phoenix")
        .heartbeat_timeout(Duration::from_secs(4))
        .job("chancy.builtin.sleep", move |ctx| {
            *r.lock().entry(ctx.job().id).or_default() += 1;
            Ok(())
        })
        .build()
        .unwrap();
    let started = Instant::now();
    heir.start().unwrap();
    let took = started.elapsed();
    // Documented: at most heartbeat_timeout (4 s here) after the dead one's last heartbeat.
    assert!(took < Duration::from_secs(4 + 5), "took over in {took:?}");
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(60))
        .unwrap();
    assert!(heir.stop());
    for job in &done {
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.errors);
        assert_eq!(job.taken_by.as_deref(), Some("phoenix"));
    }
    let runs = runs.lock();
    assert_eq!(runs.len(), 2);
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
}

#[test]
fn a_stop_while_the_start_waits_for_the_id_ends_the_start_gracefully() {
    let app = TestApp::new();
    let needle = "worker stop-during-start: another process's row";
    capture_warnings(needle);
    // Another process's live row for the id: the start waits for it to expire or heartbeat.
    app.client()
        .execute(
            &app.sql(
                "INSERT INTO {workers} (worker_id, tags, queues, last_seen, expires_at) \
                 VALUES ('stop-during-start', ARRAY['chancy.session=someone-else'], \
                 ARRAY[]::text[], NOW(), NOW() + INTERVAL '1 hour')",
            ),
            &[],
        )
        .unwrap();
    let worker = fast_worker(&app)
        .worker_id("stop-during-start")
        .build()
        .unwrap();
    let starter = {
        let worker = worker.clone();
        std::thread::spawn(move || worker.start())
    };
    assert!(
        wait_for(Duration::from_secs(20), || !captured_warnings(needle)
            .is_empty()),
        "the start waits for the id"
    );
    let asked = Instant::now();
    assert!(worker.stop(), "nothing was left running");
    let started = starter.join().unwrap();
    assert!(
        started.is_ok(),
        "a start ended by a stop is not an error: {started:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the start gave up at once, not when the other row expires"
    );
    worker.wait_for_shutdown();
    assert_eq!(
        worker_rows(&app, "stop-during-start"),
        vec![vec!["chancy.session=someone-else".to_string()]],
        "the other process's row is untouched"
    );
    let again = worker.start().unwrap_err().to_string();
    assert!(again.contains("stopped"), "{again}");
}
