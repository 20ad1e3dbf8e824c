//! Ember's panel screens.
//!
//! Screens are functions generic over an embedded-graphics [`DrawTarget`]: the same code drives
//! a real panel, a PNG preview, the dashboard's panel mirror and the tests.
//!
//! - [`pages`]: every page (overview, CPU, network, disks, temperatures, processes, fleet) and
//!   the alert banner, for any panel size, monochrome ([`BinaryColor`]) or colour
//!   ([`Rgb565`]), laid out by [`layout::Layout`] and coloured by [`theme::PanelColor`].
//! - [`text`]: the same pages as lines of characters for HD44780 character LCDs.
//! - [`overview`]: the overview on a 128x64 panel from a handful of figures.
//! - [`Framebuffer`]: a 1-bit buffer in the page layout SSD1306-style controllers take, so a
//!   driver sends its bytes unchanged, and [`Framebuffer::dirty`] finds what changed between
//!   two frames. [`Canvas`] is a colour frame over borrowed memory.
//! - [`history`]: fixed-capacity histories for sparklines; [`settings`]: units and thresholds.
//!
//! The crate is `no_std` and never allocates; the `png` feature (previews) and the `emulator`
//! feature (a recording bus and an emulated SSD1306/SH1106 for tests) turn on `std`.
//!
//! [`DrawTarget`]: embedded_graphics::draw_target::DrawTarget
//! [`BinaryColor`]: embedded_graphics::pixelcolor::BinaryColor
//! [`Rgb565`]: embedded_graphics::pixelcolor::Rgb565

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code, missing_docs)]

pub mod canvas;
#[cfg(feature = "emulator")]
pub mod emulator;
mod format;
pub mod framebuffer;
pub mod history;
pub mod layout;
pub mod model;
pub mod overview;
pub mod pages;
#[cfg(feature = "png")]
pub mod png;
pub mod settings;
pub mod text;
pub mod theme;

pub use canvas::Canvas;
pub use framebuffer::{Framebuffer, Mono128x32, Mono128x64};
pub use history::{Histories, History};
pub use model::{FleetHost, Model};
pub use overview::Overview;
pub use pages::Page;
pub use settings::Settings;
