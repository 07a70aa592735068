//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod common;
mod migrations;
mod plugins;
mod process;
mod producer;
mod worker;
