//! Bad input gets a clear error and harms nothing: each test checks the error text and that
//! other jobs keep running.

use std::time::Duration;

#[cfg(feature = "cron")]
use chancy::plugins::Cron;
use chancy::plugins::{Workflow, WorkflowPlugin};
use chancy::{Chancy, Job, JobState, Queue, QueueState, Reference, ServiceState};
use serde_json::json;

use crate::common::{database_url, fast_worker, TestApp};

const WAIT: Duration = Duration::from_secs(30);

fn finished(app: &TestApp, r: &Reference) -> chancy::QueuedJob {
    app.chancy
        .wait_for_job(r, WAIT)
        .unwrap()
        .expect("job exists")
}

fn traceback(job: &chancy::QueuedJob) -> &str {
    &job.errors.last().expect("an error entry").traceback
}

fn count_tables_like(pattern: &str) -> i64 {
    crate::common::client()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE $1",
            &[&pattern],
        )
        .unwrap()
        .get(0)
}

#[test]
fn invalid_prefixes_are_rejected_with_the_rule_they_break() {
    let rule = "it must start with a letter or underscore and contain only ASCII letters, \
                digits and underscores";
    for bad in [
        "x\"; DROP TABLE pg_class; --",
        "a b",
        "9lives",
        "",
        "préfixe_",
        "semi;colon",
    ] {
        let err = Chancy::builder(database_url())
            .prefix(bad)
            .build()
            .unwrap_err();
        assert!(err.is_config(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("invalid table prefix {bad:?}: {rule}")
        );
    }
    let long = "p".repeat(33);
    let err = Chancy::builder(database_url())
        .prefix(long.as_str())
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid table prefix {long:?}: at most 32 characters are allowed")
    );
    assert_eq!(count_tables_like("p%pjobs"), 0, "nothing was created");
    // A good prefix next to them still works end to end.
    let app = TestApp::new();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let r = app.chancy.push(&Job::new("t.noop")).unwrap();
    assert_eq!(finished(&app, &r).state, JobState::Succeeded);
    worker.stop();
}

