//! The agent's configuration: flags parsed by clap, then validated into [`AgentConfig`].

use std::path::PathBuf;
use std::time::Duration;

use ember_wire::HostId;

use crate::preview::Preview;

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The broker's host name or address.
    pub broker_host: String,
    /// The broker's port.
    pub broker_port: u16,
    /// This host's id in topics and the collector.
    pub host_id: HostId,
    /// How often to sample and publish.
    pub interval: Duration,
    /// MQTT keep-alive (rumqttd refuses 0).
    pub keep_alive: Duration,
    /// Where to write a PNG preview of the panel, if anywhere.
    pub preview: Option<Preview>,
}

/// Why a configuration was refused: names the key and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid `{key}`: {reason}")]
pub struct ConfigError {
    /// The configuration key (flag name without dashes).
    pub key: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

fn err(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl AgentConfig {
    /// Validates raw values. `host_id: None` derives the id from the machine's host name.
    pub fn new(
        broker: &str,
        host_id: Option<&str>,
        interval: &str,
        preview: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let (broker_host, broker_port) = parse_broker(broker)?;
        let host_id = match host_id {
            Some(id) => HostId::new(id).map_err(|e| {
                err(
                    "host-id",
                    format!("{e} (got {id:?}; example: `--host-id kitchen-pi`)"),
                )
            })?,
            None => {
                let name = sysinfo::System::host_name().unwrap_or_default();
                HostId::sanitize(&name).ok_or_else(|| {
                    err(
                        "host-id",
                        format!("the host name {name:?} gives no valid id; set `--host-id`"),
                    )
                })?
            }
        };
        let interval = parse_interval(interval)?;
        Ok(AgentConfig {
            broker_host,
            broker_port,
            host_id,
            interval,
            keep_alive: Duration::from_secs(30),
            preview: preview.map(Preview::new),
        })
    }
}

/// Parses `HOST:PORT` (`[::1]:1883` for IPv6).
pub fn parse_broker(s: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| {
        err(
            "broker",
            format!("expected HOST:PORT, got {s:?} (example: `--broker 127.0.0.1:1883`)"),
        )
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| err("broker", format!("port must be 1 to 65535, got {port:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(err("broker", format!("no host in {s:?}")));
    }
    Ok((host.to_string(), port))
}

/// Parses a duration such as `1s`, `500ms` or `2m`; 100 ms to 1 hour.
pub fn parse_interval(s: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(s).map_err(|e| {
        err(
            "interval",
            format!("{e} in {s:?} (examples: `1s`, `500ms`, `1m`)"),
        )
    })?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(err(
            "interval",
            format!("must be between 100ms and 1h, got {s:?}"),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers() {
        assert_eq!(
            parse_broker("127.0.0.1:1883"),
            Ok(("127.0.0.1".into(), 1883))
        );
        assert_eq!(parse_broker("[::1]:1883"), Ok(("::1".into(), 1883)));
        assert_eq!(
            parse_broker("collector.local:8883"),
            Ok(("collector.local".into(), 8883))
        );
        for bad in ["", "host", "host:", "host:0", "host:70000", ":1883"] {
            let e = parse_broker(bad).unwrap_err();
            assert_eq!(e.key, "broker", "{bad}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "fast", "1", "10ms", "2h"] {
            let e = parse_interval(bad).unwrap_err();
            assert_eq!(e.key, "interval", "{bad}");
        }
    }

    #[test]
    fn host_ids_name_the_key() {
        let e = AgentConfig::new("127.0.0.1:1883", Some("Bad/Id"), "1s", None).unwrap_err();
        assert_eq!(e.key, "host-id");
        assert!(e.to_string().contains("--host-id"), "{e}");
        let ok = AgentConfig::new("127.0.0.1:1883", None, "1s", None).unwrap();
        assert!(!ok.host_id.as_str().is_empty());
    }
}
