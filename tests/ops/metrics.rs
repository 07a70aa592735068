//! `/metrics`, `/health` and `/ready` of `chancy worker start --metrics-addr` and `chancy
//! web`, scraped over HTTP and parsed with the reference parser (Python's
//! `prometheus_client`, OpenMetrics flavour, installed into a venv at test time).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{eventually, sigterm, terminate, Ns, Proc};
use crate::support::wait::exit_within;

/// The venv's python with `prometheus_client` (created on first use).
fn python() -> PathBuf {
    crate::support::python::venv_python(
        "py-prometheus",
        "import prometheus_client.openmetrics.parser",
        "prometheus_client==0.21.1",
    )
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses exposition text with the reference parser (fails the test on invalid text).
fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| Sample {
            kind: r["type"].as_str().unwrap().to_string(),
            name: r["name"].as_str().unwrap().to_string(),
            labels: serde_json::from_value(r["labels"].clone()).unwrap(),
            value: r["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// `GET url` → (status, content type, body).
fn get(url: &str) -> (u16, String, String) {
    match ureq::get(url).timeout(Duration::from_secs(20)).call() {
        Ok(r) => (
            r.status(),
            r.header("content-type").unwrap_or("").to_string(),
            r.into_string().unwrap(),
        ),
        Err(ureq::Error::Status(code, r)) => (code, String::new(), r.into_string().unwrap()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// Sends raw bytes and returns the status line of the answer.
fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // Keep what arrived even if the server resets the connection after answering.
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or("").to_string()
}

/// Waits for a line containing `marker` in the file and returns the text after it, up to
/// the next whitespace.
fn word_after(path: &std::path::Path, marker: &str) -> String {
    let mut found = String::new();
    eventually(Duration::from_secs(30), marker, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        match text.split(marker).nth(1) {
            Some(rest) => {
                found = rest.split_whitespace().next().unwrap_or("").to_string();
                !found.is_empty()
            }
            None => false,
        }
    });
    found
}

#[test]
fn worker_metrics_parse_and_follow_the_work_done_and_ready_tracks_the_worker() {
    let ns = Ns::migrated();
    let log = std::env::temp_dir().join(format!("{}metrics.log", ns.prefix));
    let worker = ns
        .command(&[
            "worker",
            "start",
            "--metrics-addr",
            "127.0.0.1:0",
            "--leadership-poll-interval",
            "0.3",
        ])
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("start a worker");
    let mut worker = Proc(worker);
    let addr = word_after(&log, "metrics on http://")
        .trim_end_matches("/metrics")
        .to_string();
    let base = format!("http://{addr}");
    eventually(Duration::from_secs(30), "/ready", || {
        get(&format!("{base}/ready")).0 == 200
    });
    assert_eq!(get(&format!("{base}/health")).0, 200);

    let (status, content_type, text) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let before = parse(&text);
    let info = before
        .iter()
        .find(|s| s.name == "chancy_worker_info")
        .expect("worker info");
    assert_eq!(info.value, 1.0);
    assert!(!info.labels["worker_id"].is_empty());
    assert_eq!(
        value(&before, "chancy_pool_connections", &[("state", "max")]),
        Some(10.0)
    );
    assert_eq!(value(&before, "chancy_database_up", &[]), Some(1.0));
    let noop = [
        ("queue", "default"),
        ("func", "chancy.builtin.noop"),
        ("outcome", "succeeded"),
    ];
    assert_eq!(value(&before, "chancy_jobs_total", &noop), None);

    for _ in 0..3 {
        ns.ok(&["job", "push", "chancy.builtin.noop"]);
    }
    let fail = ns
        .ok(&["job", "push", "chancy.builtin.fail", "--max-attempts", "2"])
        .trim()
        .to_string();
    let out = ns.run(&["job", "wait", &fail, "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(1), "the fail job fails: {out:?}");

    let mut after = Vec::new();
    eventually(
        Duration::from_secs(30),
        "counters and depth to follow",
        || {
            after = parse(&get(&format!("{base}/metrics")).2);
            value(&after, "chancy_jobs_total", &noop) == Some(3.0)
                && value(
                    &after,
                    "chancy_queue_jobs",
                    &[("queue", "default"), ("state", "succeeded")],
                ) == Some(3.0)
                && value(&after, "chancy_worker_is_leader", &[]) == Some(1.0)
        },
    );
    let failing = |outcome| {
        value(
            &after,
            "chancy_jobs_total",
            &[("func", "chancy.builtin.fail"), ("outcome", outcome)],
        )
    };
    assert_eq!(failing("retried"), Some(1.0));
    assert_eq!(failing("failed"), Some(1.0));
    assert_eq!(
        value(
            &after,
            "chancy_queue_jobs",
            &[("queue", "default"), ("state", "failed")]
        ),
        Some(1.0)
    );
    let count = |name: &str| value(&after, name, &[("queue", "default")]).unwrap_or(0.0);
    assert_eq!(
        count("chancy_job_execution_seconds_count"),
        5.0,
        "3 noops + 2 attempts"
    );
    assert_eq!(count("chancy_job_claim_wait_seconds_count"), 5.0);
    assert!(after
        .iter()
        .any(|s| s.name == "chancy_job_execution_seconds_bucket" && s.kind == "histogram"));
    assert_eq!(value(&after, "chancy_worker_jobs_running", &[]), Some(0.0));
    assert_eq!(
        value(&after, "chancy_worker_writer_backlog", &[]),
        Some(0.0)
    );

    // Framing the listener refuses, and a bounded number of idle connections.
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw(&addr, big.as_bytes()).contains(" 431 "));
    assert!(raw(
        &addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
    )
    .contains(" 413 "));
    assert!(raw(&addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").contains(" 405 "));
    // A request whose lines end in a bare LF is served like a CRLF one.
    assert!(raw(&addr, b"GET /health HTTP/1.0\n\n").contains(" 200 "));
    // Silent connections, twice the listener's 64 slots, cannot keep a liveness probe from
    // its answer: each new connection evicts the oldest one still waiting on its client.
    // (No time bound beyond raw()'s generous read timeout: a probe that had to wait for the
    // idle ones to time out, or got 503, fails here.)
    let mut idle: Vec<TcpStream> = Vec::new();
    for round in 0..2 {
        idle.extend((0..64).map(|_| TcpStream::connect(&addr).unwrap()));
        for probe in ["/health", "/ready"] {
            let status = raw(&addr, format!("GET {probe} HTTP/1.1\r\n\r\n").as_bytes());
            assert!(status.contains(" 200 "), "round {round}, {probe}: {status}");
        }
    }
    drop(idle);

    // While a graceful stop waits for a running job, /ready says so (and /health is alive).
    ns.ok(&[
        "job",
        "push",
        "chancy.builtin.sleep",
        "--kwargs",
        r#"{"seconds": 4}"#,
    ]);
    eventually(Duration::from_secs(30), "the sleep job to run", || {
        value(
            &parse(&get(&format!("{base}/metrics")).2),
            "chancy_worker_jobs_running",
            &[],
        ) == Some(1.0)
    });
    sigterm(&worker);
    eventually(
        Duration::from_secs(10),
        "/ready to report the shutdown",
        || {
            let (status, _, body) = get(&format!("{base}/ready"));
            status == 503 && body.contains("shutting down")
        },
    );
    assert_eq!(get(&format!("{base}/health")).0, 200);
    let status = exit_within(&mut worker, Duration::from_secs(30));
    assert!(status.success(), "a clean stop after the sleep job");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn chancy_web_serves_metrics_without_login() {
    let ns = Ns::migrated();
    ns.ok(&["job", "push", "chancy.builtin.noop", "--queue", "waiting"]);
    let out = std::env::temp_dir().join(format!("{}web.out", ns.prefix));
    let web = ns
        .command(&["web", "--port", "0", "--password", "s3cret-pass"])
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chancy web");
    let mut web = Proc(web);
    let url = word_after(&out, "dashboard: ");
    let (status, _, text) = get(&format!("{}/metrics", url.trim_end_matches('/')));
    assert_eq!(status, 200, "{text}");
    let samples = parse(&text);
    assert_eq!(
        value(
            &samples,
            "chancy_queue_jobs",
            &[("queue", "waiting"), ("state", "pending")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&samples, "chancy_worker_is_leader", &[]), Some(0.0));
    let _ = terminate(&mut web, Duration::from_secs(20));
    let _ = std::fs::remove_file(&out);
}
