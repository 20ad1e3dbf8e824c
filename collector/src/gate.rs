//! The MQTT gate: the collector's own listener in front of the embedded broker.
//!
//! rumqttd 0.20 panics (`server/broker.rs:544`, `try_send(..).unwrap()` on a channel whose
//! receiver is gone) when a client id connects again after the router refused it, either for
//! being over `max_connections` or for a client id with `+`, `$`, `#` or `/` in it; with
//! `panic = "abort"` that kills the collector, and with unwinding it poisons the broker's mutex so
//! that no client can connect any more (issue #9). So rumqttd listens on loopback only and the
//! router's own limit is set above the collector's: the gate accepts agents, reads their
//! CONNECT, refuses what the router would refuse (CONNACK 3 "server unavailable" when
//! `max-connections` are open, CONNACK 2 "identifier rejected" for an id the router cannot take)
//! and relays the rest, byte for byte, to rumqttd. A slot is given back only once rumqttd has
//! closed its side, so the router has seen the disconnection before the slot is reused.
//!
//! rumqttd acknowledges a QoS 1 publish as soon as it is in the broker's in-memory log, and a
//! subscriber that falls more than the log's size behind loses the oldest part: the broker has
//! no backpressure of its own. The gate gives it one ([`Flow`]): it counts the bytes of agents'
//! publishes it relays, ingest counts those it reads, and while ingest is more than
//! [`Flow::limit`] behind the gate stops reading from agents, so their in-flight windows fill
//! and they wait (their outboxes hold what they sample meanwhile) instead of the log overrunning.
//!
//! The connection bookkeeping ([`Gate`]), the CONNECT parsing ([`client_id`]) and the publish
//! accounting ([`Scanner`], [`Flow`]) are plain code, tested without sockets; [`serve`] is the
//! I/O around them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::ingest::from_agents;

/// How long a new connection has to send its CONNECT (as rumqttd's `connection_timeout_ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed connection waits for rumqttd to close its side before its slot is reused.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest CONNECT read (client id, will message, login): larger ones are closed.
const MAX_CONNECT: usize = 64 * 1024;

/// CONNACK return codes (MQTT 3.1.1, 3.2.2.3).
const IDENTIFIER_REJECTED: u8 = 2;
const SERVER_UNAVAILABLE: u8 = 3;

/// Open connections and what was refused; shared with the HTTP API.
#[derive(Debug)]
pub struct Gate {
    max: usize,
    open: AtomicUsize,
    refused_full: AtomicU64,
    refused_id: AtomicU64,
    accepted: AtomicU64,
    flow: Arc<Flow>,
}

/// A copy of the gate's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GateStats {
    /// `max-connections`.
    pub max: usize,
    /// Connections relayed to the broker now.
    pub open: usize,
    /// Connections admitted since start.
    pub accepted: u64,
    /// Refused with CONNACK 3 because `max` were open.
    pub refused_full: u64,
    /// Refused with CONNACK 2: a client id the broker cannot take.
    pub refused_id: u64,
    /// Times a publisher was held back because ingest was behind ([`Flow`]).
    pub held: u64,
    /// Bytes of agents' publishes relayed and not yet read by ingest.
    pub ingest_lag_bytes: u64,
}

/// A held connection slot, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Gate>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate admitting at most `max` connections at once, holding publishers back by `flow`.
    pub fn new(max: usize, flow: Arc<Flow>) -> Arc<Self> {
        Arc::new(Gate {
            flow,
            max,
            open: AtomicUsize::new(0),
            refused_full: AtomicU64::new(0),
            refused_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        })
    }

    /// A slot, or `None` (counted) when `max` are open.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        match taken {
            Ok(_) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Some(Slot(self.clone()))
            }
            Err(_) => {
                self.refused_full.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> GateStats {
        GateStats {
            max: self.max,
            open: self.open.load(Ordering::Acquire),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_id: self.refused_id.load(Ordering::Relaxed),
            held: self.flow.held(),
            ingest_lag_bytes: self.flow.lag(),
        }
    }
}

