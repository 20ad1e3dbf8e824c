//! A raw MQTT 3.1.1 client for the conformance cases: every packet encoded and decoded by hand,
//! so a case can send what client libraries refuse to (a bad protocol level, a second CONNECT,
//! an invalid filter, an unacknowledged QoS 1 message) and see exactly what the broker answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a case waits for a packet it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a case watches for a packet it expects not to come.
pub const QUIET: Duration = Duration::from_millis(400);

/// Reads what the broker sends next into `buf`, waiting until `deadline` at most.
pub async fn read_more(
    stream: &mut TcpStream,
    deadline: Instant,
    buf: &mut impl for<'a> Extend<&'a u8>,
) -> Result<(), Silence> {
    let mut chunk = [0u8; 4096];
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, stream.read(&mut chunk)).await {
        Err(_) => Err(Silence::Timeout),
        Ok(Ok(0) | Err(_)) => Err(Silence::Closed),
        Ok(Ok(n)) => {
            buf.extend(&chunk[..n]);
            Ok(())
        }
    }
}

/// A packet from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    SubAck {
        id: u16,
        codes: Vec<u8>,
    },
    UnsubAck(u16),
    PingResp,
    /// Anything else: the first byte of the fixed header and the rest of the packet.
    Other(u8, Vec<u8>),
}

/// A PUBLISH as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// The packet identifier (QoS 1 and 2 only).
    pub id: u16,
}

/// What a read found instead of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Nothing within the time given; the connection is still open.
    Timeout,
    /// The broker closed the connection (end of stream or reset).
    Closed,
}

/// A last will.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A CONNECT's fields. [`Connect::new`] is MQTT 3.1.1, clean session, keep-alive 30 s.
#[derive(Debug, Clone)]
pub struct Connect {
    pub protocol_name: &'static str,
    pub level: u8,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
}

impl Connect {
    pub fn new(client_id: &str) -> Self {
        Connect {
            protocol_name: "MQTT",
            level: 4,
            client_id: client_id.into(),
            clean: true,
            keep_alive: 30,
            will: None,
        }
    }

    pub fn clean(mut self, clean: bool) -> Self {
        self.clean = clean;
        self
    }

    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    pub fn will(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_str(&mut body, self.protocol_name);
        body.push(self.level);
        let mut flags = u8::from(self.clean) << 1;
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3) | (u8::from(w.retain) << 5);
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        put_str(&mut body, &self.client_id);
        if let Some(w) = &self.will {
            put_str(&mut body, &w.topic);
            put_bytes(&mut body, &w.payload);
        }
        frame(0x10, &body)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// A whole packet: the first header byte, the remaining length, the body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A PUBLISH packet.
pub fn publish(topic: &str, payload: &[u8], qos: u8, retain: bool, id: u16) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// A SUBSCRIBE packet: each filter with its requested QoS.
pub fn subscribe(id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for (f, qos) in filters {
        put_str(&mut body, f);
        body.push(*qos);
    }
    frame(0x82, &body)
}

/// An UNSUBSCRIBE packet.
pub fn unsubscribe(id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for f in filters {
        put_str(&mut body, f);
    }
    frame(0xA2, &body)
}

/// An acknowledgement (PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70) of packet `id`.
pub fn ack(first: u8, id: u16) -> Vec<u8> {
    frame(first, &id.to_be_bytes())
}

pub const PINGREQ: [u8; 2] = [0xC0, 0];
pub const DISCONNECT: [u8; 2] = [0xE0, 0];

/// One connection to a broker.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u16,
    /// Publishes read while waiting for something else, oldest first.
    pending: Vec<Publish>,
}

