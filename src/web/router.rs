//! Dispatch: static assets, `/health`, login/logout, then authentication, the CSRF checks
//! and the `/api/v1/` resources. CORS headers are added to every answer for listed origins.

use serde_json::{json, Value};

use super::api::{self, Out};
use super::assets;
use super::auth::Auth;
use super::config::SESSION_COOKIE;
use super::cors;
use super::http::{Reply, Req};
use crate::Chancy;

/// What every handler thread shares.
pub(crate) struct Ctx {
    pub chancy: Chancy,
    pub auth: Auth,
    pub allow_origins: Vec<String>,
}

const API: &str = "/api/v1/";

/// Answers one request.
pub(crate) fn route(req: &Req, ctx: &Ctx) -> Reply {
    let reply = match dispatch(req, ctx) {
        Ok(reply) | Err(reply) => reply,
    };
    cors::decorate(reply, req, &ctx.allow_origins)
}

fn dispatch(req: &Req, ctx: &Ctx) -> Out {
    if req.method == "OPTIONS" {
        return Ok(cors::preflight(req, &ctx.allow_origins));
    }
    if req.method != "GET" && !cors::origin_allowed(req, &ctx.allow_origins) {
        return Err(Reply::error(
            403,
            "cross-origin request refused: the Origin is neither this server nor an allowed origin",
        ));
    }
    if let Some(reply) = assets::serve(req) {
        return Ok(reply);
    }
    if req.path == "/health" {
        return Ok(Reply::json(json!({ "status": "healthy" })));
    }
    if req.path == "/metrics" && req.method == "GET" {
        return metrics(&ctx.chancy);
    }
    let Some(segments) = req.segments_after(API) else {
        return Err(Reply::error(404, format!("no route for {}", req.path)));
    };
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("POST", ["login"]) => return login(req, ctx),
        ("POST", ["logout"]) => return Ok(logout()),
        _ => {}
    }
    let via_cookie = authenticate(req, ctx)?;
    if via_cookie && req.method != "GET" && !req.is_json() {
        return Err(Reply::error(
            403,
            "a cookie-authenticated request that changes something must send Content-Type: \
             application/json",
        ));
    }
    api::dispatch(req, &ctx.chancy, &segs)
}

/// Whether `req` is answered without the database (CORS preflights, `/health`, the page's
/// assets): the transport runs these on the connection task, so they answer even when
/// every handler thread is busy. An allowlist on purpose: anything that may touch the
/// database must run on a handler thread (the blocking `postgres` client cannot run on the
/// runtime's thread, and a slow query there would stall every connection).
pub(crate) fn runs_inline(req: &Req) -> bool {
    req.method == "OPTIONS" || req.path == "/health" || assets::serve(req).is_some()
}

/// Authentication of the event stream (`/api/v1/ws`): upstream's `?token=<token>` query
/// parameter, or a Bearer header, or the session cookie. A browser sends the cookie to a
/// websocket of any origin, so a cookie session counts only from this server's own or a
/// listed Origin (the token and Bearer forms are not ambient, so any origin may use them).
pub(crate) fn authenticate_stream(req: &Req, ctx: &Ctx) -> Result<(), Reply> {
    if let Some(token) = req.param("token") {
        return match ctx.auth.verify(token) {
            Some(_) => Ok(()),
            None => Err(Reply::error(403, "Not authenticated")),
        };
    }
    let via_cookie = authenticate(req, ctx)?;
    if via_cookie && !cors::origin_allowed(req, &ctx.allow_origins) {
        return Err(Reply::error(
            403,
            "cross-origin event stream refused: the Origin is neither this server nor an \
             allowed origin",
        ));
    }
    Ok(())
}

/// `GET /metrics`: the Prometheus text of the exporter plugin (public, like `/health`:
/// counts and queue names only), or 404 when the application has none.
fn metrics(chancy: &crate::Chancy) -> Out {
    match crate::prometheus::of(chancy) {
        Some(exporter) => Ok(Reply {
            status: 200,
            content_type: crate::prometheus::CONTENT_TYPE,
            body: exporter.render(chancy).into_bytes(),
            headers: vec![("Cache-Control".into(), "no-store".into())],
        }),
        None => Err(Reply::error(
            404,
            "metrics are off: add the chancy::prometheus::Prometheus plugin",
        )),
    }
}

/// Ok(true) for a cookie session, Ok(false) for a Bearer token, 403 otherwise.
fn authenticate(req: &Req, ctx: &Ctx) -> Result<bool, Reply> {
    let bearer = req.header("authorization").and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    });
    if let Some(token) = bearer {
        if ctx.auth.verify(token).is_some() {
            return Ok(false);
        }
    }
    if let Some(token) = cookie(req, SESSION_COOKIE) {
        if ctx.auth.verify(token).is_some() {
            return Ok(true);
        }
    }
    Err(Reply::error(403, "Not authenticated"))
}

fn cookie<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.header("cookie")?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

fn login(req: &Req, ctx: &Ctx) -> Out {
    let limiter = ctx.auth.limiter();
    if let Some(wait) = limiter.blocked(req.client) {
        let secs = wait.as_secs().max(1);
        return Err(Reply::error(
            429,
            format!("too many failed logins from this address; try again in {secs} s"),
        )
        .with_header("Retry-After", secs.to_string()));
    }
    let body = req.json()?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
    if !ctx
        .auth
        .check_credentials(field("username"), field("password"))
    {
        limiter.failed(req.client);
        return Err(Reply::error(401, "Invalid username or password"));
    }
    limiter.succeeded(req.client);
    let token = ctx.auth.issue();
    let mut cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ctx.auth.lifetime().as_secs()
    );
    // Behind a TLS-terminating proxy the browser talks HTTPS: keep the cookie there.
    if req
        .header("x-forwarded-proto")
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    {
        cookie.push_str("; Secure");
    }
    Ok(Reply::json(json!({ "token": token })).with_header("Set-Cookie", cookie))
}

fn logout() -> Reply {
    Reply::json(json!({ "success": true })).with_header(
        "Set-Cookie",
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    )
}
