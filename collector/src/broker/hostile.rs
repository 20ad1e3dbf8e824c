//! Clients that misbehave against the embedded broker (issue #20): none may crash the router,
//! and what a client leaves behind is let go.

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{self, Packet as In};
use rumqttc::mqttbytes::QoS;
use rumqttd::protocol::{Packet, Publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{connect, start, Pipe, Running};
use crate::config::Config;

/// A raw MQTT 3.1.1 client on a connection handed to rumqttd.
pub(super) struct Raw {
    stream: Pipe,
    buf: BytesMut,
}

impl Raw {
    /// Connects as `id` and waits for the CONNACK (none within 5 s: the router is gone).
    pub(super) async fn connect(running: &Running, id: &str, clean: bool) -> Raw {
        Raw::connect_session(running, id, clean).await.0
    }

    /// [`Raw::connect`], and whether the broker had a session for the client.
    pub(super) async fn connect_session(running: &Running, id: &str, clean: bool) -> (Raw, bool) {
        let mut c = v4::Connect::new(id);
        c.keep_alive = 30;
        c.clean_session = clean;
        let mut raw = Raw {
            stream: connect(&running.handoff).expect("the broker takes connections"),
            buf: BytesMut::new(),
        };
        raw.send(|b| c.write(b)).await;
        match raw.next().await {
            Some(In::ConnAck(ack)) => (raw, ack.session_present),
            other => panic!("{id}: no CONNACK within 5 s (the router is gone?): {other:?}"),
        }
    }

    /// Writes one packet.
    pub(super) async fn send(
        &mut self,
        write: impl FnOnce(&mut BytesMut) -> Result<usize, rumqttc::mqttbytes::Error>,
    ) {
        let mut out = BytesMut::new();
        write(&mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Subscribes to `filters` (one SUBSCRIBE) and waits for the SUBACK.
    pub(super) async fn subscribe(&mut self, filters: &[String], qos: QoS) {
        let mut s = v4::Subscribe::new_many(
            filters
                .iter()
                .map(|f| v4::SubscribeFilter::new(f.clone(), qos)),
        );
        s.pkid = 1;
        self.send(|b| s.write(b)).await;
        loop {
            match self.next().await {
                Some(In::SubAck(_)) => return,
                Some(_) => {}
                None => panic!("no SUBACK"),
            }
        }
    }

    /// The next packet within 5 s; `None` at a timeout or the end of the stream.
    pub(super) async fn next(&mut self) -> Option<In> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match In::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    let mut more = [0u8; 4096];
                    let k = tokio::time::timeout_at(deadline, self.stream.read(&mut more))
                        .await
                        .ok()?
                        .ok()?;
                    if k == 0 {
                        return None;
                    }
                    self.buf.extend_from_slice(&more[..k]);
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// The next PUBLISH's payload, not acknowledged.
    pub(super) async fn next_publish(&mut self) -> Option<v4::Publish> {
        loop {
            match self.next().await? {
                In::Publish(p) => return Some(p),
                _ => continue,
            }
        }
    }
}

/// Starts a broker with a data directory of its own, named for the test.
pub(super) async fn broker(name: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("ember-broker-{name}-{}", std::process::id()));
    start(&Config::ephemeral(dir))
        .await
        .expect("the broker starts")
}

/// Publishes `payload` on `topic` as the collector's link.
pub(super) async fn publish(running: &mut Running, topic: &str, payload: &[u8]) {
    let p = Publish::new(topic.as_bytes().to_vec(), payload.to_vec(), false);
    running
        .link_tx
        .send(Packet::Publish(p, None))
        .await
        .unwrap();
}

/// Issue #20, finding 1: a persistent session that is a shared subscription group's last
/// member, leaving with a QoS 1 message unacknowledged, made the router panic ("group must
/// exists") and the collector die. Now the router lives on, and the session, back, rejoins
/// its group and gets the message again.
#[tokio::test]
async fn issue_20_a_shared_subscriber_leaving_unacked_does_not_crash_the_router() {
    let running = broker("shared-unacked").await;
    // Published at QoS 1 by a client: a subscriber gets the lower of the publish's and its
    // subscription's QoS [MQTT-3.8.4-6], and the collector's link publishes at QoS 0.
    let mut publisher = Raw::connect(&running, "shared-pub", true).await;
    let mut pkid = 0;
    let mut publish = |payload: &'static [u8]| {
        pkid += 1;
        let mut p = v4::Publish::new("ember/v1/h1/sample", QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p
    };
    let filter = "$share/g/ember/v1/+/sample".to_string();
    let mut a = Raw::connect(&running, "shared-a", false).await;
    a.subscribe(std::slice::from_ref(&filter), QoS::AtLeastOnce)
        .await;
    let p = publish(b"one");
    publisher.send(|b| p.write(b)).await;
    let p = a
        .next_publish()
        .await
        .expect("the shared subscriber gets it");
    assert_eq!(&p.payload[..], b"one");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    drop(a); // never acknowledged
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The router still answers.
    let _c = Raw::connect(&running, "after", true).await;
    // The session comes back in its group: the unacknowledged message again, then new ones.
    let mut a = Raw::connect(&running, "shared-a", false).await;
    let p = publish(b"two");
    publisher.send(|b| p.write(b)).await;
    assert_eq!(acked_until(&mut a, b"two").await, [&b"one"[..], b"two"]);
}

/// Issue #20: a topic starting with a character of more than one byte (`é/x`, valid UTF-8)
/// made rumqttd's topic matching slice inside the character and panic on the router's thread.
#[tokio::test]
async fn issue_20_a_topic_starting_with_a_wide_character_does_not_crash_the_router() {
    let running = broker("wide-topic").await;
    let mut sub = Raw::connect(&running, "wide-sub", true).await;
    sub.subscribe(&["+/x".into()], QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(&running, "wide-pub", true).await;
    let p = v4::Publish::new("é/x", QoS::AtMostOnce, "wide");
    publisher.send(|b| p.write(b)).await;
    let got = sub
        .next_publish()
        .await
        .expect("delivered, the router alive");
    assert_eq!(got.topic, "é/x");
}

/// Receives and acknowledges publishes until one carries `last`; their payloads.
async fn acked_until(client: &mut Raw, last: &[u8]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(p) = client.next_publish().await {
        if p.qos == QoS::AtLeastOnce {
            client.send(|b| v4::PubAck::new(p.pkid).write(b)).await;
        }
        got.push(p.payload.to_vec());
        if &got[got.len() - 1][..] == last {
            break;
        }
    }
    got
}

/// A shared subscription group is its name and its filter: `$share/g/a` and `$share/g/b` are
/// two groups. rumqttd 0.20 keyed groups by name only, so the two shared one cursor, each
/// reading the other's log at the other's offsets (here: the second filter's first message
/// was skipped, the cursor being past it), and one member leaving took the other's out too.
#[tokio::test]
async fn issue_20_shared_groups_of_one_name_on_two_filters_are_two_groups() {
    let mut running = broker("shared-two-filters").await;
    let mut a = Raw::connect(&running, "group-a", true).await;
    a.subscribe(&["$share/g/ember/v1/+/sample".into()], QoS::AtLeastOnce)
        .await;
    let mut b = Raw::connect(&running, "group-b", true).await;
    b.subscribe(&["$share/g/other/#".into()], QoS::AtLeastOnce)
        .await;
    for i in 0..3u8 {
        publish(&mut running, "other/x", &[b'0' + i]).await;
    }
    assert_eq!(acked_until(&mut b, b"2").await, [b"0", b"1", b"2"]);
    publish(&mut running, "ember/v1/h1/sample", b"one").await;
    assert_eq!(acked_until(&mut a, b"one").await, [b"one"]);
}

/// Issue #20, finding 0: a connection that ended before the router registered it (here: a
/// client id the router refuses; in a connect storm: a router too slow to answer) left its
/// last-will entry behind, and the next connection with that id unwrapped a send to it and
/// panicked rumqttd's server thread (`server/broker.rs:615`), taking every connection down.
#[tokio::test]
async fn issue_20_a_connection_the_router_never_registered_does_not_crash_the_server() {
    let running = broker("stale-will").await;
    for _ in 0..2 {
        let mut c = v4::Connect::new("refused/id");
        c.keep_alive = 30;
        let mut raw = Raw {
            stream: connect(&running.handoff).expect("the broker takes connections"),
            buf: BytesMut::new(),
        };
        raw.send(|b| c.write(b)).await;
        assert!(
            raw.next().await.is_none(),
            "refused: closed without a CONNACK"
        );
    }
    let _alive = Raw::connect(&running, "after-refused", true).await;
}

/// Waits (up to 5 s) until `check` holds for the router's gauges; panics naming `what`.
pub(super) async fn gauges_until(
    running: &Running,
    what: &str,
    check: impl Fn(&rumqttd::Gauges) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check(&running.gauges) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            running.gauges
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Issue #20, finding 9: rumqttd kept an entry (~650 B) for every client id that ever
/// connected, forever, and a client with an empty id gets a new one at each connection. Now a
/// clean session leaves nothing, and persistent sessions are kept up to a bound (the broker's
/// connections, `max-connections` + headroom), the longest gone evicted first.
#[tokio::test]
async fn issue_20_a_churn_of_client_ids_leaves_the_saved_sessions_bounded() {
    let dir = std::env::temp_dir().join(format!("ember-broker-churn-{}", std::process::id()));
    let mut config = Config::ephemeral(dir);
    config.max_connections = 10;
    let bound = config.max_connections + super::ROUTER_HEADROOM;
    let running = start(&config).await.expect("the broker starts");
    for (clean, n) in [(true, 200), (false, 100)] {
        for i in 0..n {
            let id = if clean {
                String::new() // rumqttd names it anew each time
            } else {
                format!("churn-{i}")
            };
            let mut c = Raw::connect(&running, &id, clean).await;
            c.subscribe(&[format!("churn/{i}")], QoS::AtLeastOnce).await;
            c.send(|b| v4::Disconnect.write(b)).await;
            // One at a time, as the gate admits them: the router holds `bound` at most.
            gauges_until(&running, "the churned connection gone", |g| {
                g.connections() <= 1 // the collector's link
            })
            .await;
        }
        let saved = running.gauges.saved_sessions();
        if clean {
            assert_eq!(saved, 0, "{n} clean sessions left entries");
        } else {
            assert_eq!(saved, bound, "{n} persistent sessions, bounded");
        }
    }
    // The newest persistent sessions are the ones kept.
    for (id, kept) in [("churn-99", true), ("churn-0", false)] {
        let (mut back, present) = Raw::connect_session(&running, id, false).await;
        assert_eq!(present, kept, "{id}");
        back.send(|b| v4::Disconnect.write(b)).await;
        gauges_until(&running, "gone", |g| g.connections() <= 1).await;
    }
}

/// A client that closes its connection right after its DISCONNECT: its link reported the
/// closing to the router after the router had dropped the connection for the DISCONNECT and
/// given its slot to the next client, whose connection the router then closed (rumqttd 0.20:
/// `Event::Disconnect` named a slot, not a client). Clients connecting in turn, as in a
/// connect storm, lost their connection before or just after the CONNACK.
#[tokio::test]
async fn issue_20_a_client_leaving_does_not_close_the_next_clients_connection() {
    let running = broker("slot-reuse").await;
    for i in 0..1000 {
        let mut c = Raw::connect(&running, &format!("turn-{i}"), true).await;
        c.subscribe(&[format!("turn/{i}")], QoS::AtMostOnce).await;
        c.send(|b| v4::Disconnect.write(b)).await;
    }
}

/// Issue #20, finding 2: every filter a client subscribed to kept a log in rumqttd (with room
/// reserved for 1,024 messages), its place in the router's tables and an empty entry in the
/// subscription map, for ever: 60,000 filters cost +430 MB RSS that never came back. Now a
/// filter's log goes with its last subscriber (an UNSUBSCRIBE, a clean session leaving, a
/// saved session evicted or replaced by a clean one); a persistent session keeps its own.
#[tokio::test]
async fn issue_20_filters_subscribed_are_let_go_when_their_subscribers_leave() {
    let running = broker("filters").await;
    let base = running.gauges.filters();
    let filters = |who: &str, chunk: usize| -> Vec<String> {
        (0..100)
            .map(|i| match i {
                0 => format!("{who}/{chunk}/+/w"),
                1 => format!("$share/g/{who}/{chunk}/x"),
                _ => format!("{who}/{chunk}/{i}"),
            })
            .collect()
    };
    let mut many = Raw::connect(&running, "many", true).await;
    for chunk in 0..100 {
        many.subscribe(&filters("many", chunk), QoS::AtLeastOnce)
            .await;
    }
    gauges_until(&running, "10,000 filters", |g| g.filters() == base + 10_000).await;
    // A publish on one of them, so that the topic's cached filters are dropped too.
    let mut publisher = Raw::connect(&running, "one-publish", true).await;
    let p = v4::Publish::new("many/0/7", QoS::AtMostOnce, "x");
    publisher.send(|b| p.write(b)).await;
    let _ = many.next_publish().await.expect("subscribed");
    let mut u = v4::Unsubscribe::new("many/0/7");
    u.pkid = 2;
    many.send(|b| u.write(b)).await;
    gauges_until(&running, "one unsubscribed", |g| {
        g.filters() == base + 9_999
    })
    .await;
    many.send(|b| v4::Disconnect.write(b)).await;
    gauges_until(&running, "all let go", |g| g.filters() == base).await;

    // A persistent session keeps its filters while it is away, until a clean one replaces it.
    let mut away = Raw::connect(&running, "away", false).await;
    away.subscribe(&filters("away", 0), QoS::AtLeastOnce).await;
    away.send(|b| v4::Disconnect.write(b)).await;
    gauges_until(&running, "saved", |g| g.connections() <= 2).await;
    assert_eq!(running.gauges.filters(), base + 100, "kept for the session");
    let (mut back, present) = Raw::connect_session(&running, "away", false).await;
    assert!(present);
    publisher
        .send(|b| v4::Publish::new("away/0/9", QoS::AtMostOnce, "y").write(b))
        .await;
    assert_eq!(
        &back.next_publish().await.expect("still subscribed").payload[..],
        b"y"
    );
    back.send(|b| v4::Disconnect.write(b)).await;
    gauges_until(&running, "saved again", |g| g.connections() <= 2).await;
    let clean = Raw::connect(&running, "away", true).await;
    gauges_until(&running, "replaced by a clean session", |g| {
        g.filters() == base
    })
    .await;
    drop(clean);
}
