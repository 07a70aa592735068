//! Between hyper and the handlers' types: a hyper request head becomes a [`Req`], a [`Reply`]
//! becomes a hyper response with the headers every answer carries. Used by the transport
//! (`conn.rs`) and by the WebSocket upgrade (`ws.rs`).

use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use super::http::{parse_query, Reply, Req};

/// The handlers' view of a request.
pub(crate) fn request(parts: &hyper::http::request::Parts, body: Vec<u8>, peer: SocketAddr) -> Req {
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (query, undecodable_query) = parts.uri.query().map(parse_query).unwrap_or_default();
    Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query,
        undecodable_query,
        headers,
        body,
        client: Some(peer.ip()),
    }
}

/// `reply` as a hyper response with the headers every answer carries.
pub(crate) fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    let fixed = [
        ("content-type", reply.content_type),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("connection", "close"),
    ];
    for (name, value) in fixed {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(n, v);
        }
    }
    response
}
