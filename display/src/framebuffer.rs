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

/// The 128x64 panel of the common 0.96" and 1.3" OLED modules (SSD1306, SH1106).
pub type Mono128x64 = Framebuffer<128, 8>;

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
