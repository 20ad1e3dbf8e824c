//! The attached panel: board profiles, rendering, drivers and the thread that keeps the panel
//! up to date without ever making the sampler wait.
//!
//! - [`board`]: the profiles in `boards/` (built in) or a file, validated on load.
//! - [`render`]: a page of a sample as the panel would show it ([`Frame`]), and as a PNG
//!   (`ember-agent render`).
//! - [`oled`], [`tft`], [`lcd`]: drivers that send only what changed; [`linux`] opens them on
//!   `/dev/i2c-N`, `/dev/spidevB.C` and GPIO lines.
//! - [`Panel::start`] runs the panel on its own thread: [`PanelHandle::update`] hands it the
//!   newest sample (replacing one not yet drawn) and returns at once. The thread rotates the
//!   pages, shifts OLED pictures by a pixel now and then against burn-in, and when the device
//!   is missing or fails it logs why (with the fix) and retries with backoff, 1 s doubling to
//!   1 min, while the agent goes on publishing.

pub mod board;
pub mod lcd;
pub mod linux;
pub mod oled;
pub mod render;
pub mod tft;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use display_interface::DisplayError;
use embedded_graphics::pixelcolor::Rgb565;
use ember_display::settings::{Limits, RateUnit, TemperatureUnit, Thresholds};
use ember_display::{Histories, Page, Settings};
use ember_wire::Sample;
use serde::{Deserialize, Serialize};

pub use board::Board;
pub use render::{Frame, Renderer};

/// A panel that cannot be opened or written, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panel on {device}: {message}; {hint}")]
pub struct PanelError {
    /// The device or line.
    pub device: String,
    /// What failed.
    pub message: String,
    /// The usual fix.
    pub hint: String,
}

impl PanelError {
    /// A bus write that failed.
    pub fn bus(device: &str, e: impl std::fmt::Debug) -> Self {
        PanelError {
            device: device.to_string(),
            message: format!("writing failed: {e:?}"),
            hint: "check the wiring and power; the panel is retried".into(),
        }
    }

    /// A display-interface write that failed.
    pub fn display(device: &str, e: DisplayError) -> Self {
        Self::bus(device, e)
    }
}

/// A panel that shows frames.
pub trait Device: Send {
    /// Shows `frame`; returns the bytes of picture sent (what changed).
    fn show(&mut self, frame: &Frame) -> Result<usize, PanelError>;
    /// Sets the brightness (an OLED's contrast), 0 to 255. Only called for panels whose
    /// controller has one ([`board::Controller::is_oled`]); others ignore it.
    fn set_brightness(&mut self, _level: u8) -> Result<(), PanelError> {
        Ok(())
    }
}

/// An OLED as a [`Device`].
pub struct OledDevice<D> {
    /// The panel.
    pub oled: oled::Oled<D>,
    /// Its device, for errors.
    pub name: String,
}

impl<D: oled::OledDriver + Send> Device for OledDevice<D> {
    fn show(&mut self, frame: &Frame) -> Result<usize, PanelError> {
        match frame {
            Frame::Mono(fb) => self
                .oled
                .show(fb)
                .map_err(|e| PanelError::display(&self.name, e)),
            _ => Err(PanelError::bus(&self.name, "not a monochrome frame")),
        }
    }

    fn set_brightness(&mut self, level: u8) -> Result<(), PanelError> {
        self.oled
            .set_contrast(level)
            .map_err(|e| PanelError::display(&self.name, e))
    }
}

/// A TFT as a [`Device`].
pub struct TftDevice<DI, M, RST>
where
    DI: mipidsi::interface::Interface<Word = u8>,
    M: mipidsi::models::Model<ColorFormat = Rgb565>,
    RST: embedded_hal::digital::OutputPin,
{
    /// The panel.
    pub tft: tft::Tft<DI, M, RST>,
    /// Its device, for errors.
    pub name: String,
}

