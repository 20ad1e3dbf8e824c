//! Ember's collector: an embedded MQTT broker (or a client of an external one), per-host history
//! that survives restarts, the HTTP API and event stream, Prometheus metrics and the MQTT bridge.
//!
//! The binary (`main.rs`) only loads the configuration and calls [`start`]; tests call the same
//! function on port 0.

#![deny(unsafe_code)]

pub mod access;
pub mod admission;
pub mod alerts;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod codec;
pub mod commands;
pub mod config;
pub mod descriptors;
pub mod gate;
#[cfg(test)]
mod gate_attacks;
pub mod http;
pub mod https;
pub mod ingest;
pub mod metrics;
pub mod onboard;
pub mod origin;
pub mod packed;
pub mod persist;
pub mod pki;
pub mod prom;
pub mod query;
pub mod ring;
pub mod serve;
pub mod spill;
pub mod store;
pub mod subscriptions;
pub mod tiers;
pub mod totals;

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{broadcast, watch};

pub use config::Config;
pub use store::Store;

/// A started collector: where it listens, and the future that serves until shutdown.
pub struct Collector {
    /// The MQTT broker agents publish to: the embedded one, or the external one.
    pub mqtt_addr: SocketAddr,
    /// The HTTP API's address.
    pub http_addr: SocketAddr,
    /// Whether it is served over HTTPS (`http.tls-cert`).
    pub https: bool,
    /// Hosts and history, for tests and embedding.
    pub store: Arc<RwLock<Store>>,
    /// Live events (samples, status changes), for embedding and benchmarks.
    pub events: broadcast::Sender<store::Event>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    ingest: std::thread::JoinHandle<()>,
    alerts: std::thread::JoinHandle<()>,
}

impl Collector {
    /// Waits until the HTTP server has shut down, ingest has written its last snapshot and
    /// alert evaluation has stopped.
    pub async fn join(self) -> anyhow::Result<()> {
        self.serve.await.context("HTTP server task")??;
        let (ingest, alerts) = (self.ingest, self.alerts);
        tokio::task::spawn_blocking(move || ingest.join())
            .await
            .context("ingest thread")?
            .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?;
        tokio::task::spawn_blocking(move || alerts.join())
            .await
            .context("alert thread")?
            .map_err(|_| anyhow::anyhow!("the alert thread panicked"))?;
        Ok(())
    }
}

