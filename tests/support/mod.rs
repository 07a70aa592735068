//! The shared test harness. Each test binary includes it with `mod support;` (binaries in a
//! folder: `#[path = "../support/mod.rs"] mod support;`).
//!
//! - [`db`]: which PostgreSQL the tests use, a client, a fresh prefix, dropping its tables.
//! - [`wait`]: the one bounded polling loop (for other processes), spans that must hold,
//!   child processes, a gate for job handlers.
//! - [`events`]: waiting on an in-process worker's hub events instead of sleeping.
//! - [`python`]: virtualenvs with Python Chancy 0.26.0 or other PyPI packages.
//! - [`bin`]: the `chancy` binary on a prefix (feature `cli`).
//! - [`browser`]: Node.js, Chromium and `chancy web` for the browser tests (feature `cli`).
//! - [`apt`]: Debian packages a test installs itself when it runs as root.

#![allow(dead_code)]

pub mod apt;
#[cfg(feature = "cli")]
pub mod bin;
#[cfg(feature = "cli")]
pub mod browser;
pub mod db;
pub mod events;
pub mod python;
pub mod wait;
