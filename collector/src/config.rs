//! The collector's configuration, in two phases (as the agent's `config.rs`):
//!
//! 1. [`RawConfig`]: every key optional, loaded in layers — built-in defaults, then the TOML file,
//!    then `EMBER_*` environment variables, then command-line flags; a later layer wins key by key.
//! 2. [`RawConfig::validate`] turns the merged layers into a typed [`Config`], refusing every bad
//!    value with an error that names the key and says what is allowed.
//!
//! `ember-collector --print-config` prints the effective configuration as TOML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{ReadAccess, Role, TokenEntry, TokenHash};

/// A validated collector configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded MQTT broker listens. Port 0 picks a free port.
    pub mqtt_listen: SocketAddr,
    /// Where the HTTP API listens. Port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// Where the collector keeps its files.
    pub data_dir: PathBuf,
    /// Largest MQTT payload accepted, in bytes.
    pub max_payload: usize,
    /// Most MQTT connections at once.
    pub max_connections: usize,
    /// How much history is kept.
    pub history: HistoryConfig,
    /// When a host counts as stale or offline.
    pub status: StatusConfig,
    /// Write-ahead log and snapshots.
    pub persist: PersistConfig,
    /// The MQTT bridge: JSON state and Home Assistant discovery.
    pub bridge: BridgeConfig,
    /// `None`: embed rumqttd. `Some`: connect to an existing broker instead.
    pub external: Option<ExternalBroker>,
    /// Alert rules, notifications, silences' defaults and maintenance windows.
    pub alerts: crate::alerts::AlertsConfig,
    /// Who may read and command over HTTP.
    pub http: HttpConfig,
    /// Authentication, TLS and per-client limits of the embedded broker's listener.
    pub mqtt: MqttSecurity,
}

/// `[http]`: read access and tokens (see `auth.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Whether reading needs a token.
    pub read_access: ReadAccessSetting,
    /// The tokens, hashed.
    pub tokens: Vec<TokenEntry>,
    /// HTTPS: the certificate and key the dashboard and API are served with.
    pub tls: Option<TlsFiles>,
    /// Names (lower case, no port) a request's `Host` may carry while reading is open, besides
    /// IP addresses and `localhost` (see `origin.rs`: DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

/// `http.read-access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAccessSetting {
    /// Open on a loopback listener without read tokens, a token otherwise.
    Auto,
    /// Open, wherever the listener is (say, behind a proxy that authenticates).
    Open,
    /// A token, always.
    Token,
}

impl ReadAccessSetting {
    fn as_str(self) -> &'static str {
        match self {
            ReadAccessSetting::Auto => "auto",
            ReadAccessSetting::Open => "open",
            ReadAccessSetting::Token => "token",
        }
    }
}

impl HttpConfig {
    /// What read access is on `listen`; refuses a configuration where reading needs a token
    /// and there is none.
    pub fn resolve(&self, listen: SocketAddr) -> Result<ReadAccess, ConfigError> {
        let readers = self.tokens.iter().any(|t| t.role == Role::Read);
        let access = match self.read_access {
            ReadAccessSetting::Open => ReadAccess::Open,
            ReadAccessSetting::Token => ReadAccess::Token,
            ReadAccessSetting::Auto if listen.ip().is_loopback() && !readers => ReadAccess::Open,
            ReadAccessSetting::Auto => ReadAccess::Token,
        };
        if access == ReadAccess::Token && self.tokens.is_empty() {
            let why = if self.read_access == ReadAccessSetting::Token {
                "http.read-access = \"token\" but no token is configured".to_string()
            } else {
                format!(
                    "the HTTP listener {listen} is not loopback, so reading needs a token, and \
                     none is configured"
                )
            };
            return Err(err(
                "http.tokens",
                format!(
                    "{why}: run `ember-collector --config FILE token add NAME --role read`, or \
                     listen on 127.0.0.1 (`http-listen`), or set http.read-access = \"open\" \
                     to let anyone who reaches it read"
                ),
            ));
        }
        Ok(access)
    }
}

/// `[mqtt]`: who may connect to the embedded broker, over what, and how much.
///
/// With no accounts and no client CA the broker listens as it is (loopback only: the config
/// refuses anything else). With either, Ember's gate ([`crate::gate`]) listens instead,
/// authenticates every client, terminates TLS and enforces the topic rules and limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MqttSecurity {
    /// Accounts by name (an agent's name is its host id).
    pub users: BTreeMap<String, User>,
    /// Server certificate chain and key (PEM): TLS on the MQTT listener.
    pub tls: Option<TlsFiles>,
    /// Client certificates signed by this CA (PEM) authenticate as the host in their common
    /// name (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a certificate (needs `client_ca`).
    pub require_client_cert: bool,
    /// Messages a second each client may publish on average.
    pub max_messages_per_second: u32,
    /// Messages a client may publish at once above the average.
    pub max_burst: u32,
    /// Connections one account may hold at once.
    pub max_connections_per_client: usize,
    /// Distinct filters one connection may be subscribed to at once (also without accounts).
    pub max_subscriptions: usize,
}

impl MqttSecurity {
    /// Is the gate in front of the broker (authentication on)?
    pub fn gated(&self) -> bool {
        !self.users.is_empty() || self.client_ca.is_some()
    }
}

/// One account of `[mqtt.users]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// argon2 PHC string.
    pub password_hash: Option<String>,
    /// What the account may do.
    pub role: crate::access::Role,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// History: raw samples, then downsampled tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Raw samples kept per host.
    pub raw_samples: usize,
    /// Downsampled tiers, finest first.
    pub tiers: Vec<Tier>,
    /// Whether sealed history blocks are kept on disk under `data-dir/spill` rather than in
    /// memory (see `spill.rs`).
    pub spill: bool,
}

/// One downsampled tier: min/avg/max per `resolution`, kept for `retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Bucket width.
    pub resolution: Duration,
    /// How long buckets are kept.
    pub retention: Duration,
}

impl Tier {
    /// Buckets kept.
    pub fn buckets(&self) -> usize {
        (self.retention.as_millis() / self.resolution.as_millis().max(1)) as usize
    }

    /// `1m:24h`.
    pub fn spec(&self) -> String {
        format!(
            "{}:{}",
            humantime::format_duration(self.resolution),
            humantime::format_duration(self.retention)
        )
    }
}

/// Host status thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusConfig {
    /// A host whose agent says it is online becomes stale after this long without a message,
    /// or after `stale_intervals` of its sampling intervals, whichever is longer.
    pub stale_after: Duration,
    /// See `stale_after`.
    pub stale_intervals: u32,
    /// A host heard from by nothing (not even a last will) for this long is offline.
    pub offline_after: Duration,
}

/// Persistence timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistConfig {
    /// How often the whole store is written as a snapshot (the write-ahead log restarts then).
    pub snapshot_every: Duration,
    /// How often the write-ahead log is written out (what a SIGKILL can lose).
    pub flush_every: Duration,
    /// How often the write-ahead log is fsynced (what a power cut can lose).
    pub sync_every: Duration,
}