#[test]
fn queue_names_with_quotes_and_unicode_work_and_empty_ones_are_rejected() {
    let app = TestApp::new();
    let names = [
        "it's \"quoted\"",
        "ünïcødé-队列-🚀",
        "q'; DROP TABLE x; --",
        "  spaced  ",
        "back\\slash",
    ];
    for name in names {
        app.chancy
            .declare(&Queue::new(name).concurrency(2))
            .unwrap();
    }
    for (bad, shown) in [("", "\"\""), ("tab\there", "\"tab\\there\"")] {
        let err = app.chancy.declare(&Queue::new(bad)).unwrap_err();
        assert!(err.is_invalid_input());
        assert_eq!(
            err.to_string(),
            format!(
                "invalid queue name {shown}: it must be 1 to 255 bytes without control characters"
            )
        );
        let err = app.chancy.push(&Job::new("t.noop").queue(bad)).unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let refs: Vec<Reference> = names
        .iter()
        .map(|n| app.chancy.push(&Job::new("t.noop").queue(*n)).unwrap())
        .collect();
    for (name, r) in names.iter().zip(&refs) {
        let job = finished(&app, r);
        assert_eq!(job.state, JobState::Succeeded, "queue {name:?}");
        assert_eq!(job.queue, *name);
        assert_eq!(app.chancy.get_queue(name).unwrap().name, *name);
    }
    worker.stop();
}

#[test]
fn bad_kwargs_and_unknown_functions_fail_clearly_and_other_jobs_run() {
    #[derive(serde::Deserialize)]
    struct Args {
        #[allow(dead_code)]
        n: u32,
    }
    let app = TestApp::new();
    for (kwargs, shown) in [
        (json!([1, 2]), "[1,2]"),
        (json!("text"), "\"text\""),
        (json!(null), "null"),
    ] {
        let err = app
            .chancy
            .push_many(&[Job::new("t.noop"), Job::new("t.noop").kwargs(kwargs)])
            .unwrap_err();
        assert!(err.is_invalid_input());
        assert_eq!(
            err.to_string(),
            format!("kwargs of \"t.noop\" must be a JSON object, got {shown}")
        );
    }
    let none: i64 = app
        .client()
        .query_one(&app.sql("SELECT count(*) FROM {jobs}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "a rejected batch writes nothing");
    let err = app
        .chancy
        .push_many(&[
            Job::new("t.noop"),
            Job::new("t.noop").kwargs(json!({"s": "a\u{0}b"})),
        ])
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "kwargs of \"t.noop\" contains the character U+0000, which PostgreSQL cannot store"
    );
    let worker = fast_worker(&app)
        .worker_id("w-bad-kwargs")
        .job("t.typed", |ctx| {
            let _: Args = ctx.kwargs()?;
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let typed = app
        .chancy
        .push(&Job::new("t.typed").kwargs(json!({"n": "x"})))
        .unwrap();
    let missing = app.chancy.push(&Job::new("t.typed")).unwrap();
    let unknown = app.chancy.push(&Job::new("myapp.tasks.nobody")).unwrap();
    let good = app
        .chancy
        .push(&Job::new("t.typed").kwargs(json!({"n": 3})))
        .unwrap();
    let (typed, missing, unknown, good) = (
        finished(&app, &typed),
        finished(&app, &missing),
        finished(&app, &unknown),
        finished(&app, &good),
    );
    worker.stop();
    assert!(
        traceback(&typed).contains("invalid type: string \"x\", expected u32"),
        "{}",
        traceback(&typed)
    );
    assert!(
        traceback(&missing).contains("missing field `n`"),
        "{}",
        traceback(&missing)
    );
    assert_eq!(
        traceback(&unknown),
        "LookupError: no handler is registered for job function \"myapp.tasks.nobody\" on \
         worker w-bad-kwargs"
    );
    for job in [&typed, &missing, &unknown] {
        assert_eq!((job.state, job.attempts), (JobState::Failed, 1));
    }
    assert_eq!(good.state, JobState::Succeeded);
}

#[test]
fn enormous_kwargs_round_trip_and_small_jobs_keep_flowing() {
    let app = TestApp::new();
    let big = "x".repeat(6 * 1024 * 1024);
    let worker = fast_worker(&app)
        .job("t.size", |ctx| {
            let text = ctx.job().kwargs["blob"].as_str().unwrap_or("").len();
            ctx.set_meta("len", json!(text));
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("t.size").kwargs(json!({ "blob": big })))
        .unwrap();
    let small: Vec<Reference> = (0..20)
        .map(|_| app.chancy.push(&Job::new("t.noop")).unwrap())
        .collect();
    let job = finished(&app, &r);
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.meta["len"], json!(6 * 1024 * 1024));
    for s in &small {
        assert_eq!(finished(&app, s).state, JobState::Succeeded);
    }
    worker.stop();
}

#[test]
fn workflow_cycles_and_unknown_dependencies_are_rejected_before_anything_is_written() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(WorkflowPlugin::new()));
    let cycle = Workflow::new("loop")
        .add("a", Job::new("t.noop"), &["c"])
        .add("b", Job::new("t.noop"), &["a"])
        .add("c", Job::new("t.noop"), &["b"]);
    let err = WorkflowPlugin::push(&app.chancy, &cycle).unwrap_err();
    assert!(err.is_invalid_input());
    assert!(
        err.to_string()
            .contains("Circular dependency detected: a -> c -> b -> a"),
        "{err}"
    );
    let itself = Workflow::new("self").add("a", Job::new("t.noop"), &["a"]);
    let err = WorkflowPlugin::push(&app.chancy, &itself).unwrap_err();
    assert!(
        err.to_string()
            .contains("Circular dependency detected: a -> a"),
        "{err}"
    );
    let dangling = Workflow::new("dangling").add("a", Job::new("t.noop"), &["ghost"]);
    let err = WorkflowPlugin::push(&app.chancy, &dangling).unwrap_err();
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("ghost"), "{err}");
    let rows = |app: &TestApp| -> i64 {
        app.client()
            .query_one(
                &format!("SELECT count(*) FROM {}", app.table("workflows")),
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(rows(&app), 0, "nothing was written");
    let ok = Workflow::new("fine").add("a", Job::new("t.noop"), &[]);
    WorkflowPlugin::push(&app.chancy, &ok).unwrap();
    assert_eq!(rows(&app), 1);
}

#[cfg(feature = "cron")]
#[test]
fn invalid_cron_expressions_and_zones_name_the_problem() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(Cron::new()));
    let keyed = || Job::new("t.noop").unique_key("k");
    for expr in ["* * *", "61 * * * *", "* * * * * * * *", "@sometimes", ""] {
        let err = Cron::schedule(&app.chancy, expr, &[keyed()], "Etc/UTC").unwrap_err();
        assert!(err.is_invalid_input());
        assert!(
            err.to_string()
                .starts_with(&format!("invalid cron expression {expr:?}")),
            "{expr}: {err}"
        );
    }
    let err = Cron::schedule(&app.chancy, "* * * * *", &[keyed()], "Mars/Olympus").unwrap_err();
    assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    assert!(Cron::get_schedules(&app.chancy, None).unwrap().is_empty());
}

#[test]
fn malformed_notifications_are_ignored_and_the_listener_keeps_delivering() {
    let app = TestApp::new();
    // A long polling interval: the job below can only start promptly through a NOTIFY.
    app.chancy
        .declare(&Queue::new("slowpoll").polling_interval(Duration::from_secs(120)))
        .unwrap();
    let worker = fast_worker(&app).build().unwrap();
    let events = crate::support::events::start(&worker);
    events.queue_started("slowpoll", WAIT);
    // Its fetcher's first (empty) poll is done; the next is 120 s away.
    events.next_poll("slowpoll", WAIT);
    let channel = app.chancy.prefix().channel();
    let mut c = app.client();
    let huge = format!("{{\"t\": \"x\", \"pad\": \"{}\"}}", "y".repeat(7000));
    for payload in [
        "not json at all",
        "[1, 2, 3]",
        "{}",
        "{\"t\": 17}",
        "{\"t\": \"queue.pushed\"}",
        "{\"t\": \"queue.pushed\", \"q\": [\"slowpoll\"]}",
        "{\"t\": \"job.cancelled\", \"j\": \"not-a-uuid\"}",
        "{\"t\": \"job.recovered\", \"j\": null, \"c\": 5}",
        "{\"t\": \"queue.declared\"",
        "\u{1F680}",
        huge.as_str(),
    ] {
        c.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .unwrap();
    }
    // The last one (well-formed, event "x") reached the hub: the listener read them all.
    events.next("x", WAIT);
    let r = app
        .chancy
        .push(&Job::new("t.noop").queue("slowpoll"))
        .unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "woken by NOTIFY long before the 120 s poll"
    );
    assert_eq!(
        worker.manager().state_of("listener"),
        Some(ServiceState::Running)
    );
    worker.stop();
}

