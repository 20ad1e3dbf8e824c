//! Ingest benchmark: prints figures, asserts nothing.
//!
//! ```sh
//! cargo bench -p ember-collector --bench ingest               # store + end-to-end figures
//! cargo bench -p ember-collector --bench ingest -- --long 600 # + a 10-minute bounded-memory run
//! ```
//!
//! 1. Store: samples per second through `Store::ingest` (decode, validate, delta-encode, fold
//!    into the tiers), bytes per stored raw sample, and one host's memory once every ring is full
//!    (1 h raw at 1 s, 24 h at 1 min, 30 days at 15 min).
//!    Then the same samples through the store and the MQTT bridge as the ingest thread runs it
//!    (JSON state and Home Assistant discovery on, as by default; no broker).
//! 2. End to end: MQTT publishers → embedded rumqttd → ingest → store, with the write-ahead log
//!    on: throughput, publish-to-store latency, and the process's memory per host.
//! 3. `--long SECS`: sustained load whose sample times jump 15 minutes each, so that every ring
//!    and tier rolls over; the process's memory is printed every 10 s and must level off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_collector::config::RawConfig;
use ember_collector::store::{Event, StoreConfig};
use ember_collector::{Config, Store};
use ember_wire::HostId;

mod common;
use common::{rss_kib, Synth};

fn store_figures() {
    let config = RawConfig::default().validate().unwrap();
    let sc = StoreConfig::from_config(&config);

    // Throughput and bytes per sample: 50 hosts, an hour each at 1 s.
    let hosts: Vec<HostId> = (0..50)
        .map(|i| HostId::new(&format!("bench-{i}")).unwrap())
        .collect();
    let mut synth: Vec<Synth> = (0..hosts.len()).map(|i| Synth::new(i as u64 + 7)).collect();
    let t0 = 1_700_000_000_000u64;
    let mut payloads = Vec::with_capacity(hosts.len() * 3600);
    for step in 0..3600u64 {
        for (i, h) in hosts.iter().enumerate() {
            let topic = format!("ember/v1/{h}/sample");
            payloads.push((topic, synth[i].next(h, t0 + step * 1000), t0 + step * 1000));
        }
    }
    let wire: usize = payloads.iter().map(|p| p.1.len()).sum();
    let mut store = Store::new(sc.clone());
    let start = Instant::now();
    for (topic, payload, now) in &payloads {
        store.ingest(topic, payload, *now).expect("valid");
        // What the ingest thread does with them.
        store.drain_events();
    }
    let took = start.elapsed();
    let m = store.memory();
    println!(
        "store: {} samples from {} hosts in {took:.2?}: {:.0} samples/s",
        payloads.len(),
        hosts.len(),
        payloads.len() as f64 / took.as_secs_f64()
    );
    println!(
        "store: postcard sample {:.1} B; raw ring {:.1} B per stored sample ({} samples, {} KiB)",
        wire as f64 / payloads.len() as f64,
        m.bytes_per_sample(),
        m.raw_samples,
        m.raw_bytes / 1024
    );

    // The same with the bridge turning each sample event into its publications, as ingest
    // does with the bridge on (the default).
    let mut store = Store::new(sc.clone());
    store.set_sample_events(true);
    let mut bridge = ember_collector::bridge::Bridge::new(config.bridge.clone());
    let mut published = 0usize;
    let start = Instant::now();
    for (topic, payload, now) in &payloads {
        store.ingest(topic, payload, *now).expect("valid");
        for e in store.drain_events() {
            published += bridge.on_event(&e, &store, *now).len();
        }
    }
    let took = start.elapsed();
    println!(
        "store + bridge: {} samples in {took:.2?}: {:.0} samples/s ({published} publications)",
        payloads.len(),
        payloads.len() as f64 / took.as_secs_f64()
    );

    // One host with every ring full: 30 days at one sample per 10 s.
    let host = HostId::new("full").unwrap();
    let mut s = Synth::new(99);
    let mut store = Store::new(sc);
    let topic = "ember/v1/full/sample";
    let start = Instant::now();
    let n = 30 * 24 * 360u64;
    for i in 0..n {
        let ts = t0 + i * 10_000;
        store.ingest(topic, &s.next(&host, ts), ts).expect("valid");
        store.drain_events();
    }
    let m = store.memory();
    println!(
        "store: one host, 30 days at 10 s ({n} samples, {:.2?}): {} raw samples {} KiB, {} tier buckets {} KiB, total {} KiB per host",
        start.elapsed(),
        m.raw_samples,
        m.raw_bytes / 1024,
        m.tier_buckets,
        m.tier_bytes / 1024,
        m.total_bytes() / 1024
    );
}

struct Running {
    collector: ember_collector::Collector,
    stop: tokio::sync::watch::Sender<bool>,
    dir: std::path::PathBuf,
}

