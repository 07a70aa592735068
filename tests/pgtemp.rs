//! The private throwaway PostgreSQL (`chancy::pgtemp`), with real processes: it serves a
//! migrate + push + worker round trip, and leaves no process and no directory behind after a
//! drop, a panic, SIGINT and SIGKILL (checked in /proc and on disk). Also: `chancy demo`
//! starts one when nothing answers at the default URL, and `migrate` / `worker start` never do.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use chancy::pgtemp::TempPostgres;
use chancy::{Chancy, Job, JobContext, JobError, JobState, Queue, Worker};
use postgres::{Client, NoTls};
use serde_json::json;

mod support;
use support::bin::BIN;
use support::wait::{exit_within as wait_for_exit, poll};

/// Live processes whose command line mentions `dir` or whose working directory is in it
/// (every postgres process runs in its data directory), as `pid: cmdline`.
fn processes_in(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if cmdline.contains(&needle) || cwd.starts_with(&needle) {
            found.push(format!("{pid}: {} (cwd {cwd})", cmdline.trim()));
        }
    }
    found
}

/// Fails unless, within `within`, no process and no directory of `dir` is left.
fn assert_gone(dir: &Path, within: Duration) {
    let gone = poll(within, || {
        (processes_in(dir).is_empty() && !dir.exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "left behind after {within:?}: directory exists: {}, processes: {:#?}",
        dir.exists(),
        processes_in(dir)
    );
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn private_cluster_serves_a_round_trip_and_a_drop_leaves_nothing() {
    let server = TempPostgres::start().expect("start a private PostgreSQL");
    let dir = server.dir().to_path_buf();
    eprintln!(
        "private PostgreSQL {} started in {:.3} s at {}",
        server.version(),
        server.startup_time().as_secs_f64(),
        server.url()
    );
    assert!(dir.join("data/PG_VERSION").exists());
    assert!(!server.version().is_empty());
    assert!(processes_in(&dir).len() >= 2, "postmaster and its children");
    assert!(std::fs::read_to_string(format!("/proc/{}/cmdline", server.pid())).is_ok());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(uid_of(server.pid()), 0, "the server must not run as root");
    }

    let mut client = Client::connect(server.url(), NoTls).expect("connect over the socket");
    for (setting, want) in [
        ("listen_addresses", ""),
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("unix_socket_directories", dir.to_str().unwrap()),
    ] {
        let got: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(got, want, "{setting}");
    }
    drop(client);

    let chancy = Chancy::builder(server.url())
        .no_default_plugins()
        .build()
        .expect("build");
    chancy.migrate().expect("migrate");
    chancy
        .declare(&Queue::new("pgtemp").polling_interval(Duration::from_secs(1)))
        .expect("declare");
    let r = chancy
        .push(
            &Job::new("t.double")
                .queue("pgtemp")
                .kwargs(json!({"n": 21})),
        )
        .expect("push");
    let worker = Worker::builder(&chancy)
        .job("t.double", |ctx: &JobContext| -> Result<(), JobError> {
            let n = ctx.job().kwargs["n"].as_i64().unwrap_or_default();
            ctx.set_meta("result", json!(n * 2));
            Ok(())
        })
        .build()
        .expect("worker");
    worker.start().expect("start worker");
    let job = chancy
        .wait_for_job(&r, Duration::from_secs(20))
        .expect("job finishes")
        .expect("the job exists");
    worker.stop();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.meta.get("result"), Some(&json!(42)));
    drop(worker);
    drop(chancy);

    drop(server);
    assert_gone(&dir, Duration::ZERO);
}

#[test]
fn a_panic_while_the_server_lives_leaves_nothing() {
    let seen: Mutex<Option<PathBuf>> = Mutex::new(None);
    let outcome = std::panic::catch_unwind(|| {
        let server = TempPostgres::start().expect("start a private PostgreSQL");
        *seen.lock().unwrap() = Some(server.dir().to_path_buf());
        assert!(!processes_in(server.dir()).is_empty());
        Client::connect(server.url(), NoTls).expect("connect");
        panic!("the test body fails while the server runs");
    });
    assert!(outcome.is_err(), "the body panicked");
    let dir = seen.lock().unwrap().clone().expect("the server started");
    assert_gone(&dir, Duration::ZERO);
}

/// The example that starts a private server and waits (built by `cargo test --all-targets`).
fn hold_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("pgtemp_hold");
    if !path.exists() {
        // `cargo test --all-targets` builds examples as test harnesses only: build the plain
        // binary (cargo does not hold the build lock while tests run).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "pgtemp_hold"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "`cargo build --example pgtemp_hold` failed"
        );
    }
    assert!(
        path.exists(),
        "{} is missing: `cargo test --all-targets` (or `cargo build --example pgtemp_hold`) \
         builds it (examples/pgtemp_hold.rs)",
        path.display()
    );
    path
}

