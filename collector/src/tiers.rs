//! Downsampling: a tier folds samples into fixed-width time buckets holding each series' min, avg
//! and max, and keeps the closed buckets in a [`Ring`]. Plain state: the caller passes the
//! sample's own time; nothing here reads a clock.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ring::{Ring, Tok};

/// A series key (`cpu.busy`, `fs.used|/`), shared: a thin pointer (8 bytes, where an `Key`
/// takes 16) to the one copy [`Keys`] holds, compared and hashed as the string (issue #9).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(Arc<String>);

impl Key {
    /// Whether both are the same copy.
    pub fn ptr_eq(a: &Key, b: &Key) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key(Arc::new(s.to_string()))
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key(Arc::new(s))
    }
}

/// Series keys shared by every open bucket of every host (`cpu.busy`, `fs.used|/`): a fleet
/// sends the same few dozen, so a bucket holds a pointer to its series' names, not a copy
/// (issue #9).
#[derive(Debug, Default)]
pub struct Keys {
    keys: HashSet<Key>,
    /// How many were held when those no bucket holds were last dropped.
    kept: usize,
}

impl Keys {
    /// The shared copy of `key`.
    pub fn get(&mut self, key: &str) -> Key {
        if let Some(k) = self.keys.get(key) {
            return k.clone();
        }
        // Keys no bucket holds any longer (a probe's target changed) are dropped once the set
        // has doubled, so that it stays within twice what is in use.
        if self.keys.len() >= 2 * self.kept.max(512) {
            self.keys.retain(|k| Arc::strong_count(&k.0) > 1);
            self.kept = self.keys.len();
        }
        let k: Key = key.into();
        self.keys.insert(k.clone());
        k
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One series' aggregate in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Agg {
    min: i64,
    max: i64,
    sum: Sum,
    /// Samples folded in; 0 for a series of an earlier bucket that has none in this one. At
    /// `u32::MAX` a bucket takes no more (its sum would no longer fit [`Sum`]).
    n: u32,
}

/// A series' sum in a bucket: up to `u32::MAX` values of an `i64` add up to less than 2^95 either
/// way, so 96 bits hold it, kept as two halves packed on 4 bytes, so that the count fits beside
/// them (an [`Agg`] takes 32 bytes where an `i128` made it 48; issue #9). Stored (in snapshots)
/// as the `i128` it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed(4))]
struct Sum {
    lo: u64,
    hi: i32,
}

impl Sum {
    fn get(self) -> i128 {
        (i128::from(self.hi) << 64) | i128::from(self.lo)
    }

    /// Keeps the low 96 bits (of a sum that fits them: see the type's comment).
    fn set(&mut self, v: i128) {
        self.lo = v as u64;
        self.hi = (v >> 64) as i32;
    }

    fn add(&mut self, v: i64) {
        self.set(self.get() + i128::from(v));
    }
}

impl Serialize for Sum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i128(self.get())
    }
}

impl<'de> Deserialize<'de> for Sum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut sum = Sum::default();
        sum.set(i128::deserialize(d)?);
        Ok(sum)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Open {
    start: u64,
    count: u32,
    /// Each series once, in the order they first came. A host's samples bring the same series
    /// in the same order, so the next one is looked for where the last one was found: one key
    /// comparison per series instead of a map search. When a bucket closes the next one starts
    /// in the same vector with the same keys (their counts at 0), so a host's open bucket is
    /// allocated once. Stored (in snapshots) as a map ordered by key, as it always was.
    #[serde(with = "by_key")]
    series: Vec<(Key, Agg)>,
    /// Where the next series of the sample being folded in is expected.
    #[serde(skip)]
    next: usize,
}

impl Open {
    fn agg(&mut self, key: &Key, v: i64) -> &mut Agg {
        let same = |k: &Key| Key::ptr_eq(k, key) || **k == **key;
        let at = match self.series.get(self.next) {
            Some((k, _)) if same(k) => self.next,
            _ => match self.series.iter().position(|(k, _)| same(k)) {
                Some(at) => at,
                None => {
                    let none = Agg {
                        min: 0,
                        max: 0,
                        sum: Sum::default(),
                        n: 0,
                    };
                    self.series.push((key.clone(), none));
                    self.series.len() - 1
                }
            },
        };
        self.next = at + 1;
        let a = &mut self.series[at].1;
        if a.n == 0 {
            *a = Agg {
                min: v,
                max: v,
                sum: Sum::default(),
                n: 0,
            };
        }
        a
    }

