//! The plugin trait: optional features that own tables, run as service threads of a worker
//! and hook into the life of jobs.

use std::sync::Arc;
use std::time::Duration;

use postgres::Transaction;

use crate::error::{Error, Result};
use crate::job::QueuedJob;
use crate::worker::{Flag, JobError, Worker};
use crate::Chancy;

/// A plugin. Every method has a default, so a plugin implements only what it needs.
///
/// A plugin with an [`interval`](Plugin::interval) runs as a service thread named
/// `chancy-plugin-<identifier>`: [`run_once`](Plugin::run_once) every interval (the first
/// time one interval after start, like upstream), retried with backoff when it fails.
///
/// ```
/// use chancy::{Plugin, QueuedJob, JobError};
/// struct CountFailures(std::sync::atomic::AtomicUsize);
/// impl Plugin for CountFailures {
///     fn identifier(&self) -> &'static str { "myapp.count_failures" }
///     fn on_job_completed(&self, job: QueuedJob, error: Option<&JobError>) -> QueuedJob {
///         if error.is_some() { self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed); }
///         job
///     }
/// }
/// ```
pub trait Plugin: Send + Sync {
    /// A unique identifier, the same as Python Chancy's (e.g. `chancy.leadership`).
    fn identifier(&self) -> &'static str;

    /// Identifiers of plugins that must be configured too (checked when a worker starts).
    fn dependencies(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The migration key of this plugin's tables, if it has any.
    fn migration_key(&self) -> Option<&'static str> {
        None
    }

    /// Unprefixed names of the tables this plugin owns.
    fn tables(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// How often [`Plugin::run_once`] runs in a worker; `None` = no service thread.
    fn interval(&self) -> Option<Duration> {
        None
    }

    /// A flag that wakes the plugin's service loop before its interval is up (e.g. set
    /// from a hub handler); the loop clears it and runs [`Plugin::run_once`]. `None` = the
    /// loop wakes only on its interval and at shutdown.
    fn wake(&self) -> Option<Arc<Flag>> {
        None
    }

    /// One pass of the plugin's service.
    ///
    /// # Errors
    /// A failed pass is logged and retried with backoff.
    fn run_once(&self, _worker: &Worker) -> Result<()> {
        Ok(())
    }

    /// Called by `Worker::start` before any service thread starts.
    ///
    /// # Errors
    /// An error aborts the start.
    fn on_worker_started(&self, _worker: &Worker) -> Result<()> {
        Ok(())
    }

    /// Called by `Worker::stop` after the final flush of job updates.
    fn on_worker_stopped(&self, _worker: &Worker) {}

    /// Called on the executor thread before a job runs.
    fn on_job_starting(&self, _job: &QueuedJob, _worker_id: &str) {}

    /// Called with the outcome of an attempt before it is queued for writing; may change it
    /// (e.g. reschedule a retry).
    fn on_job_completed(&self, job: QueuedJob, _error: Option<&JobError>) -> QueuedJob {
        job
    }

    /// Called inside the writer's transaction with the accepted updates of a batch, before
    /// commit. An error rolls the batch back; it is retried.
    ///
    /// # Errors
    /// Any error rolls back and retries the batch.
    fn on_jobs_updated_in_transaction(
        &self,
        _chancy: &Chancy,
        _jobs: &[&QueuedJob],
        _tx: &mut Transaction<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// Called after commit for each accepted update, in batch order.
    fn on_job_updated(&self, _job: &QueuedJob) {}

    /// Called after commit with all accepted updates of one writer batch, in batch order.
    /// The default calls [`Plugin::on_job_updated`] for each; override it to handle a batch
    /// at once (the metrics plugin aggregates per metric key here).
    fn on_jobs_updated(&self, jobs: &[&QueuedJob]) {
        for job in jobs {
            self.on_job_updated(job);
        }
    }

    /// The plugin as `Any`, so code that knows a concrete plugin type can find it among
    /// [`Chancy::plugins`](crate::Chancy::plugins) (e.g. the web server finds the
    /// [`Prometheus`](crate::prometheus::Prometheus) exporter). `None` by default.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Called by the pruner; returns how many rows it removed, if it counts.
    ///
    /// # Errors
    /// Logged by the pruner.
    fn cleanup(&self, _chancy: &Chancy) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// Two plugins with one identifier are a configuration error, as in Python.
pub(crate) fn check_unique(plugins: &[Arc<dyn Plugin>]) -> Result<()> {
    for (i, p) in plugins.iter().enumerate() {
        if plugins[..i]
            .iter()
            .any(|q| q.identifier() == p.identifier())
        {
            return Err(Error::config(format!(
                "plugin {:?} is configured twice",
                p.identifier()
            )));
        }
    }
    Ok(())
}

/// Fails when a configured plugin depends on one that is not configured.
///
/// # Errors
/// A configuration error naming the plugin and what it is missing.
pub fn check_dependencies(plugins: &[Arc<dyn Plugin>]) -> Result<()> {
    for p in plugins {
        let missing: Vec<&str> = p
            .dependencies()
            .into_iter()
            .filter(|d| !plugins.iter().any(|q| q.identifier() == *d))
            .collect();
        if !missing.is_empty() {
            return Err(Error::config(format!(
                "plugin {:?} has unsatisfied dependencies: {}",
                p.identifier(),
                missing.join(", ")
            )));
        }
    }
    Ok(())
}
