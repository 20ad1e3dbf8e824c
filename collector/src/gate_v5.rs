//! MQTT 5 at the gate (a child of `gate.rs`, whose bookkeeping it shares): the CONNECT read and
//! checked as MQTT 5, refusals with MQTT 5 reason codes, the CONNACK rumqttd sends rewritten to
//! say what the gate and rumqttd really do, and a frame-by-frame relay in both modes (open and
//! with accounts) that refuses what rumqttd cannot do safely.
//!
//! rumqttd's v5 server takes the connection (`broker::connect_v5`); what it keeps per connection
//! is bounded here: client topic aliases are refused (CONNACK's topic alias maximum is 0: rumqttd
//! would keep up to 4,096 topics per connection), rumqttd is not allowed to alias topics towards
//! the client (the CONNECT's topic alias maximum is not passed on), and no packet above the
//! gate's maximum goes either way. `docs/mqtt.md` ("MQTT 5.0") lists what is and is not served.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5::{
    self as m5, ConnAck, ConnAckProperties, ConnectReturnCode as Code, PacketType,
};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::{
    bump, check_login, drain, id_allowed, read_frame, take_account, Accounts, Closed, Denied, Gate,
};
use crate::access::{Identity, TokenBucket};
use crate::ingest::from_agents;
use crate::subscriptions::{Control, Subscriptions};

// Session expiry on rumqttd.
#[path = "gate_v5_expiry.rs"]
mod expiry;

/// The receive maximum the CONNACK states: rumqttd reads at most this many packets of a
/// connection at once (`max_inflight_count`, `broker.rs`), and the gate holds back the rest.
pub const RECEIVE_MAXIMUM: u16 = 100;

/// MQTT 5 reason codes the gate sends (MQTT 5.0, 2.4).
pub mod reason {
    /// Unspecified error.
    pub const UNSPECIFIED: u8 = 0x80;
    /// Malformed packet.
    pub const MALFORMED: u8 = 0x81;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// Client identifier not valid.
    pub const BAD_CLIENT_ID: u8 = 0x85;
    /// Bad user name or password.
    pub const BAD_LOGIN: u8 = 0x86;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// Server busy.
    pub const SERVER_BUSY: u8 = 0x89;
    /// Bad authentication method.
    pub const BAD_AUTH_METHOD: u8 = 0x8C;
    /// Topic name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// Topic alias invalid.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// Packet too large.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Subscription identifiers not supported.
    pub const SUBSCRIPTION_IDS_NOT_SUPPORTED: u8 = 0xA1;
}

