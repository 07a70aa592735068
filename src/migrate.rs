//! Schema migrations, tracked in `<prefix>schema_version` exactly like Python Chancy 0.26.0.
//!
//! Every migration key is a [`Migrations`] list of `.sql` files under `migrations/<key>/`,
//! embedded in the binary. Core owns `chancy` and the Rust-only `chancy_rs`; each plugin
//! declares its own key next to its code (`cron`, `metrics`, `trigger`, `workflow` in
//! [`crate::plugins`]). A file has an `-- up` and a
//! `-- down` section. A migration's version is its position in the list. One `migrate` call
//! per key runs in one transaction, stepping one version at a time, and records each step.

use crate::unnamed::Unnamed;
use postgres::{GenericClient, Transaction};

use crate::error::{Error, Result};
use crate::prefix::Prefix;

/// One migration step of a key.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The file name without extension, e.g. `008_job_claims`.
    pub name: &'static str,
    source: &'static str,
}

impl Migration {
    /// A step named `name` (the file name without extension, e.g. `001_initial`) with the
    /// text of its file: an `-- up` line, the SQL that applies it, a `-- down` line, the SQL
    /// that reverts it. `{prefix}` in the SQL stands for the table prefix.
    pub const fn new(name: &'static str, source: &'static str) -> Migration {
        Migration { name, source }
    }

    /// The SQL of the `-- up` section (with the `{prefix}` placeholder).
    pub fn up(&self) -> &'static str {
        section(self.source, "-- up", Some("-- down"))
    }

    /// The SQL of the `-- down` section (with the `{prefix}` placeholder).
    pub fn down(&self) -> &'static str {
        section(self.source, "-- down", None)
    }
}

fn section<'a>(source: &'a str, start: &str, end: Option<&str>) -> &'a str {
    let find_line = |marker: &str| {
        let mut offset = 0;
        for line in source.split_inclusive('\n') {
            if line.trim_end() == marker {
                return Some((offset, offset + line.len()));
            }
            offset += line.len();
        }
        None
    };
    let Some((_, body_start)) = find_line(start) else {
        return "";
    };
    let body_end = end
        .and_then(find_line)
        .map(|(line_start, _)| line_start)
        .unwrap_or(source.len());
    &source[body_start..body_end.max(body_start)]
}

/// Embeds the `.sql` files of one migration key, `migrations/<key>/<name>.sql` under the
/// crate root, as a `&'static [Migration]` (oldest first; a version is a position + 1).
/// Core and every plugin with tables use it next to their own code.
macro_rules! embed_migrations {
    ($key:literal: $($name:literal),+ $(,)?) => {
        &[$($crate::migrate::Migration::new(
            $name,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $key, "/", $name, ".sql")),
        )),+]
    };
}
pub(crate) use embed_migrations;

/// The migrations of one key: the key recorded in `<prefix>schema_version.version_of` and
/// its steps, oldest first (version `n` is `steps[n - 1]`; version 0 is "nothing").
///
/// Core owns [`CORE_MIGRATIONS`] and [`RUST_MIGRATIONS`]; every plugin with tables declares
/// its own (returned by `Plugin::migrations`) and `Chancy::migrate` applies those of the
/// configured plugins, so the migrator itself knows no plugin. A plugin of your own can
/// bring tables the same way:
///
/// ```
/// use chancy::migrate::{Migration, Migrations};
/// static STEPS: [Migration; 1] = [Migration::new(
///     "001_initial",
///     "-- up\nCREATE TABLE \"{prefix}audit\" (id BIGSERIAL PRIMARY KEY);\n\
///      -- down\nDROP TABLE \"{prefix}audit\";\n",
/// )];
/// static AUDIT: Migrations = Migrations::new("myapp_audit", &STEPS);
/// assert_eq!(AUDIT.key(), "myapp_audit");
/// assert_eq!(AUDIT.latest(), 1);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    key: &'static str,
    steps: &'static [Migration],
}

