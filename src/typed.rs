//! Typed jobs: one Rust type per kind of job, over the unchanged string wire.
//!
//! A [`JobArgs`] type names its job's `func` once ([`JobArgs::FUNC`]) and carries the
//! job's kwargs with serde. The producer pushes a value of it ([`Job::from_args`],
//! [`Chancy::push_args`]); the worker registers one handler for it
//! ([`WorkerBuilder::handle`], [`Registry::handle`]) and gets the decoded value. A typo in a
//! job name or a wrong argument type is then a compile error instead of a runtime
//! `LookupError`.
//!
//! Nothing changes on the wire: the row holds `func = FUNC` and `kwargs` = the serialized
//! value, exactly what Python Chancy 0.26.0 pushes for `Job(func=FUNC, kwargs={...})`, so a
//! job pushed from Python with that `func` reaches the typed handler, and a typed push runs
//! on a Python worker that has a function at that import path.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::{Job, Reference};
use crate::worker::{JobContext, JobError, Registry, WorkerBuilder};

/// The arguments of one kind of job: its `func` name and its kwargs.
///
/// The type must serialize to a JSON object (a struct with named fields, or a map): its
/// fields are the job's kwargs. A job without arguments is an empty braced struct
/// (`struct Ping {}`), which serializes to `{}` — a unit struct (`struct Ping;`) serializes
/// to `null` and is refused by [`Job::from_args`].
///
/// ```
/// use chancy::{Job, JobArgs};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendEmail {
///     to: String,
///     subject: String,
/// }
///
/// impl JobArgs for SendEmail {
///     const FUNC: &'static str = "myapp.tasks.send_email";
///
///     // Optional: defaults for every job of this kind (builder calls can still override).
///     fn defaults(job: Job) -> Job {
///         job.queue("emails").max_attempts(3)
///     }
/// }
///
/// let job = Job::from_args(&SendEmail { to: "a@example.com".into(), subject: "hi".into() })?;
/// assert_eq!(job.func(), "myapp.tasks.send_email");
/// assert_eq!(job.queue_name(), "emails");
/// # Ok::<(), chancy::Error>(())
/// ```
pub trait JobArgs: Serialize + DeserializeOwned + 'static {
    /// The job's `func` string as stored in the row (for a job shared with Python, the
    /// import path of the Python function, e.g. `"myapp.tasks.send_email"`).
    const FUNC: &'static str;

    /// Settings applied by [`Job::from_args`] to every job of this kind (queue, priority,
    /// max_attempts, limits, …). Default: none (queue `default`, priority 0, one attempt).
    fn defaults(job: Job) -> Job {
        job
    }
}

impl Job {
    /// A job running [`A::FUNC`](JobArgs::FUNC) with `args` as its kwargs, after
    /// [`A::defaults`](JobArgs::defaults). Further builder calls override the defaults.
    ///
    /// # Errors
    /// [`Error::is_invalid_input`] when `args` does not serialize to a JSON object (or its
    /// `Serialize` implementation fails).
    pub fn from_args<A: JobArgs>(args: &A) -> Result<Job> {
        let kwargs = serde_json::to_value(args)
            .map_err(|e| Error::invalid_input(format!("kwargs of {:?}: {e}", A::FUNC)))?;
        if !kwargs.is_object() {
            return Err(Error::invalid_input(format!(
                "kwargs of {:?} must be a JSON object, got {kwargs} (from {}; use a struct \
                 with named fields, or `struct Name {{}}` for no arguments)",
                A::FUNC,
                std::any::type_name::<A>(),
            )));
        }
        Ok(A::defaults(Job::new(A::FUNC)).kwargs(kwargs))
    }
}