/// An MQTT 5 client whose first frame, `frame`, is a CONNECT of level 5: checked, handed to
/// rumqttd's v5 server and relayed until either side closes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn client<R, W>(
    gate: &Arc<Gate>,
    mut rd: R,
    mut wr: W,
    frame: Bytes,
    mut buf: BytesMut,
    cert_name: Option<String>,
    peer: IpAddr,
    n: u64,
) -> Result<(), Closed>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let counters = &gate.counters;
    let (connect, will, login) = match m5::check(frame.iter(), None)
        .map_err(|e| e.to_string())
        .and_then(|h| m5::Connect::read(h, frame.clone()).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            bump(&counters.refused_protocol);
            refuse(&mut wr, reason::MALFORMED).await?;
            return Err(Closed::Malformed(e));
        }
    };
    drop(frame);
    let props = connect
        .properties
        .clone()
        .unwrap_or_else(m5::ConnectProperties::new);
    if props.authentication_method.is_some() {
        // Enhanced authentication (AUTH packets) is not served.
        bump(&counters.refused_auth);
        return refuse(&mut wr, reason::BAD_AUTH_METHOD).await;
    }
    // A login waiting for its password check holds a slot too: pending logins count toward
    // `max-connections`, as for 3.1.1.
    let Some(slot) = gate.admit() else {
        return refuse(&mut wr, reason::SERVER_BUSY).await;
    };
    let checked = match &gate.settings.accounts {
        Some(accounts) => {
            // `authenticate` reads the credentials of a 3.1.1 CONNECT; these are the same.
            let as_v4 = v4::Connect {
                protocol: rumqttc::mqttbytes::Protocol::V4,
                keep_alive: connect.keep_alive,
                client_id: connect.client_id.clone(),
                clean_session: connect.clean_start,
                last_will: None,
                login: login
                    .as_ref()
                    .map(|l| v4::Login::new(&l.username, &l.password)),
            };
            let checking = check_login(gate, accounts, &as_v4, cert_name, peer, &mut rd, &mut buf);
            let identity = match Box::pin(checking).await {
                Ok(i) => i,
                Err(Denied::Auth(code)) => return refuse(&mut wr, v5_code(code)).await,
                Err(Denied::Busy) => return refuse(&mut wr, reason::SERVER_BUSY).await,
                Err(Denied::Gone) => return Ok(()),
            };
            if let Some(will) = &will {
                let topic = String::from_utf8_lossy(&will.topic);
                if !identity.may_will(&topic, &accounts.reader_topics) {
                    bump(&counters.spoofed);
                    return refuse(&mut wr, reason::NOT_AUTHORIZED).await;
                }
            }
            Some((identity, accounts))
        }
        None => None,
    };
    let requested = &connect.client_id;
    let client_id = match &checked {
        Some((identity, _)) => identity.broker_client_id(requested, n),
        // An empty id gets one of the gate's (rumqttd would make one, but the gate keys its
        // sessions by the id).
        None if requested.is_empty() => Some(format!("v5-{n}")),
        None => id_allowed(requested.as_bytes()).then(|| requested.clone()),
    };
    let Some(client_id) = client_id else {
        bump(&counters.refused_id);
        return refuse(&mut wr, reason::BAD_CLIENT_ID).await;
    };
    let assigned = requested.is_empty().then(|| client_id.clone());
    let Ok(account) = take_account(gate, checked.as_ref().map(|(i, a)| (i, *a))) else {
        return refuse(&mut wr, reason::QUOTA_EXCEEDED).await;
    };

    let session = gate.take_session(&client_id).await;
    let kick = &session.session.kick;
    let session_expiry = props.session_expiry_interval.unwrap_or(0);
    if connect.clean_start && session_expiry > 0 {
        // A session started afresh and kept afterwards: rumqttd's old one for the id ends
        // first, then the client connects not clean (`gate_v5_expiry.rs`).
        expiry::purge(gate, &client_id).await?;
    }
    // Times the session's expiry once the connection has closed, however it ends.
    let _expiry = expiry::Expiries::begin(gate, &client_id, session_expiry);
    let upstream = crate::broker::connect_v5(&gate.settings.broker)?;
    let (mut up_rd, mut up_wr) = tokio::io::split(upstream);
    let client_max = props.max_packet_size;
    let receive_maximum = props.receive_maximum;
    let forwarded = m5::Connect {
        client_id,
        keep_alive: connect.keep_alive,
        // rumqttd keeps a session after the connection only with `clean_start` false; one
        // that expires at once (interval 0, the default) is not to be kept, and one started
        // afresh was purged above.
        clean_start: session_expiry == 0,
        properties: Some(m5::ConnectProperties {
            // rumqttd would alias topics towards the client, keeping up to this many of them.
            topic_alias_max: None,
            ..props
        }),
    };
    let mut out = BytesMut::new();
    forwarded
        .write(&will, &None, &mut out)
        .map_err(|e| Closed::Malformed(e.to_string()))?;
    drop((forwarded, will));
    up_wr.write_all(&out).await?;
    drop(out);

    // rumqttd's CONNACK, its properties replaced by what the gate serves.
    let mut down_buf = BytesMut::new();
    let (_, ack) = match read_frame(&mut up_rd, &mut down_buf, usize::MAX >> 4).await {
        Ok(Some(f)) => f,
        _ => return refuse(&mut wr, reason::UNSPECIFIED).await,
    };
    let Some(ack) = m5::check(ack.iter(), None)
        .ok()
        .and_then(|h| ConnAck::read(h, ack).ok())
    else {
        return refuse(&mut wr, reason::UNSPECIFIED).await;
    };
    let accepted = ack.code == Code::Success;
    let connack = ConnAck {
        properties: Some(connack_properties(gate.settings.max_packet, assigned)),
        ..ack
    };
    let mut out = BytesMut::new();
    connack
        .write(&mut out)
        .map_err(|e| Closed::Malformed(e.to_string()))?;
    wr.write_all(&out).await?;
    wr.flush().await?;
    drop(out);
    if !accepted {
        let _ = wr.shutdown().await;
        return Ok(());
    }
    let relay = Relay {
        gate,
        kick,
        accounts: checked.as_ref().map(|(i, a)| (i, *a)),
        client_max,
        quota: Quota::new(receive_maximum),
    };
    let result = Box::pin(relay.run(rd, wr, up_rd, up_wr, buf, down_buf)).await;
    drop(session);
    drop(account);
    drop(slot);
    result
}

/// What the CONNACK says the gate and rumqttd serve.
pub fn connack_properties(max_packet: usize, assigned: Option<String>) -> ConnAckProperties {
    ConnAckProperties {
        session_expiry_interval: None,
        receive_max: Some(RECEIVE_MAXIMUM),
        max_qos: None,
        retain_available: Some(1),
        // The gate refuses a remaining length above `max_packet`; a packet is at least two
        // bytes longer.
        max_packet_size: Some(u32::try_from(max_packet + 2).unwrap_or(u32::MAX)),
        assigned_client_identifier: assigned,
        topic_alias_max: Some(0),
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(1),
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

/// The MQTT 5 reason code for a 3.1.1 refusal of `authenticate`'s.
fn v5_code(code: v4::ConnectReturnCode) -> u8 {
    match code {
        v4::ConnectReturnCode::BadUserNamePassword => reason::BAD_LOGIN,
        v4::ConnectReturnCode::NotAuthorized => reason::NOT_AUTHORIZED,
        v4::ConnectReturnCode::ServiceUnavailable => reason::SERVER_BUSY,
        _ => reason::UNSPECIFIED,
    }
}

/// Answers a CONNECT with an MQTT 5 refusal (no session, no properties) and closes.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: u8) -> Result<(), Closed> {
    wr.write_all(&[0x20, 3, 0, code, 0]).await?;
    wr.flush().await?;
    let _ = wr.shutdown().await;
    Err(Closed::Refused5(code))
}

/// A DISCONNECT's reason code "disconnect with will message".
const DISCONNECT_WITH_WILL: u8 = 0x04;

/// A DISCONNECT with a reason code and no properties.
pub fn disconnect(code: u8) -> [u8; 4] {
    [0xe0, 2, code, 0]
}

/// The answer to a QoS 1 (PUBACK) or QoS 2 (PUBREC) publish the gate drops, with its reason:
/// with a reason of 0x80 or more the exchange ends there (MQTT 5.0, 4.3.3).
pub fn refused_ack(qos: QoS, pkid: u16, code: u8) -> Option<[u8; 6]> {
    let [hi, lo] = pkid.to_be_bytes();
    match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => Some([0x40, 4, hi, lo, code, 0]),
        QoS::ExactlyOnce => Some([0x50, 4, hi, lo, code, 0]),
    }
}

