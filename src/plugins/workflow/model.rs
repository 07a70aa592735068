//! Workflows as values: steps, dependencies, states and validation.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::id::new_job_id;
use crate::job::{Job, JobState};

/// The state of a workflow row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkflowState {
    /// Pushed; no step has a job yet.
    Pending,
    /// At least one step has been pushed as a job.
    Running,
    /// Every step succeeded (terminal).
    Completed,
    /// A step failed (terminal).
    Failed,
}

impl WorkflowState {
    /// The string stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Pending => "pending",
            WorkflowState::Running => "running",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
        }
    }

    /// Whether the workflow is finished (completed or failed).
    pub fn is_terminal(self) -> bool {
        matches!(self, WorkflowState::Completed | WorkflowState::Failed)
    }
}

impl FromStr for WorkflowState {
    type Err = Error;

    fn from_str(s: &str) -> Result<WorkflowState> {
        Ok(match s {
            "pending" => WorkflowState::Pending,
            "running" => WorkflowState::Running,
            "completed" => WorkflowState::Completed,
            "failed" => WorkflowState::Failed,
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown workflow state {other:?}"
                )))
            }
        })
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a [`Workflow`]: a job that runs once all of its dependencies succeeded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkflowStep {
    /// The step's id, unique within its workflow.
    pub step_id: String,
    /// The job pushed when the step becomes ready.
    pub job: Job,
    /// Ids of the steps that must succeed first.
    pub dependencies: Vec<String>,
    /// The state of the step's job: `None` while not pushed (or once its job was pruned).
    pub state: Option<JobState>,
    /// The id of the step's job once pushed.
    pub job_id: Option<Uuid>,
}

impl WorkflowStep {
    /// A new, not yet pushed step.
    pub fn new(step_id: impl Into<String>, job: Job, dependencies: Vec<String>) -> WorkflowStep {
        WorkflowStep {
            step_id: step_id.into(),
            job,
            dependencies,
            state: Some(JobState::Pending),
            job_id: None,
        }
    }
}

/// A set of jobs with dependencies between them (a DAG), run by the workflow plugin.
///
/// ```
/// use chancy::Job;
/// use chancy::plugins::Workflow;
/// let wf = Workflow::new("example")
///     .add("top", Job::new("app.top"), &[])
///     .add_group(vec![("left", Job::new("app.left")), ("right", Job::new("app.right"))], &["top"])
///     .add("bottom", Job::new("app.bottom"), &["left", "right"]);
/// assert!(wf.validate().is_ok());
/// assert_eq!(wf.steps.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Workflow {
    /// The workflow's id (the job-id layout, so ids sort by creation time).
    pub id: Uuid,
    /// A descriptive name.
    pub name: String,
    /// The steps, in the order they were added.
    pub steps: Vec<WorkflowStep>,
    /// The workflow's state.
    pub state: WorkflowState,
    /// When the row was created (set once pushed or fetched).
    pub created_at: Option<DateTime<Utc>>,
    /// When the row was last written (set once pushed or fetched).
    pub updated_at: Option<DateTime<Utc>>,
}

impl Workflow {
    /// An empty, pending workflow with a fresh id.
    pub fn new(name: impl Into<String>) -> Workflow {
        Workflow {
            id: new_job_id(),
            name: name.into(),
            steps: Vec::new(),
            state: WorkflowState::Pending,
            created_at: None,
            updated_at: None,
        }
    }

    /// Adds (or replaces, keeping its place) the step `step_id`.
    pub fn add(mut self, step_id: impl Into<String>, job: Job, dependencies: &[&str]) -> Workflow {
        let deps = dependencies.iter().map(|d| d.to_string()).collect();
        self.insert(WorkflowStep::new(step_id, job, deps));
        self
    }

    /// Adds several steps sharing the same dependencies.
    pub fn add_group<S: Into<String>>(
        mut self,
        jobs: Vec<(S, Job)>,
        dependencies: &[&str],
    ) -> Workflow {
        for (id, job) in jobs {
            self = self.add(id, job, dependencies);
        }
        self
    }

    /// Adds or replaces a step, keeping the position of a replaced one.
    pub fn insert(&mut self, step: WorkflowStep) {
        match self.steps.iter_mut().find(|s| s.step_id == step.step_id) {
            Some(existing) => *existing = step,
            None => self.steps.push(step),
        }
    }

    /// The step `step_id`.
    pub fn step(&self, step_id: &str) -> Option<&WorkflowStep> {
        self.steps.iter().find(|s| s.step_id == step_id)
    }

    /// Whether the workflow finished (completed or failed).
    pub fn is_complete(&self) -> bool {
        self.state.is_terminal()
    }

    /// Whether the workflow is running.
    pub fn is_running(&self) -> bool {
        self.state == WorkflowState::Running
    }

