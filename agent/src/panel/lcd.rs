//! HD44780 character LCDs behind a PCF8574 I2C backpack (Ember's own driver: the maintained
//! `hd44780-driver` crate speaks embedded-hal 0.2 only).
//!
//! The backpack's outputs: P0 = RS, P1 = R/W, P2 = E, P3 = backlight, P4..P7 = D4..D7. Each
//! byte goes as two nibbles, each latched by a pulse on E; one I2C transaction carries a whole
//! byte (four port writes).

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

const RS: u8 = 0x01;
const E: u8 = 0x04;
const BACKLIGHT: u8 = 0x08;

/// An HD44780 `cols` x `rows` on a PCF8574 at `address`.
pub struct Hd44780<I2C, D> {
    i2c: I2C,
    address: u8,
    delay: D,
    cols: usize,
    rows: usize,
    backlight: bool,
    shown: Option<Vec<Vec<u8>>>,
}

impl<I2C: I2c, D: DelayNs> Hd44780<I2C, D> {
    /// A display on `i2c`; [`Hd44780::init`] before showing.
    pub fn new(i2c: I2C, address: u8, delay: D, cols: usize, rows: usize) -> Self {
        Hd44780 {
            i2c,
            address,
            delay,
            cols,
            rows,
            backlight: true,
            shown: None,
        }
    }

    fn port(&self, nibble: u8, rs: bool) -> u8 {
        nibble << 4 | if self.backlight { BACKLIGHT } else { 0 } | if rs { RS } else { 0 }
    }

    /// One nibble: E high, then low.
    fn nibble(&mut self, nibble: u8) -> Result<(), I2C::Error> {
        let p = self.port(nibble, false);
        self.i2c.write(self.address, &[p | E, p])
    }

    fn byte(&mut self, b: u8, rs: bool) -> Result<(), I2C::Error> {
        let (hi, lo) = (self.port(b >> 4, rs), self.port(b & 0x0f, rs));
        self.i2c.write(self.address, &[hi | E, hi, lo | E, lo])
    }

    /// The power-on sequence for a 4-bit interface (HD44780 datasheet, figure 24), then two
    /// lines, display on without cursor, left to right, cleared.
    pub fn init(&mut self) -> Result<(), I2C::Error> {
        self.shown = None;
        self.delay.delay_ms(50);
        for wait_us in [4_500, 150, 150] {
            self.nibble(0x3)?;
            self.delay.delay_us(wait_us);
        }
        self.nibble(0x2)?;
        for cmd in [0x28, 0x0c, 0x06, 0x01] {
            self.byte(cmd, false)?;
        }
        self.delay.delay_ms(2);
        Ok(())
    }

    /// DDRAM address of line `row`.
    fn line_address(&self, row: usize) -> u8 {
        let cols = self.cols as u8;
        [0x00, 0x40, cols, 0x40 + cols][row.min(3)]
    }

    /// Shows `lines` (HD44780 character codes), writing only the characters that changed.
    /// Returns the characters written.
    pub fn show(&mut self, lines: &[Vec<u8>]) -> Result<usize, I2C::Error> {
        let mut written = 0;
        for (row, line) in lines.iter().enumerate().take(self.rows) {
            let line = &line[..line.len().min(self.cols)];
            let old = self.shown.as_ref().and_then(|s| s.get(row));
            let differs = |x: &usize| old.is_none_or(|o| o.get(*x) != line.get(*x));
            let Some(first) = (0..line.len()).find(differs) else {
                continue;
            };
            let last = (0..line.len()).rfind(differs).unwrap_or(first);
            let address = self.line_address(row) + first as u8;
            if let Err(e) = self.write_run(address, &line[first..=last]) {
                self.shown = None;
                return Err(e);
            }
            written += last + 1 - first;
        }
        self.shown = Some(lines.to_vec());
        Ok(written)
    }

    fn write_run(&mut self, address: u8, run: &[u8]) -> Result<(), I2C::Error> {
        self.byte(0x80 | address, false)?;
        for &c in run {
            self.byte(c, true)?;
        }
        Ok(())
    }

    /// Turns the backlight on or off.
    pub fn set_backlight(&mut self, on: bool) -> Result<(), I2C::Error> {
        self.backlight = on;
        let p = self.port(0, false);
        self.i2c.write(self.address, &[p])
    }
}
