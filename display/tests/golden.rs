//! Snapshot tests of the screens: each is rendered and compared pixel for pixel (exact RGB)
//! with a PNG checked in under `tests/golden/`.
//!
//! After an intended change to a screen, look at the `*.actual.png` a failing test leaves behind,
//! then bless the new images with
//!
//! ```text
//! EMBER_BLESS=1 cargo test -p ember-display --features png --test golden
//! ```
//!
//! Modules of this binary:
//! - `overview`: the 128x64 overview screen for a realistic sample, without a temperature
//!   sensor, and with extreme values.
//! - `pages`: every page on every panel size (128x32, 128x64, 160x128, 240x240, 240x320,
//!   320x240), the alert banner on each, the per-core chart, and the character LCD pages
//!   (16x2, 20x4); extreme values stay on screen everywhere.

#![cfg(feature = "png")]

use std::io::Cursor;
use std::path::Path;

use ember_display::framebuffer::Framebuffer;
use ember_display::png::encode_png;

/// Compares `fb` with `tests/golden/{name}.png`, or rewrites that file when `EMBER_BLESS=1`.
fn check_golden<const W: usize, const P: usize>(name: &str, fb: &Framebuffer<W, P>) {
    if let Err(e) = compare_golden(name, &encode_png(fb, 1)) {
        panic!("{e}");
    }
}

/// Compares the PNG `actual` with `tests/golden/{name}.png` by decoded pixels (exact RGB), or
/// rewrites the golden file when `EMBER_BLESS=1`. On a mismatch the rendering is left beside it
/// as `{name}.actual.png`.
pub fn compare_golden(name: &str, actual: &[u8]) -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let golden = dir.join(format!("{name}.png"));
    let actual_path = dir.join(format!("{name}.actual.png"));

    if std::env::var_os("EMBER_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&golden, actual).unwrap();
        let _ = std::fs::remove_file(&actual_path);
        return Ok(());
    }

    let fail = |why: String| {
        std::fs::write(&actual_path, actual).unwrap();
        Err(format!(
            "{} does not match the rendering: {why}.\n\
             The rendering is in {}. If it is right, bless it with\n    \
             EMBER_BLESS=1 cargo test -p ember-display --features png --test golden",
            golden.display(),
            actual_path.display(),
        ))
    };
    let want = match std::fs::read(&golden) {
        Ok(bytes) => decode(&bytes),
        Err(e) => return fail(format!("cannot read it: {e}")),
    };
    let got = decode(actual);
    if want.size != got.size {
        return fail(format!("size {:?}, expected {:?}", got.size, want.size));
    }
    let diff: Vec<(usize, usize)> = (0..got.pixels.len())
        .filter(|&i| got.pixels[i] != want.pixels[i])
        .map(|i| (i % got.size.0 as usize, i / got.size.0 as usize))
        .collect();
    if let Some(first) = diff.first() {
        return fail(format!(
            "{} pixels differ, the first at {first:?}",
            diff.len()
        ));
    }
    let _ = std::fs::remove_file(&actual_path);
    Ok(())
}

struct Image {
    size: (u32, u32),
    /// One RGB triple per pixel, row by row.
    pixels: Vec<[u8; 3]>,
}

/// Decodes any grayscale or colour PNG into RGB pixels.
fn decode(bytes: &[u8]) -> Image {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("a valid PNG");
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|px| match channels {
            1 | 2 => [px[0]; 3],
            _ => [px[0], px[1], px[2]],
        })
        .collect();
    Image {
        size: (info.width, info.height),
        pixels,
    }
}

mod overview {
    use embedded_graphics::draw_target::DrawTarget;
    use embedded_graphics::geometry::{OriginDimensions, Size};
    use embedded_graphics::pixelcolor::BinaryColor;
    use embedded_graphics::Pixel;
    use ember_display::framebuffer::{Framebuffer, Mono128x64};
    use ember_display::overview::{self, Overview};
    use ember_wire::heapless::String;
    use ember_wire::{Filesystem, NetIo, Sample, Temperature};

    use super::check_golden;

    fn s<const N: usize>(text: &str) -> String<N> {
        String::from(text)
    }

