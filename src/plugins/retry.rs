//! Retry backoff (upstream's `RetryPlugin`): a failed attempt that will be retried is
//! scheduled later, by exponential backoff with jitter read from the job's
//! `meta["retry_settings"]` — the same keys and defaults as Python, so jobs pushed by Python
//! retry the same way on a Rust worker.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::job::{JobState, QueuedJob};
use crate::worker::plugin::Plugin;
use crate::worker::JobError;

/// The identifier of [`RetryPlugin`].
pub const RETRY_PLUGIN: &str = "chancy.retry_plugin";

/// The backoff of one job, stored in its `meta["retry_settings"]` as upstream does:
/// `{"backoff": secs, "backoff_factor": f, "backoff_limit": secs, "backoff_jitter": [lo, hi]}`.
///
/// Delay before retry `n` (the attempt count after the failure): `min(backoff *
/// backoff_factor^(n-1), backoff_limit) + uniform(jitter.0, jitter.1)`.
///
/// ```
/// use std::time::Duration;
/// use chancy::Job;
/// use chancy::plugins::RetrySettings;
/// let settings = RetrySettings::default()
///     .backoff(Duration::from_secs(2))
///     .backoff_factor(3.0)
///     .backoff_limit(Duration::from_secs(10))
///     .backoff_jitter(Duration::ZERO, Duration::from_secs(1));
/// let job = Job::new("myapp.flaky")
///     .max_attempts(5)
///     .meta(serde_json::json!({ "retry_settings": settings.to_json() }));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetrySettings {
    backoff: Duration,
    backoff_factor: f64,
    backoff_limit: Duration,
    backoff_jitter: (Duration, Duration),
}

impl Default for RetrySettings {
    /// Upstream's defaults: backoff 1 s, factor 2.0, limit 300 s, jitter 1–5 s.
    fn default() -> Self {
        RetrySettings {
            backoff: Duration::from_secs(1),
            backoff_factor: 2.0,
            backoff_limit: Duration::from_secs(300),
            backoff_jitter: (Duration::from_secs(1), Duration::from_secs(5)),
        }
    }
}

impl RetrySettings {
    /// The first delay (default 1 s).
    #[must_use]
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }

    /// The growth factor per attempt (default 2.0).
    #[must_use]
    pub fn backoff_factor(mut self, f: f64) -> Self {
        self.backoff_factor = f;
        self
    }

    /// The largest delay before jitter (default 300 s).
    #[must_use]
    pub fn backoff_limit(mut self, d: Duration) -> Self {
        self.backoff_limit = d;
        self
    }

    /// The range of the random delay added (default 1–5 s).
    #[must_use]
    pub fn backoff_jitter(mut self, low: Duration, high: Duration) -> Self {
        self.backoff_jitter = (low, high);
        self
    }

    /// The JSON stored under `meta["retry_settings"]` (seconds as numbers, like Python).
    pub fn to_json(&self) -> Value {
        json!({
            "backoff": self.backoff.as_secs_f64(),
            "backoff_factor": self.backoff_factor,
            "backoff_limit": self.backoff_limit.as_secs_f64(),
            "backoff_jitter": [self.backoff_jitter.0.as_secs_f64(), self.backoff_jitter.1.as_secs_f64()],
        })
    }

    /// Reads the settings of a job's meta; missing or malformed keys take the defaults.
    pub fn from_meta(meta: &Map<String, Value>) -> RetrySettings {
        let mut s = RetrySettings::default();
        let Some(Value::Object(raw)) = meta.get("retry_settings") else {
            return s;
        };
        let secs = |key: &str| raw.get(key).and_then(Value::as_f64).and_then(seconds);
        if let Some(d) = secs("backoff") {
            s.backoff = d;
        }
        if let Some(f) = raw.get("backoff_factor").and_then(Value::as_f64) {
            s.backoff_factor = f;
        }
        if let Some(d) = secs("backoff_limit") {
            s.backoff_limit = d;
        }
        if let Some(Value::Array(pair)) = raw.get("backoff_jitter") {
            let lo = pair.first().and_then(Value::as_f64).and_then(seconds);
            let hi = pair.get(1).and_then(Value::as_f64).and_then(seconds);
            if let (Some(lo), Some(hi)) = (lo, hi) {
                s.backoff_jitter = (lo, hi);
            }
        }
        s
    }

    /// The delay before the next attempt once `attempts` attempts were made, without jitter.
    pub fn base_delay(&self, attempts: i32) -> Duration {
        let exponent = attempts.saturating_sub(1).max(0);
        let grown = self.backoff.as_secs_f64() * self.backoff_factor.powi(exponent);
        let capped = grown.min(self.backoff_limit.as_secs_f64());
        seconds(capped).unwrap_or(self.backoff_limit)
    }

    /// The delay with a uniform random jitter in the configured range.
    pub fn delay(&self, attempts: i32) -> Duration {
        let (lo, hi) = self.backoff_jitter;
        let (lo, hi) = (lo.as_secs_f64(), hi.as_secs_f64());
        let jitter = lo + (hi - lo) * crate::worker::random_fraction();
        self.base_delay(attempts)
            .saturating_add(seconds(jitter).unwrap_or_default())
    }
}

