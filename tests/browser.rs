//! The dashboard in a real headless Chromium: seeds a random table prefix with a pending job
//! and a job that failed (run by an in-process worker), starts the built `chancy web` on a
//! free port, and runs `tests/browser/e2e.mjs` (playwright-core driving `/usr/bin/chromium`),
//! which logs in, follows the three clicks to the failed job's error text, cancels the pending
//! job, pauses and resumes a queue, checks the workflow graph and saves screenshots to `target/browser-artifacts/`. Then checks the database and the
//! screenshots.
//!
//! Needs `node` (20+), `npm ci --prefix tests/browser` and Debian's `chromium` package;
//! `.ci/run` installs the last two. When one is missing the test fails and says how to get it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use chancy::plugins::{Workflow, WorkflowPlugin, WorkflowState};
use chancy::{Chancy, Job, JobContext, JobError, JobState, Queue, QueueState, Worker};

mod support;
use support::browser::{
    chromium, free_port, manifest_dir, require_node, run_limited, start_web, WEB_USER,
};
use support::db::{database_url, drop_prefix};

const BIN: &str = env!("CARGO_BIN_EXE_chancy");
const USERNAME: &str = WEB_USER.0;
const PASSWORD: &str = WEB_USER.1;
const FAILING_FUNC: &str = "reports.render_invoice";
const FAILURE_TEXT: &str = "printer on fire: tray 2 jammed";
const SCREENSHOTS: [&str; 8] = [
    "login",
    "overview",
    "failed-job",
    "jobs",
    "cancelled-job",
    "queues",
    "workflow",
    "overview-narrow",
];

/// Installs what the test needs when it can, the way `.ci/run` does: the pinned npm package
/// (`npm ci`, no browser download) and, as root on Debian, the `chromium` package. Fails
/// (never skips) with install advice when node, the npm package or Chromium is missing.
fn provision() -> PathBuf {
    require_node();
    let package = manifest_dir().join("tests/browser/node_modules/playwright-core/package.json");
    if !package.exists() {
        eprintln!("browser test: installing its npm package (npm ci --prefix tests/browser)");
        let _ = Command::new("npm")
            .args(["ci", "--prefix", "tests/browser", "--no-audit", "--no-fund"])
            .args(["--loglevel=error"])
            .current_dir(manifest_dir())
            .status();
    }
    assert!(
        package.exists(),
        "the browser test needs its npm package: run `npm ci --prefix tests/browser` \
         ({} is missing; playwright-core downloads no browser)",
        package.display()
    );
    chromium()
}

/// One test's tables and server; dropping it stops the server and drops the tables.
struct Harness {
    prefix: String,
    server: Option<Child>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop_prefix(&self.prefix);
    }
}

/// What the page is checked against: ids of rows made by a real worker.
struct Seeded {
    failed_job: String,
    workflow: String,
}

/// Runs, through a real in-process worker (which also is the leader and runs the workflow
/// and metrics plugins), one job that fails for good and a workflow whose `mail` step fails,
/// so its `archive` step is never pushed.
fn seed(chancy: &Chancy) -> Seeded {
    // Declared first so they run on threads (a worker would declare `default` with upstream's
    // process executor, whose children must be this test binary's own `main`).
    for name in ["default", "reports"] {
        chancy
            .declare(&Queue::new(name).concurrency(2))
            .expect("declare a queue");
    }
    let succeed = |_ctx: &JobContext| -> Result<(), JobError> { Ok(()) };
    let worker = Worker::builder(chancy)
        .worker_id("browser-test-worker")
        .job(FAILING_FUNC, |_ctx: &JobContext| -> Result<(), JobError> {
            Err(JobError::new(FAILURE_TEXT))
        })
        .job("reports.fetch", succeed)
        .job("reports.render", succeed)
        .job(
            "reports.mail",
            |_ctx: &JobContext| -> Result<(), JobError> {
                Err(JobError::new("SMTP relay refused the message"))
            },
        )
        .build()
        .expect("build worker");
    worker.start().expect("start worker");
    assert!(
        worker.is_leader().wait_timeout(Duration::from_secs(30)),
        "the only worker becomes the leader"
    );
    let reference = chancy
        .push(
            &Job::new(FAILING_FUNC)
                .kwargs(serde_json::json!({"invoice": 1042, "copies": 2}))
                .max_attempts(1),
        )
        .expect("push the failing job");
    let step = |func: &str| Job::new(func).queue("reports");
    let workflow = Workflow::new("month-end-report")
        .add("fetch", step("reports.fetch"), &[])
        .add("render_pdf", step("reports.render"), &["fetch"])
        .add("render_csv", step("reports.render"), &["fetch"])
        .add("mail", step("reports.mail"), &["render_pdf", "render_csv"])
        .add("archive", step("reports.fetch"), &["mail"]);
    let workflow_id = WorkflowPlugin::push(chancy, &workflow).expect("push the workflow");
    let job = chancy
        .wait_for_job(&reference, Duration::from_secs(60))
        .expect("the failing job finishes")
        .expect("the failing job exists");
    let workflow = WorkflowPlugin::wait_for_workflow(chancy, workflow_id, Duration::from_secs(60))
        .expect("the workflow finishes");
    assert!(worker.stop(), "the worker stops cleanly");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        workflow.state,
        WorkflowState::Failed,
        "its mail step failed"
    );
    Seeded {
        failed_job: job.id.to_string(),
        workflow: workflow_id.to_string(),
    }
}

