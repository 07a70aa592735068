//! Jobs: what is pushed ([`Job`]), what is read back ([`QueuedJob`]) and how to refer to one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use postgres::Row;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A JSON object: the type of `kwargs` and `meta`.
pub type JsonObject = Map<String, Value>;

/// The queue of a [`Job::new`] (and the CLI's `--queue` default), as in Python Chancy.
pub(crate) const DEFAULT_QUEUE: &str = "default";
/// The priority of a [`Job::new`], as in Python Chancy.
pub(crate) const DEFAULT_PRIORITY: i32 = 0;
/// The `max_attempts` of a [`Job::new`], as in Python Chancy.
pub(crate) const DEFAULT_MAX_ATTEMPTS: i32 = 1;

/// The longest queue name accepted.
pub(crate) const MAX_QUEUE_NAME_LEN: usize = 255;

/// The longest job function name (`func`) accepted: 255 bytes, like a queue name.
/// Upstream 0.26.0 stores any text; a longer name is no importable Python path either.
pub const MAX_FUNC_LEN: usize = 255;
/// The longest `unique_key` accepted: 1,024 bytes. The key is a column of a unique B-tree
/// index, whose entries PostgreSQL caps at about 2,700 bytes (a longer key would fail the
/// insert with an index error), and it is shown in CLI tables and the dashboard.
pub const MAX_UNIQUE_KEY_LEN: usize = 1024;

