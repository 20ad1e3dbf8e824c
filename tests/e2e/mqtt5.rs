//! Issue #21, MQTT 5.0: real MQTT 5 clients (Debian's `mosquitto_sub`/`mosquitto_pub -V
//! mqttv5`, rumqttc's v5 client) against the embedded broker behind the gate: the CONNACK's
//! properties, the bridge's JSON state read, messages both ways.

use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

use crate::harness::Running;
use crate::support::{eventually, spawn_agent};

/// A v5 client of the collector on `port`.
pub fn options5(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// Polls until the CONNACK (or the connection's error).
pub async fn connack(events: &mut EventLoop) -> Result<ConnAck, rumqttc::v5::ConnectionError> {
    loop {
        if let Event::Incoming(Packet::ConnAck(ack)) = events.poll().await? {
            return Ok(ack);
        }
    }
}

/// The next publish on `topic`, within `timeout`: its payload.
pub async fn next_publish5(events: &mut EventLoop, topic: &str, timeout: Duration) -> Vec<u8> {
    tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic.as_bytes() => {
                    return p.payload.to_vec();
                }
                Ok(_) => {}
                Err(e) => panic!("the v5 connection failed: {e:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {topic} within {timeout:?}"))
}

/// Runs a Mosquitto client, speaking MQTT 5 to `port` on loopback, to its end.
pub fn mosquitto5(bin: &str, port: u16, args: &[&str]) -> std::process::Output {
    let port = port.to_string();
    Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} (Debian: apt-get install mosquitto-clients): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_clients_read_the_json_state_and_exchange_messages() {
    let c = Running::start(|cfg| cfg.bridge.state_every = Duration::ZERO).await;
    let (_stop, _agent) = spawn_agent(c.agent_config("v5-host", "200ms"));
    eventually(Duration::from_secs(10), "v5-host with samples", || async {
        let h = c.get("/api/hosts/v5-host").await.1;
        (h["samples"].as_u64()? >= 2 && h["info"].is_object()).then_some(())
    })
    .await;
    let port = c.mqtt_port();

    // Mosquitto's client, speaking MQTT 5, reads the bridge's retained JSON state.
    let sub = mosquitto5(
        "mosquitto_sub",
        port,
        &["-t", "ember/json/v5-host", "-C", "1", "-W", "10"],
    );
    let out = String::from_utf8_lossy(&sub.stdout);
    assert!(
        sub.status.success() && out.contains("\"host\":\"v5-host\""),
        "mosquitto_sub -V mqttv5: {out} {}",
        String::from_utf8_lossy(&sub.stderr)
    );

    // rumqttc's v5 client: the CONNACK says what is served.
    let (client, mut events) = AsyncClient::new(options5("v5-reader", c.mqtt_port()), 10);
    let ack = connack(&mut events).await.expect("a v5 CONNACK");
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.receive_max, Some(100), "{props:?}");
    let max = props.max_packet_size.expect("a maximum packet size");
    assert!(max > 4096 && max < 1 << 24, "{max}");
    assert_eq!(props.topic_alias_max, Some(0), "topic aliases are refused");
    assert_eq!(props.retain_available, Some(1));
    assert_eq!(props.wildcard_subscription_available, Some(1));
    assert_eq!(props.subscription_identifiers_available, Some(0));
    assert_eq!(props.shared_subscription_available, Some(1));
    assert_eq!(props.assigned_client_identifier, None, "the id was given");
    client
        .subscribe("ember/json/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let state = next_publish5(&mut events, "ember/json/v5-host", Duration::from_secs(10)).await;
    let state: serde_json::Value = serde_json::from_slice(&state).expect("JSON state");
    assert_eq!(state["host"], "v5-host");

    // What `mosquitto_pub -V mqttv5` publishes, the v5 client reads.
    client.subscribe("v5/test", QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = tokio::task::spawn_blocking(move || {
        mosquitto5(
            "mosquitto_pub",
            port,
            &["-q", "1", "-t", "v5/test", "-m", "hello five"],
        )
    });
    assert_eq!(
        next_publish5(&mut events, "v5/test", Duration::from_secs(10)).await,
        b"hello five"
    );
    let published = publisher.await.unwrap();
    assert!(
        published.status.success(),
        "mosquitto_pub -V mqttv5: {}",
        String::from_utf8_lossy(&published.stderr)
    );

    // Shared subscriptions, as the CONNACK says: each message to one of the group.
    let mut group = Vec::new();
    for i in 0..2 {
        let (member, mut events) =
            AsyncClient::new(options5(&format!("v5-share-{i}"), c.mqtt_port()), 10);
        connack(&mut events).await.expect("a v5 CONNACK");
        member
            .subscribe("$share/g/v5/shared", QoS::AtLeastOnce)
            .await
            .unwrap();
        group.push((member, events));
    }
    let mut counts = Vec::new();
    let mut tasks = Vec::new();
    for (member, mut events) in group {
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let _keep = member;
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    if let Ok(Event::Incoming(Packet::Publish(_))) = events.poll().await {
                        n += 1;
                    }
                }
            })
            .await;
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sender = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for i in 0..10 {
        client
            .publish("v5/shared", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
    }
    for t in tasks {
        counts.push(t.await.unwrap());
    }
    assert_eq!(counts.iter().sum::<u32>(), 10, "{counts:?}");
    assert!(
        counts.iter().all(|n| *n > 0),
        "shared, not copied: {counts:?}"
    );
    sender.abort();
}
