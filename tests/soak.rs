//! Soak: three workers (each on its own `Chancy`, one prefix) under continuous mixed load —
//! no-ops, short sleeps, flaky jobs that succeed on their second attempt, jobs that always
//! fail, panics, long cancellable jobs — with random cancels and pauses/resumes of one queue,
//! for `CHANCY_SOAK_SECS` seconds (default 45), while a chaos thread terminates random
//! connections of the workers every 1–3 s. Then the load stops, the workers stop
//! mid-drain, and the invariants are checked on the database and on a side record of every
//! handler run:
//!
//! * nothing is `running`; every job is finished (`succeeded`/`failed`) or claimable
//!   (`pending`/`retrying` with `attempts < max_attempts`);
//! * `attempts <= max_attempts` everywhere;
//! * no duplicate completion: every succeeded job's handler returned `Ok` exactly once, and
//!   ran exactly `attempts` times;
//! * per kind, the outcome the handler dictates (flaky: 2 attempts; fail: 2 attempts, failed;
//!   panic: failed after 1) unless the job was cancelled;
//! * the workers' rows expire after their stop.

#[allow(dead_code)]
#[path = "integration/common.rs"]
mod common;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chancy::plugins::{Leadership, Recovery};
use chancy::{Job, JobContext, JobError, JobState, Queue, Reference, Worker};
use parking_lot::Mutex;
use serde_json::json;
use uuid::Uuid;

use common::TestApp;

/// One handler invocation: the job's `attempts` when it started, and whether it returned Ok.
type RunLog = Arc<Mutex<HashMap<Uuid, Vec<(i32, bool)>>>>;

const KINDS: [&str; 6] = [
    "s.noop", "s.sleep", "s.flaky", "s.fail", "s.panic", "s.long",
];
const QUEUES: [&str; 3] = ["soak_fast", "soak_slow", "soak_pausable"];

fn soak_duration() -> Duration {
    let secs = std::env::var("CHANCY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(45.0);
    Duration::from_secs_f64(secs)
}

/// xorshift64*: reproducible from the printed seed, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn job_of(kind: &str, queue: &str, rng: &mut Rng) -> Job {
    let job = Job::new(kind).queue(queue);
    match kind {
        "s.sleep" => job.kwargs(json!({"ms": 1 + rng.below(30)})),
        "s.flaky" | "s.fail" => job.max_attempts(2 + rng.below(2) as i32),
        "s.long" => job.kwargs(json!({"ms": 200 + rng.below(1500)})),
        _ => job,
    }
}

fn worker(chancy: &chancy::Chancy, id: &str, log: &RunLog) -> Worker {
    let record = |log: &RunLog, ctx: &JobContext, ok: bool| {
        log.lock()
            .entry(ctx.job().id)
            .or_default()
            .push((ctx.job().attempts, ok));
    };
    let sleep_ms = |ctx: &JobContext| ctx.job().kwargs["ms"].as_u64().unwrap_or(1);
    let (l1, l2, l3, l4, l5, l6) = (
        Arc::clone(log),
        Arc::clone(log),
        Arc::clone(log),
        Arc::clone(log),
        Arc::clone(log),
        Arc::clone(log),
    );
    Worker::builder(chancy)
        .worker_id(id)
        .heartbeat_poll_interval(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_secs(5))
        .queue_change_poll_interval(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(20))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .job("s.noop", move |ctx| {
            record(&l1, ctx, true);
            Ok(())
        })
        .job("s.sleep", move |ctx| {
            // Work that takes its time and ignores cancellation.
            std::thread::sleep(Duration::from_millis(sleep_ms(ctx)));
            record(&l2, ctx, true);
            Ok(())
        })
        .job("s.flaky", move |ctx| {
            let ok = ctx.job().attempts >= 1;
            record(&l3, ctx, ok);
            if ok {
                Ok(())
            } else {
                Err(JobError::new("flaky: first attempt fails"))
            }
        })
        .job("s.fail", move |ctx| {
            record(&l4, ctx, false);
            Err(JobError::new("always fails"))
        })
        .job("s.panic", move |ctx| {
            record(&l5, ctx, false);
            panic!("soak panic")
        })
        .job("s.long", move |ctx| {
            // Runs its time unless cancelled first (a gate nobody opens).
            let limit = Duration::from_millis(sleep_ms(ctx));
            if let Err(cancelled) = support::wait::Gate::new().pass_within(ctx, limit) {
                record(&l6, ctx, false);
                return Err(cancelled);
            }
            record(&l6, ctx, true);
            Ok(())
        })
        .build()
        .expect("build a soak worker")
}

