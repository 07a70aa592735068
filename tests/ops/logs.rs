//! The worker's log, read from the CLI's stderr as an operator would: each failed attempt at
//! WARN with what failed, routine "cleaned up 0 rows" only at DEBUG, and a forced stop that
//! says what it abandoned and how those jobs come back.

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use super::{eventually, holds_for, sigterm, terminate, Ns, Proc};

/// A `chancy worker start` whose stderr goes to a file; returns it and the file's path.
fn worker(ns: &Ns, extra: &[&str]) -> (Proc, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{}worker.log", ns.prefix));
    let log = File::create(&path).unwrap();
    let mut args = vec![
        "worker",
        "start",
        "--pruner-poll-interval",
        "0.3",
        "--leadership-poll-interval",
        "0.3",
        "--shutdown-timeout",
        "30",
    ];
    args.extend_from_slice(extra);
    let child = ns
        .command(&args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a worker");
    (Proc(child), path)
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn failed_attempts_are_warnings_and_a_forced_stop_says_what_it_abandoned() {
    let ns = Ns::migrated();
    ns.ok(&["queue", "declare", "default", "--concurrency", "2"]);
    let (mut child, path) = worker(&ns, &[]);
    let id = ns
        .ok(&[
            "job",
            "push",
            "chancy.builtin.fail",
            "--kwargs",
            r#"{"message": "the mail server said no\nsecond line"}"#,
            "--max-attempts",
            "2",
        ])
        .trim()
        .to_string();
    eventually(
        Duration::from_secs(30),
        "two failed attempts in the log",
        || read(&path).contains("failed for good"),
    );
    let log = read(&path);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(lines.len(), 2, "one line per failed attempt: {log}");
    assert!(lines[0].contains("WARN"), "{log}");
    assert!(
        lines[0].contains("\"chancy.builtin.fail\"")
            && lines[0].contains("queue \"default\"")
            && lines[0].contains("attempt 1/2 failed: ")
            && lines[0].contains("the mail server said no")
            && lines[0].contains("(will retry)"),
        "{}",
        lines[0]
    );
    assert!(
        !lines[0].contains("second line"),
        "first line only: {}",
        lines[0]
    );
    assert!(lines[1].contains("attempt 2/2") && lines[1].contains("failed for good"));

    // The pruner ran several times by now with nothing to remove: silent at INFO.
    eventually(Duration::from_secs(30), "the leader's first passes", || {
        read(&path).contains("became the leader")
    });
    holds_for(
        Duration::from_secs(1),
        "no INFO line about cleaning up 0 rows",
        || !read(&path).contains("cleaned up 0"),
    );

    // A job that cannot finish in time, then two signals: the forced stop reports it.
    ns.ok(&[
        "job",
        "push",
        "chancy.builtin.sleep",
        "--kwargs",
        r#"{"seconds": 60}"#,
    ]);
    eventually(Duration::from_secs(30), "the sleep job to run", || {
        ns.ok(&["job", "list", "--state", "running"])
            .contains("chancy.builtin.sleep")
    });
    // The second signal once the first was handled.
    sigterm(&child);
    eventually(
        Duration::from_secs(20),
        "the first signal to be handled",
        || read(&path).contains("received a stop signal"),
    );
    let status = terminate(&mut child, Duration::from_secs(20));
    assert!(!status.success(), "a forced stop is not a clean exit");
    let log = read(&path);
    let forced = log
        .lines()
        .find(|l| l.contains("forcing exit"))
        .unwrap_or_else(|| panic!("no forced-stop line in {log}"));
    assert!(forced.contains("abandoning 1 running job(s)"), "{forced}");
    assert!(
        forced.contains("recovery") && forced.contains("heartbeat_timeout"),
        "says how they come back: {forced}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn routine_cleanups_of_nothing_are_debug_lines() {
    let ns = Ns::migrated();
    let (mut child, path) = worker(&ns, &["-v"]);
    eventually(Duration::from_secs(30), "a DEBUG cleanup line", || {
        read(&path).contains("cleaned up 0 rows")
    });
    let log = read(&path);
    let line = log
        .lines()
        .find(|l| l.contains("cleaned up 0 rows"))
        .unwrap();
    assert!(line.contains("DEBUG"), "{line}");
    assert!(terminate(&mut child, Duration::from_secs(20)).success());
    let _ = std::fs::remove_file(&path);
}
