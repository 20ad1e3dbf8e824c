//! Opening a board's panel on Linux: `/dev/i2c-N`, `/dev/spidevB.C` and GPIO character-device
//! lines through `linux-embedded-hal`. Every failure names the device and the usual fix.

use std::io;

use embedded_hal::i2c::I2c;
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{CdevPin, Delay, I2cdev, SpidevDevice};
use mipidsi::models::{ILI9341Rgb565, Model, ST7735s, ST7789};
use mipidsi::options::{ColorInversion, ColorOrder as MipiOrder, Orientation, Rotation};
use ssd1306::prelude::{I2CInterface, SPIInterface};
use ssd1306::I2CDisplayInterface;

use super::board::{Board, Bus, ColorOrder, Controller};
use super::lcd::Hd44780;
use super::oled::{Oled, Sh1106Driver, Ssd1306Driver};
use super::tft::{SpiInterface, Tft};
use super::{Device, LcdDevice, OledDevice, PanelError, TftDevice};

/// What to do about an error opening `device`.
fn hint(device: &str, e: &io::Error) -> String {
    let (enable, group) = if device.starts_with("/dev/i2c") {
        (
            "enable I2C: `sudo raspi-config nonint do_i2c 0` (or dtparam=i2c_arm=on in /boot/firmware/config.txt) and reboot",
            "i2c",
        )
    } else if device.starts_with("/dev/spidev") {
        (
            "enable SPI: `sudo raspi-config nonint do_spi 0` (or dtparam=spi=on) and reboot",
            "spi",
        )
    } else {
        ("check `pins.chip` (`gpiodetect` lists the chips)", "gpio")
    };
    match e.kind() {
        io::ErrorKind::NotFound => format!("{device} does not exist: {enable}"),
        io::ErrorKind::PermissionDenied => format!(
            "no permission: add the agent's user to the group {group} (`sudo usermod -aG {group} ember`) or run it as root"
        ),
        io::ErrorKind::ResourceBusy => {
            "another program holds it (a kernel driver or another agent)".to_string()
        }
        _ => "check the wiring and the board profile's `bus` and `pins`".to_string(),
    }
}

fn open_error(device: &str, e: io::Error) -> PanelError {
    PanelError {
        device: device.to_string(),
        message: format!("cannot open it: {e}"),
        hint: hint(device, &e),
    }
}

/// An output line of `chip`, initially `high` or low.
fn line(chip: &str, offset: u32, high: bool) -> Result<CdevPin, PanelError> {
    let fail = |e: linux_embedded_hal::gpio_cdev::Error| {
        let io = io::Error::other(e.to_string());
        let kind = if e.to_string().contains("No such file") {
            io::Error::from(io::ErrorKind::NotFound)
        } else if e.to_string().contains("ermission") {
            io::Error::from(io::ErrorKind::PermissionDenied)
        } else if e.to_string().contains("busy") {
            io::Error::from(io::ErrorKind::ResourceBusy)
        } else {
            io
        };
        PanelError {
            device: format!("{chip} line {offset}"),
            message: format!("cannot request it: {e}"),
            hint: hint(chip, &kind),
        }
    };
    let mut c = Chip::new(chip).map_err(fail)?;
    let handle = c
        .get_line(offset)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, u8::from(high), "ember-agent"))
        .map_err(fail)?;
    CdevPin::new(handle).map_err(fail)
}

fn open_i2c(device: &str, address: u8) -> Result<I2cdev, PanelError> {
    let mut i2c = I2cdev::new(device).map_err(|e| open_error(device, io::Error::from(e)))?;
    // Nothing answers an address with nothing wired to it: ask before drawing, so the error
    // says so. 0x00 0xE3 is a no-op for OLED controllers; 0x08 keeps an LCD's backlight on.
    let probe: &[u8] = if address == 0x3c || address == 0x3d {
        &[0x00, 0xe3]
    } else {
        &[0x08]
    };
    i2c.write(address, probe).map_err(|e| PanelError {
        device: device.to_string(),
        message: format!("no device answered at {address:#04x}: {e}"),
        hint: format!(
            "check the wiring and power; `i2cdetect -y {}` lists the addresses that answer (set `bus.address`)",
            device.trim_start_matches("/dev/i2c-")
        ),
    })?;
    Ok(i2c)
}

fn open_spi(device: &str, hz: u32) -> Result<SpidevDevice, PanelError> {
    let mut spi =
        SpidevDevice::open(device).map_err(|e| open_error(device, e.inner().kind().into()))?;
    let options = SpidevOptions::new()
        .bits_per_word(8)
        .max_speed_hz(hz)
        .mode(SpiModeFlags::SPI_MODE_0)
        .build();
    spi.configure(&options).map_err(|e| open_error(device, e))?;
    Ok(spi)
}

