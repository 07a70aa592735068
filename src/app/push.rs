//! Pushing jobs: one statement per chunk, de-duplicated by unique key exactly like Python.

use crate::unnamed::Unnamed;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::GenericClient;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{in_transaction, Chancy};
use crate::error::{Error, Result};
use crate::events;
use crate::id::new_job_id;
use crate::job::{Job, Reference};

/// Rows per INSERT statement in a bulk push.
const CHUNK: usize = 5_000;
/// From this many keyless jobs on, a push uses COPY instead of INSERT.
const COPY_THRESHOLD: usize = 64;

/// Column arrays of one INSERT … SELECT FROM unnest(…).
#[derive(Default)]
struct Columns {
    ids: Vec<Uuid>,
    queues: Vec<String>,
    funcs: Vec<String>,
    kwargs: Vec<Value>,
    limits: Vec<Value>,
    metas: Vec<Value>,
    priorities: Vec<i32>,
    max_attempts: Vec<i32>,
    scheduled: Vec<Option<DateTime<Utc>>>,
    unique_keys: Vec<Option<String>>,
}

impl Columns {
    fn add(&mut self, id: Uuid, job: &Job) {
        self.ids.push(id);
        self.queues.push(job.queue.clone());
        self.funcs.push(job.func.clone());
        self.kwargs.push(job.kwargs.clone());
        self.limits.push(json!(job.limits));
        self.metas.push(job.meta.clone());
        self.priorities.push(job.priority);
        self.max_attempts.push(job.max_attempts);
        self.scheduled.push(job.scheduled_at);
        self.unique_keys.push(job.unique_key.clone());
    }
}

impl Chancy {
    /// Pushes one job and NOTIFYs `queue.pushed`, in one transaction.
    ///
    /// If a job with the same `unique_key` is pending, running or retrying, nothing is inserted
    /// and the existing job's reference is returned.
    ///
    /// # Errors
    /// An invalid-input error for a bad job (nothing written), or a database error.
    pub fn push(&self, job: &Job) -> Result<Reference> {
        let refs = self.push_many(std::slice::from_ref(job))?;
        Ok(refs[0])
    }

