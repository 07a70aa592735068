//! The application handle: configuration, the connection pool and every producer and admin
//! call. It runs nothing in the background; a [`Worker`](crate::Worker) does that.

mod horizon;
mod jobs;
mod list;
mod push;
mod queues;
mod transitions;
mod workers;

use crate::unnamed::Unnamed;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::GenericClient;
use serde_json::Value;

use crate::connect::ConnectHealth;
use crate::error::{Error, Result};
use crate::events;
use crate::migrate::{self, MigrationStatus, Migrator};
use crate::plugin::Plugin;
use crate::pool::{self, Pool, PooledConn};
use crate::prefix::Prefix;
use crate::sql::Sql;

pub use horizon::{HorizonHolder, DEFAULT_HORIZON_WARN_AFTER, MAX_HORIZON_HOLDERS};
pub use jobs::WaitOptions;
pub use list::{JobFilter, DEFAULT_LIST_LIMIT};
pub use transitions::JobOutcome;
pub use workers::WorkerInfo;

/// Default URL when none is given: the local server's `postgres` database.
pub const DEFAULT_DATABASE_URL: &str = "postgresql://postgres@localhost/postgres";
/// Default for [`ChancyBuilder::max_connection_pool_size`].
pub const DEFAULT_MAX_POOL_SIZE: u32 = 10;
/// Default for [`ChancyBuilder::min_connection_pool_size`].
pub const DEFAULT_MIN_POOL_SIZE: u32 = 1;
/// Default for [`ChancyBuilder::connection_timeout`].
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures a [`Chancy`]. Created by [`Chancy::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct ChancyBuilder {
    dsn: String,
    prefix: String,
    min_pool: u32,
    max_pool: u32,
    connection_timeout: Duration,
    notifications: bool,
    transaction_pooling: bool,
    default_plugins: bool,
    plugins: Vec<Arc<dyn Plugin>>,
}

impl ChancyBuilder {
    /// The table prefix (default `chancy_`); see [`Prefix`] for what is allowed.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Most pooled connections (default 10).
    pub fn max_connection_pool_size(mut self, size: u32) -> Self {
        self.max_pool = size;
        self
    }

    /// Connections kept open while idle (default 1).
    pub fn min_connection_pool_size(mut self, size: u32) -> Self {
        self.min_pool = size;
        self
    }

    /// How long a call waits for a connection before failing (default 30 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Send and listen for NOTIFY events (default on). Off: pushes send no NOTIFY and
    /// workers find jobs by polling alone. Behind a transaction-pooling proxy use
    /// [`ChancyBuilder::transaction_pooling`] instead (it stops only the listening).
    pub fn notifications(mut self, enabled: bool) -> Self {
        self.notifications = enabled;
        self
    }

    /// The database URL points at a **transaction-pooling** proxy (PgBouncer
    /// `pool_mode = transaction`, any version, e.g. 1.18 as Debian 12 ships it; default
    /// off). Every server connection is then shared between transactions of many clients, so
    /// this application and its workers keep no state on a connection between transactions:
    ///
    /// - **no `LISTEN`**: a worker finds jobs by polling alone, so a pushed job waits up to
    ///   its queue's `polling_interval` (plus the claim) before it starts, instead of a few
    ///   milliseconds; pushes still send `NOTIFY` (inside their transaction), which workers
    ///   connected directly to PostgreSQL receive as usual;
    /// - **no session settings**: the planner settings of a claim (and
    ///   `synchronous_commit = off`, [`WorkerBuilder::synchronous_commit`](crate::WorkerBuilder::synchronous_commit))
    ///   are `SET LOCAL` inside each claim's transaction, which costs a claim three more
    ///   round trips (`BEGIN`, `SET LOCAL`, `COMMIT`);
    /// - **no named prepared statements**: the hot statements run as unnamed typed queries
    ///   (parse, bind and execute in one round trip; the server plans each one again).
    ///   Chancy's other statements are unnamed in every mode.
    ///
    /// Session pooling (`pool_mode = session`) and direct connections need no setting. Without
    /// it behind transaction pooling, the worker's `LISTEN` lands on whichever server
    /// connection served it and events go astray, claim settings leak to other clients and
    /// cached statements fail with `prepared statement "s…" does not exist`. Your own
    /// statements on [`Chancy::connection`] must follow the same rules (e.g.
    /// `query_typed`). The dashboard's live event stream needs `LISTEN`: it sends no events.
    pub fn transaction_pooling(mut self, enabled: bool) -> Self {
        self.transaction_pooling = enabled;
        self
    }

    /// Adds a plugin. Plugins run in the order added.
    pub fn plugin(mut self, plugin: impl Plugin + 'static) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Adds an already shared plugin, e.g. one chosen at run time by name (what
    /// `chancy worker start --plugins` does). Same rules as [`ChancyBuilder::plugin`].
    pub fn plugin_arc(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Leaves out the default plugin set (leadership, pruner, recovery, metrics, workflow),
    /// like Python's `no_default_plugins=True`. Their tables are then not migrated either.
    /// Without it, `build` appends the defaults after the added plugins, skipping any
    /// identifier already added (see [`crate::plugins`]).
    pub fn no_default_plugins(mut self) -> Self {
        self.default_plugins = false;
        self
    }

    /// Validates the settings and creates the pool. No connection is made yet.
    ///
    /// # Errors
    /// A configuration error for a malformed database URL, a bad prefix, bad pool sizes or
    /// duplicate plugin identifiers.
    pub fn build(self) -> Result<Chancy> {
        let config = postgres::Config::from_str(&self.dsn).map_err(|e| {
            Error::config(format!("invalid database URL {:?}: {e}", redact(&self.dsn)))
        })?;
        let prefix = Prefix::new(&self.prefix)?;
        let mut plugins = self.plugins;
        crate::plugin::check_unique(&plugins)?;
        if self.default_plugins {
            crate::plugins::add_defaults(&mut plugins);
        }
        let health = Arc::new(ConnectHealth::default());
        let pool = pool::build_pool(
            config.clone(),
            self.min_pool,
            self.max_pool,
            self.connection_timeout,
            health.clone(),
            self.transaction_pooling,
        )?;
        let target = pool::describe_config(&config);
        Ok(Chancy {
            inner: Arc::new(Inner {
                sql: Sql::new(&prefix),
                channel: prefix.channel(),
                pool,
                health,
                config,
                target,
                prefix,
                notifications: self.notifications,
                transaction_pooling: self.transaction_pooling,
                default_plugins: self.default_plugins,
                plugins,
            }),
        })
    }
}

/// Hides the password of a URL-style DSN in messages.
fn redact(dsn: &str) -> String {
    match (dsn.find("://"), dsn.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &dsn[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &dsn[..scheme + 3],
                    &userinfo[..colon],
                    &dsn[at..]
                ),
                None => dsn.to_string(),
            }
        }
        _ => dsn.to_string(),
    }
}

struct Inner {
    pool: Pool,
    /// Outcome of the pool's latest connection attempts (written by the pool's threads).
    health: Arc<ConnectHealth>,
    config: postgres::Config,
    target: String,
    prefix: Prefix,
    /// `<prefix>events`, computed once (every push and outcome batch NOTIFYs on it).
    channel: String,
    sql: Sql,
    notifications: bool,
    transaction_pooling: bool,
    default_plugins: bool,
    plugins: Vec<Arc<dyn Plugin>>,
}

/// The application handle: a pool, the prefix, the plugins and every producer and admin call.
/// Cheap to clone (shared inside); `Send + Sync`.
///
/// ```no_run
/// use serde_json::json;
/// use chancy::{Chancy, Job, Queue};
///
/// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
/// chancy.migrate()?;
/// chancy.declare(&Queue::new("emails").concurrency(4))?;
/// let r = chancy.push(&Job::new("myapp.send_email").queue("emails").kwargs(json!({"to": "a@b"})))?;
/// println!("pushed {r}");
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Clone)]
pub struct Chancy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Chancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chancy")
            .field("database", &self.inner.target)
            .field("prefix", &self.inner.prefix.as_str())
            .field("notifications", &self.inner.notifications)
            .field("transaction_pooling", &self.inner.transaction_pooling)
            .finish()
    }
}

