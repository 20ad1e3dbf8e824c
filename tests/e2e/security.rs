//! Issue #8, MQTT half: authentication, TLS with the certificates `agent add` makes, mTLS, no
//! host can publish for another, and a flood from one client does not starve the others. Real
//! collector, real agents, rumqttc and Debian's Mosquitto clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ember_agent::config::RawConfig as AgentRaw;
use ember_collector::access::Role;
use ember_collector::config::{MqttSecurity, RawConfig};
use ember_collector::onboard::{self, AgentAdd};
use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::harness::Running;
use crate::support::{eventually, spawn_agent};

/// A folder with a collector config, a CA and onboarded accounts (`agent add`, as a user runs
/// it), removed when dropped.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    config: PathBuf,
    passwords: Vec<(String, String)>,
}

impl Pki {
    pub(crate) fn new(accounts: &[(&str, Role, bool)]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ember-e2e-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("collector.toml");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut passwords = Vec::new();
        for (host, role, cert) in accounts {
            let added = onboard::agent_add(&AgentAdd {
                host,
                config: &config,
                pki_dir: &dir,
                server_names: &names,
                broker: "127.0.0.1:1",
                client_cert: *cert,
                role: *role,
                // The board's folder is the one written here, so agent.toml works as it is.
                board_dir: dir.join("agents").join(host).to_str().unwrap(),
            })
            .expect("agent add");
            passwords.push((host.to_string(), added.password));
        }
        Pki {
            dir,
            config,
            passwords,
        }
    }

    pub(crate) fn password(&self, host: &str) -> &str {
        &self.passwords.iter().find(|(h, _)| h == host).unwrap().1
    }

    /// `[mqtt]` as the collector reads it from the written config.
    pub(crate) fn mqtt(&self, without_tls: bool) -> MqttSecurity {
        let mut raw = RawConfig::from_file(&self.config).expect("the written config parses");
        if without_tls {
            raw.mqtt.tls_cert = None;
            raw.mqtt.tls_key = None;
            raw.mqtt.client_ca = None;
        }
        raw.validate().expect("the written config is valid").mqtt
    }

    fn agent_dir(&self, host: &str) -> PathBuf {
        self.dir.join("agents").join(host)
    }

    /// The agent's config as `agent add` wrote it, pointed at `broker`; without its TLS keys
    /// for a collector without TLS.
    fn agent(&self, host: &str, broker: &str, interval: &str) -> ember_agent::AgentConfig {
        self.agent_with(host, broker, interval, true)
    }

