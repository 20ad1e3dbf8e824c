//! Ingest: one thread that reads what agents publish, hands it to the [`Store`], logs it for
//! persistence, fans the store's events out to the HTTP event stream and the MQTT bridge, and
//! does the periodic work (status ticks, log flushes, fsyncs, snapshots). The thread is thin; the
//! decisions are in the store, the persister and the bridge.
//!
//! Messages come from a [`Bus`]: the embedded broker's in-process link ([`LinkBus`]) or, in
//! external-broker mode, an MQTT client ([`ClientBus`]).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_wire::topic::{self, Kind};
use futures_util::FutureExt;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Filter, Packet, Publish, QoS, RetainForwardRule, Subscribe};
use rumqttd::Notification;
use tokio::sync::broadcast;

use crate::bridge::{self, Bridge};
use crate::commands::Commands;
use crate::config::{BridgeConfig, Config, ExternalBroker};
use crate::gate::Flow;
use crate::persist::Persister;
use crate::store::{Event, Reject, Store};

/// Why the bus stopped.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The embedded broker's link closed.
    #[error("the broker link closed: {0}")]
    Link(String),
    /// The MQTT client stopped.
    #[error("the MQTT client stopped")]
    Client,
}

/// One message from the bus: the broker's own buffers, not copied.
#[derive(Debug, Clone)]
pub struct Message {
    /// The topic, as published (UTF-8 if the publisher kept to MQTT).
    pub topic: Bytes,
    /// The payload.
    pub payload: Bytes,
}

/// Most messages one [`Bus::recv`] takes. rumqttd fills the link's buffer with up to 200
/// messages and then pauses the link until it says it is ready again: taking the whole buffer
/// at once means that answer goes back at once, and the router refills while ingest works.
pub const BATCH: usize = 1024;

/// Most messages handled under one lock of the store, so that HTTP readers wait at most that.
const LOCK_BATCH: usize = 256;

/// Where messages come from and bridge publications go.
pub trait Bus: Send + 'static {
    /// Waits until at least one message is there or `deadline` passes, then appends what is
    /// ready, at most [`BATCH`], to `out`.
    fn recv(&mut self, deadline: Instant, out: &mut Vec<Message>) -> Result<(), BusError>;
    /// Messages the broker acknowledged but dropped before this bus read them, since the last
    /// call.
    fn take_dropped(&mut self) -> u64 {
        0
    }
    /// Publishes at QoS 0; a full queue drops the message (the bridge repeats its state).
    fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool);
    /// The collector is stopping: from now on the broker acknowledges no more publishes that
    /// this bus would read.
    fn close(&mut self) {}
    /// Whether publishes the broker acknowledged are still to be read (after [`Bus::close`]).
    fn unread(&self) -> bool {
        false
    }
}

/// The embedded broker's in-process link.
///
/// rumqttd acknowledges a QoS 1 publish once it is in the broker's in-memory log for each
/// matching filter, and forwards to subscribers from there; a subscriber that falls more than
/// the log's size behind is moved on to the oldest message still held. Each forwarded message
/// carries its offset in the log, so such a jump shows here as a gap, and is counted
/// ([`Bus::take_dropped`]).
pub struct LinkBus {
    tx: LinkTx,
    rx: LinkRx,
    /// Offset of the last message read from the agents' filter's log.
    last_offset: Option<u64>,
    dropped: u64,
    /// The gate's flow control, told what ingest has read.
    flow: Option<Arc<Flow>>,
    last_read: Instant,
    /// The bridge's retained topics the broker gets from the store (`bridge::Served`): these
    /// are published without the retain flag, so that its table keeps no copy.
    served: Option<BridgeConfig>,
    /// The flow, closed ([`Bus::close`]): told what is read, never settled.
    closing: Option<Arc<Flow>>,
}

/// Nothing to read for this long means the broker has given ingest all it had.
const SETTLE_AFTER: Duration = Duration::from_millis(100);

