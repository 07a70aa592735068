//! A worker's resources do not grow with its number of queues: 500 queues are served by the
//! `chancy` binary on its fixed connection budget, with a bounded number of threads.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chancy::{Job, JobState, Queue};

use crate::common::{client, database_url, TestApp};
use crate::support::wait::{eventually, poll, sample_for};

const QUEUES: usize = 500;
/// `max_connection_pool_size` (10) + 1 fetch + 1 listener: the default budget (README).
const DEFAULT_BUDGET: i64 = 12;
const MAX_IDLE_THREADS: usize = 64;

/// `url` with `application_name` set, so pg_stat_activity tells this worker's connections.
fn with_application_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

fn connections(app_name: &str) -> i64 {
    client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app_name],
        )
        .unwrap()
        .get(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// CPU ticks per thread name of `pid` (to say where idle CPU goes).
fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        *out.entry(name.trim().to_string()).or_default() +=
            stat_ticks(&path.join("stat").to_string_lossy());
    }
    out
}

fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        if poll(Duration::from_secs(20), || self.0.try_wait().ok().flatten()).is_some() {
            return;
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn five_hundred_queues_run_on_the_default_connection_budget_and_few_threads() {
    // Default plugins, as `chancy worker start` runs them.
    let app = TestApp::with(|b| b);
    let app_name = format!("{}w", app.prefix);
    let names: Vec<String> = (0..QUEUES).map(|i| format!("q{i:03}")).collect();
    for name in &names {
        app.chancy
            .declare(&Queue::new(name.as_str()).concurrency(4))
            .unwrap();
    }
    let url = with_application_name(&database_url(), &app_name);
    let child = Command::new(env!("CARGO_BIN_EXE_chancy"))
        .args(["--database-url", &url, "--prefix", &app.prefix])
        .args(["worker", "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the chancy binary");
    let pid = child.id();
    let mut worker = Stop(child);
    let mut peak = 0;
    // Serving every queue: the worker's row lists them all.
    eventually(
        Duration::from_secs(60),
        "the worker to take up 500 queues",
        || {
            peak = peak.max(connections(&app_name));
            let served: Option<i64> = client()
                .query_opt(
                    &format!(
                        "SELECT cardinality(queues)::int8 FROM \"{}workers\"",
                        app.prefix
                    ),
                    &[],
                )
                .ok()
                .flatten()
                .map(|r| r.get(0));
            if let Ok(Some(status)) = worker.0.try_wait() {
                panic!("the worker exited early ({status})");
            }
            served.is_some_and(|n| n as usize > QUEUES)
        },
    );
    let jobs: Vec<Job> = names
        .iter()
        .map(|q| Job::new("chancy.builtin.noop").queue(q.as_str()))
        .collect();
    let pushed = Instant::now();
    let refs = app.chancy.push_many(&jobs).unwrap();
    let mut done = 0;
    let served_in = poll(Duration::from_secs(30), || {
        peak = peak.max(connections(&app_name));
        done = app
            .chancy
            .get_jobs(&refs)
            .unwrap()
            .iter()
            .filter(|j| j.state == JobState::Succeeded)
            .count();
        (done == QUEUES).then(|| pushed.elapsed())
    })
    .unwrap_or_else(|| panic!("only {done} of {QUEUES} queues served within 30 s"));
    // Executor threads retire when idle; the rest does not depend on the queue count.
    let mut idle_threads = threads(pid);
    let retired = poll(Duration::from_secs(40), || {
        peak = peak.max(connections(&app_name));
        idle_threads = threads(pid);
        (idle_threads <= MAX_IDLE_THREADS).then_some(())
    });
    assert!(
        retired.is_some(),
        "{idle_threads} threads 40 s after the work ended (at most {MAX_IDLE_THREADS})"
    );
    // Idle CPU over 5 s (the span is the subject), connections sampled all along.
    let (t0, c0, per0) = (Instant::now(), cpu_ticks(pid), thread_ticks(pid));
    sample_for(Duration::from_secs(5), Duration::from_millis(200), || {
        peak = peak.max(connections(&app_name));
    });
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu_ticks(pid) - c0) as f64 / ticks_per_s / t0.elapsed().as_secs_f64();
    let busiest: Vec<(String, u64)> = thread_ticks(pid)
        .into_iter()
        .map(|(name, t)| {
            let before = per0.get(&name).copied().unwrap_or(0);
            (name, t.saturating_sub(before))
        })
        .filter(|(_, t)| *t > 0)
        .collect();
    eprintln!("idle CPU ticks by thread over 5 s: {busiest:?}");
    eprintln!(
        "500 queues: all served {served_in:?} after the push; peak connections {peak}; \
         idle threads {}; idle CPU {:.2}% of a core",
        threads(pid),
        cpu * 100.0
    );
    assert!(peak >= 2, "the connection count was observed ({peak})");
    assert!(
        peak <= DEFAULT_BUDGET,
        "{peak} connections, budget {DEFAULT_BUDGET}"
    );
    drop(worker);
}
