//! `chancy job …`: push, inspect, list, cancel, retry and wait for jobs.

use super::table::time;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::args;
use super::table::{or_dash, truncate, Table};
use crate::app::{JobFilter, WaitOptions};
use crate::error::{Error, Result};
use crate::job::{Job, JobState, QueuedJob, Reference};
use crate::Chancy;
use crate::JobOutcome;

/// Exit code of `job wait` when the job succeeded.
pub const WAIT_SUCCEEDED: i32 = 0;
/// Exit code of `job wait` when the job failed (or was cancelled, which fails it).
pub const WAIT_FAILED: i32 = 1;
/// Exit code of `job wait` when `--timeout` passed first.
pub const WAIT_TIMEOUT: i32 = 2;
/// Exit code of `job cancel|retry|delete` when a job does not exist.
pub const EXIT_NOT_FOUND: i32 = 3;
/// Exit code of `job cancel|retry|delete` when the change does not apply to a job's
/// current state (e.g. cancelling a finished job, retrying a running one).
pub const EXIT_NOT_APPLICABLE: i32 = 4;
/// Exit code of `job retry` when another unfinished job holds the job's unique key.
pub const EXIT_CONFLICT: i32 = 5;

/// The `job` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Push a job and print its id.
    #[command(after_help = "Examples:\n  \
        chancy job push chancy.builtin.echo --kwargs '{\"hello\": \"world\"}'\n  \
        chancy job push myapp.send_email --queue emails --priority 5 --max-attempts 3\n  \
        chancy job push chancy.builtin.sleep --kwargs '{\"seconds\": 2}' --delay 30\n  \
        chancy job push myapp.report --unique-key report-2025-06 \
--scheduled-at 2025-06-01T08:00:00Z")]
    Push(PushArgs),
    /// Print a job (every column) as JSON.
    #[command(after_help = "Example:\n  chancy job get 0190b6c4-… | jq .state")]
    Get {
        /// The job id.
        id: String,
    },
    /// Show jobs as a table, newest first.
    #[command(after_help = "Examples:\n  \
        chancy job list\n  \
        chancy job list --queue emails --state failed --limit 20\n  \
        chancy job list --func chancy.builtin.sleep")]
    List(ListArgs),
    /// Cancel waiting or running jobs: each is marked failed and a worker running it is
    /// told to stop. Finished jobs are left as they are (exit 4).
    #[command(after_help = concat!("Example:\n  chancy job cancel 0190b6c4-…\n\n",
        "Exit codes (with several ids: the highest of them):\n  ",
        "0  done\n  1  an error, printed as `error: …`\n  3  no such job\n  ",
        "4  the job already finished (nothing changed)"))]
    Cancel {
        /// The job ids.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<String>,
    },
    /// Run finished jobs again (attempts reset to 0, errors kept). Running jobs and jobs
    /// still waiting for their turn are left as they are (exit 4).
    #[command(after_help = RETRY_HELP)]
    Retry {
        /// The job ids.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<String>,
    },
    /// Delete jobs outright, in any state (a running execution's outcome is dropped).
    #[command(after_help = concat!("Example:\n  chancy job delete 0190b6c4-…\n\n",
        "Exit codes (with several ids: the highest of them):\n  ",
        "0  done\n  1  an error, printed as `error: …`\n  3  no such job"))]
    Delete {
        /// The job ids.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<String>,
    },
    /// Wait until a job finishes. Exit code: 0 succeeded, 1 failed or cancelled, 2 timed out.
    #[command(after_help = "Exit codes:\n  \
        0  the job succeeded\n  \
        1  the job failed or was cancelled (or another error, printed as `error: …`)\n  \
        2  --timeout passed first\n\n\
        Examples:\n  \
        chancy job wait 0190b6c4-…\n  \
        id=$(chancy job push chancy.builtin.noop) && chancy job wait \"$id\" --timeout 30")]
    Wait(WaitArgs),
}