/// What to do with one frame from an MQTT 5 client.
#[derive(Debug, PartialEq, Eq)]
pub enum Step5 {
    /// Relay it; the bytes it adds to ingest's log.
    Forward(Bytes, u64),
    /// Relay it once the client's rate allows.
    Delay(Bytes, u64),
    /// Drop it and answer the client with these bytes (if any).
    Answer(Option<Vec<u8>>),
    /// Send the client a DISCONNECT with this reason code and close.
    Disconnect(u8, String),
    /// Close rumqttd's side without passing the frame on: a DISCONNECT asking for the will
    /// (reason 0x04), which rumqttd would delete at any DISCONNECT; closed so, it sends it.
    CloseWithWill,
}

/// The relay's decision on one frame, without I/O: `accounts` is who the client is (with
/// accounts), `bucket` its rate.
pub fn check(
    gate: &Gate,
    accounts: Option<(&Identity, &Accounts)>,
    bucket: &mut Option<TokenBucket>,
    frame: Bytes,
) -> Step5 {
    let counters = &gate.counters;
    let header = match m5::check(frame.iter(), None) {
        Ok(h) => h,
        Err(e) => return Step5::Disconnect(reason::MALFORMED, e.to_string()),
    };
    match header.packet_type() {
        Ok(PacketType::Publish) => {
            let publish = match m5::Publish::read(header, frame.clone()) {
                Ok(p) => p,
                Err(e) => return Step5::Disconnect(reason::MALFORMED, e.to_string()),
            };
            let props = publish.properties.as_ref();
            if props.is_some_and(|p| p.topic_alias.is_some()) {
                return Step5::Disconnect(
                    reason::TOPIC_ALIAS_INVALID,
                    "a topic alias (the maximum is 0)".into(),
                );
            }
            if props.is_some_and(|p| !p.subscription_identifiers.is_empty()) {
                return Step5::Disconnect(
                    reason::PROTOCOL_ERROR,
                    "a subscription identifier in a client's PUBLISH".into(),
                );
            }
            let Ok(topic) = std::str::from_utf8(&publish.topic) else {
                return Step5::Disconnect(reason::MALFORMED, "a topic not UTF-8".into());
            };
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Step5::Disconnect(
                    reason::TOPIC_NAME_INVALID,
                    format!("PUBLISH to {topic:?}"),
                );
            }
            if let Some((identity, accounts)) = accounts {
                if !identity.may_publish(topic, &accounts.reader_topics) {
                    bump(&counters.spoofed);
                    tracing::debug!(account = %identity.name, topic, "publish dropped: not the account's topic");
                    let ack = refused_ack(publish.qos, publish.pkid, reason::NOT_AUTHORIZED);
                    return Step5::Answer(ack.map(|a| a.to_vec()));
                }
            }
            let counted = if from_agents(topic.as_bytes()) {
                (4 + topic.len() + publish.payload.len()) as u64
            } else {
                0
            };
            match bucket.as_mut().map(|b| b.take(Instant::now())) {
                None | Some(Ok(())) => Step5::Forward(frame, counted),
                Some(Err(_)) if publish.qos == QoS::AtMostOnce => {
                    bump(&counters.rate_dropped);
                    Step5::Answer(None)
                }
                Some(Err(_)) => {
                    bump(&counters.rate_delayed);
                    Step5::Delay(frame, counted)
                }
            }
        }
        Ok(PacketType::Subscribe) => {
            let subscribe = match m5::Subscribe::read(header, frame.clone()) {
                Ok(s) => s,
                Err(e) => return Step5::Disconnect(reason::MALFORMED, e.to_string()),
            };
            if subscribe
                .properties
                .as_ref()
                .is_some_and(|p| p.id.is_some())
            {
                return Step5::Disconnect(
                    reason::SUBSCRIPTION_IDS_NOT_SUPPORTED,
                    "a subscription identifier".into(),
                );
            }
            let Some((identity, _)) = accounts else {
                return Step5::Forward(frame, 0);
            };
            let refused: Vec<bool> = subscribe
                .filters
                .iter()
                .map(|f| !identity.may_subscribe(&f.path))
                .collect();
            if !refused.contains(&true) {
                return Step5::Forward(frame, 0);
            }
            // None of the filters is subscribed: those not allowed are refused as such, the
            // others with "unspecified error" (the client may ask for them alone).
            bump(&counters.refused_subscriptions);
            let codes = refused.iter().map(|&r| {
                if r {
                    reason::NOT_AUTHORIZED
                } else {
                    reason::UNSPECIFIED
                }
            });
            Step5::Answer(Some(suback(subscribe.pkid, codes)))
        }
        Ok(PacketType::Disconnect) if frame.get(2) == Some(&DISCONNECT_WITH_WILL) => {
            Step5::CloseWithWill
        }
        Ok(PacketType::Connect) => {
            Step5::Disconnect(reason::PROTOCOL_ERROR, "a second CONNECT".into())
        }
        // Only a server sends these; rumqttd 0.20 panicked on some of them.
        Ok(
            PacketType::ConnAck | PacketType::SubAck | PacketType::UnsubAck | PacketType::PingResp,
        ) => Step5::Disconnect(
            reason::PROTOCOL_ERROR,
            format!(
                "a server's packet ({:?}) from a client",
                header.packet_type()
            ),
        ),
        Ok(_) => Step5::Forward(frame, 0),
        // AUTH (15): enhanced authentication is not served.
        Err(e) => Step5::Disconnect(reason::PROTOCOL_ERROR, e.to_string()),
    }
}

