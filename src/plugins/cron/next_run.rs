//! Cron expressions and the next run time in an IANA time zone, with upstream's DST rules.
//!
//! `croner` matches the expression against *wall-clock* times (evaluated in UTC, which has
//! no DST); this module maps each wall-clock match to real instants in the schedule's zone
//! the way Python Chancy 0.26.0 (and Vixie/Debian cron) does:
//!
//! * a **fixed-time** expression (neither the minute nor the hour field starts with `*`)
//!   fires once for a repeated local time (the first pass) and, for a local time skipped
//!   by a DST gap, once at the end of the gap;
//! * a **wildcard** expression matches the local clock: skipped times do not run, repeated
//!   times run in both passes.

use chrono::{
    DateTime, Datelike, Duration as TimeDelta, LocalResult, NaiveDateTime, TimeZone, Utc,
};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{Error, Result};

/// How far ahead a usable occurrence is searched for, like upstream.
const MAX_YEARS: i32 = 50;
/// Larger than any DST shift (Antarctica/Troll moves 2 h): wall-clock matches this far
/// before "now" can still be in the future, and matches this far after the best one found
/// cannot be earlier.
const SHIFT_MARGIN: TimeDelta = TimeDelta::hours(4);

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub(crate) struct CronExpr {
    cron: croner::Cron,
    fixed_time: bool,
}

impl CronExpr {
    /// Parses a 5-field expression (`m h dom mon dow`), a croniter-style 6-field one with
    /// seconds last, or a nickname (`@hourly`, `@daily`, `@midnight`, `@weekly`,
    /// `@monthly`, `@yearly`, `@annually`).
    ///
    /// # Errors
    /// An invalid-input error saying what is wrong with the expression.
    pub(crate) fn parse(expr: &str) -> Result<CronExpr> {
        let expanded = expand_nickname(expr.trim());
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (pattern, seconds) = match fields.len() {
            5 => (fields.join(" "), Seconds::Disallowed),
            // croniter puts the seconds last; croner wants them first.
            6 => (
                format!("{} {}", fields[5], fields[..5].join(" ")),
                Seconds::Required,
            ),
            n => {
                return Err(Error::invalid_input(format!(
                    "invalid cron expression {expr:?}: expected 5 fields (minute hour \
                     day-of-month month day-of-week), got {n}"
                )))
            }
        };
        let cron = CronParser::builder()
            .seconds(seconds)
            .year(Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(&pattern)
            .map_err(|e| Error::invalid_input(format!("invalid cron expression {expr:?}: {e}")))?;
        let fixed_time = !(fields[0].starts_with('*') || fields[1].starts_with('*'));
        Ok(CronExpr { cron, fixed_time })
    }

    /// Whether upstream treats this as a fixed-time job for DST purposes.
    #[cfg(test)]
    pub(crate) fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// The first instant strictly after `now` at which the expression fires in `tz`.
    ///
    /// # Errors
    /// An invalid-input error when nothing matches within 50 years.
    pub(crate) fn next_run(&self, now: DateTime<Utc>, tz: Tz) -> Result<DateTime<Utc>> {
        let local_now = now.with_timezone(&tz).naive_local();
        let limit_year = local_now.year() + MAX_YEARS;
        let mut wall = local_now - SHIFT_MARGIN;
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        loop {
            let next = self
                .cron
                .find_next_occurrence(&wall.and_utc(), false)
                .map_err(|e| self.no_occurrence(e.to_string()))?
                .naive_utc();
            if let Some((_, best_wall)) = best {
                if next > best_wall + SHIFT_MARGIN {
                    break;
                }
            }
            if next.year() > limit_year {
                if best.is_some() {
                    break;
                }
                return Err(
                    self.no_occurrence(format!("no usable occurrence within {MAX_YEARS} years"))
                );
            }
            for instant in self.instants(next, tz) {
                if instant > now && best.map_or(true, |(b, _)| instant < b) {
                    best = Some((instant, next));
                }
            }
            wall = next;
        }
        best.map(|(b, _)| b)
            .ok_or_else(|| self.no_occurrence("no usable occurrence".into()))
    }

    /// The instants a wall-clock match stands for in `tz`, per the DST rules.
    fn instants(&self, wall: NaiveDateTime, tz: Tz) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                if self.fixed_time {
                    vec![a.min(b)]
                } else {
                    vec![a.min(b), a.max(b)]
                }
            }
            LocalResult::None if self.fixed_time => vec![end_of_gap(wall, tz)],
            LocalResult::None => Vec::new(),
        }
    }

    fn no_occurrence(&self, why: String) -> Error {
        Error::invalid_input(format!("cron expression {}: {why}", self.cron.pattern))
    }
}