    /// The series of this bucket, ordered by key.
    fn sorted(&self) -> Vec<(&str, &Agg)> {
        let mut v: Vec<_> = self
            .series
            .iter()
            .filter(|(_, a)| a.n > 0)
            .map(|(k, a)| (&**k, a))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// [`Open::series`] as a map ordered by key (the snapshot format of a `BTreeMap<String, Agg>`).
mod by_key {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Agg, Key};

    pub fn serialize<S: Serializer>(series: &[(Key, Agg)], s: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<_> = series.iter().filter(|(_, a)| a.n > 0).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        s.collect_map(sorted.into_iter().map(|(k, a)| (&**k, a)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Key, Agg)>, D::Error> {
        Ok(BTreeMap::<String, Agg>::deserialize(d)?
            .into_iter()
            .map(|(k, a)| (k.into(), a))
            .collect())
    }
}

/// A closed (or the open) bucket as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Bucket start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Samples folded in.
    pub count: u32,
    /// `(series key, min, avg, max)`, ordered by key.
    pub series: Vec<(String, i64, i64, i64)>,
}

/// One downsampled tier.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TierState {
    resolution_ms: u64,
    ring: Ring,
    open: Option<Open>,
    /// Samples older than the open bucket (clock jumped back): kept raw, not folded in.
    pub late: u64,
}

impl TierState {
    /// A tier of `buckets` buckets of `resolution_ms` each.
    pub fn new(resolution_ms: u64, buckets: usize) -> Self {
        let mut ring = Ring::new(buckets);
        // A bucket's record holds every series' key; one is pushed a minute or less often.
        ring.set_lean();
        TierState {
            resolution_ms: resolution_ms.max(1),
            ring,
            open: None,
            late: 0,
        }
    }

    /// Bucket width.
    pub fn resolution_ms(&self) -> u64 {
        self.resolution_ms
    }

    /// Closed buckets held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing was closed yet.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Memory held.
    pub fn bytes(&self) -> usize {
        self.ring.bytes()
            + self
                .open
                .as_ref()
                .map(|o| o.series.capacity() * std::mem::size_of::<(Key, Agg)>())
                .unwrap_or(0)
    }

    /// Bytes of closed buckets spilled out of memory.
    pub fn spilled_bytes(&self) -> usize {
        self.ring.spilled_bytes()
    }

    /// The ring of closed buckets (to spill its sealed blocks: see [`crate::spill`]).
    pub fn ring_mut(&mut self) -> &mut Ring {
        &mut self.ring
    }

    /// The ring of closed buckets.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Start of the oldest bucket held.
    pub fn oldest_ms(&self) -> Option<u64> {
        self.ring
            .oldest_ts()
            .or(self.open.as_ref().map(|o| o.start))
    }

    /// Changes how many buckets are kept.
    pub fn set_buckets(&mut self, buckets: usize) {
        self.ring.set_capacity(buckets);
    }

    /// Folds in one sample's series taken at `ts`, their keys from [`Keys`].
    pub fn add(&mut self, ts: u64, series: &[(Key, i64)]) {
        let start = ts - ts % self.resolution_ms;
        match &self.open {
            Some(open) if start < open.start => {
                self.late += 1;
                return;
            }
            Some(open) if start > open.start => self.close(start),
            _ => {}
        }
        let open = self.open.get_or_insert_with(|| Open {
            start,
            ..Open::default()
        });
        open.count += 1;
        open.next = 0;
        if open.series.is_empty() {
            // A host's first bucket: room for its series and no more (doubling would leave up to
            // half of it empty until the bucket closes, 15 minutes in the coarser tier).
            open.series.reserve_exact(series.len());
        }
        for (key, v) in series {
            let a = open.agg(key, *v);
            if a.n == u32::MAX {
                continue;
            }
            a.min = a.min.min(*v);
            a.max = a.max.max(*v);
            a.sum.add(*v);
            a.n += 1;
        }
    }

