//! The cron plugin itself (needs the `cron` feature: croner, chrono-tz).

use crate::unnamed::Unnamed;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::app::in_transaction;
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::migrate::Migrations;
use crate::worker::plugin::{Plugin, PluginContext};

use super::next_run::{parse_zone, CronExpr};
use super::CRON_MIGRATIONS;

/// Default for [`Cron::poll_interval`]: 60 s, as upstream.
pub const DEFAULT_CRON_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The time zone schedules use unless told otherwise (upstream's default).
pub const DEFAULT_TIMEZONE: &str = "Etc/UTC";

/// The cron plugin (`chancy.cron`, migration key `cron`). Not leader-only: every worker
/// that has it polls for due schedules.
///
/// ```no_run
/// use chancy::{Chancy, Job};
/// use chancy::plugins::Cron;
///
/// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres")
///     .plugin(Cron::default())
///     .build()?;
/// chancy.migrate()?;
/// let job = Job::new("myapp.report").unique_key("daily-report");
/// Cron::schedule(&chancy, "0 9 * * 1-5", &[job], "Europe/Paris")?;
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Cron {
    poll_interval: Duration,
}

impl Default for Cron {
    fn default() -> Self {
        Cron {
            poll_interval: DEFAULT_CRON_POLL_INTERVAL,
        }
    }
}

/// A stored schedule, as returned by [`Cron::get_schedules`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CronSchedule {
    /// The job's unique key (the schedule's primary key).
    pub unique_key: String,
    /// The job pushed at each run.
    pub job: Job,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone the expression is evaluated in.
    pub timezone: String,
    /// When it last fired, if ever.
    pub last_run: Option<DateTime<Utc>>,
    /// When it fires next.
    pub next_run: DateTime<Utc>,
}

impl Cron {
    /// A cron plugin polling every [`DEFAULT_CRON_POLL_INTERVAL`].
    pub fn new() -> Cron {
        Cron::default()
    }

    /// How often due schedules are looked for (default 60 s). A schedule fires at most this
    /// late.
    pub fn poll_interval(mut self, interval: Duration) -> Cron {
        self.poll_interval = interval;
        self
    }

    /// Schedules `jobs` to be pushed whenever `cron` fires in time zone `timezone` (an IANA
    /// name such as `Europe/Paris`; [`DEFAULT_TIMEZONE`] for UTC). Scheduling a unique key
    /// again replaces its expression, job and zone but keeps `last_run`.
    ///
    /// # Errors
    /// An invalid-input error when a job has no `unique_key`, the expression or the zone is
    /// unusable, or a job is invalid (nothing is written); a database error otherwise.
    pub fn schedule(chancy: &Chancy, cron: &str, jobs: &[Job], timezone: &str) -> Result<()> {
        if jobs
            .iter()
            .any(|j| j.unique_key.as_deref().unwrap_or("").is_empty())
        {
            return Err(Error::invalid_input(
                "Scheduling jobs for execution on a cron-like schedule requires that each job \
                 has a unique_key set.",
            ));
        }
        jobs.iter().try_for_each(Job::validate)?;
        let tz = parse_zone(timezone)?;
        let expr = CronExpr::parse(cron)?;
        expr.next_run(Utc::now(), tz)?; // refuse an expression that never fires, before any I/O
        let sql = chancy.prefix().render(UPSERT);
        in_transaction(chancy, "scheduling cron jobs", |tx| {
            // The first run is computed from the database clock, like every later one.
            let now: DateTime<Utc> = tx
                .query_one_unnamed("SELECT NOW()", &[])
                .map_err(|e| Error::database("reading the database clock", e))?
                .get(0);
            let next_run = expr.next_run(now, tz)?;
            for job in jobs {
                tx.execute_unnamed(
                    sql.as_str(),
                    &[&job.unique_key, &cron, &job.pack(), &timezone, &next_run],
                )
                .map_err(|e| Error::database("scheduling cron jobs", e))?;
            }
            Ok(())
        })
    }

    /// Removes the schedules with these unique keys; returns how many existed.
    ///
    /// # Errors
    /// A database error.
    pub fn unschedule(chancy: &Chancy, unique_keys: &[&str]) -> Result<u64> {
        let sql = chancy.prefix().render(DELETE);
        let mut conn = chancy.connection()?;
        conn.client
            .execute_unnamed(sql.as_str(), &[&unique_keys])
            .map_err(|e| Error::database("unscheduling cron jobs", e))
    }

