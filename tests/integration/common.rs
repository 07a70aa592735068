//! The shared database helper: every test gets its own table prefix in the database of
//! [`database_url`], and its tables are dropped when the helper goes out of scope.

use std::sync::Once;
use std::time::Duration;

use chancy::{Chancy, ChancyBuilder};
use postgres::{Client, NoTls};

pub use crate::support::db::{client, database_url, drop_prefix, unique_prefix};

static REACHABLE: Once = Once::new();

fn check_reachable() {
    REACHABLE.call_once(|| drop(client()));
}

/// One test's isolated chancy namespace.
pub struct TestApp {
    pub chancy: Chancy,
    pub prefix: String,
}

impl TestApp {
    /// Migrated, no default plugins, fast connection timeout.
    pub fn new() -> TestApp {
        TestApp::with(|b| b.no_default_plugins())
    }

    /// Migrated, configured by `configure`.
    pub fn with(configure: impl FnOnce(ChancyBuilder) -> ChancyBuilder) -> TestApp {
        let app = TestApp::unmigrated(configure);
        app.chancy.migrate().expect("migrate");
        app
    }

    /// Not migrated.
    pub fn unmigrated(configure: impl FnOnce(ChancyBuilder) -> ChancyBuilder) -> TestApp {
        TestApp::unmigrated_at(&database_url(), configure)
    }

    /// Migrated, on the database at `url` (e.g. with extra connection parameters).
    pub fn at_url(url: &str, configure: impl FnOnce(ChancyBuilder) -> ChancyBuilder) -> TestApp {
        let app = TestApp::unmigrated_at(url, configure);
        app.chancy.migrate().expect("migrate");
        app
    }

    fn unmigrated_at(url: &str, configure: impl FnOnce(ChancyBuilder) -> ChancyBuilder) -> TestApp {
        check_reachable();
        let prefix = unique_prefix();
        let builder = Chancy::builder(url)
            .prefix(prefix.clone())
            .connection_timeout(Duration::from_secs(10));
        let chancy = configure(builder).build().expect("build chancy");
        TestApp { chancy, prefix }
    }

    pub fn table(&self, name: &str) -> String {
        format!("\"{}{}\"", self.prefix, name)
    }

    /// Runs SQL with `{jobs}`-style placeholders for this prefix's tables.
    pub fn sql(&self, template: &str) -> String {
        let mut s = template.to_string();
        for t in [
            "jobs",
            "queues",
            "workers",
            "leader",
            "queue_rate_limits",
            "schema_version",
        ] {
            s = s.replace(&format!("{{{t}}}"), &self.table(t));
        }
        s
    }

    pub fn client(&self) -> Client {
        client()
    }

    /// Tables of this prefix that exist now.
    pub fn tables(&self) -> Vec<String> {
        crate::support::db::tables_of(&self.prefix)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop_prefix(&self.prefix);
    }
}

/// A scratch database, dropped at the end.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub fn new() -> TestDatabase {
        check_reachable();
        let name = format!(
            "chancy_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        client()
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create database");
        TestDatabase { name }
    }

    pub fn url(&self) -> String {
        let mut config: postgres::Config = database_url().parse().unwrap();
        config.dbname(&self.name);
        let user = config.get_user().unwrap_or("postgres").to_string();
        let host = match &config.get_hosts()[0] {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => {
                return chancy::pgtemp::socket_url(p, &user, &self.name)
            }
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgresql://{user}@{host}:{port}/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&database_url(), NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Listens on `channel` on a dedicated connection.
pub struct Listener {
    client: Client,
}

impl Listener {
    pub fn new(channel: &str) -> Listener {
        let mut client = client();
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .unwrap();
        Listener { client }
    }

    /// Every payload received within `wait` after the last one.
    pub fn collect(&mut self, wait: Duration) -> Vec<String> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut out = Vec::new();
        let mut notes = self.client.notifications();
        let mut it = notes.timeout_iter(wait);
        while let Some(n) = it.next().unwrap() {
            out.push(n.payload().to_string());
        }
        out
    }
}

/// The example binary the process-executor tests run as child.
pub fn process_child() -> std::path::PathBuf {
    example_binary("process_worker")
}

/// The program `examples/<name>.rs`. `cargo test --all-targets` compiles examples as test
/// harnesses, so the real program is built here once per name with `cargo build --example
/// <name>` (same profile and target directory).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    static BUILT: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let plain = dir.join("examples").join(name);
    let mut built = BUILT.lock();
    if !built.iter().any(|n| n == name) {
        let target_dir = dir.parent().expect("target root");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name, "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --example");
        assert!(status.success(), "building examples/{name}.rs failed");
        built.push(name.to_string());
    }
    assert!(plain.exists(), "{} was not built", plain.display());
    plain
}

/// A worker with short intervals and the test handlers `t.noop` and `t.fail`. The `default`
/// queue is declared threaded first (a worker would declare it with upstream's process
/// executor otherwise).
pub fn fast_worker(app: &TestApp) -> chancy::WorkerBuilder {
    use std::time::Duration;
    app.chancy
        .declare(&chancy::Queue::new("default"))
        .expect("declare the default queue (threaded)");
    chancy::Worker::builder(&app.chancy)
        .queue_change_poll_interval(Duration::from_millis(300))
        .heartbeat_poll_interval(Duration::from_secs(1))
        .heartbeat_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(10))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .job("t.noop", |_| Ok(()))
        .job("t.fail", |_| {
            Err(chancy::JobError::new("This job should fail"))
        })
}

/// Warnings logged by the library that contain `needle`, captured from the moment
/// [`capture_warnings`] first ran in this test process (a process-wide logger that keeps only
/// WARN and above, and only messages containing one of the registered needles).
pub fn captured_warnings(needle: &str) -> Vec<String> {
    CAPTURE
        .lock()
        .1
        .iter()
        .filter(|m| m.contains(needle))
        .cloned()
        .collect()
}

/// Starts capturing warnings that contain `needle` (see [`captured_warnings`]).
pub fn capture_warnings(needle: &str) {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        if log::set_logger(&CaptureLogger).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    });
    CAPTURE.lock().0.push(needle.to_string());
}

static CAPTURE: parking_lot::Mutex<(Vec<String>, Vec<String>)> =
    parking_lot::Mutex::new((Vec::new(), Vec::new()));

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let mut capture = CAPTURE.lock();
        if capture.0.iter().any(|n| text.contains(n.as_str())) {
            capture.1.push(text);
        }
    }

    fn flush(&self) {}
}