    /// Checks the dependency graph like upstream: at least one step, no dependency on a
    /// missing step, no cycle. [`WorkflowPlugin::push`](super::WorkflowPlugin::push) also
    /// checks each step's job ([`Workflow::validate_jobs`]).
    ///
    /// # Errors
    /// An invalid-input error: `A workflow must contain at least one step`, `Step 'b'
    /// depends on non-existent step 'x'`, or `Circular dependency detected: a -> b -> a`.
    pub fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Err(Error::invalid_input(
                "A workflow must contain at least one step",
            ));
        }
        let index: HashMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.step_id.as_str(), i))
            .collect();
        for step in &self.steps {
            if let Some(dep) = step
                .dependencies
                .iter()
                .find(|d| !index.contains_key(d.as_str()))
            {
                return Err(Error::invalid_input(format!(
                    "Step '{}' depends on non-existent step '{dep}'",
                    step.step_id
                )));
            }
        }
        let mut color = vec![0u8; self.steps.len()];
        for start in 0..self.steps.len() {
            if color[start] == 0 {
                self.find_cycle(start, &index, &mut color, &mut Vec::new())?;
            }
        }
        Ok(())
    }

    /// Each step's job passes [`Job::validate`]; the error starts `Step '<id>': `. Checked
    /// when a workflow is pushed, not when its step comes due (too late to tell anyone).
    ///
    /// # Errors
    /// An invalid-input error naming the step and the field.
    pub fn validate_jobs(&self) -> Result<()> {
        for step in &self.steps {
            step.job
                .validate()
                .map_err(|e| Error::invalid_input(format!("Step '{}': {e}", step.step_id)))?;
        }
        Ok(())
    }

    /// Depth-first search with three colours (0 unvisited, 1 on the path, 2 done).
    fn find_cycle(
        &self,
        at: usize,
        index: &HashMap<&str, usize>,
        color: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Result<()> {
        color[at] = 1;
        path.push(at);
        for dep in &self.steps[at].dependencies {
            let d = index[dep.as_str()];
            if color[d] == 1 {
                let start = path.iter().position(|&p| p == d).unwrap_or(0);
                let mut names: Vec<&str> = path[start..]
                    .iter()
                    .map(|&p| self.steps[p].step_id.as_str())
                    .collect();
                names.push(dep);
                return Err(Error::invalid_input(format!(
                    "Circular dependency detected: {}",
                    names.join(" -> ")
                )));
            }
            if color[d] == 0 {
                self.find_cycle(d, index, color, path)?;
            }
        }
        path.pop();
        color[at] = 2;
        Ok(())
    }
}

/// A workflow whose steps run one after another: `step_0`, `step_1`, ... each depending on
/// the previous one.
///
/// ```
/// use chancy::Job;
/// use chancy::plugins::Sequence;
/// let wf = Sequence::new("chain", vec![Job::new("a"), Job::new("b")]).to_workflow();
/// assert_eq!(wf.step("step_1").unwrap().dependencies, vec!["step_0".to_string()]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// The workflow's name.
    pub name: String,
    /// The jobs, in order.
    pub jobs: Vec<Job>,
}

impl Sequence {
    /// A sequence of `jobs`.
    pub fn new(name: impl Into<String>, jobs: Vec<Job>) -> Sequence {
        Sequence {
            name: name.into(),
            jobs,
        }
    }

    /// Appends a job (upstream's name, hence not `std::ops::Add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, job: Job) -> Sequence {
        self.jobs.push(job);
        self
    }

    /// The equivalent workflow.
    pub fn to_workflow(&self) -> Workflow {
        let mut wf = Workflow::new(self.name.clone());
        for (i, job) in self.jobs.iter().enumerate() {
            let deps = if i == 0 {
                Vec::new()
            } else {
                vec![format!("step_{}", i - 1)]
            };
            wf.insert(WorkflowStep::new(format!("step_{i}"), job.clone(), deps));
        }
        wf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j() -> Job {
        Job::new("t.noop")
    }

    #[test]
    fn validation_errors_match_upstream() {
        let err = Workflow::new("e").validate().unwrap_err();
        assert_eq!(err.to_string(), "A workflow must contain at least one step");
        let err = Workflow::new("m")
            .add("a", j(), &["x"])
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "Step 'a' depends on non-existent step 'x'");
        let err = Workflow::new("c")
            .add("a", j(), &["b"])
            .add("b", j(), &["a"])
            .validate()
            .unwrap_err();
        assert!(err.is_invalid_input());
        assert_eq!(err.to_string(), "Circular dependency detected: a -> b -> a");
        let err = Workflow::new("c")
            .add("x", j(), &[])
            .add("a", j(), &["x", "c"])
            .add("b", j(), &["a"])
            .add("c", j(), &["b"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Circular dependency detected: a -> c -> b -> a"
        );
        let err = Workflow::new("self")
            .add("s", j(), &["s"])
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "Circular dependency detected: s -> s");
    }

    #[test]
    fn replacing_a_step_keeps_its_place() {
        let wf = Workflow::new("w")
            .add("a", j(), &[])
            .add("b", j(), &[])
            .add("a", Job::new("other"), &["b"]);
        let ids: Vec<&str> = wf.steps.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(wf.steps[0].job.func(), "other");
    }
}
