//! Turns the machine's state into [`Sample`]s: sysinfo where it serves, `/proc` where sysinfo
//! has no answer. The only I/O of the agent's sampling path lives here; the parsing is in
//! [`crate::procfs`].

use std::collections::HashSet;
use std::fs;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ember_wire::heapless::{String, Vec};
use ember_wire::{
    Cpu, DiskInfo, DiskIo, Filesystem, HostInfo, Interface, Load, Memory, NetIo, Process, Sample,
    Temperature,
};
use sysinfo::{
    Components, CpuRefreshKind, Disks, MemoryRefreshKind, Networks, ProcessRefreshKind,
    ProcessesToUpdate, System,
};

use crate::config::AgentConfig;
use crate::procfs::{self, CpuTimes};

/// Filesystem types that hold no user data and are never reported.
const PSEUDO_FS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "overlay",
    "squashfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "ramfs",
    "efivarfs",
    "autofs",
    "fuse.portal",
    "nsfs",
    "tracefs",
    "debugfs",
];

/// Samples this machine. Keeps only what it needs to compute rates between two samples.
pub struct Sampler {
    system: System,
    disks: Option<Disks>,
    networks: Option<Networks>,
    components: Option<Components>,
    prev_cpu: Option<CpuTimes>,
    prev_disks: std::vec::Vec<(String<16>, u64, u64)>,
    whole_disks: HashSet<std::string::String>,
    last: Option<Instant>,
    seq: u64,
    sensors: std::vec::Vec<std::string::String>,
    top: usize,
    watch: std::vec::Vec<std::string::String>,
}

impl Sampler {
    /// Prepares a sampler; the first sample's rates cover the time since this call. Fails only
    /// when the system's basic figures cannot be read at all (no `/proc`); a missing sensor,
    /// disk or network source just leaves that part of the samples empty.
    pub fn new(config: &AgentConfig) -> Result<Self, sysinfo::Error> {
        let mut system = System::new()?;
        system.refresh_cpu_usage();
        system.refresh_memory();
        let whole_disks = fs::read_dir("/sys/block")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut sampler = Sampler {
            system,
            disks: Disks::new_with_refreshed_list().ok(),
            networks: Networks::new_with_refreshed_list().ok(),
            components: Components::new_with_refreshed_list().ok(),
            prev_cpu: read("/proc/stat")
                .as_deref()
                .and_then(procfs::parse_stat_total),
            prev_disks: std::vec::Vec::new(),
            whole_disks,
            last: Some(Instant::now()),
            seq: 0,
            sensors: config.temperature_sensors.clone(),
            top: config.top_processes,
            watch: config.watch.clone(),
        };
        sampler.disk_io(1.0);
        Ok(sampler)
    }

    /// Takes the next sample. Sequence numbers start at 1 and grow by one per call.
    pub fn sample(&mut self) -> Sample {
        let now = Instant::now();
        let elapsed = self
            .last
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(1.0)
            .max(0.001);
        self.last = Some(now);
        self.seq += 1;

        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        if let Some(d) = &mut self.disks {
            d.refresh(true);
        }
        if let Some(n) = &mut self.networks {
            n.refresh(true);
        }
        if let Some(c) = &mut self.components {
            c.refresh(true);
        }
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .without_tasks(),
        );

