//! The embedded rumqttd broker, configured from Ember's own [`Config`], and the in-process link
//! that ingest reads from.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, ConnectionSettings, RouterConfig, ServerSettings};
use subtle::ConstantTimeEq;

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
///
/// rumqttd accepts only clients whose password is `secret`: the gate (`gate.rs`), which holds
/// it in memory. Another process on this machine that finds the loopback port cannot go around
/// the gate.
pub fn rumqttd_config(config: &Config, listen: SocketAddr, secret: &str) -> rumqttd::Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: config.max_payload,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let secret: Arc<[u8]> = secret.as_bytes().into();
    connections.set_auth_handler(move |_client, _user, password: String| {
        // Compared in constant time, as the HTTP tokens are (`auth.rs`).
        let ok: bool = password.as_bytes().ct_eq(&secret).into();
        async move { ok }
    });
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
    /// The password the broker accepts, for the gate.
    pub secret: String,
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
    let secret = random_secret();
    let mut broker = Broker::new(rumqttd_config(config, addr, &secret));
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
    wait_listening(addr, &secret, Duration::from_secs(5))?;
    Ok(Running {
        addr,
        secret,
        link_tx,
        link_rx,
    })
}

/// 32 random bytes, hex: the gate's password at rumqttd.
fn random_secret() -> String {
    crate::auth::hex(&crate::onboard::random_bytes::<32>())
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
fn wait_listening(addr: SocketAddr, secret: &str, timeout: Duration) -> Result<(), BrokerError> {
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if mqtt_ping(target, secret).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}

fn mqtt_ping(addr: SocketAddr, secret: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut probe = rumqttc::mqttbytes::v4::Connect::new("ember-collector-probe");
    probe.keep_alive = 10;
    probe.set_login("ember-collector", secret);
    let mut connect = bytes::BytesMut::new();
    probe
        .write(&mut connect)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// rumqttd's loopback port is the gate's alone: without its secret, nobody gets in.
    #[test]
    fn the_broker_takes_only_the_gates_secret() {
        let dir = std::env::temp_dir().join(format!("ember-broker-secret-{}", std::process::id()));
        let running = start(&Config::ephemeral(dir)).expect("the broker starts");
        assert!(running.addr.ip().is_loopback());
        assert_eq!(running.secret.len(), 64);
        mqtt_ping(running.addr, &running.secret).expect("the secret is accepted");
        assert!(mqtt_ping(running.addr, "not-the-secret").is_err());
        let wrong = running.secret.replace(&running.secret[..1], "x");
        assert!(mqtt_ping(running.addr, &wrong).is_err());
        // A client without any login (the open relay's clients before the gate adds one).
        let mut anonymous = rumqttc::mqttbytes::v4::Connect::new("anon");
        anonymous.keep_alive = 10;
        let mut bytes = bytes::BytesMut::new();
        anonymous.write(&mut bytes).unwrap();
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(running.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut ack = [0u8; 4];
        let accepted = s.read_exact(&mut ack).is_ok() && ack == [0x20, 2, 0, 0];
        assert!(!accepted, "{ack:02x?}");
    }
}
