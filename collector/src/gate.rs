//! The MQTT gate: the collector's own listener in front of the embedded broker. Every client
//! connection goes through it; rumqttd has no listener of its own, and serves the connections
//! the gate hands it in-process (an in-memory pipe each, see `broker.rs`), so no other process
//! can reach it and a client costs the collector one file descriptor.
//!
//! It exists for three reasons rumqttd 0.20 cannot meet by itself:
//!
//! - **Crashes.** rumqttd panics (`server/broker.rs:544`, `try_send(..).unwrap()` on a channel
//!   whose receiver is gone) when a client id connects again after the router refused it, for
//!   being over `max_connections` or for an id with `+`, `$`, `#` or `/` in it; with
//!   `panic = "abort"` that kills the collector (issue #9). The gate refuses what the router
//!   would refuse (CONNACK 3 "server unavailable" when `max-connections` are open, CONNACK 2
//!   "identifier rejected"), sets the router's own limit above the collector's, and gives a
//!   slot back only once rumqttd has closed its side, so the router has seen the disconnection
//!   before the slot is reused.
//! - **Silent loss.** rumqttd acknowledges a QoS 1 publish as soon as it is in its in-memory
//!   log, and a reader more than the log's size behind loses the oldest part. The gate gives it
//!   backpressure ([`Flow`]): a relay takes room for each of agents' publishes before it goes
//!   to the broker and ingest gives it back as it reads, so ingest is never more than
//!   [`Flow::limit`] behind; a relay without room stops reading from its agent, whose in-flight
//!   window fills, and it waits.
//! - **Security** (issue #8). rumqttd has no topic ACLs, and the collector's in-process link does
//!   not say which client published a message. With accounts configured (`[mqtt.users]` or a
//!   client CA) the gate terminates TLS (rustls, optionally with client certificates whose
//!   common name is the host id), refuses anonymous clients and wrong passwords, fixes the
//!   client id the broker sees by the account, and checks every PUBLISH and SUBSCRIBE against
//!   the account ([`crate::access`]) and the client's rate: what is not allowed is dropped (a
//!   QoS 1 publish is still acknowledged, so the client does not resend it) and counted.
//!
//! Without accounts the listener is loopback only (the configuration refuses anything else) and
//! the gate relays bytes after the CONNECT, scanning them for publishes ([`Scanner`]); with
//! accounts it relays frame by frame. The bookkeeping ([`Gate::admit`]), the publish accounting
//! ([`Scanner`], [`Flow`]) and the access decisions ([`crate::access`]) are plain code, tested
//! without sockets; [`serve`] is the I/O around them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::{check, FixedHeader, PacketType, Protocol, QoS};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use rumqttd::Handoff;
use tokio::sync::{Notify, Semaphore};

use crate::access::{self, Identity, TokenBucket};
use crate::admission::{self, Admission, Verdict};
// MQTT 5 clients: their CONNECT, CONNACK and relay.
#[path = "gate_v5.rs"]
pub mod v5;
use crate::config::{Config, User};
use crate::ingest::from_agents;
use crate::subscriptions::{Control, Subscriptions};

/// How long a new connection has for the TLS handshake and its CONNECT (as rumqttd's
/// `connection_timeout_ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed connection waits for rumqttd to close its side before its slot is reused.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a relay reads at once, each way (a larger packet takes several reads). The room is on
/// the stack of the poll that finds bytes to read ([`read_with`]): a connection waiting for its
/// next packet holds no read buffer.
const RELAY_CHUNK: usize = 1024;

/// What the gate is configured with.
pub struct Settings {
    /// rumqttd's way in (`broker::connect`).
    pub broker: Handoff,
    /// Connections at once, all clients (`max-connections`).
    pub max_connections: usize,
    /// Largest packet a client may send (remaining length), bytes.
    pub max_packet: usize,
    /// Distinct filters a connection may hold at once (`mqtt.max-subscriptions`), with
    /// accounts or without ([`crate::subscriptions`]).
    pub max_subscriptions: usize,
    /// TLS, if on.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Authentication and per-client limits; `None`: open (loopback only).
    pub accounts: Option<Accounts>,
}

/// `[mqtt]` with accounts: who may connect and how much.
pub struct Accounts {
    /// Accounts by name.
    pub users: BTreeMap<String, User>,
    /// Refuse clients without a certificate.
    pub require_client_cert: bool,
    /// Connections at once per account.
    pub max_connections_per_client: usize,
    /// Publishes a second per connection, on average.
    pub rate: u32,
    /// Publishes at once above the average.
    pub burst: u32,
    /// What a reader may publish: the topics the bridge listens to (Home Assistant's status).
    pub reader_topics: Vec<String>,
    /// The password checks, bounded ([`crate::admission`]).
    pub admission: Admission,
}

impl Settings {
    /// The gate for `config`, in front of rumqttd's `broker`; loads the TLS files.
    pub fn from_config(config: &Config, broker: Handoff) -> Result<Self, crate::pki::PkiError> {
        let mqtt = &config.mqtt;
        let tls = match &mqtt.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(crate::pki::server_config(
                &files.cert,
                &files.key,
                mqtt.client_ca.as_deref(),
                mqtt.require_client_cert,
            )?)),
            None => None,
        };
        let accounts = mqtt.gated().then(|| Accounts {
            users: mqtt.users.clone(),
            require_client_cert: mqtt.require_client_cert,
            max_connections_per_client: mqtt.max_connections_per_client,
            rate: mqtt.max_messages_per_second,
            burst: mqtt.max_burst,
            reader_topics: config.bridge.subscriptions(),
            admission: Admission::new(
                admission::Limits::default(),
                admission::dummy_hash(mqtt.users.values().find_map(|u| u.password_hash.as_deref())),
            ),
        });
        Ok(Settings {
            broker,
            max_connections: config.max_connections,
            // rumqttd's own limit (`max_payload_size`, which it compares with the remaining
            // length): a larger publish let through would be counted by [`Flow`] and then
            // refused by the broker, its room never given back while ingest is busy.
            max_packet: crate::broker::max_packet(config),
            max_subscriptions: mqtt.max_subscriptions,
            tls,
            accounts,
        })
    }
}

