//! Jobs: filters, pagination, bad parameters and actions.

use super::*;

#[test]
fn jobs_are_filtered_by_state_queue_and_function() {
    let web = Web::new();
    let c = &web.app.chancy;
    let a = c
        .push(&Job::new("app.send_email").queue("mail").priority(5))
        .unwrap();
    let b = c.push(&Job::new("app.send_sms").queue("mail")).unwrap();
    let d = c.push(&Job::new("app.resize").queue("images")).unwrap();
    c.cancel_job(&b).unwrap();
    let token = web.login();

    let mail = web.get(&token, "/api/v1/jobs?queue=mail");
    assert_eq!(
        ids(&mail),
        vec![b.to_string(), a.to_string()],
        "newest first"
    );
    let failed = web.get(&token, "/api/v1/jobs?state=failed");
    assert_eq!(ids(&failed), vec![b.to_string()]);
    let send = web.get(&token, "/api/v1/jobs?func=SEND_");
    assert_eq!(
        ids(&send),
        vec![b.to_string(), a.to_string()],
        "func is a case-insensitive substring"
    );
    let pending_mail = web.get(&token, "/api/v1/jobs?queue=mail&state=pending");
    assert_eq!(ids(&pending_mail), vec![a.to_string()]);
    let filters = r#"[["priority",">=",1],["func","~","email"]]"#;
    let filtered = web.get(&token, &format!("/api/v1/jobs?filters={}", encode(filters)));
    assert_eq!(ids(&filtered), vec![a.to_string()]);
    let exact = r#"[["func","=","app.resize"],["queue","=","images"]]"#;
    let filtered = web.get(&token, &format!("/api/v1/jobs?filters={}", encode(exact)));
    assert_eq!(ids(&filtered), vec![d.to_string()]);
    assert!(ids(&web.get(&token, "/api/v1/jobs?queue=nowhere")).is_empty());

    let job = web.get(&token, &format!("/api/v1/jobs/{a}"));
    for key in [
        "id",
        "queue",
        "func",
        "kwargs",
        "limits",
        "meta",
        "state",
        "priority",
        "attempts",
        "max_attempts",
        "taken_by",
        "created_at",
        "started_at",
        "completed_at",
        "scheduled_at",
        "unique_key",
        "errors",
    ] {
        assert!(job.get(key).is_some(), "job JSON lacks {key}: {job}");
    }
    assert_eq!(job["priority"], 5);
    assert!(job["created_at"].as_str().unwrap().ends_with("+00:00"));
    let funcs = web.get(&token, "/api/v1/jobs/functions");
    assert_eq!(
        funcs,
        json!(["app.resize", "app.send_email", "app.send_sms"])
    );
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn pagination_walks_every_job_exactly_once() {
    let web = Web::new();
    let jobs: Vec<Job> = (0..250)
        .map(|i| Job::new(format!("app.task{}", i % 3)))
        .collect();
    let pushed: HashSet<String> = web
        .app
        .chancy
        .push_many(&jobs)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let token = web.login();
    let mut seen: Vec<String> = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?pagination=true&limit=100&before={c}"),
            None => "/api/v1/jobs?pagination=true&limit=100".to_string(),
        };
        let page = web.get(&token, &path);
        pages += 1;
        seen.extend(ids(&page["items"]));
        if !page["has_more"].as_bool().unwrap() {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
        assert_eq!(cursor.as_deref(), seen.last().map(String::as_str));
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), pushed);
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "ordered by id, newest first");
    let plain = web.get(&token, "/api/v1/jobs?limit=7");
    assert_eq!(
        plain.as_array().unwrap().len(),
        7,
        "a plain list without pagination"
    );
}

#[test]
fn a_filter_that_is_not_utf8_is_refused_by_name() {
    let web = Web::new();
    let token = web.login();
    for (path, name) in [
        ("/api/v1/jobs?queue=%FF%FE", "queue"),
        ("/api/v1/jobs?state=pending&func=caf%E9", "func"),
        (
            "/api/v1/jobs?filters=%5B%5B%22queue%22%2C%22%3D%22%2C%22%C3%28%22%5D%5D",
            "filters",
        ),
    ] {
        let r = web.send("GET", path, &[("Authorization", &bearer(&token))], None);
        assert_eq!(r.status, 422, "GET {path}: {}", r.body);
        assert!(
            r.error().contains(&format!("{name:?}")) && r.error().contains("UTF-8"),
            "GET {path} names the parameter and the encoding: {}",
            r.body
        );
    }
}

