//! Fault injection against a worker draining a big backlog, each test on its **own private
//! PostgreSQL** (`chancy::pgtemp::TempPostgres`), so restarting or stopping the server, or
//! terminating backends, can never disturb another test or another user of a shared server.
//!
//! Faults: a server restart (fast shutdown + start) during a 20,000-job drain; the server
//! down for ~3 s during a drain; `pg_terminate_backend` of every connection of the worker
//! (found by its `application_name`) every 250 ms during a drain. After each: every job
//! succeeded with exactly one attempt, its handler ran exactly once, nothing is left
//! `running`, and the worker reconnected by itself (its listener reported it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::wait::{eventually, holds_for, poll, Counter, Gate};

use chancy::pgtemp::TempPostgres;
use chancy::{Chancy, Job, Queue, Worker};
use parking_lot::Mutex;
use postgres::{Client, NoTls};
use uuid::Uuid;

const PREFIX: &str = "faults_";
/// The `application_name` of the worker's connections in the terminate test.
const WORKER_APP: &str = "chancy-fault-worker";
/// Upper bound for a drain to finish after the fault (liveness only).
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// Counts handler runs per job id.
type Runs = Arc<Mutex<HashMap<Uuid, u32>>>;

struct Drain {
    chancy: Chancy,
    worker: Worker,
    runs: Runs,
    reconnects: Arc<AtomicUsize>,
    total: usize,
    /// Runs after the first `hold_after` wait here until the test opens it (after its
    /// fault), so the fault always lands on a drain that is under way.
    gate: Gate,
}

fn server() -> TempPostgres {
    // `RUST_LOG=chancy=warn cargo test --test faults -- --nocapture` shows what the worker
    // went through.
    let _ = env_logger::builder().is_test(true).try_init();
    TempPostgres::start().expect("start a private PostgreSQL (needs the server binaries)")
}

/// Migrates, pushes `total` jobs of `t.work` (counts its runs; runs after the first
/// `hold_after` wait at the drain's gate) and starts a worker with the default plugins on
/// `url`.
fn start_drain(url: &str, total: usize, hold_after: usize) -> Drain {
    let chancy = Chancy::builder(url)
        .prefix(PREFIX)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    chancy.migrate().unwrap();
    chancy.declare(&Queue::new("default")).unwrap();
    chancy
        .declare(
            &Queue::new("drain")
                .concurrency(16)
                .eager_polling(true)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let jobs: Vec<Job> = (0..total)
        .map(|_| Job::new("t.work").queue("drain"))
        .collect();
    chancy.push_many(&jobs).unwrap();
    let runs: Runs = Arc::default();
    let r = Arc::clone(&runs);
    let (gate, started) = (Gate::new(), Counter::new());
    let g = gate.clone();
    let worker = Worker::builder(&chancy)
        .worker_id("fault-worker")
        .heartbeat_poll_interval(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_secs(30))
        .queue_change_poll_interval(Duration::from_secs(1))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .job("t.work", move |ctx| {
            *r.lock().entry(ctx.job().id).or_default() += 1;
            if started.add() > hold_after {
                g.pass(ctx)?;
            }
            Ok(())
        })
        .build()
        .unwrap();
    let reconnects = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&reconnects);
    worker.hub().on(chancy::LISTENER_RECONNECTED, move |_| {
        n.fetch_add(1, Ordering::SeqCst);
    });
    worker.start().unwrap();
    Drain {
        chancy,
        worker,
        runs,
        reconnects,
        total,
        gate,
    }
}

/// Job counts by state, read on a fresh connection (`None` while the server is down).
fn states(url: &str) -> Option<HashMap<String, i64>> {
    let mut c = Client::connect(url, NoTls).ok()?;
    let rows = c
        .query(
            &format!("SELECT state, count(*) FROM \"{PREFIX}jobs\" GROUP BY 1"),
            &[],
        )
        .ok()?;
    Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn count(states: &HashMap<String, i64>, state: &str) -> i64 {
    states.get(state).copied().unwrap_or(0)
}

/// Waits until at least `n` jobs succeeded.
fn wait_succeeded(url: &str, n: i64, limit: Duration) -> HashMap<String, i64> {
    poll(limit, || states(url).filter(|s| count(s, "succeeded") >= n)).unwrap_or_else(|| {
        panic!(
            "fewer than {n} jobs succeeded within {limit:?}: {:?}",
            states(url)
        )
    })
}

/// The end-state checks shared by every fault: everything succeeded exactly once.
fn assert_drained(url: &str, drain: Drain, fault: &str) {
    let total = drain.total as i64;
    let end = wait_succeeded(url, total, DRAIN_LIMIT);
    eprintln!(
        "{fault}: {total} succeeded, listener reconnects: {}",
        drain.reconnects.load(Ordering::SeqCst)
    );
    assert!(
        drain
            .worker
            .is_leader()
            .wait_timeout(Duration::from_secs(30)),
        "{fault}: the leadership plugin holds the lease again"
    );
    assert!(drain.worker.stop(), "{fault}: the worker stopped cleanly");
    assert_eq!(
        end.get("succeeded"),
        Some(&total),
        "{fault}: every job succeeded, nothing else: {end:?}"
    );
    assert_eq!(count(&end, "running"), 0, "{fault}: nothing stuck running");
    let mut c = Client::connect(url, NoTls).unwrap();
    let bad_attempts: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{PREFIX}jobs\" WHERE attempts <> 1 OR errors::text <> '[]'"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        bad_attempts, 0,
        "{fault}: every job took exactly one attempt"
    );
    let metric_rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM \"{PREFIX}metrics\""), &[])
        .unwrap()
        .get(0);
    assert!(
        metric_rows > 0,
        "{fault}: the metrics plugin saved its data at the stop"
    );
    let runs = drain.runs.lock();
    assert_eq!(runs.len(), drain.total, "{fault}: every job's handler ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "{fault}: jobs run more than once: {twice:?}"
    );
    assert!(
        drain.reconnects.load(Ordering::SeqCst) >= 1,
        "{fault}: the listener reconnected by itself"
    );
    drop(drain.chancy);
}

