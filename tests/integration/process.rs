//! The process executor: jobs of `ProcessExecutor` queues run in child processes with hard
//! time and memory limits, crash isolation and real cancellation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chancy::{Job, JobState, Limit, Queue, Worker, WorkerBuilder, PROCESS_EXECUTOR};
use serde_json::json;

use crate::common::{
    capture_warnings, captured_warnings, database_url, example_binary, process_child, Listener,
    TestApp,
};
use crate::support::wait::{eventually, eventually_some, poll_every, Proc};

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
    eventually(Duration::from_secs(20), "the job to start", || {
        w.running_jobs() > 0
    });
    eventually(Duration::from_secs(20), "the job's child process", || {
        !child_pids().is_empty()
    });
    assert_eq!(child_pids().len(), 1);
    app.chancy.cancel_job(&r).unwrap();
    eventually(
        Duration::from_secs(3),
        "cancel to kill the child promptly",
        || w.running_jobs() == 0,
    );
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

/// Processes (not zombies) running the program at `exe`, with their parent pids.
fn processes_of(exe: &Path) -> Vec<(u64, u64)> {
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).ok().as_deref() != Some(exe.as_path()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        let ppid = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        found.push((pid, ppid));
    }
    found
}

/// Issue #14 item 1: the README's first example without `.queue(..)` pushes to `default`,
/// which the worker declares with the process executor. The program never opted in to the
/// child role, so the job must run on a thread: one process of it from start to end, one
/// worker row, the job succeeded.
#[test]
fn the_readme_example_on_the_default_queue_never_starts_a_copy_of_itself() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    let exe = example_binary("readme_default_queue");
    // Every worker row write NOTIFYs worker.announced {worker_id}; a clean stop deletes the
    // row at the end, so the announcements are what shows how many workers there were.
    let mut listener = Listener::new(&app.chancy.prefix().channel());
    let mut program = Command::new(&exe)
        .env("DATABASE_URL", database_url())
        .env("CHANCY_PREFIX", &app.prefix)
        .env_remove(chancy::CHILD_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Sampled every 2 ms: a second process of the example must not slip between samples.
    let mut most = 0;
    let status = poll_every(Duration::from_millis(2), Duration::from_secs(90), || {
        most = most.max(processes_of(&exe).len());
        program.try_wait().unwrap()
    });
    let Some(status) = status else {
        let _ = program.kill();
        panic!("the README example did not finish within 90 s");
    };
    let output = program.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "exit {status}: {stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "Some(Succeeded)", "{stderr}");
    assert_eq!(most, 1, "exactly one process of the example at any time");
    assert!(processes_of(&exe).is_empty());
    let worker_ids: HashSet<String> = listener
        .collect(Duration::from_millis(500))
        .iter()
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter(|v| v["t"] == "worker.announced")
        .filter_map(|v| v["worker_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(worker_ids.len(), 1, "one worker row: {worker_ids:?}");
    let mut db = app.client();
    let jobs = db
        .query(
            app.sql("SELECT queue, state, taken_by FROM {jobs}")
                .as_str(),
            &[],
        )
        .unwrap();
    let jobs: Vec<(String, String, String)> = jobs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let worker = worker_ids.into_iter().next().unwrap();
    assert_eq!(
        jobs,
        vec![("default".to_string(), "succeeded".to_string(), worker)],
        "the one job ran on the one worker"
    );
    assert_eq!(
        app.chancy.get_queue("default").unwrap().executor,
        PROCESS_EXECUTOR,
        "the default queue is declared as upstream declares it"
    );
}

/// A worker that did not opt in runs process-executor queues on threads, in this very
/// process, and says so once: what is lost and how to opt in.
#[test]
fn without_the_opt_in_process_queues_run_on_threads() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    let id = format!("no-opt-in-{}", app.prefix);
    capture_warnings(&id);
    proc_queue(&app, "proc", 2);
    proc_queue(&app, "proc2", 2);
    let w = Worker::builder(&app.chancy)
        .worker_id(&id)
        .queue_change_poll_interval(Duration::from_millis(500))
        .job("t.pid", |ctx| {
            ctx.set_meta("pid", json!(std::process::id()));
            Ok(())
        })
        .build()
        .unwrap();
    w.start().unwrap();
    let refs = app
        .chancy
        .push_many(&[
            Job::new("t.pid").queue("proc"),
            Job::new("t.pid").queue("proc2"),
            Job::new("t.pid"),
        ])
        .unwrap();
    let jobs = app
        .chancy
        .wait_for_jobs(&refs, Duration::from_secs(30))
        .unwrap();
    w.stop();
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.errors);
        assert_eq!(
            job.meta["pid"].as_u64(),
            Some(u64::from(std::process::id()))
        );
    }
    let warnings = captured_warnings(&id);
    assert_eq!(warnings.len(), 1, "one warning per worker: {warnings:?}");
    for words in [
        "run on threads",
        "cannot be killed",
        "memory limit",
        "chancy::run_child_if_requested(&registry) first thing in main",
    ] {
        assert!(warnings[0].contains(words), "{words:?} in {}", warnings[0]);
    }
}

