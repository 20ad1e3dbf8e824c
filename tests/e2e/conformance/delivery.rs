//! Delivery: QoS 0/1/2 flows, retained messages, unsubscribing, wills, SUBACK codes.

use anyhow::{bail, ensure, Result};

use super::client::{self, Client, Connect, Packet, Will, WAIT};
use super::Target;

/// A subscriber to `filter` at `qos` and a publisher, both connected.
async fn pair(t: &Target, filter: &str, qos: u8) -> Result<(Client, Client)> {
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(filter, qos).await?;
    let publisher = Client::new(t.addr, &t.id("pub")).await?;
    Ok((sub, publisher))
}

/// Publishes at `qos` to a subscriber at `qos`: it arrives once, at that QoS, not retained.
async fn flow(t: Target, qos: u8) -> Result<()> {
    let topic = t.topic("a");
    let (mut sub, mut publisher) = pair(&t, &topic, qos).await?;
    publisher.publish(&topic, b"hello", qos, false).await?;
    let p = sub.receive().await?;
    ensure!(p.topic == topic && p.payload == b"hello", "{p:?}");
    ensure!(p.qos == qos, "delivered at QoS {} [MQTT-3.8.4-6]", p.qos);
    ensure!(!p.retain, "a live message with RETAIN set [MQTT-3.3.1-9]");
    ensure!(qos == 0 || p.id != 0, "packet id 0 [MQTT-2.3.1-1]");
    sub.nothing().await?;
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-4.3.1-1] QoS 0: delivered at most once, no acknowledgement.
pub async fn qos0_flow(t: Target) -> Result<()> {
    flow(t, 0).await
}

/// [MQTT-4.3.2-2, 3.4.0] QoS 1: PUBACK with the packet id; the subscriber's copy has an id.
pub async fn qos1_flow(t: Target) -> Result<()> {
    flow(t, 1).await
}

/// [MQTT-4.3.3-2, 3.6.1-1] QoS 2: PUBREC, PUBREL, PUBCOMP both ways; delivered exactly once.
pub async fn qos2_flow(t: Target) -> Result<()> {
    flow(t, 2).await
}