/// What the start of a connection's byte stream holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Connect<'a> {
    /// Not all of the CONNECT yet.
    Incomplete,
    /// A whole CONNECT of `len` bytes, with this client id.
    Complete {
        /// Bytes of the packet, fixed header included.
        len: usize,
        /// The client id (may be empty: the broker then assigns one).
        client_id: &'a [u8],
    },
    /// Not a CONNECT, or a malformed one: the connection is closed.
    Invalid,
}

/// Parses the CONNECT at the start of `buf` (MQTT 3.1, 3.1.1 or 5).
pub fn client_id(buf: &[u8]) -> Connect<'_> {
    let Some(&first) = buf.first() else {
        return Connect::Incomplete;
    };
    if first != 0x10 {
        return Connect::Invalid;
    }
    // Remaining length: up to four bytes, seven bits each.
    let mut remaining = 0usize;
    let mut header = 1;
    loop {
        let Some(&b) = buf.get(header) else {
            return Connect::Incomplete;
        };
        remaining |= usize::from(b & 0x7f) << (7 * (header - 1));
        header += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header == 5 {
            return Connect::Invalid;
        }
    }
    let len = header + remaining;
    if len > MAX_CONNECT {
        return Connect::Invalid;
    }
    let Some(packet) = buf.get(header..len) else {
        return Connect::Incomplete;
    };
    match connect_client_id(packet) {
        Some(client_id) => Connect::Complete { len, client_id },
        None => Connect::Invalid,
    }
}

/// The client id in a CONNECT's variable header and payload.
fn connect_client_id(p: &[u8]) -> Option<&[u8]> {
    let name_len = usize::from(u16::from_be_bytes([*p.first()?, *p.get(1)?]));
    let mut at = 2 + name_len;
    let level = *p.get(at)?;
    // Level, flags, keep-alive.
    at += 4;
    if level == 5 {
        // Properties: a variable byte integer length, then that many bytes.
        let mut props = 0usize;
        for shift in 0..4 {
            let b = *p.get(at)?;
            at += 1;
            props |= usize::from(b & 0x7f) << (7 * shift);
            if b & 0x80 == 0 {
                break;
            }
        }
        at += props;
    }
    let id_len = usize::from(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]));
    p.get(at + 2..at + 2 + id_len)
}

/// Whether rumqttd's router takes this client id (`validate_clientid`: none of `+$#/`).
pub fn id_allowed(client_id: &[u8]) -> bool {
    !client_id.iter().any(|b| b"+$#/".contains(b))
}

/// Bytes of agents' publishes relayed to the broker against those ingest has read.
///
/// Both sides count a publish as rumqttd's log does (4 + topic + payload bytes), and only
/// publishes on [`ember_wire::topic::FROM_AGENTS`], the filter ingest reads. A publish the broker
/// refuses after the gate counted it, or one the log dropped, would stay "unread" for ever:
/// [`Flow::settle`], called by ingest whenever it found nothing to read for a while, forgets such
/// a difference.
#[derive(Debug)]
pub struct Flow {
    relayed: AtomicU64,
    read: AtomicU64,
    limit: u64,
    resume: Notify,
    held: AtomicU64,
}

