//! The agent's configuration, in two phases (as rumqttd and ripgrep do it):
//!
//! 1. [`RawConfig`]: every key optional, loaded in layers — built-in defaults, then the TOML file,
//!    then `EMBER_*` environment variables, then command-line flags; a later layer wins key by key.
//! 2. [`RawConfig::validate`] turns the merged layers into a typed [`AgentConfig`], refusing every
//!    bad value with an error that names the key and says what is allowed.
//!
//! `ember-agent --print-config` prints the effective configuration as TOML.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ember_wire::sample::{MAX_PROBES, MAX_SENSORS, MAX_TOP, MAX_WATCHED};
use ember_wire::HostId;
use serde::{Deserialize, Serialize};

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
    /// The MQTT version spoken to the broker (`mqtt-version`: 3.1.1, the default, or 5).
    pub mqtt_version: Version,
    /// Samples kept while the broker is unreachable, sent oldest-first on reconnect.
    pub buffer: usize,
    /// Temperature sensors to report, by label; empty reports every sensor found.
    pub temperature_sensors: Vec<String>,
    /// How many processes each top list holds.
    pub top_processes: usize,
    /// How often the process table is walked for the top lists and the watch-list (the
    /// sampler's largest cost); samples in between repeat the last lists.
    pub process_interval: Duration,
    /// Processes reported present or absent, by name.
    pub watch: Vec<String>,
    /// Network probe targets: `host` (ICMP echo, TCP fallback) or `host:port` (TCP connect).
    pub probes: Vec<String>,
    /// Where to write a PNG preview of the panel, if anywhere.
    pub preview: Option<Preview>,
    /// The attached panel (`board` and the `[panel]` table), if any.
    pub panel: Option<crate::panel::PanelConfig>,
    /// Named commands the collector may ask for: the allow-list.
    pub commands: Vec<crate::command::Named>,
    /// MQTT user name and password, if the broker asks for them.
    pub login: Option<Login>,
    /// TLS to the broker, if on.
    pub tls: Option<Tls>,
    /// Where samples still unsent at stop are kept for the next start (see `spool.rs`), if
    /// anywhere.
    pub spool: Option<PathBuf>,
}

/// MQTT credentials. The password is never printed (`Debug` hides it, `--print-config` shows
/// only where it comes from).
#[derive(Clone)]
pub struct Login {
    /// User name: the host id unless set.
    pub username: String,
    /// The password.
    pub password: String,
    /// `password-file`, if that is where it came from.
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// TLS to the broker: the CA that signed the broker's certificate and, for mTLS, this host's
/// certificate and key.
#[derive(Debug, Clone)]
pub struct Tls {
    /// `tls-ca`.
    pub ca: PathBuf,
    /// `tls-cert` and `tls-key`.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The rustls configuration built from them.
    pub config: Arc<rustls::ClientConfig>,
}

/// Why a configuration was refused: names the key and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid `{key}`{source_note}: {reason}")]
pub struct ConfigError {
    /// The configuration key, as written in the TOML file.
    pub key: String,
    /// What is wrong and what is allowed.
    pub reason: String,
    /// Where the value came from, for the message (" (from EMBER_INTERVAL)").
    source_note: String,
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
        source_note: String::new(),
    }
}