    /// Closes the open bucket into the ring and starts the one at `next` in its place, with the
    /// series it had.
    fn close(&mut self, next: u64) {
        let Some(open) = &mut self.open else { return };
        // A series missing from the whole bucket is forgotten.
        open.series.retain(|(_, a)| a.n > 0);
        open.series.shrink_to_fit();
        let mut toks = Vec::with_capacity(3 + 4 * open.series.len());
        toks.push(Tok::Int(open.start));
        toks.push(Tok::Int(open.count.into()));
        toks.push(Tok::Int(open.series.len() as u64));
        for (key, a) in open.sorted() {
            toks.push(Tok::Str(key.to_string()));
            toks.push(Tok::Int(a.min as u64));
            toks.push(Tok::Int(avg(a) as u64));
            toks.push(Tok::Int(a.max as u64));
        }
        self.ring.push(open.start, &toks);
        open.start = next;
        open.count = 0;
        for (_, a) in &mut open.series {
            a.n = 0;
        }
    }

    /// Makes the open bucket's keys the shared ones (after a snapshot is read).
    pub fn share_keys(&mut self, keys: &mut Keys) {
        for (k, _) in self.open.iter_mut().flat_map(|o| o.series.iter_mut()) {
            *k = keys.get(k);
        }
    }

    /// Buckets starting in `from..=to`, oldest first, the open one included.
    pub fn range(&self, from: u64, to: u64) -> Vec<Bucket> {
        let lo = from - from % self.resolution_ms;
        let mut out: Vec<Bucket> = self
            .ring
            .range(lo, to)
            .iter()
            .filter_map(|t| bucket(t))
            .filter(|b| b.start_ms >= lo && b.start_ms <= to)
            .collect();
        if let Some(o) = &self.open {
            if o.start >= lo && o.start <= to {
                out.push(Bucket {
                    start_ms: o.start,
                    count: o.count,
                    series: o
                        .sorted()
                        .into_iter()
                        .map(|(k, a)| (k.to_string(), a.min, avg(a), a.max))
                        .collect(),
                });
            }
        }
        out
    }
}

fn avg(a: &Agg) -> i64 {
    (a.sum.get() / i128::from(a.n.max(1))) as i64
}

fn bucket(t: &[Tok]) -> Option<Bucket> {
    let int = |i: usize| match t.get(i) {
        Some(Tok::Int(v)) => Some(*v),
        _ => None,
    };
    let n = usize::try_from(int(2)?).ok()?;
    if t.len() != 3 + 4 * n {
        return None;
    }
    let mut series = Vec::with_capacity(n);
    for i in 0..n {
        let at = 3 + 4 * i;
        let Some(Tok::Str(key)) = t.get(at) else {
            return None;
        };
        series.push((
            key.clone(),
            int(at + 1)? as i64,
            int(at + 2)? as i64,
            int(at + 3)? as i64,
        ));
    }
    Some(Bucket {
        start_ms: int(0)?,
        count: u32::try_from(int(1)?).ok()?,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: i64) -> Vec<(Key, i64)> {
        vec![("cpu.busy".into(), v), ("temp|cpu".into(), -v)]
    }

    #[test]
    fn buckets_hold_min_avg_max() {
        let mut t = TierState::new(60_000, 10);
        for (ts, v) in [(60_000, 1), (61_000, 5), (119_999, 3), (120_000, 10)] {
            t.add(ts, &s(v));
        }
        let b = t.range(0, u64::MAX);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].start_ms, 60_000);
        assert_eq!(b[0].count, 3);
        assert_eq!(
            b[0].series,
            [
                ("cpu.busy".to_string(), 1, 3, 5),
                ("temp|cpu".to_string(), -5, -3, -1)
            ]
        );
        // The open bucket is read too.
        assert_eq!(b[1].start_ms, 120_000);
        assert_eq!(b[1].series[0], ("cpu.busy".to_string(), 10, 10, 10));
        // A late sample is counted, not folded.
        t.add(100_000, &s(99));
        assert_eq!(t.late, 1);
        assert_eq!(t.range(0, u64::MAX)[0], b[0]);
        // Range is by bucket start.
        assert_eq!(t.range(120_000, 200_000).len(), 1);
        assert_eq!(t.range(61_000, 61_000).len(), 1);
    }