/// Arguments of `job push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The handler name, e.g. `myapp.tasks.send_email` or `chancy.builtin.noop`.
    pub func: String,
    /// The queue.
    #[arg(long, default_value = crate::job::DEFAULT_QUEUE)]
    pub queue: String,
    /// Keyword arguments, a JSON object.
    #[arg(long, short = 'k', value_name = "JSON")]
    pub kwargs: Option<String>,
    /// Higher runs first.
    #[arg(long, short = 'p', default_value_t = crate::job::DEFAULT_PRIORITY, allow_negative_numbers = true)]
    pub priority: i32,
    /// Runs allowed before the job fails for good.
    #[arg(long, short = 'm', default_value_t = crate::job::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// While a job with this key is unfinished, pushing another returns the existing id.
    #[arg(long, short = 'u', value_name = "K")]
    pub unique_key: Option<String>,
    /// Do not run before this RFC 3339 time.
    #[arg(long, value_parser = args::rfc3339, conflicts_with = "delay", value_name = "TIME")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Do not run before this many seconds from now.
    #[arg(long, value_parser = args::seconds, value_name = "S")]
    pub delay: Option<Duration>,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub meta: Option<String>,
}

/// Arguments of `job list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs of this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only jobs in this state: pending, running, retrying, succeeded or failed.
    #[arg(long, short = 's', value_parser = parse_state)]
    pub state: Option<JobState>,
    /// Only jobs of this handler name.
    #[arg(long, short = 'f')]
    pub func: Option<String>,
    /// At most this many jobs.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: u32,
}

/// Arguments of `job wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The job id.
    pub id: String,
    /// Give up after this many seconds (exit code 2) [default: wait forever].
    #[arg(long, short = 't', value_parser = args::seconds, value_name = "S")]
    pub timeout: Option<Duration>,
}

fn parse_state(s: &str) -> std::result::Result<JobState, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub(super) fn run(chancy: &Chancy, command: &JobCommand) -> Result<i32> {
    match command {
        JobCommand::Push(a) => push(chancy, a),
        JobCommand::Get { id } => {
            let job = get(chancy, id)?;
            super::print_json(&crate::json::job_fields(&job));
            Ok(0)
        }
        JobCommand::List(a) => list(chancy, a),
        JobCommand::Cancel { ids } => change(ids, "cancelled", |r| chancy.cancel_jobs(r)),
        JobCommand::Retry { ids } => change(ids, "will run again", |r| chancy.retry_jobs(r)),
        JobCommand::Delete { ids } => change(ids, "deleted", |r| chancy.purge_jobs(r)),
        JobCommand::Wait(a) => wait(chancy, a),
    }
}

fn push(chancy: &Chancy, a: &PushArgs) -> Result<i32> {
    let mut job = Job::new(&a.func)
        .queue(&a.queue)
        .priority(a.priority)
        .max_attempts(a.max_attempts);
    if let Some(k) = &a.kwargs {
        job = job.kwargs(args::json_object("kwargs", k)?);
    }
    if let Some(m) = &a.meta {
        job = job.meta(args::json_object("meta", m)?);
    }
    if let Some(key) = &a.unique_key {
        job = job.unique_key(key);
    }
    let delayed = a.delay.map(|d| args::from_now(chancy, d)).transpose()?;
    if let Some(at) = a.scheduled_at.or(delayed) {
        job = job.scheduled_at(at);
    }
    let r = chancy.push(&job)?;
    outln!("{r}");
    warn_if_undeclared(chancy, &a.queue);
    Ok(0)
}

/// The library accepts a push to a queue nobody declared (as upstream does); the job then
/// waits until someone declares the queue. Say so on stderr, after the id on stdout.
fn warn_if_undeclared(chancy: &Chancy, queue: &str) {
    match chancy.get_queue(queue) {
        Err(e) if e.is_not_found() => eprintln!(
            "warning: queue {queue:?} is not declared, so no worker serves it yet; the job \
             waits until it is (`chancy queue declare {queue}`)"
        ),
        _ => {}
    }
}

fn reference(id: &str) -> Result<Reference> {
    id.trim()
        .parse()
        .map_err(|_| Error::invalid_input(format!("{id:?} is not a job id (a UUID)")))
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("job {} not found", id.trim()))
}

