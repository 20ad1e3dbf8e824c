//! Ember's collector: an embedded MQTT broker, per-host history and the HTTP API.
//!
//! The binary (`main.rs`) only parses flags and calls [`start`]; tests call the same function on
//! port 0.

#![deny(unsafe_code)]

pub mod broker;
pub mod config;
pub mod http;
pub mod ingest;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

pub use config::Config;
pub use store::Store;

/// A started collector: where it listens, and the future that serves until shutdown.
pub struct Collector {
    /// The embedded broker's address.
    pub mqtt_addr: SocketAddr,
    /// The HTTP API's address.
    pub http_addr: SocketAddr,
    /// Hosts and history, for tests and embedding.
    pub store: Arc<RwLock<Store>>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Collector {
    /// Waits until the HTTP server has shut down.
    pub async fn join(self) -> anyhow::Result<()> {
        self.serve.await.context("HTTP server task")??;
        Ok(())
    }
}

/// Starts the broker, ingest and the HTTP API, and returns once all of them accept
/// connections. The HTTP server stops when `shutdown` resolves; the broker lives as long as the
/// process (rumqttd cannot be stopped).
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Collector> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (set --data-dir to a writable place)",
            config.data_dir.display()
        )
    })?;
    let store = Arc::new(RwLock::new(Store::new(config.history, config.max_payload)));
    let broker = broker::start(&config)?;
    let mqtt_addr = broker.addr;
    ingest::spawn(broker.link_tx, broker.link_rx, store.clone()).await?;

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let app = http::router(http::AppState {
        store: store.clone(),
        started: Instant::now(),
        mqtt_addr,
    });
    let serve = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok(Collector {
        mqtt_addr,
        http_addr,
        store,
        serve,
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