impl Chancy {
    /// Starts configuring an application for the database at `dsn` (a `postgresql://` URL
    /// or a libpq `key=value` string).
    pub fn builder(dsn: impl Into<String>) -> ChancyBuilder {
        ChancyBuilder {
            dsn: dsn.into(),
            prefix: Prefix::DEFAULT.to_string(),
            min_pool: DEFAULT_MIN_POOL_SIZE,
            max_pool: DEFAULT_MAX_POOL_SIZE,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            notifications: true,
            transaction_pooling: false,
            default_plugins: true,
            plugins: Vec::new(),
        }
    }

    /// The table prefix.
    pub fn prefix(&self) -> &Prefix {
        &self.inner.prefix
    }

    /// Whether NOTIFY events are sent and listened for.
    pub fn notifications(&self) -> bool {
        self.inner.notifications
    }

    /// Whether the database URL is a transaction-pooling proxy
    /// ([`ChancyBuilder::transaction_pooling`]).
    pub fn transaction_pooling(&self) -> bool {
        self.inner.transaction_pooling
    }

    /// Whether workers and the dashboard LISTEN for events: notifications on and no
    /// transaction pooling.
    pub(crate) fn listens(&self) -> bool {
        self.inner.notifications && !self.inner.transaction_pooling
    }