fn get(chancy: &Chancy, id: &str) -> Result<QueuedJob> {
    chancy
        .get_job(&reference(id)?)?
        .ok_or_else(|| not_found(id))
}

fn list(chancy: &Chancy, a: &ListArgs) -> Result<i32> {
    let jobs = chancy.list_jobs(&JobFilter {
        queue: a.queue.clone(),
        state: a.state,
        func: a.func.clone(),
        limit: a.limit,
    })?;
    let mut t = Table::new(&[
        "ID",
        "STATE",
        "QUEUE",
        "FUNC",
        "ATTEMPTS",
        "CREATED",
        "SCHEDULED",
        "LAST ERROR",
    ]);
    for j in &jobs {
        t.row(vec![
            j.id.to_string(),
            j.state.to_string(),
            j.queue.clone(),
            j.func.clone(),
            format!("{}/{}", j.attempts, j.max_attempts),
            time(j.created_at),
            time(j.scheduled_at),
            or_dash(
                j.errors
                    .last()
                    .map(|e| truncate(first_line(&e.traceback), 60)),
            ),
        ]);
    }
    if t.is_empty() {
        outln!("no jobs");
    } else {
        t.print();
    }
    Ok(0)
}

/// Applies a library state change to `ids` and renders each outcome: done on stdout,
/// the others as `error: job …: reason` on stderr. Returns the highest exit code.
fn change(
    ids: &[String],
    done: &str,
    apply: impl FnOnce(&[Reference]) -> Result<Vec<(Reference, JobOutcome)>>,
) -> Result<i32> {
    let refs = ids
        .iter()
        .map(|id| reference(id))
        .collect::<Result<Vec<_>>>()?;
    let mut code = 0;
    for (r, outcome) in apply(&refs)? {
        let this = match &outcome {
            JobOutcome::Done => {
                outln!("job {r} {done}");
                0
            }
            JobOutcome::NotFound => {
                eprintln!("error: job {r} not found");
                EXIT_NOT_FOUND
            }
            JobOutcome::NotApplicable { .. } => {
                eprintln!("error: job {r}: {outcome}");
                EXIT_NOT_APPLICABLE
            }
            _ => {
                eprintln!("error: job {r}: {outcome}");
                EXIT_CONFLICT
            }
        };
        code = code.max(this);
    }
    Ok(code)
}

const RETRY_HELP: &str = concat!(
    "Example:\n  chancy job retry 0190b6c4-…\n\n",
    "Exit codes (with several ids: the highest of them):\n  ",
    "0  done\n  1  an error, printed as `error: …`\n  3  no such job\n  ",
    "4  the job is running or has not finished yet (nothing changed)\n  ",
    "5  another unfinished job holds the same unique_key (it is named)"
);

fn wait(chancy: &Chancy, a: &WaitArgs) -> Result<i32> {
    let r = reference(&a.id)?;
    if chancy.get_job(&r)?.is_none() {
        return Err(not_found(&a.id));
    }
    let options = WaitOptions {
        interval: Duration::from_millis(100),
        timeout: a.timeout,
        ..WaitOptions::default()
    };
    let job = match chancy.wait_for_job_with(&r, &options) {
        Ok(Some(job)) => job,
        Ok(None) => {
            return Err(Error::not_found(format!(
                "job {r} was deleted while waiting"
            )))
        }
        Err(e) if e.is_timeout() => {
            let state = chancy
                .get_job(&r)?
                .map_or_else(|| "gone".to_string(), |j| j.state.to_string());
            eprintln!("error: job {r} did not finish in time (state: {state})");
            return Ok(WAIT_TIMEOUT);
        }
        Err(e) => return Err(e),
    };
    match job.state {
        JobState::Succeeded => {
            outln!("job {r} succeeded");
            Ok(WAIT_SUCCEEDED)
        }
        _ => {
            let why = job.errors.last().map_or_else(
                || " (cancelled)".to_string(),
                |e| format!(": {}", first_line(&e.traceback)),
            );
            outln!("job {r} failed{why}");
            Ok(WAIT_FAILED)
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
