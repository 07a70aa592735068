//! The worker: outcomes, cancellation, fencing, queues, wake-ups, shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chancy::tooling::WorkerTooling;
use chancy::{Job, JobError, JobState, Limit, Queue, QueueState, Reference, Worker};
use parking_lot::Mutex;
use serde_json::json;

use crate::common::TestApp;
use crate::support::events;
use crate::support::wait::{eventually, Counter, Gate};

const WAIT: Duration = Duration::from_secs(30);

use crate::common::fast_worker;

fn declare(app: &TestApp, queue: Queue) {
    app.chancy.declare_upsert(&queue).unwrap();
}

fn finished(app: &TestApp, r: &Reference) -> chancy::QueuedJob {
    app.chancy
        .wait_for_job(r, WAIT)
        .unwrap()
        .expect("job exists")
}

#[test]
fn a_job_succeeds_and_is_recorded_like_python() {
    let app = TestApp::new();
    let worker = fast_worker(&app).worker_id("w-basic").build().unwrap();
    worker.start().unwrap();
    let r = app.chancy.push(&Job::new("t.noop")).unwrap();
    let job = finished(&app, &r);
    assert!(worker.stop());
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1));
    assert!(job.completed_at.is_some() && job.started_at.is_some());
    assert_eq!(job.taken_by.as_deref(), Some("w-basic"));
    assert!(
        job.claim_id.is_some(),
        "the last claim is kept, like Python"
    );
    assert!(job.errors.is_empty());
    let default = app.chancy.get_queue("default").unwrap();
    assert_eq!(
        default.executor,
        chancy::THREADED_EXECUTOR,
        "start leaves an existing default queue alone"
    );
}

#[test]
fn failures_retry_until_max_attempts_with_error_entries() {
    let app = TestApp::new();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let once = app.chancy.push(&Job::new("t.fail")).unwrap();
    let thrice = app
        .chancy
        .push(&Job::new("t.fail").max_attempts(3))
        .unwrap();
    let a = finished(&app, &once);
    let b = finished(&app, &thrice);
    worker.stop();
    assert_eq!(
        (a.state, a.attempts, a.errors.len()),
        (JobState::Failed, 1, 1)
    );
    assert_eq!((b.state, b.attempts), (JobState::Failed, 3));
    let attempts: Vec<i64> = b.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, vec![0, 1, 2]);
    assert!(b
        .errors
        .iter()
        .all(|e| e.traceback.contains("This job should fail")));
}

