//! Issue #5: host status from the last will and the last-seen time, with the thresholds from the
//! configuration, seen in the API and in the live event stream.

use std::time::Duration;

use ember_wire::{topic, Envelope, HostId, Message, Sample, Status, MAX_ENCODED_LEN};
use rumqttc::{LastWill, QoS};

use crate::harness::{mqtt, next_event, options, sse, Running};

fn enc(message: Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    Envelope::new(HostId::new("fake").unwrap(), message)
        .encode(&mut buf)
        .unwrap()
        .to_vec()
}

fn t(kind: topic::Kind) -> String {
    topic::topic(&HostId::new("fake").unwrap(), kind).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_transitions_reach_the_api_and_the_event_stream() {
    let c = Running::start(|cfg| {
        cfg.status.stale_after = Duration::from_millis(400);
        cfg.status.stale_intervals = 1;
        cfg.status.offline_after = Duration::from_millis(1500);
    })
    .await;
    let mut events = sse(c.url("/api/events?hosts=fake"));
    let hello = next_event(&mut events, Duration::from_secs(5), "hosts", |_| true).await;
    assert_eq!(hello, serde_json::json!([]));

    // A hand-made agent with the agent's last will.
    let mut o = options("fake-agent", c.mqtt_port());
    o.set_last_will(LastWill::new(
        t(topic::Kind::Status),
        enc(Message::Status(Status::Offline)),
        QoS::AtLeastOnce,
        true,
    ));
    let agent = mqtt(o);
    let online = enc(Message::Status(Status::Online { interval_ms: 100 }));
    let publish_sample = |seq: u64| {
        let payload = enc(Message::Sample(Sample {
            seq,
            timestamp_ms: ember_collector::now_ms(),
            ..Sample::default()
        }));
        let client = agent.client.clone();
        async move {
            client
                .publish(t(topic::Kind::Sample), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };
    agent
        .client
        .publish(
            t(topic::Kind::Status),
            QoS::AtLeastOnce,
            true,
            online.clone(),
        )
        .await
        .unwrap();
    let s = next_event(&mut events, Duration::from_secs(5), "status", |_| true).await;
    assert_eq!(
        (s["host"].as_str(), s["status"].as_str()),
        (Some("fake"), Some("online"))
    );
    assert_eq!(s["previous"], "unknown");
    for seq in 1..=3 {
        publish_sample(seq).await;
    }
    for seq in 1..=3u64 {
        let e = next_event(&mut events, Duration::from_secs(5), "sample", |_| true).await;
        assert_eq!(e["sample"]["seq"], seq);
        assert_eq!(e["host"], "fake");
    }

    // Silence: stale after 400 ms, offline after 1.5 s, without any last will.
    let s = next_event(&mut events, Duration::from_secs(5), "status", |_| true).await;
    assert_eq!(
        (s["previous"].as_str(), s["status"].as_str()),
        (Some("online"), Some("stale"))
    );
    assert_eq!(c.get("/api/hosts/fake").await.1["status"], "stale");
    let s = next_event(&mut events, Duration::from_secs(5), "status", |_| true).await;
    assert_eq!(
        (s["previous"].as_str(), s["status"].as_str()),
        (Some("stale"), Some("offline"))
    );
    assert_eq!(c.get("/api/hosts/fake").await.1["status"], "offline");

    // A sample brings it back.
    publish_sample(4).await;
    let s = next_event(&mut events, Duration::from_secs(5), "status", |_| true).await;
    assert_eq!(
        (s["previous"].as_str(), s["status"].as_str()),
        (Some("offline"), Some("online"))
    );

    // The connection dies without a DISCONNECT: the broker publishes the last will.
    agent.task.abort();
    let s = next_event(&mut events, Duration::from_secs(10), "status", |v| {
        v["status"] == "offline"
    })
    .await;
    assert_eq!(s["host"], "fake");
    let h = c.get("/api/hosts/fake").await.1;
    assert_eq!(h["status"], "offline");
    assert_eq!(h["missing"], 0);
}
