//! Monochrome OLEDs: the SSD1306 and SSD1309 through the `ssd1306` crate, the SH1106 through
//! a small driver of Ember's own (no maintained crate speaks embedded-hal 1.0), both sending
//! only the windows of display RAM that changed since the last frame.

use display_interface::{DataFormat, DisplayError, WriteOnlyDataCommand};
use ember_display::framebuffer::{Mono128x64, Window};
use ssd1306::mode::BasicMode;
use ssd1306::prelude::{Brightness, DisplayRotation, DisplaySize128x32, DisplaySize128x64};
use ssd1306::Ssd1306;

/// Bytes it costs to address one more window on I2C: two 3-byte commands (column and page
/// window), their control byte and the transaction's address byte, rounded up.
pub const WINDOW_OVERHEAD: usize = 8;

/// What an OLED driver does for [`Oled`].
pub trait OledDriver {
    /// Initialises the controller (horizontal addressing, the panel's geometry, contrast, on).
    fn init(&mut self, contrast: u8) -> Result<(), DisplayError>;
    /// Writes `window` of `frame` into the controller's RAM.
    fn write_window(&mut self, frame: &Mono128x64, window: &Window) -> Result<(), DisplayError>;
    /// Sets the contrast.
    fn set_contrast(&mut self, contrast: u8) -> Result<(), DisplayError>;
}

/// An SSD1306 or SSD1309 driven by the `ssd1306` crate in its basic mode: Ember keeps the frame
/// and sends windows with `set_draw_area` + `draw`.
pub enum Ssd1306Driver<DI> {
    /// A 128x64 panel.
    Tall(Ssd1306<DI, DisplaySize128x64, BasicMode>),
    /// A 128x32 panel.
    Short(Ssd1306<DI, DisplaySize128x32, BasicMode>),
}

macro_rules! each {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Ssd1306Driver::Tall($d) => $e,
            Ssd1306Driver::Short($d) => $e,
        }
    };
}

impl<DI: WriteOnlyDataCommand> Ssd1306Driver<DI> {
    /// A driver on `interface` for a 128 x `height` panel turned by `rotation_180`.
    pub fn new(interface: DI, height: u32, rotation_180: bool) -> Self {
        let rotation = if rotation_180 {
            DisplayRotation::Rotate180
        } else {
            DisplayRotation::Rotate0
        };
        if height == 32 {
            Ssd1306Driver::Short(Ssd1306::new(interface, DisplaySize128x32, rotation))
        } else {
            Ssd1306Driver::Tall(Ssd1306::new(interface, DisplaySize128x64, rotation))
        }
    }
}

impl<DI: WriteOnlyDataCommand> OledDriver for Ssd1306Driver<DI> {
    fn init(&mut self, contrast: u8) -> Result<(), DisplayError> {
        each!(self, d => {
            d.init_with_addr_mode(ssd1306::command::AddrMode::Horizontal)?;
            d.set_brightness(Brightness::custom(0x2, contrast))
        })
    }

    fn write_window(&mut self, frame: &Mono128x64, w: &Window) -> Result<(), DisplayError> {
        // Columns and pages in pixels, end exclusive, as `set_draw_area` takes them.
        let start = (w.first_column as u8, (w.first_page * 8) as u8);
        let end = ((w.last_column + 1) as u8, ((w.last_page + 1) * 8) as u8);
        each!(self, d => {
            d.set_draw_area(start, end)?;
            for page in w.pages() {
                let bytes = frame.page(page).ok_or(DisplayError::OutOfBoundsError)?;
                d.draw(&bytes[w.columns()])?;
            }
            Ok(())
        })
    }

    fn set_contrast(&mut self, contrast: u8) -> Result<(), DisplayError> {
        each!(self, d => d.set_brightness(Brightness::custom(0x2, contrast)))
    }
}

/// The SH1106: SSD1306-like commands, but page addressing only and 132 columns of RAM of
/// which the glass shows 2..=129.
pub struct Sh1106Driver<DI> {
    interface: DI,
    rotation_180: bool,
}

/// The glass's first column in the SH1106's RAM.
const SH1106_OFFSET: usize = 2;

