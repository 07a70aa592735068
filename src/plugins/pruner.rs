//! The pruner (upstream's `Pruner`): deletes finished jobs matching a [`Rule`], in bounded
//! batches, on the leader; then lets every plugin clean up its own tables.

use crate::unnamed::Unnamed;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::events;
use crate::worker::plugin::{Plugin, PluginContext};

use super::leadership::LEADERSHIP;
use super::rules::Rule;

/// The identifier of [`Pruner`].
pub const PRUNER: &str = "chancy.pruner";
/// Default [`Pruner::poll_interval`]: 60 s, as upstream.
pub const DEFAULT_PRUNER_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Default [`Pruner::maximum_to_prune`]: 10,000 rows per pass, as upstream.
pub const DEFAULT_MAXIMUM_TO_PRUNE: i64 = 10_000;
/// Default age (seconds) of the default rule `Age > 86400`.
pub const DEFAULT_PRUNE_AGE_SECS: i64 = 86_400;

/// Deletes `succeeded` and `failed` jobs that match its rule (default: older than a day),
/// at most `maximum_to_prune` per pass, on the leader, and then calls every plugin's
/// [`cleanup`](Plugin::cleanup). Identifier `chancy.pruner`; needs `chancy.leadership`;
/// part of the default set. Pending, running and retrying jobs are never deleted.
///
/// ```
/// use std::time::Duration;
/// use chancy::plugins::{Pruner, Rule};
/// let pruner = Pruner::new(Rule::queue().eq("emails").and(Rule::age().gt(3600)))
///     .maximum_to_prune(500)
///     .poll_interval(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct Pruner {
    rule: Rule,
    maximum_to_prune: i64,
    poll_interval: Duration,
}

impl Default for Pruner {
    fn default() -> Self {
        Pruner::new(Rule::age().gt(DEFAULT_PRUNE_AGE_SECS))
    }
}

impl Pruner {
    /// A pruner for finished jobs matching `rule`, with the default limits.
    pub fn new(rule: Rule) -> Pruner {
        Pruner {
            rule,
            maximum_to_prune: DEFAULT_MAXIMUM_TO_PRUNE,
            poll_interval: DEFAULT_PRUNER_POLL_INTERVAL,
        }
    }

    /// Most rows deleted per pass (default 10,000; at least 1).
    #[must_use]
    pub fn maximum_to_prune(mut self, n: i64) -> Self {
        self.maximum_to_prune = n.max(1);
        self
    }

    /// How often the leader prunes (default 60 s).
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Deletes up to `maximum_to_prune` finished jobs matching the rule, NOTIFYs
    /// `pruner.removed {elapsed, rows_removed}` and returns how many were deleted. Does not
    /// call the plugins' cleanup (the service does).
    ///
    /// # Errors
    /// When the database is unreachable or the statement fails.
    pub fn prune(&self, chancy: &Chancy) -> Result<u64> {
        let started = Instant::now();
        let rendered = self.rule.render(1);
        let jobs = chancy.prefix().render(r#""{prefix}jobs""#);
        let sql = format!(
            "WITH jobs_to_prune AS (SELECT queue, id FROM {jobs} \
             WHERE state IN ('succeeded', 'failed') AND ({rule}) LIMIT ${limit}) \
             DELETE FROM {jobs} t USING jobs_to_prune p WHERE t.queue = p.queue AND t.id = p.id",
            rule = rendered.sql,
            limit = rendered.params.len() + 1,
        );
        let mut params = rendered.param_refs();
        params.push(&self.maximum_to_prune);
        let mut conn = chancy.connection()?;
        let removed = conn
            .client
            .execute_unnamed(sql.as_str(), &params)
            .map_err(|e| Error::database("pruning jobs", e))?;
        chancy.notify_in(
            &mut conn.client,
            &[(
                events::PRUNER_REMOVED,
                json!({
                    "elapsed": started.elapsed().as_secs_f64(),
                    "rows_removed": removed,
                }),
            )],
        )?;
        Ok(removed)
    }

    /// Calls [`Plugin::cleanup`] on every plugin of `chancy`, logging the counts it returns
    /// and any error (one plugin failing does not stop the others).
    pub fn cleanup_plugins(chancy: &Chancy) {
        for plugin in chancy.plugins() {
            match plugin.cleanup(chancy) {
                Ok(Some(0)) => {
                    log::debug!("pruner: {} cleaned up 0 rows", plugin.identifier())
                }
                Ok(Some(n)) => log::info!("pruner: {} cleaned up {n} row(s)", plugin.identifier()),
                Ok(None) => {}
                Err(err) => log::error!("pruner: cleanup of {} failed: {err}", plugin.identifier()),
            }
        }
    }
}

impl Plugin for Pruner {
    fn identifier(&self) -> &'static str {
        PRUNER
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec![LEADERSHIP]
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.poll_interval)
    }

    /// Only the leader prunes.
    fn leader_only(&self) -> bool {
        true
    }

    /// Prune, then every plugin's cleanup.
    fn run_once(&self, ctx: &PluginContext) -> Result<()> {
        let removed = self.prune(ctx.chancy())?;
        if removed > 0 {
            log::info!("pruner: removed {removed} finished job(s)");
        }
        Pruner::cleanup_plugins(ctx.chancy());
        Ok(())
    }
}
