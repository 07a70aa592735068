//! Queues, overview, workers, system, workflows, crons and metrics.

use super::*;

#[test]
fn queues_are_paused_and_resumed() {
    let web = Web::new();
    web.app
        .chancy
        .declare(&Queue::new("mail").concurrency(3))
        .unwrap();
    let token = web.login();
    let queues = web.get(&token, "/api/v1/queues");
    let mail = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "mail")
        .expect("the mail queue");
    for key in [
        "name",
        "concurrency",
        "tags",
        "state",
        "executor",
        "executor_options",
        "polling_interval",
        "rate_limit",
        "rate_limit_window",
        "resume_at",
        "eager_polling",
    ] {
        assert!(mail.get(key).is_some(), "queue JSON lacks {key}: {mail}");
    }
    assert_eq!(mail["concurrency"], 3);

    let r = web.post(
        &token,
        "/api/v1/queues/mail/pause",
        json!({ "resume_at": "2099-01-01T00:00:00Z" }),
    );
    assert_eq!((r.status, r.body.clone()), (200, json!({"ok": true})));
    let queues = web.get(&token, "/api/v1/queues");
    let mail = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "mail")
        .unwrap();
    assert_eq!(mail["state"], "paused");
    assert!(mail["resume_at"]
        .as_str()
        .unwrap()
        .starts_with("2099-01-01T00:00:00"));
    let stored = web.app.chancy.get_queue("mail").unwrap();
    assert_eq!(stored.state.as_str(), "paused");
    assert!(stored.resume_at.is_some());

    let r = web.post(&token, "/api/v1/queues/mail/resume", json!({}));
    assert_eq!((r.status, r.body.clone()), (200, json!({"ok": true})));
    assert_eq!(
        web.app.chancy.get_queue("mail").unwrap().state.as_str(),
        "active"
    );
}