/// Whether `topic` matches [`topic::FROM_AGENTS`] (`ember/v1/+/+`).
pub fn from_agents(topic: &[u8]) -> bool {
    topic
        .strip_prefix(topic::PREFIX.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"/"))
        .is_some_and(|rest| rest.iter().filter(|b| **b == b'/').count() == 1)
}

/// Messages skipped between two offsets read in turn from one log.
fn skipped(last: Option<u64>, offset: u64) -> u64 {
    match last {
        Some(last) if offset > last + 1 => offset - last - 1,
        _ => 0,
    }
}

fn filter(path: &str) -> Filter {
    Filter {
        path: path.to_string(),
        qos: QoS::AtMostOnce,
        nolocal: true,
        preserve_retain: true,
        // LinkTx::subscribe never forwards retained messages; ask for them, so that the hosts'
        // retained status and inventory arrive even if they were published before we started.
        retain_forward_rule: RetainForwardRule::OnEverySubscribe,
    }
}

impl LinkBus {
    /// Subscribes the link to everything agents publish and to `extra` topics.
    pub fn new(mut tx: LinkTx, rx: LinkRx, extra: &[String]) -> Result<Self, BusError> {
        let mut filters = vec![filter(topic::FROM_AGENTS)];
        filters.extend(extra.iter().map(|e| filter(e)));
        let subscribe = Subscribe { pkid: 1, filters };
        // `send` only queues for the router: it completes at once.
        match tx.send(Packet::Subscribe(subscribe, None)).now_or_never() {
            Some(Ok(_)) => Ok(LinkBus {
                tx,
                rx,
                last_offset: None,
                dropped: 0,
                flow: None,
                last_read: Instant::now(),
                served: None,
                closing: None,
            }),
            Some(Err(e)) => Err(BusError::Link(e.to_string())),
            None => Err(BusError::Link("subscribe did not complete".into())),
        }
    }
}

impl LinkBus {
    /// Tells `flow` (the gate's flow control) what ingest reads.
    pub fn with_flow(mut self, flow: Arc<Flow>) -> Self {
        self.flow = Some(flow);
        self
    }

    /// Publishes the bridge's retained topics that the broker serves from the store
    /// (`bridge::Served`, for `config`) without the retain flag.
    pub fn serving(mut self, config: BridgeConfig) -> Self {
        self.served = Some(config);
        self
    }
}

impl Bus for LinkBus {
    fn recv(&mut self, deadline: Instant, out: &mut Vec<Message>) -> Result<(), BusError> {
        let start = out.len();
        let mut read = 0u64;
        let result = self.recv_into(deadline, out, &mut read);
        if let Some(flow) = &self.closing {
            flow.read(read);
        }
        if let Some(flow) = &self.flow {
            let now = Instant::now();
            if out.len() > start {
                self.last_read = now;
                flow.read(read);
            } else if now.duration_since(self.last_read) >= SETTLE_AFTER {
                flow.settle();
            }
        }
        result
    }

    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Closes the gate's flow: no publish passes it any more. (Not settled from now on: a
    /// quiet moment then may be a slow broker, not a publish it refused.)
    fn close(&mut self) {
        if let Some(flow) = self.flow.take() {
            flow.close();
            self.closing = Some(flow);
        }
    }

    /// Publishes the closed flow let through and ingest has not read.
    fn unread(&self) -> bool {
        self.closing.as_ref().is_some_and(|f| f.lag() > 0)
    }

    fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        let retain = retain && !self.served.as_ref().is_some_and(|c| c.serves(topic));
        let publish = Publish::new(topic.as_bytes().to_vec(), payload, retain);
        if let Some(Err(e)) = self.tx.send(Packet::Publish(publish, None)).now_or_never() {
            tracing::warn!(%topic, "bridge publish failed: {e}");
        }
    }
}