/// Characters no name may hold, because they forge what a log line, a table or a label
/// shows: control characters (newline, escape, …), the Unicode line and paragraph
/// separators, and the bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069) that make text read in another order than it is stored.
pub(crate) fn is_forging_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Queue names: non-empty, at most 255 bytes, no control characters ([`is_forging_char`]).
pub(crate) fn validate_queue_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_QUEUE_NAME_LEN || name.chars().any(is_forging_char) {
        return Err(Error::invalid_input(format!(
            "invalid queue name {name:?}: it must be 1 to {MAX_QUEUE_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// The one rule for job function names, wherever a name comes from (a push of any kind, a
/// typed job's `FUNC`, a cron/trigger/workflow template, a handler registered with a
/// worker, a row another client wrote): not blank, at most [`MAX_FUNC_LEN`] bytes, no
/// control characters or text-direction overrides ([`is_forging_char`]: a newline or escape
/// in a name would forge lines in logs and tables). The error shows at most the first 64 characters of the name.
pub(crate) fn validate_func(func: &str) -> Result<()> {
    if func.trim().is_empty() {
        return Err(Error::invalid_input("a job needs a non-empty func name"));
    }
    if func.len() > MAX_FUNC_LEN || func.chars().any(is_forging_char) {
        return Err(Error::invalid_input(format!(
            "invalid job func {} ({} bytes): it must be 1 to {MAX_FUNC_LEN} bytes without \
             control characters",
            shown(func),
            func.len()
        )));
    }
    Ok(())
}

/// A `unique_key`: at most [`MAX_UNIQUE_KEY_LEN`] bytes, no control characters.
fn validate_unique_key(func: &str, key: &str) -> Result<()> {
    if key.len() > MAX_UNIQUE_KEY_LEN || key.chars().any(is_forging_char) {
        return Err(Error::invalid_input(format!(
            "unique_key {} of {} ({} bytes) must be at most {MAX_UNIQUE_KEY_LEN} bytes \
             without control characters",
            shown(key),
            shown(func),
            key.len()
        )));
    }
    Ok(())
}

/// `text` quoted and escaped for an error message or log line, cut to its first 64
/// characters (`…` marks a cut), so a 1 MB name cannot flood a log.
pub(crate) fn shown(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// The kind of a [`Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LimitKind {
    /// Wall-clock seconds an attempt may run.
    Time,
    /// Address-space bytes an attempt may use (process executor only).
    Memory,
}

/// A resource limit of a job, stored as `{"t": "time"|"memory", "v": <int>}`.
///
/// ```
/// use std::time::Duration;
/// use chancy::Limit;
/// let l = Limit::time(Duration::from_secs(30));
/// assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"t":"time","v":30}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limit {
    /// What is limited.
    #[serde(rename = "t")]
    pub kind: LimitKind,
    /// Seconds for [`LimitKind::Time`], bytes for [`LimitKind::Memory`].
    #[serde(rename = "v")]
    pub value: i64,
}

impl Limit {
    /// A time limit; stored in whole seconds, rounded up (at least one second).
    pub fn time(limit: Duration) -> Limit {
        let secs = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
        Limit {
            kind: LimitKind::Time,
            value: secs.max(1) as i64,
        }
    }

    /// A memory (address-space) limit in bytes.
    pub fn memory(bytes: u64) -> Limit {
        Limit {
            kind: LimitKind::Memory,
            value: bytes as i64,
        }
    }

    /// The time limit as a `Duration`, if this is one.
    pub fn as_duration(&self) -> Option<Duration> {
        (self.kind == LimitKind::Time).then(|| Duration::from_secs(self.value.max(0) as u64))
    }
}

/// The first limit of `kind` in `limits`, as executors use it.
pub(crate) fn first_limit(limits: &[Limit], kind: LimitKind) -> Option<Limit> {
    limits.iter().copied().find(|l| l.kind == kind)
}

/// A job to push. Built with a consuming builder; every field has Python Chancy's default.
///
/// ```
/// use serde_json::json;
/// use chancy::Job;
/// let job = Job::new("myapp.tasks.send_email")
///     .queue("emails")
///     .kwargs(json!({"to": "a@example.com"}))
///     .priority(5)
///     .max_attempts(3)
///     .unique_key("email-42");
/// assert_eq!(job.func(), "myapp.tasks.send_email");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a Job is only a value: pass it to `Chancy::push`"]
pub struct Job {
    pub(crate) func: String,
    pub(crate) queue: String,
    pub(crate) kwargs: Value,
    pub(crate) priority: i32,
    pub(crate) max_attempts: i32,
    pub(crate) scheduled_at: Option<DateTime<Utc>>,
    pub(crate) limits: Vec<Limit>,
    pub(crate) unique_key: Option<String>,
    pub(crate) meta: Value,
}

impl Job {
    /// A job running the handler registered under `func`, on queue `default`, priority 0,
    /// one attempt, due now.
    pub fn new(func: impl Into<String>) -> Job {
        Job {
            func: func.into(),
            queue: DEFAULT_QUEUE.into(),
            kwargs: Value::Object(Map::new()),
            priority: DEFAULT_PRIORITY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            scheduled_at: None,
            limits: Vec::new(),
            unique_key: None,
            meta: Value::Object(Map::new()),
        }
    }

    /// The queue to push to (default `default`).
    pub fn queue(mut self, queue: impl Into<String>) -> Job {
        self.queue = queue.into();
        self
    }

    /// Keyword arguments; must be a JSON object (checked at push). Replaces earlier kwargs.
    pub fn kwargs(mut self, kwargs: Value) -> Job {
        self.kwargs = kwargs;
        self
    }

    /// Keyword arguments from any serde-serialisable value that serialises to an object.
    ///
    /// # Errors
    /// When `kwargs` cannot be serialised.
    pub fn kwargs_from<T: Serialize>(self, kwargs: &T) -> Result<Job> {
        let value = serde_json::to_value(kwargs).map_err(|e| Error::json("invalid kwargs", e))?;
        Ok(self.kwargs(value))
    }

    /// Priority: higher runs first (default 0).
    pub fn priority(mut self, priority: i32) -> Job {
        self.priority = priority;
        self
    }

    /// How many times the job may run before it is failed for good (default 1).
    pub fn max_attempts(mut self, max_attempts: i32) -> Job {
        self.max_attempts = max_attempts;
        self
    }

    /// Do not run before this time (default: now, by the database clock).
    pub fn scheduled_at(mut self, at: DateTime<Utc>) -> Job {
        self.scheduled_at = Some(at);
        self
    }

    /// Do not run before `delay` from now, by this machine's clock (see
    /// [`Chancy::database_now`](crate::Chancy::database_now) to count from the database's).
    /// A delay past the year 9999 saturates here and is refused at push (see
    /// [`Job::validate`]).
    pub fn delay(self, delay: Duration) -> Job {
        let delta = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let at = Utc::now()
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.scheduled_at(at)
    }

    /// Adds a resource limit.
    pub fn limit(mut self, limit: Limit) -> Job {
        self.limits.push(limit);
        self
    }

    /// Replaces all limits.
    pub fn limits(mut self, limits: Vec<Limit>) -> Job {
        self.limits = limits;
        self
    }

    /// De-duplication key: while a job with this key is pending, running or retrying, pushing
    /// another returns the existing job instead of inserting.
    pub fn unique_key(mut self, key: impl Into<String>) -> Job {
        self.unique_key = Some(key.into());
        self
    }

    /// Free-form metadata; must be a JSON object (checked at push). Replaces earlier meta.
    pub fn meta(mut self, meta: Value) -> Job {
        self.meta = meta;
        self
    }

    /// The handler name.
    pub fn func(&self) -> &str {
        &self.func
    }

    /// The queue name.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The de-duplication key, if any.
    pub fn unique_key_ref(&self) -> Option<&str> {
        self.unique_key.as_deref()
    }

    /// Checks what the database cannot: `func` 1 to [`MAX_FUNC_LEN`] bytes and the queue
    /// name 1 to 255 bytes, both without control characters; `unique_key` at most
    /// [`MAX_UNIQUE_KEY_LEN`] bytes without control characters; objects where objects are
    /// required, no U+0000 in text, `max_attempts` at least 1, and `scheduled_at` no later
    /// than 9999-12-31T23:59:59Z (the latest time Python's `datetime` can read, so a Python
    /// worker or dashboard sharing the database can still load the row). Every push calls
    /// it (library, typed jobs, CLI, cron, triggers, workflows). Upstream 0.26.0 checks none
    /// of the text bounds; a row it wrote with a `func` outside them is failed by a chancy
    /// worker with a `ValueError` saying so, never run or crashed on.
    ///
    /// # Errors
    /// An invalid-input error saying which field is wrong.
    pub fn validate(&self) -> Result<()> {
        validate_func(&self.func)?;
        validate_queue_name(&self.queue)?;
        if let Some(key) = &self.unique_key {
            validate_unique_key(&self.func, key)?;
        }
        if !self.kwargs.is_object() {
            return Err(Error::invalid_input(format!(
                "kwargs of {:?} must be a JSON object, got {}",
                self.func, self.kwargs
            )));
        }
        if !self.meta.is_object() {
            return Err(Error::invalid_input(format!(
                "meta of {:?} must be a JSON object, got {}",
                self.func, self.meta
            )));
        }
        let nul_in = [
            ("func", self.func.contains('\0')),
            ("kwargs", json_has_nul(&self.kwargs)),
            ("meta", json_has_nul(&self.meta)),
            (
                "unique_key",
                self.unique_key.as_deref().is_some_and(|k| k.contains('\0')),
            ),
        ];
        if let Some((field, _)) = nul_in.iter().find(|(_, has)| *has) {
            return Err(Error::invalid_input(format!(
                "{field} of {:?} contains the character U+0000, which PostgreSQL cannot store",
                self.func
            )));
        }
        if self.max_attempts < 1 {
            return Err(Error::invalid_input(format!(
                "max_attempts of {:?} must be at least 1, got {}",
                self.func, self.max_attempts
            )));
        }
        if let Some(at) = self.scheduled_at.filter(|at| *at > latest_schedulable()) {
            return Err(Error::invalid_input(format!(
                "scheduled_at of {:?} is {}, after 9999-12-31T23:59:59Z, the latest time \
                 Python's datetime (and so a Python worker sharing the database) can read",
                self.func,
                at.format("%+")
            )));
        }
        Ok(())
    }

    /// The compact form Python Chancy stores in cron, workflow and trigger rows:
    /// `{"f","k","p","a","s","l","u","q","m"}` with `s` in float Unix seconds.
    pub fn pack(&self) -> Value {
        let scheduled = self.scheduled_at.unwrap_or_else(Utc::now);
        let secs =
            scheduled.timestamp() as f64 + f64::from(scheduled.timestamp_subsec_micros()) / 1e6;
        serde_json::json!({
            "f": self.func,
            "k": self.kwargs,
            "p": self.priority,
            "a": self.max_attempts,
            "s": secs,
            "l": self.limits,
            "u": self.unique_key,
            "q": self.queue,
            "m": self.meta,
        })
    }

    /// Reads the compact form written by [`Job::pack`] or by Python's `Job.pack()`.
    ///
    /// # Errors
    /// When `packed` is not an object with at least a string `f`.
    pub fn unpack(packed: &Value) -> Result<Job> {
        let obj = packed
            .as_object()
            .ok_or_else(|| Error::invalid_input("a packed job must be a JSON object"))?;
        let func = obj
            .get("f")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid_input("a packed job needs a string \"f\""))?;
        let mut job = Job::new(func);
        if let Some(q) = obj.get("q").and_then(Value::as_str) {
            job.queue = q.to_string();
        }
        if let Some(k) = obj.get("k").filter(|v| !v.is_null()) {
            job.kwargs = k.clone();
        }
        if let Some(m) = obj.get("m").filter(|v| !v.is_null()) {
            job.meta = m.clone();
        }
        job.priority = obj.get("p").and_then(Value::as_i64).unwrap_or(0) as i32;
        job.max_attempts = obj.get("a").and_then(Value::as_i64).unwrap_or(1) as i32;
        job.unique_key = obj.get("u").and_then(Value::as_str).map(str::to_string);
        job.scheduled_at = obj
            .get("s")
            .and_then(Value::as_f64)
            .and_then(from_unix_float);
        if let Some(l) = obj.get("l").filter(|v| !v.is_null()) {
            job.limits = serde_json::from_value(l.clone())
                .map_err(|e| Error::json("invalid limits in packed job", e))?;
        }
        Ok(job)
    }
}

/// 9999-12-31T23:59:59Z: the latest `scheduled_at` a push accepts (Python's `datetime.max`).
pub(crate) fn latest_schedulable() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn from_unix_float(secs: f64) -> Option<DateTime<Utc>> {
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round() as u32;
    Utc.timestamp_opt(whole as i64, nanos.min(999_999_999))
        .single()
}

/// The state of a job row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Failed an attempt and will be claimed again.
    Retrying,
    /// Finished successfully (terminal).
    Succeeded,
    /// Failed for good or cancelled (terminal).
    Failed,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Failed,
    ];

    /// The string stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// `succeeded` and `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<JobState> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "unknown job state {s:?} (expected pending, running, retrying, succeeded or failed)"
                ))
            })
    }
}