/// Pushes, cancels and pauses until `until`; returns every pushed job with its kind, and the
/// cancelled ones.
fn drive(
    app: &TestApp,
    until: Instant,
    rng: &mut Rng,
) -> (HashMap<Uuid, &'static str>, HashSet<Uuid>) {
    let mut pushed: HashMap<Uuid, &'static str> = HashMap::new();
    let mut recent: Vec<Reference> = Vec::new();
    let mut cancelled = HashSet::new();
    let (mut paused, mut next_toggle) = (false, Instant::now());
    while Instant::now() < until {
        let n = 1 + rng.below(15);
        let batch: Vec<(&'static str, Job)> = (0..n)
            .map(|_| {
                let kind = KINDS[rng.below(KINDS.len())];
                (kind, job_of(kind, QUEUES[rng.below(QUEUES.len())], rng))
            })
            .collect();
        let jobs: Vec<Job> = batch.iter().map(|(_, j)| j.clone()).collect();
        let refs = app.chancy.push_many(&jobs).expect("push");
        for (r, (kind, _)) in refs.iter().zip(&batch) {
            pushed.insert(r.0, kind);
        }
        recent.extend(refs);
        if rng.below(4) == 0 && !recent.is_empty() {
            let r = recent.swap_remove(rng.below(recent.len()));
            if app.chancy.cancel_job(&r).expect("cancel").is_done() {
                cancelled.insert(r.0);
            }
        }
        if recent.len() > 500 {
            recent.drain(..250);
        }
        if Instant::now() >= next_toggle {
            if paused {
                app.chancy.resume_queue("soak_pausable").expect("resume");
            } else {
                app.chancy
                    .pause_queue("soak_pausable", None)
                    .expect("pause");
            }
            paused = !paused;
            next_toggle = Instant::now() + Duration::from_millis(500 + rng.below(2000) as u64);
        }
        // The load's pace: a batch every 10–40 ms.
        std::thread::sleep(Duration::from_millis(10 + rng.below(30) as u64));
    }
    app.chancy.resume_queue("soak_pausable").expect("resume");
    (pushed, cancelled)
}

/// Every 1–3 s, terminates up to two random connections of the soak's workers (found by
/// their `application_name`) until `on` is cleared; returns (rounds, connections killed).
fn chaos(
    app_name: &str,
    stop: Arc<chancy::Flag>,
    seed: u64,
) -> std::thread::JoinHandle<(u32, u32)> {
    let app_name = app_name.to_string();
    std::thread::spawn(move || {
        let mut rng = Rng(seed.rotate_left(17) | 1);
        let mut c = common::client();
        let (mut rounds, mut killed) = (0, 0);
        loop {
            let pause = Duration::from_millis(1000 + rng.below(2000) as u64);
            if stop.wait_timeout(pause) {
                return (rounds, killed);
            }
            let n = c
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid() \
                     ORDER BY random() LIMIT 2",
                    &[&app_name],
                )
                .expect("terminate")
                .len() as u32;
            rounds += 1;
            killed += n;
        }
    })
}

struct Row {
    kind: &'static str,
    state: JobState,
    attempts: i32,
    max_attempts: i32,
    cancelled: bool,
}

