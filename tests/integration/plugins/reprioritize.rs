//! Reprioritize: raises matching waiting jobs once per cycle, pages, terminates.

use std::time::Duration;

use chancy::plugins::{Reprioritize, Rule};
use chancy::{ImmediateLeadership, Job, Reference};

use super::{fast_worker, wait_for};
use crate::common::TestApp;

fn priority(app: &TestApp, r: &Reference) -> i32 {
    app.chancy.get_job(r).unwrap().unwrap().priority
}

fn later() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::minutes(10)
}

#[test]
fn a_cycle_raises_each_matching_waiting_job_exactly_once() {
    let app = TestApp::new();
    let matching: Vec<Reference> = (0..5)
        .map(|_| {
            app.chancy
                .push(&Job::new("t.noop").queue("q").scheduled_at(later()))
                .unwrap()
        })
        .collect();
    let other_queue = app
        .chancy
        .push(&Job::new("t.noop").queue("elsewhere"))
        .unwrap();
    let finished = app.chancy.push(&Job::new("t.noop").queue("q")).unwrap();
    let retrying = app.chancy.push(&Job::new("t.noop").queue("q")).unwrap();
    let mut c = app.client();
    c.execute(
        &app.sql("UPDATE {jobs} SET state = 'succeeded' WHERE id = $1"),
        &[&finished.id()],
    )
    .unwrap();
    c.execute(
        &app.sql("UPDATE {jobs} SET state = 'retrying' WHERE id = $1"),
        &[&retrying.id()],
    )
    .unwrap();
    // Batches of 2 over 6 matching jobs: three full pages, then an empty one ends the cycle.
    let plugin = Reprioritize::builder(Rule::queue().eq("q"))
        .priority_increase(5)
        .batch_size(2)
        .build()
        .unwrap();
    assert_eq!(plugin.reprioritize(&app.chancy).unwrap(), 6);
    assert!(matching.iter().all(|r| priority(&app, r) == 5));
    assert_eq!(priority(&app, &retrying), 5);
    assert_eq!(priority(&app, &other_queue), 0);
    assert_eq!(priority(&app, &finished), 0, "finished jobs are not raised");
    assert_eq!(plugin.reprioritize(&app.chancy).unwrap(), 6);
    assert!(matching.iter().all(|r| priority(&app, r) == 10));
}

#[test]
fn an_empty_table_is_a_no_op() {
    let app = TestApp::new();
    let plugin = Reprioritize::builder(Rule::age().gt(0)).build().unwrap();
    assert_eq!(plugin.reprioritize(&app.chancy).unwrap(), 0);
}

#[test]
fn the_service_raises_old_waiting_jobs_on_the_leader() {
    let plugin = Reprioritize::builder(Rule::age().gt(0))
        .check_interval(Duration::from_millis(300))
        .priority_increase(5)
        .build()
        .unwrap();
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(plugin)
    });
    let r = app
        .chancy
        .push(&Job::new("t.noop").scheduled_at(later()))
        .unwrap();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    assert!(wait_for(Duration::from_secs(5), || priority(&app, &r) >= 5));
    worker.stop();
    let p = priority(&app, &r);
    assert!(p >= 5 && p % 5 == 0, "{p}");
}