/// One entry of a job's `errors` array: `{"attempt": n, "traceback": text}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorRecord {
    /// The job's `attempts` before the failed run (the first failure is attempt 0).
    #[serde(default)]
    pub attempt: i64,
    /// What went wrong, as text.
    #[serde(default)]
    pub traceback: String,
}

impl ErrorRecord {
    /// An entry for the failed run that started with `attempt` earlier attempts.
    pub fn new(attempt: i64, traceback: impl Into<String>) -> ErrorRecord {
        ErrorRecord {
            attempt,
            traceback: traceback.into(),
        }
    }
}

/// A job as stored in the database, with every column of the row (the `<prefix>jobs` table
/// Python Chancy 0.26.0 creates). Times are UTC, written by the database's clock. New
/// columns may be added in a minor release (the struct is `#[non_exhaustive]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueuedJob {
    /// The job id (time-ordered, Chancy's layout; see [`new_job_id`](crate::new_job_id)).
    pub id: Uuid,
    /// The queue.
    pub queue: String,
    /// The handler name.
    pub func: String,
    /// Keyword arguments (a JSON object).
    pub kwargs: JsonObject,
    /// Resource limits.
    pub limits: Vec<Limit>,
    /// Metadata (a JSON object).
    pub meta: JsonObject,
    /// Current state.
    pub state: JobState,
    /// Higher runs first.
    pub priority: i32,
    /// Finished runs so far (a run that is still going does not count yet).
    pub attempts: i32,
    /// Runs allowed; the job is not claimed again once `attempts` reaches it.
    pub max_attempts: i32,
    /// The worker that claimed it last.
    pub taken_by: Option<String>,
    /// Insertion time.
    pub created_at: DateTime<Utc>,
    /// Start of the current or last run.
    pub started_at: Option<DateTime<Utc>>,
    /// End of the last run, for terminal jobs.
    pub completed_at: Option<DateTime<Utc>>,
    /// Not claimed before this time (a retry with backoff moves it forward).
    pub scheduled_at: DateTime<Utc>,
    /// De-duplication key.
    pub unique_key: Option<String>,
    /// One entry per failed run.
    pub errors: Vec<ErrorRecord>,
    /// The claim of the current or last run; every outcome write is fenced by it.
    pub claim_id: Option<Uuid>,
}

