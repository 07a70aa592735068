//! `/api/v1/metrics` (categories) and `/api/v1/metrics/{prefix}` (series), read with the
//! Metrics plugin's own reader and default retention.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::{error, iso, Out, INVALID};
use crate::plugins::{Metric, MetricType, MetricValue, Metrics, MetricsQuery, Resolution};
use crate::web::http::{Reply, Req};
use crate::Chancy;

fn reader() -> Result<Metrics, Reply> {
    Ok(Metrics::builder().build()?)
}

/// `GET /api/v1/metrics`: upstream's overview, `{"categories": {category: [names]},
/// "count": keys}` where a key `category:name[:more]` contributes `name` (sorted, each
/// once) to its category; no categories when the metrics tables do not exist.
pub(super) fn categories(chancy: &Chancy) -> Out {
    let keys = match reader()?.list_metrics(chancy) {
        Ok(k) => k,
        Err(e) if e.is_migrations_needed() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut categories: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for key in &keys {
        let (category, rest) = key.split_once(':').unwrap_or((key.as_str(), ""));
        let name = rest.split(':').next().unwrap_or_default();
        categories
            .entry(category.to_string())
            .or_default()
            .insert(name.to_string());
    }
    Ok(Reply::json(json!({
        "categories": categories,
        "count": keys.len(),
    })))
}

/// `GET /api/v1/metrics/{prefix}?resolution=&range=&start=&end=&limit=&worker_id=`.
pub(super) fn detail(req: &Req, chancy: &Chancy, prefix: &str) -> Out {
    let resolution = match req.param("resolution") {
        None => Resolution::FiveMinutes,
        Some(name) => Resolution::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                error(
                    INVALID,
                    format!("resolution must be 1min, 5min, 1hour or 1day, got {name:?}"),
                )
            })?,
    };
    let metrics = reader()?;
    let range = match req.param("range") {
        None => None,
        Some(text) => Some(Duration::from_secs(text.trim().parse::<u64>().map_err(
            |_| {
                error(
                    INVALID,
                    format!("range must be whole seconds, got {text:?}"),
                )
            },
        )?)),
    };
    let start = timestamp(req, "start")?;
    // Upstream's `limit`: the window as a number of buckets, instead of start or range.
    let range = match req.param("limit") {
        None => range,
        Some(_) if start.is_some() || range.is_some() => {
            return Err(error(
                INVALID,
                "limit cannot be combined with start or range",
            ))
        }
        Some(text) => {
            let buckets = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    error(
                        INVALID,
                        format!("limit must be a number of buckets from 1 to 1000, got {text:?}"),
                    )
                })?;
            Some(Duration::from_secs(buckets * resolution.seconds() as u64))
        }
    };
    let query = MetricsQuery {
        prefix: Some(prefix.to_string()),
        worker_id: req.param("worker_id").map(str::to_string),
        resolution,
        range,
        start,
        end: timestamp(req, "end")?,
    };
    let series = metrics.get_metrics(chancy, &query)?;
    let (start, end) = metrics.window(&query)?;
    let at = |secs: i64| iso(&Utc.timestamp_opt(secs, 0).single().unwrap_or_default());
    let series: Map<String, Value> = series
        .iter()
        .map(|(key, metric)| (key.clone(), series_json(metric)))
        .collect();
    Ok(Reply::json(json!({
        "start": at(start),
        "end": at(end),
        "resolution": resolution.name(),
        "generated_at": iso(&Utc::now()),
        "series": series,
    })))
}

/// An ISO 8601 parameter with a time zone (`Z` or an offset), as upstream requires.
fn timestamp(req: &Req, name: &str) -> Result<Option<DateTime<Utc>>, Reply> {
    let Some(text) = req.param(name) else {
        return Ok(None);
    };
    // An unencoded `+` in a query string arrives as a space: take it back.
    let text = text.trim().replace(' ', "+");
    DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            error(
                INVALID,
                format!(
                    "{name} must be an ISO 8601 time with a time zone \
                     (e.g. 2026-01-01T00:00:00+00:00), got {text:?}"
                ),
            )
        })
}

/// One series as upstream sends it: `type`, `unit`, `data` (`timestamp`, `sampled_at`,
/// `value`), `aggregation` (`sum` for counters, `last` for gauges, `summary` for
/// histograms), `sampled_at` of the newest observation and `summary`: the counter total,
/// the newest gauge value, or for a histogram `{count, sum, min, max, avg}` over the window
/// (`null` without observations).
fn series_json(metric: &Metric) -> Value {
    let data: Vec<Value> = metric
        .data
        .iter()
        .map(|p| {
            json!({
                "timestamp": iso(&p.timestamp),
                "value": value_json(&p.value),
                "sampled_at": iso(&p.sampled_at),
            })
        })
        .collect();
    let aggregation = match metric.metric_type {
        MetricType::Counter => "sum",
        MetricType::Gauge => "last",
        MetricType::Histogram => "summary",
    };
    let summary = match metric.metric_type {
        MetricType::Histogram => histogram_summary(metric),
        _ => metric.total().map_or(Value::Null, |n| json!(n)),
    };
    json!({
        "type": metric.metric_type.as_str(),
        "unit": metric.unit,
        "aggregation": aggregation,
        "data": data,
        "sampled_at": metric.data.iter().map(|p| p.sampled_at).max().map(|t| iso(&t)),
        "summary": summary,
    })
}

/// The histogram buckets of `metric` merged: `{count, sum, min, max, avg}`, or `null` when
/// no bucket observed anything.
fn histogram_summary(metric: &Metric) -> Value {
    let mut total: Option<(u64, f64, f64, f64)> = None;
    for point in &metric.data {
        if let MetricValue::Summary {
            count,
            sum,
            min,
            max,
        } = point.value
        {
            if count <= 0 {
                continue;
            }
            let count = count as u64;
            total = Some(match total {
                None => (count, sum, min, max),
                Some((c, s, lo, hi)) => (c + count, s + sum, lo.min(min), hi.max(max)),
            });
        }
    }
    match total {
        None => Value::Null,
        Some((count, sum, min, max)) => value_json(&MetricValue::Summary {
            count: count as _,
            sum,
            min,
            max,
        }),
    }
}

fn value_json(value: &MetricValue) -> Value {
    match value {
        MetricValue::Number(n) => json!(n),
        MetricValue::Summary {
            count,
            sum,
            min,
            max,
        } => json!({
            "count": count,
            "sum": sum,
            "min": min,
            "max": max,
            "avg": if *count > 0 { sum / *count as f64 } else { 0.0 },
        }),
    }
}
