//! A monochrome framebuffer in the page layout of SSD1306-style panels.
//!
//! The buffer is `PAGES` pages of `W` bytes. Page `p` covers rows `8 * p .. 8 * p + 8`; byte `x`
//! of a page is column `x` of those rows, least significant bit at the top. This is the order in
//! which an SSD1306 or SH1106 controller takes its display RAM in horizontal addressing mode, so
//! a driver sends [`Framebuffer::as_bytes`] (or one [`Framebuffer::page`] at a time) unchanged.

use core::convert::Infallible;

use embedded_graphics::draw_target::DrawTarget;
use embedded_graphics::geometry::{Dimensions, OriginDimensions, Size};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::Pixel;

/// A 1-bit framebuffer `W` pixels wide and `8 * PAGES` pixels high.
///
/// Height is given in pages (8 rows each) because that is how the panels are organised and
/// because stable Rust cannot yet size an array from `W * H / 8`. Pixels outside the buffer are
/// ignored when drawn and read as off: drawing never panics.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Framebuffer<const W: usize, const PAGES: usize> {
    pages: [[u8; W]; PAGES],
}

/// The 128x64 panel of the common 0.96" and 1.3" OLED modules (SSD1306, SH1106, SSD1309).
pub type Mono128x64 = Framebuffer<128, 8>;

/// Most windows [`Framebuffer::dirty`] returns.
pub const MAX_WINDOWS: usize = 32;
/// Most runs of changed columns per page before they are merged.
const MAX_RUNS: usize = 4;

/// The 128x32 panel of the 0.91" OLED modules (SSD1306).
pub type Mono128x32 = Framebuffer<128, 4>;

/// A rectangle of display RAM in whole pages: pages `first_page..=last_page`, columns
/// `first_column..=last_column`. In horizontal addressing mode a controller takes it as one
/// window, page after page, with the columns of each page in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First page (rows `8 * first_page ..`).
    pub first_page: usize,
    /// Last page, inclusive.
    pub last_page: usize,
    /// First column.
    pub first_column: usize,
    /// Last column, inclusive.
    pub last_column: usize,
}

impl Window {
    /// Data bytes the window holds: one per column per page.
    pub fn bytes(&self) -> usize {
        (self.last_page + 1 - self.first_page) * (self.last_column + 1 - self.first_column)
    }

    /// The pages it covers.
    pub fn pages(&self) -> core::ops::RangeInclusive<usize> {
        self.first_page..=self.last_page
    }

    /// The columns it covers.
    pub fn columns(&self) -> core::ops::RangeInclusive<usize> {
        self.first_column..=self.last_column
    }
}

impl<const W: usize, const PAGES: usize> Framebuffer<W, PAGES> {
    /// Width in pixels.
    pub const WIDTH: usize = W;
    /// Height in pixels.
    pub const HEIGHT: usize = PAGES * 8;

    /// A buffer with every pixel off.
    pub const fn new() -> Self {
        Framebuffer {
            pages: [[0; W]; PAGES],
        }
    }

    /// Turns every pixel off.
    pub fn clear(&mut self) {
        self.fill(false);
    }

    /// Sets every pixel to `on`.
    pub fn fill(&mut self, on: bool) {
        let byte = if on { 0xff } else { 0 };
        self.pages = [[byte; W]; PAGES];
    }

    /// Whether the pixel at (`x`, `y`) is on; `false` outside the buffer.
    pub fn pixel(&self, x: i32, y: i32) -> bool {
        match Self::locate(x, y) {
            Some((page, column, bit)) => self.pages[page][column] & bit != 0,
            None => false,
        }
    }

    /// Turns the pixel at (`x`, `y`) on or off; does nothing outside the buffer.
    pub fn set_pixel(&mut self, x: i32, y: i32, on: bool) {
        if let Some((page, column, bit)) = Self::locate(x, y) {
            let byte = &mut self.pages[page][column];
            if on {
                *byte |= bit;
            } else {
                *byte &= !bit;
            }
        }
    }

    /// Turns every pixel over (the agent's identify flash).
    pub fn invert(&mut self) {
        for page in &mut self.pages {
            for byte in page.iter_mut() {
                *byte = !*byte;
            }
        }
    }

