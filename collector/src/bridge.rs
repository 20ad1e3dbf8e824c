//! The MQTT bridge for subscribers that do not speak postcard: a retained JSON state per host and
//! Home Assistant MQTT discovery. Plain state: it turns the store's [`Event`]s into the
//! publications to make; the ingest thread sends them.
//!
//! Topics (retained):
//!
//! ```text
//! ember/json/{host}                         JSON state: status, latest values, inventory summary
//! ember/json/{host}/availability            "online" when the host's status is online, else "offline"
//! {prefix}/device/ember_{host}/config       Home Assistant device discovery (prefix: homeassistant)
//! ember/alerts                              JSON list of the firing alerts (published by `alerts::run`)
//! ember/collector/availability              "online" while the collector runs, else "offline" (its will)
//! ```
//!
//! Discovery is sent for a host when it first has a sample, again when its components or
//! inventory change, and for every host when Home Assistant announces itself (`online` on
//! `{prefix}/status`).

use std::collections::{HashMap, HashSet, VecDeque};

use ember_wire::{HostId, Sample};
use serde_json::{json, Map, Value};

use crate::config::BridgeConfig;
use crate::metrics;
use crate::store::{Event, HostStatus, HostSummary, Store};

mod discovery;
#[cfg(test)]
mod ha_schema;
use discovery::Shape;

/// The first level of the bridge's topics.
pub const JSON_PREFIX: &str = "ember/json";

/// The retained JSON list of firing alerts (`alerts::Alert`s), published when it changes.
pub const ALERTS_TOPIC: &str = "ember/alerts";

/// The collector's own availability (retained): "online" while it runs, "offline" as its last
/// will with an external broker. Every host's discovery lists it with its own and
/// `avty_mode: all`, so that a dead collector does not leave every host "online" in Home
/// Assistant. Not under `ember/json/`: no host id can clash with it.
pub const COLLECTOR_AVAILABILITY: &str = "ember/collector/availability";

/// The JSON state topic of `host`.
pub fn state_topic(host: &HostId) -> String {
    format!("{JSON_PREFIX}/{host}")
}

/// The availability topic of `host`.
pub fn availability_topic(host: &HostId) -> String {
    format!("{JSON_PREFIX}/{host}/availability")
}

/// The bridge's retained topics served from the store (embedded broker): new subscriptions get
/// each host's JSON state, availability and Home Assistant discovery made from the store as it
/// is then (rumqttd asks, see `rumqttd::RetainedSource`), and the bridge publishes them without
/// the retain flag, so that the broker's retained table does not keep a copy of each. At
/// 10,000 hosts those copies were about 3 KB of payload per host and the collector's largest
/// item after its connections (issue #9). With an external broker the bridge publishes them
/// retained as before: that broker keeps them.
pub struct Served {
    store: std::sync::Arc<std::sync::RwLock<Store>>,
    config: BridgeConfig,
}

impl Served {
    /// Serves what `config` makes the bridge publish, from `store`.
    pub fn new(store: std::sync::Arc<std::sync::RwLock<Store>>, config: BridgeConfig) -> Self {
        Served { store, config }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        Store::read_lock(&self.store)
    }
}

/// Which of the bridge's retained topics, for which host.
enum Kept {
    State(HostId),
    Availability(HostId),
    Discovery(HostId),
}

impl BridgeConfig {
    /// The Home Assistant discovery topic of `host`.
    fn discovery_topic(&self, host: &HostId) -> String {
        format!("{}/device/ember_{host}/config", self.discovery_prefix)
    }

    /// Which of the bridge's retained topics `topic` is, if it is one that [`Served`] serves.
    fn served(&self, topic: &str) -> Option<Kept> {
        if !self.json {
            return None;
        }
        if let Some(rest) = topic
            .strip_prefix(JSON_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
        {
            return match rest.strip_suffix("/availability") {
                Some(host) => HostId::new(host).ok().map(Kept::Availability),
                None => HostId::new(rest).ok().map(Kept::State),
            };
        }
        if !self.home_assistant {
            return None;
        }
        let host = topic
            .strip_prefix(self.discovery_prefix.as_str())?
            .strip_prefix("/device/ember_")?
            .strip_suffix("/config")?;
        HostId::new(host).ok().map(Kept::Discovery)
    }

    /// Whether [`Served`] serves `topic` (so the bridge publishes it without the retain flag
    /// to the embedded broker).
    pub fn serves(&self, topic: &str) -> bool {
        self.served(topic).is_some()
    }
}

impl rumqttd::RetainedSource for Served {
    fn topics(&self, filter: &str) -> Vec<String> {
        if !self.config.json {
            return Vec::new();
        }
        // Most filters (the collector's own `ember/v1/#`, every agent's commands as it
        // connects) match none of these: told by their first levels, without a look at every
        // host. One without wildcards names one topic.
        let ha = self.config.home_assistant;
        let discovery = format!("{}/device", self.config.discovery_prefix);
        let wanted = may_match(filter, JSON_PREFIX) || (ha && may_match(filter, &discovery));
        if !wanted {
            return Vec::new();
        }
        if !filter.contains(['+', '#']) {
            let store = self.read();
            let has = |id: &HostId| store.summary(id, 0);
            let kept = match self.config.served(filter) {
                Some(Kept::State(id) | Kept::Availability(id)) => has(&id).is_some(),
                Some(Kept::Discovery(id)) => has(&id).is_some_and(|h| h.has_sample()),
                None => false,
            };
            return if kept {
                vec![filter.to_string()]
            } else {
                Vec::new()
            };
        }
        let store = self.read();
        let mut out = Vec::new();
        for h in store.summaries(crate::now_ms()) {
            let mut topics = vec![state_topic(h.id), availability_topic(h.id)];
            if self.config.home_assistant && h.has_sample() {
                topics.push(self.config.discovery_topic(h.id));
            }
            out.extend(
                topics
                    .into_iter()
                    .filter(|t| rumqttd::protocol::matches(t, filter)),
            );
        }
        out
    }

