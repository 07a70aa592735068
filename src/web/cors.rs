//! CORS for the listed origins only, and the Origin check that backs the CSRF defence.

use super::http::{Reply, Req};

/// Adds the CORS headers when the request's Origin is listed.
pub(crate) fn decorate(reply: Reply, req: &Req, allowed: &[String]) -> Reply {
    match req.header("origin") {
        Some(origin) if is_listed(origin, allowed) => reply
            .with_header("Access-Control-Allow-Origin", origin)
            .with_header("Vary", "Origin"),
        _ => reply,
    }
}

/// The answer to a preflight (`OPTIONS`) request: 204 with the allowed methods and
/// headers for a listed origin, a plain 204 otherwise (the browser then blocks the call).
pub(crate) fn preflight(req: &Req, allowed: &[String]) -> Reply {
    let reply = Reply {
        status: 204,
        content_type: "text/plain",
        body: Vec::new(),
        headers: Vec::new(),
    };
    match req.header("origin") {
        Some(origin) if is_listed(origin, allowed) => reply
            .with_header(
                "Access-Control-Allow-Methods",
                "GET, POST, PATCH, DELETE, OPTIONS",
            )
            .with_header(
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type",
            )
            .with_header("Access-Control-Max-Age", "600"),
        _ => reply,
    }
}

/// Whether the request's Origin (if any) is this server itself or a listed origin. A
/// request without Origin (curl, scripts, same-origin GETs) passes.
pub(crate) fn origin_allowed(req: &Req, allowed: &[String]) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    if is_listed(origin, allowed) {
        return true;
    }
    let host = req.header("host").unwrap_or_default();
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    !host.is_empty() && bare.is_some_and(|b| b.eq_ignore_ascii_case(host))
}

fn is_listed(origin: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn req(origin: Option<&str>, host: &str) -> Req {
        let mut headers = BTreeMap::new();
        headers.insert("host".to_string(), host.to_string());
        if let Some(o) = origin {
            headers.insert("origin".to_string(), o.to_string());
        }
        Req {
            method: "POST".into(),
            path: "/".into(),
            query: BTreeMap::new(),
            undecodable_query: None,
            headers,
            body: Vec::new(),
            client: None,
        }
    }

    #[test]
    fn own_and_listed_origins_pass_foreign_ones_do_not() {
        let listed = vec!["https://ops.example.com".to_string()];
        assert!(origin_allowed(&req(None, "127.0.0.1:8000"), &listed));
        assert!(origin_allowed(
            &req(Some("http://127.0.0.1:8000"), "127.0.0.1:8000"),
            &listed
        ));
        assert!(origin_allowed(
            &req(Some("https://ops.example.com"), "127.0.0.1:8000"),
            &listed
        ));
        assert!(!origin_allowed(
            &req(Some("http://evil.example"), "127.0.0.1:8000"),
            &listed
        ));
        assert!(!origin_allowed(
            &req(Some("null"), "127.0.0.1:8000"),
            &listed
        ));
    }
}