    /// The whole buffer, page after page: `PAGES * W` bytes in the panel's RAM order.
    pub fn as_bytes(&self) -> &[u8] {
        self.pages.as_flattened()
    }

    /// All pages.
    pub fn pages(&self) -> &[[u8; W]; PAGES] {
        &self.pages
    }

    /// Page `index` (rows `8 * index .. 8 * index + 8`), or `None` past the last page.
    pub fn page(&self, index: usize) -> Option<&[u8; W]> {
        self.pages.get(index)
    }

    /// Where this frame differs from `previous`: rectangles of whole pages to send so that the
    /// panel's RAM holds this frame, cheap in bytes on the bus.
    ///
    /// `overhead` is what it costs to address one more window (about 8 bytes for an SSD1306 on
    /// I2C: two 3-byte commands, a control byte and the address). Within a page, changed
    /// columns closer together than that form one run; runs further apart are sent apart (a
    /// bar's end and its percentage, say). Going down the pages, a run joins a window of the
    /// page above when the joined rectangle costs no more than the two apart. Equal frames give
    /// no windows; at most [`MAX_WINDOWS`] are returned (further runs of a page widen its last).
    pub fn dirty(&self, previous: &Self, overhead: usize) -> heapless::Vec<Window, MAX_WINDOWS> {
        let mut out: heapless::Vec<Window, MAX_WINDOWS> = heapless::Vec::new();
        for page in 0..PAGES {
            let (now, before) = (&self.pages[page], &previous.pages[page]);
            let mut runs: heapless::Vec<(usize, usize), MAX_WINDOWS> = heapless::Vec::new();
            for x in (0..W).filter(|&x| now[x] != before[x]) {
                let full = runs.len() == MAX_RUNS;
                match runs.last_mut() {
                    Some((_, last)) if x - *last <= overhead + 1 || full => *last = x,
                    _ => {
                        let _ = runs.push((x, x));
                    }
                }
            }
            for (first, last) in runs {
                let run = Window {
                    first_page: page,
                    last_page: page,
                    first_column: first,
                    last_column: last,
                };
                // The best window of the page above to grow down over this run.
                let join = out
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.last_page + 1 >= page)
                    .map(|(i, w)| {
                        let joined = Window {
                            first_page: w.first_page,
                            last_page: page,
                            first_column: w.first_column.min(first),
                            last_column: w.last_column.max(last),
                        };
                        let saved =
                            (w.bytes() + run.bytes() + overhead) as isize - joined.bytes() as isize;
                        (i, joined, saved)
                    })
                    .filter(|(_, _, saved)| *saved >= 0)
                    .max_by_key(|(_, _, saved)| *saved);
                match join {
                    Some((i, joined, _)) => out[i] = joined,
                    None => {
                        if let Err(run) = out.push(run) {
                            // Full: widen the last window instead (never reached with
                            // MAX_RUNS runs on each of at most 8 pages).
                            if let Some(w) = out.last_mut() {
                                w.first_page = w.first_page.min(run.first_page);
                                w.last_page = page;
                                w.first_column = w.first_column.min(run.first_column);
                                w.last_column = w.last_column.max(run.last_column);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Page, column and bit mask of a pixel inside the buffer.
    fn locate(x: i32, y: i32) -> Option<(usize, usize, u8)> {
        let x = usize::try_from(x).ok()?;
        let y = usize::try_from(y).ok()?;
        if x >= W || y >= Self::HEIGHT {
            return None;
        }
        Some((y / 8, x, 1 << (y % 8)))
    }
}

impl<const W: usize, const PAGES: usize> Default for Framebuffer<W, PAGES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const PAGES: usize> core::fmt::Debug for Framebuffer<W, PAGES> {
    /// Draws the buffer as text, `#` for on and `.` for off, one line per row.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        writeln!(f, "Framebuffer<{W}x{}>", Self::HEIGHT)?;
        for y in 0..Self::HEIGHT as i32 {
            for x in 0..W as i32 {
                f.write_char(if self.pixel(x, y) { '#' } else { '.' })?;
            }
            f.write_char('\n')?;
        }
        Ok(())
    }
}

impl<const W: usize, const PAGES: usize> OriginDimensions for Framebuffer<W, PAGES> {
    fn size(&self) -> Size {
        // Panels are far smaller than u32::MAX pixels; saturate rather than wrap regardless.
        let w = u32::try_from(W).unwrap_or(u32::MAX);
        let h = u32::try_from(Self::HEIGHT).unwrap_or(u32::MAX);
        Size::new(w, h)
    }
}

impl<const W: usize, const PAGES: usize> DrawTarget for Framebuffer<W, PAGES> {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, color) in pixels {
            self.set_pixel(point.x, point.y, color.is_on());
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        if let Some(bottom_right) = area.bottom_right() {
            for y in area.top_left.y..=bottom_right.y {
                for x in area.top_left.x..=bottom_right.x {
                    self.set_pixel(x, y, color.is_on());
                }
            }
        }
        Ok(())
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        self.fill(color.is_on());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{Line, PrimitiveStyle};

    #[test]
    fn sets_and_reads_pixels() {
        let mut fb = Mono128x64::new();
        assert!(!fb.pixel(0, 0));
        fb.set_pixel(0, 0, true);
        fb.set_pixel(127, 63, true);
        fb.set_pixel(5, 9, true);
        assert!(fb.pixel(0, 0) && fb.pixel(127, 63) && fb.pixel(5, 9));
        assert!(!fb.pixel(1, 0) && !fb.pixel(5, 8) && !fb.pixel(5, 10));
        fb.set_pixel(5, 9, false);
        assert!(!fb.pixel(5, 9));
        assert!(
            fb.pixel(0, 0),
            "clearing one pixel keeps its neighbours in the byte"
        );
        fb.clear();
        assert!(fb.as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn ignores_out_of_bounds_pixels() {
        let mut fb = Mono128x64::new();
        for (x, y) in [
            (-1, 0),
            (0, -1),
            (128, 0),
            (0, 64),
            (i32::MIN, i32::MIN),
            (i32::MAX, i32::MAX),
        ] {
            fb.set_pixel(x, y, true);
            assert!(!fb.pixel(x, y), "({x}, {y})");
        }
        assert_eq!(fb, Mono128x64::new());

        // Through embedded-graphics too: a line far across the edges draws only its inside part.
        Line::new(Point::new(-1000, 10), Point::new(1000, 10))
            .into_styled(PrimitiveStyle::with_stroke(BinaryColor::On, 1))
            .draw(&mut fb)
            .unwrap();
        let on = (0..128).filter(|&x| fb.pixel(x, 10)).count();
        assert_eq!(on, 128);
        Rectangle::new(Point::new(-5, -5), Size::new(1000, 1000))
            .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
            .draw(&mut fb)
            .unwrap();
        assert!(fb.as_bytes().iter().all(|&b| b == 0xff));
    }

    #[test]
    fn bytes_are_in_page_order() {
        // A 4x16 buffer: two pages of four columns.
        let mut fb = Framebuffer::<4, 2>::new();
        fb.set_pixel(0, 0, true); // page 0, column 0, bit 0
        fb.set_pixel(0, 7, true); // page 0, column 0, bit 7
        fb.set_pixel(1, 3, true); // page 0, column 1, bit 3
        fb.set_pixel(3, 8, true); // page 1, column 3, bit 0
        fb.set_pixel(2, 15, true); // page 1, column 2, bit 7
        fb.set_pixel(2, 9, true); // page 1, column 2, bit 1
        assert_eq!(
            fb.as_bytes(),
            &[
                0b1000_0001,
                0b0000_1000,
                0,
                0,
                0,
                0,
                0b1000_0010,
                0b0000_0001
            ]
        );
        assert_eq!(fb.page(1), Some(&[0, 0, 0b1000_0010, 0b0000_0001]));
        assert_eq!(fb.page(2), None);
        assert_eq!(fb.size(), Size::new(4, 16));
        assert_eq!(Mono128x64::new().as_bytes().len(), 1024);
    }

    #[test]
    fn fill_solid_and_clear() {
        let mut fb = Framebuffer::<4, 2>::new();
        fb.fill_solid(
            &Rectangle::new(Point::new(1, 6), Size::new(2, 4)),
            BinaryColor::On,
        )
        .unwrap();
        assert_eq!(
            fb.as_bytes(),
            &[
                0,
                0b1100_0000,
                0b1100_0000,
                0,
                0,
                0b0000_0011,
                0b0000_0011,
                0
            ]
        );
        DrawTarget::clear(&mut fb, BinaryColor::On).unwrap();
        assert!(fb.as_bytes().iter().all(|&b| b == 0xff));
        fb.clear();
        assert_eq!(fb, Framebuffer::new());
    }

    #[test]
    fn equal_frames_have_no_dirty_windows() {
        let mut a = Mono128x64::new();
        a.set_pixel(3, 3, true);
        assert!(a.dirty(&a.clone(), 8).is_empty());
    }

    /// Writes `windows` of `after` into `before`, as a panel's RAM takes them.
    fn apply(before: &mut Mono128x64, after: &Mono128x64, windows: &[Window]) {
        for w in windows {
            for p in w.pages() {
                for c in w.columns() {
                    before.pages[p][c] = after.pages[p][c];
                }
            }
        }
    }

    #[test]
    fn dirty_windows_cover_every_change_and_merge_when_cheaper() {
        let before = Mono128x64::new();
        let mut after = before.clone();
        // Changes in page 0 (columns 10 and 17) and page 1 (columns 12 and 18): one window.
        after.set_pixel(10, 0, true);
        after.set_pixel(17, 7, true);
        after.set_pixel(12, 8, true);
        after.set_pixel(18, 9, true);
        // A change in page 0 far to the right: a run of its own.
        after.set_pixel(120, 1, true);
        // A change in page 6 alone, far below: its own window.
        after.set_pixel(100, 50, true);
        let windows = after.dirty(&before, 8);
        let w = |p0, p1, c0, c1| Window {
            first_page: p0,
            last_page: p1,
            first_column: c0,
            last_column: c1,
        };
        assert_eq!(
            windows.as_slice(),
            &[w(0, 1, 10, 18), w(0, 0, 120, 120), w(6, 6, 100, 100)]
        );
        assert_eq!(windows[0].bytes(), 18);
        let mut patched = before.clone();
        apply(&mut patched, &after, &windows);
        assert_eq!(patched, after);

        // With no overhead, nothing is joined across unchanged columns or pages.
        let windows = after.dirty(&before, 0);
        assert_eq!(windows.len(), 6);
        // A full change is one full window: the whole frame.
        let mut full = Mono128x64::new();
        full.fill(true);
        let windows = full.dirty(&before, 8);
        assert_eq!(windows.as_slice(), &[w(0, 7, 0, 127)]);
        assert_eq!(windows[0].bytes(), 1024);
    }

    #[test]
    fn dirty_windows_always_turn_the_old_frame_into_the_new() {
        // Pseudo-random frames: whatever the windows, applying them reproduces the new frame.
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) as usize
        };
        for round in 0..200 {
            let mut before = Mono128x64::new();
            let mut after = Mono128x64::new();
            for _ in 0..next() % 300 {
                before.set_pixel((next() % 128) as i32, (next() % 64) as i32, true);
            }
            after.pages = before.pages;
            for _ in 0..next() % (1 + round * 3) {
                after.set_pixel((next() % 128) as i32, (next() % 64) as i32, next() % 2 == 0);
            }
            for overhead in [0, 8, 40] {
                let windows = after.dirty(&before, overhead);
                let mut patched = before.clone();
                apply(&mut patched, &after, &windows);
                assert_eq!(patched, after, "round {round}, overhead {overhead}");
            }
        }
    }

    #[test]
    fn debug_draws_ascii_art() {
        let mut fb = Framebuffer::<3, 1>::new();
        fb.set_pixel(1, 1, true);
        let text = format!("{fb:?}");
        assert!(
            text.starts_with("Framebuffer<3x8>\n...\n.#.\n...\n"),
            "{text}"
        );
    }
}
