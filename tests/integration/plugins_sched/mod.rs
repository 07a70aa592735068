//! Cron, workflow and trigger plugins (the spec's test_cron / test_workflow rows and more).

#[cfg(feature = "cron")]
mod cron;
mod trigger;
mod workflow;

use std::time::Duration;

use chancy::WorkerBuilder;

use crate::common::TestApp;

/// A worker with short intervals and a few handlers. The `default` queue is declared
/// threaded first (a worker would declare it with upstream's process executor).
pub fn fast_worker(app: &TestApp) -> WorkerBuilder {
    crate::common::fast_worker(app).job("t.sleep", |ctx| {
        let secs = ctx.job().kwargs.get("seconds").and_then(|v| v.as_f64());
        std::thread::sleep(Duration::from_secs_f64(secs.unwrap_or(0.1)));
        Ok(())
    })
}