    fn payload(&self, topic: &str) -> Option<Vec<u8>> {
        self.payload_at(topic, crate::now_ms())
    }
}

/// Whether `filter` may match a topic under `prefix` (levels separated by `/`, no wildcards).
fn may_match(filter: &str, prefix: &str) -> bool {
    let mut levels = filter.split('/');
    for want in prefix.split('/') {
        match levels.next() {
            Some("#") => return true,
            Some("+") => {}
            Some(level) if level == want => {}
            _ => return false,
        }
    }
    // Topics under the prefix have more levels.
    levels.next().is_some()
}

impl Served {
    /// What is retained on `topic` at `now_ms`, if it is one of the bridge's topics.
    fn payload_at(&self, topic: &str, now_ms: u64) -> Option<Vec<u8>> {
        let which = self.config.served(topic)?;
        let store = self.read();
        Some(match which {
            Kept::State(id) => state_json(&store.summary(&id, now_ms)?)
                .to_string()
                .into_bytes(),
            Kept::Availability(id) => availability(&store.summary(&id, now_ms)?).payload,
            Kept::Discovery(id) => {
                let h = store.summary(&id, now_ms)?;
                discovery_json(&h, &h.latest()?).to_string().into_bytes()
            }
        })
    }
}

/// One publication to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Whether the broker keeps it for new subscribers.
    pub retain: bool,
}

/// The bridge's state.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    /// `{prefix}/status`, made once: [`Bridge::wants`] is asked about every message.
    ha_status_topic: String,
    last_state_ms: HashMap<HostId, u64>,
    /// What the last discovery sent for each host was made from.
    announced: HashMap<HostId, Announced>,
    /// Discoveries still to be made in this round ([`Bridge::set_budget`]).
    budget: usize,
    /// Hosts whose discovery is due but went over the budget, oldest first, and the same as a
    /// set.
    queued: VecDeque<HostId>,
    queued_set: HashSet<HostId>,
    /// Hosts still to announce in full (availability, state, discovery) after the collector's
    /// start or Home Assistant's birth message, oldest first, a budget's worth a round.
    reannounce: VecDeque<HostId>,
}

/// What the last discovery sent for a host was made from, and its components (key, platform).
#[derive(Debug)]
struct Announced {
    shape: Shape<String>,
    cmps: Vec<(String, &'static str)>,
}

impl BridgeConfig {
    /// Home Assistant's birth and last-will topic.
    pub fn ha_status_topic(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// Topics the bridge listens to: Home Assistant's birth message (also the one topic the MQTT
    /// gate lets a reader account publish).
    pub fn subscriptions(&self) -> Vec<String> {
        if self.home_assistant {
            vec![self.ha_status_topic()]
        } else {
            Vec::new()
        }
    }
}

impl Bridge {
    /// A bridge with nothing sent yet.
    pub fn new(config: BridgeConfig) -> Self {
        Bridge {
            ha_status_topic: config.ha_status_topic(),
            config,
            last_state_ms: HashMap::new(),
            announced: HashMap::new(),
            budget: usize::MAX,
            queued: VecDeque::new(),
            queued_set: HashSet::new(),
            reannounce: VecDeque::new(),
        }
    }

    /// Makes at most `n` discovery payloads until the next call; the hosts beyond wait, in
    /// order, for [`Bridge::catch_up`]. Ingest calls it once a batch: a discovery payload is the
    /// largest JSON the bridge builds, every host needs one at its first sample (and all of them
    /// again when Home Assistant restarts), and ten thousand of them at once held ingest up for
    /// a third of a second. Without a call there is no limit.
    pub fn set_budget(&mut self, n: usize) {
        self.budget = n;
    }

    /// Whether some host's discovery or announcement waits for [`Bridge::catch_up`].
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty() || !self.reannounce.is_empty()
    }

    /// The discoveries that waited, then the hosts still to announce in full, as many as the
    /// budget allows (a host announced costs one, its discovery included), oldest first.
    pub fn catch_up(&mut self, store: &Store, now_ms: u64) -> Vec<Publish> {
        let mut out = Vec::new();
        while self.budget > 0 {
            let Some(id) = self.queued.pop_front() else {
                break;
            };
            self.queued_set.remove(&id);
            if let Some(p) = store.summary(&id, now_ms).and_then(|h| self.discovery(&h)) {
                out.push(p);
            }
        }
        while self.budget > 0 {
            let Some(id) = self.reannounce.pop_front() else {
                break;
            };
            let before = self.budget;
            if let Some(h) = store.summary(&id, now_ms) {
                self.host_all(&h, now_ms, &mut out);
            }
            if self.budget == before {
                self.budget -= 1;
            }
        }
        out
    }

    /// Topics the bridge listens to: Home Assistant's birth message, and the collector's own
    /// availability (another collector's last will on a shared external broker).
    pub fn subscriptions(&self) -> Vec<String> {
        let mut topics = self.config.subscriptions();
        if self.config.home_assistant {
            topics.push(COLLECTOR_AVAILABILITY.to_string());
        }
        topics
    }

    fn discovery_topic(&self, host: &HostId) -> String {
        self.config.discovery_topic(host)
    }

    /// Whether [`Bridge::on_event`] does anything with sample events (the JSON state).
    pub fn wants_samples(&self) -> bool {
        self.config.json
    }

    /// Whether `topic` is one of [`Bridge::subscriptions`].
    pub fn wants(&self, topic: &str) -> bool {
        self.config.home_assistant
            && (topic == self.ha_status_topic || topic == COLLECTOR_AVAILABILITY)
    }

