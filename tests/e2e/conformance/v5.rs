//! MQTT 5.0 conformance: the cases below, from MQTT 5.0's normative statements, run against
//! both brokers as the 3.1.1 cases do. Packets are rumqttc's `mqttbytes::v5` types, written
//! and read over a raw TCP stream, so that a case sees every packet the broker sends and can
//! send a DISCONNECT with a reason code or close abruptly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode,
    Filter, LastWill, Packet, PubAck, Publish, PublishProperties, Subscribe, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::{Error as Decode, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::client::{read_more, Silence, QUIET, WAIT};
use super::{Broker, Target};

/// A raw MQTT 5 connection.
struct Client5 {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u16,
}

/// A CONNECT: clean start as given, keep-alive 30 s, the session expiry interval if any.
fn connect(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    let mut properties = ConnectProperties::new();
    properties.session_expiry_interval = session_expiry;
    Connect {
        keep_alive: 30,
        client_id: client_id.into(),
        clean_start,
        properties: Some(properties),
    }
}

impl Client5 {
    /// Connects and expects success: the client and the CONNACK.
    async fn connect(
        addr: SocketAddr,
        connect: Connect,
        will: Option<LastWill>,
    ) -> Result<(Self, ConnAck)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Client5 {
            stream,
            buf: BytesMut::new(),
            next_id: 0,
        };
        let id = connect.client_id.clone();
        c.send(Packet::Connect(connect, will, None)).await?;
        match c.recv(WAIT).await? {
            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok((c, ack)),
            p => bail!("CONNECT of {id:?}: {p:?}, not a successful CONNACK"),
        }
    }

    /// [`Client5::connect`] with a clean start, no session kept and no will.
    async fn new(addr: SocketAddr, client_id: &str) -> Result<Self> {
        Ok(Client5::connect(addr, connect(client_id, true, None), None)
            .await?
            .0)
    }

    async fn send(&mut self, packet: Packet) -> Result<()> {
        let mut out = BytesMut::new();
        packet
            .write(&mut out, None)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// The next packet, or why there is none within `wait`.
    async fn read(&mut self, wait: Duration) -> Result<Packet, Silence> {
        let deadline = Instant::now() + wait;
        loop {
            match Packet::read(&mut self.buf, None) {
                Ok(p) => return Ok(p),
                Err(Decode::InsufficientBytes(_)) => {}
                // A packet this client cannot read: as good as a closed connection to a case.
                Err(_) => return Err(Silence::Closed),
            }
            read_more(&mut self.stream, deadline, &mut self.buf).await?;
        }
    }

    async fn recv(&mut self, wait: Duration) -> Result<Packet> {
        self.read(wait)
            .await
            .map_err(|s| anyhow::anyhow!("no packet within {wait:?}: {s:?}"))
    }

    /// Subscribes and returns the SUBACK's reason codes, or `None` if the broker closed the
    /// connection instead (after a DISCONNECT or not).
    async fn try_subscribe(&mut self, filters: Vec<Filter>) -> Result<Option<Vec<u8>>> {
        let mut subscribe = Subscribe::new_many(filters, None);
        subscribe.pkid = self.id();
        self.send(Packet::Subscribe(subscribe)).await?;
        match self.read(WAIT).await {
            Ok(Packet::SubAck(ack)) => Ok(Some(ack.return_codes.iter().map(code).collect())),
            Ok(Packet::Disconnect(_)) | Err(Silence::Closed) => Ok(None),
            Ok(p) => bail!("waiting for a SUBACK: {p:?}"),
            Err(Silence::Timeout) => bail!("no SUBACK within {WAIT:?}"),
        }
    }

    /// Subscribes to `filter` at QoS 1 and expects it granted.
    async fn sub(&mut self, filter: &str) -> Result<()> {
        let codes = self
            .try_subscribe(vec![Filter::new(filter, QoS::AtLeastOnce)])
            .await?;
        ensure!(codes == Some(vec![1]), "SUBSCRIBE {filter}: {codes:?}");
        Ok(())
    }

    /// Publishes (at QoS 1: waits for its PUBACK).
    async fn publish(&mut self, mut publish: Publish) -> Result<()> {
        if publish.qos == QoS::AtLeastOnce {
            publish.pkid = self.id();
        }
        let qos = publish.qos;
        self.send(Packet::Publish(publish)).await?;
        if qos == QoS::AtLeastOnce {
            match self.recv(WAIT).await? {
                Packet::PubAck(_) => {}
                p => bail!("waiting for a PUBACK: {p:?}"),
            }
        }
        Ok(())
    }

    /// The next PUBLISH (acknowledged at QoS 1).
    async fn next_publish(&mut self) -> Result<Publish> {
        match self.recv(WAIT).await? {
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    self.send(Packet::PubAck(PubAck::new(p.pkid, None))).await?;
                }
                Ok(p)
            }
            p => bail!("waiting for a PUBLISH: {p:?}"),
        }
    }

    /// Expects no packet for [`QUIET`].
    async fn nothing(&mut self) -> Result<()> {
        match self.read(QUIET).await {
            Err(Silence::Timeout) => Ok(()),
            Err(Silence::Closed) => bail!("closed by the broker"),
            Ok(p) => bail!("unexpected {p:?}"),
        }
    }

    /// Sends DISCONNECT with `reason` and waits for the broker to close.
    async fn disconnect(mut self, reason: DisconnectReasonCode) -> Result<()> {
        self.send(Packet::Disconnect(Disconnect::new(reason)))
            .await?;
        match self.read(WAIT).await {
            Err(Silence::Closed) => Ok(()),
            other => bail!("after DISCONNECT: {other:?}"),
        }
    }
}

