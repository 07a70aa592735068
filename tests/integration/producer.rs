//! The producer and admin API against a real database.

use std::time::Duration;

use chancy::{Chancy, Job, JobState, Limit, Queue, QueueState, Reference, WaitOptions};
use chrono::Utc;
use serde_json::json;

use crate::common::{Listener, TestApp};

#[test]
fn push_stores_every_column_like_python() {
    let app = TestApp::new();
    let before = Utc::now();
    let r = app
        .chancy
        .push(
            &Job::new("myapp.tasks.send")
                .queue("emails")
                .kwargs(json!({"to": "a@b"}))
                .priority(7)
                .max_attempts(3)
                .limit(Limit::time(Duration::from_secs(30)))
                .meta(json!({"m": 1})),
        )
        .unwrap();
    let job = app.chancy.get_job(&r).unwrap().expect("job exists");
    assert_eq!(job.id, r.id());
    assert_eq!(job.queue, "emails");
    assert_eq!(job.func, "myapp.tasks.send");
    assert_eq!(json!(job.kwargs), json!({"to": "a@b"}));
    assert_eq!(json!(job.meta), json!({"m": 1}));
    assert_eq!(json!(job.limits), json!([{"t": "time", "v": 30}]));
    assert_eq!(
        (job.state, job.priority, job.attempts, job.max_attempts),
        (JobState::Pending, 7, 0, 3)
    );
    assert!(job.claim_id.is_none() && job.taken_by.is_none() && job.errors.is_empty());
    assert!(job.started_at.is_none() && job.completed_at.is_none() && job.unique_key.is_none());
    let slack = chrono::Duration::seconds(5);
    assert!(job.scheduled_at >= before - slack && job.scheduled_at <= Utc::now() + slack);
    assert!(job.created_at >= before - slack);
}

