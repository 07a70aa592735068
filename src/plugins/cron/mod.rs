//! Cron: jobs pushed on cron-like schedules kept in `<prefix>cron` (Python's `chancy.cron`).
//!
//! Every worker with the plugin polls the table; row locks (`FOR UPDATE SKIP LOCKED`) make
//! each due schedule fire on exactly one of them, and the job's `unique_key` keeps a
//! schedule from piling up copies while one is still waiting or running. Schedules written
//! by Python Chancy 0.26.0 run here and the other way round (same table, same packed job
//! format, same time-zone column).
//!
//! The table's migrations ([`CRON_MIGRATIONS`], key `cron`) are part of every build, so
//! `chancy migrate --plugin cron` works without the `cron` feature.

#[cfg(feature = "cron")]
mod next_run;
#[cfg(feature = "cron")]
mod plugin;

use crate::migrate::{embed_migrations, Migrations};

#[cfg(feature = "cron")]
pub use plugin::*;

/// The cron plugin's table (key `cron`, versions 1..=3 as in Python Chancy 0.26.0).
pub const CRON_MIGRATIONS: Migrations = Migrations::new(
    "cron",
    embed_migrations!("cron": "001_initial", "002_jsonb", "003_timezone"),
);