impl Flow {
    /// Flow control that holds publishers back while ingest is more than `limit` bytes behind.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Flow {
            relayed: AtomicU64::new(0),
            read: AtomicU64::new(0),
            limit,
            resume: Notify::new(),
            held: AtomicU64::new(0),
        })
    }

    /// The limit for a broker whose logs hold `segment_size * segment_count` bytes: half of all
    /// but the segment being written, so that a reader held within it is never dropped.
    pub fn limit_for(segment_size: usize, segment_count: usize) -> u64 {
        (segment_size * segment_count.saturating_sub(1).max(1) / 2) as u64
    }

    /// The most ingest may be behind before publishers are held.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes relayed and not yet read.
    pub fn lag(&self) -> u64 {
        let read = self.read.load(Ordering::Acquire);
        self.relayed.load(Ordering::Acquire).saturating_sub(read)
    }

    /// The gate relayed publishes of `bytes`.
    pub fn relayed(&self, bytes: u64) {
        if bytes > 0 {
            self.relayed.fetch_add(bytes, Ordering::AcqRel);
        }
    }

    /// Ingest read publishes of `bytes`.
    pub fn read(&self, bytes: u64) {
        if bytes > 0 {
            self.read.fetch_add(bytes, Ordering::AcqRel);
        }
        if self.lag() <= self.limit / 2 {
            self.resume.notify_waiters();
        }
    }

    /// Ingest has read everything the broker had for it: whatever is still counted as unread
    /// never reached its log (refused by the broker, or dropped), and is forgotten.
    pub fn settle(&self) {
        let relayed = self.relayed.load(Ordering::Acquire);
        self.read.fetch_max(relayed, Ordering::AcqRel);
        self.resume.notify_waiters();
    }

    /// How many times a publisher's connection was held back.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Waits while ingest is more than the limit behind.
    pub async fn wait(&self) {
        if self.lag() <= self.limit {
            return;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        loop {
            let resumed = self.resume.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if self.lag() <= self.limit / 2 {
                return;
            }
            // A wake-up missed or a settle pending: look again now and then.
            let _ = tokio::time::timeout(Duration::from_millis(250), resumed).await;
        }
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
        }
    }
}

