//! Recording buses: every byte a driver sends, in order, with the state of its pins.
//!
//! The recorders are handles to one shared log (`Clone` gives another handle), so a test can
//! give one to a driver, which owns it, and read the log through another.

use std::sync::{Arc, Mutex, MutexGuard};

use embedded_hal::digital::{self, OutputPin};
use embedded_hal::i2c::{self, I2c, NoAcknowledgeSource, Operation as I2cOperation};
use embedded_hal::spi::{self, Operation as SpiOperation, SpiDevice};

/// One I2C write transaction: the 7-bit address and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I2cWrite {
    /// The device address.
    pub address: u8,
    /// The bytes written.
    pub bytes: Vec<u8>,
}

/// Totals of a recording, for benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusStats {
    /// Transactions (I2C: START … STOP; SPI: chip-select low … high).
    pub transactions: usize,
    /// Bytes written after the address (I2C) or clocked out (SPI).
    pub bytes: usize,
}

impl BusStats {
    /// Bytes on the wire: on I2C one address byte more per transaction.
    pub fn i2c_wire_bytes(&self) -> usize {
        self.bytes + self.transactions
    }

    /// How long the I2C transfers take at `hz`: nine clocks per byte (eight bits and the
    /// acknowledge) and about two for each START and STOP.
    pub fn i2c_micros(&self, hz: u32) -> f64 {
        let clocks = self.i2c_wire_bytes() as f64 * 9.0 + self.transactions as f64 * 2.0;
        clocks * 1e6 / f64::from(hz.max(1))
    }

    /// How long the SPI transfers take at `hz`: eight clocks per byte.
    pub fn spi_micros(&self, hz: u32) -> f64 {
        self.bytes as f64 * 8.0 * 1e6 / f64::from(hz.max(1))
    }
}

/// A fault a recording bus was told to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No device acknowledged the address (I2C), as when nothing is connected.
    NoAcknowledge,
    /// Any other bus failure.
    Other,
}

impl i2c::Error for Fault {
    fn kind(&self) -> i2c::ErrorKind {
        match self {
            Fault::NoAcknowledge => i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            Fault::Other => i2c::ErrorKind::Other,
        }
    }
}

impl spi::Error for Fault {
    fn kind(&self) -> spi::ErrorKind {
        spi::ErrorKind::Other
    }
}

impl digital::Error for Fault {
    fn kind(&self) -> digital::ErrorKind {
        digital::ErrorKind::Other
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Fault::NoAcknowledge => "no acknowledge",
            Fault::Other => "bus fault",
        })
    }
}

impl std::error::Error for Fault {}

#[derive(Debug, Default)]
struct I2cLog {
    writes: Vec<I2cWrite>,
    /// Addresses that acknowledge; others get [`Fault::NoAcknowledge`].
    present: Vec<u8>,
    /// Transactions left before every later one fails; `None` never fails.
    fail_after: Option<usize>,
}

