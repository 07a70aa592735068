//! The in-memory buffer of observations: one bucket per (key, resolution, bucket start,
//! session, worker), accumulated as upstream does, with dirty tracking for flushes.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::{MetricType, Resolution, CHUNK_SIZE};

/// Start (Unix seconds) of the `seconds`-wide bucket holding `ts`.
pub(crate) fn bucket_start(ts: i64, seconds: i64) -> i64 {
    ts.div_euclid(seconds) * seconds
}

/// Start (Unix seconds) of the chunk of [`CHUNK_SIZE`] buckets holding bucket `bucket`.
pub(crate) fn chunk_start(bucket: i64, seconds: i64) -> i64 {
    bucket_start(bucket, seconds * CHUNK_SIZE)
}

/// Unix seconds as a UTC timestamp (out-of-range values clamp to the epoch).
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// Identifies one bucket of one series of one worker session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BucketKey {
    pub key: String,
    pub seconds: i64,
    pub bucket: i64,
    pub session: Uuid,
    pub worker_id: String,
}

impl BucketKey {
    /// The chunk row this bucket is stored in.
    pub fn chunk(&self) -> ChunkKey {
        ChunkKey {
            key: self.key.clone(),
            seconds: self.seconds,
            chunk: chunk_start(self.bucket, self.seconds),
            session: self.session,
            worker_id: self.worker_id.clone(),
        }
    }
}

/// Identifies one row of the metrics table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChunkKey {
    pub key: String,
    pub seconds: i64,
    pub chunk: i64,
    pub session: Uuid,
    pub worker_id: String,
}

/// The accumulated observations of one bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    pub kind: MetricType,
    pub unit: String,
    pub count: i64,
    pub total: f64,
    pub minimum: f64,
    pub maximum: f64,
    /// The last value recorded (what a gauge stores).
    pub value: f64,
    pub sampled_at: DateTime<Utc>,
    /// Bumped on every change, so a flush clears only what it wrote.
    pub version: u64,
}

/// Why an observation was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    Invalid,
    Conflict,
    Full,
    Overflow,
}

/// Who recorded an observation: a worker session, or the plugin's own session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub session: Uuid,
    pub worker_id: String,
}

/// A snapshot of the dirty chunks, every bucket of each (dirty or not), in key order.
pub(crate) type Snapshot = BTreeMap<ChunkKey, Vec<(BucketKey, Bucket)>>;

/// The buffer. Not thread-safe by itself; the plugin holds it under a mutex.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    buckets: HashMap<BucketKey, Bucket>,
    dirty: HashSet<BucketKey>,
    types: HashMap<String, (MetricType, String)>,
    next_version: u64,
}

/// Upstream's validation: key 1–1024 bytes, unit 1–64 characters, neither with NUL, a finite value.
pub(crate) fn is_valid(key: &str, unit: &str, value: f64) -> bool {
    let key_ok = !key.is_empty() && key.len() <= 1024 && !key.contains('\0');
    let units = unit.chars().count();
    let unit_ok = (1..=64).contains(&units) && !unit.contains('\0');
    key_ok && unit_ok && value.is_finite()
}

