//! Per-host state and history: the sans-I/O core of ingest. Messages go in as `(topic, payload)`
//! with the current time; nothing here touches a socket, a file or a clock.
//!
//! Each host keeps its raw samples in a delta-encoded [`Ring`], downsampled min/avg/max
//! [`TierState`]s, its latest sample, inventory and status. What changed is queued as [`Event`]s
//! for the caller to publish ([`Store::drain_events`]); time-driven status changes (online →
//! stale → offline) come from [`Store::tick`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use ember_wire::topic;
use ember_wire::{HostId, HostInfo, Message, Sample, Status};
use serde::{Deserialize, Serialize};

use crate::config::{Config, StatusConfig, Tier};
use crate::packed::Packed;
use crate::ring::{Ring, Tok};
use crate::spill::Spill;
use crate::tiers::{Key, Keys, TierState};
use crate::totals::Totals;
use crate::{codec, metrics};

/// Why a message was dropped. Each reason has its own counter in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not an Ember topic, or a topic agents do not publish on (commands).
    Topic,
    /// Larger than the configured payload limit.
    Oversized,
    /// The payload did not decode.
    Decode(ember_wire::Error),
    /// The payload's host differs from the topic's: one host speaking for another.
    HostMismatch,
    /// The payload's kind differs from the topic's.
    KindMismatch,
}

/// What happened to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A new sample was stored.
    Sample {
        /// Samples missing before this one, by sequence number.
        missing: u64,
    },
    /// A sample already stored arrived again and was dropped.
    Duplicate,
    /// The host's status changed or was confirmed.
    Status,
    /// The host's inventory was stored.
    Info,
    /// A command result (kept by the command log, a later part).
    Result,
}

/// Collector-wide counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted.
    pub accepted: u64,
    /// Samples stored.
    pub samples: u64,
    /// Samples dropped as duplicates.
    pub duplicates: u64,
    /// Samples never received (gaps in sequence numbers), all hosts.
    pub missing: u64,
    /// Messages on foreign topics.
    pub rejected_topic: u64,
    /// Messages over the payload limit.
    pub rejected_oversized: u64,
    /// Payloads that did not decode.
    pub rejected_decode: u64,
    /// Payloads whose host or kind disagreed with the topic.
    pub rejected_mismatch: u64,
    /// Messages the broker acknowledged but dropped before ingest read them: its log for the
    /// collector's subscription overran (ingest fell too far behind).
    #[serde(default)]
    pub broker_dropped: u64,
}

/// The store's settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Raw samples kept per host.
    pub raw_samples: usize,
    /// Downsampled tiers, finest first.
    pub tiers: Vec<Tier>,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// Status thresholds.
    pub status: StatusConfig,
    /// Where sealed history blocks go out of memory (see [`crate::spill`]); none keeps all of
    /// the history in memory.
    pub spill: Option<Arc<Spill>>,
}

impl StoreConfig {
    /// The store's part of the collector's configuration.
    pub fn from_config(c: &Config) -> Self {
        StoreConfig {
            raw_samples: c.history.raw_samples,
            tiers: c.history.tiers.clone(),
            max_payload: c.max_payload,
            status: c.status,
            spill: None,
        }
    }
}

/// A host's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    /// Connected and sampling on time.
    Online,
    /// Says it is online, but nothing came for longer than the stale threshold.
    Stale,
    /// Its agent disconnected (last will), stopped, or was silent past the offline threshold.
    Offline,
    /// Samples seen but no status message yet.
    Unknown,
}

impl HostStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Online => "online",
            HostStatus::Stale => "stale",
            HostStatus::Offline => "offline",
            HostStatus::Unknown => "unknown",
        }
    }
}

/// Something that changed, for the event stream and the MQTT bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new sample was stored.
    Sample {
        /// Whose.
        host: HostId,
        /// The sample.
        sample: Arc<Sample>,
    },
    /// A host's status changed.
    Status {
        /// Whose.
        host: HostId,
        /// Now.
        status: HostStatus,
        /// Before.
        previous: HostStatus,
    },
    /// A host's inventory arrived or changed.
    Info {
        /// Whose.
        host: HostId,
    },
}

/// A host as the collector knows it. Cloned only when a snapshot's [`Image`] still holds it as
/// ingest changes it; the clone shares its history's full blocks (see [`Ring`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    raw: Ring,
    tiers: Vec<TierState>,
    /// As their postcard bytes, decoded when read: a `Sample` is 2.6 KB and a `HostInfo` 1.3 KB
    /// whatever they hold, their bytes a few hundred (issue #9). Stored (in snapshots) as they
    /// were.
    latest: Option<Packed<Sample>>,
    info: Option<Packed<HostInfo>>,
    status: Option<Status>,
    reported: HostStatus,
    status_since_ms: u64,
    last_seen_ms: u64,
    last_seq: Option<u64>,
    last_timestamp_ms: u64,
    received: u64,
    missing: u64,
    duplicates: u64,
    restarts: u64,
    /// Counters added up from the samples' rates (`/metrics`); in memory only, from 0 at start.
    #[serde(skip)]
    totals: Totals,
}

/// A host's summary for `/api/hosts`.
#[derive(Debug, Serialize)]
pub struct HostSummary<'a> {
    /// Host id.
    pub id: &'a HostId,
    /// Online, stale, offline or unknown.
    pub status: HostStatus,
    /// Since when the status has been what it is, ms since the Unix epoch.
    pub status_since_ms: u64,
    /// When anything was last heard from the host, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// The agent's sampling interval, from its status.
    pub interval_ms: Option<u32>,
    /// Raw samples held.
    pub samples: usize,
    /// Samples received and stored.
    pub received: u64,
    /// Samples never received (gaps in sequence numbers).
    pub missing: u64,
    /// Samples received twice and dropped.
    pub duplicates: u64,
    /// Times the agent started again (sequence numbers restarted).
    pub restarts: u64,
    /// Memory the host's history takes, in bytes.
    pub history_bytes: usize,
    /// The newest sample, decoded by [`HostSummary::latest`].
    #[serde(rename = "latest")]
    pub(crate) latest_packed: Option<&'a Packed<Sample>>,
    /// The host's inventory, decoded by [`HostSummary::info`].
    #[serde(rename = "info")]
    info_packed: Option<&'a Packed<HostInfo>>,
    /// Counters added up from the samples' rates.
    #[serde(skip)]
    pub totals: &'a Totals,
}

impl HostSummary<'_> {
    /// The newest sample (decoded now: the store keeps it as its bytes).
    pub fn latest(&self) -> Option<Sample> {
        self.latest_packed.and_then(Packed::get)
    }

    /// Whether a sample came.
    pub fn has_sample(&self) -> bool {
        self.latest_packed.is_some()
    }

    /// The host's inventory (decoded now).
    pub fn info(&self) -> Option<HostInfo> {
        self.info_packed.and_then(Packed::get)
    }
}

/// Which history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Every stored sample.
    Raw,
    /// The tier at this index of the configuration.
    Tier(usize),
    /// The finest that covers the range in at most [`AUTO_MAX_POINTS`] points.
    Auto,
}

/// How often [`Store::tick`] looks for blocks to move out of sparse spill segments: a segment
/// that cannot be read is then tried (and its failure counted and logged) every 10 s, not at
/// every tick.
pub const MOVE_EVERY_MS: u64 = 10_000;

/// Most events queued for [`Store::drain_events`]; beyond this the oldest half is dropped, so a
/// caller that never drains cannot grow the store without bound.
pub const MAX_EVENTS: usize = 65_536;

/// Most points per series [`Resolution::Auto`] aims for.
pub const AUTO_MAX_POINTS: u64 = 2000;

/// One series of a history answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoints {
    /// Metric name (`cpu.busy`).
    pub metric: String,
    /// Label for per-device metrics (the mount, interface, sensor…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `[t_ms, min, avg, max]`, oldest first; raw points have min = avg = max.
    pub points: Vec<[i64; 4]>,
}

/// A history answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// `raw`, or the tier's resolution (`1m`).
    pub resolution: String,
    /// Bucket width in ms; for raw, the agent's interval.
    pub step_ms: u64,
    /// Every series with points in the range.
    pub series: Vec<SeriesPoints>,
}

