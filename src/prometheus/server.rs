//! The metrics listener: a deliberately tiny blocking HTTP/1.1 server for three GET routes
//! (`/metrics`, `/health`, `/ready`), no authentication, one request per connection.
//!
//! It reads a request head of at most [`MAX_REQUEST_HEAD`] bytes, whose first byte must
//! arrive within [`FIRST_BYTE_TIMEOUT`] and the whole within [`READ_TIMEOUT`] (a total
//! deadline, so a client trickling bytes cannot hold it longer). The head is parsed by
//! `httparse`, the parser hyper and the dashboard's server use, so lines may end in CRLF or
//! a bare LF (`printf 'GET /health HTTP/1.0\n\n' | nc`). It refuses any request body
//! (`Content-Length` other than 0, or `Transfer-Encoding`) and any method but GET/HEAD,
//! answers, and closes.
//!
//! At most [`MAX_CONNECTIONS`] connections are handled at once, each on its own short-lived
//! thread. When a new one arrives with every slot taken, the acceptor evicts the oldest
//! connection that is waiting on its client (still sending its head, or slow to read the
//! answer) and serves the new one: idle or slow clients cannot keep a liveness probe from
//! its answer, however many they open. Only when every slot is busy computing an answer
//! (rendering `/metrics`, checking `/ready`) is the newcomer answered `503` at once. A
//! separate listener (rather than the dashboard's server) keeps scrapes and probes
//! independent of the dashboard's login, threads and fate.
//!
//! ```text
//!  chancy-metrics        accept ─► (full? evict the oldest waiting; none? 503) ─► spawn
//!  chancy-metrics-conn   read head (bounded, deadlines) ─► route ─► write ─► close
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown as Close, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Prometheus, CONTENT_TYPE};
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::sync::{spawn_named, Shutdown};

/// Connections handled at once; a new one past this evicts the oldest connection waiting on
/// its client (see the module docs).
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// The longest request head (request line + headers) accepted; longer gets `431`.
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The first byte of the request must arrive within this (a probe sends at once).
pub(crate) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole request head must arrive within this.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most header lines in a request; more is answered `431`.
const MAX_HEADERS: usize = 64;
/// Writing the answer must not take longer than this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running metrics listener (`/metrics`, `/health`, `/ready`; no authentication). It
/// handles at most 64 connections at once (a new one past that evicts the oldest connection
/// still waiting on its client; 503 only when all 64 are computing answers), reads a request
/// head of at most 8 KiB whose first byte arrives within 2 s and the rest within 5 s (else
/// 431 / 408), answers and closes. Dropping it stops it.
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
    /// The connections being handled, oldest first.
    conns: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
}

/// Where a connection is: what an eviction would cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's request head: evictable.
    Reading,
    /// Computing the answer: kept.
    Working,
    /// Waiting for the client to take the answer: evictable.
    Writing,
}

/// One connection being handled: a handle on its socket, so the acceptor can evict it.
struct Conn {
    id: u64,
    phase: Phase,
    stream: TcpStream,
}

