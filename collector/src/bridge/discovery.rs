//! Home Assistant MQTT device discovery for one host: one device, a component per headline
//! figure, each reading the host's JSON state (`bridge::state_json`).
//!
//! Written to Home Assistant's documentation of MQTT discovery
//! (<https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload>): abbreviated
//! keys, `def_ent_id` (`obj_id` stopped working in 2026.4), and a component that disappears is
//! sent once as `{"p": platform}` so that Home Assistant removes it.

use ember_wire::{HostId, HostInfo, Sample};
use serde_json::{json, Map, Value};

use super::{availability_topic, hottest, root_used, state_topic, COLLECTOR_AVAILABILITY};

/// Everything a host's discovery payload depends on besides its id: the same shape makes the
/// same payload, so a new sample is checked against the last one sent without building the
/// JSON.
#[derive(Debug)]
pub(super) struct Shape<S> {
    temperature: bool,
    root: bool,
    swap: bool,
    network: bool,
    disk: bool,
    throttled: bool,
    ip: bool,
    board: S,
    agent: S,
    macs: Vec<[u8; 6]>,
    /// The watched processes' names.
    watched: Vec<S>,
}

impl<'a> Shape<&'a str> {
    pub(super) fn of(info: Option<&'a HostInfo>, s: &'a Sample) -> Self {
        let (board, agent) = match info {
            Some(i) => (i.board.as_str(), i.agent_version.as_str()),
            None => ("", ""),
        };
        Shape {
            temperature: hottest(s).is_some(),
            root: root_used(s).is_some(),
            swap: s.memory.swap_total > 0,
            network: !s.networks.is_empty(),
            disk: !s.disks.is_empty(),
            throttled: s.throttled.is_some(),
            ip: info.and_then(ip_address).is_some(),
            board,
            agent,
            macs: info
                .map(|i| i.interfaces.iter().filter_map(|n| n.mac).collect())
                .unwrap_or_default(),
            watched: s.watched.iter().map(|w| w.name.as_str()).collect(),
        }
    }

    pub(super) fn owned(&self) -> Shape<String> {
        Shape {
            temperature: self.temperature,
            root: self.root,
            swap: self.swap,
            network: self.network,
            disk: self.disk,
            throttled: self.throttled,
            ip: self.ip,
            board: self.board.to_string(),
            agent: self.agent.to_string(),
            macs: self.macs.clone(),
            watched: self.watched.iter().map(|w| w.to_string()).collect(),
        }
    }
}

impl Shape<String> {
    pub(super) fn is(&self, other: &Shape<&str>) -> bool {
        self.temperature == other.temperature
            && self.root == other.root
            && self.swap == other.swap
            && self.network == other.network
            && self.disk == other.disk
            && self.throttled == other.throttled
            && self.ip == other.ip
            && self.board == other.board
            && self.agent == other.agent
            && self.macs == other.macs
            && self.watched.iter().eq(other.watched.iter().copied())
    }
}

/// The host's first IPv4 address that is not a loopback one, dotted.
pub(super) fn ip_address(info: &HostInfo) -> Option<String> {
    info.interfaces
        .iter()
        .flat_map(|i| i.ipv4.iter())
        .find(|a| a[0] != 127)
        .map(|a| std::net::Ipv4Addr::from(*a).to_string())
}

/// `s` as a Home Assistant object id part: lowercase letters, digits and single underscores
/// (entity ids allow nothing else, and no `__`).
pub(super) fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// A component: platform, key (unique within the device), and its options.
struct Component {
    platform: &'static str,
    key: String,
    options: Value,
}

/// A numeric sensor's description.
struct Figure<'a> {
    key: &'a str,
    name: &'a str,
    field: &'a str,
    unit: Option<&'a str>,
    class: Option<&'a str>,
    precision: u8,
}

fn figure(f: Figure<'_>) -> Component {
    let mut c = json!({
        "name": f.name,
        "val_tpl": format!("{{{{ value_json.{} }}}}", f.field),
        "stat_cla": "measurement",
        "sug_dsp_prc": f.precision,
    });
    if let Some(u) = f.unit {
        c["unit_of_meas"] = json!(u);
    }
    if let Some(d) = f.class {
        c["dev_cla"] = json!(d);
    }
    Component {
        platform: "sensor",
        key: f.key.to_string(),
        options: c,
    }
}

/// A `binary_sensor` that is on when the Jinja test `on` holds for the state.
fn flag(key: String, name: &str, class: &str, on: &str) -> Component {
    Component {
        platform: "binary_sensor",
        key,
        options: json!({
            "name": name,
            "dev_cla": class,
            "val_tpl": format!("{{{{ 'ON' if {on} else 'OFF' }}}}"),
        }),
    }
}