    /// The configured plugins, in hook order.
    pub fn plugins(&self) -> &[Arc<dyn Plugin>] {
        &self.inner.plugins
    }

    /// Whether a plugin with this identifier is configured.
    pub fn has_plugin(&self, identifier: &str) -> bool {
        self.inner
            .plugins
            .iter()
            .any(|p| p.identifier() == identifier)
    }

    /// `postgresql://host:port/db` of the database (no credentials), for messages.
    pub fn database(&self) -> &str {
        &self.inner.target
    }

    /// A pooled connection.
    ///
    /// # Errors
    /// An [`Error::is_unavailable`] error with the server's own message and a hint for its
    /// cause: at once when the server refused the login or the database does not exist,
    /// after about a second when the connection is refused, else when no connection could
    /// be made within the connection timeout (upstream, like r2d2, always waits the full
    /// timeout and says only "timed out").
    pub fn connection(&self) -> Result<PooledConn> {
        crate::pool::checkout(&self.inner.pool, &self.inner.health, &self.inner.target)
    }

    /// Pooled connections open and idle right now: `(open, idle, max)`.
    #[cfg(feature = "prometheus")]
    pub(crate) fn pool_use(&self) -> (u32, u32, u32) {
        let state = self.inner.pool.state();
        (
            state.connections,
            state.idle_connections,
            self.inner.pool.max_size(),
        )
    }

    /// A pooled connection, waiting at most `timeout` (the worker's loops wait in short
    /// steps so they notice shutdown).
    pub(crate) fn connection_within(&self, timeout: Duration) -> Result<PooledConn> {
        self.inner.pool.get_timeout(timeout).map_err(|e| {
            // r2d2's text carries the last attempt's server message (pool::ConnectError).
            Error::unavailable(format!(
                "could not connect to the database at {}: {e}",
                self.inner.target
            ))
        })
    }

    /// Opens a dedicated connection outside the pool (the worker's listener; every other
    /// loop borrows from the pool).
    pub(crate) fn connect_dedicated(&self) -> Result<pool::Conn> {
        pool::connect(&self.inner.config, self.inner.transaction_pooling)
    }

    /// The most connections the pool opens.
    pub(crate) fn max_pool_size(&self) -> u32 {
        self.inner.pool.max_size()
    }

    /// Connections the pool holds open now (for `chancy bench`).
    #[cfg(feature = "cli")]
    pub(crate) fn open_connections(&self) -> u32 {
        self.inner.pool.state().connections
    }

    /// Whether the pool is at its size with no idle connection (a new borrower would wait).
    pub(crate) fn pool_exhausted(&self) -> bool {
        let state = self.inner.pool.state();
        state.idle_connections == 0 && state.connections >= self.inner.pool.max_size()
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.inner.sql
    }

