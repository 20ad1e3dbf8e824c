//! Issue #5: many agents at once, history by range and resolution, `/metrics` parsed as
//! Prometheus text and checked by `promtool check metrics` (issue #23), and every route of
//! `docs/openapi.json` answering.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{with_operator, Running, OPERATOR_TOKEN};
use crate::support::{eventually, spawn_agent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_agents_history_metrics_and_every_documented_route() {
    let c = Running::start(with_operator).await;
    const N: usize = 10;
    let agents: Vec<_> = (0..N)
        .map(|i| spawn_agent(c.agent_config(&format!("many-{i:02}"), "200ms")))
        .collect();
    eventually(
        Duration::from_secs(30),
        "every agent with 5 samples",
        || async {
            let (_, hosts) = c.get("/api/hosts").await;
            let ready = hosts
                .as_array()?
                .iter()
                .filter(|h| h["samples"].as_u64() >= Some(5) && h["status"] == "online")
                .count();
            (ready == N).then_some(())
        },
    )
    .await;

    // Raw history of two series.
    let (status, h) = c
        .get("/api/hosts/many-03/history?resolution=raw&series=cpu.busy,memory.used")
        .await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["resolution"], "raw");
    let series = h["series"].as_array().unwrap();
    let names: Vec<&str> = series
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu.busy", "memory.used"]);
    for s in series {
        let points = s["points"].as_array().unwrap();
        assert!(points.len() >= 5, "{s}");
        let mut last = 0;
        for p in points {
            let p: Vec<i64> = serde_json::from_value(p.clone()).unwrap();
            assert_eq!(p.len(), 4);
            assert!(p[0] > last, "times increase: {points:?}");
            last = p[0];
            assert!(p[1] == p[2] && p[2] == p[3], "raw point {p:?}");
        }
    }
    // The 1-minute tier: the open bucket already holds min <= avg <= max.
    let (status, h) = c.get("/api/hosts/many-03/history?resolution=1m").await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(
        (h["resolution"].as_str(), h["step_ms"].as_u64()),
        (Some("1m"), Some(60_000))
    );
    let busy = h["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == "cpu.busy")
        .expect("cpu.busy downsampled");
    for p in busy["points"].as_array().unwrap() {
        let p: Vec<i64> = serde_json::from_value(p.clone()).unwrap();
        assert!(p[1] <= p[2] && p[2] <= p[3], "{p:?}");
        assert_eq!(p[0] % 60_000, 0);
    }
    // A filesystem series carries its mount as a label.
    let (_, h) = c.get("/api/hosts/many-03/history?series=fs.used").await;
    assert!(h["series"][0]["label"].is_string(), "{h}");
    // Bad queries are 400 with a reason; unknown hosts 404.
    let (status, e) = c.get("/api/hosts/many-03/history?resolution=7m").await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("1m"), "{e}");
    let (status, _) = c.get("/api/hosts/many-03/history?from=10&to=5").await;
    assert_eq!(status, 400);
    let (status, _) = c.get("/api/hosts/many-03/history?from=soon").await;
    assert_eq!(status, 400);
    let (status, _) = c.get("/api/hosts/nobody/history").await;
    assert_eq!(status, 404);

    // /metrics, parsed as Prometheus text; every sample line must parse.
    let (status, text) = c.get_text("/metrics").await;
    assert_eq!(status, 200);
    promtool_check_metrics(&text).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let sample_lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(scrape.samples.len(), sample_lines, "every line parses");
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{s:?}"),
    };
    let find = |metric: &str, host: Option<&str>| -> Vec<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && host.is_none_or(|h| s.labels.get("host") == Some(h)))
            .map(value)
            .collect()
    };
    for i in 0..N {
        let host = format!("many-{i:02}");
        assert_eq!(find("ember_host_up", Some(&host)), [1.0], "{host}");
        let busy = find("ember_cpu_busy_ratio", Some(&host));
        assert!(
            busy.len() == 1 && (0.0..=1.0).contains(&busy[0]),
            "{busy:?}"
        );
        assert!(find("ember_memory_total_bytes", Some(&host))[0] > 0.0);
        let boot = find("ember_boot_time_seconds", Some(&host));
        assert!(boot.len() == 1 && boot[0] > 1.0e9, "{host}: {boot:?}");
        assert_eq!(find("ember_host_info", Some(&host)), [1.0], "{host}");
        // Counters the collector adds up from the agent's rates (issue #23).
        let cpu = find("ember_cpu_seconds_total", Some(&host));
        assert!(cpu.len() == 3 && cpu.iter().all(|v| *v >= 0.0), "{cpu:?}");
        assert_eq!(
            find("ember_agent_dropped_samples_total", Some(&host)).len(),
            1
        );
    }
    assert!(find("ember_collector_samples_total", None)[0] >= (5 * N) as f64);
    assert_eq!(find("ember_build_info", None), [1.0]);
    assert!(find("process_start_time_seconds", None)[0] > 1.0e9);
    let reasons: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ember_collector_rejected_total")
        .filter_map(|s| s.labels.get("reason"))
        .collect();
    assert_eq!(reasons, ["topic", "oversized", "decode", "mismatch"]);
    assert!(find("ember_collector_history_bytes", None)[0] > 0.0);
    assert!(find("ember_collector_history_bytes_per_sample", None)[0] > 0.0);
    assert_eq!(
        find("ember_collector_hosts", None).iter().sum::<f64>(),
        N as f64
    );
    assert!(
        scrape.docs.contains_key("ember_host_up"),
        "HELP lines parsed"
    );

    // Every documented GET route answers from its own handler (a command, for `{cmd}`).
    let (status, sent) = c
        .send(
            "POST",
            "/api/hosts/many-03/commands",
            serde_json::json!({"action": "republish-inventory"}),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let (status, doc) = c.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        // Routes without GET (removing a silence) are the alerts tests'.
        .filter(|(_, item)| item.get("get").is_some())
        .map(|(p, _)| p.clone())
        .collect();
    assert!(paths.len() >= 9, "{paths:?}");
    for path in paths {
        let path = path
            .replace("{id}", "many-03")
            .replace("{cmd}", &sent["id"].to_string());
        if path == "/api/events" {
            continue; // A stream: covered by the status-events test.
        }
        let (status, kind, body) = c.get_bytes(&path).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        if kind.starts_with("application/json") {
            let _: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
        } else {
            assert!(
                kind.starts_with("text/") || kind.starts_with("image/"),
                "{path}: {kind}"
            );
        }
    }
    drop(agents);
}