#[test]
fn an_integer_filter_out_of_range_names_the_range() {
    let web = Web::new();
    let token = web.login();
    for (filters, expected) in [
        (
            r#"[["attempts",">",99999999999999]]"#,
            "attempts must be an integer from -2147483648 to 2147483647, got 99999999999999",
        ),
        (
            r#"[["priority","<",-99999999999999]]"#,
            "priority must be an integer from -2147483648 to 2147483647",
        ),
        (
            r#"[["priority","=",18446744073709551615]]"#,
            "priority must be an integer from",
        ),
        (
            r#"[["attempts","=","3"]]"#,
            "attempts needs an integer value, got \"3\"",
        ),
    ] {
        let path = format!("/api/v1/jobs?filters={}", encode(filters));
        let r = web.send("GET", &path, &[("Authorization", &bearer(&token))], None);
        assert_eq!(r.status, 422, "{filters}: {}", r.body);
        assert!(r.error().contains(expected), "{filters}: {}", r.body);
    }
    let path = format!(
        "/api/v1/jobs?filters={}",
        encode(r#"[["attempts","<=",2147483647]]"#)
    );
    web.get(&token, &path);
}

#[test]
fn bad_parameters_are_refused_with_a_message() {
    let web = Web::new();
    let token = web.login();
    for (path, status) in [
        ("/api/v1/jobs?limit=0", 422),
        ("/api/v1/jobs?limit=abc", 422),
        ("/api/v1/jobs?before=not-a-uuid", 422),
        ("/api/v1/jobs?state=done", 422),
        ("/api/v1/jobs?filters=%5B%5B", 422),
        (
            "/api/v1/jobs?filters=%5B%5B%22kwargs%22%2C%22%3D%22%2C1%5D%5D",
            422,
        ),
        (
            "/api/v1/jobs?filters=%5B%5B%22priority%22%2C%22~%22%2C1%5D%5D",
            422,
        ),
        ("/api/v1/jobs/not-a-uuid", 404),
        ("/api/v1/workflows?limit=-1", 422),
        ("/api/v1/workflows/xyz", 404),
        // A NUL cannot be stored in text: refused before the database, with a message.
        ("/api/v1/jobs?queue=a%00b", 422),
        ("/api/v1/jobs?func=a%00b", 422),
        (
            "/api/v1/jobs?filters=%5B%5B%22queue%22%2C%22%3D%22%2C%22a%5Cu0000b%22%5D%5D",
            422,
        ),
        ("/api/v1/workflows?filters=%5B%5B%22colour%22%2C%22%3D%22%2C%22red%22%5D%5D", 422),
        ("/api/v1/metrics/queue%00x", 422),
        ("/api/v1/metrics/queue?limit=3&range=60", 422),
        ("/api/v1/metrics/queue?resolution=2min", 422),
        ("/api/v1/metrics/queue?range=abc", 422),
        ("/api/v1/metrics/queue?resolution=1min&range=7", 422),
        ("/api/v1/metrics/queue?start=yesterday", 422),
        ("/api/v1/metrics/queue?start=2026-01-01T00:00:00", 422),
        (
            "/api/v1/metrics/queue?resolution=1min&start=2026-01-01T00:00:30Z",
            422,
        ),
        (
            "/api/v1/metrics/queue?resolution=1min&start=2026-01-01T00:05:00Z&end=2026-01-01T00:01:00Z",
            422,
        ),
        (
            "/api/v1/metrics/queue?resolution=1min&range=60&start=2026-01-01T00:00:00Z",
            422,
        ),
        ("/api/v1/metrics/queue?limit=0", 422),
        ("/api/v1/nothing-here", 404),
    ] {
        let r = web.send("GET", path, &[("Authorization", &bearer(&token))], None);
        assert_eq!(r.status, status, "GET {path}: {}", r.body);
        assert!(
            !r.error().is_empty(),
            "GET {path} has no error message: {}",
            r.body
        );
    }
    let missing = uuid::Uuid::new_v4();
    let r = web.send(
        "GET",
        &format!("/api/v1/jobs/{missing}"),
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!((r.status, r.error()), (404, "Job not found"));
    let r = web.send(
        "GET",
        &format!("/api/v1/workflows/{missing}"),
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!((r.status, r.error()), (404, "Workflow not found"));
    let r = web.post(&token, "/api/v1/queues/nowhere/pause", json!({}));
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.error().contains("nowhere"));
    let r = web.post(&token, "/api/v1/queues/nowhere/resume", json!({}));
    assert_eq!(r.status, 404);
    web.app.chancy.declare(&Queue::new("q")).unwrap();
    let r = web.post(
        &token,
        "/api/v1/queues/q/pause",
        json!({ "resume_at": "tomorrow" }),
    );
    assert_eq!(r.status, 422);
    assert!(r.error().contains("resume_at"));
    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "explode", "ids": [] }),
    );
    assert_eq!((r.status, r.error()), (422, "Invalid batch action"));
    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "cancel", "ids": [] }),
    );
    assert_eq!(
        (r.status, r.error()),
        (422, "ids must be a nonempty array of strings")
    );
    // Like upstream, an id that is not a UUID is one failed item, not a failed request.
    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "cancel", "ids": ["x"] }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["ok"], false);
    assert_eq!(r.body["results"][0]["status"], "failed");
    // Too many filters (70,000 gave a 503 once: more than PostgreSQL has parameters): a
    // request that fits in the head limit is a 422 with a message; one past the head limit
    // (64 KiB) is refused by the edge with 431 before any handler runs.
    let filters_query = |count: usize| {
        let many: Vec<Value> = (0..count)
            .map(|n| json!(["priority", "=", n % 10]))
            .collect();
        format!(
            "/api/v1/jobs?filters={}",
            encode(&serde_json::to_string(&many).unwrap())
        )
    };
    let r = web.send(
        "GET",
        &filters_query(60),
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.error().contains("at most"), "{}", r.body);
    let r = web.send(
        "GET",
        &filters_query(2_000),
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!(r.status, 431, "{}", r.body);
    let r = web.send(
        "POST",
        "/api/v1/jobs",
        &[
            ("Authorization", &bearer(&token)),
            ("Content-Type", "application/json"),
        ],
        None,
    );
    assert_eq!(
        (r.status, r.error()),
        (422, "Invalid batch action"),
        "an empty body has no action"
    );
}

