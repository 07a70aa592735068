//! Cron: the spec's test_cron rows, schedules firing on a worker, Python-made rows.

use std::time::Duration;

use chancy::plugins::Cron;
use chancy::{Job, JobState};
use chrono::Utc;
use serde_json::json;

use super::fast_worker;
use crate::common::TestApp;

fn app() -> TestApp {
    TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(Cron::new().poll_interval(Duration::from_millis(200)))
    })
}

fn keyed(key: &str) -> Job {
    Job::new("t.noop").unique_key(key)
}

#[test]
fn schedule_job_stores_the_schedule() {
    let app = app();
    Cron::schedule(&app.chancy, "*/5 * * * *", &[keyed("k1")], "Etc/UTC").unwrap();
    let got = Cron::get_schedules(&app.chancy, Some(&["k1"])).unwrap();
    assert_eq!(got.len(), 1);
    let s = &got["k1"];
    assert_eq!(
        (s.unique_key.as_str(), s.cron.as_str()),
        ("k1", "*/5 * * * *")
    );
    assert_eq!(s.timezone, "Etc/UTC");
    assert!(s.next_run > Utc::now() && s.last_run.is_none());
    assert_eq!(s.job.func(), "t.noop");
}

#[test]
fn unschedule_job_removes_it() {
    let app = app();
    Cron::schedule(&app.chancy, "*/5 * * * *", &[keyed("k1")], "Etc/UTC").unwrap();
    assert_eq!(Cron::unschedule(&app.chancy, &["k1"]).unwrap(), 1);
    assert!(Cron::get_schedules(&app.chancy, Some(&["k1"]))
        .unwrap()
        .is_empty());
}

#[test]
fn update_existing_job_schedule_replaces_the_expression() {
    let app = app();
    Cron::schedule(&app.chancy, "*/5 * * * *", &[keyed("k1")], "Etc/UTC").unwrap();
    Cron::schedule(&app.chancy, "0 9 * * *", &[keyed("k1")], "Europe/Paris").unwrap();
    let got = Cron::get_schedules(&app.chancy, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["k1"].cron, "0 9 * * *");
    assert_eq!(got["k1"].timezone, "Europe/Paris");
}

#[test]
fn fail_scheduling_without_unique_key() {
    let app = app();
    let err =
        Cron::schedule(&app.chancy, "* * * * *", &[Job::new("t.noop")], "Etc/UTC").unwrap_err();
    assert!(err.is_invalid_input());
    assert!(
        err.to_string()
            .contains("requires that each job has a unique_key"),
        "{err}"
    );
}

#[test]
fn invalid_expression_or_zone_is_an_error_at_schedule_time() {
    let app = app();
    let err = Cron::schedule(&app.chancy, "not a cron", &[keyed("k")], "Etc/UTC").unwrap_err();
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("invalid cron expression"), "{err}");
    let err = Cron::schedule(&app.chancy, "* * * * *", &[keyed("k")], "Nowhere/City").unwrap_err();
    assert!(err.to_string().contains("time zone"), "{err}");
    assert!(Cron::get_schedules(&app.chancy, None).unwrap().is_empty());
}

#[test]
fn job_execution_schedule_has_a_next_run() {
    let app = app();
    Cron::schedule(&app.chancy, "*/1 * * * *", &[keyed("every")], "Etc/UTC").unwrap();
    let s = &Cron::get_schedules(&app.chancy, Some(&["every"])).unwrap()["every"];
    assert!(s.next_run <= Utc::now() + chrono::Duration::seconds(61));
}

#[test]
fn get_schedules_all_and_filtered() {
    let app = app();
    let jobs = [keyed("a"), keyed("b"), keyed("c")];
    Cron::schedule(&app.chancy, "0 * * * *", &jobs, "Etc/UTC").unwrap();
    let all = Cron::get_schedules(&app.chancy, None).unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    let some = Cron::get_schedules(&app.chancy, Some(&["a", "c"])).unwrap();
    assert_eq!(some.keys().collect::<Vec<_>>(), ["a", "c"]);
}