impl Client {
    /// A TCP connection, nothing sent yet.
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            next_id: 0,
            pending: Vec::new(),
        })
    }

    /// Connects and expects CONNACK 0 (accepted): the client and the session-present flag.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> Result<(Self, bool)> {
        let mut c = Client::open(addr).await?;
        c.send(&connect.encode()).await?;
        match c.recv(WAIT).await? {
            Packet::ConnAck {
                session_present,
                code: 0,
            } => Ok((c, session_present)),
            p => bail!("CONNECT of {:?}: {p:?}, not CONNACK 0", connect.client_id),
        }
    }

    /// [`Client::connect`] with a clean session and keep-alive 30 s.
    pub async fn new(addr: SocketAddr, client_id: &str) -> Result<Self> {
        Ok(Client::connect(addr, Connect::new(client_id)).await?.0)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// A fresh packet identifier (1, 2, ...).
    pub fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// The next packet, or why there is none within `wait`.
    pub async fn read(&mut self, wait: Duration) -> Result<Packet, Silence> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = self.parse() {
                return Ok(p);
            }
            read_more(&mut self.stream, deadline, &mut self.buf).await?;
        }
    }

    /// The next packet, as an error if there is none within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Result<Packet> {
        if !self.pending.is_empty() {
            return Ok(Packet::Publish(self.pending.remove(0)));
        }
        self.read(wait)
            .await
            .map_err(|s| anyhow!("no packet within {wait:?}: {s:?}"))
    }

    /// A whole packet from the buffer, if there is one.
    fn parse(&mut self) -> Option<Packet> {
        let (mut len, mut shift, mut at) = (0usize, 0, 1);
        loop {
            let b = *self.buf.get(at)?;
            len |= usize::from(b & 0x7F) << shift;
            shift += 7;
            at += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if self.buf.len() < at + len {
            return None;
        }
        let first = self.buf[0];
        let body: Vec<u8> = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        let id = || u16::from_be_bytes([body[0], body[1]]);
        Some(match (first >> 4, body.len()) {
            (2, 2) => Packet::ConnAck {
                session_present: body[0] & 1 == 1,
                code: body[1],
            },
            (3, _) => {
                let qos = (first >> 1) & 3;
                let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let topic = String::from_utf8_lossy(&body[2..2 + tlen]).into_owned();
                let mut at = 2 + tlen;
                let mut pid = 0;
                if qos > 0 {
                    pid = u16::from_be_bytes([body[at], body[at + 1]]);
                    at += 2;
                }
                Packet::Publish(Publish {
                    topic,
                    payload: body[at..].to_vec(),
                    qos,
                    retain: first & 1 == 1,
                    dup: first & 8 == 8,
                    id: pid,
                })
            }
            (4, 2) => Packet::PubAck(id()),
            (5, 2) => Packet::PubRec(id()),
            (6, 2) if first == 0x62 => Packet::PubRel(id()),
            (7, 2) => Packet::PubComp(id()),
            (9, 3..) => Packet::SubAck {
                id: id(),
                codes: body[2..].to_vec(),
            },
            (11, 2) => Packet::UnsubAck(id()),
            (13, 0) => Packet::PingResp,
            _ => Packet::Other(first, body),
        })
    }

    /// Reads until a packet `pick` takes, keeping publishes that come meanwhile for
    /// [`Client::next_publish`]; any other packet is an error.
    async fn until<T>(&mut self, what: &str, pick: impl Fn(&Packet) -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self
                .read(left)
                .await
                .map_err(|s| anyhow!("no {what} within {WAIT:?}: {s:?}"))?;
            if let Some(t) = pick(&p) {
                return Ok(t);
            }
            match p {
                Packet::Publish(p) => self.pending.push(p),
                p => bail!("{p:?} while waiting for {what}"),
            }
        }
    }

    /// Subscribes and returns the SUBACK's return codes.
    pub async fn subscribe(&mut self, filters: &[(&str, u8)]) -> Result<Vec<u8>> {
        let id = self.id();
        self.send(&subscribe(id, filters)).await?;
        self.until("SUBACK", |p| match p {
            Packet::SubAck { id: i, codes } if *i == id => Some(codes.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes and expects every filter granted at the QoS it asked.
    pub async fn sub(&mut self, filter: &str, qos: u8) -> Result<()> {
        let codes = self.subscribe(&[(filter, qos)]).await?;
        ensure!(codes == [qos], "SUBACK {codes:?} for {filter} at QoS {qos}");
        Ok(())
    }

    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Result<()> {
        let id = self.id();
        self.send(&unsubscribe(id, filters)).await?;
        self.until("UNSUBACK", |p| (*p == Packet::UnsubAck(id)).then_some(()))
            .await
    }

    /// Publishes and completes the QoS flow as the sender (PUBACK; PUBREC, PUBREL, PUBCOMP).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
    ) -> Result<()> {
        let id = self.id();
        self.send(&publish(topic, payload, qos, retain, id)).await?;
        match qos {
            0 => Ok(()),
            1 => {
                self.until("PUBACK", |p| (*p == Packet::PubAck(id)).then_some(()))
                    .await
            }
            _ => {
                self.until("PUBREC", |p| (*p == Packet::PubRec(id)).then_some(()))
                    .await?;
                self.send(&ack(0x62, id)).await?;
                self.until("PUBCOMP", |p| (*p == Packet::PubComp(id)).then_some(()))
                    .await
            }
        }
    }

    /// The next PUBLISH, not acknowledged (see [`Client::ack`]). Any other packet is an error.
    pub async fn next_publish(&mut self) -> Result<Publish> {
        if !self.pending.is_empty() {
            return Ok(self.pending.remove(0));
        }
        match self.recv(WAIT).await? {
            Packet::Publish(p) => Ok(p),
            p => bail!("{p:?}, not a PUBLISH"),
        }
    }

    /// The next PUBLISH, acknowledged as a receiver must at its QoS.
    pub async fn receive(&mut self) -> Result<Publish> {
        let p = self.next_publish().await?;
        self.ack(&p).await?;
        Ok(p)
    }

    /// Acknowledges a received publish: PUBACK, or PUBREC then PUBREL then PUBCOMP.
    pub async fn ack(&mut self, p: &Publish) -> Result<()> {
        match p.qos {
            0 => Ok(()),
            1 => self.send(&ack(0x40, p.id)).await,
            _ => {
                self.send(&ack(0x50, p.id)).await?;
                let id = p.id;
                self.until("PUBREL", |q| (*q == Packet::PubRel(id)).then_some(()))
                    .await?;
                self.send(&ack(0x70, id)).await
            }
        }
    }

    /// Every publish that comes until nothing has for [`QUIET`], each acknowledged; any other
    /// packet is an error.
    pub async fn until_quiet(&mut self) -> Result<Vec<Publish>> {
        let mut got = std::mem::take(&mut self.pending);
        loop {
            match self.read(QUIET).await {
                Ok(Packet::Publish(p)) => {
                    self.ack(&p).await?;
                    got.push(p);
                }
                Ok(p) => bail!("unexpected {p:?}"),
                Err(_) => return Ok(got),
            }
        }
    }

    /// Expects no packet for [`QUIET`] (and the connection still open).
    pub async fn nothing(&mut self) -> Result<()> {
        if let Some(p) = self.pending.first() {
            bail!("unexpected {p:?}");
        }
        match self.read(QUIET).await {
            Err(Silence::Timeout) => Ok(()),
            Err(Silence::Closed) => bail!("closed by the broker"),
            Ok(p) => bail!("unexpected {p:?}"),
        }
    }

    /// Waits up to `wait` for the broker to close the connection, skipping packets; how long
    /// it took.
    pub async fn closed_within(&mut self, wait: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let left = wait.saturating_sub(start.elapsed());
            match self.read(left).await {
                Err(Silence::Closed) => return Ok(start.elapsed()),
                Err(Silence::Timeout) => bail!("still open after {wait:?}"),
                Ok(_) => {}
            }
        }
    }

    /// A PINGREQ answered by a PINGRESP.
    pub async fn ping(&mut self) -> Result<()> {
        self.send(&PINGREQ).await?;
        self.until("PINGRESP", |p| (*p == Packet::PingResp).then_some(()))
            .await
    }

    /// Sends DISCONNECT and waits for the broker to close.
    pub async fn disconnect(mut self) -> Result<()> {
        self.send(&DISCONNECT).await?;
        self.closed_within(WAIT).await.map(drop)
    }
}
