//! A draw target over a borrowed slice of pixels, for colour panels.
//!
//! A 240x320 RGB565 frame is 150 KiB: too large to own on a microcontroller's stack, so the
//! caller lends the memory (a `static`, or a `Vec` on Linux) and [`Canvas`] draws into it, row
//! after row. Pixels outside are ignored: drawing never panics.

use core::convert::Infallible;

use embedded_graphics::draw_target::DrawTarget;
use embedded_graphics::geometry::{OriginDimensions, Size};
use embedded_graphics::pixelcolor::PixelColor;
use embedded_graphics::Pixel;

/// `width` x `height` pixels in `pixels`, row after row.
#[derive(Debug)]
pub struct Canvas<'a, C> {
    pixels: &'a mut [C],
    width: usize,
    height: usize,
}

impl<'a, C: PixelColor> Canvas<'a, C> {
    /// A canvas `width` pixels wide over `pixels`; its height is as many whole rows as
    /// `pixels` holds.
    pub fn new(pixels: &'a mut [C], width: usize) -> Self {
        let height = pixels.len().checked_div(width).unwrap_or(0);
        Canvas {
            pixels,
            width,
            height,
        }
    }

    /// The pixel at (`x`, `y`), `None` outside.
    pub fn pixel(&self, x: usize, y: usize) -> Option<C> {
        (x < self.width && y < self.height).then(|| self.pixels[y * self.width + x])
    }

    /// Row `y`, `None` past the last.
    pub fn row(&self, y: usize) -> Option<&[C]> {
        (y < self.height).then(|| &self.pixels[y * self.width..(y + 1) * self.width])
    }

    /// All pixels, row after row.
    pub fn pixels(&self) -> &[C] {
        &self.pixels[..self.width * self.height]
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
}

impl<C: PixelColor> OriginDimensions for Canvas<'_, C> {
    fn size(&self) -> Size {
        let w = u32::try_from(self.width).unwrap_or(u32::MAX);
        let h = u32::try_from(self.height).unwrap_or(u32::MAX);
        Size::new(w, h)
    }
}

impl<C: PixelColor> DrawTarget for Canvas<'_, C> {
    type Color = C;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<C>>,
    {
        for Pixel(p, color) in pixels {
            if let (Ok(x), Ok(y)) = (usize::try_from(p.x), usize::try_from(p.y)) {
                if x < self.width && y < self.height {
                    self.pixels[y * self.width + x] = color;
                }
            }
        }
        Ok(())
    }

    fn clear(&mut self, color: C) -> Result<(), Self::Error> {
        self.pixels.fill(color);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::{Rgb565, RgbColor};
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn draws_inside_and_ignores_outside() {
        let mut px = [Rgb565::BLACK; 12];
        let mut c = Canvas::new(&mut px, 4);
        assert_eq!(c.size(), Size::new(4, 3));
        Rectangle::new(Point::new(-2, 1), Size::new(100, 1))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(&mut c)
            .unwrap();
        assert_eq!(c.row(1).unwrap(), &[Rgb565::RED; 4]);
        assert_eq!(c.pixel(0, 0), Some(Rgb565::BLACK));
        assert_eq!(c.pixel(4, 0), None);
        assert_eq!(c.row(3), None);
        let mut none: [Rgb565; 3] = [Rgb565::BLACK; 3];
        let c = Canvas::new(&mut none, 0);
        assert_eq!(c.size(), Size::new(0, 0));
    }
}
