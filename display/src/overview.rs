//! The overview screen: the host at a glance on a 128x64 monochrome panel.
//!
//! ```text
//! ┌──────────────────────────────┐
//! │▓ kitchen-pi ▓▓▓▓▓▓▓▓▓▓▓▓▓▓▓▓▓│  title bar: hostname, inverted
//! │IP 192.168.1.42               │
//! │CPU  [█████           ]   23% │
//! │MEM  [██████████      ]   61% │
//! │DISK [███████         ]   38% │
//! │51.2°C               up 3d 4h │
//! │▼ 1.2M/s          ▲ 340K/s    │  network, all interfaces together
//! └──────────────────────────────┘
//! ```
//!
//! [`Overview`] is the model, [`draw`] renders it on any [`DrawTarget`]. It is the overview
//! page of [`crate::pages`] on a 128x64 panel, for callers that have these figures but no
//! [`Sample`] (a microcontroller's firmware): values past the default warning thresholds
//! ([`Settings::default`]) are shown inverse. Nothing here allocates.

use embedded_graphics::draw_target::{DrawTarget, DrawTargetExt};
use embedded_graphics::geometry::{Point, Size};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::primitives::Rectangle;
use ember_wire::{Sample, HOST_ID_MAX_LEN};
use heapless::String;

use crate::format::ratio;
use crate::layout::Layout;
use crate::settings::Settings;

/// The screen's size in pixels: it draws inside `(0, 0)..(128, 64)` and nowhere else.
pub const SIZE: Size = Size::new(128, 64);

/// What the overview screen shows. Build it with [`Overview::from_sample`], or fill the fields
/// directly (a dashboard mirror, a test).
///
/// Units follow the wire ([`ember_wire::sample`]): hundredths of a percent, millidegrees Celsius,
/// bytes per second, seconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overview {
    /// Host name as shown in the title bar; longer names are cut when drawn.
    pub host: String<HOST_ID_MAX_LEN>,
    /// The host's IPv4 address, if it has one.
    pub ipv4: Option<[u8; 4]>,
    /// CPU busy, all cores together. Values above 100 % are shown as they are, with a full bar.
    pub cpu: u16,
    /// Memory in use; `None` when the total is unknown.
    pub memory: Option<u16>,
    /// Use of the root filesystem (the largest one when `/` is not reported); `None` without one.
    pub disk: Option<u16>,
    /// The hottest sensor; `None` when no sensor was read (shown as `--`, never as 0 °C).
    pub temperature: Option<i32>,
    /// Received, all interfaces together.
    pub rx_bps: u64,
    /// Sent, all interfaces together.
    pub tx_bps: u64,
    /// Seconds since boot.
    pub uptime_s: u64,
}

impl Overview {
    /// The model for `host` at `ip` from one sample. Never panics, whatever the values.
    ///
    /// `host` is cut to [`HOST_ID_MAX_LEN`] bytes (at a character boundary) and control
    /// characters in it become `?`.
    pub fn from_sample(host: &str, ip: Option<[u8; 4]>, sample: &Sample) -> Self {
        let mut name = String::new();
        for c in host.chars() {
            let c = if c.is_control() { '?' } else { c };
            if name.push(c).is_err() {
                break;
            }
        }

        let filesystem = sample
            .filesystems
            .iter()
            .find(|fs| fs.mount == "/")
            .or_else(|| sample.filesystems.iter().max_by_key(|fs| fs.total));

        let (rx_bps, tx_bps) = sample.networks.iter().fold((0u64, 0u64), |(rx, tx), n| {
            (rx.saturating_add(n.rx_bps), tx.saturating_add(n.tx_bps))
        });

        Overview {
            host: name,
            ipv4: ip,
            cpu: sample.cpu.busy,
            memory: ratio(sample.memory.used, sample.memory.total),
            disk: filesystem.and_then(|fs| ratio(fs.used, fs.total)),
            temperature: sample.temperatures.iter().map(|t| t.millicelsius).max(),
            rx_bps,
            tx_bps,
            uptime_s: sample.uptime_s,
        }
    }
}

/// Draws `model` on `target`, inside the top-left 128x64 pixels (see [`SIZE`]); it first
/// clears that area. Nothing is drawn outside it, whatever the model holds.
pub fn draw<D>(model: &Overview, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    let mut d = target.clipped(&Rectangle::new(Point::zero(), SIZE));
    let layout = Layout::for_size(SIZE);
    crate::pages::draw_overview(model, &Settings::default(), &layout, &mut d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{Filesystem, NetIo, Temperature};

    fn s(text: &str) -> String<32> {
        String::from(text)
    }

    #[test]
    fn model_from_sample() {
        let mut sample = Sample {
            uptime_s: 42,
            ..Sample::default()
        };
        sample.cpu.busy = 2_345;
        sample.memory.total = 4_000;
        sample.memory.used = 1_000;
        for (mount, total, used) in [
            ("/boot", 500, 100),
            ("/data", 9_000, 900),
            ("/", 1_000, 500),
        ] {
            let fs = Filesystem {
                mount: s(mount),
                total,
                used,
            };
            sample.filesystems.push(fs).unwrap();
        }
        for (rx, tx) in [(100, 10), (u64::MAX, 5)] {
            let net = NetIo {
                rx_bps: rx,
                tx_bps: tx,
                ..NetIo::default()
            };
            sample.networks.push(net).unwrap();
        }
        for m in [45_000, 61_500, -3_000] {
            let t = Temperature {
                sensor: String::new(),
                millicelsius: m,
            };
            sample.temperatures.push(t).unwrap();
        }

        let model = Overview::from_sample("pi\n4", Some([10, 0, 0, 7]), &sample);
        assert_eq!(
            model,
            Overview {
                host: s("pi?4"),
                ipv4: Some([10, 0, 0, 7]),
                cpu: 2_345,
                memory: Some(2_500),
                disk: Some(5_000),
                temperature: Some(61_500),
                rx_bps: u64::MAX,
                tx_bps: 15,
                uptime_s: 42,
            }
        );

        // Without "/", the largest filesystem counts.
        sample.filesystems.pop();
        assert_eq!(Overview::from_sample("", None, &sample).disk, Some(1_000));
    }

    #[test]
    fn absent_values_stay_absent() {
        let model = Overview::from_sample("pi", None, &Sample::default());
        assert_eq!(model.temperature, None, "no sensor is not 0 °C");
        assert_eq!(model.memory, None);
        assert_eq!(model.disk, None);
        assert_eq!(model.ipv4, None);
    }

    #[test]
    fn long_hostnames_are_cut_on_a_character_boundary() {
        let host = "é".repeat(20); // 40 bytes
        let model = Overview::from_sample(&host, None, &Sample::default());
        assert_eq!(model.host, *"é".repeat(16));
    }
}