impl LinkBus {
    fn recv_into(
        &mut self,
        deadline: Instant,
        out: &mut Vec<Message>,
        read: &mut u64,
    ) -> Result<(), BusError> {
        let start = out.len();
        while out.len() - start < BATCH {
            // Block for the first message only; then take what is already there.
            let until = if out.len() == start {
                deadline
            } else {
                Instant::now()
            };
            match self.rx.recv_deadline(until) {
                Ok(Some(Notification::Forward(f))) => {
                    if let Some((_, offset)) = f.cursor {
                        if from_agents(&f.publish.topic) {
                            self.dropped += skipped(self.last_offset, offset);
                            self.last_offset = Some(offset);
                            // As rumqttd's log and the gate count it.
                            *read += (4 + f.publish.topic.len() + f.publish.payload.len()) as u64;
                        }
                    }
                    out.push(Message {
                        topic: f.publish.topic,
                        payload: f.publish.payload,
                    });
                }
                // The router pauses a link whose buffer is full until it says it is ready
                // again; without this ingest stalls.
                Ok(Some(Notification::Unschedule)) => {
                    self.rx.ready().map_err(|e| BusError::Link(e.to_string()))?
                }
                Ok(_) => {}
                // A timeout, rather than a closed channel, returns.
                Err(rumqttd::local::LinkError::RecvTimeout(_)) => {
                    if out.len() > start || Instant::now() >= deadline {
                        return Ok(());
                    }
                }
                Err(e) => return Err(BusError::Link(e.to_string())),
            }
            if out.len() == start && Instant::now() >= deadline {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// An MQTT client of an external broker (Mosquitto, EMQX).
pub struct ClientBus {
    client: rumqttc::Client,
    connection: rumqttc::Connection,
    subscriptions: Vec<String>,
    backoff: Duration,
    connected: bool,
}

impl ClientBus {
    /// Connects (in the background, retrying with backoff) and subscribes on every connection:
    /// retained status and inventory with an ordinary subscription, samples and results through
    /// the shared group if one is set, and `extra`.
    pub fn new(e: &ExternalBroker, extra: &[String]) -> Self {
        let mut options = rumqttc::MqttOptions::new(&e.client_id, &e.host, e.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        // A dead collector says so: Home Assistant's entities need this topic online too.
        options.set_last_will(rumqttc::LastWill::new(
            bridge::COLLECTOR_AVAILABILITY,
            "offline",
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
        let (client, connection) = rumqttc::Client::new(options, 1000);
        let mut subscriptions = Vec::new();
        match &e.share_group {
            Some(group) => {
                // Shared subscriptions get no retained messages, and status and inventory are
                // small: every collector takes all of them; samples and results are split.
                let each = |k: Kind| format!("{}/+/{}", topic::PREFIX, k.suffix());
                subscriptions.push(each(Kind::Status));
                subscriptions.push(each(Kind::Info));
                subscriptions.push(format!("$share/{group}/{}", each(Kind::Sample)));
                subscriptions.push(format!("$share/{group}/{}", each(Kind::Result)));
            }
            None => subscriptions.push(topic::FROM_AGENTS.to_string()),
        }
        subscriptions.extend(extra.iter().cloned());
        ClientBus {
            client,
            connection,
            subscriptions,
            backoff: Duration::from_millis(100),
            connected: false,
        }
    }
}

impl Bus for ClientBus {
    fn recv(&mut self, deadline: Instant, out: &mut Vec<Message>) -> Result<(), BusError> {
        use rumqttc::{Event, Packet, RecvTimeoutError};
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.connection.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    out.push(Message {
                        topic: Bytes::from(p.topic.into_bytes()),
                        payload: p.payload,
                    });
                    return Ok(());
                }
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    // rumqttc does not subscribe again after a reconnect: do it on every CONNACK.
                    tracing::info!("connected to the external broker");
                    self.connected = true;
                    self.backoff = Duration::from_millis(100);
                    for s in &self.subscriptions {
                        if let Err(e) = self.client.try_subscribe(s, rumqttc::QoS::AtLeastOnce) {
                            tracing::warn!("subscribing to {s}: {e}");
                        }
                    }
                    // Online again, over a will a lost connection set off.
                    let online = bridge::collector_online();
                    self.publish(&online.topic, online.payload, online.retain);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if self.connected {
                        tracing::warn!("external broker connection lost: {e}");
                    } else {
                        tracing::debug!("external broker: {e}");
                    }
                    self.connected = false;
                    // rumqttc reconnects at once on the next poll: back off here.
                    let pause = self
                        .backoff
                        .min(deadline.saturating_duration_since(Instant::now()));
                    std::thread::sleep(pause);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                }
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => return Err(BusError::Client),
            }
        }
    }

    fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        if let Err(e) = self
            .client
            .try_publish(topic, rumqttc::QoS::AtMostOnce, retain, payload)
        {
            tracing::debug!(%topic, "bridge publish dropped: {e}");
        }
    }
}

/// What the ingest thread owns.
pub struct Pipeline {
    /// Hosts and history, shared with HTTP.
    pub store: Arc<RwLock<Store>>,
    /// The write-ahead log and snapshots.
    pub persister: Persister,
    /// JSON state and discovery.
    pub bridge: Bridge,
    /// Live events for the HTTP event stream.
    pub events: broadcast::Sender<Event>,
    /// Becomes true when the collector stops.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Commands sent and their results.
    pub commands: Arc<Mutex<Commands>>,
    /// Publications asked for by HTTP (commands) and by the alert thread, sent from this thread.
    pub outgoing: std::sync::mpsc::Receiver<bridge::Publish>,
}

/// How often host status is re-evaluated.
const TICK: Duration = Duration::from_millis(250);

/// With announcements queued on the bridge, ingest waits at most this long for messages before
/// it makes the next round of them ([`DISCOVERIES_PER_BATCH`]).
const CATCH_UP_EVERY: Duration = Duration::from_millis(10);

/// At most one warning this often about messages the broker dropped.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The longest a stopping collector reads what the broker acknowledged before it stopped.
const DRAIN_AT_STOP: Duration = Duration::from_secs(5);
/// A stopping collector that read nothing for this long has read all there was.
const QUIET_AT_STOP: Duration = Duration::from_millis(500);

/// A stopping collector's last reads: the broker acknowledges nothing more (the gate holds
/// every publish back, and its publisher keeps it for the next start), and what it did
/// acknowledge is read and stored before the last snapshot. Before, ingest stopped reading
/// while the gate went on relaying until the process exited: agents forgot samples at their
/// PUBACK that no one read (issue #20: `missing` after every restart of a busy collector).
fn drain(pipeline: &mut Pipeline, bus: &mut dyn Bus, batch: &mut Vec<Message>) {
    bus.close();
    let until = Instant::now() + DRAIN_AT_STOP;
    // Read until what the gate let through is read (its lag, settled never again, comes back
    // to 0) or nothing came for a while (a publish the broker refused keeps the lag above 0).
    let mut quiet_since = Instant::now();
    while bus.unread() && Instant::now() < until && quiet_since.elapsed() < QUIET_AT_STOP {
        if bus
            .recv(Instant::now() + Duration::from_millis(50), batch)
            .is_err()
        {
            return;
        }
        if !batch.is_empty() {
            quiet_since = Instant::now();
            handle_batch(pipeline, bus, batch);
        }
    }
}

/// Starts the ingest thread.
pub fn spawn(
    mut bus: Box<dyn Bus>,
    mut pipeline: Pipeline,
    config: &Config,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let persist = config.persist;
    std::thread::Builder::new()
        .name("ember-ingest".into())
        .spawn(move || {
            let start = Instant::now();
            let mut next_tick = start;
            let mut next_flush = start + persist.flush_every;
            let mut next_sync = start + persist.sync_every;
            // After a recovery that replayed or dropped anything, a fresh snapshot at once.
            let recovered = {
                let st = pipeline.persister.status();
                let st = st.lock().unwrap_or_else(|e| e.into_inner());
                st.recovery.wal_records > 0 || !st.recovery.problems.is_empty()
            };
            let mut next_snapshot = if recovered {
                start
            } else {
                start + persist.snapshot_every
            };
            // Everything known at start (after recovery) goes out on the bridge, a batch's
            // budget now and the rest with the batches and ticks that follow.
            let initial = {
                let store = read(&pipeline.store);
                pipeline.bridge.set_budget(DISCOVERIES_PER_BATCH);
                pipeline.bridge.announce_all(&store, crate::now_ms())
            };
            for p in initial {
                bus.publish(&p.topic, p.payload, p.retain);
            }
            let mut batch = Vec::with_capacity(BATCH);
            // Dropped messages not yet logged, and when that was last done.
            let mut unlogged_drops = 0u64;
            let mut drops_logged = start;
            loop {
                if *pipeline.stopping.borrow() {
                    drain(&mut pipeline, bus.as_mut(), &mut batch);
                    let store = read(&pipeline.store);
                    pipeline.persister.snapshot(&store);
                    drop(store);
                    pipeline.persister.wait();
                    pipeline.persister.sync();
                    return;
                }
                let mut deadline = next_tick.min(next_flush).min(next_sync).min(next_snapshot);
                // Announcements still queued (a start, Home Assistant's birth) go out a round
                // each time ingest is free for CATCH_UP_EVERY, not only on the tick: with no
                // traffic, 10,000 hosts took 78 s a round per tick.
                let catching_up = pipeline.bridge.has_queued();
                if catching_up {
                    deadline = deadline.min(Instant::now() + CATCH_UP_EVERY);
                }
                match bus.recv(deadline, &mut batch) {
                    Ok(()) => {
                        let idle = batch.is_empty();
                        unlogged_drops += handle_batch(&mut pipeline, bus.as_mut(), &mut batch);
                        if idle && catching_up {
                            fan_out(&mut pipeline, bus.as_mut(), Vec::new());
                        }
                        if unlogged_drops > 0 && drops_logged.elapsed() >= DROP_LOG_EVERY {
                            tracing::warn!(
                                "the broker dropped {unlogged_drops} messages before ingest read \
                                 them (see broker_dropped in /api/health)"
                            );
                            unlogged_drops = 0;
                            drops_logged = Instant::now();
                        }
                    }
                    Err(e) => {
                        tracing::error!("ingest stopped: {e}");
                        pipeline.persister.flush();
                        pipeline.persister.sync();
                        return;
                    }
                }
                // Commands from HTTP go out at once (the wait above is at most a tick).
                while let Ok(p) = pipeline.outgoing.try_recv() {
                    bus.publish(&p.topic, p.payload, p.retain);
                }
                let now = Instant::now();
                if now >= next_tick {
                    next_tick = now + TICK;
                    let events = {
                        let mut store = write(&pipeline.store);
                        store.tick(crate::now_ms());
                        store.drain_events()
                    };
                    fan_out(&mut pipeline, bus.as_mut(), events);
                    lock(&pipeline.commands).expire(crate::now_ms());
                }
                if now >= next_flush {
                    next_flush = now + persist.flush_every;
                    pipeline.persister.flush();
                }
                if now >= next_sync {
                    next_sync = now + persist.sync_every;
                    pipeline.persister.sync();
                }
                if now >= next_snapshot {
                    next_snapshot = now + persist.snapshot_every;
                    let store = read(&pipeline.store);
                    pipeline.persister.snapshot(&store);
                }
            }
        })
}

fn read(store: &RwLock<Store>) -> std::sync::RwLockReadGuard<'_, Store> {
    Store::read_lock(store)
}

fn write(store: &RwLock<Store>) -> std::sync::RwLockWriteGuard<'_, Store> {
    store.write().unwrap_or_else(|e| e.into_inner())
}

