//! The overview screen on a microcontroller: a static library for C firmware.
//!
//! On a microcontroller target (`target_os = "none"`) this is `no_std` with its own panic
//! handler, and builds with nothing but `core`:
//!
//! ```sh
//! RUSTC_BOOTSTRAP=1 cargo build --release -Zbuild-std=core \
//!     --target thumbv7em-none-eabihf -p ember-display --example mcu_overview
//! # also --target riscv32imc-unknown-none-elf
//! ```
//!
//! The result, `libmcu_overview.a`, exports one function. The firmware keeps the panel's frame
//! in a static buffer and sends it to an SSD1306-style controller unchanged (page layout, see
//! `ember_display::framebuffer`):
//!
//! ```c
//! static uint8_t frame[1024];                /* 128x64, 1 bit per pixel */
//! struct ember_figures f = { .host = "greenhouse", .cpu = 2300, .memory = 6100,
//!                            .disk = 0xffff, .temperature = 21500, .uptime_s = 3600 };
//! if (ember_render_overview(&f, frame)) ssd1306_write(frame, sizeof frame);
//! ```
//!
//! It is a static library rather than a firmware image because an image needs a runtime crate
//! (cortex-m-rt, riscv-rt) and a board's memory map; the drawing code is the same either way.
//! On other targets it builds with `std`, so that `cargo test`/`clippy` on the host check it.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use ember_display::framebuffer::Mono128x64;
use ember_display::overview::{draw, Overview};
use heapless::String;

/// What the screen shows, as C lays it out. Units follow the wire: hundredths of a percent,
/// millidegrees Celsius, bytes per second, seconds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EmberFigures {
    /// Host name, UTF-8, padded with NULs (up to 32 bytes shown).
    pub host: [u8; 32],
    /// IPv4 address; 0.0.0.0 shows as none.
    pub ipv4: [u8; 4],
    /// CPU busy.
    pub cpu: u16,
    /// Memory in use; [`UNKNOWN`] when not known.
    pub memory: u16,
    /// Disk in use; [`UNKNOWN`] when not known.
    pub disk: u16,
    /// Hottest sensor; [`NO_TEMPERATURE`] when none was read.
    pub temperature: i32,
    /// Received bytes per second.
    pub rx_bps: u64,
    /// Sent bytes per second.
    pub tx_bps: u64,
    /// Seconds since boot.
    pub uptime_s: u64,
}

/// `memory` or `disk` not known.
pub const UNKNOWN: u16 = u16::MAX;
/// No temperature read.
pub const NO_TEMPERATURE: i32 = i32::MIN;

/// Draws the overview of `figures` into `frame` (128x64 pixels, page layout). Returns whether
/// it drew; a framebuffer draw cannot fail, so today it always does.
#[no_mangle]
pub extern "C" fn ember_render_overview(figures: &EmberFigures, frame: &mut [u8; 1024]) -> bool {
    let mut fb = Mono128x64::new();
    if draw(&overview(figures), &mut fb).is_err() {
        return false;
    }
    frame.copy_from_slice(fb.as_bytes());
    true
}

/// The screen's model from the C figures; bad UTF-8 in the name is shown as `?`.
fn overview(f: &EmberFigures) -> Overview {
    let name = f.host.split(|&b| b == 0).next().unwrap_or_default();
    let mut host = String::new();
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            let c = if c.is_control() { '?' } else { c };
            let _ = host.push(c);
        }
        if !chunk.invalid().is_empty() {
            let _ = host.push('?');
        }
    }
    let known = |v: u16| (v != UNKNOWN).then_some(v);
    Overview {
        host,
        ipv4: (f.ipv4 != [0; 4]).then_some(f.ipv4),
        cpu: f.cpu,
        memory: known(f.memory),
        disk: known(f.disk),
        temperature: (f.temperature != NO_TEMPERATURE).then_some(f.temperature),
        rx_bps: f.rx_bps,
        tx_bps: f.tx_bps,
        uptime_s: f.uptime_s,
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing here panics (drawing clips, strings are cut); should it, stop where a debugger
    // finds it rather than reset in a loop.
    loop {
        core::hint::spin_loop();
    }
}
