//! Interoperability with the real Python Chancy 0.26.0 from PyPI, on one database.
//!
//! The first test to run creates a virtualenv in `target/py026` and installs
//! `chancy[cron]==0.26.0` into it (PyPI must be reachable); later runs reuse it.

#[path = "../integration/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chancy::{Job, JobError, JobState, Queue, Reference, Worker, THREADED_EXECUTOR};
use serde_json::{json, Value};

use common::{database_url, TestApp};

const WAIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    support::python::chancy_026()
}

/// Runs `interop_jobs.py <args>` and parses its JSON output.
fn py(args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/interop/interop_jobs.py"))
        .args(args)
        .env("PYTHONPATH", root().join("tests/interop"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad output {text:?}: {e}"))
}

fn worker(app: &TestApp) -> chancy::WorkerBuilder {
    app.chancy.declare(&Queue::new("default")).unwrap();
    Worker::builder(&app.chancy)
        .queue_change_poll_interval(Duration::from_millis(500))
        .heartbeat_poll_interval(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(10))
}

fn wait_until(cond: impl FnMut() -> bool) {
    support::wait::eventually(WAIT, "the condition", cond);
}

/// A random advisory-lock key.
fn rand_key() -> i64 {
    i64::from_ne_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
}

fn refs(ids: &Value) -> Vec<Reference> {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn each_side_sees_the_others_schema_as_up_to_date() {
    let app = TestApp::with(|b| b);
    let url = database_url();
    assert_eq!(
        py(&["check", &url, &app.prefix]),
        json!({"up_to_date": true})
    );
    py(&["migrate", &url, &app.prefix]);
    assert!(app.chancy.is_up_to_date().unwrap());

    let other = TestApp::unmigrated(|b| b);
    py(&["migrate", &url, &other.prefix]);
    assert!(other.chancy.is_up_to_date().unwrap());
    other.chancy.migrate().unwrap();
    assert_eq!(
        py(&["check", &url, &other.prefix]),
        json!({"up_to_date": true})
    );
}

#[test]
fn python_pushes_and_a_rust_worker_runs_them_like_python_would() {
    let app = TestApp::new();
    app.chancy
        .declare(
            &Queue::new("interop")
                .concurrency(2)
                .eager_polling(true)
                .polling_interval(Duration::from_secs(60)),
        )
        .unwrap();
    let w = worker(&app)
        .worker_id("rust-interop")
        .job("myapp.tasks.echo", |ctx| {
            ctx.set_meta("echo", json!(ctx.job().kwargs.clone()));
            Ok(())
        })
        .job("myapp.tasks.fail", |_| Err(JobError::new("rust says no")))
        .build()
        .unwrap();
    let events = support::events::start(&w);
    events.queue_started("interop", WAIT);
    // Its first visit is over: the next poll is a minute away.
    events.next_poll("interop", WAIT);

    let url = database_url();
    let spec = json!([
        {"func": "myapp.tasks.echo", "kwargs": {"n": 1}, "priority": 5, "meta": {"from": "py"}},
        {"func": "myapp.tasks.fail", "max_attempts": 2},
        {"func": "myapp.tasks.echo", "kwargs": {"n": 2}, "unique_key": "u1"}
    ]);
    let started = Instant::now();
    let ids = refs(&py(&[
        "push",
        &url,
        &app.prefix,
        "interop",
        &spec.to_string(),
    ]));
    let first = app.chancy.wait_for_job(&ids[0], Duration::from_secs(10));
    let elapsed = started.elapsed();
    assert!(
        first.is_ok(),
        "the NOTIFY of a Python push woke the idle worker ({elapsed:?})"
    );
    let done = app.chancy.wait_for_jobs(&ids, WAIT).unwrap();
    w.stop();

    let echo = &done[0];
    assert_eq!(
        (echo.state, echo.attempts, echo.priority),
        (JobState::Succeeded, 1, 5)
    );
    assert_eq!(json!(echo.meta), json!({"from": "py", "echo": {"n": 1}}));
    assert_eq!(echo.taken_by.as_deref(), Some("rust-interop"));
    assert!(echo.claim_id.is_some() && echo.errors.is_empty() && echo.completed_at.is_some());

    let fail = &done[1];
    assert_eq!((fail.state, fail.attempts), (JobState::Failed, 2));
    let attempts: Vec<i64> = fail.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, vec![0, 1]);
    assert!(fail.errors[1].traceback.contains("rust says no"));
    assert_eq!(done[2].unique_key.as_deref(), Some("u1"));
    assert_eq!(done[2].state, JobState::Succeeded);
}

#[test]
fn rust_pushes_and_a_python_worker_runs_them() {
    let app = TestApp::with(|b| b);
    app.chancy
        .declare(
            &Queue::new("pyq")
                .concurrency(2)
                .executor(THREADED_EXECUTOR)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let ok = app
        .chancy
        .push(
            &Job::new("interop_jobs.py_job")
                .queue("pyq")
                .kwargs(json!({"x": 7}))
                .meta(json!({"from": "rust"})),
        )
        .unwrap();
    let bad = app
        .chancy
        .push(&Job::new("interop_jobs.py_fail").queue("pyq"))
        .unwrap();
    let ids = json!([ok.to_string(), bad.to_string()]).to_string();
    let url = database_url();
    let out = py(&["work", &url, &app.prefix, &ids, "60"]);
    assert_eq!(out.as_array().unwrap().len(), 2, "{out}");
    let ok = app.chancy.get_job(&ok).unwrap().unwrap();
    assert_eq!((ok.state, ok.attempts), (JobState::Succeeded, 1));
    assert_eq!(
        json!(ok.meta),
        json!({"from": "rust", "ran_by": "python", "x_seen": 7})
    );
    let bad = app.chancy.get_job(&bad).unwrap().unwrap();
    assert_eq!(bad.state, JobState::Failed);
    assert!(bad.errors[0]
        .traceback
        .contains("ValueError: python says no"));
}

#[test]
fn python_lists_rust_workers_and_reads_rust_queues() {
    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("rq").tags(["rust=.*"]).concurrency(3))
        .unwrap();
    let w = worker(&app)
        .worker_id("rust-listed")
        .tags(["team=core"])
        .build()
        .unwrap();
    let events = support::events::start(&w);
    events.queue_started("rq", WAIT);
    // Two heartbeats after the queue started: the worker row lists it.
    events.passes("heartbeat", 2, WAIT);
    let url = database_url();
    let workers = py(&["workers", &url, &app.prefix]);
    let queues = py(&["queues", &url, &app.prefix]);
    w.stop();
    let me = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "rust-listed")
        .expect("Python lists the Rust worker");
    let tags: Vec<&str> = me["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"team=core") && tags.iter().any(|t| t.starts_with("rust=")),
        "{tags:?}"
    );
    assert!(me["queues"].as_array().unwrap().contains(&json!("rq")));
    let rq = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "rq")
        .unwrap();
    assert_eq!(rq["concurrency"], 3);
    assert_eq!(rq["tags"], json!(["rust=.*"]));
}

