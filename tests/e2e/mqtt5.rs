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

    // paho-mqtt (PyPI), MQTT 5 and 3.1.1, reads it too.
    for protocol in ["5", "311"] {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/paho_client.py");
        let paho = Command::new("python3")
            .args([script, &port.to_string(), protocol, "ember/json/v5-host"])
            .output()
            .expect("python3 (with paho-mqtt: pip install paho-mqtt)");
        let out = String::from_utf8_lossy(&paho.stdout);
        assert!(
            paho.status.success()
                && out.contains("connack 0")
                && out.contains("message ember/json/v5-host {"),
            "paho-mqtt {protocol}: {out} {}",
            String::from_utf8_lossy(&paho.stderr)
        );
        if protocol == "5" {
            assert!(out.contains("TopicAliasMaximum 0"), "{out}");
        }
    }

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
    // Subscribed (SUBACK read) before anything is published.
    subscribed(&client, &mut events, "v5/test").await;
    // At QoS 1 and 2 (the CONNACK states no maximum QoS: 2), both ways.
    client.subscribe("v5/q2", QoS::ExactlyOnce).await.unwrap();
    incoming(&mut events, |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    for (qos, topic) in [("1", "v5/test"), ("2", "v5/q2")] {
        let publisher = tokio::task::spawn_blocking(move || {
            mosquitto5(
                "mosquitto_pub",
                port,
                &["-q", qos, "-t", topic, "-m", "hello five"],
            )
        });
        assert_eq!(
            next_publish5(&mut events, topic, Duration::from_secs(10)).await,
            b"hello five",
            "QoS {qos}"
        );
        let published = publisher.await.unwrap();
        assert!(
            published.status.success(),
            "mosquitto_pub -V mqttv5 -q {qos}: {}",
            String::from_utf8_lossy(&published.stderr)
        );
    }

    // Shared subscriptions, as the CONNACK says: each message to one of the group.
    let mut group = Vec::new();
    for i in 0..2 {
        let (member, mut events) =
            AsyncClient::new(options5(&format!("v5-share-{i}"), c.mqtt_port()), 10);
        connack(&mut events).await.expect("a v5 CONNACK");
        subscribed(&member, &mut events, "$share/g/v5/shared").await;
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

/// Connects a v5 client and returns its CONNACK's code (or the connection's error).
async fn connect5(o: MqttOptions) -> Result<(AsyncClient, EventLoop), String> {
    let (client, mut events) = AsyncClient::new(o, 10);
    match connack(&mut events).await {
        Ok(_) => Ok((client, events)),
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Err(format!("{code:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
async fn subscribed(client: &AsyncClient, events: &mut EventLoop, filter: &str) {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    incoming(events, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
}

/// Polls `events` until `pick` takes an incoming packet.
async fn incoming<T>(events: &mut EventLoop, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(p)) => {
                    if let Some(t) = pick(p) {
                        return t;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("the v5 connection failed: {e:?}"),
            }
        }
    })
    .await
    .expect("the packet within 10 s")
}

/// With accounts, MQTT 5 clients meet the same authentication, topic rules, limits on
/// connections per account and on packet size as 3.1.1 clients, refused with MQTT 5's reason
/// codes; over TLS too (Mosquitto's clients).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_with_accounts_meets_the_same_rules() {
    use ember_collector::access::Role;
    use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};
    let pki =
        crate::security::Pki::new(&[("pi5", Role::Agent, false), ("dash5", Role::Reader, false)]);
    let mut mqtt = pki.mqtt(true);
    mqtt.max_connections_per_client = 1;
    let c = Running::start(|c| {
        c.mqtt = mqtt;
        c.max_payload = 4096;
    })
    .await;
    let port = c.mqtt_port();
    let login = |id: &str, user: &str, password: &str| {
        let mut o = options5(id, port);
        o.set_credentials(user, password);
        o
    };
    assert_eq!(
        connect5(options5("anon", port)).await.err().as_deref(),
        Some("NotAuthorized")
    );
    assert_eq!(
        connect5(login("x", "pi5", "wrong")).await.err().as_deref(),
        Some("BadUserNamePassword")
    );
    let (pi, mut pi_events) = connect5(login("pi5", "pi5", pki.password("pi5")))
        .await
        .expect("pi5 connects");
    assert_eq!(
        connect5(login("pi5b", "pi5", pki.password("pi5")))
            .await
            .err()
            .as_deref(),
        Some("QuotaExceeded"),
        "one connection per account"
    );

    // Another host's topic: "not authorized" in the PUBACK; its own: success.
    for (topic, reason) in [
        ("ember/v1/other/status", PubAckReason::NotAuthorized),
        ("ember/v1/pi5/status", PubAckReason::Success),
    ] {
        pi.publish(topic, QoS::AtLeastOnce, true, vec![0])
            .await
            .unwrap();
        let got = incoming(&mut pi_events, |p| match p {
            Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
        assert_eq!(got, reason, "{topic}");
    }
    // A subscription outside its host: refused in the SUBACK, the connection stays.
    pi.subscribe("#", QoS::AtMostOnce).await.unwrap();
    let codes = incoming(&mut pi_events, |p| match p {
        Packet::SubAck(a) => Some(a.return_codes),
        _ => None,
    })
    .await;
    assert_eq!(codes, [SubscribeReasonCode::NotAuthorized]);

    // A reader reads pi5's retained status.
    let (dash, mut dash_events) = connect5(login("dash", "dash5", pki.password("dash5")))
        .await
        .expect("the reader connects");
    dash.subscribe("ember/v1/pi5/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        next_publish5(
            &mut dash_events,
            "ember/v1/pi5/status",
            Duration::from_secs(10)
        )
        .await,
        [0]
    );

    // The reader's one connection closes; a packet above the maximum on its next one:
    // DISCONNECT 0x95 ("packet too large").
    drop((dash, dash_events));
    tokio::time::sleep(Duration::from_millis(500)).await;
    use rumqttc::v5::mqttbytes::v5::{Connect, Login};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut out = bytes::BytesMut::new();
    let connect = Connect {
        keep_alive: 30,
        client_id: "big".into(),
        clean_start: true,
        properties: None,
    };
    let login = Some(Login::new("dash5", pki.password("dash5")));
    connect.write(&None, &login, &mut out).unwrap();
    raw.write_all(&out).await.unwrap();
    let mut ack = [0u8; 64];
    let n = raw.read(&mut ack).await.unwrap();
    assert_eq!(&ack[..4], [0x20, n as u8 - 2, 0, 0], "accepted");
    // Up to the CONNACK's maximum packet size (`max-payload`, 4096, as a remaining length,
    // which is rumqttd's own limit too: nothing the gate takes is refused behind it): taken.
    let connack = bytes::Bytes::copy_from_slice(&ack[..n]);
    let header = rumqttc::v5::mqttbytes::v5::check(connack.iter(), None).unwrap();
    let connack = ConnAck::read(header, connack).unwrap();
    let max = connack.properties.unwrap().max_packet_size.unwrap() as usize;
    assert_eq!(max, 4096 + 2);
    let mut within = rumqttc::v5::mqttbytes::v5::Publish::new(
        "homeassistant/status",
        QoS::AtLeastOnce,
        vec![0; max - 2 - 3 - 2 - 20 - 2 - 1],
        None,
    );
    within.pkid = 3;
    let mut out = bytes::BytesMut::new();
    within.write(&mut out).unwrap();
    assert!(out.len() <= max && out.len() > 4000, "{}", out.len());
    raw.write_all(&out).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut ack))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        n >= 4 && ack[..4] == [0x40, ack[1], 0, 3] && (ack[1] == 2 || ack[4] == 0),
        "PUBACK, success: {:02x?}",
        &ack[..n]
    );
    let mut big = rumqttc::v5::mqttbytes::v5::Publish::new(
        "homeassistant/status",
        QoS::AtMostOnce,
        vec![0; 8000],
        None,
    );
    big.pkid = 0;
    let mut out = bytes::BytesMut::new();
    big.write(&mut out).unwrap();
    let _ = raw.write_all(&out).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert_eq!(rest, [0xe0, 2, 0x95, 0], "DISCONNECT, packet too large");
    drop(pi);
}

