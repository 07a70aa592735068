//! The parent side of the process executor: each executor thread of a process-executor
//! queue owns one child process (a copy of the worker's binary, see `child.rs`) and sends it
//! one job at a time. A child that overruns its time limit or is cancelled is killed; one
//! that crashes fails only its attempt; a child is retired after `maximum_jobs_per_worker`
//! jobs. Every child is waited for, so none is left as a zombie.
//!
//! No child outlives its worker: on Linux the parent sets `PR_SET_PDEATHSIG = SIGKILL` in the
//! child between fork and exec (and the child exits if the worker is already gone by then);
//! everywhere, the child ends as soon as its stdin closes, which a dead worker's does. A child
//! that does not say hello within [`HELLO_TIMEOUT`] is killed. Which program is started, and
//! whether any is, is decided by `ChildProgram::for_queue` (`child.rs`) (the opt-in).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use super::child::{ChildRequest, ChildResponse, CHILD_ENV, HELLO};
use super::context::{JobError, JobErrorKind};
use super::executor::RunResult;
use crate::job::{LimitKind, QueuedJob};

/// Default jobs per child before it is replaced (upstream's `maximum_jobs_per_worker`).
pub(crate) const DEFAULT_MAXIMUM_JOBS_PER_CHILD: u32 = 100;

/// How long a new child has to say hello before it is killed.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiting executor thread checks the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    jobs_done: u32,
}

/// One executor thread's child process (started on first use).
pub(crate) struct ChildSlot {
    executable: PathBuf,
    max_jobs: u32,
    running: Option<Running>,
}

enum Waited {
    Line(String),
    Died,
    TimedOut(Duration),
    Cancelled,
}

impl ChildSlot {
    pub(crate) fn new(executable: PathBuf, max_jobs: u32) -> ChildSlot {
        ChildSlot {
            executable,
            max_jobs: max_jobs.max(1),
            running: None,
        }
    }

    /// Runs `job` in the child and returns its outcome (and, on success, the child's meta).
    pub(crate) fn run(
        &mut self,
        worker_id: &str,
        job: &QueuedJob,
        cancelled: Arc<AtomicBool>,
    ) -> RunResult {
        let request = ChildRequest {
            job: job.clone(),
            worker_id: worker_id.to_string(),
        };
        let line = match serde_json::to_string(&request) {
            Ok(line) => line,
            Err(e) => {
                return failure(format!(
                    "ProtocolError: cannot send the job to a child: {e}"
                ))
            }
        };
        if let Err(text) = self.send(&line) {
            return failure(text);
        }
        let limit = job.limit(LimitKind::Time).and_then(|l| l.as_duration());
        let waited = self.wait(limit, &cancelled);
        self.finish(job, waited)
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        if self.running.is_none() {
            self.running = Some(self.spawn()?);
        }
        let running = self.running.as_mut().expect("child was just started");
        let sent = writeln!(running.stdin, "{line}").and_then(|()| running.stdin.flush());
        if let Err(e) = sent {
            self.kill();
            return Err(format!(
                "ChildProcessError: the executor child did not take the job: {e}"
            ));
        }
        Ok(())
    }