#[test]
fn panics_unknown_functions_and_bad_kwargs_fail_only_the_attempt() {
    #[derive(serde::Deserialize)]
    struct Args {
        #[allow(dead_code)]
        n: u32,
    }
    let app = TestApp::new();
    let worker = fast_worker(&app)
        .panic_hook(true) // the location below comes from the hook
        .job("t.panic", |_| panic!("kaboom"))
        .job("t.typed", |ctx| {
            let _: Args = ctx.kwargs()?;
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let p = app.chancy.push(&Job::new("t.panic")).unwrap();
    let u = app.chancy.push(&Job::new("t.nobody")).unwrap();
    let k = app
        .chancy
        .push(&Job::new("t.typed").kwargs(json!({"n": "x"})))
        .unwrap();
    let ok = app
        .chancy
        .push(&Job::new("t.typed").kwargs(json!({"n": 3})))
        .unwrap();
    let (p, u, k, ok) = (
        finished(&app, &p),
        finished(&app, &u),
        finished(&app, &k),
        finished(&app, &ok),
    );
    worker.stop();
    assert_eq!(p.state, JobState::Failed);
    assert!(
        p.errors[0].traceback.contains("kaboom"),
        "{}",
        p.errors[0].traceback
    );
    assert!(
        p.errors[0].traceback.contains("worker.rs"),
        "panic location: {}",
        p.errors[0].traceback
    );
    assert!(
        u.errors[0].traceback.contains("no handler is registered"),
        "{}",
        u.errors[0].traceback
    );
    assert!(
        k.errors[0].traceback.contains("invalid type"),
        "{}",
        k.errors[0].traceback
    );
    assert_eq!(ok.state, JobState::Succeeded);
}

/// A completion leaves `meta` and `errors` the run did not change as the row holds them: it
/// used to assign both from the outcome, which stores a large (TOASTed) value out of line
/// again on every completion (its size twice over in WAL and table). Earlier errors survive
/// a run that succeeds, and a run's own changes are still written.
#[test]
fn a_completion_does_not_store_unchanged_meta_and_errors_again() {
    let app = TestApp::new();
    let first_runs = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&first_runs);
    let worker = fast_worker(&app)
        .job("t.flaky", move |ctx| {
            if seen.lock().insert(ctx.job().id) {
                return Err(JobError::new("first run fails"));
            }
            Ok(())
        })
        .build()
        .unwrap();
    // 16 kB of uuids per job: incompressible enough to be stored out of line.
    let blob = |_| {
        (0..450)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect::<String>()
    };
    let refs: Vec<Reference> = (0..20)
        .map(|i| {
            let job = Job::new(if i % 2 == 0 { "t.noop" } else { "t.flaky" })
                .max_attempts(2)
                .meta(json!({ "blob": blob(i) }));
            app.chancy.push(&job).unwrap()
        })
        .collect();
    let mut db = app.client();
    let toast_size = |db: &mut postgres::Client| -> i64 {
        db.query_one(
            &app.sql("SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = '{jobs}'::regclass"),
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = toast_size(&mut db);
    assert!(
        before >= 20 * 8192,
        "the metas are stored out of line: {before} bytes"
    );
    worker.start().unwrap();
    let done: Vec<_> = refs.iter().map(|r| finished(&app, r)).collect();
    worker.stop();
    for (i, job) in done.iter().enumerate() {
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.errors);
        assert_eq!(job.meta["blob"].as_str().map(str::len), Some(450 * 36));
        let errors = if i % 2 == 0 { 0 } else { 1 };
        assert_eq!(
            job.errors.len(),
            errors,
            "a failed run's error survives the success"
        );
    }
    let after = toast_size(&mut db);
    // Only the failed runs wrote errors (small, inline); no meta was stored again.
    assert_eq!(
        after, before,
        "unchanged metas were stored out of line again"
    );
}

#[test]
fn meta_changes_persist_and_time_limits_fail_overruns() {
    let app = TestApp::new();
    let worker = fast_worker(&app)
        .job("t.meta", |ctx| {
            ctx.set_meta("received_instance", json!(true));
            Ok(())
        })
        .job("t.slow", |ctx| {
            assert!(ctx.deadline().is_some());
            // Overruns its 1 s time limit: elapsed time is what is under test.
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let m = app
        .chancy
        .push(&Job::new("t.meta").meta(json!({"keep": 1})))
        .unwrap();
    let s = app
        .chancy
        .push(&Job::new("t.slow").limit(Limit::time(Duration::from_secs(1))))
        .unwrap();
    let (m, s) = (finished(&app, &m), finished(&app, &s));
    worker.stop();
    assert_eq!(json!(m.meta), json!({"keep": 1, "received_instance": true}));
    assert_eq!(s.state, JobState::Failed);
    assert!(
        s.errors[0].traceback.contains("TimeoutError"),
        "{}",
        s.errors[0].traceback
    );
}

#[test]
fn cancelling_a_running_job_stops_it_and_the_row_stays_failed() {
    let app = TestApp::new();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (seen, st) = (Arc::clone(&saw_cancel), Arc::clone(&started));
    let worker = fast_worker(&app)
        .job("t.long", move |ctx| {
            st.store(true, Ordering::SeqCst);
            // Never opened: only the cancellation ends the run.
            let outcome = Gate::new().pass(ctx);
            seen.store(outcome.is_err(), Ordering::SeqCst);
            outcome
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("t.long").max_attempts(3))
        .unwrap();
    wait_until(|| started.load(Ordering::SeqCst));
    app.chancy.cancel_job(&r).unwrap();
    wait_until(|| saw_cancel.load(Ordering::SeqCst));
    assert!(worker.stop());
    let job = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.errors.is_empty(),
        "the cancelled run's outcome was fenced out"
    );
    assert_eq!(job.attempts, 0);
    assert!(job.completed_at.is_some());
}

#[test]
fn late_outcomes_of_a_superseded_claim_are_fenced() {
    let app = TestApp::new();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let queue = Queue::new("manual").tags(["nobody-serves-this"]);
    declare(&app, queue.clone());
    let r = app
        .chancy
        .push(&Job::new("t.noop").queue("manual"))
        .unwrap();
    let mut conn = app.chancy.connection().unwrap();
    let claimed = worker.fetch_jobs(&queue, &mut conn, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    let job = claimed.into_iter().next().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert!(job.claim_id.is_some());
    // Recovery-style reset plus a new claim: the first claim's outcome must not land.
    app.client()
        .execute(&app.sql("UPDATE {jobs} SET state = 'pending', claim_id = NULL, taken_by = NULL WHERE id = $1"), &[&r.id()])
        .unwrap();
    let second = worker
        .fetch_jobs(&queue, &mut conn, 10)
        .unwrap()
        .pop()
        .unwrap();
    assert_ne!(second.claim_id, job.claim_id);
    let mut stale = job.clone();
    stale.state = JobState::Succeeded;
    stale.attempts = 1;
    assert!(worker.queue_update(stale));
    let mut fresh = second.clone();
    fresh.state = JobState::Failed;
    fresh.attempts = 1;
    assert!(worker.queue_update(fresh));
    wait_until(|| worker.pending_updates() == 0);
    worker.stop();
    let row = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!(
        row.state,
        JobState::Failed,
        "only the current claim's update is accepted"
    );
    assert!(
        !worker.queue_update(second),
        "updates are refused after stop"
    );
}

#[test]
fn stop_flushes_every_outcome_and_leaves_nothing_running() {
    let app = TestApp::new();
    declare(&app, Queue::new("busy").concurrency(8).eager_polling(true));
    let ran = Counter::new();
    let count = ran.clone();
    let worker = fast_worker(&app)
        .job("t.short", move |_| {
            count.add();
            Ok(())
        })
        .build()
        .unwrap();
    let jobs: Vec<Job> = (0..2000)
        .map(|_| Job::new("t.short").queue("busy"))
        .collect();
    app.chancy.push_many(&jobs).unwrap();
    worker.start().unwrap();
    ran.wait_for(50, WAIT, "jobs run before the stop");
    assert!(worker.stop(), "short jobs drain within the timeout");
    let mut c = app.client();
    let running: i64 = c
        .query_one(
            &app.sql("SELECT count(*) FROM {jobs} WHERE state = 'running'"),
            &[],
        )
        .unwrap()
        .get(0);
    let done: i64 = c
        .query_one(
            &app.sql("SELECT count(*) FROM {jobs} WHERE state = 'succeeded'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(running, 0);
    assert!(
        done > 0 && done < 2000,
        "the drain stopped part-way: {done}"
    );
    assert!(worker
        .manager()
        .services()
        .iter()
        .all(|s| s.state == chancy::ServiceState::Stopped));
}

#[test]
fn a_push_wakes_an_idle_worker_at_once() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("slowpoll").polling_interval(Duration::from_secs(60)),
    );
    let worker = fast_worker(&app).build().unwrap();
    let events = events::start(&worker);
    events.queue_started("slowpoll", WAIT);
    // Its first visit is over: the next poll is a minute away, so only the push can wake it.
    events.next_poll("slowpoll", WAIT);
    let started = Instant::now();
    let r = app
        .chancy
        .push(&Job::new("t.noop").queue("slowpoll"))
        .unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(5))
        .unwrap()
        .unwrap();
    worker.stop();
    assert_eq!(job.state, JobState::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn queues_are_removed_updated_and_routed_by_tags() {
    let app = TestApp::new();
    declare(&app, Queue::new("gpu").tags(["has=gpu"]));
    declare(&app, Queue::new("temp").concurrency(1));
    let plain = fast_worker(&app).build().unwrap();
    let gpu = fast_worker(&app).tags(["has=gpu"]).build().unwrap();
    plain.start().unwrap();
    gpu.start().unwrap();
    wait_until(|| {
        gpu.queues().contains(&"gpu".to_string()) && plain.queues().contains(&"temp".to_string())
    });
    assert!(!plain.queues().contains(&"gpu".to_string()));

    // Subscribe before acting: the event may fire before a later wait_for could listen.
    let (tx, rx) = crossbeam_channel::unbounded();
    for name in [chancy::QUEUE_UPDATED, chancy::QUEUE_REMOVED] {
        let tx = tx.clone();
        plain.hub().on(name, move |e| {
            let _ = tx.send((e.name.clone(), e.body.clone()));
        });
    }
    let next = |wanted: &str| loop {
        let (name, body) = rx.recv_timeout(WAIT).expect(wanted);
        if name == wanted {
            break body;
        }
    };
    declare(&app, Queue::new("temp").concurrency(4));
    next(chancy::QUEUE_UPDATED);
    app.chancy.delete_queue("temp", true).unwrap();
    assert_eq!(next(chancy::QUEUE_REMOVED)["queue"], "temp");
    wait_until(|| !plain.queues().contains(&"temp".to_string()));

    let r = app.chancy.push(&Job::new("t.noop").queue("gpu")).unwrap();
    let job = finished(&app, &r);
    assert_eq!(job.taken_by.as_deref(), Some(gpu.worker_id()));
    plain.stop();
    gpu.stop();
}

#[test]
fn heartbeat_lists_the_worker_with_tags_and_queues() {
    let app = TestApp::new();
    let worker = fast_worker(&app)
        .worker_id("w-heart")
        .tags(["team=a"])
        .build()
        .unwrap();
    worker.start().unwrap();
    wait_until(|| {
        app.chancy
            .get_all_workers()
            .unwrap()
            .iter()
            .any(|w| w.worker_id == "w-heart" && w.queues.contains(&"default".to_string()))
    });
    let row = app
        .chancy
        .get_all_workers()
        .unwrap()
        .into_iter()
        .find(|w| w.worker_id == "w-heart")
        .unwrap();
    worker.stop();
    for tag in ["*", "worker_id=w-heart", "team=a", "os=Linux"] {
        assert!(
            row.tags.contains(&tag.to_string()),
            "{tag} in {:?}",
            row.tags
        );
    }
    assert!(row.tags.iter().any(|t| t.starts_with("rust=")));
    assert!(row.tags.iter().any(|t| t.starts_with("hostname=")));
    assert!(!row.is_leader);
}

#[test]
fn paused_queues_wait_and_auto_resume() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("paused")
            .state(QueueState::Paused)
            .polling_interval(Duration::from_secs(1)),
    );
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("t.noop").queue("paused"))
        .unwrap();
    assert!(app
        .chancy
        .wait_for_job(&r, Duration::from_secs(2))
        .unwrap_err()
        .is_timeout());
    app.chancy
        .pause_queue(
            "paused",
            Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
        )
        .unwrap();
    let job = finished(&app, &r);
    worker.stop();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        app.chancy.get_queue("paused").unwrap().state,
        QueueState::Active
    );
}

#[test]
fn scheduled_jobs_wait_for_their_time() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("later").polling_interval(Duration::from_secs(1)),
    );
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let r = app
        .chancy
        .push(
            &Job::new("t.noop")
                .queue("later")
                .delay(Duration::from_secs(2)),
        )
        .unwrap();
    let job = finished(&app, &r);
    worker.stop();
    assert_eq!(job.state, JobState::Succeeded);
    assert!(job.started_at.unwrap() >= job.scheduled_at);
}

