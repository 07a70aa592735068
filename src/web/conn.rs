//! One connection, from its first byte to its close. Runs as a task on the server's runtime.
//!
//! ```text
//!  read the head      within header_timeout, at most MAX_HEAD bytes, checked by head.rs:
//!                     bad framing 400, declared body over the limit 413, too big 431
//!  hyper (http1)      parses the same bytes again; one request per connection
//!  read the body      within body_timeout, cut off at body_limit (413)
//!  answer             /health and assets inline; everything else on the handler pool
//!  the whole request  within request_timeout, or the connection is closed
//! ```
//!
//! Each connection holds a permit of the server's connection semaphore until it closes, so
//! a flood of idle clients can take at most `max_connections` slots, each for at most the
//! header timeout, and never a handler thread. While it waits for its head a connection is
//! listed in [`Waiting`]: when every slot is taken, the acceptor evicts the oldest of those
//! (closed without an answer) to serve the newcomer, so idle clients cannot keep `/health`
//! from answering; only connections past their head are never evicted.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::timeout;

use super::adapt::{request, response};
use super::handlers::{run_guarded, Handler, Pool};
use super::head::{self, Check, MAX_HEAD};
use super::http::{Reply, Req};
use super::ws;

/// How long a refused client gets to read its answer before the socket is closed.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes of a refused request read and thrown away while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// What every connection task shares.
pub(crate) struct Edge {
    pub body_limit: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub request_timeout: Duration,
    pub pool: Arc<Pool>,
    pub handler: Handler,
    /// Requests answered on the connection task itself (no database work).
    pub inline: fn(&Req) -> bool,
    /// The websocket endpoint, when the server has one.
    pub ws: Option<ws::Endpoint>,
    /// The connections still waiting for their request head.
    pub waiting: Waiting,
}

/// The connections still waiting for their request head, oldest first: the ones the
/// acceptor may evict when every slot is taken.
#[derive(Default)]
pub(crate) struct Waiting {
    list: Mutex<std::collections::VecDeque<(u64, Arc<Notify>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Waiting {
    /// Tells the oldest waiting connection to close; false when none is waiting.
    pub(crate) fn evict_oldest(&self) -> bool {
        match self.list.lock().pop_front() {
            Some((_, evict)) => {
                // Stored if the task is not polling yet: the eviction is never lost.
                evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// Lists a connection the acceptor just took (before its task first runs, so it can
    /// be evicted from the start).
    pub(crate) fn enter(&self) -> Place {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.list.lock().push_back((id, Arc::clone(&evict)));
        Place { id, evict }
    }
}

/// A connection's place in [`Waiting`].
pub(crate) struct Place {
    id: u64,
    evict: Arc<Notify>,
}

/// Leaves [`Waiting`] when dropped (the head arrived, or the connection ended).
struct Leave<'a>(&'a Waiting, u64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.list.lock().retain(|(id, _)| *id != self.1);
    }
}

/// Serves one accepted connection; `_permit` is its connection slot, `place` its entry in
/// [`Waiting`] until its head arrives.
pub(crate) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    edge: Arc<Edge>,
    _permit: OwnedSemaphorePermit,
    place: Place,
) {
    let mut buf = Vec::with_capacity(4096);
    let leave = Leave(&edge.waiting, place.id);
    let read = tokio::select! {
        read = timeout(
            edge.header_timeout,
            read_head(&mut stream, &mut buf, edge.body_limit),
        ) => read,
        () = place.evict.notified() => {
            log::debug!("web: evicted a connection from {peer} still waiting for its head");
            return;
        }
    };
    drop(leave);
    match read {
        Err(_) if buf.is_empty() => return,
        Err(_) => {
            let secs = edge.header_timeout.as_secs_f64();
            let reply = Reply::error(
                408,
                format!("the request head did not arrive within {secs} s"),
            );
            return refuse(stream, reply, LINGER).await;
        }
        Ok(None) => return,
        Ok(Some(Err(reply))) => return refuse(stream, reply, LINGER).await,
        Ok(Some(Ok(()))) => {}
    }
    let io = TokioIo::new(Prefixed {
        prefix: buf,
        pos: 0,
        inner: stream,
    });
    let limit = edge.request_timeout;
    let service = service_fn(move |req| respond(req, peer, Arc::clone(&edge)));
    let mut builder = http1::Builder::new();
    // One request per connection: every response says `Connection: close` (see
    // `response`), which makes hyper close after it. (hyper's own keep_alive(false) would
    // also rewrite the `Connection: Upgrade` of a websocket's 101.)
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .max_buf_size(MAX_HEAD + 8192);
    let conn = builder.serve_connection(io, service).with_upgrades();
    // The request timeout is enforced by dropping the connection future. An upgraded
    // websocket leaves this future once its 101 is written and lives on in its own task.
    match timeout(limit, conn).await {
        Err(_) => log::debug!("web: closed a connection from {peer} after the request timeout"),
        Ok(Err(e)) => log::debug!("web: connection from {peer}: {e}"),
        Ok(Ok(())) => {}
    }
}

/// Reads until `buf` starts with a complete head. `None` when the client closed first;
/// `Some(Err(reply))` when the head is refused.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    body_limit: usize,
) -> Option<Result<(), Reply>> {
    loop {
        match head::check(buf, body_limit) {
            Check::Complete { .. } => return Some(Ok(())),
            Check::Refused(reply) => return Some(Err(reply)),
            Check::Partial => {}
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Writes `reply` with `Connection: close`, then reads and drops what the client still
/// sends for a moment, so that closing does not reset the connection before the client
/// read the answer.
pub(crate) async fn refuse(mut stream: TcpStream, reply: Reply, linger: Duration) {
    let bytes = raw_response(&reply);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    if timeout(linger, write).await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout(linger, drain).await;
}

/// A complete HTTP/1.1 response for `reply`, closing the connection.
pub(crate) fn raw_response(reply: &Reply) -> Vec<u8> {
    let reason = StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        if !name.contains(['\r', '\n']) && !value.contains(['\r', '\n']) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    bytes
}

/// The hyper service: one request to one response.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    edge: Arc<Edge>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(endpoint) = &edge.ws {
        if req.uri().path() == ws::PATH {
            return Ok(endpoint.upgrade(req, peer));
        }
    }
    let (parts, body) = req.into_parts();
    let collected = timeout(
        edge.body_timeout,
        Limited::new(body, edge.body_limit).collect(),
    )
    .await;
    let body = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Ok(response(head::too_large(edge.body_limit)));
        }
        Ok(Err(e)) => {
            return Ok(response(Reply::error(
                400,
                format!("could not read the request body: {e}"),
            )))
        }
        Err(_) => {
            let secs = edge.body_timeout.as_secs_f64();
            return Ok(response(Reply::error(
                408,
                format!("the request body did not arrive within {secs} s"),
            )));
        }
    };
    let req = request(&parts, body.to_vec(), peer);
    let reply = if (edge.inline)(&req) {
        run_guarded(&edge.handler, &req)
    } else {
        match edge.pool.submit(req) {
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| Reply::error(500, "the handler gave no answer")),
            Err(reply) => reply,
        }
    };
    Ok(response(reply))
}

/// The socket with the already read head in front of it, so hyper reads the same bytes.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