/// The gate's state: its settings, open connections, counters, flow control.
pub struct Gate {
    settings: Settings,
    open: AtomicUsize,
    counters: Counters,
    flow: Arc<Flow>,
    per_client: Mutex<HashMap<String, usize>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// A client id open at rumqttd: how to make its connection close, and whether it has.
#[derive(Debug)]
struct Session {
    /// Tells the relay to end as if its client had closed.
    kick: Notify,
    /// Set once rumqttd has closed its side (or the drain gave up); `closing` wakes who waits
    /// for it. (Not a `watch` channel: its shared state, nine `Notify`s and more, is a few
    /// hundred bytes that every open connection would hold.)
    closed: AtomicBool,
    closing: Notify,
}

impl Session {
    /// Waits until the session's connection has closed at rumqttd.
    async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close between the two is not missed.
            notified.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// A client id held at rumqttd by one connection; given back when dropped.
struct SessionGuard<'a> {
    gate: &'a Gate,
    id: String,
    session: Arc<Session>,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let mut sessions = lock(&self.gate.sessions);
        if sessions
            .get(&self.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.session))
        {
            sessions.remove(&self.id);
        }
        drop(sessions);
        self.session.closed.store(true, Ordering::Release);
        self.session.closing.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_full: AtomicU64,
    refused_id: AtomicU64,
    refused_auth: AtomicU64,
    refused_busy: AtomicU64,
    refused_client_limit: AtomicU64,
    refused_tls: AtomicU64,
    refused_protocol: AtomicU64,
    spoofed: AtomicU64,
    refused_subscriptions: AtomicU64,
    rate_dropped: AtomicU64,
    rate_delayed: AtomicU64,
    oversized: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A copy of the gate's counters (`/api/health` `connections`, `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GateStats {
    /// `max-connections`.
    pub max: usize,
    /// Connections relayed to the broker now.
    pub open: usize,
    /// Whether clients must authenticate (accounts or a client CA configured).
    pub authenticated: bool,
    /// Whether the listener speaks TLS.
    pub tls: bool,
    /// Connections admitted since start.
    pub accepted: u64,
    /// Refused with CONNACK 3 because `max` were open.
    pub refused_full: u64,
    /// Refused with CONNACK 2: a client id the broker cannot take.
    pub refused_id: u64,
    /// CONNECTs refused: anonymous, unknown account, wrong password, no certificate.
    pub refused_auth: u64,
    /// Refused with CONNACK 3 before the password was checked: the checks' queue (or the
    /// source's share of it) was full, the source failed too often lately, or its turn did not
    /// come in time ([`crate::admission`]).
    pub refused_busy: u64,
    /// Refused with CONNACK 3: the account already had its connections open.
    pub refused_client_limit: u64,
    /// TLS handshakes that failed.
    pub refused_tls: u64,
    /// Connections closed for a protocol error (not MQTT 3.1.1, no CONNECT in time, bad
    /// packet, a last will not the account's).
    pub refused_protocol: u64,
    /// Publishes dropped because the topic is not the account's (spoofing, or a command).
    pub spoofed: u64,
    /// Subscriptions refused: a filter the account may not use (the connection is closed), or
    /// a SUBSCRIBE above `mqtt.max-subscriptions` (SUBACK 0x80 with accounts; closed in open
    /// mode).
    pub refused_subscriptions: u64,
    /// QoS 0 publishes dropped above the client's rate.
    pub rate_dropped: u64,
    /// QoS 1 and 2 publishes held back (not dropped) above the client's rate.
    pub rate_delayed: u64,
    /// Connections closed for a packet above `max-payload`.
    pub oversized: u64,
    /// Times a publisher was held back because ingest was behind ([`Flow`]).
    pub held: u64,
    /// Bytes of agents' publishes relayed and not yet read by ingest.
    pub ingest_lag_bytes: u64,
}

/// A held connection slot, given back when dropped.
pub struct Slot(Arc<Gate>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate with these settings, holding publishers back by `flow`.
    pub fn new(settings: Settings, flow: Arc<Flow>) -> Arc<Self> {
        Arc::new(Gate {
            settings,
            open: AtomicUsize::new(0),
            counters: Counters::default(),
            flow,
            per_client: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Takes `client_id` at rumqttd for a new connection. A connection still open with the same
    /// id is told to close first, and this waits (up to [`DRAIN_TIMEOUT`]) until rumqttd has
    /// closed its side.
    ///
    /// MQTT says the newer connection takes the id over, and rumqttd would do it itself, but
    /// its router gives the new connection the old one's freed connection id, and the old
    /// link's own disconnection, arriving after, then closes the *new* connection (seen as a
    /// client reconnecting at once with the same id being dropped).
    async fn take_session(&self, client_id: &str) -> SessionGuard<'_> {
        let session = Arc::new(Session {
            kick: Notify::new(),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
        });
        let previous = lock(&self.sessions).insert(client_id.to_owned(), session.clone());
        if let Some(previous) = previous {
            // A permit is kept if that relay is not waiting right now.
            previous.kick.notify_one();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, previous.closed()).await;
        }
        SessionGuard {
            gate: self,
            id: client_id.to_owned(),
            session,
        }
    }

    /// A slot, or `None` (counted) when `max-connections` are open.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let max = self.settings.max_connections;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Some(Slot(self.clone())),
            Err(_) => {
                bump(&self.counters.refused_full);
                None
            }
        }
    }

    /// The accounts, if clients must authenticate.
    pub fn accounts(&self) -> Option<&Accounts> {
        self.settings.accounts.as_ref()
    }

    /// The counters now.
    pub fn stats(&self) -> GateStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GateStats {
            max: self.settings.max_connections,
            open: self.open.load(Ordering::Acquire),
            authenticated: self.settings.accounts.is_some(),
            tls: self.settings.tls.is_some(),
            accepted: g(&c.accepted),
            refused_full: g(&c.refused_full),
            refused_id: g(&c.refused_id),
            refused_auth: g(&c.refused_auth),
            refused_busy: g(&c.refused_busy),
            refused_client_limit: g(&c.refused_client_limit),
            refused_tls: g(&c.refused_tls),
            refused_protocol: g(&c.refused_protocol),
            spoofed: g(&c.spoofed),
            refused_subscriptions: g(&c.refused_subscriptions),
            rate_dropped: g(&c.rate_dropped),
            rate_delayed: g(&c.rate_delayed),
            oversized: g(&c.oversized),
            held: self.flow.held(),
            ingest_lag_bytes: self.flow.lag(),
        }
    }
}

/// Whether rumqttd's router takes this client id (`validate_clientid`: none of `+$#/`).
pub fn id_allowed(client_id: &[u8]) -> bool {
    !client_id.iter().any(|b| b"+$#/".contains(b))
}

/// Bytes of agents' publishes relayed to the broker against those ingest has read.
///
/// Both sides count a publish as rumqttd's log does (4 + topic + payload bytes), and only
/// publishes on [`ember_wire::topic::FROM_AGENTS`], the filter ingest reads. A relay takes one
/// permit per byte ([`Flow::relay`]) *before* it writes a publish to the broker, and ingest
/// gives them back as it reads ([`Flow::read`]); so however many connections relay at once, no
/// more than [`Flow::limit`] bytes are ever in the log unread. (Checking the lag and then
/// relaying let every connection pass the check at once: with a thousand connections in flight
/// the log overran its segments under load, and rumqttd dropped acknowledged samples.)
///
/// A publish the broker refuses after the gate counted it, or one the log dropped, would stay
/// "unread" for ever: [`Flow::settle`], called by ingest whenever it found nothing to read for a
/// while, gives such permits back.
#[derive(Debug)]
pub struct Flow {
    /// One permit per byte ingest may still fall behind.
    room: Semaphore,
    /// Permits taken and not given back: bytes relayed and not yet read.
    unread: AtomicU64,
    limit: u32,
    held: AtomicU64,
}

impl Flow {
    /// Flow control that holds publishers back rather than let ingest fall more than `limit`
    /// bytes behind.
    pub fn new(limit: u64) -> Arc<Self> {
        let limit = limit.clamp(1, u64::from(u32::MAX)) as u32;
        Arc::new(Flow {
            room: Semaphore::new(limit as usize),
            unread: AtomicU64::new(0),
            limit,
            held: AtomicU64::new(0),
        })
    }

    /// The limit for a broker whose logs hold `segment_size * segment_count` bytes: half of all
    /// but the segment being written, so that a reader held within it is never dropped.
    pub fn limit_for(segment_size: usize, segment_count: usize) -> u64 {
        (segment_size * segment_count.saturating_sub(1).max(1) / 2) as u64
    }

