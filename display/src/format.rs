//! Numbers as the screens show them: short, fixed-capacity strings, never an allocation.

use core::fmt::Write;

use embedded_graphics::mono_font::MonoFont;
use heapless::String;

use crate::settings::{RateUnit, TemperatureUnit};

/// 100 % in the wire's hundredths of a percent.
pub(crate) const FULL: u16 = 10_000;

/// `part / whole` in hundredths of a percent, at most 100 %; `None` when `whole` is 0.
pub(crate) fn ratio(part: u64, whole: u64) -> Option<u16> {
    if whole == 0 {
        return None;
    }
    let hundredths = (u128::from(part.min(whole)) * u128::from(FULL)) / u128::from(whole);
    // At most FULL, so it fits.
    Some(u16::try_from(hundredths).unwrap_or(FULL))
}

/// Width in pixels of `chars` characters of `font`.
pub(crate) fn text_width(chars: usize, font: &MonoFont<'_>) -> u32 {
    let chars = u32::try_from(chars).unwrap_or(u32::MAX);
    chars.saturating_mul(font.character_size.width + font.character_spacing)
}

/// Whether `text` fits in `width` pixels of `font`.
pub(crate) fn fits(text: &str, font: &MonoFont<'_>, width: u32) -> bool {
    text_width(text.chars().count(), font) <= width
}

/// `text` cut to `width` pixels of `font`, ending in `~` where it was cut.
pub(crate) fn cut<const N: usize>(text: &str, font: &MonoFont<'_>, width: u32) -> String<N> {
    let room = width / (font.character_size.width + font.character_spacing).max(1);
    cut_chars(text, usize::try_from(room).unwrap_or(usize::MAX))
}

/// `text` cut to `room` characters (and to the string's capacity), ending in `~` where cut.
pub(crate) fn cut_chars<const N: usize>(text: &str, room: usize) -> String<N> {
    let mut out = String::new();
    let count = text.chars().count();
    if count <= room {
        for c in text.chars() {
            if out.push(c).is_err() {
                break;
            }
        }
        return out;
    }
    for c in text.chars().take(room.saturating_sub(1)) {
        if out.push(c).is_err() {
            break;
        }
    }
    if room > 0 {
        let _ = out.push('~');
    }
    out
}

/// A percentage from hundredths, rounded to whole percent: `23%`, `--` when unknown.
pub(crate) fn percent(value: Option<u16>) -> String<8> {
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

/// A temperature from millidegrees Celsius in `unit`: `51.2°C`, whole degrees from 100° (or
/// -10°) on, `--°C` when no sensor was read.
pub(crate) fn temperature(millicelsius: Option<i32>, unit: TemperatureUnit) -> String<16> {
    let mut s = String::new();
    let symbol = match unit {
        TemperatureUnit::Celsius => "°C",
        TemperatureUnit::Fahrenheit => "°F",
    };
    let Some(mc) = millicelsius else {
        let _ = write!(s, "--{symbol}");
        return s;
    };
    let m: i64 = match unit {
        TemperatureUnit::Celsius => i64::from(mc),
        TemperatureUnit::Fahrenheit => i64::from(mc) * 9 / 5 + 32_000,
    };
    let sign = if m < 0 { "-" } else { "" };
    let tenths = (m.unsigned_abs() + 50) / 100;
    if tenths >= 1000 || (m < 0 && tenths >= 100) {
        let _ = write!(s, "{sign}{}{symbol}", (tenths + 5) / 10);
    } else if tenths == 0 {
        let _ = write!(s, "0.0{symbol}");
    } else {
        let _ = write!(s, "{sign}{}.{}{symbol}", tenths / 10, tenths % 10);
    }
    s
}

/// Time since boot, two units at most: `up 42s`, `up 17m`, `up 5h 12m`, `up 3d 4h`;
/// `up >9999d` past 27 years.
pub(crate) fn uptime(seconds: u64) -> String<16> {
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

/// A load average from hundredths: `0.52`, `12.3`, `123`.
pub(crate) fn load(hundredths: u32) -> String<8> {
    let mut s = String::new();
    let _ = match hundredths {
        0..1000 => write!(s, "{}.{:02}", hundredths / 100, hundredths % 100),
        1000..10_000 => write!(s, "{}.{}", hundredths / 100, hundredths / 10 % 10),
        _ => write!(s, "{}", hundredths / 100),
    };
    s
}

/// A rate in bytes per second in `unit`: `1.2M/s` (binary units of bytes) or `9.4Mb/s` (decimal
/// units of bits, as links are rated).
pub(crate) fn rate(bytes_per_second: u64, unit: RateUnit) -> String<12> {
    let mut s = String::new();
    let _ = match unit {
        RateUnit::Bytes => write!(s, "{}/s", Bytes(bytes_per_second)),
        RateUnit::Bits => write!(s, "{}b/s", Bits(bytes_per_second)),
    };
    s
}

/// Bytes in at most four characters, in binary units: `999B`, `9.9K`, `340K`, `1.2M` … `16E`.
pub(crate) struct Bytes(pub u64);

impl core::fmt::Display for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = u128::from(self.0);
        if v < 1000 {
            return write!(f, "{v}B");
        }
        short(f, v, 1024)
    }
}