/// A program named as the child that never says hello is killed after the handshake bound
/// and the attempt fails saying why.
#[test]
fn a_child_that_never_says_hello_is_killed() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 1);
    let cat = PathBuf::from("/bin/cat");
    assert!(cat.exists(), "this test needs /bin/cat");
    let w = worker(&app).process_executable(&cat).build().unwrap();
    w.start().unwrap();
    let r = app
        .chancy
        .push(&Job::new("example.noop").queue("proc"))
        .unwrap();
    let job = app
        .chancy
        .wait_for_job(&r, Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let me = u64::from(std::process::id());
    let cats: Vec<(u64, u64)> = processes_of(&cat)
        .into_iter()
        .filter(|(_, ppid)| *ppid == me)
        .collect();
    w.stop();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.errors[0]
            .traceback
            .contains("did not start as a chancy executor child"),
        "{}",
        job.errors[0].traceback
    );
    assert!(cats.is_empty(), "the silent child was killed: {cats:?}");
}

/// Issue #14 item 1: SIGKILL of a worker whose process-executor queue is running jobs leaves
/// no child alive (checked through /proc).
#[test]
fn a_sigkilled_worker_leaves_no_child_alive() {
    let _serial = SERIAL.lock();
    let app = TestApp::new();
    proc_queue(&app, "proc", 2);
    let refs = app
        .chancy
        .push_many(&vec![
            Job::new("example.sleep")
                .queue("proc")
                .kwargs(json!({"seconds": 300}));
            2
        ])
        .unwrap();
    let exe = process_child();
    let worker = Command::new(&exe)
        .arg(database_url())
        .env("CHANCY_PREFIX", &app.prefix)
        .env_remove(chancy::CHILD_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut worker = Proc(worker);
    let pid = u64::from(worker.id());
    let children = eventually_some(
        Duration::from_secs(60),
        "the two jobs running in two children",
        || {
            let running = app
                .chancy
                .get_jobs(&refs)
                .unwrap()
                .iter()
                .filter(|j| j.state == JobState::Running)
                .count();
            let children: Vec<u64> = processes_of(&exe)
                .into_iter()
                .filter(|(_, ppid)| *ppid == pid)
                .map(|(p, _)| p)
                .collect();
            (running == 2 && children.len() == 2).then_some(children)
        },
    );
    // The children must be busy with the jobs (not idle) when the worker dies: a job is
    // `running` from its claim, a moment before its child has it.
    std::thread::sleep(Duration::from_millis(300));
    worker.kill().unwrap();
    worker.wait().unwrap();
    eventually(
        Duration::from_secs(10),
        "the children of the SIGKILLed worker to die",
        || children.iter().all(|p| !alive(*p)),
    );
}
