//! Issue #21: real MQTT 3.1.1 clients read the bridge's JSON state and Home Assistant
//! discovery from the embedded broker: Mosquitto's `mosquitto_sub` and `mosquitto_pub`
//! (Debian's mosquitto-clients) and paho-mqtt (PyPI), the latter with keep-alive 0, which
//! the broker refused before (no CONNACK).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::Running;
use crate::support::{eventually, spawn_agent};

/// The retained topics a subscriber to `ember/json/#` and `homeassistant/#` gets for `host`.
fn topics(host: &str) -> [String; 3] {
    [
        format!("ember/json/{host}"),
        format!("ember/json/{host}/availability"),
        format!("homeassistant/device/ember_{host}/config"),
    ]
}

/// Checks what a client read: `(topic, payload)` for each of [`topics`], and the JSON state and
/// discovery as the bridge writes them.
fn check(client: &str, host: &str, got: &BTreeMap<String, String>) {
    let [state, availability, discovery] = topics(host);
    for t in [&state, &availability, &discovery] {
        assert!(got.contains_key(t), "{client}: nothing on {t}; got {got:?}");
    }
    let s: Value = serde_json::from_str(&got[&state]).expect("JSON state");
    assert_eq!(s["host"], host, "{client}: {s}");
    assert_eq!(s["status"], "online", "{client}: {s}");
    assert_eq!(got[&availability], "online", "{client}");
    let d: Value = serde_json::from_str(&got[&discovery]).expect("JSON discovery");
    assert_eq!(d["stat_t"], state, "{client}: {d}");
    assert_eq!(d["avty"][0]["t"], availability, "{client}: {d}");
}

/// One of Mosquitto's clients on MQTT 3.1.1 to the broker on `port`, as `client_id`.
fn mosquitto(program: &str, port: &str, client_id: &str) -> Command {
    let mut c = Command::new(program);
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-V",
        "mqttv311",
        "-i",
        client_id,
    ]);
    c
}

/// Runs a client program to completion (at most `limit`): its standard output.
async fn run(mut command: Command, what: &str) -> String {
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what}: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .unwrap()
}

/// paho-mqtt on MQTT 3.1.1 with keep-alive 0: subscribes to both filters until it has a
/// message on each of the `want` topics or 10 s passed, and prints each message it got as a
/// JSON line `[topic, payload, retained]`.
const PAHO: &str = r#"
import json, sys, time
try:
    import paho.mqtt.client as mqtt
except ImportError:
    sys.exit("paho-mqtt is missing: pip install paho-mqtt")
port, want = int(sys.argv[1]), set(sys.argv[2:])
seen, got = {}, []
def on_connect(c, userdata, flags, rc, props=None):
    if rc != 0:
        sys.exit(f"CONNACK {rc}")
    c.subscribe([("ember/json/#", 1), ("homeassistant/#", 1)])
def on_message(c, userdata, m):
    seen[m.topic] = True
    got.append([m.topic, m.payload.decode(), bool(m.retain)])
# paho-mqtt 2 (PyPI) asks for its callback API; 1.6 (Debian 12's python3-paho-mqtt) has none.
api = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} if hasattr(mqtt, "CallbackAPIVersion") else {}
c = mqtt.Client(client_id="e2e-paho", protocol=mqtt.MQTTv311, **api)
c.on_connect = on_connect
c.on_message = on_message
c.connect("127.0.0.1", port, keepalive=0)
c.loop_start()
deadline = time.time() + 10
while time.time() < deadline and not want <= set(seen):
    time.sleep(0.05)
c.disconnect()
c.loop_stop()
for m in got:
    print(json.dumps(m))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_and_paho_read_json_and_discovery_issue_21() {
    let c = Running::start(|cfg| cfg.bridge.state_every = Duration::ZERO).await;
    let host = "rc-host";
    let (stop, agent) = spawn_agent(c.agent_config(host, "200ms"));
    eventually(Duration::from_secs(10), "rc-host with samples", || async {
        let h = c.get(&format!("/api/hosts/{host}")).await.1;
        (h["samples"].as_u64()? >= 2 && h["info"].is_object()).then_some(())
    })
    .await;
    let port = c.mqtt_port().to_string();

    // mosquitto_sub on 3.1.1: the three retained topics, `topic payload` per line.
    let mut sub = mosquitto("mosquitto_sub", &port, "e2e-mosquitto-sub");
    sub.args([
        "-t",
        "ember/json/#",
        "-t",
        "homeassistant/#",
        "-v",
        "-q",
        "1",
    ])
    .args(["--retained-only", "-C", "3", "-W", "10"]);
    let out = run(sub, "mosquitto_sub (Debian's mosquitto-clients)").await;
    let got: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    check("mosquitto_sub", host, &got);

    // paho-mqtt, keep-alive 0: the same, retained.
    let mut paho = Command::new("python3");
    paho.args(["-c", PAHO, &port]).args(topics(host));
    let out = run(paho, "python3 with paho-mqtt (`pip install paho-mqtt`)").await;
    let mut got = BTreeMap::new();
    let mut retained = Vec::new();
    for line in out.lines() {
        let (t, p, r): (String, String, bool) =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if r {
            retained.push(t.clone());
        }
        got.insert(t, p);
    }
    check("paho-mqtt", host, &got);
    // Each came retained first (the agent's live updates may follow).
    for t in topics(host) {
        assert!(retained.contains(&t), "paho: {t} never retained: {out}");
    }

    // mosquitto_pub: Home Assistant's birth message makes the bridge announce discovery again,
    // read live by a mosquitto_sub that is already subscribed (not retained this time).
    let [_, _, discovery] = topics(host);
    let mut live = mosquitto("mosquitto_sub", &port, "e2e-live");
    live.args(["-t", &discovery, "-v", "-R", "-C", "1", "-W", "10"]);
    let live = tokio::spawn(run(live, "mosquitto_sub"));
    let mut got = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut publish = mosquitto("mosquitto_pub", &port, "e2e-mosquitto-pub");
        publish.args(["-t", "homeassistant/status", "-m", "online", "-q", "1"]);
        run(publish, "mosquitto_pub").await;
        if live.is_finished() {
            got = Some(live.await.unwrap());
            break;
        }
    }
    let got = got.expect("discovery announced again after homeassistant/status");
    let (t, p) = got.trim().split_once(' ').expect("`topic payload`");
    assert_eq!(t, discovery);
    let d: Value = serde_json::from_str(p).expect("JSON discovery");
    assert_eq!(d["dev"]["ids"][0], format!("ember_{host}"));

    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
}