fn lock(c: &Mutex<Commands>) -> std::sync::MutexGuard<'_, Commands> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handles a batch from the bus under one lock of the store, and fans out its events. Returns
/// how many messages the broker dropped before this batch.
fn handle_batch(p: &mut Pipeline, bus: &mut dyn Bus, batch: &mut Vec<Message>) -> u64 {
    let dropped = bus.take_dropped();
    if batch.is_empty() && dropped == 0 {
        return 0;
    }
    let now = crate::now_ms();
    // Sample events cost a copy of each sample: made only while someone reads them.
    let sample_events = p.events.receiver_count() > 0 || p.bridge.wants_samples();
    let mut for_bridge = Vec::new();
    if dropped > 0 {
        write(&p.store).count_broker_dropped(dropped);
    }
    for chunk in batch.chunks(LOCK_BATCH) {
        let events = {
            let mut store = write(&p.store);
            store.set_sample_events(sample_events);
            for m in chunk {
                let topic = std::str::from_utf8(&m.topic).unwrap_or("");
                if topic::parse(topic).is_some_and(|(_, k)| k.from_collector()) {
                    // Our own commands and banners, echoed by an external broker: not for the
                    // store.
                    continue;
                }
                if p.bridge.wants(topic) {
                    for_bridge.push(m.clone());
                    continue;
                }
                match store.ingest(topic, &m.payload, now) {
                    Ok(accepted) => {
                        p.persister.record(now, topic, &m.payload, accepted);
                        if let crate::store::Accepted::Result = accepted {
                            // Valid (the store checked it): hand it to the commands.
                            if let Ok(ember_wire::Envelope {
                                host,
                                message: ember_wire::Message::CommandResult(r),
                                ..
                            }) = ember_wire::decode(&m.payload)
                            {
                                lock(&p.commands).on_result(&host, &r, now);
                            }
                        }
                    }
                    Err(reject) => log_reject(topic, reject),
                }
            }
            store.drain_events()
        };
        fan_out(p, bus, events);
    }
    batch.clear();
    for m in for_bridge {
        let topic = std::str::from_utf8(&m.topic).unwrap_or("");
        let publishes = p.bridge.on_message(topic, &m.payload, &read(&p.store), now);
        for m in publishes {
            bus.publish(&m.topic, m.payload, m.retain);
        }
    }
    dropped
}

