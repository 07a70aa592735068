//! A worker's lifecycle as a library user sees it: dropping the last handle stops it, and
//! nothing process-wide (panic hook, signal handlers) is installed unless asked for.
//!
//! Its own test binary: the panic hook is process-wide state.

mod support;
use support::db;
use support::wait::{holds_for, SOON};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chancy::{Chancy, Job, JobState, Queue, Worker, WorkerBuilder};

/// An app on its own random prefix, migrated; its tables are dropped at the end.
struct App {
    chancy: Chancy,
    prefix: String,
}

impl App {
    fn new() -> App {
        let prefix = format!("lc_{}_", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let chancy = Chancy::builder(db::database_url())
            .prefix(&prefix)
            .no_default_plugins()
            .build()
            .unwrap();
        chancy.migrate().unwrap();
        chancy.declare(&Queue::new("default")).unwrap();
        App { chancy, prefix }
    }

    fn worker(&self) -> WorkerBuilder {
        Worker::builder(&self.chancy)
            .queue_change_poll_interval(Duration::from_millis(200))
            .shutdown_timeout(Duration::from_secs(10))
    }
}

impl Drop for App {
    fn drop(&mut self) {
        db::drop_prefix(&self.prefix);
    }
}

/// Counts the worker's clean stops (its `worker.stopped` hub event).
fn stop_probe(worker: &Worker) -> Arc<AtomicUsize> {
    let stopped = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&stopped);
    worker.hub().on(chancy::WORKER_STOPPED, move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    stopped
}

fn eventually(what: &str, cond: impl FnMut() -> bool) {
    support::wait::eventually(SOON, what, cond);
}

#[test]
fn dropping_the_last_handle_stops_the_worker_gracefully() {
    let app = App::new();
    let finished = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&finished);
    let worker = app
        .worker()
        .job("t.slow", move |_| {
            // Still running when the last handle drops: the stop must wait this long.
            std::thread::sleep(Duration::from_millis(500));
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .build()
        .unwrap();
    let stopped = stop_probe(&worker);
    worker.start().unwrap();
    let clone = worker.clone();
    let r = app.chancy.push(&Job::new("t.slow")).unwrap();
    eventually("the job is running", || {
        app.chancy
            .get_job(&r)
            .unwrap()
            .is_some_and(|j| j.state == JobState::Running)
    });

    drop(worker);
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        0,
        "a clone still holds the worker"
    );
    drop(clone); // the last handle: stops gracefully and waits for the running job
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        1,
        "the worker stopped cleanly when its last handle was dropped"
    );
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the running job finished first"
    );
    let job = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "its outcome was written at the stop"
    );
    // A job pushed now is not claimed: nothing is left running.
    let later = app.chancy.push(&Job::new("t.slow")).unwrap();
    holds_for(
        Duration::from_millis(500),
        "the later job stays pending",
        || app.chancy.get_job(&later).unwrap().unwrap().state == JobState::Pending,
    );
}

#[test]
fn a_handle_dropped_inside_a_job_stops_the_worker_without_deadlock() {
    let app = App::new();
    let slot: Arc<Mutex<Option<Worker>>> = Arc::new(Mutex::new(None));
    let in_job = Arc::clone(&slot);
    let worker = app
        .worker()
        .job("t.drop_worker", move |_| {
            // The job drops the application's last handle on an executor thread.
            drop(in_job.lock().unwrap().take());
            Ok(())
        })
        .build()
        .unwrap();
    let stopped = stop_probe(&worker);
    worker.start().unwrap();
    *slot.lock().unwrap() = Some(worker);
    let r = app.chancy.push(&Job::new("t.drop_worker")).unwrap();
    eventually("the worker stopped", || stopped.load(Ordering::SeqCst) == 1);
    let job = app.chancy.get_job(&r).unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "the stop wrote the job's outcome"
    );
}

#[test]
fn the_panic_hook_is_installed_only_when_asked() {
    let app = App::new();
    // The application's own hook, set before any worker starts.
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
        record.lock().unwrap().push(text.unwrap_or_default());
        previous(info);
    }));

    let run_panicking_job = |worker: Worker, message: &str| {
        worker.start().unwrap();
        let r = app
            .chancy
            .push(&Job::new("t.panic").kwargs(serde_json::json!({"m": message})))
            .unwrap();
        let job = app
            .chancy
            .wait_for_job(&r, Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert!(worker.stop());
        assert_eq!(job.state, JobState::Failed);
        job.errors[0].traceback.clone()
    };
    let panicking = |b: WorkerBuilder| {
        b.job("t.panic", |ctx| {
            panic!("{}", ctx.job().kwargs["m"].as_str().unwrap_or_default())
        })
    };

    // Default: chancy's hook is not installed; the application's hook sees the panic and the
    // attempt records the message.
    let plain = run_panicking_job(panicking(app.worker()).build().unwrap(), "first-panic");
    assert_eq!(plain, "Panic: job \"t.panic\" first-panic");
    assert!(seen.lock().unwrap().iter().any(|m| m == "first-panic"));

    // Asked for: the job's panic is captured with its location, not passed on.
    let hooked = run_panicking_job(
        panicking(app.worker().panic_hook(true)).build().unwrap(),
        "second-panic",
    );
    assert!(
        hooked.starts_with("Panic: job \"t.panic\" panicked at tests/lifecycle.rs:"),
        "{hooked}"
    );
    assert!(hooked.ends_with("second-panic"), "{hooked}");
    assert!(!seen.lock().unwrap().iter().any(|m| m == "second-panic"));
    // A panic outside a job still reaches the application's hook.
    let _ = std::thread::spawn(|| panic!("outside-a-job")).join();
    assert!(seen.lock().unwrap().iter().any(|m| m == "outside-a-job"));
}
