//! Reading saved metrics back, combining every session and worker per bucket, as
//! upstream's `get_metrics` / `list_metrics` do.

use crate::unnamed::Unnamed;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::types::ToSql;

use crate::app::Chancy;
use crate::error::{Error, Result};

use super::buffer::{at, bucket_start, chunk_start};
use super::{MetricType, Resolution};

/// Most keys one query may match, as upstream.
const MAX_KEYS: usize = 100;
/// Most buckets one query may span, as upstream.
const MAX_BUCKETS: i64 = 1000;

const DEFINITIONS: &str = r#"
SELECT id, key, metric_type, unit FROM "{prefix}metric_definitions"
WHERE ($1::text IS NULL OR key = $1 OR key LIKE $2)
ORDER BY key LIMIT 101"#;

const POINTS: &str = r#"
SELECT d.key, p.bucket,
       sum(p.count)::bigint AS count,
       sum(p.total) AS total,
       min(p.minimum) AS minimum,
       max(p.maximum) AS maximum,
       (array_agg(p.value ORDER BY p.sampled_at DESC, m.session_id DESC)
           FILTER (WHERE d.metric_type = 'gauge'))[1] AS value,
       max(p.sampled_at) AS sampled_at
FROM "{prefix}metrics" m
JOIN "{prefix}metric_definitions" d ON d.id = m.metric_id
CROSS JOIN LATERAL unnest(m.buckets, m.counts, m.totals, m.minimums, m.maximums,
                          m.gauges, m.sampled_at)
    AS p(bucket, count, total, minimum, maximum, value, sampled_at)
WHERE m.metric_id = ANY($1) AND m.resolution = $2
  AND m.chunk >= $3 AND m.chunk < $5
  AND p.bucket >= $4 AND p.bucket < $5
  AND ($6::text IS NULL OR m.worker_id = $6)
GROUP BY d.id, d.key, p.bucket
ORDER BY d.key, p.bucket"#;

/// What [`Metrics::get_metrics`](super::Metrics::get_metrics) reads. The window ends at
/// `end` (default: the end of the current bucket) and starts at `start` or spans `range`
/// before the end (default: a day or the retention, whichever is shorter).
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    /// A key or prefix: `queue:default` matches that key and its `:`-separated descendants.
    pub prefix: Option<String>,
    /// Only this worker's observations.
    pub worker_id: Option<String>,
    /// Bucket width (default 5 minutes).
    pub resolution: Resolution,
    /// Length of the window; a multiple of the resolution within retention. Not together
    /// with `start`.
    pub range: Option<Duration>,
    /// First bucket of the window (aligned to the resolution).
    pub start: Option<DateTime<Utc>>,
    /// End of the window, exclusive (aligned to the resolution).
    pub end: Option<DateTime<Utc>>,
}

impl Default for MetricsQuery {
    fn default() -> Self {
        MetricsQuery {
            prefix: None,
            worker_id: None,
            resolution: Resolution::FiveMinutes,
            range: None,
            start: None,
            end: None,
        }
    }
}

/// The combined value of one bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A counter's total or a gauge's latest value.
    Number(f64),
    /// A histogram's statistics.
    Summary {
        /// Observations.
        count: i64,
        /// Their sum.
        sum: f64,
        /// Smallest.
        min: f64,
        /// Largest.
        max: f64,
    },
}

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricPoint {
    /// Start of the bucket.
    pub timestamp: DateTime<Utc>,
    /// The combined value.
    pub value: MetricValue,
    /// The latest observation in the bucket.
    pub sampled_at: DateTime<Utc>,
}

/// A series in the requested window.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Metric {
    /// Its type.
    pub metric_type: MetricType,
    /// Its unit.
    pub unit: String,
    /// Buckets with observations, oldest first (empty buckets are omitted).
    pub data: Vec<MetricPoint>,
}

impl Metric {
    /// The sum of a counter's buckets, or the latest value of a gauge; `None` without
    /// data or for histograms.
    pub fn total(&self) -> Option<f64> {
        match self.metric_type {
            MetricType::Counter => Some(self.data.iter().filter_map(number).sum()),
            MetricType::Gauge => self
                .data
                .iter()
                .max_by_key(|p| p.sampled_at)
                .and_then(number),
            MetricType::Histogram => None,
        }
        .filter(|_| !self.data.is_empty())
    }
}

fn number(p: &MetricPoint) -> Option<f64> {
    match p.value {
        MetricValue::Number(n) => Some(n),
        MetricValue::Summary { .. } => None,
    }
}

fn like_children(prefix: &str) -> String {
    let escaped = prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}:%")
}

