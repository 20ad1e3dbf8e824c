//! The MQTT gate: Ember's own listener in front of the embedded broker whenever MQTT
//! authentication is configured.
//!
//! rumqttd 0.20 can authenticate a CONNECT (its auth handler) but has no topic ACLs, and the
//! collector's in-process link does not say which client published a message: a client with
//! host A's password could publish a well-formed sample of host B on B's topic. So the gate
//! holds each client's connection itself:
//!
//! 1. TLS (rustls), with an optional client certificate whose common name is the host id;
//! 2. the CONNECT: anonymous clients and wrong passwords are refused; the client id the broker
//!    sees is fixed by the account, and the last will must be the agent's own status topic;
//! 3. every PUBLISH and SUBSCRIBE is checked against the account ([`crate::access`]) and the
//!    client's rate: what is not allowed is dropped (a QoS 1 publish is still acknowledged, so
//!    the client does not resend it) and counted;
//! 4. everything else is copied, frame by frame, to rumqttd on a loopback port that only the
//!    gate can use (its password is a random secret held in memory).
//!
//! The decisions are in [`crate::access`]; this module only moves bytes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, PubAck, Publish, Subscribe,
};
use rumqttc::mqttbytes::{check, FixedHeader, PacketType, Protocol, QoS};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::access::{self, Identity, Role, TokenBucket};
use crate::config::User;

/// How long a client has for the TLS handshake and its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Password checks at once: argon2 is slow on purpose, so a burst of CONNECTs with wrong
/// passwords must not take every core.
const VERIFY_AT_ONCE: usize = 2;

/// What the gate needs.
pub struct GateSettings {
    /// rumqttd's loopback listener.
    pub upstream: SocketAddr,
    /// The password rumqttd accepts, known only to this process.
    pub secret: String,
    /// Accounts.
    pub users: BTreeMap<String, User>,
    /// TLS, if on.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Refuse clients without a certificate.
    pub require_client_cert: bool,
    /// Largest packet a client may send (remaining length), bytes.
    pub max_packet: usize,
    /// Connections at once, all clients.
    pub max_connections: usize,
    /// Connections at once per account.
    pub max_connections_per_client: usize,
    /// Publishes a second per connection, on average.
    pub rate: u32,
    /// Publishes at once above the average.
    pub burst: u32,
}

/// What the gate counts; shown in `/metrics` and `/api/health`.
#[derive(Debug, Default)]
pub struct GateCounters {
    open: AtomicU64,
    accepted: AtomicU64,
    refused_auth: AtomicU64,
    refused_limit: AtomicU64,
    refused_tls: AtomicU64,
    refused_protocol: AtomicU64,
    spoofed: AtomicU64,
    refused_subscriptions: AtomicU64,
    rate_dropped: AtomicU64,
    rate_delayed: AtomicU64,
    oversized: AtomicU64,
}

/// A snapshot of [`GateCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GateStats {
    /// Client connections open now.
    pub open: u64,
    /// Clients authenticated since start.
    pub accepted: u64,
    /// CONNECTs refused: anonymous, unknown account, wrong password, no certificate.
    pub refused_auth: u64,
    /// Connections refused at a connection limit.
    pub refused_limit: u64,
    /// TLS handshakes that failed.
    pub refused_tls: u64,
    /// Connections closed for a protocol error (not MQTT 3.1.1, no CONNECT in time, bad
    /// packet, a last will or client id not the account's).
    pub refused_protocol: u64,
    /// Publishes dropped because the topic is not the account's (spoofing, or a command).
    pub spoofed: u64,
    /// Subscriptions refused (the connection is closed).
    pub refused_subscriptions: u64,
    /// QoS 0 publishes dropped above the client's rate.
    pub rate_dropped: u64,
    /// QoS 1 and 2 publishes held back (not dropped) above the client's rate.
    pub rate_delayed: u64,
    /// Connections closed for a packet above max-payload.
    pub oversized: u64,
}

impl GateCounters {
    /// The counters now.
    pub fn stats(&self) -> GateStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GateStats {
            open: g(&self.open),
            accepted: g(&self.accepted),
            refused_auth: g(&self.refused_auth),
            refused_limit: g(&self.refused_limit),
            refused_tls: g(&self.refused_tls),
            refused_protocol: g(&self.refused_protocol),
            spoofed: g(&self.spoofed),
            refused_subscriptions: g(&self.refused_subscriptions),
            rate_dropped: g(&self.rate_dropped),
            rate_delayed: g(&self.rate_delayed),
            oversized: g(&self.oversized),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

struct Gate {
    settings: GateSettings,
    counters: Arc<GateCounters>,
    per_client: Mutex<HashMap<String, usize>>,
    verifying: tokio::sync::Semaphore,
}

/// Serves `listener` on its own thread until the process ends; returns the counters.
pub fn spawn(
    listener: std::net::TcpListener,
    settings: GateSettings,
) -> std::io::Result<Arc<GateCounters>> {
    listener.set_nonblocking(true)?;
    let counters = Arc::new(GateCounters::default());
    let gate = Arc::new(Gate {
        settings,
        counters: counters.clone(),
        per_client: Mutex::new(HashMap::new()),
        verifying: tokio::sync::Semaphore::new(VERIFY_AT_ONCE),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("mqtt-gate".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => accept(l, gate).await,
                    Err(e) => tracing::error!("the MQTT gate cannot listen: {e}"),
                }
            })
        })?;
    Ok(counters)
}

