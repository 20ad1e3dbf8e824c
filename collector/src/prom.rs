//! Prometheus text exposition (format 0.0.4) for `/metrics`: every host's latest values with a
//! `host` label, and the collector's own figures.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::metrics::{self, Metric};
use crate::persist::PersistStatus;
use crate::store::{HostStatus, Store};

/// The collector's figures that do not live in the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    /// Seconds since start.
    pub uptime_s: u64,
    /// Clients of the live event stream.
    pub event_subscribers: usize,
    /// The MQTT gate's counters (embedded broker only).
    pub gate: Option<crate::gate::GateStats>,
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

/// The whole `/metrics` page.
pub fn render(store: &Store, persist: &PersistStatus, extra: Extra, now_ms: u64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let hosts = store.summaries(now_ms);

    family(
        &mut out,
        "ember_host_up",
        "gauge",
        "1 if the host's status is online, else 0",
    );
    for h in &hosts {
        let up = u8::from(h.status == HostStatus::Online);
        let _ = writeln!(out, "ember_host_up{{host=\"{}\"}} {up}", h.id);
    }
    family(
        &mut out,
        "ember_host_status",
        "gauge",
        "The host's status: 1 for the current one",
    );
    for h in &hosts {
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
    family(
        &mut out,
        "ember_host_last_seen_timestamp_seconds",
        "gauge",
        "When anything was last heard from the host",
    );
    for h in &hosts {
        let _ = writeln!(
            out,
            "ember_host_last_seen_timestamp_seconds{{host=\"{}\"}} {}",
            h.id,
            num(h.last_seen_ms as f64 / 1000.0)
        );
    }
    for (name, help, get) in [
        (
            "ember_host_samples_received_total",
            "Samples received and stored",
            (|h| h.received) as fn(&crate::store::HostSummary<'_>) -> u64,
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
        family(&mut out, name, "counter", help);
        for h in &hosts {
            let _ = writeln!(out, "{name}{{host=\"{}\"}} {}", h.id, get(h));
        }
    }
    family(
        &mut out,
        "ember_host_history_bytes",
        "gauge",
        "Memory the host's history takes",
    );
    for h in &hosts {
        let _ = writeln!(
            out,
            "ember_host_history_bytes{{host=\"{}\"}} {}",
            h.id, h.history_bytes
        );
    }

    // Latest values, one family per metric.
    let mut lines: BTreeMap<&'static str, (&'static Metric, Vec<String>)> = BTreeMap::new();
    for h in &hosts {
        let Some(s) = h.latest() else { continue };
        metrics::for_each(&s, |m, label, v| {
            let labels = match (m.label, label) {
                (Some(name), Some(value)) => format!("host=\"{}\",{name}=\"{}\"", h.id, esc(value)),
                _ => format!("host=\"{}\"", h.id),
            };
            lines
                .entry(m.prometheus)
                .or_insert_with(|| (m, Vec::new()))
                .1
                .push(format!(
                    "{}{{{labels}}} {}",
                    m.prometheus,
                    num(metrics::scaled(m, v as f64))
                ));
        });
    }
    for (name, (m, ls)) in lines {
        family(&mut out, name, "gauge", m.help);
        for l in ls {
            out.push_str(&l);
            out.push('\n');
        }
    }

    // The collector's own figures.
    let st = store.stats();
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    };
    let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {}", num(v));
    };
    counter(
        &mut out,
        "ember_collector_messages_accepted_total",
        "MQTT messages accepted",
        st.accepted,
    );
    counter(
        &mut out,
        "ember_collector_samples_total",
        "Samples stored",
        st.samples,
    );
    gauge(
        &mut out,
        "ember_collector_ingest_samples_per_second",
        "Samples stored per second over the last few seconds",
        store.ingest_rate(),
    );
    family(
        &mut out,
        "ember_collector_rejected_total",
        "counter",
        "Messages dropped as bad input, by reason",
    );
    for (reason, v) in [
        ("topic", st.rejected_topic),
        ("oversized", st.rejected_oversized),
        ("decode", st.rejected_decode),
        ("mismatch", st.rejected_mismatch),
    ] {
        let _ = writeln!(
            out,
            "ember_collector_rejected_total{{reason=\"{reason}\"}} {v}"
        );
    }
    counter(
        &mut out,
        "ember_collector_broker_dropped_total",
        "Messages the embedded broker acknowledged but dropped before ingest read them",
        st.broker_dropped,
    );
    if let Some(g) = extra.gate {
        gauge(
            &mut out,
            "ember_collector_mqtt_connections",
            "MQTT connections open",
            g.open as f64,
        );
        gauge(
            &mut out,
            "ember_collector_mqtt_max_connections",
            "max-connections",
            g.max as f64,
        );
        family(
            &mut out,
            "ember_collector_mqtt_refused_total",
            "counter",
            "MQTT connections refused, by reason",
        );
        for (reason, v) in [
            ("full", g.refused_full),
            ("client_id", g.refused_id),
            ("auth", g.refused_auth),
            ("busy", g.refused_busy),
            ("client_limit", g.refused_client_limit),
            ("tls", g.refused_tls),
            ("protocol", g.refused_protocol),
            ("subscription", g.refused_subscriptions),
            ("oversized", g.oversized),
        ] {
            let _ = writeln!(
                out,
                "ember_collector_mqtt_refused_total{{reason=\"{reason}\"}} {v}"
            );
        }
        counter(
            &mut out,
            "ember_collector_mqtt_accepted_total",
            "MQTT connections admitted (authenticated, with accounts)",
            g.accepted,
        );
        family(
            &mut out,
            "ember_collector_mqtt_publishes_dropped_total",
            "counter",
            "Publishes dropped by the gate, by reason (spoofed: not the account's topic)",
        );
        for (reason, v) in [("spoofed", g.spoofed), ("rate", g.rate_dropped)] {
            let _ = writeln!(
                out,
                "ember_collector_mqtt_publishes_dropped_total{{reason=\"{reason}\"}} {v}"
            );
        }
        counter(
            &mut out,
            "ember_collector_mqtt_publishes_delayed_total",
            "QoS 1 publishes held back to the client's rate",
            g.rate_delayed,
        );
        counter(
            &mut out,
            "ember_collector_mqtt_held_total",
            "Times a publisher was held back because ingest was behind",
            g.held,
        );
        gauge(
            &mut out,
            "ember_collector_ingest_lag_bytes",
            "Bytes of agents' publishes relayed to the broker and not yet read by ingest",
            g.ingest_lag_bytes as f64,
        );
    }
    counter(
        &mut out,
        "ember_collector_duplicate_samples_total",
        "Samples dropped as duplicates",
        st.duplicates,
    );
    counter(
        &mut out,
        "ember_collector_missing_samples_total",
        "Samples never received, by sequence number",
        st.missing,
    );
    family(
        &mut out,
        "ember_collector_hosts",
        "gauge",
        "Hosts by status",
    );
    for (s, n) in store.status_counts(now_ms) {
        let _ = writeln!(
            out,
            "ember_collector_hosts{{status=\"{}\"}} {n}",
            s.as_str()
        );
    }
    let mem = store.memory();
    gauge(
        &mut out,
        "ember_collector_history_bytes",
        "Memory the history takes",
        mem.total_bytes() as f64,
    );
    gauge(
        &mut out,
        "ember_collector_history_raw_samples",
        "Raw samples held",
        mem.raw_samples as f64,
    );
    gauge(
        &mut out,
        "ember_collector_history_bytes_per_sample",
        "Bytes per raw sample held",
        mem.bytes_per_sample(),
    );
    gauge(
        &mut out,
        "ember_collector_history_spilled_bytes",
        "History bytes kept on disk rather than in memory (history.spill)",
        (mem.raw_spilled_bytes + mem.tier_spilled_bytes) as f64,
    );
    if let Some(spill) = store.spill_stats() {
        gauge(
            &mut out,
            "ember_collector_spill_disk_bytes",
            "Disk space the spilled history's segments take",
            spill.disk_bytes as f64,
        );
        counter(
            &mut out,
            "ember_collector_spill_errors_total",
            "Spill writes and reads that failed (a failed write keeps the block in memory)",
            spill.errors,
        );
        gauge(
            &mut out,
            "ember_collector_spill_failing",
            "1 while spill writes fail (sealed history blocks stay in memory)",
            if spill.failing { 1.0 } else { 0.0 },
        );
    }
    gauge(
        &mut out,
        "ember_collector_persist_ok",
        "1 if the last write to disk succeeded",
        if persist.ok { 1.0 } else { 0.0 },
    );
    counter(
        &mut out,
        "ember_collector_persist_write_errors_total",
        "Writes to disk that failed",
        persist.write_errors,
    );
    counter(
        &mut out,
        "ember_collector_persist_dropped_records_total",
        "Log records dropped because the disk refused them too long",
        persist.dropped_records,
    );
    counter(
        &mut out,
        "ember_collector_snapshots_total",
        "Snapshots written",
        persist.snapshots,
    );
    gauge(
        &mut out,
        "ember_collector_snapshot_pause_seconds",
        "How long ingest waited for the last snapshot to start",
        persist.snapshot_pause_us as f64 / 1e6,
    );
    gauge(
        &mut out,
        "ember_collector_snapshot_write_seconds",
        "How long the last snapshot took to serialise and write, ingest going on",
        persist.snapshot_write_ms as f64 / 1e3,
    );
    gauge(
        &mut out,
        "ember_collector_event_subscribers",
        "Clients of the live event stream",
        extra.event_subscribers as f64,
    );
    gauge(
        &mut out,
        "ember_collector_uptime_seconds",
        "Seconds since the collector started",
        extra.uptime_s as f64,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use crate::store::StoreConfig;
    use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};

    #[test]
    fn every_line_is_a_sample_or_a_comment_and_labels_are_escaped() {
        let c = RawConfig::default().validate().unwrap();
        let mut store = Store::new(StoreConfig::from_config(&c));
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
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let p = Envelope::new(HostId::new("pi").unwrap(), Message::Sample(s))
            .encode(&mut buf)
            .unwrap()
            .to_vec();
        store.ingest("ember/v1/pi/sample", &p, 1).unwrap();
        let text = render(&store, &PersistStatus::default(), Extra::default(), 1);
        assert!(
            text.contains("ember_cpu_busy_ratio{host=\"pi\"} 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ember_filesystem_used_bytes{host=\"pi\",mount=\"/mnt/a\\\"b\\\\c\"} 5\n"
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
                    || line.starts_with("ember_"),
                "{line}"
            );
        }
    }
}
