//! Panel benchmark: render time per page and bytes on the bus per frame, for each built-in
//! board, over a minute of 1 s refreshes of a realistic, changing sample.
//!
//! ```text
//! cargo bench -p ember-agent --bench panel
//! ```
//!
//! Frames go through the real drivers (the `ssd1306` crate, Ember's SH1106, HD44780 and
//! `mipidsi` glue) into recording buses; "bytes" are what the drivers write, including I2C
//! control bytes, plus one address byte per I2C transaction. The time at the board's bus clock
//! counts nine clocks per I2C byte, eight per SPI byte.

use std::time::Instant;

use ember_agent::panel::board::{Board, Bus, Controller, BUILTIN};
use ember_agent::panel::lcd::Hd44780;
use ember_agent::panel::oled::{Oled, Sh1106Driver, Ssd1306Driver};
use ember_agent::panel::{Device, Frame, LcdDevice, OledDevice, Renderer, TftDevice};
use ember_display::emulator::bus::{BusStats, RecordingI2c, RecordingSpi};
use ember_display::{Histories, Model, Page, Settings};
use ember_wire::{Filesystem, NetIo, Process, Sample, Temperature};

/// A small deterministic random walk.
struct Walk(u64);

impl Walk {
    fn next(&mut self, spread: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % spread.max(1)
    }
}

fn sample(t: u64, w: &mut Walk) -> Sample {
    let mut s = Sample {
        seq: t,
        uptime_s: 86_400 + t,
        throttled: Some(0),
        ..Sample::default()
    };
    s.cpu.busy = (800 + w.next(2_500)) as u16;
    s.cpu.user = s.cpu.busy / 2;
    s.cpu.system = s.cpu.busy / 5;
    for _ in 0..4 {
        s.cpu.cores.push((300 + w.next(4_000)) as u16).unwrap();
    }
    s.load.one = 40 + w.next(30) as u32;
    s.load.five = 45;
    s.load.fifteen = 41;
    s.memory.total = 3_978_000_000;
    s.memory.used = 2_400_000_000 + w.next(20_000_000);
    for (mount, total, used) in [
        ("/boot/firmware", 534_000_000, 64_000_000),
        ("/", 62_500_000_000, 23_800_000_000),
    ] {
        let fs = Filesystem {
            mount: mount.into(),
            total,
            used,
        };
        s.filesystems.push(fs).unwrap();
    }
    for (name, base) in [("eth0", 900_000), ("wlan0", 20_000)] {
        let net = NetIo {
            interface: name.into(),
            rx_bps: base + w.next(base),
            tx_bps: base / 4 + w.next(base / 4),
            ..NetIo::default()
        };
        s.networks.push(net).unwrap();
    }
    let t = Temperature {
        sensor: "cpu_thermal".into(),
        millicelsius: 51_000 + w.next(800) as i32,
    };
    s.temperatures.push(t).unwrap();
    for (name, cpu) in [("python3", 1_800), ("mosquitto", 400), ("ember-agent", 120)] {
        let p = Process {
            pid: 100,
            name: name.into(),
            cpu: cpu + w.next(200) as u32,
            memory: 50_000_000,
        };
        s.top_cpu.push(p).unwrap();
    }
    s
}

/// A driver for `board` on a recording bus, and a way to read the bus's totals.
fn device(board: &Board) -> (Box<dyn Device>, Box<dyn Fn() -> BusStats>) {
    let c = board.controller;
    match &board.bus {
        Bus::I2c { address, .. } => {
            let bus = RecordingI2c::new(&[*address]);
            let reader = bus.clone();
            let stats = Box::new(move || reader.stats());
            let name = "bench".to_string();
            let d: Box<dyn Device> = match c {
                Controller::Hd44780 => {
                    let mut lcd = Hd44780::new(
                        bus,
                        *address,
                        NoDelay,
                        board.width as usize,
                        board.height as usize,
                    );
                    lcd.init().unwrap();
                    Box::new(LcdDevice { lcd, name })
                }
                Controller::Sh1106 => {
                    let di = ssd1306::I2CDisplayInterface::new_custom_address(bus, *address);
                    let mut oled = Oled::new(Sh1106Driver::new(di, false), board.height, 0x7f);
                    oled.init().unwrap();
                    Box::new(OledDevice { oled, name })
                }
                _ => {
                    let di = ssd1306::I2CDisplayInterface::new_custom_address(bus, *address);
                    let mut oled = Oled::new(
                        Ssd1306Driver::new(di, board.height, false),
                        board.height,
                        0x7f,
                    );
                    oled.init().unwrap();
                    Box::new(OledDevice { oled, name })
                }
            };
            (d, stats)
        }
        Bus::Spi { .. } => {
            let spi = RecordingSpi::new();
            let reader = spi.clone();
            let stats = Box::new(move || reader.stats());
            let name = "bench".to_string();
            if c.is_oled() {
                let di = ssd1306::prelude::SPIInterface::new(spi.clone(), spi.pin("dc"));
                let mut oled = Oled::new(
                    Ssd1306Driver::new(di, board.height, false),
                    board.height,
                    0x7f,
                );
                oled.init().unwrap();
                return (Box::new(OledDevice { oled, name }), stats);
            }
            let di = ember_agent::panel::tft::SpiInterface::new(spi.clone(), spi.pin("dc"), 4096);
            let (w, h) = board.drawn_size();
            let rotation = if board.rotation == 90 {
                mipidsi::options::Rotation::Deg90
            } else {
                mipidsi::options::Rotation::Deg0
            };
            let orientation = mipidsi::options::Orientation::new().rotate(rotation);
            let d: Box<dyn Device> = match c {
                Controller::St7789 => {
                    let display = mipidsi::Builder::new(mipidsi::models::ST7789, di)
                        .display_size(board.width as u16, board.height as u16)
                        .orientation(orientation)
                        .init(&mut NoDelay)
                        .unwrap();
                    Box::new(TftDevice {
                        tft: ember_agent::panel::tft::Tft::new(display, w as usize),
                        name,
                    })
                }
                Controller::St7735 => {
                    let display = mipidsi::Builder::new(mipidsi::models::ST7735s, di)
                        .display_size(board.width as u16, board.height as u16)
                        .orientation(orientation)
                        .init(&mut NoDelay)
                        .unwrap();
                    Box::new(TftDevice {
                        tft: ember_agent::panel::tft::Tft::new(display, w as usize),
                        name,
                    })
                }
                _ => {
                    let display = mipidsi::Builder::new(mipidsi::models::ILI9341Rgb565, di)
                        .display_size(board.width as u16, board.height as u16)
                        .orientation(orientation)
                        .init(&mut NoDelay)
                        .unwrap();
                    Box::new(TftDevice {
                        tft: ember_agent::panel::tft::Tft::new(display, w as usize),
                        name,
                    })
                }
            };
            let _ = h;
            (d, stats)
        }
    }
}

struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (renders, refreshes) = if quick { (3, 5) } else { (200, 60) };
    println!("Panel benchmark: {renders} renders per page; {refreshes} refreshes 1 s apart per page (release build: cargo bench -p ember-agent --bench panel)\n");
    for (name, _) in BUILTIN {
        let board = Board::load(name).unwrap();
        let settings = Settings::default();
        let renderer = Renderer::new(&board, &settings);
        let (hz, i2c) = match board.bus {
            Bus::I2c { hz, .. } => (hz, true),
            Bus::Spi { hz, .. } => (hz, false),
        };
        let (w, h) = board.drawn_size();
        println!(
            "{name} ({:?} {w}x{h}, {} at {} kHz)",
            board.controller,
            if i2c { "I2C" } else { "SPI" },
            hz / 1000
        );
        println!(
            "  {:<13} {:>10} {:>11} {:>11} {:>8} {:>10}",
            "page", "render µs", "first B", "refresh B", "% first", "refresh ms"
        );
        for page in Page::ALL {
            let mut walk = Walk(7);
            let mut history = Histories::new();
            // Two minutes of history first, as on a running agent.
            let mut s = sample(0, &mut walk);
            for t in 0..120 {
                s = sample(t, &mut walk);
                history.record(&s);
            }
            let model = Model {
                host: "kitchen-pi",
                ipv4: Some([192, 168, 1, 42]),
                sample: &s,
                history: &history,
                fleet: &[],
            };
            let start = Instant::now();
            let mut frame: Option<Frame> = None;
            for _ in 0..renders {
                frame = Some(renderer.render(page, &model, (0, 0)));
            }
            let render_us = start.elapsed().as_secs_f64() * 1e6 / renders as f64;

            let (mut dev, stats) = device(&board);
            let base = stats();
            dev.show(frame.as_ref().unwrap()).unwrap();
            let first = stats();
            let first_bytes = if i2c {
                first.i2c_wire_bytes() - base.i2c_wire_bytes()
            } else {
                first.bytes - base.bytes
            };
            let mut total = BusStats::default();
            for t in 120..120 + refreshes {
                let s = sample(t, &mut walk);
                history.record(&s);
                let model = Model {
                    host: "kitchen-pi",
                    ipv4: Some([192, 168, 1, 42]),
                    sample: &s,
                    history: &history,
                    fleet: &[],
                };
                let before = stats();
                dev.show(&renderer.render(page, &model, (0, 0))).unwrap();
                let after = stats();
                total.transactions += after.transactions - before.transactions;
                total.bytes += after.bytes - before.bytes;
            }
            let per = |v: usize| v as f64 / refreshes as f64;
            let (refresh_bytes, refresh_ms) = if i2c {
                (
                    per(total.i2c_wire_bytes()),
                    total.i2c_micros(hz) / 1000.0 / refreshes as f64,
                )
            } else {
                (
                    per(total.bytes),
                    total.spi_micros(hz) / 1000.0 / refreshes as f64,
                )
            };
            println!(
                "  {:<13} {:>10.0} {:>11} {:>11.0} {:>7.1}% {:>10.2}",
                page.name(),
                render_us,
                first_bytes,
                refresh_bytes,
                100.0 * refresh_bytes / first_bytes.max(1) as f64,
                refresh_ms
            );
        }
        println!();
    }
}
