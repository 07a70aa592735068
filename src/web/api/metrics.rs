//! `/api/v1/metrics` (categories) and `/api/v1/metrics/{prefix}` (series), read with the
//! Metrics plugin's own reader and default retention.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::{iso, Out};
use crate::plugins::{Metric, MetricType, MetricValue, Metrics, MetricsQuery, Resolution};
use crate::web::http::{Reply, Req};
use crate::Chancy;

fn reader() -> Result<Metrics, Reply> {
    Ok(Metrics::builder().build()?)
}

/// `GET /api/v1/metrics`: how many series each category (the key up to the first `:`)
/// has; `{}` when the metrics tables do not exist for this prefix.
pub(super) fn categories(chancy: &Chancy) -> Out {
    let keys = match reader()?.list_metrics(chancy) {
        Ok(k) => k,
        Err(e) if e.is_migrations_needed() => return Ok(Reply::json(json!({}))),
        Err(e) => return Err(e.into()),
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for key in keys {
        let category = key.split(':').next().unwrap_or_default().to_string();
        *counts.entry(category).or_default() += 1;
    }
    Ok(Reply::json(json!(counts)))
}

/// `GET /api/v1/metrics/{prefix}?resolution=&range=&start=&end=&limit=&worker_id=`.
pub(super) fn detail(req: &Req, chancy: &Chancy, prefix: &str) -> Out {
    let resolution = match req.param("resolution") {
        None => Resolution::FiveMinutes,
        Some(name) => Resolution::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                Reply::error(
                    400,
                    format!("resolution must be 1min, 5min, 1hour or 1day, got {name:?}"),
                )
            })?,
    };
    let metrics = reader()?;
    let range = match req.param("range") {
        None => None,
        Some(text) => Some(Duration::from_secs(text.trim().parse::<u64>().map_err(
            |_| Reply::error(400, format!("range must be whole seconds, got {text:?}")),
        )?)),
    };
    let limit = match req.param("limit") {
        None => None,
        Some(text) => Some(
            text.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Reply::error(
                        400,
                        format!("limit must be a positive integer, got {text:?}"),
                    )
                })?,
        ),
    };
    let query = MetricsQuery {
        prefix: Some(prefix.to_string()),
        worker_id: req.param("worker_id").map(str::to_string),
        resolution,
        range,
        start: timestamp(req, "start")?,
        end: timestamp(req, "end")?,
    };
    let series = metrics.get_metrics(chancy, &query)?;
    let (start, end) = metrics.window(&query)?;
    let at = |secs: i64| iso(&Utc.timestamp_opt(secs, 0).single().unwrap_or_default());
    let series: Map<String, Value> = series
        .iter()
        .map(|(key, metric)| (key.clone(), series_json(metric, limit)))
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
            Reply::error(
                400,
                format!(
                    "{name} must be an ISO 8601 time with a time zone \
                     (e.g. 2026-01-01T00:00:00+00:00), got {text:?}"
                ),
            )
        })
}

/// The series as JSON; with `limit`, only its newest `limit` buckets.
fn series_json(metric: &Metric, limit: Option<usize>) -> Value {
    let skip = limit.map_or(0, |n| metric.data.len().saturating_sub(n));
    let data: Vec<Value> = metric
        .data
        .iter()
        .skip(skip)
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
        MetricType::Histogram => "histogram",
    };
    json!({
        "type": metric.metric_type.as_str(),
        "unit": metric.unit,
        "aggregation": aggregation,
        "data": data,
        "sampled_at": metric.data.iter().map(|p| p.sampled_at).max().map(|t| iso(&t)),
        "summary": metric.total(),
    })
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