#[test]
fn job_actions_change_the_database() {
    let web = Web::new();
    let c = &web.app.chancy;
    let a = c.push(&Job::new("app.a")).unwrap().to_string();
    let b = c.push(&Job::new("app.b")).unwrap().to_string();
    let token = web.login();

    let r = web.post(&token, &format!("/api/v1/jobs/{a}/cancel"), json!({}));
    assert_eq!((r.status, r.body.clone()), (200, json!({"ok": true})));
    assert_eq!(web.state_of(&a), Some(JobState::Failed));
    let again = web.post(&token, &format!("/api/v1/jobs/{a}/cancel"), json!({}));
    assert_eq!(again.status, 409, "a finished job cannot be cancelled");
    assert!(!again.error().is_empty());

    let r = web.post(&token, &format!("/api/v1/jobs/{a}/retry"), json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(web.state_of(&a), Some(JobState::Retrying));
    let missing = uuid::Uuid::new_v4();
    let r = web.post(&token, &format!("/api/v1/jobs/{missing}/retry"), json!({}));
    assert_eq!((r.status, r.error()), (404, "Job not found"));
    let r = web.post(&token, &format!("/api/v1/jobs/{missing}/cancel"), json!({}));
    assert_eq!(r.status, 404);

    // Running jobs cannot be retried.
    web.app
        .client()
        .execute(
            &web.app
                .sql("UPDATE {jobs} SET state = 'running' WHERE id = $1"),
            &[&uuid::Uuid::parse_str(&b).unwrap()],
        )
        .unwrap();
    let r = web.post(&token, &format!("/api/v1/jobs/{b}/retry"), json!({}));
    assert_eq!(r.status, 409);
    assert_eq!(web.state_of(&b), Some(JobState::Running));

    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "cancel", "ids": [b, missing.to_string(), b, a] }),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["ok"], false,
        "ok only when every item completed (upstream)"
    );
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "duplicates are dropped: {}", r.body);
    assert_eq!(results[0]["id"], json!(b));
    assert_eq!(results[0]["status"], "completed");
    assert_eq!(results[1]["status"], "skipped");
    assert_eq!(
        results[2]["status"], "completed",
        "a retrying job can be cancelled"
    );
    assert_eq!(web.state_of(&b), Some(JobState::Failed));
    assert_eq!(web.state_of(&a), Some(JobState::Failed));

    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "retry", "ids": [a] }),
    );
    assert_eq!(r.body["results"][0]["status"], "completed");
    assert_eq!(web.state_of(&a), Some(JobState::Retrying));
    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "purge", "ids": [a, b] }),
    );
    assert_eq!(r.body["results"][1]["status"], "completed", "{}", r.body);
    assert_eq!(web.state_of(&a), None);
    assert_eq!(web.state_of(&b), None);
}

#[test]
fn a_row_chancy_cannot_read_is_listed_raw_and_does_not_break_the_page() {
    let web = Web::new();
    let good = web.app.chancy.push(&Job::new("app.fine")).unwrap();
    let weird = uuid::Uuid::new_v4();
    web.app
        .client()
        .execute(
            &web.app.sql(
                "INSERT INTO {jobs} (id, queue, func, kwargs, limits, meta, state, priority, \
                 attempts, max_attempts, created_at, scheduled_at) VALUES \
                 ($1, 'default', 'other.client', '{}', '[]', '{}', 'sideways', 0, 0, 1, now(), now())",
            ),
            &[&weird],
        )
        .unwrap();
    let token = web.login();
    let page = web.get(&token, "/api/v1/jobs?pagination=true");
    let items = page["items"].as_array().unwrap();
    let row = items
        .iter()
        .find(|j| j["id"] == weird.to_string())
        .expect("the unreadable row is listed");
    assert_eq!(row["state"], "sideways");
    assert!(
        row["unreadable"]
            .as_str()
            .unwrap()
            .contains("unknown job state \"sideways\""),
        "{row}"
    );
    assert!(items.iter().any(|j| j["id"] == good.to_string()));
}

