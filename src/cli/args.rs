//! Parsers for argument values shared by several commands: durations in (fractional)
//! seconds, RFC 3339 times and JSON objects.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result};

/// The longest duration any `chancy` flag accepts: 1000 years of 365.25 days. Longer is
/// no schedule anyone means, and every clock and deadline computed from it stays exact.
pub(crate) const MAX_DURATION: Duration = crate::duration::MAX_SETTING;

/// What a duration flag accepts: its unit, its range, and whether fractions are allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    /// Seconds (`false`) or milliseconds (`true`) per unit of the number given.
    millis: bool,
    min: Duration,
    max: Duration,
    /// Only whole units (queues store whole seconds).
    whole: bool,
}

impl Span {
    const fn seconds(min: Duration, max: Duration) -> Span {
        Span {
            millis: false,
            min,
            max,
            whole: false,
        }
    }

    const fn whole_seconds(min: u64, max: u64) -> Span {
        Span {
            millis: false,
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
            whole: true,
        }
    }

    fn unit(&self) -> &'static str {
        if self.millis {
            "milliseconds"
        } else {
            "seconds"
        }
    }

    /// The one parser of every duration flag. The error names what the flag takes and its
    /// range in human units, never an internal limit.
    pub(crate) fn parse(&self, s: &str) -> std::result::Result<Duration, String> {
        let unit = self.unit();
        let allowed = crate::duration::range(self.min, self.max);
        let example = if self.whole { "1 or 30" } else { "30 or 1.5" };
        let kind = if self.whole {
            "a whole number"
        } else {
            "a number"
        };
        let value: f64 = s.trim().parse().map_err(|_| {
            format!("{s:?} is not {kind} of {unit} (e.g. {example}); allowed: {allowed}")
        })?;
        if self.whole && value.is_finite() && value.fract() != 0.0 {
            return Err(format!(
                "{s:?} is not {kind} of {unit} (e.g. {example}); allowed: {allowed}"
            ));
        }
        let secs = if self.millis { value / 1e3 } else { value };
        let d = (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten()
            .filter(|d| (self.min..=self.max).contains(d))
            .ok_or_else(|| format!("{s:?} {unit} is out of range; allowed: {allowed}"))?;
        Ok(d)
    }
}

/// Seconds, fractional allowed (`1.5`), 0 to [`MAX_DURATION`]. For clap's `value_parser`.
pub(crate) fn seconds(s: &str) -> std::result::Result<Duration, String> {
    Span::seconds(Duration::ZERO, MAX_DURATION).parse(s)
}

/// A library default as clap's `default_value` text (`5`, `0.005`), so a flag's default is
/// the library's constant itself, not a copy of its number.
pub(crate) fn seconds_text(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// Like [`seconds`], but at least a millisecond (zero is refused).
pub(crate) fn positive_seconds(s: &str) -> std::result::Result<Duration, String> {
    Span::seconds(Duration::from_millis(1), MAX_DURATION).parse(s)
}

/// A queue's polling interval: whole seconds (as upstream's table keeps them), 1 second to
/// 1 day (the bound [`Queue::validate`](crate::Queue::validate) applies).
pub(crate) fn polling_interval(s: &str) -> std::result::Result<u64, String> {
    Span::whole_seconds(1, crate::queue::MAX_POLLING_INTERVAL_SECS)
        .parse(s)
        .map(|d| d.as_secs())
}

/// A queue's rate-limit window: whole seconds, 1 second to 1 week.
pub(crate) fn rate_limit_window(s: &str) -> std::result::Result<u64, String> {
    Span::whole_seconds(1, crate::queue::MAX_RATE_LIMIT_WINDOW_SECS)
        .parse(s)
        .map(|d| d.as_secs())
}

/// `chancy bench --seconds`: whole seconds, 1 second to 1 hour.
pub(crate) fn bench_seconds(s: &str) -> std::result::Result<u64, String> {
    Span::whole_seconds(1, 3600).parse(s).map(|d| d.as_secs())
}

/// `chancy bench --idle-seconds`: whole seconds, 0 (no idle run) to 1 day.
pub(crate) fn idle_seconds(s: &str) -> std::result::Result<u64, String> {
    Span::whole_seconds(0, 86_400).parse(s).map(|d| d.as_secs())
}

/// `chancy bench --sleep`: whole milliseconds, 0 to 1 hour.
pub(crate) fn sleep_millis(s: &str) -> std::result::Result<u64, String> {
    Span {
        millis: true,
        ..Span::whole_seconds(0, 3600)
    }
    .parse(s)
    .map(|d| d.as_millis() as u64)
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
        let thousand_years = "0 seconds to 1000 years (31557600000 seconds)";
        for huge in ["1e20", "1e300", "31557600001", "18446744073709551616"] {
            assert_eq!(
                seconds(huge),
                Err(format!(
                    "{huge:?} seconds is out of range; allowed: {thousand_years}"
                ))
            );
        }
        assert_eq!(seconds("31557600000"), Ok(MAX_DURATION));
        assert_eq!(
            seconds("-1"),
            Err(format!(
                "\"-1\" seconds is out of range; allowed: {thousand_years}"
            ))
        );
        assert_eq!(
            positive_seconds("0"),
            Err(
                "\"0\" seconds is out of range; allowed: 1 millisecond to 1000 years \
                 (31557600000 seconds)"
                    .into()
            )
        );
    }

    #[test]
    fn whole_and_millisecond_flags_say_their_range() {
        assert_eq!(polling_interval("30"), Ok(30));
        assert_eq!(
            polling_interval("1e20"),
            Err(
                "\"1e20\" seconds is out of range; allowed: 1 second to 1 day (86400 seconds)"
                    .into()
            )
        );
        assert_eq!(
            polling_interval("1.5"),
            Err(
                "\"1.5\" is not a whole number of seconds (e.g. 1 or 30); allowed: 1 second \
                 to 1 day (86400 seconds)"
                    .into()
            )
        );
        assert!(polling_interval("0").unwrap_err().contains("out of range"));
        assert!(rate_limit_window("604801")
            .unwrap_err()
            .ends_with("allowed: 1 second to 1 week (604800 seconds)"));
        assert_eq!(sleep_millis("250"), Ok(250));
        assert_eq!(
            sleep_millis("1e20"),
            Err("\"1e20\" milliseconds is out of range; allowed: 0 seconds to 1 hour (3600 seconds)".into())
        );
        assert_eq!(bench_seconds("3600"), Ok(3600));
        assert!(bench_seconds("3601")
            .unwrap_err()
            .contains("1 second to 1 hour"));
        assert_eq!(idle_seconds("0"), Ok(0));
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
