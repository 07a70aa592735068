//! Job ids in Chancy's time-ordered layout (`chancy_uuid`).
//!
//! 128 bits, most significant first: 4 zero bits, 56 bits of 100-ns ticks since the Unix
//! epoch, the nibble `0111`, the bits `10`, then 62 random bits. Postgres compares uuids
//! bytewise, so `ORDER BY id` is creation order across Python and Rust producers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

const TICK_MASK: u64 = 0x00FF_FFFF_FFFF_FFFF;
const RANDOM_MASK: u64 = (1 << 62) - 1;

/// The last tick handed out by this process, so ids made here are strictly increasing even
/// when two are made within the same 100 ns.
static LAST_TICK: AtomicU64 = AtomicU64::new(0);

/// A new job id in Chancy's layout.
///
/// ```
/// let a = chancy::new_job_id();
/// let b = chancy::new_job_id();
/// assert!(a < b);
/// assert_eq!(a.simple().to_string().as_bytes()[15], b'7');
/// ```
pub fn new_job_id() -> Uuid {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_nanos() / 100) as u64)
        .unwrap_or(0)
        & TICK_MASK;
    let tick = next_tick(now);
    let random = (Uuid::new_v4().as_u128() as u64) & RANDOM_MASK;
    Uuid::from_u128(compose(tick, random))
}

fn next_tick(now: u64) -> u64 {
    let mut last = LAST_TICK.load(Ordering::Relaxed);
    loop {
        let tick = if now > last { now } else { last + 1 };
        match LAST_TICK.compare_exchange_weak(last, tick, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return tick & TICK_MASK,
            Err(seen) => last = seen,
        }
    }
}

fn compose(tick: u64, random: u64) -> u128 {
    ((tick as u128) << 68) | (0x7u128 << 64) | (0b10u128 << 62) | random as u128
}

/// The 100-ns tick count stored in a Chancy job id.
#[cfg(test)]
pub(crate) fn tick_of(id: Uuid) -> u64 {
    ((id.as_u128() >> 68) as u64) & TICK_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_python_sample_layout() {
        // Sample from the spec: t = 0x3fcddd7a9fa2a1.
        let id = Uuid::from_u128(compose(0x3fcddd7a9fa2a1, 0x35d25e524cf1d55b & RANDOM_MASK));
        assert_eq!(id.to_string(), "03fcddd7-a9fa-2a17-b5d2-5e524cf1d55b");
        assert_eq!(tick_of(id), 0x3fcddd7a9fa2a1);
    }

    #[test]
    fn ids_are_strictly_increasing_and_carry_the_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            / 100;
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_job_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let hex = ids[0].simple().to_string();
        assert_eq!(&hex[0..1], "0");
        assert_eq!(&hex[15..16], "7");
        assert!("89ab".contains(&hex[16..17]));
        let tick = tick_of(ids[0]) as u128;
        assert!(tick + 10 >= before && tick < before + 10_000_000);
    }
}