#[test]
fn rate_limits_cap_jobs_per_window() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("limited")
            .concurrency(5)
            .polling_interval(Duration::from_secs(1))
            .rate_limit(2, Duration::from_secs(3600)),
    );
    let worker = fast_worker(&app).build().unwrap();
    let events = events::start(&worker);
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.noop").queue("limited"); 5])
        .unwrap();
    // Polls until the window's two jobs are claimed, then two more polls that claim nothing.
    let mut claimed = 0;
    while claimed < 2 {
        let poll = events.next_poll("limited", WAIT);
        claimed += poll.body["claimed"].as_u64().unwrap();
    }
    for _ in 0..2 {
        let poll = events.next_poll("limited", WAIT);
        assert_eq!(poll.body["claimed"], 0, "a claim over the rate limit");
    }
    worker.stop();
    let done = app
        .chancy
        .get_jobs(&refs)
        .unwrap()
        .iter()
        .filter(|j| j.state == JobState::Succeeded)
        .count();
    assert_eq!(done, 2);
}

fn regression_48(eager: bool) -> bool {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("normal")
            .concurrency(1)
            .polling_interval(Duration::from_secs(5))
            .eager_polling(eager),
    );
    let worker = fast_worker(&app).build().unwrap();
    let events = events::start(&worker);
    events.queue_started("normal", WAIT);
    // Its first visit is over: the next poll is 5 s away.
    events.next_poll("normal", WAIT);
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.noop").queue("normal"); 5])
        .unwrap();
    let all_done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(3))
        .is_ok();
    worker.stop();
    all_done
}

