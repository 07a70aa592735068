//! `/api/v1/ws`: the live event stream upstream's dashboard shows on its Gossip page.
//!
//! Every NOTIFY on `<prefix>events` (from any Rust or Python client or worker) is sent to
//! each connected client as one text message `{"event": <name>, "data": <the payload
//! without "t">}`, the format of upstream Chancy 0.26.0's `ws_events`. Authentication is
//! upstream's (`?token=<token from login>`), or the session cookie / Bearer header the
//! other routes take.
//!
//! ```text
//!  chancy-web-events  (std thread, started with the first client, ends after IDLE_EXIT
//!                      without clients) own connection, LISTEN, reconnects with backoff
//!        │ try_send, per client a queue of CLIENT_QUEUE messages
//!        ▼
//!  client task        writes messages, answers pings, pings every PING_EVERY; a client
//!                     whose queue is full is dropped (closed with 1008), never buffered
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use postgres::fallible_iterator::FallibleIterator;
use serde_json::Value;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::adapt::{request, response};
use super::http::Reply;
use super::router::{self, Ctx};
use crate::events;
use crate::sync::{spawn_named, Shutdown};
use crate::Chancy;

/// The route.
pub(crate) const PATH: &str = "/api/v1/ws";
/// Messages waiting for one client; a client this far behind is dropped.
pub(crate) const CLIENT_QUEUE: usize = 256;
/// How often the server pings a client (keeps proxies from closing a quiet stream).
const PING_EVERY: Duration = Duration::from_secs(20);
/// How long one message may take to be written before the client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message or frame accepted from a client (clients have nothing to say).
const MAX_INCOMING: usize = 64 * 1024;
/// The event listener stops this long after the last client left.
const IDLE_EXIT: Duration = Duration::from_secs(60);
/// How often the listener looks at the stop flag and its clients.
const TICK: Duration = Duration::from_millis(200);
/// How often an idle listener checks that its connection is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The websocket route of one server.
pub(crate) struct Endpoint {
    ctx: Arc<Ctx>,
    feed: Arc<Feed>,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Endpoint {
    pub fn new(
        ctx: Arc<Ctx>,
        feed: Arc<Feed>,
        max_clients: usize,
        stop: watch::Receiver<bool>,
    ) -> Endpoint {
        Endpoint {
            ctx,
            feed,
            slots: Arc::new(Semaphore::new(max_clients)),
            stop,
        }
    }

    /// Answers the upgrade request: 101 and a client task, or the refusal.
    pub fn upgrade(
        &self,
        mut req: Request<Incoming>,
        peer: std::net::SocketAddr,
    ) -> Response<Full<Bytes>> {
        match self.accept(&req, peer) {
            Err(reply) => response(reply),
            Ok((accept_key, permit)) => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                let (feed, stop) = (Arc::clone(&self.feed), self.stop.clone());
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            let config = WebSocketConfig::default()
                                .max_message_size(Some(MAX_INCOMING))
                                .max_frame_size(Some(MAX_INCOMING));
                            let socket = WebSocketStream::from_raw_socket(
                                TokioIo::new(upgraded),
                                Role::Server,
                                Some(config),
                            )
                            .await;
                            serve_client(socket, &feed, stop).await;
                        }
                        Err(e) => log::debug!("web: websocket upgrade from {peer} failed: {e}"),
                    }
                    drop(permit);
                });
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let h = resp.headers_mut();
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                if let Ok(v) = HeaderValue::from_str(&accept_key) {
                    h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
                }
                resp
            }
        }
    }

    /// Checks the handshake, the authentication and the client limit.
    fn accept(
        &self,
        req: &Request<Incoming>,
        peer: std::net::SocketAddr,
    ) -> Result<(String, OwnedSemaphorePermit), Reply> {
        let (parts, ()) = clone_parts(req);
        let view = request(&parts, Vec::new(), peer);
        if view.method != "GET" {
            return Err(Reply::error(405, "the event stream takes GET only"));
        }
        let has = |name: &str, token: &str| {
            view.header(name).is_some_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        };
        if !has("upgrade", "websocket") || !has("connection", "upgrade") {
            return Err(Reply::error(
                400,
                "this route is a websocket: send Upgrade: websocket",
            ));
        }
        if view.header("sec-websocket-version") != Some("13") {
            return Err(Reply::error(426, "only websocket version 13 is supported")
                .with_header("Sec-WebSocket-Version", "13"));
        }
        let Some(key) = view.header("sec-websocket-key").filter(|k| !k.is_empty()) else {
            return Err(Reply::error(400, "the Sec-WebSocket-Key header is missing"));
        };
        router::authenticate_stream(&view, &self.ctx)?;
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            Reply::error(
                503,
                "too many event stream clients are connected; try again later",
            )
            .with_header("Retry-After", "5")
        })?;
        Ok((derive_accept_key(key.as_bytes()), permit))
    }
}

