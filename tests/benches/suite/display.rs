//! Display: render time per page and board, and what each frame costs on the panel's bus, whole
//! versus only the changed area, through the agent's real drivers into recording buses.
//!
//! Frames follow the agent's default rhythm: one sample a second from a simulated host, a new
//! page every 10 s, every page in turn.

use std::time::{Duration, Instant};

use ember_agent::panel::lcd::Hd44780;
use ember_agent::panel::oled::{Oled, Sh1106Driver, Ssd1306Driver};
use ember_agent::panel::tft::{SpiInterface, Tft};
use ember_agent::panel::{Board, Frame, Renderer};
use ember_agent::simulate::Synth;
use ember_display::emulator::bus::{BusStats, RecordingI2c, RecordingSpi};
use ember_display::framebuffer::Mono128x64;
use ember_display::{FleetHost, Histories, Model, Page, Settings};
use ember_wire::Sample;
use serde_json::{json, Value};

use crate::Args;

/// Frames per page before the next (the agent's default `panel.page-every` at 1 s samples).
const PER_PAGE: usize = 10;

struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

fn samples(n: usize) -> Vec<Sample> {
    let mut s = Synth::new(42, 1_795_000_000_000, Duration::from_secs(1));
    (0..n).map(|_| s.sample()).collect()
}

fn fleet() -> Vec<FleetHost> {
    (0..8)
        .map(|i| FleetHost::new(&format!("pi-{i}"), i != 5))
        .collect()
}

fn model<'a>(s: &'a Sample, h: &'a Histories, fleet: &'a [FleetHost]) -> Model<'a> {
    Model {
        host: "kitchen-pi",
        ipv4: Some([192, 168, 1, 42]),
        sample: s,
        history: h,
        fleet,
    }
}

/// Microseconds per render of each page on `board`.
fn render_times(board: &Board) -> Vec<(Page, f64)> {
    let r = Renderer::new(board, &Settings::default());
    let all = samples(120);
    let mut h = Histories::new();
    for s in &all[..100] {
        h.record(s);
    }
    let fleet = fleet();
    let mut out = Vec::new();
    for page in Page::ALL {
        let mut n = 0usize;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(150) || n < 20 {
            let s = &all[100 + n % 20];
            let m = model(s, &h, &fleet);
            std::hint::black_box(r.render(page, &m, (0, 0)));
            n += 1;
        }
        out.push((page, start.elapsed().as_secs_f64() * 1e6 / n as f64));
    }
    out
}

/// The frames the agent would show over `n` seconds.
fn frames(board: &Board, n: usize) -> Vec<(Page, Frame)> {
    let r = Renderer::new(board, &Settings::default());
    let mut h = Histories::new();
    let fleet = fleet();
    samples(n)
        .iter()
        .enumerate()
        .map(|(t, s)| {
            h.record(s);
            let page = Page::ALL[t / PER_PAGE % Page::ALL.len()];
            (page, r.render(page, &model(s, &h, &fleet), (0, 0)))
        })
        .collect()
}

/// Bus cost of each frame after the first: (same page as before?, stats).
struct Costs {
    full: BusStats,
    updates: Vec<(bool, BusStats)>,
}

fn summarize(
    c: &Costs,
    wire: impl Fn(&BusStats) -> usize,
    micros: impl Fn(&BusStats) -> f64,
) -> Value {
    let mean = |same: bool| {
        let v: Vec<&BusStats> = c
            .updates
            .iter()
            .filter(|(s, _)| *s == same)
            .map(|(_, b)| b)
            .collect();
        let n = v.len().max(1) as f64;
        (
            v.iter().map(|b| wire(b)).sum::<usize>() as f64 / n,
            v.iter().map(|b| micros(b)).sum::<f64>() / n,
        )
    };
    let (same_bytes, same_us) = mean(true);
    let (change_bytes, change_us) = mean(false);
    let all = c.updates.len().max(1) as f64;
    let avg_bytes = c.updates.iter().map(|(_, b)| wire(b)).sum::<usize>() as f64 / all;
    let avg_us = c.updates.iter().map(|(_, b)| micros(b)).sum::<f64>() / all;
    json!({
        "full_bytes": wire(&c.full),
        "full_ms": micros(&c.full) / 1000.0,
        "same_page_bytes": same_bytes,
        "same_page_ms": same_us / 1000.0,
        "page_change_bytes": change_bytes,
        "page_change_ms": change_us / 1000.0,
        "average_bytes": avg_bytes,
        "average_ms": avg_us / 1000.0,
        "full_over_average": wire(&c.full) as f64 / avg_bytes.max(1.0),
        "frames": c.updates.len() + 1,
    })
}

fn mono(f: &Frame) -> anyhow::Result<&Mono128x64> {
    match f {
        Frame::Mono(fb) => Ok(fb),
        _ => anyhow::bail!("not a monochrome frame"),
    }
}