    /// A Raspberry Pi 4 on a normal afternoon.
    fn sample() -> Sample {
        let mut sample = Sample {
            seq: 1234,
            timestamp_ms: 1_750_000_000_000,
            uptime_s: 3 * 86_400 + 4 * 3600 + 17 * 60,
            ..Sample::default()
        };
        sample.cpu.busy = 2_345;
        sample.cpu.user = 1_800;
        sample.cpu.system = 500;
        sample.memory.total = 3_978_000_000;
        sample.memory.used = 2_424_000_000;
        sample.memory.available = 1_554_000_000;
        let filesystems = [
            ("/boot/firmware", 534_000_000, 64_000_000),
            ("/", 62_500_000_000, 23_800_000_000),
        ];
        for (mount, total, used) in filesystems {
            let fs = Filesystem {
                mount: s(mount),
                total,
                used,
            };
            sample.filesystems.push(fs).unwrap();
        }
        let networks = [("eth0", 1_180_000, 338_000), ("wlan0", 20_000, 9_000)];
        for (name, rx_bps, tx_bps) in networks {
            let net = NetIo {
                interface: s(name),
                rx_bps,
                tx_bps,
                ..NetIo::default()
            };
            sample.networks.push(net).unwrap();
        }
        let sensor = Temperature {
            sensor: s("cpu_thermal"),
            millicelsius: 51_234,
        };
        sample.temperatures.push(sensor).unwrap();
        sample
    }

    fn render(model: &Overview) -> Mono128x64 {
        let mut fb = Mono128x64::new();
        overview::draw(model, &mut fb).unwrap();
        fb
    }

    #[test]
    fn realistic_sample() {
        let model = Overview::from_sample("kitchen-pi", Some([192, 168, 1, 42]), &sample());
        check_golden("overview_128x64", &render(&model));
    }

    #[test]
    fn absent_temperature_shows_dashes() {
        let mut sample = sample();
        sample.temperatures.clear();
        let model = Overview::from_sample("kitchen-pi", Some([192, 168, 1, 42]), &sample);
        assert_eq!(model.temperature, None);
        let absent = render(&model);
        check_golden("overview_no_temperature_128x64", &absent);

        // Not the same picture as a sensor reading 0 °C: only the temperature differs, and it
        // differs in the bottom-left status line where the temperature is drawn.
        let zero = render(&Overview {
            temperature: Some(0),
            ..model
        });
        let differing: Vec<(i32, i32)> = (0..64)
            .flat_map(|y| (0..128).map(move |x| (x, y)))
            .filter(|&(x, y)| absent.pixel(x, y) != zero.pixel(x, y))
            .collect();
        assert!(
            !differing.is_empty(),
            "an absent sensor must not look like 0 °C"
        );
        assert!(
            differing
                .iter()
                .all(|&(x, y)| x < 64 && (49..56).contains(&y)),
            "{differing:?}"
        );
    }

    /// Records every pixel drawn on a target larger than the screen.
    struct Recorder {
        outside: Vec<(i32, i32)>,
        drawn: usize,
    }

    impl OriginDimensions for Recorder {
        fn size(&self) -> Size {
            Size::new(1024, 1024)
        }
    }

    impl DrawTarget for Recorder {
        type Color = BinaryColor;
        type Error = core::convert::Infallible;

        fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
        where
            I: IntoIterator<Item = Pixel<BinaryColor>>,
        {
            for Pixel(p, _) in pixels {
                self.drawn += 1;
                if !(0..128).contains(&p.x) || !(0..64).contains(&p.y) {
                    self.outside.push((p.x, p.y));
                }
            }
            Ok(())
        }
    }

