//! Host inventory: what the host is, sent retained at start and when it changes.

use heapless::{String, Vec};
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::sample::{ShortName, MAX_DISKS, MAX_INTERFACES};

/// Most addresses of each family per interface.
pub const MAX_ADDRESSES: usize = 2;

/// What a host is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct HostInfo {
    /// The host's name as the OS knows it (the host id is derived from it unless configured).
    pub hostname: String<32>,
    /// Board model from the device tree (`Raspberry Pi 4 Model B Rev 1.4`); empty when unknown.
    pub board: String<48>,
    /// OS name and version (`Debian GNU/Linux 12 (bookworm)`).
    pub os: String<48>,
    /// Kernel release.
    pub kernel: String<32>,
    /// CPU architecture (`aarch64`).
    pub arch: String<16>,
    /// CPU model.
    pub cpu_model: String<48>,
    /// Logical CPU count.
    pub cpu_cores: u16,
    /// Installed memory in bytes.
    pub memory: u64,
    /// Block devices.
    pub disks: Vec<DiskInfo, MAX_DISKS>,
    /// Network interfaces.
    pub interfaces: Vec<Interface, MAX_INTERFACES>,
    /// The agent's version.
    pub agent_version: String<16>,
    /// When the host booted, seconds since the Unix epoch.
    pub boot_time_s: u64,
}

/// A block device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct DiskInfo {
    /// Device name.
    pub name: ShortName,
    /// Size in bytes.
    pub size: u64,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Interface {
    /// Interface name.
    pub name: ShortName,
    /// Hardware address, where it has one.
    pub mac: Option<[u8; 6]>,
    /// IPv4 addresses.
    pub ipv4: Vec<[u8; 4], MAX_ADDRESSES>,
    /// IPv6 addresses.
    pub ipv6: Vec<[u8; 16], MAX_ADDRESSES>,
}