    /// The most ingest may be behind.
    pub fn limit(&self) -> u64 {
        u64::from(self.limit)
    }

    /// Bytes relayed and not yet read.
    pub fn lag(&self) -> u64 {
        self.unread.load(Ordering::Acquire)
    }

    /// Waits until publishes of `bytes` may go to the broker, and counts them as relayed. Call
    /// it before the write. (A publish larger than the limit takes the whole limit.)
    pub async fn relay(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let n = bytes.min(u64::from(self.limit)) as u32;
        let permit = match self.room.try_acquire_many(n) {
            Ok(p) => Some(p),
            Err(_) => {
                self.held.fetch_add(1, Ordering::Relaxed);
                self.room.acquire_many(n).await.ok()
            }
        };
        if let Some(p) = permit {
            // Given back by `read` or `settle`, not when dropped.
            p.forget();
            self.unread.fetch_add(u64::from(n), Ordering::AcqRel);
        } else {
            // Closed: the collector is stopping (`close`).
            std::future::pending::<()>().await;
        }
    }

    /// The collector is stopping: from now on every publish is held back for good (its
    /// publisher keeps it, unacknowledged, for the next start), so that nothing is
    /// acknowledged that ingest will not read (issue #20).
    pub fn close(&self) {
        self.room.close();
    }

    /// Ingest read publishes of `bytes`.
    pub fn read(&self, bytes: u64) {
        let taken = self
            .unread
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u - u.min(bytes))
            })
            .map_or(0, |u| u.min(bytes));
        self.room.add_permits(taken as usize);
    }

    /// Ingest has read everything the broker had for it: whatever is still counted as unread
    /// never reached its log (refused by the broker, or dropped), and is forgotten.
    pub fn settle(&self) {
        let taken = self.unread.swap(0, Ordering::AcqRel);
        self.room.add_permits(taken as usize);
    }

    /// How many times a publisher's connection was held back.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// Finds the publishes on agents' topics in a client's byte stream (MQTT 3.1.1, after the
/// CONNECT), fed in whatever pieces the socket gives.
#[derive(Debug)]
pub struct Scanner {
    state: Scan,
    publish: bool,
    qos: u8,
    /// Bytes of the current packet not yet seen.
    remaining: usize,
    topic_len: usize,
    topic: Vec<u8>,
    /// The largest packet (remaining length) the broker takes.
    max: usize,
    /// The remaining length of a packet above `max`, once seen (the scan is then broken).
    oversized: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Type,
    Length {
        shift: u32,
    },
    TopicHigh,
    TopicLow,
    Topic,
    Skip,
    /// Not MQTT as the broker reads it: the broker closes the connection; nothing more counted.
    Broken,
}

/// Topics longer than this are not agents' topics; they are skipped, not collected.
const MAX_TOPIC: usize = 256;

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: Scan::Type,
            publish: false,
            qos: 0,
            remaining: 0,
            topic_len: 0,
            topic: Vec::new(),
            max: usize::MAX,
            oversized: None,
        }
    }
}

impl Scanner {
    /// A scanner that stops at a packet above `max` bytes (remaining length): its publish is
    /// not counted, and [`Scanner::oversized`] says so.
    pub fn with_limit(max: usize) -> Self {
        Scanner {
            max,
            ..Scanner::default()
        }
    }

    /// The remaining length of a packet above the limit, if one was seen.
    pub fn oversized(&self) -> Option<usize> {
        self.oversized
    }

    /// Scans the next bytes of the stream; returns the size (as [`Flow`] counts) of the agents'
    /// publishes whose topic ended in them.
    pub fn feed(&mut self, data: &[u8]) -> u64 {
        self.scan(data, false).0
    }

    /// As [`Scanner::feed`], but stops before a SUBSCRIBE or UNSUBSCRIBE: also returns how
    /// many bytes it scanned (`data.len()` unless it stopped). The caller takes that packet
    /// whole, then feeds what follows it.
    pub fn feed_until_control(&mut self, data: &[u8]) -> (u64, usize) {
        self.scan(data, true)
    }

    fn scan(&mut self, data: &[u8], stop: bool) -> (u64, usize) {
        let mut counted = 0;
        let mut i = 0;
        while i < data.len() {
            match self.state {
                Scan::Broken => return (counted, data.len()),
                Scan::Type => {
                    let b = data[i];
                    if stop && matches!(b >> 4, 8 | 10) {
                        return (counted, i);
                    }
                    i += 1;
                    self.publish = b >> 4 == 3;
                    self.qos = (b >> 1) & 3;
                    self.remaining = 0;
                    self.state = Scan::Length { shift: 0 };
                }
                Scan::Length { shift } => {
                    let b = data[i];
                    i += 1;
                    self.remaining |= usize::from(b & 0x7f) << shift;
                    self.state = if b & 0x80 != 0 {
                        if shift >= 21 {
                            Scan::Broken
                        } else {
                            Scan::Length { shift: shift + 7 }
                        }
                    } else if self.remaining > self.max {
                        self.oversized = Some(self.remaining);
                        Scan::Broken
                    } else if self.remaining == 0 {
                        Scan::Type
                    } else if self.publish {
                        Scan::TopicHigh
                    } else {
                        Scan::Skip
                    };
                }
                Scan::TopicHigh | Scan::TopicLow => {
                    let b = usize::from(data[i]);
                    i += 1;
                    self.remaining -= 1;
                    if self.state == Scan::TopicHigh {
                        self.topic_len = b << 8;
                        self.state = if self.remaining == 0 {
                            Scan::Broken
                        } else {
                            Scan::TopicLow
                        };
                    } else {
                        self.topic_len |= b;
                        self.topic.clear();
                        let id = if self.qos > 0 { 2 } else { 0 };
                        self.state = if self.topic_len + id > self.remaining {
                            Scan::Broken
                        } else if self.topic_len > MAX_TOPIC || self.topic_len == 0 {
                            Scan::Skip
                        } else {
                            Scan::Topic
                        };
                    }
                }
                Scan::Topic => {
                    let n = (self.topic_len - self.topic.len()).min(data.len() - i);
                    self.topic.extend_from_slice(&data[i..i + n]);
                    i += n;
                    self.remaining -= n;
                    if self.topic.len() == self.topic_len {
                        if from_agents(&self.topic) {
                            let id = if self.qos > 0 { 2 } else { 0 };
                            let payload = self.remaining - id;
                            counted += (4 + self.topic_len + payload) as u64;
                        }
                        self.state = if self.remaining == 0 {
                            Scan::Type
                        } else {
                            Scan::Skip
                        };
                    }
                }
                Scan::Skip => {
                    let n = self.remaining.min(data.len() - i);
                    i += n;
                    self.remaining -= n;
                    if self.remaining == 0 {
                        self.state = Scan::Type;
                    }
                }
            }
        }
        (counted, data.len())
    }
}

