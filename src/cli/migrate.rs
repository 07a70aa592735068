//! `chancy migrate` and `chancy check-migrations`.

use clap::Args;

use crate::error::{Error, Result};
use crate::migrate::{self, ALL_KEYS};
use crate::Chancy;

/// Arguments of `chancy migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Target version (0 tears the schema down). Applies to the core key, or to --plugin.
    #[arg(long, short = 't')]
    pub to_version: Option<i32>,
    /// Migrate only this key: chancy, cron, metrics, trigger or workflow.
    #[arg(long, short = 'p')]
    pub plugin: Option<String>,
}

pub(super) fn migrate(chancy: &Chancy, args: &MigrateArgs) -> Result<i32> {
    let changed = match (&args.plugin, args.to_version) {
        (Some(key), version) => {
            let key = key.to_lowercase();
            if !ALL_KEYS.contains(&key.as_str()) {
                return Err(Error::invalid_input(format!(
                    "unknown plugin {key:?}; migration keys are {}",
                    ALL_KEYS.join(", ")
                )));
            }
            chancy.migrate_key(&key, version)?
        }
        (None, Some(version)) => chancy.migrate_to(version)?,
        (None, None) => chancy.migrate()?,
    };
    for status in chancy.migration_status(&chancy.migration_keys())? {
        println!(
            "{}: version {} of {}",
            status.key, status.current, status.latest
        );
    }
    println!(
        "{}",
        if changed {
            "migrated"
        } else {
            "already up to date"
        }
    );
    Ok(0)
}

pub(super) fn check(chancy: &Chancy) -> Result<i32> {
    let statuses = chancy.migration_status(&ALL_KEYS)?;
    let mut behind = false;
    for s in &statuses {
        let used = chancy.migration_keys().contains(&s.key.as_str());
        let mark = if s.is_up_to_date() { "✓" } else { "✗" };
        let note = if used {
            ""
        } else {
            " (not used by this configuration)"
        };
        println!("{mark} {}: {} / {}{note}", s.key, s.current, s.latest);
        for (i, step) in s.steps.iter().enumerate() {
            let done = if (i as i32) < s.current { "✓" } else { "✗" };
            println!(
                "  {done} {:03} {}",
                i + 1,
                step.split_once('_').map_or(*step, |(_, n)| n)
            );
        }
        behind |= used && migrate::is_required(&s.key) && !s.is_up_to_date();
    }
    Ok(i32::from(behind))
}
