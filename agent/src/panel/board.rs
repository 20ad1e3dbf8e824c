//! Board + panel profiles: which controller, its size, the bus and pins it is wired to.
//!
//! The profiles in `boards/` are built into the binary (so `--board NAME` works from an
//! installed package); `--board PATH.toml` reads any other file. Every profile is checked on
//! load: an error names the profile, the key and what is allowed.

use std::path::Path;

use serde::Deserialize;

/// The built-in profiles: name and TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "pi-ssd1306",
        include_str!("../../../boards/pi-ssd1306.toml"),
    ),
    (
        "pi-ssd1306-128x32",
        include_str!("../../../boards/pi-ssd1306-128x32.toml"),
    ),
    (
        "pi-zero2w-sh1106",
        include_str!("../../../boards/pi-zero2w-sh1106.toml"),
    ),
    (
        "pi-ssd1309-spi",
        include_str!("../../../boards/pi-ssd1309-spi.toml"),
    ),
    (
        "pi-st7789-240x240",
        include_str!("../../../boards/pi-st7789-240x240.toml"),
    ),
    (
        "pi-st7789-240x320",
        include_str!("../../../boards/pi-st7789-240x320.toml"),
    ),
    ("pi-st7735", include_str!("../../../boards/pi-st7735.toml")),
    (
        "pi-ili9341",
        include_str!("../../../boards/pi-ili9341.toml"),
    ),
    (
        "pi-hd44780-16x2",
        include_str!("../../../boards/pi-hd44780-16x2.toml"),
    ),
    (
        "pi-hd44780-20x4",
        include_str!("../../../boards/pi-hd44780-20x4.toml"),
    ),
];

/// Why a profile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("board `{board}`: {}{reason}", key.as_deref().map(|k| format!("`{k}` ")).unwrap_or_default())]
pub struct BoardError {
    /// The profile's name or path.
    pub board: String,
    /// The offending key, if one is to blame.
    pub key: Option<String>,
    /// What is wrong and what to do.
    pub reason: String,
}

/// The panel controllers Ember drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// Monochrome OLED, 128x64 or 128x32, I2C or SPI (the `ssd1306` crate).
    Ssd1306,
    /// Monochrome OLED, 128x64, the SSD1306's command set without a charge pump.
    Ssd1309,
    /// Monochrome OLED, 128x64 shown from 132 columns of RAM (Ember's own small driver).
    Sh1106,
    /// Colour TFT, 240x240 or 240x320, SPI (`mipidsi`).
    St7789,
    /// Colour TFT, 128x160, SPI (`mipidsi`).
    St7735,
    /// Colour TFT, 240x320, SPI (`mipidsi`).
    Ili9341,
    /// Character LCD, 16x2 or 20x4, behind a PCF8574 I2C backpack (Ember's own driver).
    Hd44780,
}

impl Controller {
    /// The sizes a panel of this controller comes in (characters for the HD44780).
    fn sizes(self) -> &'static [(u32, u32)] {
        match self {
            Controller::Ssd1306 => &[(128, 64), (128, 32)],
            Controller::Ssd1309 | Controller::Sh1106 => &[(128, 64)],
            Controller::St7789 => &[(240, 240), (240, 320)],
            Controller::St7735 => &[(128, 160)],
            Controller::Ili9341 => &[(240, 320)],
            Controller::Hd44780 => &[(16, 2), (20, 4)],
        }
    }

    /// Whether it is a monochrome OLED.
    pub fn is_oled(self) -> bool {
        matches!(
            self,
            Controller::Ssd1306 | Controller::Ssd1309 | Controller::Sh1106
        )
    }

    /// Whether it is a colour TFT.
    pub fn is_tft(self) -> bool {
        matches!(
            self,
            Controller::St7789 | Controller::St7735 | Controller::Ili9341
        )
    }
}

/// RGB or BGR subpixel order of a TFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red first.
    #[default]
    Rgb,
    /// Blue first.
    Bgr,
}

/// How the panel is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// `/dev/i2c-N` at a 7-bit address.
    I2c {
        /// The bus device.
        device: String,
        /// The 7-bit address.
        address: u8,
        /// The bus clock (set by the kernel's device tree; used for timing estimates).
        hz: u32,
    },
    /// `/dev/spidevB.C`.
    Spi {
        /// The SPI device (bus B, chip select C).
        device: String,
        /// The clock Ember sets.
        hz: u32,
    },
}