/// The MQTT bridge for subscribers that do not speak postcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Publish a retained JSON state per host.
    pub json: bool,
    /// Publish Home Assistant MQTT discovery (needs `json`).
    pub home_assistant: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Shortest time between two JSON states of one host (status changes go out at once).
    pub state_every: Duration,
}

/// An existing broker to connect to instead of embedding one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalBroker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// Shared-subscription group for samples and results (`$share/{group}/…`), so that several
    /// collectors split the load. `None`: an ordinary subscription.
    pub share_group: Option<String>,
}

impl Config {
    /// Defaults for everything but the addresses and the data directory.
    pub fn new(mqtt_listen: SocketAddr, http_listen: SocketAddr, data_dir: PathBuf) -> Self {
        let mut raw = RawConfig::defaults();
        raw.mqtt_listen = Some(mqtt_listen.to_string());
        raw.http_listen = Some(http_listen.to_string());
        raw.data_dir = Some(data_dir);
        raw.validate().expect("the defaults are valid")
    }

    /// Loopback addresses on free ports and a data directory: what tests use.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Config::new(loopback, loopback, data_dir)
    }

    /// The effective configuration as a complete layer (for `--print-config`).
    pub fn to_raw(&self) -> RawConfig {
        let d = |d: Duration| Some(humantime::format_duration(d).to_string());
        RawConfig {
            mqtt_listen: Some(self.mqtt_listen.to_string()),
            http_listen: Some(self.http_listen.to_string()),
            data_dir: Some(self.data_dir.clone()),
            max_payload: Some(self.max_payload),
            max_connections: Some(self.max_connections),
            history: RawHistory {
                raw_samples: Some(self.history.raw_samples),
                tiers: Some(self.history.tiers.iter().map(Tier::spec).collect()),
                spill: Some(self.history.spill),
            },
            status: RawStatus {
                stale_after: d(self.status.stale_after),
                stale_intervals: Some(self.status.stale_intervals),
                offline_after: d(self.status.offline_after),
            },
            persist: RawPersist {
                snapshot_every: d(self.persist.snapshot_every),
                flush_every: d(self.persist.flush_every),
                sync_every: d(self.persist.sync_every),
            },
            bridge: RawBridge {
                json: Some(self.bridge.json),
                home_assistant: Some(self.bridge.home_assistant),
                discovery_prefix: Some(self.bridge.discovery_prefix.clone()),
                state_every: d(self.bridge.state_every),
            },
            broker: RawBroker {
                external: self.external.as_ref().map(|e| {
                    if e.host.contains(':') {
                        format!("[{}]:{}", e.host, e.port)
                    } else {
                        format!("{}:{}", e.host, e.port)
                    }
                }),
                client_id: self.external.as_ref().map(|e| e.client_id.clone()),
                share_group: self.external.as_ref().and_then(|e| e.share_group.clone()),
            },
            alerts: self.alerts.raw.clone(),
            // The hashes, never tokens: a printed configuration holds no secret.
            http: RawHttp {
                read_access: Some(self.http.read_access.as_str().to_string()),
                tokens: (!self.http.tokens.is_empty()).then(|| {
                    self.http
                        .tokens
                        .iter()
                        .map(|t| RawToken {
                            name: t.name.clone(),
                            role: t.role.as_str().to_string(),
                            sha256: t.hash.to_hex(),
                        })
                        .collect()
                }),
                tls_cert: self.http.tls.as_ref().map(|t| t.cert.clone()),
                tls_key: self.http.tls.as_ref().map(|t| t.key.clone()),
                allowed_hosts: Some(self.http.allowed_hosts.clone()),
            },
            mqtt: RawMqtt {
                tls: Some(self.mqtt.tls.is_some()),
                tls_cert: self.mqtt.tls.as_ref().map(|t| t.cert.clone()),
                tls_key: self.mqtt.tls.as_ref().map(|t| t.key.clone()),
                client_ca: self.mqtt.client_ca.clone(),
                require_client_cert: Some(self.mqtt.require_client_cert),
                max_messages_per_second: Some(self.mqtt.max_messages_per_second),
                max_burst: Some(self.mqtt.max_burst),
                max_connections_per_client: Some(self.mqtt.max_connections_per_client),
                max_subscriptions: Some(self.mqtt.max_subscriptions),
                users: self
                    .mqtt
                    .users
                    .iter()
                    .map(|(name, u)| {
                        (
                            name.clone(),
                            RawUser {
                                password_hash: u.password_hash.clone(),
                                role: Some(u.role),
                            },
                        )
                    })
                    .collect(),
            },
        }
    }
}

/// Why a configuration was refused: names the key and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid `{key}`{source_note}: {reason}")]
pub struct ConfigError {
    /// The configuration key, as written in the TOML file (`history.tiers`).
    pub key: String,
    /// What is wrong and what is allowed.
    pub reason: String,
    /// Where the value came from, for the message (" (from EMBER_HTTP_LISTEN)").
    source_note: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: &str, reason: impl Into<String>) -> Self {
        err(key, reason)
    }
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
    /// Embedded broker's listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_listen: Option<String>,
    /// HTTP listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// Data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Largest MQTT payload, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<usize>,
    /// Most MQTT connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// `[history]`
    #[serde(default)]
    pub history: RawHistory,
    /// `[status]`
    #[serde(default)]
    pub status: RawStatus,
    /// `[persist]`
    #[serde(default)]
    pub persist: RawPersist,
    /// `[bridge]`
    #[serde(default)]
    pub bridge: RawBridge,
    /// `[broker]`
    #[serde(default)]
    pub broker: RawBroker,
    /// `[alerts]`
    #[serde(default)]
    pub alerts: crate::alerts::RawAlerts,
    /// `[http]`
    #[serde(default)]
    pub http: RawHttp,
    /// `[mqtt]`
    #[serde(default)]
    pub mqtt: RawMqtt,
}

/// `[http]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttp {
    /// `auto`, `open` or `token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_access: Option<String>,
    /// `[[http.tokens]]`: the tokens, hashed. Set in the file only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<RawToken>>,
    /// HTTPS: certificate chain (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Host names the API answers to while reading is open (besides IP addresses and
    /// `localhost`), e.g. `["ember.lan"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
}

/// One `[[http.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawToken {
    /// Who holds it; shown in logs.
    pub name: String,
    /// `read` or `operator`.
    pub role: String,
    /// The token's SHA-256, 64 hex digits.
    pub sha256: String,
}

/// `[mqtt]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMqtt {
    /// TLS on the MQTT listener; default: on when it is not loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// Server certificate chain (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// CA of client certificates (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_client_cert: Option<bool>,
    /// Average publish rate per client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_second: Option<u32>,
    /// Publish burst per client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_burst: Option<u32>,
    /// Connections per account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<usize>,
    /// Filters per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<usize>,
    /// `[mqtt.users.NAME]`
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, RawUser>,
}

/// `[mqtt.users.NAME]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUser {
    /// argon2 PHC string, as `ember-collector agent add` writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `agent` (default) or `reader`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::access::Role>,
}