impl<DI, M, RST> Device for TftDevice<DI, M, RST>
where
    DI: mipidsi::interface::Interface<Word = u8> + Send,
    DI::Error: std::fmt::Debug,
    M: mipidsi::models::Model<ColorFormat = Rgb565> + Send,
    RST: embedded_hal::digital::OutputPin + Send,
{
    fn show(&mut self, frame: &Frame) -> Result<usize, PanelError> {
        match frame {
            Frame::Color { pixels, .. } => self
                .tft
                .show(pixels)
                .map(|px| px * 2)
                .map_err(|e| PanelError::bus(&self.name, e)),
            _ => Err(PanelError::bus(&self.name, "not a colour frame")),
        }
    }
}

/// A character LCD as a [`Device`].
pub struct LcdDevice<I2C, D> {
    /// The display.
    pub lcd: lcd::Hd44780<I2C, D>,
    /// Its device, for errors.
    pub name: String,
}

impl<I2C, D> Device for LcdDevice<I2C, D>
where
    I2C: embedded_hal::i2c::I2c + Send,
    D: embedded_hal::delay::DelayNs + Send,
{
    fn show(&mut self, frame: &Frame) -> Result<usize, PanelError> {
        match frame {
            Frame::Text(lines) => self
                .lcd
                .show(lines)
                .map_err(|e| PanelError::bus(&self.name, e)),
            _ => Err(PanelError::bus(&self.name, "not a text frame")),
        }
    }
}

/// The `[panel]` table of the agent's configuration: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PanelRaw {
    /// Pages in rotation order (default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<Vec<String>>,
    /// How long each page shows (`10s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_every: Option<String>,
    /// How often an OLED's picture moves by a pixel against burn-in (`1m`; `0s` never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burn_in_shift: Option<String>,
    /// `C` or `F`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_unit: Option<String>,
    /// `bytes` or `bits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_unit: Option<String>,
    /// OLED contrast 0-255, over the board profile's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contrast: Option<u16>,
    /// Warning and critical limits in percent (`[85, 95]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limits: Option<[f64; 2]>,
    /// Memory limits in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limits: Option<[f64; 2]>,
    /// Filesystem limits in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_limits: Option<[f64; 2]>,
    /// Temperature limits in °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_limits: Option<[f64; 2]>,
}

/// Why the panel configuration was refused: the key (`panel.pages`) and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelConfigError {
    /// The key, as written in the configuration file.
    pub key: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

/// The validated panel configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelConfig {
    /// The board profile, as given (`pi-ssd1306` or a path).
    pub board_source: String,
    /// The profile.
    pub board: Board,
    /// Units and thresholds.
    pub settings: Settings,
    /// Pages in rotation order.
    pub pages: Vec<Page>,
    /// How long each page shows.
    pub page_every: Duration,
    /// How often an OLED's picture moves by a pixel; `None` never.
    pub burn_in_shift: Option<Duration>,
}

