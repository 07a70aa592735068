//! Metrics: the 0.26.0 storage layout, merging flushes, job metrics from a worker, table
//! sizes on the leader, cleanup.

use std::time::Duration;

use chancy::plugins::{MetricType, MetricValue, Metrics, MetricsQuery, Pruner, Resolution};
use chancy::{ImmediateLeadership, Job, Plugin, Queue};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{fast_worker, wait_for, WAIT};
use crate::common::TestApp;
use crate::support::wait::{eventually, holds_for};

fn app_with(metrics: &Metrics) -> TestApp {
    let m = metrics.clone();
    TestApp::with(|b| b.no_default_plugins().plugin(m))
}

/// Waits until the next few seconds stay within one minute, so every observation of a
/// test lands in the same 1-minute bucket.
fn avoid_minute_boundary() {
    eventually(
        Duration::from_secs(10),
        "the first 55 s of a minute",
        || Utc::now().timestamp() % 60 <= 55,
    );
}

/// The observations a histogram holds over all its points (each summary's `count`; every
/// minimum is a non-negative duration).
fn observations(hist: &chancy::plugins::Metric) -> i64 {
    hist.data
        .iter()
        .map(|p| match p.value {
            MetricValue::Summary { count, min, .. } => {
                assert!(min >= 0.0);
                count
            }
            MetricValue::Number(_) => panic!("a histogram has summaries"),
        })
        .sum()
}

/// A chunk row of the metrics table.
#[derive(Debug)]
struct Row {
    resolution: i32,
    chunk: DateTime<Utc>,
    session_id: Uuid,
    worker_id: String,
    buckets: Vec<DateTime<Utc>>,
    counts: Option<Vec<i64>>,
    totals: Option<Vec<f64>>,
    minimums: Option<Vec<f64>>,
    maximums: Option<Vec<f64>>,
    gauges: Option<Vec<f64>>,
    sampled_at: Vec<DateTime<Utc>>,
}

fn rows(app: &TestApp, key: &str) -> Vec<Row> {
    let sql = format!(
        "SELECT m.* FROM {} m JOIN {} d ON d.id = m.metric_id WHERE d.key = $1 \
         ORDER BY m.resolution, m.chunk",
        app.table("metrics"),
        app.table("metric_definitions")
    );
    app.client()
        .query(sql.as_str(), &[&key])
        .unwrap()
        .iter()
        .map(|r| Row {
            resolution: r.get("resolution"),
            chunk: r.get("chunk"),
            session_id: r.get("session_id"),
            worker_id: r.get("worker_id"),
            buckets: r.get("buckets"),
            counts: r.get("counts"),
            totals: r.get("totals"),
            minimums: r.get("minimums"),
            maximums: r.get("maximums"),
            gauges: r.get("gauges"),
            sampled_at: r.get("sampled_at"),
        })
        .collect()
}

fn definitions(app: &TestApp) -> Vec<(i64, String, String, String)> {
    let sql = format!(
        "SELECT id, key, metric_type, unit FROM {} ORDER BY key",
        app.table("metric_definitions")
    );
    app.client()
        .query(sql.as_str(), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn count_rows(app: &TestApp) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", app.table("metrics"));
    app.client().query_one(sql.as_str(), &[]).unwrap().get(0)
}

fn one_minute_row(app: &TestApp, key: &str) -> Row {
    let mut all = rows(app, key);
    assert_eq!(all.len(), 4, "one chunk row per resolution for {key}");
    all.remove(0)
}

#[test]
fn settings_must_be_positive() {
    assert!(Metrics::builder().build().is_ok());
    let err = Metrics::builder()
        .sync_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.is_config() && err.to_string().contains("sync_interval"));
    let err = Metrics::builder()
        .max_points_per_resolution(Resolution::OneHour, 0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("max_points_per_resolution"));
    assert!(Metrics::builder()
        .maximum_metric_age(Duration::from_millis(500))
        .build()
        .is_err());
    assert!(Metrics::builder().max_buffered_points(0).build().is_err());
    let m = Metrics::builder()
        .maximum_metric_age(Duration::from_secs(7200))
        .build()
        .unwrap();
    assert_eq!(
        m.retention(Resolution::OneMinute),
        Duration::from_secs(3600)
    );
    assert_eq!(m.retention(Resolution::OneDay), Duration::from_secs(7200));
    assert_eq!(m.identifier(), "chancy.metrics");
    assert_eq!(m.migrations().map(|s| s.key()), Some("metrics"));
    assert_eq!(m.tables(), vec!["metrics", "metric_definitions"]);
}

