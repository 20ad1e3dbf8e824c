//! An emulated SSD1306 or SH1106: commands and data in, the glass's pixels out.
//!
//! The model is the common module: a 128x64 (or, for the SSD1306, 128x32) glass mounted so
//! that segment remap `A1` and reversed COM scan `C8`, which every driver sends for an upright
//! picture, show RAM column 0 (the SH1106: column 2 of its 132) at the left and RAM row 0 at
//! the top. Other settings mirror the picture as the glass would.

use super::bus::{I2cWrite, SpiEvent};
use super::{error, Error};
use crate::framebuffer::Framebuffer;

/// Which controller is emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// SSD1306 (and the SSD1309, which takes the same commands but has no charge pump).
    Ssd1306,
    /// SH1106: 132 columns of RAM, page addressing only.
    Sh1106,
}

/// Memory addressing mode (SSD1306 command `0x20`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Column, then page, inside the column and page windows.
    Horizontal,
    /// Page, then column, inside the windows.
    Vertical,
    /// Column only, within one page (the SH1106's only mode).
    Page,
}

/// RAM columns (the SH1106 has 132; the SSD1306 uses the first 128).
const RAM_COLUMNS: usize = 132;
const RAM_PAGES: usize = 8;

/// The emulated controller's state.
#[derive(Debug, Clone)]
pub struct Oled {
    controller: Controller,
    width: usize,
    height: usize,
    ram: [[u8; RAM_COLUMNS]; RAM_PAGES],
    /// The addressing mode.
    pub addressing: Addressing,
    column: usize,
    page: usize,
    column_window: (usize, usize),
    page_window: (usize, usize),
    /// Display on (`AF`) or sleeping (`AE`).
    pub display_on: bool,
    /// Inverted (`A7`).
    pub inverted: bool,
    /// Every pixel on regardless of RAM (`A5`).
    pub entire_on: bool,
    /// Contrast (`81 xx`).
    pub contrast: u8,
    /// Segment remap (`A1`).
    pub segment_remap: bool,
    /// COM scan reversed (`C8`).
    pub com_reversed: bool,
    /// Multiplex ratio: rows driven, minus one (`A8 xx`).
    pub multiplex: u8,
    /// Display offset (`D3 xx`).
    pub offset: u8,
    /// Display start line (`40`..`7F`).
    pub start_line: u8,
    /// COM pins configuration (`DA xx`).
    pub com_pins: u8,
    /// Charge pump (`8D 14`; SSD1306 only).
    pub charge_pump: bool,
    /// Command bytes received, arguments included.
    pub command_bytes: usize,
    /// Data bytes received.
    pub data_bytes: usize,
    pending: Vec<u8>,
}

impl Oled {
    /// A controller just after reset, behind a `width` x `height` glass (128x64, or 128x32 on
    /// an SSD1306).
    pub fn new(controller: Controller, width: usize, height: usize) -> Self {
        Oled {
            controller,
            width,
            height,
            ram: [[0; RAM_COLUMNS]; RAM_PAGES],
            addressing: Addressing::Page,
            column: 0,
            page: 0,
            column_window: (0, 127),
            page_window: (0, 7),
            display_on: false,
            inverted: false,
            entire_on: false,
            contrast: 0x7f,
            segment_remap: false,
            com_reversed: false,
            multiplex: 63,
            offset: 0,
            start_line: 0,
            com_pins: 0x12,
            // The SH1106 has its DC-DC converter on after reset; the SSD1306's pump is off.
            charge_pump: controller == Controller::Sh1106,
            command_bytes: 0,
            data_bytes: 0,
            pending: Vec::new(),
        }
    }

