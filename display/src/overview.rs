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
//! [`Overview`] is the model, [`draw`] renders it on any [`DrawTarget`]. Numbers are formatted
//! into fixed-capacity strings; nothing here allocates.

use core::fmt::Write;

use embedded_graphics::draw_target::{DrawTarget, DrawTargetExt};
use embedded_graphics::geometry::{Point, Size};
use embedded_graphics::mono_font::{iso_8859_1, MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::primitives::{Primitive, PrimitiveStyle, Rectangle, Triangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyle, TextStyleBuilder};
use embedded_graphics::Drawable;
use ember_wire::{Sample, HOST_ID_MAX_LEN};
use heapless::String;

/// The screen's size in pixels: it draws inside `(0, 0)..(128, 64)` and nowhere else.
pub const SIZE: Size = Size::new(128, 64);

/// 100 % in the wire's hundredths of a percent.
const FULL: u16 = 10_000;

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

/// `part / whole` in hundredths of a percent, at most 100 %; `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<u16> {
    if whole == 0 {
        return None;
    }
    let hundredths = (u128::from(part.min(whole)) * u128::from(FULL)) / u128::from(whole);
    // At most FULL, so it fits.
    Some(u16::try_from(hundredths).unwrap_or(FULL))
}

// Layout. All text but the title is FONT_5X7 (capitals 6 pixels high; its '.' is a plain dot,
// unlike FONT_5X8's), the title FONT_6X10. Ys are the top of each text line.
const SMALL: &MonoFont<'static> = &iso_8859_1::FONT_5X7;
const TITLE: &MonoFont<'static> = &iso_8859_1::FONT_6X10;
const TITLE_HEIGHT: u32 = 11;
const IP_Y: i32 = 13;
const BARS_Y: i32 = 22;
const BAR_PITCH: i32 = 9;
const BAR_X: i32 = 22;
const BAR_WIDTH: u32 = 82;
/// One row above and below the capitals beside it.
const BAR_HEIGHT: u32 = 8;
const STATUS_Y: i32 = 49;
const NET_Y: i32 = 57;
const RIGHT: i32 = SIZE.width as i32 - 1;

/// Draws `model` on `target`, inside the top-left 128x64 pixels (see [`SIZE`]); it first
/// clears that area. Nothing is drawn outside it, whatever the model holds.
pub fn draw<D>(model: &Overview, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    let mut d = target.clipped(&Rectangle::new(Point::zero(), SIZE));
    d.clear(BinaryColor::Off)?;

    let small = MonoTextStyle::new(SMALL, BinaryColor::On);
    let left = TextStyle::with_baseline(Baseline::Top);
    let right = TextStyleBuilder::new()
        .baseline(Baseline::Top)
        .alignment(Alignment::Right)
        .build();

    // Title bar: the hostname, dark on light, in the larger font when it fits.
    Rectangle::new(Point::zero(), Size::new(SIZE.width, TITLE_HEIGHT))
        .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
        .draw(&mut d)?;
    let (font, y) = if fits(&model.host, TITLE, SIZE.width - 4) {
        (TITLE, 1)
    } else {
        (SMALL, 2)
    };
    let host = cut(&model.host, font, SIZE.width - 4);
    Text::with_text_style(
        &host,
        Point::new(2, y),
        MonoTextStyle::new(font, BinaryColor::Off),
        left,
    )
    .draw(&mut d)?;

    let mut line: String<32> = String::new();
    match model.ipv4 {
        Some([a, b, c, e]) => {
            let _ = write!(line, "IP {a}.{b}.{c}.{e}");
        }
        None => {
            let _ = line.push_str("IP --");
        }
    }
    Text::with_text_style(&line, Point::new(0, IP_Y), small, left).draw(&mut d)?;

    let bars = [
        ("CPU", Some(model.cpu)),
        ("MEM", model.memory),
        ("DISK", model.disk),
    ];
    for (row, (label, value)) in (0..).zip(bars) {
        let y = BARS_Y + row * BAR_PITCH;
        Text::with_text_style(label, Point::new(0, y), small, left).draw(&mut d)?;
        bar(&mut d, Point::new(BAR_X, y - 1), value)?;
        Text::with_text_style(&percent(value), Point::new(RIGHT, y), small, right).draw(&mut d)?;
    }

    Text::with_text_style(
        &temperature(model.temperature),
        Point::new(0, STATUS_Y),
        small,
        left,
    )
    .draw(&mut d)?;
    Text::with_text_style(
        &uptime(model.uptime_s),
        Point::new(RIGHT, STATUS_Y),
        small,
        right,
    )
    .draw(&mut d)?;

    arrow(&mut d, Point::new(0, NET_Y), false)?;
    let mut rate: String<12> = String::new();
    let _ = write!(rate, "{}/s", Bytes(model.rx_bps));
    Text::with_text_style(&rate, Point::new(9, NET_Y), small, left).draw(&mut d)?;
    arrow(&mut d, Point::new(64, NET_Y), true)?;
    rate.clear();
    let _ = write!(rate, "{}/s", Bytes(model.tx_bps));
    Text::with_text_style(&rate, Point::new(73, NET_Y), small, left).draw(&mut d)?;

    Ok(())
}