/// Over TLS, Mosquitto's MQTT 5 clients: a wrong password refused, the account's own topic
/// published and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_over_tls_with_mosquittos_clients() {
    use ember_collector::access::Role;
    let pki = crate::security::Pki::new(&[
        ("pi5t", Role::Agent, false),
        ("dash5t", Role::Reader, false),
    ]);
    let mqtt = pki.mqtt(false);
    assert!(mqtt.tls.is_some());
    let c = Running::start(|c| c.mqtt = mqtt).await;
    let port = c.mqtt_port().to_string();
    let ca = pki.dir.join("ca.pem");
    let tls = |user: &str, password: &str| -> Vec<String> {
        [
            "-h",
            "localhost",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "--cafile",
            ca.to_str().unwrap(),
            "-u",
            user,
            "-P",
            password,
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |bin: &str, args: Vec<String>| {
        Command::new(bin)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e}"))
    };
    let mut args = tls("pi5t", "wrong");
    args.extend(["-t", "ember/v1/pi5t/status", "-C", "1", "-W", "5"].map(String::from));
    let refused = run("mosquitto_sub", args);
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(
        !refused.status.success() && err.contains("bad user name or password"),
        "{err}"
    );

    let mut args = tls("pi5t", pki.password("pi5t"));
    args.extend(["-q", "1", "-r", "-t", "ember/v1/pi5t/status", "-m", "x"].map(String::from));
    let published = run("mosquitto_pub", args);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let mut args = tls("dash5t", pki.password("dash5t"));
    args.extend(["-t", "ember/v1/pi5t/status", "-C", "1", "-W", "10"].map(String::from));
    let read = run("mosquitto_sub", args);
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "x",
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
}

