//! The collector's configuration, validated from flags into [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

/// A validated collector configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded MQTT broker listens. Port 0 picks a free port.
    pub mqtt_listen: SocketAddr,
    /// Where the HTTP API listens. Port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// Where the collector keeps its files.
    pub data_dir: PathBuf,
    /// Samples kept per host.
    pub history: usize,
    /// Largest MQTT payload accepted, in bytes.
    pub max_payload: usize,
    /// Most MQTT connections at once.
    pub max_connections: usize,
}

impl Config {
    /// Defaults for everything but the addresses and the data directory.
    pub fn new(mqtt_listen: SocketAddr, http_listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            mqtt_listen,
            http_listen,
            data_dir,
            // One hour at the default 1 s interval.
            history: 3600,
            // Four times the largest message of the wire contract.
            max_payload: 4 * ember_wire::MAX_ENCODED_LEN,
            max_connections: 10_000,
        }
    }

    /// Loopback addresses on free ports and a data directory: what tests use.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Config::new(loopback, loopback, data_dir)
    }
}
