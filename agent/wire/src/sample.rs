//! The periodic sample: everything an agent measures in one interval.
//!
//! Units are fixed-point integers so that the encoding is exact and compact (postcard writes
//! integers as varints): percentages in hundredths of a percent (`10000` = 100 %), load averages
//! in hundredths, temperatures in millidegrees Celsius (as Linux reports them), sizes in bytes and
//! rates in bytes per second.

use heapless::{String, Vec};
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// Most CPU cores reported one by one.
pub const MAX_CORES: usize = 16;
/// Most filesystems in one sample.
pub const MAX_FILESYSTEMS: usize = 8;
/// Most block devices in one sample.
pub const MAX_DISKS: usize = 8;
/// Most network interfaces in one sample.
pub const MAX_INTERFACES: usize = 8;
/// Most temperature sensors in one sample.
pub const MAX_SENSORS: usize = 8;
/// Most processes in each top list.
pub const MAX_TOP: usize = 5;
/// Most watched processes.
pub const MAX_WATCHED: usize = 8;
/// Most network probe targets.
pub const MAX_PROBES: usize = 4;

/// A short name: a device, an interface, a process.
pub type ShortName = String<16>;

/// One measurement of a host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, MaxSize)]
pub struct Sample {
    /// Per-agent sequence number, +1 per sample since the agent started; gaps and repeats tell the
    /// collector what was lost or sent twice.
    pub seq: u64,
    /// When the sample was taken: milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Seconds since the host booted.
    pub uptime_s: u64,
    /// CPU use.
    pub cpu: Cpu,
    /// Load averages.
    pub load: Load,
    /// Memory and swap.
    pub memory: Memory,
    /// Usage of real (not pseudo) filesystems.
    pub filesystems: Vec<Filesystem, MAX_FILESYSTEMS>,
    /// I/O rates of block devices.
    pub disks: Vec<DiskIo, MAX_DISKS>,
    /// Traffic of network interfaces.
    pub networks: Vec<NetIo, MAX_INTERFACES>,
    /// Temperatures by sensor. A sensor that could not be read is absent, never 0 °C.
    pub temperatures: Vec<Temperature, MAX_SENSORS>,
    /// Raspberry Pi throttling flags (firmware `get_throttled` bits), where the board has them.
    pub throttled: Option<u32>,
    /// Processes using the most CPU, busiest first.
    pub top_cpu: Vec<Process, MAX_TOP>,
    /// Processes using the most memory, largest first.
    pub top_memory: Vec<Process, MAX_TOP>,
    /// Processes on the agent's watch-list and how many instances run.
    pub watched: Vec<Watched, MAX_WATCHED>,
    /// Results of the agent's network probes.
    pub probes: Vec<Probe, MAX_PROBES>,
    /// Samples the agent has dropped since it started because its send buffer was full.
    pub dropped: u32,
}

/// CPU use over the last interval, in hundredths of a percent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, MaxSize)]
pub struct Cpu {
    /// All cores together, not idle.
    pub busy: u16,
    /// All cores together, user time (including nice).
    pub user: u16,
    /// All cores together, system time (including irq and softirq).
    pub system: u16,
    /// All cores together, waiting for I/O.
    pub iowait: u16,
    /// Each core, not idle, in core order.
    pub cores: Vec<u16, MAX_CORES>,
}

/// Load averages in hundredths (`150` = 1.50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Load {
    /// Over one minute.
    pub one: u32,
    /// Over five minutes.
    pub five: u32,
    /// Over fifteen minutes.
    pub fifteen: u32,
}

/// Memory and swap in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Memory {
    /// Installed memory the kernel can use.
    pub total: u64,
    /// In use: total less available.
    pub used: u64,
    /// Available for new work without swapping (`MemAvailable`).
    pub available: u64,
    /// Page cache.
    pub cached: u64,
    /// Swap space.
    pub swap_total: u64,
    /// Swap in use.
    pub swap_used: u64,
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Filesystem {
    /// Where it is mounted.
    pub mount: String<32>,
    /// Size in bytes.
    pub total: u64,
    /// Used bytes.
    pub used: u64,
}

/// I/O rates of one block device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct DiskIo {
    /// Device name (`mmcblk0`, `sda`).
    pub device: ShortName,
    /// Bytes read per second.
    pub read_bps: u64,
    /// Bytes written per second.
    pub write_bps: u64,
}

/// Traffic of one network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct NetIo {
    /// Interface name (`eth0`, `wlan0`).
    pub interface: ShortName,
    /// Bytes received per second.
    pub rx_bps: u64,
    /// Bytes sent per second.
    pub tx_bps: u64,
    /// Receive errors in the interval.
    pub rx_errors: u32,
    /// Send errors in the interval.
    pub tx_errors: u32,
    /// Wireless link, for Wi-Fi interfaces.
    pub wifi: Option<Wifi>,
}

/// A wireless link's state (`/proc/net/wireless`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Wifi {
    /// Signal level in dBm.
    pub signal_dbm: i16,
    /// Link quality in percent.
    pub quality: u8,
}

/// One temperature sensor.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Temperature {
    /// Sensor name (`cpu_thermal`, `coretemp Package id 0`).
    pub sensor: String<24>,
    /// Millidegrees Celsius.
    pub millicelsius: i32,
}

/// One process in a top list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Command name, cut to 16 bytes.
    pub name: ShortName,
    /// CPU use in hundredths of a percent of one core (may exceed 10000 on several cores).
    pub cpu: u32,
    /// Resident memory in bytes.
    pub memory: u64,
}

/// One process on the watch-list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Watched {
    /// The watched name.
    pub name: ShortName,
    /// How many processes of that name run; 0 means absent.
    pub instances: u16,
}

/// One network probe's result over the interval.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Probe {
    /// The target as configured (`192.168.1.1`, `example.org:443`).
    pub target: String<32>,
    /// Round-trip time in microseconds; `None` when no reply came.
    pub rtt_us: Option<u32>,
    /// Loss in hundredths of a percent.
    pub loss: u16,
}