#[test]
fn restart_sequence_keeps_the_data_and_changes_the_pid() {
    let pg = server();
    let mut c = Client::connect(pg.url(), NoTls).unwrap();
    c.batch_execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        .unwrap();
    let producer = Chancy::builder(pg.url())
        .prefix(PREFIX)
        .connection_timeout(Duration::from_secs(2))
        .no_default_plugins()
        .build()
        .unwrap();
    producer.migrate().unwrap();
    let before = producer.push(&Job::new("t.work")).unwrap();
    let first = pg.pid();
    pg.restart().unwrap();
    assert!(pg.is_running());
    // The pool's connections died with the server: the next calls replace them themselves.
    let after = producer.push(&Job::new("t.work")).unwrap();
    assert!(producer.get_job(&before).unwrap().is_some());
    assert!(producer.get_job(&after).unwrap().is_some());
    assert_ne!(pg.pid(), first, "a new postmaster");
    assert!(c.simple_query("SELECT 1").is_err(), "old connections died");
    pg.stop_server();
    assert!(!pg.is_running());
    assert!(!chancy::pgtemp::answers(pg.url(), Duration::from_secs(1)));
    let err = producer.push(&Job::new("t.work")).unwrap_err();
    eprintln!("push while the server is down: {err}");
    assert!(err.is_unavailable(), "{err:?}");
    pg.start_server().unwrap();
    producer.push(&Job::new("t.work")).unwrap();
    pg.start_server().unwrap(); // idempotent
    let mut c = Client::connect(pg.url(), NoTls).unwrap();
    let n: i32 = c.query_one("SELECT n FROM kept", &[]).unwrap().get(0);
    assert_eq!(n, 42, "committed data survives restarts");
    let dir = pg.dir().to_path_buf();
    pg.stop().unwrap();
    assert!(!dir.exists());
}

#[test]
fn a_server_restart_during_a_20k_drain_loses_nothing() {
    let pg = server();
    let drain = start_drain(pg.url(), 20_000, 4_000);
    let before = wait_succeeded(pg.url(), 2_000, DRAIN_LIMIT);
    pg.restart().unwrap();
    drain.gate.open();
    let after = states(pg.url()).unwrap();
    assert!(
        count(&after, "succeeded") < 20_000,
        "the restart hit the drain: {before:?} {after:?}"
    );
    eprintln!("restart: before {before:?}, right after {after:?}");
    assert_drained(pg.url(), drain, "restart");
}

#[test]
fn a_three_second_outage_during_a_drain_loses_nothing() {
    let pg = server();
    let drain = start_drain(pg.url(), 10_000, 3_000);
    wait_succeeded(pg.url(), 1_000, DRAIN_LIMIT);
    pg.stop_server();
    holds_for(Duration::from_secs(3), "the outage (server down)", || {
        !pg.is_running()
    });
    pg.start_server().unwrap();
    drain.gate.open();
    let after = states(pg.url()).unwrap();
    assert!(
        count(&after, "succeeded") < 10_000,
        "the outage hit the drain: {after:?}"
    );
    eprintln!("outage: right after {after:?}");
    assert_drained(pg.url(), drain, "outage");
}

