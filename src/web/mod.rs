//! The dashboard's HTTP server and JSON API: a blocking server (tiny_http, a few handler
//! threads, no async runtime) that serves the single-page dashboard and upstream Chancy's
//! `/api/v1/` routes, plus actions upstream lacks (cancel, retry, pause/resume a queue).
//!
//! ```text
//!  tiny_http acceptor   owns the listening socket, parses requests
//!  chancy-web-<n>       handler threads: recv (with a timeout, so stop is quick) ─► router
//!                       router: CORS ─► auth (cookie or Bearer) ─► CSRF ─► api::<resource>
//! ```
//!
//! Every route but `/`, `/assets/*`, `/health`, `/api/v1/login` and `/api/v1/logout` needs
//! a session token: the `chancy_session` cookie set by login, or `Authorization: Bearer
//! <token>` (what upstream clients send). Tokens are `payload.signature` with an
//! HMAC-SHA256 signature under the server secret and an expiry inside the payload.
//!
//! ```no_run
//! use chancy::web::{WebConfig, WebServer};
//! use chancy::Chancy;
//!
//! let chancy = Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
//! let server = WebServer::start(&chancy, WebConfig::new().port(8000).password("s3cret"))?;
//! println!("dashboard at {}", server.url());
//! server.join();
//! # Ok::<(), chancy::Error>(())
//! ```

mod api;
mod assets;
mod auth;
mod config;
mod conn;
mod cors;
mod handlers;
mod head;
mod http;
mod router;
mod server;
mod ws;

pub use config::{
    WebConfig, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_HANDLER_THREADS,
    DEFAULT_HEADER_TIMEOUT, DEFAULT_HOST, DEFAULT_LOGIN_ATTEMPTS, DEFAULT_LOGIN_WINDOW,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_WEBSOCKETS, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TOKEN_LIFETIME, DEFAULT_USERNAME, ENV_PASSWORD, ENV_SECRET, ENV_USERNAME,
    HANDLER_QUEUE_PER_THREAD, SESSION_COOKIE,
};
pub use server::WebServer;
