//! Home Assistant's documented schema for MQTT device discovery, as far as the bridge uses it,
//! and [`check`], which tells a payload that breaks it. Test-only.
//!
//! Sources (Home Assistant documentation, 2026):
//! - <https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload> and
//!   "Supported abbreviations in MQTT discovery messages" on the same page (the abbreviation
//!   tables below; `def_ent_id` replaced `obj_id`, which stopped working in 2026.4; a component
//!   given as its platform alone, `{"p": "sensor"}`, is removed);
//! - <https://www.home-assistant.io/integrations/sensor.mqtt/> and
//!   <https://www.home-assistant.io/integrations/binary_sensor.mqtt/> (each platform's options);
//! - <https://www.home-assistant.io/integrations/sensor/#device-class> and
//!   <https://www.home-assistant.io/integrations/binary_sensor/#device-class> (device classes,
//!   and the units each sensor class accepts).

use serde_json::{Map, Value};

/// Abbreviations of the options every MQTT entity accepts, and of the shared options a device
/// payload may hold at its top level for all its components.
const COMMON: &[(&str, &str)] = &[
    ("avty", "availability"),
    ("avty_mode", "availability_mode"),
    ("avty_t", "availability_topic"),
    ("avty_tpl", "availability_template"),
    ("pl_avail", "payload_available"),
    ("pl_not_avail", "payload_not_available"),
    ("def_ent_id", "default_entity_id"),
    ("en", "enabled_by_default"),
    ("e", "encoding"),
    ("ent_cat", "entity_category"),
    ("ent_pic", "entity_picture"),
    ("ic", "icon"),
    ("json_attr_t", "json_attributes_topic"),
    ("json_attr_tpl", "json_attributes_template"),
    ("name", "name"),
    ("p", "platform"),
    ("qos", "qos"),
    ("stat_t", "state_topic"),
    ("uniq_id", "unique_id"),
    ("val_tpl", "value_template"),
];

/// Options of the `sensor` platform beyond [`COMMON`].
const SENSOR: &[(&str, &str)] = &[
    ("dev_cla", "device_class"),
    ("exp_aft", "expire_after"),
    ("frc_upd", "force_update"),
    ("lrst_val_tpl", "last_reset_value_template"),
    ("ops", "options"),
    ("stat_cla", "state_class"),
    ("sug_dsp_prc", "suggested_display_precision"),
    ("unit_of_meas", "unit_of_measurement"),
];

/// Options of the `binary_sensor` platform beyond [`COMMON`].
const BINARY_SENSOR: &[(&str, &str)] = &[
    ("dev_cla", "device_class"),
    ("exp_aft", "expire_after"),
    ("frc_upd", "force_update"),
    ("off_dly", "off_delay"),
    ("pl_on", "payload_on"),
    ("pl_off", "payload_off"),
];

/// The top level of a device payload beyond the shared options of [`COMMON`].
const DEVICE_PAYLOAD: &[(&str, &str)] =
    &[("dev", "device"), ("o", "origin"), ("cmps", "components")];

/// The `dev` map.
const DEVICE: &[(&str, &str)] = &[
    ("cns", "connections"),
    ("cu", "configuration_url"),
    ("hw", "hw_version"),
    ("ids", "identifiers"),
    ("mf", "manufacturer"),
    ("mdl", "model"),
    ("mdl_id", "model_id"),
    ("name", "name"),
    ("sa", "suggested_area"),
    ("sn", "serial_number"),
    ("sw", "sw_version"),
    ("via_device", "via_device"),
];

/// The `o` (origin) map.
const ORIGIN: &[(&str, &str)] = &[
    ("name", "name"),
    ("sw", "sw_version"),
    ("url", "support_url"),
];

/// An entry of an `avty` list.
const AVAILABILITY: &[(&str, &str)] = &[
    ("t", "topic"),
    ("pl_avail", "payload_available"),
    ("pl_not_avail", "payload_not_available"),
    ("val_tpl", "value_template"),
];

/// Options Home Assistant no longer accepts.
const REMOVED: &[&str] = &["obj_id", "object_id"];

/// Sensor device classes the bridge may use, with the units each accepts (`None`: no unit).
/// Any other class fails [`check`] until it is added here from the documentation.
const SENSOR_CLASSES: &[(&str, &[&str])] = &[
    ("temperature", &["°C", "°F", "K"]),
    (
        "data_size",
        &[
            "bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
            "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB",
        ],
    ),
    (
        "data_rate",
        &[
            "bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s", "MiB/s",
            "GiB/s",
        ],
    ),
    ("duration", &["d", "h", "min", "s", "ms", "µs"]),
    ("timestamp", &[]),
];

const BINARY_SENSOR_CLASSES: &[&str] = &[
    "battery",
    "battery_charging",
    "carbon_monoxide",
    "cold",
    "connectivity",
    "door",
    "garage_door",
    "gas",
    "heat",
    "light",
    "lock",
    "moisture",
    "motion",
    "moving",
    "occupancy",
    "opening",
    "plug",
    "power",
    "presence",
    "problem",
    "running",
    "safety",
    "smoke",
    "sound",
    "tamper",
    "update",
    "vibration",
    "window",
];