/// Accepts connections on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, gate: Arc<Gate>) {
    let mut n: u64 = 0;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!("MQTT accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        n += 1;
        let gate = gate.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(gate, tcp, peer.ip(), n).await {
                tracing::debug!(%peer, "MQTT client closed: {e}");
            }
        });
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// No CONNECT (or no TLS handshake) in time.
    #[error("no CONNECT within {CONNECT_TIMEOUT:?}")]
    Timeout,
    /// A packet above the size limit.
    #[error("packet of {0} bytes is above the limit")]
    TooLarge(usize),
    /// Not MQTT 3.1.1 as the gate reads it.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The CONNECT was refused with this code.
    #[error("refused: {0:?}")]
    Refused(ConnectReturnCode),
    /// An MQTT 5 CONNECT was refused with this reason code.
    #[error("refused: reason {0:#04x}")]
    Refused5(u8),
    /// A subscription the account may not make.
    #[error("subscription to {0:?} refused")]
    Subscription(String),
    /// A QoS 2 publish the account may not make.
    #[error("QoS 2 publish to {0:?} refused")]
    Qos2(String),
}

async fn connection(gate: Arc<Gate>, tcp: TcpStream, peer: IpAddr, n: u64) -> Result<(), Closed> {
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = &gate.settings.tls else {
        return client(&gate, tcp, None, peer, n).await;
    };
    // TLS's handshake and stream are boxed: every connection's task is as large as the largest
    // state of this future, and without TLS it need not hold room for them.
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, Box::pin(acceptor.accept(tcp))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            bump(&gate.counters.refused_tls);
            return Err(Closed::Tls(e));
        }
        Err(_) => {
            bump(&gate.counters.refused_tls);
            return Err(Closed::Timeout);
        }
    };
    // rustls verified a client certificate against the client CA: its common name is the host.
    let cert_name = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::pki::common_name(c.as_ref()));
    Box::pin(client(&gate, tls, cert_name, peer, n)).await
}

/// One client, over TCP or TLS: its CONNECT, then the relay until either side closes.
async fn client<S>(
    gate: &Arc<Gate>,
    stream: S,
    cert_name: Option<String>,
    peer: IpAddr,
    n: u64,
) -> Result<(), Closed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let counters = &gate.counters;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max = gate.settings.max_packet;
    let mut buf = BytesMut::new();
    let first = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut rd, &mut buf, max)).await;
    let (header, frame) = match first {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            bump(if matches!(e, Closed::TooLarge(_)) {
                &counters.oversized
            } else {
                &counters.refused_protocol
            });
            return Err(e);
        }
        Err(_) => {
            bump(&counters.refused_protocol);
            return Err(Closed::Timeout);
        }
    };
    if !matches!(header.packet_type(), Ok(PacketType::Connect)) {
        bump(&counters.refused_protocol);
        return Err(Closed::Malformed(
            "the first packet is not a CONNECT".into(),
        ));
    }
    let level = protocol_level(&frame);
    if level == Some(5) {
        // Boxed: 3.1.1 connections need not hold room for the MQTT 5 path's state.
        return Box::pin(v5::client(gate, rd, wr, frame, buf, cert_name, peer, n)).await;
    }
    let connect = match Connect::read(header, frame) {
        Ok(c) if c.protocol == Protocol::V4 => c,
        // MQTT 3.1 (level 3) is not served (5 is, above).
        Ok(_) => {
            bump(&counters.refused_protocol);
            return refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
        }
        Err(_) if level != Some(4) => {
            bump(&counters.refused_protocol);
            return refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
        }
        Err(e) => {
            bump(&counters.refused_protocol);
            return Err(Closed::Malformed(e.to_string()));
        }
    };
    // Without accounts the client id goes to the broker as it is: one it cannot take is
    // refused first, whether or not the server is full.
    if gate.settings.accounts.is_none() && !id_allowed(connect.client_id.as_bytes()) {
        bump(&counters.refused_id);
        return refuse(&mut wr, ConnectReturnCode::BadClientId).await;
    }
    // A login waiting for its password check holds a slot too: pending logins count toward
    // `max-connections`.
    let Some(slot) = gate.admit() else {
        return refuse(&mut wr, ConnectReturnCode::ServiceUnavailable).await;
    };
    // With accounts: who the client is, and the accounts it was checked against.
    let checked = match &gate.settings.accounts {
        Some(accounts) => {
            // Boxed: open mode's connections need not hold room for a login's state.
            let checking =
                check_login(gate, accounts, &connect, cert_name, peer, &mut rd, &mut buf);
            let identity = match Box::pin(checking).await {
                Ok(i) => i,
                Err(Denied::Auth(code)) => return refuse(&mut wr, code).await,
                Err(Denied::Busy) => {
                    return refuse(&mut wr, ConnectReturnCode::ServiceUnavailable).await;
                }
                Err(Denied::Gone) => return Ok(()),
            };
            if let Some(will) = &connect.last_will {
                if !identity.may_will(&will.topic, &accounts.reader_topics) {
                    bump(&counters.spoofed);
                    return refuse(&mut wr, ConnectReturnCode::NotAuthorized).await;
                }
            }
            Some((identity, accounts))
        }
        None => None,
    };
    let client_id = match &checked {
        Some((identity, _)) => identity.broker_client_id(&connect.client_id, n),
        // Checked above.
        None => Some(connect.client_id.clone()),
    };
    let Some(client_id) = client_id else {
        bump(&counters.refused_id);
        return refuse(&mut wr, ConnectReturnCode::BadClientId).await;
    };
    let Ok(account) = take_account(gate, checked.as_ref().map(|(i, a)| (i, *a))) else {
        return refuse(&mut wr, ConnectReturnCode::ServiceUnavailable).await;
    };

    // rumqttd gives an empty client id one of its own: it takes over no other connection's
    // session (two such clients kicked each other). No id the gate admits has a `#`.
    let session = match client_id.is_empty() {
        true => gate.take_session(&format!("#{n}")).await,
        false => gate.take_session(&client_id).await,
    };
    let kick = &session.session.kick;
    let upstream = crate::broker::connect(&gate.settings.broker)?;
    let (up_rd, mut up_wr) = tokio::io::split(upstream);
    // The client's credentials stay here: rumqttd, reached only through the gate, takes none.
    let forwarded = Connect {
        client_id,
        login: None,
        ..connect
    };
    let mut out = BytesMut::new();
    forwarded
        .write(&mut out)
        .map_err(|e| Closed::Malformed(e.to_string()))?;
    // The CONNECT's last will is a slice of the first read buffer: kept for the whole
    // connection, it would hold that buffer too.
    drop(forwarded);
    up_wr.write_all(&out).await?;
    drop(out);
    let result = match &checked {
        None => relay_bytes(gate, kick, rd, wr, up_rd, up_wr, buf).await,
        // Boxed: the open relay's connections need not hold room for the checked one's state.
        Some((identity, accounts)) => {
            Box::pin(relay_checked(
                gate, kick, accounts, identity, rd, wr, up_rd, up_wr, buf,
            ))
            .await
        }
    };
    drop(session);
    drop(account);
    drop(slot);
    result
}