/// One layer of configuration: every key optional. Keys are the TOML file's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// `HOST:PORT` of the MQTT broker (the collector).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// This host's id; default: derived from the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Sampling interval (`1s`, `500ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// MQTT keep-alive (`30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
    /// MQTT version: `3.1.1` (default) or `5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_version: Option<String>,
    /// Samples kept during an outage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer: Option<usize>,
    /// Temperature sensors to report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_sensors: Option<Vec<String>>,
    /// Size of each top-process list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_processes: Option<usize>,
    /// How often processes are scanned (`5s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_interval: Option<String>,
    /// Processes to watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<Vec<String>>,
    /// Network probe targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<Vec<String>>,
    /// PNG preview path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<PathBuf>,
    /// Board + panel profile: a built-in name (`pi-ssd1306`) or a path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// Pages, rotation, units, thresholds, burn-in shift and contrast of the panel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel: Option<crate::panel::PanelRaw>,
    /// `[commands.NAME]`: the commands the collector may ask this agent to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<std::collections::BTreeMap<String, crate::command::RawNamed>>,
    /// MQTT user name (default: the host id, when a password is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the MQTT password (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The MQTT password itself: only from `EMBER_PASSWORD`, never from a file or printed.
    #[serde(skip)]
    pub password: Option<String>,
    /// CA certificate (PEM) of the broker: TLS on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// This host's client certificate (PEM), for mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// File for the samples unsent at stop; `""`: none. Default: `outbox.spool` in systemd's
    /// `$STATE_DIRECTORY`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool: Option<PathBuf>,
}

/// The environment variables read, and the key each sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("EMBER_BROKER", "broker"),
    ("EMBER_HOST_ID", "host-id"),
    ("EMBER_INTERVAL", "interval"),
    ("EMBER_KEEP_ALIVE", "keep-alive"),
    ("EMBER_MQTT_VERSION", "mqtt-version"),
    ("EMBER_BUFFER", "buffer"),
    ("EMBER_TEMPERATURE_SENSORS", "temperature-sensors"),
    ("EMBER_TOP_PROCESSES", "top-processes"),
    ("EMBER_PROCESS_INTERVAL", "process-interval"),
    ("EMBER_WATCH", "watch"),
    ("EMBER_PROBES", "probes"),
    ("EMBER_PREVIEW", "preview"),
    ("EMBER_BOARD", "board"),
    ("EMBER_USERNAME", "username"),
    ("EMBER_PASSWORD_FILE", "password-file"),
    ("EMBER_PASSWORD", "password"),
    ("EMBER_TLS_CA", "tls-ca"),
    ("EMBER_TLS_CERT", "tls-cert"),
    ("EMBER_TLS_KEY", "tls-key"),
    ("EMBER_SPOOL", "spool"),
];

/// Environment variables that are Ember's but not configuration keys.
const ENV_OTHER: &[&str] = &["EMBER_CONFIG", "EMBER_LOG", "EMBER_BLESS"];

impl RawConfig {
    /// The built-in defaults.
    pub fn defaults() -> Self {
        RawConfig {
            broker: Some("127.0.0.1:1883".into()),
            interval: Some("1s".into()),
            keep_alive: Some("30s".into()),
            top_processes: Some(MAX_TOP),
            ..RawConfig::default()
        }
    }

