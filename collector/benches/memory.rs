//! The store's memory at a fleet's scale (issue #9: 10,000 agents × 300 samples, 1 Hz for
//! 5 minutes): prints figures, asserts nothing.
//!
//! ```sh
//! cargo bench -p ember-collector --bench memory                      # 2,000 hosts × 300 samples
//! cargo bench -p ember-collector --bench memory -- --hosts 10000 --samples 300
//! cargo bench -p ember-collector --bench memory -- --synth uniform   # near-incompressible
//! cargo bench -p ember-collector --bench memory -- --no-spill        # all history in memory
//! ```
//!
//! Every host first sends its status and inventory (an agent's connect), then its samples, one
//! per second, the hosts interleaved as they are on the wire, through `Store::ingest` with the
//! default history configuration. The samples are the simulated agents' (`--synth agent`, the
//! default: `ember_agent::simulate::Synth`, random walks with a daily rhythm and bursts, as the
//! load benchmark's hosts send), or with `--synth uniform` the collector benches' own
//! (`common::Synth`: values drawn uniformly at random, near-incompressible: a worst case for
//! the delta-encoded history, not what a board sends). Heap bytes are counted exactly by a counting allocator (live
//! bytes asked for); RSS is `/proc/self/status`, allocator slack included. Last, the store is
//! serialised as a snapshot and loaded back, timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ember_agent::simulate::Synth as AgentSynth;
use ember_collector::config::RawConfig;
use ember_collector::store::StoreConfig;
use ember_collector::Store;
use ember_wire::{Envelope, HostId, HostInfo, Message, Status, MAX_ENCODED_LEN};