impl PanelConfig {
    /// Validates `board` and `raw` (`None` without a board: no panel).
    pub fn from_raw(
        board: Option<&str>,
        raw: Option<&PanelRaw>,
    ) -> Result<Option<PanelConfig>, PanelConfigError> {
        let fail = |key: &str, reason: String| PanelConfigError {
            key: key.into(),
            reason,
        };
        let default = PanelRaw::default();
        let raw = raw.unwrap_or(&default);
        let Some(source) = board else {
            if raw != &default {
                return Err(fail(
                    "board",
                    format!(
                        "a [panel] table needs a board (`board = \"pi-ssd1306\"`; built in: {})",
                        board::known()
                    ),
                ));
            }
            return Ok(None);
        };
        let mut board = Board::load(source).map_err(|e| fail("board", e.to_string()))?;
        let pages = match &raw.pages {
            None => Page::ALL.to_vec(),
            Some(names) => {
                let mut pages = Vec::new();
                for n in names {
                    let page = Page::from_name(n).ok_or_else(|| {
                        let all: Vec<&str> = Page::ALL.iter().map(|p| p.name()).collect();
                        fail(
                            "panel.pages",
                            format!("unknown page {n:?}; pages: {}", all.join(", ")),
                        )
                    })?;
                    pages.push(page);
                }
                if pages.is_empty() {
                    return Err(fail("panel.pages", "list at least one page".into()));
                }
                pages
            }
        };
        let duration = |key: &str, v: &Option<String>, default: &str, zero: bool| {
            let s = v.as_deref().unwrap_or(default);
            let d = humantime::parse_duration(s)
                .map_err(|e| fail(key, format!("{e} in {s:?} (examples: `10s`, `1m`)")))?;
            if d.is_zero() && zero {
                return Ok(None);
            }
            if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
                return Err(fail(key, format!("must be between 1s and 24h, got {s:?}")));
            }
            Ok(Some(d))
        };
        let page_every = duration("panel.page-every", &raw.page_every, "10s", false)?
            .unwrap_or(Duration::from_secs(10));
        let burn_in_shift = duration("panel.burn-in-shift", &raw.burn_in_shift, "1m", true)?;
        let temperature_unit = match raw.temperature_unit.as_deref().unwrap_or("C") {
            "C" | "c" => TemperatureUnit::Celsius,
            "F" | "f" => TemperatureUnit::Fahrenheit,
            other => {
                return Err(fail(
                    "panel.temperature-unit",
                    format!("must be \"C\" or \"F\", got {other:?}"),
                ))
            }
        };
        let rate_unit = match raw.rate_unit.as_deref().unwrap_or("bytes") {
            "bytes" => RateUnit::Bytes,
            "bits" => RateUnit::Bits,
            other => {
                return Err(fail(
                    "panel.rate-unit",
                    format!("must be \"bytes\" or \"bits\", got {other:?}"),
                ))
            }
        };
        if let Some(c) = raw.contrast {
            if !board.controller.is_oled() {
                return Err(fail(
                    "panel.contrast",
                    format!(
                        "only OLEDs have a contrast, and {} is a {:?}",
                        board.name, board.controller
                    ),
                ));
            }
            board.contrast = u8::try_from(c)
                .map_err(|_| fail("panel.contrast", format!("must be 0 to 255, got {c}")))?;
        }
        let percent = |key: &str, v: Option<[f64; 2]>, d: Limits<u16>| {
            let Some([warn, crit]) = v else { return Ok(d) };
            if !(0.0..=100.0).contains(&warn) || !(0.0..=100.0).contains(&crit) || warn > crit {
                return Err(fail(
                    key,
                    format!("[warn, crit] in percent, 0 to 100, warn ≤ crit; got [{warn}, {crit}]"),
                ));
            }
            Ok(Limits {
                warn: (warn * 100.0).round() as u16,
                crit: (crit * 100.0).round() as u16,
            })
        };
        let d = Thresholds::default();
        let temperature = match raw.temperature_limits {
            None => d.temperature,
            Some([warn, crit]) => {
                if !(-50.0..=150.0).contains(&warn)
                    || !(-50.0..=150.0).contains(&crit)
                    || warn > crit
                {
                    return Err(fail(
                        "panel.temperature-limits",
                        format!(
                            "[warn, crit] in °C, -50 to 150, warn ≤ crit; got [{warn}, {crit}]"
                        ),
                    ));
                }
                Limits {
                    warn: (warn * 1000.0).round() as i32,
                    crit: (crit * 1000.0).round() as i32,
                }
            }
        };
        let thresholds = Thresholds {
            cpu: percent("panel.cpu-limits", raw.cpu_limits, d.cpu)?,
            memory: percent("panel.memory-limits", raw.memory_limits, d.memory)?,
            disk: percent("panel.disk-limits", raw.disk_limits, d.disk)?,
            temperature,
        };
        Ok(Some(PanelConfig {
            board_source: source.to_string(),
            board,
            settings: Settings {
                temperature_unit,
                rate_unit,
                thresholds,
            },
            pages,
            page_every,
            burn_in_shift,
        }))
    }

    /// The effective `[panel]` table (for `--print-config`).
    pub fn to_raw(&self) -> PanelRaw {
        let s = &self.settings;
        let pct = |l: Limits<u16>| Some([f64::from(l.warn) / 100.0, f64::from(l.crit) / 100.0]);
        let t = s.thresholds.temperature;
        PanelRaw {
            pages: Some(self.pages.iter().map(|p| p.name().to_string()).collect()),
            page_every: Some(humantime::format_duration(self.page_every).to_string()),
            burn_in_shift: Some(
                self.burn_in_shift
                    .map(|d| humantime::format_duration(d).to_string())
                    .unwrap_or_else(|| "0s".into()),
            ),
            temperature_unit: Some(
                match s.temperature_unit {
                    TemperatureUnit::Celsius => "C",
                    TemperatureUnit::Fahrenheit => "F",
                }
                .into(),
            ),
            rate_unit: Some(
                match s.rate_unit {
                    RateUnit::Bytes => "bytes",
                    RateUnit::Bits => "bits",
                }
                .into(),
            ),
            contrast: self
                .board
                .controller
                .is_oled()
                .then_some(u16::from(self.board.contrast)),
            cpu_limits: pct(s.thresholds.cpu),
            memory_limits: pct(s.thresholds.memory),
            disk_limits: pct(s.thresholds.disk),
            temperature_limits: Some([f64::from(t.warn) / 1000.0, f64::from(t.crit) / 1000.0]),
        }
    }

    /// The page to show `elapsed` after start.
    pub fn page_at(&self, elapsed: Duration) -> Page {
        self.page_turned(elapsed, 0)
    }

    /// The page to show `elapsed` after start, `offset` pages on (negative: back).
    pub fn page_turned(&self, elapsed: Duration, offset: i64) -> Page {
        let n = (elapsed.as_millis() / self.page_every.as_millis().max(1)) as i64;
        let len = self.pages.len().max(1) as i64;
        self.pages[n.wrapping_add(offset).rem_euclid(len) as usize]
    }

    /// The burn-in offset `elapsed` after start: OLEDs only, cycling through (0,0), (1,0),
    /// (1,1), (0,1), one step per `burn_in_shift`.
    pub fn shift_at(&self, elapsed: Duration) -> (i32, i32) {
        match self.burn_in_shift {
            Some(every) if self.board.controller.is_oled() => {
                let step = (elapsed.as_millis() / every.as_millis().max(1)) % 4;
                [(0, 0), (1, 0), (1, 1), (0, 1)][step as usize]
            }
            _ => (0, 0),
        }
    }
}

