//! Durations in messages: the one way a range of durations is said in human units
//! ("1 second to 1 day"), used by the CLI's duration parser and the library's bounds.

use std::time::{Duration, Instant};

/// The longest duration any setting or flag accepts: 1000 years of 365.25 days (the CLI's
/// duration flags and the worker builder's intervals and timeouts).
pub(crate) const MAX_SETTING: Duration = Duration::from_secs(1000 * YEAR);

/// `from + after`, saturating: a duration too long for the clock (a setting of centuries,
/// a time limit of 2^63 seconds in a row another client wrote) gives a deadline about a
/// century away instead of the panic `Instant + Duration` raises on overflow. Every
/// deadline the crate computes from a configured or stored duration goes through here.
pub(crate) fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(FAR))
        .unwrap_or(from)
}

/// About a century: the horizon of a saturated [`deadline`].
const FAR: Duration = Duration::from_secs(100 * YEAR);

/// Seconds read from the database or a row (`EXTRACT(EPOCH …)`, a float another client
/// wrote) as a duration: NaN and negatives are zero, infinities and values past
/// [`MAX_SETTING`] are [`MAX_SETTING`] (`Duration::from_secs_f64` panics on those).
pub(crate) fn from_secs_lossy(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).map_or(MAX_SETTING, |d| d.min(MAX_SETTING))
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
/// A year of 365.25 days.
const YEAR: u64 = 31_557_600;

/// `d` in the largest unit that states it exactly: `0 seconds`, `1.5 seconds`,
/// `250 milliseconds`, `30 minutes`, `1 day`, `1 week`, `1000 years`.
pub(crate) fn human(d: Duration) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d.subsec_nanos() != 0 {
        if d < Duration::from_secs(1) && d.subsec_nanos() % 1_000_000 == 0 {
            return plural(u64::from(d.subsec_millis()), "millisecond");
        }
        return format!("{} seconds", d.as_secs_f64());
    }
    let s = d.as_secs();
    match s {
        0 => "0 seconds".into(),
        s if s % YEAR == 0 => plural(s / YEAR, "year"),
        s if s % WEEK == 0 => plural(s / WEEK, "week"),
        s if s % DAY == 0 => plural(s / DAY, "day"),
        s if s % HOUR == 0 => plural(s / HOUR, "hour"),
        s if s % MINUTE == 0 => plural(s / MINUTE, "minute"),
        s => plural(s, "second"),
    }
}

/// `1 second to 1 day (86400 seconds)`: a range for an error message, with the upper bound
/// also in seconds when that is not its unit already.
pub(crate) fn range(min: Duration, max: Duration) -> String {
    let upper = human(max);
    if max.as_secs() >= MINUTE && max.subsec_nanos() == 0 {
        format!("{} to {upper} ({} seconds)", human(min), max.as_secs())
    } else {
        format!("{} to {upper}", human(min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = deadline(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(50 * YEAR), "{far:?}");
        assert_eq!(deadline(now, Duration::from_secs(u64::MAX)), far);
    }

    #[test]
    fn seconds_from_the_database_never_panic() {
        assert_eq!(from_secs_lossy(f64::NAN), Duration::ZERO);
        assert_eq!(from_secs_lossy(-3.0), Duration::ZERO);
        assert_eq!(from_secs_lossy(1.5), Duration::from_millis(1500));
        assert_eq!(from_secs_lossy(f64::INFINITY), MAX_SETTING);
        assert_eq!(from_secs_lossy(1e300), MAX_SETTING);
    }

    #[test]
    fn durations_read_in_the_largest_exact_unit() {
        let s = Duration::from_secs;
        assert_eq!(human(Duration::ZERO), "0 seconds");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 seconds");
        assert_eq!(human(Duration::from_millis(250)), "250 milliseconds");
        assert_eq!(human(s(1)), "1 second");
        assert_eq!(human(s(90)), "90 seconds");
        assert_eq!(human(s(1800)), "30 minutes");
        assert_eq!(human(s(86_400)), "1 day");
        assert_eq!(human(s(604_800)), "1 week");
        assert_eq!(human(s(1000 * YEAR)), "1000 years");
        assert_eq!(range(s(1), s(86_400)), "1 second to 1 day (86400 seconds)");
        assert_eq!(range(Duration::ZERO, s(30)), "0 seconds to 30 seconds");
    }
}