impl Ctx {
    fn new(chancy: Chancy) -> Ctx {
        Ctx {
            chancy,
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn exporter(&self) -> &Prometheus {
        super::of(&self.chancy).expect("checked at start")
    }

    /// Takes a slot for `stream`, evicting the oldest connection that waits on its client
    /// when all are taken. `None`: every slot is computing an answer (or the socket cannot
    /// be shared), so the caller answers 503.
    fn admit(&self, stream: &TcpStream) -> Option<u64> {
        let handle = stream.try_clone().ok()?;
        let mut conns = self.conns.lock();
        if conns.len() >= MAX_CONNECTIONS {
            let oldest = conns.iter().position(|c| c.phase != Phase::Working)?;
            let evicted = conns.remove(oldest);
            // Wakes its thread's blocked read or write, which then ends at once.
            let _ = evicted.stream.shutdown(Close::Both);
            log::debug!(
                "metrics: evicted a connection waiting on its client ({:?}) for a new one",
                evicted.phase
            );
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conns.push(Conn {
            id,
            phase: Phase::Reading,
            stream: handle,
        });
        Some(id)
    }

    fn set_phase(&self, id: u64, phase: Phase) {
        if let Some(c) = self.conns.lock().iter_mut().find(|c| c.id == id) {
            c.phase = phase;
        }
    }

    fn release(&self, id: u64) {
        self.conns.lock().retain(|c| c.id != id);
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
        let ctx = Arc::new(Ctx::new(chancy.clone()));
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

/// Frees a connection's slot when its thread ends, even by a panic.
struct Slot(Arc<Ctx>, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release(self.1);
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
        let Some(id) = ctx.admit(&stream) else {
            refuse(stream);
            continue;
        };
        let slot = Slot(Arc::clone(ctx), id);
        let spawned = spawn_named("chancy-metrics-conn", move || {
            let ctx = Arc::clone(&slot.0);
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(stream, &ctx, id)));
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

fn handle(mut stream: TcpStream, ctx: &Ctx, id: u64) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (head_only, answer) = match read_head(&mut stream) {
        Ok(head) => {
            ctx.set_phase(id, Phase::Working);
            route(&head, ctx)
        }
        Err(answer) => (false, answer),
    };
    ctx.set_phase(id, Phase::Writing);
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

/// Reads the request head (up to the blank line, CRLF or bare LF) within the deadlines
/// and [`MAX_REQUEST_HEAD`] bytes; returns its bytes.
fn read_head(stream: &mut TcpStream) -> std::result::Result<Vec<u8>, Answer> {
    let start = Instant::now();
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        match parse(&head) {
            Ok(Some(len)) if len > MAX_REQUEST_HEAD => {
                return Err(text(431, "request head too large\n"))
            }
            Ok(Some(len)) => {
                head.truncate(len);
                return Ok(head);
            }
            Ok(None) if head.len() > MAX_REQUEST_HEAD => {
                return Err(text(431, "request head too large\n"))
            }
            Ok(None) => {}
            Err(answer) => return Err(answer),
        }
        let limit = if head.is_empty() {
            FIRST_BYTE_TIMEOUT
        } else {
            READ_TIMEOUT
        };
        let left = limit.saturating_sub(start.elapsed());
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
}

/// The length of the complete head at the start of `buf`, `None` while incomplete, or the
/// refusal for a malformed one.
fn parse(buf: &[u8]) -> std::result::Result<Option<usize>, Answer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(text(431, "too many header lines\n")),
        Err(httparse::Error::Version) => Err(text(400, "only HTTP/1.x is served\n")),
        Err(e) => Err(text(400, format!("malformed request head: {e}\n"))),
    }
}

/// The answer for a complete request head, and whether it was a HEAD request.
fn route(head: &[u8], ctx: &Ctx) -> (bool, Answer) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return (false, text(400, "incomplete request head\n")),
        Err(e) => {
            return (
                false,
                parse(head)
                    .err()
                    .unwrap_or_else(|| text(400, e.to_string())),
            )
        }
    }
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length")
                && std::str::from_utf8(h.value).map(str::trim) != Ok("0"))
        {
            return (false, text(413, "request bodies are not accepted here\n"));
        }
    }
    let head_only = match request.method.unwrap_or("") {
        "GET" => false,
        "HEAD" => true,
        _ => return (false, text(405, "only GET and HEAD\n")),
    };
    let path = request.path.unwrap_or("").split('?').next().unwrap_or("");
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
        let ctx = Ctx::new(chancy);
        let status = |head: &str| route(head.as_bytes(), &ctx).1 .0;
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
        assert!(route(b"HEAD /health HTTP/1.1\r\n\r\n", &ctx).0);
        // Bare LF line ends, as `printf 'GET /health HTTP/1.0\n\n' | nc` sends.
        assert_eq!(status("GET /health HTTP/1.0\n\n"), 200);
        assert_eq!(status("GET /health HTTP/1.1\nHost: a\n\n"), 200);
        assert_eq!(parse(b"GET /health HTTP/1.0\n\n").ok(), Some(Some(22)));
        assert_eq!(parse(b"GET /health HTTP/1.0\n").ok(), Some(None));
    }
}