/// Memory the history takes, and what of it was spilled out of memory.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MemoryStats {
    /// Raw samples held, all hosts.
    pub raw_samples: usize,
    /// Bytes of the raw rings in memory.
    pub raw_bytes: usize,
    /// Bytes of the raw rings' sealed blocks spilled to disk (see [`crate::spill`]).
    pub raw_spilled_bytes: usize,
    /// Downsampled buckets held, all hosts.
    pub tier_buckets: usize,
    /// Bytes of the tiers in memory.
    pub tier_bytes: usize,
    /// Bytes of the tiers' sealed blocks spilled to disk.
    pub tier_spilled_bytes: usize,
}

impl MemoryStats {
    /// Everything in memory.
    pub fn total_bytes(&self) -> usize {
        self.raw_bytes + self.tier_bytes
    }

    /// Bytes per raw sample held, in memory or spilled.
    pub fn bytes_per_sample(&self) -> f64 {
        (self.raw_bytes + self.raw_spilled_bytes) as f64 / self.raw_samples.max(1) as f64
    }
}

/// Every host's state and history.
#[derive(Debug)]
pub struct Store {
    /// Shared with a snapshot being written (see [`Store::image`]), and copied on write.
    hosts: BTreeMap<HostId, Arc<Host>>,
    config: StoreConfig,
    stats: Stats,
    events: Vec<Event>,
    /// What storing a sample works in, kept between samples.
    scratch: Scratch,
    /// Whether stored samples become [`Event::Sample`]s (see [`Store::set_sample_events`]).
    sample_events: bool,
    /// When [`Store::tick`] last looked for blocks to move out of sparse spill segments.
    moved_at_ms: u64,
    rate: (u64, u64, f64),
}

/// Buffers reused from one sample to the next, and the series keys every host shares.
#[derive(Debug, Default)]
struct Scratch {
    /// Series keys and values of the sample being folded into the tiers: a key is looked up in
    /// `keys` only where it differs from the previous sample's at the same place.
    series: Vec<(Key, i64)>,
    /// The key being written.
    key: String,
    /// The keys the tiers' open buckets hold, one copy each for the whole store.
    keys: Keys,
    /// The sample being stored as ring tokens, its strings reused.
    tokens: Vec<Tok>,
}

/// What a snapshot holds, as one type: [`Image::write_to`] writes it and [`Store::from_bytes`]
/// reads it a host at a time; the tests read and write it whole to check both.
#[derive(Serialize, Deserialize)]
#[cfg_attr(not(test), allow(dead_code))]
struct Persisted {
    hosts: BTreeMap<HostId, Host>,
    stats: Stats,
}

/// The store at one moment, sharing its hosts with it: what a snapshot writes (see
/// [`Store::image`]).
pub struct Image {
    hosts: BTreeMap<HostId, Arc<Host>>,
    stats: Stats,
}

/// A value postcard can append to a vector, behind `dyn` ([`Image::write_to`]).
mod erased {
    pub trait Put {
        fn put(&self, out: Vec<u8>) -> std::io::Result<Vec<u8>>;
    }

    impl<T: serde::Serialize> Put for T {
        fn put(&self, out: Vec<u8>) -> std::io::Result<Vec<u8>> {
            postcard::to_extend(self, out).map_err(std::io::Error::other)
        }
    }
}

