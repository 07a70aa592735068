//! What an operator sees: connect errors in the server's words, warnings for silent traps,
//! the worker's log, the held-back xmin horizon, and the Prometheus / readiness endpoints.
//! Against the real PostgreSQL (`$DATABASE_URL`, else the local server, else a private one);
//! every test works in its own table prefix and drops it.

mod support;
use support::bin::{text, Ns, BIN};
use support::db::{client, database_url};
use support::wait::{eventually, holds_for, sigterm, terminate, Proc};

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