mod common;
use common::{rss_kib, Synth};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most live at once since it was last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new_size, Relaxed) + new_size;
        PEAK.fetch_max(live, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes live and RSS bytes now.
fn now() -> (usize, usize) {
    (LIVE.load(Relaxed), rss_kib() as usize * 1024)
}

fn enc(host: &HostId, message: Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    Envelope::new(host.clone(), message)
        .encode(&mut buf)
        .expect("fits")
        .to_vec()
}

fn info(host: &HostId) -> HostInfo {
    let mut i = HostInfo {
        hostname: host.as_str().into(),
        board: "Raspberry Pi 4 Model B Rev 1.4".into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.6.51+rpt-rpi-v8".into(),
        arch: "aarch64".into(),
        cpu_model: "Cortex-A72".into(),
        cpu_cores: 4,
        memory: 4 << 30,
        agent_version: "0.1.0".into(),
        boot_time_s: 1_700_000_000,
        ..HostInfo::default()
    };
    let _ = i.disks.push(ember_wire::DiskInfo {
        name: "mmcblk0".into(),
        size: 32 << 30,
    });
    let mut eth = ember_wire::Interface {
        name: "eth0".into(),
        mac: Some([0xdc, 0xa6, 0x32, 1, 2, 3]),
        ..Default::default()
    };
    let _ = eth.ipv4.push([192, 168, 1, 20]);
    let _ = i.interfaces.push(eth);
    i
}

/// Where the samples come from (see the module's comment).
enum Synths {
    Agent(AgentSynth),
    Uniform(Synth),
}

impl Synths {
    /// The next sample, encoded; `ts` is the bench's clock (an agent's synth keeps its own,
    /// stamped the same).
    fn next(&mut self, host: &HostId, ts: u64) -> Vec<u8> {
        match self {
            Synths::Uniform(s) => s.next(host, ts),
            Synths::Agent(s) => {
                let sample = s.sample();
                debug_assert_eq!(sample.timestamp_ms, ts);
                enc(host, Message::Sample(sample))
            }
        }
    }
}

fn per(bytes: usize, n: usize) -> f64 {
    bytes as f64 / n.max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    let n_hosts = flag("--hosts", 2000);
    let n_samples = flag("--samples", 300);
    let config = RawConfig::default().validate().unwrap();
    let mut store_config = StoreConfig::from_config(&config);
    // As the collector does by default: sealed blocks in `data-dir/spill`, here a temporary
    // directory; `--no-spill` keeps them all in memory.
    let spill_dir = std::env::temp_dir().join(format!("ember-memory-bench-{}", std::process::id()));
    let spill = !args.iter().any(|a| a == "--no-spill");
    if spill {
        let s = ember_collector::spill::Spill::in_dir(&spill_dir).expect("a spill directory");
        store_config.spill = Some(std::sync::Arc::new(s));
    }
    let mut store = Store::new(store_config);
    let hosts: Vec<(HostId, String)> = (0..n_hosts)
        .map(|i| {
            let id = HostId::new(&format!("pi-{i:05}")).unwrap();
            let topic = format!("ember/v1/{id}/sample");
            (id, topic)
        })
        .collect();
    let t0 = 1_700_000_000_000u64;
    let uniform = match args
        .iter()
        .position(|a| a == "--synth")
        .map(|i| args.get(i + 1))
    {
        None => false,
        Some(Some(s)) if s == "agent" => false,
        Some(Some(s)) if s == "uniform" => true,
        Some(s) => panic!("--synth {s:?}: agent or uniform"),
    };
    let mut synth: Vec<Synths> = (0..n_hosts)
        .map(|i| {
            if uniform {
                Synths::Uniform(Synth::new(i as u64 + 7))
            } else {
                // Stamped t0, t0 + 1 s…, as the bench's clock.
                let interval = std::time::Duration::from_secs(1);
                Synths::Agent(AgentSynth::new(i as u64 + 7, t0 - 1000, interval))
            }
        })
        .collect();
    let status = |id: &HostId| enc(id, Message::Status(Status::Online { interval_ms: 1000 }));

    let empty = now();
    for (id, _) in &hosts {
        store
            .ingest(&format!("ember/v1/{id}/status"), &status(id), t0)
            .expect("valid");
        store
            .ingest(
                &format!("ember/v1/{id}/info"),
                &enc(id, Message::HostInfo(info(id))),
                t0,
            )
            .expect("valid");
        store.drain_events();
    }
    let connected = now();
    let mut after_first = connected;
    let mut took = std::time::Duration::ZERO;
    for step in 0..n_samples as u64 {
        let ts = t0 + step * 1000;
        for (i, (id, topic)) in hosts.iter().enumerate() {
            let payload = synth[i].next(id, ts);
            let start = std::time::Instant::now();
            store.ingest(topic, &payload, ts).expect("valid");
            took += start.elapsed();
            // As the ingest thread does, a batch at a time: events are not left to pile up.
            store.drain_events();
        }
        if step == 0 {
            after_first = now();
        }
    }
    let full = now();
    let m = store.memory();
    let samples = n_hosts * n_samples;
    println!(
        "memory: {n_hosts} hosts × {n_samples} samples (default history, 1 Hz, {} synth, {}); the store counts {:.1} B per raw sample, {} KiB of tiers in memory",
        if uniform { "uniform" } else { "agent" },
        if spill { "sealed blocks spilled to disk" } else { "all in memory (--no-spill)" },
        m.bytes_per_sample(),
        m.tier_bytes / 1024
    );
    if let Some(st) = store.spill_stats() {
        println!(
            "spilled: {} MiB of raw samples, {} MiB of tiers; {} MiB on disk in {} segments",
            m.raw_spilled_bytes >> 20,
            m.tier_spilled_bytes >> 20,
            st.disk_bytes >> 20,
            st.segments
        );
    }
    println!(
        "ingest: {:.0} samples/s through Store::ingest (the samples' synthesis not counted)",
        samples as f64 / took.as_secs_f64()
    );
    println!(
        "(a Sample is {} B, a HostInfo {} B inline)",
        std::mem::size_of::<ember_wire::Sample>(),
        std::mem::size_of::<HostInfo>()
    );
    println!("{:<44} {:>12} {:>12}", "", "heap", "RSS");
    let row = |what: &str, (h, r): (usize, usize), n: usize| {
        println!("{what:<44} {:>10.0} B {:>10.0} B", per(h, n), per(r, n));
    };
    let diff = |a: (usize, usize), b: (usize, usize)| (b.0 - a.0, b.1.saturating_sub(a.1));
    row(
        "per connected host (status, inventory)",
        diff(empty, connected),
        n_hosts,
    );
    row(
        "per host, its first sample",
        diff(connected, after_first),
        n_hosts,
    );
    row(
        "per later sample",
        diff(after_first, full),
        samples - n_hosts,
    );
    row("per host, all in", diff(empty, full), n_hosts);
    let (h, r) = diff(empty, full);
    println!(
        "at 10,000 hosts × {n_samples} samples: heap {:.0} MiB, RSS {:.0} MiB (the store alone)",
        per(h, n_hosts) * 10_000.0 / 1048576.0,
        per(r, n_hosts) * 10_000.0 / 1048576.0
    );
    // What the collector's heap-trim thread gives back (`spawn_heap_trim` in lib.rs).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = rss_kib();
        let start = std::time::Instant::now();
        ember_collector::trim_heap();
        println!(
            "after malloc_trim: RSS {:.1} → {:.1} MiB (the process) in {:.1} ms",
            before as f64 / 1024.0,
            rss_kib() as f64 / 1024.0,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    // A snapshot: what ingest waits for (the image), then the serialising on its own thread, as
    // in the collector, while the next second's samples come in paced over that second; then
    // the worst case, a second's samples all at once while an image is held; then a second's
    // with no image.
    let round = |store: &mut Store, synth: &mut [Synths], step: u64, paced: bool| {
        let ts = t0 + step * 1000;
        let start = std::time::Instant::now();
        PEAK.store(LIVE.load(Relaxed), Relaxed);
        let before = LIVE.load(Relaxed);
        for (i, (id, topic)) in hosts.iter().enumerate() {
            if paced && i % 100 == 0 {
                let due = std::time::Duration::from_secs_f64(i as f64 / n_hosts as f64);
                std::thread::sleep(due.saturating_sub(start.elapsed()));
            }
            let payload = synth[i].next(id, ts);
            store.ingest(topic, &payload, ts).expect("valid");
            store.drain_events();
        }
        (start.elapsed(), PEAK.load(Relaxed).saturating_sub(before))
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mib = |b: usize| b as f64 / 1048576.0;
    let start = std::time::Instant::now();
    let image = store.image();
    let imaged = start.elapsed();
    // (With room to spare: growing a vector this size would count as a copy.)
    let capacity = (m.total_bytes() + m.raw_spilled_bytes + m.tier_spilled_bytes) * 5 / 4;
    let writer = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let bytes = image.into_bytes_after(0, capacity).expect("serialises");
        (bytes, start.elapsed())
    });
    // (The writer's buffer is allocated before the second starts, not counted as a copy.)
    std::thread::sleep(std::time::Duration::from_millis(50));
    let step = n_samples as u64;
    let (_, paced_peak) = round(&mut store, &mut synth, step, true);
    let (bytes, serialise) = writer.join().expect("the writer");
    let image = store.image();
    let (held, held_peak) = round(&mut store, &mut synth, step + 1, false);
    drop(image);
    let (free, free_peak) = round(&mut store, &mut synth, step + 2, false);
    let start = std::time::Instant::now();
    let back = Store::from_bytes(StoreConfig::from_config(&config), &bytes).expect("loads");
    let load = start.elapsed();
    println!(
        "snapshot: {} MiB; the image taken in {:.1} ms, serialised in {:.0} ms (its own thread), \
         loaded in {:.0} ms",
        bytes.len() / 1048576,
        ms(imaged),
        ms(serialise),
        ms(load)
    );
    println!(
        "  heap peak over a second's {n_hosts} samples: paced, the image written meanwhile \
         +{:.1} MiB; all at once, an image held +{:.1} MiB in {:.0} ms; no image +{:.1} MiB in \
         {:.0} ms",
        mib(paced_peak),
        mib(held_peak),
        ms(held),
        mib(free_peak),
        ms(free)
    );
    drop(back);
    drop(store);
    let _ = std::fs::remove_dir_all(&spill_dir);
}