    /// The stored schedules by unique key: all of them, or those with the given keys.
    ///
    /// # Errors
    /// A database error, or an invalid-input error for a stored job that cannot be read.
    pub fn get_schedules(
        chancy: &Chancy,
        unique_keys: Option<&[&str]>,
    ) -> Result<BTreeMap<String, CronSchedule>> {
        let sql = chancy.prefix().render(SELECT);
        let keys: Option<Vec<&str>> = unique_keys.map(<[&str]>::to_vec);
        let mut conn = chancy.connection()?;
        let rows = conn
            .client
            .query_unnamed(sql.as_str(), &[&keys])
            .map_err(|e| Error::database("reading cron schedules", e))?;
        rows.iter()
            .map(|row| {
                let schedule = CronSchedule {
                    unique_key: row.get(0),
                    job: Job::unpack(&row.get::<_, Value>(1))?,
                    cron: row.get(2),
                    timezone: row.get(3),
                    last_run: row.get(4),
                    next_run: row.get(5),
                };
                Ok((schedule.unique_key.clone(), schedule))
            })
            .collect()
    }

    /// One pass of the service: pushes the job of every due schedule not locked by another
    /// worker and moves its `next_run` on, all in one transaction. A schedule whose
    /// expression or time zone is unusable is logged and skipped (it stays due). Returns
    /// how many schedules fired.
    ///
    /// # Errors
    /// A database error (the whole pass is rolled back and retried).
    pub fn run_due(chancy: &Chancy) -> Result<usize> {
        let select = chancy.prefix().render(SELECT_DUE);
        let update = chancy.prefix().render(UPDATE_RUN);
        in_transaction(chancy, "running cron schedules", |tx| {
            // Due-ness and the next run are computed on the database clock.
            let rows = tx
                .query_unnamed(select.as_str(), &[])
                .map_err(|e| Error::database("selecting due cron schedules", e))?;
            let mut fired = 0;
            for row in rows {
                let (key, cron, job, zone): (String, String, Value, String) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                let now: DateTime<Utc> = row.get(4);
                let (next, job) = match due_row(&cron, &zone, &job, now) {
                    Ok(ready) => ready,
                    Err(err) => {
                        log::error!(
                            "Skipping cron job {key:?}, unable to compute its next run from \
                             {cron:?} in timezone {zone:?}: {err}"
                        );
                        continue;
                    }
                };
                chancy.push_many_in(tx, std::slice::from_ref(&job))?;
                tx.execute_unnamed(update.as_str(), &[&next, &now, &key])
                    .map_err(|e| Error::database("updating a cron schedule", e))?;
                log::debug!("pushed scheduled cron job {key:?}");
                fired += 1;
            }
            Ok(fired)
        })
    }
}

/// The next run and the job of a due row, or why it cannot run.
fn due_row(
    cron: &str,
    zone: &str,
    job: &Value,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, Job)> {
    let next = CronExpr::parse(cron)?.next_run(now, parse_zone(zone)?)?;
    let job = Job::unpack(job)?;
    job.validate()?;
    Ok((next, job))
}

impl Plugin for Cron {
    fn identifier(&self) -> &'static str {
        "chancy.cron"
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&CRON_MIGRATIONS)
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["cron"]
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.poll_interval)
    }

    fn run_once(&self, ctx: &PluginContext) -> Result<()> {
        Cron::run_due(ctx.chancy()).map(|_| ())
    }
}

/// Next run of `cron` in `timezone` after `now`, as the plugin computes it.
///
/// # Errors
/// An invalid-input error for an unusable expression or zone.
pub fn next_run(cron: &str, timezone: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    CronExpr::parse(cron)?.next_run(now, parse_zone(timezone)?)
}

const UPSERT: &str = r#"
INSERT INTO "{prefix}cron" (unique_key, cron, job, timezone, next_run)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (unique_key) DO UPDATE SET
    cron = EXCLUDED.cron,
    job = EXCLUDED.job,
    timezone = EXCLUDED.timezone,
    next_run = EXCLUDED.next_run"#;

const DELETE: &str = r#"DELETE FROM "{prefix}cron" WHERE unique_key = ANY($1)"#;

const SELECT: &str = r#"
SELECT unique_key, job, cron, timezone, last_run, next_run
FROM "{prefix}cron"
WHERE ($1::text[] IS NULL OR unique_key = ANY($1))
ORDER BY unique_key"#;

const SELECT_DUE: &str = r#"
SELECT unique_key, cron, job, timezone, NOW() AS now
FROM "{prefix}cron"
WHERE next_run <= NOW()
FOR UPDATE SKIP LOCKED"#;

const UPDATE_RUN: &str = r#"
UPDATE "{prefix}cron" SET next_run = $1, last_run = $2 WHERE unique_key = $3"#;
