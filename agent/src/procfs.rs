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
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
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
