//! Integration tests against a real PostgreSQL (`$DATABASE_URL`).

mod common;
mod migrations;
mod plugins_sched;
mod producer;
mod worker;
