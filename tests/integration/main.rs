//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod bad_input;
mod budget;
mod common;
mod errors;
mod identity;
mod migrations;
mod plugins;
mod plugins_sched;
mod process;
mod producer;
mod queue_bounds;
mod security;
mod state_rules;
#[path = "../support/mod.rs"]
mod support;
mod typed;
#[cfg(feature = "web")]
mod web;
mod worker;
