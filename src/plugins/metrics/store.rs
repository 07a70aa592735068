//! The SQL of the metrics plugin: flushing chunks, table sizes and cleanup, in upstream's
//! statement shapes so concurrent Python and Rust writers lock in the same order.

use crate::unnamed::Unnamed;
use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use serde_json::json;

use crate::app::Chancy;
use crate::error::{Error, Result};

use super::buffer::{at, Bucket, BucketKey, ChunkKey};
use super::MetricType;

/// Chunks written per transaction, as upstream.
pub(crate) const BATCH_CHUNKS: usize = 250;
/// Expired chunk rows deleted per cleanup, as upstream.
const CLEANUP_CHUNKS: i64 = 10_000;
/// Orphaned definitions deleted per cleanup, as upstream.
const CLEANUP_DEFINITIONS: i64 = 1_000;
/// Core tables whose size the leader samples, besides every plugin's tables.
const CORE_TABLES: [&str; 5] = ["jobs", "queues", "workers", "leader", "queue_rate_limits"];

const INSERT_DEFINITIONS: &str = r#"
INSERT INTO "{prefix}metric_definitions" (key, metric_type, unit)
SELECT key, metric_type, unit
FROM jsonb_to_recordset($1::jsonb) AS input(key TEXT, metric_type TEXT, unit TEXT)
ORDER BY key
ON CONFLICT (key) DO NOTHING"#;

const READ_DEFINITIONS: &str = r#"
SELECT id, key, metric_type, unit
FROM "{prefix}metric_definitions"
WHERE key = ANY($1)
ORDER BY id
FOR KEY SHARE"#;

const UPSERT_CHUNK: &str = r#"
INSERT INTO "{prefix}metrics" (
    metric_id, resolution, chunk, session_id, worker_id, buckets,
    counts, totals, minimums, maximums, gauges, sampled_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (metric_id, resolution, chunk, session_id) DO UPDATE SET
    buckets = EXCLUDED.buckets,
    counts = EXCLUDED.counts,
    totals = EXCLUDED.totals,
    minimums = EXCLUDED.minimums,
    maximums = EXCLUDED.maximums,
    gauges = EXCLUDED.gauges,
    sampled_at = EXCLUDED.sampled_at"#;

const DELETE_ORPHANS: &str = r#"
DELETE FROM "{prefix}metric_definitions" d
WHERE id = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM "{prefix}metrics" m WHERE m.metric_id = d.id)"#;

const SELECT_ORPHANS: &str = r#"
SELECT d.id
FROM "{prefix}metric_definitions" d
WHERE NOT EXISTS (SELECT 1 FROM "{prefix}metrics" m WHERE m.metric_id = d.id)
ORDER BY d.id
LIMIT $1
FOR UPDATE SKIP LOCKED"#;

const TABLE_SIZES: &str = r#"
SELECT name,
       pg_total_relation_size(relation) AS total_size_bytes,
       pg_relation_size(relation) AS table_size_bytes,
       pg_indexes_size(relation) AS index_size_bytes
FROM unnest($1::text[], $2::text[]::regclass[]) AS t(name, relation)"#;

/// One chunk row's arrays, by type: counter → totals; gauge → gauges; histogram → counts,
/// totals, minimums, maximums; all → buckets and sampled_at.
struct Arrays {
    buckets: Vec<DateTime<Utc>>,
    counts: Option<Vec<i64>>,
    totals: Option<Vec<f64>>,
    minimums: Option<Vec<f64>>,
    maximums: Option<Vec<f64>>,
    gauges: Option<Vec<f64>>,
    sampled_at: Vec<DateTime<Utc>>,
}

impl Arrays {
    fn new(kind: MetricType, points: &[(BucketKey, Bucket)]) -> Arrays {
        let col = |f: fn(&Bucket) -> f64| points.iter().map(|(_, b)| f(b)).collect::<Vec<_>>();
        let hist = kind == MetricType::Histogram;
        Arrays {
            buckets: points.iter().map(|(k, _)| at(k.bucket)).collect(),
            counts: hist.then(|| points.iter().map(|(_, b)| b.count).collect()),
            totals: (kind != MetricType::Gauge).then(|| col(|b| b.total)),
            minimums: hist.then(|| col(|b| b.minimum)),
            maximums: hist.then(|| col(|b| b.maximum)),
            gauges: (kind == MetricType::Gauge).then(|| col(|b| b.value)),
            sampled_at: points.iter().map(|(_, b)| b.sampled_at).collect(),
        }
    }
}

