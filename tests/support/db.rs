//! Database helpers shared by every test binary (through `support`): which server the
//! tests use, a plain client, a fresh prefix, and dropping a test's tables.

use std::sync::OnceLock;
use std::time::Duration;

use postgres::{Client, NoTls};

/// The local server the tests try when `$DATABASE_URL` is not set.
pub const DEFAULT_TEST_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

/// `$DATABASE_URL` when set, else the local server when it answers at [`DEFAULT_TEST_URL`],
/// else a private PostgreSQL shared by this whole test process (`chancy::pgtemp`; its
/// watchdog stops it and deletes its directory when the process exits). Decided once; when
/// none of the three works the test fails saying so (it never skips).
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        if chancy::pgtemp::answers(DEFAULT_TEST_URL, Duration::from_secs(3)) {
            return DEFAULT_TEST_URL.to_string();
        }
        match chancy::pgtemp::process_wide() {
            Ok(server) => server.url().to_string(),
            Err(e) => panic!(
                "no database for the tests: DATABASE_URL is not set, nothing answers at \
                 {DEFAULT_TEST_URL}, and a private PostgreSQL could not be started: {e}"
            ),
        }
    })
    .clone()
}

/// A plain client; panics with advice when PostgreSQL cannot be reached.
pub fn client() -> Client {
    let url = database_url();
    Client::connect(&url, NoTls).unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {url}: {e}\n\
             The tests need a real server: start one (e.g. `pg_ctlcluster 15 main start`) \
             or set DATABASE_URL."
        )
    })
}

/// A fresh random table prefix such as `t3f9a01c2_`.
pub fn unique_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}_", &id[..10])
}

/// Tables whose name starts with `prefix`, sorted.
pub fn tables_of(prefix: &str) -> Vec<String> {
    let like = format!("{}%", prefix.replace('_', "\\_"));
    client()
        .query(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1 ORDER BY 1",
            &[&like],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Drops every table of `prefix` (best effort; runs during unwinding too).
pub fn drop_prefix(prefix: &str) {
    let Ok(mut c) = Client::connect(&database_url(), NoTls) else {
        return;
    };
    let like = format!("{}%", prefix.replace('_', "\\_"));
    let Ok(rows) = c.query(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE $1",
        &[&like],
    ) else {
        return;
    };
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("\"{}\"", r.get::<_, String>(0)))
        .collect();
    if !names.is_empty() {
        let _ = c.batch_execute(&format!(
            "DROP TABLE IF EXISTS {} CASCADE",
            names.join(", ")
        ));
    }
}
