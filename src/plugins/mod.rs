//! The plugins Python Chancy ships, for the blocking worker.
//!
//! | plugin | identifier | needs | default | runs on |
//! |---|---|---|---|---|
//! | [`Leadership`] / [`ImmediateLeadership`] | `chancy.leadership` | — | yes | every worker |
//! | [`Pruner`] | `chancy.pruner` | leadership | yes | the leader |
//! | [`Recovery`] | `chancy.recovery` | leadership | yes | the leader |
//! | [`Metrics`] | `chancy.metrics` | — | yes | every worker (table sizes: the leader) |
//! | [`RetryPlugin`] | `chancy.retry_plugin` | — | no | job hook |
//! | [`Reprioritize`] | `chancy.reprioritize` | leadership | no | the leader |
//! | [`WorkflowPlugin`] | `chancy.workflow_plugin` | leadership | yes | the leader (scheduler) |
//! | [`Cron`] | `chancy.cron` | — | no | every worker |
//! | [`Trigger`] | `chancy.trigger` | — | no | database triggers |
//!
//! The default set (upstream 0.26.0: leadership, pruner, recovery, metrics, workflow) is
//! added by [`ChancyBuilder::build`](crate::ChancyBuilder::build) unless
//! [`no_default_plugins`](crate::ChancyBuilder::no_default_plugins) is set, after the
//! plugins added by the user and skipping identifiers already given.
//!
//! ```no_run
//! use chancy::{Chancy, Pruner, Reprioritize, RetryPlugin, Rule};
//!
//! let chancy = Chancy::builder("postgresql://postgres@localhost/postgres")
//!     .plugin(Pruner::new(Rule::queue().eq("emails").and(Rule::age().gt(3600))))
//!     .plugin(RetryPlugin)
//!     .plugin(Reprioritize::builder(Rule::age().gt(600)).priority_increase(5).build()?)
//!     .build()?; // + Leadership and Recovery from the default set
//! # Ok::<(), chancy::Error>(())
//! ```

pub mod cron;
mod leadership;
mod metrics;
mod pruner;
mod recovery;
mod reprioritize;
mod retry;
pub mod rules;
pub mod trigger;
pub mod workflow;

use std::sync::Arc;

use crate::migrate::{Migrations, CORE_MIGRATIONS, RUST_MIGRATIONS};
use crate::worker::plugin::Plugin;

pub use cron::CRON_MIGRATIONS;
#[cfg(feature = "cron")]
pub use cron::{Cron, CronSchedule};
pub use leadership::{
    ImmediateLeadership, Leadership, LeadershipBuilder, DEFAULT_LEADERSHIP_POLL_INTERVAL,
    DEFAULT_LEADERSHIP_TIMEOUT, LEADERSHIP,
};
pub use metrics::{
    Metric, MetricPoint, MetricType, MetricValue, Metrics, MetricsBuilder, MetricsQuery,
    Resolution, CHUNK_SIZE, COUNTER_UNIT, DEFAULT_MAXIMUM_METRIC_AGE, DEFAULT_MAX_BUFFERED_POINTS,
    DEFAULT_METRICS_COLLECTION_INTERVAL, DEFAULT_METRICS_SYNC_INTERVAL, METRICS, METRICS_COUNTER,
    METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_MIGRATIONS, NUMBER_UNIT,
};
pub use pruner::{
    Pruner, DEFAULT_MAXIMUM_TO_PRUNE, DEFAULT_PRUNER_POLL_INTERVAL, DEFAULT_PRUNE_AGE_SECS, PRUNER,
};
pub use recovery::{Recovery, DEFAULT_RECOVERY_POLL_INTERVAL, RECOVERY};
pub use reprioritize::{
    Reprioritize, ReprioritizeBuilder, DEFAULT_PRIORITY_INCREASE, DEFAULT_REPRIORITIZE_BATCH_SIZE,
    DEFAULT_REPRIORITIZE_CHECK_INTERVAL, REPRIORITIZE,
};
pub use retry::{RetryPlugin, RetrySettings, RETRY_PLUGIN};
pub use rules::{Field, Rule};
pub use trigger::{Trigger, TriggerConfig, TRIGGER_MIGRATIONS};
pub use workflow::{
    Sequence, Workflow, WorkflowPlugin, WorkflowState, WorkflowStep, WORKFLOW_MIGRATIONS,
};

/// Every migration key this build ships, in the order plain `chancy migrate` lists them:
/// core (`chancy`), the Rust-only index (`chancy_rs`), then the keys of the plugins Python
/// Chancy 0.26.0 ships (`metrics`, `workflow`, `cron`, `trigger`). Any of them can be
/// migrated by name with [`Chancy::migrate_key`](crate::Chancy::migrate_key) whether or
/// not its plugin is configured.
pub const SHIPPED_MIGRATIONS: [&Migrations; 6] = [
    &CORE_MIGRATIONS,
    &RUST_MIGRATIONS,
    &METRICS_MIGRATIONS,
    &WORKFLOW_MIGRATIONS,
    &CRON_MIGRATIONS,
    &TRIGGER_MIGRATIONS,
];

/// Upstream 0.26.0's default plugin set, in order: leadership, pruner, recovery, metrics,
/// workflow.
pub(crate) fn default_set() -> Vec<Arc<dyn Plugin>> {
    vec![
        Arc::new(Leadership::default()),
        Arc::new(Pruner::default()),
        Arc::new(Recovery::default()),
        Arc::new(Metrics::default()),
        Arc::new(WorkflowPlugin::default()),
    ]
}

/// Appends the default plugins to `plugins`, after the user's, skipping any identifier
/// already present (so a user's [`ImmediateLeadership`] or tuned [`Pruner`] replaces the
/// default one). `defaults` is [`default_set`].
pub(crate) fn add_defaults(plugins: &mut Vec<Arc<dyn Plugin>>, defaults: Vec<Arc<dyn Plugin>>) {
    for plugin in defaults {
        if !plugins
            .iter()
            .any(|p| p.identifier() == plugin.identifier())
        {
            plugins.push(plugin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_user_plugins_and_skip_given_identifiers() {
        let mut plugins: Vec<Arc<dyn Plugin>> =
            vec![Arc::new(RetryPlugin), Arc::new(ImmediateLeadership)];
        add_defaults(&mut plugins, default_set());
        let ids: Vec<&str> = plugins.iter().map(|p| p.identifier()).collect();
        assert_eq!(
            ids,
            vec![
                RETRY_PLUGIN,
                LEADERSHIP,
                PRUNER,
                RECOVERY,
                METRICS,
                "chancy.workflow_plugin"
            ],
            "the user's ImmediateLeadership stands in for Leadership"
        );
        assert!(
            plugins[1].interval().is_none(),
            "no election service for it"
        );
    }

    #[test]
    fn shipped_migrations_match_python_026() {
        let versions: Vec<(&str, i32)> = SHIPPED_MIGRATIONS
            .iter()
            .map(|m| (m.key(), m.latest()))
            .collect();
        assert_eq!(
            versions,
            vec![
                ("chancy", 8),
                ("chancy_rs", 2),
                ("metrics", 2),
                ("workflow", 3),
                ("cron", 3),
                ("trigger", 1)
            ]
        );
        for set in SHIPPED_MIGRATIONS {
            crate::migrate::tests::check_sections(set);
        }
    }
}
