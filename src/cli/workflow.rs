//! `chancy workflow …`: list and inspect workflows (the workflow plugin's tables, created
//! by `chancy migrate`).

use super::table::time;
use clap::Subcommand;
use uuid::Uuid;

use super::plugins::ensure_keys;
use super::table::{or_dash, Table};
use crate::error::{Error, Result};
use crate::job::JobState;
use crate::plugins::WORKFLOW_MIGRATIONS;
use crate::plugins::{WorkflowPlugin, WorkflowState};
use crate::Chancy;

/// Default of `workflow list --limit` (upstream's `fetch_workflows` default).
pub(crate) const DEFAULT_WORKFLOW_LIST_LIMIT: u32 = 100;

/// The `workflow` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Show workflows as a table, oldest first, with how many steps succeeded.
    #[command(after_help = "Workflows are pushed by programs (the library's \
WorkflowPlugin::push or Python's) and run by workers with the workflow plugin (in the \
default set of `worker start`).\n\n\
Examples:\n  \
chancy workflow list\n  \
chancy workflow list --state running --limit 20")]
    List {
        /// Only workflows in this state: pending, running, completed or failed.
        #[arg(long, short = 's', value_parser = parse_state)]
        state: Option<WorkflowState>,
        /// At most this many workflows.
        #[arg(long, short = 'n', default_value_t = DEFAULT_WORKFLOW_LIST_LIMIT)]
        limit: u32,
    },
    /// Print a workflow with its steps and their states as JSON.
    #[command(after_help = "Example:\n  chancy workflow get 0190b6c4-… | jq '.steps[].state'")]
    Get {
        /// The workflow id.
        id: String,
    },
}

fn parse_state(s: &str) -> std::result::Result<WorkflowState, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

pub(super) fn run(chancy: &Chancy, command: &WorkflowCommand) -> Result<i32> {
    ensure_keys(chancy, &[WORKFLOW_MIGRATIONS.key()])?;
    match command {
        WorkflowCommand::List { state, limit } => list(chancy, *state, *limit),
        WorkflowCommand::Get { id } => {
            let uuid = Uuid::parse_str(id.trim()).map_err(|_| {
                Error::invalid_input(format!("{id:?} is not a workflow id (a UUID)"))
            })?;
            let wf = WorkflowPlugin::fetch_workflow(chancy, uuid)?
                .ok_or_else(|| Error::not_found(format!("workflow {uuid} not found")))?;
            super::print_json(&crate::json::workflow_json(&wf));
            Ok(0)
        }
    }
}

fn list(chancy: &Chancy, state: Option<WorkflowState>, limit: u32) -> Result<i32> {
    let states = state.map(|s| [s]);
    let workflows = WorkflowPlugin::fetch_workflows(
        chancy,
        states.as_ref().map(|s| &s[..]),
        None,
        limit.into(),
    )?;
    let mut t = Table::new(&["ID", "NAME", "STATE", "SUCCEEDED", "CREATED", "UPDATED"]);
    for wf in &workflows {
        let done = wf
            .steps
            .iter()
            .filter(|s| s.state == Some(JobState::Succeeded))
            .count();
        t.row(vec![
            wf.id.to_string(),
            wf.name.clone(),
            wf.state.to_string(),
            format!("{done}/{}", wf.steps.len()),
            or_dash(wf.created_at.map(time)),
            or_dash(wf.updated_at.map(time)),
        ]);
    }
    if t.is_empty() {
        outln!("no workflows");
    } else {
        t.print();
    }
    Ok(0)
}
