//! A plugin written as a user would, from outside the crate, against the public plugin API:
//! its own migration key and table, a leader-only service gated by the worker (not by the
//! plugin), and the worker seen only through `PluginContext`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chancy::migrate::{Migration, Migrations};
use chancy::{Plugin, PluginContext, Worker};
use serde_json::json;

use super::{fast_worker, WAIT};
use crate::common::TestApp;

/// The plugin's migration key: recorded in `<prefix>schema_version` of each test's own
/// prefix, so one fixed key is fine across tests.
static AUDIT_STEPS: [Migration; 1] = [Migration::new(
    "001_initial",
    "-- up\n\
     CREATE TABLE \"{prefix}custom_audit\" (\n\
         id BIGSERIAL PRIMARY KEY,\n\
         worker_id TEXT NOT NULL,\n\
         session_tag TEXT NOT NULL\n\
     );\n\
     -- down\n\
     DROP TABLE \"{prefix}custom_audit\";\n",
)];
static AUDIT: Migrations = Migrations::new("test_custom_audit", &AUDIT_STEPS);

const RAN: &str = "test.audit.ran";
const SKIPPED: &str = "test.audit.skipped";

/// What the test reads back from the plugin.
#[derive(Default)]
struct Counts {
    passes: AtomicUsize,
    started: AtomicUsize,
}

/// Writes one audit row per pass; only the leader runs it.
struct Audit(Arc<Counts>);

impl Plugin for Audit {
    fn identifier(&self) -> &'static str {
        "test.audit"
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&AUDIT)
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["custom_audit"]
    }

    fn interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }

    fn leader_only(&self) -> bool {
        true
    }

    fn on_worker_started(&self, _ctx: &PluginContext) -> chancy::Result<()> {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn on_pass_skipped(&self, ctx: &PluginContext) {
        ctx.hub().emit(SKIPPED, json!({}));
    }

    fn run_once(&self, ctx: &PluginContext) -> chancy::Result<()> {
        let mut conn = ctx.chancy().connection()?;
        let table = ctx.chancy().prefix().table("custom_audit");
        conn.execute(
            &format!("INSERT INTO {table} (worker_id, session_tag) VALUES ($1, $2)"),
            &[&ctx.worker_id(), &ctx.session_tag()],
        )
        .map_err(|e| chancy::Error::database("writing an audit row", e))?;
        self.0.passes.fetch_add(1, Ordering::SeqCst);
        ctx.hub().emit(RAN, json!({ "worker_id": ctx.worker_id() }));
        Ok(())
    }
}

fn audit_rows(app: &TestApp) -> Vec<(String, String)> {
    app.client()
        .query(
            &format!(
                "SELECT worker_id, session_tag FROM {} ORDER BY id",
                app.table("custom_audit")
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn started(app: &TestApp) -> Worker {
    let worker = fast_worker(app).worker_id("w-audit").build().unwrap();
    worker.start().unwrap();
    worker
}

#[test]
fn a_custom_plugin_brings_its_own_migrations() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(Audit(Arc::default())));
    assert!(app.chancy.migration_keys().contains(&"test_custom_audit"));
    assert!(app
        .tables()
        .contains(&format!("{}custom_audit", app.prefix)));
    let status = app.chancy.check_migrations().unwrap();
    let mine = status
        .iter()
        .find(|s| s.key == "test_custom_audit")
        .expect("the plugin's key is checked");
    assert_eq!((mine.current, mine.latest), (1, 1));
    assert!(app.chancy.is_up_to_date().unwrap());
    // Tearing down removes the plugin's table too (plugins first).
    app.chancy.migrate_to(0).unwrap();
    assert!(!app
        .tables()
        .contains(&format!("{}custom_audit", app.prefix)));
}

#[test]
fn a_leader_only_custom_plugin_runs_only_while_its_worker_leads() {
    let audit = Arc::new(Counts::default());
    // No leadership plugin: nothing elects this worker, the test sets the flag itself.
    let app = TestApp::with(|b| b.no_default_plugins().plugin(Audit(Arc::clone(&audit))));
    let worker = started(&app);
    assert_eq!(audit.started.load(Ordering::SeqCst), 1);

    // Not leading: passes are skipped by the worker, run_once never runs.
    assert!(worker.hub().wait_for(&[SKIPPED], WAIT).is_some());
    assert!(worker.hub().wait_for(&[SKIPPED], WAIT).is_some());
    assert_eq!(audit.passes.load(Ordering::SeqCst), 0);
    assert!(audit_rows(&app).is_empty());

    // Leading: the next pass runs, through the context (client, ids) the plugin was given.
    worker.is_leader().set();
    let ran = worker
        .hub()
        .wait_for(&[RAN], WAIT)
        .expect("a pass as leader");
    assert_eq!(ran.body["worker_id"], "w-audit");
    let rows = audit_rows(&app);
    assert!(!rows.is_empty());
    assert_eq!(rows[0].0, "w-audit");
    assert!(rows[0].1.starts_with("chancy.session="), "{rows:?}");

    // Stepping down: skipped again, and no pass runs after the step-down is seen.
    worker.is_leader().clear();
    assert!(worker.hub().wait_for(&[SKIPPED], WAIT).is_some());
    let passes = audit.passes.load(Ordering::SeqCst);
    assert!(worker.hub().wait_for(&[SKIPPED], WAIT).is_some());
    assert_eq!(audit.passes.load(Ordering::SeqCst), passes);
    assert!(worker.stop());
}

#[test]
fn the_context_reports_the_workers_settings_and_leadership() {
    struct Probe(Arc<std::sync::Mutex<Vec<String>>>);
    impl Plugin for Probe {
        fn identifier(&self) -> &'static str {
            "test.probe"
        }
        fn on_worker_started(&self, ctx: &PluginContext) -> chancy::Result<()> {
            ctx.set_leader(true);
            self.0.lock().unwrap().push(format!(
                "{} leader={} timeout={:?} shutdown={}",
                ctx.worker_id(),
                ctx.is_leader(),
                ctx.heartbeat_timeout(),
                ctx.shutdown_event().is_set()
            ));
            Ok(())
        }
        fn on_worker_stopped(&self, ctx: &PluginContext) {
            self.0.lock().unwrap().push(format!(
                "stopped shutdown={} running={} pending={}",
                ctx.shutdown_event().is_set(),
                ctx.running_jobs(),
                ctx.pending_updates()
            ));
        }
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = TestApp::with(|b| b.no_default_plugins().plugin(Probe(Arc::clone(&seen))));
    let worker = fast_worker(&app)
        .worker_id("w-probe")
        .heartbeat_timeout(Duration::from_secs(7))
        .build()
        .unwrap();
    worker.start().unwrap();
    assert!(worker.is_leader().is_set(), "set_leader reaches the worker");
    assert!(worker.stop());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "w-probe leader=true timeout=7s shutdown=false".to_string(),
            "stopped shutdown=true running=0 pending=0".to_string(),
        ]
    );
}