/// The cap on a connection's filters and their rate (`mqtt.max-subscriptions`,
/// [`crate::subscriptions`], as for 3.1.1, with accounts or without): waits out the rate for a
/// SUBSCRIBE or UNSUBSCRIBE, then counts its filters. `Some` is the SUBACK that refuses each
/// filter of a SUBSCRIBE that would take the connection above the cap ("quota exceeded"); it
/// is then not relayed.
async fn limit_filters(
    subs: &mut Option<Box<Subscriptions>>,
    cap: usize,
    frame: &Bytes,
) -> Option<Vec<u8>> {
    let header = m5::check(frame.iter(), None).ok()?;
    let control = match header.packet_type() {
        Ok(PacketType::Subscribe) => {
            let s = m5::Subscribe::read(header, frame.clone()).ok()?;
            Control::Subscribe(s.pkid, s.filters.into_iter().map(|f| f.path).collect())
        }
        Ok(PacketType::Unsubscribe) => {
            Control::Unsubscribe(m5::Unsubscribe::read(header, frame.clone()).ok()?.filters)
        }
        _ => return None,
    };
    let n = match &control {
        Control::Subscribe(_, f) | Control::Unsubscribe(f) => f.len(),
    };
    let subs = subs.get_or_insert_with(|| Box::new(Subscriptions::new(cap, Instant::now())));
    while let Err(wait) = subs.take(n, Instant::now()) {
        tokio::time::sleep(wait).await;
    }
    if subs.apply(&control) {
        return None;
    }
    let Control::Subscribe(pkid, filters) = control else {
        return None;
    };
    Some(suback(pkid, filters.iter().map(|_| reason::QUOTA_EXCEEDED)))
}

/// A SUBACK of these reason codes.
fn suback(pkid: u16, codes: impl ExactSizeIterator<Item = u8>) -> Vec<u8> {
    // Packet id, an empty property list, a code per filter: below 128 bytes for up to 124.
    let remaining = 3 + codes.len();
    let mut out = vec![0x90];
    let mut r = remaining;
    loop {
        let b = (r & 0x7f) as u8;
        r >>= 7;
        out.push(if r > 0 { b | 0x80 } else { b });
        if r == 0 {
            break;
        }
    }
    out.extend_from_slice(&pkid.to_be_bytes());
    out.push(0);
    out.extend(codes);
    out
}

/// The frame-by-frame relay of an accepted MQTT 5 connection.
struct Relay<'a> {
    gate: &'a Gate,
    kick: &'a Notify,
    accounts: Option<(&'a Identity, &'a Accounts)>,
    /// The largest packet the client takes (its CONNECT's maximum packet size).
    client_max: Option<u32>,
    /// The client's Receive Maximum, kept towards it.
    quota: Quota,
}

/// The QoS 1 and 2 PUBLISHes sent to a client and not yet acknowledged, against the client's
/// Receive Maximum (MQTT 5.0, 3.3.4): rumqttd sends up to 100 whatever the client said, so the
/// gate holds the next one back (rumqttd's side of the pipe then waits) until one is
/// acknowledged. Atomics: the connection's task must be `Send`.
#[derive(Debug)]
pub struct Quota {
    /// `None`: the client's maximum is at least rumqttd's own; nothing to keep.
    max: Option<u32>,
    used: std::sync::atomic::AtomicU32,
    freed: Notify,
    ended: std::sync::atomic::AtomicBool,
}

impl Quota {
    /// The quota for a CONNECT's Receive Maximum (absent: 65,535).
    pub fn new(receive_maximum: Option<u16>) -> Self {
        Quota {
            max: receive_maximum
                .filter(|m| *m < RECEIVE_MAXIMUM)
                .map(u32::from),
            used: Default::default(),
            freed: Notify::new(),
            ended: Default::default(),
        }
    }

    /// Waits for room for one more; `false` once the connection has ended.
    pub async fn take(&self) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        let Some(max) = self.max else {
            return true;
        };
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.ended.load(std::sync::atomic::Ordering::Acquire) {
                return false;
            }
            let taken = self
                .used
                .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |u| {
                    (u < max).then_some(u + 1)
                });
            if taken.is_ok() {
                return true;
            }
            freed.await;
        }
    }

    /// One was acknowledged.
    pub fn give(&self) {
        use std::sync::atomic::Ordering::AcqRel;
        let _ = self
            .used
            .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |u| {
                u.checked_sub(1)
            });
        self.freed.notify_one();
    }

    /// The connection has ended: nobody waits any more.
    pub fn end(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Release);
        self.freed.notify_waiters();
    }
}

