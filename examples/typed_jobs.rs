//! Typed jobs: one Rust type per kind of job names its `func` once and carries its kwargs,
//! so the producer and the worker cannot disagree on the job's name or arguments. On the
//! wire it is an ordinary job (`func` + JSON kwargs), so Python Chancy can push it too.
//!
//! ```sh
//! cargo run --example typed_jobs                                   # $DATABASE_URL or localhost
//! cargo run --example typed_jobs -- postgresql://user@host/db
//! ```
//!
//! It works in its own tables (prefix `typed_example_`) and removes them at the end.

use std::time::Duration;

use chancy::{Chancy, Job, JobArgs, JobContext, JobError, Queue, Worker};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `myapp.tasks.send_email(to=..., subject=...)` in Python terms.
#[derive(Debug, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    subject: String,
}

impl JobArgs for SendEmail {
    const FUNC: &'static str = "myapp.tasks.send_email";

    /// Every email job goes to the `emails` queue and may run three times.
    fn defaults(job: Job) -> Job {
        job.queue("emails").max_attempts(3)
    }
}

fn send_email(ctx: &JobContext, email: SendEmail) -> Result<(), JobError> {
    if ctx.is_cancelled() {
        return Err(JobError::cancelled());
    }
    println!("sending {:?} to {}", email.subject, email.to);
    ctx.set_meta("sent_to", json!(email.to));
    Ok(())
}

fn main() -> chancy::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| chancy::DEFAULT_DATABASE_URL.to_string());
    let chancy = Chancy::builder(&url).prefix("typed_example_").build()?;
    chancy.migrate()?;
    chancy.declare(&Queue::new("emails").concurrency(2))?;

    // Producer side: the type picks the func, the queue and the kwargs.
    let first = chancy.push_args(&SendEmail {
        to: "a@example.com".into(),
        subject: "welcome".into(),
    })?;
    let urgent = Job::from_args(&SendEmail {
        to: "b@example.com".into(),
        subject: "your invoice".into(),
    })?
    .priority(10); // builder calls override the type's defaults
    let second = chancy.push(&urgent)?;

    // Worker side: one handler per type, getting the decoded arguments.
    let worker = Worker::builder(&chancy).handle(send_email).build()?;
    worker.start()?;
    let done = chancy.wait_for_jobs(&[first, second], Duration::from_secs(30))?;
    worker.stop();

    for job in &done {
        println!(
            "{} {} {:?} meta={:?}",
            job.id, job.func, job.state, job.meta
        );
    }
    chancy.migrate_to(0)?; // drop the example's tables
    Ok(())
}
