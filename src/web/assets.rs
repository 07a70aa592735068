//! The dashboard page and its two assets, embedded in the binary (no CDN, no build step).

use super::http::{Reply, Req};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The asset for a `GET` of `/`, `/index.html`, `/assets/app.js` or `/assets/app.css`.
pub(crate) fn serve(req: &Req) -> Option<Reply> {
    if req.method != "GET" && req.method != "HEAD" {
        return None;
    }
    let (content_type, body) = match req.path.as_str() {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/assets/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/assets/app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => return None,
    };
    Some(
        Reply::asset(content_type, body)
            .with_header(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
            )
            .with_header("X-Frame-Options", "DENY"),
    )
}