    /// A message on one of [`Bridge::subscriptions`]. Home Assistant came online: discovery is
    /// sent again for every host. The collectors' availability went offline while this one
    /// runs (another collector sharing the external broker died, and its last will went out):
    /// online again, or every host would stay unavailable with this collector serving them.
    pub fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        store: &Store,
        now_ms: u64,
    ) -> Vec<Publish> {
        if !self.wants(topic) {
            return Vec::new();
        }
        if topic == COLLECTOR_AVAILABILITY {
            return if payload == b"online" {
                Vec::new()
            } else {
                vec![collector_online()]
            };
        }
        if payload.trim_ascii() == b"online" {
            self.announced.clear();
            self.announce_all(store, now_ms)
        } else {
            Vec::new()
        }
    }

    /// Availability, state and discovery for every host (at start, and for Home Assistant's
    /// birth message): as many as the budget allows now, the rest in order through
    /// [`Bridge::catch_up`]. Ten thousand hosts' worth at once held ingest up, as discovery
    /// alone did (issue #9). An announcement already under way starts again from the first
    /// host.
    pub fn announce_all(&mut self, store: &Store, now_ms: u64) -> Vec<Publish> {
        if !self.config.json {
            return Vec::new();
        }
        self.reannounce = store
            .summaries(now_ms)
            .iter()
            .map(|h| h.id.clone())
            .collect();
        let mut out = Vec::new();
        if self.config.home_assistant {
            out.push(collector_online());
        }
        out.extend(self.catch_up(store, now_ms));
        out
    }

    fn host_all(&mut self, h: &HostSummary<'_>, now_ms: u64, out: &mut Vec<Publish>) {
        if !self.config.json {
            return;
        }
        out.push(availability(h));
        out.push(self.state(h, now_ms));
        if let Some(p) = self.discovery(h) {
            out.push(p);
        }
    }

    /// What to publish for one store event.
    pub fn on_event(&mut self, event: &Event, store: &Store, now_ms: u64) -> Vec<Publish> {
        let mut out = Vec::new();
        if !self.config.json {
            return out;
        }
        let host = match event {
            Event::Sample { host, .. } | Event::Status { host, .. } | Event::Info { host } => host,
        };
        let Some(h) = store.summary(host, now_ms) else {
            return out;
        };
        match event {
            Event::Sample { sample, .. } => {
                let due = self.last_state_ms.get(host).is_none_or(|t| {
                    now_ms.saturating_sub(*t) >= self.config.state_every.as_millis() as u64
                });
                if due {
                    out.push(self.state(&h, now_ms));
                }
                if let Some(p) = self.discovery_of(&h, sample) {
                    out.push(p);
                }
            }
            Event::Status { .. } => {
                out.push(availability(&h));
                out.push(self.state(&h, now_ms));
            }
            Event::Info { .. } => {
                out.push(self.state(&h, now_ms));
                if let Some(p) = self.discovery(&h) {
                    out.push(p);
                }
            }
        }
        out
    }

    fn state(&mut self, h: &HostSummary<'_>, now_ms: u64) -> Publish {
        self.last_state_ms.insert(h.id.clone(), now_ms);
        Publish {
            topic: state_topic(h.id),
            payload: state_json(h).to_string().into_bytes(),
            retain: true,
        }
    }

    /// Discovery for `h` if it has a sample and the payload differs from the last one sent.
    fn discovery(&mut self, h: &HostSummary<'_>) -> Option<Publish> {
        if !self.config.home_assistant {
            return None;
        }
        self.discovery_of(h, &h.latest()?)
    }

    /// [`Bridge::discovery`] with the host's newest sample at hand (a sample event's): not
    /// decoded again from the store.
    fn discovery_of(&mut self, h: &HostSummary<'_>, latest: &Sample) -> Option<Publish> {
        if !self.config.home_assistant {
            return None;
        }
        let info = h.info();
        let shape = Shape::of(info.as_ref(), latest);
        if self.announced.get(h.id).is_some_and(|a| a.shape.is(&shape)) {
            return None;
        }
        if self.budget == 0 {
            if self.queued_set.insert(h.id.clone()) {
                self.queued.push_back(h.id.clone());
            }
            return None;
        }
        self.budget -= 1;
        let gone = self
            .announced
            .remove(h.id)
            .map(|a| a.cmps)
            .unwrap_or_default();
        let payload = discovery::payload(h.id, &shape, &gone);
        let announced = Announced {
            shape: shape.owned(),
            cmps: discovery::present(&payload),
        };
        self.announced.insert(h.id.clone(), announced);
        Some(Publish {
            topic: self.discovery_topic(h.id),
            payload: payload.to_string().into_bytes(),
            retain: true,
        })
    }
}

/// The collector's availability: online (its last will says offline).
pub fn collector_online() -> Publish {
    Publish {
        topic: COLLECTOR_AVAILABILITY.into(),
        payload: b"online".to_vec(),
        retain: true,
    }
}

