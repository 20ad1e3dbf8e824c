//! Alerts and commands through the real collector (issue #7): a webhook delivered to a real
//! local HTTP receiver that fails at first (retried; firing and resolving both arrive), the
//! retained MQTT alert topic read by rumqttc and by Mosquitto's `mosquitto_sub`, and commands
//! from the HTTP API to a real agent and back, with the audit log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_collector::alerts::RawAlerts;
use ember_wire::topic::{self, Kind};
use ember_wire::{Envelope, HostId, Message, Sample, Status, MAX_ENCODED_LEN};
use rumqttc::QoS;
use serde_json::{json, Value};

use crate::harness::{mqtt, next_publish, options, Running};
use crate::support::{eventually, spawn_agent};

/// A tiny HTTP/1.1 server on a thread: answers the first `fail` requests 503, the rest 200,
/// and keeps every request body.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<u32>>,
}

impl Receiver {
    fn start(fail: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let (b, a) = (bodies.clone(), attempts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                let mut line = String::new();
                // Request line and headers.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let n = {
                    let mut a = a.lock().unwrap();
                    *a += 1;
                    *a
                };
                let status = if n <= fail {
                    "503 Service Unavailable"
                } else {
                    b.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver {
            port,
            bodies,
            attempts,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }
}

/// The `[alerts]` section from its keys (`[[rules]]` for `[[alerts.rules]]`).
fn alerts_config(toml: &str) -> ember_collector::alerts::AlertsConfig {
    let raw: RawAlerts = toml::from_str(toml).expect("test TOML");
    RawAlerts::defaults()
        .merge(raw)
        .validate()
        .expect("valid alerts config")
}

fn envelope(host: &str, message: Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    Envelope::new(HostId::new(host).unwrap(), message)
        .encode(&mut buf)
        .unwrap()
        .to_vec()
}

fn busy(seq: u64, percent: u16) -> Message {
    let mut s = Sample {
        seq,
        timestamp_ms: ember_collector::now_ms(),
        ..Sample::default()
    };
    s.cpu.busy = percent * 100;
    Message::Sample(s)
}

/// Reads the retained alert list once with Mosquitto's client.
fn mosquitto_sub(port: u16) -> Value {
    let out = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "ember/alerts", "-C", "1", "-W", "5", "-V", "mqttv311"])
        .output()
        .expect("mosquitto_sub (Debian's mosquitto-clients) runs");
    assert!(out.status.success(), "mosquitto_sub: {out:?}");
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_and_mqtt_topic_follow_firing_and_resolving() {
    let receiver = Receiver::start(2);
    let alerts = alerts_config(&format!(
        "default-rules = false\nevaluate-every = \"100ms\"\n\
         retry-initial = \"100ms\"\nretry-max = \"200ms\"\nretry-attempts = 5\n\
         [[rules]]\nname = \"cpu-high\"\nseverity = \"critical\"\nfor = \"300ms\"\n\
         when = {{ metric = \"cpu.busy\", above = 0.9, clear = 0.8 }}\n\
         [[webhooks]]\nurl = \"http://127.0.0.1:{}/hook\"\n",
        receiver.port
    ));
    let c = Running::start(|cfg| cfg.alerts = alerts).await;
    let port = c.mqtt_port();

    // A real subscriber of the alert topic.
    let mut watcher = mqtt(options("alerts-watcher", port));
    watcher
        .client
        .subscribe("ember/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    // And of the host's banner topic, which its agent reads.
    watcher
        .client
        .subscribe("ember/v1/hot/alerts", QoS::AtLeastOnce)
        .await
        .unwrap();
    let banner = |p: &[u8]| match ember_wire::decode(p) {
        Ok(Envelope {
            message: Message::Alerts(a),
            ..
        }) => (a.firing, a.text.to_string()),
        other => panic!("not an alerts envelope: {other:?}"),
    };

    // A host that reports 95 % CPU, then 85 % (between clear and threshold), then 10 %.
    let host = mqtt(options("hot-host", port));
    let publish = |m: Message, k: Kind| {
        let client = host.client.clone();
        async move {
            let t = topic::topic(&HostId::new("hot").unwrap(), k);
            client
                .publish(
                    t.as_str(),
                    QoS::AtLeastOnce,
                    k == Kind::Status,
                    envelope("hot", m),
                )
                .await
                .unwrap();
        }
    };
    publish(
        Message::Status(Status::Online { interval_ms: 200 }),
        Kind::Status,
    )
    .await;
    let mut seq = 0;
    let mut feed = |percent: u16| {
        seq += 1;
        publish(busy(seq, percent), Kind::Sample)
    };
    for _ in 0..5 {
        feed(95).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let firing = next_publish(&mut watcher, Duration::from_secs(10), "ember/alerts", |p| {
        p.starts_with(b"[{")
    })
    .await;
    let list: Value = serde_json::from_slice(&firing).unwrap();
    assert_eq!(list[0]["rule"], "cpu-high");
    assert_eq!(list[0]["host"], "hot");
    assert_eq!(list[0]["severity"], "critical");
    let b = next_publish(
        &mut watcher,
        Duration::from_secs(5),
        "ember/v1/hot/alerts",
        |_| true,
    )
    .await;
    assert_eq!(banner(&b), (1, "cpu-high".to_string()));
    // What came before (the empty list retained at start) is not news.
    watcher.forget();
    // Retained: a client that comes later reads it too.
    assert_eq!(mosquitto_sub(port)[0]["rule"], "cpu-high");

    // The first two attempts fail (503): the third delivers.
    eventually(Duration::from_secs(10), "the firing webhook", || async {
        (receiver.bodies().len() == 1).then_some(())
    })
    .await;
    let b = &receiver.bodies()[0];
    assert_eq!(b["status"], "firing");
    assert_eq!(b["alert"]["host"], "hot");
    assert_eq!(*receiver.attempts.lock().unwrap(), 3);

    // Hysteresis: 85 % holds it.
    for _ in 0..4 {
        feed(85).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (_, a) = c.get("/api/alerts").await;
    assert_eq!(a["active"].as_array().unwrap().len(), 1, "{a}");
    // 10 %: resolved, delivered, and the topic's list is empty.
    feed(10).await;
    let resolved = next_publish(&mut watcher, Duration::from_secs(10), "ember/alerts", |p| {
        p == b"[]"
    })
    .await;
    assert_eq!(resolved, b"[]");
    let b = next_publish(
        &mut watcher,
        Duration::from_secs(5),
        "ember/v1/hot/alerts",
        |_| true,
    )
    .await;
    assert_eq!(banner(&b), (0, String::new()));
    assert_eq!(mosquitto_sub(port), json!([]));
    eventually(Duration::from_secs(10), "the resolving webhook", || async {
        (receiver.bodies().len() == 2).then_some(())
    })
    .await;
    let bodies = receiver.bodies();
    assert_eq!(bodies[1]["status"], "resolved");
    assert_eq!(bodies.len(), 2, "no duplicates");

    // The history (API) has both, newest first, and delivery counted the retries.
    let (_, h) = c.get("/api/alerts/history?host=hot").await;
    let changes: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["resolved", "firing"]);
    let (_, a) = c.get("/api/alerts").await;
    assert_eq!(a["delivery"]["delivered"], 2);
    assert_eq!(a["delivery"]["retried"], 2);
    let (_, ha) = c.get("/api/hosts/hot/alerts").await;
    assert_eq!(ha["history"].as_array().unwrap().len(), 2);
    // The history is on disk for the next start.
    let log = std::fs::read_to_string(c.data_dir.join("alerts.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    host.task.abort();
    watcher.task.abort();
}

/// POST with a JSON body: (status, body).
async fn post(c: &Running, path: &str, body: Value) -> (u16, Value) {
    let url = c.url(path);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut r = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("HTTP request");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

async fn finished(c: &Running, id: &Value) -> Value {
    eventually(Duration::from_secs(10), "the command's result", || async {
        let (_, r) = c.get(&format!("/api/commands/{id}")).await;
        (r["status"] != "pending").then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_round_trip_through_api_and_agent_with_the_allow_list() {
    let c = Running::start(|_| {}).await;
    let mut config = c.agent_config("cmd-api", "300ms");
    config.commands = ember_agent::command::validate(
        &toml::from_str(
            "hello = { run = [\"/bin/echo\", \"hello from\", \"the agent\"] }\n\
             slow = { run = [\"/bin/sleep\", \"30\"], timeout = \"10s\" }\n",
        )
        .unwrap(),
    )
    .unwrap();
    let (_stop, _agent) = spawn_agent(config);
    eventually(Duration::from_secs(10), "the agent online", || async {
        let (_, h) = c.get("/api/hosts/cmd-api").await;
        (h["status"] == "online").then_some(())
    })
    .await;

    // An allow-listed command runs, without a shell, and its output comes back.
    let (status, sent) = post(
        &c,
        "/api/hosts/cmd-api/commands",
        json!({"action": "named", "name": "hello"}),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["status"], "pending");
    let r = finished(&c, &sent["id"]).await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["detail"], "hello from the agent");

    // Anything not on the agent's allow-list is refused, and nothing runs.
    let (_, sent) = post(
        &c,
        "/api/hosts/cmd-api/commands",
        json!({"action": "named", "name": "rm-rf"}),
    )
    .await;
    let r = finished(&c, &sent["id"]).await;
    assert_eq!(r["status"], "refused", "{r}");
    assert_eq!(r["detail"], "not on this agent's allow-list");

    // The command's timeout is the agent's limit: killed, reported as timed out.
    let (_, sent) = post(
        &c,
        "/api/hosts/cmd-api/commands",
        json!({"action": "named", "name": "slow", "timeout_ms": 300}),
    )
    .await;
    let r = finished(&c, &sent["id"]).await;
    assert_eq!(r["status"], "timed_out", "{r}");
    assert_eq!(r["detail"], "killed after 300ms");

    // Built-in actions: inventory done; identify needs a panel this agent does not have.
    let (_, sent) = post(
        &c,
        "/api/hosts/cmd-api/commands",
        json!({"action": "republish-inventory"}),
    )
    .await;
    assert_eq!(finished(&c, &sent["id"]).await["status"], "done");
    let (_, sent) = post(
        &c,
        "/api/hosts/cmd-api/commands",
        json!({"action": "identify"}),
    )
    .await;
    let r = finished(&c, &sent["id"]).await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["detail"], "no panel attached to this agent");

    // Bad requests and unknown hosts are refused by the API, nothing sent.
    let (status, e) = post(
        &c,
        "/api/hosts/cmd-api/commands",
        json!({"action": "reboot"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().unwrap().contains("known: identify"),
        "{e}"
    );
    let (status, _) = post(
        &c,
        "/api/hosts/nobody/commands",
        json!({"action": "identify"}),
    )
    .await;
    assert_eq!(status, 404);

    // The audit log: who, what, when, outcome, newest first; also on disk.
    let (_, log) = c.get("/api/commands").await;
    let log = log["commands"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("identify", "failed"),
            ("republish-inventory", "done"),
            ("named", "timed_out"),
            ("named", "refused"),
            ("named", "done"),
        ]
    );
    assert!(log.iter().all(|r| r["actor"] == "anonymous"));
    assert!(log.iter().all(|r| r["requested_ms"].as_u64().unwrap() > 0));
    let (_, host_log) = c.get("/api/hosts/cmd-api/commands?limit=2").await;
    assert_eq!(host_log["commands"].as_array().unwrap().len(), 2);
    let audit = std::fs::read_to_string(c.data_dir.join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().count() >= 10,
        "a line per request and per result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_set_listed_and_removed_through_the_api() {
    let c = Running::start(|_| {}).await;
    let (status, s) = post(
        &c,
        "/api/alerts/silences",
        json!({"rule": "cpu-high", "host": "pi*", "duration": "2h", "comment": "upgrade"}),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["created_by"], "anonymous");
    let (_, list) = c.get("/api/alerts/silences").await;
    assert_eq!(list["silences"][0]["comment"], "upgrade");
    // Saved for the next start.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(c.data_dir.join("silences.json")).unwrap()).unwrap();
    assert_eq!(saved[0]["id"], s["id"]);
    let (status, e) = post(
        &c,
        "/api/alerts/silences",
        json!({"rule": "no-such-rule", "duration": "2h"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("no rule"), "{e}");
    let (status, _) = post(&c, "/api/alerts/silences", json!({"duration": "forever"})).await;
    assert_eq!(status, 400);
    let url = c.url(&format!("/api/alerts/silences/{}", s["id"]));
    let status = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent.delete(&url).call().unwrap().status().as_u16()
    })
    .await
    .unwrap();
    assert_eq!(status, 204);
    let (_, list) = c.get("/api/alerts/silences").await;
    assert_eq!(list["silences"], json!([]));
    let saved = std::fs::read_to_string(c.data_dir.join("silences.json")).unwrap();
    assert_eq!(saved.trim(), "[]");
    // The built-in rules are there with no configuration.
    let (_, a) = c.get("/api/alerts").await;
    let rules: Vec<&str> = a["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"host-offline") && rules.contains(&"disk-filling"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_alerts_and_sends_commands() {
    let alerts = alerts_config(
        "default-rules = false\nevaluate-every = \"100ms\"\n\
         [[rules]]\nname = \"always\"\nseverity = \"critical\"\n\
         when = { metric = \"cpu.busy\", below = 2.0 }\n",
    );
    let c = Running::start(|cfg| cfg.alerts = alerts).await;
    let (_stop, _agent) = spawn_agent(c.agent_config("dash-pi", "300ms"));
    eventually(Duration::from_secs(10), "the alert firing", || async {
        let (_, a) = c.get("/api/alerts").await;
        (a["active"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let url = c.url("/");
    tokio::task::spawn_blocking(move || {
        let b = crate::browser::Browser::start(1280, 1000, false);
        b.goto(&url);
        b.wait_for(
            "the firing alert on the fleet page",
            Duration::from_secs(10),
            "return document.querySelector('#alerts li[data-rule=always][data-host=dash-pi]') ? 1 : null;",
        );
        b.goto(&format!("{url}#/host/dash-pi"));
        b.wait_for(
            "the host's alerts",
            Duration::from_secs(10),
            "return document.querySelector('#alerts li[data-rule=always]') ? 1 : null;",
        );
        b.click("button[data-action=republish-inventory]");
        b.wait_for(
            "the command done",
            Duration::from_secs(10),
            "return document.querySelector('#commands tr[data-status=done]') ? 1 : null;",
        );
        b.click("button[data-action=identify]");
        let detail = b.wait_for(
            "identify failed (no panel)",
            Duration::from_secs(10),
            "const r = document.querySelector('#commands tr[data-status=failed]'); return r ? r.textContent : null;",
        );
        assert!(
            detail.as_str().unwrap().contains("no panel attached"),
            "{detail}"
        );
        b.screenshot(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../docs/screenshots/host-alerts-commands.png"),
        );
    })
    .await
    .unwrap();
    let (_, log) = c.get("/api/commands").await;
    assert_eq!(log["commands"].as_array().unwrap().len(), 2);
}