/// Inserts a job row the way another client might, with raw SQL values.
fn insert_raw(app: &TestApp, columns: &str, values: &str) -> Reference {
    let row = app
        .client()
        .query_one(
            &app.sql(&format!(
                "INSERT INTO {{jobs}} (id, queue, func{columns}) \
                 VALUES (gen_random_uuid(), 'default', 't.noop'{values}) RETURNING id"
            )),
            &[],
        )
        .unwrap();
    Reference(row.get(0))
}

#[test]
fn job_rows_with_garbage_columns_fail_clearly_and_the_rest_run() {
    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("default").concurrency(8).eager_polling(true))
        .unwrap();
    let kw_array = insert_raw(&app, ", kwargs", ", '[1, 2]'");
    let kw_string = insert_raw(&app, ", kwargs", ", '\"oops\"'");
    let kw_null = insert_raw(&app, ", kwargs", ", 'null'");
    let limits_text = insert_raw(&app, ", limits", ", '\"garbage\"'");
    let limits_kind = insert_raw(&app, ", limits", ", '[{\"t\": \"cpu\", \"v\": 1}]'");
    let null_priority = insert_raw(&app, ", priority", ", NULL");
    let null_attempts = insert_raw(&app, ", attempts", ", NULL");
    let meta_array = insert_raw(&app, ", meta", ", '[1]'");
    let errors_object = insert_raw(&app, ", errors, max_attempts", ", '{\"x\": 1}', 2");
    let weird_state = insert_raw(&app, ", state", ", 'sideways'");
    let good: Vec<Reference> = (0..50)
        .map(|_| app.chancy.push(&Job::new("t.noop")).unwrap())
        .collect();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    for (r, found) in [
        (&kw_array, "an array"),
        (&kw_string, "a string"),
        (&kw_null, "null"),
    ] {
        let job = finished(&app, r);
        assert_eq!((job.state, job.attempts), (JobState::Failed, 1));
        assert_eq!(
            traceback(&job),
            format!("TypeError: the job's kwargs must be a JSON object, found {found}")
        );
    }
    for r in [&limits_text, &limits_kind] {
        let job = finished(&app, r);
        assert_eq!(job.state, JobState::Failed);
        assert!(
            traceback(&job).starts_with(
                "ValueError: the job's limits must be a list of {\"t\": \"time\"|\"memory\", \"v\": <int>}: "
            ),
            "{}",
            traceback(&job)
        );
    }
    for r in [&null_priority, &meta_array, &errors_object] {
        assert_eq!(finished(&app, r).state, JobState::Succeeded);
    }
    let job = finished(&app, &null_attempts);
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Succeeded, 1),
        "NULL attempts counts as 0"
    );
    for r in &good {
        assert_eq!(finished(&app, r).state, JobState::Succeeded);
    }
    let err = app.chancy.get_job(&weird_state).unwrap_err();
    assert!(err.is_unreadable_row(), "{err:?}");
    assert!(
        err.to_string().contains("unknown job state \"sideways\""),
        "{err}"
    );
    assert!(
        err.to_string().contains(&weird_state.0.to_string()),
        "{err}"
    );
    // Listing leaves the unreadable row out instead of failing, and lists the rest.
    let listed = app.chancy.list_jobs(&chancy::JobFilter::default()).unwrap();
    assert!(listed.iter().all(|j| j.id != weird_state.0));
    assert!(good.iter().all(|r| listed.iter().any(|j| j.id == r.0)));
    let state: String = app
        .client()
        .query_one(
            &app.sql("SELECT state FROM {jobs} WHERE id = $1"),
            &[&weird_state.0],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        state, "sideways",
        "a row with an unknown state is never claimed"
    );
    worker.stop();
}

