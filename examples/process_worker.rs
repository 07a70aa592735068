//! A program that embeds a worker with process-executor queues: `main` first lets the
//! process act as an executor child, then runs a worker with the same handlers.
//!
//! The integration tests also use this binary as the child of their process-executor queues
//! (its handlers include a few deliberately misbehaving ones).
//!
//! ```sh
//! cargo run --example process_worker -- postgresql://postgres@localhost/postgres
//! ```
//!
//! `CHANCY_PREFIX` (default `chancy_`) picks the tables; the tests use their own.

use std::time::{Duration, Instant};

use chancy::{Chancy, JobError, Registry, Worker};
use serde_json::json;

fn registry() -> Registry {
    Registry::new()
        .job("example.noop", |_| Ok(()))
        .job("example.pid", |ctx| {
            ctx.set_meta("pid", json!(std::process::id()));
            Ok(())
        })
        .job("example.busy", |_| {
            let until = Instant::now() + Duration::from_secs(3600);
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_add(1);
            }
            Err(JobError::new(format!("never finished ({x})")))
        })
        .job("example.sleep", |ctx| {
            let secs = ctx
                .job()
                .kwargs
                .get("seconds")
                .and_then(|v| v.as_f64())
                .unwrap_or(1.0);
            std::thread::sleep(Duration::from_secs_f64(secs));
            Ok(())
        })
        .job("example.allocate", |ctx| {
            let bytes = ctx
                .job()
                .kwargs
                .get("bytes")
                .and_then(|v| v.as_u64())
                .unwrap_or(1 << 30);
            let block = vec![1u8; bytes as usize];
            ctx.set_meta(
                "allocated",
                json!(block.iter().map(|b| *b as u64).sum::<u64>()),
            );
            Ok(())
        })
        .job("example.abort", |_| std::process::abort())
}

fn main() -> chancy::Result<()> {
    let registry = registry();
    chancy::run_child_if_requested(&registry);
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| chancy::DEFAULT_DATABASE_URL.to_string());
    let prefix = std::env::var("CHANCY_PREFIX").unwrap_or_else(|_| "chancy_".into());
    let chancy = Chancy::builder(url).prefix(prefix).build()?;
    chancy.migrate()?;
    let worker = Worker::builder(&chancy)
        .registry(registry)
        .register_signal_handlers(true)
        .panic_hook(true)
        .build()?;
    worker.start()?;
    worker.wait_for_shutdown();
    Ok(())
}