#[test]
fn list_rows_are_bounded_and_the_detail_gives_the_full_values() {
    let web = Web::new();
    let c = &web.app.chancy;
    let blob = "x".repeat(2_000_000);
    let big = c
        .push(
            &Job::new("app.big")
                .kwargs(json!({ "blob": blob }))
                .meta(json!({ "note": "y".repeat(100_000) })),
        )
        .unwrap()
        .to_string();
    let small = c
        .push(&Job::new("app.small").kwargs(json!({ "to": "a@b" })))
        .unwrap()
        .to_string();
    // Many long tracebacks, as a job with many attempts collects them.
    let errors: Vec<Value> = (1..=20)
        .map(|n| json!({ "attempt": n, "traceback": format!("attempt {n}: {}", "e".repeat(5000)) }))
        .collect();
    web.app
        .client()
        .execute(
            &web.app.sql("UPDATE {jobs} SET errors = $1 WHERE id = $2"),
            &[&json!(errors), &uuid::Uuid::parse_str(&small).unwrap()],
        )
        .unwrap();
    let token = web.login();

    let r = web.send(
        "GET",
        "/api/v1/jobs?pagination=true",
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.to_string().len() < 64 * 1024,
        "a page of two jobs stays small: {} bytes",
        r.body.to_string().len()
    );
    let items = r.body["items"].as_array().unwrap();
    let row = |id: &str| items.iter().find(|j| j["id"] == json!(id)).unwrap().clone();
    let listed = row(&big);
    assert_eq!(listed["truncated"], json!(["kwargs", "meta"]), "{listed}");
    let marker = &listed["kwargs"]["_truncated"];
    assert_eq!(marker["detail"], json!(format!("/api/v1/jobs/{big}")));
    assert!(marker["bytes"].as_i64().unwrap() > 2_000_000, "{marker}");
    assert!(listed["meta"]["_truncated"].is_object());
    let listed = row(&small);
    assert_eq!(
        listed["kwargs"],
        json!({ "to": "a@b" }),
        "small values are whole"
    );
    assert_eq!(listed["truncated"], json!(["errors"]));
    let kept = listed["errors"].as_array().unwrap();
    assert_eq!(kept.len(), 3, "the newest errors are kept");
    assert_eq!(kept[2]["attempt"], 20);
    let text = kept[2]["traceback"].as_str().unwrap();
    assert!(
        text.starts_with("attempt 20: ")
            && text.ends_with("[truncated; the job detail has the rest]")
    );

    let detail = web.get(&token, &format!("/api/v1/jobs/{big}"));
    assert_eq!(detail["kwargs"]["blob"].as_str().unwrap().len(), 2_000_000);
    assert!(detail.get("truncated").is_none());
    let detail = web.get(&token, &format!("/api/v1/jobs/{small}"));
    assert_eq!(detail["errors"].as_array().unwrap().len(), 20);

    // A megabyte func another client wrote: cut in the list (marked), left out of the
    // functions list, whole in the detail.
    let huge: uuid::Uuid = web
        .app
        .client()
        .query_one(
            &web.app.sql(
                "INSERT INTO {jobs} (id, queue, func) \
                 VALUES (gen_random_uuid(), 'nowhere', repeat('m', 1048576)) RETURNING id",
            ),
            &[],
        )
        .unwrap()
        .get(0);
    let r = web.send(
        "GET",
        "/api/v1/jobs?pagination=true",
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.to_string().len() < 64 * 1024,
        "a megabyte func does not make the page a megabyte: {} bytes",
        r.body.to_string().len()
    );
    let items = r.body["items"].as_array().unwrap();
    let listed = items
        .iter()
        .find(|j| j["id"] == json!(huge.to_string()))
        .unwrap();
    assert_eq!(listed["truncated"], json!(["func"]), "{listed}");
    assert!(listed["func"].as_str().unwrap().ends_with('…'));
    let names = web.get(&token, "/api/v1/jobs/functions");
    assert!(
        names.to_string().len() < 64 * 1024,
        "functions left out the megabyte name"
    );
    let detail = web.get(&token, &format!("/api/v1/jobs/{huge}"));
    assert_eq!(detail["func"].as_str().unwrap().len(), 1_048_576);
}