/// Debian's `prometheus` package: `bash .ci/test` installs it.
const PROMTOOL: &str = "/usr/bin/promtool";

/// `promtool check metrics` on a `/metrics` page: its format and Prometheus' naming rules
/// (units, `_total` on counters, no lint problem at all); `Err` with promtool's words.
fn promtool_check_metrics(text: &str) -> Result<(), String> {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Debian's prometheus package (bash .ci/test does)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("promtool reads the page");
    let out = child.wait_with_output().expect("promtool ends");
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "promtool check metrics failed ({}):\n{}{}\n--- the page:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A page with every family a host can have, some rare on a test machine (throttling flags,
/// Wi-Fi, probes, watched processes, label values to escape), an offline host and an inventory.
#[test]
fn promtool_passes_a_page_with_every_family() {
    use ember_collector::store::{Store, StoreConfig};
    use ember_wire::{Envelope, HostId, HostInfo, Message, Sample, MAX_ENCODED_LEN};
    let c = ember_collector::config::RawConfig::default()
        .validate()
        .unwrap();
    let mut store = Store::new(StoreConfig::from_config(&c));
    let send = |store: &mut Store, host: &str, kind: &str, m: Message, now_ms: u64| {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let p = Envelope::new(HostId::new(host).unwrap(), m)
            .encode(&mut buf)
            .unwrap()
            .to_vec();
        store
            .ingest(&format!("ember/v1/{host}/{kind}"), &p, now_ms)
            .unwrap();
    };
    let t = 1_700_000_000_000;
    let mut s = Sample {
        seq: 1,
        timestamp_ms: t,
        uptime_s: 100,
        throttled: Some(0x5_0005),
        dropped: 2,
        ..Sample::default()
    };
    s.cpu.cores.extend([100, 200]);
    s.filesystems
        .push(ember_wire::Filesystem {
            mount: "/mnt/a \"b\"\\c".into(),
            total: 10,
            used: 4,
        })
        .unwrap();
    s.disks
        .push(ember_wire::DiskIo {
            device: "mmcblk0".into(),
            read_bps: 5,
            write_bps: 6,
        })
        .unwrap();
    s.networks
        .push(ember_wire::NetIo {
            interface: "wlan0".into(),
            rx_bps: 1,
            tx_bps: 2,
            rx_errors: 1,
            tx_errors: 0,
            wifi: Some(ember_wire::Wifi {
                signal_dbm: -60,
                quality: 70,
            }),
        })
        .unwrap();
    s.temperatures
        .push(ember_wire::Temperature {
            sensor: "cpu_thermal".into(),
            millicelsius: 45_000,
        })
        .unwrap();
    s.probes
        .push(ember_wire::Probe {
            target: "192.168.1.1".into(),
            rtt_us: Some(1500),
            loss: 0,
        })
        .unwrap();
    s.watched
        .push(ember_wire::Watched {
            name: "sshd".into(),
            instances: 1,
        })
        .unwrap();
    send(&mut store, "pi", "sample", Message::Sample(s.clone()), t);
    s.seq = 2;
    s.timestamp_ms += 1000;
    send(
        &mut store,
        "pi",
        "sample",
        Message::Sample(s.clone()),
        t + 1000,
    );
    let info = HostInfo {
        board: "Raspberry Pi 5 \"x\"".into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.6.51+rpt-rpi-2712".into(),
        agent_version: "0.1.0".into(),
        ..HostInfo::default()
    };
    send(&mut store, "pi", "info", Message::HostInfo(info), t + 1000);
    // Long silent: offline, its values left out.
    send(
        &mut store,
        "old",
        "sample",
        Message::Sample(s),
        t - 86_400_000,
    );
    let text = ember_collector::prom::render(
        &store,
        &ember_collector::persist::PersistStatus::default(),
        ember_collector::prom::Extra::default(),
        t + 1500,
    );
    for family in [
        "ember_throttle_occurred{",
        "ember_wifi_signal_dbm{",
        "ember_probe_rtt_seconds{",
        "ember_network_receive_bytes_total{",
        "ember_filesystem_free_bytes{",
        "ember_host_info{",
        "ember_host_up{host=\"old\"} 0",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    promtool_check_metrics(&text).unwrap();
}

#[test]
fn promtool_check_finds_what_prometheus_would_object_to() {
    let counter = "# HELP x_seconds_total T\n# TYPE x_seconds_total counter\nx_seconds_total 1\n";
    promtool_check_metrics(counter).unwrap();
    // A counter without `_total`, and a page that is not Prometheus text.
    let bad = "# HELP x_seconds T\n# TYPE x_seconds counter\nx_seconds 1\n";
    let e = promtool_check_metrics(bad).unwrap_err();
    assert!(e.contains("_total"), "{e}");
    assert!(promtool_check_metrics("x{ 1\n").is_err());
}