/// Whether a client's frame ends a QoS 1 or 2 delivery to it: PUBACK, PUBCOMP, or a PUBREC
/// with a failure reason (MQTT 5.0, 4.9).
fn frees_quota(frame: &[u8]) -> bool {
    match frame.first().map(|b| b >> 4) {
        Some(4 | 7) => true,
        Some(5) => {
            frame.get(1).is_some_and(|l| *l >= 3) && frame.get(4).is_some_and(|r| *r >= 0x80)
        }
        _ => false,
    }
}

/// Whether a frame from rumqttd is a QoS 1 or 2 PUBLISH.
fn needs_ack(frame: &[u8]) -> bool {
    frame
        .first()
        .is_some_and(|b| b >> 4 == 3 && (b >> 1) & 3 != 0)
}

impl Relay<'_> {
    async fn run<R, W, BR, BW>(
        self,
        mut rd: R,
        wr: W,
        mut up_rd: BR,
        up_wr: BW,
        mut buf: BytesMut,
        mut down_buf: BytesMut,
    ) -> Result<(), Closed>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        BR: AsyncRead + Unpin,
        BW: AsyncWrite + Unpin,
    {
        let (gate, counters, flow) = (self.gate, &self.gate.counters, &self.gate.flow);
        let max = gate.settings.max_packet;
        // Both directions write to the client (and to rumqttd: the gate acknowledges for a
        // client what it cannot take): whole frames, under one lock each.
        let wr = tokio::sync::Mutex::new(wr);
        let up_wr = tokio::sync::Mutex::new(up_wr);
        let down = std::pin::pin!(async {
            while let Ok(Some((_, frame))) =
                read_frame(&mut up_rd, &mut down_buf, usize::MAX >> 4).await
            {
                if self.client_max.is_some_and(|m| frame.len() > m as usize) {
                    // Too large for the client: discarded as if delivered (MQTT 5.0, 3.1.2.11.4).
                    if let Some(ack) = delivered(&frame) {
                        if up_wr.lock().await.write_all(&ack).await.is_err() {
                            break;
                        }
                    }
                    continue;
                }
                if needs_ack(&frame) && !self.quota.take().await {
                    break;
                }
                let mut w = wr.lock().await;
                if w.write_all(&frame).await.is_err() {
                    break;
                }
                if down_buf.is_empty() && w.flush().await.is_err() {
                    break;
                }
            }
            let _ = wr.lock().await.shutdown().await;
        });
        let up = std::pin::pin!(async {
            let mut bucket = self
                .accounts
                .map(|(_, a)| TokenBucket::new(a.rate, a.burst, Instant::now()));
            let mut subs = None;
            let result = loop {
                let next = tokio::select! {
                    f = read_frame(&mut rd, &mut buf, max) => f,
                    // Taken over: end as if the client had closed.
                    () = self.kick.notified() => Ok(None),
                };
                let frame = match next {
                    Ok(Some((_, f))) => f,
                    Ok(None) => break Ok(()),
                    Err(e) => {
                        let code = match &e {
                            Closed::TooLarge(_) => {
                                bump(&counters.oversized);
                                Some(reason::PACKET_TOO_LARGE)
                            }
                            Closed::Malformed(_) => Some(reason::MALFORMED),
                            _ => None,
                        };
                        if let Some(code) = code {
                            let _ = wr.lock().await.write_all(&disconnect(code)).await;
                        }
                        break Err(e);
                    }
                };
                match check(gate, self.accounts, &mut bucket, frame) {
                    Step5::Forward(frame, counted) => {
                        let cap = gate.settings.max_subscriptions;
                        if let Some(refusal) = limit_filters(&mut subs, cap, &frame).await {
                            bump(&counters.refused_subscriptions);
                            let mut w = wr.lock().await;
                            w.write_all(&refusal).await?;
                            w.flush().await?;
                            continue;
                        }
                        if frees_quota(&frame) {
                            self.quota.give();
                        }
                        flow.relay(counted).await;
                        up_wr.lock().await.write_all(&frame).await?;
                    }
                    Step5::Delay(frame, counted) => {
                        if let Some(bucket) = bucket.as_mut() {
                            while let Err(wait) = bucket.take(Instant::now()) {
                                tokio::time::sleep(wait).await;
                            }
                        }
                        flow.relay(counted).await;
                        up_wr.lock().await.write_all(&frame).await?;
                    }
                    Step5::Answer(None) => {}
                    Step5::Answer(Some(bytes)) => {
                        let mut w = wr.lock().await;
                        w.write_all(&bytes).await?;
                        w.flush().await?;
                    }
                    Step5::CloseWithWill => break Ok(()),
                    Step5::Disconnect(code, why) => {
                        bump(&counters.refused_protocol);
                        let mut w = wr.lock().await;
                        let _ = w.write_all(&disconnect(code)).await;
                        let _ = w.flush().await;
                        break Err(Closed::Malformed(why));
                    }
                }
            };
            let _ = up_wr.lock().await.shutdown().await;
            self.quota.end();
            result
        });
        drain(up, down).await
    }
}