/// The request's head without its body.
fn clone_parts(req: &Request<Incoming>) -> (hyper::http::request::Parts, ()) {
    let mut builder = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .version(req.version());
    for (name, value) in req.headers() {
        builder = builder.header(name, value);
    }
    // Copying a valid request's head cannot fail; fall back to an empty GET if it did.
    builder
        .body(())
        .unwrap_or_else(|_| Request::new(()))
        .into_parts()
}

/// One client: forwards its queue, answers pings, closes on stop.
async fn serve_client<S>(
    mut socket: WebSocketStream<S>,
    feed: &Arc<Feed>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (id, mut rx) = feed.subscribe();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let close = loop {
        tokio::select! {
            _ = stop.changed() => break Some((CloseCode::Away, "the server is stopping")),
            message = rx.recv() => match message {
                Some(text) => {
                    let sent = timeout(WRITE_TIMEOUT, socket.send(Message::text(text))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break None;
                    }
                }
                None => break Some((CloseCode::Policy, "too slow: the event backlog is full")),
            },
            incoming = socket.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                let sent = timeout(WRITE_TIMEOUT, socket.send(Message::Ping(Bytes::new()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break None;
                }
            }
        }
    };
    feed.unsubscribe(id);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(Duration::from_secs(1), socket.close(Some(frame))).await;
    }
}

/// Fans the database's events out to the connected clients.
pub(crate) struct Feed {
    chancy: Chancy,
    /// The server's stop.
    stop: Arc<Shutdown>,
    inner: Mutex<FeedInner>,
}

struct FeedInner {
    clients: Vec<(u64, mpsc::Sender<String>)>,
    next_id: u64,
    /// Whether the listener thread runs; set and cleared under this lock together with
    /// the client list, so a new client never finds a listener that is about to exit.
    listening: bool,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    pub fn new(chancy: Chancy, stop: Arc<Shutdown>) -> Arc<Feed> {
        Arc::new(Feed {
            chancy,
            stop,
            inner: Mutex::new(FeedInner {
                clients: Vec::new(),
                next_id: 0,
                listening: false,
                thread: None,
            }),
        })
    }

    /// Adds a client (starting the listener if needed); returns its id and queue.
    fn subscribe(self: &Arc<Self>) -> (u64, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.clients.push((id, tx));
        // Behind transaction pooling a LISTEN would land on a shared server connection:
        // the stream then stays silent.
        if !inner.listening && self.chancy.listens() {
            let feed = Arc::clone(self);
            match spawn_named("chancy-web-events", move || feed.listen_loop()) {
                Ok(handle) => {
                    inner.listening = true;
                    if let Some(old) = inner.thread.replace(handle) {
                        // An exited listener: reap it.
                        drop(old);
                    }
                }
                Err(e) => log::error!("web: cannot start the event listener thread: {e}"),
            }
        }
        (id, rx)
    }

    fn unsubscribe(&self, id: u64) {
        self.inner.lock().clients.retain(|(i, _)| *i != id);
    }