/// Upstream polls a non-eager queue only every `polling_interval` (issue 48 there); we refill
/// after a claim that filled every free slot whatever the setting (README, deviations).
#[test]
fn regression_48_a_full_claim_refills_even_without_eager_polling() {
    assert!(regression_48(false));
}

/// Non-eager queue, poll 5 s, concurrency 2, 40 short jobs waiting: upstream's rule drains
/// 2 jobs per poll (100 s); refilling as slots free up drains them in a few seconds.
#[test]
fn a_backlog_drains_as_slots_free_up_without_eager_polling() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("backlog")
            .concurrency(2)
            .polling_interval(Duration::from_secs(5))
            .eager_polling(false),
    );
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.short").queue("backlog"); 40])
        .unwrap();
    let worker = fast_worker(&app)
        .job("t.short", |_| Ok(()))
        .build()
        .unwrap();
    let started = Instant::now();
    worker.start().unwrap();
    // Generous: upstream's rule would need 20 polls of 5 s; refills need well under 1 s.
    let drained = app.chancy.wait_for_jobs(&refs, Duration::from_secs(30));
    let took = started.elapsed();
    worker.stop();
    drained.expect("the backlog drains long before 20 polling intervals");
    let jobs = app.chancy.get_jobs(&refs).unwrap();
    assert!(jobs
        .iter()
        .all(|j| j.state == JobState::Succeeded && j.attempts == 1));
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn regression_48_eager_polling_repolls_when_a_job_finishes() {
    assert!(regression_48(true));
}

#[test]
fn eager_queues_retry_failed_attempts_at_once() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("eager")
            .concurrency(2)
            .eager_polling(true)
            .polling_interval(Duration::from_secs(60)),
    );
    let worker = fast_worker(&app).build().unwrap();
    events::start(&worker).queue_started("eager", WAIT);
    let r = app
        .chancy
        .push(&Job::new("t.fail").queue("eager").max_attempts(3))
        .unwrap();
    let job = app.chancy.wait_for_job(&r, Duration::from_secs(10));
    worker.stop();
    let job = job
        .expect("retries are claimed without waiting for the 60 s poll")
        .unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Failed, 3));
}

#[test]
fn regression_51_unique_job_runs_once_while_running() {
    let app = TestApp::new();
    let runs = Counter::new();
    let gate = Gate::new();
    let (r2, g2) = (runs.clone(), gate.clone());
    let worker = fast_worker(&app)
        .job("t.once", move |ctx| {
            r2.add();
            g2.pass(ctx)
        })
        .build()
        .unwrap();
    let events = events::start(&worker);
    let first = app
        .chancy
        .push(&Job::new("t.once").unique_key("only"))
        .unwrap();
    runs.wait_for(1, WAIT, "the first run");
    let second = app
        .chancy
        .push(&Job::new("t.once").unique_key("only"))
        .unwrap();
    assert_eq!(first, second);
    gate.open();
    finished(&app, &first);
    // Two more visits of the queue: a second run would have been claimed by now.
    events.polls("default", 2, WAIT);
    worker.stop();
    assert_eq!(runs.get(), 1);
}

#[test]
fn jobs_run_in_fifo_order_on_a_new_queue() {
    let app = TestApp::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = Arc::clone(&order);
    let worker = fast_worker(&app)
        .job("t.order", move |ctx| {
            o.lock().push(ctx.job().id);
            Ok(())
        })
        .build()
        .unwrap();
    let refs: Vec<Reference> = (0..30)
        .map(|_| app.chancy.push(&Job::new("t.order").queue("low")).unwrap())
        .collect();
    worker.start().unwrap();
    declare(&app, Queue::new("low").concurrency(1).eager_polling(true));
    app.chancy.wait_for_jobs(&refs, WAIT).unwrap();
    worker.stop();
    let expected: Vec<uuid::Uuid> = refs.iter().map(Reference::id).collect();
    assert_eq!(*order.lock(), expected);
}

#[test]
fn two_workers_never_run_a_claim_twice() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("shared").concurrency(4).eager_polling(true),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let make = |id: &str| {
        let s = Arc::clone(&seen);
        fast_worker(&app)
            .worker_id(id)
            .job("t.rec", move |ctx| {
                s.lock().push(ctx.job().id);
                Ok(())
            })
            .build()
            .unwrap()
    };
    let (a, b) = (make("w-a"), make("w-b"));
    a.start().unwrap();
    b.start().unwrap();
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.rec").queue("shared"); 600])
        .unwrap();
    let done = app.chancy.wait_for_jobs(&refs, WAIT).unwrap();
    a.stop();
    b.stop();
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    let runs = seen.lock();
    let unique: HashSet<_> = runs.iter().collect();
    assert_eq!(runs.len(), 600);
    assert_eq!(unique.len(), 600);
}

#[test]
fn starting_on_an_unmigrated_database_is_refused() {
    let app = TestApp::unmigrated(|b| b.no_default_plugins());
    let worker = Worker::builder(&app.chancy).build().unwrap();
    let err = worker.start().unwrap_err();
    assert!(err.is_migrations_needed(), "{err}");
    assert!(err.to_string().contains("chancy migrate"));
    assert!(worker.stop());
}

#[test]
fn bad_worker_settings_are_rejected() {
    let app = TestApp::new();
    let err = Worker::builder(&app.chancy)
        .heartbeat_poll_interval(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(30))
        .build()
        .unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("heartbeat_timeout"),
        "{err}"
    );
}

