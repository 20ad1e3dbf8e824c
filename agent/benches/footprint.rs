//! The agent's footprint: RSS, CPU share and allocations per cycle.
//!
//! `cargo bench -p ember-agent --bench footprint` builds the release agent and collector, runs the
//! collector on free loopback ports and the agent against it at a 1 s interval for
//! `EMBER_BENCH_SECS` seconds (default 60), and reads the agent's `/proc/<pid>/status` and
//! `/proc/<pid>/stat` every `EMBER_BENCH_EVERY` seconds (default 10). It prints RSS over time
//! (so a trend shows), the CPU share of one core, and the allocations per sampling cycle
//! counted in-process by a counting allocator. Targets (issue #3): RSS ≤ 5 MiB, ≤ 0.2 % of a
//! core, flat over an hour.

#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_agent::outbox::Outbox;
use ember_agent::{AgentConfig, Sampler};
use ember_wire::{Envelope, Message, MAX_ENCODED_LEN};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn target_dir() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"))
}

/// RSS in KiB and CPU ticks (user + system) of a process.
fn footprint(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn allocations_per_cycle() -> f64 {
    let mut config = AgentConfig::new("127.0.0.1:1883", Some("bench"), "1s", None).unwrap();
    // Every cycle walks the process table, the most expensive part.
    config.process_interval = Duration::from_secs(1);
    let mut sampler = Sampler::new(&config).unwrap();
    let mut outbox = Outbox::new(config.buffer);
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut cycle = || {
        let sample = sampler.sample_over(Duration::from_secs(1));
        let seq = sample.seq;
        let bytes = Envelope::new(config.host_id.clone(), Message::Sample(sample))
            .encode(&mut buf)
            .unwrap();
        outbox.push(seq, bytes);
    };
    for _ in 0..3 {
        cycle();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let n = 100;
    for _ in 0..n {
        cycle();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn main() {
    let secs = env_secs("EMBER_BENCH_SECS", 60);
    let every = env_secs("EMBER_BENCH_EVERY", 10).max(1);
    println!(
        "allocations per sampling cycle (sample → encode → outbox): {}",
        allocations_per_cycle()
    );

    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "ember-agent",
            "-p",
            "ember-collector",
        ])
        .status()
        .expect("cargo build");
    assert!(status.success(), "release build failed");
    let bin = target_dir().join("release");
    let data = std::env::temp_dir().join(format!("ember-bench-{}", std::process::id()));
    let mut collector = Command::new(bin.join("ember-collector"))
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        // The collector refuses EMBER_* variables it does not know: these are the benchmark's.
        .env_remove("EMBER_BENCH_SECS")
        .env_remove("EMBER_BENCH_EVERY")
        .stdout(Stdio::piped())
        .spawn()
        .expect("collector starts");
    let mqtt = BufReader::new(collector.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("MQTT:").map(|a| a.trim().to_string()))
        .expect("collector prints its MQTT address");
    let _collector = Kill(collector);
    let agent = Command::new(bin.join("ember-agent"))
        .args(["--broker", &mqtt, "--host-id", "bench", "--interval", "1s"])
        .env("EMBER_LOG", "warn")
        // The agent refuses EMBER_* variables it does not know: these are the benchmark's.
        .env_remove("EMBER_BENCH_SECS")
        .env_remove("EMBER_BENCH_EVERY")
        .spawn()
        .expect("agent starts");
    let pid = agent.id();
    let _agent = Kill(agent);
    let size = std::fs::metadata(bin.join("ember-agent"))
        .map(|m| m.len())
        .unwrap_or(0);

    // Let it connect and settle, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let ticks_per_s = rustix::param::clock_ticks_per_second() as f64;
    let (rss0, ticks0) = footprint(pid).expect("agent running");
    let start = Instant::now();
    println!(
        "agent binary: {:.2} MiB (release, stripped)",
        size as f64 / 1048576.0
    );
    println!("{:>8} {:>10} {:>10}", "t (s)", "RSS (KiB)", "CPU %");
    println!("{:>8} {:>10} {:>10}", 0, rss0, "-");
    let (mut rss_min, mut rss_max) = (rss0, rss0);
    let (mut last_t, mut last_ticks) = (0.0, ticks0);
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(every.min(secs)));
        let (rss, ticks) = footprint(pid).expect("agent still running");
        let t = start.elapsed().as_secs_f64();
        let cpu = (ticks - last_ticks) as f64 / ticks_per_s / (t - last_t) * 100.0;
        println!("{:>8.0} {:>10} {:>10.3}", t, rss, cpu);
        rss_min = rss_min.min(rss);
        rss_max = rss_max.max(rss);
        (last_t, last_ticks) = (t, ticks);
    }
    let (_, ticks) = footprint(pid).expect("agent still running");
    let t = start.elapsed().as_secs_f64();
    let share = (ticks - ticks0) as f64 / ticks_per_s / t * 100.0;
    println!(
        "over {t:.0} s at a 1 s interval: RSS {rss_min}..{rss_max} KiB ({:.2} MiB max), \
         CPU {share:.3} % of one core",
        rss_max as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&data);
}
