//! Issue 14 item 6: time decisions use the database clock. The `chancy` binary runs as a
//! worker whose clock is off (Debian's `faketime`, which shifts the process's clock and
//! nothing else) next to a worker with the right clock, against the real PostgreSQL.
//!
//! Needs Debian's `faketime` package: the test installs it with apt when it runs as root
//! (like the browser and PgBouncer tests); otherwise it fails with the instruction, never skips.

use std::ops::Deref;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::bin::Ns;
use support::db::client;
use support::wait::{eventually, holds_for, terminate, Proc};

/// Where Debian's `libfaketime` package puts the library (override with `FAKETIME_LIB`).
const FAKETIME_LIBS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

const HINT: &str = "the clock-skew tests need Debian's `faketime` package: run `apt-get \
                    install faketime` (as root) and run the tests again (or set FAKETIME_LIB \
                    to the path of libfaketime.so.1)";

/// The preload library of `faketime`; fails (never skips) unless it is installed and
/// really shifts a clock. The library is preloaded into `chancy` itself (rather than run
/// through the `faketime` program, which would stand between the test and the worker
/// process), so the test's signals and kills reach the worker.
fn faketime_lib() -> String {
    if std::env::var_os("FAKETIME_LIB").is_none() {
        support::apt::provision("faketime", || {
            FAKETIME_LIBS
                .iter()
                .any(|p| std::path::Path::new(p).exists())
        });
    }
    let lib = std::env::var("FAKETIME_LIB")
        .ok()
        .or_else(|| {
            FAKETIME_LIBS
                .iter()
                .find(|p| std::path::Path::new(p).exists())
                .map(|p| p.to_string())
        })
        .unwrap_or_else(|| panic!("libfaketime.so.1 not found in {FAKETIME_LIBS:?}; {HINT}"));
    let out = Command::new("date")
        .arg("+%s")
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", "+3600s")
        .output()
        .unwrap_or_else(|e| panic!("cannot run date with {lib} preloaded ({e}); {HINT}"));
    let faked: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date with {lib} printed {out:?}; {HINT}"));
    let now = chrono::Utc::now().timestamp();
    assert!(
        (faked - now - 3600).abs() < 60,
        "{lib} did not shift the clock (got {faked}, now {now}); {HINT}"
    );
    lib
}

/// One test's table prefix, dropped at the end; workers started through it are killed.
struct Fleet {
    ns: Ns,
    faketime: String,
    workers: Vec<Proc>,
}

impl Deref for Fleet {
    type Target = Ns;
    fn deref(&self) -> &Ns {
        &self.ns
    }
}

