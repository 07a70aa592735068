//! `/api/v1/ws`, the event stream of upstream's Gossip page, with a real websocket client
//! (tungstenite): authentication as upstream's UI does it (`?token=`), the Bearer header,
//! refusals, the client limit, and an event caused by a push.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use chancy::{Job, Queue};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::Web;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn ws_url(web: &Web, query: &str) -> String {
    format!("ws://{}/api/v1/ws{query}", web.server.local_addr())
}

fn open(request: tungstenite::handshake::client::Request) -> Result<Socket, u16> {
    match tungstenite::connect(request) {
        Ok((socket, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
            }
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

fn open_url(url: &str) -> Result<Socket, u16> {
    open(url.into_client_request().unwrap())
}

/// Reads messages until one matches, pushing a job to `queue` every second meanwhile (the
/// server starts listening when the first client connects, so an early push may precede
/// its LISTEN). Panics after a generous bound.
/// The first `queue.pushed` message for `queue`: (parsed, the text as sent).
fn wait_for_push(web: &Web, socket: &mut Socket, queue: &str) -> (Value, String) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut last_push = Instant::now() - Duration::from_secs(10);
    while Instant::now() < until {
        if last_push.elapsed() >= Duration::from_secs(1) {
            web.app
                .chancy
                .push(&Job::new("ws.test").queue(queue))
                .expect("push");
            last_push = Instant::now();
        }
        match socket.read() {
            Ok(Message::Text(text)) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON message");
                if message["event"] == "queue.pushed" && message["data"]["q"] == queue {
                    return (message, text.as_str().to_string());
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("the event stream failed: {e}"),
        }
    }
    panic!("no queue.pushed event for {queue} within 30 s");
}

#[test]
fn an_authenticated_client_receives_the_event_of_a_push_in_upstreams_format() {
    let web = Web::new();
    web.app
        .chancy
        .declare(&Queue::new("ws-events"))
        .expect("declare");
    let token = web.login();
    let mut socket = open_url(&ws_url(&web, &format!("?token={token}"))).expect("upgrade");
    let (message, text) = wait_for_push(&web, &mut socket, "ws-events");
    // Upstream's shape and key order: {"event": name, "data": the payload without "t"}.
    assert_eq!(message.as_object().unwrap().len(), 2, "{text}");
    assert!(
        text.starts_with(r#"{"event":"queue.pushed","data":{"#),
        "{text}"
    );
    assert!(message["data"].get("t").is_none(), "{message}");

    // The Bearer header (upstream's API clients) works too.
    let mut request = ws_url(&web, "").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let mut second = open(request).expect("upgrade with a Bearer token");
    wait_for_push(&web, &mut second, "ws-events");
    let _ = socket.close(None);
    let _ = second.close(None);
}

#[test]
fn the_event_stream_refuses_clients_without_a_valid_session() {
    let web = Web::new();
    let token = web.login();
    assert_eq!(open_url(&ws_url(&web, "")).err(), Some(403), "no token");
    assert_eq!(
        open_url(&ws_url(&web, "?token=forged.token")).err(),
        Some(403),
        "a forged token"
    );
    // A session cookie from a foreign page's origin is not enough (cross-site hijacking).
    let mut request = ws_url(&web, "").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Cookie", format!("chancy_session={token}").parse().unwrap());
    headers.insert("Origin", "http://evil.example".parse().unwrap());
    assert_eq!(
        open(request).err(),
        Some(403),
        "cookie from a foreign origin"
    );
    // The same cookie from the dashboard's own origin is accepted.
    let mut request = ws_url(&web, "").into_client_request().unwrap();
    let origin = format!("http://{}", web.server.local_addr());
    let headers = request.headers_mut();
    headers.insert("Cookie", format!("chancy_session={token}").parse().unwrap());
    headers.insert("Origin", origin.parse().unwrap());
    assert!(open(request).is_ok(), "cookie from the server's own origin");
    // A plain GET (no upgrade) is told what the route is.
    let plain = web.send(
        "GET",
        "/api/v1/ws",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(plain.status, 400, "{}", plain.body);
}

#[test]
fn event_stream_clients_are_bounded() {
    let web = Web::with(|c| c.max_websockets(1));
    let token = web.login();
    let url = ws_url(&web, &format!("?token={token}"));
    let first = open_url(&url).expect("the first client");
    assert_eq!(open_url(&url).err(), Some(503), "a client over the limit");
    drop(first);
    // The slot comes back once the first client is gone.
    crate::support::wait::eventually_some(Duration::from_secs(15), "the slot to come back", || {
        match open_url(&url) {
            Ok(socket) => Some(socket),
            Err(503) => None,
            Err(status) => panic!("the slot did not come back: {status}"),
        }
    });
}