#[test]
fn the_listener_reconnects_after_its_backend_is_terminated() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("nudge").polling_interval(Duration::from_secs(60)),
    );
    let worker = fast_worker(&app).build().unwrap();
    let events = events::start(&worker);
    events.queue_started("nudge", WAIT);
    let channel = format!("LISTEN \"{}events\"", app.prefix);
    let n: i64 = app
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
            &[&channel],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the listener's backend was found");
    events.next(chancy::LISTENER_RECONNECTED, WAIT);
    // The reconnect wakes every queue once; after that visit only a NOTIFY wakes "nudge".
    events.next_poll("nudge", WAIT);
    let r = app.chancy.push(&Job::new("t.noop").queue("nudge")).unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(10))
        .unwrap()
        .unwrap();
    worker.stop();
    assert_eq!(job.state, JobState::Succeeded);
}

#[test]
fn the_worker_survives_its_connections_being_killed_mid_run() {
    let app_name = format!(
        "chancy_kill_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = format!(
        "{}?application_name={app_name}",
        crate::common::database_url()
    );
    let app = TestApp::at_url(&url, |b| b.no_default_plugins());
    declare(
        &app,
        Queue::new("victim")
            .concurrency(4)
            .eager_polling(true)
            .polling_interval(Duration::from_secs(1)),
    );
    // The first 600 runs are free; the rest wait at the gate until the third kill, so every
    // kill lands while jobs are running and more are waiting.
    let ran = Counter::new();
    let gate = Gate::new();
    let (count, g) = (ran.clone(), gate.clone());
    let worker = fast_worker(&app)
        .job("t.short", move |ctx| {
            if count.add() > 600 {
                g.pass(ctx)?;
            }
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.short").queue("victim"); 1500])
        .unwrap();
    for at in [100, 300, 600] {
        ran.wait_for(at, Duration::from_secs(60), "runs before a kill");
        app.client()
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app_name],
            )
            .unwrap();
    }
    gate.open();
    let done = app.chancy.wait_for_jobs(&refs, Duration::from_secs(60));
    let states: Vec<(String, i64)> = app
        .client()
        .query(
            &app.sql("SELECT state, count(*) FROM {jobs} GROUP BY 1 ORDER BY 1"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let done = done.unwrap_or_else(|e| {
        panic!(
            "{e}: states {states:?}, services {:?}",
            worker.manager().services()
        )
    });
    worker.stop();
    assert_eq!(done.len(), 1500);
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
}

fn wait_until(cond: impl FnMut() -> bool) {
    eventually(WAIT, "the worker's state", cond);
}

#[test]
fn queues_without_concurrency_use_the_executor_default() {
    let app = TestApp::new();
    declare(&app, Queue::new("dflt").eager_polling(true));
    assert_eq!(app.chancy.get_queue("dflt").unwrap().concurrency, None);
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.noop").queue("dflt"); 5])
        .unwrap();
    let done = app.chancy.wait_for_jobs(&refs, WAIT).unwrap();
    worker.stop();
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
}

#[test]
fn an_in_flight_job_survives_a_queue_update() {
    let app = TestApp::new();
    declare(
        &app,
        Queue::new("upd")
            .concurrency(1)
            .polling_interval(Duration::from_secs(1)),
    );
    let gate = Gate::new();
    let g = gate.clone();
    let worker = fast_worker(&app)
        .job("t.slow", move |ctx| g.pass(ctx))
        .build()
        .unwrap();
    let events = events::start(&worker);
    let first = app.chancy.push(&Job::new("t.slow").queue("upd")).unwrap();
    wait_until(|| worker.running_jobs() == 1);
    declare(
        &app,
        Queue::new("upd")
            .concurrency(3)
            .polling_interval(Duration::from_secs(1)),
    );
    // Two passes of the queues loop: the new configuration is wanted while the job runs.
    events.passes("queues", 2, WAIT);
    gate.open();
    let updated = events.next(chancy::QUEUE_UPDATED, WAIT);
    let second = app.chancy.push(&Job::new("t.noop").queue("upd")).unwrap();
    let (a, b) = (finished(&app, &first), finished(&app, &second));
    worker.stop();
    assert_eq!(
        updated.body["concurrency"], 1,
        "the old configuration is reported"
    );
    assert_eq!(
        (a.state, b.state),
        (JobState::Succeeded, JobState::Succeeded)
    );
    assert!(a.completed_at.unwrap() <= b.started_at.unwrap() + chrono::Duration::milliseconds(50));
}

/// A plugin that panics in its hooks and service, once each.
struct Unruly {
    hook_panicked: AtomicBool,
    pass_panicked: AtomicBool,
}

impl chancy::Plugin for Unruly {
    fn identifier(&self) -> &'static str {
        "test.unruly"
    }
    fn interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
    fn run_once(&self, _ctx: &chancy::PluginContext) -> chancy::Result<()> {
        if !self.pass_panicked.swap(true, Ordering::SeqCst) {
            panic!("service pass panics");
        }
        Ok(())
    }
    fn on_job_completed(&self, job: chancy::QueuedJob, _e: Option<&JobError>) -> chancy::QueuedJob {
        if !self.hook_panicked.swap(true, Ordering::SeqCst) {
            panic!("hook panics");
        }
        job
    }
}

#[test]
fn panicking_plugins_do_not_kill_worker_threads_and_lose_no_job() {
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(Unruly {
            hook_panicked: AtomicBool::new(false),
            pass_panicked: AtomicBool::new(false),
        })
    });
    declare(
        &app,
        Queue::new("unruly").concurrency(1).eager_polling(true),
    );
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let refs = app
        .chancy
        .push_many(&vec![Job::new("t.noop").queue("unruly"); 3])
        .unwrap();
    // The job whose hook panicked is released by the heartbeat's orphan sweep and runs again.
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(40))
        .unwrap();
    let plugin_state = worker.manager().state_of("plugin-test.unruly");
    worker.stop();
    assert!(
        done.iter().all(|j| j.state == JobState::Succeeded),
        "{done:?}"
    );
    assert_eq!(
        plugin_state,
        Some(chancy::ServiceState::Running),
        "the service recovered"
    );
}