/// [MQTT-3.8.4-6] Delivered at the lower of the publish's QoS and the subscription's.
pub async fn qos_downgraded(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let (mut sub, mut publisher) = pair(&t, &topic, 1).await?;
    publisher.publish(&topic, b"q2", 2, false).await?;
    let p = sub.receive().await?;
    ensure!(
        p.qos == 1,
        "QoS 2 to a QoS 1 subscription delivered at {}",
        p.qos
    );
    publisher.publish(&topic, b"q0", 0, false).await?;
    let p = sub.receive().await?;
    ensure!(
        p.qos == 0,
        "QoS 0 to a QoS 1 subscription delivered at {}",
        p.qos
    );
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-4.6.0-5] QoS 1 messages from one publisher on one topic arrive in order.
pub async fn qos1_in_order(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let (mut sub, mut publisher) = pair(&t, &topic, 1).await?;
    for i in 0..20u8 {
        publisher.publish(&topic, &[i], 1, false).await?;
    }
    for i in 0..20u8 {
        let p = sub.receive().await?;
        ensure!(p.payload == [i], "message {i} came as {:?}", p.payload);
    }
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// The retained messages a new subscription to `filter` gets within [`client::QUIET`].
async fn retained_on_subscribe(t: &Target, filter: &str) -> Result<Vec<client::Publish>> {
    let mut c = Client::new(t.addr, &t.id("late")).await?;
    c.sub(filter, 1).await?;
    let got = c.until_quiet().await?;
    c.disconnect().await?;
    Ok(got)
}

/// [MQTT-3.3.1-5, 3.3.1-6, 3.3.1-8, 3.3.1-9, 3.3.1-10, 3.3.1-11] A retained message is kept
/// and sent, with RETAIN set, to each new subscription; a newer one replaces it; an empty one
/// removes it (and is delivered to current subscribers as an ordinary message).
pub async fn retained_set_replace_clear(t: Target) -> Result<()> {
    let topic = t.topic("r");
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    publisher.publish(&topic, b"one", 1, true).await?;
    let got = retained_on_subscribe(&t, &topic).await?;
    ensure!(got.len() == 1, "{got:?}, wanted the one retained message");
    ensure!(got[0].payload == b"one" && got[0].retain, "{:?}", got[0]);

    publisher.publish(&topic, b"two", 1, true).await?;
    let got = retained_on_subscribe(&t, &topic).await?;
    ensure!(
        got.len() == 1 && got[0].payload == b"two",
        "after replacing: {got:?}"
    );

    // A current subscriber sees the clearing message as a live one, RETAIN 0.
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic, 1).await?;
    let old = sub.receive().await?;
    ensure!(old.payload == b"two" && old.retain, "{old:?}");
    publisher.publish(&topic, b"", 1, true).await?;
    let clear = sub.receive().await?;
    ensure!(clear.payload.is_empty(), "{clear:?}");
    ensure!(
        !clear.retain,
        "a live message with RETAIN set [MQTT-3.3.1-9]"
    );
    let got = retained_on_subscribe(&t, &topic).await?;
    ensure!(got.is_empty(), "after clearing: {got:?} [MQTT-3.3.1-10]");
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-3.3.1-7] A retained message published at QoS 0 replaces any earlier retained one.
pub async fn retained_qos0_replaces(t: Target) -> Result<()> {
    let topic = t.topic("r");
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    publisher.publish(&topic, b"one", 1, true).await?;
    publisher.publish(&topic, b"zero", 0, true).await?;
    publisher.ping().await?;
    let got = retained_on_subscribe(&t, &topic).await?;
    ensure!(got.len() == 1 && got[0].payload == b"zero", "{got:?}");
    publisher.publish(&topic, b"", 0, true).await?;
    publisher.disconnect().await
}

/// [MQTT-3.10.4-4, 3.10.4-5, 3.10.4-6] UNSUBACK with the packet id, and no more deliveries.
pub async fn unsubscribe_stops_delivery(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let (mut sub, mut publisher) = pair(&t, &topic, 1).await?;
    publisher.publish(&topic, b"before", 1, false).await?;
    ensure!(sub.receive().await?.payload == b"before");
    sub.unsubscribe(&[&topic]).await?;
    publisher.publish(&topic, b"after", 1, false).await?;
    sub.nothing().await?;
    // Unsubscribing from a filter not subscribed is still acknowledged.
    sub.unsubscribe(&[&t.topic("never")]).await?;
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// A will on `topic` at QoS 1.
fn will(topic: &str) -> Will {
    Will {
        topic: topic.into(),
        payload: b"gone".to_vec(),
        qos: 1,
        retain: false,
    }
}

/// [MQTT-3.1.2-8] The will is published when the connection closes without a DISCONNECT.
pub async fn will_on_abrupt_close(t: Target) -> Result<()> {
    let topic = t.topic("will");
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic, 1).await?;
    let (c, _) = Client::connect(t.addr, Connect::new(&t.id("w")).will(will(&topic))).await?;
    drop(c);
    let p = sub.receive().await?;
    ensure!(p.topic == topic && p.payload == b"gone", "{p:?}");
    sub.disconnect().await
}

/// [MQTT-3.1.2-10, 3.14.4-3] After a DISCONNECT the will is discarded, not published.
pub async fn no_will_after_disconnect(t: Target) -> Result<()> {
    let topic = t.topic("will");
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic, 1).await?;
    let (c, _) = Client::connect(t.addr, Connect::new(&t.id("w")).will(will(&topic))).await?;
    c.disconnect().await?;
    sub.nothing().await?;
    sub.disconnect().await
}