fn availability(h: &HostSummary<'_>) -> Publish {
    let online = h.status == HostStatus::Online;
    Publish {
        topic: availability_topic(h.id),
        payload: if online { "online" } else { "offline" }.into(),
        retain: true,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn hottest(s: &Sample) -> Option<f64> {
    s.temperatures
        .iter()
        .map(|t| t.millicelsius)
        .max()
        .map(|m| round2(f64::from(m) / 1000.0))
}

fn root_fs(s: &Sample) -> Option<&ember_wire::Filesystem> {
    s.filesystems
        .iter()
        .find(|f| f.mount.as_str() == "/")
        .filter(|f| f.total > 0)
}

fn root_used(s: &Sample) -> Option<f64> {
    root_fs(s).map(|f| round2(f.used as f64 * 100.0 / f.total as f64))
}

/// Raspberry Pi firmware `get_throttled` bits: under-voltage now (bit 0); the ARM frequency
/// capped, throttled or at the soft temperature limit now (bits 1 to 3).
const UNDER_VOLTAGE: u32 = 1;
const THROTTLED: u32 = 0b1110;

/// When the host booted, seconds since the Unix epoch: the inventory's, else from the sample.
fn boot_time_s(info: Option<&ember_wire::HostInfo>, s: &Sample) -> u64 {
    match info {
        Some(i) if i.boot_time_s > 0 => i.boot_time_s,
        _ => (s.timestamp_ms / 1000).saturating_sub(s.uptime_s),
    }
}

/// The JSON state of a host: flat fields for simple consumers, every series in base units
/// under `values` (keys as in the history API), and a short inventory.
pub fn state_json(h: &HostSummary<'_>) -> Value {
    let mut v = json!({
        "host": h.id,
        "status": h.status,
        "last_seen_ms": h.last_seen_ms,
    });
    let info = h.info();
    if let Some(s) = &h.latest() {
        let mut values = Map::new();
        metrics::for_each(s, |m, l, x| {
            values.insert(metrics::key(m, l), json!(metrics::scaled(m, x as f64)));
        });
        let mem = if s.memory.total > 0 {
            Some(round2(s.memory.used as f64 * 100.0 / s.memory.total as f64))
        } else {
            None
        };
        let extra = json!({
            "seq": s.seq,
            "timestamp_ms": s.timestamp_ms,
            "cpu_percent": round2(f64::from(s.cpu.busy) / 100.0),
            "memory_percent": mem,
            "memory_used_bytes": s.memory.used,
            "load1": f64::from(s.load.one) / 100.0,
            "load5": f64::from(s.load.five) / 100.0,
            "load15": f64::from(s.load.fifteen) / 100.0,
            "temperature_celsius": hottest(s),
            "root_used_percent": root_used(s),
            "uptime_s": s.uptime_s,
            "boot_time_s": boot_time_s(info.as_ref(), s),
            "root_used_bytes": root_fs(s).map(|f| f.used),
            "swap_used_bytes": s.memory.swap_used,
            "network_rx_bytes_per_s": s.networks.iter().map(|n| n.rx_bps).sum::<u64>(),
            "network_tx_bytes_per_s": s.networks.iter().map(|n| n.tx_bps).sum::<u64>(),
            "disk_read_bytes_per_s": s.disks.iter().map(|d| d.read_bps).sum::<u64>(),
            "disk_write_bytes_per_s": s.disks.iter().map(|d| d.write_bps).sum::<u64>(),
            "under_voltage": s.throttled.map(|t| t & UNDER_VOLTAGE != 0),
            "throttled": s.throttled.map(|t| t & THROTTLED != 0),
            "running": s
                .watched
                .iter()
                .map(|w| (discovery::slug(&w.name), json!(w.instances > 0)))
                .collect::<Map<_, _>>(),
            "values": values,
        });
        if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
            a.extend(b);
        }
    }
    if let (Value::Object(a), Some(i)) = (&mut v, info.as_ref()) {
        if let Some(ip) = discovery::ip_address(i) {
            a.insert("ip_address".into(), json!(ip));
        }
        a.insert(
            "info".into(),
            json!({
                "hostname": i.hostname.as_str(),
                "board": i.board.as_str(),
                "os": i.os.as_str(),
                "kernel": i.kernel.as_str(),
                "arch": i.arch.as_str(),
                "agent_version": i.agent_version.as_str(),
            }),
        );
    }
    v
}

/// Home Assistant device discovery for a host (`discovery.rs`), as a subscriber that has seen
/// none before needs it.
pub fn discovery_json(h: &HostSummary<'_>, s: &Sample) -> Value {
    let info = h.info();
    discovery::payload(h.id, &Shape::of(info.as_ref(), s), &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use crate::store::StoreConfig;
    use ember_wire::{Envelope, Message, Status, MAX_ENCODED_LEN};
    use std::time::Duration;

    fn enc(message: Message) -> Vec<u8> {
        enc_for("pi", message)
    }

    fn enc_for(host: &str, message: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        Envelope::new(HostId::new(host).unwrap(), message)
            .encode(&mut buf)
            .unwrap()
            .to_vec()
    }

    fn setup() -> (Bridge, Store) {
        let c = RawConfig::default().validate().unwrap();
        let mut bc = c.bridge.clone();
        bc.state_every = Duration::from_secs(5);
        (Bridge::new(bc), Store::new(StoreConfig::from_config(&c)))
    }

    fn sample(seq: u64, temp: bool) -> Vec<u8> {
        sample_for("pi", seq, temp)
    }

    fn sample_for(host: &str, seq: u64, temp: bool) -> Vec<u8> {
        let mut s = Sample {
            seq,
            timestamp_ms: seq * 1000,
            ..Sample::default()
        };
        s.cpu.busy = 2550;
        s.memory.total = 1000;
        s.memory.used = 250;
        if temp {
            s.temperatures
                .push(ember_wire::Temperature {
                    sensor: "cpu_thermal".into(),
                    millicelsius: 48_512,
                })
                .unwrap();
        }
        enc_for(host, Message::Sample(s))
    }

    fn run(b: &mut Bridge, st: &mut Store, topic: &str, payload: &[u8], now: u64) -> Vec<Publish> {
        st.ingest(topic, payload, now).unwrap();
        let mut out = Vec::new();
        for e in st.drain_events() {
            out.extend(b.on_event(&e, st, now));
        }
        schema_checked(out)
    }

    /// `p`, once each discovery payload in it is checked against Home Assistant's documented
    /// schema (`ha_schema.rs`).
    fn schema_checked(p: Vec<Publish>) -> Vec<Publish> {
        for d in p.iter().filter(|p| p.topic.starts_with("homeassistant/")) {
            let v: Value = serde_json::from_slice(&d.payload).unwrap();
            if let Err(e) = ha_schema::check(&v) {
                panic!("{}: {e}\n{v:#}", d.topic);
            }
        }
        p
    }

    fn topics(p: &[Publish]) -> Vec<&str> {
        p.iter().map(|p| p.topic.as_str()).collect()
    }

    /// Hosts a to e send their first sample, in order: what the bridge published.
    fn five_hosts_sample(b: &mut Bridge, st: &mut Store) -> Vec<Publish> {
        let mut out = Vec::new();
        for (i, host) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let topic = format!("ember/v1/{host}/sample");
            let sample = sample_for(host, 1, false);
            out.extend(run(b, st, &topic, &sample, 1000 + i as u64));
        }
        out
    }

    /// What the embedded broker gets from `Served` for a new subscription is what the bridge
    /// publishes, made from the store as it is then: the same topics, and the same payloads.
    #[test]
    fn the_retained_topics_served_are_the_bridges() {
        use rumqttd::RetainedSource;
        use std::sync::{Arc, RwLock};
        let (mut b, mut st) = setup();
        let mut published = five_hosts_sample(&mut b, &mut st);
        // A host with a status and no sample yet: no discovery.
        let online = enc_for("f", Message::Status(Status::Online { interval_ms: 1000 }));
        published.extend(run(&mut b, &mut st, "ember/v1/f/status", &online, 2000));
        let config = b.config.clone();
        let store = Arc::new(RwLock::new(st));
        let served = Served::new(store.clone(), config.clone());
        let hosts = ["a", "b", "c", "d", "e", "f"];
        let mut all = served.topics("#");
        all.sort();
        let mut expected: Vec<String> = hosts
            .iter()
            .flat_map(|h| {
                let id = HostId::new(h).unwrap();
                let mut t = vec![state_topic(&id), availability_topic(&id)];
                if *h != "f" {
                    t.push(config.discovery_topic(&id));
                }
                t
            })
            .collect();
        expected.sort();
        assert_eq!(all, expected);
        for p in &published {
            assert!(all.contains(&p.topic), "{} published, not served", p.topic);
            assert!(config.serves(&p.topic));
        }
        // Payloads: as the bridge makes them now.
        let now = crate::now_ms();
        let st = store.read().unwrap();
        for h in hosts {
            let id = HostId::new(h).unwrap();
            let summary = st.summary(&id, now).unwrap();
            let state = served.payload(&state_topic(&id)).unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&state).unwrap(),
                state_json(&summary)
            );
            let avail = served.payload(&availability_topic(&id)).unwrap();
            assert_eq!(avail, availability(&summary).payload);
            let disc = served.payload(&config.discovery_topic(&id));
            let sent = published
                .iter()
                .rfind(|p| p.topic == config.discovery_topic(&id))
                .map(|p| p.payload.clone());
            assert_eq!(disc, sent, "{h}");
        }
        drop(st);
        // Filters: only what they match; most are told at their first level.
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(served.topics("ember/json/a"), ["ember/json/a"]);
        assert_eq!(served.topics("ember/json/+").len(), 6);
        assert_eq!(served.topics("+/json/+/availability").len(), 6);
        assert_eq!(
            sorted(served.topics("homeassistant/#")),
            ["a", "b", "c", "d", "e"].map(|h| format!("homeassistant/device/ember_{h}/config"))
        );
        assert_eq!(
            served.topics("homeassistant/device/ember_a/config"),
            ["homeassistant/device/ember_a/config"]
        );
        assert_eq!(served.topics("ember/#").len(), 12);
        for none in [
            "ember/v1/#",
            "ember/v1/a/cmd",
            "ember/json",
            "ember/json/zz",
            "homeassistant/device/ember_f/config",
            "other/#",
            "ember/alerts",
            "homeassistant/status",
        ] {
            assert!(served.topics(none).is_empty(), "{none}");
        }
        for none in [
            "ember/json/zz",
            "ember/json/a/b",
            "ember/alerts",
            "ember/v1/a/alerts",
        ] {
            assert_eq!(served.payload(none), None, "{none}");
        }
        for other in [
            "ember/alerts",
            "ember/v1/a/alerts",
            "homeassistant/status",
            "ember/json",
        ] {
            assert!(!config.serves(other), "{other}");
        }
        // Without Home Assistant, no discovery; without the JSON state, nothing.
        let mut c = config.clone();
        c.home_assistant = false;
        let no_ha = Served::new(store.clone(), c.clone());
        assert_eq!(no_ha.topics("#").len(), 12);
        assert!(!c.serves("homeassistant/device/ember_a/config"));
        c.json = false;
        let off = Served::new(store, c.clone());
        assert!(off.topics("#").is_empty() && off.payload("ember/json/a").is_none());
        assert!(!c.serves("ember/json/a"));
    }

    /// Over the budget, discoveries wait and go out in order in later rounds, each once.
    #[test]
    fn discoveries_over_the_budget_wait_for_the_next_rounds() {
        let (mut b, mut st) = setup();
        b.set_budget(2);
        let first = five_hosts_sample(&mut b, &mut st);
        let discovered = |p: &[Publish]| -> Vec<String> {
            p.iter()
                .filter(|p| p.topic.starts_with("homeassistant/"))
                .map(|p| p.topic.clone())
                .collect()
        };
        let config = |h: &str| format!("homeassistant/device/ember_{h}/config");
        assert_eq!(discovered(&first), [config("a"), config("b")]);
        assert!(b.has_queued());
        // A queued host's next sample does not queue it twice.
        run(
            &mut b,
            &mut st,
            "ember/v1/c/sample",
            &sample_for("c", 2, false),
            2000,
        );
        b.set_budget(2);
        assert_eq!(
            discovered(&b.catch_up(&st, 3000)),
            [config("c"), config("d")]
        );
        b.set_budget(2);
        assert_eq!(discovered(&b.catch_up(&st, 3000)), [config("e")]);
        assert!(!b.has_queued());
        assert!(b.catch_up(&st, 3000).is_empty());
    }

    /// Home Assistant's birth message announces every host again, a budget's worth a round,
    /// each host once, in order.
    #[test]
    fn a_birth_announces_every_host_within_the_budget() {
        let (mut b, mut st) = setup();
        five_hosts_sample(&mut b, &mut st);
        let hosts = |p: &[Publish]| -> Vec<String> {
            p.iter()
                .filter(|p| {
                    p.topic.starts_with("ember/json/") && p.topic.ends_with("/availability")
                })
                .map(|p| p.topic.clone())
                .collect()
        };
        let avail = |h: &str| format!("ember/json/{h}/availability");
        b.set_budget(2);
        let first = b.on_message("homeassistant/status", b"online", &st, 5000);
        assert_eq!(hosts(&first), [avail("a"), avail("b")]);
        // The collector's own availability first, once.
        assert_eq!(first[0], collector_online());
        assert_eq!(
            first.len(),
            7,
            "the collector's availability, then availability, state and discovery: {first:?}"
        );
        assert!(b.has_queued());
        b.set_budget(2);
        assert_eq!(hosts(&b.catch_up(&st, 5000)), [avail("c"), avail("d")]);
        b.set_budget(2);
        let last = b.catch_up(&st, 5000);
        assert_eq!(hosts(&last), [avail("e")]);
        assert_eq!(topics(&last)[2], "homeassistant/device/ember_e/config");
        assert!(!b.has_queued());
        b.set_budget(2);
        assert!(b.catch_up(&st, 5000).is_empty());
    }

    #[test]
    fn state_discovery_availability_and_throttling() {
        let (mut b, mut st) = setup();
        let online = enc(Message::Status(Status::Online { interval_ms: 1000 }));
        let p = run(&mut b, &mut st, "ember/v1/pi/status", &online, 1000);
        assert_eq!(topics(&p), ["ember/json/pi/availability", "ember/json/pi"]);
        assert_eq!(p[0].payload, b"online");
        assert!(p.iter().all(|p| p.retain));
        // The state went out with the status: within state-every only discovery is new.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(1, false),
            2000,
        );
        assert_eq!(topics(&p), ["homeassistant/device/ember_pi/config"]);
        let disc: Value = serde_json::from_slice(&p[0].payload).unwrap();
        assert_eq!(disc["dev"]["ids"][0], "ember_pi");
        // The host's availability and the collector's, both needed.
        assert_eq!(
            disc["avty"],
            json!([
                {"t": "ember/json/pi/availability"},
                {"t": "ember/collector/availability"}
            ])
        );
        assert_eq!(disc["avty_mode"], "all");
        assert_eq!(
            disc["cmps"]["ember_pi_cpu"]["val_tpl"],
            "{{ value_json.cpu_percent }}"
        );
        assert!(disc["cmps"].get("ember_pi_temperature").is_none());
        // The same discovery is not repeated.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(2, false),
            3000,
        );
        assert!(p.is_empty(), "{p:?}");
        // State is due again at 6 s; a temperature appears, so discovery changes.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(3, true),
            7000,
        );
        assert_eq!(
            topics(&p),
            ["ember/json/pi", "homeassistant/device/ember_pi/config"]
        );
        let state: Value = serde_json::from_slice(&p[0].payload).unwrap();
        assert_eq!(state["cpu_percent"], 25.5);
        assert_eq!(state["memory_percent"], 25.0);
        assert_eq!(state["values"]["cpu.busy"], 0.255);
        assert_eq!(state["temperature_celsius"], 48.51);
        assert_eq!(state["status"], "online");
        let disc: Value = serde_json::from_slice(&p[1].payload).unwrap();
        assert_eq!(
            disc["cmps"]["ember_pi_temperature"]["dev_cla"],
            "temperature"
        );
        // The last will: availability goes offline at once.
        let offline = enc(Message::Status(Status::Offline));
        let p = run(&mut b, &mut st, "ember/v1/pi/status", &offline, 7500);
        assert_eq!(p[0].payload, b"offline");
        // Home Assistant restarts: everything again.
        assert!(b
            .on_message("homeassistant/status", b"offline", &st, 8000)
            .is_empty());
        let p = b.on_message("homeassistant/status", b"online", &st, 8000);
        assert_eq!(
            topics(&p),
            [
                "ember/collector/availability",
                "ember/json/pi/availability",
                "ember/json/pi",
                "homeassistant/device/ember_pi/config"
            ]
        );
        assert!(p[0].retain && p[0].payload == b"online");
        assert_eq!(
            b.subscriptions(),
            ["homeassistant/status", "ember/collector/availability"]
        );
        // Another collector's last will on the shared topic: online again, once; our own
        // online echoed back is nothing to answer.
        let will = b.on_message(COLLECTOR_AVAILABILITY, b"offline", &st, 8100);
        assert_eq!(will, [collector_online()]);
        assert!(b
            .on_message(COLLECTOR_AVAILABILITY, b"online", &st, 8100)
            .is_empty());
    }

    /// Discovery is compared by what it is made from, not rebuilt for every sample (#9): it
    /// still goes out again exactly when its payload changes, and is the same payload.
    #[test]
    fn discovery_follows_the_inventory_and_matches_a_fresh_build() {
        let (mut b, mut st) = setup();
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(1, true),
            1000,
        );
        assert_eq!(
            topics(&p),
            ["ember/json/pi", "homeassistant/device/ember_pi/config"]
        );
        let info = |board: &str, agent: &str, kernel: &str| {
            enc(Message::HostInfo(ember_wire::HostInfo {
                board: board.into(),
                agent_version: agent.into(),
                kernel: kernel.into(),
                ..Default::default()
            }))
        };
        let discoveries = |p: &[Publish]| -> Vec<Value> {
            p.iter()
                .filter(|p| p.topic == "homeassistant/device/ember_pi/config")
                .map(|p| serde_json::from_slice(&p.payload).unwrap())
                .collect()
        };
        let fresh = |st: &Store| {
            let h = st.summary(&HostId::new("pi").unwrap(), 0).unwrap();
            discovery_json(&h, &h.latest().unwrap())
        };
        // The board becomes known: new model.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/info",
            &info("Pi 4", "0.3.0", "6.1"),
            1100,
        );
        let d = discoveries(&p);
        assert_eq!(d.len(), 1, "{p:?}");
        assert_eq!(d[0]["dev"]["mdl"], "Pi 4");
        assert_eq!(d[0]["dev"]["hw"], "Pi 4");
        assert_eq!(d[0]["dev"]["sw"], "0.3.0");
        assert_eq!(d[0], fresh(&st));
        // A kernel update changes the inventory but not the discovery: not sent.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/info",
            &info("Pi 4", "0.3.0", "6.6"),
            1200,
        );
        assert!(discoveries(&p).is_empty(), "{p:?}");
        // The agent is updated: sent again.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/info",
            &info("Pi 4", "0.4.0", "6.6"),
            1300,
        );
        assert_eq!(discoveries(&p)[0]["dev"]["sw"], "0.4.0");
        // The temperature sensor goes away with the next sample: sent once as its platform
        // alone, so that Home Assistant removes it; a fresh build has no trace of it.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(2, false),
            1400,
        );
        let d = discoveries(&p);
        assert_eq!(d.len(), 1, "{p:?}");
        assert_eq!(d[0]["cmps"]["ember_pi_temperature"], json!({"p": "sensor"}));
        let mut without = d[0].clone();
        without["cmps"]
            .as_object_mut()
            .unwrap()
            .remove("ember_pi_temperature");
        assert_eq!(without, fresh(&st));
        // And nothing more while nothing changes.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(3, false),
            1500,
        );
        assert!(discoveries(&p).is_empty(), "{p:?}");
        // It comes back, and goes again: removed once more, once.
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(4, true),
            1600,
        );
        assert_eq!(
            discoveries(&p)[0]["cmps"]["ember_pi_temperature"]["dev_cla"],
            "temperature"
        );
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(5, false),
            1700,
        );
        assert_eq!(
            discoveries(&p)[0]["cmps"]["ember_pi_temperature"],
            json!({"p": "sensor"})
        );
        let p = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(6, true),
            1800,
        );
        let p2 = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(7, false),
            1900,
        );
        assert_eq!(discoveries(&p).len() + discoveries(&p2).len(), 2);
    }

    /// A host with everything the wire carries: its inventory and a sample with swap, network,
    /// throttling flags and watched processes. What the bridge publishes for it.
    fn rich_host(b: &mut Bridge, st: &mut Store) -> (Value, Value) {
        let mut info = ember_wire::HostInfo {
            board: "Raspberry Pi 4 Model B".into(),
            agent_version: "0.4.0".into(),
            boot_time_s: 1_700_000_000,
            ..Default::default()
        };
        let mut eth = ember_wire::Interface {
            name: "eth0".into(),
            mac: Some([0xdc, 0xa6, 0x32, 0, 0x0a, 0xff]),
            ..Default::default()
        };
        eth.ipv4.push([192, 168, 1, 20]).unwrap();
        let mut lo = ember_wire::Interface {
            name: "lo".into(),
            ..Default::default()
        };
        lo.ipv4.push([127, 0, 0, 1]).unwrap();
        info.interfaces.push(lo).unwrap();
        info.interfaces.push(eth).unwrap();
        let host = "my-pi-";
        run(
            b,
            st,
            "ember/v1/my-pi-/info",
            &enc_for(host, Message::HostInfo(info)),
            900,
        );
        let mut s = Sample {
            seq: 1,
            timestamp_ms: 1_700_000_500_000,
            uptime_s: 500,
            ..Sample::default()
        };
        s.memory.total = 4 << 30;
        s.memory.used = 1 << 30;
        s.memory.swap_total = 1 << 30;
        s.memory.swap_used = 1 << 20;
        s.filesystems
            .push(ember_wire::Filesystem {
                mount: "/".into(),
                total: 32 << 30,
                used: 8 << 30,
            })
            .unwrap();
        for (name, rx, tx) in [("eth0", 1000, 200), ("wlan0", 24, 6)] {
            s.networks
                .push(ember_wire::NetIo {
                    interface: name.into(),
                    rx_bps: rx,
                    tx_bps: tx,
                    ..Default::default()
                })
                .unwrap();
        }
        for (device, read, write) in [("mmcblk0", 4096, 512), ("sda", 4, 0)] {
            s.disks
                .push(ember_wire::DiskIo {
                    device: device.into(),
                    read_bps: read,
                    write_bps: write,
                })
                .unwrap();
        }
        s.throttled = Some(0x5_0005); // under-voltage and throttled now, and before
        for (name, n) in [("nginx", 2), ("Home-Assistant", 0)] {
            s.watched
                .push(ember_wire::Watched {
                    name: name.into(),
                    instances: n,
                })
                .unwrap();
        }
        let p = run(
            b,
            st,
            "ember/v1/my-pi-/sample",
            &enc_for(host, Message::Sample(s)),
            1000,
        );
        let get = |t: &str| -> Value {
            let p = p.iter().rfind(|p| p.topic == t).expect(t);
            serde_json::from_slice(&p.payload).unwrap()
        };
        // The state went out with the inventory; within state-every, the sample's is not sent.
        let id = HostId::new(host).unwrap();
        let state = state_json(&st.summary(&id, 1000).unwrap());
        (state, get("homeassistant/device/ember_my-pi-/config"))
    }

    /// Issue #23: discovery as Home Assistant reads it now: `def_ent_id` with the component's
    /// domain (no `obj_id`), the boot time as a diagnostic timestamp (no uptime counter), bytes
    /// as `data_size`, rates as `data_rate`, throttling and processes as binary sensors, and
    /// the device's agent version, board and MAC addresses.
    #[test]
    fn discovery_speaks_current_home_assistant() {
        let (mut b, mut st) = setup();
        let (state, disc) = rich_host(&mut b, &mut st);
        let cmps = disc["cmps"].as_object().unwrap();
        let c = |key: &str| &cmps[&format!("ember_my-pi-_{key}")];
        for (key, comp) in cmps {
            assert!(comp.get("obj_id").is_none(), "{key}: obj_id");
            let p = comp["p"].as_str().unwrap();
            let object = key.replace("ember_my-pi-_", "ember_my_pi_");
            assert_eq!(comp["def_ent_id"], format!("{p}.{object}"), "{key}");
            assert_eq!(comp["uniq_id"], key.as_str());
        }
        assert!(cmps.keys().all(|k| !k.ends_with("_uptime")), "{cmps:?}");
        let boot = c("last_boot");
        assert_eq!(boot["dev_cla"], "timestamp");
        assert_eq!(boot["ent_cat"], "diagnostic");
        assert!(boot.get("stat_cla").is_none() && boot.get("unit_of_meas").is_none());
        assert!(boot["val_tpl"]
            .as_str()
            .unwrap()
            .contains("value_json.boot_time_s"));
        assert_eq!(state["boot_time_s"], 1_700_000_000);
        for (key, field, value) in [
            ("memory_used", "memory_used_bytes", json!(1u64 << 30)),
            ("swap_used", "swap_used_bytes", json!(1u64 << 20)),
            ("root_used", "root_used_bytes", json!(8u64 << 30)),
        ] {
            assert_eq!(c(key)["dev_cla"], "data_size", "{key}");
            assert_eq!(c(key)["unit_of_meas"], "B", "{key}");
            assert_eq!(state[field], value, "{field}");
        }
        for (key, field, value) in [
            ("network_rx", "network_rx_bytes_per_s", 1024),
            ("network_tx", "network_tx_bytes_per_s", 206),
            ("disk_read", "disk_read_bytes_per_s", 4100),
            ("disk_write", "disk_write_bytes_per_s", 512),
        ] {
            assert_eq!(c(key)["dev_cla"], "data_rate", "{key}");
            assert_eq!(c(key)["unit_of_meas"], "B/s", "{key}");
            assert_eq!(state[field], value, "{field}");
        }
        assert_eq!(c("cpu")["sug_dsp_prc"], 1);
        for key in ["under_voltage", "throttled"] {
            assert_eq!(c(key)["p"], "binary_sensor", "{key}");
            assert_eq!(c(key)["dev_cla"], "problem", "{key}");
            assert_eq!(state[key], true, "{key}");
        }
        for (key, slug, running) in [
            ("process_nginx", "nginx", true),
            ("process_home_assistant", "home_assistant", false),
        ] {
            assert_eq!(c(key)["p"], "binary_sensor", "{key}");
            assert_eq!(c(key)["dev_cla"], "running", "{key}");
            assert_eq!(
                c(key)["val_tpl"],
                format!("{{{{ 'ON' if value_json.running['{slug}'] else 'OFF' }}}}")
            );
            assert_eq!(state["running"][slug], running, "{slug}");
        }
        assert_eq!(c("ip_address")["ent_cat"], "diagnostic");
        assert_eq!(state["ip_address"], "192.168.1.20");
        let dev = &disc["dev"];
        assert_eq!(dev["sw"], "0.4.0");
        assert_eq!(dev["hw"], "Raspberry Pi 4 Model B");
        assert_eq!(dev["cns"], json!([["mac", "dc:a6:32:00:0a:ff"]]));
        // No public URL of the collector is configured anywhere: no `cu`.
        assert!(dev.get("cu").is_none());
        // Every template reads a field the state has.
        for (key, comp) in cmps {
            let tpl = comp["val_tpl"].as_str().unwrap();
            let field = tpl
                .split("value_json.")
                .nth(1)
                .unwrap()
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap();
            assert!(
                state.get(field).is_some(),
                "{key}: {field} not in the state"
            );
        }
    }

    /// Issue #23: every discovery payload the bridge builds meets Home Assistant's documented
    /// schema: a bare host, one with everything the wire carries, one losing components, and
    /// all of them again for Home Assistant's birth message (`run` checks each one published).
    #[test]
    fn every_discovery_payload_meets_home_assistants_schema() {
        let (mut b, mut st) = setup();
        let bare = run(
            &mut b,
            &mut st,
            "ember/v1/pi/sample",
            &sample(1, true),
            1000,
        );
        rich_host(&mut b, &mut st);
        // The rich host loses its throttling flags, processes, network, disks and swap.
        let plain = sample_for("my-pi-", 2, false);
        let lost = run(&mut b, &mut st, "ember/v1/my-pi-/sample", &plain, 1100);
        let d = lost
            .iter()
            .find(|p| p.topic == "homeassistant/device/ember_my-pi-/config")
            .expect("discovery");
        let d: Value = serde_json::from_slice(&d.payload).unwrap();
        assert_eq!(
            d["cmps"]["ember_my-pi-_process_nginx"],
            json!({"p": "binary_sensor"})
        );
        let birth = schema_checked(b.on_message("homeassistant/status", b"online", &st, 1200));
        let discoveries = [bare, lost, birth]
            .iter()
            .flatten()
            .filter(|p| p.topic.starts_with("homeassistant/"))
            .count();
        assert_eq!(discoveries, 4);
        // What Served makes for a new subscriber too.
        for h in ["pi", "my-pi-"] {
            let s = st.summary(&HostId::new(h).unwrap(), 1200).unwrap();
            ha_schema::check(&discovery_json(&s, &s.latest().unwrap())).unwrap();
        }
    }
}