/// Open mode: bytes both ways, scanning the client's for agents' publishes ([`Flow`]).
async fn relay_bytes<R, W, BR, BW>(
    gate: &Gate,
    kick: &Notify,
    mut client_rx: R,
    mut client_tx: W,
    mut broker_rx: BR,
    mut broker_tx: BW,
    pending: BytesMut,
) -> Result<(), Closed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    let flow = &gate.flow;
    let mut scanner = Scanner::with_limit(gate.settings.max_packet);
    let mut subs: Option<Box<Subscriptions>> = None;
    // A SUBSCRIBE or UNSUBSCRIBE being read whole.
    let mut control = BytesMut::new();
    let mut in_control = false;
    let up = pin!(async {
        // Whatever came after the CONNECT, then what the client sends.
        let mut data = pending.freeze();
        let result = 'relay: loop {
            // Relays `data`: bytes as they come, up to a SUBSCRIBE or UNSUBSCRIBE, which is read
            // whole and checked (rate, cap) before it goes on.
            while !data.is_empty() {
                if !in_control {
                    let (counted, used) = scanner.feed_until_control(&data);
                    if let Some(n) = scanner.oversized() {
                        // Closed before any of it is counted or written: the broker would
                        // refuse it after [`Flow`] counted it.
                        bump(&gate.counters.oversized);
                        break 'relay Err(Closed::TooLarge(n));
                    }
                    flow.relay(counted).await;
                    if let Err(e) = broker_tx.write_all(&data[..used]).await {
                        break 'relay Err(e.into());
                    }
                    data = data.slice(used..);
                    in_control = !data.is_empty();
                    continue;
                }
                control.extend_from_slice(&data);
                // Boxed: rare, and its state (a wait for the rate) need not be in every
                // connection's.
                match Box::pin(control_frame(gate, &mut control, &mut subs)).await {
                    Ok(Some((frame, rest))) => {
                        in_control = false;
                        data = rest;
                        if let Err(e) = broker_tx.write_all(&frame).await {
                            break 'relay Err(e.into());
                        }
                    }
                    // The rest of the packet is still to come.
                    Ok(None) => data = Bytes::new(),
                    Err(e) => break 'relay Err(e),
                }
            }
            data = tokio::select! {
                r = read_some(&mut client_rx) => match r {
                    Ok(b) if b.is_empty() => break 'relay Ok(()),
                    Ok(b) => Bytes::from(b),
                    Err(e) => break 'relay Err(e.into()),
                },
                // Taken over: end as if the client had closed.
                () = kick.notified() => break 'relay Ok(()),
            };
        };
        let _ = broker_tx.shutdown().await;
        result
    });
    let down = pin!(async {
        let mut to_client = true;
        while let Ok(bytes) = read_some(&mut broker_rx).await {
            if bytes.is_empty() {
                break;
            }
            if to_client && client_tx.write_all(&bytes).await.is_err() {
                to_client = false;
            }
        }
        let _ = client_tx.shutdown().await;
    });
    drain(up, down).await
}

/// Open mode: a SUBSCRIBE or UNSUBSCRIBE read from `control` once whole, waited out to the
/// connection's rate and checked against its cap (`subs`, made at the first one): the frame
/// to relay and the bytes after it; `None` while the packet is incomplete. Above the cap the
/// connection is closed: no answer can go into the broker's byte stream here.
async fn control_frame(
    gate: &Gate,
    control: &mut BytesMut,
    subs: &mut Option<Box<Subscriptions>>,
) -> Result<Option<(Bytes, Bytes)>, Closed> {
    let Some((header, frame)) = next_frame(control, gate.settings.max_packet)? else {
        return Ok(None);
    };
    let rest = std::mem::take(control).freeze();
    let Some(c) = Control::read(header, &frame).map_err(Closed::Malformed)? else {
        return Err(Closed::Malformed("not a SUBSCRIBE".into()));
    };
    let max = gate.settings.max_subscriptions;
    let subs = subs.get_or_insert_with(|| Box::new(Subscriptions::new(max, Instant::now())));
    if subs.admit(c).await.is_some() {
        bump(&gate.counters.refused_subscriptions);
        return Err(Closed::Subscription(format!(
            "above mqtt.max-subscriptions ({max})"
        )));
    }
    Ok(Some((frame, rest)))
}

/// Runs both directions. When the client's side ends, waits (a while) for rumqttd to close its
/// side: it has then sent the router the disconnection, which the router handles before any
/// later connection, so the slot can go back.
///
/// Takes both pinned where the caller made them (`pin!(async { .. })`): moved in by value,
/// each would be kept twice in the connection's task (the caller's moved-from local and this
/// future's copy), 330 bytes more per open connection.
async fn drain(
    mut up: Pin<&mut impl Future<Output = Result<(), Closed>>>,
    mut down: Pin<&mut impl Future<Output = ()>>,
) -> Result<(), Closed> {
    tokio::select! {
        r = &mut up => {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut down).await;
            r
        }
        () = &mut down => Ok(()),
    }
}

