//! `chancy queue …`: declare, list, inspect, pause, resume and delete queues.

use super::table::time;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::args;
use super::table::{or_dash, Table};
use crate::error::{Error, Result};
use crate::queue::{Queue, PROCESS_EXECUTOR, THREADED_EXECUTOR};
use crate::Chancy;

/// The `queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Declare a queue (an existing queue is left as is unless --upsert).
    #[command(after_help = "Examples:\n  \
        chancy queue declare emails --concurrency 4 --polling-interval 1\n  \
        chancy queue declare reports --executor process --tags 'has=gpu' --upsert\n  \
        chancy queue declare api --rate-limit 10 --rate-limit-window 60 --eager-polling")]
    Declare(DeclareArgs),
    /// Show every queue as a table.
    #[command(after_help = "Example:\n  chancy queue list")]
    List,
    /// Print one queue as JSON.
    #[command(after_help = "Example:\n  chancy queue get emails | jq .concurrency")]
    Get {
        /// The queue name.
        name: String,
    },
    /// Stop workers claiming from a queue, until resumed or until --resume-at / --resume-in.
    #[command(after_help = "Examples:\n  \
        chancy queue pause emails\n  \
        chancy queue pause emails --resume-in 600\n  \
        chancy queue pause emails --resume-at 2030-01-01T08:00:00Z")]
    Pause(PauseArgs),
    /// Resume a paused queue.
    #[command(after_help = "Example:\n  chancy queue resume emails")]
    Resume {
        /// The queue name.
        name: String,
    },
    /// Delete a queue and (unless --keep-jobs) every job in it. Asks first unless --yes.
    #[command(after_help = "Examples:\n  \
        chancy queue delete old-queue            (asks for confirmation on a terminal)\n  \
        chancy queue delete old-queue --yes --keep-jobs")]
    Delete(DeleteArgs),
}

/// Arguments of `queue declare`.
#[derive(Debug, Args)]
pub struct DeclareArgs {
    /// The queue name.
    pub name: String,
    /// Jobs run at once per worker [default: the executor's default].
    #[arg(long, short = 'c')]
    pub concurrency: Option<i32>,
    /// `thread`, `process`, or a Python executor class path.
    #[arg(long, short = 'e', default_value = "thread")]
    pub executor: String,
    /// Regexes matched against worker tags (repeatable) [default: .*].
    #[arg(long = "tags", short = 't', value_name = "T")]
    pub tags: Vec<String>,
    /// Seconds between polls of an idle worker (whole seconds).
    #[arg(long, short = 'p', default_value_t = crate::queue::DEFAULT_POLLING_INTERVAL.as_secs(), value_name = "S",
          value_parser = super::args::polling_interval)]
    pub polling_interval: u64,
    /// Jobs allowed per --rate-limit-window over all workers.
    #[arg(long, short = 'r', requires = "rate_limit_window", value_name = "N")]
    pub rate_limit: Option<i32>,
    /// The rate-limit window in whole seconds.
    #[arg(long, short = 'w', requires = "rate_limit", value_name = "S",
          value_parser = super::args::rate_limit_window)]
    pub rate_limit_window: Option<u64>,
    /// Poll again as soon as a job of this queue finishes.
    #[arg(long)]
    pub eager_polling: bool,
    /// Overwrite every setting of an existing queue of that name.
    #[arg(long)]
    pub upsert: bool,
}

/// Arguments of `queue pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The queue name.
    pub name: String,
    /// Resume by itself at this RFC 3339 time.
    #[arg(long, value_parser = args::rfc3339, conflicts_with = "resume_in", value_name = "TIME")]
    pub resume_at: Option<DateTime<Utc>>,
    /// Resume by itself after this many seconds.
    #[arg(long, value_parser = args::seconds, value_name = "S")]
    pub resume_in: Option<Duration>,
}

/// Arguments of `queue delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The queue name.
    pub name: String,
    /// Keep the queue's jobs (they wait until a queue of that name exists again).
    #[arg(long)]
    pub keep_jobs: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub(super) fn run(chancy: &Chancy, command: &QueueCommand) -> Result<i32> {
    match command {
        QueueCommand::Declare(a) => declare(chancy, a),
        QueueCommand::List => list(chancy),
        QueueCommand::Get { name } => {
            let queue = chancy.get_queue(name)?;
            super::print_json(&crate::json::queue_fields(&queue));
            Ok(0)
        }
        QueueCommand::Pause(a) => {
            let at = match (a.resume_at, a.resume_in) {
                (Some(at), _) => Some(at),
                (None, Some(d)) => Some(args::from_now(chancy, d)?),
                (None, None) => None,
            };
            chancy.pause_queue(&a.name, at)?;
            match at {
                Some(at) => outln!("paused queue {:?} until {}", a.name, time(at)),
                None => outln!("paused queue {:?}", a.name),
            }
            Ok(0)
        }
        QueueCommand::Resume { name } => {
            chancy.resume_queue(name)?;
            outln!("resumed queue {name:?}");
            Ok(0)
        }
        QueueCommand::Delete(a) => delete(chancy, a),
    }
}

