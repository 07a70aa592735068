//! What an operator sees: connect errors in the server's words, warnings for silent traps,
//! the worker's log, the held-back xmin horizon, and the Prometheus / readiness endpoints.
//! Against the real PostgreSQL (`$DATABASE_URL`, else the local server, else a private one);
//! every test works in its own table prefix and drops it.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

#[path = "support/db.rs"]
mod db;
use db::{database_url, drop_prefix};

#[path = "ops/connect.rs"]
mod connect;
#[path = "ops/horizon.rs"]
mod horizon;
#[path = "ops/logs.rs"]
mod logs;
#[path = "ops/metrics.rs"]
mod metrics;
#[path = "ops/traps.rs"]
mod traps;

const BIN: &str = env!("CARGO_BIN_EXE_chancy");

fn client() -> Client {
    let url = database_url();
    Client::connect(&url, NoTls).unwrap_or_else(|e| {
        panic!("cannot reach PostgreSQL at {url}: {e}; these tests need a real server (set DATABASE_URL)")
    })
}

/// One test's prefix; its tables are dropped on drop.
struct Ns {
    prefix: String,
}

impl Ns {
    fn new() -> Ns {
        drop(client());
        let id = uuid::Uuid::new_v4().simple().to_string();
        Ns {
            prefix: format!("o{}_", &id[..10]),
        }
    }

    fn migrated() -> Ns {
        let ns = Ns::new();
        ns.ok(&["migrate"]);
        ns
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("DATABASE_URL", database_url())
            .env_remove("RUST_LOG")
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run chancy")
    }

    /// Runs and asserts exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "chancy {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn library(&self) -> chancy::Chancy {
        chancy::Chancy::builder(database_url())
            .prefix(self.prefix.clone())
            .min_connection_pool_size(0)
            .build()
            .expect("build a Chancy")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        drop_prefix(&self.prefix);
    }
}

/// A child process that is killed and reaped when dropped, so a failing test leaves no
/// worker behind.
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `check` every 100 ms until it returns true or `within` passes.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM (then, if `force`, a second one) and waits for the exit.
fn terminate(child: &mut Child, force: bool) -> std::process::ExitStatus {
    let signal = |child: &Child| {
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    signal(child);
    if force {
        std::thread::sleep(Duration::from_millis(300));
        signal(child);
    }
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the process did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `$DATABASE_URL` with another database name, role or port.
fn url_with(db: Option<&str>, user: Option<&str>, port: Option<u16>) -> String {
    let config: postgres::Config = database_url().parse().expect("a parseable DATABASE_URL");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = port.unwrap_or_else(|| config.get_ports().first().copied().unwrap_or(5432));
    let user = user
        .map(str::to_string)
        .or_else(|| config.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".into());
    let db = db
        .map(str::to_string)
        .or_else(|| config.get_dbname().map(str::to_string))
        .unwrap_or_else(|| "postgres".into());
    format!("postgresql://{user}@{host}:{port}/{db}")
}

/// A TCP port on loopback that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
