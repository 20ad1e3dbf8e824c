//! Issue #5: external-broker mode against a real Mosquitto from Debian's packages — two
//! collectors share the samples through a shared subscription, both see every host's status, and
//! the JSON bridge publishes to Mosquitto.

use std::collections::BTreeSet;
use std::time::Duration;

use ember_collector::config::ExternalBroker;
use rumqttc::QoS;
use serde_json::Value;

use crate::harness::{agent_config, mqtt, next_publish, options, Mosquitto, Running};
use crate::support::{eventually, spawn_agent};

fn external(port: u16, id: &str) -> impl FnOnce(&mut ember_collector::Config) {
    let id = id.to_string();
    move |cfg| {
        cfg.external = Some(ExternalBroker {
            host: "127.0.0.1".into(),
            port,
            client_id: id,
            share_group: Some("ember".into()),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_share_the_load_of_a_mosquitto_broker() {
    let broker = Mosquitto::start();
    let a = Running::start(external(broker.port, "ember-a")).await;
    let b = Running::start(external(broker.port, "ember-b")).await;
    assert_eq!(a.collector.mqtt_addr, broker.addr());
    assert_eq!(a.get("/api/health").await.1["broker"], "external");

    // Both collectors must be subscribed before the agent's retained status is needed: a probe
    // client's retained status reaches both once they are.
    let (stop, agent) = spawn_agent(agent_config(broker.addr(), "ext-host", "100ms"));
    for c in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "ext-host online in each collector",
            || async {
                let h = c.get("/api/hosts/ext-host").await.1;
                (h["status"] == "online").then_some(())
            },
        )
        .await;
    }
    // Samples are split between the two; none is stored twice.
    let seqs = |v: Value| -> BTreeSet<u64> {
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seq"].as_u64().unwrap())
            .collect()
    };
    let (sa, sb) = eventually(Duration::from_secs(20), "40 samples shared out", || async {
        let sa = seqs(a.get("/api/hosts/ext-host/samples?limit=100000").await.1);
        let sb = seqs(b.get("/api/hosts/ext-host/samples?limit=100000").await.1);
        (sa.len() + sb.len() >= 40 && !sa.is_empty() && !sb.is_empty()).then_some((sa, sb))
    })
    .await;
    assert!(sa.is_disjoint(&sb), "a sample went to both: {sa:?} {sb:?}");
    eprintln!("shared: {} samples to a, {} to b", sa.len(), sb.len());

    // The JSON bridge publishes to Mosquitto, where any client reads it.
    let mut m = mqtt(options("e2e-mosquitto-reader", broker.port));
    m.client
        .subscribe("ember/json/ext-host", QoS::AtMostOnce)
        .await
        .unwrap();
    let state = next_publish(
        &mut m,
        Duration::from_secs(10),
        "ember/json/ext-host",
        |_| true,
    )
    .await;
    let state: Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["host"], "ext-host");

    // The agent stops: both collectors see it offline (status is not shared out).
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    for c in [&a, &b] {
        eventually(Duration::from_secs(10), "ext-host offline", || async {
            let h = c.get("/api/hosts/ext-host").await.1;
            (h["status"] == "offline").then_some(())
        })
        .await;
    }
}

/// Issue #23: with an external broker, a collector that dies leaves its last will on its own
/// availability topic, which every host's Home Assistant discovery lists with `avty_mode: all`:
/// the hosts go unavailable with it instead of staying "online". With two collectors sharing
/// the broker, the one left says online again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_takes_its_hosts_offline_in_home_assistant() {
    let broker = Mosquitto::start();
    let collector = Running::start(external(broker.port, "ember-will")).await;
    let second = Running::start(external(broker.port, "ember-will-2")).await;
    let mut m = mqtt(options("e2e-ha", broker.port));
    for t in [
        ember_collector::bridge::COLLECTOR_AVAILABILITY,
        "homeassistant/device/ember_will-host/config",
    ] {
        m.client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
    }
    let avail = ember_collector::bridge::COLLECTOR_AVAILABILITY;
    let wait = Duration::from_secs(15);
    next_publish(&mut m, wait, avail, |p| p == b"online").await;
    let (stop, agent) = spawn_agent(agent_config(broker.addr(), "will-host", "100ms"));
    let disc = next_publish(
        &mut m,
        wait,
        "homeassistant/device/ember_will-host/config",
        |_| true,
    )
    .await;
    let disc: Value = serde_json::from_slice(&disc).unwrap();
    assert_eq!(disc["avty_mode"], "all");
    let topics: Vec<&str> = disc["avty"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["t"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["ember/json/will-host/availability", avail]);
    // One collector stops without a word to the broker: its will goes out, and the other
    // one, still serving the hosts, says online again.
    m.forget();
    drop(collector);
    next_publish(&mut m, wait, avail, |p| p == b"offline").await;
    next_publish(&mut m, wait, avail, |p| p == b"online").await;
    // The last one stops: offline, and it stays so.
    drop(second);
    next_publish(&mut m, wait, avail, |p| p == b"offline").await;
    let later = tokio::time::timeout(
        Duration::from_secs(2),
        next_publish(&mut m, wait, avail, |_| true),
    )
    .await;
    assert!(later.is_err(), "after the last collector: {later:?}");
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
}
