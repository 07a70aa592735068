//! [`WebServer`]: binds, runs the HTTP edge on its own thread, and stops it.
//!
//! The public API is blocking; inside, one thread (`chancy-web`) runs a single-threaded
//! tokio runtime that accepts connections and speaks HTTP/1.1 through hyper, and a fixed
//! pool of handler threads (`chancy-web-<n>`) runs the blocking handlers. Why the split:
//! a client controls how slowly it sends, so reading a request must cost a cheap task, not
//! a thread; only a complete request (head and body read within their limits and timeouts)
//! is handed to a handler thread. See `conn.rs` for the life of one connection.
//!
//! Nothing a client sends can take the process down: sizes are checked before anything is
//! allocated for them, a panicking handler is answered 500 and its thread goes on, a
//! panicking connection task ends that connection only, and should the accept loop itself
//! panic it is logged and restarted.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};

use super::auth::{self, Auth, LoginLimiter};
use super::config::{WebConfig, HANDLER_QUEUE_PER_THREAD};
use super::conn::{self, Edge};
use super::handlers::{Handler, Pool};
use super::router::{self, Ctx};
use super::ws;
use crate::error::{Error, Result};
use crate::sync::{spawn_named, Shutdown};
use crate::Chancy;

/// The pause before the accept loop restarts after a panic.
const RESTART_PAUSE: Duration = Duration::from_millis(200);
/// Connections over the limit being answered 503 at once.
const MAX_REFUSING: usize = 64;
/// How long a connection over the limit may take to read its 503.
const BUSY_LINGER: Duration = Duration::from_millis(500);
/// How long the acceptor waits for the slot of a connection it evicted.
const EVICT_WAIT: Duration = Duration::from_secs(1);
/// How long a stop waits for requests in progress before closing their connections.
const STOP_GRACE: Duration = Duration::from_secs(10);

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
    /// Triggered by [`WebServer::stop`]; `join` and the event feed wait on it.
    stop: Arc<Shutdown>,
    /// The same stop, for the tasks on the tokio runtime.
    stop_tx: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pool: Arc<Pool>,
    feed: Option<Arc<ws::Feed>>,
}

