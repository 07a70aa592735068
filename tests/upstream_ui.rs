//! Upstream Chancy 0.26.0's own code as the client of `chancy web`. The `chancy==0.26.0` wheel
//! is fetched from PyPI at test time (`pip download`, unpacked under `target/`); nothing of
//! it is kept in this repository.
//!
//! - `upstream_api_client_validates_every_reply`: `tests/upstream_ui/contract.mjs` bundles
//!   the wheel's TypeScript API client and zod schemas with esbuild and calls every method
//!   upstream's dashboard uses — reads and actions — against `chancy web` on a database
//!   with jobs in every state, a workflow with many steps, a cron, a mixed fleet (a Rust and
//!   a Python Chancy 0.26.0 worker, from the venv tests/interop uses) and counter, gauge and
//!   histogram metrics. Every reply must validate.
//! - `upstream_dashboard_renders_every_page_in_headless_chromium`: serves the wheel's built
//!   dashboard (`chancy/plugins/api/dist/`) on its own origin, signs in to `chancy web` with
//!   its own form and visits every page (`tests/upstream_ui/pages.mjs`, playwright-core
//!   driving Debian's Chromium) with no failed API request; screenshots go to
//!   `target/browser-artifacts/upstream-*.png`.
//!
//! Needs `node` (20+), `python3 -m pip`, PyPI and the npm registry on first use, and for
//! the browser test Debian's `chromium`. Missing pieces fail the test with instructions.
//! `CHANCY_WEB_BIN` runs the checks against another `chancy` binary (to measure a build).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chancy::plugins::{
    Cron, Leadership, Metrics, RetryPlugin, RetrySettings, Workflow, WorkflowPlugin,
};
use chancy::{Chancy, Job, JobContext, JobError, JobState, Queue, Reference, Worker};
use serde_json::{json, Value};

mod support;
use support::browser::{
    chromium, free_port, manifest_dir, require_node, run_limited, start_web, WEB_USER,
};
use support::db::{database_url, drop_prefix};
use support::wait::{eventually, Gate};

const USERNAME: &str = WEB_USER.0;
const PASSWORD: &str = WEB_USER.1;
const WHEEL: &str = "chancy-0.26.0-py3-none-any.whl";
const WORKFLOW_STEPS: usize = 24;

fn chancy_bin() -> PathBuf {
    std::env::var_os("CHANCY_WEB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chancy")))
}

/// Tests of this binary run on parallel threads: provisioning happens once, under this lock.
static PROVISION: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `npm ci` of the pinned packages (esbuild, zod, playwright-core) when missing.
fn provision_npm() {
    let _once = PROVISION.lock().unwrap_or_else(|e| e.into_inner());
    let dir = manifest_dir().join("tests/upstream_ui");
    require_node();
    for package in ["esbuild", "zod", "playwright-core"] {
        if !dir.join("node_modules").join(package).exists() {
            let _ = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status();
            break;
        }
    }
    for package in ["esbuild", "zod", "playwright-core"] {
        assert!(
            dir.join("node_modules").join(package).exists(),
            "npm package {package} is missing: run `npm ci --prefix tests/upstream_ui` \
             (the npm registry must be reachable)"
        );
    }
}

/// The unpacked `chancy==0.26.0` wheel (the folder holding `chancy/`), fetched from PyPI
/// into `target/chancy-wheel/` on first use.
fn wheel() -> PathBuf {
    let _once = PROVISION.lock().unwrap_or_else(|e| e.into_inner());
    let dir = manifest_dir().join("target/chancy-wheel");
    let unpacked = dir.join("unpacked");
    let marker = unpacked.join("chancy/plugins/api/ui/src/services/chancy.ts");
    if marker.exists() {
        return unpacked;
    }
    std::fs::create_dir_all(&dir).expect("create target/chancy-wheel");
    if !dir.join(WHEEL).exists() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "chancy==0.26.0",
                "--no-deps",
                "-q",
                "-d",
            ])
            .arg(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "`python3 -m pip download chancy==0.26.0` failed: Python 3 with pip and PyPI \
             must be reachable"
        );
    }
    // Unpacked beside its final place and renamed, so an interrupted unpack is never taken
    // for a whole one.
    let partial = dir.join(format!("unpacking-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(&unpacked);
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(dir.join(WHEEL))
        .arg(&partial)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "unpacking {WHEEL} failed"
    );
    std::fs::rename(&partial, &unpacked).expect("move the unpacked wheel into place");
    assert!(marker.exists(), "{} is not in the wheel", marker.display());
    unpacked
}

