//! Criterion benches against the real PostgreSQL at `$DATABASE_URL`
//! (default `postgresql://postgres@127.0.0.1:5432/postgres`), on a private table prefix.
//!
//! - `push_many/1000`: one bulk push of 1,000 no-op jobs.
//! - `claim/<backlog>`: claiming 100 jobs when `<backlog>` jobs wait (claimed rows are put
//!   back between iterations, untimed), to show that the claim cost stays flat.

use std::time::Duration;

use chancy::{Chancy, Job, Queue, Worker};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn app(prefix: &str) -> Chancy {
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

fn push_many(c: &mut Criterion) {
    let chancy = app("bench_push_");
    let jobs: Vec<Job> = (0..1000).map(|_| Job::new("bench.noop")).collect();
    c.bench_function("push_many/1000", |b| {
        b.iter(|| chancy.push_many(&jobs).expect("push"))
    });
    chancy.migrate_to(0).expect("teardown");
}

fn fill(chancy: &Chancy, n: usize) {
    let batch: Vec<Job> = (0..10_000)
        .map(|_| Job::new("bench.noop").queue("bench"))
        .collect();
    for _ in 0..n / 10_000 {
        chancy.push_many(&batch).expect("fill");
    }
    let mut conn = chancy.connection().expect("conn");
    conn.client.batch_execute("ANALYZE").expect("analyze");
}

fn claim(c: &mut Criterion) {
    let mut group = c.benchmark_group("claim");
    group.measurement_time(Duration::from_secs(10));
    // `cargo test --all-targets` runs each bench once as a smoke test: skip the 1M fill there.
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if measuring {
        &[10_000, 1_000_000]
    } else {
        &[10_000]
    };
    for &backlog in sizes {
        let chancy = app("bench_claim_");
        fill(&chancy, backlog);
        let queue = Queue::new("bench");
        let worker = Worker::builder(&chancy).build().expect("worker");
        let mut conn = chancy.connection().expect("conn");
        let reset = format!(
            "UPDATE {} SET state = 'pending', claim_id = NULL, taken_by = NULL WHERE state = 'running'",
            chancy.prefix().table("jobs")
        );
        let mut other = chancy.connection().expect("conn");
        group.bench_function(format!("{backlog}"), |b| {
            b.iter_batched(
                || other.client.batch_execute(&reset).expect("reset"),
                |()| worker.fetch_jobs(&queue, &mut conn, 100).expect("claim"),
                BatchSize::PerIteration,
            )
        });
        drop((conn, other));
        chancy.migrate_to(0).expect("teardown");
    }
    group.finish();
}

criterion_group!(benches, push_many, claim);
criterion_main!(benches);
