//! Agent footprint beside its peers, in the same run, at the same 1 s interval: the release
//! `ember-agent` (publishing to a local Mosquitto), Debian's `collectd` (cpu, memory, df, disk,
//! interface, load; written to CSV files) and Debian's `prometheus-node-exporter` (its default
//! collectors, scraped once a second by this benchmark, since it only works when scraped).
//! RSS and CPU from `/proc/<pid>`; binary sizes from the files.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs::{self, CpuWindow, Proc};
use crate::Args;

const COLLECTD_PLUGINS: [&str; 7] = ["cpu", "memory", "df", "disk", "interface", "load", "csv"];

fn package(name: &str) -> Option<(String, u64)> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version} ${Installed-Size}", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    Some((it.next()?.to_string(), it.next()?.parse().ok()?))
}

struct Peer {
    name: &'static str,
    proc: Proc,
    binary: u64,
    package: Option<(String, u64)>,
    note: &'static str,
}

fn start_collectd(bin: &Path, dir: &Path, log: &Path) -> anyhow::Result<(Proc, u64)> {
    let plugins = Path::new("/usr/lib/collectd");
    let csv = dir.join("csv");
    std::fs::create_dir_all(&csv)?;
    let mut conf = format!(
        "Interval 1\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\nPluginDir \"{p}\"\n\
         TypesDB \"/usr/share/collectd/types.db\"\n",
        d = dir.display(),
        p = plugins.display()
    );
    for p in COLLECTD_PLUGINS {
        conf.push_str(&format!("LoadPlugin {p}\n"));
    }
    conf.push_str(&format!(
        "<Plugin csv>\n  DataDir \"{}\"\n  StoreRates true\n</Plugin>\n",
        csv.display()
    ));
    let file = dir.join("collectd.conf");
    std::fs::write(&file, conf)?;
    let mut cmd = procs::command(bin);
    cmd.arg("-f").arg("-C").arg(&file);
    let proc = procs::spawn_logged(cmd, "collectd", log)?;
    let size = procs::file_size(bin)
        + COLLECTD_PLUGINS
            .iter()
            .map(|p| procs::file_size(&plugins.join(format!("{p}.so"))))
            .sum::<u64>();
    Ok((proc, size))
}

pub fn run(args: &Args) -> anyhow::Result<Value> {
    let secs: u64 = args.get("secs", 60)?;
    let every = Duration::from_secs(args.get("every", 5u64)?);
    let bin_dir = args.path("bin-dir", "target/bench/release");
    let out = args.path("out", "target/bench/results");
    let mosquitto = args.path("mosquitto", "/usr/sbin/mosquitto");
    let collectd = args.path("collectd", "/usr/sbin/collectd");
    let node_exporter = args.path("node-exporter", "/usr/bin/prometheus-node-exporter");
    let name = args.str("name", "footprint");
    let dir = procs::scratch(&name)?;
    let log = |what: &str| out.join(format!("{name}-{what}.log"));

    // A broker for the agent to publish to.
    let port = procs::free_port()?;
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )?;
    let mut cmd = procs::command(&mosquitto);
    cmd.arg("-c").arg(dir.join("mosquitto.conf"));
    let _broker = procs::spawn_logged(cmd, "mosquitto", &log("mosquitto"))?;
    let broker = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    procs::wait_port(broker, Duration::from_secs(10))?;

    let mut peers = Vec::new();
    let agent_bin = bin_dir.join("ember-agent");
    let mut cmd = procs::command(&agent_bin);
    cmd.args([
        "--broker",
        &broker.to_string(),
        "--host-id",
        "bench",
        "--interval",
        "1s",
    ])
    .env("EMBER_LOG", "warn");
    peers.push(Peer {
        name: "ember-agent",
        proc: procs::spawn_logged(cmd, "ember-agent", &log("agent"))?,
        binary: procs::file_size(&agent_bin),
        package: None,
        note: "release build, stripped; samples CPU, memory, disks, network, temperatures, top processes and publishes over MQTT",
    });
    let mut missing = Vec::new();
    if collectd.exists() {
        let (proc, size) = start_collectd(&collectd, &dir, &log("collectd"))?;
        peers.push(Peer {
            name: "collectd",
            proc,
            binary: size,
            package: package("collectd-core"),
            note: "binary + the 7 plugins loaded (cpu, memory, df, disk, interface, load, csv)",
        });
    } else {
        missing.push(format!("{} not installed", collectd.display()));
    }
    let scrapes = Arc::new(AtomicU64::new(0));
    let scrape_bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut scraper = None;
    if node_exporter.exists() {
        let port = procs::free_port()?;
        let mut cmd = procs::command(&node_exporter);
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let proc = procs::spawn_logged(cmd, "prometheus-node-exporter", &log("node-exporter"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        procs::wait_port(addr, Duration::from_secs(10))?;
        let (n, b, s) = (scrapes.clone(), scrape_bytes.clone(), stop.clone());
        scraper = Some(std::thread::spawn(move || {
            let agent = procs::http_agent(Duration::from_secs(5));
            let url = format!("http://{addr}/metrics");
            let start = Instant::now();
            let mut k = 0u32;
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut r) = agent.get(&url).call() {
                    if let Ok(body) = r.body_mut().with_config().limit(1 << 26).read_to_string() {
                        n.fetch_add(1, Ordering::Relaxed);
                        b.fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                }
                k += 1;
                let next = start + Duration::from_secs(u64::from(k));
                if let Some(w) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
            }
        }));
        peers.push(Peer {
            name: "prometheus-node-exporter",
            proc,
            binary: procs::file_size(&node_exporter),
            package: package("prometheus-node-exporter"),
            note: "Go binary; default collectors; scraped once a second (it samples only when scraped)",
        });
    } else {
        missing.push(format!("{} not installed", node_exporter.display()));
    }

    // Settle, then measure side by side.
    std::thread::sleep(Duration::from_secs(3));
    let windows: Vec<CpuWindow> = peers
        .iter()
        .map(|p| CpuWindow::start(p.proc.pid()))
        .collect();
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); peers.len()];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(every.min(Duration::from_secs(secs).saturating_sub(start.elapsed())));
        for (i, p) in peers.iter_mut().enumerate() {
            p.proc.check_running()?;
            rss[i].push(procs::rss_kib(p.proc.pid()).unwrap_or(0));
        }
    }
    let measured_s = start.elapsed().as_secs_f64();
    let rows: Vec<Value> = peers
        .iter()
        .zip(&windows)
        .zip(&rss)
        .map(|((p, w), r)| {
            json!({
                "name": p.name,
                "cpu_percent": w.percent(),
                "rss_kib_max": r.iter().max(),
                "rss_kib_min": r.iter().min(),
                "rss_kib_mean": r.iter().sum::<u64>() as f64 / r.len().max(1) as f64,
                "binary_bytes": p.binary,
                "package": p.package.as_ref().map(|(v, kib)| json!({"version": v, "installed_kib": kib})),
                "note": p.note,
            })
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = scraper {
        let _ = s.join();
    }
    let n = scrapes.load(Ordering::Relaxed);
    drop(peers);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "secs": measured_s,
        "interval_s": 1,
        "rows": rows,
        "node_exporter_scrapes": n,
        "node_exporter_bytes_per_scrape": scrape_bytes.load(Ordering::Relaxed) as f64 / n.max(1) as f64,
        "missing": missing,
    }))
}
