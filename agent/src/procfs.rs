//! Parsers for the `/proc` files the agent reads itself because sysinfo does not expose them
//! (CPU time split, per-device disk I/O). Sans-I/O: they take the file's text, so tests feed them
//! fixtures from real boards.

/// Cumulative CPU time counters from the `cpu` lines of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice
    pub user: u64,
    /// system + irq + softirq
    pub system: u64,
    /// idle
    pub idle: u64,
    /// iowait
    pub iowait: u64,
    /// steal
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user + self.system + self.idle + self.iowait + self.steal
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_stat_total(stat: &str) -> Option<CpuTimes> {
    parse_cpu_line(stat.lines().find(|l| l.starts_with("cpu "))?)
}

/// Shares of the interval between two readings, in hundredths of a percent:
/// `(busy, user, system, iowait)`. Busy is everything but idle and iowait.
pub fn cpu_shares(prev: &CpuTimes, now: &CpuTimes) -> (u16, u16, u16, u16) {
    let total = now.total().saturating_sub(prev.total());
    if total == 0 {
        return (0, 0, 0, 0);
    }
    let share = |a: u64, b: u64| -> u16 {
        let d = a.saturating_sub(b);
        (d.saturating_mul(10_000) / total).min(10_000) as u16
    };
    let idle = share(now.idle, prev.idle);
    let iowait = share(now.iowait, prev.iowait);
    let busy = 10_000u16.saturating_sub(idle).saturating_sub(iowait);
    (
        busy,
        share(now.user, prev.user),
        share(now.system, prev.system),
        iowait,
    )
}

/// Cumulative I/O counters of one block device from `/proc/diskstats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounters<'a> {
    /// Device name.
    pub name: &'a str,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub written_bytes: u64,
}

/// Iterates the devices of `/proc/diskstats`, skipping lines it cannot read.
/// Sector counts there are always in 512-byte units, whatever the device's sector size.
pub fn parse_diskstats(text: &str) -> impl Iterator<Item = DiskCounters<'_>> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let name = f.nth(2)?;
        let sectors_read: u64 = f.nth(2)?.parse().ok()?;
        let sectors_written: u64 = f.nth(3)?.parse().ok()?;
        Some(DiskCounters {
            name,
            read_bytes: sectors_read.saturating_mul(512),
            written_bytes: sectors_written.saturating_mul(512),
        })
    })
}

/// Whether a block device is worth reporting: not a loop, RAM or zram device. Partitions are
/// filtered by the caller against `/sys/block`, which lists whole devices only.
pub fn is_reported_disk(name: &str) -> bool {
    !(name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram"))
}

/// Parses the per-core `cpuN` lines of `/proc/stat`, in order.
pub fn parse_stat_cores(stat: &str) -> impl Iterator<Item = CpuTimes> + '_ {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .filter_map(parse_cpu_line)
}

fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut f = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().ok());
    let mut next = || f.next().flatten();
    let (user, nice, system, idle) = (next()?, next()?, next()?, next()?);
    // Old kernels stop after idle; missing fields count as zero.
    let iowait = next().unwrap_or(0);
    let irq = next().unwrap_or(0);
    let softirq = next().unwrap_or(0);
    let steal = next().unwrap_or(0);
    Some(CpuTimes {
        user: user + nice,
        system: system + irq + softirq,
        idle,
        iowait,
        steal,
    })
}

/// The figures of `/proc/meminfo` the agent reports, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`
    pub total: u64,
    /// `MemAvailable` (or free + buffers + cached on kernels before 3.14)
    pub available: u64,
    /// `Cached`
    pub cached: u64,
    /// `SwapTotal`
    pub swap_total: u64,
    /// `SwapFree`
    pub swap_free: u64,
}

/// Parses `/proc/meminfo`; `None` without `MemTotal`.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let (mut total, mut available, mut free, mut buffers) = (None, None, 0, 0);
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kib) = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = kib.saturating_mul(1024);
        match key {
            "MemTotal" => total = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "MemFree" => free = bytes,
            "Buffers" => buffers = bytes,
            "Cached" => m.cached = bytes,
            "SwapTotal" => m.swap_total = bytes,
            "SwapFree" => m.swap_free = bytes,
            _ => {}
        }
    }
    m.total = total?;
    m.available = available.unwrap_or(free + buffers + m.cached).min(m.total);
    Some(m)
}

