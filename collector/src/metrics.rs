//! The numeric series of a sample: one table shared by the downsampled tiers, the history API,
//! Prometheus `/metrics` and the MQTT JSON state, so that they all name a value the same way.
//!
//! A series is a metric (`cpu.busy`) and, for per-device metrics, a label (`fs.used` of mount
//! `/`). Values stay in the wire contract's integer units; [`Metric::scale`] converts to the base
//! units Prometheus expects.

use std::fmt::Write as _;

use ember_wire::Sample;

/// One metric: its name in the API, its Prometheus name and how to convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// API name (`cpu.busy`).
    pub name: &'static str,
    /// Prometheus name, in base units (`ember_cpu_busy_ratio`): exported as a gauge of the latest
    /// value. `None` for what `/metrics` exports in another form (uptime as a boot time,
    /// throttling as one series per flag, the agent's dropped samples as a counter: `prom.rs`).
    pub prometheus: Option<&'static str>,
    /// The label's name for per-device metrics (`mountpoint`), as a Prometheus label.
    pub label: Option<&'static str>,
    /// Divide the wire value by this for base units (10000 for hundredths of a percent → ratio).
    pub scale: u32,
    /// What it measures, in base units.
    pub help: &'static str,
}

macro_rules! metrics {
    ($($id:ident = $name:literal, $prom:expr, $label:expr, $scale:literal, $help:literal;)*) => {
        /// Every metric, in a fixed order.
        pub const ALL: &[Metric] = &[$(Metric { name: $name, prometheus: $prom, label: $label, scale: $scale, help: $help }),*];
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy)]
        #[repr(usize)]
        enum Id { $($id),* }
    };
}

metrics! {
    CPU_BUSY = "cpu.busy", Some("ember_cpu_busy_ratio"), None, 10000, "CPU busy, all cores (0-1)";
    CPU_USER = "cpu.user", Some("ember_cpu_user_ratio"), None, 10000, "CPU user time, all cores (0-1)";
    CPU_SYSTEM = "cpu.system", Some("ember_cpu_system_ratio"), None, 10000, "CPU system time, all cores (0-1)";
    CPU_IOWAIT = "cpu.iowait", Some("ember_cpu_iowait_ratio"), None, 10000, "CPU waiting for I/O (0-1)";
    CPU_CORE = "cpu.core", Some("ember_cpu_core_busy_ratio"), Some("core"), 10000, "CPU busy per core (0-1)";
    LOAD1 = "load.one", Some("ember_load1"), None, 100, "Load average over 1 minute";
    LOAD5 = "load.five", Some("ember_load5"), None, 100, "Load average over 5 minutes";
    LOAD15 = "load.fifteen", Some("ember_load15"), None, 100, "Load average over 15 minutes";
    MEM_TOTAL = "memory.total", Some("ember_memory_total_bytes"), None, 1, "Memory the kernel can use";
    MEM_USED = "memory.used", Some("ember_memory_used_bytes"), None, 1, "Memory in use (total less available)";
    MEM_AVAILABLE = "memory.available", Some("ember_memory_available_bytes"), None, 1, "Memory available without swapping";
    MEM_CACHED = "memory.cached", Some("ember_memory_cached_bytes"), None, 1, "Page cache";
    SWAP_TOTAL = "memory.swap_total", Some("ember_swap_total_bytes"), None, 1, "Swap space";
    SWAP_USED = "memory.swap_used", Some("ember_swap_used_bytes"), None, 1, "Swap in use";
    FS_TOTAL = "fs.total", Some("ember_filesystem_size_bytes"), Some("mountpoint"), 1, "Filesystem size";
    FS_USED = "fs.used", Some("ember_filesystem_used_bytes"), Some("mountpoint"), 1, "Filesystem space used";
    DISK_READ = "disk.read", Some("ember_disk_read_bytes_per_second"), Some("device"), 1, "Block device reads";
    DISK_WRITE = "disk.write", Some("ember_disk_write_bytes_per_second"), Some("device"), 1, "Block device writes";
    NET_RX = "net.rx", Some("ember_network_receive_bytes_per_second"), Some("interface"), 1, "Network bytes received";
    NET_TX = "net.tx", Some("ember_network_transmit_bytes_per_second"), Some("interface"), 1, "Network bytes sent";
    NET_RX_ERR = "net.rx_errors", Some("ember_network_receive_errors"), Some("interface"), 1, "Receive errors in the last interval";
    NET_TX_ERR = "net.tx_errors", Some("ember_network_transmit_errors"), Some("interface"), 1, "Send errors in the last interval";
    WIFI_SIGNAL = "net.signal", Some("ember_wifi_signal_dbm"), Some("interface"), 1, "Wi-Fi signal level in dBm";
    TEMP = "temp", Some("ember_temperature_celsius"), Some("sensor"), 1000, "Temperature in degrees Celsius";
    PROBE_RTT = "probe.rtt", Some("ember_probe_rtt_seconds"), Some("target"), 1000000, "Probe round-trip time";
    PROBE_LOSS = "probe.loss", Some("ember_probe_loss_ratio"), Some("target"), 10000, "Probe loss (0-1)";
    WATCHED = "process.instances", Some("ember_process_instances"), Some("process"), 1, "Instances of a watched process";
    UPTIME = "uptime", None, None, 1, "Seconds since the host booted";
    THROTTLED = "throttled", None, None, 1, "Raspberry Pi throttling flags";
    DROPPED = "agent.dropped", None, None, 1, "Samples the agent dropped (buffer full)";
}

