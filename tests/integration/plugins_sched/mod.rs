//! Cron, workflow and trigger plugins (the spec's test_cron / test_workflow rows and more).

#[cfg(feature = "cron")]
mod cron;
mod trigger;
mod workflow;

use chancy::WorkerBuilder;

use crate::common::TestApp;

/// A worker with short intervals and the test handlers (see `common::fast_worker`).
pub fn fast_worker(app: &TestApp) -> WorkerBuilder {
    crate::common::fast_worker(app)
}
