//! Trigger: statement-level database triggers that push a job when a table changes
//! (Python's `chancy.trigger`, migration key `trigger`; "experimental" upstream).
//!
//! The jobs are inserted by the database itself (plpgsql `<prefix>trigger_handler()`), so
//! they are created even when no worker runs. Like upstream they get random v4 ids (not
//! the time-ordered job-id layout) and a `meta.trigger` object describing the change.

use crate::unnamed::Unnamed;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::in_transaction;
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::migrate::{embed_migrations, Migrations};
use crate::worker::plugin::Plugin;

/// The trigger plugin's table (key `trigger`, version 1 as in Python Chancy 0.26.0).
pub const TRIGGER_MIGRATIONS: Migrations =
    Migrations::new("trigger", embed_migrations!("trigger": "001_initial"));

/// Postgres truncates longer identifiers, which would break the handler's name lookup.
const MAX_IDENTIFIER: usize = 63;
const OPERATIONS: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];

/// The trigger plugin (`chancy.trigger`): owns `<prefix>triggers`; no service thread.
///
/// ```no_run
/// use chancy::{Chancy, Job};
/// use chancy::plugins::Trigger;
///
/// let chancy = Chancy::builder("postgresql://postgres@localhost/postgres")
///     .plugin(Trigger)
///     .build()?;
/// chancy.migrate()?;
/// let id = Trigger::register_trigger(
///     &chancy, "users", &["INSERT", "UPDATE"], &Job::new("app.user_changed"), "public", true,
/// )?;
/// Trigger::disable_trigger(&chancy, id)?;
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Trigger;

/// A registered trigger, as returned by [`Trigger::get_triggers`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TriggerConfig {
    /// The trigger's id.
    pub id: Uuid,
    /// The watched table.
    pub table_name: String,
    /// Its schema.
    pub schema_name: String,
    /// `<prefix>trigger_<id with underscores>`; the database triggers add `_<operation>`.
    pub trigger_name: String,
    /// `INSERT`, `UPDATE` and/or `DELETE`.
    pub operations: Vec<String>,
    /// The job pushed per firing statement.
    pub job_template: Job,
    /// Whether the database triggers exist.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A row of `<prefix>triggers` as needed to create or drop its database triggers.
struct Target {
    schema: String,
    table: String,
    name: String,
    operations: Vec<String>,
    enabled: bool,
}

impl Trigger {
    /// Creates (or replaces) the handler function, stores the trigger and, if `enabled`,
    /// creates one statement-level trigger per operation on `schema_name.table_name`.
    /// Returns the trigger's id.
    ///
    /// # Errors
    /// An invalid-input error for an empty or unknown operation (case-insensitive
    /// `INSERT`/`UPDATE`/`DELETE`), an invalid job or a prefix too long for the trigger
    /// names; a database error (e.g. the table does not exist) rolls everything back.
    pub fn register_trigger(
        chancy: &Chancy,
        table_name: &str,
        operations: &[&str],
        job_template: &Job,
        schema_name: &str,
        enabled: bool,
    ) -> Result<Uuid> {
        in_transaction(chancy, "registering a trigger", |tx| {
            Self::register_trigger_in(
                tx,
                chancy,
                table_name,
                operations,
                job_template,
                schema_name,
                enabled,
            )
        })
    }

    /// [`Trigger::register_trigger`] inside the caller's transaction.
    ///
    /// # Errors
    /// As [`Trigger::register_trigger`].
    pub fn register_trigger_in(
        client: &mut impl GenericClient,
        chancy: &Chancy,
        table_name: &str,
        operations: &[&str],
        job_template: &Job,
        schema_name: &str,
        enabled: bool,
    ) -> Result<Uuid> {
        let operations = validate_operations(operations)?;
        job_template.validate()?;
        let id = Uuid::new_v4();
        let name = format!(
            "{}trigger_{}",
            chancy.prefix().as_str(),
            id.to_string().replace('-', "_")
        );
        if name.len() + "_insert".len() > MAX_IDENTIFIER {
            return Err(Error::invalid_input(format!(
                "the table prefix {:?} is too long for trigger names (at most {} bytes with \
                 the operation suffix)",
                chancy.prefix().as_str(),
                MAX_IDENTIFIER
            )));
        }
        let ctx = "registering a trigger";
        client
            .batch_execute(&chancy.prefix().render(HANDLER))
            .map_err(|e| Error::database(ctx, e))?;
        client
            .execute_unnamed(
                chancy.prefix().render(INSERT).as_str(),
                &[
                    &id,
                    &table_name,
                    &schema_name,
                    &name,
                    &json!(operations),
                    &job_template.pack(),
                    &enabled,
                ],
            )
            .map_err(|e| Error::database(ctx, e))?;
        let target = Target {
            schema: schema_name.to_string(),
            table: table_name.to_string(),
            name,
            operations,
            enabled,
        };
        if enabled {
            create_triggers(client, chancy, &target)?;
        }
        Ok(id)
    }