#[test]
fn python_cancel_stops_a_running_rust_job() {
    let app = TestApp::new();
    let saw = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let (s, r) = (Arc::clone(&saw), Arc::clone(&running));
    let w = worker(&app)
        .job("myapp.tasks.long", move |ctx| {
            r.store(true, Ordering::SeqCst);
            // Never opened: only the cancellation ends the run.
            let outcome = support::wait::Gate::new().pass(ctx);
            s.store(outcome.is_err(), Ordering::SeqCst);
            outcome
        })
        .build()
        .unwrap();
    w.start().unwrap();
    let job = app.chancy.push(&Job::new("myapp.tasks.long")).unwrap();
    wait_until(|| running.load(Ordering::SeqCst));
    py(&["cancel", &database_url(), &app.prefix, &job.to_string()]);
    wait_until(|| saw.load(Ordering::SeqCst));
    w.stop();
    let row = app.chancy.get_job(&job).unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed);
    assert!(row.errors.is_empty());
}

#[test]
fn a_python_cron_schedule_runs_on_a_rust_worker() {
    use chancy::plugins::Cron;
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(Cron::new().poll_interval(Duration::from_millis(500)))
    });
    let url = database_url();
    py(&[
        "cron_schedule",
        &url,
        &app.prefix,
        "py-cron",
        "myapp.tasks.tick",
    ]);
    // Make Python's schedule due now instead of at the next minute.
    app.client()
        .execute(
            &app.sql("UPDATE \"{p}cron\" SET next_run = NOW()")
                .replace("{p}", &app.prefix),
            &[],
        )
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    let w = worker(&app)
        .job("myapp.tasks.tick", move |ctx| {
            assert_eq!(ctx.job().kwargs["from"], "python-cron");
            r.store(true, Ordering::SeqCst);
            Ok(())
        })
        .build()
        .unwrap();
    w.start().unwrap();
    wait_until(|| ran.load(Ordering::SeqCst));
    w.stop();
    let schedules = Cron::get_schedules(&app.chancy, None).unwrap();
    let s = schedules.get("py-cron").expect("the Python schedule");
    assert!(s.last_run.is_some(), "the Rust worker recorded the run");
    assert!(s.next_run > chrono::Utc::now(), "next_run advanced");
    assert_eq!(s.timezone, "Europe/Paris");
}

