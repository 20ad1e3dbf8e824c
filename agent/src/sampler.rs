//! Turns the machine's state into [`Sample`]s.
//!
//! Every per-interval figure is read from `/proc` and `/sys` directly, into buffers allocated
//! once: cheaper than sysinfo on a small board, allocation-free after the first sample, and
//! testable on fixture trees (`Sampler::with_root`). sysinfo serves the inventory, read once a
//! minute. The parsing itself is sans-I/O, in [`crate::procfs`].

use std::fmt::Write as _;
use std::io::Read;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ember_wire::heapless::{String, Vec};
use ember_wire::sample::{
    ShortName, MAX_CORES, MAX_DISKS, MAX_FILESYSTEMS, MAX_INTERFACES, MAX_TOP,
};
use ember_wire::{
    Cpu, DiskInfo, DiskIo, Filesystem, HostInfo, Interface, Load, Memory, NetIo, Process, Sample,
    Temperature, Watched, Wifi,
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
    "nsfs",
    "tracefs",
    "debugfs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "devpts",
    "binfmt_misc",
    "rpc_pipefs",
];

/// Largest file the sampler reads (`/proc/mounts` on a busy container host is the biggest).
const READ_BUF: usize = 64 * 1024;
/// Processes whose CPU ticks are remembered between samples before the table stops growing.
const MAX_PROCESSES: usize = 4096;

/// Usage of the filesystem mounted at a path: `(total, used)` bytes.
pub type FsUsage = fn(&Path) -> Option<(u64, u64)>;

fn statvfs_usage(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    let total = s.f_blocks.saturating_mul(s.f_frsize);
    let free = s.f_bfree.saturating_mul(s.f_frsize);
    Some((total, total.saturating_sub(free)))
}

/// Reusable I/O buffers: after the first sample, reading allocates nothing.
struct Io {
    /// Prefix of every path, without a trailing `/`: empty for this machine.
    root: std::string::String,
    path: std::string::String,
    text: std::string::String,
    dir: std::vec::Vec<MaybeUninit<u8>>,
}

impl Io {
    /// Reads `root/rel` into the text buffer; `None` if it cannot be read.
    fn read(&mut self, rel: &str) -> Option<&str> {
        self.path.clear();
        let _ = write!(self.path, "{}/{rel}", self.root);
        self.read_path()
    }

    fn read_path(&mut self) -> Option<&str> {
        self.text.clear();
        let mut f = std::fs::File::open(&self.path).ok()?;
        // `take` keeps a runaway file from growing the buffer.
        f.by_ref()
            .take(READ_BUF as u64)
            .read_to_string(&mut self.text)
            .ok()?;
        Some(&self.text)
    }
}

/// Samples this machine (or a fixture tree). Keeps only what it needs to compute rates and
/// shares between two samples, in buffers of fixed size.
pub struct Sampler {
    io: Io,
    fs_usage: FsUsage,
    prev_cpu: Option<CpuTimes>,
    prev_cores: Vec<CpuTimes, MAX_CORES>,
    prev_net: Vec<(ShortName, procfs::NetTotals), MAX_INTERFACES>,
    prev_disks: Vec<(ShortName, u64, u64), MAX_DISKS>,
    whole_disks: std::vec::Vec<std::string::String>,
    prev_procs: std::vec::Vec<(u32, u64)>,
    cur_procs: std::vec::Vec<(u32, u64)>,
    last: Instant,
    seq: u64,
    clock_ticks: u64,
    page_size: u64,
    sensors: std::vec::Vec<std::string::String>,
    top: usize,
    watch: std::vec::Vec<std::string::String>,
    process_every: f64,
    /// Seconds since the process table was last walked; `None` before the first walk.
    since_processes: Option<f64>,
    last_processes: ProcessLists,
}

/// The top lists and the watch-list of the last walk of the process table.
type ProcessLists = (
    Vec<Process, MAX_TOP>,
    Vec<Process, MAX_TOP>,
    Vec<Watched, { ember_wire::sample::MAX_WATCHED }>,
);

