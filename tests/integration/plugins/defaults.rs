//! The default plugin set and dependency checks.

use std::time::Duration;

use chancy::plugins::{Pruner, PRUNER};
use chancy::{ImmediateLeadership, Leadership, RetryPlugin, Worker};

use super::{fast_worker, wait_for};
use crate::common::TestApp;

fn identifiers(app: &TestApp) -> Vec<&'static str> {
    app.chancy
        .plugins()
        .iter()
        .map(|p| p.identifier())
        .collect()
}

#[test]
fn default_set_is_leadership_pruner_recovery_metrics_workflow_after_user_plugins() {
    let app = TestApp::with(|b| b.plugin(RetryPlugin));
    assert_eq!(
        identifiers(&app),
        vec![
            "chancy.retry_plugin",
            "chancy.leadership",
            "chancy.pruner",
            "chancy.recovery",
            "chancy.metrics",
            "chancy.workflow_plugin"
        ]
    );
    let immediate = TestApp::with(|b| b.plugin(ImmediateLeadership));
    assert_eq!(
        identifiers(&immediate),
        vec![
            "chancy.leadership",
            "chancy.pruner",
            "chancy.recovery",
            "chancy.metrics",
            "chancy.workflow_plugin"
        ]
    );
    assert!(
        immediate.chancy.plugins()[0].interval().is_none(),
        "the user's ImmediateLeadership replaces the default Leadership"
    );
    let none = TestApp::new();
    assert!(identifiers(&none).is_empty());
}

#[test]
fn a_default_worker_leads_promptly() {
    let app = TestApp::with(|b| b);
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    assert!(
        worker.is_leader().wait_timeout(Duration::from_secs(5)),
        "the default Leadership elects at start"
    );
    assert!(worker.stop());
}

#[test]
fn pruner_without_leadership_refuses_to_start() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(Pruner::default()));
    let worker = Worker::builder(&app.chancy).build().unwrap();
    let err = worker.start().unwrap_err();
    assert!(err.is_config(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(PRUNER) && text.contains("chancy.leadership"),
        "{text}"
    );
    assert!(wait_for(Duration::from_secs(5), || worker
        .manager()
        .services()
        .is_empty()));
}

#[test]
fn leadership_settings_are_validated() {
    let err = Leadership::builder()
        .poll_interval(Duration::from_secs(10))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(err.is_config());
}
