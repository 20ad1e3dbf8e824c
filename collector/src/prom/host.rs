//! A host's families: its state whatever its status, and its latest values, totals, boot
//! time and throttling flags while it is not offline.

use std::collections::BTreeMap;
use std::fmt::Write;

use ember_wire::Sample;

use super::{esc, family, num, per_host};
use crate::metrics;
use crate::store::{HostStatus, HostSummary};

/// `up`, status and when each host was last heard from: exported whatever the status.
pub(super) fn host_state(out: &mut String, hosts: &[HostSummary<'_>]) {
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
pub(super) fn host_counters(out: &mut String, hosts: &[HostSummary<'_>]) {
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
pub(super) fn host_values(out: &mut String, hosts: &[HostSummary<'_>]) {
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
pub(super) fn host_info(out: &mut String, hosts: &[HostSummary<'_>]) {
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