const STATE_CLASSES: &[&str] = &[
    "measurement",
    "measurement_angle",
    "total",
    "total_increasing",
];
const ENTITY_CATEGORIES: &[&str] = &["config", "diagnostic"];
const AVAILABILITY_MODES: &[&str] = &["all", "any", "latest"];

fn known(table: &[&[(&str, &str)]], key: &str) -> bool {
    table.iter().any(|t| t.iter().any(|(a, _)| *a == key))
}

fn keys_in(map: &Map<String, Value>, tables: &[&[(&str, &str)]], what: &str) -> Result<(), String> {
    for key in map.keys() {
        if REMOVED.contains(&key.as_str()) {
            return Err(format!("{what}: {key} is no longer accepted (def_ent_id)"));
        }
        if !known(tables, key) {
            let full = tables
                .iter()
                .flat_map(|t| t.iter())
                .find(|(_, f)| f == key)
                .map(|(a, _)| format!(" (write {a})"))
                .unwrap_or_default();
            return Err(format!("{what}: unknown key {key}{full}"));
        }
    }
    Ok(())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not an object"))
}

/// Whether `id` is a valid Home Assistant entity id of `domain`: `domain.object`, the object of
/// lowercase letters, digits and underscores, no leading, trailing or double underscore.
fn entity_id_ok(id: &str, domain: &str) -> bool {
    let Some(object) = id.strip_prefix(domain).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    !object.is_empty()
        && object
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !object.starts_with('_')
        && !object.ends_with('_')
        && !object.contains("__")
}

fn availability(payload: &Map<String, Value>) -> Result<(), String> {
    if payload.contains_key("avty") && payload.contains_key("avty_t") {
        return Err("avty and avty_t are exclusive".into());
    }
    if let Some(list) = payload.get("avty") {
        let list = list.as_array().ok_or("avty is not a list")?;
        if list.is_empty() {
            return Err("avty is empty".into());
        }
        for a in list {
            let a = object(a, "an avty entry")?;
            keys_in(a, &[AVAILABILITY], "an avty entry")?;
            if !a.get("t").is_some_and(Value::is_string) {
                return Err("an avty entry has no topic t".into());
            }
        }
    }
    if let Some(m) = payload.get("avty_mode") {
        if !m.as_str().is_some_and(|m| AVAILABILITY_MODES.contains(&m)) {
            return Err(format!("avty_mode {m}"));
        }
    }
    Ok(())
}

fn component(key: &str, c: &Map<String, Value>, shared: &Map<String, Value>) -> Result<(), String> {
    let what = format!("component {key}");
    let p = c
        .get("p")
        .and_then(Value::as_str)
        .ok_or(format!("{what}: no platform p"))?;
    let (platform, classes): (&[(&str, &str)], _) = match p {
        "sensor" => (SENSOR, true),
        "binary_sensor" => (BINARY_SENSOR, false),
        other => return Err(format!("{what}: platform {other} is not checked here")),
    };
    if c.len() == 1 {
        // A removal: the platform alone.
        return Ok(());
    }
    keys_in(c, &[COMMON, platform], &what)?;
    availability(c)?;
    for required in ["uniq_id", "def_ent_id"] {
        if !c.get(required).is_some_and(Value::is_string) {
            return Err(format!("{what}: no {required}"));
        }
    }
    let id = c["def_ent_id"].as_str().unwrap_or_default();
    if !entity_id_ok(id, p) {
        return Err(format!("{what}: def_ent_id {id} is not a {p} entity id"));
    }
    if !c.contains_key("stat_t") && !shared.contains_key("stat_t") {
        return Err(format!("{what}: no stat_t"));
    }
    let has_avty = |m: &Map<String, Value>| m.contains_key("avty") || m.contains_key("avty_t");
    if !has_avty(c) && !has_avty(shared) {
        return Err(format!("{what}: no availability"));
    }
    if let Some(cat) = c.get("ent_cat") {
        if !cat.as_str().is_some_and(|c| ENTITY_CATEGORIES.contains(&c)) {
            return Err(format!("{what}: ent_cat {cat}"));
        }
    }
    let class = c.get("dev_cla").map(|d| d.as_str().unwrap_or("?"));
    let unit = c.get("unit_of_meas").map(|u| u.as_str().unwrap_or("?"));
    if classes {
        if let Some(s) = c.get("stat_cla") {
            if !s.as_str().is_some_and(|s| STATE_CLASSES.contains(&s)) {
                return Err(format!("{what}: stat_cla {s}"));
            }
        }
        if let Some(d) = class {
            let units = SENSOR_CLASSES
                .iter()
                .find(|(c, _)| *c == d)
                .map(|(_, u)| *u)
                .ok_or(format!("{what}: sensor device class {d} not in the table"))?;
            match unit {
                None if units.is_empty() => {}
                Some(u) if units.contains(&u) => {}
                _ => {
                    return Err(format!(
                        "{what}: unit {unit:?} is not one of {d}'s {units:?}"
                    ))
                }
            }
            if d == "timestamp" && c.contains_key("stat_cla") {
                return Err(format!("{what}: a timestamp has no state class"));
            }
        }
        if let Some(p) = c.get("sug_dsp_prc") {
            if !p.is_u64() {
                return Err(format!("{what}: sug_dsp_prc {p}"));
            }
        }
    } else if let Some(d) = class {
        if !BINARY_SENSOR_CLASSES.contains(&d) {
            return Err(format!("{what}: binary sensor device class {d}"));
        }
    }
    Ok(())
}

