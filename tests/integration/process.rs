//! The process executor: jobs of `ProcessExecutor` queues run in child processes with hard
//! time and memory limits, crash isolation and real cancellation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chancy::{Job, JobState, Limit, Queue, Worker, WorkerBuilder, PROCESS_EXECUTOR};
use serde_json::json;

use crate::common::{process_child, TestApp};

/// The process tests run one at a time so that counting this process's children is exact.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn worker(app: &TestApp) -> WorkerBuilder {
    Worker::builder(&app.chancy)
        .queue_change_poll_interval(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(10))
        .process_executable(process_child())
}

fn proc_queue(app: &TestApp, name: &str, concurrency: i32) -> Queue {
    let q = Queue::new(name)
        .executor(PROCESS_EXECUTOR)
        .concurrency(concurrency)
        .eager_polling(true)
        .polling_interval(Duration::from_secs(1));
    app.chancy.declare_upsert(&q).unwrap();
    q
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn child_pids() -> Vec<u64> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if comm.ends_with("(process_worker") && fields.get(1) == Some(&me.as_str()) {
            pids.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    pids
}

#[test]
fn jobs_run_in_child_processes_and_meta_comes_back() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 2);
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("example.pid").queue("proc"))
        .unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    w.stop();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.errors);
    let pid = job.meta["pid"].as_u64().unwrap();
    assert_ne!(pid, u64::from(std::process::id()));
}

#[test]
fn a_time_limit_kills_a_busy_loop() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 1);
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let started = Instant::now();
    let r = app
        .chancy
        .push(
            &Job::new("example.busy")
                .queue("proc")
                .limit(Limit::time(Duration::from_secs(1))),
        )
        .unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    w.stop();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.errors[0].traceback.contains("TimeoutError"),
        "{}",
        job.errors[0].traceback
    );
    assert!(
        elapsed < Duration::from_secs(6),
        "killed within the limit plus a margin: {elapsed:?}"
    );
}

#[test]
fn a_memory_limit_stops_a_job_that_allocates_past_it() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 1);
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let limit = Limit::memory(256 << 20);
    let big = app
        .chancy
        .push(
            &Job::new("example.allocate")
                .queue("proc")
                .kwargs(json!({"bytes": 1u64 << 30}))
                .limit(limit),
        )
        .unwrap();
    let small = app
        .chancy
        .push(
            &Job::new("example.allocate")
                .queue("proc")
                .kwargs(json!({"bytes": 1u64 << 20}))
                .limit(limit),
        )
        .unwrap();
    let big = app
        .chancy
        .wait_for_job(&big, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let small = app
        .chancy
        .wait_for_job(&small, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    w.stop();
    assert_eq!(big.state, JobState::Failed);
    assert!(
        big.errors[0].traceback.contains("MemoryError"),
        "{}",
        big.errors[0].traceback
    );
    assert_eq!(small.state, JobState::Succeeded, "{:?}", small.errors);
}

#[test]
fn a_crashing_job_fails_alone() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 2);
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let crash = app
        .chancy
        .push(&Job::new("example.abort").queue("proc"))
        .unwrap();
    let others = app
        .chancy
        .push_many(&vec![Job::new("example.noop").queue("proc"); 6])
        .unwrap();
    let crash = app
        .chancy
        .wait_for_job(&crash, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let others = app
        .chancy
        .wait_for_jobs(&others, Duration::from_secs(30))
        .unwrap();
    w.stop();
    assert_eq!(crash.state, JobState::Failed);
    assert!(
        crash.errors[0].traceback.contains("died (signal 6)"),
        "{}",
        crash.errors[0].traceback
    );
    assert!(others.iter().all(|j| j.state == JobState::Succeeded));
}

#[test]
fn cancel_kills_a_sleeping_job_at_once() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 1);
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let r = app
        .chancy
        .push(
            &Job::new("example.sleep")
                .queue("proc")
                .kwargs(json!({"seconds": 60})),
        )
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while w.running_jobs() == 0 {
        assert!(Instant::now() < until, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(child_pids().len(), 1);
    app.chancy.cancel_job(&r).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while w.running_jobs() > 0 {
        assert!(
            Instant::now() < until,
            "cancel did not kill the child promptly"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(w.stop());
    assert_eq!(
        app.chancy.get_job(&r).unwrap().unwrap().state,
        JobState::Failed
    );
}

#[test]
fn children_are_recycled_and_none_outlive_the_worker() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    let q = Queue::new("proc")
        .executor(PROCESS_EXECUTOR)
        .concurrency(1)
        .eager_polling(true)
        .executor_options(
            json!({"maximum_jobs_per_worker": 2})
                .as_object()
                .unwrap()
                .clone(),
        );
    app.chancy.declare_upsert(&q).unwrap();
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let refs = app
        .chancy
        .push_many(&vec![Job::new("example.pid").queue("proc"); 6])
        .unwrap();
    let done = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(30))
        .unwrap();
    assert!(w.stop());
    let pids: HashSet<u64> = done
        .iter()
        .map(|j| j.meta["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "a new child every 2 jobs: {pids:?}");
    assert!(pids.iter().all(|p| !alive(*p)), "children exited");
    assert!(
        child_pids().is_empty(),
        "no child (or zombie) left: {:?}",
        child_pids()
    );
}

#[test]
fn a_fresh_worker_declares_upstreams_process_default_queue() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    let w = worker(&app).build().unwrap();
    w.start().unwrap();
    let r = app.chancy.push(&Job::new("example.noop")).unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    w.stop();
    assert_eq!(
        app.chancy.get_queue("default").unwrap().executor,
        PROCESS_EXECUTOR
    );
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.errors);
}
