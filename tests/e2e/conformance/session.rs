//! Sessions: clean and persistent, messages kept for a disconnected client, redelivery.

use anyhow::{ensure, Result};

use super::client::{Client, Connect};
use super::Target;

/// Ends any session `who` has: a clean session, disconnected.
async fn forget_session(t: &Target, who: &str) -> Result<()> {
    Client::new(t.addr, &t.id(who)).await?.disconnect().await
}

/// [MQTT-3.1.2-4, 3.2.2-2] A persistent session keeps the subscription and the QoS 1 messages
/// published while its client was away; the CONNACK says session present, and they come in
/// order.
pub async fn persistent_session_queues(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let persistent = || Connect::new(&t.id("sub")).clean(false);
    // A session left from an earlier run is discarded first.
    forget_session(&t, "sub").await?;
    let (mut sub, present) = Client::connect(t.addr, persistent()).await?;
    ensure!(!present, "a new session is present");
    sub.sub(&topic, 1).await?;
    sub.disconnect().await?;

    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    for m in [b"m1", b"m2"] {
        publisher.publish(&topic, m, 1, false).await?;
    }
    let (mut sub, present) = Client::connect(t.addr, persistent()).await?;
    ensure!(
        present,
        "session present is 0 for a kept session [MQTT-3.2.2-2]"
    );
    for m in [b"m1", b"m2"] {
        let p = sub.receive().await?;
        ensure!(p.payload == m && p.qos == 1, "{p:?}, wanted {m:?} at QoS 1");
    }
    // The subscription is still there.
    publisher.publish(&topic, b"m3", 1, false).await?;
    let p = sub.receive().await?;
    ensure!(p.payload == b"m3", "{p:?}");
    sub.nothing().await?;
    sub.disconnect().await?;
    publisher.disconnect().await
}

/// [MQTT-4.4.0-1] A QoS 1 message delivered and not acknowledged when the connection dropped
/// is sent again on reconnection to the session, with DUP set [MQTT-3.3.1-1].
pub async fn unacked_qos1_redelivered(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let persistent = || Connect::new(&t.id("sub")).clean(false);
    let (mut sub, _) = Client::connect(t.addr, persistent()).await?;
    sub.sub(&topic, 1).await?;
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    publisher.publish(&topic, b"once", 1, false).await?;
    let first = sub.next_publish().await?;
    ensure!(first.payload == b"once" && first.qos == 1, "{first:?}");
    // Dropped without a PUBACK or a DISCONNECT.
    drop(sub);
    let (mut sub, present) = Client::connect(t.addr, persistent()).await?;
    ensure!(
        present,
        "session present is 0 for a kept session [MQTT-3.2.2-2]"
    );
    let again = sub.receive().await?;
    ensure!(again.payload == b"once", "{again:?}");
    ensure!(again.dup, "redelivered without DUP: {again:?}");
    sub.nothing().await?;
    // Clean up the session.
    sub.disconnect().await?;
    forget_session(&t, "sub").await?;
    publisher.disconnect().await
}

/// [MQTT-3.1.2-6] A clean session discards the state of an earlier persistent one: session
/// present 0, its subscription gone, and nothing kept after it either.
pub async fn clean_session_discards(t: Target) -> Result<()> {
    let topic = t.topic("a");
    let (mut sub, _) = Client::connect(t.addr, Connect::new(&t.id("sub")).clean(false)).await?;
    sub.sub(&topic, 1).await?;
    sub.disconnect().await?;

    let (mut sub, present) = Client::connect(t.addr, Connect::new(&t.id("sub"))).await?;
    ensure!(
        !present,
        "session present with a clean session [MQTT-3.2.2-1]"
    );
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    publisher.publish(&topic, b"lost", 1, false).await?;
    sub.nothing().await?;
    sub.disconnect().await?;

    publisher.publish(&topic, b"lost too", 1, false).await?;
    let (mut sub, present) =
        Client::connect(t.addr, Connect::new(&t.id("sub")).clean(false)).await?;
    ensure!(!present, "a clean session's state was kept [MQTT-3.1.2-6]");
    sub.nothing().await?;
    sub.disconnect().await?;
    forget_session(&t, "sub").await?;
    publisher.disconnect().await
}