/// Records `synchronous_commit` as seen inside the writer's transaction.
struct CommitModeProbe(Arc<Mutex<Vec<String>>>);

impl chancy::Plugin for CommitModeProbe {
    fn identifier(&self) -> &'static str {
        "test.commit_mode_probe"
    }

    fn on_jobs_updated_in_transaction(
        &self,
        _chancy: &chancy::Chancy,
        _jobs: &[&chancy::QueuedJob],
        tx: &mut postgres::Transaction<'_>,
    ) -> chancy::Result<()> {
        let row = tx.query_one("SHOW synchronous_commit", &[]).expect("SHOW");
        self.0.lock().push(row.get(0));
        Ok(())
    }
}

#[test]
fn synchronous_commit_off_applies_to_the_writer_only_when_asked() {
    for (setting, expected) in [(None, "on"), (Some(false), "off")] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = CommitModeProbe(Arc::clone(&seen));
        let app = TestApp::with(|b| b.no_default_plugins().plugin(probe));
        let mut builder = fast_worker(&app);
        if let Some(on) = setting {
            builder = builder.synchronous_commit(on);
        }
        let worker = builder.build().unwrap();
        assert_eq!(worker.synchronous_commit(), expected == "on");
        worker.start().unwrap();
        let refs = app.chancy.push_many(&vec![Job::new("t.noop"); 4]).unwrap();
        let done = app
            .chancy
            .wait_for_jobs_with(&refs, &chancy::WaitOptions::timeout(WAIT))
            .unwrap();
        assert_eq!(done.len(), refs.len());
        assert!(done.iter().all(|j| j.state == JobState::Succeeded));
        assert!(worker.stop());
        let seen = seen.lock().clone();
        assert!(!seen.is_empty(), "the writer committed at least one batch");
        assert!(seen.iter().all(|s| s == expected), "{setting:?}: {seen:?}");
        let mut c = app.client();
        let mine: String = c.query_one("SHOW synchronous_commit", &[]).unwrap().get(0);
        assert_eq!(mine, "on", "other connections keep the server default");
    }
}

/// Holds the writer thread in its after-commit hook on the first batch until released.
struct HoldsWriter {
    holding: Arc<chancy::Flag>,
    release: Arc<chancy::Flag>,
}

impl chancy::Plugin for HoldsWriter {
    fn identifier(&self) -> &'static str {
        "test.holds_writer"
    }
    fn on_jobs_updated(&self, _jobs: &[&chancy::QueuedJob]) {
        if !self.holding.is_set() {
            self.holding.set();
            self.release.wait_timeout(WAIT);
        }
    }
}

