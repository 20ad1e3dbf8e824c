//! Ember's panel screens.
//!
//! Screens are functions generic over an embedded-graphics [`DrawTarget`] with [`BinaryColor`]:
//! the same code drives a real panel, a PNG preview, the dashboard's panel mirror and the tests.
//! [`Framebuffer`] is a 1-bit buffer in the page layout SSD1306-style controllers take, so a
//! driver sends its bytes unchanged.
//!
//! The crate is `no_std` and never allocates; only the `png` feature (which turns on `std`)
//! encodes previews into a `Vec`.
//!
//! [`DrawTarget`]: embedded_graphics::draw_target::DrawTarget
//! [`BinaryColor`]: embedded_graphics::pixelcolor::BinaryColor

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code, missing_docs)]

pub mod framebuffer;
pub mod overview;
#[cfg(feature = "png")]
pub mod png;

pub use framebuffer::{Framebuffer, Mono128x64};
pub use overview::Overview;