impl Sampler {
    /// A sampler of this machine.
    pub fn new(config: &AgentConfig) -> std::io::Result<Self> {
        Self::with_root(config, PathBuf::from(""), statvfs_usage)
    }

    /// A sampler reading `root/proc` and `root/sys` (a fixture tree in tests; `""` for this
    /// machine). Fails only if `root/proc/stat` cannot be read at all.
    pub fn with_root(
        config: &AgentConfig,
        root: PathBuf,
        fs_usage: FsUsage,
    ) -> std::io::Result<Self> {
        let root = root.to_string_lossy().trim_end_matches('/').to_string();
        let mut io = Io {
            root,
            path: std::string::String::with_capacity(256),
            text: std::string::String::with_capacity(READ_BUF),
            dir: std::vec::Vec::with_capacity(16 * 1024),
        };
        io.dir.resize(16 * 1024, MaybeUninit::uninit());
        if io.read("proc/stat").is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot read {} (is /proc mounted?)", io.path),
            ));
        }
        let block = format!("{}/sys/block", io.root);
        let whole_disks = std::fs::read_dir(block)
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut sampler = Sampler {
            io,
            fs_usage,
            prev_cpu: None,
            prev_cores: Vec::new(),
            prev_net: Vec::new(),
            prev_disks: Vec::new(),
            whole_disks,
            prev_procs: std::vec::Vec::with_capacity(MAX_PROCESSES),
            cur_procs: std::vec::Vec::with_capacity(MAX_PROCESSES),
            last: Instant::now(),
            seq: 0,
            clock_ticks: rustix::param::clock_ticks_per_second().max(1),
            page_size: rustix::param::page_size() as u64,
            sensors: config.temperature_sensors.clone(),
            top: config.top_processes.min(MAX_TOP),
            watch: config.watch.clone(),
            process_every: config.process_interval.as_secs_f64(),
            since_processes: None,
            last_processes: Default::default(),
        };
        // Take the first readings, so that the first sample's rates cover the time since now.
        sampler.sample();
        sampler.seq = 0;
        // The first real sample walks the processes again, with shares over a real interval.
        sampler.since_processes = None;
        sampler.last_processes = ProcessLists::default();
        Ok(sampler)
    }

    /// Goes on from an earlier run's sequence (the spool's): the next sample takes `next`.
    pub fn continue_from(&mut self, next: u64) {
        self.seq = next.saturating_sub(1);
    }

    /// The sequence number the next sample takes.
    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Takes the next sample. Sequence numbers start at 1 and grow by one per call.
    pub fn sample(&mut self) -> Sample {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last);
        self.last = now;
        self.sample_over(elapsed)
    }

    /// Takes the next sample with rates computed over `elapsed` (what [`Sampler::sample`] measures;
    /// tests give it exactly).
    pub fn sample_over(&mut self, elapsed: std::time::Duration) -> Sample {
        let elapsed = elapsed.as_secs_f64().max(0.001);
        self.seq += 1;
        let mut sample = Sample {
            seq: self.seq,
            timestamp_ms: unix_ms(),
            ..Sample::default()
        };
        sample.cpu = self.cpu();
        if let Some((one, five, fifteen)) =
            self.io.read("proc/loadavg").and_then(procfs::parse_loadavg)
        {
            sample.load = Load { one, five, fifteen };
        }
        sample.uptime_s = self
            .io
            .read("proc/uptime")
            .and_then(procfs::parse_uptime)
            .unwrap_or(0);
        sample.memory = self.memory();
        self.filesystems(&mut sample.filesystems);
        self.disk_io(elapsed, &mut sample.disks);
        self.network(elapsed, &mut sample.networks);
        self.temperatures(&mut sample.temperatures);
        sample.throttled = self
            .io
            .read("sys/devices/platform/soc/soc:firmware/get_throttled")
            .and_then(procfs::parse_throttled);
        // Walking the process table is most of a sample's cost: it is done every
        // `process_interval`, with CPU shares over the time since the last walk; the samples in
        // between repeat the last lists.
        let since = self.since_processes.map_or(elapsed, |s| s + elapsed);
        if self.since_processes.is_none() || since >= self.process_every - 0.001 {
            self.processes(since, &mut sample);
            self.last_processes = (
                sample.top_cpu.clone(),
                sample.top_memory.clone(),
                sample.watched.clone(),
            );
            self.since_processes = Some(0.0);
        } else {
            (sample.top_cpu, sample.top_memory, sample.watched) = self.last_processes.clone();
            self.since_processes = Some(since);
        }
        sample
    }

    fn cpu(&mut self) -> Cpu {
        let mut cpu = Cpu::default();
        let Some(stat) = self.io.read("proc/stat") else {
            return cpu;
        };
        let total = procfs::parse_stat_total(stat);
        let mut cores: Vec<CpuTimes, MAX_CORES> = Vec::new();
        for core in procfs::parse_stat_cores(stat) {
            if cores.push(core).is_err() {
                break;
            }
        }
        if let (Some(prev), Some(now)) = (self.prev_cpu, total) {
            (cpu.busy, cpu.user, cpu.system, cpu.iowait) = procfs::cpu_shares(&prev, &now);
        }
        for (i, now) in cores.iter().enumerate() {
            let busy = self
                .prev_cores
                .get(i)
                .map_or(0, |prev| procfs::cpu_shares(prev, now).0);
            let _ = cpu.cores.push(busy);
        }
        self.prev_cpu = total;
        self.prev_cores = cores;
        cpu
    }

    fn memory(&mut self) -> Memory {
        let Some(m) = self.io.read("proc/meminfo").and_then(procfs::parse_meminfo) else {
            return Memory::default();
        };
        Memory {
            total: m.total,
            used: m.total.saturating_sub(m.available),
            available: m.available,
            cached: m.cached,
            swap_total: m.swap_total,
            swap_used: m.swap_total.saturating_sub(m.swap_free),
        }
    }

    fn filesystems(&mut self, out: &mut Vec<Filesystem, MAX_FILESYSTEMS>) {
        let Some(mounts) = self.io.read("proc/mounts") else {
            return;
        };
        // Several mounts of one device (bind mounts) are one filesystem: the first one counts.
        let mut devices: Vec<String<64>, MAX_FILESYSTEMS> = Vec::new();
        let mut found: Vec<(String<32>, String<96>), MAX_FILESYSTEMS> = Vec::new();
        for (device, mount, fstype) in procfs::parse_mounts(mounts) {
            if PSEUDO_FS.contains(&fstype) || !device.starts_with('/') {
                continue;
            }
            let device: String<64> = truncated(device);
            if devices.contains(&device) {
                continue;
            }
            let mut path: String<96> = String::new();
            if unescape_mount(mount, &mut path).is_none() {
                continue;
            }
            if devices.push(device).is_err() {
                break;
            }
            let _ = found.push((truncated(&path), path));
        }
        for (shown, path) in &found {
            self.io.path.clear();
            let _ = write!(self.io.path, "{}{}", self.io.root, path);
            if let Some((total, used)) = (self.fs_usage)(Path::new(&self.io.path)) {
                if total > 0 {
                    let _ = out.push(Filesystem {
                        mount: shown.clone(),
                        total,
                        used,
                    });
                }
            }
        }
    }

    fn disk_io(&mut self, elapsed: f64, out: &mut Vec<DiskIo, MAX_DISKS>) {
        let Some(text) = self.io.read("proc/diskstats") else {
            return;
        };
        let mut now: Vec<(ShortName, u64, u64), MAX_DISKS> = Vec::new();
        for d in procfs::parse_diskstats(text) {
            let whole = self.whole_disks.is_empty() || self.whole_disks.iter().any(|w| w == d.name);
            if !procfs::is_reported_disk(d.name) || !whole {
                continue;
            }
            let name: ShortName = truncated(d.name);
            if let Some((_, r, w)) = self.prev_disks.iter().find(|(n, _, _)| *n == name) {
                let _ = out.push(DiskIo {
                    device: name.clone(),
                    read_bps: rate(d.read_bytes.saturating_sub(*r), elapsed),
                    write_bps: rate(d.written_bytes.saturating_sub(*w), elapsed),
                });
            }
            if now.push((name, d.read_bytes, d.written_bytes)).is_err() {
                break;
            }
        }
        self.prev_disks = now;
    }

    fn network(&mut self, elapsed: f64, out: &mut Vec<NetIo, MAX_INTERFACES>) {
        let mut wifi: Vec<(ShortName, Wifi), MAX_INTERFACES> = Vec::new();
        if let Some(text) = self.io.read("proc/net/wireless") {
            for (name, quality, signal_dbm) in procfs::parse_wireless(text) {
                let _ = wifi.push((
                    truncated(name),
                    Wifi {
                        signal_dbm,
                        quality,
                    },
                ));
            }
        }
        let Some(text) = self.io.read("proc/net/dev") else {
            return;
        };
        let mut now: Vec<(ShortName, procfs::NetTotals), MAX_INTERFACES> = Vec::new();
        for n in procfs::parse_net_dev(text) {
            if !procfs::is_reported_interface(n.name) {
                continue;
            }
            let name: ShortName = truncated(n.name);
            let totals = n.totals();
            if let Some((_, prev)) = self.prev_net.iter().find(|(p, _)| *p == name) {
                let d = totals.since(prev);
                let _ = out.push(NetIo {
                    interface: name.clone(),
                    rx_bps: rate(d.rx_bytes, elapsed),
                    tx_bps: rate(d.tx_bytes, elapsed),
                    rx_errors: d.rx_errors.min(u32::MAX as u64) as u32,
                    tx_errors: d.tx_errors.min(u32::MAX as u64) as u32,
                    wifi: wifi.iter().find(|(w, _)| *w == name).map(|(_, w)| *w),
                });
            }
            if now.push((name, totals)).is_err() {
                break;
            }
        }
        self.prev_net = now;
    }

    /// Thermal zones (`/sys/class/thermal`), by zone type. The configured sensors in their
    /// order, or every readable one; a sensor that cannot be read is absent, never 0 °C.
    fn temperatures(&mut self, out: &mut Vec<Temperature, { ember_wire::sample::MAX_SENSORS }>) {
        let mut readings: Vec<Temperature, 16> = Vec::new();
        for zone in 0..16 {
            let mut rel: String<48> = String::new();
            let _ = write!(rel, "sys/class/thermal/thermal_zone{zone}/type");
            let Some(kind) = self.io.read(&rel) else {
                break;
            };
            let sensor = truncated(kind.trim());
            rel.clear();
            let _ = write!(rel, "sys/class/thermal/thermal_zone{zone}/temp");
            let Some(millicelsius) = self.io.read(&rel).and_then(|t| t.trim().parse().ok()) else {
                continue;
            };
            let _ = readings.push(Temperature {
                sensor,
                millicelsius,
            });
        }
        select_sensors(&self.sensors, &readings, out);
    }

    /// Top processes by CPU and by memory, and the watch-list, from `/proc/<pid>/stat`. Only
    /// each process's pid and CPU ticks are kept between samples, in a table of fixed size.
    fn processes(&mut self, elapsed: f64, sample: &mut Sample) {
        let mut watched: Vec<Watched, { ember_wire::sample::MAX_WATCHED }> = Vec::new();
        for name in &self.watch {
            let _ = watched.push(Watched {
                name: truncated(name),
                instances: 0,
            });
        }
        let mut top_cpu: Vec<Process, MAX_TOP> = Vec::new();
        let mut top_mem: Vec<Process, MAX_TOP> = Vec::new();
        self.cur_procs.clear();
        if self.top == 0 && watched.is_empty() {
            // Nothing asks for processes: the walk of /proc is the sampler's largest cost.
            sample.watched = watched;
            return;
        }
        let ticks_per_interval = elapsed * self.clock_ticks as f64;

        self.io.path.clear();
        let _ = write!(self.io.path, "{}/proc", self.io.root);
        let Ok(fd) = rustix::fs::open(
            self.io.path.as_str(),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) else {
            return;
        };
        let mut dir_buf = std::mem::take(&mut self.io.dir);
        let mut dir = rustix::fs::RawDir::new(fd, &mut dir_buf);
        while let Some(Ok(entry)) = dir.next() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            self.io.path.clear();
            let _ = write!(self.io.path, "{}/proc/{pid}/stat", self.io.root);
            let Some(stat) = self.io.read_path().and_then(procfs::parse_pid_stat) else {
                continue;
            };
            if self.cur_procs.len() < MAX_PROCESSES {
                self.cur_procs.push((pid, stat.ticks));
            }
            for w in watched.iter_mut() {
                if w.name.as_str() == stat.comm {
                    w.instances = w.instances.saturating_add(1);
                }
            }
            if self.top == 0 {
                continue;
            }
            let prev = self
                .prev_procs
                .binary_search_by_key(&pid, |(p, _)| *p)
                .ok()
                .map(|i| self.prev_procs[i].1);
            // A process new since the last sample counts from its start.
            let used = stat.ticks.saturating_sub(prev.unwrap_or(0));
            let process = Process {
                pid,
                name: truncated(stat.comm),
                cpu: (used as f64 * 10_000.0 / ticks_per_interval.max(1.0)) as u32,
                memory: stat.rss_pages.saturating_mul(self.page_size),
            };
            insert_top(&mut top_cpu, self.top, process.clone(), |p| {
                u64::from(p.cpu)
            });
            insert_top(&mut top_mem, self.top, process, |p| p.memory);
        }
        drop(dir);
        self.io.dir = dir_buf;
        self.cur_procs.sort_unstable_by_key(|(p, _)| *p);
        std::mem::swap(&mut self.prev_procs, &mut self.cur_procs);
        sample.top_cpu = top_cpu;
        sample.top_memory = top_mem;
        sample.watched = watched;
    }

    /// The host's inventory (sysinfo for what `/proc` does not say plainly).
    pub fn host_info(&mut self) -> HostInfo {
        let mut system = sysinfo::System::new().ok();
        if let Some(s) = &mut system {
            s.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
            s.refresh_memory();
        }
        let board = self
            .io
            .read("proc/device-tree/model")
            .map(|m| truncated(m.trim_end_matches('\0').trim()))
            .unwrap_or_default();
        let mut info = HostInfo {
            hostname: truncated(&sysinfo::System::host_name().unwrap_or_default()),
            board,
            os: truncated(&sysinfo::System::long_os_version().unwrap_or_default()),
            kernel: truncated(&sysinfo::System::kernel_version().unwrap_or_default()),
            arch: truncated(&sysinfo::System::cpu_arch()),
            cpu_model: system
                .as_ref()
                .and_then(|s| s.cpus().first().map(|c| truncated(c.brand())))
                .unwrap_or_default(),
            cpu_cores: system
                .as_ref()
                .map_or(0, |s| s.cpus().len().min(u16::MAX as usize) as u16),
            memory: system.as_ref().map_or(0, |s| s.total_memory()),
            agent_version: truncated(env!("CARGO_PKG_VERSION")),
            boot_time_s: sysinfo::System::boot_time().unwrap_or(0),
            ..HostInfo::default()
        };
        let disks: std::vec::Vec<ShortName> =
            self.prev_disks.iter().map(|(n, _, _)| n.clone()).collect();
        for name in disks {
            let mut rel: String<48> = String::new();
            let _ = write!(rel, "sys/block/{name}/size");
            let sectors = self
                .io
                .read(&rel)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let disk = DiskInfo {
                name,
                size: sectors.saturating_mul(512),
            };
            if info.disks.push(disk).is_err() {
                break;
            }
        }
        if let Ok(networks) = sysinfo::Networks::new_with_refreshed_list() {
            let mut list: std::vec::Vec<_> = networks.iter().collect();
            list.sort_by(|a, b| a.0.cmp(b.0));
            for (name, data) in list {
                let name = name.to_string_lossy();
                if !procfs::is_reported_interface(&name) {
                    continue;
                }
                let mut iface = Interface {
                    name: truncated(&name),
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
        }
        info
    }
}

/// Keeps `list` as the `n` largest by `key`, largest first.
fn insert_top(
    list: &mut Vec<Process, MAX_TOP>,
    n: usize,
    p: Process,
    key: impl Fn(&Process) -> u64,
) {
    let k = key(&p);
    let at = list.iter().position(|q| key(q) < k).unwrap_or(list.len());
    if at >= n {
        return;
    }
    if list.len() == n {
        list.pop();
    }
    let _ = list.insert(at, p);
}

/// Turns a mount point's octal escapes (`\040` for a space) back into characters.
fn unescape_mount(mount: &str, out: &mut String<96>) -> Option<()> {
    let b = mount.as_bytes();
    let mut bytes: Vec<u8, 96> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'\\' && i + 4 <= b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 4]).ok())
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(code) => {
                bytes.push(code).ok()?;
                i += 4;
            }
            None => {
                bytes.push(b[i]).ok()?;
                i += 1;
            }
        }
    }
    out.push_str(std::str::from_utf8(&bytes).ok()?).ok()
}