/// A bar with its top-left corner at `at`: an outline, filled in proportion to `value` (capped
/// at 100 %). `None` leaves it empty.
fn bar<D>(d: &mut D, at: Point, value: Option<u16>) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    Rectangle::new(at, Size::new(BAR_WIDTH, BAR_HEIGHT))
        .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
        .draw(d)?;
    let inner = BAR_WIDTH - 4;
    let filled = u32::from(value.unwrap_or(0).min(FULL)) * inner / u32::from(FULL);
    if filled > 0 {
        Rectangle::new(at + Point::new(2, 2), Size::new(filled, BAR_HEIGHT - 4))
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(d)?;
    }
    Ok(())
}

/// An arrow 7 pixels wide and 6 high (as high as the capitals) with its top-left corner at `at`:
/// pointing up for sent, down for received.
fn arrow<D>(d: &mut D, at: Point, up: bool) -> Result<(), D::Error>
where
    D: DrawTarget<Color = BinaryColor>,
{
    let (tip, base) = if up { (0, 5) } else { (5, 0) };
    Triangle::new(
        at + Point::new(3, tip),
        at + Point::new(0, base),
        at + Point::new(6, base),
    )
    .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
    .draw(d)
}

/// Whether `text` fits in `width` pixels of `font`.
fn fits(text: &str, font: &MonoFont<'_>, width: u32) -> bool {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.saturating_mul(font.character_size.width + font.character_spacing) <= width
}

/// `text` cut to `width` pixels of `font`, ending in `~` where it was cut.
fn cut(text: &str, font: &MonoFont<'_>, width: u32) -> String<HOST_ID_MAX_LEN> {
    let mut out = String::new();
    let room = width / (font.character_size.width + font.character_spacing);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if text.chars().count() <= room {
        let _ = out.push_str(text);
    } else {
        for c in text.chars().take(room.saturating_sub(1)) {
            let _ = out.push(c);
        }
        let _ = out.push('~');
    }
    out
}

/// A percentage from hundredths, rounded to whole percent: `23%`, `--` when unknown.
fn percent(value: Option<u16>) -> String<8> {
    let mut s = String::new();
    match value {
        Some(v) => {
            let _ = write!(s, "{}%", (u32::from(v) + 50) / 100);
        }
        None => {
            let _ = s.push_str("--");
        }
    }
    s
}

/// A temperature from millidegrees: `51.2°C`, whole degrees from 100 °C (or -10 °C) on,
/// `--°C` when no sensor was read.
fn temperature(millicelsius: Option<i32>) -> String<16> {
    let mut s = String::new();
    let Some(m) = millicelsius else {
        let _ = s.push_str("--°C");
        return s;
    };
    let sign = if m < 0 { "-" } else { "" };
    let tenths = (m.unsigned_abs() + 50) / 100;
    if tenths >= 1000 || (m < 0 && tenths >= 100) {
        let _ = write!(s, "{sign}{}°C", (tenths + 5) / 10);
    } else if tenths == 0 {
        let _ = s.push_str("0.0°C");
    } else {
        let _ = write!(s, "{sign}{}.{}°C", tenths / 10, tenths % 10);
    }
    s
}

/// Time since boot, two units at most: `up 42s`, `up 17m`, `up 5h 12m`, `up 3d 4h`;
/// `up >9999d` past 27 years.
fn uptime(seconds: u64) -> String<16> {
    let mut s = String::new();
    let (d, h, m) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    let _ = match seconds {
        0..60 => write!(s, "up {seconds}s"),
        60..3600 => write!(s, "up {m}m"),
        3600..86_400 => write!(s, "up {h}h {m}m"),
        _ if d > 9999 => write!(s, "up >9999d"),
        _ if d >= 100 => write!(s, "up {d}d"),
        _ => write!(s, "up {d}d {h}h"),
    };
    s
}