/// With accounts: frame by frame, every PUBLISH and SUBSCRIBE checked against the account and
/// the client's rate.
#[allow(clippy::too_many_arguments)]
async fn relay_checked<R, W, BR, BW>(
    gate: &Gate,
    kick: &Notify,
    accounts: &Accounts,
    identity: &Identity,
    mut rd: R,
    wr: W,
    mut up_rd: BR,
    mut up_wr: BW,
    mut buf: BytesMut,
) -> Result<(), Closed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    let counters = &gate.counters;
    let flow = &gate.flow;
    let max = gate.settings.max_packet;
    // Both directions write to the client: the broker's packets and the gate's own
    // acknowledgements of dropped publishes. Whole frames, under one lock.
    let wr = tokio::sync::Mutex::new(wr);
    let down = pin!(async {
        let mut buf = BytesMut::new();
        // The broker's packets are bounded by its own max-payload.
        while let Ok(Some((_, frame))) = read_frame(&mut up_rd, &mut buf, usize::MAX >> 4).await {
            let mut w = wr.lock().await;
            if w.write_all(&frame).await.is_err() {
                break;
            }
            if buf.is_empty() && w.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.lock().await.shutdown().await;
    });
    let up = pin!(async {
        let mut bucket = TokenBucket::new(accounts.rate, accounts.burst, Instant::now());
        let mut subs = Subscriptions::new(gate.settings.max_subscriptions, Instant::now());
        let result = loop {
            let next = tokio::select! {
                f = read_frame(&mut rd, &mut buf, max) => f,
                // Taken over: end as if the client had closed.
                () = kick.notified() => Ok(None),
            };
            let (header, frame) = match next {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(e) => {
                    if matches!(e, Closed::TooLarge(_)) {
                        bump(&counters.oversized);
                    }
                    break Err(e);
                }
            };
            let step = checked_frame(gate, accounts, identity, &mut bucket, header, frame);
            match step {
                Step::Forward(frame, counted) => {
                    // A SUBSCRIBE or UNSUBSCRIBE the account may make: at the connection's
                    // rate, and within its cap.
                    let control = match Control::read(header, &frame) {
                        Ok(c) => c,
                        Err(e) => break Err(Closed::Malformed(e)),
                    };
                    if let Some(c) = control {
                        if let Some(refusal) = Box::pin(subs.admit(c)).await {
                            bump(&counters.refused_subscriptions);
                            let mut w = wr.lock().await;
                            w.write_all(&refusal).await?;
                            w.flush().await?;
                            continue;
                        }
                    }
                    flow.relay(counted).await;
                    up_wr.write_all(&frame).await?;
                }
                Step::Delay(frame, counted) => {
                    while let Err(wait) = bucket.take(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    flow.relay(counted).await;
                    up_wr.write_all(&frame).await?;
                }
                Step::Drop(None) => {}
                Step::Drop(Some(pkid)) => {
                    let mut out = BytesMut::new();
                    let _ = PubAck::new(pkid).write(&mut out);
                    let mut w = wr.lock().await;
                    w.write_all(&out).await?;
                    w.flush().await?;
                }
                Step::Close(e) => break Err(e),
            }
        };
        let _ = up_wr.shutdown().await;
        result
    });
    drain(up, down).await
}

/// What to do with one frame from an authenticated client.
#[derive(Debug)]
pub enum Step {
    /// Relay it; the bytes it adds to ingest's log ([`Flow`]).
    Forward(Bytes, u64),
    /// Relay it once the client's rate allows (it is above it now).
    Delay(Bytes, u64),
    /// Drop it; acknowledge this packet id.
    Drop(Option<u16>),
    /// Close the connection.
    Close(Closed),
}

fn checked_frame(
    gate: &Gate,
    accounts: &Accounts,
    identity: &Identity,
    bucket: &mut TokenBucket,
    header: FixedHeader,
    frame: Bytes,
) -> Step {
    let counters = &gate.counters;
    match header.packet_type() {
        Ok(PacketType::Publish) => {
            let publish = match Publish::read(header, frame.clone()) {
                Ok(p) => p,
                Err(e) => return Step::Close(Closed::Malformed(e.to_string())),
            };
            let ack = |publish: Publish| match publish.qos {
                QoS::AtMostOnce => Step::Drop(None),
                QoS::AtLeastOnce => Step::Drop(Some(publish.pkid)),
                // Acknowledging QoS 2 needs the PUBREL exchange; nothing of Ember's uses it,
                // so a refused one closes the connection.
                QoS::ExactlyOnce => Step::Close(Closed::Qos2(publish.topic)),
            };
            if !identity.may_publish(&publish.topic, &accounts.reader_topics) {
                bump(&counters.spoofed);
                tracing::debug!(account = %identity.name, topic = %publish.topic, "publish dropped: not the account's topic");
                return ack(publish);
            }
            let counted = if from_agents(publish.topic.as_bytes()) {
                (4 + publish.topic.len() + publish.payload.len()) as u64
            } else {
                0
            };
            match bucket.take(Instant::now()) {
                Ok(()) => Step::Forward(frame, counted),
                Err(_) if publish.qos == QoS::AtMostOnce => {
                    bump(&counters.rate_dropped);
                    ack(publish)
                }
                Err(_) => {
                    bump(&counters.rate_delayed);
                    Step::Delay(frame, counted)
                }
            }
        }
        Ok(PacketType::Subscribe) => {
            let subscribe = match Subscribe::read(header, frame.clone()) {
                Ok(s) => s,
                Err(e) => return Step::Close(Closed::Malformed(e.to_string())),
            };
            match subscribe
                .filters
                .iter()
                .find(|f| !identity.may_subscribe(&f.path))
            {
                Some(f) => {
                    bump(&counters.refused_subscriptions);
                    Step::Close(Closed::Subscription(f.path.clone()))
                }
                None => Step::Forward(frame, 0),
            }
        }
        Ok(PacketType::Connect) => Step::Close(Closed::Malformed("a second CONNECT".into())),
        Ok(_) => Step::Forward(frame, 0),
        Err(e) => Step::Close(Closed::Malformed(e.to_string())),
    }
}

impl Gate {
    /// What the gate does with one frame from `identity` (with accounts): the frame-by-frame
    /// relay's decision, without I/O. `None` when the gate has no accounts.
    pub fn check_frame(
        &self,
        identity: &Identity,
        bucket: &mut TokenBucket,
        header: FixedHeader,
        frame: Bytes,
    ) -> Option<Step> {
        let accounts = self.settings.accounts.as_ref()?;
        Some(checked_frame(
            self, accounts, identity, bucket, header, frame,
        ))
    }
}

/// The protocol level of a whole CONNECT frame (4 for MQTT 3.1.1, 5 for MQTT 5), read without
/// parsing the rest: a CONNECT this gate cannot parse may still deserve a CONNACK saying why.
pub fn protocol_level(frame: &[u8]) -> Option<u8> {
    // The fixed header: the type byte, then one to four length bytes.
    let mut at = 1;
    while frame.get(at)? & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    let name_len = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    frame.get(at + 2 + name_len).copied()
}

/// Answers a CONNECT with a refusal.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: ConnectReturnCode) -> Result<(), Closed> {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(code, false).write(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    let _ = wr.shutdown().await;
    Err(Closed::Refused(code))
}

/// Why a CONNECT was not authenticated.
pub(super) enum Denied {
    /// Refused with this code.
    Auth(ConnectReturnCode),
    /// Refused with CONNACK 3 before its check ([`crate::admission`]).
    Busy,
    /// The client closed while its password waited.
    Gone,
}

/// [`authenticate`]s `connect` while reading what the client sends meanwhile into `buf` (a
/// packet's worth at most, kept for the relay): a client that closes first is never checked
/// ([`Denied::Gone`]). Counts the refusals. MQTT 5's CONNECT comes here too, as its 3.1.1 twin.
pub(super) async fn check_login<R: AsyncRead + Unpin>(
    gate: &Gate,
    accounts: &Accounts,
    connect: &Connect,
    cert_name: Option<String>,
    peer: IpAddr,
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Identity, Denied> {
    let max = gate.settings.max_packet;
    let gone = async {
        loop {
            let read = read_with(rd, |b| {
                buf.extend_from_slice(b);
                b.len()
            })
            .await;
            if !matches!(read, Ok(n) if n > 0) || buf.len() > max {
                return;
            }
        }
    };
    let checked = authenticate(accounts, connect, cert_name, peer, gone).await;
    match &checked {
        Err(Denied::Auth(_)) => bump(&gate.counters.refused_auth),
        Err(Denied::Busy) => bump(&gate.counters.refused_busy),
        _ => {}
    }
    checked
}

/// Checks the CONNECT's credentials or the client certificate. `gone` ends when the client
/// closes: a password not checked yet is then never checked.
async fn authenticate(
    accounts: &Accounts,
    connect: &Connect,
    cert_name: Option<String>,
    peer: IpAddr,
    gone: impl Future<Output = ()>,
) -> Result<Identity, Denied> {
    let users = &accounts.users;
    let refused = |code| Err(Denied::Auth(code));
    if let Some(name) = cert_name {
        // rustls verified the certificate against the client CA: its common name is the host.
        if access::check_name(&name).is_err() {
            return refused(ConnectReturnCode::NotAuthorized);
        }
        if connect.login.as_ref().is_some_and(|l| l.username != name) {
            return refused(ConnectReturnCode::NotAuthorized);
        }
        // Signed by the CA is not enough: the account must still exist, or removing
        // `[mqtt.users.NAME]` could never revoke a certificate.
        let Some(user) = users.get(&name) else {
            return refused(ConnectReturnCode::NotAuthorized);
        };
        return Ok(Identity {
            name,
            role: user.role,
        });
    }
    if accounts.require_client_cert {
        return refused(ConnectReturnCode::NotAuthorized);
    }
    let Some(login) = &connect.login else {
        return refused(ConnectReturnCode::NotAuthorized);
    };
    let admission = &accounts.admission;
    let ticket = admission.enter(peer).map_err(|_| Denied::Busy)?;
    // A name without an account (or without a password) is checked too, against a hash of
    // the same cost: its answer comes no sooner than a wrong password's.
    let user = users.get(&login.username);
    let hash = user.and_then(|u| u.password_hash.as_deref());
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let verdict = ticket
        .verify(
            hash.unwrap_or(admission.dummy()),
            &login.password,
            gone,
            deadline,
        )
        .await;
    match (verdict, user) {
        (Verdict::Match, Some(user)) if hash.is_some() => Ok(Identity {
            name: login.username.clone(),
            role: user.role,
        }),
        (Verdict::Gone, _) => Err(Denied::Gone),
        (Verdict::Late | Verdict::Held, _) => Err(Denied::Busy),
        _ => {
            ticket.failed();
            refused(ConnectReturnCode::BadUserNamePassword)
        }
    }
}

/// With accounts, the account's connection slot, then the connection is counted as accepted:
/// `Err` (counted) when the account's `max-connections-per-client` are open already. Without
/// accounts, no slot. 3.1.1 and MQTT 5 CONNECTs both come here.
fn take_account<'a>(
    gate: &'a Gate,
    checked: Option<(&Identity, &Accounts)>,
) -> Result<Option<AccountSlot<'a>>, ()> {
    let account = match checked {
        Some((identity, accounts)) => match AccountSlot::take(gate, accounts, &identity.name) {
            Some(s) => Some(s),
            None => {
                bump(&gate.counters.refused_client_limit);
                return Err(());
            }
        },
        None => None,
    };
    bump(&gate.counters.accepted);
    Ok(account)
}