    /// One I2C write to the controller (the bytes after the address): control bytes, then
    /// commands or data as they announce (`0x00`: commands follow, `0x40`: data follows,
    /// `0x80`/`0xC0`: one command/data byte, then another control byte).
    pub fn i2c(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut rest = bytes;
        while let Some((&control, tail)) = rest.split_first() {
            if control & 0x3f != 0 {
                return error(format!("bad I2C control byte {control:#04x}"));
            }
            let data = control & 0x40 != 0;
            let last = control & 0x80 == 0;
            let (now, after) = if last {
                (tail, &[][..])
            } else {
                match tail.split_first() {
                    Some((b, after)) => (std::slice::from_ref(b), after),
                    None => return error("control byte with Co=1 but no byte after it"),
                }
            };
            for &b in now {
                if data {
                    self.data(b)?;
                } else {
                    self.command(b)?;
                }
            }
            rest = after;
        }
        if bytes.is_empty() {
            return error("empty I2C write");
        }
        Ok(())
    }

    /// Every write of `log` to `address`; writes to other addresses are ignored.
    pub fn feed_i2c(&mut self, log: &[I2cWrite], address: u8) -> Result<(), Error> {
        for w in log.iter().filter(|w| w.address == address) {
            self.i2c(&w.bytes)?;
        }
        Ok(())
    }

