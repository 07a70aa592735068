//! What the browser tests share (tests/browser.rs, tests/upstream_ui.rs): Node.js and
//! Debian's Chromium, a local HTTP probe, `chancy web` started on a free port, and running a
//! script with a time limit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait::{eventually, poll};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Chromium, installed first (as root on Debian: `apt-get install chromium`, as `.ci/run`
/// does) when `$CHROMIUM` is unset and it is missing; fails (never skips) with install
/// advice when there is none afterwards.
pub fn chromium() -> PathBuf {
    let chromium = chromium_path();
    if std::env::var_os("CHROMIUM").is_none() {
        super::apt::provision("chromium", || chromium.exists());
    }
    assert!(
        chromium.exists(),
        "this test needs Chromium at {} (Debian: apt-get install -y chromium, or set \
         CHROMIUM to another Chromium binary)",
        chromium.display()
    );
    chromium
}

/// Fails (never skips) unless `node --version` runs.
pub fn require_node() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        matches!(&node, Ok(out) if out.status.success()),
        "this test needs Node.js 20+ on PATH (Debian: apt-get install -y nodejs npm); \
         `node --version` gave {node:?}"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// GET `path` on 127.0.0.1:`port`; the status line and body, or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Starts `chancy web` (the binary `bin`) on `prefix` of `url` at 127.0.0.1:`port` with one
/// user, and returns once `/health` says healthy (30 s at most; fails if it exits first).
pub fn start_web(bin: &Path, url: &str, prefix: &str, port: u16, extra: &[&str]) -> Child {
    let (username, password) = WEB_USER;
    let mut child = Command::new(bin)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .args(["--prefix", prefix, "web", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--username", username, "--password", password])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chancy web");
    eventually(
        Duration::from_secs(30),
        "chancy web to answer /health",
        || {
            if let Some(status) = child.try_wait().expect("poll chancy web") {
                panic!("chancy web exited with {status} before answering /health");
            }
            http_get(port, "/health").is_some_and(|r| r.contains("healthy"))
        },
    );
    child
}

/// The dashboard user [`start_web`] creates: (username, password).
pub const WEB_USER: (&str, &str) = ("browser-user", "browser-secret-pw");

/// Runs `cmd` (stdout and stderr captured) for at most `limit`; (exit code, stdout, stderr),
/// the code `None` when it was killed at the limit.
pub fn run_limited(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let status = poll(limit, || child.try_wait().expect("poll a child")).and_then(|s| s.code());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}