#[test]
fn a_claim_stays_held_until_its_outcome_is_written_even_past_the_orphan_grace() {
    let (holding, release) = (Arc::new(chancy::Flag::new()), Arc::new(chancy::Flag::new()));
    let plugin = HoldsWriter {
        holding: Arc::clone(&holding),
        release: Arc::clone(&release),
    };
    let app = TestApp::with(|b| b.no_default_plugins().plugin(plugin));
    declare(&app, Queue::new("held").concurrency(2));
    let runs: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let seen = Arc::clone(&runs);
    let worker = fast_worker(&app)
        .job("t.count", move |ctx| {
            seen.lock().push(ctx.job().id);
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let first = app.chancy.push(&Job::new("t.count").queue("held")).unwrap();
    assert!(holding.wait_timeout(WAIT), "the first batch was committed");
    // The writer is stuck after that commit: the next outcome waits in `outgoing`.
    let second = app.chancy.push(&Job::new("t.count").queue("held")).unwrap();
    let ran = |r: &Reference| runs.lock().iter().filter(|id| **id == r.id()).count();
    eventually(WAIT, "the second job to run", || ran(&second) > 0);
    // Elapsed time is what is under test: past the heartbeat's 10 s orphan grace (and a
    // heartbeat or two), a claim whose outcome is not yet written must still be held.
    std::thread::sleep(Duration::from_millis(12_500));
    let waiting = app.chancy.get_job(&second).unwrap().unwrap();
    assert_eq!(
        waiting.state,
        JobState::Running,
        "the orphan sweep released a claim whose outcome was waiting for the writer"
    );
    release.set();
    let done = app.chancy.wait_for_job(&second, WAIT).unwrap().unwrap();
    let first = app.chancy.get_job(&first).unwrap().unwrap();
    assert!(worker.stop());
    assert_eq!(
        (first.state, done.state),
        (JobState::Succeeded, JobState::Succeeded)
    );
    assert_eq!(ran(&second), 1, "the job ran once");
    assert_eq!(done.attempts, 1);
}

#[test]
fn a_queue_deleted_and_declared_again_while_its_jobs_finish_is_served_again() {
    let app = TestApp::new();
    declare(&app, Queue::new("comeback").concurrency(1));
    let release = Arc::new(chancy::Flag::new());
    let gate = Arc::clone(&release);
    let worker = fast_worker(&app)
        .job("t.gate", move |_| {
            gate.wait_timeout(WAIT);
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let held = app
        .chancy
        .push(&Job::new("t.gate").queue("comeback"))
        .unwrap();
    wait_until(|| worker.running_jobs() == 1);
    app.chancy.delete_queue("comeback", false).unwrap();
    wait_until(|| !worker.queues().contains(&"comeback".to_string()));
    // Back while the old runner still finishes its job; the queues loop (every 300 ms and
    // on `queue.declared`) must see it back before that job ends: elapsed time is the
    // point here, not a wait for an event.
    declare(&app, Queue::new("comeback").concurrency(1));
    std::thread::sleep(Duration::from_secs(1));
    release.set();
    assert_eq!(finished(&app, &held).state, JobState::Succeeded);
    let next = app
        .chancy
        .push(&Job::new("t.noop").queue("comeback"))
        .unwrap();
    let job = finished(&app, &next);
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "the queue is served again once its old runner finished"
    );
    wait_until(|| worker.queues().contains(&"comeback".to_string()));
    assert!(worker.stop());
}

/// Hub handlers run on the thread that emits; they may look at the worker. Every
/// `worker.queue.*` event is emitted with no worker lock held: before, `worker.queue.started`
/// came with the runners map locked (a handler calling `Worker::queues` hung queue
/// maintenance for good) and `worker.queue.polled`/`full` with the queue's visit lock held (a
/// handler calling `Worker::executor_threads` hung that fetch thread).
#[test]
fn queue_event_handlers_may_call_back_into_the_worker() {
    let app = TestApp::new();
    let worker = fast_worker(&app).build().unwrap();
    let listed: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let polled = Counter::new();
    let (w, s) = (worker.clone(), Arc::clone(&listed));
    let started = worker
        .hub()
        .on(chancy::QUEUE_STARTED, move |_| s.lock().push(w.queues()));
    let (w, c) = (worker.clone(), polled.clone());
    let on_poll = move |_: &chancy::Event| {
        let _ = w.executor_threads();
        c.add();
    };
    let polls = worker.hub().on(chancy::QUEUE_POLLED, on_poll.clone());
    let fulls = worker.hub().on(chancy::QUEUE_FULL, on_poll);
    worker.start().unwrap();
    declare(&app, Queue::new("listed").concurrency(1));
    eventually(
        Duration::from_secs(10),
        "the started handler saw the new queue",
        || {
            listed
                .lock()
                .iter()
                .any(|q| q.contains(&"listed".to_string()))
        },
    );
    let job = app
        .chancy
        .push(&Job::new("t.noop").queue("listed"))
        .unwrap();
    assert_eq!(finished(&app, &job).state, JobState::Succeeded);
    assert!(polled.get() > 0, "the poll handler ran");
    for id in [started, polls, fulls] {
        worker.hub().remove(id);
    }
    assert!(worker.stop());
}

/// Under transaction pooling no NOTIFY reaches the worker: it reads the claims of the jobs
/// it runs every `cancellation_poll_interval`, so a cancelled running job is stopped by the
/// first poll that starts after the cancel (with the outcome NOTIFY gives: the row stays
/// `failed`, the run's own outcome fenced out), a recovered one likewise, and the jobs
/// nobody touched run on.
#[test]
fn without_a_listener_cancelling_a_running_job_stops_it_at_the_next_claim_poll() {
    let app = TestApp::with(|b| b.transaction_pooling(true));
    let started = Arc::new(Counter::new());
    let stopped = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Gate::new();
    let (st, sp, g) = (Arc::clone(&started), Arc::clone(&stopped), gate.clone());
    let worker = fast_worker(&app)
        .cancellation_poll_interval(Duration::from_millis(200))
        .job("t.long", move |ctx| {
            st.add();
            let outcome = g.pass(ctx);
            if outcome.is_err() {
                sp.lock().push(ctx.job().id.to_string());
            }
            outcome
        })
        .build()
        .unwrap();
    declare(
        &app,
        Queue::new("default").concurrency(4).eager_polling(true),
    );
    // What happens on the hub, in order: cancellation polls and the stops they cause.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&seen);
    worker.hub().on_any(move |e| {
        if e.name == chancy::SERVICE_PASSED && e.body["service"] == "cancellations" {
            log.lock().push("pass".into());
        } else if e.name == chancy::events::JOB_CANCELLED || e.name == chancy::events::JOB_RECOVERED
        {
            log.lock()
                .push(format!("{} {}", e.name, e.body["j"].as_str().unwrap_or("")));
        }
    });
    let events = events::start(&worker);
    assert_eq!(worker.manager().state_of("listener"), None, "no LISTEN");
    assert_eq!(
        worker.manager().state_of("cancellations"),
        Some(chancy::ServiceState::Running)
    );
    let [cancelled, recovered, untouched] =
        [0, 1, 2].map(|_| app.chancy.push(&Job::new("t.long")).unwrap());
    started.wait_for(3, WAIT, "three long jobs running");

    let mark = seen.lock().len();
    assert!(app.chancy.cancel_job(&cancelled).unwrap().is_done());
    let cancel_event = format!("{} {cancelled}", chancy::events::JOB_CANCELLED);
    events.next_where(chancy::events::JOB_CANCELLED, WAIT, |b| {
        b["j"] == cancelled.to_string()
    });
    let after: Vec<String> = seen.lock()[mark..].to_vec();
    let at = after
        .iter()
        .position(|e| *e == cancel_event)
        .expect("recorded");
    assert!(
        after[..at].iter().filter(|e| *e == "pass").count() <= 1,
        "stopped by the first poll that started after the cancel: {after:?}"
    );
    eventually(WAIT, "the cancelled handler returned", || {
        stopped.lock().contains(&cancelled.to_string())
    });

    // A recovery-style reset takes the claim away too: that execution alone is stopped.
    app.client()
        .execute(
            &app.sql("UPDATE {jobs} SET state = 'pending', claim_id = NULL WHERE id = $1"),
            &[&recovered.id()],
        )
        .unwrap();
    events.next_where(chancy::events::JOB_RECOVERED, WAIT, |b| {
        b["j"] == recovered.to_string()
    });
    eventually(WAIT, "the recovered handler returned", || {
        stopped.lock().contains(&recovered.to_string())
    });
    assert!(!stopped.lock().contains(&untouched.to_string()));

    gate.open();
    for r in [&recovered, &untouched] {
        assert_eq!(finished(&app, r).state, JobState::Succeeded, "{r}");
    }
    assert!(worker.stop());
    let job = app.chancy.get_job(&cancelled).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.errors.is_empty(),
        "the cancelled run's outcome was fenced out"
    );
    assert_eq!(job.attempts, 0);
    assert!(job.completed_at.is_some());
    assert_eq!(
        stopped.lock().len(),
        2,
        "exactly the two jobs whose claims were taken: {:?}",
        stopped.lock()
    );
}

/// A cancel whose NOTIFY never reached the worker (sent while its listener was away) is
/// found when the listener reconnects: the worker reads the claims of its running jobs once.
#[test]
fn a_cancel_missed_while_the_listener_was_away_is_found_at_its_reconnect() {
    let app = TestApp::new();
    let started = Arc::new(Counter::new());
    let stopped = Arc::new(AtomicBool::new(false));
    let (st, sp, gate) = (Arc::clone(&started), Arc::clone(&stopped), Gate::new());
    let worker = fast_worker(&app)
        .job("t.long", move |ctx| {
            st.add();
            let outcome = gate.pass(ctx);
            sp.store(outcome.is_err(), Ordering::SeqCst);
            outcome
        })
        .build()
        .unwrap();
    let events = events::start(&worker);
    let r = app.chancy.push(&Job::new("t.long")).unwrap();
    started.wait_for(1, WAIT, "the long job running");
    // What a cancel writes, without its NOTIFY: as if it was sent while nobody listened.
    app.client()
        .execute(
            &app.sql(
                "UPDATE {jobs} SET state = 'failed', claim_id = NULL, completed_at = now() \
                 WHERE id = $1",
            ),
            &[&r.id()],
        )
        .unwrap();
    let channel = format!("LISTEN \"{}events\"", app.prefix);
    let n: i64 = app
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
            &[&channel],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the listener's backend was found");
    // The reconnect's handlers run (and find the cancel) before its event is recorded.
    events.next_where(chancy::events::JOB_CANCELLED, WAIT, |b| {
        b["j"] == r.to_string()
    });
    events.next(chancy::LISTENER_RECONNECTED, WAIT);
    eventually(WAIT, "the handler saw the cancel", || {
        stopped.load(Ordering::SeqCst)
    });
    assert!(worker.stop());
    let job = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Failed, 0));
    assert!(job.errors.is_empty(), "the run's outcome was fenced out");
}

