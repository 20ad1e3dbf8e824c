//! Colour SPI TFTs (ST7789, ST7735, ILI9341) through `mipidsi`, sending only the rows and
//! columns that changed.

use embedded_graphics::pixelcolor::Rgb565;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::{Interface, InterfaceKind};
use mipidsi::models::Model;
use mipidsi::Display;

/// Pixels it costs to address one more window: CASET, RASET and RAMWR with their arguments
/// (11 bytes) in 2-byte pixels, rounded up.
pub const WINDOW_OVERHEAD: usize = 6;

/// An SPI interface for `mipidsi` that owns its transfer buffer (mipidsi's own borrows one,
/// which a panel reopened after an error could not give back).
pub struct SpiInterface<SPI, DC> {
    spi: SPI,
    dc: DC,
    buffer: Vec<u8>,
}

/// A failure of the SPI device or the D/C line.
#[derive(Debug)]
pub enum SpiError<S, P> {
    /// The SPI device.
    Spi(S),
    /// The D/C line.
    Dc(P),
}

impl<SPI: SpiDevice, DC: OutputPin> SpiInterface<SPI, DC> {
    /// An interface on `spi` with data/command line `dc`, sending at most `chunk` bytes per
    /// transfer (spidev's default limit is 4096).
    pub fn new(spi: SPI, dc: DC, chunk: usize) -> Self {
        SpiInterface {
            spi,
            dc,
            buffer: vec![0; chunk.max(2)],
        }
    }
}

impl<SPI: SpiDevice, DC: OutputPin> Interface for SpiInterface<SPI, DC> {
    type Word = u8;
    type Error = SpiError<SPI::Error, DC::Error>;

    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), Self::Error> {
        self.dc.set_low().map_err(SpiError::Dc)?;
        self.spi.write(&[command]).map_err(SpiError::Spi)?;
        self.dc.set_high().map_err(SpiError::Dc)?;
        if !args.is_empty() {
            self.spi.write(args).map_err(SpiError::Spi)?;
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), Self::Error> {
        let per_chunk = (self.buffer.len() / N.max(1)).max(1);
        let mut pixels = pixels.into_iter().peekable();
        while pixels.peek().is_some() {
            let mut len = 0;
            for p in pixels.by_ref().take(per_chunk) {
                self.buffer[len..len + N].copy_from_slice(&p);
                len += N;
            }
            self.spi.write(&self.buffer[..len]).map_err(SpiError::Spi)?;
        }
        Ok(())
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), Self::Error> {
        self.send_pixels((0..count).map(|_| pixel))
    }
}

/// A TFT: remembers what it shows and sends the changed bands.
pub struct Tft<DI, M, RST>
where
    DI: Interface<Word = u8>,
    M: Model<ColorFormat = Rgb565>,
    RST: OutputPin,
{
    display: Display<DI, M, RST>,
    width: usize,
    shown: Option<Vec<Rgb565>>,
}

/// A changed band: rows `top..=bottom`, columns `left..=right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    /// First row.
    pub top: usize,
    /// Last row.
    pub bottom: usize,
    /// First column.
    pub left: usize,
    /// Last column.
    pub right: usize,
}

impl Band {
    fn pixels(&self) -> usize {
        (self.bottom + 1 - self.top) * (self.right + 1 - self.left)
    }
}

/// The bands where `now` differs from `before` (both `width` pixels a row): each changed row's
/// span, joined with the band above while that costs no more than `overhead` pixels.
pub fn bands(now: &[Rgb565], before: &[Rgb565], width: usize) -> Vec<Band> {
    let mut out = Vec::new();
    let mut current: Option<Band> = None;
    for (y, (a, b)) in now
        .chunks_exact(width)
        .zip(before.chunks_exact(width))
        .enumerate()
    {
        let Some(left) = (0..width).find(|&x| a[x] != b[x]) else {
            continue;
        };
        let right = (0..width).rfind(|&x| a[x] != b[x]).unwrap_or(left);
        let row = Band {
            top: y,
            bottom: y,
            left,
            right,
        };
        current = Some(match current {
            None => row,
            Some(band) => {
                let joined = Band {
                    top: band.top,
                    bottom: y,
                    left: band.left.min(left),
                    right: band.right.max(right),
                };
                if joined.pixels() <= band.pixels() + row.pixels() + WINDOW_OVERHEAD {
                    joined
                } else {
                    out.push(band);
                    row
                }
            }
        });
    }
    out.extend(current);
    out
}

impl<DI, M, RST> Tft<DI, M, RST>
where
    DI: Interface<Word = u8>,
    M: Model<ColorFormat = Rgb565>,
    RST: OutputPin,
{
    /// A panel on an initialised `mipidsi` display `width` pixels wide (after rotation).
    pub fn new(display: Display<DI, M, RST>, width: usize) -> Self {
        Tft {
            display,
            width,
            shown: None,
        }
    }

    /// Shows `frame` (row after row, `width` a row): the first whole, then the changed bands.
    /// Returns the pixels sent.
    pub fn show(&mut self, frame: &[Rgb565]) -> Result<usize, DI::Error> {
        let w = self.width;
        let all = vec![Band {
            top: 0,
            bottom: (frame.len() / w).max(1) - 1,
            left: 0,
            right: w - 1,
        }];
        let todo = match &self.shown {
            Some(shown) if shown.len() == frame.len() => bands(frame, shown, w),
            _ => all,
        };
        let mut sent = 0;
        for b in &todo {
            let rows = frame[b.top * w..(b.bottom + 1) * w].chunks_exact(w);
            let pixels = rows.flat_map(|row| row[b.left..=b.right].iter().copied());
            let result = self.display.set_pixels(
                b.left as u16,
                b.top as u16,
                b.right as u16,
                b.bottom as u16,
                pixels,
            );
            if let Err(e) = result {
                self.shown = None;
                return Err(e);
            }
            sent += b.pixels();
        }
        self.shown = Some(frame.to_vec());
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::RgbColor;

    #[test]
    fn bands_cover_changes_and_join_when_cheap() {
        let w = 10;
        let before = vec![Rgb565::BLACK; w * 6];
        let mut now = before.clone();
        now[w + 2] = Rgb565::RED; // row 1, column 2
        now[2 * w + 3] = Rgb565::RED; // row 2, column 3
        now[5 * w + 9] = Rgb565::RED; // row 5, column 9
        let got = bands(&now, &before, w);
        assert_eq!(
            got,
            [
                Band {
                    top: 1,
                    bottom: 2,
                    left: 2,
                    right: 3
                },
                Band {
                    top: 5,
                    bottom: 5,
                    left: 9,
                    right: 9
                }
            ]
        );
        assert!(bands(&before, &before, w).is_empty());
    }
}
