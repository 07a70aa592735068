//! The HTTP edge under attack, over raw loopback sockets against a real server: declared
//! bodies far over the limit, slow clients, a flood of idle connections and ambiguous
//! framing. After each, the server must still answer `/health` and a database-backed
//! route.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{bearer, Web};

/// Generous bound for an answer that should come at once.
const ANSWER: Duration = Duration::from_secs(15);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(ANSWER)).unwrap();
    stream.set_write_timeout(Some(ANSWER)).unwrap();
    stream
}

/// Reads until the server closes (or `ANSWER` passes); returns what arrived.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let until = Instant::now() + ANSWER;
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer: {e} (got {:?})", text(&out)),
        }
    }
    text(&out)
}

/// Whether the server has not closed `stream` (nothing to read yet, without waiting).
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open =
        matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends `request` on a fresh connection; returns the status and the whole answer, which
/// must end with the server closing the connection.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send the request");
    let answer = read_to_close(&mut stream);
    (status_of(&answer), answer)
}

fn status_of(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// `/health` and an authenticated database-backed route both answer.
fn assert_serving(web: &Web, token: &str) {
    let health = web.send("GET", "/health", &[], None);
    assert_eq!(health.status, 200, "/health: {}", health.body);
    let queues = web.send(
        "GET",
        "/api/v1/queues",
        &[("Authorization", &bearer(token))],
        None,
    );
    assert_eq!(queues.status, 200, "GET /api/v1/queues: {}", queues.body);
}

#[test]
fn huge_declared_bodies_are_413_before_reading_and_the_server_lives() {
    let web = Web::new();
    let token = web.login();
    let addr = web.server.local_addr();
    for length in ["9000000000000000000", "18446744073709551615"] {
        // More attempts than handler threads: each once killed a thread.
        for _ in 0..6 {
            let request = format!(
                "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {length}\r\n\r\n"
            );
            let (status, answer) = exchange(addr, request.as_bytes());
            assert_eq!(status, 413, "Content-Length {length}: {answer}");
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );
        }
    }
    assert_serving(&web, &token);
}

#[test]
fn a_declared_gibibyte_is_refused_and_the_connection_closed() {
    let web = Web::new();
    let token = web.login();
    let mut stream = connect(web.server.local_addr());
    let head = "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1073741824\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    // Some of the body follows; the server must not wait for (or read) the rest.
    let _ = stream.write_all(&vec![b'x'; 64 * 1024]);
    let answer = read_to_close(&mut stream);
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_serving(&web, &token);
}

#[test]
fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    let web = Web::with(|c| c.body_limit(1024));
    let token = web.login();
    let chunk = "x".repeat(800);
    let request = format!(
        "POST /api/v1/queues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, answer) = exchange(web.server.local_addr(), request.as_bytes());
    assert_eq!(status, 413, "{answer}");
    assert_serving(&web, &token);
}

