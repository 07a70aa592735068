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
use std::any::Any;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::GenericClient;
use serde_json::Value;

use crate::connect::ConnectHealth;
use crate::error::{Error, Result};
use crate::events;
use crate::migrate::{self, MigrationStatus, Migrations, Migrator};
use crate::pool::{self, Pool, PooledConn};
use crate::prefix::Prefix;
use crate::sql::Sql;

pub use horizon::HorizonHolder;
pub(crate) use horizon::DEFAULT_HORIZON_WARN_AFTER;
pub use jobs::WaitOptions;
pub use list::JobFilter;
pub use queues::{QueueListing, UnreadableQueue};
pub use transitions::JobOutcome;
pub use workers::WorkerInfo;

/// Default URL when none is given: the local server's `postgres` database.
pub const DEFAULT_DATABASE_URL: &str = "postgresql://postgres@localhost/postgres";
/// Default for [`ChancyBuilder::max_connection_pool_size`](crate::ChancyBuilder::max_connection_pool_size).
pub(crate) const DEFAULT_MAX_POOL_SIZE: u32 = 10;
/// Default for [`ChancyBuilder::min_connection_pool_size`](crate::ChancyBuilder::min_connection_pool_size).
pub(crate) const DEFAULT_MIN_POOL_SIZE: u32 = 1;
/// Default for [`ChancyBuilder::connection_timeout`](crate::ChancyBuilder::connection_timeout).
pub(crate) const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's settings, validated by [`Chancy::new`]. Filled by
/// [`ChancyBuilder`](crate::ChancyBuilder), which sits above the worker and the plugins
/// because it assembles the default plugin set.
pub(crate) struct ClientConfig {
    pub(crate) dsn: String,
    pub(crate) prefix: String,
    pub(crate) min_pool: u32,
    pub(crate) max_pool: u32,
    pub(crate) connection_timeout: Duration,
    pub(crate) notifications: bool,
    /// See [`ChancyBuilder::transaction_pooling`](crate::ChancyBuilder::transaction_pooling).
    pub(crate) transaction_pooling: bool,
    pub(crate) plugins: CarriedPlugins,
    /// Migration keys this application uses besides core (`chancy`, `chancy_rs`), in the
    /// order `migrate` applies them: those of the default plugin set, then the other
    /// configured plugins'.
    pub(crate) migrations: Vec<&'static Migrations>,
    /// Further keys `migrate_key` and `migration_status` accept by name (every key this
    /// build ships), whether or not their plugin is configured.
    pub(crate) known_migrations: Vec<&'static Migrations>,
}

/// The plugins as the client carries them: it reads only their identifiers; the list
/// itself (`Vec<Arc<dyn Plugin>>` of the worker layer, which the client does not know) is
/// packed and unpacked by `worker/plugin.rs`. So the client stays below the plugin API and
/// users can still configure plugins on it, like Python's `Chancy(plugins=[…])`.
pub(crate) struct CarriedPlugins {
    pub(crate) identifiers: Vec<&'static str>,
    pub(crate) list: Box<dyn Any + Send + Sync>,
}