/// Opens and initialises `board`'s panel.
pub fn open(board: &Board) -> Result<Box<dyn Device>, PanelError> {
    let name = board.bus.device().to_string();
    let flipped = board.rotation == 180;
    let c = board.controller;
    match (&board.bus, c) {
        (
            Bus::I2c {
                device, address, ..
            },
            Controller::Hd44780,
        ) => {
            let i2c = open_i2c(device, *address)?;
            let mut lcd = Hd44780::new(
                i2c,
                *address,
                Delay,
                board.width as usize,
                board.height as usize,
            );
            lcd.init().map_err(|e| PanelError::bus(&name, e))?;
            Ok(Box::new(LcdDevice { lcd, name }))
        }
        (
            Bus::I2c {
                device, address, ..
            },
            _,
        ) => {
            let i2c = open_i2c(device, *address)?;
            let di: I2CInterface<I2cdev> = I2CDisplayInterface::new_custom_address(i2c, *address);
            oled(board, name, di, flipped)
        }
        (Bus::Spi { device, hz }, _) => {
            let spi = open_spi(device, *hz)?;
            let pins = &board.pins;
            // Validated: SPI profiles have a D/C line.
            let dc = line(&pins.chip, pins.dc.unwrap_or_default(), false)?;
            let reset = match pins.reset {
                Some(n) => Some(line(&pins.chip, n, true)?),
                None => None,
            };
            if let Some(n) = pins.backlight {
                // Held high for as long as the agent runs: the line is released on exit.
                std::mem::forget(line(&pins.chip, n, true)?);
            }
            if c.is_oled() {
                if let Some(mut rst) = reset {
                    use embedded_hal::delay::DelayNs;
                    use embedded_hal::digital::OutputPin;
                    let mut delay = Delay;
                    let pulse = rst.set_low().and_then(|()| {
                        delay.delay_ms(10);
                        rst.set_high()
                    });
                    pulse.map_err(|e| PanelError::bus(&name, e))?;
                    delay.delay_ms(10);
                }
                return oled(board, name, SPIInterface::new(spi, dc), flipped);
            }
            let di = SpiInterface::new(spi, dc, 4096);
            match c {
                Controller::St7789 => tft(board, name, ST7789, di, reset),
                Controller::St7735 => tft(board, name, ST7735s, di, reset),
                _ => tft(board, name, ILI9341Rgb565, di, reset),
            }
        }
    }
}

fn oled<DI>(
    board: &Board,
    name: String,
    di: DI,
    flipped: bool,
) -> Result<Box<dyn Device>, PanelError>
where
    DI: display_interface::WriteOnlyDataCommand + Send + 'static,
{
    let mut device: Box<dyn Device> = if board.controller == Controller::Sh1106 {
        let mut o = Oled::new(Sh1106Driver::new(di, flipped), board.height, board.contrast);
        o.init().map_err(|e| PanelError::display(&name, e))?;
        Box::new(OledDevice { oled: o, name })
    } else {
        let driver = Ssd1306Driver::new(di, board.height, flipped);
        let mut o = Oled::new(driver, board.height, board.contrast);
        o.init().map_err(|e| PanelError::display(&name, e))?;
        Box::new(OledDevice { oled: o, name })
    };
    let _ = &mut device;
    Ok(device)
}

fn tft<M>(
    board: &Board,
    name: String,
    model: M,
    di: SpiInterface<SpidevDevice, CdevPin>,
    reset: Option<CdevPin>,
) -> Result<Box<dyn Device>, PanelError>
where
    M: Model<ColorFormat = embedded_graphics::pixelcolor::Rgb565> + Send + 'static,
{
    let rotation = match board.rotation {
        90 => Rotation::Deg90,
        180 => Rotation::Deg180,
        270 => Rotation::Deg270,
        _ => Rotation::Deg0,
    };
    let inversion = if board.invert_colors {
        ColorInversion::Inverted
    } else {
        ColorInversion::Normal
    };
    let order = match board.color_order {
        ColorOrder::Rgb => MipiOrder::Rgb,
        ColorOrder::Bgr => MipiOrder::Bgr,
    };
    let (w, _) = board.drawn_size();
    let builder = mipidsi::Builder::new(model, di)
        .display_size(board.width as u16, board.height as u16)
        .orientation(Orientation::new().rotate(rotation))
        .invert_colors(inversion)
        .color_order(order);
    let fail = |e: &dyn std::fmt::Debug| PanelError {
        device: name.clone(),
        message: format!("initialising the {:?} failed: {e:?}", board.controller),
        hint: "check the wiring (D/C, reset, chip select) and `bus.clock-hz`".into(),
    };
    match reset {
        Some(rst) => {
            let display = builder
                .reset_pin(rst)
                .init(&mut Delay)
                .map_err(|e| fail(&e))?;
            Ok(Box::new(TftDevice {
                tft: Tft::new(display, w as usize),
                name,
            }))
        }
        None => {
            let display = builder.init(&mut Delay).map_err(|e| fail(&e))?;
            Ok(Box::new(TftDevice {
                tft: Tft::new(display, w as usize),
                name,
            }))
        }
    }
}
