//! History: what a stored sample costs in each tier, and the API on a full history.
//!
//! 1. Bytes per stored sample, tier by tier: one host's samples folded into a store holding only
//!    that tier (the collector's default tiers), counted by the store's own accounting.
//! 2. `--hosts` hosts with 30 days each (the last hour at 1 s into the raw ring, the last day at
//!    1 min, the rest at 15 min, so that every ring and tier is full) are written as a snapshot
//!    by the collector's own persister; the release collector recovers them from that directory,
//!    and the API is timed on it: a 30-day range (`auto` picks the 15-minute tier) for one series
//!    and for every series, and `/api/hosts`.

use std::time::{Duration, Instant};

use anyhow::Context;
use ember_agent::simulate::Synth;
use ember_collector::config::Tier;
use ember_collector::persist::{DirDisk, Persister};
use ember_collector::store::StoreConfig;
use ember_collector::{Config, Store};
use ember_wire::{Envelope, HostId, Message, Status, MAX_ENCODED_LEN};
use serde_json::{json, Value};

use crate::procs;
use crate::Args;

const DAY: u64 = 86_400_000;

/// Sample times (ms) for a full 30-day history ending at `now`.
fn schedule(now: u64, days: u64) -> Vec<u64> {
    let mut t = Vec::new();
    let start = now - days * DAY;
    let day_ago = now - DAY;
    let hour_ago = now - 3_600_000;
    let mut x = start;
    while x < day_ago {
        t.push(x);
        x += 15 * 60_000;
    }
    while x < hour_ago {
        t.push(x);
        x += 60_000;
    }
    while x <= now {
        t.push(x);
        x += 1000;
    }
    t
}