/// Keeps the configured sensors in the configured order (all sensors when none are configured).
/// A configured sensor with no reading is absent from the sample, never 0 °C.
fn select_sensors(
    wanted: &[std::string::String],
    readings: &[Temperature],
    out: &mut Vec<Temperature, { ember_wire::sample::MAX_SENSORS }>,
) {
    if wanted.is_empty() {
        for t in readings {
            if out.push(t.clone()).is_err() {
                break;
            }
        }
        return;
    }
    for name in wanted {
        if let Some(t) = readings.iter().find(|t| t.sensor.as_str() == name) {
            let _ = out.push(t.clone());
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    fn mount_escapes() {
        let mut s = String::new();
        unescape_mount("/mnt/usb\\040ssd", &mut s).unwrap();
        assert_eq!(s.as_str(), "/mnt/usb ssd");
        let mut s = String::new();
        unescape_mount("/plain/ünï", &mut s).unwrap();
        assert_eq!(s.as_str(), "/plain/ünï");
        let mut s = String::new();
        unescape_mount("/odd\\9", &mut s).unwrap();
        assert_eq!(s.as_str(), "/odd\\9");
    }

    #[test]
    fn top_lists_keep_the_largest_in_order() {
        let p = |pid, cpu| Process {
            pid,
            cpu,
            ..Process::default()
        };
        let mut top = Vec::new();
        for (pid, cpu) in [(1, 5), (2, 50), (3, 1), (4, 70), (5, 20), (6, 20)] {
            insert_top(&mut top, 3, p(pid, cpu), |p| u64::from(p.cpu));
        }
        let pids: std::vec::Vec<u32> = top.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [4, 2, 5]);
    }

    #[test]
    fn configured_sensors_are_chosen_and_missing_ones_absent() {
        let t = |s: &str, m| Temperature {
            sensor: truncated(s),
            millicelsius: m,
        };
        let readings = [t("coretemp", 51_500), t("cpu-thermal", 48_686)];
        let mut out = Vec::new();
        select_sensors(&[], &readings, &mut out);
        assert_eq!(out.len(), 2);
        let mut out = Vec::new();
        let wanted = ["cpu-thermal".to_string(), "gpu-thermal".to_string()];
        select_sensors(&wanted, &readings, &mut out);
        assert_eq!(out.len(), 1, "gpu-thermal is missing: absent, not 0 °C");
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
        assert!(!a.filesystems.is_empty());
        let info = s.host_info();
        assert!(info.cpu_cores > 0 && info.memory > 0 && !info.kernel.is_empty());
    }
}
