//! Workflows: the spec's test_workflow rows, prompt progression, events, Python-made rows.

use std::time::Duration;

use chancy::plugins::{Sequence, Workflow, WorkflowPlugin, WorkflowState};
use chancy::{Job, JobState, Plugin, Queue, Worker};
use serde_json::{json, Value};
use uuid::Uuid;

use super::fast_worker;
use crate::common::{Listener, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// Stands in for the leadership plugin (being built elsewhere): the tests set the
/// worker's leader flag themselves.
struct TestLeadership;

impl Plugin for TestLeadership {
    fn identifier(&self) -> &'static str {
        "chancy.leadership"
    }
}

fn app() -> TestApp {
    TestApp::with(|b| {
        b.no_default_plugins().plugin(TestLeadership).plugin(
            // A long poll: progress within the tests must come from events.
            WorkflowPlugin::new().polling_interval(Duration::from_secs(60)),
        )
    })
}

fn leader(app: &TestApp) -> Worker {
    let worker = fast_worker(app).build().unwrap();
    worker.start().unwrap();
    worker.is_leader().set();
    worker
}

fn noop() -> Job {
    Job::new("t.noop")
}

fn step_state(wf: &Workflow, id: &str) -> Option<JobState> {
    wf.step(id).unwrap().state
}

#[test]
fn sequential_workflow_completes_promptly() {
    let app = app();
    let worker = leader(&app);
    let wf = Workflow::new("sequential")
        .add("step1", noop(), &[])
        .add("step2", noop(), &["step1"])
        .add("step3", noop(), &["step2"]);
    let id = WorkflowPlugin::push(&app.chancy, &wf).unwrap();
    assert_eq!(id, wf.id);
    let done = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    assert!(worker.stop());
    assert_eq!(done.state, WorkflowState::Completed);
    for s in ["step1", "step2", "step3"] {
        assert_eq!(step_state(&done, s), Some(JobState::Succeeded), "{s}");
    }
    // Each step job carries the workflow id in its meta.
    let job_id = done.step("step2").unwrap().job_id.unwrap();
    let job = app
        .chancy
        .get_job(&chancy::Reference(job_id))
        .unwrap()
        .unwrap();
    assert_eq!(job.meta["workflow_id"], json!(id.to_string()));
}

#[test]
fn parallel_workflow_completes() {
    let app = app();
    let worker = leader(&app);
    let wf = Workflow::new("parallel")
        .add("setup", noop(), &[])
        .add_group(
            vec![("p1", noop()), ("p2", noop()), ("p3", noop())],
            &["setup"],
        )
        .add("finish", noop(), &["p1", "p2", "p3"]);
    let id = WorkflowPlugin::push(&app.chancy, &wf).unwrap();
    let done = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    worker.stop();
    assert_eq!(done.state, WorkflowState::Completed);
    assert_eq!(done.steps.len(), 5);
    assert!(done
        .steps
        .iter()
        .all(|s| s.state == Some(JobState::Succeeded)));
}

#[test]
fn workflow_failure_never_queues_dependents() {
    let app = app();
    let worker = leader(&app);
    let wf = Workflow::new("failing")
        .add("step1", noop(), &[])
        .add("step2", Job::new("t.fail"), &["step1"])
        .add("step3", noop(), &["step2"]);
    let id = WorkflowPlugin::push(&app.chancy, &wf).unwrap();
    let done = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    worker.stop();
    assert_eq!(done.state, WorkflowState::Failed);
    assert_eq!(step_state(&done, "step1"), Some(JobState::Succeeded));
    assert_eq!(step_state(&done, "step2"), Some(JobState::Failed));
    assert_eq!(step_state(&done, "step3"), None);
    assert_eq!(done.step("step3").unwrap().job_id, None);
}

#[test]
fn sequence_completes() {
    let app = app();
    let worker = leader(&app);
    let seq = Sequence::new("seq", vec![noop(), noop()]).add(noop());
    let id = WorkflowPlugin::push(&app.chancy, &seq.to_workflow()).unwrap();
    let done = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    worker.stop();
    assert_eq!(done.state, WorkflowState::Completed);
    let ids: Vec<&str> = done.steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["step_0", "step_1", "step_2"]);
}

