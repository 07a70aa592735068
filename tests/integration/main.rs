//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod common;
mod migrations;
mod process;
mod producer;
mod worker;
