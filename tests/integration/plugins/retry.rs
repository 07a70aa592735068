//! RetryPlugin: backoff from `meta.retry_settings`, upstream's defaults.

use std::time::Duration;

use chancy::plugins::RetrySettings;
use chancy::{Job, JobState, Queue, QueuedJob, Reference, RetryPlugin};
use serde_json::json;

use super::{fast_worker, wait_for, WAIT};
use crate::common::TestApp;

fn retry_app() -> TestApp {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(RetryPlugin));
    app.chancy
        .declare_upsert(&Queue::new("retry").polling_interval(Duration::from_secs(1)))
        .unwrap();
    app
}

fn get(app: &TestApp, r: &Reference) -> QueuedJob {
    app.chancy.get_job(r).unwrap().unwrap()
}

/// Seconds from the attempt's start to the retry it scheduled.
fn scheduled_after_start(job: &QueuedJob) -> f64 {
    let started = job.started_at.expect("the attempt started");
    (job.scheduled_at - started).num_milliseconds() as f64 / 1000.0
}

#[test]
fn retry_with_default_settings() {
    let app = retry_app();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("t.fail").queue("retry").max_attempts(3))
        .unwrap();
    assert!(wait_for(WAIT, || get(&app, &r).attempts >= 1));
    let first = get(&app, &r);
    assert_eq!(first.state, JobState::Retrying);
    assert_eq!(first.completed_at, None);
    let delay = scheduled_after_start(&first);
    // 1 s * 2^0 + jitter in [1, 5].
    assert!((2.0..=6.5).contains(&delay), "first retry after {delay} s");
    let done = app.chancy.wait_for_job(&r, WAIT).unwrap().unwrap();
    worker.stop();
    assert_eq!((done.state, done.attempts), (JobState::Failed, 3));
    let attempts: Vec<i64> = done.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, vec![0, 1, 2]);
    assert!(done
        .errors
        .iter()
        .all(|e| e.traceback.contains("This job should fail")));
    let total = (done.scheduled_at - done.created_at).num_milliseconds() as f64 / 1000.0;
    // Two delays: [2, 6] + [3, 7].
    assert!((5.0..=15.0).contains(&total), "{total} s");
}

#[test]
fn retry_with_custom_settings() {
    let app = retry_app();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let settings = RetrySettings::default()
        .backoff(Duration::from_secs(2))
        .backoff_factor(3.0)
        .backoff_limit(Duration::from_secs(10))
        .backoff_jitter(Duration::ZERO, Duration::from_secs(1));
    // Written the way Python writes it: integers.
    let meta = json!({"retry_settings": {"backoff": 2, "backoff_factor": 3, "backoff_limit": 10,
        "backoff_jitter": [0, 1]}, "keep": "me"});
    assert_eq!(
        RetrySettings::from_meta(meta.as_object().unwrap()),
        settings
    );
    let r = app
        .chancy
        .push(
            &Job::new("t.fail")
                .queue("retry")
                .max_attempts(3)
                .meta(meta.clone()),
        )
        .unwrap();
    assert!(wait_for(WAIT, || get(&app, &r).attempts >= 2));
    let second = get(&app, &r);
    let delay = scheduled_after_start(&second);
    // min(2 * 3^1, 10) + jitter in [0, 1].
    assert!((6.0..=7.5).contains(&delay), "second retry after {delay} s");
    let done = app.chancy.wait_for_job(&r, WAIT).unwrap().unwrap();
    worker.stop();
    assert_eq!(
        (done.state, done.attempts, done.errors.len()),
        (JobState::Failed, 3, 3)
    );
    assert_eq!(json!(done.meta), meta, "meta is preserved");
    let total = (done.scheduled_at - done.created_at).num_milliseconds() as f64 / 1000.0;
    assert!((6.0..=20.0).contains(&total), "{total} s");
}

#[test]
fn no_retry_on_success() {
    let app = retry_app();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("t.noop").queue("retry").max_attempts(3))
        .unwrap();
    let done = app.chancy.wait_for_job(&r, WAIT).unwrap().unwrap();
    worker.stop();
    assert_eq!((done.state, done.attempts), (JobState::Succeeded, 1));
    assert!(done.errors.is_empty());
    assert!(
        done.scheduled_at <= done.started_at.unwrap(),
        "not rescheduled"
    );
}

#[test]
fn respect_max_attempts() {
    let app = retry_app();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let quick = RetrySettings::default()
        .backoff(Duration::from_millis(100))
        .backoff_jitter(Duration::ZERO, Duration::from_millis(100));
    let r = app
        .chancy
        .push(
            &Job::new("t.fail")
                .queue("retry")
                .max_attempts(2)
                .meta(json!({"retry_settings": quick.to_json()})),
        )
        .unwrap();
    let done = app.chancy.wait_for_job(&r, WAIT).unwrap().unwrap();
    worker.stop();
    assert_eq!(
        (done.state, done.attempts, done.errors.len()),
        (JobState::Failed, 2, 2)
    );
    assert!(done.completed_at.is_some());
}

/// A backoff of billions of years (each part still a valid duration, their sum not) in `meta.retry_settings` (a row anyone may write) schedules the
/// retry at Python's `datetime.max`, never past it and never a panic in the worker.
#[test]
fn a_backoff_past_year_9999_is_scheduled_at_the_latest_time_python_reads() {
    let app = retry_app();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let r =
        app.chancy
            .push(&Job::new("t.fail").queue("retry").max_attempts(3).meta(
                json!({"retry_settings": {
                    "backoff": 1e18, "backoff_factor": 2, "backoff_limit": 1.8e19,
                    "backoff_jitter": [1.8e19, 1.8e19]
                }}),
            ))
            .unwrap();
    assert!(wait_for(WAIT, || get(&app, &r).attempts >= 1));
    let job = get(&app, &r);
    assert_eq!(job.state, JobState::Retrying);
    let latest = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").unwrap();
    let early = latest - chrono::Duration::minutes(1);
    assert!(
        job.scheduled_at <= latest && job.scheduled_at > early,
        "clamped to Python's datetime.max (the writer may shift it by the clock offset): {}",
        job.scheduled_at
    );
    let ok = app.chancy.push(&Job::new("t.noop").queue("retry")).unwrap();
    assert!(wait_for(WAIT, || get(&app, &ok).state == JobState::Succeeded));
    assert!(worker.stop());
}
