//! A page as the board's panel shows it: a [`Frame`] for the driver, or a PNG.

use embedded_graphics::draw_target::DrawTargetExt;
use embedded_graphics::geometry::{Point, Size};
use embedded_graphics::pixelcolor::{Rgb565, RgbColor};
use ember_display::framebuffer::Mono128x64;
use ember_display::layout::Layout;
use ember_display::model::{alert, Alert, Model};
use ember_display::text::{self, Grid};
use ember_display::{pages, Canvas, Page, Settings};

use super::board::{Board, Controller};

/// What one refresh of the panel shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A monochrome OLED (128x64 buffer; a 128x32 panel uses its top half).
    Mono(Box<Mono128x64>),
    /// A colour TFT, row after row.
    Color {
        /// RGB565 pixels.
        pixels: Vec<Rgb565>,
        /// Pixels per row.
        width: usize,
    },
    /// A character LCD: one line of HD44780 codes per display line.
    Text(Vec<Vec<u8>>),
}

impl Frame {
    /// Turns the picture over: pixels inverted, colours complemented; a character LCD shows
    /// `IDENTIFY` on its first line instead (it cannot invert).
    pub fn invert(&mut self) {
        match self {
            Frame::Mono(fb) => fb.invert(),
            Frame::Color { pixels, .. } => {
                for p in pixels.iter_mut() {
                    *p = Rgb565::new(31 - p.r(), 63 - p.g(), 31 - p.b());
                }
            }
            Frame::Text(lines) => {
                if let Some(first) = lines.first_mut() {
                    let n = first.len();
                    let mut line: Vec<u8> = b"** IDENTIFY **".iter().copied().take(n).collect();
                    line.resize(n, b' ');
                    *first = line;
                }
            }
        }
    }
}

/// Renders pages for one board.
#[derive(Debug, Clone)]
pub struct Renderer {
    controller: Controller,
    size: (u32, u32),
    settings: Settings,
}

fn lines<const C: usize, const R: usize>(
    page: Page,
    model: &Model<'_>,
    settings: &Settings,
    banner: Option<&Alert>,
) -> Vec<Vec<u8>> {
    let mut grid = Grid::<C, R>::new();
    text::render_with(page, model, settings, banner, &mut grid);
    grid.lines().iter().map(|l| l.to_vec()).collect()
}

impl Renderer {
    /// A renderer for `board`'s panel with `settings`.
    pub fn new(board: &Board, settings: &Settings) -> Self {
        Renderer {
            controller: board.controller,
            size: board.drawn_size(),
            settings: *settings,
        }
    }

    /// `page` of `model`, moved by `shift` pixels (burn-in protection; what moves past the
    /// edge is cut off).
    pub fn render(&self, page: Page, model: &Model<'_>, shift: (i32, i32)) -> Frame {
        self.render_with_alert(page, model, shift, None)
    }

    /// [`Renderer::render`] with the collector's alert, which takes the banner over the one
    /// the sample itself raises.
    pub fn render_with_alert(
        &self,
        page: Page,
        model: &Model<'_>,
        shift: (i32, i32),
        collector: Option<&Alert>,
    ) -> Frame {
        let (w, h) = self.size;
        let banner = collector.cloned().or_else(|| alert(model, &self.settings));
        let layout = Layout::for_size(Size::new(w, h));
        let offset = Point::new(shift.0, shift.1);
        match self.controller {
            Controller::Hd44780 => Frame::Text(match (w, h) {
                (20, 4) => lines::<20, 4>(page, model, &self.settings, banner.as_ref()),
                _ => lines::<16, 2>(page, model, &self.settings, banner.as_ref()),
            }),
            c if c.is_oled() => {
                let mut fb = Mono128x64::new();
                let mut target = fb.translated(offset);
                // Drawing into a framebuffer cannot fail.
                let _ = pages::draw_with(
                    page,
                    model,
                    &self.settings,
                    &layout,
                    banner.as_ref(),
                    &mut target,
                );
                Frame::Mono(Box::new(fb))
            }
            _ => {
                let width = w as usize;
                let mut pixels = vec![Rgb565::BLACK; width * h as usize];
                let mut canvas = Canvas::new(&mut pixels, width);
                let mut target = canvas.translated(offset);
                let _ = pages::draw_with(
                    page,
                    model,
                    &self.settings,
                    &layout,
                    banner.as_ref(),
                    &mut target,
                );
                Frame::Color { pixels, width }
            }
        }
    }

    /// `frame` as a PNG, each pixel `scale` x `scale` (character LCDs as the module shows
    /// them).
    pub fn png(&self, frame: &Frame, scale: u32) -> Vec<u8> {
        match frame {
            Frame::Mono(fb) => {
                if self.size.1 == 32 {
                    let mut half = ember_display::Mono128x32::new();
                    for y in 0..32 {
                        for x in 0..128 {
                            half.set_pixel(x, y, fb.pixel(x, y));
                        }
                    }
                    ember_display::png::encode_png(&half, scale)
                } else {
                    ember_display::png::encode_png(fb.as_ref(), scale)
                }
            }
            Frame::Color { pixels, width } => {
                ember_display::png::encode_rgb565_png(pixels, *width, scale)
            }
            Frame::Text(lines) => match (self.size.0, self.size.1) {
                (20, 4) => grid_png::<20, 4>(lines, scale),
                _ => grid_png::<16, 2>(lines, scale),
            },
        }
    }
}

fn grid_png<const C: usize, const R: usize>(lines: &[Vec<u8>], scale: u32) -> Vec<u8> {
    let mut grid = Grid::<C, R>::new();
    for (row, codes) in lines.iter().enumerate() {
        grid.set_codes(row, codes);
    }
    let size = text::grid_size(C as u32, R as u32);
    let width = size.width as usize;
    let mut pixels = vec![Rgb565::BLACK; width * size.height as usize];
    let _ = text::draw_grid(&grid, &mut Canvas::new(&mut pixels, width));
    ember_display::png::encode_rgb565_png(&pixels, width, scale)
}