/// Bytes in at most four characters, in binary units: `999B`, `9.9K`, `340K`, `1.2M` … `16E`.
struct Bytes(u64);

impl core::fmt::Display for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = u128::from(self.0);
        if v < 1000 {
            return write!(f, "{v}B");
        }
        let mut scale = 1u128;
        for unit in ['K', 'M', 'G', 'T', 'P', 'E'] {
            scale *= 1024;
            let tenths = (v * 10 + scale / 2) / scale;
            if tenths < 100 {
                return write!(f, "{}.{}{unit}", tenths / 10, tenths % 10);
            }
            let whole = (v + scale / 2) / scale;
            if whole < 1000 {
                return write!(f, "{whole}{unit}");
            }
        }
        // u64::MAX is 16E: the loop always returns before this.
        write!(f, "{}E", v / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{Filesystem, NetIo, Temperature};

    fn s(text: &str) -> String<32> {
        String::from(text)
    }

    #[test]
    fn formats_bytes() {
        let check = |v: u64, want: &str| assert_eq!(std::format!("{}", Bytes(v)), want, "{v}");
        check(0, "0B");
        check(999, "999B");
        check(1000, "1.0K");
        check(1024, "1.0K");
        check(10_188, "9.9K");
        check(10_189, "10K");
        check(340 * 1024, "340K");
        check(999 * 1024, "999K");
        check(1023 * 1024, "1.0M");
        check(1_258_291, "1.2M");
        check(5 << 30, "5.0G");
        check(u64::MAX, "16E");
    }

    #[test]
    fn formats_temperatures() {
        let check = |m: Option<i32>, want: &str| assert_eq!(temperature(m), want, "{m:?}");
        check(None, "--°C");
        check(Some(0), "0.0°C");
        check(Some(51_234), "51.2°C");
        check(Some(51_250), "51.3°C");
        check(Some(99_949), "99.9°C");
        check(Some(99_950), "100°C");
        check(Some(-40), "0.0°C");
        check(Some(-5_500), "-5.5°C");
        check(Some(-12_400), "-12°C");
        check(Some(i32::MAX), "2147484°C");
        check(Some(i32::MIN), "-2147484°C");
    }

    #[test]
    fn formats_uptime() {
        let check = |secs: u64, want: &str| assert_eq!(uptime(secs), want, "{secs}");
        check(0, "up 0s");
        check(59, "up 59s");
        check(60, "up 1m");
        check(3599, "up 59m");
        check(3600, "up 1h 0m");
        check(5 * 3600 + 12 * 60 + 7, "up 5h 12m");
        check(86_400, "up 1d 0h");
        check(3 * 86_400 + 4 * 3600, "up 3d 4h");
        check(100 * 86_400, "up 100d");
        check(9999 * 86_400, "up 9999d");
        check(10_000 * 86_400, "up >9999d");
        check(u64::MAX, "up >9999d");
    }

    #[test]
    fn formats_percentages() {
        assert_eq!(percent(None), "--");
        assert_eq!(percent(Some(0)), "0%");
        assert_eq!(percent(Some(2_349)), "23%");
        assert_eq!(percent(Some(2_350)), "24%");
        assert_eq!(percent(Some(10_000)), "100%");
        assert_eq!(percent(Some(u16::MAX)), "655%");
    }

    #[test]
    fn cuts_long_names() {
        assert_eq!(cut("kitchen-pi", TITLE, 124), "kitchen-pi");
        assert_eq!(cut(&"a".repeat(20), TITLE, 124), *"a".repeat(20));
        assert_eq!(cut(&"a".repeat(21), TITLE, 124), *("a".repeat(19) + "~"));
        assert_eq!(cut(&"a".repeat(32), SMALL, 124), *("a".repeat(23) + "~"));
        assert!(fits(&"a".repeat(20), TITLE, 124) && !fits(&"a".repeat(21), TITLE, 124));
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
    fn ratio_is_capped_and_exact() {
        assert_eq!(ratio(1, 0), None);
        assert_eq!(ratio(0, 1), Some(0));
        assert_eq!(ratio(u64::MAX, u64::MAX), Some(10_000));
        assert_eq!(ratio(u64::MAX, 1), Some(10_000));
        assert_eq!(ratio(u64::MAX / 3, u64::MAX), Some(3_333));
    }

    #[test]
    fn long_hostnames_are_cut_on_a_character_boundary() {
        let host = "é".repeat(20); // 40 bytes
        let model = Overview::from_sample(&host, None, &Sample::default());
        assert_eq!(model.host, *"é".repeat(16));
    }
}