/// A publish's MQTT 5 properties reach the subscriber: user properties, content type, payload
/// format, response topic and correlation data, and the message expiry interval (counted down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_properties_pass_through_and_expired_messages_are_not_sent() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    let c = Running::start(|_| {}).await;
    let port = c.mqtt_port();
    let (sub, mut sub_events) = connect5(options5("v5-props-sub", port)).await.unwrap();
    subscribed(&sub, &mut sub_events, "v5/props").await;
    let (publisher, mut pub_events) = connect5(options5("v5-props-pub", port)).await.unwrap();
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(600),
        topic_alias: None,
        response_topic: Some("v5/reply".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    };
    publisher
        .publish_with_properties("v5/props", QoS::AtLeastOnce, false, "{}", sent.clone())
        .await
        .unwrap();
    let sending = tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });
    let got = incoming(&mut sub_events, |p| match p {
        Packet::Publish(p) if p.topic == "v5/props" => Some(p.properties),
        _ => None,
    })
    .await
    .expect("the publish's properties");
    let expiry = got
        .message_expiry_interval
        .expect("the message expiry interval");
    assert!((590..=600).contains(&expiry), "{expiry}");
    assert_eq!(
        PublishProperties {
            message_expiry_interval: Some(600),
            ..got
        },
        sent
    );

    // Retained with a message expiry of 1 s: not sent once it has expired.
    let expiring = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publisher
        .publish_with_properties(
            "v5/retained/expiring",
            QoS::AtLeastOnce,
            true,
            "old",
            expiring,
        )
        .await
        .unwrap();
    publisher
        .publish("v5/retained/kept", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (late, mut late_events) = connect5(options5("v5-props-late", port)).await.unwrap();
    late.subscribe("v5/retained/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut topics = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = late_events.poll().await {
                topics.push(String::from_utf8_lossy(&p.topic).into_owned());
            }
        }
    })
    .await;
    assert_eq!(topics, ["v5/retained/kept"], "the expired one is not sent");
    sending.abort();
}

/// Session expiry: 0 (the default) ends the session with the connection; a longer one keeps
/// it (subscriptions, messages queued while away) until it expires; a clean start drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_session_expiry_is_honoured() {
    let c = Running::start(|_| {}).await;
    let port = c.mqtt_port();
    let session = |id: &str, clean: bool, expiry: Option<u32>| {
        let mut o = options5(id, port);
        o.set_clean_start(clean);
        o.set_session_expiry_interval(expiry);
        o
    };
    let present = |o: MqttOptions| async move {
        let (client, mut events) = AsyncClient::new(o, 10);
        let ack = connack(&mut events).await.expect("a CONNACK");
        (ack.session_present, client, events)
    };
    let (publisher, mut pub_events) = connect5(options5("v5-sess-pub", port)).await.unwrap();
    let sending = tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });

    // Expiry 0, not clean: nothing is kept.
    let (_, client, mut events) = present(session("v5-s0", false, None)).await;
    subscribed(&client, &mut events, "v5/s0").await;
    drop((client, events));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (was, _c, _e) = present(session("v5-s0", false, None)).await;
    assert!(!was, "a session with expiry 0 ends with its connection");

    // Expiry 60: kept, with what was published while away.
    let (_, client, mut events) = present(session("v5-s60", true, Some(60))).await;
    subscribed(&client, &mut events, "v5/s60").await;
    drop((client, events));
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher
        .publish("v5/s60", QoS::AtLeastOnce, false, "while away")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (was, _client, mut events) = present(session("v5-s60", false, Some(60))).await;
    assert!(was, "a session with expiry 60 is kept");
    assert_eq!(
        next_publish5(&mut events, "v5/s60", Duration::from_secs(10)).await,
        b"while away"
    );
    drop((_client, events));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A clean start drops it (and is then kept itself, expiry 60).
    let (was, _c, _e) = present(session("v5-s60", true, Some(60))).await;
    assert!(!was, "a clean start drops the session");

    // Expiry 1: gone 2 s after the connection.
    let (_, client, mut events) = present(session("v5-s1", true, Some(1))).await;
    subscribed(&client, &mut events, "v5/s1").await;
    drop((client, events));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (was, _c, _e) = present(session("v5-s1", false, Some(1))).await;
    assert!(!was, "a session with expiry 1 s is gone after 4 s");
    sending.abort();
}

