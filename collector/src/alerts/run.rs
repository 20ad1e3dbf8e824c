//! The alert engine's edge: on its own thread (`ember-alerts`, [`Evaluator::spawn`]), every
//! `evaluate-every`, it copies each host's facts out of the store, evaluates, appends the
//! recorded events to `alerts.jsonl` in the data directory (read back at start, so the history
//! and the firing alerts survive a restart), queues the notifications and hands the retained MQTT
//! alert topic (when the active list changes) and the hosts' banners to the ingest thread, the
//! only one that publishes on the bus.
//!
//! The store is read in short holds of its lock, never for a whole evaluation: the facts
//! [`CHUNK`] hosts at a time, each host's filesystem trends under a hold of their own. Ingest,
//! which needs the write lock, waits at most one such hold.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::notify::{Notifier, Retry};
use super::{Alert, AlertEvent, AlertsConfig, Engine, FsTrend, HostFacts};
use crate::bridge::{Publish, ALERTS_TOPIC};
use crate::packed::Packed;
use crate::store::{HostStatus, Resolution, Store};
use ember_wire::topic::{self, Kind};
use ember_wire::{Envelope, HostAlerts, HostId, Message, Sample};

/// What HTTP and the alert thread share.
#[derive(Debug)]
pub struct Alerting {
    engine: Mutex<Engine>,
    /// The webhook deliveries.
    pub notifier: Notifier,
    silences_path: PathBuf,
}

impl Alerting {
    /// Writes the silences in force to `silences.json` in the data directory (after a change
    /// through the API), so that a restart keeps them.
    pub fn save_silences(&self) {
        let list = self.engine().silences(crate::now_ms());
        let _ = save_json(&self.silences_path, &list);
    }

    /// The engine, locked.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        // Evaluation leaves the engine consistent between statements that can panic.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Read access to the store: `RwLock<Store>` takes its read lock for each call (the alert
/// thread), a `Store` is read as it is (a caller that already holds the lock, as benchmarks
/// measuring one long hold do).
pub trait ReadStore {
    /// Calls `f` with the store.
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R;
}

impl ReadStore for RwLock<Store> {
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&Store::read_lock(self))
    }
}

impl ReadStore for Store {
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(self)
    }
}

/// How many hosts' facts are copied under one hold of the store's read lock.
pub const CHUNK: usize = 256;

/// The store-lock holds of the last [`Evaluator::tick`]: the longest, and how many there were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    /// The longest copying facts (a chunk of hosts).
    pub facts: Duration,
    /// The longest refitting one host's filesystem trends (zero when the tick did not refit).
    pub trends: Duration,
    /// How many holds there were.
    pub count: usize,
    /// How many of them lasted longer than [`SLOW_HOLD`].
    pub slow: usize,
}

/// A hold of the store's lock longer than this is counted in [`Holds::slow`].
pub const SLOW_HOLD: Duration = Duration::from_millis(5);

impl Holds {
    fn count(&mut self, held: Duration) {
        self.count += 1;
        self.slow += usize::from(held > SLOW_HOLD);
    }
}

/// What the engine needs of one host, copied out of the store: its newest sample as the store
/// keeps it, a few hundred bytes, decoded a [`CHUNK`] of hosts at a time as they are evaluated
/// (decoded, a sample is 2.6 KB).
struct Owned {
    id: HostId,
    status: HostStatus,
    sample: Option<Packed<Sample>>,
}

/// The alert thread's side.
pub struct Evaluator {
    shared: Arc<Alerting>,
    every: Duration,
    next: Instant,
    log_path: PathBuf,
    last_topic: Option<Vec<u8>>,
    /// What each host's panel was last told: (firing, text).
    banners: HashMap<HostId, (u8, String)>,
    /// Filesystem trends, each host's refitted once every [`TREND_EVERY`] (a trend over hours
    /// moves slowly, and reading hours of history for every host at every evaluation would cost
    /// far more).
    trends: HashMap<HostId, Vec<FsTrend>>,
    /// The window `trends` were fitted over.
    trends_window: Option<Duration>,
    /// The last host refitted: the next tick goes on after it.
    refitted_last: Option<HostId>,
    holds: Holds,
    /// Where the pending alerts' `for` timers are kept across a restart.
    pending_path: PathBuf,
    /// The pending alerts last written there (rule, host, since) and when.
    pending_saved: (Vec<(String, HostId, u64)>, Option<Instant>),
}

