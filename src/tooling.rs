//! Tool-only entry points, apart from the main API on purpose.
//!
//! A running [`Worker`](crate::Worker) claims, runs, writes and announces by itself.
//! Benchmarks, test harnesses and operational tools sometimes need one step at a time:
//! claim exactly N jobs on a given connection, write a batch of outcomes, put a hand-made
//! outcome on the writer's queue, write the heartbeat row. Those steps are the methods of
//! [`WorkerTooling`], which you import on purpose.
//!
//! **This module is not covered by the crate's semver promise.** Its items expose the
//! worker's internals (claim fencing, the writer's queue, the heartbeat row) and change with
//! them in any release. Upstream Chancy has them on its `Worker` (`fetch_jobs`,
//! `queue_update`, `announce_worker`, `outgoing`); they are here so that the main API can
//! stay stable.

pub use crate::worker::{Outgoing, WorkerTooling};