fn make_due(app: &TestApp, key: &str) {
    app.client()
        .execute(
            &format!(
                "UPDATE {} SET next_run = NOW() - interval '1 minute' WHERE unique_key = $1",
                app.table("cron")
            ),
            &[&key],
        )
        .unwrap();
}

fn jobs_with_key(app: &TestApp, key: &str) -> Vec<(String, String)> {
    app.client()
        .query(
            &app.sql("SELECT func, state FROM {jobs} WHERE unique_key = $1"),
            &[&key],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn a_due_schedule_is_pushed_by_a_running_worker_and_next_run_advances() {
    let app = app();
    Cron::schedule(
        &app.chancy,
        "0 0 1 1 *",
        &[keyed("yearly")],
        "America/New_York",
    )
    .unwrap();
    make_due(&app, "yearly");
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let ran = crate::support::wait::poll(Duration::from_secs(20), || {
        (jobs_with_key(&app, "yearly") == [("t.noop".into(), "succeeded".into())]).then_some(())
    });
    assert!(ran.is_some(), "{:?}", jobs_with_key(&app, "yearly"));
    assert!(worker.stop());
    let s = &Cron::get_schedules(&app.chancy, None).unwrap()["yearly"];
    assert!(s.last_run.is_some());
    assert!(s.next_run > Utc::now() + chrono::Duration::days(1));
    assert_eq!(
        s.next_run,
        chancy::plugins::cron::next_run("0 0 1 1 *", "America/New_York", Utc::now()).unwrap()
    );
}

#[test]
fn a_python_made_schedule_runs_and_bad_rows_are_skipped() {
    let app = app();
    let mut c = app.client();
    // A row as Python 0.26.0 writes it: json.dumps(job.pack()), float seconds, IANA zone.
    let packed = json!({"f": "t.noop", "k": {"x": 1}, "p": 3, "a": 2, "s": 1767225600.25,
                        "l": [], "u": "py-cron", "q": "default", "m": {"from": "python"}});
    let insert = format!(
        "INSERT INTO {} (unique_key, cron, job, timezone, next_run) \
         VALUES ($1, $2, $3, $4, NOW() - interval '1 minute')",
        app.table("cron")
    );
    c.execute(
        &insert,
        &[&"py-cron", &"*/10 * * * *", &packed, &"Europe/Paris"],
    )
    .unwrap();
    c.execute(&insert, &[&"bad-expr", &"nope", &packed, &"Etc/UTC"])
        .unwrap();
    c.execute(&insert, &[&"bad-zone", &"* * * * *", &packed, &"Mars/Base"])
        .unwrap();
    assert_eq!(Cron::run_due(&app.chancy).unwrap(), 1);
    let job = app
        .client()
        .query_one(
            &app.sql("SELECT kwargs, priority, max_attempts, meta, state FROM {jobs} WHERE unique_key = 'py-cron'"),
            &[],
        )
        .unwrap();
    assert_eq!(job.get::<_, serde_json::Value>(0), json!({"x": 1}));
    assert_eq!((job.get::<_, i32>(1), job.get::<_, i32>(2)), (3, 2));
    assert_eq!(
        job.get::<_, serde_json::Value>(3),
        json!({"from": "python"})
    );
    assert_eq!(job.get::<_, String>(4), JobState::Pending.as_str());
    let all = Cron::get_schedules(&app.chancy, None).unwrap();
    assert!(all["py-cron"].next_run > Utc::now());
    for bad in ["bad-expr", "bad-zone"] {
        assert!(all[bad].next_run < Utc::now(), "{bad} stays due");
        assert!(all[bad].last_run.is_none());
    }
    // Due again while its job is still pending: the unique key de-duplicates the push.
    make_due(&app, "py-cron");
    assert_eq!(Cron::run_due(&app.chancy).unwrap(), 1);
    assert_eq!(jobs_with_key(&app, "py-cron").len(), 1);
}