    #[test]
    fn extreme_values_stay_on_screen() {
        let mut sample = sample();
        sample.uptime_s = u64::MAX;
        sample.cpu.busy = u16::MAX;
        sample.memory.used = u64::MAX;
        sample.memory.total = u64::MAX;
        for fs in sample.filesystems.iter_mut() {
            fs.mount = String::new();
            fs.used = u64::MAX;
            fs.total = 1;
        }
        for net in sample.networks.iter_mut() {
            net.interface = String::new();
            net.rx_bps = u64::MAX;
            net.tx_bps = u64::MAX;
        }
        sample.temperatures[0].millicelsius = i32::MIN;
        sample.temperatures[0].sensor = String::new();

        let long_host = "a-very-long-hostname-of-32-chars";
        assert_eq!(long_host.len(), 32);
        for (host, ip) in [
            (long_host, Some([255, 255, 255, 255])),
            ("", None),
            ("ÿ\n\t\u{7f}€漢字", Some([0, 0, 0, 0])),
        ] {
            let model = Overview::from_sample(host, ip, &sample);
            let mut recorder = Recorder {
                outside: Vec::new(),
                drawn: 0,
            };
            overview::draw(&model, &mut recorder).unwrap();
            assert!(recorder.drawn > 0);
            assert!(
                recorder.outside.is_empty(),
                "{host:?}: {:?}",
                recorder.outside
            );

            // And into buffers smaller and larger than the screen.
            overview::draw(&model, &mut Framebuffer::<16, 1>::new()).unwrap();
            overview::draw(&model, &mut Framebuffer::<200, 12>::new()).unwrap();
        }

        let model = Overview::from_sample(long_host, Some([255, 255, 255, 255]), &sample);
        check_golden("overview_extreme_128x64", &render(&model));
    }
}

mod pages {
    use embedded_graphics::draw_target::DrawTarget;
    use embedded_graphics::geometry::{OriginDimensions, Size};
    use embedded_graphics::pixelcolor::{BinaryColor, PixelColor, Rgb565};
    use embedded_graphics::Pixel;
    use ember_display::framebuffer::Framebuffer;
    use ember_display::layout::Layout;
    use ember_display::model::alert;
    use ember_display::pages::{self, Page};
    use ember_display::png::{encode_png, encode_rgb565_png};
    use ember_display::text::{self, Grid};
    use ember_display::theme::PanelColor;
    use ember_display::{Canvas, FleetHost, Histories, Model, Settings};
    use ember_wire::heapless::String;
    use ember_wire::{DiskIo, Filesystem, NetIo, Process, Sample, Temperature, Wifi};

    use super::compare_golden;

    fn s<const N: usize>(text: &str) -> String<N> {
        String::from(text)
    }

    /// The same Raspberry Pi 4 afternoon as the overview tests, with everything the other
    /// pages show.
    pub fn sample() -> Sample {
        let mut sample = Sample {
            seq: 1234,
            timestamp_ms: 1_750_000_000_000,
            uptime_s: 3 * 86_400 + 4 * 3600 + 17 * 60,
            throttled: Some(0),
            ..Sample::default()
        };
        sample.cpu.busy = 2_345;
        sample.cpu.user = 1_800;
        sample.cpu.system = 500;
        sample.cpu.iowait = 45;
        for core in [2_100, 3_400, 1_200, 2_680] {
            sample.cpu.cores.push(core).unwrap();
        }
        sample.load.one = 52;
        sample.load.five = 48;
        sample.load.fifteen = 40;
        sample.memory.total = 3_978_000_000;
        sample.memory.used = 2_424_000_000;
        sample.memory.available = 1_554_000_000;
        sample.memory.swap_total = 209_000_000;
        sample.memory.swap_used = 12_000_000;
        let filesystems = [
            ("/boot/firmware", 534_000_000, 64_000_000),
            ("/", 62_500_000_000, 23_800_000_000),
        ];
        for (mount, total, used) in filesystems {
            let fs = Filesystem {
                mount: s(mount),
                total,
                used,
            };
            sample.filesystems.push(fs).unwrap();
        }
        let io = DiskIo {
            device: s("mmcblk0"),
            read_bps: 1_200_000,
            write_bps: 30_000,
        };
        sample.disks.push(io).unwrap();
        let networks = [("eth0", 1_180_000, 338_000), ("wlan0", 20_000, 9_000)];
        for (name, rx_bps, tx_bps) in networks {
            let net = NetIo {
                interface: s(name),
                rx_bps,
                tx_bps,
                wifi: (name == "wlan0").then_some(Wifi {
                    signal_dbm: -58,
                    quality: 70,
                }),
                ..NetIo::default()
            };
            sample.networks.push(net).unwrap();
        }
        for (sensor, millicelsius) in [("cpu_thermal", 51_234), ("rp1_adc", 44_800)] {
            let t = Temperature {
                sensor: s(sensor),
                millicelsius,
            };
            sample.temperatures.push(t).unwrap();
        }
        let procs = [
            (812, "python3", 1_850, 96_000_000),
            (1203, "mosquitto", 420, 9_000_000),
            (655, "ember-agent", 120, 6_500_000),
            (1, "systemd", 30, 12_000_000),
            (733, "sshd", 0, 7_000_000),
        ];
        for (pid, name, cpu, memory) in procs {
            let p = Process {
                pid,
                name: s(name),
                cpu,
                memory,
            };
            sample.top_cpu.push(p).unwrap();
        }
        let mut by_memory = sample.top_cpu.clone();
        by_memory.sort_by_key(|p| std::cmp::Reverse(p.memory));
        sample.top_memory = by_memory;
        sample
    }

