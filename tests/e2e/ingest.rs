//! Bad input through the real broker: garbage, future versions and spoofed hosts are dropped and
//! counted, and a good agent's samples keep arriving meanwhile.

use std::time::Duration;

use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::support::{eventually, spawn_agent, TestCollector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_counted_and_do_not_disturb_good_hosts() {
    let c = TestCollector::start().await;
    let (_stop, _agent) = spawn_agent(c.agent_config("good", "200ms"));

    let mut options = MqttOptions::new("e2e-vandal", "127.0.0.1", c.mqtt_port());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(options, 100);
    // The event loop ends at the first connection error: the broker's answer to the oversized
    // payload at the end.
    let vandal = tokio::spawn(async move {
        loop {
            if let Err(e) = events.poll().await {
                return e;
            }
        }
    });

    let mut buf = [0u8; MAX_ENCODED_LEN];
    let spoof = Envelope::new(
        HostId::new("good").unwrap(),
        Message::Sample(Sample {
            seq: 1_000_000,
            ..Sample::default()
        }),
    )
    .encode(&mut buf)
    .unwrap()
    .to_vec();
    let mut future = spoof.clone();
    future[0] = ember_wire::VERSION + 1;
    let bad: [(&str, Vec<u8>); 4] = [
        ("ember/v1/vandal/sample", b"not postcard at all".to_vec()),
        ("ember/v1/vandal/sample", vec![]),
        ("ember/v1/vandal/sample", future),
        // A sample claiming to be from "good", published on another host's topic.
        ("ember/v1/vandal/sample", spoof),
    ];
    for (topic, payload) in &bad {
        client
            .publish(*topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }

    let stats = eventually(
        Duration::from_secs(10),
        "all bad payloads counted",
        || async {
            let (_, health) = c.get("/api/health").await;
            let i = &health["ingest"];
            let n = i["rejected_decode"].as_u64()? + i["rejected_mismatch"].as_u64()?;
            (n >= 4).then(|| i.clone())
        },
    )
    .await;
    assert_eq!(stats["rejected_decode"], 3, "{stats}");
    assert_eq!(stats["rejected_mismatch"], 1, "{stats}");

    // A payload over the limit never reaches ingest: the broker drops the connection.
    client
        .publish(
            "ember/v1/vandal/sample",
            QoS::AtLeastOnce,
            false,
            vec![0xff; 20_000],
        )
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), vandal)
        .await
        .expect("the broker disconnects an oversized publisher")
        .unwrap();
    eprintln!("oversized publisher disconnected: {error}");

    // The vandal never became a host, the spoofed sample is not in good's history, and good's
    // samples kept coming.
    let (status, _) = c.get("/api/hosts/vandal").await;
    assert_eq!(status, 404);
    // (The good agent's first sample may come late on a busy machine.)
    let before = eventually(Duration::from_secs(10), "good's samples", || async {
        c.get("/api/hosts/good").await.1["received"].as_u64()
    })
    .await;
    eventually(Duration::from_secs(5), "more good samples", || async {
        let h = c.get("/api/hosts/good").await.1;
        (h["received"].as_u64()? > before + 2).then_some(())
    })
    .await;
    let samples = c.get("/api/hosts/good/samples").await.1;
    assert!(samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["seq"].as_u64().unwrap() < 1_000_000));
}