/// For a PUBLISH from rumqttd the client cannot take: the acknowledgement that completes it at
/// rumqttd as if the client had (QoS 1: PUBACK; QoS 2: PUBREC; QoS 0: none).
fn delivered(frame: &[u8]) -> Option<[u8; 4]> {
    if frame.first()? >> 4 != 3 {
        return None;
    }
    let qos = (frame[0] >> 1) & 3;
    if qos == 0 {
        return None;
    }
    let mut at = 1;
    while frame.get(at)? & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    let topic = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let id = at + 2 + topic;
    let (hi, lo) = (*frame.get(id)?, *frame.get(id + 1)?);
    Some([if qos == 1 { 0x40 } else { 0x50 }, 2, hi, lo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Flow, Settings};
    use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties, SubscribeProperties};

    fn gate(accounts: Option<Accounts>) -> Arc<Gate> {
        let settings = Settings {
            broker: crate::broker::idle_handoff(),
            max_connections: 4,
            max_packet: 4096,
            max_subscriptions: 100,
            tls: None,
            accounts,
        };
        Gate::new(settings, Flow::new(1 << 20))
    }

    fn publish(topic: &str, qos: QoS, props: Option<PublishProperties>) -> Bytes {
        let mut p = m5::Publish::new(topic, qos, vec![1, 2, 3], props);
        p.pkid = if qos == QoS::AtMostOnce { 0 } else { 7 };
        let mut out = BytesMut::new();
        p.write(&mut out).unwrap();
        out.freeze()
    }

    fn subscribe(filters: &[&str], props: Option<SubscribeProperties>) -> Bytes {
        let filters = filters.iter().map(|f| Filter::new(*f, QoS::AtLeastOnce));
        let mut s = m5::Subscribe::new_many(filters, props);
        s.pkid = 9;
        let mut out = BytesMut::new();
        s.write(&mut out).unwrap();
        out.freeze()
    }

    fn code(step: Step5) -> u8 {
        match step {
            Step5::Disconnect(code, _) => code,
            other => panic!("not a DISCONNECT: {other:?}"),
        }
    }

    /// What rumqttd cannot do safely, or a client must not send, ends the connection with the
    /// reason; the rest goes through, agents' publishes counted for ingest's flow.
    #[test]
    fn open_mode_refuses_what_rumqttd_cannot_do() {
        let gate = gate(None);
        let mut none = None;
        let mut check = |frame| check(&gate, None, &mut none, frame);
        let alias = PublishProperties {
            topic_alias: Some(1),
            ..Default::default()
        };
        assert_eq!(
            code(check(publish("a/b", QoS::AtMostOnce, Some(alias)))),
            reason::TOPIC_ALIAS_INVALID
        );
        let sub_id = PublishProperties {
            subscription_identifiers: vec![3],
            ..Default::default()
        };
        assert_eq!(
            code(check(publish("a/b", QoS::AtMostOnce, Some(sub_id)))),
            reason::PROTOCOL_ERROR
        );
        for topic in ["a/#", "+/b"] {
            assert_eq!(
                code(check(publish(topic, QoS::AtLeastOnce, None))),
                reason::TOPIC_NAME_INVALID
            );
        }
        let id = SubscribeProperties {
            id: Some(5),
            user_properties: Vec::new(),
        };
        assert_eq!(
            code(check(subscribe(&["a/#"], Some(id)))),
            reason::SUBSCRIPTION_IDS_NOT_SUPPORTED
        );
        // Packets only a server sends (rumqttd 0.20 panicked on two of them), a second
        // CONNECT, AUTH, garbage.
        for frame in [
            &[0x20u8, 3, 0, 0, 0][..],
            &[0x90, 4, 0, 1, 0, 0],
            &[0xb0, 3, 0, 1, 0],
            &[0xd0, 0],
            &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0],
            &[0xf0, 2, 0x18, 0],
        ] {
            let step = check(Bytes::copy_from_slice(frame));
            assert!(matches!(step, Step5::Disconnect(..)), "{frame:?}: {step:?}");
        }
        // Allowed: publishes (counted on agents' topics), subscriptions, the rest.
        let sample = publish("ember/v1/pi/sample", QoS::AtLeastOnce, None);
        assert_eq!(
            check(sample.clone()),
            Step5::Forward(sample, (4 + 18 + 3) as u64)
        );
        let other = publish("home/x", QoS::AtMostOnce, None);
        assert_eq!(check(other.clone()), Step5::Forward(other, 0));
        let sub = subscribe(&["ember/json/#", "$share/g/x"], None);
        assert_eq!(check(sub.clone()), Step5::Forward(sub, 0));
        assert!(matches!(
            check(Bytes::from_static(&[0xc0, 0])),
            Step5::Forward(..)
        ));
        // DISCONNECT: normal goes to rumqttd (which deletes the will); "with will" does not.
        for normal in [&[0xe0u8, 0][..], &[0xe0, 1, 0], &[0xe0, 2, 0, 0]] {
            let normal = Bytes::copy_from_slice(normal);
            assert_eq!(check(normal.clone()), Step5::Forward(normal, 0));
        }
        assert_eq!(
            check(Bytes::from_static(&[0xe0, 1, 4])),
            Step5::CloseWithWill
        );
    }

    #[test]
    fn the_connack_tells_what_is_served() {
        let p = connack_properties(4096, Some("v5-1".into()));
        assert_eq!(p.max_packet_size, Some(4098));
        assert_eq!(p.topic_alias_max, Some(0));
        assert_eq!(p.receive_max, Some(RECEIVE_MAXIMUM));
        assert_eq!(p.subscription_identifiers_available, Some(0));
        assert_eq!(p.assigned_client_identifier.as_deref(), Some("v5-1"));
        let ack = ConnAck {
            session_present: false,
            code: Code::Success,
            properties: Some(p.clone()),
        };
        let mut out = BytesMut::new();
        ack.write(&mut out).unwrap();
        let read = ConnAck::read(m5::check(out.iter(), None).unwrap(), out.freeze()).unwrap();
        assert_eq!(read.properties, Some(p));
    }

    /// A PUBLISH too large for the client is completed at rumqttd as if delivered.
    #[test]
    fn a_publish_the_client_cannot_take_is_acknowledged_for_it() {
        assert_eq!(
            delivered(&publish("a/b", QoS::AtLeastOnce, None)),
            Some([0x40, 2, 0, 7])
        );
        assert_eq!(
            delivered(&publish("a/b", QoS::ExactlyOnce, None)),
            Some([0x50, 2, 0, 7])
        );
        assert_eq!(delivered(&publish("a/b", QoS::AtMostOnce, None)), None);
        assert_eq!(delivered(&[0x32, 3, 0, 9]), None, "cut short");
        assert_eq!(delivered(&[0x90, 3, 0, 1, 0]), None, "not a publish");
    }
}