impl Migrations {
    /// A key and its steps, oldest first. Keys are shared by every application using the
    /// same prefix: pick one no other plugin uses (Python's keys: `chancy`, `cron`,
    /// `metrics`, `trigger`, `workflow`; this crate adds `chancy_rs`).
    pub const fn new(key: &'static str, steps: &'static [Migration]) -> Migrations {
        Migrations { key, steps }
    }

    /// The key, e.g. `chancy` or `metrics`.
    pub const fn key(&self) -> &'static str {
        self.key
    }

    /// The steps, oldest first.
    pub const fn steps(&self) -> &'static [Migration] {
        self.steps
    }

    /// The newest version (the number of steps).
    pub const fn latest(&self) -> i32 {
        self.steps.len() as i32
    }
}

/// Core tables: jobs, queues, workers, leader, rate limits.
pub const CORE: &str = "chancy";

/// Rust-only objects (the fetch-order index, the jobs table's fill factor). Python ignores
/// this key; it is applied by `migrate` but never required, so a database migrated by Python
/// counts as up to date.
pub const RUST: &str = "chancy_rs";

/// The core schema (key `chancy`), versions 1..=8 as in Python Chancy 0.26.0.
pub const CORE_MIGRATIONS: Migrations = Migrations::new(
    CORE,
    embed_migrations!("chancy":
        "001_initial", "002_indexes", "003_max_attempts_not_null", "004_queue_resume_at",
        "005_jsonb", "006_queue_eager_polling", "007_leader_constraint_rename",
        "008_job_claims"),
);

/// Rust-only objects (key `chancy_rs`): the fetch-order index and the jobs table's fill
/// factor (50).
pub const RUST_MIGRATIONS: Migrations = Migrations::new(
    RUST,
    embed_migrations!("chancy_rs": "001_fetch_order_index", "002_jobs_fillfactor"),
);

/// Whether `key` must be up to date for a worker to start (every key but the Rust-only one).
pub fn is_required(key: &str) -> bool {
    key != RUST
}

/// Where one migration key stands in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The key, e.g. `chancy`.
    pub key: String,
    /// The version recorded in `<prefix>schema_version` (0 when absent).
    pub current: i32,
    /// The newest version this build knows.
    pub latest: i32,
    /// The step names of this key, oldest first.
    pub steps: Vec<&'static str>,
}

impl MigrationStatus {
    /// `current >= latest` (a database ahead of the code counts as up to date, like Python).
    pub fn is_up_to_date(&self) -> bool {
        self.current >= self.latest
    }
}

/// Runs the migrations of one key for one prefix.
pub(crate) struct Migrator<'a> {
    key: &'static str,
    steps: &'static [Migration],
    prefix: &'a Prefix,
}