#[test]
fn unknown_executors_run_on_threads_and_unreadable_queue_rows_are_skipped() {
    let app = TestApp::new();
    let mut c = app.client();
    c.batch_execute(&app.sql(
        "INSERT INTO {queues} (name, state, concurrency, tags, executor, executor_options, polling_interval) \
         VALUES ('custom', 'active', 2, '{.*}', 'myapp.executors.FancyExecutor', NULL, 1), \
                ('broken', 'sideways', 2, '{.*}', 'chancy.executors.thread.ThreadedExecutor', '[]', 1)",
    ))
    .unwrap();
    let worker = fast_worker(&app).build().unwrap();
    let events = crate::support::events::start(&worker);
    let custom = app
        .chancy
        .push(&Job::new("t.noop").queue("custom"))
        .unwrap();
    let broken = app
        .chancy
        .push(&Job::new("t.noop").queue("broken"))
        .unwrap();
    let default = app.chancy.push(&Job::new("t.noop")).unwrap();
    assert_eq!(finished(&app, &custom).state, JobState::Succeeded);
    assert_eq!(finished(&app, &default).state, JobState::Succeeded);
    let mut served = worker.queues();
    served.sort();
    assert_eq!(served, ["custom", "default"]);
    events.passes("queues", 2, WAIT); // a whole queue pass after the jobs ran
    let err = app.chancy.get_queue("broken").unwrap_err();
    assert!(
        err.is_unreadable_row(),
        "bad stored data, not bad input: {err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unknown queue state \"sideways\" (expected active or paused)"
    );
    assert_eq!(
        app.chancy.get_job(&broken).unwrap().unwrap().state,
        JobState::Pending,
        "the unreadable queue is not served"
    );
    assert_eq!(
        worker.manager().state_of("queues"),
        Some(ServiceState::Running),
        "the queue service did not fail its passes"
    );
    worker.stop();
}