#[cfg(test)]
mod filter_limit_tests {
    use super::*;

    fn subscribe(pkid: u16, filters: &[&str]) -> Bytes {
        let mut s = m5::Subscribe::new_many(
            filters.iter().map(|f| m5::Filter::new(*f, QoS::AtMostOnce)),
            None,
        );
        s.pkid = pkid;
        let mut out = BytesMut::new();
        s.write(&mut out).unwrap();
        out.freeze()
    }

    fn unsubscribe(filter: &str) -> Bytes {
        let mut u = m5::Unsubscribe::new(filter, None);
        u.pkid = 9;
        let mut out = BytesMut::new();
        u.write(&mut out).unwrap();
        out.freeze()
    }

    /// Issue #20 and #21: an MQTT 5 connection holds at most `mqtt.max-subscriptions`
    /// filters, as a 3.1.1 one does; a SUBSCRIBE above the cap is refused whole, each filter
    /// "quota exceeded", and an UNSUBSCRIBE makes room again. (The MQTT 5 relay had no cap.)
    #[tokio::test]
    async fn an_mqtt5_connection_holds_at_most_the_cap_of_filters() {
        let mut subs = None;
        assert_eq!(
            limit_filters(&mut subs, 2, &subscribe(1, &["a", "b"])).await,
            None
        );
        // The same filter again takes no more room.
        assert_eq!(
            limit_filters(&mut subs, 2, &subscribe(2, &["a"])).await,
            None
        );
        let refused = limit_filters(&mut subs, 2, &subscribe(3, &["c", "d"])).await;
        let expected = suback(3, [reason::QUOTA_EXCEEDED; 2].into_iter());
        assert_eq!(refused, Some(expected));
        assert_eq!(limit_filters(&mut subs, 2, &unsubscribe("a")).await, None);
        assert_eq!(
            limit_filters(&mut subs, 2, &subscribe(4, &["c"])).await,
            None
        );
        assert_eq!(subs.as_ref().map(|s| s.len()), Some(2));
        // Other packets pass untouched.
        let mut p = BytesMut::new();
        m5::Publish::new("x", QoS::AtMostOnce, vec![1], None)
            .write(&mut p)
            .unwrap();
        assert_eq!(limit_filters(&mut subs, 2, &p.freeze()).await, None);
    }
}

#[cfg(test)]
mod account_tests {
    use super::*;
    use crate::access::Role;
    use crate::gate::{Flow, Settings};
    use rumqttc::v5::mqttbytes::v5::Filter;

    fn accounts(rate: u32, burst: u32) -> Accounts {
        Accounts {
            users: Default::default(),
            require_client_cert: false,
            max_connections_per_client: 1,
            rate,
            burst,
            reader_topics: vec!["homeassistant/status".into()],
            admission: crate::admission::Admission::new(
                crate::admission::Limits::default(),
                crate::admission::dummy_hash(None),
            ),
        }
    }

    fn publish(topic: &str, qos: QoS) -> Bytes {
        let mut p = m5::Publish::new(topic, qos, vec![0; 10], None);
        p.pkid = if qos == QoS::AtMostOnce { 0 } else { 0x0102 };
        let mut out = BytesMut::new();
        p.write(&mut out).unwrap();
        out.freeze()
    }

