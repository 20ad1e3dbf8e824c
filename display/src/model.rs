//! What the pages show: one sample, its histories, the fleet, and the alert they raise.

use core::fmt::Write;

use ember_wire::{Sample, HOST_ID_MAX_LEN};
use heapless::String;

use crate::format::{percent, ratio, temperature};
use crate::history::Histories;
use crate::settings::{Level, Settings};

/// One host of the fleet as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetHost {
    /// The host's id.
    pub name: String<HOST_ID_MAX_LEN>,
    /// Whether it is online.
    pub up: bool,
}

impl FleetHost {
    /// `name` (cut to [`HOST_ID_MAX_LEN`] bytes) and whether it is up.
    pub fn new(name: &str, up: bool) -> Self {
        let mut n = String::new();
        for c in name.chars() {
            if n.push(c).is_err() {
                break;
            }
        }
        FleetHost { name: n, up }
    }
}

/// Everything any page draws. Borrowed: the caller owns the sample and the histories.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    /// This host's name.
    pub host: &'a str,
    /// This host's IPv4 address, if it has one.
    pub ipv4: Option<[u8; 4]>,
    /// The latest sample.
    pub sample: &'a Sample,
    /// Sparkline histories, fed with the same samples.
    pub history: &'a Histories,
    /// Hosts known to the collector; empty when the agent has no fleet view.
    pub fleet: &'a [FleetHost],
}

/// The raspberry Pi firmware's `get_throttled` bits that matter now.
const UNDER_VOLTAGE_NOW: u32 = 1 << 0;
const THROTTLED_NOW: u32 = 1 << 2;

/// What the alert banner says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The message, short: `HOT 82.1°C`, `MEM 93%`, `DOWN pi-3 +1`.
    pub text: String<32>,
}

/// The most severe critical condition of `model`, if any; `+N` counts the others.
///
/// In order: a critical temperature, the Pi's under-voltage or throttling, memory, a disk, CPU,
/// then hosts of the fleet that are down. Only critical values raise the banner; warnings are
/// shown where the value is.
pub fn alert(model: &Model<'_>, settings: &Settings) -> Option<Alert> {
    let t = &settings.thresholds;
    let s = model.sample;
    let mut found: heapless::Vec<String<32>, 8> = heapless::Vec::new();
    let mut add = |text: String<32>| {
        let _ = found.push(text);
    };

    if let Some(hot) = s.temperatures.iter().map(|t| t.millicelsius).max() {
        if t.temperature.level(hot) == Level::Crit {
            let mut m = String::new();
            let _ = write!(
                m,
                "HOT {}",
                temperature(Some(hot), settings.temperature_unit)
            );
            add(m);
        }
    }
    if let Some(flags) = s.throttled {
        if flags & UNDER_VOLTAGE_NOW != 0 {
            add(crate::format::cut_chars("UNDER-VOLTAGE", 32));
        } else if flags & THROTTLED_NOW != 0 {
            add(crate::format::cut_chars("THROTTLED", 32));
        }
    }
    if let Some(mem) = ratio(s.memory.used, s.memory.total) {
        if t.memory.level(mem) == Level::Crit {
            let mut m = String::new();
            let _ = write!(m, "MEM {}", percent(Some(mem)));
            add(m);
        }
    }
    if let Some((fs, used)) = s
        .filesystems
        .iter()
        .filter_map(|fs| ratio(fs.used, fs.total).map(|r| (fs, r)))
        .filter(|(_, r)| t.disk.level(*r) == Level::Crit)
        .max_by_key(|(_, r)| *r)
    {
        let mut m = String::new();
        let mount: String<16> = crate::format::cut_chars(&fs.mount, 16);
        let _ = write!(m, "FULL {mount} {}", percent(Some(used)));
        add(m);
    }
    if t.cpu.level(s.cpu.busy) == Level::Crit {
        let mut m = String::new();
        let _ = write!(m, "CPU {}", percent(Some(s.cpu.busy)));
        add(m);
    }
    let mut down = model.fleet.iter().filter(|h| !h.up);
    if let Some(first) = down.next() {
        let mut m = String::new();
        let _ = write!(m, "DOWN {}", first.name);
        let more = down.count();
        if more > 0 {
            let _ = write!(m, " +{more}");
        }
        add(m);
    }

    let first = found.first()?;
    let mut text: String<32> = String::new();
    let more = found.len() - 1;
    let _ = text.push_str(first);
    if more > 0 {
        let mut tail: String<8> = String::new();
        let _ = write!(tail, " +{more}");
        // Keep the count visible even when the message fills the string.
        while text.len() + tail.len() > 32 {
            text.pop();
        }
        let _ = text.push_str(&tail);
    }
    Some(Alert { text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{Filesystem, Temperature};

    fn model<'a>(s: &'a Sample, h: &'a Histories, fleet: &'a [FleetHost]) -> Model<'a> {
        Model {
            host: "pi",
            ipv4: None,
            sample: s,
            history: h,
            fleet,
        }
    }

    #[test]
    fn quiet_host_raises_no_alert() {
        let (s, h) = (Sample::default(), Histories::new());
        assert_eq!(alert(&model(&s, &h, &[]), &Settings::default()), None);
        let fleet = [FleetHost::new("a", true)];
        assert_eq!(alert(&model(&s, &h, &fleet), &Settings::default()), None);
    }

    #[test]
    fn most_severe_first_and_the_rest_counted() {
        let mut s = Sample::default();
        let h = Histories::new();
        s.cpu.busy = 9_900;
        s.memory.total = 100;
        s.memory.used = 95;
        let t = Temperature {
            sensor: Default::default(),
            millicelsius: 85_000,
        };
        s.temperatures.push(t).unwrap();
        let fs = Filesystem {
            mount: "/".into(),
            total: 100,
            used: 99,
        };
        s.filesystems.push(fs).unwrap();
        let fleet = [
            FleetHost::new("a", false),
            FleetHost::new("b", true),
            FleetHost::new("c", false),
        ];
        let settings = Settings::default();
        let a = alert(&model(&s, &h, &fleet), &settings).unwrap();
        assert_eq!(a.text, "HOT 85.0°C +4");

        s.temperatures.clear();
        s.throttled = Some(0x5_0005);
        let a = alert(&model(&s, &h, &[]), &settings).unwrap();
        assert_eq!(a.text, "UNDER-VOLTAGE +3");
        s.throttled = Some(0);
        s.memory.used = 0;
        s.cpu.busy = 0;
        assert_eq!(
            alert(&model(&s, &h, &[]), &settings).unwrap().text,
            "FULL / 99%"
        );
        s.filesystems.clear();
        let a = alert(&model(&s, &h, &fleet), &settings).unwrap();
        assert_eq!(a.text, "DOWN a +1");
    }

    #[test]
    fn long_messages_keep_their_count() {
        let mut s = Sample::default();
        let h = Histories::new();
        let fs = Filesystem {
            mount: "/a/very/long/mount/point/here/xx".into(),
            total: 1,
            used: 1,
        };
        s.filesystems.push(fs).unwrap();
        s.cpu.busy = u16::MAX;
        let a = alert(&model(&s, &h, &[]), &Settings::default()).unwrap();
        assert_eq!(a.text, "FULL /a/very/long/mo~ 100% +1");
    }
}
