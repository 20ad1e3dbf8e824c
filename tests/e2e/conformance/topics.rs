//! Topic filters: `+`, `#`, and topics beginning with `$`.

use anyhow::{ensure, Result};

use super::client::{Client, Packet, QUIET};
use super::Target;

/// Subscribes one client to each filter and publishes each topic (QoS 1, in order); returns,
/// per filter, the topics it received.
async fn deliveries(t: &Target, filters: &[&str], topics: &[&str]) -> Result<Vec<Vec<String>>> {
    let mut subs = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let mut c = Client::new(t.addr, &t.id(&format!("sub{i}"))).await?;
        c.sub(f, 1).await?;
        subs.push(c);
    }
    let mut publisher = Client::new(t.addr, &t.id("pub")).await?;
    for topic in topics {
        publisher.publish(topic, b"x", 1, false).await?;
    }
    // A marker after them: once it arrived, everything before it has.
    publisher.publish(&t.topic("end"), b"end", 1, false).await?;
    let mut got = Vec::new();
    for c in &mut subs {
        let mut topics = Vec::new();
        // Until the marker, or the quiet time for a filter that does not match it.
        while let Ok(p) = c.read(QUIET).await {
            if let Packet::Publish(p) = p {
                c.ack(&p).await?;
                if p.topic == t.topic("end") {
                    break;
                }
                topics.push(p.topic);
            }
        }
        got.push(topics);
    }
    for c in subs {
        c.disconnect().await?;
    }
    publisher.disconnect().await?;
    Ok(got)
}

/// [MQTT-4.7.1-3] `+` matches exactly one level, an empty one too.
pub async fn single_level_wildcard(t: Target) -> Result<()> {
    let (a, ab, empty, deep) = (
        t.topic("s/a"),
        t.topic("s"),
        t.topic("s/"),
        t.topic("s/a/b"),
    );
    let got = deliveries(&t, &[&t.topic("s/+")], &[&a, &ab, &empty, &deep]).await?;
    ensure!(got[0] == [a, empty], "`s/+` got {:?}", got[0]);
    Ok(())
}

/// [MQTT-4.7.1-2] `#` matches the parent level and any number of levels below it: `sport/#`
/// matches `sport`, `sport/tennis` and `sport/tennis/player1`, not `sportier`.
pub async fn multi_level_wildcard(t: Target) -> Result<()> {
    let sport = t.topic("sport");
    let topics = [
        sport.clone(),
        t.topic("sport/tennis"),
        t.topic("sport/tennis/player1"),
        t.topic("sportier"),
    ];
    let filter = format!("{sport}/#");
    let got = deliveries(&t, &[&filter], &topics.each_ref().map(|s| s.as_str())).await?;
    ensure!(got[0] == topics[..3], "`{filter}` got {:?}", got[0]);
    Ok(())
}

/// [MQTT-4.7.2-1] Filters starting with a wildcard (`#`, `+/...`) do not match topics beginning
/// with `$`; a filter starting with the same `$` level does (4.7.2, non-normative).
pub async fn dollar_topics(t: Target) -> Result<()> {
    let dollar = format!("$conf-{}/x", t.case);
    let plain = t.topic("x");
    // `#` also gets every other case's messages and the broker's own retained ones: only the
    // `$` topics it gets matter.
    let filters = ["#", "+/x", &format!("$conf-{}/#", t.case), &dollar];
    let got = deliveries(&t, &filters, &[&dollar, &plain]).await?;
    let dollars =
        |i: usize| -> Vec<&String> { got[i].iter().filter(|t| t.starts_with('$')).collect() };
    ensure!(dollars(0).is_empty(), "`#` matched {:?}", dollars(0));
    ensure!(dollars(1).is_empty(), "`+/x` matched {:?}", dollars(1));
    ensure!(got[2] == [dollar.clone()], "`$conf-../#` got {:?}", got[2]);
    ensure!(got[3] == [dollar.clone()], "`{dollar}` got {:?}", got[3]);
    Ok(())
}

/// `$SYS/#`: Mosquitto publishes its statistics there (retained ones arrive on subscribing);
/// Ember has none (they are in `/api/health` and `/metrics`) and grants the subscription
/// ([`super::Broker::has_sys_topics`]; docs/mqtt.md).
pub async fn sys_topics(t: Target) -> Result<()> {
    let mut c = Client::new(t.addr, &t.id("a")).await?;
    c.sub("$SYS/#", 0).await?;
    let got = c.until_quiet().await?;
    ensure!(
        got.iter().all(|p| p.topic.starts_with("$SYS/")),
        "{got:?} on $SYS/#"
    );
    if t.broker.has_sys_topics() {
        ensure!(!got.is_empty(), "nothing on $SYS/#");
    } else {
        ensure!(got.is_empty(), "{got:?} on $SYS/#");
    }
    c.disconnect().await
}