impl WebServer {
    /// Binds `config.host:config.port` and starts serving on background threads; returns
    /// at once.
    ///
    /// # Errors
    /// A configuration error when the address cannot be bound (in use, bad host), the
    /// operating system gives no random bytes for the secret, or refuses a thread.
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
        let ctx = Arc::new(Ctx {
            chancy: chancy.clone(),
            auth,
            allow_origins: config.allow_origins.clone(),
        });
        let stop = Arc::new(Shutdown::default());
        let feed = ws::Feed::new(chancy.clone(), Arc::clone(&stop));
        let handler_ctx = Arc::clone(&ctx);
        let handler: Handler = Arc::new(move |req| router::route(req, &handler_ctx));
        let parts = Parts {
            handler,
            inline: router::runs_inline,
            ws: Some((ctx, Arc::clone(&feed))),
        };
        let mut server = WebServer::launch(&config, parts, stop)?;
        server.feed = Some(feed);
        server.generated_password = generated;
        log::info!("dashboard listening on http://{}/", server.addr);
        Ok(server)
    }

    /// Binds and starts the edge around `parts` (the router in production, a stub in the
    /// transport's own tests).
    pub(crate) fn launch(
        config: &WebConfig,
        parts: Parts,
        stop: Arc<Shutdown>,
    ) -> Result<WebServer> {
        let bind = format!("{}:{}", config.host, config.port);
        let listener = std::net::TcpListener::bind(bind.as_str())
            .map_err(|e| Error::config(format!("cannot listen on {bind}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::config(format!("cannot listen on {bind}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::config(format!("cannot listen on {bind}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("chancy-web")
            .build()
            .map_err(|e| Error::config(format!("cannot start the web runtime: {e}")))?;
        let pool = Arc::new(Pool::start(
            config.threads,
            config.threads * HANDLER_QUEUE_PER_THREAD,
            Arc::clone(&parts.handler),
        )?);
        let (stop_tx, stop_rx) = watch::channel(false);
        let ws = parts.ws.map(|(ctx, feed)| {
            ws::Endpoint::new(ctx, feed, config.max_websockets, stop_rx.clone())
        });
        let edge = Arc::new(Edge {
            body_limit: config.body_limit,
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            request_timeout: config.request_timeout,
            pool: Arc::clone(&pool),
            handler: parts.handler,
            inline: parts.inline,
            ws,
            waiting: conn::Waiting::default(),
        });
        let max_connections = config.max_connections;
        let thread = spawn_named("chancy-web", move || {
            run(runtime, listener, edge, max_connections, stop_rx)
        })
        .map_err(|e| Error::config(format!("cannot start the web thread: {e}")))?;
        Ok(WebServer {
            addr,
            username: config.username.clone(),
            generated_password: None,
            stop,
            stop_tx,
            thread: Mutex::new(Some(thread)),
            pool,
            feed: None,
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

    /// Stops serving: no new connections, requests in progress finish (for up to 10 s),
    /// event stream clients are closed, then the threads are joined. Idempotent.
    pub fn stop(&self) {
        self.stop.trigger();
        let _ = self.stop_tx.send(true);
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                log::error!("web: the server thread panicked");
            }
        }
        self.pool.stop();
        if let Some(feed) = &self.feed {
            feed.join();
        }
    }

    /// Blocks until [`WebServer::stop`] is called from another thread, then returns once
    /// the server has stopped.
    pub fn join(&self) {
        self.stop.wait();
        self.stop();
    }

    /// Whether [`WebServer::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_triggered()
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

/// What the edge serves: the handler, which requests it runs inline, and the websocket
/// route (with the context it authenticates against).
pub(crate) struct Parts {
    pub handler: Handler,
    pub inline: fn(&super::http::Req) -> bool,
    pub ws: Option<(Arc<Ctx>, Arc<ws::Feed>)>,
}

/// The `chancy-web` thread: the accept loop on the runtime, restarted should it panic,
/// then a bounded wait for the connections in progress.
fn run(
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    edge: Arc<Edge>,
    max_connections: usize,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let listener = match runtime.block_on(async { tokio::net::TcpListener::from_std(listener) }) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            log::error!("web: cannot use the listening socket: {e}");
            return;
        }
    };
    while !*stop.borrow() {
        let accepted = catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(accept_loop(&listener, &edge, &slots, stop.clone()));
        }));
        if accepted.is_err() {
            log::error!("web: the accept loop panicked; restarting it");
            std::thread::sleep(RESTART_PAUSE);
        }
    }
    // Let requests in progress finish: every slot back means every connection closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    runtime.block_on(async {
        let _ = tokio::time::timeout(STOP_GRACE, slots.acquire_many(all)).await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn accept_loop(
    listener: &tokio::net::TcpListener,
    edge: &Arc<Edge>,
    slots: &Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let refusing = &Arc::new(Semaphore::new(MAX_REFUSING));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match slot(slots, edge).await {
                        Some(permit) => {
                            let place = edge.waiting.enter();
                            tokio::spawn(conn::serve(stream, peer, Arc::clone(edge), permit, place));
                        }
                        None => busy(stream, refusing),
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    log::warn!("web: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// A connection slot: a free one, else the one of the oldest connection still waiting for
/// its head (evicted: closed unanswered), so idle clients cannot crowd out a probe. `None`
/// when every connection is past its head (the caller answers 503).
async fn slot(slots: &Arc<Semaphore>, edge: &Edge) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
        return Some(permit);
    }
    if !edge.waiting.evict_oldest() {
        return None;
    }
    // The evicted task runs on this runtime and gives its slot back at its next poll;
    // the bound only guards against a slot taken by something else meanwhile.
    tokio::time::timeout(EVICT_WAIT, Arc::clone(slots).acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Answers a connection over the limit with 503 and closes it. The answer is written by
/// a short task (so the client reads it before the close), at most [`MAX_REFUSING`] at
/// once; past that the connection is closed unanswered.
fn busy(stream: tokio::net::TcpStream, refusing: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(refusing).try_acquire_owned() else {
        return;
    };
    let reply = super::http::Reply::error(503, "too many open connections; try again shortly")
        .with_header("Retry-After", "1");
    tokio::spawn(async move {
        conn::refuse(stream, reply, BUSY_LINGER).await;
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::web::http::{Reply, Req};

    fn get(addr: SocketAddr, path: &str) -> u16 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("an answer");
        answer[9..12].parse().expect("a status")
    }

    #[test]
    fn panicking_handlers_are_answered_500_and_the_server_goes_on() {
        let handler: Handler = Arc::new(|req: &Req| {
            if req.path.ends_with("/panic") {
                panic!("a handler bug");
            }
            Reply::json(serde_json::json!({ "ok": true }))
        });
        let parts = Parts {
            handler,
            // `/inline/...` runs on the connection task, the rest on the pool.
            inline: |req| req.path.starts_with("/inline/"),
            ws: None,
        };
        let config = WebConfig::new().port(0).threads(2);
        let server =
            WebServer::launch(&config, parts, Arc::new(Shutdown::default())).expect("launch");
        let addr = server.local_addr();
        // More panics than handler threads, on both paths.
        for _ in 0..5 {
            assert_eq!(get(addr, "/api/panic"), 500);
            assert_eq!(get(addr, "/inline/panic"), 500);
        }
        assert_eq!(get(addr, "/api/fine"), 200);
        assert_eq!(get(addr, "/inline/fine"), 200);
        server.stop();
        assert!(TcpStream::connect(addr).is_err(), "stopped means closed");
    }
}
