//! The plugins Python Chancy ships, for the blocking worker.
//!
//! The default set (as upstream 0.26.0): leadership, pruner, recovery, metrics, workflow.

pub mod cron;
pub mod trigger;
pub mod workflow;

pub use cron::{Cron, CronSchedule};
pub use trigger::{Trigger, TriggerConfig};
pub use workflow::{Sequence, Workflow, WorkflowPlugin, WorkflowState, WorkflowStep};
