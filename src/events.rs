//! NOTIFY events on `<prefix>events`: names and the exact payload text Python Chancy sends.
//!
//! Payloads are `{"t": <event>, ...}` written like Python's `json.dumps` (separators `", "`
//! and `": "`, non-ASCII escaped), so the bytes on the wire match a Python producer's.

use std::io;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// `queue.pushed {q}`: jobs were pushed to queue `q`.
pub const QUEUE_PUSHED: &str = "queue.pushed";
/// `queue.declared {q}`.
pub const QUEUE_DECLARED: &str = "queue.declared";
/// `queue.paused {q}`.
pub const QUEUE_PAUSED: &str = "queue.paused";
/// `queue.resumed {q}`.
pub const QUEUE_RESUMED: &str = "queue.resumed";
/// `job.cancelled {j}`.
pub const JOB_CANCELLED: &str = "job.cancelled";
/// `job.recovered {j, c}`: the execution of `j` under claim `c` was abandoned.
pub const JOB_RECOVERED: &str = "job.recovered";
/// `worker.announced {worker_id}`.
pub const WORKER_ANNOUNCED: &str = "worker.announced";
/// `leadership.gained {worker_id}`.
pub const LEADERSHIP_GAINED: &str = "leadership.gained";
/// `leadership.renewed {worker_id}`.
pub const LEADERSHIP_RENEWED: &str = "leadership.renewed";
/// `leadership.lost {worker_id}`.
pub const LEADERSHIP_LOST: &str = "leadership.lost";
/// `pruner.removed {elapsed, rows_removed}`.
pub const PRUNER_REMOVED: &str = "pruner.removed";
/// `recovery.recovered {elapsed, rows_recovered}`.
pub const RECOVERY_RECOVERED: &str = "recovery.recovered";
/// `workflow.created {id, name}`.
pub const WORKFLOW_CREATED: &str = "workflow.created";
/// `workflow.updated {id, name}`.
pub const WORKFLOW_UPDATED: &str = "workflow.updated";
/// `workflow.step_completed {workflow_id}`.
pub const WORKFLOW_STEP_COMPLETED: &str = "workflow.step_completed";

/// The payload text for `event` with the keys of `body` (an object; anything else is sent as
/// `{"t": event}` only).
///
/// ```
/// use serde_json::json;
/// let text = chancy::events::payload("queue.pushed", &json!({"q": "default"}));
/// assert_eq!(text, r#"{"t": "queue.pushed", "q": "default"}"#);
/// ```
pub fn payload(event: &str, body: &Value) -> String {
    // Written by hand so that `t` comes first, as in Python's `{"t": event, **body}`, without
    // relying on serde_json's `preserve_order` (the other keys follow in `Map` order).
    let mut text = format!("{{\"t\": {}", python_json(&Value::String(event.into())));
    if let Value::Object(fields) = body {
        for (k, v) in fields.iter().filter(|(k, _)| *k != "t") {
            text.push_str(", ");
            text.push_str(&python_json(&Value::String(k.clone())));
            text.push_str(": ");
            text.push_str(&python_json(v));
        }
    }
    text.push('}');
    text
}

/// Splits a received payload into the event name and the rest of the object.
///
/// # Errors
/// When the text is not a JSON object with a string `t`.
pub fn parse(text: &str) -> Result<(String, Map<String, Value>)> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::json("malformed event payload", e))?;
    let Value::Object(mut object) = value else {
        return Err(Error::invalid_input(format!(
            "malformed event payload (not an object): {text}"
        )));
    };
    match object.remove("t") {
        Some(Value::String(name)) => Ok((name, object)),
        _ => Err(Error::invalid_input(format!(
            "malformed event payload (no string \"t\"): {text}"
        ))),
    }
}

/// `value` as Python's `json.dumps` would write it.
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(64);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a Value into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

/// serde_json formatter reproducing `json.dumps` defaults: `", "`, `": "`, `ensure_ascii`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let text = payload(
            "pruner.removed",
            &json!({"elapsed": 0.5, "rows_removed": 3}),
        );
        assert_eq!(
            text,
            r#"{"t": "pruner.removed", "elapsed": 0.5, "rows_removed": 3}"#
        );
        assert_eq!(python_json(&json!(["a", "é"])), r#"["a", "\u00e9"]"#);
        assert_eq!(python_json(&json!("😀")), r#""\ud83d\ude00""#);
    }

    #[test]
    fn parse_rejects_malformed() {
        let (t, body) = parse(r#"{"t": "queue.pushed", "q": "x"}"#).unwrap();
        assert_eq!(t, "queue.pushed");
        assert_eq!(body["q"], "x");
        assert!(parse("not json").is_err());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"q": 1}"#).is_err());
    }
}