        let mut sample = Sample {
            seq: self.seq,
            timestamp_ms: unix_ms(),
            uptime_s: System::uptime().unwrap_or(0),
            cpu: self.cpu(),
            load: System::load_average()
                .map(|l| Load {
                    one: hundredths(l.one),
                    five: hundredths(l.five),
                    fifteen: hundredths(l.fifteen),
                })
                .unwrap_or_default(),
            memory: self.memory(),
            ..Sample::default()
        };
        self.filesystems(&mut sample.filesystems);
        sample.disks = self.disk_io(elapsed);
        self.network(elapsed, &mut sample.networks);
        self.temperatures(&mut sample.temperatures);
        self.top_processes(&mut sample);
        sample
    }

    fn cpu(&mut self) -> Cpu {
        let mut cpu = Cpu::default();
        for c in self.system.cpus() {
            if cpu.cores.push(percent(c.usage())).is_err() {
                break;
            }
        }
        let now = read("/proc/stat")
            .as_deref()
            .and_then(procfs::parse_stat_total);
        match (self.prev_cpu, now) {
            (Some(prev), Some(now)) => {
                (cpu.busy, cpu.user, cpu.system, cpu.iowait) = procfs::cpu_shares(&prev, &now);
            }
            // No /proc/stat (not Linux): sysinfo's total only.
            _ => cpu.busy = percent(self.system.global_cpu_usage()),
        }
        self.prev_cpu = now;
        cpu
    }

    fn memory(&self) -> Memory {
        let s = &self.system;
        let total = s.total_memory();
        let available = s.available_memory();
        Memory {
            total,
            used: total.saturating_sub(available),
            available,
            cached: read("/proc/meminfo")
                .as_deref()
                .and_then(|m| meminfo_kib(m, "Cached:"))
                .unwrap_or(0)
                .saturating_mul(1024),
            swap_total: s.total_swap(),
            swap_used: s.used_swap(),
        }
    }

    fn filesystems(&self, out: &mut Vec<Filesystem, { ember_wire::sample::MAX_FILESYSTEMS }>) {
        let mut seen: std::vec::Vec<&std::path::Path> = std::vec::Vec::new();
        for disk in self.disks.iter().flat_map(|d| d.iter()) {
            let fs = disk.file_system().to_string_lossy();
            let mount = disk.mount_point();
            if PSEUDO_FS.contains(&fs.as_ref()) || disk.total_space() == 0 || seen.contains(&mount)
            {
                continue;
            }
            seen.push(mount);
            let entry = Filesystem {
                mount: truncated(&mount.to_string_lossy()),
                total: disk.total_space(),
                used: disk.total_space().saturating_sub(disk.available_space()),
            };
            if out.push(entry).is_err() {
                break;
            }
        }
    }

    fn disk_io(&mut self, elapsed: f64) -> Vec<DiskIo, { ember_wire::sample::MAX_DISKS }> {
        let mut out = Vec::new();
        let Some(text) = read("/proc/diskstats") else {
            return out;
        };
        let mut now = std::vec::Vec::new();
        for d in procfs::parse_diskstats(&text) {
            if !procfs::is_reported_disk(d.name)
                || !(self.whole_disks.is_empty() || self.whole_disks.contains(d.name))
            {
                continue;
            }
            let name: String<16> = truncated(d.name);
            if let Some((_, r, w)) = self.prev_disks.iter().find(|(n, _, _)| *n == name) {
                let _ = out.push(DiskIo {
                    device: name.clone(),
                    read_bps: rate(d.read_bytes.saturating_sub(*r), elapsed),
                    write_bps: rate(d.written_bytes.saturating_sub(*w), elapsed),
                });
            }
            now.push((name, d.read_bytes, d.written_bytes));
        }
        self.prev_disks = now;
        out
    }

    fn network(&self, elapsed: f64, out: &mut Vec<NetIo, { ember_wire::sample::MAX_INTERFACES }>) {
        let mut list: std::vec::Vec<_> = self.networks.iter().flat_map(|n| n.iter()).collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        for (name, data) in list {
            if name == "lo" {
                continue;
            }
            let entry = NetIo {
                interface: truncated(&name.to_string_lossy()),
                rx_bps: rate(data.received(), elapsed),
                tx_bps: rate(data.transmitted(), elapsed),
                rx_errors: data.errors_on_received().min(u32::MAX as u64) as u32,
                tx_errors: data.errors_on_transmitted().min(u32::MAX as u64) as u32,
                wifi: None,
            };
            if out.push(entry).is_err() {
                break;
            }
        }
    }

    fn temperatures(&self, out: &mut Vec<Temperature, { ember_wire::sample::MAX_SENSORS }>) {
        let readings = self
            .components
            .iter()
            .flat_map(|c| c.iter())
            // A sensor that gives no reading is left out: absent, never 0 °C.
            .filter_map(|c| Some((c.label(), c.temperature().filter(|t| t.is_finite())?)));
        select_sensors(&self.sensors, readings, out);
    }

    fn top_processes(&self, sample: &mut Sample) {
        let procs = self.system.processes();
        for name in &self.watch {
            let instances = procs
                .values()
                .filter(|p| p.name().to_str() == Some(name.as_str()))
                .count();
            let _ = sample.watched.push(ember_wire::Watched {
                name: truncated(name),
                instances: instances.min(u16::MAX as usize) as u16,
            });
        }
        let mut by_cpu: std::vec::Vec<_> = procs.values().collect();
        let n = self.top.min(by_cpu.len());
        let as_process = |p: &sysinfo::Process| Process {
            pid: p.pid().as_u32(),
            name: truncated(&p.name().to_string_lossy()),
            cpu: (p.cpu_usage().max(0.0) * 100.0) as u32,
            memory: p.memory(),
        };
        if n > 0 {
            by_cpu.select_nth_unstable_by(n - 1, |a, b| b.cpu_usage().total_cmp(&a.cpu_usage()));
            by_cpu[..n].sort_by(|a, b| b.cpu_usage().total_cmp(&a.cpu_usage()));
            for p in &by_cpu[..n] {
                let _ = sample.top_cpu.push(as_process(p));
            }
            let mut by_mem = by_cpu;
            by_mem.select_nth_unstable_by(n - 1, |a, b| b.memory().cmp(&a.memory()));
            by_mem[..n].sort_by_key(|p| std::cmp::Reverse(p.memory()));
            for p in &by_mem[..n] {
                let _ = sample.top_memory.push(as_process(p));
            }
        }
    }

    /// The host's inventory.
    pub fn host_info(&self) -> HostInfo {
        let mut info = HostInfo {
            hostname: truncated(&System::host_name().unwrap_or_default()),
            board: truncated(
                read("/proc/device-tree/model")
                    .as_deref()
                    .unwrap_or("")
                    .trim_end_matches('\0'),
            ),
            os: truncated(&System::long_os_version().unwrap_or_default()),
            kernel: truncated(&System::kernel_version().unwrap_or_default()),
            arch: truncated(&System::cpu_arch()),
            cpu_model: truncated(
                self.system
                    .cpus()
                    .first()
                    .map(|c| c.brand())
                    .unwrap_or_default(),
            ),
            cpu_cores: self.system.cpus().len().min(u16::MAX as usize) as u16,
            memory: self.system.total_memory(),
            agent_version: truncated(env!("CARGO_PKG_VERSION")),
            boot_time_s: System::boot_time().unwrap_or(0),
            ..HostInfo::default()
        };
        for name in self.prev_disks.iter().map(|(n, _, _)| n) {
            let sectors = read(&format!("/sys/block/{name}/size"))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let disk = DiskInfo {
                name: name.clone(),
                size: sectors.saturating_mul(512),
            };
            if info.disks.push(disk).is_err() {
                break;
            }
        }
        let mut list: std::vec::Vec<_> = self.networks.iter().flat_map(|n| n.iter()).collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        for (name, data) in list.into_iter().filter(|(n, _)| *n != "lo") {
            let mut iface = Interface {
                name: truncated(&name.to_string_lossy()),
                mac: Some(data.mac_address().0).filter(|m| m != &[0; 6]),
                ..Interface::default()
            };
            for net in data.ip_networks() {
                match net.addr {
                    std::net::IpAddr::V4(a) => {
                        let _ = iface.ipv4.push(a.octets());
                    }
                    std::net::IpAddr::V6(a) => {
                        let _ = iface.ipv6.push(a.octets());
                    }
                }
            }
            if info.interfaces.push(iface).is_err() {
                break;
            }
        }
        info
    }
}

