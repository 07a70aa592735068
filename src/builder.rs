//! [`ChancyBuilder`]: the composition root of an application. It sits above the client, the
//! worker's plugin API and the plugins, because it is where they meet: the user's settings
//! and plugins, plus upstream's default plugin set, become one [`Chancy`]. The client below
//! only validates its settings and carries the plugins opaquely.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{
    Chancy, ClientConfig, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_POOL_SIZE, DEFAULT_MIN_POOL_SIZE,
};
use crate::error::Result;
use crate::migrate::Migrations;
use crate::plugins;
use crate::prefix::Prefix;
use crate::worker::plugin::{carry, check_unique, Plugin};

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
    ///   `synchronous_commit = off`, [`WorkerBuilder::synchronous_commit`](crate::worker::WorkerBuilder::synchronous_commit))
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

    /// Adds a plugin (like Python's `Chancy(plugins=[…])`). Plugins run in the order added,
    /// before the default set. Its [`migrations`](Plugin::migrations), if any, become part
    /// of [`Chancy::migrate`].
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
        let mut plugins = self.plugins;
        check_unique(&plugins)?;
        // The default set's keys come first, whether or not a user plugin replaced one of
        // its members: a default Python 0.26.0 instance checks those tables.
        let mut migrations: Vec<&'static Migrations> = Vec::new();
        if self.default_plugins {
            let defaults = plugins::default_set();
            migrations.extend(defaults.iter().filter_map(|p| p.migrations()));
            plugins::add_defaults(&mut plugins, defaults);
        }
        migrations.extend(plugins.iter().filter_map(|p| p.migrations()));
        Chancy::new(ClientConfig {
            dsn: self.dsn,
            prefix: self.prefix,
            min_pool: self.min_pool,
            max_pool: self.max_pool,
            connection_timeout: self.connection_timeout,
            notifications: self.notifications,
            transaction_pooling: self.transaction_pooling,
            plugins: carry(plugins),
            migrations,
            known_migrations: plugins::SHIPPED_MIGRATIONS.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::DEFAULT_DATABASE_URL;

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

    #[test]
    fn default_keys_come_first_and_user_plugins_add_theirs() {
        let offline = || Chancy::builder("postgresql://nobody@127.0.0.1:1/none");
        let plain = offline().min_connection_pool_size(0).build().unwrap();
        assert_eq!(
            plain.migration_keys(),
            vec!["chancy", "chancy_rs", "metrics", "workflow"]
        );
        let with_trigger = offline()
            .min_connection_pool_size(0)
            .plugin(crate::plugins::Trigger)
            .no_default_plugins()
            .build()
            .unwrap();
        assert_eq!(
            with_trigger.migration_keys(),
            vec!["chancy", "chancy_rs", "trigger"]
        );
        assert!(with_trigger.has_plugin("chancy.trigger"));
        assert_eq!(with_trigger.plugins().len(), 1);
    }
}