/// `(start, end)` in Unix seconds for `query`.
/// `now` is the database clock in Unix seconds.
pub(crate) fn window(query: &MetricsQuery, retention: i64, now: i64) -> Result<(i64, i64)> {
    let seconds = query.resolution.seconds();
    let aligned = |t: &DateTime<Utc>, what: &str| {
        let secs = t.timestamp();
        if secs.rem_euclid(seconds) != 0 || t.timestamp_subsec_nanos() != 0 {
            return Err(Error::invalid_input(format!(
                "{what} must be aligned to the {} resolution",
                query.resolution.name()
            )));
        }
        Ok(secs)
    };
    let end = match &query.end {
        Some(t) => aligned(t, "end")?,
        None => bucket_start(now, seconds) + seconds,
    };
    if let Some(t) = &query.start {
        if query.range.is_some() {
            return Err(Error::invalid_input("give either range or start, not both"));
        }
        let start = aligned(t, "start")?;
        if start >= end {
            return Err(Error::invalid_input("start must be before end"));
        }
        if (end - start) / seconds > MAX_BUCKETS {
            return Err(Error::invalid_input("the window exceeds 1000 buckets"));
        }
        return Ok((start, end));
    }
    let span = match query.range {
        Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        None => retention.min(86_400),
    };
    if span < seconds || span > retention || span % seconds != 0 {
        return Err(Error::invalid_input(
            "range must be a multiple of the resolution within retention",
        ));
    }
    if span / seconds > MAX_BUCKETS {
        return Err(Error::invalid_input("the window exceeds 1000 buckets"));
    }
    Ok((end - span, end))
}

pub(crate) fn get_metrics(
    chancy: &Chancy,
    query: &MetricsQuery,
    retention: i64,
    now: i64,
) -> Result<BTreeMap<String, Metric>> {
    let (start, end) = window(query, retention, now)?;
    let seconds = query.resolution.seconds();
    let p = chancy.prefix();
    let db = |e| Error::database("reading metrics", e);
    let mut conn = chancy.connection()?;
    let children = query.prefix.as_deref().map(like_children);
    let defs = conn
        .client
        .query_unnamed(p.render(DEFINITIONS).as_str(), &[&query.prefix, &children])
        .map_err(db)?;
    if defs.len() > MAX_KEYS {
        return Err(Error::invalid_input(
            "the prefix matches more than 100 series; choose a narrower prefix",
        ));
    }
    let mut out = BTreeMap::new();
    let mut ids = Vec::new();
    for row in &defs {
        let kind: String = row.get("metric_type");
        let Some(metric_type) = MetricType::parse(&kind) else {
            continue;
        };
        ids.push(row.get::<_, i64>("id"));
        let metric = Metric {
            metric_type,
            unit: row.get("unit"),
            data: Vec::new(),
        };
        out.insert(row.get::<_, String>("key"), metric);
    }
    if ids.is_empty() {
        return Ok(out);
    }
    let cutoff = bucket_start(now, seconds) + seconds - retention;
    let from = start.max(cutoff);
    let params: [&(dyn ToSql + Sync); 6] = [
        &ids,
        &(seconds as i32),
        &at(chunk_start(from, seconds)),
        &at(from),
        &at(end),
        &query.worker_id,
    ];
    for row in conn
        .client
        .query_unnamed(p.render(POINTS).as_str(), &params)
        .map_err(db)?
    {
        let key: String = row.get("key");
        let Some(metric) = out.get_mut(&key) else {
            continue;
        };
        let value = match metric.metric_type {
            MetricType::Counter => {
                MetricValue::Number(row.get::<_, Option<f64>>("total").unwrap_or(0.0))
            }
            MetricType::Gauge => {
                MetricValue::Number(row.get::<_, Option<f64>>("value").unwrap_or(0.0))
            }
            MetricType::Histogram => MetricValue::Summary {
                count: row.get::<_, Option<i64>>("count").unwrap_or(0),
                sum: row.get::<_, Option<f64>>("total").unwrap_or(0.0),
                min: row.get::<_, Option<f64>>("minimum").unwrap_or(0.0),
                max: row.get::<_, Option<f64>>("maximum").unwrap_or(0.0),
            },
        };
        metric.data.push(MetricPoint {
            timestamp: row.get("bucket"),
            value,
            sampled_at: row.get("sampled_at"),
        });
    }
    Ok(out)
}

pub(crate) fn list_metrics(chancy: &Chancy) -> Result<Vec<String>> {
    let sql = chancy
        .prefix()
        .render(r#"SELECT key FROM "{prefix}metric_definitions" ORDER BY key"#);
    let mut conn = chancy.connection()?;
    let rows = conn
        .client
        .query_unnamed(sql.as_str(), &[])
        .map_err(|e| Error::database("listing metrics", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