    fn spawn(&self) -> Result<Running, String> {
        let mut command = Command::new(&self.executable);
        die_with_this_thread(&mut command);
        let mut child = command
            .env(CHILD_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "ChildProcessError: cannot start the executor child {}: {e}",
                    self.executable.display()
                )
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or("ChildProcessError: no stdin pipe")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("ChildProcessError: no stdout pipe")?;
        let (tx, lines) = bounded(1);
        let pid = child.id();
        let reader = super::spawn_named(&format!("chancy-child-{pid}"), move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        if let Err(e) = reader {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "ChildProcessError: cannot start the thread reading the executor child: {e}"
            ));
        }
        match lines.recv_timeout(HELLO_TIMEOUT) {
            Ok(line) if line == HELLO => Ok(Running {
                child,
                stdin,
                lines,
                jobs_done: 0,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "ChildProcessError: {} did not start as a chancy executor child; its main \
                     must call chancy::run_child_if_requested(&registry) first (or set \
                     WorkerBuilder::process_executable)",
                    self.executable.display()
                ))
            }
        }
    }

    fn wait(&mut self, limit: Option<Duration>, cancelled: &AtomicBool) -> Waited {
        let Some(running) = self.running.as_mut() else {
            return Waited::Died;
        };
        let started = Instant::now();
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Waited::Cancelled;
            }
            let mut tick = CANCEL_POLL;
            if let Some(limit) = limit {
                let left = limit.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Waited::TimedOut(limit);
                }
                tick = tick.min(left);
            }
            match running.lines.recv_timeout(tick) {
                Ok(line) => return Waited::Line(line),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Waited::Died,
            }
        }
    }

    fn finish(&mut self, job: &QueuedJob, waited: Waited) -> RunResult {
        match waited {
            Waited::Line(line) => {
                self.count_job();
                match serde_json::from_str::<ChildResponse>(&line) {
                    Ok(ChildResponse { error: None, meta }) => (Ok(()), meta),
                    Ok(ChildResponse {
                        error: Some(text), ..
                    }) => failure(text),
                    Err(e) => failure(format!(
                        "ProtocolError: unreadable answer from the executor child: {e}"
                    )),
                }
            }
            Waited::TimedOut(limit) => {
                self.kill();
                (
                    Err(JobError::with_kind(
                        JobErrorKind::Timeout,
                        format!(
                            "TimeoutError: Job timed out after {} s; its process was killed.",
                            limit.as_secs()
                        ),
                    )),
                    None,
                )
            }
            Waited::Cancelled => {
                self.kill();
                (Err(JobError::cancelled()), None)
            }
            Waited::Died => {
                let status = self.reap();
                failure(died_text(job, &status))
            }
        }
    }

    /// Retires the child once it has run its budget of jobs.
    fn count_job(&mut self) {
        let retire = self.running.as_mut().is_some_and(|r| {
            r.jobs_done += 1;
            r.jobs_done >= self.max_jobs
        });
        if retire {
            self.retire();
        }
    }

    /// Closes the child's stdin (it exits on its own) and waits for it.
    pub(crate) fn retire(&mut self) {
        if let Some(Running {
            mut child, stdin, ..
        }) = self.running.take()
        {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }

    fn reap(&mut self) -> String {
        match self.running.take() {
            Some(mut running) => match running.child.wait() {
                Ok(status) => describe_status(status),
                Err(e) => format!("an unknown status ({e})"),
            },
            None => "an unknown status".into(),
        }
    }
}

/// Linux: the child gets SIGKILL when the thread that started it (this executor thread,
/// which owns the child for its whole life) ends, including when the worker is SIGKILLed.
/// Set between fork and exec, so there is no window in which a dead worker's child runs
/// unwatched; a child whose worker died before that point exits at once.
#[cfg(target_os = "linux")]
fn die_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // getppid and _exit, which are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_this_thread(_command: &mut Command) {}

impl Drop for ChildSlot {
    fn drop(&mut self) {
        self.retire();
    }
}

fn failure(text: String) -> RunResult {
    (Err(JobError::with_kind(JobErrorKind::Failed, text)), None)
}

#[cfg(unix)]
fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

#[cfg(not(unix))]
fn describe_status(status: std::process::ExitStatus) -> String {
    status.to_string()
}

fn died_text(job: &QueuedJob, status: &str) -> String {
    match job.limit(LimitKind::Memory) {
        Some(limit) => format!(
            "MemoryError: the job's process died ({status}) with a memory limit of {} bytes; \
             it most likely failed to allocate past the limit",
            limit.value
        ),
        None => format!("ChildProcessError: the job's process died ({status}) while running it"),
    }
}
