//! The metrics listener: a deliberately tiny blocking HTTP/1.1 server for three GET routes
//! (`/metrics`, `/health`, `/ready`), no authentication, one request per connection.
//!
//! It reads a request head of at most [`MAX_REQUEST_HEAD`] bytes within [`READ_TIMEOUT`]
//! (a total deadline, so a client trickling bytes cannot hold it longer), refuses any request
//! body (`Content-Length` other than 0, or `Transfer-Encoding`) and any method but
//! GET/HEAD, answers, and closes. At most [`MAX_CONNECTIONS`] connections are handled at
//! once, each on its own short-lived thread; beyond that the acceptor answers `503` at once,
//! so idle clients can delay scrapes by at most the read timeout and never pile up threads.
//! A separate listener (rather than the dashboard's server) keeps scrapes and probes
//! independent of the dashboard's login, threads and fate.
//!
//! ```text
//!  chancy-metrics        accept ─► (busy? 503) ─► spawn
//!  chancy-metrics-conn   read head (bounded, deadline) ─► route ─► write ─► close
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Atomics: the connection count is a limit checked with fetch_add/fetch_sub; SeqCst keeps
// it simple to reason about and costs nothing at one update per connection.

use super::{Prometheus, CONTENT_TYPE};
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::sync::{spawn_named, Shutdown};

/// Connections handled at once; more are answered `503` by the acceptor.
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// The longest request head (request line + headers) accepted; longer gets `431`.
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The whole request head must arrive within this.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Writing the answer must not take longer than this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running metrics listener (`/metrics`, `/health`, `/ready`; no authentication). It
/// handles at most 8 connections at once (more are answered 503), reads a request head of at
/// most 8 KiB within 5 s (else 431 / closed), answers and closes. Dropping it stops it.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<Shutdown>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// What every connection thread shares.
struct Ctx {
    /// Its plugins include the [`Prometheus`] exporter (checked at start).
    chancy: Chancy,
    active: AtomicUsize,
}

impl Ctx {
    fn exporter(&self) -> &Prometheus {
        super::of(&self.chancy).expect("checked at start")
    }
}