/// Opens a board's device: [`linux::open`], or a recording device in tests.
pub type Opener = Box<dyn FnMut(&Board) -> Result<Box<dyn Device>, PanelError> + Send>;

#[derive(Default)]
struct Shared {
    sample: Option<Sample>,
    fresh: bool,
    ip: Option<[u8; 4]>,
    stop: bool,
    /// Pages moved by next/previous commands.
    page_offset: i64,
    /// Flash until then (identify).
    identify_until: Option<Instant>,
    /// Draw again now (a command changed what to show).
    poke: bool,
    /// The collector's alert banner.
    alert: Option<ember_display::model::Alert>,
    /// Brightness asked for by a command, not yet applied.
    brightness: Option<u8>,
    /// Every host's status as the broker's retained statuses say, for the fleet page, by name.
    fleet: heapless::Vec<ember_display::FleetHost, FLEET_MAX>,
}

/// Hosts the fleet page follows; further hosts are left out (the page shows at most a few
/// dozen anyway), so the agent's memory stays fixed however large the fleet.
pub const FLEET_MAX: usize = 64;

/// How long identify flashes the panel.
pub const IDENTIFY_FOR: Duration = Duration::from_secs(10);
/// Identify's flash period: the picture turns over this often.
const FLASH: Duration = Duration::from_millis(500);

/// Commands to the running panel, from the MQTT side; cheap to clone, never blocks.
#[derive(Clone)]
pub struct PanelControl {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Whether the panel has a brightness (an OLED's contrast).
    dimmable: bool,
}

impl PanelControl {
    fn poke(&self, f: impl FnOnce(&mut Shared)) {
        let (m, cv) = &*self.shared;
        let mut s = lock(m);
        f(&mut s);
        s.poke = true;
        cv.notify_one();
    }

    /// Shows the next page (`+1`) or the previous one (`-1`); rotation goes on from there.
    pub fn turn(&self, by: i64) {
        self.poke(|s| s.page_offset = s.page_offset.wrapping_add(by));
    }

