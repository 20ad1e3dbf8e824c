//! PNG previews of a framebuffer (feature `png`).
//!
//! Pixels that are on are white and pixels that are off black, as on an OLED panel. The image is
//! a 1-bit grayscale PNG; `scale` repeats each pixel into a `scale` x `scale` square so that a
//! 128x64 screen can be read on a desktop.

use std::io;
use std::path::Path;

use embedded_graphics::pixelcolor::{Rgb565, RgbColor};

use crate::framebuffer::Framebuffer;

/// Largest `scale` accepted; larger values are treated as this.
pub const MAX_SCALE: u32 = 32;

/// Encodes `fb` as a 1-bit grayscale PNG, each pixel enlarged to `scale` x `scale`.
///
/// `scale` is clamped to `1..=`[`MAX_SCALE`].
pub fn encode_png<const W: usize, const PAGES: usize>(
    fb: &Framebuffer<W, PAGES>,
    scale: u32,
) -> Vec<u8> {
    let scale = scale.clamp(1, MAX_SCALE);
    let width = W as u32 * scale;
    let height = Framebuffer::<W, PAGES>::HEIGHT as u32 * scale;

    // Rows of 1-bit pixels, most significant bit first, each row padded to a whole byte.
    let row_len = (width as usize).div_ceil(8);
    let mut data = Vec::with_capacity(row_len * height as usize);
    for y in 0..Framebuffer::<W, PAGES>::HEIGHT as i32 {
        let mut row = vec![0u8; row_len];
        for x in 0..width as usize {
            if fb.pixel((x / scale as usize) as i32, y) {
                row[x / 8] |= 0x80 >> (x % 8);
            }
        }
        for _ in 0..scale {
            data.extend_from_slice(&row);
        }
    }

    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    // Writing into a Vec cannot fail, and the header is valid: both sides are non-zero and far
    // below PNG's limit (panels are small and `scale` is clamped).
    let mut writer = encoder
        .write_header()
        .expect("PNG header for a framebuffer is valid");
    writer
        .write_image_data(&data)
        .expect("PNG data for a framebuffer fits its header");
    writer
        .finish()
        .expect("writing a PNG into a Vec cannot fail");
    out
}

/// Encodes RGB565 pixels (`width` per row, row after row) as an 8-bit RGB PNG, each pixel
/// enlarged to `scale` x `scale` (clamped to `1..=`[`MAX_SCALE`]).
///
/// Channels are widened by repeating their high bits (`0x1f` → `0xff`), so black stays black and
/// white stays white.
pub fn encode_rgb565_png(pixels: &[Rgb565], width: usize, scale: u32) -> Vec<u8> {
    let scale = scale.clamp(1, MAX_SCALE) as usize;
    let width = width.max(1);
    let height = pixels.len() / width;
    let mut data = Vec::with_capacity(width * height * scale * scale * 3);
    for row in pixels.chunks_exact(width) {
        let mut line = Vec::with_capacity(width * scale * 3);
        for p in row {
            let (r, g, b) = (p.r(), p.g(), p.b());
            let rgb = [
                (r << 3) | (r >> 2),
                (g << 2) | (g >> 4),
                (b << 3) | (b >> 2),
            ];
            for _ in 0..scale {
                line.extend_from_slice(&rgb);
            }
        }
        for _ in 0..scale {
            data.extend_from_slice(&line);
        }
    }
    let mut out = Vec::new();
    // Panels are far below PNG's size limit; a zero size (no pixels) is written as 1x1 black.
    let (w, h) = if height == 0 {
        data = vec![0; 3];
        (1, 1)
    } else {
        ((width * scale) as u32, (height * scale) as u32)
    };
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .expect("PNG header for a canvas is valid");
    writer
        .write_image_data(&data)
        .expect("PNG data for a canvas fits its header");
    writer
        .finish()
        .expect("writing a PNG into a Vec cannot fail");
    out
}

/// Writes `fb` to `path` as a PNG; see [`encode_png`].
pub fn write_png<const W: usize, const PAGES: usize>(
    path: impl AsRef<Path>,
    fb: &Framebuffer<W, PAGES>,
    scale: u32,
) -> io::Result<()> {
    std::fs::write(path, encode_png(fb, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG into its size and one bool per pixel (on = white).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<bool>) {
        let mut decoder = png::Decoder::new(io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let pixels = buf[..info.buffer_size()].iter().map(|&v| v > 127).collect();
        (info.width, info.height, pixels)
    }

    #[test]
    fn encodes_pixels_white_on_black() {
        let mut fb = Framebuffer::<10, 1>::new();
        fb.set_pixel(0, 0, true);
        fb.set_pixel(9, 7, true);
        fb.set_pixel(3, 4, true);
        let (w, h, pixels) = decode(&encode_png(&fb, 1));
        assert_eq!((w, h), (10, 8));
        for y in 0..8 {
            for x in 0..10 {
                assert_eq!(pixels[(y * 10 + x) as usize], fb.pixel(x, y), "({x}, {y})");
            }
        }
    }

    #[test]
    fn scales_pixels_into_squares() {
        let mut fb = Framebuffer::<3, 1>::new();
        fb.set_pixel(1, 2, true);
        let (w, h, pixels) = decode(&encode_png(&fb, 3));
        assert_eq!((w, h), (9, 24));
        for y in 0..24 {
            for x in 0..9 {
                let want = (3..6).contains(&x) && (6..9).contains(&y);
                assert_eq!(pixels[y * 9 + x], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn encodes_rgb565_exactly() {
        let px = [
            Rgb565::WHITE,
            Rgb565::BLACK,
            Rgb565::new(0x10, 0x20, 0x01),
            Rgb565::RED,
        ];
        let bytes = encode_rgb565_png(&px, 2, 1);
        let mut decoder = png::Decoder::new(io::Cursor::new(&bytes));
        decoder.set_transformations(png::Transformations::IDENTITY);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2, 2));
        assert_eq!(
            &buf[..12],
            &[255, 255, 255, 0, 0, 0, 0x84, 0x82, 0x08, 255, 0, 0]
        );
        let empty = encode_rgb565_png(&[], 5, 3);
        let info = png::Decoder::new(io::Cursor::new(&empty))
            .read_info()
            .unwrap();
        assert_eq!((info.info().width, info.info().height), (1, 1));
    }

    #[test]
    fn clamps_scale() {
        let fb = Framebuffer::<3, 1>::new();
        assert_eq!(decode(&encode_png(&fb, 0)).0, 3);
        assert_eq!(decode(&encode_png(&fb, u32::MAX)).0, 3 * MAX_SCALE);
    }
}
