//! `chancy migrate` and `chancy check-migrations`.

use clap::Args;

use super::plugins;
use crate::error::{Error, Result};
use crate::migrate;
use crate::plugins::SHIPPED_MIGRATIONS;
use crate::Chancy;

/// Arguments of `chancy migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Target version (0 tears the schema down). Applies to the core key, or to --plugin.
    #[arg(long, short = 't')]
    pub to_version: Option<i32>,
    /// Migrate only this key (chancy, chancy_rs, cron, metrics, trigger, workflow) or the
    /// tables of this plugin (a `--plugins` name such as `cron`, or an identifier such as
    /// `chancy.cron`).
    #[arg(long, short = 'p', value_name = "KEY")]
    pub plugin: Option<String>,
}

pub(super) fn migrate(chancy: &Chancy, args: &MigrateArgs) -> Result<i32> {
    let mut keys = chancy.migration_keys();
    let changed = match (&args.plugin, args.to_version) {
        (Some(name), version) => {
            let key = resolve_key(name)?;
            // Show the key migrated here, even when it is not one of the default keys.
            if !keys.contains(&key) {
                keys.push(key);
            }
            chancy.migrate_key(key, version)?
        }
        (None, Some(version)) => chancy.migrate_to(version)?,
        (None, None) => chancy.migrate()?,
    };
    for status in chancy.migration_status(&keys)? {
        outln!(
            "{}: version {} of {}",
            status.key,
            status.current,
            status.latest
        );
    }
    outln!(
        "{}",
        if changed {
            "migrated"
        } else {
            "already up to date"
        }
    );
    Ok(0)
}

/// A migration key, or the key of a plugin given by name or identifier.
fn resolve_key(name: &str) -> Result<&'static str> {
    let lower = name.trim().to_lowercase();
    if let Some(set) = SHIPPED_MIGRATIONS.iter().find(|m| m.key() == lower) {
        return Ok(set.key());
    }
    match plugins::migration_key_of(&lower) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(Error::invalid_input(format!(
            "plugin {lower:?} has no tables of its own; plain `chancy migrate` creates what it \
             uses"
        ))),
        Err(_) => Err(Error::invalid_input(format!(
            "unknown migration key or plugin {lower:?}; migration keys are {}, plugins are {}",
            shipped_keys().join(", "),
            plugins::available()
        ))),
    }
}

/// Every key this build ships (`chancy`, `chancy_rs`, `metrics`, `workflow`, `cron`,
/// `trigger`).
fn shipped_keys() -> Vec<&'static str> {
    SHIPPED_MIGRATIONS.iter().map(|m| m.key()).collect()
}

pub(super) fn check(chancy: &Chancy) -> Result<i32> {
    let statuses = chancy.migration_status(&shipped_keys())?;
    let mut behind = false;
    for s in &statuses {
        let used = chancy.migration_keys().contains(&s.key.as_str());
        let mark = if s.is_up_to_date() { "✓" } else { "✗" };
        let note = if used {
            ""
        } else {
            " (not used by this configuration)"
        };
        outln!("{mark} {}: {} / {}{note}", s.key, s.current, s.latest);
        for (i, step) in s.steps.iter().enumerate() {
            let done = if (i as i32) < s.current { "✓" } else { "✗" };
            outln!(
                "  {done} {:03} {}",
                i + 1,
                step.split_once('_').map_or(*step, |(_, n)| n)
            );
        }
        behind |= used && migrate::is_required(&s.key) && !s.is_up_to_date();
    }
    Ok(i32::from(behind))
}