/// `[history]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHistory {
    /// Raw samples per host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_samples: Option<usize>,
    /// Tiers as `RESOLUTION:RETENTION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<String>>,
    /// Sealed history blocks on disk rather than in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spill: Option<bool>,
}

/// `[status]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStatus {
    /// Shortest silence before stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    /// Missed intervals before stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_intervals: Option<u32>,
    /// Silence before offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_after: Option<String>,
}

/// `[persist]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPersist {
    /// Snapshot period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_every: Option<String>,
    /// WAL write-out period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_every: Option<String>,
    /// WAL fsync period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_every: Option<String>,
}

/// `[bridge]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBridge {
    /// JSON state topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<bool>,
    /// Home Assistant discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_assistant: Option<bool>,
    /// Home Assistant discovery prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_prefix: Option<String>,
    /// Shortest time between JSON states of one host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_every: Option<String>,
}

/// `[broker]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBroker {
    /// `HOST:PORT` of an existing broker; unset embeds rumqttd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// Client id at the external broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Shared-subscription group at the external broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_group: Option<String>,
}

/// The environment variables read, and the key each sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("EMBER_MQTT_LISTEN", "mqtt-listen"),
    ("EMBER_HTTP_LISTEN", "http-listen"),
    ("EMBER_DATA_DIR", "data-dir"),
    ("EMBER_MAX_PAYLOAD", "max-payload"),
    ("EMBER_MAX_CONNECTIONS", "max-connections"),
    ("EMBER_HISTORY_RAW_SAMPLES", "history.raw-samples"),
    ("EMBER_HISTORY_SPILL", "history.spill"),
    ("EMBER_HISTORY_TIERS", "history.tiers"),
    ("EMBER_STATUS_STALE_AFTER", "status.stale-after"),
    ("EMBER_STATUS_STALE_INTERVALS", "status.stale-intervals"),
    ("EMBER_STATUS_OFFLINE_AFTER", "status.offline-after"),
    ("EMBER_PERSIST_SNAPSHOT_EVERY", "persist.snapshot-every"),
    ("EMBER_PERSIST_FLUSH_EVERY", "persist.flush-every"),
    ("EMBER_PERSIST_SYNC_EVERY", "persist.sync-every"),
    ("EMBER_BRIDGE_JSON", "bridge.json"),
    ("EMBER_BRIDGE_HOME_ASSISTANT", "bridge.home-assistant"),
    ("EMBER_BRIDGE_DISCOVERY_PREFIX", "bridge.discovery-prefix"),
    ("EMBER_BRIDGE_STATE_EVERY", "bridge.state-every"),
    ("EMBER_BROKER_EXTERNAL", "broker.external"),
    ("EMBER_BROKER_CLIENT_ID", "broker.client-id"),
    ("EMBER_BROKER_SHARE_GROUP", "broker.share-group"),
    ("EMBER_HTTP_READ_ACCESS", "http.read-access"),
    ("EMBER_HTTP_TLS_CERT", "http.tls-cert"),
    ("EMBER_HTTP_TLS_KEY", "http.tls-key"),
    ("EMBER_HTTP_ALLOWED_HOSTS", "http.allowed-hosts"),
    ("EMBER_MQTT_TLS", "mqtt.tls"),
    ("EMBER_MQTT_TLS_CERT", "mqtt.tls-cert"),
    ("EMBER_MQTT_TLS_KEY", "mqtt.tls-key"),
    ("EMBER_MQTT_CLIENT_CA", "mqtt.client-ca"),
    ("EMBER_MQTT_REQUIRE_CLIENT_CERT", "mqtt.require-client-cert"),
    (
        "EMBER_MQTT_MAX_MESSAGES_PER_SECOND",
        "mqtt.max-messages-per-second",
    ),
    ("EMBER_MQTT_MAX_BURST", "mqtt.max-burst"),
    (
        "EMBER_MQTT_MAX_CONNECTIONS_PER_CLIENT",
        "mqtt.max-connections-per-client",
    ),
    ("EMBER_MQTT_MAX_SUBSCRIPTIONS", "mqtt.max-subscriptions"),
];

/// Ember's variables that are not the collector's keys: shared ones, and the agent's (the
/// collector may run beside an agent, or with `--local-agent`).
const ENV_OTHER: &[&str] = &[
    "EMBER_CONFIG",
    "EMBER_LOG",
    "EMBER_BLESS",
    "EMBER_BROKER",
    "EMBER_HOST_ID",
    "EMBER_INTERVAL",
    "EMBER_KEEP_ALIVE",
    "EMBER_MQTT_VERSION",
    "EMBER_BUFFER",
    "EMBER_TEMPERATURE_SENSORS",
    "EMBER_TOP_PROCESSES",
    "EMBER_WATCH",
    "EMBER_PROBES",
    "EMBER_PREVIEW",
    "EMBER_PROCESS_INTERVAL",
    "EMBER_BOARD",
    "EMBER_USERNAME",
    "EMBER_PASSWORD",
    "EMBER_PASSWORD_FILE",
    "EMBER_TLS_CA",
    "EMBER_TLS_CERT",
    "EMBER_TLS_KEY",
    "EMBER_SPOOL",
];