impl Bus {
    /// The device path.
    pub fn device(&self) -> &str {
        match self {
            Bus::I2c { device, .. } | Bus::Spi { device, .. } => device,
        }
    }
}

/// GPIO character-device lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pins {
    /// The GPIO chip (`/dev/gpiochip0`).
    pub chip: String,
    /// Data/command line (SPI panels).
    pub dc: Option<u32>,
    /// Reset line, pulsed low at start.
    pub reset: Option<u32>,
    /// Backlight line, driven high (TFTs).
    pub backlight: Option<u32>,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// The profile's name.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// The controller.
    pub controller: Controller,
    /// Native width: pixels, or characters for the HD44780.
    pub width: u32,
    /// Native height: pixels, or lines for the HD44780.
    pub height: u32,
    /// Rotation in degrees (0, 90, 180, 270; OLEDs 0 or 180).
    pub rotation: u16,
    /// OLED contrast (0-255).
    pub contrast: u8,
    /// TFT colour inversion (IPS panels).
    pub invert_colors: bool,
    /// TFT subpixel order.
    pub color_order: ColorOrder,
    /// The bus.
    pub bus: Bus,
    /// GPIO lines.
    pub pins: Pins,
    /// Wiring notes for people.
    pub notes: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBoard {
    name: String,
    #[serde(default)]
    description: String,
    controller: Controller,
    width: u32,
    height: u32,
    #[serde(default)]
    rotation: u16,
    contrast: Option<u16>,
    #[serde(default)]
    invert_colors: bool,
    #[serde(default)]
    color_order: ColorOrder,
    bus: RawBus,
    pins: Option<RawPins>,
    wiring: Option<RawWiring>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBus {
    kind: String,
    device: String,
    address: Option<u16>,
    clock_hz: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPins {
    #[serde(default = "default_chip")]
    chip: String,
    dc: Option<u32>,
    reset: Option<u32>,
    backlight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWiring {
    #[serde(default)]
    notes: String,
}

fn default_chip() -> String {
    "/dev/gpiochip0".into()
}

/// The names of the built-in profiles, comma-separated.
pub fn known() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Board {
    /// A built-in profile by name, or a profile file when `name_or_path` contains `/` or ends
    /// in `.toml`.
    pub fn load(name_or_path: &str) -> Result<Board, BoardError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            let path = Path::new(name_or_path);
            let text = std::fs::read_to_string(path).map_err(|e| BoardError {
                board: name_or_path.into(),
                key: None,
                reason: format!(
                    "cannot read {}: {e} (give a built-in name: {})",
                    path.display(),
                    known()
                ),
            })?;
            return Board::parse(name_or_path, &text);
        }
        match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            Some((name, text)) => Board::parse(name, text),
            None => Err(BoardError {
                board: name_or_path.into(),
                key: None,
                reason: format!(
                    "no such board; built in: {}; or give the path of a profile (.toml)",
                    known()
                ),
            }),
        }
    }

    /// Parses and checks a profile's TOML; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<Board, BoardError> {
        let fail = |key: Option<&str>, reason: String| BoardError {
            board: source.into(),
            key: key.map(str::to_string),
            reason,
        };
        let raw: RawBoard = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let key = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next());
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            fail(key, format!("{message}{at}"))
        })?;
        let c = raw.controller;
        let size = (raw.width, raw.height);
        if !c.sizes().contains(&size) {
            let allowed: Vec<String> = c.sizes().iter().map(|(w, h)| format!("{w}x{h}")).collect();
            return Err(fail(
                Some("width"),
                format!(
                    "{c:?} panels are {}, got {}x{} (set `width` and `height`; a landscape \
                     panel is its portrait size with `rotation = 90`)",
                    allowed.join(" or "),
                    raw.width,
                    raw.height
                ),
            ));
        }
        let rotations: &[u16] = if c.is_tft() {
            &[0, 90, 180, 270]
        } else if c.is_oled() {
            &[0, 180]
        } else {
            &[0]
        };
        if !rotations.contains(&raw.rotation) {
            return Err(fail(
                Some("rotation"),
                format!(
                    "must be one of {rotations:?} for {c:?}, got {} (OLED pages are laid out \
                     landscape)",
                    raw.rotation
                ),
            ));
        }
        let contrast = match raw.contrast {
            None => 0x7f,
            Some(v) if c.is_oled() => u8::try_from(v)
                .map_err(|_| fail(Some("contrast"), format!("must be 0 to 255, got {v}")))?,
            Some(_) => {
                return Err(fail(
                    Some("contrast"),
                    format!("only OLEDs have a contrast setting, not {c:?}"),
                ))
            }
        };
        let device = raw.bus.device.clone();
        let bus = match raw.bus.kind.as_str() {
            "i2c" => {
                if !matches!(
                    c,
                    Controller::Ssd1306
                        | Controller::Ssd1309
                        | Controller::Sh1106
                        | Controller::Hd44780
                ) {
                    return Err(fail(
                        Some("bus.kind"),
                        format!("{c:?} panels are SPI only, got \"i2c\""),
                    ));
                }
                if !device.starts_with("/dev/i2c-") {
                    return Err(fail(
                        Some("bus.device"),
                        format!("an I2C bus is /dev/i2c-N (`/dev/i2c-1` on a Pi), got {device:?}"),
                    ));
                }
                let address = raw.bus.address.ok_or_else(|| {
                    fail(Some("bus.address"), "an I2C panel needs its address (0x3c for most OLEDs, 0x27 for most LCD backpacks; `i2cdetect -y 1` shows it)".into())
                })?;
                let address = u8::try_from(address)
                    .ok()
                    .filter(|a| (0x03..=0x77).contains(a))
                    .ok_or_else(|| {
                        fail(
                            Some("bus.address"),
                            format!("a 7-bit address is 0x03 to 0x77, got {address:#x}"),
                        )
                    })?;
                let hz = raw.bus.clock_hz.unwrap_or(100_000);
                if !(10_000..=1_000_000).contains(&hz) {
                    return Err(fail(
                        Some("bus.clock-hz"),
                        format!("I2C runs at 10 kHz to 1 MHz, got {hz}"),
                    ));
                }
                Bus::I2c {
                    device,
                    address,
                    hz,
                }
            }
            "spi" => {
                if c == Controller::Hd44780 {
                    return Err(fail(
                        Some("bus.kind"),
                        "the HD44780 is driven through a PCF8574 I2C backpack: \"i2c\"".into(),
                    ));
                }
                if !device.starts_with("/dev/spidev") {
                    return Err(fail(
                        Some("bus.device"),
                        format!("an SPI device is /dev/spidevB.C (`/dev/spidev0.0` on a Pi), got {device:?}"),
                    ));
                }
                if raw.bus.address.is_some() {
                    return Err(fail(
                        Some("bus.address"),
                        "SPI has no address: the chip select is the C of /dev/spidevB.C".into(),
                    ));
                }
                let hz = raw.bus.clock_hz.unwrap_or(8_000_000);
                if !(100_000..=80_000_000).contains(&hz) {
                    return Err(fail(
                        Some("bus.clock-hz"),
                        format!("SPI runs at 100 kHz to 80 MHz here, got {hz}"),
                    ));
                }
                Bus::Spi { device, hz }
            }
            other => {
                return Err(fail(
                    Some("bus.kind"),
                    format!("must be \"i2c\" or \"spi\", got {other:?}"),
                ))
            }
        };
        let pins = match raw.pins {
            Some(p) => Pins {
                chip: p.chip,
                dc: p.dc,
                reset: p.reset,
                backlight: p.backlight,
            },
            None => Pins {
                chip: default_chip(),
                ..Pins::default()
            },
        };
        if matches!(bus, Bus::Spi { .. }) && pins.dc.is_none() {
            return Err(fail(
                Some("pins.dc"),
                "an SPI panel needs its data/command line (a GPIO number, e.g. `dc = 25`)".into(),
            ));
        }
        if !pins.chip.starts_with("/dev/gpiochip") {
            return Err(fail(
                Some("pins.chip"),
                format!("a GPIO chip is /dev/gpiochipN, got {:?}", pins.chip),
            ));
        }
        let lines = [pins.dc, pins.reset, pins.backlight];
        for (i, a) in lines.iter().enumerate() {
            if let Some(a) = a {
                if lines[i + 1..].contains(&Some(*a)) {
                    return Err(fail(
                        Some("pins"),
                        format!("GPIO {a} is given for two functions"),
                    ));
                }
            }
        }
        let expected = Path::new(source)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(source);
        if BUILTIN.iter().any(|(n, _)| *n == source) && raw.name != expected {
            return Err(fail(
                Some("name"),
                format!("must match the file name {expected:?}, got {:?}", raw.name),
            ));
        }
        Ok(Board {
            name: raw.name,
            description: raw.description,
            controller: c,
            width: raw.width,
            height: raw.height,
            rotation: raw.rotation,
            contrast,
            invert_colors: raw.invert_colors,
            color_order: raw.color_order,
            bus,
            pins,
            notes: raw.wiring.map(|w| w.notes).unwrap_or_default(),
        })
    }

    /// The size pages are drawn at: pixels after rotation (characters for the HD44780).
    pub fn drawn_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_loads_and_is_in_boards() {
        for (name, _) in BUILTIN {
            let b = Board::load(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&b.name, name);
            assert!(!b.notes.is_empty() && !b.description.is_empty(), "{name}");
        }
        // Every file in boards/ is built in, and the other way round.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".toml").map(str::to_string))
            .collect();
        files.sort();
        let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(files, names);
        // And from its path.
        let path = dir.join("pi-ili9341.toml");
        let b = Board::load(path.to_str().unwrap()).unwrap();
        assert_eq!(b.drawn_size(), (320, 240));
    }

    fn check(text: &str, key: Option<&str>, says: &str) {
        let e = Board::parse("test", text).unwrap_err();
        assert_eq!(e.key.as_deref(), key, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }

    const GOOD: &str = "name = \"x\"\ncontroller = \"ssd1306\"\nwidth = 128\nheight = 64\n\
        [bus]\nkind = \"i2c\"\ndevice = \"/dev/i2c-1\"\naddress = 0x3c\n";

    #[test]
    fn bad_profiles_name_the_key_and_the_fix() {
        assert!(Board::parse("test", GOOD).is_ok());
        check(
            &GOOD.replace("128", "96"),
            Some("width"),
            "128x64 or 128x32",
        );
        check(&GOOD.replace("ssd1306", "st9999"), None, "unknown variant");
        check(
            &GOOD.replace("0x3c", "0x3c0"),
            Some("bus.address"),
            "0x03 to 0x77",
        );
        check(
            &GOOD.replace("/dev/i2c-1", "i2c-1"),
            Some("bus.device"),
            "/dev/i2c-N",
        );
        check(
            &GOOD.replace("\"i2c\"", "\"usb\""),
            Some("bus.kind"),
            "\"i2c\" or \"spi\"",
        );
        check(
            &GOOD.replace("address = 0x3c\n", ""),
            Some("bus.address"),
            "i2cdetect",
        );
        check(&format!("{GOOD}colour = 1\n"), Some("colour"), "line 9");
        check(
            &GOOD.replace("height = 64", "height = 64\nrotation = 90"),
            Some("rotation"),
            "[0, 180]",
        );
        check(
            &GOOD.replace("height = 64", "height = 64\ncontrast = 300"),
            Some("contrast"),
            "0 to 255",
        );
        let spi = GOOD
            .replace("\"i2c\"", "\"spi\"")
            .replace("/dev/i2c-1", "/dev/spidev0.0")
            .replace("address = 0x3c\n", "");
        check(&spi, Some("pins.dc"), "dc = 25");
        check(
            &format!("{spi}[pins]\ndc = 5\nreset = 5\n"),
            Some("pins"),
            "GPIO 5",
        );
        let tft = spi
            .replace("ssd1306", "st7789")
            .replace("128", "240")
            .replace("64", "240");
        check(
            &format!("{tft}[pins]\ndc = 5\n").replace("\"spi\"", "\"i2c\""),
            Some("bus.kind"),
            "SPI only",
        );
        assert!(Board::load("no-such-board")
            .unwrap_err()
            .to_string()
            .contains("pi-ssd1306"));
        let e = Board::load("/nonexistent/board.toml").unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