    /// An SPI recording: bytes are commands while the pin `"dc"` is low, data while it is
    /// high. A low pulse on `"rst"` resets the controller.
    pub fn feed_spi(&mut self, log: &[SpiEvent]) -> Result<(), Error> {
        let mut dc = None;
        for event in log {
            match event {
                SpiEvent::Pin("dc", level) => dc = Some(*level),
                SpiEvent::Pin("rst", false) => {
                    *self = Oled::new(self.controller, self.width, self.height);
                }
                SpiEvent::Pin(..) | SpiEvent::Delay(_) => {}
                SpiEvent::Write(bytes) => {
                    for &b in bytes {
                        match dc {
                            Some(true) => self.data(b)?,
                            Some(false) => self.command(b)?,
                            None => return error("SPI bytes before D/C was set"),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Arguments a command byte takes.
    fn arguments(&self, first: u8) -> Result<usize, Error> {
        let sh = self.controller == Controller::Sh1106;
        Ok(match first {
            0x00..=0x1f | 0x40..=0x7f | 0xa0 | 0xa1 | 0xa4..=0xa7 | 0xae | 0xaf => 0,
            0xb0..=0xb7 | 0xc0 | 0xc8 | 0xe3 => 0,
            0x81 | 0xa8 | 0xd3 | 0xd5 | 0xd9 | 0xda | 0xdb | 0xad => 1,
            0x30..=0x33 if sh => 0,
            0xe0 | 0xee if sh => 0,
            0x8d | 0x20 if !sh => 1,
            0x21 | 0x22 | 0xa3 if !sh => 2,
            0x2e | 0x2f if !sh => 0,
            0x26 | 0x27 if !sh => 6,
            0x29 | 0x2a if !sh => 5,
            _ => {
                return error(format!(
                    "{:?} does not know command {first:#04x}",
                    self.controller
                ))
            }
        })
    }

    /// One command byte (or an argument of the command being received).
    pub fn command(&mut self, b: u8) -> Result<(), Error> {
        self.command_bytes += 1;
        self.pending.push(b);
        let need = self.arguments(self.pending[0])?;
        if self.pending.len() <= need {
            return Ok(());
        }
        let cmd = std::mem::take(&mut self.pending);
        let arg = |i: usize| usize::from(cmd[i]);
        match cmd[0] {
            0x00..=0x0f => self.column = (self.column & 0xf0) | arg(0),
            0x10..=0x1f => self.column = (self.column & 0x0f) | ((arg(0) & 0x0f) << 4),
            0x20 => {
                self.addressing = match cmd[1] & 0x03 {
                    0 => Addressing::Horizontal,
                    1 => Addressing::Vertical,
                    2 => Addressing::Page,
                    _ => return error("addressing mode 3 is invalid"),
                }
            }
            0x21 => {
                let (start, end) = (arg(1) & 0x7f, arg(2) & 0x7f);
                if end < start {
                    return error(format!("column window {start}..={end} is empty"));
                }
                self.column_window = (start, end);
                self.column = start;
            }
            0x22 => {
                let (start, end) = (arg(1) & 0x07, arg(2) & 0x07);
                if end < start {
                    return error(format!("page window {start}..={end} is empty"));
                }
                self.page_window = (start, end);
                self.page = start;
            }
            0x40..=0x7f => self.start_line = cmd[0] & 0x3f,
            0x81 => self.contrast = cmd[1],
            0x8d => self.charge_pump = cmd[1] & 0x04 != 0,
            0xad => self.charge_pump = cmd[1] & 0x01 != 0,
            0xa0 | 0xa1 => self.segment_remap = cmd[0] == 0xa1,
            0xa4 | 0xa5 => self.entire_on = cmd[0] == 0xa5,
            0xa6 | 0xa7 => self.inverted = cmd[0] == 0xa7,
            0xa8 => self.multiplex = cmd[1] & 0x3f,
            0xae | 0xaf => self.display_on = cmd[0] == 0xaf,
            0xb0..=0xb7 => self.page = usize::from(cmd[0] & 0x07),
            0xc0 | 0xc8 => self.com_reversed = cmd[0] == 0xc8,
            0xd3 => self.offset = cmd[1] & 0x3f,
            0xda => self.com_pins = cmd[1],
            0x26 | 0x27 | 0x29 | 0x2a | 0x2f => {
                return error("scrolling would move the picture; Ember never scrolls")
            }
            // Timing, voltages, no-ops: no effect on the picture.
            _ => {}
        }
        Ok(())
    }

    /// One data byte: written at the current address, which then advances as the addressing
    /// mode says.
    pub fn data(&mut self, b: u8) -> Result<(), Error> {
        if !self.pending.is_empty() {
            return error(format!(
                "data while command {:#04x} still waits for arguments",
                self.pending[0]
            ));
        }
        self.data_bytes += 1;
        let columns = match self.controller {
            Controller::Ssd1306 => 128,
            Controller::Sh1106 => RAM_COLUMNS,
        };
        if self.column >= columns {
            return error(format!(
                "data at column {} of page {}, past the RAM's {columns} columns",
                self.column, self.page
            ));
        }
        self.ram[self.page][self.column] = b;
        let (c0, c1) = self.column_window;
        let (p0, p1) = self.page_window;
        match self.addressing {
            Addressing::Horizontal => {
                if self.column >= c1 {
                    self.column = c0;
                    self.page = if self.page >= p1 { p0 } else { self.page + 1 };
                } else {
                    self.column += 1;
                }
            }
            Addressing::Vertical => {
                if self.page >= p1 {
                    self.page = p0;
                    self.column = if self.column >= c1 {
                        c0
                    } else {
                        self.column + 1
                    };
                } else {
                    self.page += 1;
                }
            }
            Addressing::Page => match self.controller {
                // The SSD1306 wraps at the last column, staying in the page.
                Controller::Ssd1306 if self.column >= 127 => self.column = 0,
                _ => self.column += 1,
            },
        }
        Ok(())
    }

    /// RAM byte at `page`, `column`.
    pub fn ram(&self, page: usize, column: usize) -> u8 {
        self.ram
            .get(page)
            .and_then(|p| p.get(column))
            .copied()
            .unwrap_or(0)
    }

    /// Whether the controller is set up to show a picture on its glass: on, driving all its
    /// rows with the COM pin layout the glass needs, with its charge pump on, not forced all
    /// on. The error says what is wrong.
    pub fn ready(&self) -> Result<(), Error> {
        if self.data_bytes > 0 && !self.pending.is_empty() {
            return error("a command is incomplete");
        }
        if !self.display_on {
            return error("the display is off (no 0xAF)");
        }
        if usize::from(self.multiplex) + 1 != self.height {
            return error(format!(
                "multiplex drives {} rows, the glass has {}",
                usize::from(self.multiplex) + 1,
                self.height
            ));
        }
        let pins = if self.height == 64 { 0x12 } else { 0x02 };
        if self.com_pins & 0x30 != pins & 0x30 {
            return error(format!(
                "COM pins {:#04x} interleave the rows of a {}-row glass (needs {pins:#04x})",
                self.com_pins, self.height
            ));
        }
        if !self.charge_pump {
            return error("the charge pump is off: the glass stays dark");
        }
        if self.entire_on {
            return error("entire display on (0xA5) hides the RAM");
        }
        Ok(())
    }

    /// What the glass shows, pixel `(x, y)` on: through remap, scan direction, start line,
    /// offset and inversion.
    pub fn lit(&self, x: usize, y: usize) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        let (margin, columns) = match self.controller {
            Controller::Ssd1306 => (0, 128),
            Controller::Sh1106 => (2, RAM_COLUMNS),
        };
        let column = if self.segment_remap {
            margin + x
        } else {
            columns - 1 - margin - x
        };
        let com = if self.com_reversed {
            y
        } else {
            self.height - 1 - y
        };
        let row = (com + usize::from(self.start_line) + usize::from(self.offset)) % 64;
        let on = self.ram(row / 8, column) & (1 << (row % 8)) != 0;
        on != self.inverted
    }

    /// The glass as a framebuffer of its size (`W` x `8 * PAGES`); the error says why the
    /// glass would not show it (see [`Oled::ready`]).
    pub fn visible<const W: usize, const PAGES: usize>(
        &self,
    ) -> Result<Framebuffer<W, PAGES>, Error> {
        self.ready()?;
        if W != self.width || PAGES * 8 != self.height {
            return error(format!(
                "a {W}x{} framebuffer for a {}x{} glass",
                PAGES * 8,
                self.width,
                self.height
            ));
        }
        let mut fb = Framebuffer::new();
        for y in 0..self.height {
            for x in 0..self.width {
                if self.lit(x, y) {
                    fb.set_pixel(x as i32, y as i32, true);
                }
            }
        }
        Ok(fb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_128X64: &[u8] = &[
        0x00, 0xae, 0xd5, 0x80, 0xa8, 0x3f, 0xd3, 0x00, 0x40, 0x8d, 0x14, 0x20, 0x00, 0xa1, 0xc8,
        0xda, 0x12, 0x81, 0xcf, 0xd9, 0xf1, 0xdb, 0x40, 0xa4, 0xa6, 0xaf,
    ];

    #[test]
    fn horizontal_window_wraps_inside_its_columns_and_pages() {
        let mut oled = Oled::new(Controller::Ssd1306, 128, 64);
        oled.i2c(INIT_128X64).unwrap();
        // Columns 10..=11 of pages 2..=3: four bytes fill the window, the fifth wraps.
        oled.i2c(&[0x00, 0x21, 10, 11, 0x22, 2, 3]).unwrap();
        oled.i2c(&[0x40, 1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            [
                oled.ram(2, 10),
                oled.ram(2, 11),
                oled.ram(3, 10),
                oled.ram(3, 11)
            ],
            [5, 2, 3, 4]
        );
        assert_eq!(oled.ram(2, 12), 0);
        let fb = oled.visible::<128, 8>().unwrap();
        assert!(fb.pixel(10, 16) && fb.pixel(10, 18) && !fb.pixel(10, 17));
        assert_eq!((oled.command_bytes, oled.data_bytes), (25 + 6, 5));
    }

    #[test]
    fn vertical_and_page_modes() {
        let mut oled = Oled::new(Controller::Ssd1306, 128, 64);
        oled.i2c(&[0x00, 0x20, 0x01, 0x21, 0, 1, 0x22, 0, 1])
            .unwrap();
        oled.i2c(&[0x40, 1, 2, 3]).unwrap();
        assert_eq!([oled.ram(0, 0), oled.ram(1, 0), oled.ram(0, 1)], [1, 2, 3]);
        // Page mode: B3, column 0x25 by nibbles.
        oled.i2c(&[0x00, 0x20, 0x02, 0xb3, 0x05, 0x12]).unwrap();
        oled.i2c(&[0xc0, 9, 0x40, 8]).unwrap();
        assert_eq!([oled.ram(3, 0x25), oled.ram(3, 0x26)], [9, 8]);
    }

    #[test]
    fn remap_scan_and_inversion_move_the_picture() {
        let mut oled = Oled::new(Controller::Ssd1306, 128, 64);
        oled.i2c(INIT_128X64).unwrap();
        oled.i2c(&[0x00, 0x21, 0, 0, 0x22, 0, 0]).unwrap();
        oled.i2c(&[0x40, 0x01]).unwrap();
        assert!(oled.lit(0, 0));
        oled.command(0xa0).unwrap();
        assert!(oled.lit(127, 0) && !oled.lit(0, 0));
        oled.command(0xc0).unwrap();
        assert!(oled.lit(127, 63));
        oled.command(0xa7).unwrap();
        assert!(!oled.lit(127, 63) && oled.lit(0, 0));
        // Start line 1: RAM row 1 is scanned first, so row 0 wraps to the last COM (the top
        // row while COM scan runs upwards).
        oled.command(0x41).unwrap();
        assert!(!oled.lit(127, 0) && oled.lit(127, 63));
    }

    #[test]
    fn sh1106_offsets_columns_and_knows_only_its_commands() {
        let mut oled = Oled::new(Controller::Sh1106, 128, 64);
        oled.i2c(&[
            0x00, 0xae, 0xa1, 0xc8, 0xa8, 0x3f, 0xda, 0x12, 0xad, 0x8b, 0xaf,
        ])
        .unwrap();
        oled.i2c(&[0x00, 0xb0, 0x02, 0x10]).unwrap();
        oled.i2c(&[0x40, 0xff]).unwrap();
        assert!(oled.lit(0, 0) && oled.lit(0, 7));
        // Page mode on the SH1106: nothing wraps, and column 132 does not exist.
        oled.i2c(&[0x00, 0xb1, 0x03, 0x18]).unwrap();
        oled.i2c(&[0x40, 1]).unwrap();
        assert!(oled.i2c(&[0x40, 1]).is_err());
        let mut oled = Oled::new(Controller::Sh1106, 128, 64);
        assert!(oled.i2c(&[0x00, 0x21, 0, 127]).is_err(), "no column window");
    }

    #[test]
    fn refuses_what_a_glass_would_not_show() {
        let mut oled = Oled::new(Controller::Ssd1306, 128, 64);
        assert!(oled.ready().unwrap_err().0.contains("off"));
        oled.i2c(INIT_128X64).unwrap();
        assert!(oled.ready().is_ok());
        assert!(oled.visible::<128, 4>().is_err());
        let mut small = Oled::new(Controller::Ssd1306, 128, 32);
        small.i2c(INIT_128X64).unwrap();
        let why = small.ready().unwrap_err().0;
        assert!(why.contains("multiplex"), "{why}");
        small.i2c(&[0x00, 0xa8, 0x1f]).unwrap();
        assert!(small.ready().unwrap_err().0.contains("COM pins"));
        small.i2c(&[0x00, 0xda, 0x02, 0x8d, 0x10]).unwrap();
        assert!(small.ready().unwrap_err().0.contains("charge pump"));
        assert!(small.i2c(&[0x01]).is_err(), "bad control byte");
        assert!(small.i2c(&[0x80]).is_err(), "Co=1 without its byte");
        assert!(small.i2c(&[0x00, 0x27]).is_err() || small.i2c(&[0x40, 1]).is_err());
        let mut oled = Oled::new(Controller::Ssd1306, 128, 64);
        assert!(oled.i2c(&[0x00, 0x21, 5, 4]).is_err(), "empty window");
    }

    #[test]
    fn spi_bytes_follow_dc() {
        let mut oled = Oled::new(Controller::Ssd1306, 128, 64);
        let log = [
            SpiEvent::Pin("dc", false),
            SpiEvent::Write(INIT_128X64[1..].to_vec()),
            SpiEvent::Write(vec![0x21, 0, 127, 0x22, 0, 7]),
            SpiEvent::Pin("dc", true),
            SpiEvent::Write(vec![0x80]),
        ];
        oled.feed_spi(&log).unwrap();
        assert!(oled.lit(0, 7) && !oled.lit(0, 6));
        assert!(Oled::new(Controller::Ssd1306, 128, 64)
            .feed_spi(&[SpiEvent::Write(vec![1])])
            .is_err());
    }
}
