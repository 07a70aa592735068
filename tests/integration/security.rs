//! Least privilege: the README's grant block (extracted from README.md, so the docs are what
//! is tested), run for a fresh role, is enough for a producer and a worker with the default
//! plugins, and that role cannot change the schema.

use std::time::Duration;

use chancy::plugins::{Workflow, WorkflowPlugin, WorkflowState};
use chancy::{Chancy, Job, JobState, Pruner, Queue, Rule, Worker};
use postgres::{Client, NoTls};

use crate::common::{client, database_url, TestApp};

const README: &str = include_str!("../../README.md");
const MARKER: &str = "<!-- least-privilege-grants -->";

/// The SQL block after the marker in README.md.
fn documented_grants() -> &'static str {
    let after = &README[README.find(MARKER).expect("the README has the grant block")..];
    let start = after.find("```sql\n").expect("a sql block") + "```sql\n".len();
    let len = after[start..].find("```").expect("the block ends");
    &after[start..start + len]
}

/// Drops the role (and revokes what it was granted) at the end, also on failure.
struct Role(String);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = client().batch_execute(&format!(
            "DROP OWNED BY \"{0}\"; DROP ROLE IF EXISTS \"{0}\"",
            self.0
        ));
    }
}

/// The test database's URL with `user` instead of its user.
fn url_as(user: &str) -> (String, String) {
    let config: postgres::Config = database_url().parse().unwrap();
    let db = config.get_dbname().unwrap_or("postgres").to_string();
    let url = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => {
            let port = config.get_ports().first().copied().unwrap_or(5432);
            format!("postgresql://{user}@{host}:{port}/{db}")
        }
        postgres::config::Host::Unix(path) => chancy::pgtemp::socket_url(path, user, &db),
    };
    (url, db)
}

#[test]
fn the_documented_grants_are_enough_for_producers_and_workers() {
    // The owner migrates the core and the default plugins' tables.
    let owner = TestApp::with(|b| b);
    let role = Role(format!(
        "lp_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let (url, db) = url_as(&role.0);
    let sql = documented_grants()
        .replace("chancy_", &owner.prefix)
        .replace("app_worker", &format!("\"{}\"", role.0))
        .replace("ON DATABASE app TO", &format!("ON DATABASE \"{db}\" TO"));
    client()
        .batch_execute(&sql)
        .expect("the README's grants run");

    // What the role must not do.
    let mut limited = Client::connect(&url, NoTls).expect("the role can log in");
    let err = limited
        .batch_execute(&format!("CREATE TABLE \"{}evil\" (x int)", owner.prefix))
        .unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("permission denied"), "{err:?}");
    let err = limited
        .batch_execute(&format!("DROP TABLE \"{}jobs\"", owner.prefix))
        .unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("must be owner"), "{err:?}");

    // Producer and worker as the role, default plugins.
    let chancy = Chancy::builder(url.as_str())
        .prefix(owner.prefix.clone())
        .build()
        .unwrap();
    assert!(chancy.is_up_to_date().unwrap());
    chancy.declare(&Queue::new("default")).unwrap();
    chancy
        .declare(&Queue::new("lp").concurrency(4).eager_polling(true))
        .unwrap();
    let worker = Worker::builder(&chancy)
        .worker_id("limited")
        .heartbeat_poll_interval(Duration::from_millis(500))
        .queue_change_poll_interval(Duration::from_millis(300))
        .job("t.noop", |_| Ok(()))
        // Never opened: runs until cancelled.
        .job("t.sleep", |ctx| crate::support::wait::Gate::new().pass(ctx))
        .build()
        .unwrap();
    worker
        .start()
        .expect("the worker starts as the limited role");
    assert!(
        worker.is_leader().wait_timeout(Duration::from_secs(15)),
        "the limited role can hold the leader lease"
    );
    let refs = chancy
        .push_many(&vec![Job::new("t.noop").queue("lp"); 20])
        .unwrap();
    let long = chancy.push(&Job::new("t.sleep").queue("lp")).unwrap();
    let done = chancy
        .wait_for_jobs(&refs, Duration::from_secs(30))
        .unwrap();
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    assert!(chancy.cancel_job(&long).unwrap().is_done());
    chancy.pause_queue("lp", None).unwrap();
    chancy.resume_queue("lp").unwrap();
    let wf = Workflow::new("lp-flow")
        .add("a", Job::new("t.noop").queue("lp"), &[])
        .add("b", Job::new("t.noop").queue("lp"), &["a"]);
    let id = WorkflowPlugin::push(&chancy, &wf).unwrap();
    let flow = WorkflowPlugin::wait_for_workflow(&chancy, id, Duration::from_secs(60)).unwrap();
    assert_eq!(flow.state, WorkflowState::Completed);
    let pruned = Pruner::new(Rule::queue().eq("lp"))
        .prune(&chancy)
        .expect("the role can prune");
    assert!(pruned >= 20, "{pruned}");
    assert!(worker.stop(), "a clean stop (metrics flushed as the role)");

    let mut c = owner.client();
    let metrics: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {}", owner.table("metrics")),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(metrics > 0, "the worker's metrics were saved by the role");
    drop(role);
}