    #[test]
    fn keeps_its_buckets() {
        let mut t = TierState::new(1000, 100);
        for i in 0..10_000u64 {
            t.add(i * 1000, &s(i as i64 % 7));
        }
        assert!(t.len() >= 100 && t.len() < 100 + crate::ring::BLOCK as usize);
        let b = t.range(0, u64::MAX);
        assert_eq!(b.last().unwrap().start_ms, 9_999_000);
        // A handful of bytes per bucket of two series.
        assert!(t.bytes() / t.len() < 40, "{}", t.bytes() / t.len());
    }

    /// The open bucket looks for each series where the last one was found (#9): whatever the
    /// order, repeats and newcomers, it folds exactly what a map by key would.
    #[test]
    fn series_in_any_order_fold_as_a_map_would() {
        use std::collections::BTreeMap;
        let samples: Vec<Vec<(Key, i64)>> = vec![
            vec![("b".into(), 1), ("a".into(), 2), ("c".into(), 3)],
            vec![("b".into(), 4), ("a".into(), 5), ("c".into(), 6)],
            // Reordered, a repeat, a newcomer, one missing.
            vec![
                ("c".into(), 7),
                ("d".into(), 8),
                ("b".into(), 9),
                ("c".into(), -1),
            ],
            vec![("a".into(), 0)],
            vec![("b".into(), 4), ("a".into(), 5), ("c".into(), 6)],
        ];
        let mut t = TierState::new(60_000, 10);
        let mut expected: BTreeMap<String, (i64, i64, i128, i128)> = BTreeMap::new();
        for (i, sample) in samples.iter().enumerate() {
            t.add(1000 + i as u64, sample);
            for (k, v) in sample {
                let e = expected.entry(k.to_string()).or_insert((*v, *v, 0, 0));
                e.0 = e.0.min(*v);
                e.1 = e.1.max(*v);
                e.2 += i128::from(*v);
                e.3 += 1;
            }
        }
        let want: Vec<_> = expected
            .iter()
            .map(|(k, e)| (k.clone(), e.0, (e.2 / e.3) as i64, e.1))
            .collect();
        // The open bucket, then the same closed.
        assert_eq!(t.range(0, u64::MAX)[0].series, want);
        t.add(60_000, &samples[0]);
        let b = t.range(0, u64::MAX);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].series, want);
        assert_eq!(b[0].count, 5);
    }

    /// Snapshots hold the open bucket as they did when it was a `BTreeMap` by key: the same
    /// bytes, and they read back.
    #[test]
    fn the_open_bucket_keeps_its_snapshot_format() {
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct OldOpen {
            start: u64,
            count: u32,
            series: BTreeMap<String, Agg>,
        }
        let mut t = TierState::new(60_000, 10);
        t.add(1000, &[("z".into(), 1), ("a".into(), 2)]);
        t.add(2000, &[("m".into(), 3), ("a".into(), 4)]);
        let open = t.open.clone().unwrap();
        let old = OldOpen {
            start: open.start,
            count: open.count,
            series: open
                .series
                .iter()
                .map(|(k, a)| (k.to_string(), *a))
                .collect(),
        };
        let bytes = postcard::to_allocvec(&open).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
        let back: Open = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.sorted(), open.sorted());
        let mut t2 = TierState::new(60_000, 10);
        t2.open = Some(back);
        assert_eq!(t2.range(0, u64::MAX), t.range(0, u64::MAX));
    }

    /// Every open bucket holds the one shared copy of a key (issue #9), and a bucket closing
    /// leaves its vector to the next one.
    #[test]
    fn open_buckets_share_keys_and_reuse_their_vector() {
        let mut keys = Keys::default();
        let mut series = |v: i64| vec![(keys.get("cpu.busy"), v), (keys.get("temp|cpu"), -v)];
        let (mut a, mut b) = (TierState::new(60_000, 10), TierState::new(900_000, 10));
        for i in 0..200u64 {
            let s = series(i as i64);
            a.add(i * 1000, &s);
            b.add(i * 1000, &s);
        }
        let open = |t: &TierState| t.open.as_ref().unwrap().series.clone();
        assert!(Key::ptr_eq(&open(&a)[0].0, &open(&b)[0].0));
        assert!(Key::ptr_eq(&open(&a)[1].0, &series(0)[1].0));
        assert_eq!(b.open.as_ref().unwrap().series.capacity(), 2);
        let at = a.open.as_ref().unwrap().series.as_ptr();
        a.add(240_000, &series(1));
        assert_eq!(a.open.as_ref().unwrap().series.as_ptr(), at);
        assert_eq!(a.len(), 4);
        assert_eq!(keys.len(), 2);
    }

    /// A series that misses a whole bucket is not in it, and comes back with only its new values.
    #[test]
    fn a_series_missing_from_a_bucket_is_not_in_it() {
        let mut t = TierState::new(60_000, 10);
        let (a, b): (Key, Key) = ("a".into(), "b".into());
        t.add(0, &[(a.clone(), 1), (b.clone(), 100)]);
        t.add(60_000, &[(a.clone(), 2)]);
        t.add(120_000, &[(b.clone(), 7), (a.clone(), 3)]);
        t.add(121_000, &[(b.clone(), 9)]);
        let got: Vec<_> = t.range(0, u64::MAX).into_iter().map(|b| b.series).collect();
        let k = |s: &str, min, avg, max| (s.to_string(), min, avg, max);
        assert_eq!(
            got,
            [
                vec![k("a", 1, 1, 1), k("b", 100, 100, 100)],
                vec![k("a", 2, 2, 2)],
                vec![k("a", 3, 3, 3), k("b", 7, 8, 9)],
            ]
        );
        // The vector holds what the open bucket has, no more (b missed the bucket before).
        t.add(180_000, &[(a.clone(), 4)]);
        assert_eq!(t.open.as_ref().unwrap().series.len(), 2);
        t.add(240_000, &[(a.clone(), 5)]);
        assert_eq!(t.open.as_ref().unwrap().series.len(), 1);
    }

    /// Keys no bucket holds are dropped as the set grows: it stays within twice what is in use.
    #[test]
    fn keys_in_use_stay_and_the_rest_are_dropped() {
        let mut keys = Keys::default();
        let held = keys.get("held");
        for i in 0..5000 {
            keys.get(&format!("gone-{i}"));
            assert!(keys.len() <= 1024, "{}", keys.len());
        }
        assert!(Key::ptr_eq(&keys.get("held"), &held));
    }

    /// A sum kept in 96 bits adds as an `i128` does, is written as one, and makes an entry of
    /// the open bucket 40 bytes with its key (issue #9).
    #[test]
    fn sums_add_and_are_stored_as_i128() {
        let cases: &[&[i64]] = &[
            &[],
            &[1, -2, 3],
            &[i64::MAX, i64::MAX, i64::MAX],
            &[i64::MIN, i64::MIN, 5],
            &[-1],
            &[i64::MAX; 1000],
            &[i64::MIN; 1000],
        ];
        for vs in cases {
            let mut sum = Sum::default();
            for v in *vs {
                sum.add(*v);
            }
            let want: i128 = vs.iter().map(|v| i128::from(*v)).sum();
            assert_eq!(sum.get(), want);
            let bytes = postcard::to_allocvec(&sum).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&want).unwrap());
            assert_eq!(postcard::from_bytes::<Sum>(&bytes).unwrap(), sum);
        }
        assert_eq!(std::mem::size_of::<(Key, Agg)>(), 40);
        // The most a bucket takes, each value the largest there is: still exact.
        let mut sum = Sum::default();
        sum.set(i128::from(u32::MAX) * i128::from(i64::MIN));
        assert_eq!(sum.get(), i128::from(u32::MAX) * i128::from(i64::MIN));
        sum.set(i128::from(u32::MAX) * i128::from(i64::MAX));
        assert_eq!(sum.get(), i128::from(u32::MAX) * i128::from(i64::MAX));
    }

    /// A bucket stops at `u32::MAX` values of a series rather than let its sum overflow.
    #[test]
    fn a_full_series_takes_no_more() {
        let mut t = TierState::new(60_000, 10);
        t.add(0, &s(7));
        let o = t.open.as_mut().unwrap();
        o.series[0].1.n = u32::MAX;
        t.add(1, &s(i64::MAX));
        let a = t.open.as_ref().unwrap().series[0].1;
        assert_eq!((a.n, a.max), (u32::MAX, 7));
    }
}
