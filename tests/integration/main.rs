//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod bad_input;
mod common;
mod errors;
mod migrations;
mod plugins;
mod plugins_sched;
mod process;
mod producer;
mod security;
mod typed;
#[cfg(feature = "web")]
mod web;
mod worker;
