//! Proof without hardware (feature `emulator`): recording buses and emulated controllers.
//!
//! - [`bus`]: an I2C bus and an SPI device (with its D/C and other pins) that implement the
//!   embedded-hal 1.0 traits, record every byte a driver sends, and can refuse like a missing
//!   device does.
//! - [`oled`]: an SSD1306 / SH1106 that decodes the command and data stream (addressing modes,
//!   column and page windows, remapping, start line, inversion) into its display RAM and shows
//!   what its glass would: tests assert that the bytes a driver sent produce exactly the frame
//!   that was rendered.
//! - [`hd44780`]: an HD44780 behind a PCF8574 I2C backpack, decoding the 4-bit nibble stream
//!   into the characters on its lines.
//!
//! These are strict: a byte the real controller would not understand is an [`Error`], so a
//! driver that sends nonsense fails its test instead of passing silently.

pub mod bus;
pub mod hd44780;
pub mod oled;

/// Why an emulated controller refused what it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub(crate) fn error<T>(message: impl Into<String>) -> Result<T, Error> {
    Err(Error(message.into()))
}