#[test]
fn ambiguous_or_malformed_framing_is_400() {
    let web = Web::new();
    let token = web.login();
    let addr = web.server.local_addr();
    let cases = [
        (
            "two different Content-Length",
            "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
        ),
        (
            "two equal Content-Length",
            "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            "Content-Length and Transfer-Encoding",
            "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding and Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        ("a negative Content-Length", "Content-Length: -1\r\n\r\n"),
        ("a Content-Length list", "Content-Length: 2, 2\r\n\r\n{}"),
        (
            "an encoding other than chunked",
            "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "bad chunk sizes",
            "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        ),
    ];
    for (what, rest) in cases {
        let request = format!(
            "POST /api/v1/queues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\n{rest}"
        );
        let (status, answer) = exchange(addr, request.as_bytes());
        assert_eq!(status, 400, "{what}: {answer}");
        assert!(
            json_body(&answer).is_object(),
            "{what}: a JSON body: {answer}"
        );
    }
    assert_serving(&web, &token);
}

#[test]
fn clients_that_stop_sending_hold_no_handler_and_are_timed_out() {
    let threads = 2;
    // The stalled clients are timed out after STALL; answers to others must come well
    // before that (a generous liveness bound, not a speed target).
    const STALL: Duration = Duration::from_secs(10);
    let web = Web::with(|c| c.threads(threads).header_timeout(STALL).body_timeout(STALL));
    let token = web.login();
    let addr = web.server.local_addr();
    // More stalled clients than handler threads: some declare a body and send part of it,
    // some send half a head.
    let mut stalled = Vec::new();
    for n in 0..=threads * 2 {
        let mut stream = connect(addr);
        let bytes = if n % 2 == 0 {
            "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{\"username\""
                .to_string()
        } else {
            "GET /api/v1/queues HTTP/1.1\r\nHost: x\r\nX-Slow:".to_string()
        };
        stream.write_all(bytes.as_bytes()).unwrap();
        stalled.push(stream);
    }
    // While they hang, the server answers others at once (a handler-backed route too).
    let started = Instant::now();
    assert_serving(&web, &token);
    assert!(
        started.elapsed() < STALL - Duration::from_secs(2),
        "answers waited for the stalled clients ({:?})",
        started.elapsed()
    );
    // Each stalled client is answered 408 and disconnected after its timeout.
    for mut stream in stalled {
        let answer = read_to_close(&mut stream);
        assert_eq!(status_of(&answer), 408, "{answer}");
    }
    assert_serving(&web, &token);
}

#[test]
fn idle_connections_are_evicted_for_new_ones_and_503_only_when_all_are_past_their_head() {
    // A header timeout far beyond the test: only eviction can free the slots in time.
    let web = Web::with(|c| {
        c.max_connections(3)
            .header_timeout(Duration::from_secs(600))
    });
    let addr = web.server.local_addr();
    let probe = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    // Silent clients holding every slot (and more) do not keep /health from answering:
    // each newcomer evicts the oldest connection still waiting for its head.
    let mut idle: Vec<TcpStream> = (0..6).map(|_| connect(addr)).collect();
    for _ in 0..3 {
        let (status, answer) = exchange(addr, probe);
        assert_eq!(status, 200, "{answer}");
    }
    // The three oldest were evicted by the next three idle ones, the fourth by the first
    // probe (whose slot the later probes reuse): closed unanswered, long before their
    // header timeout. The last two still hold their slots.
    for (i, stream) in idle.iter_mut().take(4).enumerate() {
        assert_eq!(
            read_to_close(stream),
            "",
            "evicted client {i} gets no answer"
        );
    }
    drop(idle);
    // Connections past their head (waiting for a declared body) are never evicted: with
    // all three slots held so, a newcomer gets 503 at once. (A connection whose head the
    // server had not read yet may itself be evicted by a later one: such closed ones are
    // replaced until three are past their heads.)
    let mut sending: Vec<TcpStream> = Vec::new();
    let answer = crate::support::wait::eventually_some(
        Duration::from_secs(10),
        "a 503 while three clients past their head hold every slot",
        || {
            sending.retain(still_open);
            while sending.len() < 3 {
                let mut s = connect(addr);
                s.write_all(
                    b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\n\
                      Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
                )
                .unwrap();
                sending.push(s);
            }
            let (status, answer) = exchange(addr, probe);
            (status == 503).then_some(answer)
        },
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(sending);
    crate::support::wait::eventually(Duration::from_secs(10), "the slots to come back", || {
        exchange(addr, probe).0 == 200
    });
}

#[test]
fn one_request_per_connection_so_a_second_head_is_never_parsed() {
    let web = Web::new();
    // A smuggling attempt hides a second request behind the first: only the first head
    // is checked, so the server must never read past the first request.
    let two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n\
                POST /api/v1/queues HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\
                Content-Length: 9\r\n\r\n{}";
    let (status, answer) = exchange(web.server.local_addr(), two);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}
