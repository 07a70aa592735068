//! Queues: where jobs wait, and how workers serve them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Row;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::job::{col, validate_queue_name, JsonObject};

/// The highest `concurrency` a queue may declare: executor threads (or child processes) per
/// worker for that queue.
pub(crate) const MAX_CONCURRENCY: i32 = 1024;
/// The longest `polling_interval` accepted, in seconds (one day).
pub(crate) const MAX_POLLING_INTERVAL_SECS: u64 = 86_400;
/// The highest `rate_limit` accepted (jobs per window over all workers).
pub(crate) const MAX_RATE_LIMIT: i32 = 1_000_000;
/// The longest `rate_limit_window` accepted, in seconds (one week).
pub(crate) const MAX_RATE_LIMIT_WINDOW_SECS: u64 = 604_800;
/// The most tag regexes a queue may carry.
pub(crate) const MAX_TAGS: usize = 64;
/// The longest tag regex accepted, in bytes.
pub(crate) const MAX_TAG_LEN: usize = 1024;
/// The longest executor class path accepted, in bytes.
pub(crate) const MAX_EXECUTOR_LEN: usize = 255;
/// The largest `executor_options` accepted, in bytes of JSON.
pub(crate) const MAX_EXECUTOR_OPTIONS_BYTES: usize = 16 * 1024;
/// The `polling_interval` of a [`Queue::new`] (and the CLI's `--polling-interval` default),
/// as in Python Chancy.
pub(crate) const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(5);
/// The compiled size limit of one tag regex (bytes of the regex program).
const TAG_REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Python Chancy's process-pool executor (upstream's default). A Rust worker serves these
/// queues with its process-isolated executor.
pub const PROCESS_EXECUTOR: &str = "chancy.executors.process.ProcessExecutor";
/// Python Chancy's thread-pool executor. A Rust worker serves it with its thread pool; this is
/// the default for queues declared from Rust.
pub const THREADED_EXECUTOR: &str = "chancy.executors.thread.ThreadedExecutor";
/// Python Chancy's asyncio executor. A Rust worker serves it with its thread pool.
pub const ASYNC_EXECUTOR: &str = "chancy.executors.asyncex.AsyncExecutor";
/// Python Chancy's sub-interpreter executor. A Rust worker serves it with its thread pool.
pub const SUB_INTERPRETER_EXECUTOR: &str = "chancy.executors.sub.SubInterpreterExecutor";

/// Whether a queue is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueState {
    /// Jobs are claimed.
    Active,
    /// Nothing is claimed until resumed (or `resume_at` passes).
    Paused,
}

impl QueueState {
    /// The string stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Active => "active",
            QueueState::Paused => "paused",
        }
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueState {
    type Err = Error;

    fn from_str(s: &str) -> Result<QueueState> {
        match s {
            "active" => Ok(QueueState::Active),
            "paused" => Ok(QueueState::Paused),
            other => Err(Error::invalid_input(format!(
                "unknown queue state {other:?} (expected active or paused)"
            ))),
        }
    }
}

/// A queue declaration. Every field of Python Chancy's `Queue`, with the same defaults except
/// the executor, which defaults to the threaded one for queues declared from Rust.
///
/// ```
/// use std::time::Duration;
/// use chancy::Queue;
/// let q = Queue::new("emails")
///     .concurrency(8)
///     .polling_interval(Duration::from_secs(1))
///     .tags(["has=smtp"]);
/// assert_eq!(q.name(), "emails");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Queue {
    /// The queue name.
    pub name: String,
    /// Jobs run at once per worker; `None` = the executor's default.
    pub concurrency: Option<i32>,
    /// Regexes matched (prefix match, like Python's `re.match`) against worker tags.
    pub tags: BTreeSet<String>,
    /// Active or paused.
    pub state: QueueState,
    /// The executor, as a Python class path.
    pub executor: String,
    /// Options of the executor (a JSON object).
    pub executor_options: JsonObject,
    /// How often an idle worker polls the queue (whole seconds).
    pub polling_interval: Duration,
    /// Jobs allowed per `rate_limit_window`, over all workers; `None` = unlimited.
    pub rate_limit: Option<i32>,
    /// The rate-limit window (whole seconds).
    pub rate_limit_window: Option<Duration>,
    /// When a paused queue resumes by itself.
    pub resume_at: Option<DateTime<Utc>>,
    /// Poll again as soon as a job of this queue finishes.
    pub eager_polling: bool,
}