    /// Pushes many jobs in one transaction with a few bulk statements (not one per job), then
    /// one `queue.pushed` per distinct queue. References come back in input order; jobs whose
    /// unique key is taken (also by an earlier job of the same call) get the existing id.
    ///
    /// # Errors
    /// As [`Chancy::push`]; on error nothing is written.
    pub fn push_many(&self, jobs: &[Job]) -> Result<Vec<Reference>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        validate_all(jobs)?;
        in_transaction(self, "pushing jobs", |tx| self.push_many_in(tx, jobs))
    }

    /// [`Chancy::push`] inside the caller's transaction (or on any client): the job becomes
    /// visible, and the NOTIFY is delivered, when the caller commits.
    ///
    /// # Errors
    /// As [`Chancy::push`].
    pub fn push_in(&self, client: &mut impl GenericClient, job: &Job) -> Result<Reference> {
        let refs = self.push_many_in(client, std::slice::from_ref(job))?;
        Ok(refs[0])
    }

    /// [`Chancy::push_many`] inside the caller's transaction.
    ///
    /// # Errors
    /// As [`Chancy::push`].
    pub fn push_many_in(
        &self,
        client: &mut impl GenericClient,
        jobs: &[Job],
    ) -> Result<Vec<Reference>> {
        validate_all(jobs)?;
        let order = lock_order(jobs);
        let mut refs: Vec<Option<Uuid>> = vec![None; jobs.len()];
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut to_insert = Vec::with_capacity(jobs.len());
        for &i in &order {
            match jobs[i].unique_key.as_deref() {
                Some(key) if first_of_key.contains_key(key) => {}
                Some(key) => {
                    first_of_key.insert(key, i);
                    to_insert.push(i);
                }
                None => to_insert.push(i),
            }
        }
        let mut by_key: HashMap<String, Uuid> = HashMap::new();
        // Keyless jobs sort first (lock order); many of them go in with one COPY.
        let keyless = to_insert
            .iter()
            .take_while(|&&i| jobs[i].unique_key.is_none())
            .count();
        let (plain, keyed) = to_insert.split_at(if keyless >= COPY_THRESHOLD {
            keyless
        } else {
            0
        });
        if !plain.is_empty() {
            self.copy_in(client, jobs, plain, &mut refs)?;
        }
        for chunk in keyed.chunks(CHUNK) {
            self.insert_chunk(client, jobs, chunk, &mut refs, &mut by_key)?;
        }
        for (i, job) in jobs.iter().enumerate() {
            if refs[i].is_none() {
                let key = job.unique_key.as_deref().unwrap_or_default();
                refs[i] = by_key.get(key).copied();
            }
        }
        let queues: BTreeSet<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        let notes: Vec<(&str, Value)> = queues
            .into_iter()
            .map(|q| (events::QUEUE_PUSHED, json!({ "q": q })))
            .collect();
        self.notify_in(client, &notes)?;
        refs.into_iter()
            .map(|r| {
                r.map(Reference)
                    .ok_or_else(|| Error::invalid_input("a pushed job got no id back"))
            })
            .collect()
    }

    /// Inserts keyless jobs with one binary COPY (no conflicts are possible without a key).
    fn copy_in(
        &self,
        client: &mut impl GenericClient,
        jobs: &[Job],
        rows: &[usize],
        refs: &mut [Option<Uuid>],
    ) -> Result<()> {
        // Jobs without a time are due at the database's now() (as the INSERT path writes),
        // never at this machine's clock.
        let now: chrono::DateTime<chrono::Utc> = client
            .query_one_unnamed("SELECT NOW()", &[])
            .map_err(|e| Error::database("reading the database clock", e))?
            .get(0);
        let sql = format!(
            "COPY {} (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at) \
             FROM STDIN (FORMAT binary)",
            self.prefix().table("jobs")
        );
        let sink = client
            .copy_in(sql.as_str())
            .map_err(|e| Error::database("starting COPY of jobs", e))?;
        let types = [
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::JSONB,
            Type::JSONB,
            Type::INT4,
            Type::INT4,
            Type::TIMESTAMPTZ,
        ];
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for &i in rows {
            let job = &jobs[i];
            let id = new_job_id();
            refs[i] = Some(id);
            let limits = json!(job.limits);
            let at = job.scheduled_at.unwrap_or(now);
            writer
                .write(&[
                    &id,
                    &job.queue,
                    &job.func,
                    &job.kwargs,
                    &limits,
                    &job.meta,
                    &job.priority,
                    &job.max_attempts,
                    &at,
                ])
                .map_err(|e| Error::database("copying jobs", e))?;
        }
        writer
            .finish()
            .map_err(|e| Error::database("finishing COPY of jobs", e))?;
        Ok(())
    }

    fn insert_chunk(
        &self,
        client: &mut impl GenericClient,
        jobs: &[Job],
        chunk: &[usize],
        refs: &mut [Option<Uuid>],
        by_key: &mut HashMap<String, Uuid>,
    ) -> Result<()> {
        let mut cols = Columns::default();
        for &i in chunk {
            let id = new_job_id();
            cols.add(id, &jobs[i]);
            if jobs[i].unique_key.is_none() {
                refs[i] = Some(id);
            }
        }
        let rows = client
            .query_unnamed(
                self.sql().push.as_str(),
                &[
                    &cols.ids,
                    &cols.queues,
                    &cols.funcs,
                    &cols.kwargs,
                    &cols.limits,
                    &cols.metas,
                    &cols.priorities,
                    &cols.max_attempts,
                    &cols.scheduled,
                    &cols.unique_keys,
                ],
            )
            .map_err(|e| Error::database("inserting jobs", e))?;
        for row in rows {
            if let Some(key) = row.get::<_, Option<String>>(1) {
                by_key.insert(key, row.get(0));
            }
        }
        Ok(())
    }
}

fn validate_all(jobs: &[Job]) -> Result<()> {
    jobs.iter().try_for_each(Job::validate)
}

/// Indices of `jobs` sorted by `unique_key or ""`, stably: the lock order the worker's update
/// batches use too (avoids the push/update deadlock upstream fixed in #89).
fn lock_order(jobs: &[Job]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| {
        let ka = jobs[a].unique_key.as_deref().unwrap_or("");
        let kb = jobs[b].unique_key.as_deref().unwrap_or("");
        ka.cmp(kb)
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_order_puts_keyless_first_and_is_stable() {
        let jobs = vec![
            Job::new("a").unique_key("b"),
            Job::new("b"),
            Job::new("c").unique_key("a"),
            Job::new("d"),
        ];
        assert_eq!(lock_order(&jobs), vec![1, 3, 2, 0]);
    }
}