/// Whether `payload` is a device discovery payload as Home Assistant documents it: only known
/// (abbreviated) keys, none removed, the required ones present, device classes and units that
/// go together. The first problem found, if any.
pub(super) fn check(payload: &Value) -> Result<(), String> {
    let top = object(payload, "the payload")?;
    keys_in(top, &[COMMON, DEVICE_PAYLOAD], "the payload")?;
    availability(top)?;
    let dev = object(top.get("dev").ok_or("no dev")?, "dev")?;
    keys_in(dev, &[DEVICE], "dev")?;
    if dev
        .get("ids")
        .and_then(Value::as_array)
        .is_none_or(|ids| ids.is_empty())
    {
        return Err("dev: no ids".into());
    }
    if let Some(cns) = dev.get("cns") {
        let ok = cns.as_array().is_some_and(|l| {
            l.iter().all(|c| {
                c.as_array()
                    .is_some_and(|p| p.len() == 2 && p.iter().all(Value::is_string))
            })
        });
        if !ok {
            return Err(format!(
                "dev: cns {cns} is not a list of [type, value] pairs"
            ));
        }
    }
    let o = object(top.get("o").ok_or("no origin o")?, "o")?;
    keys_in(o, &[ORIGIN], "o")?;
    if !o.get("name").is_some_and(Value::is_string) {
        return Err("o: no name".into());
    }
    let cmps = object(top.get("cmps").ok_or("no cmps")?, "cmps")?;
    if cmps.is_empty() {
        return Err("cmps is empty".into());
    }
    for (key, c) in cmps {
        component(key, object(c, key)?, top)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The checker itself tells what Home Assistant refuses.
    #[test]
    fn the_checker_refuses_what_home_assistant_does() {
        let good = json!({
            "dev": {"ids": ["x"], "name": "x"},
            "o": {"name": "ember-collector"},
            "stat_t": "s",
            "avty_t": "a",
            "cmps": {
                "x_cpu": {"p": "sensor", "uniq_id": "x_cpu", "def_ent_id": "sensor.x_cpu",
                          "unit_of_meas": "%", "stat_cla": "measurement"},
                "x_gone": {"p": "sensor"},
            },
        });
        assert_eq!(check(&good), Ok(()));
        let with = |path: &[&str], value: Value| {
            let mut v = good.clone();
            let mut at = &mut v;
            for p in &path[..path.len() - 1] {
                at = &mut at[*p];
            }
            at[path[path.len() - 1]] = value;
            check(&v).unwrap_err()
        };
        let cpu = |k: &str| ["cmps", "x_cpu", k].map(str::to_string);
        let bad = |k: &str, v: Value| {
            let p = cpu(k);
            with(&[&p[0], &p[1], &p[2]], v)
        };
        assert!(bad("obj_id", json!("x_cpu")).contains("no longer accepted"));
        assert!(bad("unit_of_measurement", json!("%")).contains("write unit_of_meas"));
        assert!(bad("def_ent_id", json!("binary_sensor.x_cpu")).contains("def_ent_id"));
        assert!(bad("def_ent_id", json!("sensor.x-cpu")).contains("def_ent_id"));
        assert!(bad("dev_cla", json!("data_size")).contains("unit"));
        assert!(bad("dev_cla", json!("bogus")).contains("not in the table"));
        assert!(bad("stat_cla", json!("sometimes")).contains("stat_cla"));
        assert!(bad("ent_cat", json!("primary")).contains("ent_cat"));
        assert!(bad("p", json!("light")).contains("platform"));
        assert!(with(&["avty"], json!([{"t": "b"}])).contains("exclusive"));
        assert!(with(&["avty_mode"], json!("most")).contains("avty_mode"));
        assert!(with(&["dev", "model"], json!("m")).contains("write mdl"));
        assert!(with(&["dev", "cns"], json!(["mac"])).contains("cns"));
        let mut v = good.clone();
        v["cmps"]["x_cpu"]
            .as_object_mut()
            .unwrap()
            .remove("uniq_id");
        assert!(check(&v).unwrap_err().contains("no uniq_id"));
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("stat_t");
        assert!(check(&v).unwrap_err().contains("no stat_t"));
        let mut v = good;
        v["cmps"]["x_cpu"]["dev_cla"] = json!("timestamp");
        v["cmps"]["x_cpu"]
            .as_object_mut()
            .unwrap()
            .remove("unit_of_meas");
        assert!(check(&v).unwrap_err().contains("no state class"));
    }
}