#[test]
fn flush_writes_definitions_and_chunk_arrays_per_type() {
    let metrics = Metrics::default();
    let app = app_with(&metrics);
    avoid_minute_boundary();
    assert!(metrics.increment_counter("c", 1.0, "count"));
    assert!(metrics.increment_counter("c", 2.0, "count"));
    assert!(metrics.record_gauge("g", 3.0, "bytes"));
    assert!(metrics.record_gauge("g", 5.0, "bytes"));
    assert!(metrics.record_histogram_value("h", 1.5, "seconds"));
    assert!(metrics.record_histogram_value("h", 0.5, "seconds"));
    assert!(!metrics.record_gauge("c", 1.0, "count"), "type conflict");
    assert!(!metrics.increment_counter("", 1.0, "count"), "empty key");
    assert!(!metrics.increment_counter("x", f64::INFINITY, "count"));
    assert_eq!(count_rows(&app), 0, "nothing is written before a flush");
    metrics.flush(&app.chancy).unwrap();

    let defs: Vec<_> = definitions(&app)
        .into_iter()
        .map(|(_, k, t, u)| (k, t, u))
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        defs,
        vec![
            s("c", "counter", "count"),
            s("g", "gauge", "bytes"),
            s("h", "histogram", "seconds")
        ]
    );
    assert_eq!(count_rows(&app), 12);

    let c = one_minute_row(&app, "c");
    assert_eq!(c.resolution, 60);
    assert_eq!(c.buckets.len(), 1);
    let bucket = c.buckets[0].timestamp();
    assert_eq!(bucket % 60, 0, "bucket starts on the minute");
    assert_eq!(c.chunk.timestamp(), bucket - bucket.rem_euclid(720));
    assert_eq!(c.totals, Some(vec![3.0]));
    assert_eq!(
        (c.counts, c.minimums, c.maximums, c.gauges),
        (None, None, None, None)
    );
    assert_eq!(c.sampled_at.len(), 1);
    assert!(c.sampled_at[0] >= c.buckets[0]);
    assert_eq!(c.worker_id, "", "recorded outside a worker");

    let g = one_minute_row(&app, "g");
    assert_eq!(g.gauges, Some(vec![5.0]), "the last value");
    assert_eq!(
        (g.counts, g.totals, g.minimums, g.maximums),
        (None, None, None, None)
    );

    let h = one_minute_row(&app, "h");
    assert_eq!(h.counts, Some(vec![2]));
    assert_eq!(h.totals, Some(vec![2.0]));
    assert_eq!(h.minimums, Some(vec![0.5]));
    assert_eq!(h.maximums, Some(vec![1.5]));
    assert_eq!(h.gauges, None);

    for row in rows(&app, "h") {
        let width = i64::from(row.resolution);
        assert!([60, 300, 3600, 86_400].contains(&width));
        assert_eq!(
            row.chunk.timestamp() % (12 * width),
            0,
            "chunks of 12 buckets"
        );
        assert_eq!(row.buckets[0].timestamp() % width, 0);
        assert_eq!(row.counts, Some(vec![2]), "every resolution accumulates");
    }
}

#[test]
fn a_second_flush_merges_into_the_same_chunk_row() {
    let metrics = Metrics::default();
    let app = app_with(&metrics);
    avoid_minute_boundary();
    metrics.increment_counter("merged", 1.0, "count");
    metrics.record_histogram_value("hist", 4.0, "number");
    metrics.flush(&app.chancy).unwrap();
    let first = one_minute_row(&app, "merged");
    let ids = definitions(&app);
    metrics.increment_counter("merged", 2.0, "count");
    metrics.record_histogram_value("hist", 1.0, "number");
    metrics.flush(&app.chancy).unwrap();
    assert_eq!(count_rows(&app), 8, "no new rows");
    assert_eq!(definitions(&app), ids, "definitions are reused");
    let second = one_minute_row(&app, "merged");
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.chunk, first.chunk);
    assert_eq!(second.totals, Some(vec![3.0]));
    assert!(second.sampled_at[0] > first.sampled_at[0]);
    let h = one_minute_row(&app, "hist");
    assert_eq!(
        (h.counts, h.minimums, h.maximums),
        (Some(vec![2]), Some(vec![1.0]), Some(vec![4.0]))
    );
    // Nothing dirty: a flush changes nothing.
    metrics.flush(&app.chancy).unwrap();
    assert_eq!(one_minute_row(&app, "merged").sampled_at, second.sampled_at);
}

