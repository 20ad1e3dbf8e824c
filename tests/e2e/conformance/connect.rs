//! Connecting: CONNACK codes, client ids, keep-alive, protocol violations that close.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};

use super::client::{self, Client, Connect, Packet, WAIT};
use super::Target;

/// [MQTT-3.2.2-3] A CONNECT of 3.1.1 with a clean session gets CONNACK 0, session present 0.
pub async fn connack_accepted(t: Target) -> Result<()> {
    let (c, present) = Client::connect(t.addr, Connect::new(&t.id("a"))).await?;
    ensure!(
        !present,
        "session present with a clean session [MQTT-3.2.2-1]"
    );
    c.disconnect().await
}

/// Sends `connect` and expects CONNACK `code`, then the broker closing the connection.
async fn refused(t: &Target, connect: Connect, code: u8) -> Result<()> {
    let mut c = Client::open(t.addr).await?;
    c.send(&connect.encode()).await?;
    match c.recv(WAIT).await? {
        Packet::ConnAck { code: got, .. } if got == code => {}
        p => bail!("{p:?}, not CONNACK {code}"),
    }
    c.closed_within(WAIT).await.map(drop)
}

/// [MQTT-3.1.2-2] An unsupported protocol level: CONNACK 1, then the connection is closed.
pub async fn bad_protocol_level(t: Target) -> Result<()> {
    let mut connect = Connect::new(&t.id("a"));
    connect.level = 3;
    refused(&t, connect, 1).await
}

/// [MQTT-3.1.3-8] A zero-length client id with clean session 0: CONNACK 2, then close.
pub async fn empty_id_persistent_refused(t: Target) -> Result<()> {
    refused(&t, Connect::new("").clean(false), 2).await
}

/// [MQTT-3.1.3-6, 3.1.3-7] A zero-length client id with a clean session is accepted and given
/// an id of its own: two such clients at once are two sessions, neither closes the other.
pub async fn empty_id_clean_accepted(t: Target) -> Result<()> {
    let mut a = Client::new(t.addr, "").await?;
    let mut b = Client::new(t.addr, "").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.ping().await?;
    b.ping().await?;
    a.disconnect().await?;
    b.disconnect().await
}

/// [MQTT-3.1.0-1] A first packet other than CONNECT: the connection is closed, unanswered.
pub async fn first_packet_not_connect(t: Target) -> Result<()> {
    let mut c = Client::open(t.addr).await?;
    c.send(&client::PINGREQ).await?;
    let mut answers = Vec::new();
    loop {
        match c.read(WAIT).await {
            Ok(p) => answers.push(p),
            Err(client::Silence::Closed) => break,
            Err(client::Silence::Timeout) => bail!("still open after {WAIT:?}"),
        }
    }
    ensure!(answers.is_empty(), "answered {answers:?} before closing");
    Ok(())
}

/// [MQTT-3.1.0-2] A second CONNECT is a protocol violation: the connection is closed.
pub async fn second_connect_closes(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    c.send(&Connect::new(&t.id("a")).encode()).await?;
    c.closed_within(WAIT).await.map(drop)
}

/// [MQTT-3.1.4-2] A second connection with the same client id takes the session over: the
/// first is closed, the second works.
pub async fn client_id_takeover(t: Target) -> Result<()> {
    let mut old = Client::new(t.addr, &t.id("same")).await?;
    let mut new = Client::new(t.addr, &t.id("same")).await?;
    old.closed_within(WAIT).await?;
    new.ping().await?;
    new.disconnect().await
}

/// Keep-alive 0 turns the keep-alive off [MQTT-3.1.2.10]: accepted, and the broker does not
/// close an idle connection (here idle for 2.5 s, more than any keep-alive the broker could be
/// using in its place at 1.5 x 1 s).
pub async fn keep_alive_zero(t: Target) -> Result<()> {
    let (mut c, _) = Client::connect(t.addr, Connect::new(&t.id("a")).keep_alive(0)).await?;
    match c.read(Duration::from_millis(2500)).await {
        Err(client::Silence::Timeout) => {}
        Err(client::Silence::Closed) => bail!("an idle client with keep-alive 0 was closed"),
        Ok(p) => bail!("unexpected {p:?}"),
    }
    c.ping().await?;
    c.disconnect().await
}

/// [MQTT-3.1.2-24] Keep-alive N: packets within N keep the connection; with none for 1.5 x N
/// the broker closes it: not before N, and within the broker's slack after 1.5 x N
/// ([`super::Broker::keep_alive_slack`]: Mosquitto's timer is coarse).
pub async fn keep_alive_enforced(t: Target) -> Result<()> {
    const N: u64 = 2;
    let (mut c, _) = Client::connect(t.addr, Connect::new(&t.id("a")).keep_alive(N as u16)).await?;
    // Pings every second for longer than 1.5 x N: still open.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.ping().await?;
    }
    let idle = Instant::now();
    let limit = Duration::from_secs(N * 3 / 2) + t.broker.keep_alive_slack();
    let took = c.closed_within(limit + Duration::from_secs(1)).await?;
    let took = took.max(idle.elapsed());
    ensure!(
        took >= Duration::from_secs(N),
        "closed after {took:?} idle, before the keep-alive of {N} s"
    );
    ensure!(
        took <= limit,
        "closed only after {took:?} idle (keep-alive {N} s)"
    );
    Ok(())
}

/// [MQTT-3.3.2-2] A PUBLISH whose topic has a wildcard is a protocol violation: closed.
pub async fn publish_wildcard_topic_closes(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    c.send(&client::publish(&t.topic("a/+"), b"x", 0, false, 0))
        .await?;
    c.closed_within(WAIT).await.map(drop)
}

/// [MQTT-3.8.3-4] A SUBSCRIBE asking for QoS 3 is malformed: the connection is closed.
pub async fn subscribe_qos3_closes(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    c.send(&client::subscribe(1, &[(&t.topic("a"), 3)])).await?;
    c.closed_within(WAIT).await.map(drop)
}

/// [MQTT-3.12.4-1] PINGREQ is answered with PINGRESP.
pub async fn ping(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    c.ping().await?;
    c.disconnect().await
}

/// MQTT 3.1 (protocol name `MQIsdp`, level 3): Mosquitto serves it; Ember refuses it with
/// CONNACK 1 and closes ([`super::Broker::serves_mqtt_3_1`]; docs/mqtt.md).
pub async fn mqtt_3_1(t: Target) -> Result<()> {
    let mut connect = Connect::new(&t.id("a"));
    connect.protocol_name = "MQIsdp";
    connect.level = 3;
    if !t.broker.serves_mqtt_3_1() {
        return refused(&t, connect, 1).await;
    }
    let (c, _) = Client::connect(t.addr, connect).await?;
    c.disconnect().await
}

/// [MQTT-3.1.2-8] The will is published when the broker closes the connection because the
/// keep-alive ran out.
pub async fn will_on_keep_alive_timeout(t: Target) -> Result<()> {
    let topic = t.topic("will");
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic, 1).await?;
    let will = client::Will {
        topic: topic.clone(),
        payload: b"timed out".to_vec(),
        qos: 1,
        retain: false,
    };
    let connect = Connect::new(&t.id("w")).keep_alive(1).will(will);
    let (mut c, _) = Client::connect(t.addr, connect).await?;
    let limit = Duration::from_millis(1500) + t.broker.keep_alive_slack();
    c.closed_within(limit + Duration::from_secs(1)).await?;
    let p = sub.receive().await?;
    ensure!(p.topic == topic && p.payload == b"timed out", "{p:?}");
    sub.disconnect().await
}