/// Runs the browser script with a time limit; returns its exit status and output.
fn run_e2e(envs: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new("node");
    cmd.arg("tests/browser/e2e.mjs").current_dir(manifest_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (status, out, err) = run_limited(cmd, Duration::from_secs(240));
    (status, format!("{out}{err}"))
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("screenshot {} missing: {e}", path.display()));
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a real PNG ({} bytes)",
        path.display(),
        bytes.len()
    );
}

#[test]
fn dashboard_login_failed_job_in_three_clicks_and_cancel_in_headless_chromium() {
    let chromium = provision();
    let url = database_url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut h = Harness {
        prefix: format!("b{}_", &id[..10]),
        server: None,
    };
    let chancy = Chancy::builder(&url)
        .prefix(h.prefix.clone())
        .connection_timeout(Duration::from_secs(10))
        .build()
        .expect("build chancy");
    chancy.migrate().expect("migrate");

    let seeded = seed(&chancy);
    // Declared after the worker stopped, so nothing ever runs this job.
    chancy
        .declare(&Queue::new("emails").concurrency(2))
        .expect("declare emails");
    let pending = chancy
        .push(
            &Job::new("emails.send_welcome")
                .queue("emails")
                .kwargs(serde_json::json!({"to": "newcomer@example.com"}))
                .meta(serde_json::json!({"source": "browser-test"})),
        )
        .expect("push the pending job");
    let pending_id = pending.id().to_string();

    let artifacts = manifest_dir().join("target/browser-artifacts");
    for name in SCREENSHOTS.iter().chain(["failure"].iter()) {
        let _ = std::fs::remove_file(artifacts.join(format!("{name}.png")));
    }

    let port = free_port();
    h.server = Some(start_web(Path::new(BIN), &url, &h.prefix, port, &[]));
    let (status, output) = run_e2e(&[
        ("CHANCY_URL", format!("http://127.0.0.1:{port}/")),
        ("CHANCY_USERNAME", USERNAME.to_string()),
        ("CHANCY_PASSWORD", PASSWORD.to_string()),
        ("CHANCY_PENDING_JOB", pending_id.clone()),
        ("CHANCY_FAILED_JOB", seeded.failed_job),
        ("CHANCY_WORKFLOW", seeded.workflow),
        ("CHANCY_FAILED_QUEUE", "default".to_string()),
        ("CHANCY_FAILED_TEXT", FAILURE_TEXT.to_string()),
        ("CHANCY_ARTIFACTS", artifacts.display().to_string()),
        ("CHROMIUM", chromium.display().to_string()),
    ]);
    println!("{output}");
    assert_eq!(
        status,
        Some(0),
        "the browser script failed (screenshots in {}):\n{output}",
        artifacts.display()
    );

    let job = chancy
        .get_job(&pending)
        .expect("read the cancelled job")
        .expect("the cancelled job still exists");
    assert_eq!(
        job.state,
        JobState::Failed,
        "cancelling from the page marks the job failed (as upstream 0.26)"
    );
    assert!(
        job.completed_at.is_some(),
        "a cancelled job has completed_at"
    );
    let emails = chancy.get_queue("emails").expect("read the emails queue");
    assert_eq!(
        emails.state,
        QueueState::Active,
        "the page paused and resumed the emails queue"
    );
    for name in SCREENSHOTS {
        assert_png(&artifacts.join(format!("{name}.png")));
    }
}