    /// Sets the brightness, 0 to 255 (an OLED's contrast, kept across reconnects); refused,
    /// with the reason, by panels without one.
    pub fn set_brightness(&self, level: u8) -> Result<(), &'static str> {
        if !self.dimmable {
            return Err("this panel has no brightness control (OLEDs only)");
        }
        self.poke(|s| s.brightness = Some(level));
        Ok(())
    }

    /// Flashes the panel (inverting it twice a second) for [`IDENTIFY_FOR`].
    pub fn identify(&self) {
        self.poke(|s| s.identify_until = Some(Instant::now() + IDENTIFY_FOR));
    }

    /// A host's status, from its retained status topic, for the fleet page. Returns `false`
    /// when the host is new and the list is full ([`FLEET_MAX`]): it is left out.
    pub fn set_host_status(&self, host: &str, up: bool) -> bool {
        let mut kept = true;
        self.poke(
            |s| match s.fleet.binary_search_by(|h| h.name.as_str().cmp(host)) {
                Ok(i) => s.fleet[i].up = up,
                Err(i) => {
                    kept = s
                        .fleet
                        .insert(i, ember_display::FleetHost::new(host, up))
                        .is_ok()
                }
            },
        );
        kept
    }

    /// The collector's alerts about this host: the banner shows the most severe, `+N` the
    /// others; `firing == 0` takes it down.
    pub fn set_alerts(&self, alerts: &ember_wire::HostAlerts) {
        let banner = (alerts.firing > 0).then(|| {
            let mut text = ember_wire::heapless::String::<32>::new();
            let extra = alerts.firing.saturating_sub(1);
            let suffix = if extra > 0 {
                format!(" +{extra}")
            } else {
                String::new()
            };
            let room = 32usize.saturating_sub(suffix.len());
            for c in alerts.text.chars() {
                if text.len() + c.len_utf8() > room {
                    break;
                }
                let _ = text.push(c);
            }
            let _ = text.push_str(&suffix);
            ember_display::model::Alert { text }
        });
        self.poke(|s| s.alert = banner);
    }
}

/// The running panel; dropping it stops the thread.
pub struct PanelHandle {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    dimmable: bool,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PanelHandle {
    /// Hands the panel the newest sample; returns at once (a sample not yet drawn is replaced).
    pub fn update(&self, sample: &Sample) {
        let (m, cv) = &*self.shared;
        let mut s = lock(m);
        s.sample = Some(sample.clone());
        s.fresh = true;
        cv.notify_one();
    }

    /// The address shown on the overview.
    pub fn set_ip(&self, ip: Option<[u8; 4]>) {
        lock(&self.shared.0).ip = ip;
    }

