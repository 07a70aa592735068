//! The child side of the process executor: a copy of the worker's own binary started with
//! `CHANCY_EXECUTOR_CHILD=1`, running one job at a time from stdin and answering on stdout.
//!
//! Protocol: one JSON line per job in ([`ChildRequest`]), one JSON line per outcome out
//! ([`ChildResponse`]). The child exits as soon as stdin closes, even in the middle of a job
//! (the worker closed the pipe or died), and on Linux also when the worker's thread that
//! started it dies (`PR_SET_PDEATHSIG`, set by the parent between fork and exec).
//!
//! Calling [`run_child_if_requested`] is also how a program declares that it can act as a
//! child: a worker starts copies of its own program only after that call (see
//! [`child_role_declared`]), so a program that never made it can never fork itself.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// Atomics: CHILD_ROLE_DECLARED is written once at start and read once per process-executor
// queue; SeqCst (rather than Acquire/Release) because it is not on any hot path.

use serde::{Deserialize, Serialize};

use super::context::Registry;
use super::executor::run_handler;
use crate::job::{JsonObject, LimitKind, QueuedJob};

/// The environment variable that turns a process into an executor child. Its value is the
/// worker's process id; a child whose parent is already another process exits at once.
pub const CHILD_ENV: &str = "CHANCY_EXECUTOR_CHILD";

/// Set by [`run_child_if_requested`]: this program handles the executor-child role.
static CHILD_ROLE_DECLARED: AtomicBool = AtomicBool::new(false);

/// Which program process-executor queues start as their children (see
/// [`ChildProgram::for_queue`]). Built once with the worker; read when a queue's executor
/// pool is (re)built by the fetch scheduler.
pub(crate) struct ChildProgram {
    /// `WorkerBuilder::process_executable`. Read-only.
    configured: Option<std::path::PathBuf>,
    /// Set once the "process-executor queue on threads" warning was logged (SeqCst swap:
    /// once per worker whichever queue gets there first; rare, so the cost is nil).
    warned: AtomicBool,
}

impl ChildProgram {
    pub(crate) fn new(configured: Option<std::path::PathBuf>) -> ChildProgram {
        ChildProgram {
            configured,
            warned: AtomicBool::new(false),
        }
    }

    /// The program started as the child of process-executor queue `queue`, or `None` when
    /// the program did not opt in: then the queue runs on threads, and the first such queue
    /// logs one warning saying what that loses and how to opt in.
    ///
    /// Opting in is calling `run_child_if_requested` (this program serves the child role)
    /// or naming another program with `WorkerBuilder::process_executable`. Without it a
    /// worker never starts a copy of its own program: that program's `main` would run again
    /// instead of serving jobs, and start a worker of its own, and so on.
    pub(crate) fn for_queue(&self, queue: &str, worker_id: &str) -> Option<std::path::PathBuf> {
        if let Some(path) = &self.configured {
            return Some(path.clone());
        }
        let exe = child_role_declared()
            .then(std::env::current_exe)
            .and_then(|exe| match exe {
                Ok(exe) => Some(exe),
                Err(e) => {
                    log::error!("cannot find this program's path to start executor children: {e}");
                    None
                }
            });
        if exe.is_none() && !self.warned.swap(true, Ordering::SeqCst) {
            log::warn!(
                "queue {queue:?} uses the process executor, but this program never called \
                 chancy::run_child_if_requested, so its jobs (and those of every other \
                 process-executor queue of worker {}) run on threads in this process: a job \
                 that overruns its time limit cannot be killed (it only sees its deadline) \
                 and a job with a memory limit fails. To run them in child processes, call \
                 chancy::run_child_if_requested(&registry) first thing in main, or set \
                 WorkerBuilder::process_executable",
                worker_id
            );
        }
        exe
    }
}

/// Whether this program called [`run_child_if_requested`], i.e. declared that a copy of it
/// started with [`CHILD_ENV`] serves jobs instead of running its `main`.
pub(crate) fn child_role_declared() -> bool {
    CHILD_ROLE_DECLARED.load(Ordering::SeqCst)
}

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
/// The call is also the program's opt-in to the process executor: a [`Worker`](crate::Worker)
/// runs `ProcessExecutor` queues in child processes (copies of this program) only once this
/// was called; without it those queues run on threads (one warning says so), so a program
/// can never start copies of itself by accident. Call it first thing in `main`, before
/// anything that connects, pushes or starts threads, with the same handlers you give the
/// worker (the CLI's [`run`](crate::cli::run) does it for you):
///
/// ```no_run
/// let registry = chancy::Registry::new().job("myapp.heavy", |_ctx| Ok(()));
/// chancy::run_child_if_requested(&registry);
/// // ... build the Chancy app and a Worker with `.registry(registry)` ...
/// ```
pub fn run_child_if_requested(registry: &Registry) {
    CHILD_ROLE_DECLARED.store(true, Ordering::SeqCst);
    let Some(parent) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Whatever the jobs start must not see the marker (a grandchild would be a child too).
    std::env::remove_var(CHILD_ENV);
    die_with_parent();
    let parent = parent.to_str().and_then(|p| p.parse::<u32>().ok());
    if parent.is_some_and(|p| p != std::os::unix::process::parent_id()) {
        // The worker died before this child got going; nobody will ever talk to it.
        std::process::exit(1);
    }
    // The child only serves jobs: a job's panic belongs in its error text, with its location.
    super::panics::install_hook();
    serve(registry);
    std::process::exit(0);
}

/// The first line a child prints, so the worker knows it started the right program.
pub(crate) const HELLO: &str = "{\"chancy_child\": 1}";

fn serve(registry: &Registry) {
    let lines = stdin_watchdog();
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{HELLO}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return;
    }
    for line in lines {
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

/// Reads stdin on its own thread. End of input means the worker closed the pipe (after the
/// last answer was read) or died: either way nobody waits for this process any more, so it
/// ends at once, even in the middle of a job.
fn stdin_watchdog() -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = super::spawn_named("chancy-child-stdin", move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        // SAFETY: _exit ends the process without running destructors or atexit
        // handlers concurrently with the job still running on the main thread.
        unsafe { libc::_exit(0) }
    });
    if spawned.is_err() {
        // Without the watchdog the child could outlive a dead worker: do not serve.
        std::process::exit(1);
    }
    rx
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

/// Asks Linux to kill this child when the worker dies (again: the parent already set it
/// between fork and exec, see `process.rs`). Elsewhere the stdin watchdog ends the child.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_child_program_serves_every_process_queue_without_a_warning() {
        let program = ChildProgram::new(Some("/opt/app/bin/worker".into()));
        for queue in ["a", "b"] {
            assert_eq!(
                program.for_queue(queue, "w"),
                Some(std::path::PathBuf::from("/opt/app/bin/worker"))
            );
        }
        assert!(!program.warned.load(Ordering::SeqCst));
    }
}