impl<DI: WriteOnlyDataCommand> Sh1106Driver<DI> {
    /// A driver on `interface` (the same I2C or SPI interfaces as the SSD1306's).
    pub fn new(interface: DI, rotation_180: bool) -> Self {
        Sh1106Driver {
            interface,
            rotation_180,
        }
    }

    fn commands(&mut self, bytes: &[u8]) -> Result<(), DisplayError> {
        self.interface.send_commands(DataFormat::U8(bytes))
    }
}

impl<DI: WriteOnlyDataCommand> OledDriver for Sh1106Driver<DI> {
    fn init(&mut self, contrast: u8) -> Result<(), DisplayError> {
        let (segments, scan) = if self.rotation_180 {
            (0xa0, 0xc0)
        } else {
            (0xa1, 0xc8)
        };
        // One command per write: display-interface-i2c takes at most 7 command bytes at once.
        let sequence: [&[u8]; 15] = [
            &[0xae],       // off while configuring
            &[0xd5, 0x80], // clock
            &[0xa8, 0x3f], // 64 rows
            &[0xd3, 0x00], // no offset
            &[0x40],       // start line 0
            &[0xad, 0x8b], // DC-DC on
            &[segments],
            &[scan],
            &[0xda, 0x12], // alternative COM pins (64 rows)
            &[0x81, contrast],
            &[0xd9, 0x22], // precharge
            &[0xdb, 0x35], // VCOM deselect
            &[0xa4],       // RAM shown
            &[0xa6],       // not inverted
            &[0xaf],       // on
        ];
        for command in sequence {
            self.commands(command)?;
        }
        Ok(())
    }

    fn write_window(&mut self, frame: &Mono128x64, w: &Window) -> Result<(), DisplayError> {
        let column = w.first_column + SH1106_OFFSET;
        for page in w.pages() {
            let bytes = frame.page(page).ok_or(DisplayError::OutOfBoundsError)?;
            self.commands(&[
                0xb0 | page as u8,
                (column & 0x0f) as u8,
                0x10 | (column >> 4) as u8,
            ])?;
            self.interface
                .send_data(DataFormat::U8(&bytes[w.columns()]))?;
        }
        Ok(())
    }

    fn set_contrast(&mut self, contrast: u8) -> Result<(), DisplayError> {
        self.commands(&[0x81, contrast])
    }
}

/// An OLED panel: remembers what it shows and sends only what changed.
pub struct Oled<D> {
    driver: D,
    pages: usize,
    shown: Option<Mono128x64>,
    contrast: u8,
}

impl<D: OledDriver> Oled<D> {
    /// A panel `height` pixels high on `driver`; [`Oled::init`] before showing.
    pub fn new(driver: D, height: u32, contrast: u8) -> Self {
        Oled {
            driver,
            pages: (height as usize / 8).clamp(1, 8),
            shown: None,
            contrast,
        }
    }

    /// Initialises the controller; the next frame is sent whole.
    pub fn init(&mut self) -> Result<(), DisplayError> {
        self.shown = None;
        self.driver.init(self.contrast)
    }

    /// Shows `frame` (its top `height` rows): the first frame whole, later ones as the windows
    /// that differ from the last. Returns the data bytes sent.
    pub fn show(&mut self, frame: &Mono128x64) -> Result<usize, DisplayError> {
        let windows = match &self.shown {
            Some(shown) => frame.dirty(shown, WINDOW_OVERHEAD),
            None => {
                let mut all = heapless::Vec::new();
                let _ = all.push(Window {
                    first_page: 0,
                    last_page: self.pages - 1,
                    first_column: 0,
                    last_column: 127,
                });
                all
            }
        };
        let mut sent = 0;
        for w in windows.iter().filter(|w| w.first_page < self.pages) {
            let w = Window {
                last_page: w.last_page.min(self.pages - 1),
                ..*w
            };
            // Forget what is shown if a write fails half-way: the next frame goes whole.
            if let Err(e) = self.driver.write_window(frame, &w) {
                self.shown = None;
                return Err(e);
            }
            sent += w.bytes();
        }
        self.shown = Some(frame.clone());
        Ok(sent)
    }

    /// Sets the contrast.
    pub fn set_contrast(&mut self, contrast: u8) -> Result<(), DisplayError> {
        self.contrast = contrast;
        self.driver.set_contrast(contrast)
    }
}