    /// A handle for commands (page turns, identify).
    pub fn control(&self) -> PanelControl {
        PanelControl {
            shared: self.shared.clone(),
            dimmable: self.dimmable,
        }
    }
}

impl Drop for PanelHandle {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        lock(m).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Retry delays: 1 s, doubling, at most 1 min (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// The panel thread.
pub struct Panel;

impl Panel {
    /// Starts the panel for `host` on the board's Linux devices.
    pub fn start(config: &PanelConfig, host: &str) -> PanelHandle {
        Self::start_with(
            config,
            host,
            Box::new(|b: &Board| linux::open(b)),
            Backoff::default(),
        )
    }

    /// [`Panel::start`] with another way to open the device (tests) and other retry delays.
    pub fn start_with(
        config: &PanelConfig,
        host: &str,
        mut open: Opener,
        backoff: Backoff,
    ) -> PanelHandle {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let dimmable = config.board.controller.is_oled();
        let (config, host, inner) = (config.clone(), host.to_string(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("ember-panel".into())
            .spawn(move || {
                let started = Instant::now();
                let renderer = Renderer::new(&config.board, &config.settings);
                let mut histories = Histories::new();
                let mut device: Option<Box<dyn Device>> = None;
                let mut retry_at = Instant::now();
                let mut delay = backoff.min;
                let mut last_error: Option<String> = None;
                let mut sample: Option<Sample> = None;
                let mut last_page = None;
                let mut brightness: Option<u8> = None;
                loop {
                    let (ip, fresh, offset, flash, banner, asked, fleet) = {
                        let (m, cv) = &*inner;
                        let mut s = lock(m);
                        // Wake for a sample, a page change or a retry, whichever comes first.
                        let until_page = config.page_every
                            - Duration::from_millis(
                                (started.elapsed().as_millis() % config.page_every.as_millis())
                                    as u64,
                            );
                        let until_retry = retry_at.saturating_duration_since(Instant::now());
                        let mut wait = if device.is_none() {
                            until_page.min(until_retry)
                        } else {
                            until_page
                        };
                        if s.identify_until.is_some() {
                            wait = wait.min(FLASH);
                        }
                        if !s.fresh && !s.stop && !s.poke {
                            s = cv
                                .wait_timeout(s, wait.max(Duration::from_millis(10)))
                                .map(|(g, _)| g)
                                .unwrap_or_else(|e| e.into_inner().0);
                        }
                        if s.stop {
                            break;
                        }
                        let fresh = s.fresh.then(|| s.sample.take()).flatten();
                        s.fresh = false;
                        s.poke = false;
                        let now = Instant::now();
                        if s.identify_until.is_some_and(|t| now >= t) {
                            s.identify_until = None;
                        }
                        // Inverted every other half second while identifying.
                        let flash = s
                            .identify_until
                            .is_some_and(|t| ((t - now).as_millis() / FLASH.as_millis()) % 2 == 1);
                        (
                            s.ip,
                            fresh,
                            s.page_offset,
                            flash,
                            s.alert.clone(),
                            s.brightness.take(),
                            s.fleet.clone(),
                        )
                    };
                    if let Some(new) = fresh {
                        histories.record(&new);
                        sample = Some(new);
                    }
                    // Applied now if the device is there, and again whenever it is reopened.
                    let mut apply = asked.is_some();
                    if asked.is_some() {
                        brightness = asked;
                    }
                    if device.is_none() && Instant::now() >= retry_at {
                        match open(&config.board) {
                            Ok(d) => {
                                log::info!(
                                    "panel {} ready on {}",
                                    config.board.name,
                                    config.board.bus.device()
                                );
                                device = Some(d);
                                delay = backoff.min;
                                last_error = None;
                                apply = brightness.is_some();
                            }
                            Err(e) => {
                                let text = e.to_string();
                                if last_error.as_deref() != Some(text.as_str()) {
                                    log::warn!(
                                        "{text} (retrying every {}s at most)",
                                        backoff.max.as_secs()
                                    );
                                    last_error = Some(text);
                                }
                                retry_at = Instant::now() + delay;
                                delay = (delay * 2).min(backoff.max);
                            }
                        }
                    }
                    if let (true, Some(level), Some(d)) = (apply, brightness, device.as_mut()) {
                        if let Err(e) = d.set_brightness(level) {
                            log::warn!("{e}");
                        }
                    }
                    let (Some(d), Some(s)) = (device.as_mut(), sample.as_ref()) else {
                        continue;
                    };
                    let elapsed = started.elapsed();
                    let page = config.page_turned(elapsed, offset);
                    let _ = last_page.replace(page);
                    let model = ember_display::Model {
                        host: &host,
                        ipv4: ip,
                        sample: s,
                        history: &histories,
                        fleet: &fleet,
                    };
                    let mut frame = renderer.render_with_alert(
                        page,
                        &model,
                        config.shift_at(elapsed),
                        banner.as_ref(),
                    );
                    if flash {
                        frame.invert();
                    }
                    if let Err(e) = d.show(&frame) {
                        log::warn!("{e}");
                        last_error = Some(e.to_string());
                        device = None;
                        retry_at = Instant::now() + delay;
                        delay = (delay * 2).min(backoff.max);
                    }
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("cannot start the panel thread: {e}");
                None
            }
        };
        PanelHandle {
            shared,
            thread,
            dimmable,
        }
    }
}

#[cfg(test)]
mod tests;