#[test]
fn a_stored_definition_with_another_unit_wins() {
    let metrics = Metrics::default();
    let app = app_with(&metrics);
    let sql = format!(
        "INSERT INTO {} (key, metric_type, unit) VALUES ('taken', 'counter', 'bytes')",
        app.table("metric_definitions")
    );
    app.client().execute(sql.as_str(), &[]).unwrap();
    metrics.increment_counter("taken", 1.0, "count");
    metrics.increment_counter("fine", 1.0, "count");
    metrics.flush(&app.chancy).unwrap();
    assert!(
        rows(&app, "taken").is_empty(),
        "conflicting data is dropped"
    );
    assert_eq!(rows(&app, "fine").len(), 4);
    assert_eq!(
        metrics.buffered_points(),
        8,
        "open chunks stay buffered, clean"
    );
}

#[test]
fn a_worker_records_job_metrics_and_flushes_them_when_it_stops() {
    let metrics = Metrics::default();
    let app = app_with(&metrics);
    app.chancy
        .declare(&Queue::new("mq").polling_interval(Duration::from_secs(1)))
        .unwrap();
    let worker = fast_worker(&app)
        .worker_id("metrics-worker")
        .build()
        .unwrap();
    worker.start().unwrap();
    let mut refs: Vec<_> = (0..3)
        .map(|_| app.chancy.push(&Job::new("t.noop").queue("mq")).unwrap())
        .collect();
    refs.push(app.chancy.push(&Job::new("t.fail").queue("mq")).unwrap());
    app.chancy.wait_for_jobs(&refs, WAIT).unwrap();
    worker.increment_counter("custom:hub", 2.0, "count");
    worker
        .hub()
        .emit("metrics.gauge", json!({"key": "custom:bad", "value": true}));
    holds_for(
        Duration::from_millis(300),
        "no flush before sync_interval (60 s)",
        || count_rows(&app) == 0,
    );
    assert!(worker.stop());

    let query = |prefix: &str| MetricsQuery {
        prefix: Some(prefix.into()),
        resolution: Resolution::OneHour,
        range: Some(Duration::from_secs(3600)),
        ..MetricsQuery::default()
    };
    let jobs = metrics.get_metrics(&app.chancy, &query("job")).unwrap();
    let total = |k: &str| jobs.get(k).and_then(|m| m.total());
    assert_eq!(total("job:t.noop:succeeded"), Some(3.0));
    assert_eq!(total("job:t.fail:failed"), Some(1.0));
    let hist = &jobs["job:t.noop:execution_time"];
    assert_eq!(
        (hist.metric_type, hist.unit.as_str()),
        (MetricType::Histogram, "seconds")
    );
    let count = observations(hist);
    assert_eq!(count, 3);

    let global = metrics.get_metrics(&app.chancy, &query("global")).unwrap();
    assert_eq!(global["global:status:succeeded"].total(), Some(3.0));
    assert_eq!(global["global:status:failed"].total(), Some(1.0));
    let queue = metrics
        .get_metrics(&app.chancy, &query("queue:mq"))
        .unwrap();
    assert_eq!(queue["queue:mq:throughput"].total(), Some(4.0));
    assert_eq!(queue["queue:mq:succeeded"].total(), Some(3.0));
    assert!(queue.contains_key("queue:mq:execution_time"));
    let custom = metrics.get_metrics(&app.chancy, &query("custom")).unwrap();
    assert_eq!(custom["custom:hub"].total(), Some(2.0));
    assert!(!custom.contains_key("custom:bad"), "a bool is not a number");

    let row = one_minute_row(&app, "job:t.noop:succeeded");
    assert_eq!(row.worker_id, "metrics-worker");
    assert_eq!(
        one_minute_row(&app, "custom:hub").session_id,
        row.session_id
    );
    let keys = metrics.list_metrics(&app.chancy).unwrap();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert!(keys.contains(&"job:t.fail:execution_time".to_string()));
}