#[test]
fn a_python_workflow_completes_on_rust_workers() {
    use chancy::plugins::{WorkflowPlugin, WorkflowState};
    use chancy::ImmediateLeadership;
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(WorkflowPlugin::new().polling_interval(Duration::from_secs(1)))
    });
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let o = Arc::clone(&order);
    let w = worker(&app)
        .job("myapp.tasks.step", move |ctx| {
            o.lock()
                .push(ctx.job().kwargs["step"].as_str().unwrap_or("?").to_string());
            Ok(())
        })
        .build()
        .unwrap();
    w.start().unwrap();
    let url = database_url();
    let id = py(&["workflow_push", &url, &app.prefix, "myapp.tasks.step"]);
    let id: uuid::Uuid = id.as_str().unwrap().parse().unwrap();
    let wf = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    w.stop();
    assert_eq!(wf.state, WorkflowState::Completed);
    assert!(wf
        .steps
        .iter()
        .all(|s| s.state == Some(JobState::Succeeded)));
    let order = order.lock();
    assert_eq!(order.len(), 4);
    assert_eq!((order[0].as_str(), order[3].as_str()), ("a", "d"));
}

/// Python 0.26.0's `Metrics.get_metrics` reads what the Rust plugin flushed, and both
/// sides' sessions combine when Rust reads a key Python also wrote.
#[test]
fn python_reads_the_metrics_rust_wrote_and_sessions_combine() {
    use chancy::plugins::{Metrics, MetricsQuery, Resolution};
    // Keep every observation and read within one 1-hour bucket.
    support::wait::eventually(
        Duration::from_secs(40),
        "the first 3570 s of an hour",
        || chrono::Utc::now().timestamp() % 3600 <= 3570,
    );
    let metrics = Metrics::default();
    let m = metrics.clone();
    let app = TestApp::with(|b| b.no_default_plugins().plugin(m));
    assert!(metrics.increment_counter("interop:jobs", 1.0, "count"));
    assert!(metrics.increment_counter("interop:jobs", 2.0, "count"));
    assert!(metrics.record_histogram_value("interop:latency", 0.5, "seconds"));
    assert!(metrics.record_histogram_value("interop:latency", 1.5, "seconds"));
    assert!(metrics.record_gauge("interop:depth", 4.0, "number"));
    assert!(metrics.record_gauge("interop:depth", 7.0, "number"));
    metrics.flush(&app.chancy).unwrap();

    let url = database_url();
    let read = py(&["metrics_read", &url, &app.prefix, "interop"]);
    assert_eq!(
        read["keys"],
        json!(["interop:depth", "interop:jobs", "interop:latency"])
    );
    let series = &read["series"];
    assert_eq!(
        series["interop:jobs"],
        json!({"type": "counter", "unit": "count", "summary": 3.0, "points": 1})
    );
    assert_eq!(
        series["interop:depth"],
        json!({"type": "gauge", "unit": "number", "summary": 7.0, "points": 1})
    );
    assert_eq!(
        series["interop:latency"]["summary"],
        json!({"count": 2, "sum": 2.0, "avg": 1.0, "min": 0.5, "max": 1.5})
    );
    assert_eq!(series["interop:latency"]["unit"], "seconds");

    // Python writes the same counter in its own session; Rust reads the sum.
    py(&["metrics_write", &url, &app.prefix, "interop:jobs", "4"]);
    let query = MetricsQuery {
        prefix: Some("interop:jobs".into()),
        resolution: Resolution::OneHour,
        range: Some(Duration::from_secs(3600)),
        ..MetricsQuery::default()
    };
    let combined = metrics.get_metrics(&app.chancy, &query).unwrap();
    assert_eq!(combined["interop:jobs"].total(), Some(7.0));
    let read = py(&["metrics_read", &url, &app.prefix, "interop:jobs"]);
    assert_eq!(read["series"]["interop:jobs"]["summary"], json!(7.0));
}