/// Writes one batch of chunks in one transaction. Returns the keys dropped because the
/// stored definition has another type or unit (their data is not written, as upstream).
pub(crate) fn write_batch(
    chancy: &Chancy,
    batch: &[(ChunkKey, Vec<(BucketKey, Bucket)>)],
) -> Result<Vec<String>> {
    let mut definitions: std::collections::BTreeMap<&str, (MetricType, &str)> = Default::default();
    for (chunk, points) in batch {
        if let Some((_, b)) = points.first() {
            definitions.insert(chunk.key.as_str(), (b.kind, b.unit.as_str()));
        }
    }
    let records: Vec<_> = definitions
        .iter()
        .map(|(k, (t, u))| json!({"key": k, "metric_type": t.as_str(), "unit": u}))
        .collect();
    let keys: Vec<&str> = definitions.keys().copied().collect();
    let p = chancy.prefix();
    let db = |e| Error::database("flushing metrics", e);
    let mut conn = chancy.connection()?;
    let mut tx = conn.client.transaction().map_err(db)?;
    tx.execute_unnamed(p.render(INSERT_DEFINITIONS).as_str(), &[&json!(records)])
        .map_err(db)?;
    let stored = tx
        .query_unnamed(p.render(READ_DEFINITIONS).as_str(), &[&keys])
        .map_err(db)?;
    if stored.len() != definitions.len() {
        return Err(Error::unavailable(
            "the metric catalog changed during a flush; it will be retried",
        ));
    }
    let mut ids = std::collections::HashMap::new();
    let mut conflicts = Vec::new();
    for row in &stored {
        let key: String = row.get("key");
        let kind: String = row.get("metric_type");
        let unit: String = row.get("unit");
        match definitions.get(key.as_str()) {
            Some((t, u)) if t.as_str() == kind && *u == unit => {
                ids.insert(key, row.get::<_, i64>("id"));
            }
            _ => conflicts.push(key),
        }
    }
    let upsert = tx.prepare(&p.render(UPSERT_CHUNK)).map_err(db)?;
    for (chunk, points) in batch {
        let (Some(id), Some((_, first))) = (ids.get(&chunk.key), points.first()) else {
            continue;
        };
        let a = Arrays::new(first.kind, points);
        let resolution = chunk.seconds as i32;
        let start = at(chunk.chunk);
        let params: [&(dyn ToSql + Sync); 12] = [
            id,
            &resolution,
            &start,
            &chunk.session,
            &chunk.worker_id,
            &a.buckets,
            &a.counts,
            &a.totals,
            &a.minimums,
            &a.maximums,
            &a.gauges,
            &a.sampled_at,
        ];
        tx.execute(&upsert, &params).map_err(db)?;
    }
    // Closed before the commit, on the server connection that prepared it (behind
    // transaction pooling the next transaction may run on another one).
    drop(upsert);
    tx.commit().map_err(db)?;
    Ok(conflicts)
}

/// `(name, total, table, index)` sizes in bytes of the core tables and every plugin's.
pub(crate) fn table_sizes(chancy: &Chancy) -> Result<Vec<(String, i64, i64, i64)>> {
    let mut names: Vec<&str> = CORE_TABLES.to_vec();
    for plugin in chancy.plugins() {
        names.extend(plugin.tables());
    }
    names.sort_unstable();
    names.dedup();
    let relations: Vec<String> = names.iter().map(|n| chancy.prefix().table(n)).collect();
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query_unnamed(TABLE_SIZES, &[&names, &relations])
        .map_err(|e| Error::database("reading table sizes", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Deletes expired chunk rows (`cutoffs`: chunk start before which each resolution's rows
/// are expired) and orphaned definitions, in one transaction. Returns chunk rows deleted.
pub(crate) fn cleanup(chancy: &Chancy, cutoffs: &[(i32, i64)]) -> Result<u64> {
    let p = chancy.prefix();
    let mut conditions = Vec::new();
    let mut values: Vec<(i32, DateTime<Utc>)> = Vec::new();
    for (i, (resolution, chunk)) in cutoffs.iter().enumerate() {
        conditions.push(format!(
            "(resolution = ${} AND chunk < ${})",
            2 * i + 1,
            2 * i + 2
        ));
        values.push((*resolution, at(*chunk)));
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for (r, c) in &values {
        params.push(r);
        params.push(c);
    }
    let limit = CLEANUP_CHUNKS;
    params.push(&limit);
    let delete = format!(
        r#"WITH expired AS (
            SELECT ctid FROM "{prefix}metrics" WHERE {conditions}
            LIMIT ${n} FOR UPDATE SKIP LOCKED
        )
        DELETE FROM "{prefix}metrics" WHERE ctid IN (SELECT ctid FROM expired)"#,
        prefix = p.as_str(),
        conditions = conditions.join(" OR "),
        n = params.len(),
    );
    let db = |e| Error::database("cleaning up metrics", e);
    let mut conn = chancy.connection()?;
    let mut tx = conn.client.transaction().map_err(db)?;
    let removed = tx.execute_unnamed(delete.as_str(), &params).map_err(db)?;
    // Writers take FOR KEY SHARE on definitions before inserting chunk rows, so a locked
    // orphan re-checked here cannot be reused concurrently.
    let orphans: Vec<i64> = tx
        .query_unnamed(p.render(SELECT_ORPHANS).as_str(), &[&CLEANUP_DEFINITIONS])
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !orphans.is_empty() {
        tx.execute_unnamed(p.render(DELETE_ORPHANS).as_str(), &[&orphans])
            .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(removed)
}