fn encode(host: &HostId, message: Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    Envelope::new(host.clone(), message)
        .encode(&mut buf)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// Feeds one host's history into `store`.
fn fill(store: &mut Store, i: usize, times: &[u64]) -> anyhow::Result<u64> {
    let host = HostId::new(&format!("hist-{i:05}"))?;
    let mut synth = Synth::new(i as u64 + 1, 0, Duration::from_secs(1));
    let t0 = times.first().copied().unwrap_or(0);
    let topic = |k: ember_wire::topic::Kind| ember_wire::topic::topic(&host, k);
    let status = encode(&host, Message::Status(Status::Online { interval_ms: 1000 }));
    let _ = store.ingest(&topic(ember_wire::topic::Kind::Status), &status, t0);
    let info = encode(&host, Message::HostInfo(synth.info(&host)));
    let _ = store.ingest(&topic(ember_wire::topic::Kind::Info), &info, t0);
    let sample_topic = topic(ember_wire::topic::Kind::Sample);
    let mut n = 0;
    for &t in times {
        let mut s = synth.sample();
        s.timestamp_ms = t;
        let payload = encode(&host, Message::Sample(s));
        store
            .ingest(&sample_topic, &payload, t)
            .map_err(|e| anyhow::anyhow!("sample refused: {e:?}"))?;
        n += 1;
    }
    Ok(n)
}

fn tiers_figures(base: &StoreConfig) -> anyhow::Result<Value> {
    let now = ember_collector::now_ms();
    let mut rows = Vec::new();
    // Raw: a full ring of one-second samples.
    {
        let mut c = base.clone();
        c.tiers.clear();
        let mut store = Store::new(c);
        let times: Vec<u64> = (0..base.raw_samples as u64)
            .map(|k| now - (base.raw_samples as u64 - k) * 1000)
            .collect();
        fill(&mut store, 0, &times)?;
        let m = store.memory();
        rows.push(json!({
            "tier": "raw",
            "resolution_s": 1,
            "kept": format!("{} samples", base.raw_samples),
            "entries": m.raw_samples,
            "bytes": m.raw_bytes,
            "bytes_per_entry": m.raw_bytes as f64 / m.raw_samples.max(1) as f64,
            "bytes_per_1hz_sample": m.raw_bytes as f64 / m.raw_samples.max(1) as f64,
        }));
    }
    for tier in &base.tiers {
        let mut c = base.clone();
        c.raw_samples = 1;
        c.tiers = vec![*tier];
        let mut store = Store::new(c);
        let res = tier.resolution.as_millis() as u64;
        // A bucket holds min/avg/max whatever the number of samples in it: four samples per
        // bucket fill every bucket of the tier's retention.
        let span = tier.retention.as_millis() as u64 + res;
        let step = (res / 4).max(1000);
        let times: Vec<u64> = (0..span / step).map(|k| now - span + k * step).collect();
        fill(&mut store, 0, &times)?;
        let m = store.memory();
        let per_bucket = m.tier_bytes as f64 / m.tier_buckets.max(1) as f64;
        rows.push(json!({
            "tier": Tier::spec(tier),
            "resolution_s": res / 1000,
            "kept": humantime::format_duration(tier.retention).to_string(),
            "entries": m.tier_buckets,
            "bytes": m.tier_bytes,
            "bytes_per_entry": per_bucket,
            "bytes_per_1hz_sample": per_bucket / (res as f64 / 1000.0),
        }));
    }
    Ok(json!(rows))
}

pub fn run(args: &Args) -> anyhow::Result<Value> {
    let hosts: usize = args.get("hosts", 1000)?;
    let days: u64 = args.get("days", 30)?;
    let queries: usize = args.get("queries", 200)?;
    let bin_dir = args.path("bin-dir", "target/bench/release");
    let out = args.path("out", "target/bench/results");
    let name = args.str("name", "history");
    let dir = procs::scratch(&name)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;

    let config = Config::ephemeral(data.clone());
    let store_config = StoreConfig::from_config(&config);
    let tiers = tiers_figures(&store_config)?;

    // Fill, and write the snapshot with the collector's own persister.
    let now = ember_collector::now_ms();
    let times = schedule(now, days);
    let disk = Box::new(DirDisk::new(data.clone()));
    let (mut persister, mut store) = Persister::open(disk, store_config.clone());
    let fill_start = Instant::now();
    let mut samples = 0u64;
    for i in 0..hosts {
        samples += fill(&mut store, i, &times)?;
    }
    let fill_s = fill_start.elapsed().as_secs_f64();
    let memory = store.memory();
    let snap_start = Instant::now();
    persister.snapshot(&store);
    persister.wait();
    persister.sync();
    let snapshot_s = snap_start.elapsed().as_secs_f64();
    drop(persister);
    drop(store);
    let snapshot_bytes = procs::dir_size(&data);

    // The release collector recovers it; then the API is timed.
    let log = out.join(format!("{name}-collector.log"));
    let start = Instant::now();
    let c = procs::start_collector(&bin_dir, &data, "", &log)?;
    let api = procs::http_agent(Duration::from_secs(120));
    let health = loop {
        if let Ok(h) = procs::get_json(&api, &format!("http://{}/api/health", c.http)) {
            if h["hosts"].as_u64() == Some(hosts as u64) {
                break h;
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "recovery took over 5 min"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let recovery_s = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let rss = procs::rss_kib(c.proc.pid()).context("collector RSS")?;

    let timed = |what: &str, url_of: &dyn Fn(usize) -> String| -> anyhow::Result<Value> {
        let mut ms = Vec::new();
        let mut bytes = 0usize;
        let mut points = 0usize;
        let mut resolution = String::new();
        for q in 0..queries {
            let i = q * 7919 % hosts;
            let url = url_of(i);
            let t = Instant::now();
            let mut r = api.get(&url).call().with_context(|| format!("GET {url}"))?;
            let body = r.body_mut().with_config().limit(1 << 30).read_to_string()?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(r.status() == 200, "GET {url}: {}", r.status());
            bytes += body.len();
            let v: Value = serde_json::from_str(&body)?;
            if let Some(series) = v["series"].as_array() {
                points += series
                    .iter()
                    .map(|s| s["points"].as_array().map_or(0, |p| p.len()))
                    .sum::<usize>();
                resolution = v["resolution"].as_str().unwrap_or("").to_string();
            }
        }
        let mut v = procs::percentiles(&mut ms);
        v["what"] = json!(what);
        v["bytes"] = json!(bytes / queries.max(1));
        v["points"] = json!(points / queries.max(1));
        v["resolution"] = json!(resolution);
        Ok(v)
    };
    let http = c.http;
    let to = ember_collector::now_ms();
    let from = to - days * DAY;
    let one = timed("30 days, one series (`series=cpu.busy`)", &|i| {
        format!("http://{http}/api/hosts/hist-{i:05}/history?from={from}&to={to}&series=cpu.busy")
    })?;
    let all = timed("30 days, every series", &|i| {
        format!("http://{http}/api/hosts/hist-{i:05}/history?from={from}&to={to}")
    })?;
    let day = timed("24 hours, every series", &|i| {
        format!(
            "http://{http}/api/hosts/hist-{i:05}/history?from={}&to={to}",
            to - DAY
        )
    })?;
    let list_queries = queries.min(20);
    let mut ms = Vec::new();
    let mut list_bytes = 0;
    for _ in 0..list_queries {
        let t = Instant::now();
        let mut r = api.get(&format!("http://{http}/api/hosts")).call()?;
        list_bytes = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()?
            .len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut list = procs::percentiles(&mut ms);
    list["what"] = json!(format!("`/api/hosts` ({hosts} hosts)"));
    list["bytes"] = json!(list_bytes);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "tiers": tiers,
        "hosts": hosts,
        "days": days,
        "samples_per_host": times.len(),
        "samples": samples,
        "fill_s": fill_s,
        "memory": {
            "raw_samples": memory.raw_samples,
            "raw_bytes": memory.raw_bytes,
            "tier_buckets": memory.tier_buckets,
            "tier_bytes": memory.tier_bytes,
        },
        "snapshot_s": snapshot_s,
        "snapshot_bytes": snapshot_bytes,
        "recovery_s": recovery_s,
        "collector_rss_kib": rss,
        "health": health["memory"].clone(),
        "queries": queries,
        "api": [one, all, day, list],
    }))
}
