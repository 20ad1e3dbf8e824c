//! Simulation: many synthetic agents from one process, for load benchmarks and demos.
//!
//! Each simulated host publishes through the same [`Publisher`] as a real agent (last will,
//! retained status and inventory, store-and-forward, QoS 1), with samples from a [`Synth`]:
//! a daily CPU rhythm with noise and bursts, memory drifting, a filling disk, bursty network and
//! disk traffic, a temperature that follows the load, and now and then an outage during which the
//! host goes offline and comes back.

use std::future::Future;
use std::time::Duration;

use ember_wire::heapless::Vec;
use ember_wire::{
    Cpu, DiskIo, Envelope, Filesystem, HostId, HostInfo, Load, Memory, Message, NetIo, Process,
    Sample, Temperature, MAX_ENCODED_LEN,
};

use crate::config::AgentConfig;
use crate::publish::Publisher;
use crate::sampler::truncated;

/// A small deterministic random number generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Synthetic measurements of one host: the sans-I/O part of the simulation.
#[derive(Debug, Clone)]
pub struct Synth {
    rng: Rng,
    seq: u64,
    start_ms: u64,
    interval_ms: u64,
    base_cpu: f64,
    burst_left: u32,
    mem_used: f64,
    disk_used: f64,
    cores: usize,
}

const MEM_TOTAL: u64 = 4 << 30;
const DISK_TOTAL: u64 = 32_000_000_000;

impl Synth {
    /// A host with its own character, from `seed`; samples stamped from `start_ms` on.
    pub fn new(seed: u64, start_ms: u64, interval: Duration) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef);
        let base_cpu = 3.0 + rng.unit() * 25.0;
        let mem_used = 0.2 + rng.unit() * 0.4;
        let disk_used = 0.1 + rng.unit() * 0.6;
        let cores = [1, 2, 4, 4, 4, 8][(rng.next_u64() % 6) as usize];
        Synth {
            rng,
            seq: 0,
            start_ms,
            interval_ms: interval.as_millis().max(1) as u64,
            base_cpu,
            burst_left: 0,
            mem_used,
            disk_used,
            cores,
        }
    }

    /// The host's inventory.
    pub fn info(&self, host: &HostId) -> HostInfo {
        HostInfo {
            hostname: truncated(host.as_str()),
            board: truncated("Simulated Raspberry Pi 4 Model B"),
            os: truncated("Debian GNU/Linux 12 (bookworm)"),
            kernel: truncated("6.6.51+rpt-rpi-v8"),
            arch: truncated("aarch64"),
            cpu_model: truncated("Cortex-A72"),
            cpu_cores: self.cores as u16,
            memory: MEM_TOTAL,
            agent_version: truncated(env!("CARGO_PKG_VERSION")),
            ..HostInfo::default()
        }
    }

    /// The next sample.
    pub fn sample(&mut self) -> Sample {
        self.seq += 1;
        let t_ms = self.start_ms + self.seq * self.interval_ms;
        let day = (t_ms % 86_400_000) as f64 / 86_400_000.0;
        let rhythm = 1.0 + 0.5 * (day * std::f64::consts::TAU).sin();
        if self.burst_left == 0 && self.rng.unit() < 0.01 {
            self.burst_left = 5 + (self.rng.next_u64() % 20) as u32;
        }
        let burst = if self.burst_left > 0 {
            self.burst_left -= 1;
            60.0
        } else {
            0.0
        };
        let noise = (self.rng.unit() - 0.5) * 6.0;
        let busy = (self.base_cpu * rhythm + burst + noise).clamp(0.0, 100.0);
        let pct = |p: f64| (p.clamp(0.0, 100.0) * 100.0) as u16;
        let mut cores: Vec<u16, { ember_wire::sample::MAX_CORES }> = Vec::new();
        for _ in 0..self.cores {
            let _ = cores.push(pct(busy + (self.rng.unit() - 0.5) * 10.0));
        }
        self.mem_used = (self.mem_used + (self.rng.unit() - 0.5) * 0.01).clamp(0.1, 0.95);
        self.disk_used = (self.disk_used + self.rng.unit() * 0.00001).min(0.99);
        let used = (self.mem_used * MEM_TOTAL as f64) as u64;
        let load = (busy / 100.0 * self.cores as f64 * 100.0) as u32;
        let traffic = |rng: &mut Rng, scale: f64| (rng.unit().powi(4) * scale) as u64;
        let mut sample = Sample {
            seq: self.seq,
            timestamp_ms: t_ms,
            uptime_s: self.seq * self.interval_ms / 1000 + 3600,
            cpu: Cpu {
                busy: pct(busy),
                user: pct(busy * 0.7),
                system: pct(busy * 0.25),
                iowait: pct(busy * 0.05),
                cores,
            },
            load: Load {
                one: load,
                five: load * 9 / 10,
                fifteen: load * 8 / 10,
            },
            memory: Memory {
                total: MEM_TOTAL,
                used,
                available: MEM_TOTAL - used,
                cached: (MEM_TOTAL - used) / 2,
                swap_total: 100 << 20,
                swap_used: 0,
            },
            temperatures: Vec::new(),
            ..Sample::default()
        };
        let _ = sample.filesystems.push(Filesystem {
            mount: truncated("/"),
            total: DISK_TOTAL,
            used: (self.disk_used * DISK_TOTAL as f64) as u64,
        });
        let _ = sample.disks.push(DiskIo {
            device: truncated("mmcblk0"),
            read_bps: traffic(&mut self.rng, 4e6),
            write_bps: traffic(&mut self.rng, 2e6),
        });
        let _ = sample.networks.push(NetIo {
            interface: truncated("eth0"),
            rx_bps: traffic(&mut self.rng, 2e6),
            tx_bps: traffic(&mut self.rng, 5e5),
            ..NetIo::default()
        });
        let _ = sample.temperatures.push(Temperature {
            sensor: truncated("cpu-thermal"),
            millicelsius: (40_000.0 + busy * 350.0 + (self.rng.unit() - 0.5) * 1000.0) as i32,
        });
        let _ = sample.top_cpu.push(Process {
            pid: 612,
            name: truncated("python3"),
            cpu: (busy * 60.0) as u32,
            memory: 40 << 20,
        });
        let _ = sample.top_memory.push(Process {
            pid: 488,
            name: truncated("chromium"),
            cpu: 120,
            memory: used / 4,
        });
        sample
    }

    /// Whether an outage starts now: about once per `mean` samples.
    pub fn outage_starts(&mut self, mean: u64) -> bool {
        mean > 0 && self.rng.next_u64() % mean == 0
    }

    /// How many intervals an outage lasts: 10 to 60.
    pub fn outage_length(&mut self) -> u64 {
        10 + self.rng.next_u64() % 51
    }
}