impl RawConfig {
    /// The built-in defaults.
    pub fn defaults() -> Self {
        let s = |v: &str| Some(v.to_string());
        RawConfig {
            mqtt_listen: s("127.0.0.1:1883"),
            http_listen: s("127.0.0.1:8080"),
            data_dir: Some(PathBuf::from("ember-data")),
            // Four times the largest message of the wire contract.
            max_payload: Some(4 * ember_wire::MAX_ENCODED_LEN),
            max_connections: Some(10_000),
            history: RawHistory {
                // One hour at the agent's default 1 s interval.
                raw_samples: Some(3600),
                tiers: Some(vec!["1m:24h".into(), "15m:30d".into()]),
                spill: Some(true),
            },
            status: RawStatus {
                stale_after: s("3s"),
                stale_intervals: Some(3),
                offline_after: s("5m"),
            },
            persist: RawPersist {
                snapshot_every: s("5m"),
                flush_every: s("100ms"),
                sync_every: s("1s"),
            },
            bridge: RawBridge {
                json: Some(true),
                home_assistant: Some(true),
                discovery_prefix: s("homeassistant"),
                state_every: s("5s"),
            },
            broker: RawBroker {
                external: None,
                client_id: s("ember-collector"),
                share_group: None,
            },
            alerts: crate::alerts::RawAlerts::defaults(),
            http: RawHttp {
                read_access: s("auto"),
                tokens: None,
                tls_cert: None,
                tls_key: None,
                allowed_hosts: Some(Vec::new()),
            },
            mqtt: RawMqtt {
                // Twenty times an agent's default rate, and a burst that covers a reconnect's
                // window of buffered samples; QoS 1 above it is slowed, not dropped.
                max_messages_per_second: Some(20),
                max_burst: Some(200),
                max_connections_per_client: Some(4),
                max_subscriptions: Some(100),
                ..RawMqtt::default()
            },
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
    /// names no key (and is not the agent's) is refused, so a typo does not go unnoticed.
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
            let from = |mut e: ConfigError| {
                e.source_note = format!(" (from {name})");
                e
            };
            let number = || -> Result<usize, ConfigError> {
                value
                    .trim()
                    .parse()
                    .map_err(|_| from(err(key, format!("expected a whole number, got {value:?}"))))
            };
            let boolean = || -> Result<bool, ConfigError> {
                match value.trim() {
                    "true" | "1" | "yes" => Ok(true),
                    "false" | "0" | "no" => Ok(false),
                    _ => Err(from(err(
                        key,
                        format!("expected true or false, got {value:?}"),
                    ))),
                }
            };
            let s = || Some(value.clone());
            match *key {
                "mqtt-listen" => raw.mqtt_listen = s(),
                "http-listen" => raw.http_listen = s(),
                "data-dir" => raw.data_dir = Some(PathBuf::from(&value)),
                "max-payload" => raw.max_payload = Some(number()?),
                "max-connections" => raw.max_connections = Some(number()?),
                "history.raw-samples" => raw.history.raw_samples = Some(number()?),
                "history.spill" => raw.history.spill = Some(boolean()?),
                "history.tiers" => {
                    raw.history.tiers = Some(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                }
                "status.stale-after" => raw.status.stale_after = s(),
                "status.stale-intervals" => {
                    raw.status.stale_intervals = Some(number()?.try_into().unwrap_or(u32::MAX))
                }
                "status.offline-after" => raw.status.offline_after = s(),
                "persist.snapshot-every" => raw.persist.snapshot_every = s(),
                "persist.flush-every" => raw.persist.flush_every = s(),
                "persist.sync-every" => raw.persist.sync_every = s(),
                "bridge.json" => raw.bridge.json = Some(boolean()?),
                "bridge.home-assistant" => raw.bridge.home_assistant = Some(boolean()?),
                "bridge.discovery-prefix" => raw.bridge.discovery_prefix = s(),
                "bridge.state-every" => raw.bridge.state_every = s(),
                "broker.external" => raw.broker.external = s(),
                "broker.client-id" => raw.broker.client_id = s(),
                "broker.share-group" => raw.broker.share_group = s(),
                "http.read-access" => raw.http.read_access = s(),
                "http.tls-cert" => raw.http.tls_cert = Some(PathBuf::from(&value)),
                "http.tls-key" => raw.http.tls_key = Some(PathBuf::from(&value)),
                "http.allowed-hosts" => {
                    raw.http.allowed_hosts = Some(
                        value
                            .split(',')
                            .map(|h| h.trim().to_string())
                            .filter(|h| !h.is_empty())
                            .collect(),
                    )
                }
                "mqtt.tls" => raw.mqtt.tls = Some(boolean()?),
                "mqtt.tls-cert" => raw.mqtt.tls_cert = Some(PathBuf::from(&value)),
                "mqtt.tls-key" => raw.mqtt.tls_key = Some(PathBuf::from(&value)),
                "mqtt.client-ca" => raw.mqtt.client_ca = Some(PathBuf::from(&value)),
                "mqtt.require-client-cert" => raw.mqtt.require_client_cert = Some(boolean()?),
                "mqtt.max-messages-per-second" => {
                    raw.mqtt.max_messages_per_second =
                        Some(number()?.try_into().unwrap_or(u32::MAX))
                }
                "mqtt.max-burst" => {
                    raw.mqtt.max_burst = Some(number()?.try_into().unwrap_or(u32::MAX))
                }
                "mqtt.max-connections-per-client" => {
                    raw.mqtt.max_connections_per_client = Some(number()?)
                }
                "mqtt.max-subscriptions" => raw.mqtt.max_subscriptions = Some(number()?),
                _ => unreachable!("ENV_KEYS and this match list the same keys"),
            }
        }
        Ok(raw)
    }

    /// This layer with `over` on top: every key `over` sets wins.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        RawConfig {
            mqtt_listen: over.mqtt_listen.or(self.mqtt_listen),
            http_listen: over.http_listen.or(self.http_listen),
            data_dir: over.data_dir.or(self.data_dir),
            max_payload: over.max_payload.or(self.max_payload),
            max_connections: over.max_connections.or(self.max_connections),
            history: RawHistory {
                raw_samples: over.history.raw_samples.or(self.history.raw_samples),
                tiers: over.history.tiers.or(self.history.tiers),
                spill: over.history.spill.or(self.history.spill),
            },
            status: RawStatus {
                stale_after: over.status.stale_after.or(self.status.stale_after),
                stale_intervals: over.status.stale_intervals.or(self.status.stale_intervals),
                offline_after: over.status.offline_after.or(self.status.offline_after),
            },
            persist: RawPersist {
                snapshot_every: over.persist.snapshot_every.or(self.persist.snapshot_every),
                flush_every: over.persist.flush_every.or(self.persist.flush_every),
                sync_every: over.persist.sync_every.or(self.persist.sync_every),
            },
            bridge: RawBridge {
                json: over.bridge.json.or(self.bridge.json),
                home_assistant: over.bridge.home_assistant.or(self.bridge.home_assistant),
                discovery_prefix: over
                    .bridge
                    .discovery_prefix
                    .or(self.bridge.discovery_prefix),
                state_every: over.bridge.state_every.or(self.bridge.state_every),
            },
            broker: RawBroker {
                external: over.broker.external.or(self.broker.external),
                client_id: over.broker.client_id.or(self.broker.client_id),
                share_group: over.broker.share_group.or(self.broker.share_group),
            },
            alerts: self.alerts.merge(over.alerts),
            http: RawHttp {
                read_access: over.http.read_access.or(self.http.read_access),
                tokens: over.http.tokens.or(self.http.tokens),
                tls_cert: over.http.tls_cert.or(self.http.tls_cert),
                tls_key: over.http.tls_key.or(self.http.tls_key),
                allowed_hosts: over.http.allowed_hosts.or(self.http.allowed_hosts),
            },
            mqtt: RawMqtt {
                tls: over.mqtt.tls.or(self.mqtt.tls),
                tls_cert: over.mqtt.tls_cert.or(self.mqtt.tls_cert),
                tls_key: over.mqtt.tls_key.or(self.mqtt.tls_key),
                client_ca: over.mqtt.client_ca.or(self.mqtt.client_ca),
                require_client_cert: over
                    .mqtt
                    .require_client_cert
                    .or(self.mqtt.require_client_cert),
                max_messages_per_second: over
                    .mqtt
                    .max_messages_per_second
                    .or(self.mqtt.max_messages_per_second),
                max_burst: over.mqtt.max_burst.or(self.mqtt.max_burst),
                max_connections_per_client: over
                    .mqtt
                    .max_connections_per_client
                    .or(self.mqtt.max_connections_per_client),
                max_subscriptions: over.mqtt.max_subscriptions.or(self.mqtt.max_subscriptions),
                // Accounts of later layers are added to (and replace by name) earlier ones.
                users: {
                    let mut users = self.mqtt.users;
                    users.extend(over.mqtt.users);
                    users
                },
            },
        }
    }

    /// Checks every key and builds the typed configuration. Missing keys take the defaults.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let raw = RawConfig::defaults().merge(self.clone());
        let addr = |key: &str, v: &Option<String>| -> Result<SocketAddr, ConfigError> {
            let v = v.as_deref().unwrap_or_default();
            v.parse().map_err(|_| {
                err(
                    key,
                    format!("expected IP:PORT, got {v:?} (examples: `127.0.0.1:1883`, `0.0.0.0:8080`, `[::]:1883`)"),
                )
            })
        };
        let mqtt_listen = addr("mqtt-listen", &raw.mqtt_listen)?;
        let http_listen = addr("http-listen", &raw.http_listen)?;
        let data_dir = raw.data_dir.clone().unwrap_or_default();
        if data_dir.as_os_str().is_empty() {
            return Err(err("data-dir", "must not be empty"));
        }
        let min_payload = ember_wire::MAX_ENCODED_LEN;
        let max_payload = raw.max_payload.unwrap_or_default();
        if !(min_payload..=1 << 20).contains(&max_payload) {
            return Err(err(
                "max-payload",
                format!("must be {min_payload} (the largest Ember message) to 1048576 bytes, got {max_payload}"),
            ));
        }
        let max_connections = raw.max_connections.unwrap_or_default();
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(err(
                "max-connections",
                format!("must be 1 to 1000000, got {max_connections}"),
            ));
        }
        let raw_samples = raw.history.raw_samples.unwrap_or_default();
        if !(1..=10_000_000).contains(&raw_samples) {
            return Err(err(
                "history.raw-samples",
                format!("must be 1 to 10000000 samples per host, got {raw_samples}"),
            ));
        }
        let mut tiers = Vec::new();
        for spec in raw.history.tiers.iter().flatten() {
            tiers.push(parse_tier(spec)?);
        }
        if tiers.len() > 4 {
            return Err(err("history.tiers", "at most 4 tiers"));
        }
        if tiers.windows(2).any(|w| w[1].resolution <= w[0].resolution) {
            return Err(err(
                "history.tiers",
                "tiers must be listed finest first, each coarser than the one before",
            ));
        }
        let dur = |key: &str, v: &Option<String>, min: Duration, max: Duration| {
            parse_duration(key, v.as_deref().unwrap_or_default(), min, max)
        };
        let ms = Duration::from_millis;
        let h = |n: u64| Duration::from_secs(3600 * n);
        let status = StatusConfig {
            stale_after: dur(
                "status.stale-after",
                &raw.status.stale_after,
                ms(100),
                h(24),
            )?,
            stale_intervals: raw.status.stale_intervals.unwrap_or_default(),
            offline_after: dur(
                "status.offline-after",
                &raw.status.offline_after,
                ms(100),
                h(24 * 30),
            )?,
        };
        if !(1..=1000).contains(&status.stale_intervals) {
            return Err(err(
                "status.stale-intervals",
                format!("must be 1 to 1000, got {}", status.stale_intervals),
            ));
        }
        if status.offline_after <= status.stale_after {
            return Err(err(
                "status.offline-after",
                "must be longer than status.stale-after",
            ));
        }
        let persist = PersistConfig {
            snapshot_every: dur(
                "persist.snapshot-every",
                &raw.persist.snapshot_every,
                ms(100),
                h(24),
            )?,
            flush_every: dur(
                "persist.flush-every",
                &raw.persist.flush_every,
                ms(10),
                ms(1000),
            )?,
            sync_every: dur("persist.sync-every", &raw.persist.sync_every, ms(10), h(1))?,
        };
        let discovery_prefix = raw.bridge.discovery_prefix.clone().unwrap_or_default();
        if discovery_prefix.is_empty()
            || discovery_prefix.contains(['+', '#'])
            || discovery_prefix.starts_with('/')
            || discovery_prefix.ends_with('/')
        {
            return Err(err(
                "bridge.discovery-prefix",
                format!("must be a topic prefix without wildcards or outer `/`, got {discovery_prefix:?}"),
            ));
        }
        let bridge = BridgeConfig {
            json: raw.bridge.json.unwrap_or(true),
            home_assistant: raw.bridge.home_assistant.unwrap_or(true),
            discovery_prefix,
            state_every: dur(
                "bridge.state-every",
                &raw.bridge.state_every,
                Duration::ZERO,
                h(1),
            )?,
        };
        if bridge.home_assistant && !bridge.json {
            return Err(err(
                "bridge.home-assistant",
                "Home Assistant reads the JSON state: set bridge.json = true too, or turn this off",
            ));
        }
        let http = validate_http(&raw.http, http_listen)?;
        let external = match raw.broker.external.as_deref() {
            None => None,
            Some(spec) => {
                let (host, port) = parse_host_port(spec).ok_or_else(|| {
                    err(
                        "broker.external",
                        format!("expected HOST:PORT, got {spec:?} (example: `mosquitto.lan:1883`)"),
                    )
                })?;
                let client_id = raw.broker.client_id.clone().unwrap_or_default();
                if client_id.is_empty() || client_id.len() > 64 {
                    return Err(err("broker.client-id", "must be 1 to 64 characters"));
                }
                let share_group = raw.broker.share_group.clone();
                if let Some(g) = &share_group {
                    if g.is_empty() || g.contains(['/', '+', '#']) {
                        return Err(err(
                            "broker.share-group",
                            format!("must be a name without `/`, `+` or `#`, got {g:?}"),
                        ));
                    }
                }
                Some(ExternalBroker {
                    host,
                    port,
                    client_id,
                    share_group,
                })
            }
        };
        let alerts = raw.alerts.validate()?;
        let mqtt = validate_mqtt(&raw.mqtt, mqtt_listen, external.is_some())?;
        Ok(Config {
            mqtt,
            mqtt_listen,
            http_listen,
            data_dir,
            max_payload,
            max_connections,
            history: HistoryConfig {
                raw_samples,
                tiers,
                spill: raw.history.spill.unwrap_or(true),
            },
            status,
            persist,
            bridge,
            external,
            alerts,
            http,
        })
    }
}