/// A SUBACK reason code as its byte.
fn code(c: &SubscribeReasonCode) -> u8 {
    match c {
        SubscribeReasonCode::Success(q) => *q as u8,
        SubscribeReasonCode::Failure | SubscribeReasonCode::Unspecified => 0x80,
        SubscribeReasonCode::ImplementationSpecific => 0x83,
        SubscribeReasonCode::NotAuthorized => 0x87,
        SubscribeReasonCode::TopicFilterInvalid => 0x8F,
        SubscribeReasonCode::PkidInUse => 0x91,
        SubscribeReasonCode::QuotaExceeded => 0x97,
        SubscribeReasonCode::SharedSubscriptionsNotSupported => 0x9E,
        SubscribeReasonCode::SubscriptionIdNotSupported => 0xA1,
        SubscribeReasonCode::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

fn message(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Publish {
    let mut p = Publish::new(topic, qos, Bytes::from_static(payload), None);
    p.retain = retain;
    p
}

/// How a broker answers a SUBSCRIBE with an invalid filter in MQTT 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidFilter {
    /// A SUBACK with this reason code for that filter.
    Refused(u8),
    /// The connection closed (a DISCONNECT first or not): the packet is malformed.
    Closes,
}

impl Broker {
    /// An invalid filter (`a/#/b`) in an MQTT 5 SUBSCRIBE [MQTT-4.7.1-1/2]: Mosquitto treats
    /// the packet as malformed and closes the connection; Ember fails that filter with 0x8F
    /// (Topic Filter invalid) and grants the others. Both are allowed.
    pub fn v5_invalid_filter(self) -> InvalidFilter {
        match self {
            Broker::Ember => InvalidFilter::Refused(0x8F),
            Broker::Mosquitto => InvalidFilter::Closes,
        }
    }

    /// Whether the No Local subscription option is honoured [MQTT-3.8.3-3]. Mosquitto: yes.
    /// Ember: no, a known gap (docs/mqtt.md): rumqttd 0.20 reads the option and its router
    /// ignores it, so a client gets its own messages; the gate cannot tell a message's
    /// publisher to drop them.
    pub fn v5_no_local(self) -> bool {
        self == Broker::Mosquitto
    }

    /// Whether the Retain As Published subscription option is honoured [MQTT-3.3.1-12/13].
    /// Mosquitto: yes. Ember: no, a known gap (docs/mqtt.md): rumqttd's router sends every
    /// live message with RETAIN 0, whatever the option.
    pub fn v5_retain_as_published(self) -> bool {
        self == Broker::Mosquitto
    }
}

/// [MQTT-3.2.2-16]: an empty client id is given one, said in the CONNACK's Assigned Client
/// Identifier; the CONNACK carries properties.
pub async fn v5_connack_assigned_id(t: Target) -> Result<()> {
    let (c, ack) = Client5::connect(t.addr, connect("", true, None), None).await?;
    ensure!(!ack.session_present, "{ack:?}");
    let props = ack.properties.context("the CONNACK has no properties")?;
    let id = props
        .assigned_client_identifier
        .context("no Assigned Client Identifier")?;
    ensure!(!id.is_empty(), "an empty Assigned Client Identifier");
    c.disconnect(DisconnectReasonCode::NormalDisconnection)
        .await
}

/// [MQTT-3.3.2-17/18], [MQTT-3.3.2-4]: user properties (in order, repeated keys kept), content
/// type and payload format indicator reach the subscriber unchanged.
pub async fn v5_properties_pass_through(t: Target) -> Result<()> {
    let topic = t.topic("props");
    let mut sub = Client5::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic).await?;
    let mut publisher = Client5::new(t.addr, &t.id("pub")).await?;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        user_properties: vec![
            ("k".into(), "v".into()),
            ("k".into(), "w".into()),
            ("a".into(), "1".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    let mut p = message(&topic, b"{}", QoS::AtLeastOnce, false);
    p.properties = Some(sent.clone());
    publisher.publish(p).await?;
    let got = sub.next_publish().await?;
    ensure!(got.payload == b"{}"[..], "{got:?}");
    ensure!(got.properties == Some(sent), "{:?}", got.properties);
    Ok(())
}

/// [MQTT-3.3.2-5]: a retained message whose expiry has passed is not sent to a new
/// subscriber; [MQTT-3.3.2-6]: the expiry forwarded is the one received less the time waited.
pub async fn v5_message_expiry(t: Target) -> Result<()> {
    let mut sub = Client5::new(t.addr, &t.id("sub")).await?;
    sub.sub(&t.topic("live")).await?;
    let mut publisher = Client5::new(t.addr, &t.id("pub")).await?;
    let with_expiry = |topic: &str, payload: &'static [u8], retain: bool, seconds: u32| {
        let mut p = message(topic, payload, QoS::AtLeastOnce, retain);
        p.properties = Some(PublishProperties {
            message_expiry_interval: Some(seconds),
            ..Default::default()
        });
        p
    };
    publisher
        .publish(with_expiry(&t.topic("live"), b"live", false, 600))
        .await?;
    let got = sub.next_publish().await?;
    let expiry = got.properties.and_then(|p| p.message_expiry_interval);
    ensure!(
        matches!(expiry, Some(595..=600)),
        "forwarded expiry: {expiry:?}"
    );
    publisher
        .publish(with_expiry(&t.topic("kept/expiring"), b"old", true, 1))
        .await?;
    publisher
        .publish(message(
            &t.topic("kept/plain"),
            b"kept",
            QoS::AtLeastOnce,
            true,
        ))
        .await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut late = Client5::new(t.addr, &t.id("late")).await?;
    late.sub(&t.topic("kept/#")).await?;
    let got = late.next_publish().await?;
    ensure!(got.topic == t.topic("kept/plain").as_bytes(), "{got:?}");
    late.nothing()
        .await
        .context("the expired retained message")?;
    // Clear the retained message (the brokers keep it after the case).
    publisher
        .publish(message(&t.topic("kept/plain"), b"", QoS::AtLeastOnce, true))
        .await
}

/// Session Expiry Interval [MQTT-3.1.2-23]: 0 keeps nothing after the connection (session
/// present 0 on return); above 0 keeps the session, with a QoS 1 message published while away.
pub async fn v5_session_expiry(t: Target) -> Result<()> {
    let topic = t.topic("s");
    let mut publisher = Client5::new(t.addr, &t.id("pub")).await?;
    // Expiry 0 (absent): nothing kept.
    let (mut c, _) = Client5::connect(t.addr, connect(&t.id("s0"), true, None), None).await?;
    c.sub(&topic).await?;
    c.disconnect(DisconnectReasonCode::NormalDisconnection)
        .await?;
    let (c, ack) = Client5::connect(t.addr, connect(&t.id("s0"), false, None), None).await?;
    ensure!(!ack.session_present, "expiry 0: session present");
    c.disconnect(DisconnectReasonCode::NormalDisconnection)
        .await?;
    // Expiry 60: kept, with what was published while away.
    let (mut c, _) = Client5::connect(t.addr, connect(&t.id("s60"), true, Some(60)), None).await?;
    c.sub(&topic).await?;
    c.disconnect(DisconnectReasonCode::NormalDisconnection)
        .await?;
    publisher
        .publish(message(&topic, b"while away", QoS::AtLeastOnce, false))
        .await?;
    let (mut c, ack) =
        Client5::connect(t.addr, connect(&t.id("s60"), false, Some(60)), None).await?;
    ensure!(ack.session_present, "expiry 60: no session present");
    let got = c.next_publish().await?;
    ensure!(
        got.payload == b"while away"[..] && got.qos == QoS::AtLeastOnce,
        "{got:?}"
    );
    c.disconnect(DisconnectReasonCode::NormalDisconnection)
        .await?;
    // End the session (a clean start with expiry 0).
    let (c, _) = Client5::connect(t.addr, connect(&t.id("s60"), true, None), None).await?;
    c.disconnect(DisconnectReasonCode::NormalDisconnection)
        .await
}

/// Wills [MQTT-3.1.2-8], [MQTT-3.14.4-3]: sent on an abrupt close and after DISCONNECT 0x04
/// (with will message); not after a normal DISCONNECT (0x00).
pub async fn v5_will(t: Target) -> Result<()> {
    let mut watch = Client5::new(t.addr, &t.id("watch")).await?;
    watch.sub(&t.topic("will/#")).await?;
    let with_will = |who: &'static str| async move {
        let will = LastWill::new(
            t.topic(&format!("will/{who}")),
            who,
            QoS::AtLeastOnce,
            false,
            None,
        );
        Client5::connect(t.addr, connect(&t.id(who), true, None), Some(will))
            .await
            .map(|(c, _)| c)
    };
    // A normal DISCONNECT: no will.
    with_will("normal")
        .await?
        .disconnect(DisconnectReasonCode::NormalDisconnection)
        .await?;
    watch
        .nothing()
        .await
        .context("a will after DISCONNECT 0x00")?;
    // DISCONNECT 0x04: the will.
    with_will("with-will")
        .await?
        .disconnect(DisconnectReasonCode::DisconnectWithWillMessage)
        .await?;
    let got = watch.next_publish().await?;
    ensure!(got.payload == b"with-will"[..], "{got:?}");
    // Closed without a DISCONNECT: the will.
    drop(with_will("abrupt").await?);
    let got = watch.next_publish().await?;
    ensure!(got.payload == b"abrupt"[..], "{got:?}");
    Ok(())
}

/// SUBACK [MQTT-3.9.3-1/2]: a reason code per filter, the QoS granted; an invalid filter
/// [MQTT-4.7.1-1/2]: a failure code for it, or the connection closed (each broker's own).
pub async fn v5_suback_codes(t: Target) -> Result<()> {
    let mut c = Client5::new(t.addr, &t.id("c")).await?;
    let codes = c
        .try_subscribe(vec![
            Filter::new(t.topic("a"), QoS::AtMostOnce),
            Filter::new(t.topic("b/+"), QoS::AtLeastOnce),
            Filter::new(t.topic("c/#"), QoS::ExactlyOnce),
        ])
        .await?;
    ensure!(codes == Some(vec![0, 1, 2]), "{codes:?}");
    let codes = c
        .try_subscribe(vec![Filter::new(t.topic("x/#/y"), QoS::AtMostOnce)])
        .await?;
    match (t.broker.v5_invalid_filter(), codes) {
        (InvalidFilter::Refused(code), Some(codes)) if codes == [code] => Ok(()),
        (InvalidFilter::Closes, None) => Ok(()),
        (expected, got) => bail!("invalid filter: {got:?}, expected {expected:?}"),
    }
}

/// No Local [MQTT-3.8.3-3]: a subscriber with No Local does not get its own messages.
pub async fn v5_no_local(t: Target) -> Result<()> {
    let topic = t.topic("nl");
    let mut other = Client5::new(t.addr, &t.id("other")).await?;
    other.sub(&topic).await?;
    let mut c = Client5::new(t.addr, &t.id("self")).await?;
    let mut filter = Filter::new(&topic, QoS::AtLeastOnce);
    filter.nolocal = true;
    let codes = c.try_subscribe(vec![filter]).await?;
    ensure!(codes == Some(vec![1]), "{codes:?}");
    c.publish(message(&topic, b"own", QoS::AtLeastOnce, false))
        .await?;
    // The other subscriber gets it: it was routed.
    ensure!(other.next_publish().await?.payload == b"own"[..]);
    if t.broker.v5_no_local() {
        c.nothing().await.context("No Local: its own message")
    } else {
        ensure!(c.next_publish().await?.payload == b"own"[..]);
        Ok(())
    }
}

/// Retain As Published [MQTT-3.3.1-12/13]: with it, a live message keeps its RETAIN flag;
/// without it, the flag is 0.
pub async fn v5_retain_as_published(t: Target) -> Result<()> {
    let topic = t.topic("rap");
    let mut plain = Client5::new(t.addr, &t.id("plain")).await?;
    plain.sub(&topic).await?;
    let mut rap = Client5::new(t.addr, &t.id("rap")).await?;
    let mut filter = Filter::new(&topic, QoS::AtLeastOnce);
    filter.preserve_retain = true;
    let codes = rap.try_subscribe(vec![filter]).await?;
    ensure!(codes == Some(vec![1]), "{codes:?}");
    let mut publisher = Client5::new(t.addr, &t.id("pub")).await?;
    publisher
        .publish(message(&topic, b"r", QoS::AtLeastOnce, true))
        .await?;
    let got = plain.next_publish().await?;
    ensure!(!got.retain, "without Retain As Published: {got:?}");
    let got = rap.next_publish().await?;
    ensure!(
        got.retain == t.broker.v5_retain_as_published(),
        "with Retain As Published: {got:?}"
    );
    publisher
        .publish(message(&topic, b"", QoS::AtLeastOnce, true))
        .await
}

/// A message an MQTT 5 client publishes with properties reaches a 3.1.1 subscriber, without
/// them (3.1.1 has none), and the subscriber's connection stays open. (Ember's rumqttd
/// panicked writing it to the 3.1.1 client: see collector/vendor/rumqttd/EMBER.md.)
pub async fn v5_message_to_3_1_1_client(t: Target) -> Result<()> {
    let topic = t.topic("mixed");
    let mut old = super::client::Client::new(t.addr, &t.id("v311")).await?;
    old.sub(&topic, 1).await?;
    let mut publisher = Client5::new(t.addr, &t.id("pub")).await?;
    let mut p = message(&topic, b"from v5", QoS::AtLeastOnce, false);
    p.properties = Some(PublishProperties {
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("text/plain".into()),
        message_expiry_interval: Some(600),
        ..Default::default()
    });
    publisher.publish(p).await?;
    let got = old.next_publish().await?;
    ensure!(got.topic == topic && got.payload == b"from v5", "{got:?}");
    old.ack(&got).await?;
    old.ping()
        .await
        .context("the 3.1.1 subscriber afterwards")?;
    old.disconnect().await
}