/// A will with a delay is published that long after an abrupt close, not at once, and not at
/// all when the client comes back in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_will_delay_is_honoured() {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let c = Running::start(|_| {}).await;
    let port = c.mqtt_port();
    let (watcher, mut watch_events) = connect5(options5("v5-will-watch", port)).await.unwrap();
    subscribed(&watcher, &mut watch_events, "v5/will/#").await;
    let with_will = |id: &str, topic: &str| {
        let mut o = options5(id, port);
        o.set_clean_start(true);
        o.set_session_expiry_interval(Some(30));
        let props = LastWillProperties {
            delay_interval: Some(2),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        o.set_last_will(LastWill::new(
            topic,
            "gone",
            QoS::AtLeastOnce,
            false,
            Some(props),
        ));
        o
    };
    // Closed abruptly: the will comes after 2 s, not before.
    let (client, events) = connect5(with_will("v5-will-a", "v5/will/a")).await.unwrap();
    let closed = std::time::Instant::now();
    drop((client, events));
    let will = next_publish5(&mut watch_events, "v5/will/a", Duration::from_secs(10)).await;
    assert_eq!(will, b"gone");
    let after = closed.elapsed();
    assert!(after >= Duration::from_millis(1800), "{after:?}");
    // Back within the delay: no will.
    let (client, events) = connect5(with_will("v5-will-b", "v5/will/b")).await.unwrap();
    drop((client, events));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut o = options5("v5-will-b", port);
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(30));
    let (_back, mut back_events) = connect5(o).await.unwrap();
    let keep = tokio::spawn(async move { while back_events.poll().await.is_ok() {} });
    let none = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = watch_events.poll().await {
                return p.topic;
            }
        }
    })
    .await;
    assert!(none.is_err(), "a will for a client back in time: {none:?}");
    keep.abort();

    // DISCONNECT "with will message" (0x04): the will is sent; a normal DISCONNECT: not.
    use rumqttc::v5::mqttbytes::v5::Connect;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (reason, topic, sent) in [(4u8, "v5/will/c", true), (0, "v5/will/d", false)] {
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let connect = Connect {
            keep_alive: 30,
            client_id: topic.replace('/', "-"),
            clean_start: true,
            properties: None,
        };
        let will = LastWill::new(topic, "bye", QoS::AtMostOnce, false, None);
        let mut out = bytes::BytesMut::new();
        connect.write(&Some(will), &None, &mut out).unwrap();
        raw.write_all(&out).await.unwrap();
        let mut ack = [0u8; 64];
        assert!(
            raw.read(&mut ack).await.unwrap() >= 5 && ack[3] == 0,
            "accepted"
        );
        raw.write_all(&[0xe0, 1, reason]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                // (Only this client's: the will of `v5-will-b`, closed above, comes too.)
                if let Ok(Event::Incoming(Packet::Publish(p))) = watch_events.poll().await {
                    if p.topic == topic.as_bytes() {
                        return p.topic;
                    }
                }
            }
        })
        .await;
        match got {
            Ok(t) => assert!(sent && t == topic.as_bytes(), "reason {reason}: {t:?}"),
            Err(_) => assert!(!sent, "no will after a DISCONNECT with reason {reason}"),
        }
    }
}