/// `text` (a configuration file) with a `[[http.tokens]]` entry for `token` appended, checked:
/// the result must be a valid configuration (so a duplicate or bad name is refused here, not at
/// the next start). What `ember-collector token add` writes.
pub fn add_token(text: &str, name: &str, role: Role, token: &str) -> Result<String, ConfigError> {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&crate::auth::config_lines(name, role, token));
    RawConfig::from_toml(&out)?.validate()?;
    Ok(out)
}

/// `SECTION.tls-cert` and `SECTION.tls-key`: both or neither.
fn tls_files(
    section: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(err(
            &format!("{section}.tls-key"),
            format!("missing: {section}.tls-cert needs its key"),
        )),
        (None, Some(_)) => Err(err(
            &format!("{section}.tls-cert"),
            format!("missing: {section}.tls-key needs its certificate"),
        )),
    }
}

fn validate_http(raw: &RawHttp, listen: SocketAddr) -> Result<HttpConfig, ConfigError> {
    let read_access = match raw.read_access.as_deref().unwrap_or("auto") {
        "auto" => ReadAccessSetting::Auto,
        "open" => ReadAccessSetting::Open,
        "token" => ReadAccessSetting::Token,
        other => {
            return Err(err(
                "http.read-access",
                format!("expected auto, open or token, got {other:?}"),
            ))
        }
    };
    let make = "make one with `ember-collector --config FILE token add NAME --role read|operator`";
    let mut tokens: Vec<TokenEntry> = Vec::new();
    for t in raw.tokens.iter().flatten() {
        let name_ok = (1..=64).contains(&t.name.len())
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !name_ok {
            return Err(err(
                "http.tokens",
                format!(
                    "name {:?}: 1 to 64 letters, digits, `-`, `_`, `.` or `@`",
                    t.name
                ),
            ));
        }
        if tokens.iter().any(|e| e.name == t.name) {
            return Err(err(
                "http.tokens",
                format!("two tokens are named {:?}: names must differ", t.name),
            ));
        }
        let role = Role::parse(&t.role).ok_or_else(|| {
            err(
                "http.tokens",
                format!(
                    "token {:?}: role must be read or operator, got {:?}",
                    t.name, t.role
                ),
            )
        })?;
        let hash = TokenHash::from_hex(&t.sha256).ok_or_else(|| {
            err(
                "http.tokens",
                format!(
                    "token {:?}: sha256 must be 64 hex digits (the token's SHA-256, never the \
                     token itself); {make}",
                    t.name
                ),
            )
        })?;
        tokens.push(TokenEntry {
            name: t.name.clone(),
            role,
            hash,
        });
    }
    let tls = tls_files("http", &raw.tls_cert, &raw.tls_key)?;
    let mut allowed_hosts = Vec::new();
    for h in raw.allowed_hosts.iter().flatten() {
        let name = crate::origin::host_name(h).map_err(|why| {
            err(
                "http.allowed-hosts",
                format!("{h:?}: {why}, e.g. allowed-hosts = [\"ember.lan\"]"),
            )
        })?;
        allowed_hosts.push(name);
    }
    let http = HttpConfig {
        read_access,
        tokens,
        tls,
        allowed_hosts,
    };
    http.resolve(listen)?;
    Ok(http)
}

