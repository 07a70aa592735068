//! The `chancy` binary run as a user runs it, against a real PostgreSQL: `$DATABASE_URL`,
//! else `postgresql://postgres@127.0.0.1:5432/postgres` when it answers, else a private
//! server for this test process (`chancy::pgtemp`). Every test works in its own table prefix
//! and drops it at the end.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use serde_json::Value;

mod support;
use support::bin::{demo_prefix, one_line_error, text, Ns};
use support::db::{client, database_url, tables_of};
use support::wait::{eventually, holds_for};

const BIN: &str = support::bin::BIN;

/// One test's prefix; its tables are dropped on drop (with the CLI, then whatever is left).
fn fresh() -> Ns {
    Ns::new().unmigrating_on_drop()
}

/// [`fresh`] after `chancy migrate`.
fn migrated() -> Ns {
    let ns = fresh();
    ns.ok(&["migrate"]);
    ns
}

#[test]
fn check_migrations_exits_1_until_migrated() {
    let ns = fresh();
    let behind = ns.run(&["check-migrations"]);
    assert_eq!(behind.status.code(), Some(1), "{behind:?}");
    assert!(text(&behind.stdout).contains("✗ chancy: 0 / 8"));
    let out = ns.ok(&["migrate"]);
    assert!(out.contains("chancy: version 8 of 8"), "{out}");
    let now = ns.ok(&["check-migrations"]);
    assert!(now.contains("✓ chancy: 8 / 8"), "{now}");
    ns.ok(&["migrate", "--to-version", "0"]);
    assert_eq!(ns.run(&["check-migrations"]).status.code(), Some(1));
}

/// README, compatibility: `chancy_rs` version 2 sets the jobs table's fill factor; migrating
/// the key to version 1 takes it back, a later full `migrate` sets it again.
#[test]
fn the_rust_only_fill_factor_comes_and_goes_with_its_key_version() {
    let ns = migrated();
    let fillfactor = || -> Option<String> {
        let row = client()
            .query_one(
                "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = $1::text::regclass",
                &[&ns.table("jobs")],
            )
            .unwrap();
        row.get(0)
    };
    assert_eq!(fillfactor().as_deref(), Some("fillfactor=50"));
    ns.ok(&["migrate", "--plugin", "chancy_rs", "--to-version", "1"]);
    assert_eq!(fillfactor(), None, "version 1 has no fill factor");
    ns.ok(&["migrate"]);
    assert_eq!(fillfactor().as_deref(), Some("fillfactor=50"));
}

#[test]
fn queue_declare_list_get_pause_resume_delete() {
    let ns = migrated();
    let out = ns.ok(&[
        "queue",
        "declare",
        "emails",
        "--concurrency",
        "3",
        "--executor",
        "process",
        "--tags",
        "has=smtp",
        "--tags",
        "region=eu",
        "--polling-interval",
        "2",
        "--rate-limit",
        "5",
        "--rate-limit-window",
        "10",
        "--eager-polling",
    ]);
    assert!(out.contains("declared queue \"emails\""), "{out}");
    let again = ns.ok(&["queue", "declare", "emails"]);
    assert!(again.contains("left unchanged"), "{again}");

    let list = ns.ok(&["queue", "list"]);
    let row = list.lines().find(|l| l.starts_with("emails")).expect(&list);
    assert!(row.contains("process") && row.contains("5/10s"), "{row}");

    let q = ns.json(&["queue", "get", "emails"]);
    assert_eq!(q["concurrency"], 3);
    assert_eq!(q["executor"], "chancy.executors.process.ProcessExecutor");
    assert_eq!(q["tags"], serde_json::json!(["has=smtp", "region=eu"]));
    assert_eq!(q["polling_interval"], 2);
    assert_eq!(
        (q["rate_limit"].clone(), q["rate_limit_window"].clone()),
        (5.into(), 10.into())
    );
    assert_eq!(q["eager_polling"], true);
    assert_eq!(q["state"], "active");

    ns.ok(&[
        "queue",
        "declare",
        "emails",
        "--executor",
        "thread",
        "--upsert",
    ]);
    let q = ns.json(&["queue", "get", "emails"]);
    assert_eq!(q["executor"], "chancy.executors.thread.ThreadedExecutor");

    ns.ok(&["queue", "pause", "emails", "--resume-in", "90.5"]);
    let q = ns.json(&["queue", "get", "emails"]);
    assert_eq!(q["state"], "paused");
    let resume_at: chrono::DateTime<chrono::Utc> =
        q["resume_at"].as_str().expect("resume_at").parse().unwrap();
    let ahead = resume_at - chrono::Utc::now();
    assert!(ahead > chrono::Duration::seconds(60), "{ahead}");
    ns.ok(&["queue", "resume", "emails"]);
    assert_eq!(ns.json(&["queue", "get", "emails"])["state"], "active");
    ns.ok(&[
        "queue",
        "pause",
        "emails",
        "--resume-at",
        "2099-01-01T00:00:00+01:00",
    ]);
    let q = ns.json(&["queue", "get", "emails"]);
    assert!(
        q["resume_at"]
            .as_str()
            .unwrap()
            .starts_with("2098-12-31T23:00:00"),
        "{q}"
    );

    let refused = ns.run(&["queue", "delete", "emails"]);
    assert!(one_line_error(&refused).contains("--yes"));
    ns.ok(&["queue", "get", "emails"]);
    ns.ok(&["queue", "delete", "emails", "--yes"]);
    let gone = ns.run(&["queue", "get", "emails"]);
    assert!(one_line_error(&gone).contains("not found"));
    assert!(!ns.ok(&["queue", "list"]).contains("emails"));
}

