//! `/api/v1/workers`.

use serde_json::{json, Value};

use super::{iso, Out};
use crate::web::http::Reply;
use crate::{Chancy, WorkerInfo};

/// `GET /api/v1/workers`: live workers with `is_leader`.
pub(super) fn list(chancy: &Chancy) -> Out {
    let workers = chancy.get_all_workers()?;
    Ok(Reply::json(Value::Array(
        workers.iter().map(worker_json).collect(),
    )))
}

fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "worker_id": w.worker_id,
        "tags": w.tags,
        "queues": w.queues,
        "last_seen": iso(&w.last_seen),
        "expires_at": iso(&w.expires_at),
        "is_leader": w.is_leader,
    })
}
