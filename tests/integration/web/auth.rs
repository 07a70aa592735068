//! Authentication, rate limiting, CORS, CSRF and stopping the server.

use super::*;

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

    let behind_tls = web.send(
        "POST",
        "/api/v1/login",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-Proto", "https"),
        ],
        Some(&json!({ "username": "admin", "password": PASSWORD })),
    );
    assert!(behind_tls
        .header("set-cookie")
        .unwrap()
        .ends_with("; Secure"));
    assert!(!cookie.contains("Secure"), "plain HTTP gets no Secure flag");

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
