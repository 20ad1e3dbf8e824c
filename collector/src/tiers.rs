//! Downsampling: a tier folds samples into fixed-width time buckets holding each series' min, avg
//! and max, and keeps the closed buckets in a [`Ring`]. Plain state: the caller passes the
//! sample's own time; nothing here reads a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ring::{Ring, Tok};

/// One series' aggregate in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Agg {
    min: i64,
    max: i64,
    sum: i128,
    n: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Open {
    start: u64,
    count: u32,
    series: BTreeMap<String, Agg>,
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
        TierState {
            resolution_ms: resolution_ms.max(1),
            ring: Ring::new(buckets),
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
                .map(|o| o.series.keys().map(|k| k.len() + 64).sum())
                .unwrap_or(0)
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

    /// Folds in one sample's series taken at `ts`.
    pub fn add(&mut self, ts: u64, series: &[(String, i64)]) {
        let start = ts - ts % self.resolution_ms;
        match &self.open {
            Some(open) if start < open.start => {
                self.late += 1;
                return;
            }
            Some(open) if start > open.start => self.close(),
            _ => {}
        }
        let open = self.open.get_or_insert_with(|| Open {
            start,
            ..Open::default()
        });
        open.count += 1;
        for (key, v) in series {
            // The same series come with every sample: look up by `&str`, and copy the key only
            // for a series new to this bucket.
            let a = match open.series.get_mut(key.as_str()) {
                Some(a) => a,
                None => open.series.entry(key.clone()).or_insert(Agg {
                    min: *v,
                    max: *v,
                    sum: 0,
                    n: 0,
                }),
            };
            a.min = a.min.min(*v);
            a.max = a.max.max(*v);
            a.sum += i128::from(*v);
            a.n += 1;
        }
    }

    fn close(&mut self) {
        let Some(open) = self.open.take() else { return };
        let mut toks = Vec::with_capacity(3 + 4 * open.series.len());
        toks.push(Tok::Int(open.start));
        toks.push(Tok::Int(open.count.into()));
        toks.push(Tok::Int(open.series.len() as u64));
        for (key, a) in &open.series {
            toks.push(Tok::Str(key.clone()));
            toks.push(Tok::Int(a.min as u64));
            toks.push(Tok::Int(avg(a) as u64));
            toks.push(Tok::Int(a.max as u64));
        }
        self.ring.push(open.start, toks);
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
                        .series
                        .iter()
                        .map(|(k, a)| (k.clone(), a.min, avg(a), a.max))
                        .collect(),
                });
            }
        }
        out
    }
}

fn avg(a: &Agg) -> i64 {
    (a.sum / i128::from(a.n.max(1))) as i64
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

    fn s(v: i64) -> Vec<(String, i64)> {
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
}