#[test]
fn nul_characters_in_meta_and_errors_are_stored_as_replacement_characters() {
    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("default").concurrency(4).eager_polling(true))
        .unwrap();
    let worker = fast_worker(&app)
        .job("t.nul_meta", |ctx| {
            ctx.set_meta("text", json!("a\u{0}b"));
            Ok(())
        })
        .job("t.nul_error", |_| {
            Err(chancy::JobError::new("bad\u{0}byte"))
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let nul_meta = app.chancy.push(&Job::new("t.nul_meta")).unwrap();
    let nul_error = app.chancy.push(&Job::new("t.nul_error")).unwrap();
    let good: Vec<Reference> = (0..30)
        .map(|_| app.chancy.push(&Job::new("t.noop")).unwrap())
        .collect();
    for r in &good {
        assert_eq!(finished(&app, r).state, JobState::Succeeded);
    }
    // jsonb cannot hold U+0000: it is stored as U+FFFD instead of blocking the writer.
    let meta = finished(&app, &nul_meta);
    assert_eq!(meta.state, JobState::Succeeded, "{meta:?}");
    assert_eq!(meta.meta["text"], json!("a\u{FFFD}b"));
    let err = finished(&app, &nul_error);
    assert_eq!(err.state, JobState::Failed, "{err:?}");
    assert_eq!(traceback(&err), "JobError: bad\u{FFFD}byte");
    worker.stop();
}

#[test]
fn an_outcome_the_database_refuses_is_stored_without_its_meta_and_blocks_nothing() {
    let app = TestApp::new();
    // Another constraint of this prefix's table that some outcomes break (SQLSTATE 23514).
    app.client()
        .batch_execute(
            &app.sql("ALTER TABLE {jobs} ADD CONSTRAINT no_poison CHECK (meta->>'poison' IS NULL)"),
        )
        .unwrap();
    app.chancy
        .declare(&Queue::new("default").concurrency(4).eager_polling(true))
        .unwrap();
    let worker = fast_worker(&app)
        .send_outgoing_interval(Duration::from_millis(50)) // batches with the poison in them
        .job("t.poison", |ctx| {
            ctx.set_meta("poison", json!(true));
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let mut jobs = vec![Job::new("t.noop"); 40];
    jobs.insert(20, Job::new("t.poison"));
    let refs = app.chancy.push_many(&jobs).unwrap();
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(30))
        .expect("every outcome was written");
    worker.stop();
    for job in &done {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.attempts, 1);
    }
    let poison = done.iter().find(|j| j.func == "t.poison").unwrap();
    assert!(poison.meta.is_empty(), "{:?}", poison.meta);
    let note = traceback(poison);
    assert!(
        note.starts_with("chancy: the database refused this attempt's outcome as written (")
            && note.contains("no_poison")
            && note.ends_with("it was stored without its meta"),
        "{note}"
    );
}

/// One rule for job function names (and unique keys) at every way in: pushes of every kind,
/// typed jobs, workflow steps and handler registration refuse them; a row another client
/// (Python Chancy accepts any text) wrote with such a name is failed with a `ValueError`
/// saying why, and the worker runs on.
#[test]
fn func_names_with_control_characters_or_unbounded_lengths_are_refused_everywhere() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Forged {}
    impl chancy::JobArgs for Forged {
        const FUNC: &'static str = "t.forged\nINFO job done";
    }
    let app = TestApp::new();
    let long = "m.".repeat(200);
    let bad_funcs = [
        "t.noop\nINFO all good".to_string(),
        "t.\u{1b}[2Jnoop".to_string(),
        long.clone(),
    ];
    for func in &bad_funcs {
        let job = Job::new(func.as_str());
        let errors = [
            app.chancy.push(&job).unwrap_err(),
            app.chancy
                .push_many(&[Job::new("t.noop"), job.clone()])
                .unwrap_err(),
            app.chancy.push_in(&mut app.client(), &job).unwrap_err(),
            WorkflowPlugin::push(&app.chancy, &Workflow::new("wf").add("a", job.clone(), &[]))
                .unwrap_err(),
        ];
        for err in errors {
            assert!(err.is_invalid_input(), "{err}");
            assert!(err.to_string().contains("invalid job func"), "{err}");
            assert!(
                err.to_string().contains("without control characters"),
                "{err}"
            );
            assert!(err.to_string().len() < 250, "bounded: {err}");
        }
    }
    let err = app.chancy.push_args(&Forged {}).unwrap_err();
    assert!(err.to_string().contains("invalid job func"), "{err}");
    let err = app
        .chancy
        .push(&Job::new("t.noop").unique_key("k".repeat(chancy::MAX_UNIQUE_KEY_LEN + 1)))
        .unwrap_err();
    assert!(err.to_string().contains("at most 1024 bytes"), "{err}");
    let Err(err) = fast_worker(&app).job("t.bad\nname", |_| Ok(())).build() else {
        panic!("a handler name no push accepts is refused");
    };
    assert!(err.is_config(), "{err}");
    assert!(
        err.to_string()
            .contains("invalid job func \"t.bad\\nname\""),
        "{err}"
    );
    let none: i64 = app
        .client()
        .query_one(&app.sql("SELECT count(*) FROM {jobs}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "nothing was written");

    // Rows written by another client with such names fail clearly; the rest run.
    let raw = |func: &str| -> Reference {
        let row = app
            .client()
            .query_one(
                &app.sql(
                    "INSERT INTO {jobs} (id, queue, func) VALUES (gen_random_uuid(), 'default', $1) \
                     RETURNING id",
                ),
                &[&func],
            )
            .unwrap();
        Reference(row.get(0))
    };
    let huge = "x".repeat(1 << 20);
    let odd: Vec<Reference> = [bad_funcs[0].as_str(), long.as_str(), huge.as_str()]
        .into_iter()
        .map(raw)
        .collect();
    let good: Vec<Reference> = (0..5)
        .map(|_| app.chancy.push(&Job::new("t.noop")).unwrap())
        .collect();
    app.chancy
        .declare(&Queue::new("default").concurrency(4))
        .unwrap();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    for r in &odd {
        let job = finished(&app, r);
        assert_eq!((job.state, job.attempts), (JobState::Failed, 1), "{r}");
        let text = traceback(&job);
        assert!(
            text.starts_with("ValueError: invalid job func ")
                && text.ends_with("it must be 1 to 255 bytes without control characters"),
            "{text}"
        );
        assert!(text.len() < 250, "bounded: {} bytes", text.len());
    }
    for r in &good {
        assert_eq!(finished(&app, r).state, JobState::Succeeded);
    }
    assert!(worker.stop());
}

/// Durations too long for the clock never panic a worker (one rule: saturating deadlines
/// and bounded settings). A row another client wrote with a time limit of 2^62 seconds runs
/// like a job without a limit; a worker setting of centuries is refused at build with the
/// setting named; a queue pause past Python's `datetime.max` is refused like such a push.
#[test]
fn durations_too_long_for_the_clock_are_refused_or_saturate_never_panic() {
    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("default").concurrency(2).eager_polling(true))
        .unwrap();
    let huge_limit = insert_raw(
        &app,
        ", limits",
        ", '[{\"t\": \"time\", \"v\": 4611686018427387904}]'",
    );
    let Err(err) = fast_worker(&app).shutdown_timeout(Duration::MAX).build() else {
        panic!("a shutdown_timeout of Duration::MAX is refused");
    };
    assert!(
        err.to_string().contains("shutdown_timeout") && err.to_string().contains("1000 years"),
        "{err}"
    );
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let job = finished(&app, &huge_limit);
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.errors);
    let good = app.chancy.push(&Job::new("t.noop")).unwrap();
    assert_eq!(finished(&app, &good).state, JobState::Succeeded);
    assert!(worker.stop());
    let year_10000 = chrono::DateTime::parse_from_rfc3339("10000-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let err = app
        .chancy
        .pause_queue("default", Some(year_10000))
        .expect_err("a resume_at after 9999 is refused");
    assert!(err.to_string().contains("9999-12-31"), "{err}");
    let queue = app.chancy.get_queue("default").unwrap();
    assert_eq!(queue.state, QueueState::Active, "nothing was written");
}