async fn accept(listener: TcpListener, gate: Arc<Gate>) {
    let mut n: u64 = 0;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!("MQTT accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        n += 1;
        let open = gate.counters.open.load(Ordering::Relaxed);
        if open >= gate.settings.max_connections as u64 {
            bump(&gate.counters.refused_limit);
            continue;
        }
        gate.counters.open.fetch_add(1, Ordering::Relaxed);
        let gate = gate.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(&gate, tcp, n).await {
                tracing::debug!(%peer, "MQTT client closed: {e}");
            }
            gate.counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("no CONNECT within {CONNECT_TIMEOUT:?}")]
    Timeout,
    #[error("packet of {0} bytes is above the limit")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("refused: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("subscription to {0:?} refused")]
    Subscription(String),
    #[error("QoS 2 publish to {0:?} refused")]
    Qos2(String),
    #[error("the broker closed the connection")]
    Upstream,
}

/// Any stream a client may come over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connection(gate: &Gate, tcp: TcpStream, n: u64) -> Result<(), Closed> {
    let _ = tcp.set_nodelay(true);
    let counters = &gate.counters;
    let (stream, cert_name): (Box<dyn Io>, Option<String>) = match &gate.settings.tls {
        Some(acceptor) => {
            let tls = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    bump(&counters.refused_tls);
                    return Err(Closed::Tls(e));
                }
                Err(_) => {
                    bump(&counters.refused_tls);
                    return Err(Closed::Timeout);
                }
            };
            let name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::pki::common_name(c.as_ref()));
            (Box::new(tls), name)
        }
        None => (Box::new(tcp), None),
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max = gate.settings.max_packet;
    let mut buf = BytesMut::with_capacity(4096);
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
    let connect = match header.packet_type() {
        Ok(PacketType::Connect) => Connect::read(header, frame).map_err(|e| {
            bump(&counters.refused_protocol);
            Closed::Malformed(e.to_string())
        })?,
        _ => {
            bump(&counters.refused_protocol);
            return Err(Closed::Malformed(
                "the first packet is not a CONNECT".into(),
            ));
        }
    };
    if connect.protocol != Protocol::V4 {
        bump(&counters.refused_protocol);
        return refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
    }
    let identity = match authenticate(gate, &connect, cert_name).await {
        Ok(i) => i,
        Err(code) => {
            bump(&counters.refused_auth);
            return refuse(&mut wr, code).await;
        }
    };
    if let Some(will) = &connect.last_will {
        if !identity.may_publish(&will.topic) {
            bump(&counters.spoofed);
            return refuse(&mut wr, ConnectReturnCode::NotAuthorized).await;
        }
    }
    let Some(client_id) = identity.broker_client_id(&connect.client_id, n) else {
        bump(&counters.refused_protocol);
        return refuse(&mut wr, ConnectReturnCode::BadClientId).await;
    };
    let Some(_slot) = Slot::take(gate, &identity.name) else {
        bump(&counters.refused_limit);
        return refuse(&mut wr, ConnectReturnCode::ServiceUnavailable).await;
    };
    bump(&counters.accepted);

    let upstream = TcpStream::connect(gate.settings.upstream).await?;
    let _ = upstream.set_nodelay(true);
    let (mut up_rd, mut up_wr) = upstream.into_split();
    let forwarded = Connect {
        client_id,
        login: Some(Login::new(
            identity.name.clone(),
            gate.settings.secret.clone(),
        )),
        ..connect
    };
    let mut out = BytesMut::new();
    forwarded
        .write(&mut out)
        .map_err(|e| Closed::Malformed(e.to_string()))?;
    up_wr.write_all(&out).await?;

    // Both directions write to the client: the broker's packets and the gate's own
    // acknowledgements of dropped publishes. Whole frames, under one lock.
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let down = {
        let wr = wr.clone();
        async move {
            let mut buf = BytesMut::with_capacity(4096);
            // The broker's packets are bounded by its own max-payload.
            while let Some((_, frame)) = read_frame(&mut up_rd, &mut buf, usize::MAX >> 4).await? {
                let mut w = wr.lock().await;
                w.write_all(&frame).await?;
                if buf.is_empty() {
                    w.flush().await?;
                }
            }
            Err::<(), Closed>(Closed::Upstream)
        }
    };
    let up = async move {
        let mut bucket = TokenBucket::new(gate.settings.rate, gate.settings.burst, Instant::now());
        loop {
            let (header, frame) = match read_frame(&mut rd, &mut buf, max).await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if matches!(e, Closed::TooLarge(_)) {
                        bump(&counters.oversized);
                    }
                    return Err(e);
                }
            };
            match header.packet_type() {
                Ok(PacketType::Publish) => {
                    let publish = Publish::read(header, frame.clone())
                        .map_err(|e| Closed::Malformed(e.to_string()))?;
                    let mut allowed = identity.may_publish(&publish.topic);
                    if !allowed {
                        bump(&counters.spoofed);
                        tracing::debug!(account = %identity.name, topic = %publish.topic, "publish dropped: not the account's topic");
                    } else {
                        while let Err(wait) = bucket.take(Instant::now()) {
                            if publish.qos == QoS::AtMostOnce {
                                bump(&counters.rate_dropped);
                                allowed = false;
                                break;
                            }
                            bump(&counters.rate_delayed);
                            tokio::time::sleep(wait).await;
                        }
                    }
                    if allowed {
                        up_wr.write_all(&frame).await?;
                        continue;
                    }
                    match publish.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            let mut out = BytesMut::new();
                            let _ = PubAck::new(publish.pkid).write(&mut out);
                            let mut w = wr.lock().await;
                            w.write_all(&out).await?;
                            w.flush().await?;
                        }
                        // Acknowledging QoS 2 needs the PUBREL exchange; nothing of Ember's uses
                        // it, so a refused one closes the connection.
                        QoS::ExactlyOnce => return Err(Closed::Qos2(publish.topic)),
                    }
                }
                Ok(PacketType::Subscribe) => {
                    let subscribe = Subscribe::read(header, frame.clone())
                        .map_err(|e| Closed::Malformed(e.to_string()))?;
                    if let Some(f) = subscribe
                        .filters
                        .iter()
                        .find(|f| !identity.may_subscribe(&f.path))
                    {
                        bump(&counters.refused_subscriptions);
                        return Err(Closed::Subscription(f.path.clone()));
                    }
                    up_wr.write_all(&frame).await?;
                }
                Ok(PacketType::Connect) => {
                    return Err(Closed::Malformed("a second CONNECT".into()));
                }
                Ok(_) => up_wr.write_all(&frame).await?,
                Err(e) => return Err(Closed::Malformed(e.to_string())),
            }
        }
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

