//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod common;
mod migrations;
mod plugins;
mod producer;
mod worker;