/// Bytes as bits in at most four characters, in decimal units: `999`, `9.9K`, `340K`, `1.2M`.
pub(crate) struct Bits(pub u64);

impl core::fmt::Display for Bits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = u128::from(self.0) * 8;
        if v < 1000 {
            return write!(f, "{v}");
        }
        short(f, v, 1000)
    }
}

/// `v` (at least 1000) in at most four characters with a unit letter, `step` per unit.
fn short(f: &mut core::fmt::Formatter<'_>, v: u128, step: u128) -> core::fmt::Result {
    let mut scale = 1u128;
    for unit in ['K', 'M', 'G', 'T', 'P', 'E', 'Z'] {
        scale *= step;
        let tenths = (v * 10 + scale / 2) / scale;
        if tenths < 100 {
            return write!(f, "{}.{}{unit}", tenths / 10, tenths % 10);
        }
        let whole = (v + scale / 2) / scale;
        if whole < 1000 {
            return write!(f, "{whole}{unit}");
        }
    }
    // u64::MAX * 8 is under 1000Z: the loop always returns before this.
    write!(f, "{}Z", v / scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mono_font::iso_8859_1::{FONT_5X7, FONT_6X10};

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
    fn formats_rates() {
        assert_eq!(rate(1_258_291, RateUnit::Bytes), "1.2M/s");
        assert_eq!(rate(100, RateUnit::Bits), "800b/s");
        assert_eq!(rate(1_180_000, RateUnit::Bits), "9.4Mb/s");
        assert_eq!(rate(125_000_000, RateUnit::Bits), "1.0Gb/s");
        assert_eq!(rate(u64::MAX, RateUnit::Bits), "148Eb/s");
        assert_eq!(rate(u64::MAX, RateUnit::Bytes), "16E/s");
    }

    #[test]
    fn formats_temperatures() {
        let c = TemperatureUnit::Celsius;
        let check = |m: Option<i32>, want: &str| assert_eq!(temperature(m, c), want, "{m:?}");
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
        let f = TemperatureUnit::Fahrenheit;
        assert_eq!(temperature(Some(0), f), "32.0°F");
        assert_eq!(temperature(Some(51_234), f), "124°F");
        assert_eq!(temperature(Some(20_000), f), "68.0°F");
        assert_eq!(temperature(Some(100_000), f), "212°F");
        assert_eq!(temperature(None, f), "--°F");
        assert_eq!(temperature(Some(i32::MIN), f), "-3865439°F");
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
    fn formats_loads() {
        assert_eq!(load(0), "0.00");
        assert_eq!(load(52), "0.52");
        assert_eq!(load(999), "9.99");
        assert_eq!(load(1234), "12.3");
        assert_eq!(load(12_345), "123");
        assert_eq!(load(u32::MAX), "42949672");
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
        let title = &FONT_6X10;
        let small = &FONT_5X7;
        assert_eq!(cut::<32>("kitchen-pi", title, 124), "kitchen-pi");
        assert_eq!(cut::<32>(&"a".repeat(20), title, 124), *"a".repeat(20));
        assert_eq!(
            cut::<32>(&"a".repeat(21), title, 124),
            *("a".repeat(19) + "~")
        );
        assert_eq!(
            cut::<32>(&"a".repeat(32), small, 124),
            *("a".repeat(23) + "~")
        );
        assert!(fits(&"a".repeat(20), title, 124) && !fits(&"a".repeat(21), title, 124));
        assert_eq!(
            cut_chars::<8>("abcdefghij", 20),
            "abcdefgh",
            "capacity wins"
        );
        assert_eq!(cut_chars::<8>("abc", 0), "");
        assert_eq!(cut_chars::<8>("abc", 1), "~");
    }

    #[test]
    fn ratio_is_capped_and_exact() {
        assert_eq!(ratio(1, 0), None);
        assert_eq!(ratio(0, 1), Some(0));
        assert_eq!(ratio(u64::MAX, u64::MAX), Some(10_000));
        assert_eq!(ratio(u64::MAX, 1), Some(10_000));
        assert_eq!(ratio(u64::MAX / 3, u64::MAX), Some(3_333));
    }
}