/// The agent speaks the MQTT version its config says: 3.1.1 by default (level 4 in its
/// CONNECT), 5 with `mqtt-version = "5"`; over MQTT 5 its samples, inventory and `Offline` at
/// stop reach the collector as over 3.1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_speaks_mqtt5_when_configured() {
    use ember_agent::config::Version;
    use tokio::io::AsyncReadExt;
    for (version, level) in [(Version::V311, 4), (Version::V5, 5)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config =
            crate::harness::agent_config(listener.local_addr().unwrap(), "v5-level", "1s");
        assert_eq!(config.mqtt_version, Version::V311, "the default");
        config.mqtt_version = version;
        let (stop, agent) = spawn_agent(config);
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the agent connects")
            .unwrap();
        let mut connect = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut connect))
            .await
            .expect("a CONNECT")
            .unwrap();
        assert_eq!(
            ember_collector::gate::protocol_level(&connect[..n]),
            Some(level),
            "{version}"
        );
        drop(s);
        stop.send(true).unwrap();
        let _ = agent.await;
    }

    let c = Running::start(|_| {}).await;
    let mut config = c.agent_config("v5-agent", "200ms");
    config.mqtt_version = Version::V5;
    let (stop, agent) = spawn_agent(config);
    eventually(Duration::from_secs(10), "v5-agent's samples", || async {
        let h = c.get("/api/hosts/v5-agent").await.1;
        (h["received"].as_u64()? >= 3 && h["info"].is_object() && h["status"] == "online")
            .then_some(())
    })
    .await;
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    eventually(Duration::from_secs(10), "v5-agent offline", || async {
        let h = c.get("/api/hosts/v5-agent").await.1;
        (h["status"] == "offline").then_some(())
    })
    .await;
}

/// Reads whole frames from `raw` for `wait`, or until `want` PUBLISHes and half a second more
/// (to see any beyond them): the PUBLISHes' packet ids.
async fn publish_ids(
    raw: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    wait: Duration,
    want: usize,
) -> Vec<u16> {
    use rumqttc::v5::mqttbytes::v5::check;
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut enough = false;
    loop {
        if !enough && want > 0 && got.len() >= want {
            enough = true;
            deadline = deadline.min(tokio::time::Instant::now() + Duration::from_millis(500));
        }
        while let Ok(h) = check(buf.iter(), None) {
            let f = buf.split_to(h.frame_length());
            if f[0] >> 4 == 3 {
                let topic = usize::from(u16::from_be_bytes([f[2], f[3]]));
                got.push(u16::from_be_bytes([f[4 + topic], f[5 + topic]]));
            }
        }
        let mut more = [0u8; 1024];
        match tokio::time::timeout_at(deadline, raw.read(&mut more)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&more[..n]),
            _ => return got,
        }
    }
}

/// A client's Receive Maximum is kept: with 2, no more than 2 QoS 1 messages come before it
/// acknowledges one (rumqttd alone sends up to 100), and every one comes as it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_receive_maximum_is_kept() {
    use rumqttc::v5::mqttbytes::v5::{Connect, ConnectProperties, Filter, Subscribe};
    use tokio::io::AsyncWriteExt;
    let c = Running::start(|_| {}).await;
    let port = c.mqtt_port();
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(2);
    let connect = Connect {
        keep_alive: 30,
        client_id: "v5-rm".into(),
        clean_start: true,
        properties: Some(props),
    };
    let mut out = bytes::BytesMut::new();
    connect.write(&None, &None, &mut out).unwrap();
    let mut subscribe = Subscribe::new(Filter::new("v5/rm", QoS::AtLeastOnce), None);
    subscribe.pkid = 1;
    subscribe.write(&mut out).unwrap();
    raw.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    publish_ids(&mut raw, &mut buf, Duration::from_millis(500), 0).await; // CONNACK, SUBACK
    let (publisher, mut pub_events) = connect5(options5("v5-rm-pub", port)).await.unwrap();
    for i in 0..5 {
        publisher
            .publish("v5/rm", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
    }
    let sending = tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });
    let first = publish_ids(&mut raw, &mut buf, Duration::from_secs(10), 2).await;
    assert_eq!(first.len(), 2, "two before an acknowledgement: {first:?}");
    let mut all = first.clone();
    while all.len() < 5 {
        let mut acks = Vec::new();
        for pkid in &all[all.len() - 2.min(all.len())..] {
            acks.extend_from_slice(&[0x40, 2]);
            acks.extend_from_slice(&pkid.to_be_bytes());
        }
        raw.write_all(&acks).await.unwrap();
        let more = publish_ids(
            &mut raw,
            &mut buf,
            Duration::from_secs(10),
            2.min(5 - all.len()),
        )
        .await;
        assert!(!more.is_empty() && more.len() <= 2, "{more:?}");
        all.extend(more);
    }
    assert_eq!(all.len(), 5, "{all:?}");
    sending.abort();
}
