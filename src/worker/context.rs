//! What a job handler sees ([`JobContext`]) and returns ([`JobError`]), and the registry of
//! handlers by name.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::job::{JsonObject, QueuedJob};

/// Why a job attempt did not succeed. Returned by handlers; recorded in the job's `errors`.
///
/// Any `std::error::Error` converts into it with `?`, keeping its type name and its chain of
/// causes in the recorded text.
///
/// ```
/// use chancy::JobError;
/// fn step() -> Result<(), JobError> {
///     let n: i32 = "x".parse()?; // a ParseIntError becomes a JobError
///     Ok(())
/// }
/// let err = step().unwrap_err();
/// assert!(err.to_string().contains("ParseIntError"));
/// ```
pub struct JobError {
    kind: JobErrorKind,
    text: String,
}

/// The kind of a [`JobError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobErrorKind {
    /// The handler failed.
    Failed,
    /// The job stopped because it was cancelled.
    Cancelled,
    /// The job overran its time limit.
    Timeout,
}

impl JobError {
    /// A failure with this message.
    pub fn new(message: impl fmt::Display) -> JobError {
        JobError {
            kind: JobErrorKind::Failed,
            text: format!("JobError: {message}"),
        }
    }

    /// The job noticed it was cancelled and stopped.
    pub fn cancelled() -> JobError {
        JobError {
            kind: JobErrorKind::Cancelled,
            text: "CancelledError: Job was cancelled.".into(),
        }
    }

    /// The job ran past its time limit.
    pub fn timeout() -> JobError {
        JobError {
            kind: JobErrorKind::Timeout,
            text: "TimeoutError: Job timed out.".into(),
        }
    }

    pub(crate) fn with_kind(kind: JobErrorKind, text: String) -> JobError {
        JobError { kind, text }
    }

    /// The kind of error.
    pub fn kind(&self) -> JobErrorKind {
        self.kind
    }

    /// The text recorded as the error entry's `traceback`.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(err: E) -> JobError {
        let mut text = format!("{}: {err}", std::any::type_name::<E>());
        let mut source = err.source();
        let mut n = 0;
        while let Some(cause) = source {
            if n == 0 {
                text.push_str("\n\nCaused by:");
            }
            text.push_str(&format!("\n    {n}: {cause}"));
            n += 1;
            source = cause.source();
        }
        JobError {
            kind: JobErrorKind::Failed,
            text,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobError({:?}, {:?})", self.kind, self.text)
    }
}

/// A job handler: runs one attempt of a job.
pub type Handler = Arc<dyn Fn(&JobContext) -> Result<(), JobError> + Send + Sync>;

/// Job handlers by `func` name.
///
/// ```
/// use chancy::{JobContext, JobError, Registry};
/// let registry = Registry::new().job("myapp.hello", |_ctx: &JobContext| Ok(()));
/// assert!(registry.get("myapp.hello").is_some());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `handler` under `func` (replacing an earlier one).
    pub fn job<F>(mut self, func: impl Into<String>, handler: F) -> Registry
    where
        F: Fn(&JobContext) -> Result<(), JobError> + Send + Sync + 'static,
    {
        self.insert(func, handler);
        self
    }

    /// Registers `handler` under `func` in place.
    pub fn insert<F>(&mut self, func: impl Into<String>, handler: F)
    where
        F: Fn(&JobContext) -> Result<(), JobError> + Send + Sync + 'static,
    {
        self.handlers.insert(func.into(), Arc::new(handler));
    }

    /// Adds every handler of `other`.
    pub fn merge(mut self, other: Registry) -> Registry {
        self.handlers.extend(other.handlers);
        self
    }

    /// The handler of `func`.
    pub fn get(&self, func: &str) -> Option<&Handler> {
        self.handlers.get(func)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("jobs", &self.names())
            .finish()
    }
}

/// Everything a handler can see and do during one attempt.
pub struct JobContext {
    job: QueuedJob,
    cancelled: Arc<AtomicBool>,
    deadline: Option<Instant>,
    meta: Mutex<Option<JsonObject>>,
    worker_id: String,
}

impl JobContext {
    pub(crate) fn new(
        job: QueuedJob,
        cancelled: Arc<AtomicBool>,
        deadline: Option<Instant>,
        worker_id: String,
    ) -> JobContext {
        JobContext {
            job,
            cancelled,
            deadline,
            meta: Mutex::new(None),
            worker_id,
        }
    }

    /// The job as claimed (state `running`, with its `claim_id`).
    pub fn job(&self) -> &QueuedJob {
        &self.job
    }

    /// The kwargs deserialised into `T`.
    ///
    /// # Errors
    /// A [`JobError`] with serde's message when the kwargs do not fit `T`.
    pub fn kwargs<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(Value::Object(self.job.kwargs.clone())).map_err(|e| {
            JobError::with_kind(
                JobErrorKind::Failed,
                format!("invalid kwargs for {:?}: {e}", self.job.func),
            )
        })
    }

    /// Whether the job was cancelled (by `cancel_job`, or because its claim was recovered
    /// by another worker, or because the worker is stopping past its timeout). Long jobs
    /// should check this and return [`JobError::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// When the job's time limit runs out, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (`None` without a time limit).
    pub fn time_remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Fails with a timeout once the deadline has passed, or cancelled once cancelled.
    ///
    /// # Errors
    /// [`JobError::timeout`] or [`JobError::cancelled`].
    pub fn checkpoint(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            return Err(JobError::cancelled());
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(JobError::timeout());
        }
        Ok(())
    }

    /// Sets `meta[key] = value`; persisted with the attempt's outcome.
    pub fn set_meta(&self, key: impl Into<String>, value: Value) {
        let mut meta = self.meta.lock();
        meta.get_or_insert_with(|| self.job.meta.clone())
            .insert(key.into(), value);
    }

    /// The job's meta including changes made in this attempt.
    pub fn meta(&self) -> JsonObject {
        self.meta
            .lock()
            .clone()
            .unwrap_or_else(|| self.job.meta.clone())
    }

    /// The id of the worker running the job.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub(crate) fn take_meta(&self) -> Option<JsonObject> {
        self.meta.lock().take()
    }

    /// The job back, once its handler has returned.
    pub(crate) fn into_job(self) -> QueuedJob {
        self.job
    }
}
