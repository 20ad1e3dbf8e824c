//! The pages as lines of characters, for HD44780 character LCDs (16x2, 20x4).
//!
//! A [`Grid`] holds character codes of the HD44780's standard ROM (A00): ASCII from `' '` to
//! `'}'`, except that `\` shows as `¥`, plus `°` (0xDF) and the arrow `→` (0x7E), which marks
//! text that was cut. Each page offers its lines most important first, as on the pixel panels;
//! a 16x2 display shows the two that matter most. Warnings, which a character LCD cannot
//! invert, are marked `*` before the value, critical values `!`, and an alert replaces the
//! first line.

use core::fmt::Write;

use heapless::{String, Vec};

use crate::format::{load, percent, ratio, temperature, uptime, Bytes};
use crate::model::{alert, Alert, Model};
use crate::overview::Overview;
use crate::pages::Page;
use crate::settings::{Level, Settings};

/// The HD44780 code of `°`.
pub const DEGREE: u8 = 0xDF;
/// The HD44780 code of `→`, which ends text that was cut.
pub const CUT: u8 = 0x7E;
/// The HD44780 code of a full block.
pub const BLOCK: u8 = 0xFF;

/// `ROWS` lines of `COLS` HD44780 character codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grid<const COLS: usize, const ROWS: usize> {
    cells: [[u8; COLS]; ROWS],
}

/// A 16x2 display.
pub type Lcd16x2 = Grid<16, 2>;
/// A 20x4 display.
pub type Lcd20x4 = Grid<20, 4>;

impl<const COLS: usize, const ROWS: usize> Default for Grid<COLS, ROWS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const COLS: usize, const ROWS: usize> Grid<COLS, ROWS> {
    /// A grid of spaces.
    pub const fn new() -> Self {
        Grid {
            cells: [[b' '; COLS]; ROWS],
        }
    }

    /// Every line.
    pub fn lines(&self) -> &[[u8; COLS]; ROWS] {
        &self.cells
    }

    /// Line `row`, `None` past the last.
    pub fn line(&self, row: usize) -> Option<&[u8; COLS]> {
        self.cells.get(row)
    }

    /// Writes `left` from the left edge and `right` against the right edge of line `row`
    /// (clearing the rest), cutting `left` with `→` so that a space separates them. Characters
    /// the ROM lacks become `?`.
    pub fn set_line(&mut self, row: usize, left: &str, right: &str) {
        let Some(line) = self.cells.get_mut(row) else {
            return;
        };
        *line = [b' '; COLS];
        let right: Vec<u8, 64> = right.chars().take(COLS).map(code).collect();
        let room = if right.is_empty() {
            COLS
        } else {
            COLS.saturating_sub(right.len() + 1)
        };
        let count = left.chars().count();
        for (x, c) in left.chars().take(room).enumerate() {
            line[x] = code(c);
        }
        if count > room && room > 0 {
            line[room - 1] = CUT;
        }
        let start = COLS - right.len();
        line[start..].copy_from_slice(&right);
    }

    /// Sets line `row` to character codes (cut or padded with spaces to the width).
    pub fn set_codes(&mut self, row: usize, codes: &[u8]) {
        if let Some(line) = self.cells.get_mut(row) {
            *line = [b' '; COLS];
            let n = codes.len().min(COLS);
            line[..n].copy_from_slice(&codes[..n]);
        }
    }

    /// Line `row` as text, with `°` and `→` for their codes: for tests and logs.
    pub fn text(&self, row: usize) -> String<80> {
        let mut out = String::new();
        for &b in self.line(row).map(|l| l.as_slice()).unwrap_or(&[]) {
            let _ = out.push(char_of(b));
        }
        out
    }
}

/// The HD44780 A00 code for `c`.
pub fn code(c: char) -> u8 {
    match c {
        '°' => DEGREE,
        '~' | '→' => CUT,
        '█' => BLOCK,
        '\\' => b'/',
        ' '..='}' => c as u8,
        _ => b'?',
    }
}

/// The character an A00 code shows (`?` for codes Ember does not use).
pub fn char_of(code: u8) -> char {
    match code {
        DEGREE => '°',
        CUT => '→',
        BLOCK => '█',
        0x5C => '¥',
        0x20..=0x7D => char::from(code),
        _ => '?',
    }
}

type Line = (u8, String<40>, String<24>);

fn line(priority: u8, left: &str, right: &str) -> Line {
    let mut l = String::new();
    for c in left.chars() {
        if l.push(c).is_err() {
            break;
        }
    }
    let mut r = String::new();
    for c in right.chars() {
        if r.push(c).is_err() {
            break;
        }
    }
    (priority, l, r)
}

/// A value marked with its level: `*` for a warning, `!` for critical.
fn marked(level: Level, value: &str) -> String<24> {
    let mut out = String::new();
    let _ = out.push_str(match level {
        Level::Normal => "",
        Level::Warn => "*",
        Level::Crit => "!",
    });
    let _ = out.push_str(value);
    out
}

