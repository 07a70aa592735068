//! Parsers for argument values shared by several commands: durations in (fractional)
//! seconds, RFC 3339 times and JSON objects.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result};

/// Seconds, fractional allowed (`1.5`), not negative. For clap's `value_parser`.
pub(crate) fn seconds(s: &str) -> std::result::Result<Duration, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{s:?} must be a non-negative, finite number of seconds"
        ));
    }
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{s:?} is too many seconds (at most {})", u64::MAX))
}

/// A library default as clap's `default_value` text (`5`, `0.005`), so a flag's default is
/// the library's constant itself, not a copy of its number.
pub(crate) fn seconds_text(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// Whole seconds (`30`): a queue's polling interval and rate-limit window are whole seconds
/// in the table, as upstream's. For clap's `value_parser`.
pub(crate) fn whole_seconds(s: &str) -> std::result::Result<u64, String> {
    s.trim().parse().map_err(|_| {
        format!("{s:?} is not a whole number of seconds (queues keep whole seconds, e.g. 1 or 30)")
    })
}

/// Like [`seconds`], but zero is refused.
pub(crate) fn positive_seconds(s: &str) -> std::result::Result<Duration, String> {
    let d = seconds(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be more than 0 seconds"));
    }
    Ok(d)
}

/// An RFC 3339 time such as `2025-06-01T12:00:00Z` or `2025-06-01T14:00:00+02:00`.
pub(crate) fn rfc3339(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2025-06-01T12:00:00Z ({e})"))
}

/// Parses the value of `--<flag>` as a JSON object, saying where the JSON is wrong.
pub(crate) fn json_object(flag: &str, text: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::invalid_input(format!("--{flag} is not valid JSON: {e} (got {text:?})"))
    })?;
    if !value.is_object() {
        return Err(Error::invalid_input(format!(
            "--{flag} must be a JSON object like '{{\"key\": 1}}', got {value}"
        )));
    }
    Ok(value)
}

/// `d` from now by the database clock (so `--delay` and `--resume-in` mean the same on a
/// machine whose clock is off).
pub(crate) fn from_now(chancy: &crate::Chancy, d: Duration) -> crate::Result<DateTime<Utc>> {
    let now = chancy.database_now()?;
    Ok(now
        .checked_add_signed(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_fractions_and_refuse_negatives() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        assert!(seconds("-1").is_err());
        assert!(seconds("inf").is_err());
        assert!(seconds("soon").is_err());
        assert_eq!(
            seconds("1e300"),
            Err(format!(
                "\"1e300\" is too many seconds (at most {})",
                u64::MAX
            ))
        );
        assert!(positive_seconds("0").is_err());
    }

    #[test]
    fn seconds_text_parses_back_to_the_same_duration() {
        for d in [
            Duration::from_secs(5),
            Duration::from_millis(5),
            Duration::from_secs(90),
        ] {
            assert_eq!(seconds(&seconds_text(d)), Ok(d));
        }
        assert_eq!(seconds_text(Duration::from_secs(20)), "20");
    }

    #[test]
    fn rfc3339_times_are_normalised_to_utc() {
        let t = rfc3339("2025-06-01T14:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-06-01T12:00:00+00:00");
        assert!(rfc3339("tomorrow").is_err());
    }

    #[test]
    fn json_errors_say_where() {
        let err = json_object("kwargs", "{\"a\": }").unwrap_err().to_string();
        assert!(
            err.contains("--kwargs") && err.contains("line 1 column"),
            "{err}"
        );
        let err = json_object("meta", "[1]").unwrap_err().to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
    }
}
