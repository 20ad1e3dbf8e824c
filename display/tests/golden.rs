//! Snapshot tests of the screens: each is rendered into a framebuffer and compared pixel for
//! pixel with a PNG checked in under `tests/golden/`.
//!
//! After an intended change to a screen, look at the `*.actual.png` a failing test leaves behind,
//! then bless the new images with
//!
//! ```text
//! EMBER_BLESS=1 cargo test -p ember-display --features png --test golden
//! ```
//!
//! Modules of this binary:
//! - `overview`: the overview screen for a realistic sample, without a temperature sensor, and
//!   with extreme values.

#![cfg(feature = "png")]

use std::io::Cursor;
use std::path::Path;

use ember_display::framebuffer::Mono128x64;
use ember_display::png::encode_png;

/// Compares `fb` with `tests/golden/{name}.png`, or rewrites that file when `EMBER_BLESS=1`.
fn check_golden(name: &str, fb: &Mono128x64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let golden = dir.join(format!("{name}.png"));
    let actual_path = dir.join(format!("{name}.actual.png"));
    let actual = encode_png(fb, 1);

    if std::env::var_os("EMBER_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&golden, &actual).unwrap();
        let _ = std::fs::remove_file(&actual_path);
        return;
    }

    let want = match std::fs::read(&golden) {
        Ok(bytes) => decode(&bytes),
        Err(e) => fail(
            &golden,
            &actual_path,
            &actual,
            &format!("cannot read it: {e}"),
        ),
    };
    let got = decode(&actual);
    if want.size != got.size {
        let why = format!("size {:?}, expected {:?}", got.size, want.size);
        fail(&golden, &actual_path, &actual, &why);
    }
    let diff: Vec<(usize, usize)> = (0..got.pixels.len())
        .filter(|&i| got.pixels[i] != want.pixels[i])
        .map(|i| (i % got.size.0 as usize, i / got.size.0 as usize))
        .collect();
    if let Some(first) = diff.first() {
        let why = format!("{} pixels differ, the first at {first:?}", diff.len());
        fail(&golden, &actual_path, &actual, &why);
    }
    let _ = std::fs::remove_file(&actual_path);
}

fn fail(golden: &Path, actual_path: &Path, actual: &[u8], why: &str) -> ! {
    std::fs::write(actual_path, actual).unwrap();
    panic!(
        "{} does not match the rendering: {why}.\n\
         The rendering is in {}. If it is right, bless it with\n    \
         EMBER_BLESS=1 cargo test -p ember-display --features png --test golden",
        golden.display(),
        actual_path.display(),
    );
}

struct Image {
    size: (u32, u32),
    /// One bool per pixel, row by row: on (white) or off.
    pixels: Vec<bool>,
}

/// Decodes any grayscale or color PNG into on/off pixels.
fn decode(bytes: &[u8]) -> Image {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("a valid PNG");
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|px| px[0] > 127)
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