#[test]
fn terminating_every_worker_connection_repeatedly_loses_nothing() {
    let pg = server();
    let worker_url = format!("{}?application_name={WORKER_APP}", pg.url());
    let drain = start_drain(&worker_url, 8_000, 2_000);
    wait_succeeded(pg.url(), 500, DRAIN_LIMIT);
    let stop = Arc::new(chancy::Flag::new());
    let hits = Counter::new();
    let killer = {
        let (url, stop, hits) = (pg.url().to_string(), Arc::clone(&stop), hits.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&url, NoTls).unwrap();
            let (mut rounds, mut killed) = (0, 0);
            loop {
                // Only this test's worker: its own server, and its application_name.
                let n = c
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&WORKER_APP],
                    )
                    .unwrap()
                    .len();
                if n > 0 {
                    rounds += 1;
                    killed += n;
                    hits.add();
                }
                // A round every 250 ms until told to stop.
                if stop.wait_timeout(Duration::from_millis(250)) {
                    return (rounds, killed);
                }
            }
        })
    };
    // Three rounds while the first 2000 runs drain (the rest wait at the gate), then the
    // rest of the drain under fire: for a while, or until it is done.
    hits.wait_for(
        3,
        Duration::from_secs(60),
        "rounds that terminated backends",
    );
    drain.gate.open();
    let _ = poll(Duration::from_secs(6), || {
        states(pg.url())
            .is_some_and(|s| count(&s, "succeeded") == 8_000)
            .then_some(())
    });
    stop.set();
    let (rounds, killed) = killer.join().unwrap();
    assert!(
        rounds >= 3 && killed >= rounds,
        "the worker's connections were terminated repeatedly: {rounds} rounds, {killed} backends"
    );
    eprintln!("terminate test: {rounds} rounds, {killed} backends terminated");
    assert_drained(pg.url(), drain, "pg_terminate_backend");
}

#[test]
fn the_chancy_binary_rides_out_a_restart_and_stops_cleanly() {
    const N: i64 = 4_000;
    let pg = server();
    let chancy = Chancy::builder(pg.url()).prefix(PREFIX).build().unwrap();
    chancy.migrate().unwrap();
    chancy
        .declare(
            &Queue::new("drain")
                .concurrency(16)
                .eager_polling(true)
                .polling_interval(Duration::from_secs(1)),
        )
        .unwrap();
    let jobs: Vec<Job> = (0..N)
        .map(|_| {
            Job::new("chancy.builtin.sleep")
                .queue("drain")
                .kwargs(serde_json::json!({"seconds": 0.005}))
        })
        .collect();
    chancy.push_many(&jobs).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chancy"))
        .args(["--database-url", pg.url(), "--prefix", PREFIX, "-q"])
        .args(["worker", "start", "--worker-id", "binary"])
        .args([
            "--heartbeat-poll-interval",
            "1",
            "--queue-change-poll-interval",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the chancy binary");
    wait_succeeded(pg.url(), 300, DRAIN_LIMIT);
    pg.restart().unwrap();
    let after = states(pg.url()).unwrap();
    assert!(count(&after, "succeeded") < N, "the restart hit the drain");
    let end = wait_succeeded(pg.url(), N, DRAIN_LIMIT);
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a graceful stop after the restart");
    assert_eq!(end.get("succeeded"), Some(&N), "{end:?}");
    assert_eq!(count(&end, "running"), 0);
    let mut c = Client::connect(pg.url(), NoTls).unwrap();
    let bad: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{PREFIX}jobs\" WHERE attempts <> 1"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "one attempt per job");
}

#[test]
fn a_claim_lost_with_its_connection_is_released_and_runs_once() {
    let pg = server();
    let url = format!("{}?application_name={WORKER_APP}", pg.url());
    let chancy = Chancy::builder(url.as_str())
        .prefix(PREFIX)
        .no_default_plugins()
        .build()
        .unwrap();
    chancy.migrate().unwrap();
    chancy
        .declare(&Queue::new("default").polling_interval(Duration::from_secs(1)))
        .unwrap();
    let lost = chancy.push(&Job::new("t.work")).unwrap();
    let worker = Worker::builder(&chancy)
        .worker_id("fault-worker")
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .job("t.work", |_| Ok(()))
        .build()
        .unwrap();
    let mut c = Client::connect(pg.url(), NoTls).unwrap();
    // As if this worker's claim committed and its response never arrived: running, taken by
    // the worker, a claim no thread of it holds. The fetch thread releases it at once when
    // its claim failed; the connections are pooled, so the one killed below may have been
    // idle by then, and the heartbeat's sweep releases it after its 10 s grace.
    c.execute(
        &format!(
            "UPDATE \"{PREFIX}jobs\" SET state = 'running', taken_by = 'fault-worker', \
             claim_id = gen_random_uuid(), started_at = NOW() WHERE id = $1"
        ),
        &[&lost.0],
    )
    .unwrap();
    worker.start().unwrap();
    // Kill the fetcher's connection (the one whose last statement was the claim).
    let killed = poll(Duration::from_secs(20), || {
        let n = c
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND query LIKE '%selected_jobs%'",
                &[&WORKER_APP],
            )
            .unwrap()
            .len();
        (n > 0).then_some(n)
    })
    .unwrap_or(0);
    assert_eq!(
        killed, 1,
        "the fetcher's connection was found and terminated"
    );
    let job = chancy
        .wait_for_job(&lost, Duration::from_secs(30))
        .expect("released within the heartbeat's 10 s grace and run")
        .unwrap();
    assert_eq!((job.state, job.attempts), (chancy::JobState::Succeeded, 1));
    assert!(worker.stop());
}

