//! Issue 14 item 4: no queue row can crash a worker. Every setting is checked at declare
//! time against documented bounds, and a worker skips (and logs) rows another client wrote
//! outside them while it keeps serving the other queues.

use std::time::Duration;

use chancy::{Job, JobState, Queue, ServiceState};

use crate::common::{fast_worker, TestApp};

#[test]
fn declare_refuses_out_of_bounds_settings_naming_the_setting_and_writes_nothing() {
    let app = TestApp::new();
    let cases: Vec<(Queue, &str, &str)> = vec![
        (Queue::new("q").concurrency(i32::MAX), "concurrency", "1024"),
        (Queue::new("q").concurrency(0), "concurrency", "1024"),
        (
            Queue::new("q").polling_interval(Duration::from_secs(10_000_000)),
            "polling_interval",
            "86400",
        ),
        (
            Queue::new("q").rate_limit(i32::MAX, Duration::from_secs(1)),
            "rate_limit",
            "1000000",
        ),
        (
            Queue::new("q").rate_limit(1, Duration::from_secs(u32::MAX as u64)),
            "rate_limit_window",
            "604800",
        ),
        (
            Queue::new("q").tags(["has=(gpu"]),
            "tag",
            "not a valid regex",
        ),
    ];
    for (queue, setting, bound) in cases {
        for upsert in [false, true] {
            let err = if upsert {
                app.chancy.declare_upsert(&queue)
            } else {
                app.chancy.declare(&queue)
            }
            .expect_err("out-of-bounds declaration accepted");
            let text = err.to_string();
            assert!(err.is_invalid_input(), "{text}");
            assert!(
                text.contains(setting) && text.contains(bound),
                "{setting}: {text}"
            );
        }
    }
    assert!(
        app.chancy.get_all_queues().unwrap().is_empty(),
        "nothing was written"
    );
}

#[test]
fn a_worker_skips_out_of_bounds_rows_from_other_clients_and_serves_the_rest() {
    let app = TestApp::new();
    let mut c = app.client();
    // What Python (or raw SQL) can write: a concurrency that would ask for 2^31 threads and
    // a tag that is not a regex.
    c.batch_execute(&app.sql(
        "INSERT INTO {queues} (name, state, concurrency, tags, executor, executor_options, polling_interval) \
         VALUES ('huge', 'active', 2147483647, '{.*}', 'chancy.executors.thread.ThreadedExecutor', '{}', 1), \
                ('badtag', 'active', 1, '{\"(\"}', 'chancy.executors.thread.ThreadedExecutor', '{}', 1), \
                ('slow', 'active', 1, '{.*}', 'chancy.executors.thread.ThreadedExecutor', '{}', 100000000)",
    ))
    .unwrap();
    let worker = fast_worker(&app).build().unwrap();
    let events = crate::support::events::start(&worker);
    let huge = app.chancy.push(&Job::new("t.noop").queue("huge")).unwrap();
    let fine = app.chancy.push(&Job::new("t.noop")).unwrap();
    let done = app
        .chancy
        .wait_for_job(&fine, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    events.passes("queues", 2, Duration::from_secs(30)); // a whole queue pass after the job
    assert_eq!(
        worker.queues(),
        ["default"],
        "only the valid queue is served"
    );
    assert_eq!(
        app.chancy.get_job(&huge).unwrap().unwrap().state,
        JobState::Pending,
        "the out-of-bounds queue is not served"
    );
    assert_eq!(
        worker.manager().state_of("queues"),
        Some(ServiceState::Running)
    );
    // Fixing the row (through the validated path) makes the worker serve it.
    app.chancy
        .declare_upsert(&Queue::new("huge").concurrency(2))
        .unwrap();
    let done = app
        .chancy
        .wait_for_job(&huge, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert!(worker.stop(), "clean stop");
}