/// Looks a metric up by its API name.
pub fn by_name(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

/// Calls `f(metric, label, value)` for every series in `s`, in a fixed order.
pub fn for_each(s: &Sample, mut f: impl FnMut(&'static Metric, Option<&str>, i64)) {
    let mut put = |id: Id, label: Option<&str>, v: i64| f(&ALL[id as usize], label, v);
    let Sample {
        seq: _,
        timestamp_ms: _,
        uptime_s,
        cpu,
        load,
        memory,
        filesystems,
        disks,
        networks,
        temperatures,
        throttled,
        top_cpu: _,
        top_memory: _,
        watched,
        probes,
        dropped,
    } = s;
    put(Id::CPU_BUSY, None, cpu.busy.into());
    put(Id::CPU_USER, None, cpu.user.into());
    put(Id::CPU_SYSTEM, None, cpu.system.into());
    put(Id::CPU_IOWAIT, None, cpu.iowait.into());
    let mut core = String::new();
    for (i, c) in cpu.cores.iter().enumerate() {
        core.clear();
        // No allocation per core and sample.
        let _ = write!(core, "{i}");
        put(Id::CPU_CORE, Some(&core), (*c).into());
    }
    put(Id::LOAD1, None, load.one.into());
    put(Id::LOAD5, None, load.five.into());
    put(Id::LOAD15, None, load.fifteen.into());
    let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    put(Id::MEM_TOTAL, None, big(memory.total));
    put(Id::MEM_USED, None, big(memory.used));
    put(Id::MEM_AVAILABLE, None, big(memory.available));
    put(Id::MEM_CACHED, None, big(memory.cached));
    put(Id::SWAP_TOTAL, None, big(memory.swap_total));
    put(Id::SWAP_USED, None, big(memory.swap_used));
    for fs in filesystems {
        put(Id::FS_TOTAL, Some(fs.mount.as_str()), big(fs.total));
        put(Id::FS_USED, Some(fs.mount.as_str()), big(fs.used));
    }
    for d in disks {
        put(Id::DISK_READ, Some(d.device.as_str()), big(d.read_bps));
        put(Id::DISK_WRITE, Some(d.device.as_str()), big(d.write_bps));
    }
    for n in networks {
        put(Id::NET_RX, Some(n.interface.as_str()), big(n.rx_bps));
        put(Id::NET_TX, Some(n.interface.as_str()), big(n.tx_bps));
        put(
            Id::NET_RX_ERR,
            Some(n.interface.as_str()),
            n.rx_errors.into(),
        );
        put(
            Id::NET_TX_ERR,
            Some(n.interface.as_str()),
            n.tx_errors.into(),
        );
        if let Some(w) = &n.wifi {
            put(
                Id::WIFI_SIGNAL,
                Some(n.interface.as_str()),
                w.signal_dbm.into(),
            );
        }
    }
    for t in temperatures {
        put(Id::TEMP, Some(t.sensor.as_str()), t.millicelsius.into());
    }
    for p in probes {
        if let Some(rtt) = p.rtt_us {
            put(Id::PROBE_RTT, Some(p.target.as_str()), rtt.into());
        }
        put(Id::PROBE_LOSS, Some(p.target.as_str()), p.loss.into());
    }
    for w in watched {
        put(Id::WATCHED, Some(w.name.as_str()), w.instances.into());
    }
    put(Id::UPTIME, None, big(*uptime_s));
    if let Some(t) = throttled {
        put(Id::THROTTLED, None, (*t).into());
    }
    put(Id::DROPPED, None, (*dropped).into());
}

/// A series' key: `metric` or `metric|label`.
pub fn key(metric: &Metric, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{}|{l}", metric.name),
        None => metric.name.to_string(),
    }
}

/// [`key`] written into `out` (its old contents replaced), reusing its allocation.
pub fn key_into(metric: &Metric, label: Option<&str>, out: &mut String) {
    out.clear();
    out.push_str(metric.name);
    if let Some(l) = label {
        out.push('|');
        out.push_str(l);
    }
}

/// Splits a key back into its metric name and label.
pub fn split_key(key: &str) -> (&str, Option<&str>) {
    match key.split_once('|') {
        Some((m, l)) => (m, Some(l)),
        None => (key, None),
    }
}

/// A wire value in base units.
pub fn scaled(metric: &Metric, v: f64) -> f64 {
    v / f64::from(metric.scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, m) in ALL.iter().enumerate() {
            if let Some(p) = m.prometheus {
                assert!(p.starts_with("ember_"), "{}", m.name);
                assert!(ALL[..i].iter().all(|o| o.prometheus != Some(p)));
            }
            assert!(!m.name.contains('|'));
            assert_eq!(by_name(m.name), Some(&ALL[i]));
        }
    }

    #[test]
    fn key_into_writes_the_same_key_over_what_was_there() {
        let mut out = String::from("left over from the last sample");
        for m in ALL {
            for label in [None, Some("/"), Some("eth0")] {
                key_into(m, label, &mut out);
                assert_eq!(out, key(m, label));
            }
        }
    }

    #[test]
    fn series_of_a_sample() {
        let mut s = Sample::default();
        s.cpu.busy = 1234;
        s.cpu.cores.push(7).unwrap();
        s.temperatures
            .push(ember_wire::Temperature {
                sensor: "cpu_thermal".into(),
                millicelsius: -5500,
            })
            .unwrap();
        let mut got = Vec::new();
        for_each(&s, |m, l, v| got.push((key(m, l), v)));
        assert!(got.contains(&("cpu.busy".into(), 1234)));
        assert!(got.contains(&("cpu.core|0".into(), 7)));
        assert!(got.contains(&("temp|cpu_thermal".into(), -5500)));
        assert!(!got.iter().any(|(k, _)| k == "throttled"));
        assert_eq!(split_key("temp|cpu|x"), ("temp", Some("cpu|x")));
        assert_eq!(scaled(by_name("temp").unwrap(), -5500.0), -5.5);
    }
}
