//! A value kept as its postcard bytes and decoded when read.
//!
//! The wire contract's types are `heapless`: a [`Sample`](ember_wire::Sample) is 2.6 KB and a
//! [`HostInfo`](ember_wire::HostInfo) 1.3 KB whatever they hold, where their postcard bytes are
//! a few hundred. The store keeps every host's newest sample and inventory this way (issue #9)
//! and decodes them when asked. Serialised (in snapshots, in JSON) as the value itself, so a
//! snapshot is the same bytes as when the value was kept decoded.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// Where a value is encoded before it is copied at its size.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes `dst` hold `src`, keeping its room while that fits `src` well (an eighth and 8 bytes
/// spare at most), else allocating it at `src`'s size: no allocation while a value keeps its
/// size, and no doubling's spare room.
pub(crate) fn refill(dst: &mut Vec<u8>, src: &[u8]) {
    let room = dst.capacity();
    if room < src.len() || room > src.len() + src.len() / 8 + 8 {
        *dst = src.into();
    } else {
        dst.clear();
        dst.extend_from_slice(src);
    }
}

/// `T` as its postcard bytes.
pub struct Packed<T> {
    bytes: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Packed<T> {
    /// `value`, encoded.
    pub fn new(value: &T) -> Self {
        let mut p = Packed {
            bytes: Vec::new(),
            _t: PhantomData,
        };
        p.set(value);
        p
    }

    /// Replaces the value, reusing the bytes' room where it fits (see [`refill`]).
    pub fn set(&mut self, value: &T) {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            // Serialising a wire type into a vector cannot fail (a `heapless` string is UTF-8,
            // no map has a key that is not a string); were it ever to, nothing would be kept.
            let bytes = postcard::to_extend(value, std::mem::take(buf)).unwrap_or_default();
            refill(&mut self.bytes, &bytes);
            *buf = bytes;
        });
    }

    /// Replaces the value with one given as its postcard bytes, as they came: the caller has
    /// decoded them as a `T` (so they decode again, as `get` expects).
    pub fn set_encoded(&mut self, bytes: &[u8]) {
        refill(&mut self.bytes, bytes);
    }

    /// The value. `None` only if the bytes do not decode, which bytes this type wrote always do.
    pub fn get(&self) -> Option<T> {
        postcard::from_bytes(&self.bytes).ok()
    }

    /// Whether the value is the one these bytes hold (compared encoded).
    pub fn holds(&self, value: &T) -> bool {
        postcard::to_allocvec(value).is_ok_and(|b| b == self.bytes)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

impl<T> Clone for Packed<T> {
    fn clone(&self) -> Self {
        Packed {
            bytes: self.bytes.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} B)", self.bytes.len())
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for Packed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.get() {
            Some(v) => v.serialize(s),
            None => Err(serde::ser::Error::custom("packed bytes that do not decode")),
        }
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Packed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Packed::new(&T::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{HostInfo, Sample};

    fn sample(seq: u64, cores: usize) -> Sample {
        let mut s = Sample {
            seq,
            timestamp_ms: seq.wrapping_mul(1000),
            ..Sample::default()
        };
        for c in 0..cores {
            s.cpu
                .cores
                .push((seq as u16).wrapping_mul(c as u16))
                .unwrap();
        }
        s.networks
            .push(ember_wire::NetIo {
                interface: "wlan0".into(),
                rx_bps: seq.wrapping_shl(20),
                ..Default::default()
            })
            .unwrap();
        s
    }

    /// What goes in comes out, through `set` with values longer and shorter than the room
    /// held, and a sample takes its postcard size, not its 2.6 KB.
    #[test]
    fn keeps_values_as_their_bytes() {
        let mut p = Packed::new(&sample(1, 0));
        for (seq, cores) in [(2, 8), (3, 1), (u64::MAX, 16), (4, 0), (5, 4)] {
            let s = sample(seq, cores);
            p.set(&s);
            assert_eq!(p.get(), Some(s.clone()));
            assert!(p.holds(&s));
            assert!(!p.holds(&sample(seq ^ 1, cores)));
            let len = postcard::to_allocvec(&s).unwrap().len();
            assert!(
                p.heap_bytes() <= len + len / 8 + 8,
                "{} for {len}",
                p.heap_bytes()
            );
        }
        assert!(p.heap_bytes() < 200);
        assert_eq!(
            Packed::new(&HostInfo::default()).get(),
            Some(HostInfo::default())
        );
    }

    /// Serialised as the value itself (the snapshot format of the value kept decoded), in
    /// postcard and in JSON, and read back from it.
    #[test]
    fn serialises_as_the_value() {
        let s = sample(7, 3);
        let p = Packed::new(&s);
        let bytes = postcard::to_allocvec(&Some(&p)).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&Some(&s)).unwrap());
        let back: Option<Packed<Sample>> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.unwrap().get(), Some(s.clone()));
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::to_value(&s).unwrap()
        );
        // Bytes that are not a sample are refused, not kept.
        assert!(postcard::from_bytes::<Packed<Sample>>(&[0xff; 3]).is_err());
    }
}