/// The pending alerts as `alerts-pending.json` holds them.
#[derive(Debug, Serialize, Deserialize)]
struct PendingFile {
    /// When written, ms since the Unix epoch.
    saved_ms: u64,
    pending: Vec<Alert>,
}

/// A pending alert's `for` timer is written again this often while it stays pending, so that
/// the file's time says how long the collector was stopped ([`Engine::restore_pending`]).
const PENDING_SAVE_EVERY: Duration = Duration::from_secs(60);

/// How often each host's filesystem trends are read again from the history. The refits are
/// spread over the ticks in between, so that no tick does the whole fleet's at once.
pub const TREND_EVERY: Duration = Duration::from_secs(60);

const LOG: &str = "alerts.jsonl";
const PENDING: &str = "alerts-pending.json";

/// Reads a JSON file the alert state keeps: `None` if there is none, or (reported, with
/// `consequence` after the reason) if it cannot be read or parsed.
fn load_json<T: serde::de::DeserializeOwned>(path: &Path, consequence: &str) -> Option<T> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("{}: ignored{consequence}: {e}", path.display());
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            None
        }
    }
}

/// Replaces `path` with `value` as JSON, whole or not at all (a tmp file, then a rename);
/// reports a failure. Whether it was written.
fn save_json(path: &Path, value: &impl Serialize) -> bool {
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec_pretty(value)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = &written {
        tracing::warn!("cannot save {}: {e}", path.display());
    }
    written.is_ok()
}

/// Reads the recorded events, skipping (and reporting) lines that do not parse.
fn load(path: &Path, keep: usize) -> Vec<AlertEvent> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut events = std::collections::VecDeque::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<AlertEvent>(&line) {
            Ok(e) => {
                events.push_back(e);
                if events.len() > keep {
                    events.pop_front();
                }
            }
            Err(e) => tracing::warn!("{}:{}: skipped: {e}", path.display(), i + 1),
        }
    }
    events.into()
}

fn append(path: &Path, events: &[AlertEvent]) {
    let mut text = String::new();
    for e in events {
        if let Ok(line) = serde_json::to_string(e) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!("cannot record alerts in {}: {e}", path.display());
    }
}

impl Evaluator {
    /// Loads the recorded history from `data_dir`, starts the webhook tasks (on the current
    /// tokio runtime) and returns the alert thread's side and the shared state.
    pub fn start(config: AlertsConfig, data_dir: &Path) -> (Evaluator, Arc<Alerting>) {
        let log_path = data_dir.join(LOG);
        // The state is rebuilt from the whole kept history; fired-and-never-resolved events
        // older than that are lost, which `history` (1000 by default) makes rare.
        let keep = config.history;
        let events = load(&log_path, keep);
        // Keep the file from growing without bound: rewrite it with what was kept.
        if events.len() == keep {
            let tmp = data_dir.join("alerts.jsonl.tmp");
            let _ = std::fs::remove_file(&tmp);
            append(&tmp, &events);
            if let Err(e) = std::fs::rename(&tmp, &log_path) {
                tracing::warn!("cannot compact {}: {e}", log_path.display());
            }
        }
        let notifier = Notifier::spawn(
            &config.webhooks,
            Retry {
                attempts: config.retry_attempts,
                initial: config.retry_initial,
                max: config.retry_max,
            },
        );
        let every = config.evaluate_every;
        let mut engine = Engine::new(config);
        engine.restore(events);
        engine.take_recorded();
        let silences_path = data_dir.join("silences.json");
        if let Some(list) = load_json(&silences_path, "") {
            engine.restore_silences(list, crate::now_ms());
        }
        let pending_path = data_dir.join(PENDING);
        let starts_over = " (pending alerts' `for` timers start over)";
        if let Some(f) = load_json::<PendingFile>(&pending_path, starts_over) {
            engine.restore_pending(f.pending, f.saved_ms, crate::now_ms());
        }
        let shared = Arc::new(Alerting {
            engine: Mutex::new(engine),
            notifier,
            silences_path,
        });
        (
            Evaluator {
                shared: shared.clone(),
                every,
                next: Instant::now(),
                log_path,
                last_topic: None,
                banners: HashMap::new(),
                trends: HashMap::new(),
                trends_window: None,
                refitted_last: None,
                holds: Holds::default(),
                pending_path,
                pending_saved: (Vec::new(), None),
            },
            shared,
        )
    }