    /// With accounts: a publish outside the account's topics is answered "not authorized"
    /// (PUBACK, or PUBREC, which ends a QoS 2 exchange), a subscription outside them is
    /// refused in the SUBACK, and above the rate QoS 0 is dropped, QoS 1 and 2 held back.
    #[test]
    fn an_accounts_limits_are_reason_codes() {
        let gate = Gate::new(
            Settings {
                broker: crate::broker::idle_handoff(),
                max_connections: 4,
                max_packet: 4096,
                max_subscriptions: 100,
                tls: None,
                accounts: Some(accounts(1, 2)),
            },
            Flow::new(1 << 20),
        );
        let accounts = gate.settings.accounts.as_ref().unwrap();
        let pi = Identity {
            name: "pi".into(),
            role: Role::Agent,
        };
        let who = Some((&pi, accounts));
        let mut bucket = Some(TokenBucket::new(1, 2, Instant::now()));
        let mut check = |frame| check(&gate, who, &mut bucket, frame);
        for (qos, answer) in [
            (QoS::AtMostOnce, None),
            (QoS::AtLeastOnce, Some(vec![0x40, 4, 1, 2, 0x87, 0])),
            (QoS::ExactlyOnce, Some(vec![0x50, 4, 1, 2, 0x87, 0])),
        ] {
            assert_eq!(
                check(publish("ember/v1/other/sample", qos)),
                Step5::Answer(answer),
                "{qos:?}"
            );
        }
        let mut sub = m5::Subscribe::new_many(
            [
                Filter::new("ember/v1/pi/cmd", QoS::AtLeastOnce),
                Filter::new("#", QoS::AtMostOnce),
            ],
            None,
        );
        sub.pkid = 5;
        let mut out = BytesMut::new();
        sub.write(&mut out).unwrap();
        assert_eq!(
            check(out.freeze()),
            Step5::Answer(Some(vec![0x90, 5, 0, 5, 0, 0x80, 0x87]))
        );
        // The bucket holds 2: then QoS 0 is dropped, QoS 1 delayed.
        let own = publish("ember/v1/pi/sample", QoS::AtLeastOnce);
        let counted = (4 + 18 + 10) as u64;
        for _ in 0..2 {
            assert_eq!(check(own.clone()), Step5::Forward(own.clone(), counted));
        }
        assert_eq!(
            check(publish("ember/v1/pi/sample", QoS::AtMostOnce)),
            Step5::Answer(None)
        );
        assert_eq!(check(own.clone()), Step5::Delay(own, counted));
        let stats = gate.stats();
        assert_eq!(
            (
                stats.spoofed,
                stats.refused_subscriptions,
                stats.rate_dropped,
                stats.rate_delayed
            ),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn refusals_of_authenticate_map_to_v5_reason_codes() {
        use v4::ConnectReturnCode as C;
        assert_eq!(v5_code(C::BadUserNamePassword), 0x86);
        assert_eq!(v5_code(C::NotAuthorized), 0x87);
        assert_eq!(v5_code(C::ServiceUnavailable), 0x89);
    }
}

#[cfg(test)]
mod bad_input {
    use super::*;
    use crate::gate::{Flow, Settings};

    /// Whatever bytes a client sends, the relay decides without a panic: valid packets cut,
    /// flipped and lengthened at random (rumqttc's MQTT 5 reader included), and the CONNECT's.
    #[test]
    fn random_frames_are_decided_without_a_panic() {
        let gate = Gate::new(
            Settings {
                broker: crate::broker::idle_handoff(),
                max_connections: 1,
                max_packet: 4096,
                max_subscriptions: 100,
                tls: None,
                accounts: None,
            },
            Flow::new(1 << 20),
        );
        let seeds: [&[u8]; 5] = [
            &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0],
            &[0x32, 12, 0, 3, b'a', b'/', b'b', 0, 7, 5, 2, 0, 0, 0, 9, 1],
            &[0x82, 9, 0, 9, 2, 0x0b, 5, 0, 1, b'#', 1],
            &[0xe0, 5, 4, 3, 0x11, 0, 0],
            &[0x20, 3, 0, 0, 0],
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000 {
            let seed = seeds[i % seeds.len()];
            let mut frame = seed.to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % frame.len();
                match next() % 3 {
                    0 => frame[at] = next() as u8,
                    1 => frame.truncate(at.max(2)),
                    _ => frame.insert(at, next() as u8),
                }
            }
            // A whole frame as the gate reads it: the remaining length fixed to what is there.
            if frame.len() >= 2 && frame.len() - 2 < 128 {
                frame[1] = (frame.len() - 2) as u8;
            }
            let mut none = None;
            let _ = check(&gate, None, &mut none, Bytes::from(frame.clone()));
            let _ = m5::check(frame.iter(), None)
                .map(|h| m5::Connect::read(h, Bytes::from(frame.clone())));
            let _ = delivered(&frame);
        }
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;
    use std::time::Duration;

    /// A client's Receive Maximum below rumqttd's is kept: the next QoS 1 or 2 PUBLISH waits
    /// for an acknowledgement; the wait ends with the connection.
    #[tokio::test]
    async fn the_clients_receive_maximum_holds_publishes_back() {
        let quota = Arc::new(Quota::new(Some(2)));
        assert!(quota.take().await && quota.take().await);
        let third = tokio::spawn({
            let quota = quota.clone();
            async move { quota.take().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished(), "held back at 2");
        quota.give();
        assert!(tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("released by an acknowledgement")
            .unwrap());
        let fourth = tokio::spawn({
            let quota = quota.clone();
            async move { quota.take().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        quota.end();
        assert!(!tokio::time::timeout(Duration::from_secs(1), fourth)
            .await
            .expect("released by the end")
            .unwrap());
        // At or above rumqttd's own maximum (or absent): nothing to keep.
        for max in [None, Some(RECEIVE_MAXIMUM), Some(u16::MAX)] {
            let q = Quota::new(max);
            for _ in 0..200 {
                assert!(q.take().await);
            }
        }
        // What frees the quota.
        assert!(frees_quota(&[0x40, 2, 0, 1]));
        assert!(frees_quota(&[0x70, 2, 0, 1]));
        assert!(frees_quota(&[0x50, 3, 0, 1, 0x87]));
        assert!(
            !frees_quota(&[0x50, 2, 0, 1]),
            "PUBREC success: PUBCOMP to come"
        );
        assert!(!frees_quota(&[0x62, 2, 0, 1]));
        assert!(needs_ack(&[0x32, 5, 0, 1, b'a', 0, 1]) && needs_ack(&[0x34]));
        assert!(!needs_ack(&[0x30, 3, 0, 1, b'a']) && !needs_ack(&[0x40, 2, 0, 1]));
    }
}
