//! The dashboard's JSON API over real HTTP against a real database: authentication,
//! filters, pagination, actions, bad parameters, CORS and CSRF, and the shapes of the
//! plugin-backed routes.

use std::collections::HashSet;
use std::time::Duration;

use chancy::plugins::{Cron, Metrics, Workflow, WorkflowPlugin};
use chancy::web::{WebConfig, WebServer};
use chancy::{Job, JobState, Queue, Reference};
use serde_json::{json, Value};

use crate::common::TestApp;

const PASSWORD: &str = "correct horse";

/// A test namespace with a running server.
struct Web {
    app: TestApp,
    server: WebServer,
    base: String,
}

/// A response: status, headers we look at, JSON body (`null` when not JSON).
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

impl Web {
    fn new() -> Web {
        Web::with(|c| c)
    }

    fn with(configure: impl FnOnce(WebConfig) -> WebConfig) -> Web {
        let app = TestApp::with(|b| b.plugin(Cron::new()));
        let config = configure(
            WebConfig::new()
                .port(0)
                .password(PASSWORD)
                .allow_origin("https://ops.example.com"),
        );
        let server = WebServer::start(&app.chancy, config).expect("start the web server");
        let base = format!("http://{}", server.local_addr());
        Web { app, server, base }
    }

    /// Sends `method path` with the given headers and JSON body.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let mut req = agent.request(method, &format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                resp.all(&n)
                    .into_iter()
                    .map(|v| (n.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let text = resp.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    fn login(&self) -> String {
        let r = self.send(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            Some(&json!({ "username": "admin", "password": PASSWORD })),
        );
        assert_eq!(r.status, 200, "login: {}", r.body);
        r.body["token"].as_str().expect("a token").to_string()
    }

    /// GET with a Bearer token; asserts 200.
    fn get(&self, token: &str, path: &str) -> Value {
        let r = self.send("GET", path, &[("Authorization", &bearer(token))], None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    /// POST JSON with a Bearer token.
    fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.send(
            "POST",
            path,
            &[
                ("Authorization", &bearer(token)),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        )
    }

    fn state_of(&self, id: &str) -> Option<JobState> {
        let r: Reference = id.parse().unwrap();
        self.app.chancy.get_job(&r).unwrap().map(|j| j.state)
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_api_route_refuses_anonymous_access() {
    let web = Web::new();
    let id = uuid::Uuid::new_v4().to_string();
    let routes = [
        ("GET", "/api/v1/configuration".to_string()),
        ("GET", "/api/v1/system".to_string()),
        ("GET", "/api/v1/overview".to_string()),
        ("GET", "/api/v1/plugins".to_string()),
        ("GET", "/api/v1/queues".to_string()),
        ("POST", "/api/v1/queues".to_string()),
        ("PATCH", "/api/v1/queues/default".to_string()),
        ("DELETE", "/api/v1/queues/default".to_string()),
        ("POST", "/api/v1/queues/default/pause".to_string()),
        ("POST", "/api/v1/queues/default/resume".to_string()),
        ("GET", "/api/v1/workers".to_string()),
        ("GET", "/api/v1/jobs".to_string()),
        ("POST", "/api/v1/jobs".to_string()),
        ("GET", "/api/v1/jobs/functions".to_string()),
        ("GET", format!("/api/v1/jobs/{id}")),
        ("DELETE", format!("/api/v1/jobs/{id}")),
        ("POST", format!("/api/v1/jobs/{id}/cancel")),
        ("POST", format!("/api/v1/jobs/{id}/retry")),
        ("GET", "/api/v1/crons".to_string()),
        ("GET", "/api/v1/metrics".to_string()),
        ("GET", "/api/v1/metrics/queue".to_string()),
        ("GET", "/api/v1/workflows".to_string()),
        ("GET", format!("/api/v1/workflows/{id}")),
    ];
    let json_ct = [("Content-Type", "application/json")];
    for (method, path) in &routes {
        let body = (*method != "GET").then(|| json!({}));
        let r = web.send(method, path, &json_ct, body.as_ref());
        assert_eq!(r.status, 403, "{method} {path} without a token");
        assert_eq!(r.error(), "Not authenticated", "{method} {path}");
        let forged = web.send(
            method,
            path,
            &[("Authorization", "Bearer eyJ1IjoiYWRtaW4ifQ.AAAA")],
            body.as_ref(),
        );
        assert_eq!(forged.status, 403, "{method} {path} with a forged token");
    }
    let health = web.send("GET", "/health", &[], None);
    assert_eq!(
        (health.status, health.body.clone()),
        (200, json!({"status": "healthy"}))
    );
    let page = web.send("GET", "/", &[], None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
}

#[test]
fn login_sets_a_strict_http_only_cookie_that_authenticates_like_the_bearer_token() {
    let web = Web::new();
    let wrong = web.send(
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(&json!({ "username": "admin", "password": "nope" })),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error(), "Invalid username or password");

    let r = web.send(
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(&json!({ "username": "admin", "password": PASSWORD })),
    );
    assert_eq!(r.status, 200);
    let token = r.body["token"].as_str().unwrap().to_string();
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.starts_with(&format!("chancy_session={token};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    let via_cookie = web.send(
        "GET",
        "/api/v1/jobs",
        &[("Cookie", &format!("other=1; chancy_session={token}"))],
        None,
    );
    assert_eq!(via_cookie.status, 200, "{}", via_cookie.body);
    assert!(via_cookie.body.is_array());
    assert!(web.get(&token, "/api/v1/queues").is_array());

    let out = web.send(
        "POST",
        "/api/v1/logout",
        &[("Content-Type", "application/json")],
        Some(&json!({})),
    );
    assert_eq!(out.body, json!({"success": true}));
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("chancy_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[test]
fn repeated_failed_logins_are_rate_limited_per_client() {
    let web = Web::with(|c| c.login_rate_limit(3, Duration::from_secs(600)));
    let attempt = |password: &str| {
        web.send(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            Some(&json!({ "username": "admin", "password": password })),
        )
    };
    for _ in 0..3 {
        assert_eq!(attempt("guess").status, 401);
    }
    let blocked = attempt(PASSWORD);
    assert_eq!(blocked.status, 429, "even the right password waits");
    assert!(!blocked.error().is_empty());
    let retry_after: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");
}

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
fn bad_parameters_are_refused_with_a_message() {
    let web = Web::new();
    let token = web.login();
    for (path, status) in [
        ("/api/v1/jobs?limit=0", 400),
        ("/api/v1/jobs?limit=abc", 400),
        ("/api/v1/jobs?limit=101", 400),
        ("/api/v1/jobs?before=not-a-uuid", 400),
        ("/api/v1/jobs?state=done", 400),
        ("/api/v1/jobs?filters=%5B%5B", 400),
        (
            "/api/v1/jobs?filters=%5B%5B%22kwargs%22%2C%22%3D%22%2C1%5D%5D",
            400,
        ),
        (
            "/api/v1/jobs?filters=%5B%5B%22priority%22%2C%22~%22%2C1%5D%5D",
            400,
        ),
        ("/api/v1/jobs?pagination=maybe", 400),
        ("/api/v1/jobs/not-a-uuid", 400),
        ("/api/v1/workflows?limit=-1", 400),
        ("/api/v1/workflows/xyz", 400),
        ("/api/v1/metrics/queue?resolution=2min", 400),
        ("/api/v1/metrics/queue?range=abc", 400),
        ("/api/v1/metrics/queue?resolution=1min&range=7", 400),
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
    assert_eq!(r.status, 400);
    assert!(r.error().contains("resume_at"));
    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "explode", "ids": [] }),
    );
    assert_eq!(r.status, 400);
    let r = web.post(
        &token,
        "/api/v1/jobs",
        json!({ "action": "cancel", "ids": ["x"] }),
    );
    assert_eq!(r.status, 400);
    let r = web.send(
        "POST",
        "/api/v1/jobs",
        &[
            ("Authorization", &bearer(&token)),
            ("Content-Type", "application/json"),
        ],
        None,
    );
    assert_eq!(r.status, 400, "an empty body has no action");
}

#[test]
fn job_actions_change_the_database() {
    let web = Web::new();
    let c = &web.app.chancy;
    let a = c.push(&Job::new("app.a")).unwrap().to_string();
    let b = c.push(&Job::new("app.b")).unwrap().to_string();
    let token = web.login();

    let r = web.post(&token, &format!("/api/v1/jobs/{a}/cancel"), json!({}));
    assert_eq!((r.status, r.body.clone()), (200, json!({"success": true})));
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
    assert_eq!(r.body["ok"], true);
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
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "paused");
    assert!(r.body["resume_at"]
        .as_str()
        .unwrap()
        .starts_with("2099-01-01T00:00:00"));
    let stored = web.app.chancy.get_queue("mail").unwrap();
    assert_eq!(stored.state.as_str(), "paused");
    assert!(stored.resume_at.is_some());

    let r = web.post(&token, "/api/v1/queues/mail/resume", json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "active");
    assert_eq!(
        web.app.chancy.get_queue("mail").unwrap().state.as_str(),
        "active"
    );
}

#[test]
fn cors_headers_are_sent_to_listed_origins_only() {
    let web = Web::new();
    let token = web.login();
    let auth = bearer(&token);
    let listed = web.send(
        "GET",
        "/api/v1/queues",
        &[
            ("Authorization", &auth),
            ("Origin", "https://ops.example.com"),
        ],
        None,
    );
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("https://ops.example.com")
    );
    let other = web.send(
        "GET",
        "/api/v1/queues",
        &[("Authorization", &auth), ("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    let preflight = web.send(
        "OPTIONS",
        "/api/v1/jobs",
        &[
            ("Origin", "https://ops.example.com"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert_eq!(preflight.status, 204);
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    let foreign_preflight = web.send(
        "OPTIONS",
        "/api/v1/jobs",
        &[("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(
        foreign_preflight.header("access-control-allow-origin"),
        None
    );
}

#[test]
fn cookie_authenticated_changes_need_json_and_a_trusted_origin() {
    let web = Web::new();
    let id = web.app.chancy.push(&Job::new("app.a")).unwrap().to_string();
    let token = web.login();
    let cookie = format!("chancy_session={token}");
    let path = format!("/api/v1/jobs/{id}/cancel");
    let body = json!({});

    let form = web.send(
        "POST",
        &path,
        &[("Cookie", &cookie), ("Content-Type", "text/plain")],
        Some(&body),
    );
    assert_eq!(form.status, 403, "{}", form.body);
    assert!(form.error().contains("application/json"));
    let foreign = web.send(
        "POST",
        &path,
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("Origin", "https://evil.example"),
        ],
        Some(&body),
    );
    assert_eq!(foreign.status, 403);
    assert_eq!(
        web.state_of(&id),
        Some(JobState::Pending),
        "nothing changed"
    );

    let own_origin = web.base.clone();
    let ok = web.send(
        "POST",
        &path,
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("Origin", &own_origin),
        ],
        Some(&body),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(web.state_of(&id), Some(JobState::Failed));
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

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let workers = loop {
        let w = web.get(&token, "/api/v1/workers");
        if !w.as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break w;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
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
    let undeclared = queues.iter().find(|q| q["name"] == "undeclared").unwrap();
    assert_eq!(undeclared["counts"]["pending"], 1);
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
    assert!(plugins.contains(&"chancy.cron"), "{plugins:?}");
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

    let detail = web.get(&token, &format!("/api/v1/workflows/{wf_id}"));
    assert_eq!(detail["name"], "pipeline");
    assert_eq!(detail["state"], "pending");
    for key in ["id", "created_at", "updated_at"] {
        assert!(detail.get(key).is_some(), "workflow JSON lacks {key}");
    }
    let steps = detail["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    let store = steps.iter().find(|s| s["step_id"] == "store").unwrap();
    assert_eq!(store["dependencies"], json!(["fetch"]));
    assert_eq!(store["job"]["func"], "app.store");
    assert!(store.get("job_id").is_some() && store.get("state").is_some());

    let crons = web.get(&token, "/api/v1/crons");
    let tick = &crons[0];
    assert_eq!(tick["unique_key"], "tick");
    assert_eq!(tick["cron"], "*/5 * * * *");
    assert_eq!(tick["job"]["func"], "app.tick");
    assert!(tick["next_run"].is_string());
    assert!(tick["last_run"].is_null());

    let categories = web.get(&token, "/api/v1/metrics");
    assert_eq!(categories, json!({"queue": 2}));
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
    assert_eq!(detail["series"]["queue:mail:depth"]["type"], "gauge");
}

#[test]
fn a_stopped_server_refuses_connections_and_stop_is_idempotent() {
    let web = Web::new();
    let addr = web.server.local_addr();
    assert_ne!(addr.port(), 0, "port 0 resolves to a real port");
    web.server.stop();
    web.server.stop();
    assert!(web.server.is_stopped());
    let r = ureq::get(&format!("http://{addr}/health"))
        .timeout(Duration::from_secs(5))
        .call();
    assert!(r.is_err(), "the stopped server still answered");
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
        assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.body);
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
    assert_eq!(r.status, 200, "{}", r.body);
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
    assert_eq!((r.status, r.body.clone()), (200, json!({"success": true})));
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
}
