//! A database that cannot be reached is reported at once, in the server's own words, with a
//! hint for the cause (not after the full connect timeout as "timed out").

use std::time::{Duration, Instant};

use super::{closed_port, text, url_with, Ns, BIN};

/// Generous: the point is "not the 10 s / 30 s connect timeout".
const FAST: Duration = Duration::from_secs(5);

/// Runs `chancy queue list` against `url`; returns (stderr, how long it took).
fn cli_against(url: &str) -> (String, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(BIN)
        .env_remove("RUST_LOG")
        .args(["--database-url", url, "queue", "list"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chancy");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    (stderr, took)
}

/// Builds a library handle on `url` and asks for a connection; returns (error, time).
fn library_against(url: &str) -> (chancy::Error, Duration) {
    let chancy = chancy::Chancy::builder(url)
        .connection_timeout(Duration::from_secs(30))
        .build()
        .expect("building makes no connection");
    let started = Instant::now();
    let Err(err) = chancy.connection() else {
        panic!("connected to {url}")
    };
    (err, started.elapsed())
}

#[test]
fn wrong_database_name_shows_the_server_message_at_once() {
    let db = format!(
        "chancy_missing_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = url_with(Some(&db), None, None);
    let server_says = format!("database \"{db}\" does not exist");

    let (stderr, took) = cli_against(&url);
    assert!(stderr.contains(&server_says), "{stderr}");
    assert!(stderr.contains("fix the database name"), "{stderr}");
    assert!(!stderr.contains("timed out"), "{stderr}");
    assert!(took < FAST, "the CLI took {took:?}");

    let (err, took) = library_against(&url);
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains(&server_says), "{err}");
    assert!(took < FAST, "the library took {took:?}");
}

#[test]
fn wrong_role_shows_the_server_message_at_once() {
    let role = format!(
        "chancy_nobody_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = url_with(Some("postgres"), Some(&role), None);
    let server_says = format!("role \"{role}\" does not exist");

    let (stderr, took) = cli_against(&url);
    assert!(stderr.contains(&server_says), "{stderr}");
    assert!(stderr.contains("role name and password"), "{stderr}");
    assert!(took < FAST, "the CLI took {took:?}");

    let (err, took) = library_against(&url);
    assert!(err.to_string().contains(&server_says), "{err}");
    assert!(took < FAST, "the library took {took:?}");
}

#[test]
fn refused_port_fails_in_about_a_second_saying_refused() {
    let url = url_with(None, None, Some(closed_port()));

    let (stderr, took) = cli_against(&url);
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
    assert!(stderr.contains("is PostgreSQL running there"), "{stderr}");
    assert!(took < FAST, "the CLI took {took:?}");

    let (err, took) = library_against(&url);
    assert!(err.is_unavailable());
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("connection refused"),
        "{err}"
    );
    assert!(took < FAST, "the library took {took:?}");
}

#[test]
fn a_reachable_database_still_connects_and_works() {
    let ns = Ns::migrated();
    let chancy = ns.library();
    assert!(chancy.is_up_to_date().unwrap());
}

#[test]
fn wrong_password_shows_the_server_message_at_once() {
    // The shared server trusts everyone, so this uses a private one with password auth.
    let pg = chancy::pgtemp::TempPostgres::start()
        .unwrap_or_else(|e| panic!("a private PostgreSQL is needed (as in tests/faults.rs): {e}"));
    let mut admin = postgres::Client::connect(pg.url(), postgres::NoTls).unwrap();
    admin
        .batch_execute("CREATE ROLE chancy_pw LOGIN PASSWORD 'right'")
        .unwrap();
    std::fs::write(
        pg.dir().join("data/pg_hba.conf"),
        "local all postgres trust\nlocal all all scram-sha-256\n",
    )
    .unwrap();
    admin.query_one("SELECT pg_reload_conf()", &[]).unwrap();
    let url = pg
        .url()
        .replacen("postgresql://postgres@", "postgresql://chancy_pw:wrong@", 1);
    super::eventually(Duration::from_secs(10), "the new pg_hba.conf", || {
        postgres::Client::connect(&url, postgres::NoTls).is_err()
    });
    let server_says = "password authentication failed for user \"chancy_pw\"";

    let (stderr, took) = cli_against(&url);
    assert!(stderr.contains(server_says), "{stderr}");
    assert!(stderr.contains("role name and password"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "no password in the message: {stderr}"
    );
    assert!(took < FAST, "the CLI took {took:?}");

    let (err, took) = library_against(&url);
    assert!(err.to_string().contains(server_says), "{err}");
    assert!(took < FAST, "the library took {took:?}");
}