/// Parses a decimal such as `0.52` or `12.5` into hundredths without floating point.
pub fn hundredths(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: u32 = int.parse().ok()?;
    let mut digits = frac.bytes().take(2);
    let tenth = digits
        .next()
        .map_or(Some(0), |d| d.is_ascii_digit().then(|| u32::from(d - b'0')))?;
    let hundredth = digits
        .next()
        .map_or(Some(0), |d| d.is_ascii_digit().then(|| u32::from(d - b'0')))?;
    int.checked_mul(100)?.checked_add(tenth * 10 + hundredth)
}

/// Parses `/proc/loadavg` into hundredths: `(one, five, fifteen)`.
pub fn parse_loadavg(text: &str) -> Option<(u32, u32, u32)> {
    let mut f = text.split_ascii_whitespace();
    Some((
        hundredths(f.next()?)?,
        hundredths(f.next()?)?,
        hundredths(f.next()?)?,
    ))
}

/// Parses `/proc/uptime` into whole seconds.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    first.split('.').next()?.parse().ok()
}

/// Cumulative counters of one interface from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters<'a> {
    /// Interface name.
    pub name: &'a str,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// Iterates the interfaces of `/proc/net/dev`, skipping the two header lines and any line it
/// cannot read.
pub fn parse_net_dev(text: &str) -> impl Iterator<Item = NetCounters<'_>> {
    text.lines().filter_map(|line| {
        let (name, rest) = line.split_once(':')?;
        let mut f = rest.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
        let rx_bytes = f.next()??;
        let _packets = f.next()??;
        let rx_errors = f.next()??;
        let tx_bytes = f.nth(5)??;
        let _packets = f.next()??;
        let tx_errors = f.next()??;
        Some(NetCounters {
            name: name.trim(),
            rx_bytes,
            rx_errors,
            tx_bytes,
            tx_errors,
        })
    })
}

impl NetCounters<'_> {
    /// The counters without the name, to keep between samples.
    pub fn totals(&self) -> NetTotals {
        NetTotals {
            rx_bytes: self.rx_bytes,
            rx_errors: self.rx_errors,
            tx_bytes: self.tx_bytes,
            tx_errors: self.tx_errors,
        }
    }
}

/// An interface's cumulative counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTotals {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

impl NetTotals {
    /// What changed since `prev`; a counter that went backwards (driver reset) counts from 0.
    pub fn since(&self, prev: &NetTotals) -> NetTotals {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        NetTotals {
            rx_bytes: d(self.rx_bytes, prev.rx_bytes),
            rx_errors: d(self.rx_errors, prev.rx_errors),
            tx_bytes: d(self.tx_bytes, prev.tx_bytes),
            tx_errors: d(self.tx_errors, prev.tx_errors),
        }
    }
}

/// Whether an interface is worth reporting: not loopback, not a container's veth end.
pub fn is_reported_interface(name: &str) -> bool {
    name != "lo" && !name.starts_with("veth")
}

/// One line of `/proc/net/wireless`: `(interface, link quality in percent, signal in dBm)`.
/// Link quality is out of 70 on the common drivers (brcmfmac on the Pi, iwlwifi).
pub fn parse_wireless(text: &str) -> impl Iterator<Item = (&str, u8, i16)> {
    text.lines().filter_map(|line| {
        let (name, rest) = line.split_once(':')?;
        let mut f = rest.split_ascii_whitespace();
        let _status = f.next()?;
        let link: f32 = f.next()?.trim_end_matches('.').parse().ok()?;
        let level: f32 = f.next()?.trim_end_matches('.').parse().ok()?;
        let quality = (link * 100.0 / 70.0).clamp(0.0, 100.0) as u8;
        Some((name.trim(), quality, level as i16))
    })
}

/// One mount of `/proc/mounts`: `(device, mount point, filesystem type)`, with the octal escapes
/// of the mount point (`\040` for a space) left as they are.
pub fn parse_mounts(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        Some((f.next()?, f.next()?, f.next()?))
    })
}

