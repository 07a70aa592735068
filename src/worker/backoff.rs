//! Capped exponential backoff with full jitter, shared by every worker loop.

use std::time::Duration;

/// Default first backoff ceiling.
pub(crate) const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default largest backoff.
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Counts consecutive failures of one loop and says how long to wait before the next try:
/// a uniform random delay up to `initial * 2^(failures-1)`, capped at `max` (upstream's
/// `DatabaseRetry`).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    /// Records a failure and returns the delay before the next attempt.
    pub(crate) fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(30);
        let ceiling = self.initial.saturating_mul(1 << doublings).min(self.max);
        ceiling.mul_f64(random_fraction())
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A uniform random number in [0, 1), from the 62 random bits of the low half of a v4 UUID
/// (its top two bits are the fixed RFC 4122 variant, so they are masked off).
pub(crate) fn random_fraction() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() as u64) & ((1u64 << 62) - 1);
    (bits >> 9) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let caps = [100, 200, 350, 350];
        for cap in caps {
            let d = b.fail();
            assert!(d <= Duration::from_millis(cap), "{d:?} > {cap}");
        }
        assert_eq!(b.failures(), 4);
        b.reset();
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn random_fraction_spans_the_unit_interval() {
        let samples: Vec<f64> = (0..2000).map(|_| random_fraction()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(samples.iter().any(|x| *x < 0.25));
        assert!(samples.iter().any(|x| *x > 0.75));
    }
}
