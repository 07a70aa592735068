//! Criterion benches against the real PostgreSQL at `$DATABASE_URL`
//! (default `postgresql://postgres@127.0.0.1:5432/postgres`). Each bench migrates its own
//! table prefix (`bench_<pid>_<name>_`) and drops its tables at the end.
//!
//! - `push_many/<n>`: one bulk push of `n` keyless no-op jobs (COPY from 64 on);
//!   `push_many_unique/<n>`: the same with a distinct unique key per job (one
//!   `INSERT … SELECT FROM unnest(…) ON CONFLICT` per 5,000 jobs).
//! - `fetch_batch/<n>`: claiming `n` jobs at once with 10k waiting.
//! - `fetch_backlog/<backlog>`: claiming 100 jobs with `backlog` waiting: the claim cost
//!   should stay flat as the backlog grows.
//! - `writer_batch/<n>`: writing `n` outcomes in one fenced batch (what the update writer
//!   does per batch).
//!
//! Claimed rows are put back to pending (by id) between iterations, untimed. Under
//! `cargo test --all-targets` (no `--bench` argument) each bench runs once as a smoke test,
//! with the 100k and 1M backlogs and the 10k pushes left out.

use std::time::{Duration, Instant};

use chancy::tooling::WorkerTooling;
use chancy::{Chancy, Job, JobState, Queue, QueuedJob, Worker};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};

const QUEUE: &str = "bench";

fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A migrated app on `bench_<pid>_<name>_` (unique per process: helpers and CI may run
/// the benches at the same time against one server).
fn app(name: &str) -> Chancy {
    let prefix = format!("bench_{}_{name}_", std::process::id());
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let chancy = Chancy::builder(url)
        .prefix(prefix)
        .no_default_plugins()
        .build()
        .expect("chancy");
    chancy.migrate_to(0).expect("clean");
    chancy.migrate().expect("migrate (is PostgreSQL running?)");
    chancy
}

/// Migrates the prefix down and drops its `schema_version` table too (the prefix is per
/// process, nothing else will reuse it).
fn teardown(chancy: &Chancy) {
    chancy.migrate_to(0).expect("teardown");
    execute(
        chancy,
        &format!(
            "DROP TABLE IF EXISTS {}",
            chancy.prefix().table("schema_version")
        ),
    );
}

fn execute(chancy: &Chancy, sql: &str) {
    let mut conn = chancy.connection().expect("conn");
    conn.batch_execute(sql).expect(sql);
}

fn push_many(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_many");
    group.sample_size(20);
    let sizes: &[usize] = if measuring() {
        &[10, 100, 1000, 10_000]
    } else {
        &[10, 1000]
    };
    let chancy = app("push");
    let truncate = format!("TRUNCATE {}", chancy.prefix().table("jobs"));
    for &n in sizes {
        let jobs: Vec<Job> = (0..n).map(|_| Job::new("bench.noop")).collect();
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("keyless", n), &jobs, |b, jobs| {
            b.iter(|| chancy.push_many(jobs).expect("push"))
        });
        let mut round = 0u64;
        group.bench_with_input(BenchmarkId::new("unique", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    round += 1;
                    (0..n)
                        .map(|i| Job::new("bench.noop").unique_key(format!("{round}-{i}")))
                        .collect::<Vec<Job>>()
                },
                |jobs| chancy.push_many(&jobs).expect("push"),
                BatchSize::PerIteration,
            )
        });
        execute(&chancy, &truncate);
    }
    group.finish();
    teardown(&chancy);
}

fn fill(chancy: &Chancy, n: usize) {
    let batch: Vec<Job> = (0..n.min(10_000))
        .map(|_| Job::new("bench.noop").queue(QUEUE))
        .collect();
    for _ in 0..n.div_ceil(batch.len()) {
        chancy.push_many(&batch).expect("fill");
    }
    execute(
        chancy,
        &format!("VACUUM ANALYZE {}", chancy.prefix().table("jobs")),
    );
}

/// Puts the given claimed jobs back to pending (untimed work between iterations).
fn put_back(chancy: &Chancy, conn: &mut chancy::Conn, jobs: &[QueuedJob]) {
    let ids: Vec<uuid::Uuid> = jobs.iter().map(|j| j.id).collect();
    let sql = format!(
        "UPDATE {} SET state = 'pending', claim_id = NULL, taken_by = NULL, started_at = NULL, \
         completed_at = NULL, attempts = 0 WHERE id = ANY($1)",
        chancy.prefix().table("jobs")
    );
    conn.execute(sql.as_str(), &[&ids]).expect("put back");
}

/// A connection with the fetcher's planner settings (see `worker/fetch.rs`).
fn claim_connection(chancy: &Chancy) -> chancy::PooledConn {
    let mut conn = chancy.connection().expect("conn");
    conn.batch_execute("SET enable_sort = off; SET enable_bitmapscan = off")
        .expect("settings");
    conn
}

/// Claims of `per_claim` jobs with `backlog` waiting, as benchmark `id` of `group`.
fn bench_claims(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    backlog: usize,
    per_claim: usize,
) {
    let chancy = app("fetch");
    fill(&chancy, backlog);
    let queue = Queue::new(QUEUE);
    let worker = Worker::builder(&chancy).build().expect("worker");
    let mut conn = claim_connection(&chancy);
    let mut other = chancy.connection().expect("conn");
    group.throughput(criterion::Throughput::Elements(per_claim as u64));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let got = worker
                    .fetch_jobs(&queue, &mut conn, per_claim)
                    .expect("claim");
                timed += t.elapsed();
                assert_eq!(got.len(), per_claim);
                put_back(&chancy, &mut other, &got);
            }
            timed
        })
    });
    drop((conn, other));
    teardown(&chancy);
}

fn fetch_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_batch");
    group.sample_size(30);
    for n in [1, 10, 100, 500] {
        bench_claims(&mut group, BenchmarkId::from_parameter(n), 10_000, n);
    }
    group.finish();
}

fn fetch_backlog(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_backlog");
    group.sample_size(30);
    let sizes: &[usize] = if measuring() {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[10_000]
    };
    for &backlog in sizes {
        bench_claims(
            &mut group,
            BenchmarkId::from_parameter(backlog),
            backlog,
            100,
        );
    }
    group.finish();
}

fn succeeded(mut jobs: Vec<QueuedJob>) -> Vec<QueuedJob> {
    let now = chrono::Utc::now();
    for job in &mut jobs {
        job.state = JobState::Succeeded;
        job.attempts += 1;
        job.completed_at = Some(now);
    }
    jobs
}

fn writer_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer_batch");
    group.sample_size(30);
    let chancy = app("writer");
    fill(&chancy, 20_000);
    let queue = Queue::new(QUEUE);
    let worker = Worker::builder(&chancy).build().expect("worker");
    let mut conn = chancy.connection().expect("conn");
    let mut other = claim_connection(&chancy);
    for n in [10, 100, 500, 1000] {
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let jobs = succeeded(worker.fetch_jobs(&queue, &mut other, n).expect("claim"));
                    let t = Instant::now();
                    let accepted = worker.write_updates(&mut conn, &jobs).expect("write");
                    timed += t.elapsed();
                    assert_eq!(accepted, jobs.len());
                    put_back(&chancy, &mut other, &jobs);
                }
                timed
            })
        });
    }
    group.finish();
    drop((conn, other));
    teardown(&chancy);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = push_many, fetch_batch, fetch_backlog, writer_batch
}
criterion_main!(benches);
