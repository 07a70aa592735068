//! The child side of the process executor: a copy of the worker's own binary started with
//! `CHANCY_EXECUTOR_CHILD=1`, running one job at a time from stdin and answering on stdout.
//!
//! Protocol: one JSON line per job in ([`ChildRequest`]), one JSON line per outcome out
//! ([`ChildResponse`]). The child exits when stdin closes.

use std::io::{BufRead, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::context::Registry;
use super::executor::run_handler;
use crate::job::{JsonObject, LimitKind, QueuedJob};

/// The environment variable that turns a process into an executor child.
pub const CHILD_ENV: &str = "CHANCY_EXECUTOR_CHILD";

#[derive(Serialize, Deserialize)]
pub(crate) struct ChildRequest {
    pub job: QueuedJob,
    pub worker_id: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ChildResponse {
    pub error: Option<String>,
    pub meta: Option<JsonObject>,
}

/// If this process was started as a process-executor child, serves jobs with `registry`
/// until the worker closes the pipe, then exits the process; otherwise returns at once.
///
/// A program that runs a [`Worker`](crate::Worker) with process-executor queues must call
/// this first thing in `main`, with the same handlers it gives the worker (the CLI's
/// [`run`](crate::cli::run) does it for you):
///
/// ```no_run
/// let registry = chancy::Registry::new().job("myapp.heavy", |_ctx| Ok(()));
/// chancy::run_child_if_requested(&registry);
/// // ... build the Chancy app and a Worker with `.registry(registry)` ...
/// ```
pub fn run_child_if_requested(registry: &Registry) {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    die_with_parent();
    // The child only serves jobs: a job's panic belongs in its error text, with its location.
    super::panics::install_hook();
    serve(registry);
    std::process::exit(0);
}

/// The first line a child prints, so the worker knows it started the right program.
pub(crate) const HELLO: &str = "{\"chancy_child\": 1}";

fn serve(registry: &Registry) {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{HELLO}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return;
    }
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let response = match serde_json::from_str::<ChildRequest>(&line) {
            Ok(request) => run_one(registry, request),
            Err(e) => ChildResponse {
                error: Some(format!(
                    "ProtocolError: the executor child could not read a job: {e}"
                )),
                meta: None,
            },
        };
        let Ok(text) = serde_json::to_string(&response) else {
            return;
        };
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}

fn run_one(registry: &Registry, request: ChildRequest) -> ChildResponse {
    let memory = request
        .job
        .limit(LimitKind::Memory)
        .map(|l| l.value.max(0) as u64);
    let previous = memory.map(set_address_space_limit);
    let (_, (result, meta)) = run_handler(
        registry,
        &request.worker_id,
        request.job,
        Arc::new(AtomicBool::new(false)),
    );
    if let Some(Some(previous)) = previous {
        restore_address_space_limit(previous);
    }
    ChildResponse {
        error: result.err().map(|e| e.text().to_string()),
        meta,
    }
}

/// Asks Linux to kill this child when the worker dies, so no child outlives a killed worker
/// (elsewhere the child exits when its stdin closes, after its current job).
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and changes only this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Lowers the soft RLIMIT_AS to `bytes`; returns the previous limits.
fn set_address_space_limit(bytes: u64) -> Option<libc::rlimit> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_AS, &mut old) != 0 {
            return None;
        }
        let new = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_AS, &new) != 0 {
            return None;
        }
    }
    Some(old)
}

fn restore_address_space_limit(previous: libc::rlimit) {
    // SAFETY: see above; raising the soft limit back up to the unchanged hard limit is allowed.
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &previous);
    }
}
