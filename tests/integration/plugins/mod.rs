//! Plugins: leadership, recovery, pruner and the rules DSL, retry backoff, reprioritize,
//! the default set and dependency checks.

mod custom;
mod defaults;
mod failover;
mod leadership;
mod metrics;
mod pruner;
mod recovery;
mod reprioritize;
mod retry;

use std::time::Duration;

use chancy::plugins::Leadership;

use serde_json::Value;

use crate::common::{Listener, TestApp};

pub const WAIT: Duration = Duration::from_secs(30);

pub use crate::common::fast_worker;

/// Leadership renewing every `poll` with a lease of `timeout`.
pub fn leadership(poll: Duration, timeout: Duration) -> Leadership {
    Leadership::builder()
        .poll_interval(poll)
        .timeout(timeout)
        .build()
        .expect("valid leadership settings")
}

/// Whether `cond` holds within `timeout` (probed by the shared poller).
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    crate::support::wait::poll(timeout, || cond().then_some(())).is_some()
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
