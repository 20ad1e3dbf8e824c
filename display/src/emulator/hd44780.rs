//! An emulated HD44780 character LCD behind a PCF8574 I2C backpack.
//!
//! Each byte written to the PCF8574 sets its eight outputs, wired as on the common backpacks:
//! P0 = RS, P1 = R/W, P2 = E, P3 = backlight, P4..P7 = D4..D7. The HD44780 latches D4..D7 on
//! the falling edge of E. After power-on it takes 8-bit instructions (one nibble each); the
//! function set with DL = 0 switches it to 4 bits, two nibbles per byte, high first.

use super::bus::I2cWrite;
use super::{error, Error};

const RS: u8 = 0x01;
const RW: u8 = 0x02;
const E: u8 = 0x04;
const BACKLIGHT: u8 = 0x08;

/// The controller's state.
#[derive(Debug, Clone)]
pub struct Hd44780 {
    ddram: [u8; 0x80],
    address: usize,
    four_bit: bool,
    high_nibble: Option<(u8, bool)>,
    port: u8,
    /// Two display lines (function set N = 1).
    pub two_lines: bool,
    /// Display on (display control D).
    pub display_on: bool,
    /// Cursor shown (C or B): Ember hides it.
    pub cursor: bool,
    /// The backpack's backlight output.
    pub backlight: bool,
    /// Instructions received.
    pub instructions: usize,
}

impl Default for Hd44780 {
    fn default() -> Self {
        Self::new()
    }
}

impl Hd44780 {
    /// A controller just after power-on (8-bit interface, display off, DDRAM blank).
    pub fn new() -> Self {
        Hd44780 {
            ddram: [b' '; 0x80],
            address: 0,
            four_bit: false,
            high_nibble: None,
            port: 0,
            two_lines: false,
            display_on: false,
            cursor: false,
            backlight: false,
            instructions: 0,
        }
    }

    /// Every write of `log` to `address`.
    pub fn feed_i2c(&mut self, log: &[I2cWrite], address: u8) -> Result<(), Error> {
        for w in log.iter().filter(|w| w.address == address) {
            for &b in &w.bytes {
                self.port(b)?;
            }
        }
        Ok(())
    }

    /// One byte on the PCF8574's outputs.
    pub fn port(&mut self, value: u8) -> Result<(), Error> {
        let falling = self.port & E != 0 && value & E == 0;
        self.backlight = value & BACKLIGHT != 0;
        if value & RW != 0 {
            return error("R/W high: Ember's driver only writes");
        }
        if falling {
            // E falls: latch the nibble present while it was high.
            let nibble = self.port >> 4;
            let rs = self.port & RS != 0;
            self.nibble(nibble, rs)?;
        }
        self.port = value;
        Ok(())
    }

    fn nibble(&mut self, nibble: u8, rs: bool) -> Result<(), Error> {
        if !self.four_bit {
            // 8-bit mode: D0..D3 are not wired and read low.
            return self.byte(nibble << 4, rs);
        }
        match self.high_nibble.take() {
            None => {
                self.high_nibble = Some((nibble, rs));
                Ok(())
            }
            Some((high, high_rs)) => {
                if high_rs != rs {
                    return error("RS changed between the two halves of a byte");
                }
                self.byte(high << 4 | nibble, rs)
            }
        }
    }

    fn byte(&mut self, b: u8, rs: bool) -> Result<(), Error> {
        if rs {
            self.ddram[self.address] = b;
            self.address = match self.address {
                0x27 => 0x40,
                0x67 => 0x00,
                a => a + 1,
            };
            return Ok(());
        }
        self.instructions += 1;
        match b {
            0x01 => {
                self.ddram = [b' '; 0x80];
                self.address = 0;
            }
            0x02 | 0x03 => self.address = 0,
            0x04..=0x07 => {
                if b & 0x02 == 0 || b & 0x01 != 0 {
                    return error(format!("entry mode {b:#04x}: Ember writes left to right"));
                }
            }
            0x08..=0x0f => {
                self.display_on = b & 0x04 != 0;
                self.cursor = b & 0x03 != 0;
            }
            0x10..=0x1f => return error("cursor or display shift: Ember never shifts"),
            0x20..=0x3f => {
                self.four_bit = b & 0x10 == 0;
                self.two_lines = b & 0x08 != 0;
            }
            0x40..=0x7f => return error("CGRAM write: Ember uses only the ROM's characters"),
            _ => {
                let a = usize::from(b & 0x7f);
                if !(a <= 0x27 || (0x40..=0x67).contains(&a)) {
                    return error(format!("DDRAM address {a:#04x} does not exist"));
                }
                self.address = a;
            }
        }
        Ok(())
    }

    /// Line `row` of a display `cols` wide (16x2: lines at 0x00 and 0x40; 20x4: 0x00, 0x40,
    /// 0x14, 0x54), as character codes.
    pub fn line(&self, row: usize, cols: usize) -> Vec<u8> {
        let start = match row {
            0 => 0x00,
            1 => 0x40,
            2 => cols,
            _ => 0x40 + cols,
        };
        self.ddram[start..start + cols].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PCF8574 bytes for one nibble: E high, then low.
    fn pulse(out: &mut Vec<u8>, nibble: u8, rs: bool) {
        let base = nibble << 4 | BACKLIGHT | if rs { RS } else { 0 };
        out.extend([base | E, base]);
    }

    fn byte(out: &mut Vec<u8>, b: u8, rs: bool) {
        pulse(out, b >> 4, rs);
        pulse(out, b & 0x0f, rs);
    }

    #[test]
    fn four_bit_init_then_text_on_two_lines() {
        let mut out = Vec::new();
        for _ in 0..3 {
            pulse(&mut out, 0x3, false);
        }
        pulse(&mut out, 0x2, false);
        for b in [0x28, 0x0c, 0x06, 0x01, 0x80] {
            byte(&mut out, b, false);
        }
        for &c in b"Hi" {
            byte(&mut out, c, true);
        }
        byte(&mut out, 0xc0, false);
        byte(&mut out, 0xdf, true);
        let mut lcd = Hd44780::new();
        for b in out {
            lcd.port(b).unwrap();
        }
        assert!(lcd.display_on && lcd.two_lines && !lcd.cursor && lcd.backlight);
        assert_eq!(&lcd.line(0, 16)[..3], b"Hi ");
        assert_eq!(lcd.line(1, 16)[0], 0xdf);
        assert!(lcd.port(RW).is_err());
    }

    #[test]
    fn refuses_what_ember_never_sends() {
        let mut lcd = Hd44780::new();
        let mut out = Vec::new();
        pulse(&mut out, 0x2, false);
        byte(&mut out, 0x18, false);
        let result: Result<(), Error> = out.into_iter().try_for_each(|b| lcd.port(b));
        assert!(result.is_err());
    }
}