    /// Sends `text` to every client; drops those whose queue is full.
    fn publish(&self, text: &str) {
        self.inner
            .lock()
            .clients
            .retain(|(id, tx)| match tx.try_send(text.to_string()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::warn!(
                        "web: dropping event stream client {id}: {CLIENT_QUEUE} messages behind"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    /// Joins the listener thread (after the server's stop flag was set).
    pub fn join(&self) {
        let handle = self.inner.lock().thread.take();
        if let Some(h) = handle {
            if h.join().is_err() {
                log::error!("web: the event listener thread panicked");
            }
        }
    }

    /// Whether the listener should exit now: stopping, or no client for [`IDLE_EXIT`].
    /// Clears `listening` in the same critical section that saw no client.
    fn should_exit(&self, idle_since: &mut Option<Instant>) -> bool {
        let mut inner = self.inner.lock();
        if self.stop.is_triggered() {
            inner.listening = false;
            return true;
        }
        if !inner.clients.is_empty() {
            *idle_since = None;
            return false;
        }
        let since = idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= IDLE_EXIT {
            inner.listening = false;
            return true;
        }
        false
    }

    fn listen_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        let mut idle_since = None;
        while !self.should_exit(&mut idle_since) {
            match self.listen(&mut idle_since) {
                Ok(()) => return,
                Err(err) => {
                    log::warn!("web: event listener: {err}; reconnecting in {backoff:?}");
                    self.stop.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// LISTENs and publishes until told to exit (Ok) or the connection fails (Err).
    fn listen(&self, idle_since: &mut Option<Instant>) -> crate::Result<()> {
        let mut conn = self.chancy.connect_dedicated()?;
        let channel = self.chancy.prefix().channel();
        conn.client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .map_err(|e| crate::Error::database("starting to LISTEN", e))?;
        let mut last_check = Instant::now();
        loop {
            {
                let mut notifications = conn.client.notifications();
                let mut iter = notifications.timeout_iter(TICK);
                while let Some(n) = iter
                    .next()
                    .map_err(|e| crate::Error::database("receiving notifications", e))?
                {
                    match events::parse(n.payload()) {
                        Ok((name, body)) => {
                            self.publish(&message(&name, body));
                        }
                        Err(err) => log::debug!("web: event listener skips a payload: {err}"),
                    }
                }
            }
            if self.should_exit(idle_since) {
                return Ok(());
            }
            if last_check.elapsed() >= KEEPALIVE {
                conn.client
                    .simple_query("")
                    .map_err(|e| crate::Error::database("checking the listener connection", e))?;
                last_check = Instant::now();
            }
        }
    }
}

/// One stream message in upstream's form and key order, `{"event": name, "data": body}`
/// (written by hand: a `serde_json::Map` without `preserve_order` would sort the keys).
fn message(name: &str, body: serde_json::Map<String, Value>) -> String {
    format!(
        "{{\"event\":{},\"data\":{}}}",
        Value::from(name),
        Value::Object(body)
    )
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::error::TryRecvError;

    use super::*;

    #[test]
    fn a_client_that_falls_behind_is_dropped_not_buffered() {
        // No database is reached: the pool connects lazily and the stop flag is already
        // set, so the listener thread exits at once.
        let chancy = Chancy::builder("postgresql://nobody@127.0.0.1:1/none")
            .min_connection_pool_size(0)
            .build()
            .expect("a lazy Chancy");
        let stop = Arc::new(Shutdown::default());
        stop.trigger();
        let feed = Feed::new(chancy, stop);
        let (_, mut slow) = feed.subscribe();
        let (_, mut fast) = feed.subscribe();
        for i in 0..CLIENT_QUEUE {
            feed.publish(&i.to_string());
            assert_eq!(fast.try_recv().unwrap(), i.to_string());
        }
        feed.publish("one too many");
        assert_eq!(fast.try_recv().unwrap(), "one too many");
        for _ in 0..CLIENT_QUEUE {
            slow.try_recv().expect("what was queued before the drop");
        }
        assert_eq!(slow.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(feed.inner.lock().clients.len(), 1, "only the fast client");
        feed.join();
    }
}