impl Image {
    /// The image as snapshot bytes ([`Persisted`]'s postcard form), after `reserved` zero bytes,
    /// in a vector allocated for `capacity` bytes to start with (see [`Image::write_to`]).
    pub fn into_bytes_after(
        self,
        reserved: usize,
        capacity: usize,
    ) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::with_capacity(capacity.max(reserved));
        out.resize(reserved, 0);
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the image as snapshot bytes ([`Persisted`]'s postcard form) to `w`, a host at a
    /// time: the snapshot is never whole in memory (at 10,000 hosts × 300 samples it was a
    /// vector of 230 MB on top of the store).
    ///
    /// Hosts are written least recently seen first, each let go as soon as it is written: the
    /// hosts ingest will change next are the first out of the image, so while writing takes
    /// less than the agents' interval, ingest copies next to none of them on write. (Postcard
    /// has no order for a map's entries; loading sorts them. Ties go in id order, so the same
    /// store gives the same bytes.)
    pub fn write_to<W: std::io::Write + ?Sized>(self, w: &mut W) -> Result<(), std::io::Error> {
        let mut buf = Vec::new();
        let mut put = |w: &mut W, v: &dyn erased::Put| -> std::io::Result<()> {
            buf.clear();
            buf = v.put(std::mem::take(&mut buf))?;
            w.write_all(&buf)
        };
        // Postcard writes a map as its length (a varint, as it writes a u64), then each key and
        // value, and a struct as its fields in order: `Persisted` byte for byte.
        put(w, &(self.hosts.len() as u64))?;
        let mut hosts: Vec<(HostId, Arc<Host>)> = self.hosts.into_iter().collect();
        hosts.sort_by_key(|(_, h)| h.last_seen_ms);
        for (id, host) in hosts {
            put(w, &(&id, &*host))?;
        }
        put(w, &self.stats)
    }
}

/// A number that a host's id always gives and that differs from host to host (FNV-1a), for
/// [`Ring::stagger`].
fn stagger_key(host: &HostId) -> u64 {
    host.as_str().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Store {
    /// `lock`'s store, read-locked. A panic while it was held cannot have left the store
    /// half-changed in a way that matters for reading: what is there is served.
    pub fn read_lock(lock: &std::sync::RwLock<Store>) -> std::sync::RwLockReadGuard<'_, Store> {
        lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        Store {
            hosts: BTreeMap::new(),
            config,
            stats: Stats::default(),
            events: Vec::new(),
            scratch: Scratch::default(),
            sample_events: true,
            moved_at_ms: 0,
            rate: (0, 0, 0.0),
        }
    }

    /// The store as it is now, for a snapshot to be written from another thread while ingest
    /// goes on: every host is shared, not copied, so this takes a few milliseconds for 10,000
    /// hosts where serialising took a second under the lock (issue #9). A host ingest changes
    /// while the image still holds it is copied then, once, and its full history blocks are
    /// still shared (see [`Ring`]).
    pub fn image(&self) -> Image {
        Image {
            hosts: self.hosts.clone(),
            stats: self.stats,
        }
    }

    /// The whole store as bytes, after `reserved` zero bytes (see [`Image::into_bytes_after`]).
    pub fn to_bytes_after(&self, reserved: usize) -> Result<Vec<u8>, std::io::Error> {
        self.image().into_bytes_after(reserved, 0)
    }

    /// A store from snapshot bytes, resized to `config` (a tier whose resolution is no longer
    /// configured is dropped; a new one starts empty).
    ///
    /// Read a host at a time ([`Persisted`]'s map is its length, then each id and host), each
    /// spilled before the next is read: the store is never whole in memory on its way in. (Read
    /// whole, 1,000 hosts of 30 days held 1 GB more than the snapshot's own bytes; issue #9.)
    pub fn from_bytes(config: StoreConfig, bytes: &[u8]) -> Result<Self, postcard::Error> {
        let (n, mut rest) = postcard::take_from_bytes::<usize>(bytes)?;
        let mut store = Store::new(config);
        for _ in 0..n {
            let ((id, mut host), more) = postcard::take_from_bytes::<(HostId, Host)>(rest)?;
            rest = more;
            host.raw.set_capacity(store.config.raw_samples);
            let mut old = std::mem::take(&mut host.tiers);
            host.tiers = store
                .config
                .tiers
                .iter()
                .map(|t| {
                    let res = t.resolution.as_millis() as u64;
                    match old.iter().position(|o| o.resolution_ms() == res) {
                        Some(i) => {
                            let mut kept = old.swap_remove(i);
                            kept.set_buckets(t.buckets());
                            kept
                        }
                        None => TierState::new(res, t.buckets()),
                    }
                })
                .collect();
            for t in &mut host.tiers {
                t.share_keys(&mut store.scratch.keys);
                // (Snapshots hold the newest record in full: see `TierState::new`.)
                t.ring_mut().set_lean();
            }
            if let Some(spill) = &store.config.spill {
                // Each host's history leaves memory as it is loaded, not after the whole store.
                let _ = host.spill(spill);
            }
            store.hosts.insert(id, Arc::new(host));
        }
        store.stats = postcard::take_from_bytes::<Stats>(rest)?.0;
        Ok(store)
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Takes in one MQTT message. Bad input is counted and reported, never a panic.
    pub fn ingest(&mut self, topic: &str, payload: &[u8], now_ms: u64) -> Result<Accepted, Reject> {
        let result = self.ingest_inner(topic, payload, now_ms);
        let s = &mut self.stats;
        match result {
            Ok(Accepted::Duplicate) => s.duplicates += 1,
            Ok(a) => {
                s.accepted += 1;
                if let Accepted::Sample { missing } = a {
                    s.samples += 1;
                    s.missing += missing;
                }
            }
            Err(Reject::Topic) => s.rejected_topic += 1,
            Err(Reject::Oversized) => s.rejected_oversized += 1,
            Err(Reject::Decode(_)) => s.rejected_decode += 1,
            Err(Reject::HostMismatch | Reject::KindMismatch) => s.rejected_mismatch += 1,
        }
        result
    }

    fn ingest_inner(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Accepted, Reject> {
        let (host, kind) = topic::parse(topic).ok_or(Reject::Topic)?;
        if kind.from_collector() {
            return Err(Reject::Topic);
        }
        if payload.len() > self.config.max_payload {
            return Err(Reject::Oversized);
        }
        let envelope = ember_wire::decode(payload).map_err(Reject::Decode)?;
        if envelope.host != host {
            return Err(Reject::HostMismatch);
        }
        if envelope.message.kind() != kind {
            return Err(Reject::KindMismatch);
        }
        let config = &self.config;
        let entry = self.hosts.entry(host.clone()).or_insert_with(|| {
            // Each ring's first block as long as the host's id says: see `Ring::stagger`.
            let k = stagger_key(&host);
            let mut raw = Ring::new(config.raw_samples);
            raw.stagger(k);
            Arc::new(Host {
                raw,
                tiers: config
                    .tiers
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let mut tier = TierState::new(t.resolution.as_millis() as u64, t.buckets());
                        tier.ring_mut().stagger(k >> (5 * (i + 1)));
                        tier
                    })
                    .collect(),
                latest: None,
                info: None,
                status: None,
                reported: HostStatus::Unknown,
                status_since_ms: now_ms,
                last_seen_ms: now_ms,
                last_seq: None,
                last_timestamp_ms: 0,
                received: 0,
                missing: 0,
                duplicates: 0,
                restarts: 0,
                totals: Totals::default(),
            })
        });
        // Copied here if a snapshot's image still holds it.
        let entry = Arc::make_mut(entry);
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        let accepted = match envelope.message {
            Message::Sample(sample) => {
                // The sample's own bytes, kept as they came rather than encoded again.
                let encoded = ember_wire::split_message(payload)
                    .and_then(|(kind, body)| (kind == Message::SAMPLE).then_some(body));
                let accepted = entry.push_sample(&sample, encoded, &mut self.scratch);
                if let Some(spill) = &self.config.spill {
                    // A write that fails leaves the block in memory; the spill reports it.
                    let _ = entry.spill(spill);
                }
                if let (Accepted::Sample { .. }, true) = (accepted, self.sample_events) {
                    self.events.push(Event::Sample {
                        host: host.clone(),
                        sample: Arc::new(sample),
                    });
                }
                accepted
            }
            Message::Status(status) => {
                entry.status = Some(status);
                Accepted::Status
            }
            Message::HostInfo(info) => {
                if !entry.info.as_ref().is_some_and(|i| i.holds(&info)) {
                    entry.info = Some(Packed::new(&info));
                    self.events.push(Event::Info { host: host.clone() });
                }
                Accepted::Info
            }
            Message::CommandResult(_) => Accepted::Result,
            Message::Command(_) | Message::Alerts(_) => return Err(Reject::Topic),
        };
        let status = self.config.status;
        if let Some(entry) = self.hosts.get_mut(&host) {
            Arc::make_mut(entry).report(&host, now_ms, &status, &mut self.events);
        }
        if self.events.len() > MAX_EVENTS {
            self.events.drain(..MAX_EVENTS / 2);
        }
        Ok(accepted)
    }

    /// Re-evaluates every host's status at `now_ms`, queueing an event for each change.
    pub fn tick(&mut self, now_ms: u64) {
        // The ingest rate over the last five seconds or more.
        let (since, samples, _) = self.rate;
        if since == 0 || now_ms < since {
            self.rate = (now_ms, self.stats.samples, 0.0);
        } else if now_ms - since >= 5000 {
            let rate = self.stats.samples.saturating_sub(samples) as f64 * 1000.0
                / (now_ms - since) as f64;
            self.rate = (now_ms, self.stats.samples, rate);
        }
        let status = self.config.status;
        for (id, host) in &mut self.hosts {
            // Written (and so copied, if a snapshot holds it) only when its status changed.
            if host.status(now_ms, &status) != host.reported {
                Arc::make_mut(host).report(id, now_ms, &status, &mut self.events);
            }
        }
        if now_ms.abs_diff(self.moved_at_ms) >= MOVE_EVERY_MS {
            self.moved_at_ms = now_ms;
            self.move_sparse();
        }
    }

    /// Moves the blocks left in mostly dead spill segments to open ones, so the segments go
    /// (see [`crate::spill`]). Looks at every host only when a segment is sparse.
    fn move_sparse(&mut self) {
        let Some(spill) = &self.config.spill else {
            return;
        };
        if !spill.has_sparse() {
            return;
        }
        let mut moved = 0;
        for host in self.hosts.values_mut() {
            if host.raw.should_move() || host.tiers.iter().any(|t| t.ring().should_move()) {
                match Arc::make_mut(host).move_sparse(spill) {
                    Ok(n) => moved += n,
                    // Failures are counted by the spill; the rest waits for the next tick.
                    Err(_) => break,
                }
            }
        }
        spill.count_moved(moved);
    }

    /// Takes the queued events.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Whether stored samples become [`Event::Sample`]s (on by default). Each such event holds a
    /// copy of the sample: ingest turns them off while nothing reads them (no event-stream
    /// client, no JSON bridge). Status and inventory events are always made.
    pub fn set_sample_events(&mut self, on: bool) {
        self.sample_events = on;
    }

    /// Counts messages the broker dropped before ingest read them (see [`Stats::broker_dropped`]).
    pub fn count_broker_dropped(&mut self, n: u64) {
        self.stats.broker_dropped += n;
    }

    /// Collector-wide counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Samples stored per second, measured by [`Store::tick`] over about five seconds.
    pub fn ingest_rate(&self) -> f64 {
        self.rate.2
    }

    /// Number of hosts known.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts by status.
    pub fn status_counts(&self, now_ms: u64) -> [(HostStatus, usize); 4] {
        let mut counts = [
            (HostStatus::Online, 0),
            (HostStatus::Stale, 0),
            (HostStatus::Offline, 0),
            (HostStatus::Unknown, 0),
        ];
        for h in self.hosts.values() {
            let s = h.status(now_ms, &self.config.status);
            if let Some(c) = counts.iter_mut().find(|(k, _)| *k == s) {
                c.1 += 1;
            }
        }
        counts
    }

    /// Memory the history takes.
    pub fn memory(&self) -> MemoryStats {
        let mut m = MemoryStats::default();
        for h in self.hosts.values() {
            m.raw_samples += h.raw.len();
            m.raw_bytes += h.raw.bytes();
            m.raw_spilled_bytes += h.raw.spilled_bytes();
            for t in &h.tiers {
                m.tier_buckets += t.len();
                m.tier_bytes += t.bytes();
                m.tier_spilled_bytes += t.spilled_bytes();
            }
        }
        m
    }

    /// What the spill holds, if history is spilled (see [`crate::spill`]).
    pub fn spill_stats(&self) -> Option<crate::spill::SpillStats> {
        self.config.spill.as_ref().map(|s| s.stats())
    }

    /// Every host's summary, ordered by id.
    pub fn summaries(&self, now_ms: u64) -> Vec<HostSummary<'_>> {
        self.hosts
            .iter()
            .map(|(id, h)| h.summary(id, now_ms, &self.config.status))
            .collect()
    }