/// Starts persistence (recovering what the data directory holds), the broker or the external
/// connection, ingest and the HTTP API, and returns once they accept connections. Everything
/// stops when `shutdown` resolves (ingest after a last snapshot); an embedded broker lives as
/// long as the process (rumqttd cannot be stopped).
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Collector> {
    // Refuses to serve reads to the network without a token (the error names the key and fix).
    let read_access = config.http.resolve(config.http_listen)?;
    let https = match &config.http.tls {
        Some(files) => Some(https::server_config(files).with_context(|| {
            "cannot serve HTTPS with `http.tls-cert` and `http.tls-key` (`ember-collector ca init` \
             writes a certificate and key)"
        })?),
        None => None,
    };
    let auth = Arc::new(
        auth::Auth::new(read_access, config.http.tokens.clone())
            .context("no random numbers from the OS for the session key")?,
    );
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (set --data-dir to a writable place)",
            config.data_dir.display()
        )
    })?;
    let disk = Box::new(persist::DirDisk::new(config.data_dir.clone()));
    let mut store_config = store::StoreConfig::from_config(&config);
    if config.history.spill {
        let dir = config.data_dir.join("spill");
        match spill::Spill::in_dir(&dir) {
            Ok(s) => store_config.spill = Some(Arc::new(s)),
            // Not fatal: the history stays in memory, as with `history.spill = false`.
            Err(e) => tracing::warn!(
                "history stays in memory: cannot keep its sealed blocks in {} ({e}); \
                 set `history.spill = false` to silence this",
                dir.display()
            ),
        }
    }
    let (persister, store) =
        tokio::task::spawn_blocking(move || persist::Persister::open(disk, store_config))
            .await
            .context("recovery")?;
    let persist_status = persister.status();
    {
        let recovery = persist_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recovery
            .clone();
        for p in &recovery.problems {
            tracing::warn!("recovery: {p}");
        }
        if recovery.snapshot_loaded || recovery.wal_records > 0 {
            tracing::info!(
                "recovered {} hosts ({} log records replayed)",
                store.host_count(),
                recovery.wal_records
            );
        }
    }
    let store = Arc::new(RwLock::new(store));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    spawn_heap_trim();
    let bridge = bridge::Bridge::new(config.bridge.clone());
    let extra = bridge.subscriptions();
    let flow = gate::Flow::new(gate::Flow::limit_for(
        broker::SEGMENT_SIZE,
        broker::SEGMENT_COUNT,
    ));
    let mut gate = None;
    let (bus, mqtt_addr, broker_kind): (Box<dyn ingest::Bus>, SocketAddr, &'static str) =
        match &config.external {
            None => {
                let served = bridge::Served::new(store.clone(), config.bridge.clone());
                let broker = broker::start_serving(&config, Some(Arc::new(served))).await?;
                let bus = ingest::LinkBus::new(broker.link_tx, broker.link_rx, &extra)?
                    .with_flow(flow.clone())
                    .serving(config.bridge.clone());
                let settings =
                    gate::Settings::from_config(&config, broker.handoff).context("MQTT TLS")?;
                let listener = tokio::net::TcpListener::bind(config.mqtt_listen)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot listen for MQTT on {} (set mqtt-listen to a free address)",
                            config.mqtt_listen
                        )
                    })?;
                let addr = listener.local_addr()?;
                let g = gate::Gate::new(settings, flow.clone());
                tokio::spawn(gate::serve(listener, g.clone()));
                gate = Some(g);
                (Box::new(bus), addr, "embedded")
            }
            Some(e) => {
                let addr = (e.host.as_str(), e.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .with_context(|| {
                        format!("cannot resolve the external broker {}:{}", e.host, e.port)
                    })?;
                (
                    Box::new(ingest::ClientBus::new(e, &extra)),
                    addr,
                    "external",
                )
            }
        };
    let (events, _) = broadcast::channel(4096);
    let (evaluator, alerting) =
        alerts::run::Evaluator::start(config.alerts.clone(), &config.data_dir);
    let commands = Arc::new(std::sync::Mutex::new(commands::Commands::open(
        &config.data_dir,
    )));
    let (outgoing_tx, outgoing) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ingest = ingest::spawn(
        bus,
        ingest::Pipeline {
            store: store.clone(),
            persister,
            bridge,
            events: events.clone(),
            stopping: stop_rx.clone(),
            commands: commands.clone(),
            outgoing,
        },
        &config,
    )?;
    // Alerts are evaluated off the ingest thread, which publishes what they produce. Dropping
    // `alerts_stop` (at shutdown, or on an early return below) ends the thread.
    let (alerts_stop, alerts_stopped) = std::sync::mpsc::channel::<()>();
    let alerts = evaluator.spawn(store.clone(), outgoing_tx.clone(), alerts_stopped)?;

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let http_conns = serve::Stats::new(serve::MAX_CONNECTIONS);
    let app = http::router(http::AppState {
        store: store.clone(),
        started: Instant::now(),
        mqtt_addr,
        broker: broker_kind,
        persist: persist_status,
        events: events.clone(),
        stopping: stop_rx,
        alerts: alerting,
        commands,
        outgoing: outgoing_tx,
        auth,
        gate: gate.clone(),
        https: config.http.tls.is_some(),
        connections: http_conns.clone(),
        hosts: Arc::new(origin::Hosts::new(
            read_access == auth::ReadAccess::Open,
            config.http.allowed_hosts.clone(),
        )),
    });
    if config.http.tls.is_none()
        && !config.http_listen.ip().is_loopback()
        && !config.http.tokens.is_empty()
    {
        tracing::warn!(
            "HTTP on {} without TLS: tokens and session cookies cross the network in clear \
             text; set http.tls-cert and http.tls-key",
            config.http_listen
        );
    }
    let shutdown = async move {
        shutdown.await;
        // Ends the event streams (so that the graceful shutdown can finish), ingest and
        // alert evaluation.
        let _ = stop_tx.send(true);
        drop(alerts_stop);
    };
    let head = serve::HEAD_TIMEOUT;
    let serve = match https {
        Some(tls) => {
            let listener = https::TlsListener::new(listener, tls)?;
            tokio::spawn(serve::serve(listener, app, http_conns, head, shutdown))
        }
        None => {
            // The event stream writes small lines one after another: with Nagle's algorithm
            // on, a line written while the previous one is unacknowledged waits for the
            // client's delayed ACK (40 ms on Linux).
            let listener =
                axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                    let _ = tcp.set_nodelay(true);
                });
            tokio::spawn(serve::serve(listener, app, http_conns, head, shutdown))
        }
    };
    Ok(Collector {
        mqtt_addr,
        http_addr,
        https: config.http.tls.is_some(),
        store,
        events,
        serve,
        ingest,
        alerts,
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How often [`spawn_heap_trim`] gives free pages back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Gives glibc's free heap pages back to the system every [`TRIM_EVERY`], on a thread of its own.
///
/// glibc returns freed memory only from the top of its heap: what the collector frees in
/// between (history blocks once spilled, snapshot and response buffers) stays in its RSS until
/// `malloc_trim` releases the free pages. Measured (issue #9): 8.3 of the store's 91 MiB at
/// 10,000 hosts × 300 samples, in 1 ms (`cargo bench -p ember-collector --bench memory`); at
/// 10,000 agents × 300 s, RSS at the end 254.7 with against 262.6 MiB without, one run each,
/// a call taking 1 to 46 ms on that heap, its arenas locked one at a time meanwhile.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn spawn_heap_trim() {
    // At once first: recovery has just freed what loading the snapshot took.
    let trim = || loop {
        trim_heap();
        std::thread::sleep(TRIM_EVERY);
    };
    // Once per process, however many collectors a test starts in it.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(trim)
        {
            tracing::warn!("freed memory will not be given back to the system: {e}");
        }
    });
}

/// Gives glibc's free heap pages back to the system now (`malloc_trim(0)`): what
/// [`spawn_heap_trim`]'s thread does, and what the memory bench measures.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: `malloc_trim` takes no pointer and only walks glibc's own heap under glibc's own
    // locks; any thread may call it at any time.
    #[allow(unsafe_code)]
    unsafe {
        malloc_trim(0);
    }
}
