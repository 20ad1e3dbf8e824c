//! The embedded rumqttd broker, configured from Ember's own [`Config`], and the in-process link
//! that ingest reads from.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::Config;

/// Errors starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The MQTT address cannot be bound (in use, or not this machine's).
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Port {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The broker's in-process link was refused.
    #[error("cannot link to the embedded broker: {0}")]
    Link(Box<rumqttd::local::LinkError>),
    /// The broker did not start listening.
    #[error("the MQTT listener on {0} did not come up (is the port in use?)")]
    NotListening(SocketAddr),
}

/// Bytes in one segment of a filter's in-memory log.
pub const SEGMENT_SIZE: usize = 1 << 20;
/// Segments a filter's log keeps; when a new one is needed the oldest goes, read or not.
pub const SEGMENT_COUNT: usize = 4;

/// The broker's settings, derived from the collector's config.
///
/// rumqttd keeps each subscribed filter's log in memory as segments; the collector's own
/// subscription and every external subscriber's filter get `SEGMENT_SIZE * SEGMENT_COUNT`
/// bytes at most, so the broker's memory stays bounded however long it runs.
pub fn rumqttd_config(config: &Config, listen: SocketAddr) -> rumqttd::Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: config.max_payload,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "ember-v4".to_string(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: RouterConfig {
            // The gate (`gate.rs`) enforces `max-connections`; the router must never refuse a
            // connection itself (rumqttd then panics when the client id comes back). The
            // headroom covers the collector's own link, the readiness probe and connections
            // rumqttd has not yet finished closing.
            max_connections: config.max_connections + ROUTER_HEADROOM,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_SIZE,
            max_segment_count: SEGMENT_COUNT,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("ember".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        // No console: rumqttd's has no authentication.
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Router connections beyond `max-connections`: see [`rumqttd_config`].
pub const ROUTER_HEADROOM: usize = 16;

/// A running broker: its address and the collector's link into it.
pub struct Running {
    /// The loopback address the broker listens on, for the gate.
    pub addr: SocketAddr,
    /// Sends into the broker as the collector.
    pub link_tx: LinkTx,
    /// Receives what the collector subscribed to.
    pub link_rx: LinkRx,
}

/// Starts rumqttd on its own threads, listening on a free loopback port for the gate
/// (`gate.rs`) only, and waits until it accepts connections.
///
/// rumqttd has no way to stop; its threads end with the process.
pub fn start(config: &Config) -> Result<Running, BrokerError> {
    let addr = resolve_port(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let mut broker = Broker::new(rumqttd_config(config, addr));
    let (link_tx, link_rx) = broker
        .link("ember-collector")
        .map_err(|e| BrokerError::Link(Box::new(e)))?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("the embedded broker stopped: {e}");
            }
        })
        .map_err(|source| BrokerError::Port { addr, source })?;
    wait_listening(addr, Duration::from_secs(5))?;
    Ok(Running {
        addr,
        link_tx,
        link_rx,
    })
}

/// rumqttd cannot report the port it bound, nor that binding failed: so the address is tried
/// here first, which resolves port 0 and names a port already in use.
fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let probe =
        std::net::TcpListener::bind(addr).map_err(|source| BrokerError::Port { addr, source })?;
    probe
        .local_addr()
        .map_err(|source| BrokerError::Port { addr, source })
}

/// Waits until the broker answers an MQTT CONNECT with a CONNACK, then disconnects cleanly
/// (a bare TCP probe would make rumqttd log an error).
fn wait_listening(addr: SocketAddr, timeout: Duration) -> Result<(), BrokerError> {
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if mqtt_ping(target).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}

fn mqtt_ping(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const CLIENT_ID: &[u8] = b"ember-collector-probe";
    let mut connect = vec![0x10, (10 + 2 + CLIENT_ID.len()) as u8];
    // Protocol "MQTT" level 4, clean session, keep-alive 10 s.
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10]);
    connect.extend_from_slice(&[0, CLIENT_ID.len() as u8]);
    connect.extend_from_slice(CLIENT_ID);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(&connect)?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    if connack != [0x20, 2, 0, 0] {
        return Err(std::io::Error::other("not an MQTT CONNACK"));
    }
    stream.write_all(&[0xe0, 0])?;
    Ok(())
}