/// Writes `page` of `model` into `grid`, with the alert (if [`alert`] finds one) on the first
/// line.
pub fn render<const COLS: usize, const ROWS: usize>(
    page: Page,
    model: &Model<'_>,
    settings: &Settings,
    grid: &mut Grid<COLS, ROWS>,
) {
    let banner = alert(model, settings);
    render_with(page, model, settings, banner.as_ref(), grid);
}

/// [`render`] with an explicit alert.
pub fn render_with<const COLS: usize, const ROWS: usize>(
    page: Page,
    model: &Model<'_>,
    settings: &Settings,
    banner: Option<&Alert>,
    grid: &mut Grid<COLS, ROWS>,
) {
    let mut lines: Vec<Line, 32> = Vec::new();
    let mut add = |l: Line| {
        let _ = lines.push(l);
    };
    let t = &settings.thresholds;
    let unit = settings.temperature_unit;
    let s = model.sample;
    let mut buf: String<24> = String::new();
    match page {
        Page::Overview => {
            let ov = Overview::from_sample(model.host, model.ipv4, s);
            let temp_level = ov
                .temperature
                .map_or(Level::Normal, |v| t.temperature.level(v));
            let temp = marked(temp_level, &temperature(ov.temperature, unit));
            add(line(0, &ov.host, &temp));
            let mut ip: String<24> = String::new();
            match ov.ipv4 {
                Some([a, b, c, d]) => {
                    let _ = write!(ip, "{a}.{b}.{c}.{d}");
                }
                None => {
                    let _ = ip.push_str("no IPv4");
                }
            }
            add(line(3, &ip, ""));
            let cpu = marked(t.cpu.level(ov.cpu), &percent(Some(ov.cpu)));
            let mem_level = ov.memory.map_or(Level::Normal, |m| t.memory.level(m));
            let mem = marked(mem_level, &percent(ov.memory));
            let _ = write!(buf, "CPU {cpu} MEM {mem}");
            add(line(1, &buf, ""));
            let disk_level = ov.disk.map_or(Level::Normal, |m| t.disk.level(m));
            buf.clear();
            let _ = write!(buf, "DSK {}", marked(disk_level, &percent(ov.disk)));
            add(line(2, &buf, &uptime(ov.uptime_s)));
            buf.clear();
            let _ = write!(buf, "R{} T{}", Bytes(ov.rx_bps), Bytes(ov.tx_bps));
            add(line(4, "NET", &buf));
        }
        Page::Cpu => {
            let busy = marked(t.cpu.level(s.cpu.busy), &percent(Some(s.cpu.busy)));
            let _ = write!(buf, "ld {}", load(s.load.one));
            let mut left: String<24> = String::new();
            let _ = write!(left, "CPU {busy}");
            add(line(0, &left, &buf));
            // The cores, as many per line as fit: `12 34  5 99`.
            let per_line = (COLS / 4).max(1);
            for (k, chunk) in (1u8..).zip(s.cpu.cores.chunks(per_line)) {
                let mut l: String<40> = String::new();
                for &v in chunk {
                    let mark = match t.cpu.level(v) {
                        Level::Normal => ' ',
                        Level::Warn => '*',
                        Level::Crit => '!',
                    };
                    let _ = write!(l, "{mark}{:>2} ", ((u32::from(v) + 50) / 100).min(99));
                }
                add(line(k, l.trim_end(), ""));
            }
            buf.clear();
            let _ = write!(buf, "{} {}", load(s.load.five), load(s.load.fifteen));
            add(line(20, "load", &buf));
        }
        Page::Network => {
            for (k, n) in (0u8..).zip(s.networks.iter()) {
                buf.clear();
                let _ = write!(buf, "R{} T{}", Bytes(n.rx_bps), Bytes(n.tx_bps));
                add(line(k, &n.interface, &buf));
            }
            if s.networks.is_empty() {
                add(line(0, "no interfaces", ""));
            }
        }
        Page::Disks => {
            for (k, fs) in (0u8..).zip(s.filesystems.iter()) {
                let used = ratio(fs.used, fs.total);
                let level = used.map_or(Level::Normal, |u| t.disk.level(u));
                buf.clear();
                let _ = write!(buf, "{} {}", marked(level, &percent(used)), Bytes(fs.total));
                add(line(k, &fs.mount, &buf));
            }
            if s.filesystems.is_empty() {
                add(line(0, "no filesystems", ""));
            }
        }
        Page::Temperatures => {
            for (k, sensor) in (0u8..).zip(s.temperatures.iter()) {
                let value = temperature(Some(sensor.millicelsius), unit);
                let level = t.temperature.level(sensor.millicelsius);
                add(line(k, &sensor.sensor, &marked(level, &value)));
            }
            if s.temperatures.is_empty() {
                add(line(0, "no sensors", ""));
            }
        }
        Page::Processes => {
            for (k, p) in (0u8..).zip(s.top_cpu.iter()) {
                buf.clear();
                let _ = write!(buf, "{}%", (u64::from(p.cpu) + 50) / 100);
                add(line(k, &p.name, &buf));
            }
            if s.top_cpu.is_empty() {
                add(line(0, "no processes", ""));
            }
        }
        Page::Fleet => {
            let up = model.fleet.iter().filter(|h| h.up).count();
            let _ = write!(buf, "{up}/{} up", model.fleet.len());
            add(line(0, "Fleet", &buf));
            // Down hosts first.
            for (k, h) in (1u8..).zip(model.fleet.iter().filter(|h| !h.up)) {
                add(line(k, &h.name, "!DOWN"));
            }
            for (k, h) in (20u8..).zip(model.fleet.iter().filter(|h| h.up)) {
                add(line(k.min(250), &h.name, "up"));
            }
        }
    }

    // The most important lines that fit, in their own order.
    let mut chosen = [false; 32];
    let mut order: Vec<usize, 32> = (0..lines.len()).collect();
    order.sort_unstable_by_key(|&i| (lines[i].0, i));
    for &i in order.iter().take(ROWS) {
        chosen[i] = true;
    }
    *grid = Grid::new();
    let mut row = 0;
    if let Some(a) = banner {
        let mut text: String<40> = String::new();
        let _ = write!(text, "!{}", a.text);
        grid.set_line(0, &text, "");
        row = 1;
    }
    for (i, (_, left, right)) in lines.iter().enumerate() {
        if chosen[i] && row < ROWS {
            grid.set_line(row, left, right);
            row += 1;
        }
    }
}