/// Starts `pgtemp_hold`; returns it with the postmaster's pid, the URL and the directory.
fn start_holder() -> (Child, u32, String, PathBuf) {
    let mut child = Command::new(hold_program())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn pgtemp_hold");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the ready line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"ready"), "pgtemp_hold said {line:?}");
    let pid: u32 = fields[1].parse().unwrap();
    let dir = PathBuf::from(fields[3]);
    assert!(dir.exists());
    assert!(
        processes_in(&dir).len() >= 3,
        "watchdog, postmaster, children"
    );
    Client::connect(fields[2], NoTls).expect("the held server answers");
    (child, pid, fields[2].to_string(), dir)
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn sigint_to_a_program_with_a_private_server_leaves_nothing() {
    let (mut child, _postmaster, _url, dir) = start_holder();
    signal(child.id(), "-INT");
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "the handler exits with 130");
    // The handler cleaned up before exiting: nothing to wait for.
    assert_gone(&dir, Duration::ZERO);
}

#[test]
fn sigkill_leaves_the_cleanup_to_the_watchdog() {
    let (mut child, postmaster, _url, dir) = start_holder();
    signal(child.id(), "-KILL");
    let status = wait_for_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed by a signal");
    assert_gone(&dir, Duration::from_secs(15));
    assert!(
        !Path::new(&format!("/proc/{postmaster}/cmdline")).exists() || {
            // A pid may be reused; then it is no longer the postmaster of `dir`.
            let cmd = std::fs::read(format!("/proc/{postmaster}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmd).contains(dir.to_str().unwrap())
        }
    );
}

/// Whether this process may hide the network from a child (`unshare -n`, root only).
fn can_unshare_network() -> bool {
    Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn demo_uses_a_private_server_when_nothing_answers_and_removes_it() {
    let before: Vec<PathBuf> = private_dirs();
    if !can_unshare_network() {
        // Without a network namespace the default server cannot be hidden; then at least
        // the other half holds: with a URL given, demo never starts a server.
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
        let out = Command::new(BIN)
            .args(["--database-url", &url, "demo", "--jobs", "2"])
            .output()
            .expect("run chancy demo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(!stdout.contains("private PostgreSQL"), "{stdout}");
        return;
    }
    // In an empty network namespace nothing answers at localhost:5432, and the private
    // server needs no network (Unix socket only).
    let out = Command::new("unshare")
        .args(["-n", BIN, "demo", "--jobs", "3"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run chancy demo in a network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("using a private PostgreSQL ")
            && first.ends_with("pass --database-url to use yours"),
        "{first}"
    );
    assert!(
        stdout.contains("total: 11 jobs, succeeded 10, failed 1"),
        "{stdout}"
    );
    let dir = first
        .split_whitespace()
        .find(|w| w.contains("chancy-pg-"))
        .map(PathBuf::from)
        .expect("the directory is named");
    assert!(!before.contains(&dir));
    assert_gone(&dir, Duration::ZERO);
}

fn private_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("chancy-pg-"))
        .collect()
}

#[test]
fn migrate_and_worker_start_fail_clearly_and_start_no_server() {
    let unreachable = "postgresql://postgres@127.0.0.1:1/postgres";
    // Both at once: a refused port fails in about a second (see src/connect.rs).
    let children: Vec<(Vec<&str>, Child)> = [vec!["migrate"], vec!["worker", "start"]]
        .into_iter()
        .map(|args| {
            let child = Command::new(BIN)
                .arg("--database-url")
                .arg(unreachable)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run chancy");
            (args, child)
        })
        .collect();
    for (args, child) in children {
        let out = child.wait_with_output().expect("wait for chancy");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stdout.contains("private PostgreSQL"), "{args:?}: {stdout}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: could not connect to the database at ")
                && last.contains("pass --database-url or set DATABASE_URL"),
            "{args:?}: {stderr}"
        );
    }
}
