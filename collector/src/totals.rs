//! Counters the collector adds up from the agents' rates (issue #23): the wire carries rates over
//! the agent's last interval (bytes per second, CPU in hundredths of a percent, errors in the
//! interval), which Prometheus cannot turn into `rate()` at another scrape interval.
//!
//! Each stored sample adds its rate times its own interval (the time since the host's previous
//! sample when the sequence numbers follow, else the interval the agent announced), per host and
//! series. Totals live in memory only: they start at 0 when the collector starts (Prometheus
//! handles counter resets) and go on across gaps. A series missing from a sample is dropped, so a
//! host holds at most the series of one sample.

use ember_wire::Sample;

/// What a total counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Bytes received per interface.
    NetReceive,
    /// Bytes sent per interface.
    NetTransmit,
    /// Receive errors per interface.
    NetReceiveErrors,
    /// Send errors per interface.
    NetTransmitErrors,
    /// Bytes read per block device.
    DiskRead,
    /// Bytes written per block device.
    DiskWritten,
    /// CPU seconds, all cores together, per mode.
    CpuSeconds,
}

impl Total {
    /// Prometheus name, its label's name and help.
    pub fn family(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Total::NetReceive => (
                "ember_network_receive_bytes_total",
                "interface",
                "Network bytes received (added up by the collector from the agent's rates)",
            ),
            Total::NetTransmit => (
                "ember_network_transmit_bytes_total",
                "interface",
                "Network bytes sent (added up by the collector from the agent's rates)",
            ),
            Total::NetReceiveErrors => (
                "ember_network_receive_errors_total",
                "interface",
                "Network receive errors (added up by the collector)",
            ),
            Total::NetTransmitErrors => (
                "ember_network_transmit_errors_total",
                "interface",
                "Network send errors (added up by the collector)",
            ),
            Total::DiskRead => (
                "ember_disk_read_bytes_total",
                "device",
                "Block device bytes read (added up by the collector from the agent's rates)",
            ),
            Total::DiskWritten => (
                "ember_disk_written_bytes_total",
                "device",
                "Block device bytes written (added up by the collector from the agent's rates)",
            ),
            Total::CpuSeconds => (
                "ember_cpu_seconds_total",
                "mode",
                "CPU seconds of all cores together by mode (added up by the collector)",
            ),
        }
    }
}

/// One host's totals in thousandths of their unit, in the order of its last sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals(Vec<(Total, String, u64)>);

impl Totals {
    /// Adds `s`, measured over `interval_ms`; series `s` lacks are dropped.
    pub fn add(&mut self, s: &Sample, interval_ms: u64) {
        let mut n = 0;
        // Bytes per second over `interval_ms` ms: thousandths of a byte.
        let over = |bps: u64| bps.saturating_mul(interval_ms);
        for i in &s.networks {
            let l = i.interface.as_str();
            self.put(&mut n, Total::NetReceive, l, over(i.rx_bps));
            self.put(&mut n, Total::NetTransmit, l, over(i.tx_bps));
            let errors = |e: u32| u64::from(e) * 1000;
            self.put(&mut n, Total::NetReceiveErrors, l, errors(i.rx_errors));
            self.put(&mut n, Total::NetTransmitErrors, l, errors(i.tx_errors));
        }
        for d in &s.disks {
            let l = d.device.as_str();
            self.put(&mut n, Total::DiskRead, l, over(d.read_bps));
            self.put(&mut n, Total::DiskWritten, l, over(d.write_bps));
        }
        // Hundredths of a percent of all cores: cores × ms × v / 10000 thousandths of a second,
        // over the cores the sample lists (at most `MAX_CORES`).
        let cores = s.cpu.cores.len() as u64;
        if cores > 0 {
            let seconds = |v: u16| cores * interval_ms * u64::from(v) / 10_000;
            for (mode, v) in [
                ("user", s.cpu.user),
                ("system", s.cpu.system),
                ("iowait", s.cpu.iowait),
            ] {
                self.put(&mut n, Total::CpuSeconds, mode, seconds(v));
            }
        }
        self.0.truncate(n);
    }

    /// Adds `milli` to the series at place `n`, bringing its total there from further on.
    fn put(&mut self, n: &mut usize, total: Total, label: &str, milli: u64) {
        let i = *n;
        let found = self.0[i..]
            .iter()
            .position(|(t, l, _)| *t == total && l == label);
        match found {
            Some(p) => self.0.swap(i, i + p),
            None => {
                self.0.push((total, label.to_string(), 0));
                let last = self.0.len() - 1;
                self.0.swap(i, last);
            }
        }
        let v = &mut self.0[i].2;
        *v = v.saturating_add(milli);
        *n += 1;
    }

    /// Every total: what it counts, its label's value and its value in its unit.
    pub fn iter(&self) -> impl Iterator<Item = (Total, &str, f64)> {
        self.0
            .iter()
            .map(|(t, l, v)| (*t, l.as_str(), *v as f64 / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{DiskIo, NetIo};

    fn sample(rx_bps: u64, rx_errors: u32) -> Sample {
        let mut s = Sample::default();
        s.networks
            .push(NetIo {
                interface: "eth0".into(),
                rx_bps,
                rx_errors,
                ..NetIo::default()
            })
            .unwrap();
        s.cpu.user = 2500;
        s.cpu.cores.extend([0, 0]);
        s
    }

    fn get(t: &Totals, total: Total, label: &str) -> Option<f64> {
        t.iter()
            .find(|(x, l, _)| *x == total && *l == label)
            .map(|(_, _, v)| v)
    }

    #[test]
    fn rates_times_intervals_add_up_and_absent_series_go() {
        let mut t = Totals::default();
        t.add(&sample(1000, 2), 5_000);
        t.add(&sample(300, 0), 2_500);
        assert_eq!(get(&t, Total::NetReceive, "eth0"), Some(5750.0));
        assert_eq!(get(&t, Total::NetReceiveErrors, "eth0"), Some(2.0));
        // A quarter of two cores for 7.5 s.
        assert_eq!(get(&t, Total::CpuSeconds, "user"), Some(3.75));
        assert_eq!(get(&t, Total::CpuSeconds, "system"), Some(0.0));
        // A disk appears before eth0: totals follow their series, not their place.
        let mut s = sample(100, 0);
        s.networks
            .insert(
                0,
                NetIo {
                    interface: "wlan0".into(),
                    tx_bps: 10,
                    ..NetIo::default()
                },
            )
            .unwrap();
        s.disks
            .push(DiskIo {
                device: "sda".into(),
                write_bps: 7,
                ..DiskIo::default()
            })
            .unwrap();
        t.add(&s, 1_000);
        assert_eq!(get(&t, Total::NetReceive, "eth0"), Some(5850.0));
        assert_eq!(get(&t, Total::NetTransmit, "wlan0"), Some(10.0));
        assert_eq!(get(&t, Total::DiskWritten, "sda"), Some(7.0));
        // eth0 goes: its totals go with it; nothing else grows.
        s.networks.remove(1);
        t.add(&s, 1_000);
        assert_eq!(get(&t, Total::NetReceive, "eth0"), None);
        assert_eq!(get(&t, Total::NetTransmit, "wlan0"), Some(20.0));
        assert_eq!(t.iter().count(), 4 + 2 + 3);
    }
}