impl MetricsServer {
    /// Binds `addr` (`HOST:PORT`; port 0 picks a free one) and serves `/metrics` from the
    /// [`Prometheus`] plugin of `chancy`, `/health` and `/ready` (see [`Prometheus::ready`]).
    ///
    /// # Errors
    /// A configuration error when `chancy` has no [`Prometheus`] plugin, or `addr` does not
    /// resolve or cannot be bound.
    pub fn start(addr: &str, chancy: &Chancy) -> Result<MetricsServer> {
        if super::of(chancy).is_none() {
            return Err(Error::config(
                "metrics need the chancy::prometheus::Prometheus plugin on this Chancy \
                 (ChancyBuilder::plugin_arc)",
            ));
        }
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| Error::config(format!("metrics address {addr:?}: {e}")))?
            .collect();
        let listener = TcpListener::bind(&resolved[..])
            .map_err(|e| Error::config(format!("cannot listen on {addr} for metrics: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::config(format!("metrics listener on {addr}: {e}")))?;
        let stop = Arc::new(Shutdown::default());
        let ctx = Arc::new(Ctx {
            chancy: chancy.clone(),
            active: AtomicUsize::new(0),
        });
        let flag = Arc::clone(&stop);
        let acceptor = spawn_named("chancy-metrics", move || {
            accept_loop(&listener, &ctx, &flag)
        })
        .map_err(|e| Error::config(format!("cannot start the metrics thread: {e}")))?;
        log::info!("metrics on http://{local}/metrics (also /health and /ready)");
        Ok(MetricsServer {
            addr: local,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the acceptor (connections in progress finish on their
    /// own, bounded by the timeouts).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.stop.trigger();
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = acceptor.join();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Decrements the active count when a connection thread ends, even by a panic.
struct Slot(Arc<Ctx>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: &TcpListener, ctx: &Arc<Ctx>, stop: &Shutdown) {
    for stream in listener.incoming() {
        if stop.is_triggered() {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("metrics: accepting a connection failed: {e}");
                stop.sleep(Duration::from_millis(100));
                continue;
            }
        };
        if ctx.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            ctx.active.fetch_sub(1, Ordering::SeqCst);
            refuse(stream);
            continue;
        }
        let slot = Slot(Arc::clone(ctx));
        let spawned = spawn_named("chancy-metrics-conn", move || {
            let ctx = Arc::clone(&slot.0);
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(stream, &ctx)));
            if handled.is_err() {
                log::error!("metrics: a request handler panicked");
            }
            drop(slot);
        });
        if let Err(e) = spawned {
            log::warn!("metrics: cannot start a connection thread: {e}");
        }
    }
}

/// Answers `503` on the acceptor thread without waiting for anything: whatever part of the
/// request has already arrived is drained without blocking, so closing does not reset the
/// connection before the client has read the answer.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_answer(&mut stream, false, busy());
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        for _ in 0..4 {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// An answer: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

fn text(status: u16, body: impl Into<String>) -> Answer {
    (
        status,
        "text/plain; charset=utf-8",
        body.into().into_bytes(),
    )
}

fn busy() -> Answer {
    text(503, "busy: too many metrics connections\n")
}

fn handle(mut stream: TcpStream, ctx: &Ctx) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (head_only, answer) = match read_head(&mut stream) {
        Ok(head) => route(&head, ctx),
        Err(answer) => (false, answer),
    };
    let refused = answer.0 >= 400;
    let _ = write_answer(&mut stream, head_only, answer);
    if refused {
        // The client may still be sending (an oversized head, a body): read a bounded
        // amount for a moment, so closing does not reset the connection before it has
        // read the answer.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// Reads the request head (up to the blank line) within [`READ_TIMEOUT`] and
/// [`MAX_REQUEST_HEAD`] bytes.
fn read_head(stream: &mut TcpStream) -> std::result::Result<String, Answer> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return Err(text(431, "request head too large\n"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(text(408, "request head not received in time\n"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(text(
                    400,
                    "connection closed before the request head ended\n",
                ))
            }
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(text(408, "request head not received in time\n")),
        }
    }
    // The last read may have carried the blank line past the limit.
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len())
        + 4;
    if end > MAX_REQUEST_HEAD {
        return Err(text(431, "request head too large\n"));
    }
    String::from_utf8(head).map_err(|_| text(400, "the request head is not UTF-8\n"))
}

/// The answer for a request head, and whether it was a HEAD request.
fn route(head: &str, ctx: &Ctx) -> (bool, Answer) {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return (false, text(400, "malformed request line\n"));
    };
    if !version.starts_with("HTTP/1.") {
        return (false, text(400, "only HTTP/1.x is served\n"));
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return (false, text(400, "malformed header line\n"));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
        {
            return (false, text(413, "request bodies are not accepted here\n"));
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return (false, text(405, "only GET and HEAD\n")),
    };
    let path = target.split('?').next().unwrap_or("");
    let answer = match path {
        "/metrics" => (
            200,
            CONTENT_TYPE,
            ctx.exporter().render(&ctx.chancy).into_bytes(),
        ),
        "/health" => text(200, "ok\n"),
        "/ready" => match ctx.exporter().ready(&ctx.chancy) {
            Ok(()) => text(200, "ready\n"),
            Err(reason) => text(503, format!("not ready: {reason}\n")),
        },
        _ => text(404, "not found: try /metrics, /health or /ready\n"),
    };
    (head_only, answer)
}

fn write_answer(stream: &mut TcpStream, head_only: bool, answer: Answer) -> std::io::Result<()> {
    let (status, content_type, body) = answer;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(&body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_reason_phrases_and_bodies_are_refused() {
        // route() needs a Ctx only for the three known paths; framing errors come first.
        let chancy = Chancy::builder(crate::DEFAULT_DATABASE_URL)
            .min_connection_pool_size(0)
            .plugin(Prometheus::new())
            .build()
            .unwrap();
        let ctx = Ctx {
            chancy,
            active: AtomicUsize::new(0),
        };
        let status = |head: &str| route(head, &ctx).1 .0;
        assert_eq!(
            status("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            413
        );
        assert_eq!(
            status("GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            413
        );
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET /metrics\r\n\r\n"), 400);
        assert_eq!(status("GET /metrics SPDY/3\r\n\r\n"), 400);
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /health?x=1 HTTP/1.0\r\n\r\n"), 200);
        assert!(route("HEAD /health HTTP/1.1\r\n\r\n", &ctx).0);
    }
}
