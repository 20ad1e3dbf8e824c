//! Fixed-capacity histories for sparklines.
//!
//! A [`History`] keeps the newest `N` values in a ring: when it is full, a push drops the oldest
//! value, which is what a sparkline wants (its width is its capacity). [`Histories`] holds what
//! the pages draw as sparklines, fed one [`Sample`] at a time.

use ember_wire::sample::{ShortName, MAX_INTERFACES};
use ember_wire::Sample;
use heapless::Vec;

/// How many samples each sparkline keeps: over two and a half minutes at the default 1 s
/// interval; one pixel each across a 128- or 160-pixel panel, two across 240 or 320.
pub const HISTORY_LEN: usize = 160;

/// The newest `N` values, oldest dropped first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History<const N: usize> {
    values: [u32; N],
    /// Index of the oldest value.
    start: usize,
    len: usize,
    /// Values pushed since the start (wrapping), so that a value keeps its place on a sweeping
    /// sparkline.
    pushed: usize,
}

impl<const N: usize> History<N> {
    /// An empty history.
    pub const fn new() -> Self {
        History {
            values: [0; N],
            start: 0,
            len: 0,
            pushed: 0,
        }
    }

    /// Values pushed since the start (wrapping at `usize::MAX`).
    pub fn pushed(&self) -> usize {
        self.pushed
    }

    /// Appends `value`; when full, the oldest value is dropped to make room.
    pub fn push(&mut self, value: u32) {
        if N == 0 {
            return;
        }
        self.pushed = self.pushed.wrapping_add(1);
        if self.len < N {
            self.values[(self.start + self.len) % N] = value;
            self.len += 1;
        } else {
            self.values[self.start] = value;
            self.start = (self.start + 1) % N;
        }
    }

    /// How many values are kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The newest value.
    pub fn last(&self) -> Option<u32> {
        self.len.checked_sub(1).map(|i| self.get(i))
    }

    /// The largest value kept, 0 when empty.
    pub fn max(&self) -> u32 {
        self.iter().max().unwrap_or(0)
    }

    /// The values, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + ExactSizeIterator + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    /// The newest `n` values (or all, if fewer), oldest first.
    pub fn newest(&self, n: usize) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.iter().skip(self.len.saturating_sub(n))
    }

    fn get(&self, i: usize) -> u32 {
        self.values[(self.start + i) % N]
    }
}

impl<const N: usize> Default for History<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Received and sent rates of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceHistory {
    /// The interface's name.
    pub interface: ShortName,
    /// Bytes received per second (saturated at `u32::MAX`, 4 GiB/s).
    pub rx: History<HISTORY_LEN>,
    /// Bytes sent per second.
    pub tx: History<HISTORY_LEN>,
}

/// Everything the pages draw as sparklines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Histories {
    /// CPU busy, all cores, in hundredths of a percent.
    pub cpu: History<HISTORY_LEN>,
    /// The hottest sensor in millidegrees Celsius (0 below 0 °C; nothing pushed without a
    /// sensor).
    pub hottest: History<HISTORY_LEN>,
    /// One entry per interface of the latest sample, in its order.
    pub interfaces: Vec<InterfaceHistory, MAX_INTERFACES>,
}

impl Histories {
    /// Empty histories.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one sample. Interfaces that are no longer reported are forgotten; new ones start
    /// empty.
    pub fn record(&mut self, sample: &Sample) {
        self.cpu.push(u32::from(sample.cpu.busy));
        if let Some(t) = sample.temperatures.iter().map(|t| t.millicelsius).max() {
            self.hottest.push(u32::try_from(t).unwrap_or(0));
        }
        self.interfaces
            .retain(|h| sample.networks.iter().any(|n| n.interface == h.interface));
        for net in &sample.networks {
            let i = match self
                .interfaces
                .iter()
                .position(|h| h.interface == net.interface)
            {
                Some(i) => i,
                None => {
                    let fresh = InterfaceHistory {
                        interface: net.interface.clone(),
                        ..InterfaceHistory::default()
                    };
                    // Never full: at most MAX_INTERFACES are reported and the rest were dropped.
                    if self.interfaces.push(fresh).is_err() {
                        continue;
                    }
                    self.interfaces.len() - 1
                }
            };
            let h = &mut self.interfaces[i];
            h.rx.push(u32::try_from(net.rx_bps).unwrap_or(u32::MAX));
            h.tx.push(u32::try_from(net.tx_bps).unwrap_or(u32::MAX));
        }
    }

    /// The history of `interface`, if it is reported.
    pub fn interface(&self, interface: &str) -> Option<&InterfaceHistory> {
        self.interfaces.iter().find(|h| h.interface == interface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{NetIo, Temperature};

    #[test]
    fn ring_drops_the_oldest_when_full() {
        let mut h = History::<3>::new();
        assert!(h.is_empty());
        assert_eq!(h.last(), None);
        assert_eq!(h.max(), 0);
        for v in 1..=5 {
            h.push(v);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.iter().collect::<std::vec::Vec<_>>(), [3, 4, 5]);
        assert_eq!(h.newest(2).collect::<std::vec::Vec<_>>(), [4, 5]);
        assert_eq!(h.newest(10).collect::<std::vec::Vec<_>>(), [3, 4, 5]);
        assert_eq!(h.last(), Some(5));
        assert_eq!(h.max(), 5);
        let mut empty = History::<0>::new();
        empty.push(1);
        assert!(empty.is_empty());
    }

    #[test]
    fn records_samples_and_follows_interfaces() {
        let mut hs = Histories::new();
        let mut sample = Sample::default();
        sample.cpu.busy = 1234;
        for (name, rx) in [("eth0", 10), ("wlan0", u64::MAX)] {
            let net = NetIo {
                interface: name.into(),
                rx_bps: rx,
                ..NetIo::default()
            };
            sample.networks.push(net).unwrap();
        }
        hs.record(&sample);
        assert_eq!(hs.cpu.last(), Some(1234));
        assert!(hs.hottest.is_empty(), "no sensor, no temperature history");
        assert_eq!(hs.interface("eth0").unwrap().rx.last(), Some(10));
        assert_eq!(hs.interface("wlan0").unwrap().rx.last(), Some(u32::MAX));

        sample.networks.remove(0);
        let t = Temperature {
            sensor: Default::default(),
            millicelsius: -5_000,
        };
        sample.temperatures.push(t).unwrap();
        hs.record(&sample);
        assert!(
            hs.interface("eth0").is_none(),
            "gone interfaces are forgotten"
        );
        assert_eq!(hs.interface("wlan0").unwrap().rx.len(), 2);
        assert_eq!(hs.hottest.last(), Some(0));
    }
}
