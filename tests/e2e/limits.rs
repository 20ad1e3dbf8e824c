//! The collector at its connection limit (issue #9): clients past `max-connections` are refused
//! with a CONNACK, refused clients connecting again (as agents do) and client ids the broker
//! cannot take do not stop the broker, and a well-behaved agent still gets its samples through.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::Running;
use crate::support::{eventually, spawn_agent};

/// An MQTT 3.1.1 CONNECT: clean session, keep-alive 60 s, no will, no login.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut p = vec![0x10, (10 + 2 + id.len()) as u8];
    p.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id);
    p
}

/// How a connection attempt ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// CONNACK 0: the stream stays open.
    Admitted,
    /// CONNACK with this non-zero return code.
    Refused(u8),
    /// Closed (or no answer within 5 s) without a CONNACK.
    Closed,
}

fn try_connect(broker: SocketAddr, client_id: &str) -> (Outcome, Option<TcpStream>) {
    let mut s = TcpStream::connect_timeout(&broker, Duration::from_secs(5)).expect("TCP connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&connect_packet(client_id)).unwrap();
    let mut ack = [0u8; 4];
    match s.read_exact(&mut ack) {
        Ok(()) if ack == [0x20, 2, 0, 0] => (Outcome::Admitted, Some(s)),
        Ok(()) if ack[..3] == [0x20, 2, 0] => (Outcome::Refused(ack[3]), None),
        _ => (Outcome::Closed, None),
    }
}

async fn attempt(broker: SocketAddr, client_id: &str) -> (Outcome, Option<TcpStream>) {
    let id = client_id.to_string();
    tokio::task::spawn_blocking(move || try_connect(broker, &id))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_refused_clients_reconnecting_do_not_stop_the_broker() {
    const MAX: usize = 10;
    let c = Running::start(|cfg| cfg.max_connections = MAX).await;
    let broker = c.collector.mqtt_addr;

    let mut open = Vec::new();
    let mut refused = Vec::new();
    for i in 0..MAX + 5 {
        let id = format!("limit-{i:02}");
        match attempt(broker, &id).await {
            (Outcome::Admitted, Some(s)) => open.push(s),
            (outcome, _) => refused.push((id, outcome)),
        }
    }
    assert_eq!(open.len(), MAX, "max-connections clients are admitted");
    for (id, outcome) in &refused {
        // 3: "server unavailable", the MQTT 3.1.1 answer for a full server.
        assert_eq!(*outcome, Outcome::Refused(3), "{id}");
    }

    // Every refused id connects again (an agent's reconnect), twice, while the server is full.
    for _ in 0..2 {
        for (id, _) in &refused {
            assert_eq!(attempt(broker, id).await.0, Outcome::Refused(3), "{id}");
        }
    }
    // Client ids rumqttd's router cannot take ("+$#/" in them), twice each: refused, 2
    // "identifier rejected", rather than left to the router.
    open.pop();
    for id in ["a/b", "x+y", "#", "$sys"] {
        for _ in 0..2 {
            assert_eq!(attempt(broker, id).await.0, Outcome::Refused(2), "{id}");
        }
    }

    let (status, health) = c.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"]["refused_id"], 8, "{health}");
    assert!(
        health["connections"]["refused_full"].as_u64().unwrap() >= 3 * refused.len() as u64,
        "{health}"
    );

    // With room again, a well-behaved agent connects and its samples are stored.
    drop(open);
    let (stop, agent) = spawn_agent(c.agent_config("after-limit", "200ms"));
    eventually(
        Duration::from_secs(15),
        "samples of a new agent",
        || async {
            let (_, body) = c.get("/api/hosts/after-limit/samples").await;
            (body["samples"].as_array()?.len() >= 3).then_some(())
        },
    )
    .await;
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}

/// Publishers keeping `window` QoS 1 samples in flight for `secs`: (acknowledged per client).
/// With `password`, each logs in as its host's account.
async fn saturate(
    broker: SocketAddr,
    clients: usize,
    window: usize,
    secs: u64,
    password: Option<&'static str>,
) -> Vec<u64> {
    use ember_agent::simulate::Synth;
    use ember_wire::topic::{self, Kind};
    use ember_wire::{Envelope, HostId, Message, MAX_ENCODED_LEN};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let mut tasks = Vec::new();
    for i in 0..clients {
        tasks.push(tokio::spawn(async move {
            let host = HostId::new(&format!("sat-{i:02}")).unwrap();
            let mut options = MqttOptions::new(format!("sat-{i:02}"), "127.0.0.1", broker.port());
            options.set_keep_alive(Duration::from_secs(30));
            options.set_inflight(window as u16);
            if let Some(p) = password {
                options.set_credentials(host.as_str(), p);
            }
            let (client, mut events) = AsyncClient::new(options, window);
            let acked = Arc::new(AtomicU64::new(0));
            let poll = tokio::spawn({
                let acked = acked.clone();
                async move {
                    while let Ok(e) = events.poll().await {
                        if let Event::Incoming(Packet::PubAck(_)) = e {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            let mut synth = Synth::new(i as u64 + 1, 0, Duration::from_secs(1));
            let t = topic::topic(&host, Kind::Sample).to_string();
            let end = tokio::time::Instant::now() + Duration::from_secs(secs);
            let mut sent = 0u64;
            while tokio::time::Instant::now() < end {
                let mut buf = [0u8; MAX_ENCODED_LEN];
                let message = Message::Sample(synth.sample());
                let bytes = Envelope::new(host.clone(), message)
                    .encode(&mut buf)
                    .unwrap()
                    .to_vec();
                client
                    .publish(&t, QoS::AtLeastOnce, false, bytes)
                    .await
                    .unwrap();
                sent += 1;
            }
            // Every publish sent is acknowledged in the end.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.load(Ordering::Relaxed) < sent && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = client.disconnect().await;
            poll.abort();
            acked.load(Ordering::Relaxed)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_saturating_publishers_lose_no_acknowledged_sample() {
    let c = Running::start(|_| {}).await;
    let acked: u64 = saturate(c.collector.mqtt_addr, 20, 10, 4, None)
        .await
        .iter()
        .sum();
    all_stored(&c, acked).await;
}

/// The same through the gate's checked path: every client an authenticated account, every
/// frame parsed and checked against it (issue #8), and still nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_accounts_saturating_publishers_lose_no_acknowledged_sample() {
    const PASSWORD: &str = "saturate-password";
    let hash = ember_collector::access::hash_password(PASSWORD, &[7; 16]);
    let c = Running::start(move |config| {
        config.mqtt.users = (0..20)
            .map(|i| {
                let user = ember_collector::config::User {
                    password_hash: Some(hash.clone()),
                    role: ember_collector::access::Role::Agent,
                };
                (format!("sat-{i:02}"), user)
            })
            .collect();
        // Out of the way: this is about the broker, not about each client's rate.
        config.mqtt.max_messages_per_second = 1_000_000;
        config.mqtt.max_burst = 1_000_000;
    })
    .await;
    let acked: u64 = saturate(c.collector.mqtt_addr, 20, 10, 4, Some(PASSWORD))
        .await
        .iter()
        .sum();
    let health = all_stored(&c, acked).await;
    assert_eq!(health["connections"]["authenticated"], true, "{health}");
    assert_eq!(health["connections"]["accepted"], 20, "{health}");
    assert_eq!(health["connections"]["spoofed"], 0, "{health}");
}

/// Waits until `acked` samples are stored, and checks that none was dropped or doubled.
async fn all_stored(c: &Running, acked: u64) -> serde_json::Value {
    assert!(acked > 1000, "only {acked} samples acknowledged");
    // Everything the broker acknowledged is stored, and nothing was dropped on the way.
    let health = eventually(
        Duration::from_secs(30),
        "all acknowledged samples stored",
        || async {
            let (_, health) = c.get("/api/health").await;
            (health["ingest"]["samples"].as_u64()? >= acked).then_some(health)
        },
    )
    .await;
    assert_eq!(health["ingest"]["samples"], acked, "{health}");
    assert_eq!(health["ingest"]["broker_dropped"], 0, "{health}");
    assert_eq!(health["ingest"]["duplicates"], 0, "{health}");
    health
}

/// MQTT 3.1.1 and 5 are served (5: `mqtt5.rs`); an MQTT 3.1 client gets CONNACK 1
/// "unacceptable protocol version", as the specification asks, not a dropped socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_versions_are_told_so() {
    let c = Running::start(|_| {}).await;
    let broker = c.collector.mqtt_addr;
    let v5: &[u8] = &[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 2, b'v', b'5',
    ];
    let v3: &[u8] = &[
        0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 2, b'v', b'3',
    ];
    for packet in [v5, v3] {
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect_timeout(&broker, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(packet).unwrap();
            let mut ack = [0u8; 4];
            s.read_exact(&mut ack).map(|()| ack).ok()
        })
        .await
        .unwrap();
        let ack = answer.unwrap_or_else(|| panic!("no CONNACK to {packet:02x?}"));
        if packet[8] == 5 {
            // MQTT 5's CONNACK: flags, reason 0 (success), then its properties.
            assert_eq!((ack[0], ack[2], ack[3]), (0x20, 0, 0), "{ack:02x?}");
        } else {
            assert_eq!(ack, [0x20, 2, 0, 1], "{packet:02x?}");
        }
    }
    let health = eventually(Duration::from_secs(10), "both closed", || async {
        let (_, health) = c.get("/api/health").await;
        (health["connections"]["open"] == 0).then_some(health)
    })
    .await;
    assert_eq!(health["connections"]["refused_protocol"], 1, "{health}");
}