    /// Reads a TOML file. Unknown keys are refused by name.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                "config",
                format!(
                    "cannot read {}: {e} (set --config to an existing file)",
                    path.display()
                ),
            )
        })?;
        Self::from_toml(&text).map_err(|mut e| {
            e.source_note = format!(" (in {})", path.display());
            e
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            // serde names the offending key for unknown fields; toml adds the position.
            let key = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
                .map(str::to_string)
                .unwrap_or_else(|| "config".to_string());
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            ConfigError {
                key,
                reason: format!("{message}{at}"),
                source_note: String::new(),
            }
        })
    }

    /// Reads `EMBER_*` variables from `vars`. Lists are comma-separated. An `EMBER_` variable that
    /// names no key is refused, so a typo does not go unnoticed.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut raw = RawConfig::default();
        for (name, value) in vars {
            if !name.starts_with("EMBER_") || ENV_OTHER.contains(&name.as_str()) {
                continue;
            }
            let Some((_, key)) = ENV_KEYS.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = ENV_KEYS.iter().map(|(n, _)| *n).collect();
                return Err(err(
                    &name,
                    format!("unknown variable; known: {}", known.join(", ")),
                ));
            };
            let list = || -> Vec<String> {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let number = || -> Result<usize, ConfigError> {
                value.trim().parse().map_err(|_| {
                    let mut e = err(key, format!("expected a whole number, got {value:?}"));
                    e.source_note = format!(" (from {name})");
                    e
                })
            };
            match *key {
                "broker" => raw.broker = Some(value.clone()),
                "host-id" => raw.host_id = Some(value.clone()),
                "interval" => raw.interval = Some(value.clone()),
                "keep-alive" => raw.keep_alive = Some(value.clone()),
                "mqtt-version" => raw.mqtt_version = Some(value.clone()),
                "buffer" => raw.buffer = Some(number()?),
                "temperature-sensors" => raw.temperature_sensors = Some(list()),
                "top-processes" => raw.top_processes = Some(number()?),
                "process-interval" => raw.process_interval = Some(value.clone()),
                "watch" => raw.watch = Some(list()),
                "probes" => raw.probes = Some(list()),
                "preview" => raw.preview = Some(PathBuf::from(&value)),
                "board" => raw.board = Some(value.clone()),
                "username" => raw.username = Some(value.clone()),
                "password-file" => raw.password_file = Some(PathBuf::from(&value)),
                "password" => raw.password = Some(value.clone()),
                "tls-ca" => raw.tls_ca = Some(PathBuf::from(&value)),
                "tls-cert" => raw.tls_cert = Some(PathBuf::from(&value)),
                "tls-key" => raw.tls_key = Some(PathBuf::from(&value)),
                "spool" => raw.spool = Some(PathBuf::from(&value)),
                _ => unreachable!("ENV_KEYS and this match list the same keys"),
            }
        }
        Ok(raw)
    }

    /// This layer with `over` on top: every key `over` sets wins.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        RawConfig {
            broker: over.broker.or(self.broker),
            host_id: over.host_id.or(self.host_id),
            interval: over.interval.or(self.interval),
            keep_alive: over.keep_alive.or(self.keep_alive),
            mqtt_version: over.mqtt_version.or(self.mqtt_version),
            buffer: over.buffer.or(self.buffer),
            temperature_sensors: over.temperature_sensors.or(self.temperature_sensors),
            top_processes: over.top_processes.or(self.top_processes),
            process_interval: over.process_interval.or(self.process_interval),
            watch: over.watch.or(self.watch),
            probes: over.probes.or(self.probes),
            preview: over.preview.or(self.preview),
            board: over.board.or(self.board),
            panel: over.panel.or(self.panel),
            commands: over.commands.or(self.commands),
            username: over.username.or(self.username),
            password_file: over.password_file.or(self.password_file),
            password: over.password.or(self.password),
            tls_ca: over.tls_ca.or(self.tls_ca),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            spool: over.spool.or(self.spool),
        }
    }

    /// Checks every key and builds the typed configuration.
    pub fn validate(&self) -> Result<AgentConfig, ConfigError> {
        let broker = self.broker.as_deref().unwrap_or("127.0.0.1:1883");
        let (broker_host, broker_port) = parse_broker(broker)?;
        let host_id = match self.host_id.as_deref() {
            Some(id) => HostId::new(id).map_err(|e| {
                err(
                    "host-id",
                    format!("{e} (got {id:?}; example: `host-id = \"kitchen-pi\"`)"),
                )
            })?,
            None => {
                let name = sysinfo::System::host_name().unwrap_or_default();
                HostId::sanitize(&name).ok_or_else(|| {
                    err(
                        "host-id",
                        format!("the host name {name:?} gives no valid id; set `host-id`"),
                    )
                })?
            }
        };
        let interval = parse_duration(
            "interval",
            self.interval.as_deref().unwrap_or("1s"),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?;
        let keep_alive = parse_duration(
            "keep-alive",
            self.keep_alive.as_deref().unwrap_or("30s"),
            Duration::from_secs(5),
            Duration::from_secs(3600),
        )?;
        let mqtt_version = Version::parse(self.mqtt_version.as_deref())
            .map_err(|reason| err("mqtt-version", reason))?;
        // Default: ten minutes of samples, at least 600.
        let ten_minutes = (600_000 / interval.as_millis().max(1)) as usize;
        let buffer = self.buffer.unwrap_or(ten_minutes.max(600));
        if !(1..=100_000).contains(&buffer) {
            return Err(err(
                "buffer",
                format!("must be 1 to 100000 samples, got {buffer}"),
            ));
        }
        let top_processes = self.top_processes.unwrap_or(MAX_TOP);
        if top_processes > MAX_TOP {
            return Err(err(
                "top-processes",
                format!("must be 0 to {MAX_TOP}, got {top_processes}"),
            ));
        }
        let process_interval = parse_duration(
            "process-interval",
            self.process_interval.as_deref().unwrap_or("5s"),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?;
        let list = |key: &str, v: &Option<Vec<String>>, max: usize, len: usize| {
            let v = v.clone().unwrap_or_default();
            if v.len() > max {
                return Err(err(key, format!("at most {max} entries, got {}", v.len())));
            }
            if let Some(bad) = v.iter().find(|s| s.is_empty() || s.len() > len) {
                return Err(err(
                    key,
                    format!("entries must be 1 to {len} bytes long, got {bad:?}"),
                ));
            }
            Ok(v)
        };
        let temperature_sensors = list(
            "temperature-sensors",
            &self.temperature_sensors,
            MAX_SENSORS,
            24,
        )?;
        let watch = list("watch", &self.watch, MAX_WATCHED, 16)?;
        let probes = list("probes", &self.probes, MAX_PROBES, 32)?;
        let login = self.login(&host_id)?;
        let tls = self.tls()?;
        // Off with `spool = ""`; under systemd (`StateDirectory=`) in its state directory.
        let spool = match &self.spool {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => std::env::var_os("STATE_DIRECTORY")
                .filter(|d| !d.is_empty())
                // Several directories are separated by ':': the first is ours.
                .and_then(|d| {
                    d.to_str()
                        .and_then(|d| d.split(':').next())
                        .map(PathBuf::from)
                })
                .map(|d| d.join("outbox.spool")),
        };
        Ok(AgentConfig {
            login,
            tls,
            spool,
            broker_host,
            broker_port,
            host_id,
            interval,
            keep_alive,
            mqtt_version,
            buffer,
            temperature_sensors,
            top_processes,
            process_interval,
            watch,
            probes,
            preview: self.preview.clone().map(Preview::new),
            panel: crate::panel::PanelConfig::from_raw(self.board.as_deref(), self.panel.as_ref())
                .map_err(|e| err(&e.key, e.reason))?,
            commands: crate::command::validate(&self.commands.clone().unwrap_or_default())
                .map_err(|(key, reason)| err(&key, reason))?,
        })
    }
}

impl RawConfig {
    fn login(&self, host_id: &HostId) -> Result<Option<Login>, ConfigError> {
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    err(
                        "password-file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let line = text.lines().next().unwrap_or_default().trim().to_string();
                if line.is_empty() {
                    return Err(err("password-file", format!("{} is empty", path.display())));
                }
                Some(line)
            }
            (None, None) => None,
        };
        match (password, &self.username) {
            (Some(password), username) => Ok(Some(Login {
                username: username.clone().unwrap_or_else(|| host_id.to_string()),
                password,
                password_file: self.password_file.clone(),
            })),
            (None, Some(_)) => Err(err(
                "password-file",
                "`username` is set but there is no password: set password-file (or EMBER_PASSWORD)",
            )),
            (None, None) => Ok(None),
        }
    }

    fn tls(&self) -> Result<Option<Tls>, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(err(
                    "tls-ca",
                    "a client certificate needs TLS: set tls-ca to the collector's CA (ca.pem)",
                ));
            }
            return Ok(None);
        };
        let certs = |key: &str, path: &Path| -> Result<Vec<CertificateDer<'static>>, ConfigError> {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| err(key, format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(err(
                    key,
                    format!("{}: no CERTIFICATE in it", path.display()),
                ));
            }
            Ok(certs)
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs("tls-ca", ca)? {
            roots
                .add(c)
                .map_err(|e| err("tls-ca", format!("{}: {e}", ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("tls-ca", e.to_string()))?
            .with_root_certificates(roots);
        let (config, client) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let chain = certs("tls-cert", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| err("tls-key", format!("{}: {e}", key.display())))?;
                let config = builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| err("tls-key", format!("{}: {e}", key.display())))?;
                (config, Some((cert.clone(), key.clone())))
            }
            (None, None) => (builder.with_no_client_auth(), None),
            (Some(_), None) => return Err(err("tls-key", "missing: tls-cert needs its key")),
            (None, Some(_)) => {
                return Err(err("tls-cert", "missing: tls-key needs its certificate"))
            }
        };
        Ok(Some(Tls {
            ca: ca.clone(),
            client,
            config: Arc::new(config),
        }))
    }
}