#[test]
fn the_leader_samples_table_sizes() {
    let metrics = Metrics::builder()
        .collection_interval(Duration::from_millis(200))
        .sync_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let m = metrics.clone();
    let app = TestApp::with(|b| b.no_default_plugins().plugin(ImmediateLeadership).plugin(m));
    app.chancy
        .push(&Job::new("t.noop").queue("nowhere"))
        .unwrap();
    let worker = fast_worker(&app).build().unwrap();
    worker.start().unwrap();
    let has = |key: &str| definitions(&app).iter().any(|d| d.1 == key);
    assert!(
        wait_for(WAIT, || has("table:jobs:total_size_bytes")),
        "sampled and flushed by the service"
    );
    assert!(worker.stop());
    let defs = definitions(&app);
    for table in [
        "jobs",
        "queues",
        "workers",
        "leader",
        "queue_rate_limits",
        "metrics",
        "metric_definitions",
    ] {
        for what in ["total_size_bytes", "table_size_bytes", "index_size_bytes"] {
            let key = format!("table:{table}:{what}");
            let d = defs
                .iter()
                .find(|d| d.1 == key)
                .unwrap_or_else(|| panic!("{key}"));
            assert_eq!((d.2.as_str(), d.3.as_str()), ("gauge", "bytes"));
        }
    }
    let jobs = one_minute_row(&app, "table:jobs:total_size_bytes");
    assert!(jobs.gauges.unwrap()[0] > 0.0, "the jobs table has a row");

    // A worker that is not the leader samples nothing.
    let follower_metrics = Metrics::builder()
        .collection_interval(Duration::from_millis(100))
        .sync_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let m = follower_metrics.clone();
    let follower = TestApp::with(|b| b.no_default_plugins().plugin(m));
    let worker = fast_worker(&follower).build().unwrap();
    let events = crate::support::events::start(&worker);
    // Several collection passes (every 100 ms) of the follower.
    events.passes("plugin-chancy.metrics", 4, WAIT);
    assert!(worker.stop());
    assert!(
        !definitions(&follower)
            .iter()
            .any(|d| d.1.starts_with("table:")),
        "no table sizes without leadership"
    );
}

#[test]
fn cleanup_removes_expired_chunks_and_orphaned_definitions() {
    let metrics = Metrics::default();
    let app = app_with(&metrics);
    metrics.increment_counter("old", 1.0, "count");
    metrics.increment_counter("recent", 1.0, "count");
    metrics.flush(&app.chancy).unwrap();
    assert_eq!(
        metrics.cleanup(&app.chancy).unwrap(),
        None,
        "nothing expired"
    );
    let defs = app.table("metric_definitions");
    let sql = format!(
        "UPDATE {} m SET chunk = chunk - interval '200 days' FROM {defs} d \
         WHERE d.id = m.metric_id AND d.key = 'old'",
        app.table("metrics")
    );
    app.client().execute(sql.as_str(), &[]).unwrap();
    // One-minute data expires after an hour: move it 2 hours back for `recent`.
    let sql = format!(
        "UPDATE {} m SET chunk = chunk - interval '2 hours' FROM {defs} d \
         WHERE d.id = m.metric_id AND d.key = 'recent' AND m.resolution = 60",
        app.table("metrics")
    );
    app.client().execute(sql.as_str(), &[]).unwrap();
    let orphan =
        format!("INSERT INTO {defs} (key, metric_type, unit) VALUES ('orphan', 'gauge', 'number')");
    app.client().execute(orphan.as_str(), &[]).unwrap();

    assert_eq!(metrics.cleanup(&app.chancy).unwrap(), Some(5));
    assert!(rows(&app, "old").is_empty());
    let recent: Vec<i32> = rows(&app, "recent").iter().map(|r| r.resolution).collect();
    assert_eq!(
        recent,
        vec![300, 3600, 86_400],
        "only the expired resolution goes"
    );
    let keys: Vec<String> = definitions(&app).into_iter().map(|d| d.1).collect();
    assert_eq!(keys, vec!["recent"], "orphaned definitions are deleted");
    // The pruner calls it too; nothing left to remove.
    Pruner::cleanup_plugins(&app.chancy);
    assert_eq!(count_rows(&app), 3);
}