/// Home Assistant discovery payloads, or hosts announced in full, the bridge makes per batch, at
/// most ([`Bridge::set_budget`]).
const DISCOVERIES_PER_BATCH: usize = 32;

fn fan_out(p: &mut Pipeline, bus: &mut dyn Bus, events: Vec<Event>) {
    if events.is_empty() && !p.bridge.has_queued() {
        return;
    }
    let now = crate::now_ms();
    let mut publishes: Vec<bridge::Publish> = Vec::new();
    {
        let store = read(&p.store);
        p.bridge.set_budget(DISCOVERIES_PER_BATCH);
        publishes.extend(p.bridge.catch_up(&store, now));
        for e in &events {
            publishes.extend(p.bridge.on_event(e, &store, now));
        }
    }
    for e in events {
        // No subscriber is not an error.
        let _ = p.events.send(e);
    }
    for m in publishes {
        bus.publish(&m.topic, m.payload, m.retain);
    }
}

fn log_reject(topic: &str, reject: Reject) {
    // Debug level: a misbehaving publisher must not flood the log; the counters show it.
    tracing::debug!(%topic, ?reject, "message dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_topics_are_those_of_the_agents_filter() {
        for (t, expected) in [
            ("ember/v1/pi/sample", true),
            ("ember/v1/pi/status", true),
            ("ember/v1//sample", true),
            ("ember/v1/pi", false),
            ("ember/v1/pi/sample/x", false),
            ("ember/v2/pi/sample", false),
            ("homeassistant/status", false),
        ] {
            assert_eq!(from_agents(t.as_bytes()), expected, "{t}");
        }
    }

    /// A bus with no traffic: each wait runs to its deadline. It records how long ingest asked
    /// to wait and what it published.
    struct Quiet {
        waits: Arc<Mutex<Vec<(Duration, usize)>>>,
        published: Arc<Mutex<Vec<String>>>,
    }

    impl Bus for Quiet {
        fn recv(&mut self, deadline: Instant, _: &mut Vec<Message>) -> Result<(), BusError> {
            let wait = deadline.saturating_duration_since(Instant::now());
            let announced = self.published.lock().unwrap().len();
            self.waits.lock().unwrap().push((wait, announced));
            std::thread::sleep(wait);
            Ok(())
        }
        fn publish(&mut self, topic: &str, _: Vec<u8>, _: bool) {
            // Hosts' availability (not the collector's own).
            if topic.starts_with(bridge::JSON_PREFIX) && topic.ends_with("/availability") {
                self.published.lock().unwrap().push(topic.to_owned());
            }
        }
    }

    /// At start the bridge announces every known host. With no traffic at all, every round
    /// follows the last one after CATCH_UP_EVERY, not after a status tick.
    #[test]
    fn with_no_traffic_announcements_go_out_round_after_round() {
        use crate::config::RawConfig;
        use crate::persist::{MemDisk, Persister};
        use crate::store::StoreConfig;
        use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};

        const HOSTS: usize = 200;
        let config = RawConfig::default().validate().unwrap();
        let (persister, mut store) = Persister::open(
            Box::new(MemDisk::new(64 << 20)),
            StoreConfig::from_config(&config),
        );
        let now = crate::now_ms();
        for i in 0..HOSTS {
            let host = format!("pi-{i:03}");
            let sample = Sample {
                seq: 1,
                timestamp_ms: now,
                ..Sample::default()
            };
            let mut buf = [0u8; MAX_ENCODED_LEN];
            let bytes = Envelope::new(HostId::new(&host).unwrap(), Message::Sample(sample))
                .encode(&mut buf)
                .unwrap();
            store
                .ingest(&format!("ember/v1/{host}/sample"), bytes, now)
                .unwrap();
        }
        store.drain_events();
        let waits = Arc::new(Mutex::new(Vec::new()));
        let published = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (_outgoing_tx, outgoing) = std::sync::mpsc::channel();
        let ingest = spawn(
            Box::new(Quiet {
                waits: waits.clone(),
                published: published.clone(),
            }),
            Pipeline {
                store: Arc::new(RwLock::new(store)),
                persister,
                bridge: Bridge::new(config.bridge.clone()),
                events: broadcast::channel(16).0,
                stopping,
                commands: Arc::new(Mutex::new(Commands::new())),
                outgoing,
            },
            &config,
        )
        .unwrap();
        let rounds = HOSTS.div_ceil(DISCOVERIES_PER_BATCH);
        let started = Instant::now();
        while published.lock().unwrap().len() < HOSTS
            && started.elapsed() < 10 * TICK * rounds as u32
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.send(true).unwrap();
        ingest.join().unwrap();

        let published = published.lock().unwrap();
        let mut hosts: Vec<&String> = published.iter().collect();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), HOSTS, "every host announced, once");
        assert_eq!(published.len(), HOSTS, "every host announced, once");
        // Each wait while some hosts were still to be announced ended a round.
        let waits = waits.lock().unwrap();
        let catching_up: Vec<Duration> = waits
            .iter()
            .filter(|(_, announced)| *announced < HOSTS)
            .map(|(w, _)| *w)
            .collect();
        assert!(
            catching_up.iter().all(|w| *w <= CATCH_UP_EVERY),
            "waited longer than a round's pause: {catching_up:?}"
        );
        assert!(
            catching_up.len() < rounds,
            "{} waits for {rounds} rounds",
            catching_up.len()
        );
    }

    #[test]
    fn a_jump_in_log_offsets_counts_what_was_skipped() {
        assert_eq!(skipped(None, 7), 0);
        assert_eq!(skipped(Some(6), 7), 0);
        assert_eq!(skipped(Some(6), 10), 3);
        // An offset at or before the last one is not a loss.
        assert_eq!(skipped(Some(10), 10), 0);
        assert_eq!(skipped(Some(10), 3), 0);
    }
}