#[test]
fn soak_mixed_load_with_cancels_and_pauses_keeps_every_invariant() {
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(
                Leadership::builder()
                    .poll_interval(Duration::from_secs(1))
                    .timeout(Duration::from_secs(3))
                    .build()
                    .unwrap(),
            )
            .plugin(Recovery::new().poll_interval(Duration::from_secs(1)))
    });
    app.chancy
        .declare(&Queue::new("default"))
        .expect("declare default");
    let queue_settings = [
        Queue::new(QUEUES[0]).concurrency(8).eager_polling(true),
        Queue::new(QUEUES[1]).concurrency(3),
        Queue::new(QUEUES[2]).concurrency(4).eager_polling(true),
    ];
    for q in &queue_settings {
        app.chancy.declare(q).unwrap();
    }
    let log: RunLog = Arc::default();
    // Each worker on its own Chancy (own pool), as separate processes would be.
    // The workers' connections carry an application_name unique to this run, so the chaos
    // thread below terminates only them (the server may be shared).
    let app_name = format!("chancy-soak-{}", app.prefix.trim_end_matches('_'));
    let base = common::database_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let worker_url = format!("{base}{sep}application_name={app_name}");
    let apps: Vec<chancy::Chancy> = (0..3)
        .map(|_| {
            chancy::Chancy::builder(worker_url.as_str())
                .prefix(app.prefix.clone())
                .no_default_plugins()
                .plugin(
                    Leadership::builder()
                        .poll_interval(Duration::from_secs(1))
                        .timeout(Duration::from_secs(3))
                        .build()
                        .unwrap(),
                )
                .plugin(Recovery::new().poll_interval(Duration::from_secs(1)))
                .build()
                .unwrap()
        })
        .collect();
    let workers: Vec<Worker> = apps
        .iter()
        .enumerate()
        .map(|(i, c)| worker(c, &format!("soak-{i}"), &log))
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    let recovered = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&recovered);
    workers[0].hub().on("job.recovered", move |_| {
        flag.store(true, Ordering::SeqCst);
    });

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("soak: seed {seed}, duration {:?}", soak_duration());
    let mut rng = Rng(seed);
    let chaos_stop = Arc::new(chancy::Flag::new());
    let chaos = chaos(&app_name, Arc::clone(&chaos_stop), seed);
    let (pushed, cancelled) = drive(&app, Instant::now() + soak_duration(), &mut rng);
    chaos_stop.set();
    let (rounds, killed) = chaos.join().expect("the chaos thread");
    eprintln!("soak: chaos terminated {killed} worker connections in {rounds} rounds");
    assert!(
        killed > 0 || soak_duration() < Duration::from_secs(5),
        "the chaos thread terminated worker connections"
    );
    // Let the workers drain a little (100 more outcomes, or 2 s when fewer are left), then
    // stop them while work may remain.
    let before = log.lock().len();
    let _ = support::wait::poll(Duration::from_secs(2), || {
        (log.lock().len() >= before + 100).then_some(())
    });
    let stopped_at = Instant::now();
    let clean: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = workers.iter().map(|w| s.spawn(|| w.stop())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(clean.iter().all(|c| *c), "every worker stopped cleanly");

    let rows: HashMap<Uuid, Row> = app
        .client()
        .query(
            &app.sql("SELECT id, state, attempts, max_attempts FROM {jobs}"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            let state: String = r.get(1);
            let row = Row {
                kind: pushed.get(&id).copied().unwrap_or("?"),
                state: state.parse().unwrap(),
                attempts: r.get::<_, Option<i32>>(2).unwrap_or(0),
                max_attempts: r.get(3),
                cancelled: cancelled.contains(&id),
            };
            (id, row)
        })
        .collect();
    let log = log.lock();
    let mut states: HashMap<String, usize> = HashMap::new();
    for row in rows.values() {
        *states.entry(row.state.as_str().to_string()).or_default() += 1;
    }
    eprintln!(
        "soak: {} jobs pushed, {} cancelled, {} handler runs, states {states:?}",
        pushed.len(),
        cancelled.len(),
        log.values().map(Vec::len).sum::<usize>()
    );
    assert_eq!(rows.len(), pushed.len(), "every pushed job exists");
    assert!(pushed.len() > 100, "the soak pushed real load");
    let mut violations = Vec::new();
    for (id, row) in &rows {
        let runs = log.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let oks = runs.iter().filter(|(_, ok)| *ok).count();
        let mut bad = |what: &str| violations.push(format!("{id} ({}): {what}", row.kind));
        if row.attempts > row.max_attempts {
            bad("attempts > max_attempts");
        }
        match row.state {
            JobState::Running => bad("left running"),
            JobState::Pending | JobState::Retrying if row.attempts >= row.max_attempts => {
                bad("waiting but not claimable")
            }
            JobState::Succeeded => {
                if oks != 1 {
                    bad(&format!("succeeded with {oks} successful runs: {runs:?}"));
                }
                if runs.len() != row.attempts as usize {
                    bad(&format!("{} attempts but runs {runs:?}", row.attempts));
                }
                if row.kind == "s.flaky" && row.attempts != 2 {
                    bad("flaky job succeeded on an attempt other than the second");
                }
                if matches!(row.kind, "s.fail" | "s.panic") {
                    bad("a failing kind succeeded");
                }
            }
            JobState::Failed if !row.cancelled => match row.kind {
                "s.fail" if row.attempts != row.max_attempts => bad("failed early"),
                "s.panic" if row.attempts != 1 => bad("panic not failed after one attempt"),
                "s.noop" | "s.sleep" => bad("a succeeding kind failed without a cancel"),
                _ => {}
            },
            _ => {}
        }
    }
    assert!(
        violations.is_empty(),
        "{} invariant violations (seed {seed}, job.recovered seen: {}):\n{}",
        violations.len(),
        recovered.load(Ordering::SeqCst),
        violations[..violations.len().min(20)].join("\n")
    );

    // Worker rows expire after the stop (heartbeat_timeout 5 s; no more heartbeats).
    let wait =
        Duration::from_secs(5).saturating_sub(stopped_at.elapsed()) + Duration::from_millis(500);
    let live = || -> i64 {
        app.client()
            .query_one(
                &app.sql("SELECT count(*) FROM {workers} WHERE expires_at > NOW()"),
                &[],
            )
            .unwrap()
            .get(0)
    };
    let expired = support::wait::poll(wait, || (live() == 0).then_some(()));
    assert!(
        expired.is_some(),
        "every stopped worker's row has expired within 5.5 s of the stop ({} live)",
        live()
    );
}
