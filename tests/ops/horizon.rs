//! A session idle in a transaction that holds an old snapshot stops VACUUM from removing
//! dead job rows. The leader notices and names the backend; the library call and the
//! dashboard's overview use the same check.

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use postgres::Client;

use super::{client, eventually, terminate, Ns, Proc};
use crate::support::wait::{eventually_some, SOON};

/// Opens `BEGIN ISOLATION LEVEL REPEATABLE READ` + a read on the jobs table and leaves the
/// session idle in that transaction. Returns the client (keep it alive) and its pid.
fn hold_a_snapshot(ns: &Ns) -> (Client, i32) {
    let mut c = client();
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    c.query_one(&format!("SELECT count(*) FROM \"{}jobs\"", ns.prefix), &[])
        .unwrap();
    (c, pid)
}

#[test]
fn the_leader_warns_about_a_session_holding_back_the_xmin_horizon_by_pid() {
    let ns = Ns::migrated();
    let (_holder, pid) = hold_a_snapshot(&ns);
    let path = std::env::temp_dir().join(format!("{}horizon.log", ns.prefix));
    let worker = ns
        .command(&[
            "worker",
            "start",
            "--leadership-poll-interval",
            "0.2",
            "--horizon-check-interval",
            "0.2",
            "--horizon-warn-after",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(File::create(&path).unwrap())
        .spawn()
        .expect("start a worker");
    let mut worker = Proc(worker);
    let needle = format!("backend pid {pid} ");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    eventually(Duration::from_secs(30), "the horizon warning", || {
        read().contains(&needle)
    });
    let log = read();
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    assert!(
        line.contains("WARN") && line.contains("xmin horizon held back"),
        "{line}"
    );
    assert!(line.contains("idle in transaction"), "{line}");
    assert!(terminate(&mut worker, Duration::from_secs(20)).success());
    // One warning per session, not one per pass (it repeats every 10 minutes).
    assert_eq!(
        read().matches(&needle).count(),
        1,
        "warned more than once: {}",
        read()
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn held_back_horizons_lists_the_session_and_forgets_it_after_commit() {
    let ns = Ns::migrated();
    let chancy = ns.library();
    let (mut holder, pid) = hold_a_snapshot(&ns);
    // Listed once its transaction is older than the threshold.
    let h = eventually_some(SOON, "the holder to be listed past 100 ms", || {
        chancy
            .held_back_horizons(Duration::from_millis(100))
            .unwrap()
            .into_iter()
            .find(|h| h.pid == pid)
    });
    assert_eq!(h.state.as_deref(), Some("idle in transaction"));
    assert!(h.transaction_age >= Duration::from_millis(100));
    assert!(h
        .describe()
        .contains(&format!("pg_terminate_backend({pid})")));
    assert!(
        !chancy
            .held_back_horizons(Duration::from_secs(3600))
            .unwrap()
            .iter()
            .any(|h| h.pid == pid),
        "younger than the threshold"
    );
    holder.batch_execute("COMMIT").unwrap();
    assert!(!chancy
        .held_back_horizons(Duration::ZERO)
        .unwrap()
        .iter()
        .any(|h| h.pid == pid));
}