/// [MQTT-3.8.4-1, 3.8.4-5, 3.9.3-1] One SUBACK for a SUBSCRIBE of several filters, with the
/// packet id and a return code per filter, in order (each the QoS granted).
pub async fn suback_per_filter(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    let (a, b, d) = (t.topic("a"), t.topic("b/+"), t.topic("c/#"));
    let codes = c.subscribe(&[(&a, 0), (&b, 1), (&d, 2)]).await?;
    ensure!(codes == [0, 1, 2], "SUBACK {codes:?}, wanted [0, 1, 2]");
    c.disconnect().await
}

/// [MQTT-4.7.1-2, 4.7.1-3] Filters with a `#` not last, or a wildcard sharing a level, are
/// invalid: either the broker fails that filter (0x80, the others granted) or it closes the
/// connection (a malformed packet, [MQTT-4.8.0-1]). Which one is asserted per broker
/// ([`super::Broker::invalid_filter_closes`]).
pub async fn invalid_filters(t: Target) -> Result<()> {
    for bad in [t.topic("x/#/y"), t.topic("x+"), t.topic("x/y#")] {
        let mut c = Client::new(t.addr, &t.id("a")).await?;
        let good = t.topic("good");
        c.send(&client::subscribe(7, &[(&good, 1), (&bad, 1)]))
            .await?;
        match (c.read(WAIT).await, t.broker.invalid_filter_closes()) {
            (Ok(Packet::SubAck { id: 7, codes }), false) if codes == [1, 0x80] => {
                c.ping().await?;
                c.disconnect().await?;
            }
            (Err(client::Silence::Closed), true) => {}
            (other, closes) => bail!("{bad}: {other:?}; this broker closes: {closes}"),
        }
    }
    Ok(())
}

/// [MQTT-3.3.5-1] Overlapping subscriptions: the message is delivered at the highest QoS of
/// the subscriptions it matches, once or once per subscription (both allowed). Which one is
/// asserted per broker ([`super::Broker::overlap_copies`]), so a change shows.
pub async fn overlapping_subscriptions(t: Target) -> Result<()> {
    let topic = t.topic("o/a");
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&t.topic("o/#"), 0).await?;
    sub.sub(&topic, 1).await?;
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    publisher.publish(&topic, b"x", 1, false).await?;
    let mut copies = vec![sub.receive().await?];
    copies.extend(sub.until_quiet().await?);
    let mut qos: Vec<u8> = copies.iter().map(|p| p.qos).collect();
    qos.sort();
    ensure!(
        qos == [1] || qos == [0, 1],
        "copies at QoS {qos:?}: one at the highest QoS, or one per subscription"
    );
    let want = t.broker.overlap_copies();
    ensure!(
        qos == want,
        "copies at QoS {qos:?}, this broker sends {want:?}"
    );
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-3.1.2-17] A will with RETAIN set is published as a retained message.
pub async fn will_retained(t: Target) -> Result<()> {
    let topic = t.topic("will");
    let mut w = will(&topic);
    w.retain = true;
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic, 1).await?;
    let (c, _) = Client::connect(t.addr, Connect::new(&t.id("w")).will(w)).await?;
    drop(c);
    let live = sub.receive().await?;
    ensure!(live.payload == b"gone" && !live.retain, "{live:?}");
    let got = retained_on_subscribe(&t, &topic).await?;
    ensure!(got.len() == 1, "retained after the will: {got:?}");
    ensure!(got[0].payload == b"gone" && got[0].retain, "{:?}", got[0]);
    let mut c = Client::new(t.addr, &t.id("pub")).await?;
    c.publish(&topic, b"", 1, true).await?;
    c.disconnect().await
}

