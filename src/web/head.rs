//! The request head, checked before hyper parses it: strict framing and the body limit.
//!
//! hyper follows RFC 9112 leniently where a proxy in front of us might not: it accepts two
//! equal `Content-Length` headers and, given both `Content-Length` and `Transfer-Encoding`,
//! silently drops the length. A proxy that frames the same bytes differently would let a
//! second request be smuggled past it, so every head is checked here first, with the same
//! parser hyper uses (`httparse`), and refused with 400 when its framing is anything but
//! one unambiguous reading. A declared body over the limit is answered 413 before a byte of
//! it is read.

use super::http::Reply;

/// Largest request head (request line and headers) in bytes; more is answered 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most headers in one request; more is answered 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// How the body of an accepted head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n` (at most the body limit).
    Length(u64),
    /// `Transfer-Encoding: chunked` (cut off at the body limit while reading).
    Chunked,
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug)]
pub(crate) enum Check {
    /// The head is not complete yet (and still under [`MAX_HEAD`]).
    Partial,
    /// A complete, well-framed head of `len` bytes (the transport needs only the verdict:
    /// hyper reads the same head again; the fields document it and serve the tests).
    #[allow(dead_code)]
    Complete { len: usize, framing: Framing },
    /// Refused: answer this and close the connection.
    Refused(Reply),
}

/// Checks the head at the start of `buf` against the framing rules and `body_limit`.
pub(crate) fn check(buf: &[u8], body_limit: usize) -> Check {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Check::Refused(Reply::error(
            431,
            format!("the request head is larger than {} KiB", MAX_HEAD / 1024),
        )),
        Ok(httparse::Status::Partial) => Check::Partial,
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Check::Refused(Reply::error(
            431,
            format!("the request head is larger than {} KiB", MAX_HEAD / 1024),
        )),
        Ok(httparse::Status::Complete(len)) => match framing(&request, body_limit) {
            Ok(framing) => Check::Complete { len, framing },
            Err(reply) => Check::Refused(reply),
        },
        Err(httparse::Error::TooManyHeaders) => Check::Refused(Reply::error(
            431,
            format!("the request has more than {MAX_HEADERS} headers"),
        )),
        Err(e) => Check::Refused(Reply::error(400, format!("malformed request head: {e}"))),
    }
}

/// The one framing a parsed head allows, or the refusal.
fn framing(request: &httparse::Request<'_, '_>, body_limit: usize) -> Result<Framing, Reply> {
    let named = |name: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect::<Vec<&[u8]>>()
    };
    let lengths = named("content-length");
    let encodings = named("transfer-encoding");
    if lengths.len() > 1 {
        return Err(Reply::error(
            400,
            "more than one Content-Length header: the body's framing is ambiguous",
        ));
    }
    if !lengths.is_empty() && !encodings.is_empty() {
        return Err(Reply::error(
            400,
            "both Content-Length and Transfer-Encoding: the body's framing is ambiguous",
        ));
    }
    if let Some(value) = lengths.first() {
        let length = content_length(value).ok_or_else(|| {
            Reply::error(
                400,
                format!(
                    "invalid Content-Length {:?}: expected a decimal byte count",
                    String::from_utf8_lossy(value)
                ),
            )
        })?;
        if length > body_limit as u64 {
            return Err(too_large(body_limit));
        }
        return Ok(if length == 0 {
            Framing::Empty
        } else {
            Framing::Length(length)
        });
    }
    if encodings.is_empty() {
        return Ok(Framing::Empty);
    }
    if request.version == Some(0) {
        return Err(Reply::error(400, "HTTP/1.0 has no Transfer-Encoding"));
    }
    let chunked = encodings.len() == 1
        && std::str::from_utf8(encodings[0])
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
    if !chunked {
        return Err(Reply::error(
            400,
            "unsupported Transfer-Encoding: only a single \"chunked\" is accepted",
        ));
    }
    Ok(Framing::Chunked)
}

/// The 413 for a body over `limit` bytes.
pub(crate) fn too_large(limit: usize) -> Reply {
    Reply::error(
        413,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// `1*DIGIT` as a u64 (no sign, no spaces inside, no list), or `None`.
fn content_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> u16 {
        match check(head.as_bytes(), 1024) {
            Check::Refused(reply) => reply.status,
            Check::Complete { .. } => 200,
            Check::Partial => 0,
        }
    }

    #[test]
    fn plain_heads_are_accepted_with_their_framing() {
        let head = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        match check(head.as_bytes(), 1024) {
            Check::Complete { len, framing } => {
                assert_eq!(len, head.len() - 5);
                assert_eq!(framing, Framing::Length(5));
            }
            other => panic!("{other:?}"),
        }
        let chunked = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            check(chunked.as_bytes(), 1024),
            Check::Complete {
                framing: Framing::Chunked,
                ..
            }
        ));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n"), 0, "partial");
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 200);
    }

    #[test]
    fn ambiguous_or_invalid_framing_is_refused() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{head:?}");
        }
    }

    #[test]
    fn declared_bodies_over_the_limit_are_413_before_reading() {
        for length in ["1025", "9000000000000000000", "18446744073709551615"] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
            assert_eq!(status(&head), 413, "{length}");
        }
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 1024\r\n\r\n"),
            200
        );
    }

    #[test]
    fn oversized_heads_are_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(&big), 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    }
}