#[test]
fn workflow_timeout_is_a_timeout_error() {
    let app = app();
    let worker = leader(&app);
    // Its only step waits on a queue nobody serves: the workflow cannot finish in time.
    let stuck = Job::new("t.noop").queue("nobody_serves_this");
    let id =
        WorkflowPlugin::push(&app.chancy, &Workflow::new("slow").add("s", stuck, &[])).unwrap();
    let err =
        WorkflowPlugin::wait_for_workflow(&app.chancy, id, Duration::from_millis(100)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    worker.stop();
}

#[test]
fn missing_workflow_is_not_found() {
    let app = app();
    let err = WorkflowPlugin::wait_for_workflow(&app.chancy, Uuid::new_v4(), WAIT).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(WorkflowPlugin::fetch_workflow(&app.chancy, Uuid::new_v4())
        .unwrap()
        .is_none());
}

#[test]
fn workflow_with_modified_jobs_completes() {
    let app = app();
    app.chancy.declare(&Queue::new("high_priority")).unwrap();
    let worker = leader(&app);
    let wf = Workflow::new("modified")
        .add("a", noop().queue("high_priority").priority(10), &[])
        .add("b", noop().max_attempts(3), &["a"]);
    let id = WorkflowPlugin::push(&app.chancy, &wf).unwrap();
    let done = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    worker.stop();
    assert_eq!(done.state, WorkflowState::Completed);
    let a = done.step("a").unwrap().job_id.unwrap();
    let a = app.chancy.get_job(&chancy::Reference(a)).unwrap().unwrap();
    assert_eq!((a.queue.as_str(), a.priority), ("high_priority", 10));
    let b = done.step("b").unwrap().job_id.unwrap();
    let b = app.chancy.get_job(&chancy::Reference(b)).unwrap().unwrap();
    assert_eq!(b.max_attempts, 3);
}

#[test]
fn invalid_workflows_are_rejected_with_upstream_messages() {
    let app = app();
    let cyclic = Workflow::new("cyclic")
        .add("a", noop(), &["b"])
        .add("b", noop(), &["a"]);
    let err = WorkflowPlugin::push(&app.chancy, &cyclic).unwrap_err();
    assert!(err.is_invalid_input());
    assert_eq!(err.to_string(), "Circular dependency detected: a -> b -> a");
    let err = WorkflowPlugin::push(&app.chancy, &Workflow::new("empty")).unwrap_err();
    assert!(err.to_string().contains("at least one step"), "{err}");
    let unknown = Workflow::new("unknown").add("a", noop(), &["zz"]);
    let err = WorkflowPlugin::push(&app.chancy, &unknown).unwrap_err();
    assert!(err.to_string().contains("non-existent step 'zz'"), "{err}");
    assert!(
        WorkflowPlugin::fetch_workflows(&app.chancy, None, None, 100)
            .unwrap()
            .is_empty()
    );
}

fn events_named(payloads: &[String], name: &str) -> Vec<Value> {
    payloads
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter(|v| v["t"] == name)
        .collect()
}

#[test]
fn the_writer_transaction_notifies_step_completed() {
    let app = app();
    let mut listener = Listener::new(&app.chancy.prefix().channel());
    // Not the leader: the NOTIFY comes from the writer alone.
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let wf_id = Uuid::new_v4().to_string();
    let meta = json!({"workflow_id": wf_id});
    let refs = app
        .chancy
        .push_many(&[
            noop().meta(meta.clone()),
            Job::new("t.fail").meta(meta),
            noop(),
        ])
        .unwrap();
    for r in &refs {
        app.chancy.wait_for_job(r, WAIT).unwrap();
    }
    let payloads = listener.collect(Duration::from_millis(500));
    worker.stop();
    let completed = events_named(&payloads, "workflow.step_completed");
    assert!(
        !completed.is_empty() && completed.len() <= 2,
        "{payloads:?}"
    );
    let expected = format!(r#"{{"t": "workflow.step_completed", "workflow_id": "{wf_id}"}}"#);
    assert!(payloads.contains(&expected), "{payloads:?}");
}

#[test]
fn events_follow_upstream_sequence() {
    let app = app();
    let mut listener = Listener::new(&app.chancy.prefix().channel());
    let worker = leader(&app);
    let wf = Workflow::new("two")
        .add("a", noop(), &[])
        .add("b", noop(), &["a"]);
    let id = WorkflowPlugin::push(&app.chancy, &wf).unwrap();
    WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    let payloads = listener.collect(Duration::from_millis(500));
    worker.stop();
    let names: Vec<String> = payloads
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["t"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| t.starts_with("workflow."))
        .collect();
    assert_eq!(
        names,
        [
            "workflow.created",
            "workflow.updated",
            "workflow.step_completed",
            "workflow.updated",
            "workflow.step_completed",
            "workflow.updated"
        ]
    );
    let created = &events_named(&payloads, "workflow.created")[0];
    assert_eq!(
        created,
        &json!({"t": "workflow.created", "id": id.to_string(), "name": "two"})
    );
}

#[test]
fn a_python_made_workflow_completes_on_the_sweep() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(TestLeadership)
            .plugin(WorkflowPlugin::new().polling_interval(Duration::from_millis(300)))
    });
    // Rows as Python's push_in writes them, without any NOTIFY (so only the sweep sees it).
    let id = chancy::new_job_id();
    let mut c = app.client();
    c.execute(
        &format!(
            "INSERT INTO {} (id, name, state, created_at, updated_at) \
             VALUES ($1, 'py', 'pending', NOW(), NOW())",
            app.table("workflows")
        ),
        &[&id],
    )
    .unwrap();
    let packed = |s: f64| {
        json!({"f": "t.noop", "k": {}, "p": 0, "a": 1, "s": s, "l": [],
                                 "u": null, "q": "default", "m": {}})
    };
    let insert_step = format!(
        "INSERT INTO {} (workflow_id, step_id, job_data, dependencies, job_id) \
         VALUES ($1, $2, $3, $4, NULL)",
        app.table("workflow_steps")
    );
    c.execute(
        &insert_step,
        &[&id, &"first", &packed(1767225600.5), &json!([])],
    )
    .unwrap();
    c.execute(
        &insert_step,
        &[&id, &"second", &packed(1767225601.0), &json!(["first"])],
    )
    .unwrap();
    let worker = leader(&app);
    let done = WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT).unwrap();
    worker.stop();
    assert_eq!(done.state, WorkflowState::Completed);
}

