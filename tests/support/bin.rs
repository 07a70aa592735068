//! The built `chancy` binary run on one test's table prefix, as a user runs it (tests/cli.rs,
//! tests/ops.rs, tests/skew.rs).

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::db::{client, database_url, drop_prefix, unique_prefix};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chancy");

/// One test's table prefix; its tables are dropped on drop (first with `chancy migrate
/// --to-version 0` when [`Ns::unmigrating_on_drop`] asked for it).
pub struct Ns {
    pub prefix: String,
    unmigrate_on_drop: bool,
}

impl Ns {
    /// A fresh prefix (fails with advice when PostgreSQL is unreachable).
    pub fn new() -> Ns {
        drop(client());
        Ns {
            prefix: unique_prefix(),
            unmigrate_on_drop: false,
        }
    }

    /// Takes over `prefix` (e.g. one a demo kept): its tables are dropped at the end.
    pub fn adopt(prefix: String) -> Ns {
        Ns {
            prefix,
            unmigrate_on_drop: false,
        }
    }

    /// A fresh prefix after `chancy migrate`.
    pub fn migrated() -> Ns {
        let ns = Ns::new();
        ns.ok(&["migrate"]);
        ns
    }

    /// On drop, runs `chancy migrate --to-version 0` before dropping what is left.
    pub fn unmigrating_on_drop(mut self) -> Ns {
        self.unmigrate_on_drop = true;
        self
    }

    /// `chancy --prefix <prefix> <args>` with `$DATABASE_URL` set, no `RUST_LOG`, no stdin.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("DATABASE_URL", database_url())
            .env_remove("RUST_LOG")
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run chancy")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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

    /// Runs, asserts exit 0 and parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// `chancy job push <args>`; returns the printed job id.
    pub fn push(&self, args: &[&str]) -> String {
        let mut argv = vec!["job", "push"];
        argv.extend_from_slice(args);
        let id = self.ok(&argv).trim().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "push printed {id:?}");
        id
    }

    /// The quoted name of this prefix's table `name`.
    pub fn table(&self, name: &str) -> String {
        format!("\"{}{}\"", self.prefix, name)
    }

    /// The library on this prefix (no idle pooled connections).
    pub fn library(&self) -> chancy::Chancy {
        chancy::Chancy::builder(database_url())
            .prefix(self.prefix.clone())
            .min_connection_pool_size(0)
            .build()
            .expect("build a Chancy")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if self.unmigrate_on_drop {
            let _ = self.run(&["-q", "migrate", "--to-version", "0"]);
        }
        drop_prefix(&self.prefix);
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failed run printed exactly one `error: …` line on stderr; returns it.
pub fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

/// The private prefix a demo printed on its first line (`… using private tables <prefix>*`).
pub fn demo_prefix(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("using private tables ").nth(1))
        .and_then(|rest| rest.strip_suffix('*'))
        .unwrap_or_else(|| panic!("no demo prefix in {out}"))
        .to_string()
}
