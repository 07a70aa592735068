//! `chancy cron …`: schedule, unschedule and list cron jobs (the `cron` plugin's table,
//! created by `chancy migrate --plugin cron`).

use super::table::time;
use chrono::Utc;
use clap::{Args, Subcommand};

use super::args;
use super::plugins::ensure_keys;
use super::table::{or_dash, Table};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::plugins::cron::DEFAULT_TIMEZONE;
use crate::plugins::Cron;
use crate::plugins::CRON_MIGRATIONS;
use crate::Chancy;

/// The `cron` subcommands.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Store (or replace) a schedule: push FUNC whenever EXPR fires. Workers started with
    /// the cron plugin (`worker start --plugins leadership,cron,…`) push the jobs.
    #[command(
        after_help = "EXPR has 5 fields (minute hour day-of-month month day-of-week) \
or 6 with seconds last (croniter style), e.g. '*/5 * * * *', or a nickname such as @hourly. The unique key names the schedule: \
scheduling the same key again replaces it, and no second copy of its job is pushed while one \
is still waiting or running.\n\n\
Examples:\n  \
chancy migrate --plugin cron\n  \
chancy cron schedule '0 9 * * 1-5' myapp.report --unique-key daily-report \
--timezone Europe/Paris\n  \
chancy cron schedule '*/5 * * * *' chancy.builtin.echo --unique-key ping \
--kwargs '{\"ping\": true}'"
    )]
    Schedule(ScheduleArgs),
    /// Remove schedules by unique key (exit 1 if one of them did not exist).
    #[command(after_help = "Example:\n  chancy cron unschedule daily-report ping")]
    Unschedule {
        /// Unique keys of the schedules to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Show the schedules as a table.
    #[command(after_help = "Example:\n  chancy cron list")]
    List,
}

/// Arguments of `cron schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The cron expression, e.g. `*/5 * * * *`.
    pub expr: String,
    /// The handler name of the job pushed at each run.
    pub func: String,
    /// The schedule's key and its job's unique key (required).
    #[arg(long, short = 'u', value_name = "K")]
    pub unique_key: Option<String>,
    /// The queue of the pushed jobs.
    #[arg(long, default_value = crate::job::DEFAULT_QUEUE)]
    pub queue: String,
    /// Keyword arguments, a JSON object.
    #[arg(long, short = 'k', value_name = "JSON")]
    pub kwargs: Option<String>,
    /// Higher runs first.
    #[arg(long, short = 'p', default_value_t = crate::job::DEFAULT_PRIORITY, allow_negative_numbers = true)]
    pub priority: i32,
    /// Runs allowed before a pushed job fails for good.
    #[arg(long, short = 'm', default_value_t = crate::job::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// IANA time zone the expression is evaluated in, e.g. `Europe/Paris`.
    #[arg(long, default_value = DEFAULT_TIMEZONE, value_name = "TZ")]
    pub timezone: String,
}

pub(super) fn run(chancy: &Chancy, command: &CronCommand) -> Result<i32> {
    match command {
        CronCommand::Schedule(a) => schedule(chancy, a),
        CronCommand::Unschedule { keys } => unschedule(chancy, keys),
        CronCommand::List => list(chancy),
    }
}

fn schedule(chancy: &Chancy, a: &ScheduleArgs) -> Result<i32> {
    let key = a
        .unique_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Error::invalid_input(
                "cron schedule needs --unique-key K: the schedule is stored under its job's \
                 unique key",
            )
        })?;
    let mut job = Job::new(&a.func)
        .queue(&a.queue)
        .priority(a.priority)
        .max_attempts(a.max_attempts)
        .unique_key(key);
    if let Some(k) = &a.kwargs {
        job = job.kwargs(args::json_object("kwargs", k)?);
    }
    // Validate the expression, zone and job before touching the database.
    crate::plugins::cron::next_run(&a.expr, &a.timezone, Utc::now())?;
    job.validate()?;
    ensure_keys(chancy, &[CRON_MIGRATIONS.key()])?;
    Cron::schedule(chancy, &a.expr, &[job], &a.timezone)?;
    let next = Cron::get_schedules(chancy, Some(&[key]))?
        .remove(key)
        .map_or_else(|| "-".to_string(), |s| time(s.next_run));
    outln!(
        "scheduled {key:?}: {} {:?} ({}), next run {next}",
        a.func,
        a.expr,
        a.timezone
    );
    Ok(0)
}

fn unschedule(chancy: &Chancy, keys: &[String]) -> Result<i32> {
    ensure_keys(chancy, &[CRON_MIGRATIONS.key()])?;
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let existing = Cron::get_schedules(chancy, Some(&keys))?;
    Cron::unschedule(chancy, &keys)?;
    for key in existing.keys() {
        outln!("unscheduled {key:?}");
    }
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| !existing.contains_key(**k))
        .map(|k| format!("{k:?}"))
        .collect();
    if missing.is_empty() {
        Ok(0)
    } else {
        Err(Error::not_found(format!(
            "no cron schedule with unique key {}",
            missing.join(", ")
        )))
    }
}

fn list(chancy: &Chancy) -> Result<i32> {
    ensure_keys(chancy, &[CRON_MIGRATIONS.key()])?;
    let schedules = Cron::get_schedules(chancy, None)?;
    let mut t = Table::new(&["KEY", "CRON", "TIMEZONE", "NEXT RUN", "LAST RUN", "FUNC"]);
    for s in schedules.values() {
        t.row(vec![
            s.unique_key.clone(),
            s.cron.clone(),
            s.timezone.clone(),
            time(s.next_run),
            or_dash(s.last_run.map(time)),
            s.job.func().to_string(),
        ]);
    }
    if t.is_empty() {
        outln!("no cron schedules");
    } else {
        t.print();
    }
    Ok(0)
}