/// [MQTT-4.3.3-2] A QoS 2 PUBLISH sent again (DUP) before its PUBREL is one message: each gets
/// a PUBREC, the PUBREL a PUBCOMP, and the subscriber receives it once.
pub async fn qos2_resent_publish_delivered_once(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let (mut sub, mut publisher) = pair(&t, &topic, 2).await?;
    let mut packet = client::publish(&topic, b"once", 2, false, 9);
    publisher.send(&packet).await?;
    ensure!(
        publisher.recv(WAIT).await? == Packet::PubRec(9),
        "no PUBREC"
    );
    packet[0] |= 0x08;
    publisher.send(&packet).await?;
    ensure!(
        publisher.recv(WAIT).await? == Packet::PubRec(9),
        "no second PUBREC"
    );
    publisher.send(&client::ack(0x62, 9)).await?;
    ensure!(
        publisher.recv(WAIT).await? == Packet::PubComp(9),
        "no PUBCOMP"
    );
    let p = sub.receive().await?;
    ensure!(p.payload == b"once", "{p:?}");
    sub.nothing().await?;
    // The next message is itself, not the duplicate released by its PUBREL.
    publisher.publish(&topic, b"next", 2, false).await?;
    let p = sub.receive().await?;
    ensure!(p.payload == b"next", "{p:?}");
    sub.nothing().await?;
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-3.8.4-3] Subscribing again to the same filter replaces the subscription: the new
/// QoS applies, retained messages are sent again, and each message still comes once.
pub async fn resubscribe_replaces(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    publisher.publish(&topic, b"kept", 1, true).await?;
    let mut sub = Client::new(t.addr, &t.id("sub")).await?;
    sub.sub(&topic, 0).await?;
    let p = sub.receive().await?;
    ensure!(p.payload == b"kept" && p.qos == 0, "{p:?}");
    sub.sub(&topic, 1).await?;
    let again = sub.until_quiet().await?;
    ensure!(
        again.len() == 1 && again[0].payload == b"kept" && again[0].retain,
        "after subscribing again, {again:?}, not the retained message once"
    );
    publisher.publish(&topic, b"live", 1, false).await?;
    let copies = sub.until_quiet().await?;
    let qos: Vec<u8> = copies.iter().map(|p| p.qos).collect();
    ensure!(
        qos == [1],
        "a live message after subscribing again came at QoS {qos:?}"
    );
    publisher.publish(&topic, b"", 1, true).await?;
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-4.3.3-2] A PUBREL is answered with a PUBCOMP of the same packet id, also for an id
/// the broker holds no message for (released already, or before a reconnection).
pub async fn pubrel_unknown_id_completed(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    c.send(&client::ack(0x62, 77)).await?;
    ensure!(c.recv(WAIT).await? == Packet::PubComp(77), "no PUBCOMP 77");
    c.ping().await?;
    c.disconnect().await
}

/// [MQTT-4.3.1-1] A subscription made while retained QoS 0 messages are being published gets
/// each message at most once: as the retained message, or live, not both.
pub async fn retained_or_live_once(t: Target) -> Result<()> {
    for round in 0..5 {
        let topic = t.topic(&format!("r{round}"));
        let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
        publisher.publish(&topic, &[0, 0], 1, true).await?;
        let mut sub = Client::new(t.addr, &t.id("sub")).await?;
        let burst: Vec<u8> = (1..300u16)
            .flat_map(|i| client::publish(&topic, &i.to_be_bytes(), 0, true, 0))
            .collect();
        let subscribe = client::subscribe(1, &[(&topic, 0)]);
        let (a, b) = tokio::join!(sub.send(&subscribe), publisher.send(&burst));
        a?;
        b?;
        publisher.ping().await?;
        let mut seen = Vec::new();
        loop {
            match sub.read(client::QUIET).await {
                Ok(Packet::Publish(p)) => {
                    seen.push(u16::from_be_bytes([p.payload[0], p.payload[1]]))
                }
                Ok(Packet::SubAck { .. }) => {}
                Ok(p) => bail!("unexpected {p:?}"),
                Err(_) => break,
            }
        }
        ensure!(
            seen.last() == Some(&299),
            "the last message missing: {seen:?}"
        );
        ensure!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "a message twice or out of order: {seen:?}"
        );
        publisher.publish(&topic, b"", 1, true).await?;
        sub.disconnect().await?;
        publisher.disconnect().await?;
    }
    Ok(())
}