/// The executor class path for `thread`, `process` or a class path given as is.
pub(crate) fn executor_path(executor: &str) -> String {
    match executor {
        "thread" | "threaded" => THREADED_EXECUTOR.to_string(),
        "process" => PROCESS_EXECUTOR.to_string(),
        other => other.to_string(),
    }
}

fn executor_short(path: &str) -> &str {
    match path {
        THREADED_EXECUTOR => "thread",
        PROCESS_EXECUTOR => "process",
        other => other,
    }
}

fn declare(chancy: &Chancy, a: &DeclareArgs) -> Result<i32> {
    let mut queue = Queue::new(&a.name)
        .executor(executor_path(&a.executor))
        .polling_interval(Duration::from_secs(a.polling_interval))
        .eager_polling(a.eager_polling);
    if let Some(c) = a.concurrency {
        queue = queue.concurrency(c);
    }
    if !a.tags.is_empty() {
        queue = queue.tags(a.tags.iter().cloned());
    }
    if let (Some(limit), Some(window)) = (a.rate_limit, a.rate_limit_window) {
        queue = queue.rate_limit(limit, Duration::from_secs(window));
    }
    let stored = if a.upsert {
        chancy.declare_upsert(&queue)?
    } else {
        chancy.declare(&queue)?
    };
    if !a.upsert && stored != queue {
        outln!(
            "queue {:?} already exists with other settings; left unchanged (use --upsert to overwrite)",
            a.name
        );
    } else {
        outln!("declared queue {:?}", a.name);
    }
    Ok(0)
}

fn list(chancy: &Chancy) -> Result<i32> {
    let listing = chancy.list_queues()?;
    let queues = listing.queues;
    let mut t = Table::new(&[
        "NAME",
        "STATE",
        "CONCURRENCY",
        "EXECUTOR",
        "TAGS",
        "POLLING",
        "RATE LIMIT",
        "EAGER",
        "RESUME AT",
    ]);
    for q in &queues {
        t.row(vec![
            q.name.clone(),
            q.state.to_string(),
            or_dash(q.concurrency),
            executor_short(&q.executor).to_string(),
            q.tags.iter().cloned().collect::<Vec<_>>().join(","),
            format!("{}s", q.polling_interval.as_secs()),
            match (q.rate_limit, q.rate_limit_window) {
                (Some(n), Some(w)) => format!("{n}/{}s", w.as_secs()),
                (Some(n), None) => n.to_string(),
                _ => "-".into(),
            },
            if q.eager_polling { "yes" } else { "no" }.into(),
            or_dash(q.resume_at.map(time)),
        ]);
    }
    if t.is_empty() && listing.unreadable.is_empty() {
        outln!("no queues (declare one with `chancy queue declare NAME`)");
    } else if !t.is_empty() {
        t.print();
    }
    // Rows another client wrote that chancy cannot read: named on stderr, so the readable
    // ones above still list (and scripts reading stdout see only well-formed rows).
    for bad in &listing.unreadable {
        eprintln!(
            "warning: queue {:?} is unreadable and not listed (workers skip it): {}",
            bad.name, bad.reason
        );
    }
    Ok(0)
}

fn delete(chancy: &Chancy, a: &DeleteArgs) -> Result<i32> {
    chancy.get_queue(&a.name)?;
    if !a.yes && !confirm(&a.name, a.keep_jobs)? {
        outln!("not deleted");
        return Ok(1);
    }
    chancy.delete_queue(&a.name, !a.keep_jobs)?;
    let jobs = if a.keep_jobs {
        "its jobs were kept"
    } else {
        "and its jobs"
    };
    outln!("deleted queue {:?} ({jobs})", a.name);
    Ok(0)
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm(name: &str, keep_jobs: bool) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::invalid_input(format!(
            "refusing to delete queue {name:?} without confirmation: stdin is not a terminal; \
             pass --yes"
        )));
    }
    let what = if keep_jobs {
        "(its jobs are kept)"
    } else {
        "and every job in it"
    };
    eprint!("Delete queue {name:?} {what}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::invalid_input(format!("cannot read the confirmation: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_shorthands_map_to_python_classes() {
        assert_eq!(executor_path("thread"), THREADED_EXECUTOR);
        assert_eq!(executor_path("process"), PROCESS_EXECUTOR);
        assert_eq!(executor_path("my.Executor"), "my.Executor");
        assert_eq!(executor_short(PROCESS_EXECUTOR), "process");
    }

    #[test]
    fn queue_json_has_python_field_names() {
        let v = crate::json::queue_json(&Queue::new("q").concurrency(3));
        assert_eq!(v["name"], "q");
        assert_eq!(v["concurrency"], 3);
        assert_eq!(v["executor"], THREADED_EXECUTOR);
        assert_eq!(v["tags"], serde_json::json!([".*"]));
        assert_eq!(v["polling_interval"], 5);
    }
}