#[test]
fn cleanup_prunes_only_old_finished_workflows() {
    let app = app();
    let plugin = WorkflowPlugin::new();
    let mut ids = Vec::new();
    for name in ["old-done", "old-pending", "new-done"] {
        let wf = Workflow::new(name).add("a", noop(), &[]);
        ids.push(WorkflowPlugin::push(&app.chancy, &wf).unwrap());
    }
    let mut c = app.client();
    let table = app.table("workflows");
    c.execute(
        &format!("UPDATE {table} SET state = 'completed' WHERE id = ANY($1)"),
        &[&vec![ids[0], ids[2]]],
    )
    .unwrap();
    c.execute(
        &format!("UPDATE {table} SET created_at = NOW() - interval '2 days' WHERE id = ANY($1)"),
        &[&vec![ids[0], ids[1]]],
    )
    .unwrap();
    assert_eq!(plugin.cleanup(&app.chancy).unwrap(), Some(1));
    let left: Vec<Uuid> = WorkflowPlugin::fetch_workflows(&app.chancy, None, None, 100)
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, [ids[1], ids[2]]);
    let steps: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {}", app.table("workflow_steps")),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(steps, 2, "steps cascade");
}

/// A workflow another client stored with a step job chancy refuses to push (here a `func`
/// with a newline, which Python accepts) fails that step, and so the workflow, instead of
/// failing every scheduling pass; a good workflow next to it completes.
#[test]
fn a_python_made_step_with_an_unpushable_job_fails_its_workflow_and_blocks_nothing() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(TestLeadership)
            .plugin(WorkflowPlugin::new().polling_interval(Duration::from_millis(300)))
    });
    let mut c = app.client();
    let insert_wf = format!(
        "INSERT INTO {} (id, name, state, created_at, updated_at) \
         VALUES ($1, $2, 'pending', NOW(), NOW())",
        app.table("workflows")
    );
    let insert_step = format!(
        "INSERT INTO {} (workflow_id, step_id, job_data, dependencies, job_id) \
         VALUES ($1, $2, $3, '[]', NULL)",
        app.table("workflow_steps")
    );
    let packed = |f: &str| {
        json!({"f": f, "k": {}, "p": 0, "a": 1, "s": 1767225600.5, "l": [],
               "u": null, "q": "default", "m": {}})
    };
    let (bad, good) = (chancy::new_job_id(), chancy::new_job_id());
    for (id, name, func) in [(bad, "bad", "t.noop\nforged"), (good, "good", "t.noop")] {
        c.execute(&insert_wf, &[&id, &name]).unwrap();
        c.execute(&insert_step, &[&id, &"only", &packed(func)])
            .unwrap();
    }
    let worker = leader(&app);
    let good = WorkflowPlugin::wait_for_workflow(&app.chancy, good, WAIT).unwrap();
    let bad = WorkflowPlugin::wait_for_workflow(&app.chancy, bad, WAIT).unwrap();
    worker.stop();
    assert_eq!(good.state, WorkflowState::Completed);
    assert_eq!(bad.state, WorkflowState::Failed);
    assert_eq!(bad.step("only").unwrap().job_id, None, "nothing was pushed");
}