    /// Up to `limit` hosts' summaries, ordered by id, from the first after `after` (from the
    /// first host when `None`): a reader can walk every host in short holds of the store's lock.
    pub fn summaries_after(
        &self,
        after: Option<&HostId>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<HostSummary<'_>> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.hosts
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(id, h)| h.summary(id, now_ms, &self.config.status))
            .collect()
    }

    /// One host's summary.
    pub fn summary(&self, id: &HostId, now_ms: u64) -> Option<HostSummary<'_>> {
        self.hosts
            .get_key_value(id)
            .map(|(id, h)| h.summary(id, now_ms, &self.config.status))
    }

    /// Up to `limit` of a host's newest samples with a sequence number above `after_seq`,
    /// oldest first. `None` if the host is unknown.
    pub fn samples(
        &self,
        id: &HostId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Option<Vec<Sample>> {
        let host = self.hosts.get(id)?;
        let mut out: Vec<Sample> = Vec::new();
        if limit == 0 {
            return Some(out);
        }
        host.raw.newest_blocks(|records| {
            for r in records.iter().rev() {
                if let Some(s) = codec::unflatten(r) {
                    if after_seq.is_none_or(|a| s.seq > a) {
                        out.push(s);
                        if out.len() >= limit {
                            return false;
                        }
                    }
                }
            }
            true
        });
        out.reverse();
        Some(out)
    }

    /// A host's history in `from..=to` (ms since the Unix epoch, by the samples' own times),
    /// keeping only the series whose metric or key is in `only` (all when empty). `None` if the
    /// host is unknown or the resolution is not configured.
    pub fn history(
        &self,
        id: &HostId,
        from: u64,
        to: u64,
        resolution: Resolution,
        only: &[String],
    ) -> Option<History> {
        let host = self.hosts.get(id)?;
        let raw_step = match host.status {
            Some(Status::Online { interval_ms }) => u64::from(interval_ms.max(1)),
            _ => 1000,
        };
        let resolution =
            match resolution {
                Resolution::Auto => {
                    let steps: Vec<(Resolution, u64, Option<u64>)> =
                        std::iter::once((Resolution::Raw, raw_step, host.raw.oldest_ts()))
                            .chain(host.tiers.iter().enumerate().map(|(i, t)| {
                                (Resolution::Tier(i), t.resolution_ms(), t.oldest_ms())
                            }))
                            .collect();
                    // Where the host's data starts: a tier's oldest bucket begins up to one
                    // step before its first sample, so a young host's coarse buckets must not
                    // make the raw ring look short.
                    let oldest = steps
                        .iter()
                        .filter_map(|s| s.2.map(|o| o + s.1.saturating_sub(1)))
                        .min()
                        .unwrap_or(0);
                    let need = from.max(oldest);
                    steps
                        .iter()
                        .find(|(_, step, old)| {
                            // Points this resolution would give: from where its data starts
                            // (a young host has little), not from `from`.
                            let points = to.saturating_sub(from.max(old.unwrap_or(from))) / step;
                            points <= AUTO_MAX_POINTS && old.is_some_and(|o| o <= need)
                        })
                        .or(steps.last())
                        .map(|s| s.0)
                        .unwrap_or(Resolution::Raw)
                }
                r => r,
            };
        let wanted = |key: &str| {
            only.is_empty() || {
                let (metric, _) = metrics::split_key(key);
                only.iter().any(|o| o == metric || o == key)
            }
        };
        let mut series: BTreeMap<String, Vec<[i64; 4]>> = BTreeMap::new();
        let (name, step_ms) = match resolution {
            Resolution::Raw | Resolution::Auto => {
                for r in host.raw.range(from, to) {
                    let Some(s) = codec::unflatten(&r) else {
                        continue;
                    };
                    if s.timestamp_ms < from || s.timestamp_ms > to {
                        continue;
                    }
                    let t = s.timestamp_ms as i64;
                    metrics::for_each(&s, |m, l, v| {
                        let key = metrics::key(m, l);
                        if wanted(&key) {
                            series.entry(key).or_default().push([t, v, v, v]);
                        }
                    });
                }
                ("raw".to_string(), raw_step)
            }
            Resolution::Tier(i) => {
                let tier = host.tiers.get(i)?;
                for b in tier.range(from, to) {
                    for (key, min, avg, max) in b.series {
                        if wanted(&key) {
                            series
                                .entry(key)
                                .or_default()
                                .push([b.start_ms as i64, min, avg, max]);
                        }
                    }
                }
                let res = tier.resolution_ms();
                (
                    humantime::format_duration(std::time::Duration::from_millis(res)).to_string(),
                    res,
                )
            }
        };
        Some(History {
            resolution: name,
            step_ms,
            series: series
                .into_iter()
                .map(|(key, points)| {
                    let (metric, label) = metrics::split_key(&key);
                    SeriesPoints {
                        metric: metric.to_string(),
                        label: label.map(str::to_string),
                        points,
                    }
                })
                .collect(),
        })
    }
}

impl Host {
    /// Moves its sealed history blocks out of memory: raw samples as class 0, tier `i` as
    /// class `i + 1` (blocks that live about as long share segments).
    fn spill(&mut self, spill: &Spill) -> std::io::Result<()> {
        self.raw.spill(spill, 0)?;
        for (i, t) in self.tiers.iter_mut().enumerate() {
            t.ring_mut().spill(spill, i + 1)?;
        }
        Ok(())
    }

    /// Moves its blocks out of sparse segments; returns how many moved.
    fn move_sparse(&mut self, spill: &Spill) -> std::io::Result<u64> {
        let mut moved = self.raw.move_sparse(spill, 0)?;
        for (i, t) in self.tiers.iter_mut().enumerate() {
            moved += t.ring_mut().move_sparse(spill, i + 1)?;
        }
        Ok(moved)
    }

    fn push_sample(
        &mut self,
        sample: &Sample,
        encoded: Option<&[u8]>,
        scratch: &mut Scratch,
    ) -> Accepted {
        let mut missing = 0;
        if let Some(last) = self.last_seq {
            if sample.seq <= last {
                // Older sequence number: either the agent restarted (its clock moved on) or
                // this is a copy of something already stored.
                if sample.timestamp_ms > self.last_timestamp_ms && sample.seq == 1 {
                    self.restarts += 1;
                } else {
                    self.duplicates += 1;
                    return Accepted::Duplicate;
                }
            } else {
                missing = sample.seq - last - 1;
            }
        }
        self.missing += missing;
        self.received += 1;
        // The sample's own interval: since the previous one when none is missing between them,
        // else what the agent announced.
        let interval_ms = match (self.last_seq, &self.status) {
            (Some(last), _) if sample.seq == last + 1 => {
                sample.timestamp_ms.saturating_sub(self.last_timestamp_ms)
            }
            (_, Some(Status::Online { interval_ms })) => u64::from(*interval_ms),
            _ => 0,
        };
        self.totals.add(sample, interval_ms);
        self.last_seq = Some(sample.seq);
        self.last_timestamp_ms = sample.timestamp_ms;
        let ts = sample.timestamp_ms;
        codec::flatten_into(sample, &mut scratch.tokens);
        self.raw.push(ts, &scratch.tokens);
        if !self.tiers.is_empty() {
            let Scratch {
                series, key, keys, ..
            } = scratch;
            let mut n = 0;
            metrics::for_each(sample, |m, l, v| {
                metrics::key_into(m, l, key);
                match series.get_mut(n) {
                    Some((k, value)) if **k == **key => *value = v,
                    Some(slot) => *slot = (keys.get(key), v),
                    None => series.push((keys.get(key), v)),
                }
                n += 1;
            });
            for t in &mut self.tiers {
                t.add(ts, &series[..n]);
            }
        }
        // Its bytes' room reused: no allocation while samples keep their size.
        let latest = self
            .latest
            .get_or_insert_with(|| Packed::new(&Sample::default()));
        match encoded {
            Some(bytes) => latest.set_encoded(bytes),
            None => latest.set(sample),
        }
        Accepted::Sample { missing }
    }

    fn status(&self, now_ms: u64, c: &StatusConfig) -> HostStatus {
        let silent = now_ms.saturating_sub(self.last_seen_ms);
        let offline = silent > c.offline_after.as_millis() as u64;
        match self.status {
            Some(Status::Offline) => HostStatus::Offline,
            _ if offline => HostStatus::Offline,
            Some(Status::Online { interval_ms }) => {
                let allowed = (u64::from(interval_ms) * u64::from(c.stale_intervals))
                    .max(c.stale_after.as_millis() as u64);
                if silent > allowed {
                    HostStatus::Stale
                } else {
                    HostStatus::Online
                }
            }
            None => HostStatus::Unknown,
        }
    }