    /// Migration keys this application uses: `chancy` plus those of its plugins.
    pub fn migration_keys(&self) -> Vec<&'static str> {
        let mut keys = vec![migrate::CORE, migrate::RUST];
        if self.inner.default_plugins {
            // The default plugin set of Python Chancy 0.26.0 owns these tables; a default
            // Python instance checks them, so they are always created.
            keys.extend([migrate::METRICS, migrate::WORKFLOW]);
        }
        for plugin in &self.inner.plugins {
            if let Some(key) = plugin.migration_key() {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// Brings the core schema and every plugin's tables to the latest version. Returns
    /// whether anything changed. Each key migrates in its own transaction.
    ///
    /// # Errors
    /// When the database is unreachable or a step fails (that key's run is rolled back).
    pub fn migrate(&self) -> Result<bool> {
        let mut changed = false;
        for key in self.migration_keys() {
            changed |= self.migrate_key(key, None)?;
        }
        Ok(changed)
    }

    /// Moves the core schema to `version` (up or down). `0` tears down the core and every
    /// plugin key of this application (plugins first).
    ///
    /// # Errors
    /// For a version that does not exist, or as [`Chancy::migrate`].
    pub fn migrate_to(&self, version: i32) -> Result<bool> {
        if version != 0 {
            return self.migrate_key(migrate::CORE, Some(version));
        }
        let mut changed = false;
        for key in self.migration_keys().into_iter().rev() {
            changed |= self.migrate_key(key, Some(0))?;
        }
        Ok(changed)
    }

    /// Migrates one key (`chancy`, `cron`, `metrics`, `trigger`, `workflow`) to `version`
    /// (`None` = latest), whether or not its plugin is configured.
    ///
    /// # Errors
    /// For an unknown key or version, or as [`Chancy::migrate`].
    pub fn migrate_key(&self, key: &str, version: Option<i32>) -> Result<bool> {
        let migrator = Migrator::new(key, &self.inner.prefix)?;
        let mut conn = self.connection()?;
        migrator.migrate(&mut conn.client, version)
    }

    /// Per key of this application: the recorded version and the latest one.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn check_migrations(&self) -> Result<Vec<MigrationStatus>> {
        self.migration_status(&self.migration_keys())
    }

    /// Like [`Chancy::check_migrations`] for the given keys.
    ///
    /// # Errors
    /// For an unknown key, or when the database is unreachable.
    pub fn migration_status(&self, keys: &[&str]) -> Result<Vec<MigrationStatus>> {
        let mut conn = self.connection()?;
        keys.iter()
            .map(|key| Migrator::new(key, &self.inner.prefix)?.status(&mut conn.client))
            .collect()
    }

    /// Whether every key of this application is at (or past) its latest version. The
    /// Rust-only key (`chancy_rs`, an extra index) is not required, so a database migrated
    /// by Python counts as up to date.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn is_up_to_date(&self) -> Result<bool> {
        Ok(self
            .check_migrations()?
            .iter()
            .all(|s| s.is_up_to_date() || !migrate::is_required(&s.key)))
    }

    /// Fails with a "run `chancy migrate`" error unless the schema is up to date.
    ///
    /// # Errors
    /// A migrations-needed error listing the keys that are behind.
    pub fn ensure_migrated(&self) -> Result<()> {
        let behind: Vec<String> = self
            .check_migrations()?
            .into_iter()
            .filter(|s| !s.is_up_to_date())
            .filter_map(|s| {
                if migrate::is_required(&s.key) {
                    return Some(format!("{} at {} of {}", s.key, s.current, s.latest));
                }
                log::warn!(
                    "the Rust-only fetch index ({}) is missing; claims are slower on large \
                     backlogs until `chancy migrate` adds it",
                    s.key
                );
                None
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        Err(Error::migrations_needed(format!(
            "the database schema for prefix {:?} needs migrating ({}); run `chancy migrate` \
             or call Chancy::migrate()",
            self.inner.prefix.as_str(),
            behind.join(", ")
        )))
    }

    /// Sends `event` with `body` (an object) on `<prefix>events`, in its own transaction.
    /// Does nothing when notifications are off.
    ///
    /// # Errors
    /// When the database is unreachable.
    pub fn notify(&self, event: &str, body: &Value) -> Result<()> {
        let mut conn = self.connection()?;
        self.notify_ex(&mut conn.client, &[(event, body.clone())])
    }

    /// Sends several events in order with one statement on `client` (inside the caller's
    /// transaction, delivered at commit). Does nothing when notifications are off.
    ///
    /// # Errors
    /// When the statement fails.
    pub fn notify_ex(
        &self,
        client: &mut impl GenericClient,
        events: &[(&str, Value)],
    ) -> Result<()> {
        if !self.inner.notifications || events.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = events
            .iter()
            .map(|(name, body)| events::payload(name, body))
            .collect();
        client
            .execute_unnamed(
                self.inner.sql.notify.as_str(),
                &[&self.inner.channel, &payloads],
            )
            .map(|_| ())
            .map_err(|e| Error::database("sending notifications", e))
    }
}

/// Runs `body` in a transaction on a pooled connection and commits.
pub(crate) fn in_transaction<T>(
    chancy: &Chancy,
    context: &str,
    body: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut conn = chancy.connection()?;
    let mut tx = conn
        .client
        .transaction()
        .map_err(|e| Error::database(context, e))?;
    let value = body(&mut tx)?;
    tx.commit().map_err(|e| Error::database(context, e))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_dsn_is_a_config_error_without_password() {
        let err = Chancy::builder("postgresql://u:secret@host:notaport/db")
            .build()
            .unwrap_err();
        assert!(err.is_config());
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn bad_prefix_is_rejected_before_connecting() {
        let err = Chancy::builder(DEFAULT_DATABASE_URL)
            .prefix("drop table;")
            .build()
            .unwrap_err();
        assert!(err.is_config());
    }
}
