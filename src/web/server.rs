//! [`WebServer`]: binds, spawns the handler threads, and stops them.
//!
//! tiny_http owns the listening socket and parses requests on its own threads; our
//! `chancy-web-<n>` threads take requests with `recv_timeout`, so a stop is noticed within
//! [`POLL`] even when no request arrives. A panic in a handler is caught, logged and
//! answered with 500: a handler thread never dies silently.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::auth::{self, Auth, LoginLimiter};
use super::config::WebConfig;
use super::http::{Reply, Req};
use super::router::{self, Ctx};
use crate::error::{Error, Result};
use crate::Chancy;

/// How often an idle handler thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// A running dashboard server. Dropping it stops it.
///
/// ```no_run
/// use chancy::web::{WebConfig, WebServer};
/// let chancy = chancy::Chancy::builder("postgresql://postgres@localhost/postgres").build()?;
/// let server = WebServer::start(&chancy, WebConfig::new().port(0))?;
/// println!("listening on {}", server.local_addr());
/// if let Some(pw) = server.generated_password() {
///     println!("log in as {} with {pw}", server.username());
/// }
/// server.stop();
/// # Ok::<(), chancy::Error>(())
/// ```
pub struct WebServer {
    addr: SocketAddr,
    username: String,
    generated_password: Option<String>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl WebServer {
    /// Binds `config.host:config.port` and starts serving on background threads; returns
    /// at once.
    ///
    /// # Errors
    /// A configuration error when the address cannot be bound (in use, bad host) or the
    /// operating system gives no random bytes for the secret.
    pub fn start(chancy: &Chancy, config: WebConfig) -> Result<WebServer> {
        let (password, generated) = match &config.password {
            Some(p) if !p.is_empty() => (p.clone(), None),
            _ => {
                let p = auth::random_password()?;
                (p.clone(), Some(p))
            }
        };
        let secret = match &config.secret {
            Some(s) if !s.is_empty() => s.clone(),
            _ => auth::random_bytes(32)?,
        };
        let auth = Auth::new(
            config.username.clone(),
            password,
            secret,
            config.token_lifetime,
            LoginLimiter::new(config.login_attempts, config.login_window),
        );
        let bind = format!("{}:{}", config.host, config.port);
        let server = tiny_http::Server::http(bind.as_str())
            .map_err(|e| Error::config(format!("cannot listen on {bind}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::config(format!("{bind} is not an IP address")))?;
        let server = Arc::new(server);
        let ctx = Arc::new(Ctx {
            chancy: chancy.clone(),
            auth,
            allow_origins: config.allow_origins.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for n in 0..config.threads {
            let (server, ctx, stop) = (Arc::clone(&server), Arc::clone(&ctx), Arc::clone(&stop));
            let handle = std::thread::Builder::new()
                .name(format!("chancy-web-{n}"))
                .spawn(move || serve(&server, &ctx, &stop))
                .map_err(|e| Error::config(format!("cannot start a web thread: {e}")))?;
            threads.push(handle);
        }
        log::info!("dashboard listening on http://{addr}/");
        Ok(WebServer {
            addr,
            username: config.username,
            generated_password: generated,
            stop,
            threads: Mutex::new(threads),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The login name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password generated at start when none was configured.
    pub fn generated_password(&self) -> Option<&str> {
        self.generated_password.as_deref()
    }

    /// Stops serving and joins the handler threads (requests in progress finish first).
    /// Idempotent.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for t in threads {
            if t.join().is_err() {
                log::error!("web: a handler thread panicked");
            }
        }
    }

    /// Blocks until [`WebServer::stop`] is called from another thread.
    pub fn join(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
        }
        self.stop();
    }

    /// Whether [`WebServer::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn serve(server: &tiny_http::Server, ctx: &Ctx, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(request, ctx),
            Ok(None) => {}
            Err(e) => {
                log::warn!("web: accepting a request failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn handle(mut request: tiny_http::Request, ctx: &Ctx) {
    let reply = match Req::read(&mut request) {
        Ok(req) => match catch_unwind(AssertUnwindSafe(|| router::route(&req, ctx))) {
            Ok(reply) => reply,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!(
                    "web: handler for {} {} panicked: {what}",
                    req.method,
                    req.path
                );
                Reply::error(500, "internal error")
            }
        },
        Err(reply) => reply,
    };
    if let Err(e) = request.respond(reply.into_response()) {
        log::debug!("web: sending a response failed: {e}");
    }
}