#[test]
fn job_push_get_list_cancel_retry_and_wait_exit_codes() {
    let ns = migrated();
    let id = ns.push(&[
        "chancy.builtin.echo",
        "--queue",
        "q1",
        "--kwargs",
        r#"{"to": "a@b", "n": 2}"#,
        "--meta",
        r#"{"source": "cli"}"#,
        "--priority",
        "-4",
        "--max-attempts",
        "3",
        "--unique-key",
        "k1",
    ]);
    let dup = ns.push(&["chancy.builtin.echo", "--queue", "q1", "--unique-key", "k1"]);
    assert_eq!(dup, id, "a unique duplicate returns the first id");

    let job = ns.json(&["job", "get", &id]);
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["func"], "chancy.builtin.echo");
    assert_eq!(job["queue"], "q1");
    assert_eq!(job["kwargs"], serde_json::json!({"to": "a@b", "n": 2}));
    assert_eq!(job["meta"], serde_json::json!({"source": "cli"}));
    assert_eq!(
        (job["priority"].clone(), job["max_attempts"].clone()),
        ((-4).into(), 3.into())
    );
    assert_eq!(job["state"], "pending");
    assert_eq!(job["unique_key"], "k1");

    let later = ns.push(&["chancy.builtin.noop", "--queue", "q2", "--delay", "3600.5"]);
    let at: chrono::DateTime<chrono::Utc> = ns.json(&["job", "get", &later])["scheduled_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(at - chrono::Utc::now() > chrono::Duration::minutes(59));

    let all = ns.ok(&["job", "list"]);
    assert!(all.lines().next().unwrap().starts_with("ID"), "{all}");
    let ids: Vec<&str> = all
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, vec![later.as_str(), id.as_str()], "newest first");
    let q1 = ns.ok(&["job", "list", "--queue", "q1", "--state", "pending"]);
    assert!(q1.contains(&id) && !q1.contains(&later), "{q1}");
    assert_eq!(ns.ok(&["job", "list", "--func", "nope"]).trim(), "no jobs");
    assert_eq!(ns.ok(&["job", "list", "--limit", "1"]).lines().count(), 2);

    // No worker runs: the wait times out with exit code 2.
    let t = Instant::now();
    let timeout = ns.run(&["job", "wait", &id, "--timeout", "0.4"]);
    assert_eq!(timeout.status.code(), Some(2), "{timeout:?}");
    assert!(t.elapsed() < Duration::from_secs(5));

    assert!(ns.ok(&["job", "cancel", &id]).contains("cancelled"));
    assert_eq!(ns.json(&["job", "get", &id])["state"], "failed");
    let failed = ns.run(&["job", "wait", &id, "--timeout", "5"]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");

    ns.ok(&["job", "retry", &id]);
    let job = ns.json(&["job", "get", &id]);
    assert_eq!(
        (job["state"].clone(), job["attempts"].clone()),
        ("retrying".into(), 0.into())
    );

    let missing = ns.run(&["job", "cancel", "00000000-0000-0000-0000-000000000000"]);
    assert!(one_line_error(&missing).contains("not found"));
    let missing = ns.run(&["job", "wait", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn worker_start_runs_builtin_jobs_and_exits_0_on_sigterm() {
    let ns = migrated();
    let echo = ns.push(&["chancy.builtin.echo", "--kwargs", r#"{"hello": "world"}"#]);
    let mut worker = ns
        .command(&[
            "worker",
            "start",
            "--worker-id",
            "cli-test-worker",
            "--tags",
            "test=cli",
            "--heartbeat-poll-interval",
            "0.5",
            "--heartbeat-timeout",
            "5",
            "--queue-change-poll-interval",
            "0.5",
            "--shutdown-timeout",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker");

    let done = ns.run(&["job", "wait", &echo, "--timeout", "30"]);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let job = ns.json(&["job", "get", &echo]);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["meta"]["echo"], serde_json::json!({"hello": "world"}));
    assert_eq!(job["taken_by"], "cli-test-worker");

    let fail = ns.push(&[
        "chancy.builtin.fail",
        "--kwargs",
        r#"{"message": "on purpose"}"#,
    ]);
    let failed = ns.run(&["job", "wait", &fail, "--timeout", "30"]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(text(&failed.stdout).contains("on purpose"));

    // The queues column is what the last heartbeat (every 0.5 s here) reported.
    eventually(
        Duration::from_secs(10),
        "the worker to report its queue",
        || {
            let workers = ns.ok(&["worker", "list"]);
            let row = workers
                .lines()
                .find(|l| l.starts_with("cli-test-worker"))
                .expect(&workers);
            assert!(row.contains("test=cli"), "{row}");
            row.contains(" default ")
        },
    );

    // A sleeping job is running when SIGTERM arrives; the graceful stop lets it finish.
    let sleep = ns.push(&["chancy.builtin.sleep", "--kwargs", r#"{"seconds": 0.5}"#]);
    eventually(Duration::from_secs(20), "the sleep job to start", || {
        ns.json(&["job", "get", &sleep])["state"] == "running"
    });
    let status = support::wait::terminate(&mut worker, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(ns.json(&["job", "get", &sleep])["state"], "succeeded");
    assert_eq!(
        ns.ok(&["job", "list", "--state", "running"]).trim(),
        "no jobs"
    );
}

#[test]
fn worker_start_on_an_unmigrated_schema_says_to_migrate() {
    let ns = fresh();
    let out = ns.run(&["worker", "start", "--shutdown-timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("run `chancy migrate`"));
}

#[test]
fn demo_summary_matches_the_database() {
    let ns = fresh();
    let t = Instant::now();
    let out = ns.ok(&["demo", "--keep"]);
    let demo = Ns::adopt(demo_prefix(&out)).unmigrating_on_drop();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "demo took {:?}",
        t.elapsed()
    );
    let total = out
        .lines()
        .find_map(|l| l.strip_prefix("total: "))
        .unwrap_or_else(|| panic!("no total line in {out}"));
    let mut c = client();
    let rows = c
        .query(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), \
                 count(*) FILTER (WHERE state = 'failed') FROM \"{}jobs\" WHERE queue = 'demo'",
                demo.prefix
            ),
            &[],
        )
        .unwrap();
    let (n, ok, failed): (i64, i64, i64) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(total, format!("{n} jobs, succeeded {ok}, failed {failed}"));
    assert_eq!(failed, 1, "exactly the chancy.builtin.fail job fails");
    assert!(
        out.contains("returned the first job's id") && out.contains(": yes"),
        "{out}"
    );
}

#[test]
fn demo_exits_0_and_leaves_no_tables() {
    let ns = fresh();
    let demo_prefix = format!("{}demo_", ns.prefix);
    let out = ns.ok(&["demo", "--jobs", "5"]);
    assert!(out.contains("cleaned up"), "{out}");
    assert_eq!(tables_of(&demo_prefix), Vec::<String>::new());
    assert_eq!(
        tables_of(&ns.prefix),
        Vec::<String>::new(),
        "demo touched the main prefix"
    );
}

#[test]
fn bad_input_gives_one_line_errors() {
    let ns = migrated();
    let out = ns.run(&["job", "push", "f", "--kwargs", r#"{"a": }"#]);
    let line = one_line_error(&out);
    assert!(
        line.contains("--kwargs") && line.contains("line 1 column 7"),
        "{line}"
    );
    let out = ns.run(&["job", "push", "f", "--meta", "[1, 2]"]);
    assert!(one_line_error(&out).contains("must be a JSON object"));
    let out = ns.run(&["job", "push", "f", "--delay", "1e300"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        text(&out.stderr).contains("\"1e300\" seconds is out of range"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        ns.ok(&["job", "list"]).contains("no jobs"),
        "nothing was pushed"
    );

    let out = ns.run(&["job", "list", "--state", "done"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(text(&out.stderr).contains("unknown job state \"done\""));

    let out = ns.run(&["job", "get", "not-a-uuid"]);
    assert!(one_line_error(&out).contains("is not a job id"));
    let out = ns.run(&["queue", "declare", "q", "--concurrency", "0"]);
    assert!(one_line_error(&out).contains("concurrency"));

    let bad = Command::new(BIN)
        .args([
            "--database-url",
            "postgresql://u:secret@host:notaport/db",
            "queue",
            "list",
        ])
        .output()
        .unwrap();
    let line = one_line_error(&bad);
    assert!(
        line.contains("invalid database URL") && !line.contains("secret"),
        "{line}"
    );

    let unreachable = Command::new(BIN)
        .args([
            "--database-url",
            "postgresql://u:secret@127.0.0.1:1/db",
            "job",
            "list",
        ])
        .output()
        .unwrap();
    let line = one_line_error(&unreachable);
    assert!(
        line.contains("could not connect") && line.contains("127.0.0.1:1"),
        "{line}"
    );
    assert!(!line.contains("secret"), "{line}");

    // A host name the resolver does not know fails on the first attempt with the
    // resolver's words, not after the connection timeout.
    let unknown_host = Command::new(BIN)
        .args([
            "--database-url",
            "postgresql://u:secret@no-such-host.invalid/db",
            "queue",
            "list",
        ])
        .output()
        .unwrap();
    let line = one_line_error(&unknown_host);
    assert!(
        line.contains("failed to lookup address information")
            && line.contains("check the host name")
            && !line.contains("no connection within"),
        "{line}"
    );
}

#[test]
fn every_level_has_help_with_examples() {
    for argv in [
        &["--help"][..],
        &["queue", "--help"],
        &["queue", "declare", "--help"],
        &["job", "wait", "--help"],
        &["worker", "start", "--help"],
        &["demo", "--help"],
    ] {
        let out = Command::new(BIN).args(argv).output().unwrap();
        assert!(out.status.success(), "{argv:?}");
        assert!(
            text(&out.stdout).contains("Example"),
            "{argv:?}: {}",
            text(&out.stdout)
        );
    }
}

/// The library's view of a test prefix (default plugins; nothing is started).
fn library(ns: &Ns) -> chancy::Chancy {
    chancy::Chancy::builder(database_url())
        .prefix(ns.prefix.clone())
        .min_connection_pool_size(0)
        .build()
        .expect("build a Chancy")
}

/// `n` `chancy.builtin.sleep` jobs of `seconds` each on `queue`.
fn sleep_jobs(queue: &str, n: usize, seconds: f64) -> Vec<chancy::Job> {
    (0..n)
        .map(|_| {
            chancy::Job::new("chancy.builtin.sleep")
                .queue(queue)
                .kwargs(serde_json::json!({ "seconds": seconds }))
        })
        .collect()
}

/// Sends SIGTERM to a worker started by a test and returns its exit status.
fn terminate(worker: &mut Child) -> std::process::ExitStatus {
    support::wait::terminate(worker, Duration::from_secs(15))
}

#[test]
fn cron_schedule_list_unschedule_round_trip_and_a_cron_worker_fires_it() {
    let ns = migrated();
    // The cron table is not part of plain `chancy migrate`.
    let out = ns.run(&["cron", "list"]);
    let line = one_line_error(&out);
    assert!(
        line.contains("run `chancy migrate --plugin cron`"),
        "{line}"
    );
    let out = ns.run(&["worker", "start", "--plugins", "cron"]);
    assert!(one_line_error(&out).contains("`chancy migrate --plugin cron`"));
    let migrated = ns.ok(&["migrate", "--plugin", "cron"]);
    assert!(migrated.contains("migrated"), "{migrated}");
    assert_eq!(ns.ok(&["cron", "list"]).trim(), "no cron schedules");

    let out = ns.ok(&[
        "cron",
        "schedule",
        "0 9 * * 1-5",
        "chancy.builtin.echo",
        "--unique-key",
        "tick",
        "--queue",
        "default",
        "--kwargs",
        r#"{"a": 1}"#,
        "--priority",
        "3",
        "--max-attempts",
        "2",
        "--timezone",
        "Europe/Paris",
    ]);
    assert!(out.starts_with("scheduled \"tick\""), "{out}");
    let list = ns.ok(&["cron", "list"]);
    let row = list.lines().find(|l| l.starts_with("tick")).expect(&list);
    assert!(
        row.contains("0 9 * * 1-5") && row.contains("Europe/Paris") && row.contains("echo"),
        "{row}"
    );
    let stored = chancy::plugins::Cron::get_schedules(&library(&ns), None).unwrap();
    let tick = &stored["tick"];
    let packed = tick.job.pack();
    assert_eq!(packed["k"], serde_json::json!({"a": 1}), "{packed}");
    assert_eq!(
        (packed["p"].clone(), packed["a"].clone()),
        (3.into(), 2.into())
    );
    assert_eq!(tick.job.unique_key_ref(), Some("tick"));
    assert_eq!(tick.last_run, None);

    // Re-scheduling the key replaces it: every second (seconds last, croniter style).
    ns.ok(&[
        "cron",
        "schedule",
        "* * * * * *",
        "chancy.builtin.noop",
        "--unique-key",
        "tick",
    ]);
    let list = ns.ok(&["cron", "list"]);
    assert_eq!(list.lines().count(), 2, "header + one schedule: {list}");
    assert!(
        list.contains("* * * * * *") && list.contains("Etc/UTC"),
        "{list}"
    );

    // A worker started with only the cron plugin pushes and runs it.
    ns.ok(&["queue", "declare", "default", "--executor", "thread"]);
    let mut worker = ns
        .command(&[
            "worker",
            "start",
            "--plugins",
            "cron",
            "--cron-poll-interval",
            "0.2",
            "--queue-change-poll-interval",
            "0.5",
            "--shutdown-timeout",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker");
    eventually(
        Duration::from_secs(20),
        "a cron-pushed job to succeed",
        || {
            let jobs = ns.ok(&[
                "job",
                "list",
                "--func",
                "chancy.builtin.noop",
                "--state",
                "succeeded",
            ]);
            jobs.lines().count() > 1
        },
    );
    assert_eq!(terminate(&mut worker).code(), Some(0));
    let fired = chancy::plugins::Cron::get_schedules(&library(&ns), None).unwrap();
    let last_run = fired["tick"].last_run.expect("the schedule fired");
    let list = ns.ok(&["cron", "list"]);
    let shown = last_run.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(list.contains(&shown), "LAST RUN {shown} in {list}");

    let out = ns.ok(&["cron", "unschedule", "tick"]);
    assert_eq!(out.trim(), "unscheduled \"tick\"");
    assert_eq!(ns.ok(&["cron", "list"]).trim(), "no cron schedules");
    let again = ns.run(&["cron", "unschedule", "tick"]);
    assert!(one_line_error(&again).contains("no cron schedule with unique key \"tick\""));
}

#[test]
fn cron_schedule_without_a_unique_key_or_with_a_bad_expression_fails_in_one_line() {
    let ns = migrated();
    ns.ok(&["migrate", "--plugin", "chancy.cron"]);
    let out = ns.run(&["cron", "schedule", "*/5 * * * *", "chancy.builtin.noop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("needs --unique-key"));
    let out = ns.run(&[
        "cron",
        "schedule",
        "every tuesday",
        "chancy.builtin.noop",
        "--unique-key",
        "k",
    ]);
    one_line_error(&out);
    let out = ns.run(&[
        "cron",
        "schedule",
        "@daily",
        "chancy.builtin.noop",
        "--unique-key",
        "k",
        "--timezone",
        "Mars/Olympus",
    ]);
    one_line_error(&out);
    assert_eq!(
        ns.ok(&["cron", "list"]).trim(),
        "no cron schedules",
        "nothing was stored"
    );
    let out = ns.run(&["migrate", "--plugin", "recovery"]);
    assert!(one_line_error(&out).contains("no tables of its own"));
}

#[test]
fn workflow_list_get_and_a_leadership_workflow_worker_completes_it() {
    use chancy::plugins::{Workflow, WorkflowPlugin};
    let ns = migrated();
    ns.ok(&["queue", "declare", "default", "--executor", "thread"]);
    assert_eq!(ns.ok(&["workflow", "list"]).trim(), "no workflows");
    let noop = || chancy::Job::new("chancy.builtin.noop");
    let wf = Workflow::new("cli-diamond")
        .add("top", noop(), &[])
        .add("left", noop(), &["top"])
        .add("right", noop(), &["top"])
        .add("bottom", noop(), &["left", "right"]);
    let id = WorkflowPlugin::push(&library(&ns), &wf)
        .unwrap()
        .to_string();

    let list = ns.ok(&["workflow", "list"]);
    let row = list.lines().find(|l| l.starts_with(&id)).expect(&list);
    assert!(
        row.contains("cli-diamond") && row.contains("pending") && row.contains("0/4"),
        "{row}"
    );
    let got = ns.json(&["workflow", "get", &id]);
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["state"], "pending");
    // The same shape as upstream's API (`GET /api/v1/workflows/{id}`): steps keyed by id.
    let steps = got["steps"].as_object().unwrap();
    assert_eq!(steps.len(), 4);
    let bottom = &steps["bottom"];
    assert_eq!(bottom["step_id"], "bottom");
    assert_eq!(bottom["dependencies"], serde_json::json!(["left", "right"]));
    assert_eq!(bottom["job"]["func"], "chancy.builtin.noop");
    assert_eq!(bottom["job_id"], Value::Null);

    let mut worker = ns
        .command(&[
            "worker",
            "start",
            "--plugins",
            "leadership,workflow",
            "--leadership-poll-interval",
            "0.5",
            "--leadership-timeout",
            "5",
            "--workflow-poll-interval",
            "0.5",
            "--queue-change-poll-interval",
            "0.5",
            "--shutdown-timeout",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker");
    eventually(Duration::from_secs(30), "the workflow to complete", || {
        ns.json(&["workflow", "get", &id])["state"] == "completed"
    });
    assert_eq!(terminate(&mut worker).code(), Some(0));

    let done = ns.json(&["workflow", "get", &id]);
    for step in done["steps"].as_object().unwrap().values() {
        assert_eq!(step["state"], "succeeded", "{step}");
        let job = step["job_id"].as_str().expect("a pushed step has a job id");
        assert_eq!(ns.json(&["job", "get", job])["state"], "succeeded");
    }
    let completed = ns.ok(&["workflow", "list", "--state", "completed"]);
    assert!(
        completed.contains(&id) && completed.contains("4/4"),
        "{completed}"
    );
    assert_eq!(
        ns.ok(&["workflow", "list", "--state", "running"]).trim(),
        "no workflows"
    );

    assert!(one_line_error(&ns.run(&["workflow", "get", "nope"])).contains("is not a workflow id"));
    let missing = ns.run(&["workflow", "get", "00000000-0000-0000-0000-000000000000"]);
    assert!(one_line_error(&missing).contains("not found"));
    let bad_state = ns.run(&["workflow", "list", "--state", "done"]);
    assert_eq!(bad_state.status.code(), Some(2), "a usage error");
}

#[test]
fn worker_start_with_an_unknown_plugin_lists_the_available_ones() {
    let ns = migrated();
    for list in ["bogus", "leadership,metrix"] {
        let out = ns.run(&["worker", "start", "--plugins", list]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let line = one_line_error(&out);
        assert!(line.contains("unknown plugin"), "{line}");
        assert!(
            line.contains("leadership, pruner, recovery, metrics, workflow, cron, retry, trigger"),
            "{line}"
        );
    }
    let out = ns.run(&[
        "worker",
        "start",
        "--plugins",
        "none",
        "--cron-poll-interval",
        "1",
    ]);
    assert!(one_line_error(&out).contains("--cron-poll-interval configures the cron plugin"));
    let out = ns.run(&["worker", "start", "--plugins", "pruner"]);
    assert!(
        one_line_error(&out).contains("chancy.leadership"),
        "a missing dependency"
    );
    assert_eq!(
        ns.ok(&["worker", "list"]).trim(),
        "no live workers",
        "no worker was started"
    );
}

#[test]
fn worker_start_with_plugins_none_runs_jobs_and_stops_on_sigterm() {
    let ns = migrated();
    ns.ok(&["queue", "declare", "default", "--executor", "thread"]);
    let log = std::env::temp_dir().join(format!("{}worker.log", ns.prefix));
    let mut worker = ns
        .command(&[
            "worker",
            "start",
            "--plugins",
            "none",
            "--worker-id",
            "no-plugins",
            "--async-commit",
            "--heartbeat-poll-interval",
            "0.5",
            "--queue-change-poll-interval",
            "0.5",
            "--shutdown-timeout",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn worker");
    let id = ns.push(&["chancy.builtin.noop"]);
    let done = ns.run(&["job", "wait", &id, "--timeout", "30"]);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let workers = ns.ok(&["worker", "list"]);
    let row = workers
        .lines()
        .find(|l| l.starts_with("no-plugins"))
        .expect(&workers);
    assert!(
        row.contains(" no "),
        "no leadership plugin, no leader: {row}"
    );
    assert_eq!(terminate(&mut worker).code(), Some(0));
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(stderr.contains("with plugins []"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
}

/// Reads the child's stdout until the `dashboard:` and `login:` lines; returns the base
/// URL and the rest of the login line.
fn dashboard_lines(child: &mut Child) -> (String, String) {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(u) = line.strip_prefix("dashboard: ") {
            url = Some(u.trim_end_matches('/').to_string());
        } else if let Some(login) = line.strip_prefix("login: ") {
            return (
                url.expect("the dashboard line comes first"),
                login.to_string(),
            );
        }
    }
    let _ = child.kill();
    panic!("the server exited before printing its URL and login");
}

fn web_login(base: &str, password: &str) -> Result<Value, u16> {
    let r = ureq::post(&format!("{base}/api/v1/login"))
        .timeout(Duration::from_secs(10))
        .send_json(serde_json::json!({ "username": "admin", "password": password }));
    match r {
        Ok(resp) => Ok(resp.into_json().expect("JSON")),
        Err(ureq::Error::Status(code, _)) => Err(code),
        Err(e) => panic!("login request failed: {e}"),
    }
}

#[test]
fn web_serves_health_and_accepts_the_printed_password() {
    let ns = migrated();
    let id = ns.push(&["chancy.builtin.noop"]);
    let mut child = ns
        .command(&["web", "--port", "0"])
        .env_remove("CHANCY_WEB_PASSWORD")
        .env_remove("CHANCY_WEB_USERNAME")
        .env_remove("CHANCY_WEB_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chancy web");
    let (base, login) = dashboard_lines(&mut child);
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "loopback by default: {base}"
    );
    let password = login
        .strip_prefix("admin / ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no generated password in {login:?}"))
        .to_string();
    let health: Value = ureq::get(&format!("{base}/health"))
        .call()
        .expect("GET /health")
        .into_json()
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(web_login(&base, "wrong").unwrap_err(), 401);
    let token = web_login(&base, &password).expect("login with the printed password");
    let token = token["token"].as_str().unwrap();
    let job: Value = ureq::get(&format!("{base}/api/v1/jobs/{id}"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("GET the job")
        .into_json()
        .unwrap();
    assert_eq!(job["func"], "chancy.builtin.noop");
    // SIGTERM stops the server gracefully: exit 0, and the port no longer answers.
    assert_eq!(terminate(&mut child).code(), Some(0));
    assert!(
        ureq::get(&format!("{base}/health")).call().is_err(),
        "the server still answers after SIGTERM"
    );
}

/// `--idle-queues`: the idle worker's connections stay within its budget whatever the number
/// of queues, and one job pushed to each queue runs.
#[test]
fn bench_idle_reports_connections_threads_and_serving_many_queues() {
    let ns = fresh();
    let report = ns.json(&[
        "-q",
        "bench",
        "--mode",
        "drain",
        "--jobs",
        "10",
        "--idle-seconds",
        "1",
        "--idle-queues",
        "60",
        "--json",
    ]);
    let idle = &report["idle"];
    assert!(idle["queues"].as_u64().unwrap() >= 60, "{idle}");
    let (conns, budget) = (
        idle["connections"].as_u64().unwrap(),
        idle["budget"].as_u64().unwrap(),
    );
    assert_eq!(budget, 11, "default pool 10 + listener: {idle}");
    assert!(conns >= 2 && conns <= budget, "{idle}");
    assert!(idle["threads"].as_u64().unwrap() >= 5, "{idle}");
    assert!(
        idle["serve_all_seconds"].as_f64().is_some(),
        "one job per queue ran: {idle}"
    );
}

#[test]
fn bench_json_reports_every_section_consistently() {
    let ns = fresh();
    let report = ns.json(&[
        "-q",
        "bench",
        "--jobs",
        "120",
        "--queues",
        "2",
        "--concurrency",
        "4",
        "--kind",
        "sleep",
        "--sleep",
        "1",
        "--latency-samples",
        "5",
        "--json",
    ]);
    let settings = &report["settings"];
    assert_eq!(settings["mode"], "all");
    assert_eq!(settings["jobs"], 120);
    assert_eq!(settings["queues"], 2);
    assert_eq!(settings["kind"], "sleep");
    assert_eq!(settings["sleep_ms"], 1);
    let plugins: Vec<&str> = settings["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(plugins.contains(&"chancy.leadership"), "{plugins:?}");
    assert!(plugins.contains(&"chancy.metrics"), "{plugins:?}");

    let enqueue = &report["enqueue"];
    assert_eq!(enqueue["jobs"], 120);
    assert!(enqueue["jobs_per_second"].as_f64().unwrap() > 0.0);
    assert!(enqueue["wal_bytes_per_job"].as_f64().unwrap() > 0.0);
    let drain = &report["drain"];
    assert_eq!(drain["jobs"], 120);
    assert_eq!(drain["succeeded"], 120, "every drained job succeeded");
    assert_eq!(drain["ran_once"], 120, "each in one attempt: {drain}");
    assert!(
        drain["processes"].is_null() && settings["workers"].is_null(),
        "one in-process worker without --workers: {report}"
    );
    let (secs, rate) = (
        drain["seconds"].as_f64().unwrap(),
        drain["jobs_per_second"].as_f64().unwrap(),
    );
    assert!((secs * rate - 120.0).abs() < 1.0, "{drain}");
    assert!(drain["wal_bytes_per_job"].as_f64().unwrap() > 0.0);
    assert_costs_consistent(&drain["costs"], 120);
    assert_eq!(
        drain["costs"]["wal_bytes_per_job"],
        drain["wal_bytes_per_job"]
    );
    let claim = &drain["claim"];
    assert_eq!(
        claim["limit"], 4,
        "one claim of --concurrency rows: {claim}"
    );
    assert_eq!(claim["waiting"], 60, "120 jobs over 2 queues: {claim}");
    assert_eq!(claim["rows"], 4, "{claim}");
    let buffers = claim["shared_hit"].as_i64().unwrap() + claim["shared_read"].as_i64().unwrap();
    assert!(buffers > 0, "a claim reads pages: {claim}");
    assert_close(
        claim["buffers_per_row"].as_f64().unwrap(),
        buffers as f64 / 4.0,
        "buffers/row",
    );
    assert!(
        claim["wal_records"].as_i64().unwrap() > 0,
        "a claim updates rows: {claim}"
    );
    assert_close(
        claim["wal_bytes_per_row"].as_f64().unwrap(),
        claim["wal_bytes"].as_f64().unwrap() / 4.0,
        "WAL bytes/row",
    );

    let latency = &report["latency"];
    assert_eq!(latency["samples"], 5);
    for key in ["push_to_start_ms", "push_to_completed_ms"] {
        let p = &latency[key];
        let ordered: Vec<f64> = ["p50", "p95", "p99", "max"]
            .iter()
            .map(|k| p[k].as_f64().expect(k))
            .collect();
        assert!(ordered[0] > 0.0, "{key}: {p}");
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{key}: {p}");
    }
    assert!(
        latency["push_to_completed_ms"]["p50"].as_f64()
            >= latency["push_to_start_ms"]["p50"].as_f64(),
        "a job completes after it starts: {latency}"
    );
    assert!(
        report["idle"].is_null(),
        "no --idle-seconds: {}",
        report["idle"]
    );
    let table = &report["jobs_table"];
    assert_eq!(table["rows"], 125, "120 drained + 5 latency jobs: {table}");
    assert!(table["dead_tuples"].as_i64().unwrap() >= 0);
    let left = tables_of(&format!("{}bench_", ns.prefix));
    assert!(
        left.is_empty(),
        "bench drops its tables, the version table too, without --keep: {left:?}"
    );
}

#[test]
fn worker_start_web_serves_the_api_until_the_worker_stops() {
    let ns = migrated();
    let mut child = ns
        .command(&["worker", "start", "--web", "--web-port", "0"])
        .env("CHANCY_WEB_PASSWORD", "s3cret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chancy worker start --web");
    let (base, login) = dashboard_lines(&mut child);
    assert!(!login.contains("generated"), "{login}");
    let token = web_login(&base, "s3cret").expect("login with the configured password");
    let token = token["token"].as_str().unwrap().to_string();
    // The dashboard answers before `Worker::start` has finished: wait until the API shows the
    // worker and the `default` queue it declares. (A SIGTERM any earlier is a graceful stop
    // too, see worker_start_stops_gracefully_on_a_sigterm_right_after_spawn.)
    eventually(
        Duration::from_secs(30),
        "the worker and the default queue in the API",
        || {
            let get = |path: &str| -> Value {
                ureq::get(&format!("{base}{path}"))
                    .set("Authorization", &format!("Bearer {token}"))
                    .call()
                    .expect("GET")
                    .into_json()
                    .unwrap()
            };
            let workers = get("/api/v1/workers");
            let queues = get("/api/v1/queues");
            !workers.as_array().unwrap().is_empty()
                && queues
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["name"] == "default")
        },
    );
    let status = terminate(&mut child);
    assert_eq!(status.code(), Some(0), "a clean worker stop");
    assert!(
        ureq::get(&format!("{base}/health")).call().is_err(),
        "the dashboard stops with the worker"
    );
}

/// The rows of `ns`'s workers table: (worker_id, tags).
fn worker_rows(ns: &Ns) -> Vec<(String, Vec<String>)> {
    client()
        .query(
            format!("SELECT worker_id, tags FROM {}workers", ns.prefix).as_str(),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Reads `child`'s stderr on a thread; the lines arrive on the returned channel.
fn stderr_lines(child: &mut Child) -> crossbeam_channel::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The lines of `lines` until one contains `needle` (that one included); panics after 30 s.
fn lines_until(lines: &crossbeam_channel::Receiver<String>, needle: &str) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} on stderr; saw: {seen:#?}"),
        }
    }
}

#[test]
fn worker_start_stops_gracefully_on_a_sigterm_right_after_spawn() {
    let ns = Ns::migrated();
    let mut child = ns
        .command(&["worker", "start", "--web", "--web-port", "0"])
        .env("CHANCY_WEB_PASSWORD", "s3cret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chancy worker start --web");
    let log = stderr_lines(&mut child);
    let mut child = Reap(child);
    // The first thing the command prints, before `Worker::start` (which may not have begun):
    // the signal arrives while the worker is being set up.
    let _ = dashboard_lines(&mut child.0);
    let status = terminate(&mut child.0);
    let lines: Vec<String> = log.try_iter().collect();
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop, not death by signal; stderr: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("received a stop signal")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("stopped")),
        "the worker says it stopped: {lines:#?}"
    );
    assert!(
        worker_rows(&ns).is_empty(),
        "no worker row left behind: {:?}",
        worker_rows(&ns)
    );
}

#[test]
fn worker_start_stops_gracefully_on_a_sigterm_while_it_waits_for_its_worker_id() {
    let ns = Ns::migrated();
    // Another process's live row for the id: the start waits for it to expire (or heartbeat).
    client()
        .execute(
            format!(
                "INSERT INTO {}workers (worker_id, tags, queues, last_seen, expires_at) \
                 VALUES ('busy-id', ARRAY['chancy.session=someone-else'], ARRAY[]::text[], \
                 NOW(), NOW() + INTERVAL '1 hour')",
                ns.prefix
            )
            .as_str(),
            &[],
        )
        .unwrap();
    let mut child = ns
        .command(&["worker", "start", "--worker-id", "busy-id"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chancy worker start");
    let log = stderr_lines(&mut child);
    let mut child = Reap(child);
    let mut lines = lines_until(&log, "another process's row for this id");
    let asked = Instant::now();
    let status = terminate(&mut child.0);
    lines.extend(log.try_iter());
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop; stderr: {lines:#?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the start gave up waiting for the id at once, not after the row's hour"
    );
    assert!(
        lines.iter().any(|l| l.contains("stopped while starting")),
        "{lines:#?}"
    );
    assert_eq!(
        worker_rows(&ns),
        vec![(
            "busy-id".to_string(),
            vec!["chancy.session=someone-else".to_string()]
        )],
        "the other process's row is untouched and none of ours is left"
    );
}

/// A child process killed when the test ends without having stopped it (e.g. on a failed
/// assertion), so no worker outlives its test.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends a raw request head on a fresh connection and returns the answer's status.
fn raw_status(base: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = text(&answer);
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[test]
fn worker_start_web_survives_huge_content_lengths_and_still_drains() {
    let ns = migrated();
    let chancy = library(&ns);
    let queue = chancy::Queue::new("web-drain")
        .concurrency(8)
        .polling_interval(Duration::from_secs(1))
        .eager_polling(true);
    chancy.declare(&queue).expect("declare the queue");
    chancy
        .push_many(&sleep_jobs("web-drain", 64, 0.05))
        .expect("push 64 jobs");
    let mut child = Reap(
        ns.command(&["worker", "start", "--web", "--web-port", "0"])
            .env("CHANCY_WEB_PASSWORD", "s3cret")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chancy worker start --web"),
    );
    let (base, _) = dashboard_lines(&mut child.0);
    // Once aborted the process (allocation failure) and killed handler threads.
    for length in ["9000000000000000000", "18446744073709551615"] {
        for _ in 0..5 {
            let request = format!(
                "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
            );
            assert_eq!(raw_status(&base, &request), 413, "Content-Length {length}");
        }
    }
    let table = format!("{}jobs", ns.prefix);
    eventually(Duration::from_secs(60), "every job succeeded", || {
        let done: i64 = client()
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE state = 'succeeded'"),
                &[],
            )
            .unwrap()
            .get(0);
        done == 64
    });
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the worker process is still running"
    );
    assert_eq!(
        raw_status(&base, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        200
    );
    assert_eq!(
        terminate(&mut child.0).code(),
        Some(0),
        "a clean worker stop"
    );
}

/// `a` equals `b` up to rounding in the JSON.
fn assert_close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

/// The per-job cost section of a drain or steady run: every figure present, every
/// `*_per_job` equal to its total ÷ `jobs`, and the PostgreSQL CPU read from /proc (the
/// test server runs on this machine).
fn assert_costs_consistent(costs: &Value, jobs: u64) {
    assert_eq!(costs["jobs"], jobs, "{costs}");
    let num = |k: &str| {
        costs[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {costs}"))
    };
    let n = jobs as f64;
    assert!(num("seconds") > 0.0, "{costs}");
    assert!(
        num("worker_cpu_seconds") > 0.0,
        "the worker used CPU: {costs}"
    );
    assert_close(
        num("worker_cpu_us_per_job"),
        num("worker_cpu_seconds") * 1e6 / n,
        "worker CPU",
    );
    assert_eq!(
        costs["postgres_cpu_source"], "proc",
        "the test server (DATABASE_URL) must run on this machine, so its CPU is read from /proc: \
         {costs}"
    );
    let (all, own) = (num("postgres_cpu_seconds"), num("postgres_own_cpu_seconds"));
    assert!(all > 0.0, "the server worked during the run: {costs}");
    assert!(own > 0.0 && own <= all + 1e-9, "own ⊆ all: {costs}");
    assert_close(
        num("postgres_cpu_us_per_job"),
        all * 1e6 / n,
        "PostgreSQL CPU",
    );
    assert_close(
        num("postgres_own_cpu_us_per_job"),
        own * 1e6 / n,
        "own PostgreSQL CPU",
    );
    assert!(
        costs["own_processes"].as_u64().unwrap() >= 2,
        "at least the fetcher's and writer's backends: {costs}"
    );
    assert!(num("wal_bytes") > 0.0, "{costs}");
    assert_close(num("wal_bytes_per_job"), num("wal_bytes") / n, "WAL");
    assert!(
        num("wal_records") >= n,
        "at least one WAL record per job: {costs}"
    );
    assert_close(
        num("wal_records_per_job"),
        num("wal_records") / n,
        "WAL records",
    );
    assert!(num("wal_fpi") >= 0.0, "{costs}");
    assert_close(
        num("wal_fpi_per_job"),
        num("wal_fpi") / n,
        "WAL full-page images",
    );
    assert!(num("commits") >= 1.0, "claims and outcomes commit: {costs}");
    assert_close(num("commits_per_job"), num("commits") / n, "commits");
    let note = costs["statements_note"].as_str().expect("statements_note");
    match costs["statements"].as_f64() {
        Some(calls) => {
            assert!(calls >= 1.0, "{costs}");
            assert_close(num("statements_per_job"), calls / n, "statements");
        }
        None => {
            assert!(costs["statements_per_job"].is_null(), "{costs}");
            assert!(
                note.starts_with("pg_stat_statements unavailable: "),
                "says why there is no statement count: {costs}"
            );
        }
    }
}

#[test]
fn bench_steady_mode_times_open_loop_arrivals() {
    let ns = fresh();
    let report = ns.json(&[
        "-q",
        "bench",
        "--mode",
        "steady",
        "--rate",
        "200",
        "--seconds",
        "1",
        "--concurrency",
        "8",
        "--no-default-plugins",
        "--json",
    ]);
    assert!(
        report["drain"].is_null() && report["latency"].is_null(),
        "{report}"
    );
    assert_eq!(report["settings"]["mode"], "steady");
    assert_eq!(report["settings"]["rate"], 200);
    let steady = &report["steady"];
    assert_eq!(steady["jobs"], 200, "{steady}");
    let pushes = steady["pushes"].as_u64().unwrap();
    assert!((1..=200).contains(&pushes), "{steady}");
    assert!(steady["achieved_rate"].as_f64().unwrap() > 0.0, "{steady}");
    let p = &steady["push_to_start_ms"];
    let ordered: Vec<f64> = ["p50", "p95", "p99", "max"]
        .iter()
        .map(|k| p[k].as_f64().expect(k))
        .collect();
    assert!(ordered[0] > 0.0, "{p}");
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{p}");
    assert_costs_consistent(&steady["costs"], 200);
    assert_eq!(
        report["jobs_table"]["rows"], 200,
        "every arrival was pushed once"
    );
}

#[test]
fn bench_counts_statements_when_pg_stat_statements_is_loaded() {
    // A private server: loading the extension needs `shared_preload_libraries` and a
    // restart, which the shared server must never get.
    let server = chancy::pgtemp::TempPostgres::start()
        .expect("start a private PostgreSQL (needs the server binaries, see tests/faults.rs)");
    Client::connect(server.url(), NoTls)
        .unwrap()
        .batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        .unwrap();
    server.restart().expect("restart the private server");
    Client::connect(server.url(), NoTls)
        .unwrap()
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .expect("pg_stat_statements (PostgreSQL's contrib) must be installed for this test");
    let out = Command::new(BIN)
        .env("DATABASE_URL", server.url())
        .env_remove("RUST_LOG")
        .args([
            "-q", "--prefix", "st_", "bench", "--mode", "drain", "--jobs", "200",
        ])
        .args(["--concurrency", "8", "--no-default-plugins", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run chancy bench");
    assert!(
        out.status.success(),
        "chancy bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let costs = &report["drain"]["costs"];
    assert_costs_consistent(costs, 200);
    // At least one claim per 8 jobs, each job's outcome in some writer batch.
    let statements = costs["statements"].as_f64().expect("statements counted");
    assert!(statements >= 25.0, "{costs}");
    assert!(
        costs["statements_note"]
            .as_str()
            .unwrap()
            .starts_with("pg_stat_statements calls"),
        "{costs}"
    );
}

#[test]
fn bench_latency_mode_skips_the_drain() {
    let ns = fresh();
    let report = ns.json(&[
        "-q",
        "bench",
        "--mode",
        "latency",
        "--latency-samples",
        "3",
        "--no-default-plugins",
        "--json",
    ]);
    assert!(
        report["enqueue"].is_null() && report["drain"].is_null(),
        "{report}"
    );
    assert_eq!(report["latency"]["samples"], 3);
    assert_eq!(report["settings"]["plugins"], serde_json::json!([]));
    assert_eq!(report["jobs_table"]["rows"], 3);
}

/// Issue 16 item 5 (the deployment guide's stop semantics): a job that outlives
/// `--shutdown-timeout` after SIGTERM makes `worker start` exit 1 with a message saying so,
/// and the job stays `running` for recovery.
#[test]
fn worker_start_exits_1_when_a_job_outlives_the_shutdown_timeout() {
    let ns = Ns::migrated();
    let long = ns.push(&["chancy.builtin.sleep", "--kwargs", r#"{"seconds": 30}"#]);
    let log = std::env::temp_dir().join(format!("{}stop.log", ns.prefix));
    let mut worker = ns
        .command(&[
            "worker",
            "start",
            "--plugins",
            "none",
            "--shutdown-timeout",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn worker");
    eventually(Duration::from_secs(30), "the sleep job to run", || {
        ns.json(&["job", "get", &long])["state"] == "running"
    });
    let status = terminate(&mut worker);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("jobs were still running after the 1s shutdown timeout"),
        "{stderr}"
    );
    assert_eq!(ns.json(&["job", "get", &long])["state"], "running");
}

/// Issue 16 item 5: `worker start --max-connection-pool-size N` sets the worker's connection
/// budget to N + 1 listener; it says so at start, and its connections (by
/// `application_name`) stay within it while it drains jobs on 8 slots.
#[test]
fn worker_start_max_connection_pool_size_bounds_its_connections() {
    let ns = Ns::migrated();
    ns.ok(&["queue", "declare", "pooled", "--concurrency", "8"]);
    let app = format!("pool-{}", ns.prefix.trim_end_matches('_'));
    let log = std::env::temp_dir().join(format!("{app}.log"));
    let mut worker = ns
        .command(&[
            "worker",
            "start",
            "--max-connection-pool-size",
            "2",
            "--plugins",
            "none",
            "--shutdown-timeout",
            "5",
        ])
        .env(
            "DATABASE_URL",
            format!("{}?application_name={app}", database_url()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn worker");
    let chancy = library(&ns);
    chancy
        .push_many(&sleep_jobs("pooled", 200, 0.01))
        .expect("push");
    let mut most = 0;
    let mut db = client();
    let succeeded = format!(
        "SELECT count(*) FROM {}jobs WHERE state = 'succeeded'",
        ns.prefix
    );
    eventually(Duration::from_secs(60), "the 200 jobs to run", || {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .get(0);
        most = most.max(n);
        db.query_one(succeeded.as_str(), &[])
            .unwrap()
            .get::<_, i64>(0)
            == 200
    });
    assert_eq!(terminate(&mut worker).code(), Some(0));
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        stderr.contains("connection budget 3 (application pool 2 + listener 1)"),
        "{stderr}"
    );
    assert!((1..=3).contains(&most), "{most} connections, budget 3");
}

/// Issue 16 item 6: `bench --workers N` drains one backlog with N `chancy worker start`
/// processes and reports, per process, the jobs it ran, its connections (within its
/// budget) and a clean exit; every job ran exactly once.
#[test]
fn bench_workers_drains_with_worker_processes_each_job_once() {
    let ns = Ns::new();
    let report = ns.json(&[
        "-q",
        "bench",
        "--mode",
        "drain",
        "--workers",
        "2",
        "--jobs",
        "2000",
        "--queues",
        "2",
        "--concurrency",
        "4",
        "--kind",
        "sleep",
        "--sleep",
        "5",
        "--json",
    ]);
    assert_eq!(report["settings"]["workers"], 2);
    let drain = &report["drain"];
    assert_eq!(drain["jobs"], 2000);
    assert_eq!(drain["succeeded"], 2000, "every job succeeded: {drain}");
    assert_eq!(
        drain["ran_once"], 2000,
        "every job took one attempt: {drain}"
    );
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}: {v}"));
    let p = &drain["processes"];
    assert_eq!(p["workers"], 2, "{p}");
    let budget = p["connection_budget"].as_i64().expect("connection_budget");
    assert_eq!(
        budget, 11,
        "the default budget: pool 10 + listener 1 (README)"
    );
    let (startup, busy, seconds) = (
        num(p, "startup_seconds"),
        num(p, "busy_seconds"),
        num(drain, "seconds"),
    );
    assert!(startup >= 0.0 && busy > 0.0, "{p}");
    assert!(
        (startup + busy - seconds).abs() < 1e-3,
        "spawn → first start → last completion adds up: {drain}"
    );
    assert!((num(drain, "jobs_per_second") * seconds - 2000.0).abs() < 1.0);
    assert!((num(p, "busy_jobs_per_second") * busy - 2000.0).abs() < 1.0);
    let workers = p["per_worker"].as_array().expect("per_worker");
    assert_eq!(workers.len(), 2, "{p}");
    let mut ids: Vec<&str> = workers
        .iter()
        .map(|w| w["worker_id"].as_str().expect("worker_id"))
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "distinct worker ids: {p}");
    let jobs: i64 = workers.iter().map(|w| w["jobs"].as_i64().unwrap()).sum();
    assert_eq!(jobs, 2000, "the processes' jobs add up to the backlog: {p}");
    let mut cpu = 0.0;
    for w in workers {
        assert_eq!(w["exit_code"], 0, "a clean stop on SIGTERM: {w}");
        let c = w["max_connections"].as_i64().unwrap();
        assert!((0..=budget).contains(&c), "within the budget: {w}");
        cpu += num(w, "cpu_seconds");
    }
    assert!(cpu > 0.0, "{p}");
    assert!((num(p, "cpu_seconds") - cpu).abs() < 1e-9, "{p}");
    let total = p["max_connections_total"].as_i64().unwrap();
    assert!(
        (2..=2 * budget).contains(&total),
        "at least one process's pool and listener, at most both budgets: {p}"
    );
    assert_costs_consistent(&drain["costs"], 2000);
    assert!(
        num(&drain["costs"], "worker_cpu_seconds") >= cpu,
        "the worker CPU counts the processes: {drain}"
    );
    assert_eq!(report["jobs_table"]["rows"], 2000);
    let left: Vec<String> = tables_of(&format!("{}bench_", ns.prefix))
        .into_iter()
        .filter(|t| !t.ends_with("schema_version"))
        .collect();
    assert!(left.is_empty(), "bench drops its tables: {left:?}");
}

#[test]
fn bench_workers_outside_the_drain_is_a_usage_error() {
    let ns = Ns::new();
    let out = ns.run(&["bench", "--mode", "steady", "--workers", "2"]);
    assert!(
        one_line_error(&out).contains("--workers applies to the drain"),
        "{out:?}"
    );
    let out = ns.run(&["bench", "--workers", "0"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects 0: {out:?}");
}

/// Issue 14 item 5: the CLI renders the library's per-job outcomes with documented exit
/// codes (0 done, 3 not found, 4 not applicable, 5 conflict) and sends NOTIFY only for jobs
/// it changed.
#[test]
fn job_cancel_retry_delete_render_the_library_outcomes_with_exit_codes() {
    let ns = migrated();
    let table = format!("\"{}jobs\"", ns.prefix);
    let finish = |id: &str, state: &str| {
        client()
            .execute(
                &format!("UPDATE {table} SET state = $2, completed_at = NOW() WHERE id = $1"),
                &[&uuid::Uuid::parse_str(id).unwrap(), &state],
            )
            .unwrap();
    };
    // Cancel of a finished job: exit 4, state kept. Unknown id: exit 3, no NOTIFY.
    let done = ns.push(&["chancy.builtin.noop"]);
    finish(&done, "succeeded");
    let mut listener = client();
    listener
        .batch_execute(&format!("LISTEN \"{}events\"", ns.prefix))
        .unwrap();
    let out = ns.run(&["job", "cancel", &done]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(one_line_error(&out).contains("already finished (succeeded)"));
    assert_eq!(ns.json(&["job", "get", &done])["state"], "succeeded");
    let unknown = "00000000-0000-0000-0000-000000000000";
    let out = ns.run(&["job", "cancel", unknown]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(one_line_error(&out).contains("not found"));
    {
        use postgres::fallible_iterator::FallibleIterator;
        let mut notes = listener.notifications();
        let got: Vec<String> = notes
            .timeout_iter(Duration::from_millis(300))
            .map(|n| Ok(n.payload().to_string()))
            .collect()
            .unwrap();
        assert!(got.is_empty(), "nothing changed, nothing sent: {got:?}");
    }

    // Retry of a job scheduled for later: exit 4 and it stays scheduled.
    let later = ns.push(&["chancy.builtin.noop", "--delay", "3600"]);
    let before = ns.json(&["job", "get", &later])["scheduled_at"].clone();
    let out = ns.run(&["job", "retry", &later]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(one_line_error(&out).contains("scheduled for"));
    assert_eq!(ns.json(&["job", "get", &later])["scheduled_at"], before);

    // Retry of a finished job whose unique key is held by a waiting job: exit 5, holder
    // named; another job in the same call is retried.
    let first = ns.push(&["chancy.builtin.noop", "--unique-key", "k"]);
    finish(&first, "failed");
    let holder = ns.push(&["chancy.builtin.noop", "--unique-key", "k"]);
    let other = ns.push(&["chancy.builtin.noop"]);
    finish(&other, "failed");
    let out = ns.run(&["job", "retry", &first, &other]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(one_line_error(&out).contains(&holder));
    assert!(text(&out.stdout).contains(&format!("job {other} will run again")));
    assert_eq!(ns.json(&["job", "get", &other])["state"], "retrying");
    assert_eq!(ns.json(&["job", "get", &first])["state"], "failed");

    // Cancel of a waiting job and delete: exit 0.
    assert!(ns.ok(&["job", "cancel", &later]).contains("cancelled"));
    assert_eq!(ns.json(&["job", "get", &later])["state"], "failed");
    assert!(ns.ok(&["job", "delete", &later]).contains("deleted"));
    assert_eq!(ns.run(&["job", "get", &later]).status.code(), Some(1));
    assert_eq!(ns.run(&["job", "delete", &later]).status.code(), Some(3));
}

/// Issue 14 item 4: out-of-bounds settings are refused by `queue declare` with one line
/// naming the setting and its bound, and nothing is written.
#[test]
fn queue_declare_refuses_out_of_bounds_settings() {
    let ns = migrated();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--concurrency", "2147483647"],
            "concurrency must be between 1 and 1024",
        ),
        (&["--tags", "has=(gpu"], "is not a valid regex"),
        (
            &["--rate-limit", "2147483647", "--rate-limit-window", "2"],
            "rate_limit must be between 0 (unlimited) and 1000000",
        ),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["queue", "declare", "q"];
        argv.extend_from_slice(args);
        let out = ns.run(&argv);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let line = one_line_error(&out);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    assert!(ns.ok(&["queue", "list"]).starts_with("no queues"));
}

/// Issue 14 item 4: rows another client wrote outside the bounds are logged and skipped by
/// a `chancy worker`, which keeps serving the other queues and stops cleanly.
#[test]
fn a_cli_worker_logs_out_of_bounds_queue_rows_and_serves_the_rest() {
    let ns = migrated();
    client()
        .batch_execute(&format!(
            "INSERT INTO \"{p}queues\" (name, state, concurrency, tags, executor, executor_options, polling_interval) \
             VALUES ('huge', 'active', 2147483647, '{{.*}}', 'chancy.executors.thread.ThreadedExecutor', '{{}}', 1), \
                    ('badtag', 'active', 1, '{{\"(\"}}', 'chancy.executors.thread.ThreadedExecutor', '{{}}', 1), \
                    ('zzzstate', 'zzz', 1, '{{.*}}', 'chancy.executors.thread.ThreadedExecutor', '{{}}', 1)",
            p = ns.prefix
        ))
        .unwrap();
    ns.ok(&["queue", "declare", "default", "--concurrency", "2"]);
    let stuck = ns.push(&["chancy.builtin.noop", "--queue", "huge"]);
    let fine = ns.push(&["chancy.builtin.noop"]);
    let mut worker = ns
        .command(&["worker", "start", "--queue-change-poll-interval", "0.5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let done = ns.run(&["job", "wait", &fine, "--timeout", "30"]);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    // A few queue passes (every 0.5 s): the job of the skipped queue stays pending.
    holds_for(
        Duration::from_millis(1200),
        "the huge queue's job stays pending",
        || ns.json(&["job", "get", &stuck])["state"] == "pending",
    );
    let status = terminate(&mut worker);
    assert_eq!(status.code(), Some(0), "no abort, a clean stop: {status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(worker.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("not serving queue \"huge\"") && stderr.contains("concurrency"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not serving queue \"badtag\"") && stderr.contains("regex"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("not serving queue \"huge\"").count(),
        1,
        "logged once at ERROR, not on every queue pass: {stderr}"
    );
    // A row that cannot be read at all (a state this version does not know) follows the
    // same once-per-reason rule.
    assert_eq!(
        stderr
            .matches("not serving queue \"zzzstate\": cannot read its row")
            .count(),
        1,
        "{stderr}"
    );
}

/// Issue 14 item 4: a worker that runs out of threads (here `prlimit --nproc` on an
/// unprivileged user, with a backlog asking for more executor threads than that) serves a
/// large queue with the threads it could start, logs it, runs the other queues' jobs as
/// threads free up and stops cleanly: no panic, no job left `running`. Needs root (to
/// run the worker as `nobody` with `setpriv`, since root ignores the process limit).
///
/// The `default` job is pushed only once the worker has logged that it is out of threads,
/// so its claim finds no thread to start either: it is `running` in the table with no
/// thread, the queue has no new work, and only the retry on the queue's next polls runs it
/// (that retry was once skipped when the scheduler's probe found the queue without work).
#[test]
fn a_worker_out_of_threads_logs_it_serves_its_queues_and_stops_cleanly() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "this test needs root: it runs the worker as `nobody` under `prlimit --nproc` with \
         `setpriv` (util-linux); run the CLI tests as root"
    );
    let ns = migrated();
    ns.ok(&["queue", "declare", "default", "--concurrency", "2"]);
    ns.ok(&["queue", "declare", "big", "--concurrency", "1000"]);
    // Executor threads start on demand: 150 waiting jobs in `big` ask for 150 threads, more
    // than the limit leaves.
    let backlog: Vec<chancy::Job> = (0..150)
        .map(|_| {
            chancy::Job::new("chancy.builtin.sleep")
                .queue("big")
                .kwargs(serde_json::json!({"seconds": 1.0}))
        })
        .collect();
    library(&ns).push_many(&backlog).expect("push the backlog");
    let mut worker = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "prlimit",
            "--nproc=60",
            "--",
            BIN,
            "--prefix",
            &ns.prefix,
            "worker",
            "start",
            "--plugins",
            "none",
        ])
        .env("DATABASE_URL", database_url())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setpriv (util-linux)");
    let lines = stderr_lines(&mut worker);
    let mut stderr = lines_until(&lines, "chancy-exec-big: cannot start an executor thread");
    let id = ns.push(&["chancy.builtin.noop"]);
    let done = ns.run(&["job", "wait", &id, "--timeout", "60"]);
    let status = terminate(&mut worker);
    stderr.extend(lines.iter());
    let stderr = stderr.join("\n");
    assert_eq!(done.status.code(), Some(0), "{done:?}\n{stderr}");
    assert_eq!(status.code(), Some(0), "a clean stop: {status:?}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        ns.ok(&["job", "list", "--state", "running"]).trim(),
        "no jobs"
    );
}

/// A queue's polling interval and rate-limit window are whole seconds (as the table keeps
/// them): a fraction gets a message that says so, not a bare parse error.
#[test]
fn queue_intervals_in_fractions_get_a_whole_seconds_message() {
    let ns = Ns::migrated();
    for args in [
        vec!["queue", "declare", "q", "--polling-interval", "0.5"],
        vec![
            "queue",
            "declare",
            "q",
            "--rate-limit",
            "5",
            "--rate-limit-window",
            "1.5",
        ],
    ] {
        let out = ns.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a whole number of seconds"),
            "{args:?}: {err}"
        );
    }
    assert!(ns
        .ok(&["queue", "list"])
        .lines()
        .all(|l| !l.starts_with("q ")));
}

/// Every duration flag goes through one parser: a huge, negative or malformed value is a
/// usage error (exit 2) naming the flag's range in human units, never an internal limit
/// such as u64::MAX, and nothing runs.
#[test]
fn every_duration_flag_says_its_range_in_human_units() {
    let ns = migrated();
    let worker_flags = [
        "--heartbeat-poll-interval",
        "--heartbeat-timeout",
        "--queue-change-poll-interval",
        "--cancellation-poll-interval",
        "--shutdown-timeout",
        "--leadership-poll-interval",
        "--leadership-timeout",
        "--recovery-poll-interval",
        "--pruner-poll-interval",
        "--cron-poll-interval",
        "--workflow-poll-interval",
        "--horizon-check-interval",
        "--horizon-warn-after",
    ];
    let thousand_years = "to 1000 years (31557600000 seconds)";
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["job", "push", "f", "--delay"], thousand_years),
        (
            vec![
                "job",
                "wait",
                "03fcddd7-a9fa-2a17-b5d2-5e524cf1d55b",
                "--timeout",
            ],
            thousand_years,
        ),
        (vec!["queue", "pause", "q", "--resume-in"], thousand_years),
        (
            vec!["queue", "declare", "q", "--polling-interval"],
            "1 second to 1 day (86400 seconds)",
        ),
        (
            vec![
                "queue",
                "declare",
                "q",
                "--rate-limit",
                "5",
                "--rate-limit-window",
            ],
            "1 second to 1 week (604800 seconds)",
        ),
        (
            vec!["bench", "--seconds"],
            "1 second to 1 hour (3600 seconds)",
        ),
        (
            vec!["bench", "--idle-seconds"],
            "0 seconds to 1 day (86400 seconds)",
        ),
        (
            vec!["bench", "--sleep"],
            "0 seconds to 1 hour (3600 seconds)",
        ),
    ];
    for flag in worker_flags {
        cases.push((vec!["worker", "start", flag], thousand_years));
    }
    for (argv, range) in &cases {
        for bad in ["1e20", "-5", "18446744073709551616", "soon"] {
            let mut argv: Vec<String> = argv.iter().map(ToString::to_string).collect();
            let flag = argv.pop().expect("a flag");
            argv.push(format!("{flag}={bad}"));
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = ns.run(&argv);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{argv:?}: {err}");
            assert!(
                err.contains("allowed: ") && err.contains(range),
                "{argv:?}: {err}"
            );
            assert!(
                !err.contains("18446744073709551615") && !err.contains("u64"),
                "{argv:?}: {err}"
            );
        }
    }
    assert!(
        ns.ok(&["job", "list"]).contains("no jobs"),
        "nothing was pushed"
    );
}

/// `bench --workers N` checks the server's connection budget before it creates or spawns
/// anything: 64 processes × 11 connections cannot fit in the shared server's
/// `max_connections`, so the run fails at once with the numbers and the ways out, and no
/// bench table, worker process or backend of it appears.
#[test]
fn bench_workers_beyond_the_servers_connections_fails_before_spawning() {
    let ns = Ns::new();
    let max: i32 = client()
        .query_one("SELECT current_setting('max_connections')::int", &[])
        .unwrap()
        .get(0);
    assert!(
        64 * 11 > max,
        "the shared server has max_connections {max}: test needs < 704"
    );
    let child = ns
        .command(&[
            "bench",
            "--workers",
            "64",
            "--mode",
            "drain",
            "--jobs",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line_error(&out);
    for part in [
        "--workers 64 needs 704 connections (64 worker processes x 11: pool 10 + 1 listener)",
        &format!("max_connections {max} - "),
        "nothing was started",
        "--max-connection-pool-size",
        "raise max_connections",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(
        tables_of(&format!("{}bench_", ns.prefix)).is_empty(),
        "nothing was migrated or pushed"
    );
    let spawned: i64 = client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&format!("chancy-bench-{pid}-w%")],
        )
        .unwrap()
        .get(0);
    assert_eq!(spawned, 0, "no worker process connected");
    // A smaller pool per process is accounted for: the numbers follow the flag.
    let out = ns.run(&[
        "bench",
        "--workers",
        "64",
        "--max-connection-pool-size",
        "2",
        "--mode",
        "drain",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        one_line_error(&out).contains("needs 192 connections (64 worker processes x 3: pool 2"),
        "{out:?}"
    );
    let out = ns.run(&["bench", "--max-connection-pool-size", "2"]);
    assert_eq!(out.status.code(), Some(2), "only with --workers: {out:?}");
}

/// A pipe whose reader is already gone: the write end, as a child's stdout. The first write
/// fails with EPIPE (Rust ignores SIGPIPE), deterministically, as with `chancy … | true`.
fn stdout_with_no_reader() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe(2)");
    // SAFETY: both descriptors were just opened by pipe(2) and are owned here alone.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn a_reader_that_goes_away_early_is_not_an_error() {
    let ns = migrated();
    ns.ok(&["queue", "declare", "q"]);
    ns.push(&["chancy.builtin.noop", "--queue", "q"]);
    for argv in [
        &["queue", "list"][..],
        &["queue", "get", "q"],
        &["job", "list"],
        &["worker", "list"],
        &["check-migrations"],
        &["job", "push", "chancy.builtin.noop", "--queue", "q"],
    ] {
        let out = ns
            .command(argv)
            .stdout(stdout_with_no_reader())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{argv:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
            "{argv:?}: {err}"
        );
    }
    // The push went through although nobody read its id.
    let list = ns.ok(&["job", "list"]);
    assert_eq!(
        list.lines()
            .filter(|l| l.contains("chancy.builtin.noop"))
            .count(),
        2,
        "{list}"
    );
    // A failing command keeps its own status and error.
    let out = ns
        .command(&["queue", "get", "nope"])
        .stdout(stdout_with_no_reader())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(one_line_error(&out).contains("not found"));
}

#[test]
fn an_unreadable_queue_row_is_named_and_the_others_still_list() {
    let ns = migrated();
    ns.ok(&["queue", "declare", "good"]);
    let mut db = client();
    db.batch_execute(&format!(
        "INSERT INTO {}queues (name, concurrency, tags, state, executor, executor_options, \
         polling_interval) VALUES ('bad', 1, ARRAY['.*'], 'zzz', 'x', '{{}}', 1)",
        ns.prefix
    ))
    .unwrap();
    let out = ns.run(&["queue", "list"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("good")), "{stdout}");
    assert!(!stdout.contains("bad"), "{stdout}");
    assert!(
        stderr.contains("warning: queue \"bad\" is unreadable")
            && stderr.contains("unknown queue state \"zzz\""),
        "{stderr}"
    );
    // Only the bad row: nothing else listed, the warning still names it.
    ns.ok(&["queue", "delete", "good", "--yes"]);
    let out = ns.run(&["queue", "list"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stdout).contains("no queues"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("\"bad\""));
}

#[test]
fn cancel_and_retry_refuse_a_job_in_a_state_chancy_does_not_know() {
    let ns = migrated();
    let id = ns.push(&["chancy.builtin.noop"]);
    let mut db = client();
    // Another client writes a state chancy has no rule for, with its attempts used up (so
    // retry's "exhausted waiting job" rule would otherwise apply).
    db.execute(
        &format!(
            "UPDATE {}jobs SET state = 'weird', attempts = max_attempts WHERE id::text = $1",
            ns.prefix
        ),
        &[&id.trim()],
    )
    .unwrap();
    for verb in ["cancel", "retry"] {
        let out = ns.run(&["job", verb, id.trim()]);
        assert_eq!(
            out.status.code(),
            Some(chancy::cli::EXIT_NOT_APPLICABLE),
            "{verb}: {out:?}"
        );
        let line = one_line_error(&out);
        assert!(
            line.contains("state \"weird\" is not one chancy knows"),
            "{verb}: {line}"
        );
    }
    let state: String = db
        .query_one(
            &format!("SELECT state FROM {}jobs WHERE id::text = $1", ns.prefix),
            &[&id.trim()],
        )
        .unwrap()
        .get(0);
    assert_eq!(state, "weird", "left as it is");
    // Purge deletes it like any row.
    let r = chancy::Reference(id.trim().parse().unwrap());
    assert!(ns.library().purge_job(&r).unwrap().is_done());
}
