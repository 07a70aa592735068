//! The README's first example ("Using it from Rust") with `.queue("emails")` left out, so
//! the job goes to the `default` queue, which the worker declares with upstream's process
//! executor. This program never calls `chancy::run_child_if_requested`, so the worker must
//! not start copies of it: the job runs on a thread and exactly one process of this program
//! exists from start to end (tests/integration/process.rs checks that through /proc).
//!
//! The only other change: `DATABASE_URL` and `CHANCY_PREFIX` may point it at other tables
//! (the test uses its own); unset, the values are the README's.
//!
//! ```sh
//! cargo run --example readme_default_queue
//! ```

use chancy::{Chancy, Job, JobContext, JobError, Queue, Worker};
use serde_json::json;
use std::time::Duration;

#[derive(serde::Deserialize)]
struct SendEmail {
    to: String,
}

fn main() -> chancy::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@localhost/postgres".into());
    let prefix = std::env::var("CHANCY_PREFIX").unwrap_or_else(|_| "chancy_".into());
    let chancy = Chancy::builder(url)
        .prefix(prefix) // validated; default "chancy_"
        .max_connection_pool_size(10)
        .build()?;
    chancy.migrate()?; // creates/upgrades the schema (idempotent)

    chancy.declare(
        &Queue::new("emails")
            .concurrency(8)
            .polling_interval(Duration::from_secs(1)),
    )?;
    let r = chancy.push(
        &Job::new("myapp.send_email")
            .kwargs(json!({"to": "a@example.com"}))
            .max_attempts(3),
    )?;

    let worker = Worker::builder(&chancy)
        .job(
            "myapp.send_email",
            |ctx: &JobContext| -> Result<(), JobError> {
                let args: SendEmail = ctx.kwargs()?; // serde; a mismatch fails the attempt
                if ctx.is_cancelled() {
                    return Err(JobError::cancelled());
                }
                ctx.set_meta("sent_to", json!(args.to)); // persisted with the outcome
                Ok(())
            },
        )
        .build()?;
    worker.start()?; // returns at once
    let done = chancy.wait_for_job(&r, Duration::from_secs(30))?;
    println!("{:?}", done.map(|j| j.state));
    worker.stop(); // graceful; false if jobs outlived shutdown_timeout
    Ok(())
}