/// What the agent reads from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat<'a> {
    /// Process id.
    pub pid: u32,
    /// Command name (at most 15 bytes, as the kernel keeps it).
    pub comm: &'a str,
    /// User plus system time, in clock ticks.
    pub ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name may hold spaces and parentheses, so it is taken
/// between the first `(` and the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<ProcStat<'_>> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?;
    // Fields after the name, counted from 3 (state) as in proc(5).
    let mut f = text.get(close + 1..)?.split_ascii_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?; // field 14
    let stime: u64 = f.next()?.parse().ok()?; // field 15
    let rss_pages: u64 = f.nth(8)?.parse().ok()?; // field 24
    Some(ProcStat {
        pid,
        comm,
        ticks: utime + stime,
        rss_pages,
    })
}

/// Parses the firmware's `get_throttled` value (`0x50005`, or decimal on some kernels).
pub fn parse_throttled(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/stat` of a Raspberry Pi 4 (four cores), cut after the CPU lines.
    const PI4_STAT_A: &str = "cpu  91436 12 41329 6931571 2810 0 1203 0 0 0
cpu0 22864 3 10520 1732309 723 0 612 0 0 0
cpu1 22903 2 10266 1733110 679 0 222 0 0 0
intr 40000 0 0
";
    const PI4_STAT_B: &str = "cpu  91536 12 41379 6931871 2860 0 1203 0 0 0
cpu0 22890 3 10530 1732380 740 0 612 0 0 0
";

    #[test]
    fn cpu_shares_from_two_pi_readings() {
        let a = parse_stat_total(PI4_STAT_A).unwrap();
        let b = parse_stat_total(PI4_STAT_B).unwrap();
        assert_eq!(a.user, 91448);
        assert_eq!(a.system, 41329 + 1203);
        // Interval: user +100, system +50, idle +300, iowait +50 = 500 ticks.
        assert_eq!(cpu_shares(&a, &b), (3000, 2000, 1000, 1000));
    }

    #[test]
    fn cpu_shares_without_time_passing_are_zero() {
        let a = parse_stat_total(PI4_STAT_A).unwrap();
        assert_eq!(cpu_shares(&a, &a), (0, 0, 0, 0));
        // A counter going backwards (wrap, hotplug) must not underflow.
        assert_eq!(
            cpu_shares(&parse_stat_total(PI4_STAT_B).unwrap(), &a),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn old_kernel_stat_and_garbage() {
        let old = parse_stat_total("cpu 10 0 5 85\n").unwrap();
        assert_eq!((old.user, old.system, old.idle, old.iowait), (10, 5, 85, 0));
        assert_eq!(parse_stat_total(""), None);
        assert_eq!(parse_stat_total("cpu x y z\n"), None);
        assert_eq!(parse_stat_total("cpu0 1 2 3 4\n"), None);
    }

    /// `/proc/diskstats` of a Raspberry Pi with an SD card (kernel 6.x: 20 fields).
    const PI_DISKSTATS: &str = "   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       0 loop0 55 0 2166 19 0 0 0 0 0 40 19 0 0 0 0 0 0
 179       0 mmcblk0 14890 5243 1149382 88514 9871 8712 390116 150336 0 73608 238851 0 0 0 0 0 0
 179       1 mmcblk0p1 150 363 10432 331 1 0 1 0 0 203 331 0 0 0 0 0 0
 short line
";

    #[test]
    fn diskstats_of_a_pi() {
        let disks: Vec<_> = parse_diskstats(PI_DISKSTATS).collect();
        assert_eq!(disks.len(), 4);
        assert_eq!(
            disks[2],
            DiskCounters {
                name: "mmcblk0",
                read_bytes: 1_149_382 * 512,
                written_bytes: 390_116 * 512,
            }
        );
        let reported: Vec<_> = disks
            .iter()
            .filter(|d| is_reported_disk(d.name))
            .map(|d| d.name)
            .collect();
        assert_eq!(reported, ["mmcblk0", "mmcblk0p1"]);
    }
}