impl Queue {
    /// A queue with the defaults: concurrency from the executor, tags `[".*"]`, active,
    /// threaded executor, polling every 5 s, no rate limit.
    pub fn new(name: impl Into<String>) -> Queue {
        Queue {
            name: name.into(),
            concurrency: None,
            tags: BTreeSet::from([".*".to_string()]),
            state: QueueState::Active,
            executor: THREADED_EXECUTOR.to_string(),
            executor_options: Map::new(),
            polling_interval: DEFAULT_POLLING_INTERVAL,
            rate_limit: None,
            rate_limit_window: None,
            resume_at: None,
            eager_polling: false,
        }
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Jobs run at once per worker: executor threads, or child processes for a process
    /// executor (default unset: the executor's default; accepted 1..=1024, see
    /// [`Queue::validate`]).
    pub fn concurrency(mut self, concurrency: i32) -> Queue {
        self.concurrency = Some(concurrency);
        self
    }

    /// Replaces the tag regexes (default `[".*"]`; an empty set matches no worker). A worker
    /// serves the queue when a regex matches the start of one of its tags (Python's
    /// `re.match`); at most 64 regexes of at most 1024 bytes each.
    pub fn tags<I, S>(mut self, tags: I) -> Queue
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Active or paused (default [`QueueState::Active`]).
    pub fn state(mut self, state: QueueState) -> Queue {
        self.state = state;
        self
    }

    /// The executor: one of the `*_EXECUTOR` constants (default [`THREADED_EXECUTOR`]), or
    /// another Python class path (at most 255 bytes) for queues only Python workers serve.
    pub fn executor(mut self, executor: impl Into<String>) -> Queue {
        self.executor = executor.into();
        self
    }

    /// Executor options (a JSON object of at most 16 KiB, default `{}`; e.g.
    /// `{"maximum_jobs_per_worker": 100}` for the process executor, whose default is 100).
    pub fn executor_options(mut self, options: JsonObject) -> Queue {
        self.executor_options = options;
        self
    }

    /// How often an idle worker polls (default 5 s; whole seconds, 1..=86,400, as the column
    /// is an integer: a fraction of a second is refused by [`Queue::validate`]).
    pub fn polling_interval(mut self, interval: Duration) -> Queue {
        self.polling_interval = interval;
        self
    }

    /// At most `limit` jobs per `window` over all workers (default: no limit). `limit` is
    /// 0 (unlimited) or 1..=1,000,000; `window` is whole seconds, 1..=604,800 (one week).
    /// The window is counted on the database clock.
    pub fn rate_limit(mut self, limit: i32, window: Duration) -> Queue {
        self.rate_limit = Some(limit);
        self.rate_limit_window = Some(window);
        self
    }

    /// When a paused queue resumes by itself (default: never; see
    /// [`Chancy::pause_queue`](crate::Chancy::pause_queue)).
    pub fn resume_at(mut self, at: DateTime<Utc>) -> Queue {
        self.resume_at = Some(at);
        self
    }

    /// Poll again as soon as a job of this queue finishes, instead of waiting for a NOTIFY
    /// or the polling interval (default off, as upstream).
    pub fn eager_polling(mut self, eager: bool) -> Queue {
        self.eager_polling = eager;
        self
    }

    /// Checks every setting against the documented bounds. This is the one check applied
    /// by [`Chancy::declare`](crate::Chancy::declare) (and so by the CLI and the API) and by
    /// a worker to each queue row it reads, whoever wrote it.
    ///
    /// | setting | accepted |
    /// |---|---|
    /// | `name` | 1..=255 bytes, no control characters |
    /// | `concurrency` | `None` (executor default) or 1..=1024 |
    /// | `polling_interval` | whole seconds, 1..=86400 |
    /// | `rate_limit` | `None`, 0 (unlimited) or 1..=1000000, with a window |
    /// | `rate_limit_window` | whole seconds, 1..=604800 |
    /// | `tags` | at most 64, each a valid regex of at most 1024 bytes |
    /// | `executor` | 1..=255 bytes, no control characters |
    /// | `executor_options` | at most 16 KiB as JSON; `maximum_jobs_per_worker`, when present, an integer 1..=`u32::MAX` |
    ///
    /// Upstream accepts any value here; a Rust worker cannot serve a queue outside these
    /// bounds (a concurrency of 2³¹−1 would ask for billions of threads).
    ///
    /// # Errors
    /// An invalid-input error naming the queue, the setting, the bad value and the bound.
    pub fn validate(&self) -> Result<()> {
        self.validate_settings()?;
        self.validate_tags()
    }

    /// Everything [`Queue::validate`] checks except the tag regexes (which cost a compile
    /// each; a worker caches their verdict per queue and tag list).
    pub(crate) fn validate_settings(&self) -> Result<()> {
        validate_queue_name(&self.name)?;
        let bad = |what: String| {
            Err(Error::invalid_input(format!(
                "queue {:?}: {what}",
                self.name
            )))
        };
        if let Some(c) = self.concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&c) {
                return bad(format!(
                    "concurrency must be between 1 and {MAX_CONCURRENCY} (got {c})"
                ));
            }
        }
        whole_seconds(
            &self.name,
            "polling_interval",
            self.polling_interval,
            MAX_POLLING_INTERVAL_SECS,
        )?;
        match (self.rate_limit, self.rate_limit_window) {
            (Some(limit), _) if !(0..=MAX_RATE_LIMIT).contains(&limit) => {
                return bad(format!(
                    "rate_limit must be between 0 (unlimited) and {MAX_RATE_LIMIT} (got {limit})"
                ))
            }
            (Some(limit), None) if limit > 0 => {
                return bad("rate_limit needs a rate_limit_window".to_string())
            }
            (_, Some(window)) => {
                whole_seconds(
                    &self.name,
                    "rate_limit_window",
                    window,
                    MAX_RATE_LIMIT_WINDOW_SECS,
                )?;
            }
            _ => {}
        }
        if self.executor.trim().is_empty()
            || self.executor.len() > MAX_EXECUTOR_LEN
            || self.executor.chars().any(char::is_control)
        {
            return bad(format!(
                "executor must be 1 to {MAX_EXECUTOR_LEN} bytes without control characters (got {:?})",
                self.executor
            ));
        }
        self.validate_executor_options()
    }

    pub(crate) fn validate_tags(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::invalid_input(format!(
                "queue {:?}: {what}",
                self.name
            )))
        };
        if self.tags.len() > MAX_TAGS {
            return bad(format!(
                "at most {MAX_TAGS} tags are allowed (got {})",
                self.tags.len()
            ));
        }
        for tag in &self.tags {
            if tag.len() > MAX_TAG_LEN {
                return bad(format!(
                    "tag regex {tag:?} is longer than {MAX_TAG_LEN} bytes"
                ));
            }
            if let Err(e) = compile_tag(tag) {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or_default().trim().to_string();
                return bad(format!("tag {tag:?} is not a valid regex ({why})"));
            }
        }
        Ok(())
    }

    fn validate_executor_options(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::invalid_input(format!(
                "queue {:?}: {what}",
                self.name
            )))
        };
        let size = Value::Object(self.executor_options.clone())
            .to_string()
            .len();
        if size > MAX_EXECUTOR_OPTIONS_BYTES {
            return bad(format!(
                "executor_options must be at most {MAX_EXECUTOR_OPTIONS_BYTES} bytes as JSON (got {size})"
            ));
        }
        if let Some(v) = self.executor_options.get("maximum_jobs_per_worker") {
            let ok = v.is_null()
                || v.as_u64()
                    .is_some_and(|n| (1..=u64::from(u32::MAX)).contains(&n));
            if !ok {
                return bad(format!(
                    "executor_options.maximum_jobs_per_worker must be an integer between 1 and {} (got {v})",
                    u32::MAX
                ));
            }
        }
        Ok(())
    }

    /// Reads a row of the queues table, tolerating NULL tags/options written by other tools.
    ///
    /// # Errors
    /// When a column is missing or holds an unknown state.
    pub fn from_row(row: &Row) -> Result<Queue> {
        let state: String = col(row, "state")?;
        let tags: Option<Vec<String>> = col(row, "tags")?;
        let options: Option<Value> = col(row, "executor_options")?;
        let polling: Option<i32> = col(row, "polling_interval")?;
        let window: Option<i32> = col(row, "rate_limit_window")?;
        Ok(Queue {
            name: col(row, "name")?,
            concurrency: col(row, "concurrency")?,
            tags: tags.unwrap_or_default().into_iter().collect(),
            state: state
                .parse()
                .map_err(|e: Error| Error::unreadable_row(e.to_string()))?,
            executor: col(row, "executor")?,
            executor_options: match options {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            },
            polling_interval: Duration::from_secs(polling.unwrap_or(1).max(1) as u64),
            rate_limit: col(row, "rate_limit")?,
            rate_limit_window: window.map(|w| Duration::from_secs(w.max(0) as u64)),
            resume_at: row.try_get("resume_at").unwrap_or(None),
            eager_polling: row.try_get("eager_polling").unwrap_or(false),
        })
    }

    /// Whether a worker with `worker_tags` serves this queue: some tag regex matches some
    /// worker tag at its start (Python `re.match` semantics: anchored at the start only).
    /// Tags that are not valid regexes match nothing.
    pub fn matches_tags<'a>(
        &self,
        worker_tags: impl IntoIterator<Item = &'a String> + Clone,
    ) -> bool {
        self.tags.iter().any(|pattern| match prefix_regex(pattern) {
            Some(re) => worker_tags.clone().into_iter().any(|t| re.is_match(t)),
            None => false,
        })
    }
}