    /// Two minutes of history ending in `last`: deterministic waves around its values.
    pub fn histories(last: &Sample) -> Histories {
        let mut h = Histories::new();
        for t in 0..120u64 {
            let mut s = last.clone();
            if t < 119 {
                let wave = |period: u64, amplitude: u64| (t * 7 % period) * amplitude / period;
                s.cpu.busy = (500 + wave(23, 6_000) + wave(9, 1_500)) as u16;
                for (k, n) in s.networks.iter_mut().enumerate() {
                    let rx = u128::from((t * 13 + 31 * k as u64) % 29) * u128::from(n.rx_bps);
                    let tx = u128::from((t * 11 + 17 * k as u64) % 23) * u128::from(n.tx_bps);
                    n.rx_bps = (rx / 20).min(u128::from(u64::MAX / 2)) as u64 + wave(7, 40_000);
                    n.tx_bps = (tx / 15).min(u128::from(u64::MAX)) as u64;
                }
                for temp in s.temperatures.iter_mut() {
                    temp.millicelsius = 47_000 + (wave(31, 5_000) + t * 20) as i32;
                }
            }
            h.record(&s);
        }
        h
    }

    pub fn fleet() -> Vec<FleetHost> {
        vec![
            FleetHost::new("kitchen-pi", true),
            FleetHost::new("garage-pi", true),
            FleetHost::new("greenhouse", false),
            FleetHost::new("nas", true),
            FleetHost::new("printer-pi", true),
        ]
    }

