//! The request and response types the handlers see, decoupled from the HTTP crate: a parsed
//! request (method, decoded path segments, query, headers, body) and a JSON reply. The
//! transport (`conn.rs`) builds a [`Req`] only once the whole body has arrived within the
//! limits, and writes a [`Reply`] with the headers every answer carries.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};

/// A parsed request.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: String,
    /// The raw path, without the query.
    pub path: String,
    /// Percent-decoded query parameters (the last value wins).
    pub query: BTreeMap<String, String>,
    /// The first query parameter (its raw name) whose name or value is not valid
    /// percent-encoded UTF-8; the API refuses such a request with 422 (see [`parse_query`]).
    pub undecodable_query: Option<String>,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub client: Option<IpAddr>,
}

impl Req {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The decoded path segments after `prefix` (e.g. `/api/v1/`), or `None` when the path
    /// does not start with it or a segment is not valid percent-encoding.
    pub fn segments_after(&self, prefix: &str) -> Option<Vec<String>> {
        let rest = self.path.strip_prefix(prefix)?;
        rest.trim_end_matches('/')
            .split('/')
            .map(|s| percent_decode(s, false))
            .collect()
    }

    /// The body as JSON; an empty body reads as `{}`.
    pub fn json(&self) -> Result<Value, Reply> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Reply::error(400, format!("the request body is not valid JSON: {e}")))
    }

    /// Whether the Content-Type is `application/json` (parameters allowed).
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
    }

    /// A query parameter, empty values counting as absent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A response: status, body and extra headers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// `200` with a JSON body.
    pub fn json(value: Value) -> Reply {
        Reply::json_status(200, value)
    }

    /// A JSON body with `status`.
    pub fn json_status(status: u16, value: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// `{"title": message}` with `status` (upstream's error body; its UI shows the title).
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json_status(status, json!({ "title": message.into() }))
    }

    /// A static asset.
    pub fn asset(content_type: &'static str, body: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs (`+` is a space). A pair whose name or value is
/// not valid percent-encoded UTF-8 (`%FF`, `%2`) is left out, and the first one's raw name
/// is returned beside the map so the caller can refuse the request with a message that
/// names it (instead of filtering by the raw text or reporting a confusing parse error).
pub(crate) fn parse_query(query: &str) -> (BTreeMap<String, String>, Option<String>) {
    let mut values = BTreeMap::new();
    let mut undecodable = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(k, true), percent_decode(v, true)) {
            (Some(k), Some(v)) => {
                values.insert(k, v);
            }
            _ => {
                undecodable.get_or_insert_with(|| k.to_string());
            }
        }
    }
    (values, undecodable)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); `None` when an escape
/// is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let (q, bad) = parse_query("func=my%2Eapp+x&limit=5&empty=&flag");
        assert_eq!(bad, None);
        assert_eq!(q["func"], "my.app x");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["empty"], "");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn undecodable_parameters_are_named_not_kept_raw() {
        let (q, bad) = parse_query("state=pending&queue=%FF%FE&func=a%2");
        assert_eq!(bad.as_deref(), Some("queue"));
        assert_eq!(q.get("queue"), None);
        assert_eq!(q.get("func"), None);
        assert_eq!(q["state"], "pending");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(percent_decode("a%2", false), None);
        assert_eq!(percent_decode("a%zz", false), None);
        assert_eq!(percent_decode("a%20b+c", false).as_deref(), Some("a b+c"));
    }
}