fn prefix_regex(pattern: &str) -> Option<regex::Regex> {
    compile_tag(pattern).ok()
}

/// A tag regex as matched (anchored at the start), with a bounded compiled size.
fn compile_tag(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .size_limit(TAG_REGEX_SIZE_LIMIT)
        .build()
}

fn whole_seconds(queue: &str, field: &str, d: Duration, max: u64) -> Result<i32> {
    if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > max {
        return Err(Error::invalid_input(format!(
            "queue {queue:?}: {field} must be a whole number of seconds, {} (got {})",
            crate::duration::range(Duration::from_secs(1), Duration::from_secs(max)),
            crate::duration::human(d)
        )));
    }
    Ok(d.as_secs() as i32)
}

/// The rows a declaration writes, in the order of the declare statement's parameters.
pub(crate) struct QueueColumns {
    pub tags: Vec<String>,
    pub options: Value,
    pub polling: i32,
    pub window: Option<i32>,
}

impl Queue {
    pub(crate) fn columns(&self) -> QueueColumns {
        QueueColumns {
            tags: self.tags.iter().cloned().collect(),
            options: Value::Object(self.executor_options.clone()),
            polling: self.polling_interval.as_secs() as i32,
            window: self.rate_limit_window.map(|w| w.as_secs() as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tag_matching_is_prefix_only() {
        let worker = tags(&["*", "hostname=box", "has=gpu"]);
        assert!(Queue::new("q").matches_tags(&worker));
        assert!(Queue::new("q").tags(["has=g"]).matches_tags(&worker));
        assert!(!Queue::new("q").tags(["gpu"]).matches_tags(&worker));
        assert!(Queue::new("q").tags([".*gpu$"]).matches_tags(&worker));
        assert!(!Queue::new("q")
            .tags(Vec::<String>::new())
            .matches_tags(&worker));
        assert!(!Queue::new("q").tags(["("]).matches_tags(&worker));
    }

    #[test]
    fn validation() {
        assert!(Queue::new("q").validate().is_ok());
        assert!(Queue::new("").validate().is_err());
        assert!(Queue::new("q").concurrency(0).validate().is_err());
        assert!(Queue::new("q")
            .polling_interval(Duration::from_millis(500))
            .validate()
            .is_err());
        assert!(Queue::new("q")
            .rate_limit(5, Duration::ZERO)
            .validate()
            .is_err());
        assert!(Queue::new("q")
            .rate_limit(5, Duration::from_secs(1))
            .validate()
            .is_ok());
    }

    fn message(q: Queue) -> String {
        q.validate().expect_err("should be refused").to_string()
    }

    #[test]
    fn every_setting_is_bounded_and_the_error_names_it() {
        let m = message(Queue::new("q").concurrency(i32::MAX));
        assert!(
            m.contains("concurrency") && m.contains("1024") && m.contains("2147483647"),
            "{m}"
        );
        assert!(Queue::new("q")
            .concurrency(MAX_CONCURRENCY)
            .validate()
            .is_ok());
        let m = message(Queue::new("q").polling_interval(Duration::from_secs(86_401)));
        assert!(m.contains("polling_interval") && m.contains("86400"), "{m}");
        let m = message(Queue::new("q").rate_limit(-1, Duration::from_secs(1)));
        assert!(m.contains("rate_limit") && m.contains("1000000"), "{m}");
        let m = message(Queue::new("q").rate_limit(1, Duration::from_secs(604_801)));
        assert!(
            m.contains("rate_limit_window") && m.contains("604800"),
            "{m}"
        );
        let m = message(Queue::new("q").tags(["(unclosed"]));
        assert!(
            m.contains("tag") && m.contains("(unclosed") && m.contains("regex"),
            "{m}"
        );
        let m = message(Queue::new("q").tags((0..65).map(|i| format!("t{i}"))));
        assert!(m.contains("64"), "{m}");
        let m = message(Queue::new("q").executor(""));
        assert!(m.contains("executor"), "{m}");
        let mut options = Map::new();
        options.insert("maximum_jobs_per_worker".into(), Value::from(0));
        let m = message(Queue::new("q").executor_options(options));
        assert!(m.contains("maximum_jobs_per_worker"), "{m}");
        let mut options = Map::new();
        options.insert(
            "x".into(),
            Value::String("y".repeat(MAX_EXECUTOR_OPTIONS_BYTES)),
        );
        let m = message(Queue::new("q").executor_options(options));
        assert!(m.contains("executor_options"), "{m}");
    }
}