impl Buffer {
    /// Records one observation at `now` in every resolution's bucket.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        key: &str,
        value: f64,
        kind: MetricType,
        unit: &str,
        origin: &Origin,
        now: DateTime<Utc>,
        max_points: usize,
    ) -> Result<(), Rejected> {
        self.record_many(key, &[value], kind, unit, origin, now, max_points)
    }

    /// Records several observations of one metric at `now`: the same buckets as recording
    /// them one by one in this order, with the keys built and hashed once. All or nothing:
    /// one invalid value rejects the call.
    #[allow(clippy::too_many_arguments)]
    pub fn record_many(
        &mut self,
        key: &str,
        values: &[f64],
        kind: MetricType,
        unit: &str,
        origin: &Origin,
        now: DateTime<Utc>,
        max_points: usize,
    ) -> Result<(), Rejected> {
        let Some(&last) = values.last() else {
            return Ok(());
        };
        if values.iter().any(|v| !is_valid(key, unit, *v)) {
            return Err(Rejected::Invalid);
        }
        if let Some((k, u)) = self.types.get(key) {
            if *k != kind || u != unit {
                return Err(Rejected::Conflict);
            }
        }
        let keys: Vec<BucketKey> = Resolution::ALL
            .iter()
            .map(|r| BucketKey {
                key: key.to_string(),
                seconds: r.seconds(),
                bucket: bucket_start(now.timestamp(), r.seconds()),
                session: origin.session,
                worker_id: origin.worker_id.clone(),
            })
            .collect();
        let new = keys
            .iter()
            .filter(|k| !self.buckets.contains_key(*k))
            .count();
        if self.buckets.len() + new > max_points {
            return Err(Rejected::Full);
        }
        let fresh = |value: f64| Bucket {
            kind,
            unit: unit.to_string(),
            count: 1,
            total: value,
            minimum: value,
            maximum: value,
            value,
            sampled_at: now,
            version: 0,
        };
        let mut updates = Vec::with_capacity(keys.len());
        for k in keys {
            let point = match self.buckets.get(&k) {
                Some(old) if kind != MetricType::Gauge => {
                    let total = values.iter().fold(old.total, |t, v| t + v);
                    if !total.is_finite() {
                        return Err(Rejected::Overflow);
                    }
                    Bucket {
                        count: old.count + values.len() as i64,
                        total,
                        minimum: values.iter().fold(old.minimum, |m, v| m.min(*v)),
                        maximum: values.iter().fold(old.maximum, |m, v| m.max(*v)),
                        value: last,
                        sampled_at: now,
                        ..old.clone()
                    }
                }
                _ if kind == MetricType::Gauge => fresh(last),
                _ => {
                    let total: f64 = values.iter().sum();
                    if !total.is_finite() {
                        return Err(Rejected::Overflow);
                    }
                    Bucket {
                        count: values.len() as i64,
                        total,
                        minimum: values.iter().copied().fold(f64::INFINITY, f64::min),
                        maximum: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        ..fresh(last)
                    }
                }
            };
            updates.push((k, point));
        }
        self.types.insert(key.to_string(), (kind, unit.to_string()));
        for (k, mut point) in updates {
            self.next_version += 1;
            point.version = self.next_version;
            self.dirty.insert(k.clone());
            self.buckets.insert(k, point);
        }
        Ok(())
    }

    /// Number of buffered buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// The bucket for `key`, if buffered.
    #[cfg(test)]
    pub fn get(&self, key: &BucketKey) -> Option<&Bucket> {
        self.buckets.get(key)
    }

    /// Every chunk with at least one dirty bucket, with all of its buffered buckets
    /// (a chunk row is replaced as a whole), buckets in ascending order.
    pub fn snapshot(&self) -> Snapshot {
        let chunks: HashSet<ChunkKey> = self.dirty.iter().map(BucketKey::chunk).collect();
        let mut out = Snapshot::new();
        for (k, b) in &self.buckets {
            let chunk = k.chunk();
            if chunks.contains(&chunk) {
                out.entry(chunk).or_default().push((k.clone(), b.clone()));
            }
        }
        for points in out.values_mut() {
            points.sort_by_key(|(k, _)| k.bucket);
        }
        out
    }

    /// Marks the written buckets clean, unless they changed since the snapshot.
    pub fn written(&mut self, points: &[(BucketKey, Bucket)]) {
        for (k, b) in points {
            if self
                .buckets
                .get(k)
                .is_some_and(|now| now.version == b.version)
            {
                self.dirty.remove(k);
            }
        }
    }

    /// Drops buckets that can no longer matter: expired ones, and clean ones whose chunk is
    /// closed or whose session ended. `retention` gives seconds kept per resolution width.
    pub fn prune(
        &mut self,
        now: DateTime<Utc>,
        retention: impl Fn(i64) -> i64,
        active: &HashSet<Uuid>,
    ) {
        let now = now.timestamp();
        let dirty = &self.dirty;
        let mut dropped = Vec::new();
        self.buckets.retain(|k, _| {
            let expired = k.bucket.saturating_add(retention(k.seconds)) <= now;
            let closed = chunk_start(k.bucket, k.seconds) + k.seconds * CHUNK_SIZE <= now;
            let keep =
                !expired && !((closed || !active.contains(&k.session)) && !dirty.contains(k));
            if !keep {
                dropped.push(k.clone());
            }
            keep
        });
        for k in dropped {
            self.dirty.remove(&k);
        }
        let live: HashSet<&str> = self.buckets.keys().map(|k| k.key.as_str()).collect();
        self.types.retain(|k, _| live.contains(k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            session: Uuid::nil(),
            worker_id: "w".into(),
        }
    }

    fn key(name: &str, seconds: i64, bucket: i64) -> BucketKey {
        BucketKey {
            key: name.into(),
            seconds,
            bucket,
            session: Uuid::nil(),
            worker_id: "w".into(),
        }
    }

    #[test]
    fn record_many_equals_recording_one_by_one() {
        let now = at(1_000_000_123);
        for kind in [
            MetricType::Counter,
            MetricType::Histogram,
            MetricType::Gauge,
        ] {
            let (mut one, mut many) = (Buffer::default(), Buffer::default());
            let values = [3.0, 1.0, 2.5];
            // An existing bucket first, then a batch on top of it.
            for b in [&mut one, &mut many] {
                b.record("m", 7.0, kind, "u", &origin(), now, 100).unwrap();
            }
            for v in values {
                one.record("m", v, kind, "u", &origin(), now, 100).unwrap();
            }
            many.record_many("m", &values, kind, "u", &origin(), now, 100)
                .unwrap();
            many.record_many("fresh", &values, kind, "u", &origin(), now, 100)
                .unwrap();
            for v in values {
                one.record("fresh", v, kind, "u", &origin(), now, 100)
                    .unwrap();
            }
            for name in ["m", "fresh"] {
                let k = key(name, 60, bucket_start(now.timestamp(), 60));
                let (a, b) = (one.get(&k).unwrap(), many.get(&k).unwrap());
                assert_eq!(
                    (a.count, a.total, a.minimum, a.maximum, a.value),
                    (b.count, b.total, b.minimum, b.maximum, b.value),
                    "{kind:?} {name}"
                );
            }
            assert_eq!(one.len(), many.len());
        }
        let mut b = Buffer::default();
        assert_eq!(
            b.record_many(
                "m",
                &[1.0, f64::NAN],
                MetricType::Counter,
                "u",
                &origin(),
                now,
                100
            ),
            Err(Rejected::Invalid)
        );
        assert_eq!(b.len(), 0, "nothing recorded from a rejected call");
    }

    #[test]
    fn buckets_and_chunks_align_to_their_width() {
        assert_eq!(bucket_start(1_000_000_123, 60), 1_000_000_080);
        assert_eq!(bucket_start(1_000_000_123, 86_400), 999_993_600);
        assert_eq!(bucket_start(-1, 60), -60);
        // A chunk spans 12 buckets: 12 minutes at the 1-minute resolution.
        assert_eq!(1_000_000_080 % 720, 0, "a chunk boundary");
        assert_eq!(chunk_start(1_000_000_080, 60), 1_000_000_080);
        assert_eq!(chunk_start(1_000_000_080 + 11 * 60, 60), 1_000_000_080);
        assert_eq!(chunk_start(1_000_000_080 + 12 * 60, 60), 1_000_000_800);
        assert_eq!(chunk_start(1_000_000_080 - 60, 60), 1_000_000_080 - 720);
        assert_eq!(chunk_start(3600 * 13, 3600), 3600 * 12);
        assert_eq!(chunk_start(3600 * 11, 3600), 0);
    }

    #[test]
    fn histograms_accumulate_in_every_resolution() {
        let mut b = Buffer::default();
        let now = at(1_000_000_123);
        for v in [2.0, 5.0, 1.0] {
            b.record(
                "h",
                v,
                MetricType::Histogram,
                "seconds",
                &origin(),
                now,
                100,
            )
            .unwrap();
        }
        assert_eq!(b.len(), 4, "one bucket per resolution");
        for r in Resolution::ALL {
            let s = r.seconds();
            let got = b.get(&key("h", s, bucket_start(1_000_000_123, s))).unwrap();
            assert_eq!(
                (got.count, got.total, got.minimum, got.maximum),
                (3, 8.0, 1.0, 5.0)
            );
        }
    }

    #[test]
    fn counters_sum_and_gauges_keep_the_last_value() {
        let mut b = Buffer::default();
        let t0 = at(600);
        let t1 = at(610);
        b.record("c", 2.0, MetricType::Counter, "count", &origin(), t0, 100)
            .unwrap();
        b.record("c", 3.0, MetricType::Counter, "count", &origin(), t1, 100)
            .unwrap();
        b.record("g", 7.0, MetricType::Gauge, "bytes", &origin(), t0, 100)
            .unwrap();
        b.record("g", 4.0, MetricType::Gauge, "bytes", &origin(), t1, 100)
            .unwrap();
        let c = b.get(&key("c", 60, 600)).unwrap();
        assert_eq!((c.count, c.total), (2, 5.0));
        let g = b.get(&key("g", 60, 600)).unwrap();
        assert_eq!((g.value, g.count, g.sampled_at), (4.0, 1, t1));
        // The next minute is a new bucket; the 5-minute bucket keeps accumulating.
        b.record(
            "c",
            1.0,
            MetricType::Counter,
            "count",
            &origin(),
            at(660),
            100,
        )
        .unwrap();
        assert_eq!(b.get(&key("c", 60, 660)).unwrap().total, 1.0);
        assert_eq!(b.get(&key("c", 300, 600)).unwrap().total, 6.0);
    }

    #[test]
    fn invalid_conflicting_and_overflowing_observations_are_rejected() {
        let mut b = Buffer::default();
        let now = at(0);
        let o = origin();
        let big = "k".repeat(1025);
        assert_eq!(
            b.record(&big, 1.0, MetricType::Counter, "count", &o, now, 100),
            Err(Rejected::Invalid)
        );
        assert_eq!(
            b.record("k", f64::NAN, MetricType::Counter, "count", &o, now, 100),
            Err(Rejected::Invalid)
        );
        assert_eq!(
            b.record("k", 1.0, MetricType::Counter, "", &o, now, 100),
            Err(Rejected::Invalid)
        );
        b.record("k", 1.0, MetricType::Counter, "count", &o, now, 100)
            .unwrap();
        assert_eq!(
            b.record("k", 1.0, MetricType::Gauge, "count", &o, now, 100),
            Err(Rejected::Conflict)
        );
        assert_eq!(
            b.record("k", 1.0, MetricType::Counter, "bytes", &o, now, 100),
            Err(Rejected::Conflict)
        );
        assert_eq!(
            b.record("k", f64::MAX, MetricType::Counter, "count", &o, now, 100),
            Ok(())
        );
        assert_eq!(
            b.record("k", f64::MAX, MetricType::Counter, "count", &o, now, 100),
            Err(Rejected::Overflow)
        );
        assert_eq!(
            b.record("other", 1.0, MetricType::Counter, "count", &o, now, 6),
            Err(Rejected::Full),
            "4 buffered + 4 new buckets exceed 6"
        );
    }

    #[test]
    fn snapshots_hold_whole_chunks_and_writes_clear_only_unchanged_buckets() {
        let mut b = Buffer::default();
        let o = origin();
        b.record("c", 1.0, MetricType::Counter, "count", &o, at(0), 100)
            .unwrap();
        b.record("c", 1.0, MetricType::Counter, "count", &o, at(60), 100)
            .unwrap();
        let snap = b.snapshot();
        assert_eq!(snap.len(), 4, "one chunk per resolution");
        let minute = snap.iter().find(|(k, _)| k.seconds == 60).unwrap().1;
        let buckets: Vec<i64> = minute.iter().map(|(k, _)| k.bucket).collect();
        assert_eq!(buckets, vec![0, 60], "ascending buckets of one chunk");
        // A change after the snapshot keeps that bucket dirty.
        b.record("c", 1.0, MetricType::Counter, "count", &o, at(61), 100)
            .unwrap();
        for points in snap.values() {
            b.written(points);
        }
        let again = b.snapshot();
        let minute = again.iter().find(|(k, _)| k.seconds == 60).unwrap().1;
        assert_eq!(minute.len(), 2, "the chunk is rewritten whole");
        assert_eq!(again.len(), 4);
        for points in again.values() {
            b.written(points);
        }
        assert!(b.snapshot().is_empty());
        // Clean buckets of closed chunks or ended sessions are pruned.
        b.prune(at(12 * 60 + 1), |_| i64::MAX, &HashSet::from([Uuid::nil()]));
        assert_eq!(b.len(), 3, "the 1-minute chunk closed");
        b.prune(at(12 * 60 + 1), |_| i64::MAX, &HashSet::new());
        assert_eq!(b.len(), 0);
    }
}
