//! What a person configures about the screens: units and warning thresholds.
//!
//! A value at or above its `warn` limit is drawn as a warning (inverse on a monochrome panel,
//! amber on a colour one); at or above `crit` as critical (inverse or red), and the most
//! severe critical value also raises the alert banner (see [`crate::model::alert`]).

/// How temperatures are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemperatureUnit {
    /// Degrees Celsius.
    #[default]
    Celsius,
    /// Degrees Fahrenheit.
    Fahrenheit,
}

/// How network rates are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateUnit {
    /// Bytes per second in binary units (`1.2M/s`).
    #[default]
    Bytes,
    /// Bits per second in decimal units, as links are rated (`9.4Mb/s`).
    Bits,
}

/// How alarming a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Level {
    /// Nothing to see.
    #[default]
    Normal,
    /// At or above the warning limit.
    Warn,
    /// At or above the critical limit.
    Crit,
}

/// A warning and a critical limit, in the unit of the value they judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits<T> {
    /// From here on the value is a warning.
    pub warn: T,
    /// From here on the value is critical.
    pub crit: T,
}

impl<T: PartialOrd> Limits<T> {
    /// The level of `value`.
    pub fn level(&self, value: T) -> Level {
        if value >= self.crit {
            Level::Crit
        } else if value >= self.warn {
            Level::Warn
        } else {
            Level::Normal
        }
    }
}

/// Warning thresholds. Percentages in hundredths of a percent, temperatures in millidegrees
/// Celsius, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// CPU busy, all cores together (and each core on the CPU page).
    pub cpu: Limits<u16>,
    /// Memory in use.
    pub memory: Limits<u16>,
    /// Filesystem use.
    pub disk: Limits<u16>,
    /// Any temperature sensor.
    pub temperature: Limits<i32>,
}

impl Default for Thresholds {
    /// CPU 85/95 %, memory 80/90 %, disk 85/95 %, temperature 70/80 °C (a Raspberry Pi starts
    /// to throttle at 80 °C).
    fn default() -> Self {
        Thresholds {
            cpu: Limits {
                warn: 8_500,
                crit: 9_500,
            },
            memory: Limits {
                warn: 8_000,
                crit: 9_000,
            },
            disk: Limits {
                warn: 8_500,
                crit: 9_500,
            },
            temperature: Limits {
                warn: 70_000,
                crit: 80_000,
            },
        }
    }
}

/// Everything configurable about how the pages are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Celsius or Fahrenheit.
    pub temperature_unit: TemperatureUnit,
    /// Bytes or bits per second.
    pub rate_unit: RateUnit,
    /// When values turn into warnings and alerts.
    pub thresholds: Thresholds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_start_at_their_limits() {
        let l = Limits { warn: 10, crit: 20 };
        assert_eq!(l.level(9), Level::Normal);
        assert_eq!(l.level(10), Level::Warn);
        assert_eq!(l.level(19), Level::Warn);
        assert_eq!(l.level(20), Level::Crit);
        assert_eq!(l.level(i32::MAX), Level::Crit);
        assert!(Level::Crit > Level::Warn && Level::Warn > Level::Normal);
        let t = Thresholds::default().temperature;
        assert_eq!(t.level(79_999), Level::Warn);
        assert_eq!(t.level(i32::MIN), Level::Normal);
    }
}