/// Runs `count` simulated hosts named `{prefix}-0001`… against the broker in `base` until
/// `shutdown` resolves. Each host has an outage about once per `outage_every` samples (0: never).
pub async fn run(
    base: AgentConfig,
    prefix: &str,
    count: usize,
    outage_every: u64,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = std::vec::Vec::with_capacity(count);
    for i in 0..count {
        let id = HostId::new(&format!("{prefix}-{:04}", i + 1))
            .map_err(|e| anyhow::anyhow!("simulated host id from prefix {prefix:?}: {e}"))?;
        let mut config = base.clone();
        config.host_id = id;
        config.preview = None;
        let mut stop = stop_rx.clone();
        // Spread the hosts over the interval, as real boards would be.
        let offset = base.interval.mul_f64(i as f64 / count.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            simulate_one(config, i as u64, outage_every, &mut stop).await;
        }));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn simulate_one(
    config: AgentConfig,
    seed: u64,
    outage_every: u64,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    let mut synth = Synth::new(seed, crate::sampler::unix_ms(), config.interval);
    let mut publisher = Some(Publisher::start(&config, synth.info(&config.host_id)));
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut outage_left = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let mut sample = synth.sample();
        if outage_left > 0 {
            // Down: the samples of this time are never taken, as on a board without power.
            outage_left -= 1;
            if outage_left == 0 {
                publisher = Some(Publisher::start(&config, synth.info(&config.host_id)));
            }
            continue;
        }
        if synth.outage_starts(outage_every) {
            outage_left = synth.outage_length();
            if let Some(p) = publisher.take() {
                p.stop(Duration::from_secs(2)).await;
            }
            continue;
        }
        let Some(p) = &publisher else {
            continue;
        };
        sample.dropped = p.dropped();
        let seq = sample.seq;
        let envelope = Envelope::new(config.host_id.clone(), Message::Sample(sample));
        if let Ok(bytes) = envelope.encode(&mut buf) {
            p.sample(seq, bytes);
        }
    }
    if let Some(p) = publisher {
        p.stop(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_samples_are_plausible_and_varied() {
        let mut s = Synth::new(7, 1_795_000_000_000, Duration::from_secs(1));
        let samples: std::vec::Vec<Sample> = (0..2000).map(|_| s.sample()).collect();
        let mut max_busy = 0;
        let mut min_busy = u16::MAX;
        for (i, x) in samples.iter().enumerate() {
            assert_eq!(x.seq, i as u64 + 1);
            assert!(x.cpu.busy <= 10_000);
            assert!(x.memory.used <= x.memory.total);
            assert!(x.filesystems[0].used <= x.filesystems[0].total);
            let t = x.temperatures[0].millicelsius;
            assert!((35_000..80_000).contains(&t), "{t}");
            max_busy = max_busy.max(x.cpu.busy);
            min_busy = min_busy.min(x.cpu.busy);
            let mut buf = [0u8; MAX_ENCODED_LEN];
            let env = Envelope::new(HostId::new("sim").unwrap(), Message::Sample(x.clone()));
            assert!(env.encode(&mut buf).is_ok());
        }
        assert!(
            max_busy > min_busy + 3000,
            "bursts show: {min_busy}..{max_busy}"
        );
        assert_eq!(samples[1].timestamp_ms - samples[0].timestamp_ms, 1000);
    }

    #[test]
    fn hosts_differ_and_a_seed_repeats() {
        let a: std::vec::Vec<u16> = {
            let mut s = Synth::new(1, 0, Duration::from_secs(1));
            (0..50).map(|_| s.sample().cpu.busy).collect()
        };
        let b: std::vec::Vec<u16> = {
            let mut s = Synth::new(2, 0, Duration::from_secs(1));
            (0..50).map(|_| s.sample().cpu.busy).collect()
        };
        let a2: std::vec::Vec<u16> = {
            let mut s = Synth::new(1, 0, Duration::from_secs(1));
            (0..50).map(|_| s.sample().cpu.busy).collect()
        };
        assert_ne!(a, b);
        assert_eq!(a, a2);
    }

    #[test]
    fn outages_are_rare_and_bounded() {
        let mut s = Synth::new(3, 0, Duration::from_secs(1));
        let starts = (0..100_000).filter(|_| s.outage_starts(3600)).count();
        assert!(
            (10..60).contains(&starts),
            "{starts} outages in 100000 samples"
        );
        assert!((0..1000).all(|_| (10..=60).contains(&s.outage_length())));
        assert!(!(0..1000).any(|_| s.outage_starts(0)));
    }
}
