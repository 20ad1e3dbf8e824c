//! Prometheus text exposition (format 0.0.4) for `/metrics`: every host's latest values with a
//! `host` label, and the collector's own figures.
//!
//! One small function per group of families; [`render`] calls them in order.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;

use ember_wire::Sample;

use crate::gate::GateStats;
use crate::metrics;
use crate::persist::PersistStatus;
use crate::store::{HostStatus, HostSummary, Store};

/// The collector's figures that do not live in the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    /// Seconds since start.
    pub uptime_s: u64,
    /// Clients of the live event stream.
    pub event_subscribers: usize,
    /// The MQTT gate's counters (embedded broker only).
    pub gate: Option<GateStats>,
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

/// A family of one unlabelled counter.
fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

/// A family of one unlabelled gauge.
fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", num(v));
}

/// A counter family with one series per `reason`.
fn by_reason(out: &mut String, name: &str, help: &str, rows: &[(&str, u64)]) {
    family(out, name, "counter", help);
    for (reason, v) in rows {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {v}");
    }
}

/// A family with one series per host, its value from `get`.
fn per_host(
    out: &mut String,
    hosts: &[HostSummary<'_>],
    (name, kind, help): (&str, &str, &str),
    get: impl Fn(&HostSummary<'_>) -> String,
) {
    family(out, name, kind, help);
    for h in hosts {
        let _ = writeln!(out, "{name}{{host=\"{}\"}} {}", h.id, get(h));
    }
}

/// The whole `/metrics` page.
pub fn render(store: &Store, persist: &PersistStatus, extra: Extra, now_ms: u64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let hosts = store.summaries(now_ms);
    host_state(&mut out, &hosts);
    host_counters(&mut out, &hosts);
    host_info(&mut out, &hosts);
    host_values(&mut out, &hosts);
    collector_ingest(&mut out, store);
    if let Some(g) = extra.gate {
        gate(&mut out, &g);
    }
    collector_hosts(&mut out, store, now_ms);
    history(&mut out, store);
    persistence(&mut out, persist);
    collector_process(&mut out, extra, now_ms);
    out
}

/// `up`, status and when each host was last heard from: exported whatever the status.
fn host_state(out: &mut String, hosts: &[HostSummary<'_>]) {
    per_host(
        out,
        hosts,
        (
            "ember_host_up",
            "gauge",
            "1 if the host's status is online, else 0",
        ),
        |h| u8::from(h.status == HostStatus::Online).to_string(),
    );
    family(
        out,
        "ember_host_status",
        "gauge",
        "The host's status: 1 for the current one",
    );
    for h in hosts {
        for s in [
            HostStatus::Online,
            HostStatus::Stale,
            HostStatus::Offline,
            HostStatus::Unknown,
        ] {
            let _ = writeln!(
                out,
                "ember_host_status{{host=\"{}\",status=\"{}\"}} {}",
                h.id,
                s.as_str(),
                u8::from(h.status == s)
            );
        }
    }
    per_host(
        out,
        hosts,
        (
            "ember_host_last_seen_timestamp_seconds",
            "gauge",
            "When anything was last heard from the host",
        ),
        |h| num(h.last_seen_ms as f64 / 1000.0),
    );
}

/// What the collector counted of each host's samples, and its history's memory.
fn host_counters(out: &mut String, hosts: &[HostSummary<'_>]) {
    for (name, help, get) in [
        (
            "ember_host_samples_received_total",
            "Samples received and stored",
            (|h| h.received) as fn(&HostSummary<'_>) -> u64,
        ),
        (
            "ember_host_samples_missing_total",
            "Samples never received (sequence gaps)",
            |h| h.missing,
        ),
        (
            "ember_host_samples_duplicate_total",
            "Samples received twice and dropped",
            |h| h.duplicates,
        ),
        (
            "ember_host_restarts_total",
            "Times the agent started again",
            |h| h.restarts,
        ),
    ] {
        per_host(out, hosts, (name, "counter", help), |h| get(h).to_string());
    }
    per_host(
        out,
        hosts,
        (
            "ember_host_history_bytes",
            "gauge",
            "Memory the host's history takes",
        ),
        |h| h.history_bytes.to_string(),
    );
}

/// Whether a host's sample values are exported: not once it is offline, or its last values
/// would be exported forever as if current (`ember_host_up` and the status say what it is).
fn exports_values(h: &HostSummary<'_>) -> bool {
    h.status != HostStatus::Offline
}

/// A family's name, type and help.
type Family = (&'static str, &'static str, &'static str);

/// Families of per-host series, gathered host by host and written family by family.
#[derive(Default)]
struct Families(BTreeMap<&'static str, (Family, Vec<String>)>);

impl Families {
    /// Adds a series with `labels` (already escaped) to `family`.
    fn push(&mut self, family: Family, labels: &str, v: f64) {
        let name = family.0;
        let (_, lines) = self.0.entry(name).or_insert_with(|| (family, Vec::new()));
        lines.push(format!("{name}{{{labels}}} {}", num(v)));
    }

    fn write(self, out: &mut String) {
        for ((name, kind, help), lines) in self.0.into_values() {
            family(out, name, kind, help);
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
}

/// Latest values of the hosts not offline, one family per metric.
fn host_values(out: &mut String, hosts: &[HostSummary<'_>]) {
    let mut fams = Families::default();
    for h in hosts.iter().filter(|h| exports_values(h)) {
        let Some(s) = h.latest() else { continue };
        sample_values(&mut fams, h, &s);
        let info_boot_s = h.info().map(|i| i.boot_time_s);
        boot_time(&mut fams, h, &s, info_boot_s);
        throttling(&mut fams, h, &s);
        filesystem_free(&mut fams, h, &s);
        totals(&mut fams, h, &s);
    }
    fams.write(out);
}

/// The series of [`metrics::ALL`] that have a Prometheus name, as gauges.
fn sample_values(fams: &mut Families, h: &HostSummary<'_>, s: &Sample) {
    metrics::for_each(s, |m, label, v| {
        let Some(name) = m.prometheus else { return };
        let labels = match (m.label, label) {
            (Some(l), Some(value)) => format!("host=\"{}\",{l}=\"{}\"", h.id, esc(value)),
            _ => format!("host=\"{}\"", h.id),
        };
        fams.push(
            (name, "gauge", m.help),
            &labels,
            metrics::scaled(m, v as f64),
        );
    });
}

/// When the host booted: the sample's own time less its uptime (a timestamp does not change
/// every sample as an uptime does). Whole-second uptimes make that move by a second now and then,
/// so the inventory's boot time (the kernel's, steady) is taken when it is within 2 s of it.
fn boot_time(fams: &mut Families, h: &HostSummary<'_>, s: &Sample, info_boot_s: Option<u64>) {
    let boot_s = s
        .timestamp_ms
        .saturating_sub(s.uptime_s.saturating_mul(1000))
        / 1000;
    let boot_s = info_boot_s
        .filter(|b| b.abs_diff(boot_s) <= 2)
        .unwrap_or(boot_s);
    fams.push(
        (
            "ember_boot_time_seconds",
            "gauge",
            "When the host booted, seconds since the Unix epoch",
        ),
        &format!("host=\"{}\"", h.id),
        boot_s as f64,
    );
}

/// The Raspberry Pi firmware's `get_throttled` bits: each condition now (bit `n`) and since boot
/// (bit `n + 16`).
const THROTTLE_FLAGS: [(&str, u32); 4] = [
    ("under_voltage", 0),
    ("freq_capped", 1),
    ("throttled", 2),
    ("soft_temp_limit", 3),
];

/// One 0/1 series per throttling flag, now and since boot, where the board reports them.
fn throttling(fams: &mut Families, h: &HostSummary<'_>, s: &Sample) {
    let Some(bits) = s.throttled else { return };
    for (flag, bit) in THROTTLE_FLAGS {
        let labels = format!("host=\"{}\",flag=\"{flag}\"", h.id);
        for (fam, b) in [
            (
                (
                    "ember_throttle_active",
                    "gauge",
                    "1 while the Raspberry Pi firmware reports the condition (flag)",
                ),
                bit,
            ),
            (
                (
                    "ember_throttle_occurred",
                    "gauge",
                    "1 if the condition (flag) occurred since the host booted",
                ),
                bit + 16,
            ),
        ] {
            fams.push(fam, &labels, f64::from((bits >> b) & 1));
        }
    }
}

/// Free bytes per filesystem, like node_exporter's `node_filesystem_free_bytes` (size less used;
/// the agent measures used as size less free blocks).
fn filesystem_free(fams: &mut Families, h: &HostSummary<'_>, s: &Sample) {
    for fs in &s.filesystems {
        fams.push(
            (
                "ember_filesystem_free_bytes",
                "gauge",
                "Filesystem space free (size less used)",
            ),
            &format!("host=\"{}\",mountpoint=\"{}\"", h.id, esc(&fs.mount)),
            fs.total.saturating_sub(fs.used) as f64,
        );
    }
}

/// Counters: what the collector added up from the host's rates (see `totals.rs`), and the
/// samples the agent dropped since it started.
fn totals(fams: &mut Families, h: &HostSummary<'_>, s: &Sample) {
    for (total, label, v) in h.totals.iter() {
        let (name, label_name, help) = total.family();
        fams.push(
            (name, "counter", help),
            &format!("host=\"{}\",{label_name}=\"{}\"", h.id, esc(label)),
            v,
        );
    }
    fams.push(
        (
            "ember_agent_dropped_samples_total",
            "counter",
            "Samples the agent dropped since it started (its send buffer full)",
        ),
        &format!("host=\"{}\"", h.id),
        f64::from(s.dropped),
    );
}

/// `ember_host_info`: what each host is, from its inventory, whatever its status.
fn host_info(out: &mut String, hosts: &[HostSummary<'_>]) {
    family(
        out,
        "ember_host_info",
        "gauge",
        "The host's inventory as labels; always 1",
    );
    for h in hosts {
        let Some(i) = h.info() else { continue };
        let _ = writeln!(
            out,
            "ember_host_info{{host=\"{}\",board=\"{}\",os=\"{}\",kernel=\"{}\",agent_version=\"{}\"}} 1",
            h.id,
            esc(&i.board),
            esc(&i.os),
            esc(&i.kernel),
            esc(&i.agent_version)
        );
    }
}

/// Ingest: messages accepted, rejected, samples stored.
fn collector_ingest(out: &mut String, store: &Store) {
    let st = store.stats();
    counter(
        out,
        "ember_collector_messages_accepted_total",
        "MQTT messages accepted",
        st.accepted,
    );
    counter(
        out,
        "ember_collector_samples_total",
        "Samples stored",
        st.samples,
    );
    gauge(
        out,
        "ember_collector_ingest_samples_per_second",
        "Samples stored per second over the last few seconds",
        store.ingest_rate(),
    );
    by_reason(
        out,
        "ember_collector_rejected_total",
        "Messages dropped as bad input, by reason",
        &[
            ("topic", st.rejected_topic),
            ("oversized", st.rejected_oversized),
            ("decode", st.rejected_decode),
            ("mismatch", st.rejected_mismatch),
        ],
    );
    counter(
        out,
        "ember_collector_broker_dropped_total",
        "Messages the embedded broker acknowledged but dropped before ingest read them",
        st.broker_dropped,
    );
    counter(
        out,
        "ember_collector_duplicate_samples_total",
        "Samples dropped as duplicates",
        st.duplicates,
    );
    counter(
        out,
        "ember_collector_missing_samples_total",
        "Samples never received, by sequence number",
        st.missing,
    );
}

/// The MQTT gate's figures (embedded broker only).
fn gate(out: &mut String, g: &GateStats) {
    gauge(
        out,
        "ember_collector_mqtt_connections",
        "MQTT connections open",
        g.open as f64,
    );
    gauge(
        out,
        "ember_collector_mqtt_max_connections",
        "max-connections",
        g.max as f64,
    );
    by_reason(
        out,
        "ember_collector_mqtt_refused_total",
        "MQTT connections refused, by reason",
        &[
            ("full", g.refused_full),
            ("client_id", g.refused_id),
            ("auth", g.refused_auth),
            ("busy", g.refused_busy),
            ("client_limit", g.refused_client_limit),
            ("tls", g.refused_tls),
            ("protocol", g.refused_protocol),
            ("subscription", g.refused_subscriptions),
            ("oversized", g.oversized),
        ],
    );
    counter(
        out,
        "ember_collector_mqtt_accepted_total",
        "MQTT connections admitted (authenticated, with accounts)",
        g.accepted,
    );
    by_reason(
        out,
        "ember_collector_mqtt_publishes_dropped_total",
        "Publishes dropped by the gate, by reason (spoofed: not the account's topic)",
        &[("spoofed", g.spoofed), ("rate", g.rate_dropped)],
    );
    counter(
        out,
        "ember_collector_mqtt_publishes_delayed_total",
        "QoS 1 publishes held back to the client's rate",
        g.rate_delayed,
    );
    counter(
        out,
        "ember_collector_mqtt_held_total",
        "Times a publisher was held back because ingest was behind",
        g.held,
    );
    gauge(
        out,
        "ember_collector_ingest_lag_bytes",
        "Bytes of agents' publishes relayed to the broker and not yet read by ingest",
        g.ingest_lag_bytes as f64,
    );
}

/// Hosts by status.
fn collector_hosts(out: &mut String, store: &Store, now_ms: u64) {
    family(out, "ember_collector_hosts", "gauge", "Hosts by status");
    for (s, n) in store.status_counts(now_ms) {
        let _ = writeln!(
            out,
            "ember_collector_hosts{{status=\"{}\"}} {n}",
            s.as_str()
        );
    }
}

/// The history's memory and spill.
fn history(out: &mut String, store: &Store) {
    let mem = store.memory();
    gauge(
        out,
        "ember_collector_history_bytes",
        "Memory the history takes",
        mem.total_bytes() as f64,
    );
    gauge(
        out,
        "ember_collector_history_raw_samples",
        "Raw samples held",
        mem.raw_samples as f64,
    );
    gauge(
        out,
        "ember_collector_history_bytes_per_sample",
        "Bytes per raw sample held",
        mem.bytes_per_sample(),
    );
    gauge(
        out,
        "ember_collector_history_spilled_bytes",
        "History bytes kept on disk rather than in memory (history.spill)",
        (mem.raw_spilled_bytes + mem.tier_spilled_bytes) as f64,
    );
    if let Some(spill) = store.spill_stats() {
        gauge(
            out,
            "ember_collector_spill_disk_bytes",
            "Disk space the spilled history's segments take",
            spill.disk_bytes as f64,
        );
        counter(
            out,
            "ember_collector_spill_errors_total",
            "Spill writes and reads that failed (a failed write keeps the block in memory)",
            spill.errors,
        );
        gauge(
            out,
            "ember_collector_spill_failing",
            "1 while spill writes fail (sealed history blocks stay in memory)",
            if spill.failing { 1.0 } else { 0.0 },
        );
    }
}

/// Writes to disk: the log and snapshots.
fn persistence(out: &mut String, persist: &PersistStatus) {
    gauge(
        out,
        "ember_collector_persist_ok",
        "1 if the last write to disk succeeded",
        if persist.ok { 1.0 } else { 0.0 },
    );
    counter(
        out,
        "ember_collector_persist_write_errors_total",
        "Writes to disk that failed",
        persist.write_errors,
    );
    counter(
        out,
        "ember_collector_persist_dropped_records_total",
        "Log records dropped because the disk refused them too long",
        persist.dropped_records,
    );
    counter(
        out,
        "ember_collector_snapshots_total",
        "Snapshots written",
        persist.snapshots,
    );
    gauge(
        out,
        "ember_collector_snapshot_pause_seconds",
        "How long ingest waited for the last snapshot to start",
        persist.snapshot_pause_us as f64 / 1e6,
    );
    gauge(
        out,
        "ember_collector_snapshot_write_seconds",
        "How long the last snapshot took to serialise and write, ingest going on",
        persist.snapshot_write_ms as f64 / 1e3,
    );
}

/// The collector process itself.
fn collector_process(out: &mut String, extra: Extra, now_ms: u64) {
    gauge(
        out,
        "ember_collector_event_subscribers",
        "Clients of the live event stream",
        extra.event_subscribers as f64,
    );
    family(
        out,
        "ember_build_info",
        "gauge",
        "The collector's version as a label; always 1",
    );
    let _ = writeln!(
        out,
        "ember_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    gauge(
        out,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds",
        start_time_s(extra.uptime_s, now_ms) as f64,
    );
}

/// When the collector started, seconds since the Unix epoch: worked out at the first call and
/// kept, so that it does not move by a second between scrapes as whole-second uptimes would.
fn start_time_s(uptime_s: u64, now_ms: u64) -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| (now_ms / 1000).saturating_sub(uptime_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use crate::store::StoreConfig;
    use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};

    fn store() -> Store {
        let c = RawConfig::default().validate().unwrap();
        Store::new(StoreConfig::from_config(&c))
    }

    fn ingest(store: &mut Store, host: &str, s: Sample, now_ms: u64) {
        send(store, host, "sample", Message::Sample(s), now_ms);
    }

    fn send(store: &mut Store, host: &str, kind: &str, m: Message, now_ms: u64) {
        let p = encoded(host, m);
        store
            .ingest(&format!("ember/v1/{host}/{kind}"), &p, now_ms)
            .unwrap();
    }

    fn encoded(host: &str, m: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        Envelope::new(HostId::new(host).unwrap(), m)
            .encode(&mut buf)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn an_offline_host_keeps_up_and_status_but_not_its_values() {
        let mut store = store();
        let mut s = Sample {
            seq: 1,
            timestamp_ms: 1_000,
            ..Sample::default()
        };
        s.cpu.busy = 5000;
        ingest(&mut store, "pi", s, 1_000);
        let online = render(&store, &PersistStatus::default(), Extra::default(), 1_000);
        assert!(
            online.contains("ember_cpu_busy_ratio{host=\"pi\"} 0.5\n"),
            "{online}"
        );
        // A day of silence: offline.
        let later = 1_000 + 86_400_000;
        let text = render(&store, &PersistStatus::default(), Extra::default(), later);
        assert!(text.contains("ember_host_up{host=\"pi\"} 0\n"), "{text}");
        assert!(
            text.contains("ember_host_status{host=\"pi\",status=\"offline\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("ember_cpu_busy_ratio"), "{text}");
        assert!(!text.contains("ember_memory_total_bytes"), "{text}");
    }

    #[test]
    fn timestamps_info_throttling_flags_and_free_bytes() {
        let mut store = store();
        let mut s = Sample {
            seq: 1,
            timestamp_ms: 1_000_000_500,
            uptime_s: 3_600,
            // Under-voltage now, throttled and soft temperature limit since boot.
            throttled: Some(0x1 | 0x4_0000 | 0x8_0000),
            ..Sample::default()
        };
        s.filesystems
            .push(ember_wire::Filesystem {
                mount: "/".into(),
                total: 100,
                used: 30,
            })
            .unwrap();
        // "b" has no inventory: its boot time is the sample's alone.
        ingest(&mut store, "b", s.clone(), 1_000_000_500);
        ingest(&mut store, "pi", s, 1_000_000_500);
        let info = ember_wire::HostInfo {
            board: "Raspberry Pi 4 Model B".into(),
            os: "Debian \"12\"".into(),
            kernel: "6.1.0".into(),
            agent_version: "0.1.0".into(),
            // The kernel's boot time, a second from the sample's 996400.5.
            boot_time_s: 996_401,
            ..ember_wire::HostInfo::default()
        };
        send(
            &mut store,
            "pi",
            "info",
            Message::HostInfo(info),
            1_000_000_500,
        );
        let extra = Extra {
            uptime_s: 60,
            ..Extra::default()
        };
        let now = 1_000_000_900;
        let text = render(&store, &PersistStatus::default(), extra, now);
        for want in [
            "ember_boot_time_seconds{host=\"pi\"} 996401\n",
            "ember_boot_time_seconds{host=\"b\"} 996400\n",
            "ember_host_info{host=\"pi\",board=\"Raspberry Pi 4 Model B\",os=\"Debian \\\"12\\\"\",kernel=\"6.1.0\",agent_version=\"0.1.0\"} 1\n",
            concat!("ember_build_info{version=\"", env!("CARGO_PKG_VERSION"), "\"} 1\n"),
            "ember_throttle_active{host=\"pi\",flag=\"under_voltage\"} 1\n",
            "ember_throttle_active{host=\"pi\",flag=\"throttled\"} 0\n",
            "ember_throttle_occurred{host=\"pi\",flag=\"under_voltage\"} 0\n",
            "ember_throttle_occurred{host=\"pi\",flag=\"throttled\"} 1\n",
            "ember_throttle_occurred{host=\"pi\",flag=\"soft_temp_limit\"} 1\n",
            "ember_throttle_occurred{host=\"pi\",flag=\"freq_capped\"} 0\n",
            "ember_filesystem_size_bytes{host=\"pi\",mountpoint=\"/\"} 100\n",
            "ember_filesystem_free_bytes{host=\"pi\",mountpoint=\"/\"} 70\n",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        // The collector's start: now less its uptime, and the same at the next scrape.
        let start = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap_or_else(|| panic!("no start time in\n{text}"));
        let later = render(
            &store,
            &PersistStatus::default(),
            Extra {
                uptime_s: 61,
                ..extra
            },
            now + 1_100,
        );
        assert!(
            later.contains(&format!("process_start_time_seconds {start}\n")),
            "{later}"
        );
        // Uptimes and the packed flags are gone.
        for gone in [
            "ember_uptime_seconds",
            "ember_collector_uptime_seconds",
            "ember_throttled_flags",
        ] {
            assert!(!text.contains(gone), "{gone} in\n{text}");
        }
        // Offline: the inventory stays, the values go.
        let text = render(&store, &PersistStatus::default(), extra, now + 86_400_000);
        assert!(text.contains("ember_host_info{host=\"pi\""), "{text}");
        assert!(!text.contains("ember_boot_time_seconds{"), "{text}");
        assert!(!text.contains("ember_throttle_active{"), "{text}");
    }

    #[test]
    fn counters_add_up_rates_over_each_samples_interval_across_gaps() {
        let mut store = store();
        let online = ember_wire::Status::Online { interval_ms: 2_000 };
        send(&mut store, "pi", "status", Message::Status(online), 0);
        let sample = |seq: u64, t: u64, rx_bps: u64| {
            let mut s = Sample {
                seq,
                timestamp_ms: t,
                dropped: 3,
                ..Sample::default()
            };
            s.networks
                .push(ember_wire::NetIo {
                    interface: "eth0".into(),
                    rx_bps,
                    tx_errors: 2,
                    ..ember_wire::NetIo::default()
                })
                .unwrap();
            s.disks
                .push(ember_wire::DiskIo {
                    device: "sda".into(),
                    read_bps: 10,
                    ..ember_wire::DiskIo::default()
                })
                .unwrap();
            s
        };
        // The first: the announced interval (2 s); then 1 s after it; then seq 4 after a gap
        // (seq 3 lost): its own interval is the announced one again, not the 5 s since seq 2.
        ingest(&mut store, "pi", sample(1, 10_000, 100), 10_000);
        ingest(&mut store, "pi", sample(2, 11_000, 1_000), 11_000);
        ingest(&mut store, "pi", sample(4, 16_000, 10), 16_000);
        // A copy changes nothing.
        let copy = encoded("pi", Message::Sample(sample(4, 16_000, 10)));
        store.ingest("ember/v1/pi/sample", &copy, 16_000).unwrap();
        let text = render(&store, &PersistStatus::default(), Extra::default(), 16_000);
        for want in [
            "# TYPE ember_network_receive_bytes_total counter\n",
            "ember_network_receive_bytes_total{host=\"pi\",interface=\"eth0\"} 1220\n",
            "ember_network_transmit_errors_total{host=\"pi\",interface=\"eth0\"} 6\n",
            "ember_disk_read_bytes_total{host=\"pi\",device=\"sda\"} 50\n",
            "# TYPE ember_agent_dropped_samples_total counter\n",
            "ember_agent_dropped_samples_total{host=\"pi\"} 3\n",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(!text.contains("ember_agent_dropped_samples{"), "{text}");
    }

    #[test]
    fn every_line_is_a_sample_or_a_comment_and_labels_are_escaped() {
        let mut store = store();
        let mut s = Sample {
            seq: 1,
            timestamp_ms: 1,
            ..Sample::default()
        };
        s.cpu.busy = 5000;
        s.filesystems
            .push(ember_wire::Filesystem {
                mount: "/mnt/a\"b\\c".into(),
                total: 10,
                used: 5,
            })
            .unwrap();
        ingest(&mut store, "pi", s, 1);
        let text = render(&store, &PersistStatus::default(), Extra::default(), 1);
        assert!(
            text.contains("ember_cpu_busy_ratio{host=\"pi\"} 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ember_filesystem_used_bytes{host=\"pi\",mountpoint=\"/mnt/a\\\"b\\\\c\"} 5\n"
            ),
            "{text}"
        );
        assert!(text.contains("ember_collector_samples_total 1\n"));
        let persist = PersistStatus {
            snapshot_pause_us: 1500,
            snapshot_write_ms: 700,
            ..PersistStatus::default()
        };
        let snap = render(&store, &persist, Extra::default(), 1);
        assert!(
            snap.contains("ember_collector_snapshot_pause_seconds 0.0015\n"),
            "{snap}"
        );
        assert!(
            snap.contains("ember_collector_snapshot_write_seconds 0.7\n"),
            "{snap}"
        );
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("ember_")
                    || line.starts_with("process_start_time_seconds "),
                "{line}"
            );
        }
    }
}