/// The workflow scheduler's metrics (upstream's `_record_transitions`): steps queued, state
/// changes per state and per workflow name (`started` for running), poll runs, and the
/// execution-time histograms of finished workflows, recorded by the Metrics plugin.
#[test]
fn the_workflow_scheduler_records_upstreams_workflow_metrics() {
    use chancy::plugins::{Workflow, WorkflowPlugin, WorkflowState};

    let metrics = Metrics::default();
    let m = metrics.clone();
    let app = TestApp::with(|b| {
        b.no_default_plugins()
            .plugin(ImmediateLeadership)
            .plugin(WorkflowPlugin::new().polling_interval(Duration::from_secs(1)))
            .plugin(m)
    });
    let worker = fast_worker(&app).worker_id("wf-metrics").build().unwrap();
    let polled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = polled.clone();
    worker.hub().on("metrics.counter", move |e| {
        if e.body["key"] == "workflows:poll_runs" {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    worker.start().unwrap();
    let good = Workflow::new("wfm-good")
        .add("one", Job::new("t.noop"), &[])
        .add("two", Job::new("t.noop"), &["one"]);
    let bad = Workflow::new("wfm-bad").add("only", Job::new("t.fail"), &[]);
    let good = WorkflowPlugin::push(&app.chancy, &good).unwrap();
    let bad = WorkflowPlugin::push(&app.chancy, &bad).unwrap();
    let state = |id| {
        WorkflowPlugin::wait_for_workflow(&app.chancy, id, WAIT)
            .unwrap()
            .state
    };
    assert_eq!(state(good), WorkflowState::Completed);
    assert_eq!(state(bad), WorkflowState::Failed);
    // The first sweep runs one polling_interval after the start.
    eventually(WAIT, "a workflow sweep", || {
        polled.load(std::sync::atomic::Ordering::SeqCst)
    });
    assert!(worker.stop());

    let query = |prefix: &str| MetricsQuery {
        prefix: Some(prefix.into()),
        resolution: Resolution::OneHour,
        range: Some(Duration::from_secs(3600)),
        ..MetricsQuery::default()
    };
    let mut all = metrics
        .get_metrics(&app.chancy, &query("workflow"))
        .unwrap();
    all.extend(
        metrics
            .get_metrics(&app.chancy, &query("workflows"))
            .unwrap(),
    );
    let total = |k: &str| all.get(k).and_then(|m| m.total());
    assert_eq!(
        total("workflows:steps:queued"),
        Some(3.0),
        "{:?}",
        all.keys()
    );
    assert_eq!(total("workflows:state:running"), Some(2.0));
    assert_eq!(total("workflows:state:completed"), Some(1.0));
    assert_eq!(total("workflows:state:failed"), Some(1.0));
    assert_eq!(total("workflow:wfm-good:started"), Some(1.0));
    assert_eq!(total("workflow:wfm-good:completed"), Some(1.0));
    assert_eq!(total("workflow:wfm-bad:started"), Some(1.0));
    assert_eq!(total("workflow:wfm-bad:failed"), Some(1.0));
    assert!(total("workflow:wfm-good:failed").is_none());
    assert!(total("workflows:poll_runs").is_some_and(|n| n >= 1.0));
    for key in [
        "workflows:execution_time",
        "workflow:wfm-good:execution_time",
        "workflow:wfm-bad:execution_time",
    ] {
        let hist = all
            .get(key)
            .unwrap_or_else(|| panic!("{key} in {:?}", all.keys()));
        assert_eq!(
            (hist.metric_type, hist.unit.as_str()),
            (MetricType::Histogram, "seconds")
        );
    }
    let runs = observations(&all["workflows:execution_time"]);
    assert_eq!(runs, 2);
}
