//! Worker settings, their defaults, and the worker's tags.

use std::collections::BTreeSet;
use std::time::Duration;

use super::backoff::{DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX};
use crate::error::{Error, Result};

/// Default [`WorkerBuilder::heartbeat_poll_interval`](super::WorkerBuilder::heartbeat_poll_interval):
/// 5 s (upstream 30 s). One heartbeat is one transaction of four small statements.
pub(crate) const DEFAULT_HEARTBEAT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default heartbeat timeout: 20 s (upstream 90 s), four missed heartbeats. A dead worker's
/// jobs come back this long after its last heartbeat plus one recovery pass.
pub(crate) const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default queue-change poll interval.
pub(crate) const DEFAULT_QUEUE_CHANGE_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default [`WorkerBuilder::cancellation_poll_interval`](super::WorkerBuilder::cancellation_poll_interval):
/// 1 s, the default queue polling interval (a worker without a listener finds new jobs that
/// late too).
pub(crate) const DEFAULT_CANCELLATION_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default shutdown timeout.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default batching window of the update writer. Short, because the writer also batches
/// naturally: whatever finishes while a batch is being written goes into the next one.
pub(crate) const DEFAULT_SEND_OUTGOING_INTERVAL: Duration = Duration::from_millis(5);

/// The settings every worker thread reads.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub heartbeat_poll_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub queue_change_poll_interval: Duration,
    pub cancellation_poll_interval: Duration,
    pub shutdown_timeout: Duration,
    pub send_outgoing_interval: Duration,
    pub register_signal_handlers: bool,
    pub panic_hook: bool,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub process_executable: Option<std::path::PathBuf>,
    pub synchronous_commit: bool,
    pub horizon_check_interval: Duration,
    pub horizon_warn_after: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            heartbeat_poll_interval: DEFAULT_HEARTBEAT_POLL_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            queue_change_poll_interval: DEFAULT_QUEUE_CHANGE_POLL_INTERVAL,
            cancellation_poll_interval: DEFAULT_CANCELLATION_POLL_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            send_outgoing_interval: DEFAULT_SEND_OUTGOING_INTERVAL,
            register_signal_handlers: false,
            panic_hook: false,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            process_executable: None,
            synchronous_commit: true,
            horizon_check_interval: super::horizon::DEFAULT_HORIZON_CHECK_INTERVAL,
            horizon_warn_after: crate::app::DEFAULT_HORIZON_WARN_AFTER,
        }
    }
}

impl WorkerConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let positive = [
            ("heartbeat_poll_interval", self.heartbeat_poll_interval),
            ("heartbeat_timeout", self.heartbeat_timeout),
            (
                "queue_change_poll_interval",
                self.queue_change_poll_interval,
            ),
            (
                "cancellation_poll_interval",
                self.cancellation_poll_interval,
            ),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("horizon_check interval", self.horizon_check_interval),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::config(format!(
                "worker setting {name} must be positive"
            )));
        }
        let others = [
            ("shutdown_timeout", self.shutdown_timeout),
            ("send_outgoing_interval", self.send_outgoing_interval),
            ("horizon_warn_after", self.horizon_warn_after),
        ];
        let max = crate::duration::MAX_SETTING;
        if let Some((name, d)) = positive.iter().chain(&others).find(|(_, d)| *d > max) {
            return Err(Error::config(format!(
                "worker setting {name} is {d:?}; allowed: at most {}",
                crate::duration::human(max)
            )));
        }
        if self.heartbeat_timeout <= self.heartbeat_poll_interval {
            return Err(Error::config(format!(
                "heartbeat_timeout ({:?}) must be longer than heartbeat_poll_interval ({:?}), \
                 or the worker's row expires between heartbeats",
                self.heartbeat_timeout, self.heartbeat_poll_interval
            )));
        }
        Ok(())
    }
}

/// The rustc that built this crate (set by build.rs).
const RUSTC_VERSION: &str = env!("CHANCY_RUSTC_VERSION");

/// `*`, `hostname=…`, `worker_id=…`, `rust=…`, `os=…`, `arch=…`, plus `extra`.
pub(crate) fn worker_tags(worker_id: &str, extra: &BTreeSet<String>) -> BTreeSet<String> {
    let mut tags: BTreeSet<String> = [
        "*".to_string(),
        format!("hostname={}", hostname()),
        format!("worker_id={worker_id}"),
        format!("rust={RUSTC_VERSION}"),
        format!("os={}", os_name()),
        format!("arch={}", std::env::consts::ARCH),
    ]
    .into_iter()
    .collect();
    tags.extend(extra.iter().cloned());
    tags
}

/// The OS name as Python's `platform.system()` spells it.
fn os_name() -> String {
    match std::env::consts::OS {
        "linux" => "Linux".into(),
        "macos" => "Darwin".into(),
        "windows" => "Windows".into(),
        "freebsd" => "FreeBSD".into(),
        other => other.into(),
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
