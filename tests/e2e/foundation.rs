//! Issue #2: one agent's real metrics travel agent → rumqttd → ingest → JSON API.

use std::time::{Duration, Instant};

use ember_wire::{topic, Message, Sample};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::support::{eventually, spawn_agent, TestCollector};

/// Checks that a sample's values are what a real Linux machine reports.
fn assert_plausible(s: &Value) {
    let mem = &s["memory"];
    let total = mem["total"].as_u64().unwrap();
    assert!(total > 64 << 20, "memory total {total}");
    assert!(mem["used"].as_u64().unwrap() <= total);
    assert!(mem["available"].as_u64().unwrap() <= total);
    let busy = s["cpu"]["busy"].as_u64().unwrap();
    assert!(busy <= 10_000, "cpu busy {busy}");
    let cores = s["cpu"]["cores"].as_array().unwrap();
    assert!(!cores.is_empty());
    assert!(cores.iter().all(|c| c.as_u64().unwrap() <= 10_000));
    assert!(s["uptime_s"].as_u64().unwrap() > 0);
    let now = ember_collector::now_ms();
    let ts = s["timestamp_ms"].as_u64().unwrap();
    assert!(
        ts <= now && now - ts < 60_000,
        "timestamp {ts} vs now {now}"
    );
    let fs = s["filesystems"].as_array().unwrap();
    assert!(!fs.is_empty(), "no filesystem reported");
    for f in fs {
        assert!(f["used"].as_u64().unwrap() <= f["total"].as_u64().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_samples_reach_the_api_with_contiguous_sequence_numbers() {
    let c = TestCollector::start().await;
    let (health_status, health) = c.get("/api/health").await;
    assert_eq!(health_status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["hosts"], 0);

    let started = Instant::now();
    let (stop, agent) = spawn_agent(c.agent_config("e2e-host", "1s"));

    // The first real sample is visible within two seconds of the agent starting.
    eventually(
        Duration::from_secs(2),
        "the first sample in /api/hosts",
        || async {
            let (_, hosts) = c.get("/api/hosts").await;
            hosts
                .as_array()?
                .iter()
                .find(|h| h["id"] == "e2e-host" && h["samples"] != 0)
                .map(|_| ())
        },
    )
    .await;
    eprintln!("first sample visible after {:?}", started.elapsed());

    // Then a few more, to see the sequence.
    let samples = eventually(Duration::from_secs(10), "4 samples", || async {
        let (status, body) = c.get("/api/hosts/e2e-host/samples").await;
        assert_eq!(status, 200);
        let samples = body["samples"].as_array()?.clone();
        (samples.len() >= 4).then_some(samples)
    })
    .await;
    for s in &samples {
        assert_plausible(s);
    }
    let seqs: Vec<u64> = samples.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs[0], 1,
        "the ring starts at the agent's first sample: {seqs:?}"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "not contiguous: {seqs:?}"
    );

    let (_, host) = c.get("/api/hosts/e2e-host").await;
    assert_eq!(host["status"], "online");
    assert_eq!(host["interval_ms"], 1000);
    assert_eq!(host["missing"], 0);
    assert_eq!(host["duplicates"], 0);
    assert!(
        host["info"]["memory"].as_u64().unwrap() > 0,
        "inventory arrived: {host}"
    );
    assert!(!host["info"]["kernel"].as_str().unwrap().is_empty());

    // A clean stop publishes Offline.
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    eventually(Duration::from_secs(5), "status offline", || async {
        let (_, host) = c.get("/api/hosts/e2e-host").await;
        (host["status"] == "offline").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_mqtt_subscriber_decodes_the_same_samples() {
    let c = TestCollector::start().await;
    let mut options = MqttOptions::new("e2e-subscriber", "127.0.0.1", c.mqtt_port());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .subscribe("ember/v1/+/sample", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the SUBACK before the agent starts, so nothing is missed.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.unwrap() {
            break;
        }
    }
    let (_stop, _agent) = spawn_agent(c.agent_config("sub-host", "200ms"));
    let mut got: Vec<Sample> = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < 3 {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                assert_eq!(
                    topic::parse(&p.topic),
                    Some((
                        ember_wire::HostId::new("sub-host").unwrap(),
                        topic::Kind::Sample
                    ))
                );
                let envelope = ember_wire::decode(&p.payload).expect("a valid envelope");
                assert_eq!(envelope.host.as_str(), "sub-host");
                match envelope.message {
                    Message::Sample(s) => got.push(s),
                    other => panic!("a sample topic carried {other:?}"),
                }
            }
        }
    })
    .await
    .expect("three samples within 10 s");
    let seqs: Vec<u64> = got.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    // The API holds the same samples the subscriber saw.
    let (_, body) = c.get("/api/hosts/sub-host/samples?limit=3").await;
    let api_first = &body["samples"].as_array().unwrap()[0];
    assert!(api_first["seq"].as_u64().unwrap() >= 1);
    let api = c.get("/api/hosts/sub-host/samples").await.1;
    let first = &api["samples"][0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["memory"]["total"], got[0].memory.total);
    assert_eq!(first["timestamp_ms"], got[0].timestamp_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_with_a_reason() {
    let c = TestCollector::start().await;
    let (status, body) = c.get("/api/hosts/nobody/samples").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nobody"));
    let (status, body) = c.get("/api/hosts/Bad%2FId").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("host id"),
        "{body}"
    );
    let (status, body) = c.get("/api/hosts/pi/samples?limit=lots").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    let (status, _) = c.get("/api/nothing-here").await;
    assert_eq!(status, 404);
}