/// One of an account's connections; given back when dropped.
struct AccountSlot<'a> {
    gate: &'a Gate,
    name: String,
}

impl<'a> AccountSlot<'a> {
    fn take(gate: &'a Gate, accounts: &Accounts, name: &str) -> Option<Self> {
        let mut map = lock(&gate.per_client);
        let n = map.entry(name.to_string()).or_insert(0);
        if *n >= accounts.max_connections_per_client {
            return None;
        }
        *n += 1;
        Some(AccountSlot {
            gate,
            name: name.to_string(),
        })
    }
}

impl Drop for AccountSlot<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.gate.per_client);
        if let Some(n) = map.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.name);
            }
        }
    }
}

/// Takes one whole MQTT frame off the front of `buf`; `None` while it holds less than one.
pub fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<(FixedHeader, Bytes)>, Closed> {
    match check(buf.iter(), max) {
        Ok(h) => {
            let frame = buf.split_to(h.frame_length()).freeze();
            if buf.is_empty() {
                // What room is left shares the frame's allocation: let it go with the frame
                // rather than hold it until the next packet.
                *buf = BytesMut::new();
            }
            Ok(Some((h, frame)))
        }
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n)) => Err(Closed::TooLarge(n)),
        Err(e) => Err(Closed::Malformed(e.to_string())),
    }
}

/// Reads one whole MQTT frame; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(FixedHeader, Bytes)>, Closed> {
    loop {
        if let Some(frame) = next_frame(buf, max)? {
            return Ok(Some(frame));
        }
        let n = read_with(r, |bytes| {
            buf.extend_from_slice(bytes);
            bytes.len()
        })
        .await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Closed::Malformed("the stream ended inside a packet".into()))
            };
        }
    }
}

/// Reads what `r` has now, up to [`RELAY_CHUNK`] bytes, and hands them to `take` (nothing: the
/// end of the stream). The room read into is on the stack of the poll that finds the bytes, so
/// a connection waiting for its next packet holds no buffer; `take` copies them where they go.
async fn read_with<R, T>(r: &mut R, mut take: impl FnMut(&[u8]) -> T) -> std::io::Result<T>
where
    R: AsyncRead + Unpin,
{
    std::future::poll_fn(|cx| {
        let mut room = [std::mem::MaybeUninit::<u8>::uninit(); RELAY_CHUNK];
        let mut buf = tokio::io::ReadBuf::uninit(&mut room);
        std::task::ready!(std::pin::Pin::new(&mut *r).poll_read(cx, &mut buf))?;
        std::task::Poll::Ready(Ok(take(buf.filled())))
    })
    .await
}