fn oled_costs<D: ember_agent::panel::oled::OledDriver>(
    oled: &mut Oled<D>,
    bus: &RecordingI2c,
    frames: &[(Page, Frame)],
) -> anyhow::Result<Costs> {
    oled.init().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    bus.take();
    let mut full = None;
    let mut updates = Vec::new();
    let mut last_page = None;
    for (page, frame) in frames {
        oled.show(mono(frame)?)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let stats = bus.stats();
        bus.take();
        match full {
            None => full = Some(stats),
            Some(_) => updates.push((last_page == Some(*page), stats)),
        }
        last_page = Some(*page);
    }
    Ok(Costs {
        full: full.unwrap_or_default(),
        updates,
    })
}

fn i2c_hz(board: &Board) -> u32 {
    match &board.bus {
        ember_agent::panel::board::Bus::I2c { hz, .. } => *hz,
        ember_agent::panel::board::Bus::Spi { hz, .. } => *hz,
    }
}

pub fn run(args: &Args) -> anyhow::Result<Value> {
    let seconds: usize = args.get("frames", Page::ALL.len() * PER_PAGE * 2)?;
    let mut renders = Vec::new();
    for name in [
        "pi-ssd1306",
        "pi-ssd1306-128x32",
        "pi-st7789-240x240",
        "pi-hd44780-20x4",
    ] {
        let board = Board::load(name)?;
        let (w, h) = board.drawn_size();
        for (page, us) in render_times(&board) {
            renders.push(json!({
                "board": name, "size": format!("{w}x{h}"), "page": page.name(), "us": us,
            }));
        }
    }

    let mut buses = Vec::new();
    // SSD1306 128x64 and 128x32 on I2C; the SH1106 on I2C.
    for name in ["pi-ssd1306", "pi-ssd1306-128x32", "pi-zero2w-sh1106"] {
        let board = Board::load(name)?;
        let hz = i2c_hz(&board);
        let bus = RecordingI2c::new(&[0x3c]);
        let fr = frames(&board, seconds);
        let iface = ssd1306::I2CDisplayInterface::new(bus.clone());
        let costs = if name.contains("sh1106") {
            let mut oled = Oled::new(Sh1106Driver::new(iface, false), board.height, 0x7f);
            oled_costs(&mut oled, &bus, &fr)?
        } else {
            let driver = Ssd1306Driver::new(iface, board.height, false);
            let mut oled = Oled::new(driver, board.height, 0x7f);
            oled_costs(&mut oled, &bus, &fr)?
        };
        let mut v = summarize(&costs, BusStats::i2c_wire_bytes, |b| b.i2c_micros(hz));
        v["board"] = json!(name);
        v["bus"] = json!(format!("I2C {} kHz", hz / 1000));
        buses.push(v);
    }
    // ST7789 240x240 on SPI.
    {
        use mipidsi::models::ST7789;
        let name = "pi-st7789-240x240";
        let board = Board::load(name)?;
        let hz = i2c_hz(&board);
        let spi = RecordingSpi::new();
        let di = SpiInterface::new(spi.clone(), spi.pin("dc"), 4096);
        let display = mipidsi::Builder::new(ST7789, di)
            .display_size(240, 240)
            .init(&mut NoDelay)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut tft = Tft::new(display, 240);
        spi.take();
        let mut full = None;
        let mut updates = Vec::new();
        let mut last_page = None;
        for (page, frame) in frames(&board, seconds) {
            let Frame::Color { pixels, .. } = &frame else {
                anyhow::bail!("not a colour frame");
            };
            tft.show(pixels).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let stats = spi.stats();
            spi.take();
            match full {
                None => full = Some(stats),
                Some(_) => updates.push((last_page == Some(page), stats)),
            }
            last_page = Some(page);
        }
        let costs = Costs {
            full: full.unwrap_or_default(),
            updates,
        };
        let mut v = summarize(&costs, |b| b.bytes, |b| b.spi_micros(hz));
        v["board"] = json!(name);
        v["bus"] = json!(format!("SPI {} MHz", hz / 1_000_000));
        buses.push(v);
    }
    // HD44780 20x4 behind a PCF8574 on I2C.
    {
        let name = "pi-hd44780-20x4";
        let board = Board::load(name)?;
        let hz = i2c_hz(&board);
        let bus = RecordingI2c::new(&[0x27]);
        let mut lcd = Hd44780::new(bus.clone(), 0x27, NoDelay, 20, 4);
        lcd.init().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        bus.take();
        let mut full = None;
        let mut updates = Vec::new();
        let mut last_page = None;
        for (page, frame) in frames(&board, seconds) {
            let Frame::Text(lines) = &frame else {
                anyhow::bail!("not a text frame");
            };
            lcd.show(lines).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let stats = bus.stats();
            bus.take();
            match full {
                None => full = Some(stats),
                Some(_) => updates.push((last_page == Some(page), stats)),
            }
            last_page = Some(page);
        }
        let costs = Costs {
            full: full.unwrap_or_default(),
            updates,
        };
        let mut v = summarize(&costs, BusStats::i2c_wire_bytes, |b| b.i2c_micros(hz));
        v["board"] = json!(name);
        v["bus"] = json!(format!("I2C {} kHz", hz / 1000));
        buses.push(v);
    }
    Ok(json!({
        "renders": renders,
        "buses": buses,
        "seconds": seconds,
        "page_every_s": PER_PAGE,
    }))
}
