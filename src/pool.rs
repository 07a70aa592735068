//! Connections: an r2d2 pool of clients that each keep their prepared statements.
//!
//! Every statement chancy runs often is prepared once per connection and reused, which saves
//! a round trip per call compared with preparing an unnamed statement each time. Behind a
//! transaction-pooling proxy ([`ChancyBuilder::transaction_pooling`](crate::ChancyBuilder::transaction_pooling))
//! a named statement cannot outlive its transaction, so the same statements then run as
//! unnamed typed queries ([`Prepared`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, NoTls, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;

use crate::connect::{connect_error, ConnectHealth};
use crate::error::{Error, Result};

/// A connection with its prepared-statement cache. It dereferences to the
/// [`postgres::Client`], so you can run your own statements and transactions on it (e.g.
/// [`Chancy::push_in`](crate::Chancy::push_in) inside your transaction).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let chancy = chancy::Chancy::builder("postgresql://localhost/postgres").build()?;
/// let mut conn = chancy.connection()?;
/// let mut tx = conn.transaction()?;
/// chancy.push_in(&mut tx, &chancy::Job::new("myapp.tasks.send_email"))?;
/// tx.commit()?;
/// # Ok(())
/// # }
/// ```
pub struct Conn {
    /// The client. Prepare statements through [`Conn::prepared`] before opening a
    /// transaction on it.
    pub(crate) client: Client,
    cache: HashMap<String, Statement>,
    /// Set by [`Conn::discard`]: the pool closes the connection instead of reusing it.
    discarded: bool,
    /// Whether this connection goes through a transaction-pooling proxy: no session state,
    /// no named statements outside a transaction.
    transaction_pooling: bool,
}

impl Conn {
    pub(crate) fn new(client: Client, transaction_pooling: bool) -> Conn {
        Conn {
            client,
            cache: HashMap::new(),
            discarded: false,
            transaction_pooling,
        }
    }

    /// Whether this connection goes through a transaction-pooling proxy
    /// ([`ChancyBuilder::transaction_pooling`](crate::ChancyBuilder::transaction_pooling)).
    pub fn transaction_pooling(&self) -> bool {
        self.transaction_pooling
    }

    /// A hot statement of chancy's own: prepared once on this connection (session pooling or
    /// a direct connection), or its parameter types learned once and each call one unnamed
    /// typed query (transaction pooling). Run it with [`Prepared::query`] and friends on this
    /// connection's client or a transaction of it.
    ///
    /// # Errors
    /// When the server rejects the statement or the connection is gone.
    pub(crate) fn statement(&mut self, sql: &str) -> Result<Prepared> {
        if self.transaction_pooling {
            let types = crate::unnamed::param_types(&mut self.client, sql)
                .map_err(|e| Error::database("preparing a statement", e))?;
            return Ok(Prepared::Unnamed(sql.into(), types));
        }
        self.prepared(sql).map(Prepared::Named)
    }

    /// Marks the connection as not reusable (e.g. after a failed statement whose effect is
    /// unknown): the pool closes it when it is given back.
    pub(crate) fn discard(&mut self) {
        self.discarded = true;
    }

    /// The statement for `sql`, prepared (named) on first use on this connection. Behind a
    /// transaction-pooling proxy a named statement exists only on the server connection that
    /// prepared it: use `query_typed` there instead.
    ///
    /// # Errors
    /// When the server rejects the statement or the connection is gone.
    pub fn prepared(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.cache.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self
            .client
            .prepare(sql)
            .map_err(|e| Error::database("preparing a statement", e))?;
        self.cache.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// A statement from [`Conn::statement`].
#[derive(Clone)]
pub(crate) enum Prepared {
    /// Prepared on the connection (session pooling or direct).
    Named(Statement),
    /// The text and its parameter types: one unnamed typed query per call.
    Unnamed(Arc<str>, Arc<[Type]>),
}

impl Prepared {
    /// The rows (as [`postgres::Client::query`]).
    pub(crate) fn query<C: GenericClient>(
        &self,
        client: &mut C,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        match self {
            Prepared::Named(stmt) => client.query(stmt, params),
            Prepared::Unnamed(sql, types) => client.query_typed(sql, &pair(params, types)),
        }
    }

    /// Exactly one row (as [`postgres::Client::query_one`]).
    pub(crate) fn query_one<C: GenericClient>(
        &self,
        client: &mut C,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Row, postgres::Error> {
        match self {
            Prepared::Named(stmt) => client.query_one(stmt, params),
            Prepared::Unnamed(sql, types) => client.query_typed_one(sql, &pair(params, types)),
        }
    }

    /// The number of rows changed (as [`postgres::Client::execute`]).
    pub(crate) fn execute<C: GenericClient>(
        &self,
        client: &mut C,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, postgres::Error> {
        match self {
            Prepared::Named(stmt) => client.execute(stmt, params),
            Prepared::Unnamed(sql, types) => client.execute_typed(sql, &pair(params, types)),
        }
    }
}

/// `params` with their types. Chancy's own call sites pass exactly one value per parameter;
/// a missing type is sent as `unknown`, so a mismatch is the server's error, never a panic.
fn pair<'a>(
    params: &'a [&'a (dyn ToSql + Sync)],
    types: &[Type],
) -> crate::unnamed::TypedParams<'a> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, types.get(i).cloned().unwrap_or(Type::UNKNOWN)))
        .collect()
}

/// The r2d2 connection manager of chancy's pool: `r2d2_postgres`'s, plus a prepared-statement
/// cache per connection, recording each attempt's outcome for fast, precise connect errors
/// (see `crate::connect`).
#[derive(Debug)]
pub struct ConnectionManager {
    inner: PostgresConnectionManager<NoTls>,
    health: Arc<ConnectHealth>,
    target: String,
    transaction_pooling: bool,
}

impl ConnectionManager {
    pub(crate) fn new(
        config: postgres::Config,
        health: Arc<ConnectHealth>,
        transaction_pooling: bool,
    ) -> ConnectionManager {
        let target = describe_config(&config);
        ConnectionManager {
            inner: PostgresConnectionManager::new(config, NoTls),
            health,
            target,
            transaction_pooling,
        }
    }
}

/// A failed connect or check of a pooled connection. Its text is the server's own message
/// (`postgres::Error` alone prints only "db error", which r2d2 would pass on as the reason a
/// pool timed out).
#[derive(Debug)]
pub struct ConnectError(postgres::Error);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::error::describe_pg(&self.0))
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = Conn;
    type Error = ConnectError;

    fn connect(&self) -> Result<Conn, ConnectError> {
        match self.inner.connect() {
            Ok(client) => {
                self.health.succeeded();
                Ok(Conn::new(client, self.transaction_pooling))
            }
            Err(e) => {
                self.health.failed(&self.target, &e);
                Err(ConnectError(e))
            }
        }
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        self.inner.is_valid(&mut conn.client).map_err(ConnectError)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.discarded || conn.client.is_closed()
    }
}