impl Chancy {
    /// Pushes one job of kind `A` with the defaults of [`A::defaults`](JobArgs::defaults):
    /// `chancy.push(&Job::from_args(args)?)`. Use [`Job::from_args`] to change settings
    /// for one push.
    ///
    /// ```no_run
    /// # use chancy::{Chancy, JobArgs};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Resize { width: u32 }
    /// # impl JobArgs for Resize { const FUNC: &'static str = "myapp.resize"; }
    /// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
    /// let reference = chancy.push_args(&Resize { width: 640 })?;
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Job::from_args`] and [`Chancy::push`].
    pub fn push_args<A: JobArgs>(&self, args: &A) -> Result<Reference> {
        self.push(&Job::from_args(args)?)
    }
}

/// The untyped handler that decodes the kwargs into `A` and calls `handler`.
fn typed<A, F>(handler: F) -> impl Fn(&JobContext) -> std::result::Result<(), JobError>
where
    A: JobArgs,
    F: Fn(&JobContext, A) -> std::result::Result<(), JobError>,
{
    move |ctx: &JobContext| {
        let args: A = ctx.kwargs()?;
        handler(ctx, args)
    }
}

impl WorkerBuilder {
    /// Registers `handler` for jobs of kind `A` (under [`A::FUNC`](JobArgs::FUNC)). The
    /// handler gets the context and the kwargs decoded into `A`; kwargs that do not decode
    /// fail the attempt with serde's message (`invalid kwargs for "<func>": missing field
    /// `to` …`), like [`JobContext::kwargs`], and the handler is not called.
    ///
    /// ```no_run
    /// use chancy::{Chancy, JobArgs, JobContext, JobError, Worker};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Resize { width: u32 }
    /// impl JobArgs for Resize { const FUNC: &'static str = "myapp.resize"; }
    ///
    /// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
    /// let worker = Worker::builder(&chancy)
    ///     .handle(|ctx: &JobContext, args: Resize| -> Result<(), JobError> {
    ///         ctx.set_meta("width", serde_json::json!(args.width));
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// # Ok::<(), chancy::Error>(())
    /// ```
    pub fn handle<A, F>(self, handler: F) -> WorkerBuilder
    where
        A: JobArgs,
        F: Fn(&JobContext, A) -> std::result::Result<(), JobError> + Send + Sync + 'static,
    {
        self.job(A::FUNC, typed(handler))
    }
}

impl Registry {
    /// Registers `handler` for jobs of kind `A`, as [`WorkerBuilder::handle`] does.
    ///
    /// ```
    /// use chancy::{JobArgs, JobContext, JobError, Registry};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Ping {}
    /// impl JobArgs for Ping { const FUNC: &'static str = "myapp.ping"; }
    ///
    /// let registry = Registry::new().handle(|_ctx: &JobContext, _: Ping| Ok(()));
    /// assert_eq!(registry.names(), ["myapp.ping"]);
    /// ```
    pub fn handle<A, F>(self, handler: F) -> Registry
    where
        A: JobArgs,
        F: Fn(&JobContext, A) -> std::result::Result<(), JobError> + Send + Sync + 'static,
    {
        self.job(A::FUNC, typed(handler))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Email {
        to: String,
    }
    impl JobArgs for Email {
        const FUNC: &'static str = "t.email";
        fn defaults(job: Job) -> Job {
            job.queue("mail").priority(3)
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Unit;
    impl JobArgs for Unit {
        const FUNC: &'static str = "t.unit";
    }

    #[test]
    fn from_args_names_the_func_applies_defaults_and_serializes_kwargs() {
        let job = Job::from_args(&Email { to: "a@b".into() })
            .unwrap()
            .priority(9);
        assert_eq!(job.func(), "t.email");
        assert_eq!(job.queue_name(), "mail");
        assert_eq!(job.priority, 9, "builder calls override the defaults");
        assert_eq!(job.kwargs, json!({"to": "a@b"}));
    }

    #[test]
    fn args_that_are_not_an_object_are_refused_with_the_reason() {
        let err = Job::from_args(&Unit).unwrap_err();
        assert!(err.is_invalid_input());
        assert!(
            err.to_string()
                .starts_with("kwargs of \"t.unit\" must be a JSON object, got null (from "),
            "{err}"
        );
    }
}
