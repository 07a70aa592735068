//! Your own `chancy` binary: the whole CLI (queues, jobs, `worker start`, `demo`, …) with your
//! handlers registered next to the built-in `chancy.builtin.*` ones.
//!
//! ```text
//! cargo run --example embed_cli -- migrate
//! cargo run --example embed_cli -- job push myapp.greet --kwargs '{"name": "Ada"}'
//! cargo run --example embed_cli -- worker start
//! ```

use chancy::{JobContext, JobError, Registry};
use serde_json::json;

fn greet(ctx: &JobContext) -> Result<(), JobError> {
    let name = ctx
        .job()
        .kwargs
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("world")
        .to_string();
    ctx.set_meta("greeting", json!(format!("hello, {name}")));
    Ok(())
}

fn main() {
    let registry = Registry::new().job("myapp.greet", greet);
    std::process::exit(chancy::cli::run(registry));
}