    fn agent_with(
        &self,
        host: &str,
        broker: &str,
        interval: &str,
        tls: bool,
    ) -> ember_agent::AgentConfig {
        let mut file = AgentRaw::from_file(&self.agent_dir(host).join("agent.toml")).unwrap();
        if !tls {
            file.tls_ca = None;
            file.tls_cert = None;
            file.tls_key = None;
        }
        AgentRaw::defaults()
            .merge(file)
            .merge(AgentRaw {
                broker: Some(broker.to_string()),
                interval: Some(interval.to_string()),
                ..AgentRaw::default()
            })
            .validate()
            .expect("the written agent.toml is valid")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect(options: MqttOptions) -> Result<(), ConnectionError> {
    let (_client, mut events) = AsyncClient::new(options, 10);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

fn options(id: &str, addr: SocketAddr, login: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    o
}

async fn gate(c: &Running) -> Value {
    c.get("/api/health").await.1["connections"].clone()
}

fn mosquitto(bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} (Debian: apt-get install mosquitto-clients): {e}"))
}

fn sample(host: &str, seq: u64) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    Envelope::new(
        HostId::new(host).unwrap(),
        Message::Sample(Sample {
            seq,
            ..Sample::default()
        }),
    )
    .encode(&mut buf)
    .unwrap()
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_wrong_password_clients_are_refused() {
    let pki = Pki::new(&[("pi-a", Role::Agent, false)]);
    let mqtt = pki.mqtt(true);
    let c = Running::start(|c| {
        c.mqtt = mqtt;
        c.mqtt.max_connections_per_client = 1;
    })
    .await;
    let addr = c.collector.mqtt_addr;
    let good = pki.password("pi-a");

    let check = |what: &str, r: Result<(), ConnectionError>, code: ConnectReturnCode| match r {
        Err(ConnectionError::ConnectionRefused(c)) => assert_eq!(c, code, "{what}"),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    };
    check(
        "anonymous",
        connect(options("anon", addr, None)).await,
        ConnectReturnCode::NotAuthorized,
    );
    check(
        "wrong password",
        connect(options("x", addr, Some(("pi-a", "not-it")))).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    check(
        "unknown user",
        connect(options("x", addr, Some(("pi-z", good)))).await,
        ConnectReturnCode::BadUserNamePassword,
    );
    connect(options("x", addr, Some(("pi-a", good))))
        .await
        .expect("the right password connects");

    // Mosquitto's own client says so too.
    let port = addr.port().to_string();
    let base = ["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311", "-q", "1"];
    let anon = mosquitto(
        "mosquitto_pub",
        &[&base[..], &["-t", "ember/v1/pi-a/status", "-m", "x"]].concat(),
    );
    assert!(!anon.status.success(), "anonymous mosquitto_pub connected");
    let err = String::from_utf8_lossy(&anon.stderr).to_lowercase();
    assert!(err.contains("not authori"), "{err}");
    let wrong = mosquitto(
        "mosquitto_pub",
        &[
            &base[..],
            &[
                "-u",
                "pi-a",
                "-P",
                "nope",
                "-t",
                "ember/v1/pi-a/status",
                "-m",
                "x",
            ],
        ]
        .concat(),
    );
    assert!(!wrong.status.success(), "a wrong password connected");
    let right = mosquitto(
        "mosquitto_pub",
        &[
            &base[..],
            &[
                "-u",
                "pi-a",
                "-P",
                good,
                "-t",
                "ember/v1/pi-a/status",
                "-m",
                "x",
            ],
        ]
        .concat(),
    );
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );

    // A real agent with its password is let in and its samples arrive.
    let mut agent = c.agent_config("pi-a", "200ms");
    agent.login = Some(ember_agent::config::Login {
        username: "pi-a".into(),
        password: good.to_string(),
        password_file: None,
    });
    let (_stop, _agent) = spawn_agent(agent);
    eventually(Duration::from_secs(10), "pi-a's samples", || async {
        let h = c.get("/api/hosts/pi-a").await.1;
        (h["received"].as_u64()? >= 3).then_some(())
    })
    .await;
    // The agent holds pi-a's one connection: a second is refused.
    check(
        "a second connection of pi-a",
        connect(options("y", addr, Some(("pi-a", good)))).await,
        ConnectReturnCode::ServiceUnavailable,
    );
    let g = gate(&c).await;
    assert!(g["refused_auth"].as_u64().unwrap() >= 5, "{g}");
    assert_eq!(g["refused_client_limit"], 1, "{g}");
    let (_, metrics) = c.get_text("/metrics").await;
    assert!(
        metrics.contains("ember_collector_mqtt_refused_total{reason=\"auth\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofing_client_cannot_put_a_sample_into_another_hosts_history() {
    let pki = Pki::new(&[("pi-a", Role::Agent, false), ("pi-b", Role::Agent, false)]);
    let mqtt = pki.mqtt(true);
    let c = Running::start(|c| c.mqtt = mqtt).await;
    let addr = c.collector.mqtt_addr;
    let (_stop, _b) = spawn_agent(pki.agent_with("pi-b", &addr.to_string(), "200ms", false));
    eventually(Duration::from_secs(10), "pi-b's samples", || async {
        let h = c.get("/api/hosts/pi-b").await.1;
        (h["received"].as_u64()? >= 2).then_some(())
    })
    .await;

    // pi-a's credentials, and pi-b's client id: neither lets it speak for pi-b.
    let (client, mut events) = AsyncClient::new(
        options(
            "ember-agent-pi-b",
            addr,
            Some(("pi-a", pki.password("pi-a"))),
        ),
        100,
    );
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while acks < 4 {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => panic!("the spoofer was disconnected: {e}"),
            }
        }
        acks
    });
    // A well-formed sample of pi-b on pi-b's topic: passes the payload-vs-topic check.
    client
        .publish(
            "ember/v1/pi-b/sample",
            QoS::AtLeastOnce,
            false,
            sample("pi-b", 1_000_000),
        )
        .await
        .unwrap();
    // A command to pi-b: only the collector commands.
    client
        .publish("ember/v1/pi-b/cmd", QoS::AtLeastOnce, false, vec![1, 2, 3])
        .await
        .unwrap();
    // And its own sample, which is allowed.
    client
        .publish(
            "ember/v1/pi-a/sample",
            QoS::AtLeastOnce,
            false,
            sample("pi-a", 7),
        )
        .await
        .unwrap();
    client
        .publish(
            "ember/v1/pi-b/sample",
            QoS::AtMostOnce,
            false,
            sample("pi-b", 2_000_000),
        )
        .await
        .unwrap();
    client
        .publish("ember/v1/pi-b/status", QoS::AtLeastOnce, true, vec![0])
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), acks)
            .await
            .expect("every QoS 1 publish acknowledged, dropped or not")
            .unwrap(),
        4
    );

    let g = eventually(Duration::from_secs(10), "spoofs counted", || async {
        let g = gate(&c).await;
        (g["spoofed"].as_u64()? >= 4).then_some(g)
    })
    .await;
    assert_eq!(g["spoofed"], 4, "{g}");
    // pi-a's own sample arrived: the gate drops by account, not everything.
    eventually(Duration::from_secs(5), "pi-a's own sample", || async {
        let h = c.get("/api/hosts/pi-a").await.1;
        (h["received"].as_u64()? == 1).then_some(())
    })
    .await;
    // pi-b kept its session (the spoofer's client id did not take it over) and its history has
    // nothing of the spoofer's.
    let before = c.get("/api/hosts/pi-b").await.1["received"]
        .as_u64()
        .unwrap();
    eventually(Duration::from_secs(5), "more pi-b samples", || async {
        let h = c.get("/api/hosts/pi-b").await.1;
        (h["received"].as_u64()? >= before + 3).then_some(())
    })
    .await;
    let samples = c.get("/api/hosts/pi-b/samples").await.1;
    let seqs: Vec<u64> = samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.iter().all(|s| *s < 1_000_000), "{seqs:?}");
    assert_eq!(c.get("/api/hosts/pi-b").await.1["status"], "online");
    let (_, metrics) = c.get_text("/metrics").await;
    assert!(
        metrics.contains("ember_collector_mqtt_publishes_dropped_total{reason=\"spoofed\"} 4"),
        "{metrics}"
    );

    // A last will on another host's topic is refused at CONNECT.
    let mut o = options("w", addr, Some(("pi-a", pki.password("pi-a"))));
    o.set_last_will(rumqttc::LastWill::new(
        "ember/v1/pi-b/status",
        vec![0],
        QoS::AtLeastOnce,
        true,
    ));
    match connect(o).await {
        Err(ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)) => {}
        other => panic!("a will for pi-b: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_with_the_generated_certificates() {
    let pki = Pki::new(&[
        ("pi-tls", Role::Agent, false),
        ("pi-mtls", Role::Agent, true),
        ("dash", Role::Reader, false),
    ]);
    let mqtt = pki.mqtt(false);
    assert!(mqtt.tls.is_some());
    let c = Running::start(|c| c.mqtt = mqtt).await;
    let port = c.mqtt_port();
    let broker = format!("127.0.0.1:{port}");

    // An agent over TLS with its password, and one with only its client certificate.
    let (_s1, _a1) = spawn_agent(pki.agent("pi-tls", &broker, "200ms"));
    let mut mtls = pki.agent("pi-mtls", &broker, "200ms");
    mtls.login = None;
    let (_s2, _a2) = spawn_agent(mtls);
    for host in ["pi-tls", "pi-mtls"] {
        eventually(Duration::from_secs(15), host, || async {
            let h = c.get(&format!("/api/hosts/{host}")).await.1;
            (h["received"].as_u64()? >= 2).then_some(())
        })
        .await;
    }

    // Mosquitto's client reads a sample over TLS with the generated CA.
    let ca = pki.dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let port_s = port.to_string();
    let tls = [
        "-h",
        "localhost",
        "-p",
        &port_s,
        "-V",
        "mqttv311",
        "--cafile",
        ca,
    ];
    let sub = mosquitto(
        "mosquitto_sub",
        &[
            &tls[..],
            &["-u", "dash", "-P", pki.password("dash")],
            &["-t", "ember/v1/pi-tls/sample", "-C", "1", "-W", "10"],
        ]
        .concat(),
    );
    assert!(
        sub.status.success() && !sub.stdout.is_empty(),
        "mosquitto_sub over TLS: {}",
        String::from_utf8_lossy(&sub.stderr)
    );

    // Plain MQTT on the TLS port gets nowhere.
    let plain = connect(options(
        "plain",
        c.collector.mqtt_addr,
        Some(("pi-tls", pki.password("pi-tls"))),
    ))
    .await;
    assert!(plain.is_err(), "plain MQTT on the TLS listener: {plain:?}");

    // With pi-mtls's certificate, Mosquitto can publish pi-mtls's topics only.
    let dir = pki.agent_dir("pi-mtls");
    let cert = dir.join("client.pem");
    let key = dir.join("client.key");
    let spoof = mosquitto(
        "mosquitto_pub",
        &[
            &tls[..],
            &[
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
            &["-q", "1", "-t", "ember/v1/pi-tls/sample", "-m", "spoof"],
        ]
        .concat(),
    );
    assert!(
        spoof.status.success(),
        "{}",
        String::from_utf8_lossy(&spoof.stderr)
    );
    let g = eventually(Duration::from_secs(5), "the spoof counted", || async {
        let g = gate(&c).await;
        (g["spoofed"].as_u64()? >= 1).then_some(g)
    })
    .await;
    assert!(g["refused_tls"].as_u64().unwrap() >= 1, "{g}");
    assert_eq!(c.get("/api/health").await.1["ingest"]["rejected_decode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_flood_from_one_client_the_other_hosts_samples_keep_arriving() {
    let hosts = ["calm-1", "calm-2", "calm-3"];
    let mut accounts: Vec<(&str, Role, bool)> =
        hosts.iter().map(|h| (*h, Role::Agent, false)).collect();
    accounts.push(("flood", Role::Agent, false));
    let pki = Pki::new(&accounts);
    let mqtt = pki.mqtt(true);
    let c = Running::start(|c| c.mqtt = mqtt).await;
    let addr = c.collector.mqtt_addr;
    let mut agents = Vec::new();
    for h in hosts {
        agents.push(spawn_agent(pki.agent_with(
            h,
            &addr.to_string(),
            "200ms",
            false,
        )));
    }
    let received = || async {
        let mut n = Vec::new();
        for h in hosts {
            n.push(
                c.get(&format!("/api/hosts/{h}")).await.1["received"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        n
    };
    eventually(Duration::from_secs(10), "every calm host", || async {
        received().await.iter().all(|n| *n >= 2).then_some(())
    })
    .await;

    // The flood: QoS 0 samples of its own host, as fast as the connection takes them.
    let (client, mut events) = AsyncClient::new(
        options("flood", addr, Some(("flood", pki.password("flood")))),
        1000,
    );
    let poll = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            // Each a new sequence number, so that none is dropped as a duplicate.
            if client
                .publish(
                    "ember/v1/flood/sample",
                    QoS::AtMostOnce,
                    false,
                    sample("flood", sent + 1),
                )
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = received().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = received().await;
    let sent = flood.await.unwrap();
    poll.abort();
    let g = gate(&c).await;
    eprintln!("flood: {sent} publishes in 4 s; calm hosts {before:?} -> {after:?}; gate {g}");
    for (i, h) in hosts.iter().enumerate() {
        // 5 samples a second: 15 in 3 s; allow for scheduling on a shared machine.
        assert!(
            after[i] >= before[i] + 10,
            "{h} starved during the flood: {} -> {}",
            before[i],
            after[i]
        );
    }
    assert!(sent > 1000, "the flood was not a flood: {sent}");
    assert!(g["rate_dropped"].as_u64().unwrap() > sent / 2, "{g}");
    // What got through is the rate: at most the burst plus 20 a second.
    let flood_received = c.get("/api/hosts/flood").await.1["received"]
        .as_u64()
        .unwrap_or(0);
    assert!(flood_received <= 200 + 20 * 6, "{flood_received}");
}

/// Issue #20, finding 6: a certificate signed by the CA no longer authenticates once its
/// account (`[mqtt.users.NAME]`) is removed; the others' still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_whose_account_was_removed_is_refused() {
    let pki = Pki::new(&[
        ("pi-kept", Role::Agent, true),
        ("pi-gone", Role::Agent, true),
    ]);
    let mut mqtt = pki.mqtt(false);
    mqtt.users.remove("pi-gone");
    let c = Running::start(|c| c.mqtt = mqtt).await;
    let port = c.mqtt_port().to_string();
    let ca = pki.dir.join("ca.pem");
    let publish = |host: &str| {
        let dir = pki.agent_dir(host);
        let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
        let topic = format!("ember/v1/{host}/result");
        mosquitto(
            "mosquitto_pub",
            &[
                "-h",
                "localhost",
                "-p",
                &port,
                "-V",
                "mqttv311",
                "--cafile",
                ca.to_str().unwrap(),
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "-q",
                "1",
                "-t",
                &topic,
                "-m",
                "x",
            ],
        )
    };
    let kept = publish("pi-kept");
    assert!(
        kept.status.success(),
        "{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    let gone = publish("pi-gone");
    assert!(!gone.status.success(), "a revoked certificate connected");
    let err = String::from_utf8_lossy(&gone.stderr).to_lowercase();
    assert!(err.contains("not authori"), "{err}");
    assert_eq!(gate(&c).await["refused_auth"], 1);
}