fn validate_mqtt(
    raw: &RawMqtt,
    listen: SocketAddr,
    external: bool,
) -> Result<MqttSecurity, ConfigError> {
    let mut users = BTreeMap::new();
    for (name, u) in &raw.users {
        let key = format!("mqtt.users.{name}");
        crate::access::check_name(name).map_err(|e| err(&key, e))?;
        if let Some(hash) = &u.password_hash {
            crate::access::check_hash(hash).map_err(|e| err(&format!("{key}.password-hash"), e))?;
        }
        let role = u.role.unwrap_or(crate::access::Role::Agent);
        if u.password_hash.is_none()
            && (role == crate::access::Role::Reader || raw.client_ca.is_none())
        {
            return Err(err(
                &format!("{key}.password-hash"),
                "missing: an account needs a password hash (`ember-collector agent add` writes one), or for an agent a client certificate (set mqtt.client-ca)",
            ));
        }
        users.insert(
            name.clone(),
            User {
                password_hash: u.password_hash.clone(),
                role,
            },
        );
    }
    let tls = tls_files("mqtt", &raw.tls_cert, &raw.tls_key)?;
    let mqtt = MqttSecurity {
        users,
        tls,
        client_ca: raw.client_ca.clone(),
        require_client_cert: raw.require_client_cert.unwrap_or(false),
        max_messages_per_second: raw.max_messages_per_second.unwrap_or(20),
        max_burst: raw.max_burst.unwrap_or(200),
        max_connections_per_client: raw.max_connections_per_client.unwrap_or(4),
        max_subscriptions: raw.max_subscriptions.unwrap_or(100),
    };
    if !(1..=100_000).contains(&mqtt.max_subscriptions) {
        return Err(err(
            "mqtt.max-subscriptions",
            format!(
                "must be 1 to 100000 filters per connection, got {}",
                mqtt.max_subscriptions
            ),
        ));
    }
    if mqtt.max_messages_per_second == 0 || mqtt.max_messages_per_second > 1_000_000 {
        return Err(err(
            "mqtt.max-messages-per-second",
            format!("must be 1 to 1000000, got {}", mqtt.max_messages_per_second),
        ));
    }
    if mqtt.max_burst == 0 || mqtt.max_burst > 1_000_000 {
        return Err(err(
            "mqtt.max-burst",
            format!("must be 1 to 1000000, got {}", mqtt.max_burst),
        ));
    }
    if !(1..=10_000).contains(&mqtt.max_connections_per_client) {
        return Err(err(
            "mqtt.max-connections-per-client",
            format!(
                "must be 1 to 10000, got {}",
                mqtt.max_connections_per_client
            ),
        ));
    }
    if mqtt.require_client_cert && mqtt.client_ca.is_none() {
        return Err(err(
            "mqtt.require-client-cert",
            "needs mqtt.client-ca, the CA that signs the agents' certificates",
        ));
    }
    if mqtt.client_ca.is_some() && mqtt.tls.is_none() {
        return Err(err("mqtt.client-ca", "client certificates need TLS: set mqtt.tls-cert and mqtt.tls-key (`ember-collector ca init` writes them)"));
    }
    if external {
        // The external broker does its own authentication; these keys would be silently unused.
        if mqtt.gated() || mqtt.tls.is_some() {
            return Err(err("mqtt", "[mqtt] secures the embedded broker; with broker.external set, configure authentication and TLS in that broker"));
        }
        return Ok(mqtt);
    }
    if mqtt.tls.is_some() && !mqtt.gated() {
        return Err(err("mqtt.tls-cert", "TLS is served by Ember's authenticating gate: add an account (`ember-collector agent add HOST`) or set mqtt.client-ca"));
    }
    if !listen.ip().is_loopback() {
        if !mqtt.gated() {
            return Err(err(
                "mqtt.users",
                format!("mqtt-listen is {listen}, not loopback, and MQTT has no accounts: anyone on the network could publish as any host. Add agents with `ember-collector agent add HOST` (it writes [mqtt.users.HOST]), or listen on 127.0.0.1"),
            ));
        }
        if mqtt.tls.is_none() && raw.tls != Some(false) {
            return Err(err(
                "mqtt.tls-cert",
                format!("mqtt-listen is {listen}, not loopback, and TLS is the default there: create a certificate with `ember-collector ca init` and set mqtt.tls-cert and mqtt.tls-key, or set mqtt.tls = false to send passwords in clear text"),
            ));
        }
    }
    if raw.tls == Some(true) && mqtt.tls.is_none() {
        return Err(err("mqtt.tls-cert", "mqtt.tls = true needs mqtt.tls-cert and mqtt.tls-key (`ember-collector ca init` writes them)"));
    }
    if raw.tls == Some(false) && mqtt.tls.is_some() {
        return Err(err(
            "mqtt.tls",
            "is false but mqtt.tls-cert is set: remove one",
        ));
    }
    Ok(mqtt)
}

fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