impl Chancy {
    /// Validates the settings and creates the pool. No connection is made yet.
    ///
    /// # Errors
    /// A configuration error for a malformed database URL, a bad prefix or bad pool sizes.
    pub(crate) fn new(settings: ClientConfig) -> Result<Chancy> {
        let config = postgres::Config::from_str(&settings.dsn).map_err(|e| {
            Error::config(format!(
                "invalid database URL {:?}: {e}",
                redact(&settings.dsn)
            ))
        })?;
        let prefix = Prefix::new(&settings.prefix)?;
        let health = Arc::new(ConnectHealth::default());
        let pool = pool::build_pool(
            config.clone(),
            settings.min_pool,
            settings.max_pool,
            settings.connection_timeout,
            health.clone(),
            settings.transaction_pooling,
        )?;
        let target = pool::describe_config(&config);
        let mut migrations = vec![&migrate::CORE_MIGRATIONS, &migrate::RUST_MIGRATIONS];
        for set in settings.migrations {
            if !migrations.iter().any(|m| m.key() == set.key()) {
                migrations.push(set);
            }
        }
        Ok(Chancy {
            inner: Arc::new(Inner {
                sql: Sql::new(&prefix),
                channel: prefix.channel(),
                pool,
                health,
                config,
                target,
                prefix,
                notifications: settings.notifications,
                transaction_pooling: settings.transaction_pooling,
                plugins: settings.plugins,
                migrations,
                known_migrations: settings.known_migrations,
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
    plugins: CarriedPlugins,
    /// Keys this application uses, in `migrate` order: core first.
    migrations: Vec<&'static Migrations>,
    /// Further keys addressable by name (see `ClientConfig::known_migrations`).
    known_migrations: Vec<&'static Migrations>,
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
    /// The table prefix (every table is `<prefix><name>`, the NOTIFY channel
    /// `<prefix>events`).
    pub fn prefix(&self) -> &Prefix {
        &self.inner.prefix
    }

    /// Whether NOTIFY events are sent and listened for ([`ChancyBuilder::notifications`](crate::ChancyBuilder::notifications)).
    pub fn notifications(&self) -> bool {
        self.inner.notifications
    }

    /// Whether the database URL is a transaction-pooling proxy
    /// ([`ChancyBuilder::transaction_pooling`](crate::ChancyBuilder::transaction_pooling)).
    pub fn transaction_pooling(&self) -> bool {
        self.inner.transaction_pooling
    }

    /// Whether workers and the dashboard LISTEN for events: notifications on and no
    /// transaction pooling.
    pub(crate) fn listens(&self) -> bool {
        self.inner.notifications && !self.inner.transaction_pooling
    }

    /// The plugin list, opaque here (see [`CarriedPlugins`]); `Chancy::plugins` in the
    /// worker layer reads it.
    pub(crate) fn carried_plugins(&self) -> &(dyn Any + Send + Sync) {
        self.inner.plugins.list.as_ref()
    }

    /// Whether a plugin with this identifier is configured.
    pub fn has_plugin(&self, identifier: &str) -> bool {
        self.inner.plugins.identifiers.contains(&identifier)
    }

    /// `postgresql://host:port/db` of the database (no credentials), for messages.
    pub fn database(&self) -> &str {
        &self.inner.target
    }

    /// A pooled connection (it dereferences to a [`postgres::Client`]: run your own
    /// statements or a transaction for [`Chancy::push_in`] on it). Given back to the pool on
    /// drop.
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

    /// Migration keys this application uses: `chancy` and `chancy_rs`, those of the default
    /// plugin set (unless left out), then those of the other configured plugins.
    pub fn migration_keys(&self) -> Vec<&'static str> {
        self.inner.migrations.iter().map(|m| m.key()).collect()
    }

    /// The migrations of `key`: one this application uses or one this build ships.
    fn migrations_of(&self, key: &str) -> Result<&'static Migrations> {
        let known = || {
            self.inner
                .migrations
                .iter()
                .chain(&self.inner.known_migrations)
        };
        known().find(|m| m.key() == key).copied().ok_or_else(|| {
            let mut keys: Vec<&str> = known().map(|m| m.key()).collect();
            keys.dedup();
            Error::migration(format!(
                "unknown migration key {key:?} (known: {})",
                keys.join(", ")
            ))
        })
    }

    /// Brings the core schema and every plugin's tables to the latest version. Returns
    /// whether anything changed. Each key migrates in its own transaction.
    ///
    /// # Errors
    /// When the database is unreachable or a step fails (that key's run is rolled back).
    pub fn migrate(&self) -> Result<bool> {
        self.forget_rust_key_without_core()?;
        let mut changed = false;
        for key in self.migration_keys() {
            changed |= self.migrate_key(key, None)?;
        }
        Ok(changed)
    }

    /// Python's teardown (`migrate(to_version=0)`) drops the core tables but does not know
    /// the Rust-only key, so its record would claim an index and a fill factor on tables
    /// created anew. When the core key is at 0 (no core tables), a recorded `chancy_rs`
    /// version is reset to 0, so [`Chancy::migrate`] creates them again.
    fn forget_rust_key_without_core(&self) -> Result<()> {
        let mut conn = self.connection()?;
        let core = Migrator::new(self.migrations_of(migrate::CORE)?, &self.inner.prefix)
            .current(&mut conn.client)?;
        if core != 0 {
            return Ok(());
        }
        let table = self.inner.prefix.table("schema_version");
        let sql = format!("UPDATE {table} SET version = 0 WHERE version_of = $1 AND version > 0");
        // Absent on a fresh database, where there is nothing to reset.
        let exists: bool = conn
            .client
            .query_one_unnamed("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .map_err(|e| Error::database("looking for the schema_version table", e))?
            .get(0);
        if exists {
            let n = conn
                .client
                .execute_unnamed(sql.as_str(), &[&migrate::RUST])
                .map_err(|e| Error::database("resetting the chancy_rs version", e))?;
            if n > 0 {
                log::info!(
                    "the core schema is not there but {} was recorded: recorded 0 so it is \
                     created again with the core tables",
                    migrate::RUST
                );
            }
        }
        Ok(())
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

    /// Migrates one key to `version` (`None` = latest): `chancy`, `chancy_rs`, a key of a
    /// configured plugin, or one this build ships (`cron`, `metrics`, `trigger`, `workflow`)
    /// whether or not its plugin is configured.
    ///
    /// # Errors
    /// For an unknown key or version, or as [`Chancy::migrate`].
    pub fn migrate_key(&self, key: &str, version: Option<i32>) -> Result<bool> {
        let migrator = Migrator::new(self.migrations_of(key)?, &self.inner.prefix);
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
            .map(|key| {
                Migrator::new(self.migrations_of(key)?, &self.inner.prefix).status(&mut conn.client)
            })
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
        self.notify_in(&mut conn.client, &[(event, body.clone())])
    }

    /// Sends several events in order with one statement on `client` (inside the caller's
    /// transaction, delivered at commit). Does nothing when notifications are off.
    ///
    /// # Errors
    /// When the statement fails.
    pub fn notify_in(
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
