//! Reprioritize (upstream's `Reprioritize`): raises the priority of waiting jobs matching a
//! [`Rule`] (e.g. old ones), on the leader, once per cycle.
//!
//! A cycle reads the largest job id first, then pages through matching `pending`/`retrying`
//! jobs by id (`id > last`, `id <= upper bound`), one transaction per batch, until a batch
//! comes back empty. So every matching job is raised at most once per cycle, jobs pushed
//! during the cycle wait for the next one, and the cycle always ends.

use crate::unnamed::Unnamed;
use std::time::Duration;

use uuid::Uuid;

use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::worker::plugin::{Plugin, PluginContext};

use super::leadership::LEADERSHIP;
use super::rules::Rule;

/// The identifier of [`Reprioritize`].
pub const REPRIORITIZE: &str = "chancy.reprioritize";
/// Default [`ReprioritizeBuilder::check_interval`]: 300 s, as upstream.
pub const DEFAULT_REPRIORITIZE_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// Default [`ReprioritizeBuilder::priority_increase`]: 1.
pub const DEFAULT_PRIORITY_INCREASE: i32 = 1;
/// Default [`ReprioritizeBuilder::batch_size`]: 1000.
pub const DEFAULT_REPRIORITIZE_BATCH_SIZE: i64 = 1000;

/// Raises the priority of `pending`/`retrying` jobs matching its rule by `priority_increase`
/// every `check_interval`, on the leader. Identifier `chancy.reprioritize`; needs
/// `chancy.leadership`; not in the default set.
///
/// ```
/// use std::time::Duration;
/// use chancy::plugins::{Reprioritize, Rule};
/// let plugin = Reprioritize::builder(Rule::age().gt(600))
///     .check_interval(Duration::from_secs(60))
///     .priority_increase(5)
///     .build()?;
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reprioritize {
    rule: Rule,
    check_interval: Duration,
    priority_increase: i32,
    batch_size: i64,
}

/// Configures a [`Reprioritize`]. Created by [`Reprioritize::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct ReprioritizeBuilder {
    inner: Reprioritize,
}

impl ReprioritizeBuilder {
    /// How often a cycle runs (default 300 s).
    pub fn check_interval(mut self, d: Duration) -> Self {
        self.inner.check_interval = d;
        self
    }

    /// How much each matching job's priority grows per cycle (default 1).
    pub fn priority_increase(mut self, n: i32) -> Self {
        self.inner.priority_increase = n;
        self
    }

    /// Jobs updated per transaction (default 1000; at least 1).
    pub fn batch_size(mut self, n: i64) -> Self {
        self.inner.batch_size = n;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    /// A configuration error when `batch_size < 1` or `check_interval` is zero.
    pub fn build(self) -> Result<Reprioritize> {
        if self.inner.batch_size < 1 {
            return Err(Error::config(format!(
                "Reprioritize batch_size must be at least 1, not {}",
                self.inner.batch_size
            )));
        }
        if self.inner.check_interval.is_zero() {
            return Err(Error::config(
                "Reprioritize check_interval must be positive",
            ));
        }
        Ok(self.inner)
    }
}

impl Reprioritize {
    /// Starts configuring a reprioritizer for jobs matching `rule`.
    pub fn builder(rule: Rule) -> ReprioritizeBuilder {
        ReprioritizeBuilder {
            inner: Reprioritize {
                rule,
                check_interval: DEFAULT_REPRIORITIZE_CHECK_INTERVAL,
                priority_increase: DEFAULT_PRIORITY_INCREASE,
                batch_size: DEFAULT_REPRIORITIZE_BATCH_SIZE,
            },
        }
    }

    /// One cycle: raises every matching waiting job (that exists when the cycle starts) once.
    /// Returns how many jobs were raised.
    ///
    /// # Errors
    /// When the database is unreachable or a statement fails; batches already committed stay.
    pub fn reprioritize(&self, chancy: &Chancy) -> Result<u64> {
        let context = "reprioritizing jobs";
        let prefix = chancy.prefix();
        let mut conn = chancy.connection()?;
        let upper = conn
            .client
            .query_opt_unnamed(
                prefix
                    .render(r#"SELECT id FROM "{prefix}jobs" ORDER BY id DESC LIMIT 1"#)
                    .as_str(),
                &[],
            )
            .map_err(|e| Error::database(context, e))?;
        let Some(upper) = upper.map(|r| r.get::<_, Uuid>(0)) else {
            return Ok(0);
        };
        let rendered = self.rule.render(1);
        let n = rendered.params.len();
        let sql = prefix
            .render(&format!(
                r#"WITH jobs_to_update AS (
    SELECT id, priority FROM "{{prefix}}jobs"
    WHERE state IN ('pending', 'retrying') AND ({rule})
      AND ($(last)::uuid IS NULL OR id > $(last)::uuid) AND id <= $(upper)::uuid
    ORDER BY id LIMIT $(limit)
    FOR UPDATE SKIP LOCKED
)
UPDATE "{{prefix}}jobs" j SET priority = j.priority + $(inc)::int4
FROM jobs_to_update WHERE j.id = jobs_to_update.id
RETURNING j.id"#,
                rule = rendered.sql,
            ))
            .replace("$(last)", &format!("${}", n + 1))
            .replace("$(upper)", &format!("${}", n + 2))
            .replace("$(limit)", &format!("${}", n + 3))
            .replace("$(inc)", &format!("${}", n + 4));
        let mut last: Option<Uuid> = None;
        let mut total = 0u64;
        loop {
            let mut params = rendered.param_refs();
            params.extend([
                &last as &(dyn postgres::types::ToSql + Sync),
                &upper,
                &self.batch_size,
                &self.priority_increase,
            ]);
            let mut tx = conn
                .client
                .transaction()
                .map_err(|e| Error::database(context, e))?;
            let rows = tx
                .query_unnamed(sql.as_str(), &params)
                .map_err(|e| Error::database(context, e))?;
            tx.commit().map_err(|e| Error::database(context, e))?;
            let Some(max) = rows.iter().map(|r| r.get::<_, Uuid>(0)).max() else {
                break;
            };
            total += rows.len() as u64;
            last = Some(max);
        }
        Ok(total)
    }
}

impl Plugin for Reprioritize {
    fn identifier(&self) -> &'static str {
        REPRIORITIZE
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![LEADERSHIP]
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.check_interval)
    }

    /// Only the leader reprioritizes.
    fn leader_only(&self) -> bool {
        true
    }

    /// One cycle.
    fn run_once(&self, ctx: &PluginContext) -> Result<()> {
        let raised = self.reprioritize(ctx.chancy())?;
        if raised > 0 {
            log::info!("reprioritize: raised the priority of {raised} job(s)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_below_one_is_a_config_error() {
        let err = Reprioritize::builder(Rule::age().gt(0))
            .batch_size(0)
            .build()
            .unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("batch_size"), "{err}");
        assert!(Reprioritize::builder(Rule::age().gt(0)).build().is_ok());
    }
}
