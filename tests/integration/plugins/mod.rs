//! Plugins: leadership, recovery, pruner and the rules DSL, retry backoff, reprioritize,
//! the default set and dependency checks.

mod defaults;
mod failover;
mod leadership;
mod metrics;
mod pruner;
mod recovery;
mod reprioritize;
mod retry;

use std::time::{Duration, Instant};

use chancy::plugins::Leadership;
use chancy::{JobError, Worker, WorkerBuilder};
use serde_json::Value;

use crate::common::{Listener, TestApp};

pub const WAIT: Duration = Duration::from_secs(30);

/// A worker with short intervals, a no-op and a failing handler.
pub fn fast_worker(app: &TestApp) -> WorkerBuilder {
    app.chancy
        .declare(&chancy::Queue::new("default"))
        .expect("declare the default queue (threaded)");
    Worker::builder(&app.chancy)
        .queue_change_poll_interval(Duration::from_millis(500))
        .heartbeat_poll_interval(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(10))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .job("t.noop", |_| Ok(()))
        .job("t.fail", |_| Err(JobError::new("This job should fail")))
}

/// Leadership renewing every `poll` with a lease of `timeout`.
pub fn leadership(poll: Duration, timeout: Duration) -> Leadership {
    Leadership::builder()
        .poll_interval(poll)
        .timeout(timeout)
        .build()
        .expect("valid leadership settings")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Listens on the events channel of `app`.
pub fn listen(app: &TestApp) -> Listener {
    Listener::new(&app.chancy.prefix().channel())
}

/// The received events named `t`, parsed.
pub fn events_named(payloads: &[String], t: &str) -> Vec<Value> {
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter(|v| v["t"] == t)
        .collect()
}