#[test]
fn ids_follow_push_order_and_chancy_layout() {
    let app = TestApp::new();
    let mut refs = Vec::new();
    for i in 0..5 {
        refs.push(
            app.chancy
                .push(&Job::new("f").kwargs(json!({"i": i})))
                .unwrap(),
        );
    }
    refs.extend(app.chancy.push_many(&vec![Job::new("g"); 50]).unwrap());
    let mut c = app.client();
    let ordered: Vec<uuid::Uuid> = c
        .query(&app.sql("SELECT id FROM {jobs} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let pushed: Vec<uuid::Uuid> = refs.iter().map(Reference::id).collect();
    assert_eq!(ordered, pushed);
    for id in &ordered {
        let hex = id.simple().to_string();
        assert_eq!(&hex[0..1], "0");
        assert_eq!(&hex[15..16], "7");
        assert!("89ab".contains(&hex[16..17]));
    }
}

#[test]
fn push_many_inserts_in_bulk_and_returns_refs_in_order() {
    let app = TestApp::new();
    let jobs: Vec<Job> = (0..12_000)
        .map(|i| {
            Job::new("bulk")
                .queue(if i % 2 == 0 { "a" } else { "b" })
                .kwargs(json!({"i": i}))
        })
        .collect();
    let refs = app.chancy.push_many(&jobs).unwrap();
    assert_eq!(refs.len(), 12_000);
    let mut c = app.client();
    let n: i64 = c
        .query_one(&app.sql("SELECT count(*) FROM {jobs}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 12_000);
    let sample = app.chancy.get_job(&refs[11_999]).unwrap().unwrap();
    assert_eq!(sample.kwargs["i"], json!(11_999));
    assert_eq!(sample.queue, "b");
}

#[test]
fn unique_keys_deduplicate_only_while_not_finished() {
    let app = TestApp::new();
    let job = Job::new("u").unique_key("k1");
    let first = app.chancy.push(&job).unwrap();
    let again = app
        .chancy
        .push(&job.clone().kwargs(json!({"changed": true})))
        .unwrap();
    assert_eq!(first, again);
    let stored = app.chancy.get_job(&first).unwrap().unwrap();
    assert!(
        stored.kwargs.is_empty(),
        "the existing row is left unchanged"
    );

    let mut c = app.client();
    c.execute(
        &app.sql("UPDATE {jobs} SET state = 'running' WHERE id = $1"),
        &[&first.id()],
    )
    .unwrap();
    assert_eq!(
        app.chancy.push(&job).unwrap(),
        first,
        "running jobs still hold the key"
    );

    c.execute(
        &app.sql("UPDATE {jobs} SET state = 'succeeded' WHERE id = $1"),
        &[&first.id()],
    )
    .unwrap();
    let fresh = app.chancy.push(&job).unwrap();
    assert_ne!(fresh, first, "a finished job frees its key");

    let batch = vec![
        Job::new("u").unique_key("k2"),
        Job::new("v"),
        Job::new("u").unique_key("k2"),
        Job::new("u").unique_key("k1"),
    ];
    let refs = app.chancy.push_many(&batch).unwrap();
    assert_eq!(refs[0], refs[2]);
    assert_eq!(refs[3], fresh);
    let n: i64 = c
        .query_one(&app.sql("SELECT count(*) FROM {jobs}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 4, "k1 (finished), k1 (fresh), k2, v");
}

#[test]
fn push_in_joins_the_callers_transaction() {
    let app = TestApp::new();
    let mut c = app.client();
    let mut tx = c.transaction().unwrap();
    let r = app.chancy.push_in(&mut tx, &Job::new("tx.job")).unwrap();
    tx.rollback().unwrap();
    assert!(app.chancy.get_job(&r).unwrap().is_none());

    let mut tx = c.transaction().unwrap();
    let r = app.chancy.push_in(&mut tx, &Job::new("tx.job")).unwrap();
    assert!(
        app.chancy.get_job(&r).unwrap().is_none(),
        "invisible before commit"
    );
    tx.commit().unwrap();
    assert!(app.chancy.get_job(&r).unwrap().is_some());
}

#[test]
fn bad_jobs_are_rejected_and_nothing_is_written() {
    let app = TestApp::new();
    let bad = [
        Job::new("f").kwargs(json!([1, 2])),
        Job::new("f").meta(json!("x")),
        Job::new(""),
        Job::new("f").queue(""),
        Job::new("f").max_attempts(0),
    ];
    for job in &bad {
        let err = app
            .chancy
            .push_many(&[Job::new("ok"), job.clone()])
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    let mut c = app.client();
    let n: i64 = c
        .query_one(&app.sql("SELECT count(*) FROM {jobs}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn notify_payloads_match_python_byte_for_byte() {
    let app = TestApp::new();
    let mut listener = Listener::new(&format!("{}events", app.prefix));
    let r = app.chancy.push(&Job::new("f")).unwrap();
    app.chancy
        .push_many(&[
            Job::new("f").queue("b"),
            Job::new("f").queue("a"),
            Job::new("f").queue("b"),
        ])
        .unwrap();
    app.chancy.declare(&Queue::new("q1")).unwrap();
    app.chancy.pause_queue("q1", None).unwrap();
    app.chancy.resume_queue("q1").unwrap();
    app.chancy.cancel_job(&r).unwrap();
    let got = listener.collect(Duration::from_millis(300));
    assert_eq!(
        got,
        vec![
            r#"{"t": "queue.pushed", "q": "default"}"#.to_string(),
            r#"{"t": "queue.pushed", "q": "a"}"#.to_string(),
            r#"{"t": "queue.pushed", "q": "b"}"#.to_string(),
            r#"{"t": "queue.declared", "q": "q1"}"#.to_string(),
            r#"{"t": "queue.paused", "q": "q1"}"#.to_string(),
            r#"{"t": "queue.resumed", "q": "q1"}"#.to_string(),
            format!(r#"{{"t": "job.cancelled", "j": "{r}"}}"#),
        ]
    );
}

#[test]
fn notifications_off_sends_nothing() {
    let app = TestApp::with(|b| b.no_default_plugins().notifications(false));
    let mut listener = Listener::new(&format!("{}events", app.prefix));
    app.chancy.push(&Job::new("f")).unwrap();
    assert!(listener.collect(Duration::from_millis(200)).is_empty());
}

#[test]
fn queues_declare_get_upsert_pause_resume_delete() {
    let app = TestApp::new();
    let q = Queue::new("emails")
        .concurrency(3)
        .tags(["has=smtp"])
        .polling_interval(Duration::from_secs(2))
        .rate_limit(10, Duration::from_secs(60))
        .eager_polling(true);
    let stored = app.chancy.declare(&q).unwrap();
    assert_eq!(stored, q);
    assert_eq!(app.chancy.get_queue("emails").unwrap(), q);

    let changed = q.clone().concurrency(9);
    assert_eq!(
        app.chancy.declare(&changed).unwrap(),
        q,
        "plain declare keeps the existing row"
    );
    assert_eq!(app.chancy.declare_upsert(&changed).unwrap(), changed);

    app.chancy.declare(&Queue::new("other")).unwrap();
    let names: Vec<String> = app
        .chancy
        .get_all_queues()
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, vec!["emails", "other"]);

    let at = Utc::now() + chrono::Duration::hours(1);
    app.chancy.pause_queue("emails", Some(at)).unwrap();
    let paused = app.chancy.get_queue("emails").unwrap();
    assert_eq!(paused.state, QueueState::Paused);
    assert!((paused.resume_at.unwrap() - at).num_milliseconds().abs() < 1);
    app.chancy.resume_queue("emails").unwrap();
    let resumed = app.chancy.get_queue("emails").unwrap();
    assert_eq!(
        (resumed.state, resumed.resume_at),
        (QueueState::Active, None)
    );

    assert!(app
        .chancy
        .pause_queue("missing", None)
        .unwrap_err()
        .is_not_found());
    assert!(app.chancy.get_queue("missing").unwrap_err().is_not_found());

    let kept = app.chancy.push(&Job::new("f").queue("other")).unwrap();
    assert!(app.chancy.delete_queue("other", false).unwrap());
    assert!(app.chancy.get_job(&kept).unwrap().is_some());
    let gone = app.chancy.push(&Job::new("f").queue("emails")).unwrap();
    assert!(app.chancy.delete_queue("emails", true).unwrap());
    assert!(app.chancy.get_job(&gone).unwrap().is_none());
    assert!(!app.chancy.delete_queue("emails", true).unwrap());
}

#[test]
fn queue_rows_are_python_readable() {
    let app = TestApp::new();
    app.chancy.declare(&Queue::new("plain")).unwrap();
    let mut c = app.client();
    let row = c
        .query_one(
            &app.sql(
                "SELECT tags, executor_options::text, executor, polling_interval FROM {queues}",
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), vec![".*"]);
    assert_eq!(row.get::<_, String>(1), "{}");
    assert_eq!(row.get::<_, String>(2), chancy::THREADED_EXECUTOR);
    assert_eq!(row.get::<_, i32>(3), 5);
}

#[test]
fn bad_queue_declarations_are_rejected() {
    let app = TestApp::new();
    for q in [
        Queue::new(""),
        Queue::new("q").concurrency(0),
        Queue::new("q").polling_interval(Duration::from_millis(10)),
    ] {
        assert!(app.chancy.declare(&q).unwrap_err().is_invalid_input());
    }
    assert!(app.chancy.get_all_queues().unwrap().is_empty());
}

#[test]
fn cancel_retry_purge() {
    let app = TestApp::new();
    let a = app.chancy.push(&Job::new("f").max_attempts(2)).unwrap();
    let b = app.chancy.push(&Job::new("f")).unwrap();
    let mut c = app.client();
    c.execute(
        &app.sql("UPDATE {jobs} SET state = 'running', claim_id = gen_random_uuid(), taken_by = 'w' WHERE id = $1"),
        &[&b.id()],
    )
    .unwrap();

    assert!(app.chancy.cancel_job(&a).unwrap().is_done());
    let cancelled = app.chancy.get_job(&a).unwrap().unwrap();
    assert_eq!(cancelled.state, JobState::Failed);
    assert!(cancelled.completed_at.is_some() && cancelled.claim_id.is_none());

    let outcomes = app.chancy.retry_jobs(&[a, b]).unwrap();
    assert_eq!(outcomes[0], (a, chancy::JobOutcome::Done));
    assert!(
        matches!(&outcomes[1], (r, chancy::JobOutcome::NotApplicable { state, .. }) if *r == b && state == "running"),
        "{outcomes:?}"
    );
    let retried = app.chancy.get_job(&a).unwrap().unwrap();
    assert_eq!(
        (retried.state, retried.attempts, retried.completed_at),
        (JobState::Retrying, 0, None)
    );
    assert_eq!(
        app.chancy.get_job(&b).unwrap().unwrap().state,
        JobState::Running,
        "running jobs are skipped"
    );

    let purged = app.chancy.purge_jobs(&[a, b]).unwrap();
    assert!(purged.iter().all(|(_, o)| o.is_done()), "{purged:?}");
    assert!(app.chancy.get_jobs(&[a, b]).unwrap().is_empty());
    assert_eq!(
        app.chancy.cancel_job(&a).unwrap(),
        chancy::JobOutcome::NotFound
    );
}

#[test]
fn waiting_times_out_and_ends_on_deleted_jobs() {
    let app = TestApp::new();
    let r = app.chancy.push(&Job::new("f")).unwrap();
    let err = app
        .chancy
        .wait_for_job(&r, Duration::from_millis(150))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    let chancy = app.chancy.clone();
    let deleter = std::thread::spawn(move || {
        // Deleted while the wait below is under way (elapsed time is the subject).
        std::thread::sleep(Duration::from_millis(200));
        chancy.purge_jobs(&[r]).unwrap();
    });
    let done = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(10))
        .unwrap();
    deleter.join().unwrap();
    assert!(done.is_none());

    let p = app.chancy.push(&Job::new("f")).unwrap();
    let opts = WaitOptions::timeout(Duration::from_secs(5)).states([JobState::Pending]);
    assert_eq!(
        app.chancy
            .wait_for_job_with(&p, &opts)
            .unwrap()
            .unwrap()
            .state,
        JobState::Pending
    );
}

#[test]
fn unreachable_database_is_a_clear_error() {
    let chancy = Chancy::builder("postgresql://postgres@127.0.0.1:1/postgres")
        .connection_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = chancy.push(&Job::new("f")).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[test]
fn unmigrated_schema_says_to_migrate() {
    let app = TestApp::unmigrated(|b| b.no_default_plugins());
    let err = app.chancy.push(&Job::new("f")).unwrap_err();
    assert!(err.is_migrations_needed(), "{err:?}");
    assert!(err.to_string().contains("chancy migrate"), "{err}");
}

#[test]
fn notify_sends_custom_events() {
    let app = TestApp::new();
    let mut listener = Listener::new(&format!("{}events", app.prefix));
    app.chancy
        .notify("custom.event", &json!({"x": [1, "é"]}))
        .unwrap();
    assert_eq!(
        listener.collect(Duration::from_millis(300)),
        vec![r#"{"t": "custom.event", "x": [1, "\u00e9"]}"#.to_string()]
    );
}

#[test]
fn bulk_pushes_mix_copy_and_unique_inserts() {
    let app = TestApp::new();
    let mut jobs: Vec<Job> = (0..100)
        .map(|i| Job::new("plain").kwargs(json!({"i": i})))
        .collect();
    jobs.insert(10, Job::new("keyed").unique_key("a"));
    jobs.push(Job::new("keyed").unique_key("a"));
    jobs.push(
        Job::new("keyed")
            .unique_key("b")
            .delay(Duration::from_secs(3600)),
    );
    let refs = app.chancy.push_many(&jobs).unwrap();
    assert_eq!(refs[10], refs[101], "duplicate key in one call → one job");
    let stored = app.chancy.get_jobs(&refs).unwrap();
    assert_eq!(stored.len(), 102);
    let plain = app.chancy.get_job(&refs[50]).unwrap().unwrap();
    assert_eq!(plain.kwargs["i"], json!(49));
    let slack = chrono::Duration::seconds(5);
    assert!(
        (plain.scheduled_at - Utc::now()).abs() < slack,
        "keyless jobs are due now"
    );
    let later = app.chancy.get_job(&refs[102]).unwrap().unwrap();
    assert!(later.scheduled_at > Utc::now() + chrono::Duration::seconds(3000));
}

#[test]
fn bulk_unique_push_spans_chunks_and_reuses_waiting_jobs() {
    let app = TestApp::new();
    let mut listener = Listener::new(&format!("{}events", app.prefix));
    let earlier: Vec<Job> = (0..500)
        .map(|i| Job::new("u").unique_key(format!("k{i:05}")))
        .collect();
    let earlier_refs = app.chancy.push_many(&earlier).unwrap();
    listener.collect(Duration::from_millis(200));

    // 12,000 distinct keys (more than one INSERT chunk), the first 500 already waiting, and
    // every key twice in the call, over two queues.
    let jobs: Vec<Job> = (0..24_000)
        .map(|i| {
            Job::new("u")
                .queue(if i % 2 == 0 { "a" } else { "b" })
                .unique_key(format!("k{:05}", i % 12_000))
        })
        .collect();
    let refs = app.chancy.push_many(&jobs).unwrap();
    assert_eq!(refs.len(), jobs.len());
    assert_eq!(
        &refs[..500],
        &earlier_refs[..],
        "waiting jobs keep their key"
    );
    for i in 0..12_000 {
        assert_eq!(refs[i], refs[i + 12_000], "one job per key in one call");
    }
    let mut c = app.client();
    let n: i64 = c
        .query_one(&app.sql("SELECT count(*) FROM {jobs}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 12_000, "500 earlier jobs + 11,500 new ones");
    assert_eq!(
        listener.collect(Duration::from_millis(300)),
        vec![
            r#"{"t": "queue.pushed", "q": "a"}"#.to_string(),
            r#"{"t": "queue.pushed", "q": "b"}"#.to_string(),
        ],
        "one notification per queue for the whole call"
    );
}
