//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod common;
mod migrations;
mod plugins;
mod plugins_sched;
mod process;
mod producer;
mod web;
mod worker;