/// The first instant whose local time is at or after `wall`, a local time inside a gap:
/// the moment the clock jumps forward.
fn end_of_gap(wall: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    // Interpreted as UTC shifted by any offset of the day, `wall` lies within a day of the
    // jump; search that window for the first instant whose local time is >= wall.
    let mut lo = (wall - TimeDelta::days(1)).and_utc();
    let mut hi = (wall + TimeDelta::days(1)).and_utc();
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    while hi - lo > TimeDelta::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if local(mid) >= wall {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Expands croniter's nicknames to 5-field expressions (so the fixed-time rule sees the
/// fields upstream sees: `@daily` is fixed-time, `@hourly` is not).
fn expand_nickname(expr: &str) -> String {
    let lower = expr.to_ascii_lowercase();
    let expanded = match lower.as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return expr.to_string(),
    };
    expanded.to_string()
}

/// Parses an IANA time-zone name.
///
/// # Errors
/// An invalid-input error for an unknown name.
pub(crate) fn parse_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>()
        .map_err(|_| Error::invalid_input(format!("unknown IANA time zone {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, now: &str, tz: &str) -> DateTime<Utc> {
        CronExpr::parse(expr)
            .unwrap()
            .next_run(utc(now), parse_zone(tz).unwrap())
            .unwrap()
    }

    #[test]
    fn utc_schedules_are_plain() {
        assert_eq!(
            next("*/5 * * * *", "2026-01-01T10:02:00Z", "Etc/UTC"),
            utc("2026-01-01T10:05:00Z")
        );
        assert_eq!(
            next("0 9 * * *", "2026-01-01T09:00:00Z", "Etc/UTC"),
            utc("2026-01-02T09:00:00Z"),
            "strictly after now"
        );
        assert_eq!(
            next("@daily", "2026-01-01T09:00:00Z", "Etc/UTC"),
            utc("2026-01-02T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * * 7", "2026-01-01T00:00:00Z", "Etc/UTC"),
            utc("2026-01-04T00:00:00Z"),
            "7 is Sunday, as in croniter"
        );
    }

    #[test]
    fn local_time_is_kept_across_seasons() {
        // 09:00 in New York is 14:00Z in winter and 13:00Z in summer.
        assert_eq!(
            next("0 9 * * *", "2026-01-10T00:00:00Z", "America/New_York"),
            utc("2026-01-10T14:00:00Z")
        );
        assert_eq!(
            next("0 9 * * *", "2026-07-10T00:00:00Z", "America/New_York"),
            utc("2026-07-10T13:00:00Z")
        );
    }

    #[test]
    fn fixed_time_in_a_gap_runs_once_at_the_end_of_the_gap() {
        // 2026-03-08: New York skips 02:00-03:00 (EST -5 → EDT -4).
        let at = next("30 2 * * *", "2026-03-08T05:00:00Z", "America/New_York");
        assert_eq!(at, utc("2026-03-08T07:00:00Z"), "03:00 EDT");
        let after = next("30 2 * * *", "2026-03-08T07:00:00Z", "America/New_York");
        assert_eq!(after, utc("2026-03-09T06:30:00Z"), "02:30 EDT the next day");
    }

    #[test]
    fn fixed_time_in_a_repeated_hour_runs_once() {
        // 2026-11-01: New York repeats 01:00-02:00 (EDT -4, then EST -5).
        let first = next("30 1 * * *", "2026-11-01T04:00:00Z", "America/New_York");
        assert_eq!(
            first,
            utc("2026-11-01T05:30:00Z"),
            "01:30 EDT, the first pass"
        );
        let second = next("30 1 * * *", "2026-11-01T05:30:00Z", "America/New_York");
        assert_eq!(second, utc("2026-11-02T06:30:00Z"), "not 01:30 EST again");
    }

    #[test]
    fn wildcards_follow_the_local_clock() {
        let tz = "America/New_York";
        // Repeated hour: both passes run.
        assert_eq!(
            next("*/30 * * * *", "2026-11-01T05:30:00Z", tz),
            utc("2026-11-01T06:00:00Z"),
            "01:30 EDT → 01:00 EST"
        );
        assert_eq!(
            next("*/30 * * * *", "2026-11-01T06:00:00Z", tz),
            utc("2026-11-01T06:30:00Z")
        );
        // Gap: skipped times do not run.
        assert_eq!(
            next("*/30 * * * *", "2026-03-08T06:30:00Z", tz),
            utc("2026-03-08T07:00:00Z"),
            "01:30 EST → 03:00 EDT"
        );
        assert_eq!(
            next("*/15 2 * * *", "2026-03-08T06:00:00Z", tz),
            utc("2026-03-09T06:00:00Z"),
            "a job only inside the gap does not run that day"
        );
    }

    #[test]
    fn classification_follows_upstream() {
        for (expr, fixed) in [
            ("30 2 * * *", true),
            ("0 0/2 * * *", true),
            ("0 2,14 * * 1-5", true),
            ("@daily", true),
            ("0 * * * *", false),
            ("*/15 2 * * *", false),
            ("@hourly", false),
        ] {
            assert_eq!(
                CronExpr::parse(expr).unwrap().is_fixed_time(),
                fixed,
                "{expr}"
            );
        }
    }

    #[test]
    fn bad_expressions_and_zones_are_clear_errors() {
        for bad in ["", "* * *", "61 * * * *", "a b c d e", "* * * * * * *"] {
            let err = CronExpr::parse(bad).unwrap_err();
            assert!(err.is_invalid_input(), "{bad}");
            assert!(err.to_string().contains("cron expression"), "{err}");
        }
        assert!(parse_zone("Mars/Olympus").unwrap_err().is_invalid_input());
        let never = CronExpr::parse("0 0 30 2 *").unwrap();
        assert!(never.next_run(Utc::now(), Tz::UTC).is_err());
    }
}
