//! The panel's drivers against recording buses and emulated controllers: the bytes each
//! driver sends must produce exactly the frame that was rendered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_graphics::pixelcolor::{Rgb565, RgbColor};
use ember_display::emulator::bus::{RecordingI2c, RecordingSpi, SpiEvent};
use ember_display::emulator::hd44780::Hd44780 as LcdEmulator;
use ember_display::emulator::oled::{Controller as Chip, Oled as OledEmulator};
use ember_display::framebuffer::Mono128x64;
use ember_display::{FleetHost, Histories, Model, Page, Settings};
use ember_wire::{Filesystem, NetIo, Sample, Temperature};
use ssd1306::prelude::SPIInterface;
use ssd1306::I2CDisplayInterface;

use super::lcd::Hd44780;
use super::oled::{Oled, Sh1106Driver, Ssd1306Driver};
use super::*;

fn sample(t: u64) -> Sample {
    let mut s = Sample {
        seq: t,
        uptime_s: 3600 + t,
        throttled: Some(0),
        ..Sample::default()
    };
    s.cpu.busy = (1_000 + t * 731 % 6_000) as u16;
    for k in 0..4 {
        s.cpu
            .cores
            .push((k * 1_700 + t * 313 % 5_000) as u16)
            .unwrap();
    }
    s.memory.total = 4_000_000_000;
    s.memory.used = 1_500_000_000 + t * 10_000_000;
    let fs = Filesystem {
        mount: "/".into(),
        total: 64_000_000_000,
        used: 20_000_000_000,
    };
    s.filesystems.push(fs).unwrap();
    let net = NetIo {
        interface: "eth0".into(),
        rx_bps: 100_000 + t * 7_919 % 900_000,
        tx_bps: 20_000 + t * 3_571 % 90_000,
        ..NetIo::default()
    };
    s.networks.push(net).unwrap();
    let temp = Temperature {
        sensor: "cpu_thermal".into(),
        millicelsius: 48_000 + (t * 97 % 3_000) as i32,
    };
    s.temperatures.push(temp).unwrap();
    s
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

fn board(name: &str) -> Board {
    Board::load(name).unwrap()
}

fn mono(frame: &Frame) -> &Mono128x64 {
    match frame {
        Frame::Mono(fb) => fb,
        other => panic!("not mono: {other:?}"),
    }
}

/// The glass's picture, compared with the frame's top `height` rows.
fn assert_glass_shows(glass: &OledEmulator, frame: &Mono128x64, height: u32, what: &str) {
    if height == 32 {
        let got = glass
            .visible::<128, 4>()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for y in 0..32 {
            for x in 0..128 {
                assert_eq!(
                    got.pixel(x, y),
                    frame.pixel(x, y),
                    "{what}: pixel ({x}, {y})"
                );
            }
        }
    } else {
        let got = glass
            .visible::<128, 8>()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(&got, frame, "{what}");
    }
}

/// Renders every page for `board_name` over 20 samples, sends each frame through `oled`, and
/// checks the emulated controller after every frame. Returns the bytes of each frame.
fn run_oled<D: super::oled::OledDriver>(
    board_name: &str,
    oled: &mut Oled<D>,
    feed: &mut dyn FnMut(&mut OledEmulator),
    glass: &mut OledEmulator,
) -> Vec<usize> {
    let b = board(board_name);
    let r = Renderer::new(&b, &Settings::default());
    let mut h = Histories::new();
    let mut sent = Vec::new();
    oled.init().unwrap();
    for t in 0..20 {
        let s = sample(t);
        h.record(&s);
        let fleet = [FleetHost::new("a", true)];
        let m = model(&s, &h, &fleet);
        let page = Page::ALL[t as usize / 3 % Page::ALL.len()];
        let frame = r.render(page, &m, (0, 0));
        sent.push(oled.show(mono(&frame)).unwrap());
        feed(glass);
        assert_glass_shows(
            glass,
            mono(&frame),
            b.height,
            &format!("{board_name} {page:?} t={t}"),
        );
    }
    sent
}

#[test]
fn ssd1306_i2c_glass_agrees_with_the_renderer_pixel_for_pixel() {
    for (name, height) in [("pi-ssd1306", 64), ("pi-ssd1306-128x32", 32)] {
        let bus = RecordingI2c::new(&[0x3c]);
        let driver = Ssd1306Driver::new(I2CDisplayInterface::new(bus.clone()), height, false);
        let mut oled = Oled::new(driver, height, 0x9f);
        let mut glass = OledEmulator::new(Chip::Ssd1306, 128, height as usize);
        let log = bus.clone();
        let mut feed = |g: &mut OledEmulator| g.feed_i2c(&log.take(), 0x3c).unwrap();
        let sent = run_oled(name, &mut oled, &mut feed, &mut glass);
        assert_eq!(sent[0], 16 * height as usize, "the first frame goes whole");
        assert_eq!(glass.contrast, 0x9f);
        // Within one page, later frames send a fraction (the numbers and the sparkline).
        assert!(sent[1] < sent[0] / 2, "{sent:?}");
    }
}

#[test]
fn ssd1306_turned_180_shows_the_frame_upside_down() {
    let bus = RecordingI2c::new(&[0x3c]);
    let mut oled = Oled::new(
        Ssd1306Driver::new(I2CDisplayInterface::new(bus.clone()), 64, true),
        64,
        0x7f,
    );
    oled.init().unwrap();
    let mut frame = Mono128x64::new();
    frame.set_pixel(0, 0, true);
    frame.set_pixel(10, 3, true);
    oled.show(&frame).unwrap();
    let mut glass = OledEmulator::new(Chip::Ssd1306, 128, 64);
    glass.feed_i2c(&bus.take(), 0x3c).unwrap();
    let got = glass.visible::<128, 8>().unwrap();
    assert!(got.pixel(127, 63) && got.pixel(117, 60));
    assert_eq!(
        got.as_bytes().iter().map(|b| b.count_ones()).sum::<u32>(),
        2
    );
}

#[test]
fn sh1106_i2c_and_ssd1309_spi_agree_with_the_renderer() {
    let bus = RecordingI2c::new(&[0x3c]);
    let mut oled = Oled::new(
        Sh1106Driver::new(I2CDisplayInterface::new(bus.clone()), false),
        64,
        0x80,
    );
    let mut glass = OledEmulator::new(Chip::Sh1106, 128, 64);
    let log = bus.clone();
    let mut feed = |g: &mut OledEmulator| g.feed_i2c(&log.take(), 0x3c).unwrap();
    run_oled("pi-zero2w-sh1106", &mut oled, &mut feed, &mut glass);

    let spi = RecordingSpi::new();
    let di = SPIInterface::new(spi.clone(), spi.pin("dc"));
    let mut oled = Oled::new(Ssd1306Driver::new(di, 64, false), 64, 0x7f);
    let mut glass = OledEmulator::new(Chip::Ssd1306, 128, 64);
    let log = spi.clone();
    // The driver sets D/C before every batch of bytes, so each batch decodes on its own.
    let mut feed = |g: &mut OledEmulator| g.feed_spi(&log.take()).unwrap();
    run_oled("pi-ssd1309-spi", &mut oled, &mut feed, &mut glass);
}

#[test]
fn hd44780_shows_the_rendered_lines_and_rewrites_only_changes() {
    for (name, cols) in [("pi-hd44780-16x2", 16), ("pi-hd44780-20x4", 20)] {
        let b = board(name);
        let bus = RecordingI2c::new(&[0x27]);
        let mut lcd = Hd44780::new(bus.clone(), 0x27, NoDelay, cols, b.height as usize);
        lcd.init().unwrap();
        let r = Renderer::new(&b, &Settings::default());
        let mut h = Histories::new();
        let mut glass = LcdEmulator::new();
        let mut written = Vec::new();
        for t in 0..10 {
            let s = sample(t);
            h.record(&s);
            let m = model(&s, &h, &[]);
            let Frame::Text(lines) = r.render(Page::Overview, &m, (0, 0)) else {
                panic!("not text")
            };
            written.push(lcd.show(&lines).unwrap());
            glass.feed_i2c(&bus.take(), 0x27).unwrap();
            assert!(glass.display_on && glass.two_lines && !glass.cursor && glass.backlight);
            for (row, line) in lines.iter().enumerate() {
                assert_eq!(&glass.line(row, cols), line, "{name} t={t} row {row}");
            }
        }
        assert_eq!(written[0], cols * b.height as usize);
        assert!(written[1] < written[0] / 2, "{written:?}");
    }
}

/// A delay that does not wait (the emulator needs no settling time).
struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

/// Decodes MIPI DCS over SPI (CASET, RASET, RAMWR with RGB565 big-endian) into a frame.
fn decode_dcs(events: &[SpiEvent], width: usize, height: usize, frame: &mut [Rgb565]) {
    let (mut dc, mut cmd, mut args) = (false, 0u8, Vec::new());
    let (mut cols, mut rows) = ((0, 0), (0, 0));
    let (mut x, mut y, mut half) = (0usize, 0usize, None::<u8>);
    let window = |a: &[u8]| {
        (
            usize::from(a[0]) << 8 | usize::from(a[1]),
            usize::from(a[2]) << 8 | usize::from(a[3]),
        )
    };
    for e in events {
        match e {
            SpiEvent::Pin("dc", level) => dc = *level,
            SpiEvent::Write(bytes) if !dc => {
                assert_eq!(bytes.len(), 1, "one command byte at a time");
                cmd = bytes[0];
                args.clear();
                if cmd == 0x2c {
                    (x, y, half) = (cols.0, rows.0, None);
                }
            }
            SpiEvent::Write(bytes) => {
                for &b in bytes {
                    if cmd != 0x2c {
                        args.push(b);
                        if args.len() == 4 && cmd == 0x2a {
                            cols = window(&args);
                        }
                        if args.len() == 4 && cmd == 0x2b {
                            rows = window(&args);
                        }
                        continue;
                    }
                    match half.take() {
                        None => half = Some(b),
                        Some(hi) => {
                            let raw = u16::from(hi) << 8 | u16::from(b);
                            assert!(x < width && y < height, "pixel ({x}, {y}) off the panel");
                            frame[y * width + x] = Rgb565::new(
                                (raw >> 11) as u8,
                                (raw >> 5 & 0x3f) as u8,
                                (raw & 0x1f) as u8,
                            );
                            if x == cols.1 {
                                x = cols.0;
                                y += 1;
                            } else {
                                x += 1;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn tft_sends_what_was_rendered_and_then_only_changes() {
    use mipidsi::models::ST7789;
    let b = board("pi-st7789-240x240");
    let spi = RecordingSpi::new();
    let di = super::tft::SpiInterface::new(spi.clone(), spi.pin("dc"), 4096);
    let display = mipidsi::Builder::new(ST7789, di)
        .display_size(240, 240)
        .init(&mut NoDelay)
        .unwrap();
    let mut device = TftDevice {
        tft: super::tft::Tft::new(display, 240),
        name: "test".into(),
    };
    spi.take();
    let r = Renderer::new(&b, &Settings::default());
    let mut h = Histories::new();
    let mut panel = vec![Rgb565::BLACK; 240 * 240];
    let mut sent = Vec::new();
    for t in 0..4 {
        let s = sample(t);
        h.record(&s);
        let m = model(&s, &h, &[]);
        let frame = r.render(Page::Cpu, &m, (0, 0));
        sent.push(device.show(&frame).unwrap());
        decode_dcs(&spi.take(), 240, 240, &mut panel);
        let Frame::Color { pixels, .. } = &frame else {
            panic!()
        };
        assert!(panel == *pixels, "t={t}: the panel differs from the frame");
    }
    assert_eq!(sent[0], 240 * 240 * 2);
    assert!(sent[1] < sent[0] / 2, "{sent:?}");
}

#[test]
fn panel_thread_retries_a_missing_device_and_recovers_from_failures() {
    let config = PanelConfig::from_raw(Some("pi-ssd1306"), None)
        .unwrap()
        .unwrap();
    let bus = RecordingI2c::new(&[]);
    let attempts = Arc::new(Mutex::new(0));
    let (b2, a2) = (bus.clone(), attempts.clone());
    let open: Opener = Box::new(move |board: &Board| {
        *a2.lock().unwrap() += 1;
        let mut probe = b2.clone();
        embedded_hal::i2c::I2c::write(&mut probe, 0x3c, &[0x00, 0xe3]).map_err(|e| PanelError {
            device: board.bus.device().into(),
            message: format!("no device answered: {e}"),
            hint: "check the wiring".into(),
        })?;
        let di = I2CDisplayInterface::new(b2.clone());
        let mut oled = Oled::new(Ssd1306Driver::new(di, 64, false), 64, 0x7f);
        oled.init().map_err(|e| PanelError::display("test", e))?;
        Ok(Box::new(OledDevice {
            oled,
            name: "test".into(),
        }))
    });
    let backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(40),
    };
    let handle = Panel::start_with(&config, "kitchen-pi", open, backoff);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..300 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    };
    // Nothing connected: the agent goes on (update never blocks) and the panel is retried.
    for t in 0..3 {
        handle.update(&sample(t));
    }
    wait_for("two failed attempts", &|| *attempts.lock().unwrap() >= 2);
    assert!(bus.writes().is_empty());
    // Plug it in: the next attempt opens it and draws.
    bus.set_present(0x3c, true);
    handle.update(&sample(3));
    wait_for("a frame", &|| bus.stats().bytes > 1024);
    // Pull the cable: writes fail, the device is dropped and reopened once it is back.
    let before = *attempts.lock().unwrap();
    bus.fail_after(Some(0));
    handle.update(&sample(4));
    wait_for("a retry", &|| *attempts.lock().unwrap() > before);
    bus.fail_after(None);
    bus.take();
    handle.update(&sample(5));
    wait_for("a whole frame again", &|| bus.stats().bytes > 1024);
    drop(handle);
}

#[test]
fn panel_config_errors_name_the_key() {
    let check = |board: Option<&str>, raw: PanelRaw, key: &str| {
        let e = PanelConfig::from_raw(board, Some(&raw)).unwrap_err();
        assert_eq!(e.key, key, "{}", e.reason);
    };
    let b = Some("pi-ssd1306");
    check(
        b,
        PanelRaw {
            pages: Some(vec!["cpu".into(), "nope".into()]),
            ..Default::default()
        },
        "panel.pages",
    );
    check(
        b,
        PanelRaw {
            pages: Some(vec![]),
            ..Default::default()
        },
        "panel.pages",
    );
    check(
        b,
        PanelRaw {
            page_every: Some("0s".into()),
            ..Default::default()
        },
        "panel.page-every",
    );
    check(
        b,
        PanelRaw {
            temperature_unit: Some("K".into()),
            ..Default::default()
        },
        "panel.temperature-unit",
    );
    check(
        b,
        PanelRaw {
            rate_unit: Some("baud".into()),
            ..Default::default()
        },
        "panel.rate-unit",
    );
    check(
        b,
        PanelRaw {
            cpu_limits: Some([90.0, 80.0]),
            ..Default::default()
        },
        "panel.cpu-limits",
    );
    check(
        b,
        PanelRaw {
            temperature_limits: Some([70.0, 500.0]),
            ..Default::default()
        },
        "panel.temperature-limits",
    );
    check(
        b,
        PanelRaw {
            contrast: Some(256),
            ..Default::default()
        },
        "panel.contrast",
    );
    check(
        Some("pi-st7789-240x240"),
        PanelRaw {
            contrast: Some(10),
            ..Default::default()
        },
        "panel.contrast",
    );
    check(
        None,
        PanelRaw {
            rate_unit: Some("bits".into()),
            ..Default::default()
        },
        "board",
    );
    check(Some("pi-nothing"), PanelRaw::default(), "board");
    assert_eq!(PanelConfig::from_raw(None, None).unwrap(), None);

    let raw = PanelRaw {
        pages: Some(vec!["fleet".into(), "cpu".into()]),
        burn_in_shift: Some("0s".into()),
        temperature_unit: Some("F".into()),
        temperature_limits: Some([60.0, 75.5]),
        ..Default::default()
    };
    let c = PanelConfig::from_raw(Some("pi-ssd1306"), Some(&raw))
        .unwrap()
        .unwrap();
    assert_eq!(c.pages, [Page::Fleet, Page::Cpu]);
    assert_eq!(c.burn_in_shift, None);
    assert_eq!(c.settings.thresholds.temperature.crit, 75_500);
    let again = PanelConfig::from_raw(Some("pi-ssd1306"), Some(&c.to_raw()))
        .unwrap()
        .unwrap();
    assert_eq!(again, c, "the printed table reads back the same");
    assert_eq!(c.page_at(Duration::from_secs(9)), Page::Fleet);
    assert_eq!(c.page_at(Duration::from_secs(10)), Page::Cpu);
    assert_eq!(c.page_at(Duration::from_secs(20)), Page::Fleet);
}

#[test]
fn burn_in_shift_moves_oleds_only() {
    let c = PanelConfig::from_raw(Some("pi-ssd1306"), None)
        .unwrap()
        .unwrap();
    let steps: Vec<_> = (0..5)
        .map(|m| c.shift_at(Duration::from_secs(60 * m)))
        .collect();
    assert_eq!(steps, [(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]);
    let tft = PanelConfig::from_raw(Some("pi-ili9341"), None)
        .unwrap()
        .unwrap();
    assert_eq!(tft.shift_at(Duration::from_secs(60)), (0, 0));

    // A shifted frame is the same picture one pixel over.
    let b = board("pi-ssd1306");
    let r = Renderer::new(&b, &Settings::default());
    let s = sample(1);
    let h = Histories::new();
    let m = model(&s, &h, &[]);
    let plain = r.render(Page::Overview, &m, (0, 0));
    let moved = r.render(Page::Overview, &m, (1, 1));
    let (plain, moved) = (mono(&plain), mono(&moved));
    assert_ne!(plain, moved);
    for y in 0..63 {
        for x in 0..127 {
            assert_eq!(plain.pixel(x, y), moved.pixel(x + 1, y + 1), "({x}, {y})");
        }
    }
}

#[test]
fn render_png_for_every_builtin_board() {
    for (name, _) in board::BUILTIN {
        let b = board(name);
        let r = Renderer::new(&b, &Settings::default());
        let s = sample(2);
        let h = Histories::new();
        let m = model(&s, &h, &[]);
        for page in Page::ALL {
            let png = r.png(&r.render(page, &m, (0, 0)), 1);
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} {page:?}");
        }
    }
}

/// A device that keeps every frame it is shown.
struct Keeper(Arc<Mutex<Vec<Frame>>>);

impl Device for Keeper {
    fn show(&mut self, frame: &Frame) -> Result<usize, PanelError> {
        self.0.lock().unwrap().push(frame.clone());
        Ok(0)
    }
}

fn first_line(f: &Frame) -> String {
    let Frame::Text(lines) = f else {
        panic!("not text")
    };
    String::from_utf8_lossy(&lines[0]).trim_end().to_string()
}

#[test]
fn commands_turn_pages_flash_identify_and_raise_the_collectors_banner() {
    let raw = PanelRaw {
        pages: Some(vec!["overview".into(), "cpu".into()]),
        page_every: Some("1h".into()),
        ..PanelRaw::default()
    };
    let config = PanelConfig::from_raw(Some("pi-hd44780-20x4"), Some(&raw))
        .unwrap()
        .unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let f2 = frames.clone();
    let open: Opener = Box::new(move |_: &Board| Ok(Box::new(Keeper(f2.clone()))));
    let handle = Panel::start_with(&config, "kitchen-pi", open, Backoff::default());
    let control = handle.control();
    let last = |check: &dyn Fn(&Frame) -> bool, what: &str| {
        for _ in 0..300 {
            if frames.lock().unwrap().last().is_some_and(check) {
                return frames.lock().unwrap().last().unwrap().clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    };
    handle.update(&sample(1));
    let overview = last(&|_| true, "a frame");
    let r = Renderer::new(&config.board, &config.settings);
    let s = sample(1);
    let mut hist = Histories::new();
    hist.record(&s);
    let cpu = r.render(Page::Cpu, &model(&s, &hist, &[]), (0, 0));
    assert_ne!(first_line(&overview), first_line(&cpu));
    // Next page: the CPU page; previous twice: round to the CPU page again (two pages).
    control.turn(1);
    last(&|f| first_line(f) == first_line(&cpu), "the next page");
    control.turn(-1);
    last(
        &|f| first_line(f) == first_line(&overview),
        "the previous page",
    );
    // The collector's alert takes the banner (the first line of a character LCD).
    control.set_alerts(&ember_wire::HostAlerts {
        firing: 3,
        text: "cpu-high".into(),
    });
    let f = last(&|f| first_line(f).contains("cpu-high"), "the banner");
    assert!(first_line(&f).contains("cpu-high +2"), "{}", first_line(&f));
    control.set_alerts(&ember_wire::HostAlerts {
        firing: 0,
        text: "".into(),
    });
    last(&|f| !first_line(f).contains("cpu-high"), "the banner gone");
    // Identify flashes: the LCD's first line says so, on and off.
    control.identify();
    last(&|f| first_line(f) == "** IDENTIFY **", "identify on");
    last(&|f| first_line(f) != "** IDENTIFY **", "identify off");
    drop(handle);
}

#[test]
fn brightness_sets_an_oleds_contrast_and_is_refused_by_an_lcd() {
    let config = PanelConfig::from_raw(Some("pi-ssd1306"), None)
        .unwrap()
        .unwrap();
    let bus = RecordingI2c::new(&[0x3c]);
    let b2 = bus.clone();
    let open: Opener = Box::new(move |_: &Board| {
        let di = I2CDisplayInterface::new(b2.clone());
        let mut oled = Oled::new(Ssd1306Driver::new(di, 64, false), 64, 0x7f);
        oled.init().map_err(|e| PanelError::display("test", e))?;
        Ok(Box::new(OledDevice {
            oled,
            name: "test".into(),
        }))
    });
    let handle = Panel::start_with(&config, "kitchen-pi", open, Backoff::default());
    handle.update(&sample(1));
    let contrast_set = |level: u8| {
        bus.writes()
            .iter()
            .any(|w| w.bytes.windows(2).any(|p| p == [0x81, level]))
    };
    for _ in 0..300 {
        if bus.stats().bytes > 1024 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!contrast_set(0x11));
    handle.control().set_brightness(0x11).unwrap();
    for _ in 0..300 {
        if contrast_set(0x11) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(contrast_set(0x11), "the contrast command reached the bus");
    drop(handle);
    let lcd = PanelConfig::from_raw(Some("pi-hd44780-16x2"), None)
        .unwrap()
        .unwrap();
    let open: Opener = Box::new(|_: &Board| Err(PanelError::bus("none", "absent")));
    let handle = Panel::start_with(&lcd, "kitchen-pi", open, Backoff::default());
    assert_eq!(
        handle.control().set_brightness(10),
        Err("this panel has no brightness control (OLEDs only)")
    );
}

#[test]
fn the_fleet_page_shows_the_hosts_statuses_as_the_broker_reports_them() {
    let raw = PanelRaw {
        pages: Some(vec!["fleet".into()]),
        page_every: Some("1h".into()),
        ..PanelRaw::default()
    };
    let config = PanelConfig::from_raw(Some("pi-hd44780-20x4"), Some(&raw))
        .unwrap()
        .unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let f2 = frames.clone();
    let open: Opener = Box::new(move |_: &Board| Ok(Box::new(Keeper(f2.clone()))));
    let handle = Panel::start_with(&config, "kitchen-pi", open, Backoff::default());
    let control = handle.control();
    let r = Renderer::new(&config.board, &config.settings);
    let s = sample(1);
    let mut hist = Histories::new();
    hist.record(&s);
    let expect = |fleet: &[FleetHost]| r.render(Page::Fleet, &model(&s, &hist, fleet), (0, 0));
    let wait_for = |want: &Frame, what: &str| {
        for _ in 0..300 {
            if frames.lock().unwrap().last() == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "timed out waiting for {what}: last frame {:?}",
            frames.lock().unwrap().last()
        );
    };
    handle.update(&s);
    wait_for(&expect(&[]), "an empty fleet");
    // Statuses arrive in any order; the page lists hosts by name.
    assert!(control.set_host_status("garage-pi", true));
    assert!(control.set_host_status("attic", false));
    assert!(control.set_host_status("kitchen-pi", true));
    let fleet = [
        FleetHost::new("attic", false),
        FleetHost::new("garage-pi", true),
        FleetHost::new("kitchen-pi", true),
    ];
    assert_ne!(expect(&fleet), expect(&[]), "the page shows the fleet");
    wait_for(&expect(&fleet), "three hosts, one down");
    // A host going offline changes its entry, not the list.
    assert!(control.set_host_status("garage-pi", false));
    let fleet = [
        FleetHost::new("attic", false),
        FleetHost::new("garage-pi", false),
        FleetHost::new("kitchen-pi", true),
    ];
    wait_for(&expect(&fleet), "garage-pi down");
    // The list is fixed in size: hosts beyond it are left out, known ones still change.
    for i in 0..FLEET_MAX {
        control.set_host_status(&format!("h{i:03}"), true);
    }
    assert!(!control.set_host_status("zz-new", true));
    assert!(control.set_host_status("attic", true));
    drop(handle);
}
