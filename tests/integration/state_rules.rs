//! Issue 14 item 5: one set of state rules (cancel, retry, purge), decided by the library
//! and reported per job; NOTIFY only for jobs actually changed.

use std::time::Duration;

use chancy::plugins::{Workflow, WorkflowPlugin, WorkflowState};
use chancy::{Job, JobOutcome, JobState, Reference};

use crate::common::{Listener, TestApp};

fn set_state(app: &TestApp, r: &Reference, state: &str) {
    app.client()
        .execute(
            &app.sql("UPDATE {jobs} SET state = $2, completed_at = NOW() WHERE id = $1"),
            &[&r.0, &state],
        )
        .unwrap();
}

fn state_of(app: &TestApp, r: &Reference) -> JobState {
    app.chancy.get_job(r).unwrap().expect("job exists").state
}

#[test]
fn cancelling_a_finished_or_unknown_job_changes_and_sends_nothing() {
    let app = TestApp::new();
    let done = app.chancy.push(&Job::new("f")).unwrap();
    set_state(&app, &done, "succeeded");
    let waiting = app.chancy.push(&Job::new("f")).unwrap();
    let unknown = Reference(uuid::Uuid::new_v4());
    let mut listener = Listener::new(&format!("{}events", app.prefix));

    let outcome = app.chancy.cancel_job(&done).unwrap();
    assert!(
        matches!(&outcome, JobOutcome::NotApplicable { state, reason }
            if state == "succeeded" && reason.contains("already finished")),
        "{outcome:?}"
    );
    assert_eq!(state_of(&app, &done), JobState::Succeeded, "left as it was");
    assert_eq!(
        app.chancy.cancel_job(&unknown).unwrap(),
        JobOutcome::NotFound
    );
    assert_eq!(
        listener.collect(Duration::from_millis(300)),
        Vec::<String>::new(),
        "no job.cancelled for jobs that did not change"
    );

    let outcomes = app.chancy.cancel_jobs(&[waiting, done, unknown]).unwrap();
    let kinds: Vec<bool> = outcomes.iter().map(|(_, o)| o.is_done()).collect();
    assert_eq!(kinds, [true, false, false]);
    assert_eq!(outcomes[2].1, JobOutcome::NotFound);
    assert_eq!(state_of(&app, &waiting), JobState::Failed);
    assert_eq!(
        listener.collect(Duration::from_millis(300)),
        vec![format!(r#"{{"t": "job.cancelled", "j": "{waiting}"}}"#)],
        "exactly one NOTIFY, upstream's payload, for the one job cancelled"
    );
}

#[test]
fn retrying_a_job_scheduled_for_later_says_so_and_leaves_it() {
    let app = TestApp::new();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let r = app.chancy.push(&Job::new("f").scheduled_at(later)).unwrap();
    let before = app.chancy.get_job(&r).unwrap().unwrap();
    let outcome = app.chancy.retry_job(&r).unwrap();
    match &outcome {
        JobOutcome::NotApplicable { state, reason } => {
            assert_eq!(state, "pending");
            assert!(reason.contains("scheduled for"), "{reason}");
        }
        other => panic!("expected not applicable, got {other:?}"),
    }
    let after = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!(after.scheduled_at, before.scheduled_at, "not moved to now");
    assert_eq!(after.state, JobState::Pending);
}

#[test]
fn retry_reports_a_unique_key_conflict_per_job_and_retries_the_others() {
    let app = TestApp::new();
    let a = app
        .chancy
        .push(&Job::new("f").unique_key("report"))
        .unwrap();
    set_state(&app, &a, "failed");
    let holder = app
        .chancy
        .push(&Job::new("f").unique_key("report"))
        .unwrap();
    assert_ne!(holder, a, "a new job holds the key once the first finished");
    let c = app.chancy.push(&Job::new("f")).unwrap();
    set_state(&app, &c, "failed");
    let mut listener = Listener::new(&format!("{}events", app.prefix));

    let outcomes = app.chancy.retry_jobs(&[a, c]).unwrap();
    assert_eq!(
        outcomes[0],
        (
            a,
            JobOutcome::Conflict {
                unique_key: "report".into(),
                holder: Some(holder)
            }
        )
    );
    assert!(outcomes[0].1.to_string().contains(&holder.to_string()));
    assert_eq!(outcomes[1], (c, JobOutcome::Done));
    assert_eq!(state_of(&app, &a), JobState::Failed, "a unchanged");
    assert_eq!(state_of(&app, &c), JobState::Retrying, "c retried");
    assert_eq!(
        listener.collect(Duration::from_millis(300)),
        vec![r#"{"t": "queue.pushed", "q": "default"}"#.to_string()]
    );
}

#[test]
fn a_workflow_whose_step_job_was_deleted_fails_instead_of_running_forever() {
    let app = TestApp::with(|b| b.no_default_plugins().plugin(WorkflowPlugin::new()));
    let wf = Workflow::new("deleted-step")
        .add("one", Job::new("f"), &[])
        .add("two", Job::new("f"), &["one"]);
    let id = WorkflowPlugin::push(&app.chancy, &wf).unwrap();
    let advance = || {
        let mut c = app.client();
        let mut tx = c.transaction().unwrap();
        let mut wf = WorkflowPlugin::fetch_workflow(&app.chancy, id)
            .unwrap()
            .unwrap();
        if WorkflowPlugin::process_workflow(&mut tx, &app.chancy, &mut wf).unwrap() {
            WorkflowPlugin::push_in(&mut tx, &app.chancy, &mut wf).unwrap();
        }
        tx.commit().unwrap();
        WorkflowPlugin::fetch_workflow(&app.chancy, id)
            .unwrap()
            .unwrap()
    };
    let running = advance();
    assert_eq!(running.state, WorkflowState::Running);
    let job = Reference(running.step("one").unwrap().job_id.expect("step pushed"));
    assert_eq!(app.chancy.purge_job(&job).unwrap(), JobOutcome::Done);
    let after = advance();
    assert_eq!(after.state, WorkflowState::Failed);
    assert_eq!(
        after.step("two").unwrap().job_id,
        None,
        "dependents never run"
    );
}

#[cfg(feature = "web")]
#[test]
fn the_api_renders_the_same_outcomes_404_409_and_names_the_holder() {
    let web = crate::web::Web::new();
    let c = &web.app.chancy;
    let a = c.push(&Job::new("f").unique_key("nightly")).unwrap();
    set_state(&web.app, &a, "succeeded");
    let holder = c.push(&Job::new("f").unique_key("nightly")).unwrap();
    let token = web.login();

    let r = web.post(
        &token,
        &format!("/api/v1/jobs/{a}/retry"),
        serde_json::json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.to_string().contains(&holder.to_string()),
        "{}",
        r.body
    );
    let r = web.post(
        &token,
        &format!("/api/v1/jobs/{a}/cancel"),
        serde_json::json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.to_string().contains("already finished"),
        "{}",
        r.body
    );
    let unknown = uuid::Uuid::new_v4();
    let r = web.post(
        &token,
        &format!("/api/v1/jobs/{unknown}/cancel"),
        serde_json::json!({}),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    let batch = web.post(
        &token,
        "/api/v1/jobs",
        serde_json::json!({"action": "retry", "ids": [a.to_string(), holder.to_string()]}),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let results = batch.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "skipped");
    assert!(results[0]["message"]
        .as_str()
        .unwrap()
        .contains(&holder.to_string()));
    assert_eq!(
        results[1]["status"], "skipped",
        "the holder is waiting, not finished"
    );
    assert_eq!(state_of(&web.app, &a), JobState::Succeeded);
}