    /// Drops the trigger's database triggers and its row.
    ///
    /// # Errors
    /// A not-found error for an unknown id; a database error.
    pub fn unregister_trigger(chancy: &Chancy, id: Uuid) -> Result<()> {
        in_transaction(chancy, "unregistering a trigger", |tx| {
            let target = load(tx, chancy, id)?;
            drop_triggers(tx, &target)?;
            tx.execute_unnamed(chancy.prefix().render(DELETE).as_str(), &[&id])
                .map_err(|e| Error::database("unregistering a trigger", e))?;
            Ok(())
        })
    }

    /// Re-creates a disabled trigger's database triggers. Returns false if it was enabled.
    ///
    /// # Errors
    /// A not-found error for an unknown id; a database error.
    pub fn enable_trigger(chancy: &Chancy, id: Uuid) -> Result<bool> {
        Self::toggle(chancy, id, true)
    }

    /// Drops an enabled trigger's database triggers, keeping its row. Returns false if it
    /// was disabled.
    ///
    /// # Errors
    /// A not-found error for an unknown id; a database error.
    pub fn disable_trigger(chancy: &Chancy, id: Uuid) -> Result<bool> {
        Self::toggle(chancy, id, false)
    }

    fn toggle(chancy: &Chancy, id: Uuid, enabled: bool) -> Result<bool> {
        in_transaction(chancy, "toggling a trigger", |tx| {
            let target = load(tx, chancy, id)?;
            if target.enabled == enabled {
                return Ok(false);
            }
            if enabled {
                create_triggers(tx, chancy, &target)?;
            } else {
                drop_triggers(tx, &target)?;
            }
            tx.execute_unnamed(
                chancy.prefix().render(SET_ENABLED).as_str(),
                &[&enabled, &id],
            )
            .map_err(|e| Error::database("toggling a trigger", e))?;
            Ok(true)
        })
    }

    /// Registered triggers (all, or those with the given ids), newest first.
    ///
    /// # Errors
    /// A database error, or an invalid-input error for a stored template that cannot be
    /// read.
    pub fn get_triggers(chancy: &Chancy, ids: Option<&[Uuid]>) -> Result<Vec<TriggerConfig>> {
        let ids: Option<Vec<Uuid>> = ids.map(<[Uuid]>::to_vec);
        let mut conn = chancy.connection()?;
        let rows = conn
            .client
            .query_unnamed(chancy.prefix().render(SELECT).as_str(), &[&ids])
            .map_err(|e| Error::database("reading triggers", e))?;
        rows.iter()
            .map(|r| {
                Ok(TriggerConfig {
                    id: r.get(0),
                    table_name: r.get(1),
                    schema_name: r.get(2),
                    trigger_name: r.get(3),
                    operations: strings(&r.get::<_, Value>(4)),
                    job_template: Job::unpack(&r.get::<_, Value>(5))?,
                    enabled: r.get(6),
                    created_at: r.get(7),
                })
            })
            .collect()
    }
}

impl Plugin for Trigger {
    fn identifier(&self) -> &'static str {
        "chancy.trigger"
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&TRIGGER_MIGRATIONS)
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["triggers"]
    }
}