/// The URL of `pg` for role `role` and database `db`.
fn url_as(pg: &TempPostgres, role: &str, db: &str) -> String {
    let (_, rest) = pg.url().split_once('@').expect("user@host in the URL");
    let host = rest.split('/').next().unwrap();
    format!("postgresql://{role}@{host}/{db}")
}

/// Three workers whose connection budgets (4 each: a pool of 3 + the listener) add up to
/// twice what the server lets them have: after they started, their role is limited to 6
/// connections (the same refusal as `max_connections`, with the server's own "too many
/// connections" message) and every connection they had is terminated. Every job still runs,
/// exactly once. Then, with only 1 connection left, a worker refuses to start and says why.
#[test]
fn workers_short_of_connections_run_every_job_once_and_start_fails_without_any() {
    let pg = server();
    let mut admin = Client::connect(pg.url(), NoTls).unwrap();
    admin.batch_execute("CREATE ROLE budget LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE budget OWNER budget")
        .unwrap();
    let url = url_as(&pg, "budget", "budget");
    let (superuser, rest) = pg.url().split_once('@').unwrap();
    let observer = format!("{superuser}@{}/budget", rest.split('/').next().unwrap());
    let build = |url: &str| {
        Chancy::builder(url)
            .prefix(PREFIX)
            .no_default_plugins()
            .max_connection_pool_size(3)
            .connection_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    const TOTAL: usize = 3000;
    {
        // The role owns the database, so it creates (and owns) the tables.
        let owner = build(&url);
        owner.migrate().unwrap();
        owner.declare(&Queue::new("default")).unwrap();
        owner
            .declare(
                &Queue::new("drain")
                    .concurrency(8)
                    .eager_polling(true)
                    .polling_interval(Duration::from_secs(1)),
            )
            .unwrap();
    }
    // Pushes as the superuser, whom the role's limit does not concern.
    let producer = build(&observer);
    let runs: Runs = Arc::default();
    let mut workers = Vec::new();
    for i in 0..3 {
        let r = Arc::clone(&runs);
        let worker = Worker::builder(&build(&url))
            .worker_id(format!("short-{i}"))
            .heartbeat_poll_interval(Duration::from_secs(1))
            .heartbeat_timeout(Duration::from_secs(60))
            .queue_change_poll_interval(Duration::from_secs(1))
            .backoff(Duration::from_millis(50), Duration::from_millis(500))
            .job("t.work", move |ctx| {
                *r.lock().entry(ctx.job().id).or_default() += 1;
                Ok(())
            })
            .build()
            .unwrap();
        assert_eq!(worker.connection_budget(), 4);
        worker.start().unwrap();
        workers.push(worker);
    }
    admin
        .batch_execute(
            "ALTER ROLE budget CONNECTION LIMIT 6; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'budget'",
        )
        .unwrap();
    let jobs: Vec<Job> = (0..TOTAL)
        .map(|_| Job::new("t.work").queue("drain"))
        .collect();
    producer.push_many(&jobs).unwrap();
    let states = wait_succeeded(&observer, TOTAL as i64, DRAIN_LIMIT);
    for w in &workers {
        assert!(w.stop(), "worker {} stopped cleanly", w.worker_id());
    }
    assert_eq!(count(&states, "succeeded"), TOTAL as i64, "{states:?}");
    let runs = runs.lock();
    assert_eq!(runs.len(), TOTAL, "every job ran");
    assert!(runs.values().all(|n| *n == 1), "no job ran twice");
    drop(runs);
    drop(workers);

    // Leave exactly 1 of the role's connections: the pool gets it, the listener cannot, and
    // start says so with the server's message. First the stopped workers' backends end.
    eventually(
        Duration::from_secs(10),
        "the role's old backends to end",
        || {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'budget'",
                    &[],
                )
                .unwrap()
                .get(0);
            left == 0
        },
    );
    let held: Vec<Client> = (0..5)
        .map(|_| Client::connect(&url, NoTls).unwrap())
        .collect();
    let worker = Worker::builder(&build(&url))
        .job("t.work", |_| Ok(()))
        .build()
        .unwrap();
    let err = worker
        .start()
        .expect_err("start must fail without its connections");
    let text = err.to_string();
    assert!(text.contains("cannot start"), "{text}");
    assert!(text.contains("too many connections"), "{text}");
    drop(held);
}
