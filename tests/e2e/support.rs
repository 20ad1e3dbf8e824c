//! Shared helpers: a collector on free ports, JSON over HTTP, waiting for a condition.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_collector::{Collector, Config};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A collector running for one test, stopped when dropped.
pub struct TestCollector {
    pub collector: Collector,
    pub data_dir: PathBuf,
    stop: watch::Sender<bool>,
}

impl TestCollector {
    pub async fn start() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "ember-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        let (stop, mut rx) = watch::channel(false);
        let collector = ember_collector::start(Config::ephemeral(data_dir.clone()), async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .expect("collector starts");
        TestCollector {
            collector,
            data_dir,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.collector.http_addr)
    }

    /// GET a JSON document: (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let url = self.url(path);
        tokio::task::spawn_blocking(move || {
            let agent = crate::harness::http_agent();
            let mut response = agent.get(&url).call().expect("HTTP request");
            let status = response.status().as_u16();
            let body: Value = response.body_mut().read_json().expect("JSON body");
            (status, body)
        })
        .await
        .unwrap()
    }

    /// An agent configuration pointing at this collector.
    pub fn agent_config(&self, host: &str, interval: &str) -> ember_agent::AgentConfig {
        ember_agent::AgentConfig::new(
            &self.collector.mqtt_addr.to_string(),
            Some(host),
            interval,
            None,
        )
        .expect("valid agent config")
    }

    pub fn mqtt_port(&self) -> u16 {
        self.collector.mqtt_addr.port()
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs an agent until the returned sender is dropped or sent `true`.
pub fn spawn_agent(
    config: ember_agent::AgentConfig,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, mut rx) = watch::channel(false);
    let handle = tokio::spawn(ember_agent::run(config, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    (tx, handle)
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes a command to `host` as a plain MQTT client and waits for its result.
pub async fn send_command(
    mqtt_port: u16,
    host: &str,
    action: ember_wire::Action,
) -> ember_wire::CommandResult {
    send_command_times(mqtt_port, host, action, 1)
        .await
        .remove(0)
}

/// Publishes the same command (same id) `times` times, as QoS 1 redelivers it, each time once
/// the previous one was answered, and returns the `times` results.
pub async fn send_command_times(
    mqtt_port: u16,
    host: &str,
    action: ember_wire::Action,
    times: usize,
) -> Vec<ember_wire::CommandResult> {
    use ember_wire::topic::{self, Kind};
    use ember_wire::{Command, Envelope, HostId, Message, MAX_ENCODED_LEN};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let host = HostId::new(host).unwrap();
    let mut options = MqttOptions::new(format!("e2e-commander-{host}"), "127.0.0.1", mqtt_port);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .subscribe(topic::topic(&host, Kind::Result).as_str(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let id = 4242;
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let command = Envelope::new(
        host.clone(),
        Message::Command(Command {
            id,
            timeout_ms: 5000,
            action,
        }),
    )
    .encode(&mut buf)
    .unwrap()
    .to_vec();
    let mut results = Vec::new();
    let cmd = topic::topic(&host, Kind::Command);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await.expect("commander connection") {
                Event::Incoming(Packet::SubAck(_)) => {
                    client
                        .publish(cmd.as_str(), QoS::AtLeastOnce, false, command.clone())
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) => {
                    if let Ok(Envelope {
                        message: Message::CommandResult(r),
                        ..
                    }) = ember_wire::decode(&p.payload)
                    {
                        if r.id == id {
                            results.push(r);
                            if results.len() == times {
                                return;
                            }
                            // Again once answered: a delivery while it still runs gets no
                            // result of its own (the one result comes when it ends).
                            client
                                .publish(cmd.as_str(), QoS::AtLeastOnce, false, command.clone())
                                .await
                                .unwrap();
                        }
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{times} command results within 10 s, got {results:?}"));
    let _ = client.disconnect().await;
    results
}

/// A TCP forwarder between agent and broker that plays the broker going away: switched off
/// (connections dropped, port closed) and on again, or holding its connections open while
/// forwarding nothing (a network that drops every packet).
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
    held: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Proxy {
            addr,
            upstream,
            tasks: Arc::default(),
            acceptor: None,
            held: watch::channel(false).0,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, tasks, held) = (self.upstream, self.tasks.clone(), self.held.subscribe());
        self.acceptor = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut held = held.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let hold = tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                            h = held.wait_for(|h| *h) => h.is_ok(),
                        };
                        if hold {
                            // Both sockets stay open; nothing more crosses.
                            std::future::pending::<()>().await
                        }
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        }));
    }

    /// The broker "stops": the port closes and every connection is cut.
    pub fn down(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// The broker is back on the same port.
    pub async fn up(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                // The aborted acceptor may take a moment to release the port.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// The broker is back on the same port, served from `upstream` now (a collector restarted
    /// in-process listens on a new port: the old one's listener lives on with the runtime).
    pub async fn up_to(&mut self, upstream: SocketAddr) {
        self.upstream = upstream;
        self.up().await;
    }

    /// The broker stops answering: connections stay open, nothing is forwarded either way.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }
}
