//! The alert engine's edge: called by the ingest thread on its tick, it gathers each host's facts
//! from the store, evaluates, appends the recorded events to `alerts.jsonl` in the data
//! directory (read back at start, so the history and the firing alerts survive a restart), queues
//! the notifications and publishes the retained MQTT alert topic when the active list changes.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use super::notify::{Notifier, Retry};
use super::{Alert, AlertEvent, AlertsConfig, Engine, FsTrend, HostFacts};
use crate::bridge::{Publish, ALERTS_TOPIC};
use crate::store::{Resolution, Store};
use ember_wire::topic::{self, Kind};
use ember_wire::{Envelope, HostAlerts, HostId, Message};

/// What HTTP and the ingest thread share.
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
        let tmp = self.silences_path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &self.silences_path));
        if let Err(e) = written {
            tracing::warn!("cannot save {}: {e}", self.silences_path.display());
        }
    }

    /// The engine, locked.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        // Evaluation leaves the engine consistent between statements that can panic.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The ingest thread's side.
pub struct Evaluator {
    shared: Arc<Alerting>,
    every: Duration,
    next: Instant,
    log_path: PathBuf,
    last_topic: Option<Vec<u8>>,
    /// What each host's panel was last told: (firing, text).
    banners: HashMap<HostId, (u8, String)>,
    /// Filesystem trends, refitted every [`TREND_EVERY`] (a trend over hours moves slowly, and
    /// reading hours of history for every host at every evaluation would hold up ingest).
    trends: HashMap<HostId, Vec<FsTrend>>,
    trends_at: Option<Instant>,
}

/// How often the filesystem trends are read again from the history.
pub const TREND_EVERY: Duration = Duration::from_secs(60);

const LOG: &str = "alerts.jsonl";

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
    /// tokio runtime) and returns the ingest thread's side and the shared state.
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
        match std::fs::read(&silences_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(list) => engine.restore_silences(list, crate::now_ms()),
                Err(e) => tracing::warn!("{}: ignored: {e}", silences_path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot read {}: {e}", silences_path.display()),
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
                trends_at: None,
            },
            shared,
        )
    }

    /// Evaluates if it is time; returns what to publish on MQTT.
    pub fn tick(&mut self, store: &Store, now: Instant, now_ms: u64) -> Vec<Publish> {
        if now < self.next {
            return Vec::new();
        }
        self.next = now + self.every;
        let mut engine = self.shared.engine();
        let summaries = store.summaries(now_ms);
        if let Some(w) = engine.trend_window() {
            if self
                .trends_at
                .is_none_or(|t| now.duration_since(t) >= TREND_EVERY)
            {
                self.trends_at = Some(now);
                self.trends = summaries
                    .iter()
                    .map(|h| (h.id.clone(), trends(store, h, now_ms, w)))
                    .collect();
            }
        }
        let facts: Vec<HostFacts<'_>> = summaries
            .iter()
            .map(|h| HostFacts::of(h, self.trends.get(h.id).map(Vec::as_slice).unwrap_or(&[])))
            .collect();
        let notifications = engine.evaluate(now_ms, &facts);
        let recorded = engine.take_recorded();
        let active = engine.active(now_ms);
        drop(engine);
        if !recorded.is_empty() {
            append(&self.log_path, &recorded);
        }
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
        out
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
fn trends(
    store: &Store,
    h: &crate::store::HostSummary<'_>,
    now_ms: u64,
    window: Duration,
) -> Vec<FsTrend> {
    let Some(latest) = h.latest else {
        return Vec::new();
    };
    let from = now_ms.saturating_sub(window.as_millis() as u64);
    let only = ["fs.used".to_string()];
    let Some(history) = store.history(h.id, from, now_ms, Resolution::Auto, &only) else {
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
