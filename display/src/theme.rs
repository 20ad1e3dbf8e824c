//! Colours: one layout serves monochrome and colour panels.
//!
//! Every page is drawn in the roles of [`PanelColor`]; a monochrome panel maps them all to
//! on/off and shows levels by inverting the value, a colour panel gives each its own colour.

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, RgbColor};

use crate::settings::Level;

/// The colours a page is drawn in, by role.
pub trait PanelColor: embedded_graphics::pixelcolor::PixelColor {
    /// Whether the panel has two colours only: warnings are then shown inverse.
    const MONOCHROME: bool;
    /// The screen's background.
    const BACKGROUND: Self;
    /// Ordinary text.
    const TEXT: Self;
    /// Secondary text, bar outlines, axes.
    const DIM: Self;
    /// The title bar's fill.
    const TITLE_BG: Self;
    /// The title bar's text.
    const TITLE_TEXT: Self;
    /// A bar's fill at a normal level.
    const BAR: Self;
    /// Received traffic in sparklines.
    const RX: Self;
    /// Sent traffic in sparklines.
    const TX: Self;
    /// A value at the warning level.
    const WARN: Self;
    /// A value at the critical level.
    const CRIT: Self;
    /// The alert banner's fill.
    const ALERT_BG: Self;
    /// The alert banner's text.
    const ALERT_TEXT: Self;

    /// Text colour and, when the value is shown inverse, the fill behind it.
    fn level(level: Level) -> (Self, Option<Self>) {
        match (level, Self::MONOCHROME) {
            (Level::Normal, _) => (Self::TEXT, None),
            (_, true) => (Self::BACKGROUND, Some(Self::TEXT)),
            (Level::Warn, false) => (Self::WARN, None),
            (Level::Crit, false) => (Self::TEXT, Some(Self::CRIT)),
        }
    }

    /// A bar's fill at `level`.
    fn bar(level: Level) -> Self {
        match level {
            Level::Normal => Self::BAR,
            Level::Warn => Self::WARN,
            Level::Crit => Self::CRIT,
        }
    }
}

impl PanelColor for BinaryColor {
    const MONOCHROME: bool = true;
    const BACKGROUND: Self = BinaryColor::Off;
    const TEXT: Self = BinaryColor::On;
    const DIM: Self = BinaryColor::On;
    const TITLE_BG: Self = BinaryColor::On;
    const TITLE_TEXT: Self = BinaryColor::Off;
    const BAR: Self = BinaryColor::On;
    const RX: Self = BinaryColor::On;
    const TX: Self = BinaryColor::On;
    const WARN: Self = BinaryColor::On;
    const CRIT: Self = BinaryColor::On;
    const ALERT_BG: Self = BinaryColor::Off;
    const ALERT_TEXT: Self = BinaryColor::On;
}

/// 8-bit channels to RGB565.
const fn rgb(r: u8, g: u8, b: u8) -> Rgb565 {
    Rgb565::new(r >> 3, g >> 2, b >> 3)
}

impl PanelColor for Rgb565 {
    const MONOCHROME: bool = false;
    const BACKGROUND: Self = Rgb565::BLACK;
    const TEXT: Self = Rgb565::WHITE;
    const DIM: Self = rgb(0x80, 0x88, 0x90);
    const TITLE_BG: Self = rgb(0x20, 0x48, 0x80);
    const TITLE_TEXT: Self = Rgb565::WHITE;
    const BAR: Self = rgb(0x30, 0xc0, 0x60);
    const RX: Self = rgb(0x30, 0xb0, 0xe0);
    const TX: Self = rgb(0xf0, 0x90, 0x30);
    const WARN: Self = rgb(0xf8, 0xc0, 0x20);
    const CRIT: Self = rgb(0xe0, 0x20, 0x20);
    const ALERT_BG: Self = rgb(0xe0, 0x20, 0x20);
    const ALERT_TEXT: Self = Rgb565::WHITE;
}