/// Draws `grid` as an LCD module would show it: white 5x8 dots on blue, each character cell
/// six pixels apart across and nine down, inside a four-pixel border. The image is
/// [`grid_size`] pixels.
pub fn draw_grid<const COLS: usize, const ROWS: usize, D>(
    grid: &Grid<COLS, ROWS>,
    target: &mut D,
) -> Result<(), D::Error>
where
    D: embedded_graphics::draw_target::DrawTarget<Color = embedded_graphics::pixelcolor::Rgb565>,
{
    use embedded_graphics::geometry::{Point, Size};
    use embedded_graphics::mono_font::{iso_8859_1::FONT_5X8, MonoTextStyle};
    use embedded_graphics::pixelcolor::Rgb565;
    use embedded_graphics::primitives::{Primitive, PrimitiveStyle, Rectangle};
    use embedded_graphics::text::{Baseline, Text};
    use embedded_graphics::Drawable;

    let back = Rgb565::new(0x04, 0x10, 0x1c);
    let unlit = Rgb565::new(0x06, 0x16, 0x1f);
    let lit = Rgb565::new(0x1f, 0x3f, 0x1f);
    target.clear(back)?;
    for (y, line) in (0i32..).zip(grid.lines()) {
        for (x, &c) in (0i32..).zip(line.iter()) {
            let at = Point::new(4 + 6 * x, 4 + 9 * y);
            let cell = Rectangle::new(at, Size::new(5, 8));
            let fill = if c == BLOCK { lit } else { unlit };
            cell.into_styled(PrimitiveStyle::with_fill(fill))
                .draw(target)?;
            if c == CUT {
                // The ROM's arrow, which the font lacks.
                for (dy, row) in (0..).zip(["..#..", "...#.", "#####", "...#.", "..#.."]) {
                    for (dx, dot) in (0..).zip(row.bytes()) {
                        if dot == b'#' {
                            let p = at + Point::new(dx, 1 + dy);
                            embedded_graphics::Pixel(p, lit).draw(target)?;
                        }
                    }
                }
            } else if c != BLOCK && c != b' ' {
                let mut s: String<4> = String::new();
                let _ = s.push(char_of(c));
                let style = MonoTextStyle::new(&FONT_5X8, lit);
                Text::with_baseline(&s, at, style, Baseline::Top).draw(target)?;
            }
        }
    }
    Ok(())
}

/// The size of [`draw_grid`]'s image for a `cols` x `rows` grid.
pub const fn grid_size(cols: u32, rows: u32) -> embedded_graphics::geometry::Size {
    embedded_graphics::geometry::Size::new(8 + 6 * cols - 1, 8 + 9 * rows - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cut_and_align() {
        let mut g = Lcd16x2::new();
        g.set_line(0, "kitchen-pi-with-a-long-name", "51.2°C");
        assert_eq!(g.text(0), "kitchen-→ 51.2°C");
        assert_eq!(g.line(0).unwrap()[14], DEGREE);
        g.set_line(1, "a\\b€", "");
        assert_eq!(g.text(1), "a/b?            ");
        g.set_line(1, "", "x".repeat(40).as_str());
        assert_eq!(g.text(1), *"x".repeat(16));
        g.set_line(5, "ignored", "");
        assert_eq!(char_of(0x5C), '¥');
    }
}
