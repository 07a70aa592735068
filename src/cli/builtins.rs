//! Job handlers shipped in the `chancy` binary, so it is useful (and testable from any
//! language) without writing Rust: push `chancy.builtin.*` jobs from Python or the CLI and
//! run them with `chancy worker start`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::worker::{JobContext, JobError, Registry};

/// Does nothing and succeeds.
pub const NOOP: &str = "chancy.builtin.noop";
/// Sleeps `{"seconds": f64}` (default 1), in small steps, stopping early when cancelled.
pub const SLEEP: &str = "chancy.builtin.sleep";
/// Fails with `{"message": str}` (default "chancy.builtin.fail was asked to fail").
pub const FAIL: &str = "chancy.builtin.fail";
/// Succeeds after copying its kwargs into `meta["echo"]`.
pub const ECHO: &str = "chancy.builtin.echo";

/// How often `chancy.builtin.sleep` checks for cancellation.
const SLEEP_STEP: Duration = Duration::from_millis(20);

/// The built-in handlers: [`NOOP`], [`SLEEP`], [`FAIL`] and [`ECHO`]. `chancy worker start`
/// and `chancy demo` register them next to the embedding program's own handlers (which win
/// on a name clash).
///
/// ```
/// let registry = chancy::cli::builtin_registry();
/// assert!(registry.get("chancy.builtin.echo").is_some());
/// ```
pub fn builtin_registry() -> Registry {
    Registry::new()
        .job(NOOP, |_ctx: &JobContext| Ok(()))
        .job(SLEEP, sleep)
        .job(FAIL, fail)
        .job(ECHO, echo)
}

fn sleep(ctx: &JobContext) -> Result<(), JobError> {
    let seconds = match ctx.job().kwargs.get("seconds") {
        None | Some(Value::Null) => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                JobError::new(format!(
                    "{SLEEP}: \"seconds\" must be a non-negative number, got {v}"
                ))
            })?,
    };
    let until = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    loop {
        ctx.checkpoint()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(SLEEP_STEP));
    }
}

fn fail(ctx: &JobContext) -> Result<(), JobError> {
    let message = match ctx.job().kwargs.get("message") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => format!("{FAIL} was asked to fail"),
        Some(other) => other.to_string(),
    };
    Err(JobError::new(message))
}

fn echo(ctx: &JobContext) -> Result<(), JobError> {
    ctx.set_meta("echo", Value::Object(ctx.job().kwargs.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::job::QueuedJob;
    use crate::worker::JobErrorKind;

    fn ctx(func: &str, kwargs: Value, cancelled: bool) -> JobContext {
        let Value::Object(kwargs) = kwargs else {
            panic!("kwargs must be an object")
        };
        let job = QueuedJob {
            kwargs,
            ..QueuedJob::claimed_for_test(func)
        };
        JobContext::new(job, Arc::new(AtomicBool::new(cancelled)), None, "w".into())
    }

    fn run(func: &str, c: &JobContext) -> Result<(), JobError> {
        let registry = builtin_registry();
        let handler = registry.get(func).expect("registered");
        handler(c)
    }

    #[test]
    fn every_builtin_is_registered() {
        assert_eq!(builtin_registry().names(), vec![ECHO, FAIL, NOOP, SLEEP]);
        assert!(run(NOOP, &ctx(NOOP, json!({}), false)).is_ok());
    }

    #[test]
    fn echo_copies_kwargs_into_meta() {
        let c = ctx(ECHO, json!({"a": 1, "b": ["x"]}), false);
        run(ECHO, &c).unwrap();
        assert_eq!(c.meta()["echo"], json!({"a": 1, "b": ["x"]}));
    }

    #[test]
    fn fail_fails_with_the_message() {
        let err = run(FAIL, &ctx(FAIL, json!({"message": "boom"}), false)).unwrap_err();
        assert_eq!(err.kind(), JobErrorKind::Failed);
        assert_eq!(err.text(), "JobError: boom");
        let err = run(FAIL, &ctx(FAIL, json!({}), false)).unwrap_err();
        assert!(err.text().contains("was asked to fail"), "{err}");
    }

    #[test]
    fn sleep_sleeps_about_the_given_time() {
        let t = Instant::now();
        run(SLEEP, &ctx(SLEEP, json!({"seconds": 0.1}), false)).unwrap();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn sleep_stops_when_cancelled() {
        let t = Instant::now();
        let err = run(SLEEP, &ctx(SLEEP, json!({"seconds": 30}), true)).unwrap_err();
        assert_eq!(err.kind(), JobErrorKind::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn sleep_rejects_bad_seconds() {
        let err = run(SLEEP, &ctx(SLEEP, json!({"seconds": "a while"}), false)).unwrap_err();
        assert!(err.text().contains("non-negative number"), "{err}");
        assert!(run(SLEEP, &ctx(SLEEP, json!({"seconds": -1}), false)).is_err());
    }
}