#[test]
fn queues_are_created_updated_and_deleted_and_jobs_deleted() {
    let web = Web::new();
    let token = web.login();
    let auth = bearer(&token);
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];

    let r = web.post(
        &token,
        "/api/v1/queues",
        json!({ "name": "reports", "concurrency": 2, "tags": ["has=pdf"], "rate_limit": 10, "rate_limit_window": 60 }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = web.app.chancy.get_queue("reports").unwrap();
    assert_eq!(stored.concurrency, Some(2));
    assert_eq!(stored.rate_limit, Some(10));
    assert_eq!(stored.rate_limit_window, Some(Duration::from_secs(60)));
    assert!(stored.tags.contains("has=pdf"));

    let r = web.send(
        "PATCH",
        "/api/v1/queues/reports",
        &json_headers,
        Some(&json!({ "concurrency": 5, "eager_polling": true })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["concurrency"], 5);
    let stored = web.app.chancy.get_queue("reports").unwrap();
    assert_eq!(stored.concurrency, Some(5));
    assert!(stored.eager_polling);
    assert_eq!(stored.rate_limit, Some(10), "fields not given are kept");

    for (method, path, body) in [
        ("POST", "/api/v1/queues", json!({ "concurrency": 1 })),
        (
            "POST",
            "/api/v1/queues",
            json!({ "name": "x", "colour": "red" }),
        ),
        (
            "POST",
            "/api/v1/queues",
            json!({ "name": "x", "concurrency": 0 }),
        ),
        (
            "PATCH",
            "/api/v1/queues/reports",
            json!({ "tags": "has=pdf" }),
        ),
        (
            "PATCH",
            "/api/v1/queues/reports",
            json!({ "name": "renamed" }),
        ),
    ] {
        let r = web.send(method, path, &json_headers, Some(&body));
        assert_eq!(r.status, 422, "{method} {path} {body}: {}", r.body);
        assert!(!r.error().is_empty());
    }
    let r = web.send(
        "PATCH",
        "/api/v1/queues/nowhere",
        &json_headers,
        Some(&json!({})),
    );
    assert_eq!(r.status, 404);

    let job = web
        .app
        .chancy
        .push(&Job::new("app.r").queue("reports"))
        .unwrap();
    let r = web.send(
        "DELETE",
        "/api/v1/queues/reports?purge_jobs=false",
        &json_headers,
        None,
    );
    assert_eq!((r.status, r.body.clone()), (200, json!({"ok": true})));
    assert!(web
        .app
        .chancy
        .get_queue("reports")
        .unwrap_err()
        .is_not_found());
    assert!(
        web.state_of(&job.to_string()).is_some(),
        "purge_jobs=false keeps the jobs"
    );
    let r = web.send("DELETE", "/api/v1/queues/reports", &json_headers, None);
    assert_eq!(r.status, 404);

    let r = web.send(
        "DELETE",
        &format!("/api/v1/jobs/{job}"),
        &json_headers,
        None,
    );
    assert_eq!((r.status, r.body.clone()), (200, json!({"ok": true})));
    assert!(web.state_of(&job.to_string()).is_none());
    let r = web.send(
        "DELETE",
        &format!("/api/v1/jobs/{job}"),
        &json_headers,
        None,
    );
    assert_eq!(r.status, 404);

    let plugins = web.get(&token, "/api/v1/plugins");
    let cron = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == "chancy.cron")
        .expect("the cron plugin");
    assert_eq!(cron["migrate_key"], "cron");
    // Upstream's fields, with its values.
    assert_eq!(cron["migrate_package"], "chancy.plugins.cron.migrations");
    assert_eq!(cron["api_plugin"], "chancy.plugins.cron.api.CronApiPlugin");
    assert_eq!(cron["scope"], "worker");
    assert_eq!(cron["tables"], json!(["cron"]));
}
#[test]
fn overview_workers_system_and_configuration_report_real_data() {
    let web = Web::new();
    let c = &web.app.chancy;
    // No worker serves this queue (its tag matches no worker), so the counts stay put.
    c.declare(&Queue::new("mail").tags(["unserved=yes"]))
        .unwrap();
    c.push(&Job::new("app.a").queue("mail")).unwrap();
    let b = c.push(&Job::new("app.b").queue("mail")).unwrap();
    c.cancel_job(&b).unwrap();
    c.push(&Job::new("app.c").queue("undeclared")).unwrap();
    let worker = crate::common::fast_worker(&web.app)
        .worker_id("web-test-worker")
        .build()
        .unwrap();
    worker.start().unwrap();
    let token = web.login();

    let workers = crate::support::wait::eventually_some(
        Duration::from_secs(30),
        "the worker in /api/v1/workers",
        || {
            let w = web.get(&token, "/api/v1/workers");
            (!w.as_array().unwrap().is_empty()).then_some(w)
        },
    );
    let w = &workers[0];
    assert_eq!(w["worker_id"], "web-test-worker");
    for key in ["tags", "queues", "last_seen", "expires_at", "is_leader"] {
        assert!(w.get(key).is_some(), "worker JSON lacks {key}: {w}");
    }

    let overview = web.get(&token, "/api/v1/overview");
    assert!(overview["workers"].as_i64().unwrap() >= 1);
    let queues = overview["queues"].as_array().unwrap();
    let mail = queues.iter().find(|q| q["name"] == "mail").unwrap();
    assert_eq!(mail["counts"]["pending"], 1);
    assert_eq!(mail["counts"]["failed"], 1);
    assert_eq!(mail["counts"]["succeeded"], 0);
    assert_eq!(mail["state"], "active");
    assert_eq!(mail["declared"], true);
    let undeclared = queues.iter().find(|q| q["name"] == "undeclared").unwrap();
    assert_eq!(undeclared["counts"]["pending"], 1);
    assert_eq!(undeclared["declared"], false, "{undeclared}");
    assert!(overview["warnings"].is_array(), "{overview}");
    assert!(worker.stop());

    let system = web.get(&token, "/api/v1/system");
    assert_eq!(system["database"]["prefix"], json!(web.app.prefix));
    assert!(system["database"]["version"]
        .as_str()
        .unwrap()
        .starts_with("1"));
    assert!(system["chancy_version"].is_string());
    let config = web.get(&token, "/api/v1/configuration");
    let plugins: Vec<&str> = config["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    // Upstream's class names: its UI shows Scheduled Jobs, Workflows and Metrics for them.
    for class in ["Cron", "WorkflowPlugin", "Metrics", "Leadership"] {
        assert!(plugins.contains(&class), "{plugins:?}");
    }
}

#[test]
fn workflows_crons_and_metrics_have_the_documented_shapes() {
    let web = Web::new();
    let c = &web.app.chancy;
    let wf = Workflow::new("pipeline")
        .add("fetch", Job::new("app.fetch"), &[])
        .add("store", Job::new("app.store"), &["fetch"]);
    let wf_id = WorkflowPlugin::push(c, &wf).unwrap();
    let older =
        WorkflowPlugin::push(c, &Workflow::new("older").add("x", Job::new("app.x"), &[])).unwrap();
    Cron::schedule(
        c,
        "*/5 * * * *",
        &[Job::new("app.tick").unique_key("tick")],
        "Etc/UTC",
    )
    .unwrap();
    let metrics = Metrics::builder().build().unwrap();
    assert!(metrics.increment_counter("queue:mail:succeeded", 3.0, "count"));
    assert!(metrics.record_gauge("queue:mail:depth", 7.0, "jobs"));
    assert!(metrics.record_histogram_value("queue:mail:execution_time", 0.5, "seconds"));
    assert!(metrics.record_histogram_value("queue:mail:execution_time", 1.5, "seconds"));
    metrics.flush(c).unwrap();
    let token = web.login();

    let list = web.get(&token, "/api/v1/workflows?pagination=true&limit=1");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["has_more"], true);
    let first = &list["items"][0];
    let newest = wf_id.max(older);
    assert_eq!(first["id"], json!(newest.to_string()));
    let next = list["next_cursor"].as_str().unwrap();
    let rest = web.get(
        &token,
        &format!("/api/v1/workflows?pagination=true&before={next}"),
    );
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    // Each item counts its steps per state (upstream's list shape).
    let pipeline = web.get(
        &token,
        "/api/v1/workflows?pagination=true&filters=%5B%5B%22name%22%2C%22%3D%22%2C%22pipeline%22%5D%5D",
    );
    let item = &pipeline["items"][0];
    assert_eq!(pipeline["items"].as_array().unwrap().len(), 1, "{pipeline}");
    assert_eq!(
        (item["total_steps"].as_i64(), item["waiting_steps"].as_i64()),
        (Some(2), Some(2))
    );
    for key in [
        "pending_steps",
        "running_steps",
        "succeeded_steps",
        "failed_steps",
        "retrying_steps",
    ] {
        assert_eq!(item[key], 0, "{key}: {item}");
    }
    assert!(item.get("steps").is_none(), "list rows stay small: {item}");

    let detail = web.get(&token, &format!("/api/v1/workflows/{wf_id}"));
    assert_eq!(detail["name"], "pipeline");
    assert_eq!(detail["state"], "pending");
    for key in ["id", "created_at", "updated_at"] {
        assert!(detail.get(key).is_some(), "workflow JSON lacks {key}");
    }
    // Steps keyed by step id (upstream's shape).
    let steps = detail["steps"].as_object().unwrap();
    assert_eq!(steps.len(), 2);
    let store = &steps["store"];
    assert_eq!(store["step_id"], "store");
    assert_eq!(store["dependencies"], json!(["fetch"]));
    assert_eq!(store["job"]["func"], "app.store");
    assert!(store["job"]["scheduled_at"].is_string());
    assert_eq!(store["job"]["limits"], json!([]));
    assert!(store.get("job_id").is_some() && store.get("state").is_some());

    let crons = web.get(&token, "/api/v1/crons");
    let tick = &crons[0];
    assert_eq!(tick["unique_key"], "tick");
    assert_eq!(tick["cron"], "*/5 * * * *");
    assert_eq!(tick["job"]["func"], "app.tick");
    assert_eq!(tick["job"]["unique_key"], "tick");
    assert!(tick["next_run"].is_string());
    assert!(tick["last_run"].is_null());

    let categories = web.get(&token, "/api/v1/metrics");
    assert_eq!(
        categories,
        json!({"categories": {"queue": ["mail"]}, "count": 3}),
        "metric names per category and the number of keys (upstream)"
    );
    let detail = web.get(
        &token,
        "/api/v1/metrics/queue:mail?resolution=1min&range=3600",
    );
    assert_eq!(detail["resolution"], "1min");
    for key in ["start", "end", "generated_at"] {
        assert!(
            detail[key].is_string(),
            "metrics JSON lacks {key}: {detail}"
        );
    }
    let counter = &detail["series"]["queue:mail:succeeded"];
    assert_eq!(counter["type"], "counter");
    assert_eq!(counter["unit"], "count");
    let point = &counter["data"][0];
    assert_eq!(point["value"], 3.0);
    assert!(point["timestamp"].is_string() && point["sampled_at"].is_string());
    assert_eq!(counter["aggregation"], "sum");
    assert_eq!(counter["summary"], 3.0);
    let gauge = &detail["series"]["queue:mail:depth"];
    assert_eq!(
        (&gauge["type"], &gauge["aggregation"]),
        (&json!("gauge"), &json!("last"))
    );
    // A histogram sums up its window: count, sum, min, max, avg (upstream's `summary`).
    let histogram = &detail["series"]["queue:mail:execution_time"];
    assert_eq!(histogram["aggregation"], "summary");
    assert_eq!(
        histogram["summary"],
        json!({"count": 2, "sum": 2.0, "min": 0.5, "max": 1.5, "avg": 1.0}),
        "{histogram}"
    );

    // An explicit window: the bucket holding the point, then an hour before it.
    let at = chrono::DateTime::parse_from_rfc3339(point["timestamp"].as_str().unwrap()).unwrap();
    let window = |from: chrono::DateTime<chrono::FixedOffset>| {
        let to = from + chrono::Duration::minutes(1);
        let q = |t: chrono::DateTime<chrono::FixedOffset>| t.to_rfc3339().replace('+', "%2B");
        web.get(
            &token,
            &format!(
                "/api/v1/metrics/queue:mail?resolution=1min&start={}&end={}",
                q(from),
                q(to)
            ),
        )
    };
    let hit = window(at);
    assert_eq!(hit["start"], point["timestamp"]);
    assert_eq!(
        hit["series"]["queue:mail:succeeded"]["data"][0]["value"],
        3.0
    );
    let before = window(at - chrono::Duration::hours(1));
    let data = &before["series"]["queue:mail:succeeded"]["data"];
    assert!(
        data.as_array().map_or(true, |d| d.is_empty()),
        "an hour earlier has no data: {before}"
    );
}

#[test]
fn a_queue_row_chancy_cannot_read_is_listed_raw_and_the_pages_still_load() {
    let web = Web::new();
    web.app.chancy.declare(&Queue::new("mail")).unwrap();
    web.app
        .client()
        .batch_execute(&web.app.sql(
            "INSERT INTO {queues} (name, concurrency, tags, state, executor, executor_options, \
             polling_interval) VALUES ('bad', 1, ARRAY['.*'], 'zzz', 'x', '{}', 1)",
        ))
        .unwrap();
    // The library: the readable queue, and the bad row named apart with its reason.
    let listing = web.app.chancy.list_queues().unwrap();
    assert_eq!(listing.queues.len(), 1);
    assert_eq!(listing.queues[0].name, "mail");
    assert_eq!(listing.unreadable.len(), 1);
    assert_eq!(listing.unreadable[0].name, "bad");
    assert_eq!(listing.unreadable[0].state.as_deref(), Some("zzz"));
    assert!(listing.unreadable[0]
        .reason
        .to_string()
        .contains("unknown queue state \"zzz\""));
    assert_eq!(web.app.chancy.get_all_queues().unwrap().len(), 1);

    let token = web.login();
    let queues = web.get(&token, "/api/v1/queues");
    let queues = queues.as_array().unwrap();
    let mail = queues.iter().find(|q| q["name"] == "mail").expect("mail");
    assert_eq!(mail["state"], "active");
    assert!(mail.get("unreadable").is_none(), "{mail}");
    let bad = queues.iter().find(|q| q["name"] == "bad").expect("bad");
    assert_eq!(bad["state"], "zzz");
    assert!(
        bad["unreadable"]
            .as_str()
            .unwrap()
            .contains("unknown queue state \"zzz\""),
        "{bad}"
    );

    let overview = web.get(&token, "/api/v1/overview");
    let rows = overview["queues"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|q| q["name"] == "mail" && q["state"] == "active"));
    let bad = rows.iter().find(|q| q["name"] == "bad").expect("bad");
    assert!(bad["unreadable"].is_string(), "{bad}");
    assert!(bad["counts"].is_object(), "{bad}");
    let warnings = overview["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["kind"] == "unreadable_queue" && w["queue"] == "bad"),
        "{overview}"
    );
    // Acting on the bad row itself: bad data in the database is a server error with the
    // reason, never a 422 (which would blame the request).
    let r = web.post(&token, "/api/v1/queues/bad/resume", json!({}));
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.to_string().contains("unknown queue state"),
        "{}",
        r.body
    );
}