impl AgentConfig {
    /// A configuration from defaults and the given values (what tests and the collector's
    /// `--local-agent` use). `host_id: None` derives the id from the host name.
    pub fn new(
        broker: &str,
        host_id: Option<&str>,
        interval: &str,
        preview: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        RawConfig::defaults()
            .merge(RawConfig {
                broker: Some(broker.to_string()),
                host_id: host_id.map(str::to_string),
                interval: Some(interval.to_string()),
                preview,
                ..RawConfig::default()
            })
            .validate()
    }

    /// The effective configuration as a complete layer (for `--print-config`).
    pub fn to_raw(&self) -> RawConfig {
        RawConfig {
            broker: Some(if self.broker_host.contains(':') {
                format!("[{}]:{}", self.broker_host, self.broker_port)
            } else {
                format!("{}:{}", self.broker_host, self.broker_port)
            }),
            host_id: Some(self.host_id.to_string()),
            interval: Some(humantime::format_duration(self.interval).to_string()),
            keep_alive: Some(humantime::format_duration(self.keep_alive).to_string()),
            mqtt_version: Some(self.mqtt_version.to_string()),
            buffer: Some(self.buffer),
            temperature_sensors: Some(self.temperature_sensors.clone()),
            top_processes: Some(self.top_processes),
            process_interval: Some(humantime::format_duration(self.process_interval).to_string()),
            watch: Some(self.watch.clone()),
            probes: Some(self.probes.clone()),
            preview: self.preview.as_ref().map(|p| p.path().to_path_buf()),
            board: self.panel.as_ref().map(|p| p.board_source.clone()),
            panel: self.panel.as_ref().map(|p| p.to_raw()),
            commands: (!self.commands.is_empty()).then(|| {
                self.commands
                    .iter()
                    .map(|c| (c.name.clone(), c.to_raw()))
                    .collect()
            }),
            username: self.login.as_ref().map(|l| l.username.clone()),
            password_file: self.login.as_ref().and_then(|l| l.password_file.clone()),
            password: None,
            tls_ca: self.tls.as_ref().map(|t| t.ca.clone()),
            tls_cert: self
                .tls
                .as_ref()
                .and_then(|t| t.client.as_ref().map(|c| c.0.clone())),
            tls_key: self
                .tls
                .as_ref()
                .and_then(|t| t.client.as_ref().map(|c| c.1.clone())),
            spool: Some(self.spool.clone().unwrap_or_default()),
        }
    }
}