/// Keeps the configured sensors in the configured order (all sensors when none are configured).
/// A configured sensor with no reading is absent from the sample, never 0 °C.
fn select_sensors<'a>(
    wanted: &[std::string::String],
    readings: impl Iterator<Item = (&'a str, f32)>,
    out: &mut Vec<Temperature, { ember_wire::sample::MAX_SENSORS }>,
) {
    let entry = |label: &str, t: f32| Temperature {
        sensor: truncated(label),
        millicelsius: (t * 1000.0).round() as i32,
    };
    if wanted.is_empty() {
        for (label, t) in readings {
            if out.push(entry(label, t)).is_err() {
                break;
            }
        }
        return;
    }
    let readings: std::vec::Vec<_> = readings.collect();
    for name in wanted {
        if let Some((label, t)) = readings.iter().find(|(l, _)| l == name) {
            let _ = out.push(entry(label, *t));
        }
    }
}

fn read(path: &str) -> Option<std::string::String> {
    fs::read_to_string(path).ok()
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn percent(p: f32) -> u16 {
    (p.clamp(0.0, 100.0) * 100.0).round() as u16
}

fn hundredths(v: f64) -> u32 {
    (v.max(0.0) * 100.0).round().min(u32::MAX as f64) as u32
}

fn rate(bytes: u64, secs: f64) -> u64 {
    (bytes as f64 / secs) as u64
}

/// Cuts `s` to the capacity at a character boundary.
pub fn truncated<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_char_boundaries() {
        let s: String<4> = truncated("aéb€x");
        assert_eq!(s.as_str(), "aéb");
        let s: String<2> = truncated("aé");
        assert_eq!(s.as_str(), "a");
        let s: String<16> = truncated("eth0");
        assert_eq!(s.as_str(), "eth0");
    }

    #[test]
    fn meminfo_values() {
        let m = "MemTotal:        3885432 kB\nCached:           1802240 kB\nSwapCached: 0 kB\n";
        assert_eq!(meminfo_kib(m, "Cached:"), Some(1_802_240));
        assert_eq!(meminfo_kib(m, "Nope:"), None);
    }

    #[test]
    fn configured_sensors_are_chosen_and_missing_ones_absent() {
        let readings = || [("coretemp Core 0", 51.5f32), ("cpu_thermal", 48.686)].into_iter();
        let mut out = Vec::new();
        select_sensors(&[], readings(), &mut out);
        assert_eq!(out.len(), 2);
        let mut out = Vec::new();
        let wanted = ["cpu_thermal".to_string(), "gpu_thermal".to_string()];
        select_sensors(&wanted, readings(), &mut out);
        assert_eq!(out.len(), 1, "gpu_thermal is missing: absent, not 0 °C");
        assert_eq!(out[0].sensor.as_str(), "cpu_thermal");
        assert_eq!(out[0].millicelsius, 48_686);
    }

    #[test]
    fn samples_this_machine() {
        let config = AgentConfig::new("127.0.0.1:1883", Some("t"), "1s", None).unwrap();
        let mut s = Sampler::new(&config).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let a = s.sample();
        let b = s.sample();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert!(a.memory.total > 0 && a.memory.used <= a.memory.total);
        assert!(a.cpu.busy <= 10_000 && !a.cpu.cores.is_empty());
        assert!(a.uptime_s > 0);
        assert!(a.timestamp_ms > 1_700_000_000_000);
        assert!(!a.top_memory.is_empty());
        let info = s.host_info();
        assert!(info.cpu_cores > 0 && info.memory > 0 && !info.kernel.is_empty());
    }
}
