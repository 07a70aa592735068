//! Schema migrations, tracked in `<prefix>schema_version` exactly like Python Chancy 0.26.0.
//!
//! Every migration key (`chancy`, `cron`, `metrics`, `trigger`, `workflow`) is a list of
//! `.sql` files under `migrations/<key>/`, embedded in the binary. A file has an `-- up` and a
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

macro_rules! migrations {
    ($key:literal: $($name:literal),+ $(,)?) => {
        &[$(Migration {
            name: $name,
            source: include_str!(concat!("../migrations/", $key, "/", $name, ".sql")),
        }),+]
    };
}

/// Core tables: jobs, queues, workers, leader, rate limits.
pub const CORE: &str = "chancy";
/// The cron plugin's table.
pub const CRON: &str = "cron";
/// The metrics plugin's tables.
pub const METRICS: &str = "metrics";
/// The trigger plugin's table.
pub const TRIGGER: &str = "trigger";
/// The workflow plugin's tables.
pub const WORKFLOW: &str = "workflow";

/// Rust-only objects (the fetch-order index). Python ignores this key; it is applied by
/// `migrate` but never required, so a database migrated by Python counts as up to date.
pub const RUST: &str = "chancy_rs";

/// The keys Python Chancy 0.26.0 knows, in the order `migrate` applies them.
pub const KEYS: [&str; 5] = [CORE, METRICS, WORKFLOW, CRON, TRIGGER];

/// Every key this build knows: Python's plus the Rust-only one.
pub const ALL_KEYS: [&str; 6] = [CORE, RUST, METRICS, WORKFLOW, CRON, TRIGGER];

/// Whether `key` must be up to date for a worker to start (every key but the Rust-only one).
pub fn is_required(key: &str) -> bool {
    key != RUST
}

/// The migrations of `key`, oldest first; `None` for an unknown key.
pub fn migrations_of(key: &str) -> Option<&'static [Migration]> {
    Some(match key {
        CORE => migrations!("chancy":
            "001_initial", "002_indexes", "003_max_attempts_not_null", "004_queue_resume_at",
            "005_jsonb", "006_queue_eager_polling", "007_leader_constraint_rename",
            "008_job_claims"),
        CRON => migrations!("cron": "001_initial", "002_jsonb", "003_timezone"),
        METRICS => migrations!("metrics": "001_initial", "002_buckets"),
        WORKFLOW => migrations!("workflow": "001_initial", "002_jsonb", "003_active_index"),
        TRIGGER => migrations!("trigger": "001_initial"),
        RUST => migrations!("chancy_rs": "001_fetch_order_index"),
        _ => return None,
    })
}

/// Where one migration key stands in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    key: &'a str,
    steps: &'static [Migration],
    prefix: &'a Prefix,
}

impl<'a> Migrator<'a> {
    pub(crate) fn new(key: &'a str, prefix: &'a Prefix) -> Result<Migrator<'a>> {
        let steps = migrations_of(key).ok_or_else(|| {
            Error::migration(format!(
                "unknown migration key {key:?} (known: {})",
                ALL_KEYS.join(", ")
            ))
        })?;
        Ok(Migrator { key, steps, prefix })
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
mod tests {
    use super::*;

    #[test]
    fn every_file_has_both_sections() {
        for key in ALL_KEYS {
            for m in migrations_of(key).unwrap() {
                assert!(!m.up().trim().is_empty(), "{key}/{} has no up", m.name);
                assert!(!m.down().trim().is_empty(), "{key}/{} has no down", m.name);
                assert!(!m.up().contains("-- down"), "{key}/{}", m.name);
            }
        }
    }

    #[test]
    fn versions_match_python_026() {
        let counts: Vec<usize> = KEYS
            .iter()
            .map(|k| migrations_of(k).unwrap().len())
            .collect();
        assert_eq!(counts, vec![8, 2, 3, 3, 1]);
        assert!(migrations_of("nope").is_none());
    }

    #[test]
    fn sections_split_on_marker_lines() {
        let src = "-- comment\n-- up\nCREATE 1;\n-- down\nDROP 1;\n";
        assert_eq!(section(src, "-- up", Some("-- down")), "CREATE 1;\n");
        assert_eq!(section(src, "-- down", None), "DROP 1;\n");
    }
}
