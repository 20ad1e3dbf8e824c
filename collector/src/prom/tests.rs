//! `/metrics` as a whole: see the module.

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