/// The pool type behind [`Chancy`](crate::Chancy).
pub(crate) type Pool = r2d2::Pool<ConnectionManager>;
/// A connection borrowed from the pool.
pub type PooledConn = r2d2::PooledConnection<ConnectionManager>;

/// The pool. Connection attempts are bounded by `timeout` too (unless the URL sets
/// `connect_timeout`), so an address that drops packets cannot hold a pool thread for the
/// operating system's TCP timeout. Its errors go to `health`, not to r2d2's logger.
pub(crate) fn build_pool(
    mut config: postgres::Config,
    min: u32,
    max: u32,
    timeout: Duration,
    health: Arc<ConnectHealth>,
    transaction_pooling: bool,
) -> Result<Pool> {
    if max == 0 || min > max {
        return Err(Error::config(format!(
            "invalid pool sizes: min {min}, max {max} (need 0 <= min <= max and max >= 1)"
        )));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    Ok(r2d2::Pool::builder()
        .max_size(max)
        .min_idle(Some(min))
        .connection_timeout(timeout)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(ConnectionManager::new(config, health, transaction_pooling)))
}

/// Opens one dedicated (unpooled) connection, e.g. for LISTEN.
pub(crate) fn connect(config: &postgres::Config, transaction_pooling: bool) -> Result<Conn> {
    config
        .connect(NoTls)
        .map(|client| Conn::new(client, transaction_pooling))
        .map_err(|e| connect_error(&describe_config(config), e))
}

/// `host:port/dbname` of a config, for messages (never the password).
pub(crate) fn describe_config(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            // Percent-encoded, as in a URL (`postgresql://%2Ftmp%2Fdir:5432/db`).
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => encode_host(path),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgresql://{host}:{port}/{db}")
}

/// A socket directory percent-encoded for the host part of a URL.
pub(crate) fn encode_host(socket_dir: &std::path::Path) -> String {
    let mut host = String::new();
    for b in socket_dir.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            host.push(char::from(b));
        } else {
            host.push_str(&format!("%{b:02X}"));
        }
    }
    host
}

/// How often a waiting checkout looks at the recorded failures.
const POLL: Duration = Duration::from_millis(50);

/// A connection from `pool`, waiting at most the pool's connection timeout, but failing as
/// soon as `health` shows the database cannot be reached (see the [`crate::connect`] module
/// docs).
pub(crate) fn checkout(pool: &Pool, health: &ConnectHealth, target: &str) -> Result<PooledConn> {
    if let Some(conn) = pool.try_get() {
        return Ok(conn);
    }
    let timeout = pool.connection_timeout();
    let since = Instant::now();
    let deadline = crate::duration::deadline(since, timeout);
    loop {
        let now = Instant::now();
        if let Some(f) = health.settled(now, since) {
            return Err(Error::unavailable(format!(
                "could not connect to the database at {target}: {f}"
            )));
        }
        let slice = deadline.saturating_duration_since(now).min(POLL);
        match pool.get_timeout(slice) {
            Ok(conn) => return Ok(conn),
            Err(_) if Instant::now() >= deadline => {
                return Err(timed_out(pool, health, target, timeout))
            }
            Err(_) => {}
        }
    }
}

/// The error when no connection came within `timeout`, saying which of the likely reasons
/// applies.
fn timed_out(pool: &Pool, health: &ConnectHealth, target: &str, timeout: Duration) -> Error {
    let state = pool.state();
    let why = match health.last_failure() {
        Some(f) => format!("last attempt: {f}"),
        None if state.connections >= pool.max_size() => format!(
            "all {} pooled connections stayed in use; raise max_connection_pool_size or \
             find what holds them",
            pool.max_size()
        ),
        None => "nothing answered; is the host reachable, or does a firewall drop the \
                 packets?"
            .to_string(),
    };
    Error::unavailable(format!(
        "could not connect to the database at {target}: no connection within {:.0?} ({why})",
        timeout
    ))
}