impl Scanner {
    /// Scans the next bytes of the stream; returns the size (as [`Flow`] counts) of the agents'
    /// publishes whose topic ended in them.
    pub fn feed(&mut self, data: &[u8]) -> u64 {
        let mut counted = 0;
        let mut i = 0;
        while i < data.len() {
            match self.state {
                Scan::Broken => return counted,
                Scan::Type => {
                    let b = data[i];
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
        counted
    }
}

/// Accepts connections on `listener` until the runtime stops, relaying admitted ones to the
/// broker at `upstream`, holding publishers back as `flow` says.
pub async fn serve(listener: TcpListener, upstream: SocketAddr, gate: Arc<Gate>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!("MQTT accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, upstream, gate).await {
                tracing::debug!("MQTT connection: {e}");
            }
        });
    }
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    gate: Arc<Gate>,
) -> std::io::Result<()> {
    let flow = gate.flow.clone();
    client.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(256);
    let read_connect = async {
        loop {
            match client_id(&buf) {
                Connect::Complete { len, client_id } => {
                    return Ok::<_, std::io::Error>(Some((len, id_allowed(client_id))));
                }
                Connect::Invalid => return Ok(None),
                Connect::Incomplete => {}
            }
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let connect_len = tokio::time::timeout(CONNECT_TIMEOUT, read_connect)
        .await
        .map_err(|_| std::io::Error::other("no CONNECT in time"))??;
    let Some((connect_len, allowed)) = connect_len else {
        return Ok(());
    };
    if !allowed {
        gate.refused_id.fetch_add(1, Ordering::Relaxed);
        return connack(&mut client, IDENTIFIER_REJECTED).await;
    }
    let Some(slot) = gate.admit() else {
        return connack(&mut client, SERVER_UNAVAILABLE).await;
    };
    let mut broker = TcpStream::connect(upstream).await?;
    broker.set_nodelay(true)?;
    let mut scanner = Scanner::default();
    // The CONNECT and whatever came after it.
    flow.relayed(scanner.feed(&buf[connect_len..]));
    broker.write_all(&buf).await?;
    let (mut client_rx, mut client_tx) = client.split();
    let (mut broker_rx, mut broker_tx) = broker.split();
    let up = async {
        let mut chunk = vec![0u8; 16 * 1024];
        let result = loop {
            flow.wait().await;
            let n = match client_rx.read(&mut chunk).await {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            flow.relayed(scanner.feed(&chunk[..n]));
            if let Err(e) = broker_tx.write_all(&chunk[..n]).await {
                break Err(e);
            }
        };
        let _ = broker_tx.shutdown().await;
        result
    };
    // Ends when rumqttd closes its side: it has then sent the router its disconnection, which
    // the router handles before any later connection, so the slot can go back.
    let down = async {
        let mut chunk = vec![0u8; 16 * 1024];
        let mut to_client = true;
        while let Ok(n) = broker_rx.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            if to_client && client_tx.write_all(&chunk[..n]).await.is_err() {
                to_client = false;
            }
        }
        let _ = client_tx.shutdown().await;
    };
    tokio::pin!(up, down);
    let result = tokio::select! {
        r = &mut up => {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut down).await;
            r
        }
        () = &mut down => Ok(()),
    };
    drop(slot);
    result
}

async fn connack(client: &mut TcpStream, code: u8) -> std::io::Result<()> {
    client.write_all(&[0x20, 2, 0, code]).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(level: u8, client_id: &[u8], props: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
        if level == 5 {
            body.push(props.len() as u8);
            body.extend_from_slice(props);
        }
        body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        body.extend_from_slice(client_id);
        let mut p = vec![0x10, body.len() as u8];
        p.extend_from_slice(&body);
        p
    }

    fn check(buf: &[u8], expected: Connect<'_>) {
        assert_eq!(client_id(buf), expected, "{buf:02x?}");
    }

    #[test]
    fn parses_the_client_id_of_v4_and_v5_connects() {
        let v4 = connect(4, b"pi-kitchen", &[]);
        check(
            &v4,
            Connect::Complete {
                len: v4.len(),
                client_id: b"pi-kitchen",
            },
        );
        let v5 = connect(5, b"a/b", &[0x11, 0, 0, 0, 10]);
        check(
            &v5,
            Connect::Complete {
                len: v5.len(),
                client_id: b"a/b",
            },
        );
        // What follows the CONNECT is not part of it.
        let mut more = connect(4, b"", &[]);
        let len = more.len();
        more.extend_from_slice(&[0x30, 0]);
        check(
            &more,
            Connect::Complete {
                len,
                client_id: b"",
            },
        );
    }

    #[test]
    fn a_partial_connect_waits_and_anything_else_is_invalid() {
        let v4 = connect(4, b"pi", &[]);
        for cut in 0..v4.len() {
            check(&v4[..cut], Connect::Incomplete);
        }
        check(&[0x30, 0], Connect::Invalid);
        // A remaining length over four bytes, and one past the CONNECT size limit.
        check(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01], Connect::Invalid);
        check(&[0x10, 0xff, 0xff, 0x7f], Connect::Invalid);
        // A client id longer than the packet.
        check(
            &[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 9],
            Connect::Invalid,
        );
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

    #[tokio::test]
    async fn flow_holds_publishers_while_ingest_is_behind() {
        let flow = Flow::new(1000);
        flow.relayed(900);
        // Within the limit: no wait.
        tokio::time::timeout(Duration::from_millis(10), flow.wait())
            .await
            .expect("no wait within the limit");
        flow.relayed(200);
        assert_eq!(flow.lag(), 1100);
        let waiting = tokio::spawn({
            let flow = flow.clone();
            async move { flow.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "held while 1100 > 1000 behind");
        flow.read(300);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "held until half the limit");
        flow.read(400);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released at half the limit")
            .unwrap();
        assert_eq!(flow.held(), 1);
        // What never reached the log is forgotten once ingest is idle.
        flow.relayed(5000);
        flow.settle();
        assert_eq!(flow.lag(), 0);
        assert_eq!(Flow::limit_for(1 << 20, 4), 3 << 19);
    }

    #[test]
    fn the_gate_admits_up_to_max_and_counts_refusals() {
        let gate = Gate::new(2, Flow::new(1000));
        let a = gate.admit().expect("first");
        let b = gate.admit().expect("second");
        assert!(gate.admit().is_none());
        assert!(gate.admit().is_none());
        drop(a);
        let c = gate.admit().expect("a freed slot");
        let stats = gate.stats();
        assert_eq!((stats.open, stats.accepted, stats.refused_full), (2, 3, 2));
        drop((b, c));
        assert_eq!(gate.stats().open, 0);
    }
}