fn parse_tier(spec: &str) -> Result<Tier, ConfigError> {
    let bad = |why: &str| {
        err(
            "history.tiers",
            format!("{why} in {spec:?} (expected RESOLUTION:RETENTION, e.g. `1m:24h`)"),
        )
    };
    let (res, ret) = spec.split_once(':').ok_or_else(|| bad("no `:`"))?;
    let resolution = humantime::parse_duration(res.trim()).map_err(|_| bad("bad resolution"))?;
    let retention = humantime::parse_duration(ret.trim()).map_err(|_| bad("bad retention"))?;
    if resolution < Duration::from_secs(1) || resolution > Duration::from_secs(86_400) {
        return Err(bad("resolution must be 1s to 1d"));
    }
    if retention < resolution || retention > Duration::from_secs(86_400 * 3660) {
        return Err(bad(
            "retention must be at least one bucket and at most 10 years",
        ));
    }
    let tier = Tier {
        resolution,
        retention,
    };
    if tier.buckets() > 1_000_000 {
        return Err(bad("more than 1000000 buckets"));
    }
    Ok(tier)
}

/// A duration between `min` and `max`; the error names `key`.
pub(crate) fn parse_duration(
    key: &str,
    s: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(s)
        .map_err(|e| err(key, format!("{e} in {s:?} (examples: `1s`, `500ms`, `5m`)")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_issues() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.history.raw_samples, 3600);
        assert_eq!(c.history.tiers.len(), 2);
        assert_eq!(c.history.tiers[0].buckets(), 24 * 60);
        assert_eq!(c.history.tiers[1].buckets(), 30 * 24 * 4);
        assert_eq!(c.external, None);
        assert_eq!(c.mqtt_listen.to_string(), "127.0.0.1:1883");
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let check = |toml: &str, key: &str| {
            let e = RawConfig::from_toml(toml)
                .and_then(|r| r.validate())
                .unwrap_err();
            assert_eq!(e.key, key, "{toml}: {e}");
        };
        check("mqtt-listen = \"localhost\"", "mqtt-listen");
        check("http-listen = \"1.2.3.4\"", "http-listen");
        check("data-dir = \"\"", "data-dir");
        check("max-payload = 10", "max-payload");
        check("max-connections = 0", "max-connections");
        check("[history]\nraw-samples = 0", "history.raw-samples");
        check("[history]\ntiers = [\"1m\"]", "history.tiers");
        check(
            "[history]\ntiers = [\"15m:30d\", \"1m:24h\"]",
            "history.tiers",
        );
        check("[history]\ntiers = [\"1s:100y\"]", "history.tiers");
        check("[status]\nstale-after = \"soon\"", "status.stale-after");
        check("[status]\nstale-intervals = 0", "status.stale-intervals");
        check("[status]\noffline-after = \"1s\"", "status.offline-after");
        check("[persist]\nflush-every = \"5s\"", "persist.flush-every");
        check(
            "[bridge]\ndiscovery-prefix = \"ha/#\"",
            "bridge.discovery-prefix",
        );
        check("[bridge]\njson = false", "bridge.home-assistant");
        check("[broker]\nexternal = \"nowhere\"", "broker.external");
        check(
            "[broker]\nexternal = \"h:1\"\nshare-group = \"a/b\"",
            "broker.share-group",
        );
        check("[histori]\nraw-samples = 1", "histori");
        check("[history]\nraw = 1", "raw");
    }

    /// Issue #8: listening beyond loopback needs accounts, and TLS unless turned off by name.
    #[test]
    fn a_non_loopback_listener_needs_authentication_and_defaults_to_tls() {
        let hash = crate::access::hash_password("pw", &[1; 16]);
        let users = format!("[mqtt.users.pi-a]\npassword-hash = \"{hash}\"\n");
        let check = |toml: &str| RawConfig::from_toml(toml).and_then(|r| r.validate());
        let e = check("mqtt-listen = \"0.0.0.0:1883\"\n").unwrap_err();
        assert_eq!(e.key, "mqtt.users");
        assert!(e.reason.contains("ember-collector agent add"), "{e}");
        let e = check(&format!("mqtt-listen = \"0.0.0.0:1883\"\n{users}")).unwrap_err();
        assert_eq!(e.key, "mqtt.tls-cert");
        assert!(e.reason.contains("ember-collector ca init"), "{e}");
        let c = check(&format!(
            "mqtt-listen = \"0.0.0.0:1883\"\n[mqtt]\ntls = false\n{users}"
        ))
        .unwrap();
        assert!(c.mqtt.gated() && c.mqtt.tls.is_none());
        let c = check(&format!(
            "mqtt-listen = \"[::]:8883\"\n[mqtt]\ntls-cert = \"s.pem\"\ntls-key = \"s.key\"\n{users}"
        ))
        .unwrap();
        assert!(c.mqtt.tls.is_some());
        // Loopback without accounts stays as it was: no gate.
        assert!(!check("").unwrap().mqtt.gated());
        // Bad accounts name their key.
        let e = check("[mqtt.users.pi-a]\npassword-hash = \"plain\"\n").unwrap_err();
        assert_eq!(e.key, "mqtt.users.pi-a.password-hash");
        let e = check("[mqtt.users.\"a/b\"]\npassword-hash = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "mqtt.users.a/b");
        let e = check("[mqtt]\nrequire-client-cert = true\n").unwrap_err();
        assert_eq!(e.key, "mqtt.require-client-cert");
        let e = check("[mqtt]\nmax-messages-per-second = 0\n").unwrap_err();
        assert_eq!(e.key, "mqtt.max-messages-per-second");
        // Issue #20: the cap on subscriptions, also without accounts.
        assert_eq!(check("").unwrap().mqtt.max_subscriptions, 100);
        let e = check("[mqtt]\nmax-subscriptions = 0\n").unwrap_err();
        assert_eq!(e.key, "mqtt.max-subscriptions");
        assert!(e.reason.contains("got 0"), "{e}");
        let e = check("[mqtt]\nmax-subscriptions = 100001\n").unwrap_err();
        assert_eq!(e.key, "mqtt.max-subscriptions");
        assert_eq!(
            check("[mqtt]\nmax-subscriptions = 3\n")
                .unwrap()
                .mqtt
                .max_subscriptions,
            3
        );
    }

    #[test]
    fn layers_win_in_order_defaults_file_env_flags() {
        let file = RawConfig::from_toml(
            "http-listen = \"0.0.0.0:9000\"\ndata-dir = \"/file\"\n[status]\nstale-after = \"10s\"\n[history]\ntiers = [\"1m:1h\"]\n[http]\nread-access = \"open\"\n",
        )
        .unwrap();
        let env = RawConfig::from_env(env(&[
            ("EMBER_DATA_DIR", "/env"),
            ("EMBER_HISTORY_TIERS", "10s:1h, 5m:7d"),
            ("EMBER_INTERVAL", "1s"), // the agent's: ignored
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
        let flags = RawConfig {
            data_dir: Some("/flags".into()),
            ..RawConfig::default()
        };
        let c = RawConfig::defaults()
            .merge(file)
            .merge(env)
            .merge(flags)
            .validate()
            .unwrap();
        assert_eq!(c.http_listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.data_dir, PathBuf::from("/flags"));
        assert_eq!(c.status.stale_after, Duration::from_secs(10));
        assert_eq!(c.history.tiers.len(), 2);
        assert_eq!(c.history.tiers[1].resolution, Duration::from_secs(300));
        assert_eq!(c.mqtt_listen.to_string(), "127.0.0.1:1883");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = RawConfig::from_env(env(&[("EMBER_HTTP_LISTN", "x")])).unwrap_err();
        assert_eq!(e.key, "EMBER_HTTP_LISTN");
        assert!(e.reason.contains("EMBER_HTTP_LISTEN"), "{e}");
        let e = RawConfig::from_env(env(&[("EMBER_MAX_PAYLOAD", "big")])).unwrap_err();
        assert_eq!(e.key, "max-payload");
        assert!(e.to_string().contains("EMBER_MAX_PAYLOAD"), "{e}");
        let e = RawConfig::from_env(env(&[("EMBER_BRIDGE_JSON", "maybe")])).unwrap_err();
        assert_eq!(e.key, "bridge.json");
    }

    /// One environment often serves both (`--local-agent`, a shared systemd drop-in): every
    /// variable the agent reads must be one the collector lets pass.
    #[cfg(feature = "local-agent")]
    #[test]
    fn the_agents_variables_are_tolerated() {
        for (var, _) in ember_agent::config::ENV_KEYS {
            let got = RawConfig::from_env(env(&[(var, "1")]));
            assert!(got.is_ok(), "{var}: {:?}", got.err());
        }
    }

    const OP: &str = "[[http.tokens]]\nname = \"alice\"\nrole = \"operator\"\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n";

    #[test]
    fn http_read_access_and_tokens() {
        let check = |toml: &str, want: Result<ReadAccess, &str>| {
            let got = RawConfig::from_toml(toml)
                .and_then(|r| r.validate())
                .and_then(|c| c.http.resolve(c.http_listen));
            match want {
                Ok(access) => assert_eq!(got, Ok(access), "{toml}"),
                Err(part) => {
                    let e = got.unwrap_err();
                    assert!(e.to_string().contains(part), "{toml}: {e}");
                }
            }
        };
        let read = OP.replace("alice", "viewer").replace("operator", "read");
        // Loopback: open unless a read token exists; operator tokens alone leave reading open.
        check("", Ok(ReadAccess::Open));
        check(OP, Ok(ReadAccess::Open));
        check(&read, Ok(ReadAccess::Token));
        // Elsewhere: a token, and a token must exist; the error names the key and the fixes.
        let wide = "http-listen = \"0.0.0.0:8080\"\n";
        check(
            wide,
            Err("invalid `http.tokens`: the HTTP listener 0.0.0.0:8080 is not loopback"),
        );
        check(wide, Err("token add NAME --role read"));
        check(&format!("{wide}{OP}"), Ok(ReadAccess::Token));
        check(
            &format!("{wide}[http]\nread-access = \"open\"\n"),
            Ok(ReadAccess::Open),
        );
        check("[http]\nread-access = \"token\"\n", Err("`http.tokens`"));
        check(
            &format!("[http]\nread-access = \"token\"\n{OP}"),
            Ok(ReadAccess::Token),
        );
        check(
            "[http]\nread-access = \"maybe\"\n",
            Err("`http.read-access`: expected auto, open or token"),
        );
        check(&format!("{OP}{OP}"), Err("two tokens are named \"alice\""));
        check(&OP.replace("alice", "a b"), Err("name \"a b\""));
        check(
            &OP.replace("operator", "admin"),
            Err("role must be read or operator"),
        );
        check(
            &OP.replace("ba78", "zz78"),
            Err("sha256 must be 64 hex digits"),
        );
        check(&OP.replace("ba78", ""), Err("never the token itself"));
        check(&OP.replace("role", "rank"), Err("unknown field `rank`"));
        let e = RawConfig::from_env(env(&[("EMBER_HTTP_READ_ACCESS", "token")])).unwrap();
        assert_eq!(e.http.read_access.as_deref(), Some("token"));
    }

    #[test]
    fn token_add_appends_a_checked_entry() {
        let t = "ember_abc";
        let one = add_token("", "grafana", Role::Read, t).unwrap();
        let c = RawConfig::from_toml(&one).unwrap().validate().unwrap();
        assert_eq!(c.http.tokens.len(), 1);
        assert_eq!(c.http.tokens[0].hash, TokenHash::of(t));
        // After other tables and an existing [http] table; a config that needed a token to
        // start becomes valid.
        let wide = "http-listen = \"0.0.0.0:8080\"\n[http]\nread-access = \"auto\"";
        let two = add_token(wide, "alice", Role::Operator, "ember_def").unwrap();
        let two = add_token(&two, "bob", Role::Read, "ember_ghi").unwrap();
        let c = RawConfig::from_toml(&two).unwrap().validate().unwrap();
        assert_eq!(c.http.tokens.len(), 2);
        assert_eq!(c.http.resolve(c.http_listen), Ok(ReadAccess::Token));
        let e = add_token(&two, "bob", Role::Read, "ember_x").unwrap_err();
        assert!(e.reason.contains("two tokens are named \"bob\""), "{e}");
        let e = add_token("", "no spaces", Role::Read, "ember_x").unwrap_err();
        assert_eq!(e.key, "http.tokens");
        let e = add_token("max-payload = 1", "ok", Role::Read, "ember_x").unwrap_err();
        assert_eq!(e.key, "max-payload");
    }

    #[test]
    fn secrets_do_not_show_in_debug_or_printed_config() {
        let token = "ember_0123456789abcdef";
        let toml = crate::auth::config_lines("bob", Role::Read, token);
        let c = RawConfig::from_toml(&toml).unwrap().validate().unwrap();
        let printed = toml::to_string(&c.to_raw()).unwrap();
        let debug = format!("{c:?}");
        for shown in [&printed, &debug] {
            assert!(!shown.contains(token), "{shown}");
        }
        assert!(
            printed.contains(&TokenHash::of(token).to_hex()),
            "{printed}"
        );
        assert!(!debug.contains(&TokenHash::of(token).to_hex()), "{debug}");
        let again = RawConfig::from_toml(&printed).unwrap().validate().unwrap();
        assert_eq!(again.http, c.http);
    }

    #[test]
    fn printed_config_reads_back_to_the_same() {
        let mut raw = RawConfig::from_toml(
            "[broker]\nexternal = \"[::1]:1883\"\nshare-group = \"ember\"\n[status]\nstale-after = \"1500ms\"\n",
        )
        .unwrap();
        raw.data_dir = Some("/var/lib/ember".into());
        let c = raw.validate().unwrap();
        let text = toml::to_string(&c.to_raw()).unwrap();
        let again = RawConfig::from_toml(&text).unwrap().validate().unwrap();
        assert_eq!(again.to_raw(), c.to_raw(), "{text}");
        assert_eq!(again.external.unwrap().host, "::1");
    }
}
