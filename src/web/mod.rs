//! The dashboard's HTTP server and JSON API: serves the single-page dashboard and upstream
//! Chancy's `/api/v1/` routes (with the `/api/v1/ws` event stream), plus actions upstream
//! lacks (cancel, retry, pause/resume a queue). The API is blocking; inside, a hostile
//! client is met by an async edge so that it can never hold a handler thread.
//!
//! ```text
//!  chancy-web           one-thread tokio runtime: accept (at most max_connections, else
//!                       503) ─► per connection a task: head checked by head.rs (framing
//!                       400, declared body over the limit 413) ─► hyper http1 ─► body read
//!                       within body_timeout and body_limit ─► /health, assets inline
//!  chancy-web-<n>       handler threads, bounded queue (503 when full), panics → 500:
//!                       router: CORS ─► auth (cookie or Bearer) ─► CSRF ─► api::<resource>
//!  chancy-web-events    LISTEN <prefix>events while websocket clients are connected ─►
//!                       one bounded queue per client (a slow client is dropped)
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

mod adapt;
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

pub use config::{WebConfig, ENV_PASSWORD, ENV_SECRET, ENV_USERNAME};
#[allow(unused_imports)]
pub(crate) use config::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_HANDLER_THREADS, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_HOST, DEFAULT_LOGIN_ATTEMPTS, DEFAULT_LOGIN_WINDOW, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_WEBSOCKETS, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TOKEN_LIFETIME,
    DEFAULT_USERNAME, HANDLER_QUEUE_PER_THREAD, SESSION_COOKIE,
};
pub use server::WebServer;