    /// Runs [`Evaluator::tick`] on a thread of its own (`ember-alerts`) every `evaluate-every`
    /// and sends what to publish to `publish` (drained by the ingest thread). The thread ends
    /// once `stop` is sent to or dropped (between two hosts' trend refits at the latest), or
    /// when nothing receives `publish` any more.
    pub fn spawn(
        mut self,
        store: Arc<RwLock<Store>>,
        publish: Sender<Publish>,
        stop: Receiver<()>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("ember-alerts".into())
            .spawn(move || loop {
                let stopping = || !matches!(stop.try_recv(), Err(TryRecvError::Empty));
                let Some(out) =
                    self.tick_unless(&*store, Instant::now(), crate::now_ms(), stopping)
                else {
                    return;
                };
                for p in out {
                    if publish.send(p).is_err() {
                        return;
                    }
                }
                let wait = self.next.saturating_duration_since(Instant::now());
                match stop.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
    }

    /// Evaluates if it is time; returns what to publish on MQTT.
    pub fn tick(&mut self, store: &impl ReadStore, now: Instant, now_ms: u64) -> Vec<Publish> {
        self.tick_unless(store, now, now_ms, || false)
            .unwrap_or_default()
    }

    /// The longest single hold of the store's lock by the last tick that evaluated.
    pub fn holds(&self) -> Holds {
        self.holds
    }

    /// [`Evaluator::tick`], given up (`None`) as soon as `stopping` says so during a refit.
    fn tick_unless(
        &mut self,
        store: &impl ReadStore,
        now: Instant,
        now_ms: u64,
        stopping: impl Fn() -> bool,
    ) -> Option<Vec<Publish>> {
        if now < self.next {
            return Some(Vec::new());
        }
        self.next = now + self.every;
        self.holds = Holds::default();
        let owned = self.copy_facts(store, now_ms);
        // The engine is locked only to evaluate: the API's alert routes never wait for the store.
        let window = self.shared.engine().trend_window();
        if window != self.trends_window {
            self.trends.clear();
            self.trends_window = window;
        }
        if let Some(w) = window {
            for i in self.due_for_refit(&owned) {
                if stopping() {
                    return None;
                }
                let id = &owned[i].id;
                let t = store.read(|s| {
                    let started = Instant::now();
                    let t = trends(s, id, now_ms, w);
                    (t, started.elapsed())
                });
                self.holds.trends = self.holds.trends.max(t.1);
                self.holds.count(t.1);
                self.trends.insert(id.clone(), t.0);
            }
        }
        let mut engine = self.shared.engine();
        let mut notifications = Vec::new();
        for chunk in owned.chunks(CHUNK) {
            let samples: Vec<Option<Sample>> = chunk
                .iter()
                .map(|h| h.sample.as_ref().and_then(Packed::get))
                .collect();
            let facts: Vec<HostFacts<'_>> = chunk
                .iter()
                .zip(&samples)
                .map(|(h, sample)| HostFacts {
                    id: &h.id,
                    status: h.status,
                    sample: sample.as_ref(),
                    trends: self.trends.get(&h.id).map(Vec::as_slice).unwrap_or(&[]),
                })
                .collect();
            engine.evaluate_hosts(now_ms, &facts, &mut notifications);
        }
        engine.finish(now_ms, &mut notifications);
        let recorded = engine.take_recorded();
        let active = engine.active(now_ms);
        let pending = engine.pending(now_ms);
        drop(engine);
        if !recorded.is_empty() {
            append(&self.log_path, &recorded);
        }
        self.save_pending(pending, now, now_ms);
        for n in &notifications {
            tracing::info!("alert {:?}: {} on {}", n.change, n.alert.rule, n.alert.host);
            self.shared.notifier.send(n);
        }
        let mut out = self.banners(&active);
        let payload = json!(active).to_string().into_bytes();
        if self.last_topic.as_ref() != Some(&payload) {
            self.last_topic = Some(payload.clone());
            out.push(Publish {
                topic: ALERTS_TOPIC.to_string(),
                payload,
                retain: true,
            });
        }
        Some(out)
    }

    /// Writes the pending alerts to `alerts-pending.json` when they changed, and every
    /// [`PENDING_SAVE_EVERY`] while any is pending.
    fn save_pending(&mut self, pending: Vec<Alert>, now: Instant, now_ms: u64) {
        let key: Vec<(String, HostId, u64)> = pending
            .iter()
            .map(|a| (a.rule.clone(), a.host.clone(), a.since_ms))
            .collect();
        let (last, at) = &self.pending_saved;
        let stale = !key.is_empty() && at.is_none_or(|at| now >= at + PENDING_SAVE_EVERY);
        if key == *last && !stale {
            return;
        }
        let file = PendingFile {
            saved_ms: now_ms,
            pending,
        };
        // If not, tried again at the next tick; a restart meanwhile restarts the timers.
        if save_json(&self.pending_path, &file) {
            self.pending_saved = (key, Some(now));
        }
    }

    /// Which of `owned` (in host order, as [`Evaluator::copy_facts`] gives them) to refit this
    /// tick: every host without trends yet, then the next share of the others after the last one
    /// refitted, wrapping around, so that each is refitted once every [`TREND_EVERY`]. Forgets
    /// the trends of hosts no longer in the store.
    fn due_for_refit(&mut self, owned: &[Owned]) -> Vec<usize> {
        self.trends
            .retain(|id, _| owned.binary_search_by(|h| h.id.cmp(id)).is_ok());
        let (fitted, fresh): (Vec<usize>, Vec<usize>) =
            (0..owned.len()).partition(|&i| self.trends.contains_key(&owned[i].id));
        let ticks = (TREND_EVERY.as_secs_f64() / self.every.as_secs_f64()).max(1.0);
        let share = (owned.len() as f64 / ticks).ceil() as usize;
        // The round goes on after the last host refitted, wrapping around.
        let start = self
            .refitted_last
            .as_ref()
            .map_or(0, |last| fitted.partition_point(|&i| owned[i].id <= *last));
        let round: Vec<usize> = fitted
            .iter()
            .cycle()
            .skip(start)
            .take(share.min(fitted.len()))
            .copied()
            .collect();
        if let Some(&i) = round.last() {
            self.refitted_last = Some(owned[i].id.clone());
        }
        [fresh, round].concat()
    }

    /// Every host's facts, [`CHUNK`] hosts per hold of the store's lock, ordered by id.
    fn copy_facts(&mut self, store: &impl ReadStore, now_ms: u64) -> Vec<Owned> {
        let mut owned: Vec<Owned> = Vec::new();
        loop {
            let (chunk, held) = store.read(|s| {
                let started = Instant::now();
                let chunk: Vec<Owned> = s
                    .summaries_after(owned.last().map(|h| &h.id), CHUNK, now_ms)
                    .into_iter()
                    .map(|h| Owned {
                        id: h.id.clone(),
                        status: h.status,
                        sample: h.latest_packed.cloned(),
                    })
                    .collect();
                (chunk, started.elapsed())
            });
            self.holds.facts = self.holds.facts.max(held);
            self.holds.count(held);
            let last = chunk.len() < CHUNK;
            owned.extend(chunk);
            if last {
                return owned;
            }
        }
    }

    /// Each host's banner (retained on `ember/v1/{host}/alerts`) where it changed: how many
    /// alerts fire and the most severe (the oldest among equals).
    fn banners(&mut self, active: &[Alert]) -> Vec<Publish> {
        let mut now: HashMap<HostId, (u8, String)> = HashMap::new();
        let mut worst: HashMap<&HostId, &Alert> = HashMap::new();
        for a in active {
            let e = now.entry(a.host.clone()).or_insert((0, String::new()));
            e.0 = e.0.saturating_add(1);
            let w = worst.entry(&a.host).or_insert(a);
            if (a.severity, std::cmp::Reverse(a.since_ms))
                > (w.severity, std::cmp::Reverse(w.since_ms))
            {
                *w = a;
            }
        }
        for (host, a) in worst {
            if let Some(e) = now.get_mut(host) {
                e.1 = a.rule.clone();
            }
        }
        let mut out = Vec::new();
        let gone: Vec<HostId> = self
            .banners
            .keys()
            .filter(|h| !now.contains_key(*h))
            .cloned()
            .collect();
        for host in gone {
            self.banners.remove(&host);
            out.push(banner(&host, 0, ""));
        }
        for (host, b) in now {
            if self.banners.get(&host) != Some(&b) {
                out.push(banner(&host, b.0, &b.1));
                self.banners.insert(host, b);
            }
        }
        out
    }
}

fn banner(host: &HostId, firing: u8, text: &str) -> Publish {
    let mut t = ember_wire::heapless::String::<32>::new();
    for c in text.chars() {
        if t.push(c).is_err() {
            break;
        }
    }
    let message = Message::Alerts(HostAlerts { firing, text: t });
    let mut buf = [0u8; ember_wire::MAX_ENCODED_LEN];
    let payload = Envelope::new(host.clone(), message)
        .encode(&mut buf)
        .map(|b| b.to_vec())
        .unwrap_or_default();
    Publish {
        topic: topic::topic(host, Kind::Alerts).to_string(),
        payload,
        retain: true,
    }
}

/// Each filesystem's use over `window`, with its size from the newest sample.
///
/// Read from the finest downsampled tier that keeps the whole window: a trend over hours needs
/// no more than a point a minute, and the raw history (which `Resolution::Auto` picks for a host
/// younger than the window, as every host is in a fleet's first hours) decodes every sample:
/// 6,333 young hosts took seconds of CPU a refit.
fn trends(store: &Store, id: &HostId, now_ms: u64, window: Duration) -> Vec<FsTrend> {
    let Some(latest) = store.summary(id, now_ms).and_then(|h| h.latest()) else {
        return Vec::new();
    };
    let from = now_ms.saturating_sub(window.as_millis() as u64);
    let only = ["fs.used".to_string()];
    let resolution = store
        .config()
        .tiers
        .iter()
        .position(|t| t.retention >= window)
        .map_or(Resolution::Auto, Resolution::Tier);
    let Some(history) = store.history(id, from, now_ms, resolution, &only) else {
        return Vec::new();
    };
    let totals: HashMap<&str, u64> = latest
        .filesystems
        .iter()
        .map(|f| (f.mount.as_str(), f.total))
        .collect();
    history
        .series
        .into_iter()
        .filter_map(|s| {
            let mount = s.label?;
            let total = *totals.get(mount.as_str())? as f64;
            Some(FsTrend {
                points: s
                    .points
                    .iter()
                    .map(|p| (p[0] as u64, p[2] as f64))
                    .collect(),
                mount,
                total,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use crate::store::StoreConfig;
    use ember_wire::{Filesystem, Status, MAX_ENCODED_LEN};

    const MIN: u64 = 60_000;

    fn alerts(rules: &str) -> AlertsConfig {
        alerts_every("100ms", rules)
    }

    fn alerts_every(every: &str, rules: &str) -> AlertsConfig {
        #[derive(serde::Deserialize)]
        struct Doc {
            alerts: super::super::RawAlerts,
        }
        let doc: Doc = toml::from_str(&format!(
            "[alerts]\ndefault-rules = false\nevaluate-every = \"{every}\"\n{rules}"
        ))
        .unwrap();
        super::super::RawAlerts::defaults()
            .merge(doc.alerts)
            .validate()
            .unwrap()
    }

    fn ingest(store: &mut Store, host: &HostId, kind: &str, m: Message, at: u64) {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let bytes = Envelope::new(host.clone(), m).encode(&mut buf).unwrap();
        store
            .ingest(&format!("ember/v1/{host}/{kind}"), bytes, at)
            .unwrap();
    }

    /// `hosts` hosts online since half an hour, a sample a minute: busy CPU, and a `/` that
    /// fills 1% a minute from half full.
    fn fleet(hosts: usize, now_ms: u64) -> Store {
        let config = RawConfig::default().validate().unwrap();
        let mut store = Store::new(StoreConfig::from_config(&config));
        let t0 = now_ms - 30 * MIN;
        for h in 0..hosts {
            let id = HostId::new(&format!("pi-{h:04}")).unwrap();
            let online = Message::Status(Status::Online {
                interval_ms: 60_000,
            });
            ingest(&mut store, &id, "status", online, t0);
            for m in 0..=30 {
                let mut s = Sample {
                    seq: m + 1,
                    timestamp_ms: t0 + m * MIN,
                    ..Sample::default()
                };
                s.cpu.busy = 9_900;
                let _ = s.filesystems.push(Filesystem {
                    mount: "/".into(),
                    total: 1000,
                    used: 500 + 10 * m,
                });
                ingest(&mut store, &id, "sample", Message::Sample(s), t0 + m * MIN);
            }
        }
        store
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ember-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The hosts with a banner saying `firing` alerts, from what a tick publishes.
    fn bannered(out: &[Publish], firing: u8) -> Vec<String> {
        let mut hosts: Vec<String> = out
            .iter()
            .filter(|p| p.topic != ALERTS_TOPIC)
            .filter_map(|p| {
                let e = ember_wire::decode(&p.payload).ok()?;
                match e.message {
                    Message::Alerts(a) if a.firing == firing => Some(e.host.to_string()),
                    _ => None,
                }
            })
            .collect();
        hosts.sort();
        hosts
    }

    #[test]
    fn a_tick_in_short_holds_sees_every_host_as_one_long_hold_does() {
        let now_ms = crate::now_ms();
        let hosts = 2 * CHUNK + 3;
        let store = fleet(hosts, now_ms);
        let config = alerts(
            "[[alerts.rules]]\nname = \"busy\"\nwhen = { metric = \"cpu.busy\", above = 0.9 }\n\
             [[alerts.rules]]\nname = \"filling\"\nwhen = { disk-full-within = \"1h\", trend-window = \"1h\" }\n",
        );
        let d = dir("chunks");
        for sub in ["short", "long"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let (mut short, shared) = Evaluator::start(config.clone(), &d.join("short"));
        let (mut long, _) = Evaluator::start(config, &d.join("long"));
        let now = Instant::now();
        let store = RwLock::new(store);
        let out = short.tick(&store, now, now_ms);
        let expected: Vec<String> = (0..hosts).map(|h| format!("pi-{h:04}")).collect();
        // Both rules fire on every host: the second from each host's own trend refit.
        assert_eq!(bannered(&out, 2), expected);
        assert_eq!(shared.engine().active(now_ms).len(), 2 * hosts);
        assert!(out.iter().any(|p| p.topic == ALERTS_TOPIC && p.retain));
        // Three chunks of facts, then one hold per host's trends.
        assert_eq!(short.holds().count, 3 + hosts);
        let mut out_long = long.tick(&*store.read().unwrap(), now, now_ms);
        let key = |p: &Publish| p.topic.clone();
        let mut out = out;
        out.sort_by_key(key);
        out_long.sort_by_key(key);
        assert_eq!(out, out_long);
        // Not yet time: nothing read, nothing published.
        assert!(short.tick(&store, now, now_ms).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A restart keeps the `for` timer of an alert that was pending: it fires when it would
    /// have without the restart.
    #[test]
    fn pending_alerts_keep_their_for_timers_across_a_restart() {
        let now_ms = crate::now_ms();
        let store = RwLock::new(fleet(2, now_ms));
        let config = alerts(
            "[[alerts.rules]]\nname = \"busy\"\nfor = \"2m\"\nwhen = { metric = \"cpu.busy\", above = 0.9 }\n",
        );
        let d = dir("pending");
        let (mut e, shared) = Evaluator::start(config.clone(), &d);
        let now = Instant::now();
        e.tick(&store, now, now_ms);
        let pending = shared.engine().pending(now_ms);
        assert_eq!(pending.len(), 2);
        assert!(pending.iter().all(|a| a.since_ms == now_ms));
        drop((e, shared));

        // Restarted a minute later: the timers go on from `now_ms`.
        let later = now_ms + MIN;
        let (mut again, shared) = Evaluator::start(config.clone(), &d);
        let restored = shared.engine().pending(later);
        assert_eq!(restored.len(), 2, "{restored:?}");
        assert!(restored.iter().all(|a| a.since_ms == now_ms));
        again.tick(&store, now, later);
        assert!(shared.engine().active(later).is_empty());
        again.tick(&store, now + Duration::from_secs(60), now_ms + 2 * MIN);
        assert_eq!(shared.engine().active(now_ms + 2 * MIN).len(), 2);

        // A damaged file is reported and ignored: the timers start over, nothing breaks.
        std::fs::write(d.join(PENDING), b"{not json").unwrap();
        let (_, shared) = Evaluator::start(config, &d);
        assert!(shared.engine().pending(later).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    const FILLING: &str =
        "[[alerts.rules]]\nname = \"filling\"\nwhen = { disk-full-within = \"1h\", trend-window = \"1h\" }\n";

    #[test]
    fn the_first_tick_fits_every_host_then_each_tick_refits_its_share() {
        let now_ms = crate::now_ms();
        let hosts = 30;
        let store = RwLock::new(fleet(hosts, now_ms));
        let d = dir("spread");
        let (mut e, shared) = Evaluator::start(alerts_every("5s", FILLING), &d);
        let mut now = Instant::now();
        e.tick(&store, now, now_ms);
        // One chunk of facts, then every host's trends: none had any yet.
        assert_eq!(e.holds().count, 1 + hosts);
        assert_eq!(shared.engine().active(now_ms).len(), hosts);
        // A minute is 12 ticks of 5 s: 30 hosts make 3 refits a tick.
        for _ in 0..12 {
            now += Duration::from_secs(5);
            e.tick(&store, now, now_ms);
            assert_eq!(e.holds().count, 1 + 3);
            assert_eq!(shared.engine().active(now_ms).len(), hosts);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn each_host_is_refitted_once_a_round_and_a_new_one_at_once() {
        let d = dir("rounds");
        let (mut e, _) = Evaluator::start(alerts_every("5s", FILLING), &d);
        let host = |h: usize| Owned {
            id: HostId::new(&format!("pi-{h:04}")).unwrap(),
            status: HostStatus::Online,
            sample: None,
        };
        let mut owned: Vec<Owned> = (0..60).step_by(2).map(host).collect();
        for h in &owned {
            e.trends.insert(h.id.clone(), Vec::new());
        }
        let mut seen = vec![0; owned.len()];
        for _ in 0..10 {
            let due = e.due_for_refit(&owned);
            assert_eq!(due.len(), 3);
            for i in due {
                seen[i] += 1;
            }
        }
        assert_eq!(seen, vec![1; owned.len()]);
        // A host that joins is fitted at the next tick, besides the round's share; one that
        // left loses its trends.
        owned.insert(3, host(5));
        let gone = owned.pop().unwrap();
        let due = e.due_for_refit(&owned);
        assert_eq!(due[0], 3);
        assert_eq!(due.len(), 1 + 3);
        assert!(!e.trends.contains_key(&gone.id));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_refit_gives_up_when_the_collector_stops() {
        let now_ms = crate::now_ms();
        let store = RwLock::new(fleet(3, now_ms));
        let config =
            alerts("[[alerts.rules]]\nname = \"filling\"\nwhen = { disk-full-within = \"1h\" }\n");
        let d = dir("stop");
        let (mut e, shared) = Evaluator::start(config, &d);
        assert!(e
            .tick_unless(&store, Instant::now(), now_ms, || true)
            .is_none());
        assert!(shared.engine().active(now_ms).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_thread_hands_its_publishes_over_and_ends_when_stop_is_dropped() {
        let now_ms = crate::now_ms();
        let store = Arc::new(RwLock::new(fleet(2, now_ms)));
        let config = alerts(
            "[[alerts.rules]]\nname = \"busy\"\nwhen = { metric = \"cpu.busy\", above = 0.9 }\n",
        );
        let d = dir("thread");
        let (e, _) = Evaluator::start(config, &d);
        let (publish, published) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = e.spawn(store, publish, stopped).unwrap();
        let mut topics = Vec::new();
        while topics.len() < 3 {
            let p = published.recv_timeout(Duration::from_secs(10)).unwrap();
            topics.push(p.topic);
        }
        topics.sort();
        assert_eq!(
            topics,
            [
                ALERTS_TOPIC,
                "ember/v1/pi-0000/alerts",
                "ember/v1/pi-0001/alerts"
            ]
        );
        assert_eq!(thread.thread().name(), Some("ember-alerts"));
        drop(stop);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(thread.is_finished(), "the alert thread outlived its stop");
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