    fn model<'a>(sample: &'a Sample, h: &'a Histories, fleet: &'a [FleetHost]) -> Model<'a> {
        Model {
            host: "kitchen-pi",
            ipv4: Some([192, 168, 1, 42]),
            sample,
            history: h,
            fleet,
        }
    }

    /// The pixel panels: (width, height).
    pub const SIZES: [(u32, u32); 6] = [
        (128, 32),
        (128, 64),
        (160, 128),
        (240, 240),
        (240, 320),
        (320, 240),
    ];

    /// `page` of `m` on a `w` x `h` panel as a PNG: 1-bit for the monochrome sizes (128 wide),
    /// RGB565 for the colour ones. `banner`: with the alert banner, when there is an alert.
    fn render(page: Page, m: &Model<'_>, banner: bool, w: u32, h: u32) -> Vec<u8> {
        let settings = Settings::default();
        let layout = Layout::for_size(Size::new(w, h));
        let alert = alert(m, &settings).filter(|_| banner);
        let alert = alert.as_ref();
        match (w, h) {
            (128, 32) => {
                let mut fb = Framebuffer::<128, 4>::new();
                pages::draw_with(page, m, &settings, &layout, alert, &mut fb).unwrap();
                encode_png(&fb, 1)
            }
            (128, 64) => {
                let mut fb = Framebuffer::<128, 8>::new();
                pages::draw_with(page, m, &settings, &layout, alert, &mut fb).unwrap();
                encode_png(&fb, 1)
            }
            _ => {
                let mut px = vec![Rgb565::new(3, 3, 3); (w * h) as usize];
                let mut canvas = Canvas::new(&mut px, w as usize);
                pages::draw_with(page, m, &settings, &layout, alert, &mut canvas).unwrap();
                encode_rgb565_png(&px, w as usize, 1)
            }
        }
    }

    fn lcd<const C: usize, const R: usize>(page: Page, m: &Model<'_>, banner: bool) -> Vec<u8> {
        let mut grid = Grid::<C, R>::new();
        let settings = Settings::default();
        let alert = alert(m, &settings).filter(|_| banner);
        text::render_with(page, m, &settings, alert.as_ref(), &mut grid);
        let size = text::grid_size(C as u32, R as u32);
        let mut px = vec![Rgb565::new(0, 0, 0); (size.width * size.height) as usize];
        let mut canvas = Canvas::new(&mut px, size.width as usize);
        text::draw_grid(&grid, &mut canvas).unwrap();
        encode_rgb565_png(&px, size.width as usize, 1)
    }

    fn assert_all(errors: Vec<std::string::String>) {
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    #[test]
    fn every_page_on_every_panel_size() {
        let (sample, fleet) = (sample(), fleet());
        let h = histories(&sample);
        let m = model(&sample, &h, &fleet);
        // The host that is down raises the only alert; these snapshots show the pages under
        // it (`alert_banner_on_every_panel_size` shows the banner).
        let text = alert(&m, &Settings::default()).map(|a| a.text);
        assert_eq!(text.as_deref(), Some("DOWN greenhouse"));
        let mut errors = Vec::new();
        for page in Page::ALL {
            for (w, ht) in SIZES {
                let name = format!("{}_{w}x{ht}", page.name());
                if let Err(e) = compare_golden(&name, &render(page, &m, false, w, ht)) {
                    errors.push(e);
                }
            }
            for (name, png) in [
                (
                    format!("lcd_{}_16x2", page.name()),
                    lcd::<16, 2>(page, &m, false),
                ),
                (
                    format!("lcd_{}_20x4", page.name()),
                    lcd::<20, 4>(page, &m, false),
                ),
            ] {
                if let Err(e) = compare_golden(&name, &png) {
                    errors.push(e);
                }
            }
        }
        assert_all(errors);
    }

    #[test]
    fn alert_banner_on_every_panel_size() {
        let mut sample = sample();
        sample.temperatures[0].millicelsius = 83_500;
        sample.memory.used = sample.memory.total / 100 * 93;
        let fleet = fleet();
        let h = histories(&sample);
        let m = model(&sample, &h, &fleet);
        let settings = Settings::default();
        let banner = alert(&m, &settings).unwrap();
        assert_eq!(banner.text, "HOT 83.5°C +2");
        let mut errors = Vec::new();
        for (w, ht) in SIZES {
            let name = format!("alert_{w}x{ht}");
            if let Err(e) = compare_golden(&name, &render(Page::Overview, &m, true, w, ht)) {
                errors.push(e);
            }
        }
        for (name, png) in [
            ("lcd_alert_16x2", lcd::<16, 2>(Page::Overview, &m, true)),
            ("lcd_alert_20x4", lcd::<20, 4>(Page::Overview, &m, true)),
        ] {
            if let Err(e) = compare_golden(name, &png) {
                errors.push(e);
            }
        }
        assert_all(errors);
    }

    #[test]
    fn many_cores_become_a_chart() {
        let mut sample = sample();
        sample.cpu.cores.clear();
        for k in 0..16u16 {
            sample.cpu.cores.push(k * 613 % 10_000 + 9 * k).unwrap();
        }
        let h = histories(&sample);
        let m = model(&sample, &h, &[]);
        let mut errors = Vec::new();
        for (w, ht) in [(128, 32), (128, 64), (240, 240)] {
            let name = format!("cpu16_{w}x{ht}");
            if let Err(e) = compare_golden(&name, &render(Page::Cpu, &m, true, w, ht)) {
                errors.push(e);
            }
        }
        assert_all(errors);
    }

    #[test]
    fn overview_page_is_the_overview_screen() {
        // The page drawn from a whole sample and the screen drawn from its figures agree on a
        // 128x64 panel: one implementation, two entry points.
        let sample = sample();
        let h = histories(&sample);
        let m = model(&sample, &h, &[]);
        let mut page = Framebuffer::<128, 8>::new();
        pages::draw(Page::Overview, &m, &Settings::default(), &mut page).unwrap();
        let figures = ember_display::Overview::from_sample(m.host, m.ipv4, &sample);
        let mut screen = Framebuffer::<128, 8>::new();
        ember_display::overview::draw(&figures, &mut screen).unwrap();
        assert_eq!(page, screen);
    }

    /// Counts the pixels drawn, and those outside `panel`, on a target of `size`.
    struct Recorder<C> {
        size: Size,
        panel: Size,
        outside: usize,
        drawn: usize,
        _color: std::marker::PhantomData<C>,
    }

    impl<C: PixelColor> OriginDimensions for Recorder<C> {
        fn size(&self) -> Size {
            self.size
        }
    }

    impl<C: PixelColor> DrawTarget for Recorder<C> {
        type Color = C;
        type Error = core::convert::Infallible;

        fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
        where
            I: IntoIterator<Item = Pixel<C>>,
        {
            for Pixel(p, _) in pixels {
                self.drawn += 1;
                let (w, h) = (self.panel.width as i32, self.panel.height as i32);
                if !(0..w).contains(&p.x) || !(0..h).contains(&p.y) {
                    self.outside += 1;
                }
            }
            Ok(())
        }
    }

    /// Draws `page` laid out for a `w` x `h` panel on a target four times as large: it draws
    /// something, and nothing outside the panel.
    fn stays_inside<C: PanelColor>(page: Page, m: &Model<'_>, settings: &Settings, w: u32, h: u32) {
        let panel = Size::new(w, h);
        let mut r = Recorder::<C> {
            size: Size::new(w * 4, h * 4),
            panel,
            outside: 0,
            drawn: 0,
            _color: Default::default(),
        };
        let layout = Layout::for_size(panel);
        let banner = alert(m, settings);
        pages::draw_with(page, m, settings, &layout, banner.as_ref(), &mut r).unwrap();
        assert!(r.drawn > 0, "{page:?} {w}x{h}");
        assert_eq!(r.outside, 0, "{page:?} {w}x{h} host {:?}", m.host);
    }

    #[test]
    fn extreme_values_stay_on_every_screen() {
        let mut sample = sample();
        sample.uptime_s = u64::MAX;
        sample.cpu.busy = u16::MAX;
        sample.cpu.cores.clear();
        for _ in 0..16 {
            sample.cpu.cores.push(u16::MAX).unwrap();
        }
        sample.load.one = u32::MAX;
        sample.memory.used = u64::MAX;
        sample.memory.swap_total = 1;
        sample.memory.swap_used = u64::MAX;
        for fs in sample.filesystems.iter_mut() {
            fs.mount = s(&"m".repeat(32));
            fs.used = u64::MAX;
            fs.total = 1;
        }
        for n in sample.networks.iter_mut() {
            n.interface = s(&"i".repeat(16));
            n.rx_bps = u64::MAX;
            n.tx_bps = u64::MAX;
        }
        for t in sample.temperatures.iter_mut() {
            t.sensor = s(&"é".repeat(12));
            t.millicelsius = i32::MIN;
        }
        sample.throttled = Some(u32::MAX);
        for p in sample
            .top_cpu
            .iter_mut()
            .chain(sample.top_memory.iter_mut())
        {
            p.cpu = u32::MAX;
            p.memory = u64::MAX;
            p.name = s("漢字漢字漢");
        }
        let fleet: Vec<FleetHost> = (0..100)
            .map(|k| FleetHost::new(&"h".repeat(32), k % 3 == 0))
            .collect();
        let h = histories(&sample);
        let empty = Sample::default();
        let no_history = Histories::new();
        for host in ["a-very-long-hostname-of-32-chars", "", "ÿ\n\t\u{7f}€漢字"] {
            let full = Model {
                host,
                ipv4: Some([255, 255, 255, 255]),
                sample: &sample,
                history: &h,
                fleet: &fleet,
            };
            let bare = Model {
                host,
                ipv4: None,
                sample: &empty,
                history: &no_history,
                fleet: &[],
            };
            for m in [full, bare] {
                for settings in [Settings::default(), fahrenheit_bits()] {
                    for page in Page::ALL {
                        for (w, ht) in SIZES {
                            stays_inside::<BinaryColor>(page, &m, &settings, w, ht);
                            stays_inside::<Rgb565>(page, &m, &settings, w, ht);
                        }
                        let mut grid = Grid::<16, 2>::new();
                        text::render(page, &m, &settings, &mut grid);
                        let mut grid = Grid::<20, 4>::new();
                        text::render(page, &m, &settings, &mut grid);
                    }
                }
            }
        }
    }

    fn fahrenheit_bits() -> Settings {
        Settings {
            temperature_unit: ember_display::settings::TemperatureUnit::Fahrenheit,
            rate_unit: ember_display::settings::RateUnit::Bits,
            ..Settings::default()
        }
    }
}
