//! Silent traps made loud: pushing to an undeclared queue, two demos on one database.

use std::process::Stdio;

use super::{client, text, Ns};
use crate::support::bin::demo_prefix;

#[test]
fn pushing_to_an_undeclared_queue_warns_on_stderr_and_still_pushes() {
    let ns = Ns::migrated();
    ns.ok(&["queue", "declare", "known"]);
    let out = ns.run(&[
        "job",
        "push",
        "chancy.builtin.noop",
        "--queue",
        "nobody_declared",
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = text(&out.stdout).trim().to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "stdout is the id alone: {id:?}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: queue \"nobody_declared\" is not declared"),
        "{stderr}"
    );
    // The library behaviour is upstream's: the job is there, pending.
    let job = ns.library().get_job(&id.parse().unwrap()).unwrap().unwrap();
    assert_eq!(job.queue, "nobody_declared");

    let out = ns.run(&["job", "push", "chancy.builtin.noop", "--queue", "known"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "", "no warning for a declared queue");
}

#[test]
fn two_concurrent_demos_on_one_database_both_succeed_with_their_own_tables() {
    let ns = Ns::new();
    let start = |jobs: &str| {
        ns.command(&["demo", "--jobs", jobs])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a demo")
    };
    let (a, b) = (start("30"), start("40"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for (out, noops) in [(&a, 30), (&b, 40)] {
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "demo failed: {stdout}\n{}",
            text(&out.stderr)
        );
        // noops + 2 echo + 2 sleep + flaky + fail + scheduled echo + one unique noop.
        let total = noops + 8;
        assert!(
            stdout.contains(&format!(
                "total: {total} jobs, succeeded {}, failed 1",
                total - 1
            )),
            "{stdout}"
        );
    }
    let (pa, pb) = (demo_prefix(&text(&a.stdout)), demo_prefix(&text(&b.stdout)));
    assert_ne!(pa, pb, "each run has its own tables");
    for p in [pa, pb] {
        let like = format!("{}%", p.replace('_', "\\_"));
        let left: i64 = client()
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE $1",
                &[&like],
            )
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "demo {p} left tables behind");
    }
}
