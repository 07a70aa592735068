//! Leadership: lease on the leader row, prompt first election, hand-over, expiry, step-down.

use std::time::{Duration, Instant};

use chancy::{ImmediateLeadership, Worker};

use super::{events_named, fast_worker, leadership, listen, wait_for};
use crate::common::TestApp;
use crate::support::wait::sample_for;

/// The service name of the leadership plugin's passes.
const LEADERSHIP_SERVICE: &str = "plugin-chancy.leadership";

fn leader_row(app: &TestApp) -> Option<String> {
    app.client()
        .query_opt(&app.sql("SELECT worker_id FROM {leader} WHERE id = 1"), &[])
        .unwrap()
        .map(|r| r.get(0))
}

fn leaders(workers: &[Worker]) -> Vec<String> {
    workers
        .iter()
        .filter(|w| w.is_leader().is_set())
        .map(|w| w.worker_id().to_string())
        .collect()
}

#[test]
fn immediate_leadership_leads_at_start_without_the_table() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(ImmediateLeadership));
    let worker = fast_worker(&app).build().unwrap();
    assert!(!worker.is_leader().is_set());
    worker.start().unwrap();
    assert!(
        worker.is_leader().is_set(),
        "leader as soon as start returns"
    );
    assert_eq!(leader_row(&app), None, "the table is never touched");
    assert!(worker.stop());
}

#[test]
fn a_single_worker_becomes_leader_at_start() {
    // A long poll interval: only the election at start can make it leader in time.
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(leadership(
            Duration::from_secs(60),
            Duration::from_secs(120),
        ))
    });
    let mut events = listen(&app);
    let worker = fast_worker(&app).worker_id("w-solo").build().unwrap();
    worker.start().unwrap();
    assert!(worker.is_leader().wait_timeout(Duration::from_secs(5)));
    assert_eq!(leader_row(&app).as_deref(), Some("w-solo"));
    assert!(
        wait_for(Duration::from_secs(5), || app
            .chancy
            .get_all_workers()
            .unwrap()
            .iter()
            .any(|w| w.worker_id == "w-solo" && w.is_leader)),
        "the workers listing shows the leader"
    );
    assert!(worker.stop());
    assert_eq!(
        leader_row(&app),
        None,
        "a stopping leader releases its lease"
    );
    let payloads = events.collect(Duration::from_millis(500));
    assert!(
        payloads.contains(&r#"{"t": "leadership.gained", "worker_id": "w-solo"}"#.to_string()),
        "{payloads:?}"
    );
    assert_eq!(events_named(&payloads, "leadership.lost").len(), 1);
}

#[test]
fn exactly_one_of_five_workers_leads() {
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(leadership(
            Duration::from_millis(200),
            Duration::from_secs(1),
        ))
    });
    let workers: Vec<Worker> = (0..5)
        .map(|i| {
            fast_worker(&app)
                .worker_id(format!("w{i}"))
                .build()
                .unwrap()
        })
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    assert!(wait_for(Duration::from_secs(5), || leaders(&workers).len() == 1));
    // Over several renewals (1.5 s, every 200 ms) there is always exactly one, and it is the
    // row's owner.
    sample_for(
        Duration::from_millis(1500),
        Duration::from_millis(150),
        || {
            let now = leaders(&workers);
            assert_eq!(now.len(), 1, "{now:?}");
            let row = leader_row(&app);
            let still = leaders(&workers);
            if now == still {
                assert_eq!(row.as_deref(), Some(now[0].as_str()));
            }
        },
    );
    for w in &workers {
        w.stop();
    }
}