/// One test's tables, worker and server; dropping it stops them and drops the tables.
struct Harness {
    chancy: Chancy,
    url: String,
    prefix: String,
    worker: Option<Worker>,
    release: Gate,
    server: Option<Child>,
    python: Option<Child>,
    port: u16,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for mut child in [self.server.take(), self.python.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.release.open();
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
        drop_prefix(&self.prefix);
    }
}

fn state(chancy: &Chancy, r: &Reference) -> Option<JobState> {
    chancy.get_job(r).expect("read a job").map(|j| j.state)
}

/// Seeds the database through a real worker (leader, metrics, workflow, cron, retry
/// plugins) and returns the ids the client scripts use. The worker keeps running (one of
/// its jobs stays `running` until the harness drops).
fn seed(url: &str) -> (Harness, Value) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("u{}_", &id[..10]);
    let metrics = Metrics::builder()
        .sync_interval(Duration::from_secs(1))
        .collection_interval(Duration::from_secs(1))
        .build()
        .expect("metrics plugin");
    let chancy = Chancy::builder(url)
        .prefix(prefix.clone())
        .no_default_plugins()
        .plugin(
            Leadership::builder()
                .poll_interval(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .plugin(metrics)
        .plugin(WorkflowPlugin::new().polling_interval(Duration::from_secs(1)))
        .plugin(Cron::new())
        .plugin(RetryPlugin)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .expect("build chancy");
    let release = Gate::new();
    let mut h = Harness {
        chancy: chancy.clone(),
        url: url.to_string(),
        prefix,
        worker: None,
        release: release.clone(),
        server: None,
        python: None,
        port: 0,
    };
    chancy.migrate().expect("migrate");
    chancy.migrate_key("cron", None).expect("migrate cron");
    for name in ["shop", "reports"] {
        chancy
            .declare(&Queue::new(name).concurrency(4))
            .expect("declare a queue");
    }
    // Served by no worker: its jobs stay pending.
    chancy
        .declare(&Queue::new("held").tags(["nobody-has-this-tag"]))
        .expect("declare held");
    let ok = |_ctx: &JobContext| -> Result<(), JobError> { Ok(()) };
    let hold = release.clone();
    let worker = Worker::builder(&chancy)
        .worker_id("upstream-ui-worker")
        .job("shop.ok", ok)
        .job("shop.fail", |_ctx: &JobContext| -> Result<(), JobError> {
            Err(JobError::new("card declined: insufficient funds"))
        })
        .job(
            "shop.hold",
            move |ctx: &JobContext| -> Result<(), JobError> {
                // Released when the harness drops; a cancelled run ends too (as before: Ok).
                let _ = hold.pass(ctx);
                Ok(())
            },
        )
        .job("reports.step", ok)
        .build()
        .expect("build worker");
    worker.start().expect("start worker");
    assert!(
        worker.is_leader().wait_timeout(Duration::from_secs(30)),
        "the only worker becomes the leader"
    );
    let push = |job: Job| chancy.push(&job).expect("push");
    let shop = |func: &str| Job::new(func).queue("shop");
    let mut succeeded = Vec::new();
    for n in 0..6 {
        succeeded.push(push(shop("shop.ok").kwargs(json!({ "order": n }))));
    }
    let mut failed = Vec::new();
    for n in 0..4 {
        failed.push(push(shop("shop.fail").kwargs(json!({ "order": 100 + n }))));
    }
    let later = RetrySettings::default()
        .backoff(Duration::from_secs(3600))
        .backoff_jitter(Duration::ZERO, Duration::from_secs(1));
    let retrying = push(
        shop("shop.fail")
            .max_attempts(5)
            .meta(json!({ "retry_settings": later.to_json() })),
    );
    let running = push(shop("shop.hold"));
    // A big job: the list must stay small, the detail must give it all.
    let large = push(shop("shop.ok").kwargs(json!({ "blob": "x".repeat(300_000) })));
    let mut pending = Vec::new();
    for n in 0..4 {
        pending.push(push(
            Job::new("shop.ok").queue("held").kwargs(json!({ "n": n })),
        ));
    }
    let mut workflow = Workflow::new("month-end-report");
    for n in 0..WORKFLOW_STEPS {
        let deps: Vec<String> = if n == 0 {
            vec![]
        } else {
            vec![format!("step_{}", (n - 1) / 2)]
        };
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        workflow = workflow.add(
            format!("step_{n}"),
            Job::new("reports.step").queue("reports"),
            &deps,
        );
    }
    let workflow_id = WorkflowPlugin::push(&chancy, &workflow).expect("push the workflow");
    Cron::schedule(
        &chancy,
        "*/5 * * * *",
        &[Job::new("shop.ok")
            .queue("shop")
            .unique_key("shop.nightly_report")],
        "UTC",
    )
    .expect("schedule a cron");

    for r in succeeded.iter().chain([&large]) {
        eventually(Duration::from_secs(60), "a job to succeed", || {
            state(&chancy, r) == Some(JobState::Succeeded)
        });
    }
    for r in &failed {
        eventually(Duration::from_secs(60), "a job to fail", || {
            state(&chancy, r) == Some(JobState::Failed)
        });
    }
    eventually(Duration::from_secs(60), "the retrying job", || {
        state(&chancy, &retrying) == Some(JobState::Retrying)
    });
    eventually(Duration::from_secs(60), "the running job", || {
        state(&chancy, &running) == Some(JobState::Running)
    });
    WorkflowPlugin::wait_for_workflow(&chancy, workflow_id, Duration::from_secs(120))
        .expect("the workflow finishes");
    let reader = Metrics::builder().build().unwrap();
    eventually(Duration::from_secs(60), "metrics of every type", || {
        let keys = reader.list_metrics(&chancy).unwrap_or_default();
        keys.iter().any(|k| k.ends_with("execution_time"))
            && keys.iter().any(|k| k.starts_with("table:"))
            && keys.iter().any(|k| k.ends_with(":succeeded"))
    });
    h.worker = Some(worker);
    let ids =
        |refs: &[Reference]| -> Vec<String> { refs.iter().map(|r| r.id().to_string()).collect() };
    let seed = json!({
        "queue": "shop",
        "worker": "upstream-ui-worker",
        "workflow": workflow_id.to_string(),
        "workflow_steps": WORKFLOW_STEPS,
        "large_job": large.id().to_string(),
        "jobs": {
            "pending": pending[0].id().to_string(),
            "running": running.id().to_string(),
            "retrying": retrying.id().to_string(),
            "succeeded": succeeded[0].id().to_string(),
            "failed": failed[0].id().to_string(),
        },
        "batch": {
            "retry": ids(&failed[1..3]),
            "cancel": ids(&pending[1..3]),
            "purge": ids(&succeeded[1..3]),
        },
    });
    (h, seed)
}

/// The Python Chancy 0.26.0 of `target/py026` (the venv tests/interop makes; made here the
/// same way when missing).
fn python() -> PathBuf {
    support::python::chancy_026()
}

/// Adds a Python Chancy 0.26.0 worker to the fleet (tests/interop's `work` command, waiting
/// for a job nobody runs) and waits until both workers are registered.
fn start_python_worker(h: &mut Harness, seed: &Value) {
    let held = json!([seed["jobs"]["pending"]]).to_string();
    let child = Command::new(python())
        .arg(manifest_dir().join("tests/interop/interop_jobs.py"))
        .args(["work", &h.url, &h.prefix, &held, "900"])
        .env("PYTHONPATH", manifest_dir().join("tests/interop"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a Python worker");
    h.python = Some(child);
    let chancy = h.chancy.clone();
    eventually(
        Duration::from_secs(90),
        "the Python worker to register",
        || {
            chancy.get_all_workers().is_ok_and(|w| {
                w.iter()
                    .any(|w| w.tags.iter().any(|t| t.starts_with("python")))
            })
        },
    );
}

fn start_server(h: &mut Harness, allow_origin: Option<&str>) {
    let port = free_port();
    let extra: Vec<&str> = allow_origin.map_or(vec![], |o| vec!["--allow-origin", o]);
    h.server = Some(start_web(&chancy_bin(), &h.url, &h.prefix, port, &extra));
    h.port = port;
}

/// Runs `node <script>` in tests/upstream_ui with a time limit; (exit code, stdout, stderr).
fn run_node(script: &str, envs: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(manifest_dir().join("tests/upstream_ui"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_limited(cmd, Duration::from_secs(300))
}

#[test]
fn upstream_api_client_validates_every_reply() {
    provision_npm();
    let wheel = wheel();
    let (mut h, seed) = seed(&database_url());
    start_python_worker(&mut h, &seed);
    start_server(&mut h, None);
    let (status, stdout, stderr) = run_node(
        "contract.mjs",
        &[
            ("CHANCY_URL", format!("http://127.0.0.1:{}", h.port)),
            ("CHANCY_USERNAME", USERNAME.to_string()),
            ("CHANCY_PASSWORD", PASSWORD.to_string()),
            ("CHANCY_WHEEL", wheel.display().to_string()),
            ("CHANCY_SEED", seed.to_string()),
        ],
    );
    println!("{stdout}");
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("contract.mjs printed no report (exit {status:?}):\n{stderr}"));
    let passed = report["passed"].as_u64().unwrap_or(0);
    let total = report["total"].as_u64().unwrap_or(0);
    eprintln!("upstream client: {passed} of {total} calls validated");
    assert!(total >= 40, "the client made too few calls: {report}");
    assert_eq!(
        (status, report["failed"].as_u64()),
        (Some(0), Some(0)),
        "calls of upstream's client failed against chancy web:\n{}\n{stderr}",
        serde_json::to_string_pretty(&report["failures"]).unwrap_or_default()
    );
    // Failures carry upstream's {"title": …} body with upstream's status codes.
    let errors = &report["errors"];
    assert_eq!(errors["getJob unknown"]["status"], 404, "{errors}");
    for name in [
        "listJobs limit=0",
        "listJobs bad filter",
        "listJobs NUL filter",
        "getMetricDetail bad resolution",
    ] {
        assert_eq!(errors[name]["status"], 422, "{name}: {errors}");
        assert!(
            errors[name]["title"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{name} has no title: {errors}"
        );
    }
    // The actions happened in the database.
    let jobs = &seed["jobs"];
    let job = |key: &str| -> Reference { jobs[key].as_str().unwrap().parse().unwrap() };
    assert_eq!(state(&h.chancy, &job("succeeded")), None, "purged");
    assert_eq!(
        state(&h.chancy, &job("pending")),
        Some(JobState::Failed),
        "cancelled (upstream 0.26 marks a cancelled job failed)"
    );
    assert!(
        h.chancy.get_queue("contract_queue").is_err(),
        "the created queue was deleted"
    );
}

/// Serves the built dashboard from `dist` on its own origin (the way a user serves it
/// against `chancy web`): any path that is not a file gets `index.html`.
fn serve_dist(dist: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the UI server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dist = dist.clone();
            std::thread::spawn(move || serve_file(stream, &dist));
        }
    });
    port
}

fn serve_file(mut stream: TcpStream, dist: &Path) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut file = dist.join(&path);
    if path.is_empty() || path.contains("..") || !file.is_file() {
        file = dist.join("index.html");
    }
    let body = std::fs::read(&file).unwrap_or_default();
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(&body);
}

#[test]
fn upstream_dashboard_renders_every_page_in_headless_chromium() {
    provision_npm();
    let chromium = chromium();
    let wheel = wheel();
    let dist = wheel.join("chancy/plugins/api/dist");
    assert!(
        dist.join("index.html").exists(),
        "the wheel has no built UI"
    );
    let ui_port = serve_dist(dist);
    let ui_origin = format!("http://127.0.0.1:{ui_port}");
    let (mut h, seed) = seed(&database_url());
    start_python_worker(&mut h, &seed);
    start_server(&mut h, Some(&ui_origin));
    let artifacts = manifest_dir().join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create the artifacts folder");
    let (status, stdout, stderr) = run_node(
        "pages.mjs",
        &[
            ("CHANCY_UI", format!("{ui_origin}/")),
            ("CHANCY_URL", format!("http://127.0.0.1:{}", h.port)),
            ("CHANCY_USERNAME", USERNAME.to_string()),
            ("CHANCY_PASSWORD", PASSWORD.to_string()),
            ("CHANCY_SEED", seed.to_string()),
            ("CHANCY_ARTIFACTS", artifacts.display().to_string()),
            ("CHROMIUM", chromium.display().to_string()),
        ],
    );
    println!("{stdout}");
    assert_eq!(
        status,
        Some(0),
        "upstream's dashboard failed against chancy web (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
    let pages: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("page ok: "))
        .collect();
    assert!(pages.len() >= 15, "too few pages visited: {pages:?}");
    for page in &pages {
        let png = artifacts.join(format!("upstream-{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000,
            "{} is not a real screenshot",
            png.display()
        );
    }
}

/// `/api/v1/configuration` of the running `chancy web`, signed in with upstream's flow.
fn configured_plugins(port: u16) -> Vec<String> {
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let login: Value = ureq::post(&format!("{base}/login"))
        .send_json(json!({ "username": USERNAME, "password": PASSWORD }))
        .expect("log in")
        .into_json()
        .expect("a JSON login answer");
    let token = login["token"].as_str().expect("a token");
    let config: Value = ureq::get(&format!("{base}/configuration"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("read the configuration")
        .into_json()
        .expect("JSON");
    config["plugins"]
        .as_array()
        .expect("a plugins list")
        .iter()
        .map(|p| p.as_str().expect("a class name").to_string())
        .collect()
}

#[test]
fn chancy_web_lists_cron_for_upstreams_ui_only_when_its_tables_exist() {
    let url = database_url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("u{}_", &id[..10]);
    let chancy = Chancy::builder(&url)
        .prefix(prefix.clone())
        .build()
        .expect("build chancy");
    chancy.migrate().expect("migrate");
    let mut h = Harness {
        chancy: chancy.clone(),
        url,
        prefix,
        worker: None,
        release: Gate::new(),
        server: None,
        python: None,
        port: 0,
    };
    start_server(&mut h, None);
    let plugins = configured_plugins(h.port);
    for class in [
        "Leadership",
        "Pruner",
        "Recovery",
        "Metrics",
        "WorkflowPlugin",
    ] {
        assert!(plugins.contains(&class.to_string()), "{plugins:?}");
    }
    assert!(
        !plugins.contains(&"Cron".to_string()),
        "no cron tables, no Scheduled Jobs page: {plugins:?}"
    );
    let mut server = h.server.take().unwrap();
    let _ = server.kill();
    let _ = server.wait();

    chancy.migrate_key("cron", None).expect("migrate cron");
    start_server(&mut h, None);
    let plugins = configured_plugins(h.port);
    assert!(
        plugins.contains(&"Cron".to_string()),
        "with the cron tables upstream's UI gets its Scheduled Jobs page: {plugins:?}"
    );
}