fn components(shape: &Shape<&str>) -> Vec<Component> {
    let f = |key, name, field, unit, class, precision| {
        figure(Figure {
            key,
            name,
            field,
            unit,
            class,
            precision,
        })
    };
    let mut out = vec![
        f("cpu", "CPU", "cpu_percent", Some("%"), None, 1),
        f(
            "memory",
            "Memory used",
            "memory_percent",
            Some("%"),
            None,
            1,
        ),
        f(
            "memory_used",
            "Memory used (bytes)",
            "memory_used_bytes",
            Some("B"),
            Some("data_size"),
            0,
        ),
        f("load1", "Load (1 min)", "load1", None, None, 2),
    ];
    // The boot time, not the uptime: the uptime changes with every sample and floods the
    // recorder; the boot time changes when the host reboots.
    out.push(Component {
        platform: "sensor",
        key: "last_boot".into(),
        options: json!({
            "name": "Last boot",
            "dev_cla": "timestamp",
            "ent_cat": "diagnostic",
            "val_tpl": "{{ value_json.boot_time_s | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false) }}",
        }),
    });
    if shape.temperature {
        out.push(f(
            "temperature",
            "Temperature",
            "temperature_celsius",
            Some("°C"),
            Some("temperature"),
            1,
        ));
    }
    if shape.root {
        out.push(f(
            "root",
            "Root filesystem used",
            "root_used_percent",
            Some("%"),
            None,
            1,
        ));
        out.push(f(
            "root_used",
            "Root filesystem used (bytes)",
            "root_used_bytes",
            Some("B"),
            Some("data_size"),
            0,
        ));
    }
    if shape.swap {
        out.push(f(
            "swap_used",
            "Swap used",
            "swap_used_bytes",
            Some("B"),
            Some("data_size"),
            0,
        ));
    }
    if shape.network {
        out.push(f(
            "network_rx",
            "Network received",
            "network_rx_bytes_per_s",
            Some("B/s"),
            Some("data_rate"),
            0,
        ));
        out.push(f(
            "network_tx",
            "Network sent",
            "network_tx_bytes_per_s",
            Some("B/s"),
            Some("data_rate"),
            0,
        ));
    }
    if shape.disk {
        out.push(f(
            "disk_read",
            "Disk read",
            "disk_read_bytes_per_s",
            Some("B/s"),
            Some("data_rate"),
            0,
        ));
        out.push(f(
            "disk_write",
            "Disk written",
            "disk_write_bytes_per_s",
            Some("B/s"),
            Some("data_rate"),
            0,
        ));
    }
    if shape.ip {
        out.push(Component {
            platform: "sensor",
            key: "ip_address".into(),
            options: json!({
                "name": "IP address",
                "ent_cat": "diagnostic",
                "val_tpl": "{{ value_json.ip_address }}",
            }),
        });
    }
    if shape.throttled {
        out.push(flag(
            "under_voltage".into(),
            "Under-voltage",
            "problem",
            "value_json.under_voltage",
        ));
        out.push(flag(
            "throttled".into(),
            "Throttled",
            "problem",
            "value_json.throttled",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for name in &shape.watched {
        let s = slug(name);
        // Two names with one slug: the first one's.
        if s.is_empty() || !seen.insert(s.clone()) {
            continue;
        }
        out.push(flag(
            format!("process_{s}"),
            &format!("Process {name}"),
            "running",
            &format!("value_json.running['{s}']"),
        ));
    }
    out
}

/// The discovery payload for `host` of this shape. `gone`: components sent before that this
/// shape has no more, each sent once as its platform alone so that Home Assistant removes it.
pub(super) fn payload(
    host: &HostId,
    shape: &Shape<&str>,
    gone: &[(String, &'static str)],
) -> Value {
    let id = host.as_str();
    let uid = format!("ember_{id}");
    let object = format!("ember_{}", slug(id));
    let mut cmps = Map::new();
    for c in components(shape) {
        let Component {
            platform,
            key,
            options: mut o,
        } = c;
        o["p"] = json!(platform);
        o["uniq_id"] = json!(format!("{uid}_{key}"));
        o["def_ent_id"] = json!(format!("{platform}.{object}_{key}"));
        cmps.insert(format!("{uid}_{key}"), o);
    }
    for (key, platform) in gone {
        if !cmps.contains_key(key) {
            cmps.insert(key.clone(), json!({ "p": platform }));
        }
    }
    let mut dev = json!({
        "ids": [uid],
        "name": id,
        "mf": "Ember",
        "mdl": if shape.board.is_empty() { "Linux host" } else { shape.board },
    });
    if !shape.board.is_empty() {
        dev["hw"] = json!(shape.board);
    }
    if !shape.agent.is_empty() {
        dev["sw"] = json!(shape.agent);
    }
    if !shape.macs.is_empty() {
        let mac = |m: &[u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        dev["cns"] = shape.macs.iter().map(|m| json!(["mac", mac(m)])).collect();
    }
    json!({
        "dev": dev,
        "o": { "name": "ember-collector", "sw": env!("CARGO_PKG_VERSION") },
        "stat_t": state_topic(host),
        // Both the host's and the collector's: with the collector gone, nothing updates the
        // host's availability.
        "avty": [
            { "t": availability_topic(host) },
            { "t": COLLECTOR_AVAILABILITY },
        ],
        "avty_mode": "all",
        "qos": 0,
        "cmps": cmps,
    })
}

/// The components of a payload made by [`payload`] that are present (not a removal): key and
/// platform.
pub(super) fn present(payload: &Value) -> Vec<(String, &'static str)> {
    let Some(cmps) = payload["cmps"].as_object() else {
        return Vec::new();
    };
    cmps.iter()
        .filter(|(_, c)| c.as_object().is_some_and(|o| o.len() > 1))
        .map(|(k, c)| {
            let p = match c["p"].as_str() {
                Some("binary_sensor") => "binary_sensor",
                _ => "sensor",
            };
            (k.clone(), p)
        })
        .collect()
}