#[test]
fn python_and_rust_workers_share_a_queue_without_running_a_claim_twice() {
    let app = TestApp::with(|b| b);
    let runs = format!("{}runs", app.prefix);
    app.client()
        .batch_execute(&format!(
            "CREATE TABLE \"{runs}\" (job_id uuid NOT NULL, runner text NOT NULL)"
        ))
        .unwrap();
    app.chancy
        .declare(
            &Queue::new("both")
                .executor(THREADED_EXECUTOR)
                .concurrency(4)
                .eager_polling(true)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let url = database_url();
    let (u, t) = (url.clone(), runs.clone());
    // Python's jobs wait at this advisory lock (after recording their run) until the Rust
    // worker has run jobs too, so both share the queue whatever the speeds.
    let gate: i64 = rand_key();
    let mut holder = app.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&gate])
        .unwrap();
    let w = worker(&app)
        .worker_id("rust-shared")
        .job("interop_jobs.py_record", move |ctx| {
            let mut c = postgres::Client::connect(&u, postgres::NoTls)?;
            c.execute(
                &format!("INSERT INTO \"{t}\" (job_id, runner) VALUES ($1, 'rust')"),
                &[&ctx.job().id],
            )?;
            Ok(())
        })
        .build()
        .unwrap();
    let jobs: Vec<Job> = (0..300)
        .map(|_| {
            Job::new("interop_jobs.py_record")
                .queue("both")
                .kwargs(json!({"dsn": url, "table": runs, "gate": gate}))
        })
        .collect();
    let refs = app.chancy.push_many(&jobs).unwrap();
    let ids = json!(refs.iter().map(ToString::to_string).collect::<Vec<_>>()).to_string();
    // Python starts first and is draining when the Rust worker joins.
    let (pu, pp) = (url.clone(), app.prefix.clone());
    let python = std::thread::spawn(move || py(&["work", &pu, &pp, &ids, "120"]));
    wait_until(|| {
        app.client()
            .query_one(&format!("SELECT count(*) FROM \"{runs}\""), &[])
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    w.start().unwrap();
    let ran_by = |runner: &str| {
        app.client()
            .query_one(
                &format!("SELECT count(*) FROM \"{runs}\" WHERE runner = $1"),
                &[&runner],
            )
            .unwrap()
            .get::<_, i64>(0)
    };
    wait_until(|| ran_by("rust") > 0);
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&gate])
        .unwrap();
    python.join().unwrap();
    let done = app.chancy.wait_for_jobs(&refs, WAIT).unwrap();
    w.stop();
    assert!(done
        .iter()
        .all(|j| j.state == JobState::Succeeded && j.attempts == 1));
    let rows = app
        .client()
        .query(
            &format!("SELECT runner, count(*), count(DISTINCT job_id) FROM \"{runs}\" GROUP BY 1"),
            &[],
        )
        .unwrap();
    let mut total = 0;
    let mut distinct = 0;
    for r in &rows {
        total += r.get::<_, i64>(1);
        distinct += r.get::<_, i64>(2);
    }
    let by_runner: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(total, 300, "every job ran exactly once over both workers");
    assert_eq!(distinct, 300);
    assert!(by_runner.contains(&"rust".to_string()), "{by_runner:?}");
    assert!(by_runner.contains(&"python".to_string()), "{by_runner:?}");
}

#[test]
fn a_typed_rust_handler_runs_jobs_pushed_from_python() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Invoice {
        customer: String,
        cents: i64,
    }
    impl chancy::JobArgs for Invoice {
        const FUNC: &'static str = "myapp.tasks.invoice";
    }

    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("typed").polling_interval(Duration::from_secs(1)))
        .unwrap();
    let w = worker(&app)
        .handle(|ctx: &chancy::JobContext, args: Invoice| {
            ctx.set_meta("billed", json!(format!("{}:{}", args.customer, args.cents)));
            Ok(())
        })
        .build()
        .unwrap();
    w.start().unwrap();
    let spec = json!([
        {"func": "myapp.tasks.invoice", "kwargs": {"customer": "acme", "cents": 1250}},
        {"func": "myapp.tasks.invoice", "kwargs": {"customer": "acme"}}
    ]);
    let ids = refs(&py(&[
        "push",
        &database_url(),
        &app.prefix,
        "typed",
        &spec.to_string(),
    ]));
    let done = app.chancy.wait_for_jobs(&ids, WAIT).unwrap();
    w.stop();

    assert_eq!(done[0].state, JobState::Succeeded);
    assert_eq!(done[0].meta["billed"], json!("acme:1250"));
    assert_eq!(done[1].state, JobState::Failed);
    assert_eq!(
        done[1].errors[0].traceback,
        "invalid kwargs for \"myapp.tasks.invoice\": missing field `cents`"
    );
}