    fn report(&mut self, id: &HostId, now_ms: u64, c: &StatusConfig, events: &mut Vec<Event>) {
        let status = self.status(now_ms, c);
        if status != self.reported {
            events.push(Event::Status {
                host: id.clone(),
                status,
                previous: self.reported,
            });
            self.reported = status;
            self.status_since_ms = now_ms;
        }
    }

    fn summary<'a>(&'a self, id: &'a HostId, now_ms: u64, c: &StatusConfig) -> HostSummary<'a> {
        HostSummary {
            id,
            status: self.status(now_ms, c),
            status_since_ms: self.status_since_ms,
            last_seen_ms: self.last_seen_ms,
            interval_ms: match self.status {
                Some(Status::Online { interval_ms }) => Some(interval_ms),
                _ => None,
            },
            samples: self.raw.len(),
            received: self.received,
            missing: self.missing,
            duplicates: self.duplicates,
            restarts: self.restarts,
            history_bytes: self.raw.bytes() + self.tiers.iter().map(|t| t.bytes()).sum::<usize>(),
            latest_packed: self.latest.as_ref(),
            info_packed: self.info.as_ref(),
            totals: &self.totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{Envelope, MAX_ENCODED_LEN};
    use std::time::Duration;

    fn id(s: &str) -> HostId {
        HostId::new(s).unwrap()
    }

    fn config(raw: usize, max_payload: usize) -> StoreConfig {
        StoreConfig {
            raw_samples: raw,
            tiers: vec![Tier {
                resolution: Duration::from_secs(60),
                retention: Duration::from_secs(3600),
            }],
            max_payload,
            status: StatusConfig {
                stale_after: Duration::from_secs(3),
                stale_intervals: 3,
                offline_after: Duration::from_secs(60),
            },
            spill: None,
        }
    }

    fn enc(host: &str, message: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        Envelope::new(id(host), message)
            .encode(&mut buf)
            .unwrap()
            .to_vec()
    }

    fn sample(host: &str, seq: u64, ts: u64) -> Vec<u8> {
        let mut s = Sample {
            seq,
            timestamp_ms: ts,
            ..Sample::default()
        };
        s.cpu.busy = (seq % 100) as u16 * 100;
        enc(host, Message::Sample(s))
    }

    fn seqs(s: &Store, after: Option<u64>, limit: usize) -> Vec<u64> {
        s.samples(&id("pi"), after, limit)
            .unwrap()
            .iter()
            .map(|x| x.seq)
            .collect()
    }

    const T: &str = "ember/v1/pi/sample";

    /// The newest sample is kept as the bytes it came in (issue #9), which are its postcard
    /// bytes, and reads back as what was sent, whatever the id's length.
    #[test]
    fn the_newest_sample_is_kept_as_it_came() {
        let mut s = Store::new(config(10, 4096));
        for host in ["a", "pi-00042", &"h".repeat(32)] {
            for seq in 1..=3u64 {
                let mut smp = Sample {
                    seq,
                    timestamp_ms: seq * 1000,
                    uptime_s: seq << 40,
                    ..Sample::default()
                };
                smp.cpu.cores.extend((0..seq as u16 * 5).map(|c| c * 77));
                let payload = enc(host, Message::Sample(smp.clone()));
                let n = host.len();
                assert_eq!(payload[3 + n..], postcard::to_allocvec(&smp).unwrap()[..]);
                s.ingest(&format!("ember/v1/{host}/sample"), &payload, seq * 1000)
                    .unwrap();
                let h = s.summary(&id(host), seq * 1000).unwrap();
                assert_eq!(h.latest(), Some(smp));
                assert!(h.has_sample());
            }
        }
    }

    /// Hosts that start together do not fill their blocks together (see `Ring::stagger`): their
    /// rings' first blocks end at counts their ids spread over a block's length, the same for
    /// the same id in any store.
    #[test]
    fn hosts_fill_their_blocks_out_of_step() {
        let mut c = config(1000, 4096);
        c.tiers[0].resolution = Duration::from_secs(1);
        let (mut a, mut b) = (Store::new(c.clone()), Store::new(c));
        let names: Vec<String> = (0..64).map(|i| format!("pi-{i:03}")).collect();
        for seq in 1..=40u64 {
            for h in &names {
                let topic = format!("ember/v1/{h}/sample");
                let t = seq * 1000;
                a.ingest(&topic, &sample(h, seq, t), t).unwrap();
                b.ingest(&topic, &sample(h, seq, t), t).unwrap();
            }
        }
        let firsts = |s: &Store, tier: bool| -> Vec<u32> {
            s.hosts
                .values()
                .map(|h| match tier {
                    false => h.raw.block_counts()[0],
                    true => h.tiers[0].ring().block_counts()[0],
                })
                .collect()
        };
        for tier in [false, true] {
            let got = firsts(&a, tier);
            assert_eq!(got, firsts(&b, tier));
            let mut distinct = got.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert!(distinct.len() >= 20, "first blocks {got:?}");
            assert!(got.iter().all(|&n| (1..=crate::ring::BLOCK).contains(&n)));
        }
        // Every sample is there all the same.
        for h in &names {
            assert_eq!(a.samples(&id(h), None, 100).unwrap().len(), 40);
        }
    }

    #[test]
    fn summaries_after_walks_every_host_once_in_order() {
        let mut s = Store::new(config(10, 4096));
        let names = ["c", "a", "e", "b", "d"];
        for h in names {
            s.ingest(&format!("ember/v1/{h}/sample"), &sample(h, 1, 1000), 1000)
                .unwrap();
        }
        let ids = |v: Vec<HostSummary<'_>>| v.iter().map(|h| h.id.to_string()).collect::<Vec<_>>();
        for limit in 1..=6 {
            let mut walked: Vec<String> = Vec::new();
            loop {
                let after = walked.last().map(|w| id(w));
                let chunk = ids(s.summaries_after(after.as_ref(), limit, 1000));
                assert!(chunk.len() <= limit);
                let done = chunk.len() < limit;
                walked.extend(chunk);
                if done {
                    break;
                }
            }
            assert_eq!(walked, ["a", "b", "c", "d", "e"], "limit {limit}");
        }
        // After an id that is not a host: from the next one.
        assert_eq!(ids(s.summaries_after(Some(&id("bb")), 2, 1000)), ["c", "d"]);
        assert!(s.summaries_after(Some(&id("e")), 2, 1000).is_empty());
    }

    #[test]
    fn stores_samples_in_order_and_rings_over() {
        let mut s = Store::new(config(3, 4096));
        for seq in 1..=5 {
            assert_eq!(
                s.ingest(T, &sample("pi", seq, seq * 1000), seq * 1000),
                Ok(Accepted::Sample { missing: 0 })
            );
        }
        // Blocks are dropped whole: at least 3 are kept.
        assert_eq!(seqs(&s, None, 3), [3, 4, 5]);
        assert_eq!(seqs(&s, Some(3), 10), [4, 5]);
        assert_eq!(seqs(&s, None, 1), [5]);
        assert_eq!(seqs(&s, None, 0), Vec::<u64>::new());
        assert_eq!(s.samples(&id("other"), None, 10), None);
        let mut s = Store::new(config(100, 4096));
        for seq in 1..=1000 {
            s.ingest(T, &sample("pi", seq, seq * 1000), seq * 1000)
                .unwrap();
        }
        let all = seqs(&s, None, usize::MAX);
        assert!(all.len() >= 100 && all.len() < 100 + crate::ring::BLOCK as usize);
        assert_eq!(*all.last().unwrap(), 1000);
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn gaps_duplicates_and_restarts() {
        let mut s = Store::new(config(100, 4096));
        s.ingest(T, &sample("pi", 1, 1000), 1000).unwrap();
        assert_eq!(
            s.ingest(T, &sample("pi", 4, 4000), 4000),
            Ok(Accepted::Sample { missing: 2 })
        );
        assert_eq!(
            s.ingest(T, &sample("pi", 4, 4000), 4001),
            Ok(Accepted::Duplicate)
        );
        assert_eq!(
            s.ingest(T, &sample("pi", 2, 2000), 4002),
            Ok(Accepted::Duplicate)
        );
        // The agent restarted: seq 1 again, later timestamp.
        assert_eq!(
            s.ingest(T, &sample("pi", 1, 9000), 9000),
            Ok(Accepted::Sample { missing: 0 })
        );
        let h = s.summary(&id("pi"), 9000).unwrap();
        assert_eq!(
            (h.received, h.missing, h.duplicates, h.restarts),
            (3, 2, 2, 1)
        );
        let st = s.stats();
        assert_eq!((st.duplicates, st.missing, st.samples), (2, 2, 3));
    }

    #[test]
    fn bad_input_is_counted_and_changes_nothing() {
        let mut s = Store::new(config(10, 64));
        assert_eq!(
            s.ingest("other/topic", &sample("pi", 1, 1), 1),
            Err(Reject::Topic)
        );
        assert_eq!(
            s.ingest("ember/v1/pi/cmd", &sample("pi", 1, 1), 1),
            Err(Reject::Topic)
        );
        assert_eq!(s.ingest(T, &[0u8; 65], 1), Err(Reject::Oversized));
        assert_eq!(
            s.ingest(T, &[], 1),
            Err(Reject::Decode(ember_wire::Error::Truncated))
        );
        assert_eq!(
            s.ingest(T, &[9, 2, b'p', b'i'], 1),
            Err(Reject::Decode(ember_wire::Error::UnsupportedVersion(9)))
        );
        // Another host's sample on pi's topic: spoofing.
        assert_eq!(
            s.ingest(T, &sample("evil", 1, 1), 1),
            Err(Reject::HostMismatch)
        );
        // A status on the sample topic.
        let status = enc("pi", Message::Status(Status::Offline));
        assert_eq!(s.ingest(T, &status, 1), Err(Reject::KindMismatch));
        assert_eq!(s.host_count(), 0);
        assert!(s.drain_events().is_empty());
        let st = s.stats();
        assert_eq!(
            (
                st.accepted,
                st.rejected_topic,
                st.rejected_oversized,
                st.rejected_decode,
                st.rejected_mismatch
            ),
            (0, 2, 1, 2, 2)
        );
    }

    fn statuses(s: &mut Store) -> Vec<(HostStatus, HostStatus)> {
        s.drain_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Status {
                    status, previous, ..
                } => Some((previous, status)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn status_online_stale_offline_by_thresholds() {
        use HostStatus::*;
        let mut s = Store::new(config(10, 4096));
        s.ingest(T, &sample("pi", 1, 1000), 1000).unwrap();
        assert_eq!(s.summary(&id("pi"), 1000).unwrap().status, Unknown);
        assert_eq!(statuses(&mut s), []);
        let online = enc("pi", Message::Status(Status::Online { interval_ms: 2000 }));
        s.ingest("ember/v1/pi/status", &online, 1000).unwrap();
        assert_eq!(statuses(&mut s), [(Unknown, Online)]);
        // Stale after max(3 s, 3 intervals) = 6 s of silence.
        s.tick(7000);
        assert_eq!(statuses(&mut s), []);
        s.tick(7001);
        assert_eq!(statuses(&mut s), [(Online, Stale)]);
        assert_eq!(s.summary(&id("pi"), 7001).unwrap().status_since_ms, 7001);
        // A sample brings it back.
        s.ingest(T, &sample("pi", 2, 8000), 8000).unwrap();
        assert_eq!(statuses(&mut s), [(Stale, Online)]);
        // Silent past offline-after: offline even without a last will.
        s.tick(68_001);
        assert_eq!(statuses(&mut s), [(Online, Offline)]);
        let offline = enc("pi", Message::Status(Status::Offline));
        s.ingest("ember/v1/pi/status", &offline, 70_000).unwrap();
        assert_eq!(statuses(&mut s), []);
        assert_eq!(s.summary(&id("pi"), 70_000).unwrap().status, Offline);
        assert_eq!(
            s.status_counts(70_000)[2],
            (Offline, 1),
            "counted as offline"
        );
    }

    #[test]
    fn events_for_samples_and_changed_inventory() {
        let mut s = Store::new(config(10, 4096));
        s.ingest(T, &sample("pi", 1, 1000), 1000).unwrap();
        let info = enc("pi", Message::HostInfo(HostInfo::default()));
        s.ingest("ember/v1/pi/info", &info, 1000).unwrap();
        s.ingest("ember/v1/pi/info", &info, 1000).unwrap();
        s.ingest(T, &sample("pi", 1, 1000), 1000).unwrap(); // duplicate: no event
        let e = s.drain_events();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(matches!(&e[0], Event::Sample { sample, .. } if sample.seq == 1));
        assert!(matches!(&e[1], Event::Info { .. }));
    }

    #[test]
    fn history_raw_and_tiers_with_auto_resolution() {
        let mut s = Store::new(config(10_000, 4096));
        // Two hours of one sample per 10 s; busy = seq % 100 * 100.
        for seq in 1..=720u64 {
            let ts = 1_000_000_000 + seq * 10_000;
            s.ingest(T, &sample("pi", seq, ts), ts).unwrap();
        }
        let only = ["cpu.busy".to_string()];
        let raw = s
            .history(&id("pi"), 0, u64::MAX, Resolution::Raw, &only)
            .unwrap();
        assert_eq!(raw.resolution, "raw");
        assert_eq!(raw.series.len(), 1);
        assert_eq!(raw.series[0].points.len(), 720);
        assert_eq!(raw.series[0].points[0][1], 100);
        let t = s
            .history(&id("pi"), 0, u64::MAX, Resolution::Tier(0), &only)
            .unwrap();
        assert_eq!(t.resolution, "1m");
        assert_eq!(t.step_ms, 60_000);
        // The tier keeps 60 closed buckets plus up to a block more, and the open one.
        let p = &t.series[0].points;
        assert!(p.len() >= 60, "{}", p.len());
        for w in p.windows(2) {
            assert_eq!(w[1][0] - w[0][0], 60_000);
        }
        for pt in p {
            assert!(pt[1] <= pt[2] && pt[2] <= pt[3], "{pt:?}");
        }
        // Auto: a long span is the tier, a short one raw.
        let from = 1_000_000_000 + 700 * 10_000;
        let auto = s
            .history(&id("pi"), from, u64::MAX / 2, Resolution::Auto, &only)
            .unwrap();
        assert_eq!(auto.resolution, "1m", "the span is too long for raw points");
        let auto = s
            .history(&id("pi"), from, from + 1_000_000, Resolution::Auto, &only)
            .unwrap();
        assert_eq!(auto.resolution, "raw");
        assert_eq!(auto.series[0].points.len(), 21);
        assert!(s
            .history(&id("pi"), 0, 1, Resolution::Tier(5), &only)
            .is_none());
        let all = s
            .history(&id("pi"), 0, u64::MAX, Resolution::Raw, &[])
            .unwrap();
        assert!(all.series.len() > 10);
    }

    /// A store spilling to memory segments of `segment_bytes`, and the switch that makes the
    /// "disk" fail.
    fn spilling(raw: usize, segment_bytes: u32) -> (Store, Arc<std::sync::atomic::AtomicBool>) {
        let (spill, fail) = crate::spill::MemSegment::spill(segment_bytes);
        let mut c = config(raw, 4096);
        c.spill = Some(Arc::new(spill.with_retry_after(Duration::ZERO)));
        (Store::new(c), fail)
    }

    /// Everything a reader sees of a host: its samples, raw history and tier.
    fn seen(s: &Store, host: &str) -> (Vec<Sample>, History, History) {
        let h = id(host);
        (
            s.samples(&h, None, usize::MAX).unwrap(),
            s.history(&h, 0, u64::MAX, Resolution::Raw, &[]).unwrap(),
            s.history(&h, 0, u64::MAX, Resolution::Tier(0), &[])
                .unwrap(),
        )
    }

    /// Sealed blocks leave memory (issue #9): readers see the same history, a snapshot holds
    /// the same bytes, and a store loaded from it spills as it loads.
    #[test]
    fn spilled_history_reads_back_as_it_was() {
        let (mut s, _) = spilling(300, 64 << 10);
        let mut plain = Store::new(config(300, 4096));
        for seq in 1..=1000u64 {
            let ts = 1_000_000_000 + seq * 10_000;
            for host in ["pi", "nas"] {
                let topic = format!("ember/v1/{host}/sample");
                for st in [&mut s, &mut plain] {
                    st.ingest(&topic, &sample(host, seq, ts), ts).unwrap();
                }
            }
        }
        for host in ["pi", "nas"] {
            let got = seen(&s, host);
            assert_eq!(got, seen(&plain, host));
            // (More than a block of buckets: some of the tier is spilled too.)
            assert!(got.0.len() >= 300 && got.2.series[0].points.len() > 32);
        }
        let (m, p) = (s.memory(), plain.memory());
        assert_eq!(
            (m.raw_samples, m.tier_buckets),
            (p.raw_samples, p.tier_buckets)
        );
        // All but the open block of each ring is out of memory.
        assert!(m.raw_spilled_bytes > 0 && m.tier_spilled_bytes > 0);
        assert_eq!(p.raw_spilled_bytes + p.tier_spilled_bytes, 0);
        assert!(m.raw_bytes * 3 < p.raw_bytes, "{m:?} {p:?}");
        // Per sample, spilled or not, the same but for the `Arc` of a block kept in memory.
        assert!((m.bytes_per_sample() - p.bytes_per_sample()).abs() < 1.0);
        let spill = s.spill_stats().unwrap();
        assert_eq!(
            spill.live_bytes as usize,
            m.raw_spilled_bytes + m.tier_spilled_bytes
        );
        assert_eq!(spill.errors, 0);
        let bytes = s.to_bytes_after(0).unwrap();
        assert!(bytes == plain.to_bytes_after(0).unwrap());
        // Loaded with a spill: out of memory as it loads. Without: all in memory, as before.
        let mut c = config(300, 4096);
        c.spill = Some(Arc::new(crate::spill::MemSegment::spill(64 << 10).0));
        let back = Store::from_bytes(c, &bytes).unwrap();
        let b = back.memory();
        let spilled = |m: MemoryStats| (m.raw_spilled_bytes, m.tier_spilled_bytes);
        assert_eq!(spilled(b), spilled(m));
        assert!(b.raw_bytes <= m.raw_bytes && b.tier_bytes <= m.tier_bytes);
        let b = Store::from_bytes(config(300, 4096), &bytes)
            .unwrap()
            .memory();
        assert_eq!(spilled(b), (0, 0));
        assert!(b.raw_bytes > p.raw_bytes / 2);
        for host in ["pi", "nas"] {
            assert_eq!(seen(&back, host), seen(&plain, host));
        }
    }

    /// A disk that fails keeps the history in memory, loses nothing and panics nowhere; the
    /// blocks go out once it works again. A block that cannot be read back is left out of an
    /// answer, and a snapshot is an error, not a panic.
    #[test]
    fn a_failing_spill_loses_nothing() {
        let (mut s, fail) = spilling(10_000, 64 << 10);
        let mut plain = Store::new(config(10_000, 4096));
        let mut seq = 0;
        let mut feed = |s: &mut Store, plain: &mut Store, n: u64| {
            for _ in 0..n {
                seq += 1;
                let ts = 1_000_000_000 + seq * 1000;
                for st in [&mut *s, &mut *plain] {
                    st.ingest(T, &sample("pi", seq, ts), ts).unwrap();
                }
            }
        };
        feed(&mut s, &mut plain, 200);
        let before = s.memory();
        fail.store(true, std::sync::atomic::Ordering::Relaxed);
        feed(&mut s, &mut plain, 200);
        let during = s.memory();
        assert_eq!(during.raw_spilled_bytes, before.raw_spilled_bytes);
        assert!(during.raw_bytes > before.raw_bytes * 2);
        let spill = s.spill_stats().unwrap();
        assert!(spill.errors > 0 && spill.last_error.is_some());
        // Nothing can be read back: those blocks are missing from answers, the open ones not.
        let raw = |s: &Store| {
            s.history(&id("pi"), 0, u64::MAX, Resolution::Raw, &[])
                .unwrap()
                .series[0]
                .points
                .len()
        };
        assert!(raw(&s) < raw(&plain) && raw(&s) > 0);
        assert!(s.to_bytes_after(0).is_err());
        // It works again: the blocks kept in memory go out with the next sample.
        fail.store(false, std::sync::atomic::Ordering::Relaxed);
        feed(&mut s, &mut plain, 1);
        let after = s.memory();
        assert!(after.raw_bytes < before.raw_bytes * 2, "{after:?}");
        assert!(after.raw_spilled_bytes > during.raw_spilled_bytes);
        assert_eq!(seen(&s, "pi"), seen(&plain, "pi"));
        assert!(s.to_bytes_after(0).unwrap() == plain.to_bytes_after(0).unwrap());
    }

    /// A host that went quiet keeps its blocks while others' roll over; `tick` moves them out of
    /// the mostly dead segments, so the spill's disk stays near what is live.
    #[test]
    fn tick_empties_mostly_dead_segments() {
        let (mut s, _) = spilling(200, 16 << 10);
        let mut plain = Store::new(config(200, 4096));
        let mut now = 1_000_000_000;
        let mut feed = |s: &mut Store, plain: &mut Store, hosts: &[&str], n: u64, from: u64| {
            for seq in from..from + n {
                now += 1000;
                for host in hosts {
                    let topic = format!("ember/v1/{host}/sample");
                    for st in [&mut *s, &mut *plain] {
                        st.ingest(&topic, &sample(host, seq, now), now).unwrap();
                    }
                }
            }
        };
        feed(&mut s, &mut plain, &["quiet", "busy"], 300, 1);
        // Only `busy` goes on: its old blocks drop out, `quiet`'s stay where they were.
        feed(&mut s, &mut plain, &["busy"], 3000, 301);
        let st = s.spill_stats().unwrap();
        assert!(st.disk_bytes > 4 * st.live_bytes, "{st:?}");
        s.tick(now);
        plain.tick(now);
        let st = s.spill_stats().unwrap();
        assert!(st.moved_blocks > 0, "{st:?}");
        assert!(
            st.disk_bytes <= 4 * st.live_bytes + 2 * (16 << 10),
            "{st:?}"
        );
        for host in ["quiet", "busy"] {
            assert_eq!(seen(&s, host), seen(&plain, host));
        }
        assert!(s.to_bytes_after(0).unwrap() == plain.to_bytes_after(0).unwrap());
    }

    /// `pi` says it is online, sampling every second, and sends its inventory, which is returned.
    fn connect(s: &mut Store, now_ms: u64) -> HostInfo {
        let online = enc("pi", Message::Status(Status::Online { interval_ms: 1000 }));
        s.ingest("ember/v1/pi/status", &online, now_ms).unwrap();
        let info = HostInfo {
            hostname: "pi".into(),
            memory: 4 << 30,
            ..HostInfo::default()
        };
        s.ingest(
            "ember/v1/pi/info",
            &enc("pi", Message::HostInfo(info.clone())),
            now_ms,
        )
        .unwrap();
        info
    }

    /// A snapshot's image is the store at the moment it was taken, however ingest goes on while
    /// it is written: hosts changed since are copied, not written to under it.
    #[test]
    fn an_image_keeps_the_moment_it_was_taken() {
        let mut s = Store::new(config(1000, 4096));
        let other = "ember/v1/other/sample";
        for seq in 1..=100u64 {
            s.ingest(T, &sample("pi", seq, seq * 1000), seq * 1000)
                .unwrap();
            s.ingest(other, &sample("other", seq, seq * 1000), seq * 1000)
                .unwrap();
        }
        let then = s.to_bytes_after(0).unwrap();
        let image = s.image();
        for seq in 101..=300u64 {
            s.ingest(T, &sample("pi", seq, seq * 1000), seq * 1000)
                .unwrap();
        }
        connect(&mut s, 300_000);
        s.tick(10_000_000);
        s.ingest("ember/v1/new/sample", &sample("new", 1, 1000), 1000)
            .unwrap();
        assert_eq!(image.into_bytes_after(0, 0).unwrap(), then);
        let now = Store::from_bytes(config(1000, 4096), &s.to_bytes_after(0).unwrap()).unwrap();
        assert_eq!(now.host_count(), 3);
        assert_eq!(now.summary(&id("pi"), 300_000).unwrap().received, 300);
        let back = Store::from_bytes(config(1000, 4096), &then).unwrap();
        assert_eq!(back.host_count(), 2);
        assert_eq!(back.summary(&id("pi"), 100_000).unwrap().received, 100);
        assert_eq!(
            back.samples(&id("other"), None, 1000),
            s.samples(&id("other"), None, 1000)
        );
    }

    #[test]
    fn snapshot_round_trips_and_resizes() {
        let mut s = Store::new(config(1000, 4096));
        for seq in 1..=300u64 {
            s.ingest(T, &sample("pi", seq, seq * 1000), seq * 1000)
                .unwrap();
        }
        let info = connect(&mut s, 300_000);
        let bytes = s.to_bytes_after(0).unwrap();
        // The snapshot's form: the same bytes after room for a header.
        let sealed = s.image().into_bytes_after(32, 100).unwrap();
        assert_eq!(sealed.len(), 32 + bytes.len());
        assert!(sealed[..32].iter().all(|b| *b == 0));
        assert_eq!(&sealed[32..], &bytes[..]);
        // Written host by host, they are what serialising the whole was.
        #[derive(Serialize)]
        struct Whole<'a> {
            hosts: &'a BTreeMap<HostId, Arc<Host>>,
            stats: &'a Stats,
        }
        let whole = Whole {
            hosts: &s.hosts,
            stats: &s.stats,
        };
        assert_eq!(postcard::to_allocvec(&whole).unwrap(), bytes);
        // Read a host at a time, they are what reading the whole gives.
        let p: Persisted = postcard::from_bytes(&bytes).unwrap();
        let back = Store::from_bytes(config(1000, 4096), &bytes).unwrap();
        assert_eq!(p.hosts.len(), back.host_count());
        assert_eq!(p.stats, back.stats());
        assert_eq!(back.stats(), s.stats());
        let h = back.summary(&id("pi"), 300_000).unwrap();
        assert_eq!(h.info(), Some(info), "inventory survives");
        assert_eq!(h.status, HostStatus::Online);
        assert_eq!(h.received, 300);
        assert_eq!(
            back.samples(&id("pi"), None, 1000),
            s.samples(&id("pi"), None, 1000)
        );
        let h = |st: &Store| {
            st.history(&id("pi"), 0, u64::MAX, Resolution::Tier(0), &[])
                .unwrap()
        };
        assert_eq!(h(&back), h(&s));
        // Smaller raw ring, a different tier: resized and rebuilt.
        let mut small = config(10, 4096);
        small.tiers[0].resolution = Duration::from_secs(300);
        let back = Store::from_bytes(small, &bytes).unwrap();
        assert!(back.summary(&id("pi"), 0).unwrap().samples < 10 + 64);
        assert!(h(&back).series.is_empty());
        // Garbage is an error, not a panic.
        assert!(Store::from_bytes(config(10, 4096), &bytes[..bytes.len() / 2]).is_err());
        assert!(Store::from_bytes(config(10, 4096), b"\xff\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn realistic_samples_are_compact() {
        // A Raspberry Pi–like sample drifting a little each second.
        let mut s = Store::new(config(3600, 4096));
        let mut x = 12345u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut payload_bytes = 0;
        for seq in 1..=3600u64 {
            let mut smp = Sample {
                seq,
                timestamp_ms: 1_700_000_000_000 + seq * 1000,
                uptime_s: 86_400 + seq,
                ..Sample::default()
            };
            smp.cpu.busy = rnd(3000) as u16;
            smp.cpu.user = smp.cpu.busy / 2;
            smp.cpu.system = smp.cpu.busy / 4;
            smp.cpu.cores.extend((0..4).map(|_| rnd(5000) as u16));
            smp.load.one = 30 + rnd(20) as u32;
            smp.load.five = 40;
            smp.load.fifteen = 35;
            smp.memory.total = 4 << 30;
            smp.memory.used = (1 << 30) + rnd(1 << 16) * 4096;
            smp.memory.available = smp.memory.total - smp.memory.used;
            smp.memory.cached = 2 << 30;
            smp.filesystems
                .push(ember_wire::Filesystem {
                    mount: "/".into(),
                    total: 31 << 30,
                    used: (9 << 30) + seq * 4096,
                })
                .unwrap();
            smp.networks
                .push(ember_wire::NetIo {
                    interface: "eth0".into(),
                    rx_bps: rnd(20_000),
                    tx_bps: rnd(5_000),
                    ..Default::default()
                })
                .unwrap();
            smp.temperatures
                .push(ember_wire::Temperature {
                    sensor: "cpu_thermal".into(),
                    millicelsius: 48_000 + rnd(3) as i32 * 487,
                })
                .unwrap();
            let p = enc("pi", Message::Sample(smp));
            payload_bytes += p.len();
            s.ingest(T, &p, seq * 1000).unwrap();
        }
        let m = s.memory();
        let per = m.bytes_per_sample();
        let wire = payload_bytes as f64 / 3600.0;
        eprintln!("postcard {wire:.0} B/sample, ring {per:.1} B/sample");
        assert!(per < wire / 2.0, "ring {per} vs postcard {wire}");
    }

    /// A snapshot written before the store was slimmed down (issue #9: the ring's newest record
    /// kept encoded, the tiers' keys shared, the latest sample and inventory boxed): the same
    /// store still writes exactly these bytes, and reads them back. `EMBER_BLESS=1` rewrites
    /// the file, which only a deliberate change of the snapshot format may do.
    #[test]
    fn issue_9_snapshots_from_before_still_load() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/snapshot-v1.bin"
        );
        let mut s = Store::new(config(100, 4096));
        connect(&mut s, 1000);
        // 150 samples over two and a half minutes: two 1-minute buckets closed, one open; a
        // series (the second filesystem) missing from the last bucket but for one sample.
        for seq in 1..=150u64 {
            let mut smp = Sample {
                seq,
                timestamp_ms: 60_000 + seq * 1000,
                ..Sample::default()
            };
            smp.cpu.busy = (seq * 37 % 10_000) as u16;
            smp.cpu.cores.extend([1, 2, (seq % 7) as u16]);
            for mount in ["/", "/boot"] {
                if mount == "/" || seq < 120 || seq == 140 {
                    smp.filesystems
                        .push(ember_wire::Filesystem {
                            mount: mount.into(),
                            total: 31 << 30,
                            used: (9 << 30) + seq * 4096,
                        })
                        .unwrap();
                }
            }
            s.ingest(T, &enc("pi", Message::Sample(smp)), 60_000 + seq * 1000)
                .unwrap();
        }
        let bytes = s.to_bytes_after(0).unwrap();
        if std::env::var_os("EMBER_BLESS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            std::fs::write(path, &bytes).unwrap();
        }
        // (The fixture was written when blocks held 64 records; they hold 32 now, so the same
        // samples are cut into blocks differently. `snapshot-v1-32.bin` holds today's bytes.)
        let now = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/snapshot-v1-32.bin"
        );
        if std::env::var_os("EMBER_BLESS_32").is_some() {
            std::fs::write(now, &bytes).unwrap();
        }
        assert!(
            std::fs::read(now).unwrap() == bytes,
            "the snapshot's bytes changed"
        );
        let old = std::fs::read(path).unwrap();
        let back = Store::from_bytes(config(100, 4096), &old).unwrap();
        let pi = id("pi");
        // The newest 100 (the ring's capacity): blocks of 64 kept more of the oldest.
        let from = 60_000 + 51 * 1000;
        assert_eq!(back.samples(&pi, None, 100), s.samples(&pi, None, 100));
        for r in [Resolution::Raw, Resolution::Tier(0)] {
            assert_eq!(
                back.history(&pi, from, u64::MAX, r, &[]),
                s.history(&pi, from, u64::MAX, r, &[])
            );
        }
        let (a, b) = (back.summary(&pi, 200_000), s.summary(&pi, 200_000));
        let a = a.unwrap();
        let b = b.unwrap();
        assert_eq!(
            (a.latest(), a.info(), a.status),
            (b.latest(), b.info(), b.status)
        );
        // And the store goes on from it as the original does. (Over its newest 100 samples:
        // which older ones each keeps depends on where its blocks begin, see `Ring::stagger`.)
        let mut back = back;
        for st in [&mut s, &mut back] {
            st.ingest(T, &sample("pi", 151, 211_000), 211_000).unwrap();
        }
        assert_eq!(back.samples(&pi, None, 100), s.samples(&pi, None, 100));
        for r in [Resolution::Raw, Resolution::Tier(0)] {
            assert_eq!(
                back.history(&pi, from + 1000, u64::MAX, r, &[]),
                s.history(&pi, from + 1000, u64::MAX, r, &[])
            );
        }
        let again = Store::from_bytes(config(100, 4096), &back.to_bytes_after(0).unwrap());
        assert_eq!(
            again.unwrap().samples(&pi, None, 100),
            s.samples(&pi, None, 100)
        );
    }
}
