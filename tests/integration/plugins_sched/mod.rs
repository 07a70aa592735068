//! Cron, workflow and trigger plugins (the spec's test_cron / test_workflow rows and more).

mod cron;
mod trigger;
mod workflow;

use std::time::Duration;

use chancy::{JobError, Worker, WorkerBuilder};

use crate::common::TestApp;

/// A worker with short intervals and a few handlers. The `default` queue is declared
/// threaded first (a worker would declare it with upstream's process executor).
pub fn fast_worker(app: &TestApp) -> WorkerBuilder {
    app.chancy
        .declare(&chancy::Queue::new("default"))
        .expect("declare the default queue");
    Worker::builder(&app.chancy)
        .queue_change_poll_interval(Duration::from_millis(300))
        .heartbeat_poll_interval(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(10))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .job("t.noop", |_| Ok(()))
        .job("t.fail", |_| Err(JobError::new("This job should fail")))
        .job("t.sleep", |ctx| {
            let secs = ctx.job().kwargs.get("seconds").and_then(|v| v.as_f64());
            std::thread::sleep(Duration::from_secs_f64(secs.unwrap_or(0.1)));
            Ok(())
        })
}
