//! Trigger: database triggers that push jobs, enable/disable, unregister.

use std::time::Duration;

use chancy::plugins::Trigger;
use chancy::Job;
use serde_json::{json, Value};
use uuid::Uuid;

use super::fast_worker;
use crate::common::{client, TestApp};

/// Drops the handler function of a test prefix (tables go with the TestApp).
struct DropHandler(String);

impl Drop for DropHandler {
    fn drop(&mut self) {
        let _ = client().batch_execute(&format!(
            "DROP FUNCTION IF EXISTS \"{}trigger_handler\"() CASCADE",
            self.0
        ));
    }
}

fn setup() -> (TestApp, DropHandler, String) {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(Trigger));
    let guard = DropHandler(app.prefix.clone());
    // A table with a quote in its name: identifiers must be quoted, never spliced.
    let table = format!("{}it\"ems", app.prefix);
    app.client()
        .batch_execute(&format!(
            "CREATE TABLE public.\"{}\" (id serial PRIMARY KEY, name text)",
            table.replace('"', "\"\"")
        ))
        .unwrap();
    (app, guard, table)
}

fn insert_rows(app: &TestApp, table: &str, n: usize) {
    let values = vec!["('x')"; n].join(", ");
    app.client()
        .batch_execute(&format!(
            "INSERT INTO public.\"{}\" (name) VALUES {values}",
            table.replace('"', "\"\"")
        ))
        .unwrap();
}

fn triggered_jobs(app: &TestApp) -> Vec<(String, Value)> {
    app.client()
        .query(
            &app.sql("SELECT state, meta FROM {jobs} WHERE func = 't.noop' ORDER BY created_at"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn db_trigger_names(table: &str) -> Vec<String> {
    client()
        .query(
            "SELECT tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE c.relname = $1 AND NOT t.tgisinternal ORDER BY 1",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn an_insert_fires_one_job_per_statement_and_a_worker_runs_it() {
    let (app, _guard, table) = setup();
    let template = Job::new("t.noop")
        .meta(json!({"src": "trigger"}))
        .priority(4);
    let id = Trigger::register_trigger(&app.chancy, &table, &["insert"], &template, "public", true)
        .unwrap();
    let trigger_name = format!("{}trigger_{}", app.prefix, id.to_string().replace('-', "_"));
    assert_eq!(db_trigger_names(&table), [format!("{trigger_name}_insert")]);

    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    insert_rows(&app, &table, 3);
    let mut jobs = Vec::new();
    let done = crate::support::wait::poll(Duration::from_secs(20), || {
        jobs = triggered_jobs(&app);
        (jobs.len() == 1 && jobs[0].0 == "succeeded").then_some(())
    });
    assert!(done.is_some(), "{jobs:?}");
    let trigger = &jobs[0].1["trigger"];
    assert_eq!(jobs[0].1["src"], "trigger");
    assert_eq!(trigger["operation"], "INSERT");
    assert_eq!(trigger["table_name"], json!(table));
    assert_eq!(trigger["schema_name"], "public");
    assert_eq!(
        trigger["trigger_name"],
        json!(format!("{trigger_name}_insert"))
    );
    assert!(worker.stop());

    let configs = Trigger::get_triggers(&app.chancy, None).unwrap();
    assert_eq!(configs.len(), 1);
    let c = &configs[0];
    assert_eq!(
        (c.id, c.enabled, c.operations.clone()),
        (id, true, vec!["INSERT".to_string()])
    );
    assert_eq!(
        (c.table_name.as_str(), c.trigger_name.as_str()),
        (table.as_str(), trigger_name.as_str())
    );
    assert_eq!(c.job_template.func(), "t.noop");
}

#[test]
fn disable_enable_and_unregister() {
    let (app, _guard, table) = setup();
    let id = Trigger::register_trigger(
        &app.chancy,
        &table,
        &["INSERT", "delete"],
        &Job::new("t.noop"),
        "public",
        false,
    )
    .unwrap();
    assert!(db_trigger_names(&table).is_empty(), "registered disabled");
    insert_rows(&app, &table, 1);
    assert!(triggered_jobs(&app).is_empty());

    assert!(Trigger::enable_trigger(&app.chancy, id).unwrap());
    assert!(
        !Trigger::enable_trigger(&app.chancy, id).unwrap(),
        "already enabled"
    );
    assert_eq!(db_trigger_names(&table).len(), 2);
    insert_rows(&app, &table, 1);
    assert_eq!(triggered_jobs(&app).len(), 1);

    assert!(Trigger::disable_trigger(&app.chancy, id).unwrap());
    assert!(!Trigger::disable_trigger(&app.chancy, id).unwrap());
    insert_rows(&app, &table, 1);
    assert_eq!(triggered_jobs(&app).len(), 1);

    Trigger::enable_trigger(&app.chancy, id).unwrap();
    Trigger::unregister_trigger(&app.chancy, id).unwrap();
    assert!(db_trigger_names(&table).is_empty());
    assert!(Trigger::get_triggers(&app.chancy, Some(&[id]))
        .unwrap()
        .is_empty());
    insert_rows(&app, &table, 1);
    assert_eq!(triggered_jobs(&app).len(), 1);

    let err = Trigger::unregister_trigger(&app.chancy, Uuid::new_v4()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = Trigger::register_trigger(
        &app.chancy,
        &table,
        &["TRUNCATE"],
        &Job::new("t.noop"),
        "public",
        true,
    )
    .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}