/// `Worker::stop` from a hub handler (one of the worker's own threads, which the stop waits
/// for) hands the stop to a thread of its own: before, the stop joined the very thread it
/// ran on, panicked there, and every later `stop` blocked for good.
#[test]
fn stop_from_a_queue_event_handler_stops_the_worker() {
    let app = TestApp::new();
    let worker = fast_worker(&app).build().unwrap();
    let from_handler: Arc<Mutex<Option<bool>>> = Arc::default();
    let (w, seen) = (worker.clone(), Arc::clone(&from_handler));
    let id = worker.hub().on(chancy::QUEUE_POLLED, move |_| {
        let mut seen = seen.lock();
        if seen.is_none() {
            *seen = Some(w.stop());
        }
    });
    worker.start().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let waiter = worker.clone();
    std::thread::spawn(move || {
        waiter.wait_for_shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the worker stopped after a handler called stop");
    assert_eq!(
        *from_handler.lock(),
        Some(false),
        "on its own thread, stop hands itself on and returns at once"
    );
    assert!(worker.stop(), "a later stop returns the stop's result");
    worker.hub().remove(id);
}

/// A handler that ignores its cancellation is told once: the cancellation poll does not
/// report an execution again once it was told to stop (as one NOTIFY tells it once).
#[test]
fn a_handler_that_ignores_its_cancellation_is_told_once() {
    let app = TestApp::with(|b| b.transaction_pooling(true));
    let started = Arc::new(Counter::new());
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    let st = Arc::clone(&started);
    let worker = fast_worker(&app)
        .cancellation_poll_interval(Duration::from_millis(100))
        .job("t.stubborn", move |_ctx| {
            st.add();
            let _ = release_rx.recv_timeout(Duration::from_secs(60));
            Ok(())
        })
        .build()
        .unwrap();
    declare(&app, Queue::new("default").concurrency(2));
    let told = Arc::new(Counter::new());
    let passes = Arc::new(Counter::new());
    let (t, p) = (Arc::clone(&told), Arc::clone(&passes));
    worker.hub().on_any(move |e| {
        if e.name == chancy::events::JOB_CANCELLED {
            t.add();
        } else if e.name == chancy::SERVICE_PASSED && e.body["service"] == "cancellations" {
            p.add();
        }
    });
    worker.start().unwrap();
    let job = app.chancy.push(&Job::new("t.stubborn")).unwrap();
    started.wait_for(1, WAIT, "the stubborn job running");
    assert!(app.chancy.cancel_job(&job).unwrap().is_done());
    told.wait_for(1, WAIT, "the cancellation found by the poll");
    let after = passes.get();
    passes.wait_for(after + 5, WAIT, "five more cancellation passes");
    assert_eq!(told.get(), 1, "told once, not on every pass");
    release_tx.send(()).unwrap();
    assert!(worker.stop());
}
