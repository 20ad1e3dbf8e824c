//! Helpers for the collector tests of issue #5: a collector with an edited configuration, text
//! and event-stream HTTP, MQTT clients, and a real Mosquitto from Debian's packages.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ember_collector::{Collector, Config};
use rumqttc::{AsyncClient, EventLoop, MqttOptions};
use serde_json::Value;
use tokio::sync::watch;

/// A new CA and a server certificate from it for `localhost` and `127.0.0.1`, in a fresh
/// directory named after `name`: the files, and the CA's certificate (PEM).
pub fn tls_files(name: &str) -> (ember_collector::config::TlsFiles, String) {
    use ember_collector::pki;
    let dir = std::env::temp_dir().join(format!("ember-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = pki::new_ca().unwrap();
    std::fs::write(dir.join("ca.key"), &ca.key_pem).unwrap();
    let server = pki::Ca::load(&dir.join("ca.key"))
        .unwrap()
        .server(&["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap();
    let files = ember_collector::config::TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, &server.cert_pem).unwrap();
    std::fs::write(&files.key, &server.key_pem).unwrap();
    (files, ca.cert_pem)
}

/// A blocking HTTP client for the tests: 5 s at most per request, and an error status is an
/// answer to look at, not an `Err`.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// A collector with an edited configuration, stopped when dropped.
pub struct Running {
    pub collector: Collector,
    pub data_dir: PathBuf,
    stop: watch::Sender<bool>,
}

fn fresh_dir(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ember-e2e-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl Running {
    pub async fn start(edit: impl FnOnce(&mut Config)) -> Self {
        let data_dir = fresh_dir("c");
        let mut config = Config::ephemeral(data_dir.clone());
        edit(&mut config);
        let (stop, mut rx) = watch::channel(false);
        let collector = ember_collector::start(config, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .expect("collector starts");
        Running {
            collector,
            data_dir,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.collector.http_addr)
    }

    /// GET: (status, body as text).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let url = self.url(path);
        tokio::task::spawn_blocking(move || {
            let agent = http_agent();
            let mut response = agent.get(&url).call().expect("HTTP request");
            let status = response.status().as_u16();
            (
                status,
                response.body_mut().read_to_string().expect("a body"),
            )
        })
        .await
        .unwrap()
    }

    /// GET: (status, content type, body bytes).
    pub async fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let url = self.url(path);
        tokio::task::spawn_blocking(move || {
            let agent = http_agent();
            let mut response = agent.get(&url).call().expect("HTTP request");
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = response.body_mut().read_to_vec().expect("a body");
            (status, kind, body)
        })
        .await
        .unwrap()
    }

    /// GET a JSON document: (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, body)
    }

    /// `method` (`POST` or `DELETE`) with a JSON body and `token` as the bearer token:
    /// (status, body; `null` if it is not JSON).
    pub async fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Value,
        token: Option<&'static str>,
    ) -> (u16, Value) {
        let url = self.url(path);
        tokio::task::spawn_blocking(move || {
            let agent = http_agent();
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut r = if method == "DELETE" {
                let mut req = agent.delete(&url);
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                req.call()
            } else {
                assert_eq!(method, "POST");
                let mut req = agent.post(&url).header("content-type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                req.send(body.to_string())
            }
            .expect("HTTP request");
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
        .await
        .unwrap()
    }

    /// An agent configuration pointing at this collector's broker.
    pub fn agent_config(&self, host: &str, interval: &str) -> ember_agent::AgentConfig {
        agent_config(self.collector.mqtt_addr, host, interval)
    }

    pub fn mqtt_port(&self) -> u16 {
        self.collector.mqtt_addr.port()
    }
}

/// The operator token that tests sending commands and silences give the collector
/// ([`with_operator`]), and the name the audit log records for it.
pub const OPERATOR_TOKEN: &str = "ember_e2e_operator_token";
/// The name of [`OPERATOR_TOKEN`] in the configuration.
pub const OPERATOR_NAME: &str = "e2e-operator";

/// Adds [`OPERATOR_TOKEN`] to a collector's configuration (reading stays open on loopback: an
/// operator token does not close it).
pub fn with_operator(config: &mut Config) {
    config.http.tokens.push(ember_collector::auth::TokenEntry {
        name: OPERATOR_NAME.into(),
        role: ember_collector::auth::Role::Operator,
        hash: ember_collector::auth::TokenHash::of(OPERATOR_TOKEN),
    });
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn agent_config(broker: SocketAddr, host: &str, interval: &str) -> ember_agent::AgentConfig {
    ember_agent::AgentConfig::new(&broker.to_string(), Some(host), interval, None)
        .expect("valid agent config")
}

/// Reads a Server-Sent Events stream on a thread: `(event, data as JSON)` per event. Ends when
/// the server closes the stream.
pub fn sse(url: String) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(None)
            .build()
            .into();
        let response = agent.get(&url).call().expect("event stream");
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        let reader = BufReader::new(response.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(e) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                let v: Value = serde_json::from_str(d.trim()).expect("JSON data");
                if tx.send((std::mem::take(&mut event), v)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for the next event named `name` that satisfies `check`, skipping others.
pub async fn next_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    timeout: Duration,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(timeout, async {
        loop {
            let (e, v) = rx.recv().await.expect("the event stream ended");
            if e == name && check(&v) {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{name}` event within {timeout:?}"))
}

/// An MQTT client whose event loop runs on a task, forwarding publishes `(topic, payload,
/// retained)`.
pub struct Mqtt {
    pub client: AsyncClient,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    pub task: tokio::task::JoinHandle<()>,
    /// Received but not yet asked for, oldest first.
    seen: Vec<(String, Vec<u8>)>,
}

impl Mqtt {
    /// Drops what was received and not asked for.
    pub fn forget(&mut self) {
        self.seen.clear();
        while self.rx.try_recv().is_ok() {}
    }
}

pub fn mqtt(options: MqttOptions) -> Mqtt {
    let (client, events) = AsyncClient::new(options, 100);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(pump(events, tx));
    Mqtt {
        client,
        rx,
        task,
        seen: Vec::new(),
    }
}

async fn pump(
    mut events: EventLoop,
    tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>, bool)>,
) {
    loop {
        match events.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn options(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// Takes the oldest publish on `topic` satisfying `check`, waiting for it if needed. Other
/// publishes are kept for later calls.
pub async fn next_publish(
    m: &mut Mqtt,
    timeout: Duration,
    topic: &str,
    check: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    if let Some(i) = m.seen.iter().position(|(t, p)| t == topic && check(p)) {
        return m.seen.remove(i).1;
    }
    tokio::time::timeout(timeout, async {
        loop {
            let (t, p, _) = m.rx.recv().await.expect("the MQTT client stopped");
            if t == topic && check(&p) {
                return p;
            }
            m.seen.push((t, p));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {topic} within {timeout:?}"))
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto broker from Debian's `mosquitto` package on a free loopback port, killed when
/// dropped.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Mosquitto {
    pub fn start() -> Self {
        const BIN: &str = "/usr/sbin/mosquitto";
        let bin = which("mosquitto").unwrap_or_else(|| PathBuf::from(BIN));
        assert!(
            bin.exists(),
            "{BIN} is missing: the external-broker tests need Mosquitto \
             (Debian: `apt-get install -y mosquitto`)"
        );
        let dir = fresh_dir("mosquitto");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n"
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let m = Mosquitto { child, port, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