/// Upper-cased operations, each one of INSERT/UPDATE/DELETE.
fn validate_operations(operations: &[&str]) -> Result<Vec<String>> {
    if operations.is_empty() {
        return Err(Error::invalid_input("operations list cannot be empty"));
    }
    operations
        .iter()
        .map(|op| {
            let upper = op.to_ascii_uppercase();
            if OPERATIONS.contains(&upper.as_str()) {
                Ok(upper)
            } else {
                Err(Error::invalid_input(format!(
                    "Invalid operation: {op}. Must be one of INSERT, UPDATE, DELETE"
                )))
            }
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn load(client: &mut impl GenericClient, chancy: &Chancy, id: Uuid) -> Result<Target> {
    let row = client
        .query_opt_unnamed(chancy.prefix().render(SELECT_ONE).as_str(), &[&id])
        .map_err(|e| Error::database("reading a trigger", e))?
        .ok_or_else(|| Error::not_found(format!("Trigger {id} not found")))?;
    Ok(Target {
        schema: row.get(0),
        table: row.get(1),
        name: row.get(2),
        operations: strings(&row.get::<_, Value>(3)),
        enabled: row.get(4),
    })
}

/// `CREATE TRIGGER` per operation. Every name is a quoted identifier and the operation
/// keyword comes from the validated list, so no user text reaches the SQL unquoted.
fn create_triggers(client: &mut impl GenericClient, chancy: &Chancy, t: &Target) -> Result<()> {
    let function = quote_ident(&format!("{}trigger_handler", chancy.prefix().as_str()))?;
    for op in &t.operations {
        let keyword = OPERATIONS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(op))
            .ok_or_else(|| Error::invalid_input(format!("invalid stored operation {op:?}")))?;
        let (trigger, table) = trigger_and_table(t, keyword)?;
        let sql = format!(
            "CREATE TRIGGER {trigger} AFTER {keyword} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        );
        client
            .batch_execute(&sql)
            .map_err(|e| Error::database("creating a database trigger", e))?;
    }
    Ok(())
}

fn drop_triggers(client: &mut impl GenericClient, t: &Target) -> Result<()> {
    for op in &t.operations {
        let (trigger, table) = trigger_and_table(t, op)?;
        let sql = format!("DROP TRIGGER IF EXISTS {trigger} ON {table}");
        client
            .batch_execute(&sql)
            .map_err(|e| Error::database("dropping a database trigger", e))?;
    }
    Ok(())
}

/// The quoted name of `t`'s trigger for operation `op` (`<name>_<op>`) and its quoted
/// `schema.table`.
fn trigger_and_table(t: &Target, op: &str) -> Result<(String, String)> {
    let trigger = quote_ident(&format!("{}_{}", t.name, op.to_ascii_lowercase()))?;
    let table = format!("{}.{}", quote_ident(&t.schema)?, quote_ident(&t.table)?);
    Ok((trigger, table))
}

/// Quotes an identifier like Postgres' `quote_ident` (always quoted, `"` doubled).
fn quote_ident(name: &str) -> Result<String> {
    if name.is_empty() || name.contains('\0') {
        return Err(Error::invalid_input(format!(
            "invalid SQL identifier {name:?}"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// The handler function, as upstream creates it. `{prefix}` is validated
/// (`[A-Za-z_][A-Za-z0-9_]*`), so it is safe inside the quoted names and the literal.
const HANDLER: &str = r#"
CREATE OR REPLACE FUNCTION "{prefix}trigger_handler"()
RETURNS TRIGGER AS $func$
DECLARE
    trigger_config RECORD;
    job_data JSONB;
BEGIN
    SELECT job_template INTO trigger_config
    FROM "{prefix}triggers"
    WHERE schema_name = TG_TABLE_SCHEMA
      AND table_name = TG_TABLE_NAME
      AND trigger_name = REPLACE(TG_NAME, '_' || lower(TG_OP), '')
      AND enabled = true
      AND operations::jsonb ? TG_OP;

    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    job_data := trigger_config.job_template::jsonb;
    job_data := jsonb_set(
        job_data,
        '{m,trigger}',
        jsonb_build_object(
            'operation', TG_OP,
            'table_name', TG_TABLE_NAME,
            'schema_name', TG_TABLE_SCHEMA,
            'trigger_name', TG_NAME,
            'timestamp', NOW()
        )
    );

    INSERT INTO "{prefix}jobs" (
        id, queue, func, kwargs, priority, max_attempts, scheduled_at, limits,
        unique_key, meta, state, created_at
    ) VALUES (
        gen_random_uuid(),
        job_data->>'q',
        job_data->>'f',
        COALESCE(job_data->'k', '{}'::jsonb),
        COALESCE((job_data->>'p')::integer, 0),
        COALESCE((job_data->>'a')::integer, 1),
        COALESCE(to_timestamp((job_data->>'s')::double precision), NOW()),
        COALESCE(job_data->'l', '[]'::jsonb),
        job_data->>'u',
        COALESCE(job_data->'m', '{}'::jsonb),
        'pending',
        NOW()
    )
    ON CONFLICT (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed')
    DO NOTHING;

    PERFORM pg_notify(
        '{prefix}events',
        json_build_object('t', 'queue.pushed', 'q', job_data->>'q')::text
    );

    RETURN NULL;
END;
$func$ LANGUAGE plpgsql;
"#;

const INSERT: &str = r#"
INSERT INTO "{prefix}triggers"
    (id, table_name, schema_name, trigger_name, operations, job_template, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7)"#;

const SELECT_ONE: &str = r#"
SELECT schema_name, table_name, trigger_name, operations, enabled
FROM "{prefix}triggers" WHERE id = $1"#;

const DELETE: &str = r#"DELETE FROM "{prefix}triggers" WHERE id = $1"#;

const SET_ENABLED: &str = r#"UPDATE "{prefix}triggers" SET enabled = $1 WHERE id = $2"#;

const SELECT: &str = r#"
SELECT id, table_name, schema_name, trigger_name, operations, job_template, enabled, created_at
FROM "{prefix}triggers"
WHERE ($1::uuid[] IS NULL OR id = ANY($1))
ORDER BY created_at DESC"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_validated_case_insensitively() {
        assert_eq!(
            validate_operations(&["insert", "Update"]).unwrap(),
            ["INSERT", "UPDATE"]
        );
        assert!(validate_operations(&[]).unwrap_err().is_invalid_input());
        let err = validate_operations(&["TRUNCATE"]).unwrap_err();
        assert!(
            err.to_string().contains("Invalid operation: TRUNCATE"),
            "{err}"
        );
        assert!(validate_operations(&["INSERT; DROP TABLE x"]).is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("users").unwrap(), r#""users""#);
        assert_eq!(quote_ident(r#"we"ird"#).unwrap(), r#""we""ird""#);
        assert!(quote_ident("").is_err());
    }
}