/// Answers a CONNECT with a refusal.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: ConnectReturnCode) -> Result<(), Closed> {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(code, false).write(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    Err(Closed::Refused(code))
}

/// Checks the CONNECT's credentials or the client certificate.
async fn authenticate(
    gate: &Gate,
    connect: &Connect,
    cert_name: Option<String>,
) -> Result<Identity, ConnectReturnCode> {
    let users = &gate.settings.users;
    if let Some(name) = cert_name {
        // rustls verified the certificate against the client CA: its common name is the host.
        if access::check_name(&name).is_err() {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        if connect.login.as_ref().is_some_and(|l| l.username != name) {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        let role = users.get(&name).map(|u| u.role).unwrap_or(Role::Agent);
        return Ok(Identity { name, role });
    }
    if gate.settings.require_client_cert {
        return Err(ConnectReturnCode::NotAuthorized);
    }
    let Some(login) = &connect.login else {
        return Err(ConnectReturnCode::NotAuthorized);
    };
    let Some(hash) = users
        .get(&login.username)
        .and_then(|u| u.password_hash.clone())
    else {
        return Err(ConnectReturnCode::BadUserNamePassword);
    };
    let ok = {
        let _permit = gate
            .verifying
            .acquire()
            .await
            .map_err(|_| ConnectReturnCode::ServiceUnavailable)?;
        let password = login.password.clone();
        tokio::task::spawn_blocking(move || access::verify_password(&hash, &password))
            .await
            .unwrap_or(false)
    };
    if !ok {
        return Err(ConnectReturnCode::BadUserNamePassword);
    }
    let role = users[&login.username].role;
    Ok(Identity {
        name: login.username.clone(),
        role,
    })
}

/// One of an account's connections; given back when dropped.
struct Slot<'a> {
    gate: &'a Gate,
    name: String,
}

impl<'a> Slot<'a> {
    fn take(gate: &'a Gate, name: &str) -> Option<Self> {
        let mut map = gate.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(name.to_string()).or_insert(0);
        if *n >= gate.settings.max_connections_per_client {
            return None;
        }
        *n += 1;
        Some(Slot {
            gate,
            name: name.to_string(),
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut map = self
            .gate
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.name);
            }
        }
    }
}

/// Reads one whole MQTT frame; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(FixedHeader, Bytes)>, Closed> {
    loop {
        match check(buf.iter(), max) {
            Ok(h) => return Ok(Some((h, buf.split_to(h.frame_length()).freeze()))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
                return Err(Closed::TooLarge(n))
            }
            Err(e) => return Err(Closed::Malformed(e.to_string())),
        }
        buf.reserve(4096);
        if r.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Closed::Malformed("the stream ended inside a packet".into()))
            };
        }
    }
}