/// A non-negative number of seconds as a Duration, saturating: a value too large for a
/// Duration (or infinite) is the largest one, so a larger backoff never means a shorter
/// delay; NaN is `None` (the setting is ignored).
fn seconds(s: f64) -> Option<Duration> {
    if s.is_nan() {
        return None;
    }
    Some(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
}

/// Schedules retries with backoff instead of at once. Identifier `chancy.retry_plugin`; not
/// in the default set. Only failed attempts that will be retried (`attempts < max_attempts`
/// after the increment) are changed: `state = retrying`, `scheduled_at = now + delay`,
/// `completed_at = None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryPlugin;

impl RetryPlugin {
    /// The retry plugin.
    pub fn new() -> RetryPlugin {
        RetryPlugin
    }
}

impl Plugin for RetryPlugin {
    fn identifier(&self) -> &'static str {
        RETRY_PLUGIN
    }

    fn on_job_completed(&self, mut job: QueuedJob, error: Option<&JobError>) -> QueuedJob {
        let retrying = matches!(job.state, JobState::Failed | JobState::Retrying)
            && job.attempts < job.max_attempts;
        if error.is_none() || !retrying {
            return job;
        }
        let delay = RetrySettings::from_meta(&job.meta).delay(job.attempts);
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        job.state = JobState::Retrying;
        // Never past what a push accepts (Python's `datetime.max`): a Python worker or
        // dashboard reads this row too.
        let latest = crate::job::latest_schedulable();
        job.scheduled_at = Utc::now()
            .checked_add_signed(delay)
            .map_or(latest, |at| at.min(latest));
        job.completed_at = None;
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_growth_match_upstream() {
        let s = RetrySettings::default();
        assert_eq!(s.base_delay(1), Duration::from_secs(1));
        assert_eq!(s.base_delay(2), Duration::from_secs(2));
        assert_eq!(s.base_delay(4), Duration::from_secs(8));
        assert_eq!(s.base_delay(30), Duration::from_secs(300));
        for _ in 0..100 {
            let d = s.delay(1);
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_larger_backoff_never_gives_a_shorter_delay() {
        let delays: Vec<Duration> = [1e15, 1e19, 1e20, 1e308]
            .iter()
            .map(|b| {
                let meta = json!({"retry_settings": {"backoff": b, "backoff_limit": b,
                    "backoff_jitter": [0, 0]}});
                RetrySettings::from_meta(meta.as_object().unwrap()).delay(1)
            })
            .collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(delays[3], Duration::MAX);
    }

    #[test]
    fn reads_python_meta_and_ignores_garbage() {
        let meta = json!({"retry_settings": {"backoff": 2, "backoff_factor": 3,
            "backoff_limit": 10, "backoff_jitter": [0, 1]}});
        let s = RetrySettings::from_meta(meta.as_object().unwrap());
        assert_eq!(
            s,
            RetrySettings::default()
                .backoff(Duration::from_secs(2))
                .backoff_factor(3.0)
                .backoff_limit(Duration::from_secs(10))
                .backoff_jitter(Duration::ZERO, Duration::from_secs(1))
        );
        assert_eq!(s.base_delay(2), Duration::from_secs(6));
        assert_eq!(s.base_delay(3), Duration::from_secs(10));
        let round_trip = json!({"retry_settings": s.to_json()});
        assert_eq!(RetrySettings::from_meta(round_trip.as_object().unwrap()), s);
        let junk = json!({"retry_settings": {"backoff": "x", "backoff_jitter": [1]}});
        assert_eq!(
            RetrySettings::from_meta(junk.as_object().unwrap()),
            RetrySettings::default()
        );
    }
}