/// An I2C bus that records every write and acknowledges only the addresses it was given.
#[derive(Debug, Clone, Default)]
pub struct RecordingI2c {
    log: Arc<Mutex<I2cLog>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; keep the log readable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RecordingI2c {
    /// A bus with devices at `addresses`.
    pub fn new(addresses: &[u8]) -> Self {
        let log = I2cLog {
            present: addresses.to_vec(),
            ..I2cLog::default()
        };
        RecordingI2c {
            log: Arc::new(Mutex::new(log)),
        }
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<I2cWrite> {
        lock(&self.log).writes.clone()
    }

    /// Takes the writes so far, leaving the log empty.
    pub fn take(&self) -> Vec<I2cWrite> {
        std::mem::take(&mut lock(&self.log).writes)
    }

    /// Totals of the writes so far.
    pub fn stats(&self) -> BusStats {
        let log = lock(&self.log);
        BusStats {
            transactions: log.writes.len(),
            bytes: log.writes.iter().map(|w| w.bytes.len()).sum(),
        }
    }

    /// After `n` more transactions, every transaction fails with [`Fault::Other`] (a cable
    /// pulled out); `None` heals the bus.
    pub fn fail_after(&self, n: Option<usize>) {
        lock(&self.log).fail_after = n;
    }

    /// Connects or disconnects the device at `address`.
    pub fn set_present(&self, address: u8, present: bool) {
        let mut log = lock(&self.log);
        log.present.retain(|&a| a != address);
        if present {
            log.present.push(address);
        }
    }
}

impl i2c::ErrorType for RecordingI2c {
    type Error = Fault;
}

impl I2c for RecordingI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [I2cOperation<'_>],
    ) -> Result<(), Self::Error> {
        let mut log = lock(&self.log);
        match log.fail_after {
            Some(0) => return Err(Fault::Other),
            Some(n) => log.fail_after = Some(n - 1),
            None => {}
        }
        if !log.present.contains(&address) {
            return Err(Fault::NoAcknowledge);
        }
        let mut bytes = Vec::new();
        for op in operations.iter_mut() {
            match op {
                I2cOperation::Write(data) => bytes.extend_from_slice(data),
                // Ember's panels are write-only; a read is a driver bug.
                I2cOperation::Read(_) => return Err(Fault::Other),
            }
        }
        log.writes.push(I2cWrite { address, bytes });
        Ok(())
    }
}

/// One event on an SPI device and its pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiEvent {
    /// Bytes clocked out in one transaction (chip select held low throughout).
    Write(Vec<u8>),
    /// A pin set high or low, by name.
    Pin(&'static str, bool),
    /// A delay inside a transaction, in nanoseconds.
    Delay(u32),
}

#[derive(Debug, Default)]
struct SpiLog {
    events: Vec<SpiEvent>,
    fail: bool,
}

/// An SPI device that records what it clocks out; [`RecordingSpi::pin`] gives pins that record
/// into the same log, so the D/C level of every byte is known.
#[derive(Debug, Clone, Default)]
pub struct RecordingSpi {
    log: Arc<Mutex<SpiLog>>,
}

/// An output pin recording into an SPI log.
#[derive(Debug, Clone)]
pub struct RecordingPin {
    log: Arc<Mutex<SpiLog>>,
    name: &'static str,
}

impl RecordingSpi {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pin called `name` (`"dc"`, `"rst"`, `"bl"`) recording into this log.
    pub fn pin(&self, name: &'static str) -> RecordingPin {
        RecordingPin {
            log: self.log.clone(),
            name,
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<SpiEvent> {
        lock(&self.log).events.clone()
    }

    /// Takes the events so far.
    pub fn take(&self) -> Vec<SpiEvent> {
        std::mem::take(&mut lock(&self.log).events)
    }

    /// Totals of the writes so far.
    pub fn stats(&self) -> BusStats {
        let log = lock(&self.log);
        let writes = log.events.iter().filter_map(|e| match e {
            SpiEvent::Write(b) => Some(b.len()),
            _ => None,
        });
        let (transactions, bytes) = writes.fold((0, 0), |(t, b), n| (t + 1, b + n));
        BusStats {
            transactions,
            bytes,
        }
    }

    /// Makes every later transaction fail (or work again).
    pub fn set_failing(&self, fail: bool) {
        lock(&self.log).fail = fail;
    }
}

impl spi::ErrorType for RecordingSpi {
    type Error = Fault;
}

impl SpiDevice for RecordingSpi {
    fn transaction(&mut self, operations: &mut [SpiOperation<'_, u8>]) -> Result<(), Self::Error> {
        let mut log = lock(&self.log);
        if log.fail {
            return Err(Fault::Other);
        }
        let mut bytes = Vec::new();
        for op in operations.iter_mut() {
            match op {
                SpiOperation::Write(data) => bytes.extend_from_slice(data),
                SpiOperation::Transfer(read, write) => {
                    bytes.extend_from_slice(write);
                    read.fill(0);
                }
                SpiOperation::TransferInPlace(data) => {
                    bytes.extend_from_slice(data);
                    data.fill(0);
                }
                SpiOperation::Read(data) => data.fill(0),
                SpiOperation::DelayNs(ns) => {
                    if !bytes.is_empty() {
                        log.events.push(SpiEvent::Write(std::mem::take(&mut bytes)));
                    }
                    log.events.push(SpiEvent::Delay(*ns));
                }
            }
        }
        if !bytes.is_empty() {
            log.events.push(SpiEvent::Write(bytes));
        }
        Ok(())
    }
}

impl digital::ErrorType for RecordingPin {
    type Error = Fault;
}

impl OutputPin for RecordingPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        lock(&self.log).events.push(SpiEvent::Pin(self.name, false));
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        lock(&self.log).events.push(SpiEvent::Pin(self.name, true));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i2c_records_writes_and_refuses_absent_devices() {
        let mut bus = RecordingI2c::new(&[0x3c]);
        let reader = bus.clone();
        bus.write(0x3c, &[0x00, 0xaf]).unwrap();
        bus.transaction(
            0x3c,
            &mut [I2cOperation::Write(&[1]), I2cOperation::Write(&[2])],
        )
        .unwrap();
        assert_eq!(bus.write(0x27, &[1]), Err(Fault::NoAcknowledge));
        assert_eq!(
            reader.writes(),
            [
                I2cWrite {
                    address: 0x3c,
                    bytes: vec![0x00, 0xaf]
                },
                I2cWrite {
                    address: 0x3c,
                    bytes: vec![1, 2]
                }
            ]
        );
        let stats = reader.stats();
        assert_eq!(
            (stats.transactions, stats.bytes, stats.i2c_wire_bytes()),
            (2, 4, 6)
        );
        assert_eq!(stats.i2c_micros(100_000), (6.0 * 9.0 + 4.0) * 10.0);
        assert_eq!(bus.read(0x3c, &mut [0]), Err(Fault::Other));
        reader.fail_after(Some(1));
        bus.write(0x3c, &[3]).unwrap();
        assert_eq!(bus.write(0x3c, &[4]), Err(Fault::Other));
        reader.fail_after(None);
        reader.set_present(0x3c, false);
        assert_eq!(bus.write(0x3c, &[4]), Err(Fault::NoAcknowledge));
        assert_eq!(reader.take().len(), 3);
        assert!(reader.writes().is_empty());
    }

    #[test]
    fn spi_records_bytes_with_pin_levels_in_order() {
        let mut spi = RecordingSpi::new();
        let mut dc = spi.pin("dc");
        dc.set_low().unwrap();
        spi.write(&[0xaf]).unwrap();
        dc.set_high().unwrap();
        spi.transaction(&mut [SpiOperation::Write(&[1, 2]), SpiOperation::DelayNs(5)])
            .unwrap();
        assert_eq!(
            spi.events(),
            [
                SpiEvent::Pin("dc", false),
                SpiEvent::Write(vec![0xaf]),
                SpiEvent::Pin("dc", true),
                SpiEvent::Write(vec![1, 2]),
                SpiEvent::Delay(5),
            ]
        );
        assert_eq!(spi.stats().bytes, 3);
        spi.set_failing(true);
        assert_eq!(spi.write(&[1]), Err(Fault::Other));
    }
}