impl Fleet {
    fn new() -> Fleet {
        let faketime = faketime_lib();
        let ns = Ns::new();
        ns.ok(&["migrate"]);
        ns.ok(&["queue", "declare", "default", "--concurrency", "2"]);
        Fleet {
            ns,
            faketime,
            workers: Vec::new(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ns.ok(args).trim().to_string()
    }

    /// `chancy <args>` on this prefix, its clock shifted by `skew` (a faketime offset).
    fn command(&self, skew: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = self.ns.command(args);
        if let Some(offset) = skew {
            // Only the wall clock is off (as on a machine whose clock drifted); the
            // monotonic clock stays true (libfaketime's faked monotonic clock also breaks
            // timed condition-variable waits).
            cmd.env("LD_PRELOAD", &self.faketime)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        cmd
    }

    /// Starts `chancy worker start` with short intervals, its clock shifted by `skew`
    /// (a faketime offset such as `+30s`).
    fn worker(&mut self, id: &str, skew: Option<&str>, plugins: &str) {
        let mut args = vec![
            "worker",
            "start",
            "--worker-id",
            id,
            "--plugins",
            plugins,
            "--queue-change-poll-interval",
            "0.5",
            "--heartbeat-poll-interval",
            "1",
        ];
        if plugins.contains("leadership") {
            args.extend([
                "--leadership-poll-interval",
                "1",
                "--leadership-timeout",
                "5",
            ]);
        }
        let child = self
            .command(skew, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a worker");
        self.workers.push(Proc(child));
    }

    fn leader(&self) -> Option<String> {
        client()
            .query_opt(
                &format!("SELECT worker_id FROM {}", self.table("leader")),
                &[],
            )
            .unwrap()
            .map(|r| r.get(0))
    }

    fn state(&self, id: &str) -> String {
        client()
            .query_one(
                &format!("SELECT state FROM {} WHERE id = $1", self.table("jobs")),
                &[&uuid::Uuid::parse_str(id).unwrap()],
            )
            .unwrap()
            .get(0)
    }
}

/// A queue limited to 1 job per 2 s, served by two workers, one of them 1 s ahead, never
/// starts two jobs in one window (upstream and chancy before this fix: 3 per window).
#[test]
fn a_rate_limit_holds_across_workers_whose_clocks_differ() {
    let mut ns = Fleet::new();
    ns.ok(&[
        "queue",
        "declare",
        "rl",
        "--concurrency",
        "4",
        "--polling-interval",
        "1",
        "--rate-limit",
        "1",
        "--rate-limit-window",
        "2",
    ]);
    let ids: Vec<String> = (0..6)
        .map(|_| ns.ok(&["job", "push", "chancy.builtin.noop", "--queue", "rl"]))
        .collect();
    ns.worker("on-time", None, "none");
    ns.worker("ahead", Some("+1s"), "none");
    eventually(Duration::from_secs(90), "the rate-limited jobs", || {
        ids.iter().all(|id| ns.state(id) == "succeeded")
    });
    let crowded: Vec<(f64, i64)> = client()
        .query(
            &format!(
                "SELECT floor(extract(epoch FROM started_at) / 2)::float8 AS w, count(*) \
                 FROM {} WHERE queue = 'rl' GROUP BY w HAVING count(*) > 1",
                ns.table("jobs")
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        crowded.is_empty(),
        "windows (2 s, database clock) that started more than 1 job: {crowded:?}"
    );
}

/// A worker 30 s ahead neither takes over a live leader's lease nor runs a scheduled job
/// early; it still becomes the leader when the lease is released.
#[test]
fn leadership_and_scheduled_jobs_follow_the_database_clock() {
    let mut ns = Fleet::new();
    ns.worker("on-time", None, "leadership");
    eventually(Duration::from_secs(30), "a leader", || {
        ns.leader().as_deref() == Some("on-time")
    });
    ns.worker("ahead", Some("+30s"), "leadership");
    eventually(
        Duration::from_secs(30),
        "the skewed worker's heartbeat",
        || {
            client()
                .query_opt(
                    &format!(
                        "SELECT 1 FROM {} WHERE worker_id = 'ahead'",
                        ns.table("workers")
                    ),
                    &[],
                )
                .unwrap()
                .is_some()
        },
    );
    // Several election passes of both workers (every second).
    holds_for(
        Duration::from_secs(6),
        "the on-time worker's lease (the worker whose clock runs ahead must not take it)",
        || ns.leader().as_deref() == Some("on-time"),
    );

    // Only the skewed worker serves jobs now; a job due in 3 s (database clock) must not
    // start before then although that worker's clock says it is due.
    let on_time = ns.workers.remove(0);
    stop(on_time);
    eventually(Duration::from_secs(30), "the skewed worker to lead", || {
        ns.leader().as_deref() == Some("ahead")
    });
    let id = ns.ok(&["job", "push", "chancy.builtin.noop", "--delay", "3"]);
    eventually(Duration::from_secs(30), "the scheduled job", || {
        ns.state(&id) == "succeeded"
    });
    let early: bool = client()
        .query_one(
            &format!(
                "SELECT started_at < scheduled_at FROM {} WHERE id = $1",
                ns.table("jobs")
            ),
            &[&uuid::Uuid::parse_str(&id).unwrap()],
        )
        .unwrap()
        .get(0);
    assert!(!early, "the job started before its scheduled time");
}

/// A worker 30 s behind schedules a retry `backoff` seconds after the failure by the
/// database clock (before the fix: 30 s in the past, so it ran again at once).
#[test]
fn a_retry_delay_computed_by_a_skewed_worker_lands_on_the_database_clock() {
    let mut ns = Fleet::new();
    ns.worker("behind", Some("-30s"), "retry");
    let meta = r#"{"retry_settings": {"backoff": 8, "backoff_factor": 1, "backoff_limit": 8, "backoff_jitter": [0, 0]}}"#;
    let id = ns.ok(&[
        "job",
        "push",
        "chancy.builtin.fail",
        "--max-attempts",
        "2",
        "--meta",
        meta,
    ]);
    eventually(Duration::from_secs(30), "the first failure", || {
        ns.state(&id) == "retrying"
    });
    let due_in = |id: &str| -> f64 {
        client()
            .query_one(
                &format!(
                    "SELECT extract(epoch FROM scheduled_at - NOW())::float8 FROM {} WHERE id = $1",
                    ns.table("jobs")
                ),
                &[&uuid::Uuid::parse_str(id).unwrap()],
            )
            .unwrap()
            .get(0)
    };
    // `job push --delay` from a CLI whose clock is 30 s ahead: due in 20 s by the database
    // clock, not 50.
    let out = ns
        .command(
            Some("+30s"),
            &[
                "job",
                "push",
                "chancy.builtin.noop",
                "--queue",
                "later",
                "--delay",
                "20",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let delayed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let d = due_in(&delayed);
    assert!((15.0..=21.0).contains(&d), "--delay 20 is due in {d:.1} s");
    let ahead = due_in(&id);
    assert!(
        (3.0..=9.0).contains(&ahead),
        "the retry is due {ahead:.1} s from now by the database clock (expected about 8)"
    );
    // A backoff past year 9999 from a worker behind the database: the shift onto the
    // database clock must not carry the retry past Python's datetime.max (before: 10000-01-01).
    let huge = r#"{"retry_settings": {"backoff": 1e15, "backoff_limit": 1e15}}"#;
    let far = ns.ok(&[
        "job",
        "push",
        "chancy.builtin.fail",
        "--max-attempts",
        "2",
        "--meta",
        huge,
    ]);
    eventually(
        Duration::from_secs(30),
        "the huge backoff's failure",
        || ns.state(&far) == "retrying",
    );
    let at: String = client()
        .query_one(
            &format!(
                "SELECT to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM {} WHERE id = $1",
                ns.table("jobs")
            ),
            &[&uuid::Uuid::parse_str(&far).unwrap()],
        )
        .unwrap()
        .get(0);
    assert!(
        at.as_str() <= "9999-12-31 23:59:59" && at.starts_with("9999-12-31"),
        "clamped to Python's datetime.max after the clock shift: {at}"
    );
}

/// SIGTERM, and the clean exit within 20 s.
fn stop(mut worker: Proc) {
    terminate(&mut worker, Duration::from_secs(20));
}

/// A worker 2 minutes ahead files its job metrics in the buckets of the database clock
/// (before the fix: 2 minutes in the future, outside every dashboard window).
#[test]
fn metrics_of_a_skewed_worker_land_in_the_database_clock_buckets() {
    let mut ns = Fleet::new();
    ns.worker("ahead", Some("+120s"), "metrics");
    let id = ns.ok(&["job", "push", "chancy.builtin.noop"]);
    eventually(Duration::from_secs(30), "the job", || {
        ns.state(&id) == "succeeded"
    });
    let worker = ns.workers.remove(0);
    stop(worker); // the final flush
    let ahead: Option<f64> = client()
        .query_one(
            &format!(
                "SELECT extract(epoch FROM max(p.sampled_at) - NOW())::float8 \
                 FROM {m} m JOIN {d} d ON d.id = m.metric_id \
                 CROSS JOIN LATERAL unnest(m.buckets, m.sampled_at) AS p(bucket, sampled_at) \
                 WHERE d.key = 'global:status:succeeded' AND m.resolution = 60",
                m = ns.table("metrics"),
                d = ns.table("metric_definitions"),
            ),
            &[],
        )
        .unwrap()
        .get(0);
    let ahead = ahead.expect("the worker flushed its job counter");
    assert!(
        ahead < 5.0,
        "the observation is stamped {ahead:.0} s ahead of the database clock"
    );
}
