//! The dashboard's JSON API over real HTTP against a real database: authentication,
//! filters, pagination, actions, bad parameters, CORS and CSRF, and the shapes of the
//! plugin-backed routes. This file holds the shared client helpers.

mod auth;
mod edge;
mod jobs;
mod resources;
mod ws;

use std::collections::HashSet;
use std::time::Duration;

use chancy::plugins::{Cron, Metrics, Workflow, WorkflowPlugin};
use chancy::web::{WebConfig, WebServer};
use chancy::{Job, JobState, Queue, Reference};
use serde_json::{json, Value};

use crate::common::TestApp;

pub const PASSWORD: &str = "correct horse";

/// A test namespace with a running server.
pub struct Web {
    pub app: TestApp,
    pub server: WebServer,
    pub base: String,
}

/// A response: status, headers we look at, JSON body (`null` when not JSON).
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn error(&self) -> &str {
        self.body["title"].as_str().unwrap_or_default()
    }
}

impl Web {
    pub fn new() -> Web {
        Web::with(|c| c)
    }

    pub fn with(configure: impl FnOnce(WebConfig) -> WebConfig) -> Web {
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
    pub fn send(
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

    pub fn login(&self) -> String {
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
    pub fn get(&self, token: &str, path: &str) -> Value {
        let r = self.send("GET", path, &[("Authorization", &bearer(token))], None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    /// POST JSON with a Bearer token.
    pub fn post(&self, token: &str, path: &str, body: Value) -> Resp {
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

    pub fn state_of(&self, id: &str) -> Option<JobState> {
        let r: Reference = id.parse().unwrap();
        self.app.chancy.get_job(&r).unwrap().map(|j| j.state)
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}