impl<'a> Migrator<'a> {
    pub(crate) fn new(migrations: &Migrations, prefix: &'a Prefix) -> Migrator<'a> {
        Migrator {
            key: migrations.key,
            steps: migrations.steps,
            prefix,
        }
    }

    fn latest(&self) -> i32 {
        self.steps.len() as i32
    }

    fn ensure_version_table(&self, client: &mut impl GenericClient) -> Result<()> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (version_of VARCHAR(255) PRIMARY KEY, version INT)",
            self.prefix.table("schema_version")
        );
        client
            .batch_execute(&sql)
            .map_err(|e| Error::database("creating the schema_version table", e))
    }

    /// The recorded version (0 when the version table does not exist yet). Only reads, so a
    /// role without CREATE privilege can check migrations.
    pub(crate) fn current(&self, client: &mut impl GenericClient) -> Result<i32> {
        let table = self.prefix.table("schema_version");
        let exists: bool = client
            .query_one_unnamed("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .map_err(|e| Error::database("looking for the schema_version table", e))?
            .get(0);
        if !exists {
            return Ok(0);
        }
        let sql = format!(
            "SELECT version FROM {} WHERE version_of = $1",
            self.prefix.table("schema_version")
        );
        let row = client
            .query_opt_unnamed(&sql, &[&self.key])
            .map_err(|e| Error::database("reading the schema version", e))?;
        Ok(row.and_then(|r| r.get::<_, Option<i32>>(0)).unwrap_or(0))
    }

    pub(crate) fn status(&self, client: &mut impl GenericClient) -> Result<MigrationStatus> {
        Ok(MigrationStatus {
            key: self.key.to_string(),
            current: self.current(client)?,
            latest: self.latest(),
            steps: self.steps.iter().map(|m| m.name).collect(),
        })
    }

    /// Migrates to `target` (default: latest). Returns whether anything changed.
    pub(crate) fn migrate(
        &self,
        client: &mut postgres::Client,
        target: Option<i32>,
    ) -> Result<bool> {
        let target = target.unwrap_or_else(|| self.latest());
        if target < 0 || target > self.latest() {
            return Err(Error::migration(format!(
                "migration {target} does not exist for {:?} (versions 0..={})",
                self.key,
                self.latest()
            )));
        }
        let mut tx = client
            .transaction()
            .map_err(|e| Error::database("starting the migration", e))?;
        // Serialise concurrent migrators of the same prefix (two workers starting at once).
        let lock_key = format!("chancy-migrate:{}", self.prefix);
        tx.execute_unnamed("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
            .map_err(|e| Error::database("locking for migration", e))?;
        self.ensure_version_table(&mut tx)?;
        let mut current = self.current(&mut tx)?;
        if current == target {
            return Ok(false);
        }
        if current > self.latest() {
            return Err(Error::migration(format!(
                "the database has {:?} at version {current}, newer than this build knows ({}); \
                 refusing to migrate",
                self.key,
                self.latest()
            )));
        }
        while current != target {
            current = self.step(&mut tx, current, target)?;
        }
        tx.commit()
            .map_err(|e| Error::database("committing the migration", e))?;
        Ok(true)
    }

    fn step(&self, tx: &mut Transaction<'_>, current: i32, target: i32) -> Result<i32> {
        let (migration, sql, next) = if current < target {
            let m = &self.steps[current as usize];
            (m, m.up(), current + 1)
        } else {
            let m = &self.steps[current as usize - 1];
            (m, m.down(), current - 1)
        };
        log::info!(
            "migrating {} {} -> {} ({})",
            self.key,
            current,
            next,
            migration.name
        );
        tx.batch_execute(&self.prefix.render(sql)).map_err(|e| {
            Error::migration(format!(
                "migration {}/{} failed: {}",
                self.key,
                migration.name,
                crate::error::describe_pg(&e)
            ))
        })?;
        let sql = format!(
            "INSERT INTO {} (version_of, version) VALUES ($1, $2) \
             ON CONFLICT (version_of) DO UPDATE SET version = EXCLUDED.version",
            self.prefix.table("schema_version")
        );
        tx.execute_unnamed(&sql, &[&self.key, &next])
            .map_err(|e| Error::database("recording the schema version", e))?;
        Ok(next)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn every_core_file_has_both_sections() {
        for set in [CORE_MIGRATIONS, RUST_MIGRATIONS] {
            check_sections(&set);
        }
    }

    /// Every step of `set` has a non-empty `-- up` and `-- down` section.
    pub(crate) fn check_sections(set: &Migrations) {
        let key = set.key();
        for m in set.steps() {
            assert!(!m.up().trim().is_empty(), "{key}/{} has no up", m.name);
            assert!(!m.down().trim().is_empty(), "{key}/{} has no down", m.name);
            assert!(!m.up().contains("-- down"), "{key}/{}", m.name);
        }
    }

    #[test]
    fn core_versions_match_python_026() {
        assert_eq!(CORE_MIGRATIONS.latest(), 8);
        assert_eq!(RUST_MIGRATIONS.latest(), 2);
        assert!(is_required(CORE) && !is_required(RUST));
    }

    #[test]
    fn sections_split_on_marker_lines() {
        let src = "-- comment\n-- up\nCREATE 1;\n-- down\nDROP 1;\n";
        assert_eq!(section(src, "-- up", Some("-- down")), "CREATE 1;\n");
        assert_eq!(section(src, "-- down", None), "DROP 1;\n");
    }
}
