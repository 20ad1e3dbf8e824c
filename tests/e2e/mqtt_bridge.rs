//! Issue #5: the MQTT bridge read by a real MQTT client — the retained JSON state per host, its
//! availability, and Home Assistant device discovery, re-announced on Home Assistant's birth.

use std::time::Duration;

use rumqttc::QoS;
use serde_json::Value;

use crate::harness::{mqtt, next_publish, options, Running};
use crate::support::{eventually, spawn_agent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_state_and_home_assistant_discovery_over_mqtt() {
    let c = Running::start(|cfg| cfg.bridge.state_every = Duration::ZERO).await;
    let (stop, agent) = spawn_agent(c.agent_config("ha-host", "200ms"));
    eventually(Duration::from_secs(10), "ha-host with samples", || async {
        let h = c.get("/api/hosts/ha-host").await.1;
        (h["samples"].as_u64()? >= 2 && h["info"].is_object()).then_some(())
    })
    .await;

    // A subscriber arriving now gets the retained state, availability and discovery.
    let mut m = mqtt(options("e2e-ha", c.mqtt_port()));
    m.client
        .subscribe("ember/json/#", QoS::AtMostOnce)
        .await
        .unwrap();
    m.client
        .subscribe("homeassistant/device/+/config", QoS::AtMostOnce)
        .await
        .unwrap();
    let collector = ember_collector::bridge::COLLECTOR_AVAILABILITY;
    m.client
        .subscribe(collector, QoS::AtMostOnce)
        .await
        .unwrap();
    let long = Duration::from_secs(10);
    let state = next_publish(&mut m, long, "ember/json/ha-host", |_| true).await;
    let state: Value = serde_json::from_slice(&state).expect("JSON state");
    assert_eq!(state["host"], "ha-host");
    assert_eq!(state["status"], "online");
    assert!(state["cpu_percent"].as_f64().unwrap() <= 100.0, "{state}");
    assert!(state["memory_used_bytes"].as_u64().unwrap() > 0);
    assert!(state["values"]["memory.total"].as_f64().unwrap() > 0.0);
    assert!(state["info"]["kernel"].is_string());
    let avail = next_publish(&mut m, long, "ember/json/ha-host/availability", |_| true).await;
    assert_eq!(avail, b"online");
    let topic = "homeassistant/device/ember_ha-host/config";
    let disc = next_publish(&mut m, long, topic, |_| true).await;
    let disc: Value = serde_json::from_slice(&disc).expect("JSON discovery");
    assert_eq!(disc["dev"]["ids"][0], "ember_ha-host");
    assert_eq!(disc["stat_t"], "ember/json/ha-host");
    // Available while the host and the collector both are; the collector's is online.
    let avty = serde_json::json!([
        {"t": "ember/json/ha-host/availability"},
        {"t": collector}
    ]);
    assert_eq!(disc["avty"], avty);
    assert_eq!(disc["avty_mode"], "all");
    assert_eq!(
        next_publish(&mut m, long, collector, |_| true).await,
        b"online"
    );
    let cpu = &disc["cmps"]["ember_ha-host_cpu"];
    assert_eq!(cpu["p"], "sensor");
    assert_eq!(cpu["val_tpl"], "{{ value_json.cpu_percent }}");
    assert_eq!(cpu["unit_of_meas"], "%");

    // Home Assistant restarts and says so: discovery is sent again.
    m.forget();
    m.client
        .publish("homeassistant/status", QoS::AtMostOnce, false, "online")
        .await
        .unwrap();
    let again = next_publish(&mut m, long, topic, |_| true).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&again).unwrap()["dev"],
        disc["dev"]
    );

    // The agent stops: availability goes offline.
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    next_publish(&mut m, long, "ember/json/ha-host/availability", |p| {
        p == b"offline"
    })
    .await;

    // A subscriber arriving once nothing more is published gets all three, retained, as they
    // are now (the embedded broker serves them from the store: issue #9).
    let mut late = mqtt(options("e2e-late", c.mqtt_port()));
    for filter in ["ember/json/#", "homeassistant/#"] {
        late.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    let mut got = std::collections::HashMap::new();
    tokio::time::timeout(long, async {
        while got.len() < 3 {
            let (t, p, retained) = late.rx.recv().await.expect("the MQTT client stopped");
            assert!(retained, "{t} not sent as retained");
            got.insert(t, p);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("retained: only {:?}", got.keys()));
    let state: Value = serde_json::from_slice(&got["ember/json/ha-host"]).unwrap();
    assert_eq!(state["status"], "offline");
    assert!(state["info"]["kernel"].is_string());
    assert_eq!(got["ember/json/ha-host/availability"], b"offline");
    let again: Value = serde_json::from_slice(&got[topic]).unwrap();
    assert_eq!(again["dev"], disc["dev"]);
}