#[test]
fn a_stopping_leader_hands_over_before_its_lease_would_expire() {
    // A 30 s lease: only the release at stop explains a hand-over within a few seconds.
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(leadership(
            Duration::from_millis(300),
            Duration::from_secs(30),
        ))
    });
    let workers: Vec<Worker> = ["1", "2"]
        .iter()
        .map(|id| fast_worker(&app).worker_id(*id).build().unwrap())
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    assert!(wait_for(Duration::from_secs(5), || leaders(&workers).len() == 1));
    let first = leaders(&workers)[0].clone();
    let (old, new): (Vec<&Worker>, Vec<&Worker>) =
        workers.iter().partition(|w| w.worker_id() == first);
    let stopped = Instant::now();
    assert!(old[0].stop());
    assert!(!old[0].is_leader().is_set());
    assert!(
        new[0].is_leader().wait_timeout(Duration::from_secs(5)),
        "the other worker takes over promptly"
    );
    assert!(stopped.elapsed() < Duration::from_secs(10));
    assert_eq!(leader_row(&app).as_deref(), Some(new[0].worker_id()));
    new[0].stop();
}

#[test]
fn an_unreleased_lease_is_taken_over_only_after_it_expires() {
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(leadership(
            Duration::from_millis(200),
            Duration::from_secs(1),
        ))
    });
    // A leader that died without releasing: its lease runs until the test ends it below.
    app.client()
        .execute(
            &app.sql(
                "INSERT INTO {leader} (id, worker_id, expires_at) \
                 VALUES (1, 'ghost', NOW() + INTERVAL '1 hour')",
            ),
            &[],
        )
        .unwrap();
    let worker = fast_worker(&app).worker_id("heir").build().unwrap();
    let hub = crate::support::events::start(&worker);
    // Three election passes (every 200 ms) while the ghost's lease runs.
    hub.passes(LEADERSHIP_SERVICE, 3, Duration::from_secs(10));
    assert!(!worker.is_leader().is_set(), "the ghost's lease still runs");
    assert_eq!(leader_row(&app).as_deref(), Some("ghost"));
    // The lease runs out now (by the database clock): the next election takes it.
    app.client()
        .execute(
            &app.sql("UPDATE {leader} SET expires_at = NOW() WHERE worker_id = 'ghost'"),
            &[],
        )
        .unwrap();
    assert!(worker.is_leader().wait_timeout(Duration::from_secs(5)));
    assert_eq!(leader_row(&app).as_deref(), Some("heir"));
    worker.stop();
}

#[test]
fn a_leader_whose_lease_was_taken_over_steps_down() {
    let app = TestApp::with(|b| {
        b.no_default_plugins().plugin(leadership(
            Duration::from_millis(200),
            Duration::from_secs(5),
        ))
    });
    let mut events = listen(&app);
    let worker = fast_worker(&app).worker_id("old").build().unwrap();
    let hub = crate::support::events::start(&worker);
    assert!(worker.is_leader().wait_timeout(Duration::from_secs(5)));
    hub.passes(LEADERSHIP_SERVICE, 2, Duration::from_secs(10));
    assert!(worker.is_leader().is_set(), "renewals keep it leader");
    // Someone else holds the row now (e.g. after this worker stalled past its lease).
    app.client()
        .execute(
            &app.sql(
                "UPDATE {leader} SET worker_id = 'usurper', \
                 expires_at = NOW() + INTERVAL '60 seconds' WHERE id = 1",
            ),
            &[],
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || !worker.is_leader().is_set()),
        "the renewal finds someone else's row and steps down"
    );
    hub.passes(LEADERSHIP_SERVICE, 3, Duration::from_secs(10));
    assert!(
        !worker.is_leader().is_set(),
        "no split brain: it stays down"
    );
    assert_eq!(leader_row(&app).as_deref(), Some("usurper"));
    worker.stop();
    assert_eq!(
        leader_row(&app).as_deref(),
        Some("usurper"),
        "stopping never deletes someone else's lease"
    );
    let payloads = events.collect(Duration::from_millis(500));
    assert!(
        payloads.contains(&r#"{"t": "leadership.lost", "worker_id": "old"}"#.to_string()),
        "{payloads:?}"
    );
    assert!(!events_named(&payloads, "leadership.renewed").is_empty());
}