async fn collector(name: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("ember-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::ephemeral(dir.clone());
    config.bridge.state_every = Duration::from_secs(5);
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let collector = ember_collector::start(config, async move {
        let _ = rx.wait_for(|s| *s).await;
    })
    .await
    .expect("collector starts");
    Running {
        collector,
        stop,
        dir,
    }
}

/// Publishes `per_host` samples for each of `hosts` hosts as fast as the broker takes them, with
/// sample times `step_ms` apart (0: now). Returns when every publish is handed to rumqttc.
async fn publishers(
    port: u16,
    hosts: usize,
    per_host: u64,
    step_ms: u64,
    pace: Option<Duration>,
    running: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for i in 0..hosts {
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let id = HostId::new(&format!("load-{i}")).unwrap();
            let mut o = rumqttc::MqttOptions::new(format!("load-{i}"), "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(30));
            let (client, mut events) = rumqttc::AsyncClient::new(o, 100);
            let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
            let mut synth = Synth::new(i as u64 + 1);
            let topic = format!("ember/v1/{id}/sample");
            let t0 = ember_collector::now_ms();
            for k in 0..per_host {
                if !running.load(Ordering::Relaxed) {
                    break;
                }
                let ts = if step_ms == 0 {
                    ember_collector::now_ms()
                } else {
                    t0 + k * step_ms
                };
                let p = synth.next(&id, ts);
                if client
                    .publish(&topic, rumqttc::QoS::AtLeastOnce, false, p)
                    .await
                    .is_err()
                {
                    break;
                }
                if let Some(pace) = pace {
                    tokio::time::sleep(pace).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            pump.abort();
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn end_to_end() {
    let c = collector("e2e").await;
    let rss0 = rss_kib();
    let hosts = 50;
    let per_host = 400u64;
    let total = hosts as u64 * per_host;
    let mut events = c.collector.events.subscribe();
    let latencies = tokio::spawn(async move {
        let mut l = Vec::new();
        while let Ok(e) = events.recv().await {
            if let Event::Sample { sample, .. } = e {
                l.push(ember_collector::now_ms().saturating_sub(sample.timestamp_ms));
            }
            if l.len() as u64 >= total {
                break;
            }
        }
        l
    });
    let start = Instant::now();
    let port = c.collector.mqtt_addr.port();
    tokio::spawn(publishers(
        port,
        hosts,
        per_host,
        0,
        None,
        Arc::new(AtomicBool::new(true)),
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = c.collector.store.read().unwrap().stats().samples;
        if n >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let stored = c.collector.store.read().unwrap().stats().samples;
    let mut l = tokio::time::timeout(Duration::from_secs(5), latencies)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "end to end: {stored}/{total} samples from {hosts} MQTT publishers in {took:.2?}: {:.0} samples/s; saturated publish-to-store latency p50 {} ms, p99 {} ms, max {} ms",
        stored as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        l.last().copied().unwrap_or(0)
    );
    // Latency at a steady 1000 samples/s (50 hosts at 20 Hz) rather than under saturation.
    let mut events = c.collector.events.subscribe();
    let steady = 50 * 100u64;
    let latencies = tokio::spawn(async move {
        let mut l = Vec::new();
        while let Ok(e) = events.recv().await {
            if let Event::Sample { sample, .. } = e {
                l.push(ember_collector::now_ms().saturating_sub(sample.timestamp_ms));
            }
            if l.len() as u64 >= steady {
                break;
            }
        }
        l
    });
    publishers(
        port,
        50,
        100,
        0,
        Some(Duration::from_millis(50)),
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let mut l = tokio::time::timeout(Duration::from_secs(10), latencies)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "end to end: steady 1000 samples/s ({} received): publish-to-store latency p50 {} ms, p99 {} ms, max {} ms",
        l.len(),
        pct(0.5),
        pct(0.99),
        l.last().copied().unwrap_or(0)
    );
    let m = c.collector.store.read().unwrap().memory();
    let rss = rss_kib();
    println!(
        "end to end: process RSS {} MiB ({} KiB more than before the load, {} KiB per host); history {} KiB ({} B per stored sample)",
        rss / 1024,
        rss.saturating_sub(rss0),
        rss.saturating_sub(rss0) / hosts as u64,
        m.total_bytes() / 1024,
        m.bytes_per_sample() as u64
    );
    let _ = c.stop.send(true);
    let _ = std::fs::remove_dir_all(&c.dir);
}

async fn long_run(secs: u64) {
    let c = collector("long").await;
    let hosts = 50;
    let running = Arc::new(AtomicBool::new(true));
    let port = c.collector.mqtt_addr.port();
    // Sample times 15 minutes apart: every raw ring and tier rolls over within minutes.
    let load = tokio::spawn(publishers(
        port,
        hosts,
        u64::MAX,
        15 * 60_000,
        None,
        running.clone(),
    ));
    let start = Instant::now();
    println!("long run: {hosts} hosts publishing as fast as they can for {secs} s");
    println!(
        "{:>6} {:>10} {:>10} {:>12} {:>12}",
        "t (s)", "samples", "rate/s", "history KiB", "RSS MiB"
    );
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (n, m) = {
            let s = c.collector.store.read().unwrap();
            (s.stats().samples, s.memory())
        };
        println!(
            "{:>6} {:>10} {:>10} {:>12} {:>12}",
            start.elapsed().as_secs(),
            n,
            (n - last) / 10,
            m.total_bytes() / 1024,
            rss_kib() / 1024
        );
        last = n;
    }
    running.store(false, Ordering::Relaxed);
    let _ = load.await;
    let _ = c.stop.send(true);
    let _ = std::fs::remove_dir_all(&c.dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let long = args
        .iter()
        .position(|a| a == "--long")
        .and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    store_figures();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(end_to_end());
    if let Some(secs) = long {
        rt.block_on(long_run(secs));
    }
}