/// Parses `HOST:PORT` (`[::1]:1883` for IPv6).
pub fn parse_broker(s: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| {
        err(
            "broker",
            format!("expected HOST:PORT, got {s:?} (example: `127.0.0.1:1883`)"),
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

fn parse_duration(
    key: &str,
    s: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(s)
        .map_err(|e| err(key, format!("{e} in {s:?} (examples: `1s`, `500ms`, `1m`)")))?;
    if d < min || d > max {
        return Err(err(
            key,
            format!(
                "must be between {} and {}, got {s:?}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

/// MQTT 3.1.1 or 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4): what every broker speaks.
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

impl Version {
    /// The `mqtt-version` key's value: `3.1.1` (also `311`, `4`) or `5` (also `5.0`); unset:
    /// 3.1.1.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("3.1.1" | "311" | "4") => Ok(Version::V311),
            Some("5" | "5.0") => Ok(Version::V5),
            Some(other) => Err(format!(
                "expected \"3.1.1\" or \"5\", got {other:?} (set mqtt-version = \"3.1.1\" for any broker, \"5\" for an MQTT 5 one)"
            )),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
            assert_eq!(parse_broker(bad).unwrap_err().key, "broker", "{bad}");
        }
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let check = |raw: RawConfig, key: &str| {
            let e = RawConfig::defaults().merge(raw).validate().unwrap_err();
            assert_eq!(e.key, key, "{e}");
        };
        let s = |v: &str| Some(v.to_string());
        check(
            RawConfig {
                interval: s("fast"),
                ..Default::default()
            },
            "interval",
        );
        check(
            RawConfig {
                interval: s("10ms"),
                ..Default::default()
            },
            "interval",
        );
        check(
            RawConfig {
                interval: s("2h"),
                ..Default::default()
            },
            "interval",
        );
        check(
            RawConfig {
                keep_alive: s("0s"),
                ..Default::default()
            },
            "keep-alive",
        );
        check(
            RawConfig {
                host_id: s("Bad/Id"),
                ..Default::default()
            },
            "host-id",
        );
        check(
            RawConfig {
                broker: s("nowhere"),
                ..Default::default()
            },
            "broker",
        );
        check(
            RawConfig {
                buffer: Some(0),
                ..Default::default()
            },
            "buffer",
        );
        check(
            RawConfig {
                top_processes: Some(99),
                ..Default::default()
            },
            "top-processes",
        );
        check(
            RawConfig {
                process_interval: Some("1ms".into()),
                ..Default::default()
            },
            "process-interval",
        );
        let many = Some((0..20).map(|i| format!("p{i}")).collect());
        check(
            RawConfig {
                watch: many,
                ..Default::default()
            },
            "watch",
        );
        let long = Some(vec!["x".repeat(40)]);
        check(
            RawConfig {
                probes: long,
                ..Default::default()
            },
            "probes",
        );
    }

    #[test]
    fn layers_win_in_order_defaults_file_env_flags() {
        let file = RawConfig::from_toml(
            "broker = \"file:1883\"\ninterval = \"5s\"\nhost-id = \"from-file\"\nwatch = [\"sshd\"]\n",
        )
        .unwrap();
        let env = RawConfig::from_env(env(&[
            ("EMBER_INTERVAL", "2s"),
            ("EMBER_WATCH", "mosquitto, python3"),
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
        let flags = RawConfig {
            host_id: Some("from-flags".into()),
            ..RawConfig::default()
        };
        let c = RawConfig::defaults()
            .merge(file)
            .merge(env)
            .merge(flags)
            .validate()
            .unwrap();
        assert_eq!(c.broker_host, "file"); // file over default
        assert_eq!(c.interval, Duration::from_secs(2)); // env over file
        assert_eq!(c.host_id.as_str(), "from-flags"); // flags over file
        assert_eq!(c.watch, ["mosquitto", "python3"]);
        assert_eq!(c.keep_alive, Duration::from_secs(30)); // default
        assert_eq!(c.buffer, 600);
    }

    #[test]
    fn default_buffer_holds_ten_minutes() {
        let c = AgentConfig::new("h:1", Some("x"), "100ms", None).unwrap();
        assert_eq!(c.buffer, 6000);
        let c = AgentConfig::new("h:1", Some("x"), "10s", None).unwrap();
        assert_eq!(c.buffer, 600);
    }

    #[test]
    fn file_errors_name_the_key_and_line() {
        let e = RawConfig::from_toml("broker = \"a:1\"\nintervall = \"1s\"\n").unwrap_err();
        assert_eq!(e.key, "intervall");
        assert!(e.reason.contains("line 2"), "{e}");
        assert!(e.reason.contains("interval"), "lists the known keys: {e}");
        let e = RawConfig::from_toml("buffer = \"lots\"\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = RawConfig::from_file(Path::new("/nonexistent/agent.toml")).unwrap_err();
        assert_eq!(e.key, "config");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = RawConfig::from_env(env(&[("EMBER_INTERVALL", "1s")])).unwrap_err();
        assert_eq!(e.key, "EMBER_INTERVALL");
        assert!(e.reason.contains("EMBER_INTERVAL"), "{e}");
        let e = RawConfig::from_env(env(&[("EMBER_BUFFER", "many")])).unwrap_err();
        assert_eq!(e.key, "buffer");
        assert!(e.to_string().contains("EMBER_BUFFER"), "{e}");
        assert!(RawConfig::from_env(env(&[("EMBER_CONFIG", "/x")])).is_ok());
    }

    /// Issue #8: the password comes from a file or EMBER_PASSWORD and is never shown.
    #[test]
    fn the_password_is_read_but_never_printed() {
        let dir = std::env::temp_dir().join(format!("ember-agent-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let raw = RawConfig {
            host_id: Some("pi".into()),
            password_file: Some(file.clone()),
            ..RawConfig::default()
        };
        let c = RawConfig::defaults().merge(raw.clone()).validate().unwrap();
        let login = c.login.clone().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("pi", "s3cret-from-file")
        );
        let printed = toml::to_string(&c.to_raw()).unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(!format!("{c:?}").contains("s3cret"));
        // The environment's password wins over the file and is not printed either.
        let env = RawConfig::from_env(env(&[("EMBER_PASSWORD", "s3cret-env")])).unwrap();
        let c = RawConfig::defaults()
            .merge(raw)
            .merge(env)
            .validate()
            .unwrap();
        assert_eq!(c.login.as_ref().unwrap().password, "s3cret-env");
        assert!(!toml::to_string(&c.to_raw()).unwrap().contains("s3cret"));
        // A password is never a key of the file.
        assert!(RawConfig::from_toml("password = \"x\"").is_err());
        let check = |raw: RawConfig, key: &str| {
            let e = RawConfig::defaults().merge(raw).validate().unwrap_err();
            assert_eq!(e.key, key, "{e}");
        };
        check(
            RawConfig {
                username: Some("pi".into()),
                ..RawConfig::default()
            },
            "password-file",
        );
        check(
            RawConfig {
                password_file: Some(dir.join("missing")),
                ..RawConfig::default()
            },
            "password-file",
        );
        check(
            RawConfig {
                tls_cert: Some(file.clone()),
                ..RawConfig::default()
            },
            "tls-ca",
        );
        check(
            RawConfig {
                tls_ca: Some(file),
                ..RawConfig::default()
            },
            "tls-ca",
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_packaged_config_file_is_valid() {
        let file = RawConfig::from_toml(include_str!("../debian/agent.toml")).unwrap();
        RawConfig::defaults().merge(file).validate().unwrap();
    }

    #[test]
    fn printed_config_reads_back_to_the_same() {
        let c = AgentConfig::new(
            "[::1]:1883",
            Some("pi"),
            "1500ms",
            Some("/tmp/p.png".into()),
        )
        .unwrap();
        let text = toml::to_string(&c.to_raw()).unwrap();
        let again = RawConfig::from_toml(&text).unwrap().validate().unwrap();
        assert_eq!(again.to_raw(), c.to_raw(), "{text}");
    }
}
