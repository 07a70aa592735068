//! Typed jobs (`JobArgs`): pushed and handled by type over the unchanged string wire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chancy::{Job, JobArgs, JobContext, JobError, JobState, Queue};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{fast_worker, TestApp};

#[derive(Debug, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    attempts_wanted: Option<u32>,
}

impl JobArgs for SendEmail {
    const FUNC: &'static str = "t.typed.send_email";

    fn defaults(job: Job) -> Job {
        job.queue("typed").max_attempts(2)
    }
}

#[test]
fn a_typed_handler_runs_jobs_pushed_typed_and_by_name() {
    let app = TestApp::new();
    app.chancy
        .declare(&Queue::new("typed").concurrency(2))
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let worker = fast_worker(&app)
        .handle(
            move |ctx: &JobContext, args: SendEmail| -> Result<(), JobError> {
                seen.fetch_add(1, Ordering::SeqCst);
                ctx.set_meta("sent_to", json!(args.to));
                Ok(())
            },
        )
        .build()
        .unwrap();
    worker.start().unwrap();

    let by_chancy = app
        .chancy
        .push_args(&SendEmail {
            to: "a@example.com".into(),
            attempts_wanted: None,
        })
        .unwrap();
    let by_job = app
        .chancy
        .push(
            &Job::from_args(&SendEmail {
                to: "b@example.com".into(),
                attempts_wanted: Some(1),
            })
            .unwrap()
            .priority(4),
        )
        .unwrap();
    // The wire is the plain func string: a job pushed by name reaches the typed handler.
    let by_name = app
        .chancy
        .push(
            &Job::new("t.typed.send_email")
                .queue("typed")
                .kwargs(json!({"to": "c@example.com"})),
        )
        .unwrap();
    let done = app
        .chancy
        .wait_for_jobs(&[by_chancy, by_job, by_name], Duration::from_secs(30))
        .unwrap();
    assert!(worker.stop());

    let rows: Vec<_> = done
        .iter()
        .map(|j| {
            (
                j.state,
                j.func.as_str(),
                j.queue.as_str(),
                j.meta["sent_to"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                JobState::Succeeded,
                "t.typed.send_email",
                "typed",
                json!("a@example.com")
            ),
            (
                JobState::Succeeded,
                "t.typed.send_email",
                "typed",
                json!("b@example.com")
            ),
            (
                JobState::Succeeded,
                "t.typed.send_email",
                "typed",
                json!("c@example.com")
            ),
        ]
    );
    assert_eq!(
        (done[0].max_attempts, done[0].priority),
        (2, 0),
        "JobArgs::defaults applied"
    );
    assert_eq!(done[1].priority, 4, "a builder call overrides the defaults");
    assert_eq!(
        done[1].kwargs,
        json!({"to": "b@example.com", "attempts_wanted": 1})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn kwargs_that_do_not_decode_fail_the_attempt_without_calling_the_handler() {
    let app = TestApp::new();
    app.chancy.declare(&Queue::new("typed")).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let worker = fast_worker(&app)
        .handle(move |_ctx: &JobContext, _args: SendEmail| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();
    let bad = app
        .chancy
        .push(
            &Job::new(SendEmail::FUNC)
                .queue("typed")
                .kwargs(json!({"to": 5}))
                .max_attempts(1),
        )
        .unwrap();
    let missing = app
        .chancy
        .push(&Job::new(SendEmail::FUNC).queue("typed").kwargs(json!({})))
        .unwrap();
    let done = app
        .chancy
        .wait_for_jobs(&[bad, missing], Duration::from_secs(30))
        .unwrap();
    assert!(worker.stop());

    assert_eq!(
        (done[0].state, done[1].state),
        (JobState::Failed, JobState::Failed)
    );
    assert_eq!(
        done[0].errors[0].traceback,
        "invalid kwargs for \"t.typed.send_email\": invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        done[1].errors[0].traceback,
        "invalid kwargs for \"t.typed.send_email\": missing field `to`"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the handler never saw bad kwargs"
    );
}