/// Reads what `r` has now (up to [`RELAY_CHUNK`] bytes) into a buffer of exactly that size;
/// empty at the end of the stream. See [`read_with`].
async fn read_some<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    read_with(r, <[u8]>::to_vec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_protocol_level_is_read_from_any_connect() {
        use rumqttc::mqttbytes::v4::Connect;
        let mut v4 = BytesMut::new();
        Connect::new("pi").write(&mut v4).unwrap();
        assert_eq!(protocol_level(&v4), Some(4));
        // MQTT 5: "MQTT", level 5 (its properties are not parsed).
        let v5 = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0];
        assert_eq!(protocol_level(&v5), Some(5));
        // MQTT 3.1: "MQIsdp", level 3.
        let v3 = [
            0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60,
        ];
        assert_eq!(protocol_level(&v3), Some(3));
        assert_eq!(protocol_level(&[0x10, 0x80]), None);
        assert_eq!(protocol_level(&[0x10, 2, 0, 4]), None);
    }

    #[test]
    fn ids_the_router_refuses_are_refused() {
        for id in [&b"a/b"[..], b"x+y", b"#", b"$SYS", b"/"] {
            assert!(!id_allowed(id), "{id:?}");
        }
        for id in [&b""[..], b"pi-kitchen", b"ember.collector_1"] {
            assert!(id_allowed(id), "{id:?}");
        }
    }

    fn publish(topic: &str, payload: usize, qos: u8) -> Vec<u8> {
        let id = if qos > 0 { 2 } else { 0 };
        let remaining = 2 + topic.len() + id + payload;
        let mut p = vec![0x30 | (qos << 1)];
        let mut r = remaining;
        loop {
            let b = (r & 0x7f) as u8;
            r >>= 7;
            p.push(if r > 0 { b | 0x80 } else { b });
            if r == 0 {
                break;
            }
        }
        p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        p.extend_from_slice(topic.as_bytes());
        p.extend(std::iter::repeat_n(0u8, id));
        p.extend(std::iter::repeat_n(0xa5u8, payload));
        p
    }

    #[test]
    fn the_scanner_counts_agents_publishes_however_the_stream_is_cut() {
        let mut stream = Vec::new();
        stream.extend(publish("ember/v1/pi/sample", 150, 1));
        stream.extend([0xc0, 0]); // PINGREQ
        stream.extend(publish("other/topic", 40, 0));
        stream.extend(publish("ember/v1/pi/status", 3, 1));
        stream.extend([0x40, 2, 0, 1]); // PUBACK
        stream.extend(publish("ember/v1/pi/sample/extra", 10, 1));
        stream.extend(publish("ember/v1/big/sample", 20_000, 1));
        let expected = (4 + 18 + 150) + (4 + 18 + 3) + (4 + 19 + 20_000);
        for piece in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut s = Scanner::default();
            let counted: u64 = stream.chunks(piece).map(|c| s.feed(c)).sum();
            assert_eq!(counted, expected as u64, "pieces of {piece}");
            assert_eq!(s.state, Scan::Type);
        }
    }

    #[test]
    fn a_broken_stream_stops_the_count() {
        let mut s = Scanner::default();
        // A topic longer than the packet.
        assert_eq!(s.feed(&[0x32, 3, 0, 9, b'e']), 0);
        assert_eq!(s.feed(&publish("ember/v1/pi/sample", 10, 1)), 0);
        let mut s = Scanner::default();
        assert_eq!(s.feed(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]), 0);
        assert_eq!(s.state, Scan::Broken);
    }

    /// Frames are read whole however the stream is cut, and once the last one is taken the
    /// buffer holds no memory: a connection waiting for its next packet keeps no read buffer.
    #[tokio::test]
    async fn frames_are_read_whole_and_leave_no_buffer_behind() {
        let big = publish("ember/v1/pi/sample", 3000, 1);
        let small = publish("ember/v1/pi/status", 3, 1);
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let sent = [big.clone(), small.clone(), vec![0xc0, 0]].concat();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(100) {
                tx.write_all(piece).await.unwrap();
            }
        });
        let mut buf = BytesMut::new();
        for expected in [&big[..], &small[..], &[0xc0, 0][..]] {
            let (_, frame) = read_frame(&mut rx, &mut buf, 1 << 20)
                .await
                .unwrap()
                .expect("a frame");
            assert_eq!(&frame[..], expected);
        }
        assert_eq!(buf.capacity(), 0, "no buffer kept between packets");
        writer.await.unwrap();
        assert!(read_frame(&mut rx, &mut buf, 1 << 20)
            .await
            .unwrap()
            .is_none());
        // A read hands over what is there, no more than a chunk at a time.
        let (mut tx, mut rx) = tokio::io::duplex(4 * RELAY_CHUNK);
        tx.write_all(&big).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        loop {
            let bytes = read_some(&mut rx).await.unwrap();
            assert!(bytes.len() <= RELAY_CHUNK);
            if bytes.is_empty() {
                break;
            }
            got.extend_from_slice(&bytes);
        }
        assert_eq!(got, big);
    }

    #[tokio::test]
    async fn flow_holds_publishers_while_ingest_is_behind() {
        let flow = Flow::new(1000);
        // Within the limit: no wait.
        tokio::time::timeout(Duration::from_millis(10), flow.relay(900))
            .await
            .expect("no wait within the limit");
        assert_eq!(flow.lag(), 900);
        let waiting = tokio::spawn({
            let flow = flow.clone();
            async move { flow.relay(200).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "held: 900 + 200 > 1000");
        assert_eq!(flow.lag(), 900, "a held publish is not counted");
        flow.read(50);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "still held: 850 + 200 > 1000");
        flow.read(100);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released once there is room")
            .unwrap();
        assert_eq!((flow.lag(), flow.held()), (950, 1));
        // Reading more than was counted gives back no more than was taken.
        flow.read(5000);
        assert_eq!(flow.lag(), 0);
        assert_eq!(flow.room.available_permits(), 1000);
        // What never reached the log is forgotten once ingest is idle.
        flow.relay(700).await;
        flow.settle();
        assert_eq!((flow.lag(), flow.room.available_permits()), (0, 1000));
        // A publish above the limit takes all of it, and does not wait for ever.
        tokio::time::timeout(Duration::from_millis(100), flow.relay(5000))
            .await
            .expect("an oversized publish goes through an empty log");
        assert_eq!(flow.lag(), 1000);
        assert_eq!(Flow::limit_for(1 << 20, 4), 3 << 19);
    }

    /// However many connections relay at once, the log never holds more than the limit
    /// unread: each takes its room before its write, as the relays do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_relays_at_once_never_overrun_the_limit() {
        const LIMIT: u64 = 10_000;
        const PUBLISH: u64 = 300;
        let flow = Flow::new(LIMIT);
        // What the broker's log holds and ingest has not read yet.
        let in_log = Arc::new(AtomicU64::new(0));
        let worst = Arc::new(AtomicU64::new(0));
        let relays: Vec<_> = (0..200)
            .map(|_| {
                let (flow, in_log, worst) = (flow.clone(), in_log.clone(), worst.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        flow.relay(PUBLISH).await;
                        let now = in_log.fetch_add(PUBLISH, Ordering::AcqRel) + PUBLISH;
                        worst.fetch_max(now, Ordering::AcqRel);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        // A slow ingest: reads a little at a time.
        let total = 200 * 20 * PUBLISH;
        let mut read = 0;
        while read < total {
            tokio::time::sleep(Duration::from_micros(200)).await;
            let n = in_log.load(Ordering::Acquire).min(4 * PUBLISH);
            in_log.fetch_sub(n, Ordering::AcqRel);
            flow.read(n);
            read += n;
        }
        for r in relays {
            r.await.unwrap();
        }
        let worst = worst.load(Ordering::Acquire);
        assert!(
            worst <= LIMIT,
            "{worst} bytes unread in the log, limit {LIMIT}"
        );
        assert!(flow.held() > 0, "the relays had to wait");
        assert_eq!(flow.lag(), 0);
    }

    #[test]
    fn the_gate_admits_up_to_max_and_counts_refusals() {
        let settings = Settings {
            // Admission does not reach the broker.
            broker: crate::broker::idle_handoff(),
            max_connections: 2,
            max_packet: 1024,
            max_subscriptions: 100,
            tls: None,
            accounts: None,
        };
        let gate = Gate::new(settings, Flow::new(1000));
        let a = gate.admit().expect("first");
        let b = gate.admit().expect("second");
        assert!(gate.admit().is_none());
        assert!(gate.admit().is_none());
        drop(a);
        let c = gate.admit().expect("a freed slot");
        let stats = gate.stats();
        assert_eq!((stats.open, stats.refused_full), (2, 2));
        drop((b, c));
        assert_eq!(gate.stats().open, 0);
    }

    /// A gate in front of a real rumqttd, open mode, on a loopback port.
    async fn gate_on_loopback() -> std::net::SocketAddr {
        crate::gate_attacks::start(|_| {}).await.0
    }

    /// Connects as `id` and sends the CONNECT.
    async fn send_connect(addr: std::net::SocketAddr, id: &str) -> TcpStream {
        let mut connect = Connect::new(id);
        connect.keep_alive = 30;
        let mut bytes = BytesMut::new();
        connect.write(&mut bytes).unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        s
    }

    /// Reads the CONNACK of a connection accepted.
    async fn connack(s: &mut TcpStream, id: &str) {
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
            .await
            .expect("a CONNACK in time")
            .unwrap();
        assert_eq!(ack, [0x20, 2, 0, 0], "{id} accepted");
    }

    /// Connects as `id` and reads the CONNACK.
    async fn mqtt_connect(addr: std::net::SocketAddr, id: &str) -> TcpStream {
        let mut s = send_connect(addr, id).await;
        connack(&mut s, id).await;
        s
    }

    /// PINGREQ answered with PINGRESP: the connection is open.
    async fn answers_ping(s: &mut TcpStream) -> bool {
        if s.write_all(&[0xc0, 0]).await.is_err() {
            return false;
        }
        let mut pong = [0u8; 2];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut pong)).await,
            Ok(Ok(_)) if pong == [0xd0, 0]
        )
    }

    /// A client that connects again with its id, at once or while its old connection is still
    /// open, keeps the new connection; the old one is closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_id_taken_over_keeps_the_newer_connection() {
        let addr = gate_on_loopback().await;
        // Reconnected with the same id while the old connection closes (no DISCONNECT), over
        // and over.
        let mut last = mqtt_connect(addr, "again").await;
        for _ in 0..30 {
            let mut new = send_connect(addr, "again").await;
            drop(last);
            connack(&mut new, "again").await;
            last = new;
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(answers_ping(&mut last).await, "the newest connection stays");
        }
        // Taken over while open: the older one is closed.
        let mut old = mqtt_connect(addr, "twice").await;
        let mut new = mqtt_connect(addr, "twice").await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), old.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(_))),
            "the older connection is closed"
        );
        assert!(answers_ping(&mut new).await, "the newer connection stays");
    }
}
