//! Prometheus text exposition (format 0.0.4) for `/metrics`: every host's latest values with a
//! `host` label, and the collector's own figures.
//!
//! One small function per group of families; [`render`] calls them in order. A host's families
//! are in `host.rs`.

use std::fmt::Write;
use std::sync::OnceLock;

use crate::gate::GateStats;
use crate::persist::PersistStatus;
use crate::store::{HostSummary, Store};

mod host;

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
    host::host_state(&mut out, &hosts);
    host::host_counters(&mut out, &hosts);
    host::host_info(&mut out, &hosts);
    host::host_values(&mut out, &hosts);
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
mod tests;