impl QueuedJob {
    /// Reads a `SELECT *` / `RETURNING *` row of the jobs table.
    ///
    /// # Errors
    /// When a column is missing or holds a value chancy cannot read (e.g. an unknown state,
    /// reported with the job's id).
    pub fn from_row(row: &Row) -> Result<QueuedJob> {
        read_row(row).map(|(job, _)| job)
    }

    /// A reference to this job.
    pub fn reference(&self) -> Reference {
        Reference(self.id)
    }

    /// The first limit of `kind`.
    pub fn limit(&self, kind: LimitKind) -> Option<Limit> {
        first_limit(&self.limits, kind)
    }
}

/// Whether a string or key anywhere in `v` contains U+0000 (which `jsonb` cannot hold).
pub(crate) fn json_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(json_has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
impl QueuedJob {
    /// A job of `func` as a worker holds it right after claiming it (unit-test fixture).
    pub(crate) fn claimed_for_test(func: &str) -> QueuedJob {
        QueuedJob {
            id: Uuid::new_v4(),
            queue: "q".into(),
            func: func.into(),
            kwargs: Map::new(),
            limits: vec![],
            meta: Map::new(),
            state: JobState::Running,
            priority: 0,
            attempts: 0,
            max_attempts: 1,
            taken_by: Some("w".into()),
            created_at: Utc::now(),
            started_at: Some(Utc::now()),
            completed_at: None,
            scheduled_at: Utc::now(),
            unique_key: None,
            errors: vec![],
            claim_id: Some(Uuid::new_v4()),
        }
    }
}

/// Reads a jobs row (see [`QueuedJob::from_row`]), decoding each column once, and also says
/// why its kwargs or limits cannot be used as written, if they cannot: another client may
/// have stored kwargs that are not a JSON object or limits that are not `[{"t", "v"}]`
/// entries. The job then carries `{}` / no limits, and the fetcher fails its attempt with
/// that text instead of running it with a guess.
pub(crate) fn read_row(row: &Row) -> Result<(QueuedJob, Option<String>)> {
    let get_json = |name: &str| -> Result<Value> {
        row.try_get::<_, Value>(name)
            .map_err(|e| Error::database(&format!("reading jobs.{name}"), e))
    };
    let id: Uuid = col(row, "id")?;
    let state: String = col(row, "state")?;
    let state = state
        .parse()
        .map_err(|e: Error| Error::unreadable_row(format!("job {id}: {e}")))?;
    let kwargs = get_json("kwargs")?;
    let mut problem = (!kwargs.is_object()).then(|| {
        format!(
            "TypeError: the job's kwargs must be a JSON object, found {}",
            json_kind(&kwargs)
        )
    });
    let limits = get_json("limits")?;
    let limits_were_null = limits.is_null();
    let limits = serde_json::from_value::<Vec<Limit>>(limits).unwrap_or_else(|e| {
        if problem.is_none() && !limits_were_null {
            problem = Some(format!(
                "ValueError: the job's limits must be a list of {{\"t\": \"time\"|\"memory\", \"v\": <int>}}: {e}"
            ));
        }
        Vec::new()
    });
    let func: String = col(row, "func")?;
    if let Err(e) = validate_func(&func) {
        // First: a job whose function cannot be named must not reach a handler lookup.
        problem = Some(format!("ValueError: {e}"));
    }
    let job = QueuedJob {
        id,
        queue: col(row, "queue")?,
        func,
        kwargs: into_object(kwargs),
        limits,
        meta: into_object(get_json("meta")?),
        state,
        priority: col::<Option<i32>>(row, "priority")?.unwrap_or(0),
        attempts: col::<Option<i32>>(row, "attempts")?.unwrap_or(0),
        max_attempts: col(row, "max_attempts")?,
        taken_by: col(row, "taken_by")?,
        created_at: col(row, "created_at")?,
        started_at: col(row, "started_at")?,
        completed_at: col(row, "completed_at")?,
        scheduled_at: col(row, "scheduled_at")?,
        unique_key: col(row, "unique_key")?,
        errors: serde_json::from_value(get_json("errors")?).unwrap_or_default(),
        claim_id: row.try_get("claim_id").unwrap_or(None),
    };
    Ok((job, problem))
}

/// How a JSON value's type reads in an error message.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn col<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Result<T> {
    row.try_get(name)
        .map_err(|e| Error::database(&format!("reading column {name}"), e))
}

fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A reference to a pushed job, by id. Returned by every push.
///
/// ```
/// use chancy::Reference;
/// let r: Reference = "03fcddd7-a9fa-2a17-b5d2-5e524cf1d55b".parse().unwrap();
/// assert_eq!(r.to_string(), "03fcddd7-a9fa-2a17-b5d2-5e524cf1d55b");
/// assert!(r == "03fcddd7-a9fa-2a17-b5d2-5e524cf1d55b");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference(pub Uuid);

impl Reference {
    /// The job id.
    pub fn id(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for Reference {
    fn from(id: Uuid) -> Self {
        Reference(id)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        Uuid::parse_str(s.trim())
            .map(Reference)
            .map_err(|e| Error::invalid_input(format!("invalid job id {s:?}: {e}")))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl PartialEq<Uuid> for Reference {
    fn eq(&self, other: &Uuid) -> bool {
        self.0 == *other
    }
}

impl PartialEq<str> for Reference {
    fn eq(&self, other: &str) -> bool {
        self.0.hyphenated().to_string() == other
    }
}

impl PartialEq<&str> for Reference {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_characters_that_forge_what_is_shown() {
        for bad in [
            "a\u{2028}b",
            "a\u{202e}evil",
            "x\u{2066}y",
            "a\x1bb",
            "a\rb",
        ] {
            assert!(validate_func(bad).is_err(), "{bad:?}");
            assert!(validate_queue_name(bad).is_err(), "{bad:?}");
            assert!(validate_unique_key("f", bad).is_err(), "{bad:?}");
        }
        for good in ["app.tasks.send_email", "émoji.🚀", "名前"] {
            assert!(validate_func(good).is_ok(), "{good:?}");
        }
    }
    use serde_json::json;

    #[test]
    fn pack_round_trips() {
        let at = Utc.timestamp_opt(1_700_000_000, 250_000_000).unwrap();
        let job = Job::new("a.b")
            .queue("q")
            .kwargs(json!({"x": 1}))
            .priority(3)
            .max_attempts(4)
            .scheduled_at(at)
            .limit(Limit::time(Duration::from_millis(1500)))
            .unique_key("u")
            .meta(json!({"m": true}));
        let packed = job.pack();
        assert_eq!(packed["s"], json!(1_700_000_000.25));
        assert_eq!(packed["l"], json!([{"t": "time", "v": 2}]));
        assert_eq!(Job::unpack(&packed).unwrap(), job);
    }

    #[test]
    fn validation_names_the_field() {
        let err = Job::new("f").kwargs(json!([1])).validate().unwrap_err();
        assert!(err.to_string().contains("kwargs"));
        assert!(Job::new("").validate().is_err());
        assert!(Job::new("f").max_attempts(0).validate().is_err());
        assert!(Job::new("f").meta(json!("x")).validate().is_err());
        assert!(Job::new("f").validate().is_ok());
    }

    #[test]
    fn func_and_unique_key_are_bounded_and_free_of_control_characters() {
        let at_limit = "f".repeat(MAX_FUNC_LEN);
        assert!(Job::new(at_limit.as_str()).validate().is_ok());
        for bad in [
            "f".repeat(MAX_FUNC_LEN + 1),
            "a.b\nINFO forged".into(),
            "a\u{1b}[31m".into(),
            "a\0b".into(),
            "  ".into(),
        ] {
            let err = Job::new(bad.as_str()).validate().unwrap_err();
            assert!(err.is_invalid_input(), "{bad:?}");
            assert!(err.to_string().len() < 200, "bounded message: {err}");
        }
        let err = Job::new("f".repeat(10_000)).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid job func {:?}… (10000 bytes): it must be 1 to 255 bytes without \
                 control characters",
                "f".repeat(64)
            )
        );
        let key = |k: &str| Job::new("f").unique_key(k).validate();
        assert!(key(&"k".repeat(MAX_UNIQUE_KEY_LEN)).is_ok());
        assert!(key(&"k".repeat(MAX_UNIQUE_KEY_LEN + 1))
            .unwrap_err()
            .to_string()
            .contains("must be at most 1024 bytes"));
        assert!(key("a\tb").is_err());
        assert_eq!(shown("né\n"), "\"né\\n\"");
    }

    #[test]
    fn a_delay_past_year_9999_saturates_and_is_refused() {
        let far = Job::new("f").delay(Duration::MAX);
        let err = far.validate().unwrap_err();
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("9999-12-31"), "{err}");
        let in_a_century = Job::new("f").delay(Duration::from_secs(100 * 365 * 86_400));
        assert!(in_a_century.validate().is_ok());
    }

    #[test]
    fn states_parse() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("done".parse::<JobState>().is_err());
    }
}
