//! A compact fixed-capacity ring of records, the storage under every history tier.
//!
//! A record is a list of [`Tok`]ens (integers and strings, from [`crate::codec`]). Records are
//! packed into blocks of [`BLOCK`] records; the first record of a block is written in full and
//! every later one as the difference from the record before it, token by token: an integer as the
//! zigzag varint of its change, a string by its bytes only when it changed, and a run of unchanged
//! tokens as one byte. Consecutive samples of a host differ little, so a sample takes a fraction
//! of its postcard size. The oldest whole block is dropped when
//! the ring holds more than its capacity, so a ring holds between `capacity` and
//! `capacity + BLOCK - 1` records once full.
//!
//! A full block never changes again: it is kept behind an `Arc`, or spilled to disk
//! ([`crate::spill`]) with only its handle in memory; the open block's bytes are the ring's own.
//!
//! Bad bytes (from a damaged snapshot) are never a panic: decoding stops at the first record that
//! does not make sense.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spill::{Spill, Spilled};

/// Records per block. Full blocks leave memory (see [`crate::spill`]), so the open one is what a
/// ring holds: 32 records (a raw sample's block is about 2.3 KB) where 64 held twice that, for
/// a handle of 40 bytes more per 32 records on disk (issue #9).
pub const BLOCK: u32 = 32;
/// Most tokens in one record (a sample has a few hundred at most).
const MAX_TOKENS: u64 = 8192;
/// Longest string token.
const MAX_STR: u64 = 4096;
/// Least an open block grows by, in bytes.
const MIN_STEP: usize = 128;

thread_local! {
    /// Where a record is encoded before it is copied into its block at its size.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One value of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tok {
    /// An integer; signed values are stored as their two's complement.
    Int(u64),
    /// A string.
    Str(String),
}

/// Where a block's encoded records are.
#[derive(Debug, Clone)]
enum Bytes {
    /// The open (newest, not yet full) block's: in [`Ring::open`].
    Open,
    /// A full block's, in memory: no spill, or writing to it failed.
    Sealed(Arc<[u8]>),
    /// A full block's, in a spill segment.
    Out(Spilled),
}

/// A block of up to [`BLOCK`] records, held inline: 40 bytes where an `Arc`'d block with its
/// bytes' vector took 88 (issue #9: at an hour of samples a host holds over a hundred).
#[derive(Debug, Clone)]
struct Block {
    min_ts: u64,
    /// `max_ts - min_ts`. A record whose time would make it larger than `u32::MAX` ms (49
    /// days: only a clock that jumped) starts a block of its own.
    span: u32,
    count: u32,
    bytes: Bytes,
}

impl Block {
    fn max_ts(&self) -> u64 {
        self.min_ts + u64::from(self.span)
    }

    /// Whether a record taken at `ts` keeps the span within `u32`.
    fn fits(&self, ts: u64) -> bool {
        let lo = self.min_ts.min(ts);
        let hi = self.max_ts().max(ts);
        hi - lo <= u64::from(u32::MAX)
    }

    fn add(&mut self, ts: u64) {
        let lo = self.min_ts.min(ts);
        let hi = self.max_ts().max(ts);
        self.min_ts = lo;
        self.span = u32::try_from(hi - lo).unwrap_or(u32::MAX);
        self.count += 1;
    }

    /// Bytes of encoded records (the open block's are in the ring: `open_len`).
    fn len(&self, open_len: usize) -> usize {
        match &self.bytes {
            Bytes::Open => open_len,
            Bytes::Sealed(b) => b.len(),
            Bytes::Out(s) => s.len(),
        }
    }
}

/// A block as snapshots hold it (the format of the `Arc<Block>` it was, byte for byte).
#[derive(Deserialize)]
struct StoredBlock {
    min_ts: u64,
    max_ts: u64,
    count: u32,
    /// Written as bytes, which in postcard is the very format a sequence of `u8` has, a copy
    /// where the sequence was a call per byte (a snapshot is mostly these).
    #[serde(with = "as_bytes")]
    bytes: Vec<u8>,
}

/// A ring as snapshots hold it.
#[derive(Deserialize)]
struct StoredRing {
    blocks: Vec<StoredBlock>,
    capacity: usize,
    len: usize,
    #[serde(deserialize_with = "as_tokens::deserialize")]
    last: Vec<u8>,
}

/// Serde bytes, read as a `Vec<u8>`.
mod as_bytes {
    use serde::de::{Deserializer, Error, Visitor};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// A ring of delta-encoded records.
///
/// A clone is cheap: full blocks are shared (behind an `Arc`, or in a spill segment), and a full
/// block never changes again; only the open block's bytes are copied. This is what lets a
/// snapshot take the store as it is in a moment and write it from another thread while ingest
/// goes on (see `Store::image`): a host ingest changes meanwhile is cloned once.
///
/// Stored (in snapshots) as its blocks, capacity, length and newest record's tokens, whichever
/// way they are kept in memory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "StoredRing")]
pub struct Ring {
    blocks: VecDeque<Block>,
    /// The open block's encoded records.
    open: Vec<u8>,
    capacity: usize,
    len: usize,
    /// The newest record, which the next one is encoded against, written in full (as a block's
    /// first record is) and read in place: a few hundred bytes where its tokens took kilobytes
    /// (issue #9). In a lean ring, written as its difference from the newest block's first
    /// record instead: a few bytes.
    last: Vec<u8>,
    /// See [`Ring::set_lean`].
    lean: bool,
    /// Records the first block takes, if not [`BLOCK`] (see [`Ring::stagger`]); 0 once it is
    /// sealed. Not stored: a ring read back goes on with blocks of [`BLOCK`].
    first_block: u32,
}

impl From<StoredRing> for Ring {
    fn from(s: StoredRing) -> Ring {
        let n = s.blocks.len();
        let mut ring = Ring {
            blocks: VecDeque::with_capacity(n),
            open: Vec::new(),
            capacity: s.capacity.max(1),
            len: s.len,
            last: s.last,
            lean: false,
            first_block: 0,
        };
        for (i, b) in s.blocks.into_iter().enumerate() {
            let bytes = if i + 1 == n && b.count < BLOCK {
                ring.open = b.bytes;
                Bytes::Open
            } else {
                Bytes::Sealed(b.bytes.into())
            };
            ring.blocks.push_back(Block {
                min_ts: b.min_ts,
                // (Only a damaged snapshot holds a block wider: its newest times are missed.)
                span: u32::try_from(b.max_ts.saturating_sub(b.min_ts)).unwrap_or(u32::MAX),
                count: b.count,
                bytes,
            });
        }
        ring
    }
}

impl Serialize for Ring {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq, SerializeStruct};

        /// Bytes serialised as serde bytes.
        struct Raw<'a>(&'a [u8]);
        impl Serialize for Raw<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        /// A block as [`StoredBlock`] (its bytes read back from the spill if they were spilled).
        struct One<'a>(&'a Ring, &'a Block);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let One(ring, b) = self;
                let mut buf = Vec::new();
                let bytes = ring
                    .bytes_of(b, &mut buf)
                    .map_err(|e| S::Error::custom(format!("a spilled history block: {e}")))?;
                let mut st = s.serialize_struct("Block", 4)?;
                st.serialize_field("min_ts", &b.min_ts)?;
                st.serialize_field("max_ts", &b.max_ts())?;
                st.serialize_field("count", &b.count)?;
                st.serialize_field("bytes", &Raw(bytes))?;
                st.end()
            }
        }
        struct All<'a>(&'a Ring);
        impl Serialize for All<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.blocks.len()))?;
                for b in &self.0.blocks {
                    seq.serialize_element(&One(self.0, b))?;
                }
                seq.end()
            }
        }

        let mut st = s.serialize_struct("Ring", 4)?;
        st.serialize_field("blocks", &All(self))?;
        st.serialize_field("capacity", &self.capacity)?;
        st.serialize_field("len", &self.len)?;
        if self.lean {
            let last = if self.is_empty() {
                Vec::new()
            } else {
                self.newest()
                    .ok_or_else(|| S::Error::custom("a ring's newest record does not decode"))?
            };
            st.serialize_field("last", &last)?;
        } else {
            st.serialize_field("last", &as_tokens::Tokens(&self.last))?;
        }
        st.end()
    }
}

/// [`Ring::last`] as the list of tokens it was before it was kept encoded.
mod as_tokens {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{encode_record, Full, Tok, TokRef};

    /// A record written in full, serialised as its tokens.
    pub struct Tokens<'a>(pub &'a [u8]);

    impl Serialize for Tokens<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            // Every token, whatever its size (decode_record's limits are for untrusted bytes).
            let toks: Vec<Tok> = Full::new(self.0)
                .map(|t| match t {
                    TokRef::Int(v) => Tok::Int(v),
                    TokRef::Str(b) => Tok::Str(String::from_utf8_lossy(b).into_owned()),
                })
                .collect();
            toks.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let toks = Vec::<Tok>::deserialize(d)?;
        let mut last = Vec::new();
        encode_record(&[], &toks, &mut last);
        Ok(last)
    }
}

impl Ring {
    /// An empty ring keeping at least `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Ring {
            capacity: capacity.max(1),
            ..Ring::default()
        }
    }

    /// Makes this (empty) ring's first block take `1 + k % BLOCK` records, the blocks after
    /// it [`BLOCK`] as always. A fleet that starts together (a collector started with its
    /// agents, the load bench) fills every host's block in step, so all of them were full at
    /// once and sealed (and spilled) in the same second: 10,000 hosts' open blocks swung
    /// between empty and 23 MB every 32 samples, and the collector's peak RSS with them (issue
    /// #9). With `k` from the host's id the blocks fill out of step and hold half of that on
    /// average at any time. Nothing once the ring holds a record.
    pub fn stagger(&mut self, k: u64) {
        if self.is_empty() {
            self.first_block = 1 + (k % BLOCK as u64) as u32;
        }
    }

    /// Each block's record count, oldest first.
    #[cfg(test)]
    pub(crate) fn block_counts(&self) -> Vec<u32> {
        self.blocks.iter().map(|b| b.count).collect()
    }

    /// Records the open block takes before it is sealed.
    fn block_limit(&self) -> u32 {
        if self.first_block > 0 {
            self.first_block
        } else {
            BLOCK
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity asked for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity (after a configuration change); drops the oldest blocks if needed.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.evict();
    }

    /// Memory held, in bytes (blocks, encoded data in memory and the newest record).
    pub fn bytes(&self) -> usize {
        let sealed: usize = self
            .blocks
            .iter()
            .map(|b| match &b.bytes {
                Bytes::Sealed(bytes) => bytes.len() + 2 * std::mem::size_of::<usize>(),
                Bytes::Open | Bytes::Out(_) => 0,
            })
            .sum();
        self.blocks.capacity() * std::mem::size_of::<Block>()
            + sealed
            + self.open.capacity()
            + self.last.capacity()
    }

    /// Bytes of encoded records spilled out of memory.
    pub fn spilled_bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| match &b.bytes {
                Bytes::Out(s) => s.len(),
                Bytes::Open | Bytes::Sealed(_) => 0,
            })
            .sum()
    }

    /// Bytes of encoded records, in memory or spilled.
    pub fn encoded_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.len(self.open.len())).sum()
    }

    /// A block's bytes: borrowed, or read back from the spill into `buf`.
    fn bytes_of<'a>(&'a self, b: &'a Block, buf: &'a mut Vec<u8>) -> std::io::Result<&'a [u8]> {
        match &b.bytes {
            Bytes::Open => Ok(&self.open),
            Bytes::Sealed(bytes) => Ok(bytes),
            Bytes::Out(s) => {
                s.read(buf)?;
                Ok(buf)
            }
        }
    }

    /// Moves full blocks still in memory to `spill`'s `class`, newest first, up to the first
    /// one already out (so, once caught up, it looks at one or two blocks). A block that cannot
    /// be written stays in memory; the error is returned.
    pub fn spill(&mut self, spill: &Spill, class: usize) -> std::io::Result<()> {
        for b in self.blocks.iter_mut().rev() {
            match &b.bytes {
                Bytes::Out(_) => break,
                Bytes::Open => continue,
                Bytes::Sealed(bytes) => {
                    let out = spill.put(class, bytes)?;
                    // (A snapshot's clone keeps its own handle on the bytes.)
                    b.bytes = Bytes::Out(out);
                }
            }
        }
        Ok(())
    }

    /// Whether a block is in a sparse segment (see [`crate::spill`]).
    pub fn should_move(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(&b.bytes, Bytes::Out(s) if s.should_move()))
    }

    /// Moves the blocks in sparse segments to `spill`'s open segment for `class`; returns how
    /// many moved.
    pub fn move_sparse(&mut self, spill: &Spill, class: usize) -> std::io::Result<u64> {
        let mut buf = Vec::new();
        let mut moved = 0;
        for b in &mut self.blocks {
            if let Bytes::Out(s) = &b.bytes {
                if s.should_move() {
                    s.read(&mut buf)?;
                    b.bytes = Bytes::Out(spill.put(class, &buf)?);
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// The newest record.
    pub fn last(&self) -> Option<Vec<Tok>> {
        if self.is_empty() {
            return None;
        }
        self.newest()
    }

    /// Keeps the newest record as its difference from the newest block's first record, not in
    /// full: for rings written to rarely (a tier's, once a bucket), whose records are large (a
    /// tier's hold every series' key), a few bytes where the record is 600 or so (issue #9).
    /// Each record pushed then decodes the block's first record and the newest one.
    pub fn set_lean(&mut self) {
        if self.lean {
            return;
        }
        if self.is_empty() {
            self.last.clear();
            self.lean = true;
            return;
        }
        let (Some(newest), Some(first)) = (self.newest(), self.first_of_newest()) else {
            // Damaged: left as it is.
            return;
        };
        let mut last = Vec::new();
        encode_record(&first, &newest, &mut last);
        crate::packed::refill(&mut self.last, &last);
        self.lean = true;
    }

    /// The newest block's first record (written in full).
    fn first_of_newest(&self) -> Option<Vec<Tok>> {
        let b = self.blocks.back()?;
        let mut buf = Vec::new();
        decode_record(&[], self.bytes_of(b, &mut buf).ok()?, &mut 0)
    }

    /// The newest record's tokens, however it is kept.
    fn newest(&self) -> Option<Vec<Tok>> {
        if self.lean {
            decode_record(&self.first_of_newest()?, &self.last, &mut 0)
        } else {
            decode_record(&[], &self.last, &mut 0)
        }
    }

    /// Seals the open block: its bytes behind an `Arc` at their size.
    fn seal(&mut self) {
        if let Some(b) = self.blocks.back_mut() {
            if matches!(b.bytes, Bytes::Open) {
                self.first_block = 0;
                b.bytes = Bytes::Sealed(std::mem::take(&mut self.open).into());
            }
        }
    }

    /// Appends a record taken at `ts` (any monotonic-ish time; used to find records by range).
    /// The ring keeps no reference to `record`: a caller can refill it without allocating.
    pub fn push(&mut self, ts: u64, record: &[Tok]) {
        let limit = self.block_limit();
        let mut new_block = self
            .blocks
            .back()
            .is_none_or(|b| !matches!(b.bytes, Bytes::Open) || b.count >= limit || !b.fits(ts));
        // A lean ring's newest record and its block's first, which the newest is kept against.
        // (The first decoded once: `newest` would decode it again.)
        let mut lean_prev = None;
        if self.lean && !new_block {
            let first = self.first_of_newest();
            let newest = first
                .as_ref()
                .and_then(|f| decode_record(f, &self.last, &mut 0));
            match (first, newest) {
                (Some(first), Some(newest)) => lean_prev = Some((first, newest)),
                // Damaged: the record starts a block of its own.
                _ => new_block = true,
            }
        }
        if new_block {
            self.seal();
            if self.blocks.len() == self.blocks.capacity() {
                // By a quarter, not doubling: a full ring's block count is steady.
                self.blocks.reserve_exact((self.blocks.len() / 4).max(2));
            }
            self.blocks.push_back(Block {
                min_ts: ts,
                span: 0,
                count: 0,
                bytes: Bytes::Open,
            });
            self.open = Vec::new();
        }
        // The open block grows by an eighth of what the block before it took (at least
        // `MIN_STEP`), not by doubling, which left it up to half empty, nor all at once at
        // its expected size, which left it half empty on average until it was full (issue #9).
        let n = self.blocks.len();
        let step = match n.checked_sub(2) {
            Some(i) => (self.blocks[i].len(0) / 8).max(MIN_STEP),
            None => MIN_STEP,
        };
        let prev = if new_block { &[][..] } else { &self.last[..] };
        let open = &mut self.open;
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            match &lean_prev {
                Some((_, newest)) => encode_record(newest, record, buf),
                None => encode_against(Full::new(prev), record, buf),
            }
            if open.capacity() - open.len() < buf.len() {
                open.reserve_exact(buf.len().max(step));
            }
            open.extend_from_slice(buf);
        });
        // The newest record at its own size: in full, or (lean) against its block's first.
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            match (&lean_prev, self.lean) {
                (Some((first, _)), _) => encode_record(first, record, buf),
                (None, true) => encode_record(record, record, buf),
                (None, false) => encode_record(&[], record, buf),
            }
            crate::packed::refill(&mut self.last, buf);
        });
        let back = self.blocks.back_mut().expect("a block was just ensured");
        back.add(ts);
        if back.count >= limit {
            // Full: it never changes again.
            self.seal();
        }
        self.len += 1;
        self.evict();
    }

    fn evict(&mut self) {
        while let Some(front) = self.blocks.front() {
            if self.blocks.len() > 1 && self.len - front.count as usize >= self.capacity {
                self.len -= front.count as usize;
                self.blocks.pop_front();
            } else {
                break;
            }
        }
    }

    /// Every record of the blocks that may hold times in `from..=to`, oldest first. The caller
    /// filters by the record's own time.
    pub fn range(&self, from: u64, to: u64) -> Vec<Vec<Tok>> {
        let mut out = Vec::new();
        for b in &self.blocks {
            if b.max_ts() >= from && b.min_ts <= to {
                self.decode_block(b, &mut out);
            }
        }
        out
    }

    /// Blocks from the newest back, each decoded oldest first; stops when `f` returns false.
    pub fn newest_blocks(&self, mut f: impl FnMut(Vec<Vec<Tok>>) -> bool) {
        for b in self.blocks.iter().rev() {
            let mut records = Vec::with_capacity(b.count as usize);
            self.decode_block(b, &mut records);
            if !f(records) {
                return;
            }
        }
    }

    /// Time of the oldest block's first record.
    pub fn oldest_ts(&self) -> Option<u64> {
        self.blocks.front().map(|b| b.min_ts)
    }

    /// Decodes a block's records into `out`. A spilled block that cannot be read back gives
    /// none (the spill counts and reports the failure).
    fn decode_block(&self, b: &Block, out: &mut Vec<Vec<Tok>>) {
        let mut buf = Vec::new();
        if let Ok(bytes) = self.bytes_of(b, &mut buf) {
            decode_records(bytes, b.count, out);
        }
    }
}

/// Decodes up to `count` records from a block's bytes into `out`, stopping at the first that
/// does not make sense.
fn decode_records(bytes: &[u8], count: u32, out: &mut Vec<Vec<Tok>>) {
    let mut at = 0;
    let mut prev: Vec<Tok> = Vec::new();
    for _ in 0..count {
        match decode_record(&prev, bytes, &mut at) {
            Some(r) => {
                out.push(r.clone());
                prev = r;
            }
            None => return,
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u128> {
    let mut v: u128 = 0;
    for shift in (0..133).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u128::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A token borrowed: from a [`Tok`], or read in place from a record written in full (a string
/// as its bytes: it is only compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokRef<'a> {
    Int(u64),
    Str(&'a [u8]),
}

impl Tok {
    fn as_ref(&self) -> TokRef<'_> {
        match self {
            Tok::Int(v) => TokRef::Int(*v),
            Tok::Str(s) => TokRef::Str(s.as_bytes()),
        }
    }
}

/// The tokens of a record written in full (against no previous record, so with no runs), read
/// in place. Stops at the first byte that does not make sense.
struct Full<'a> {
    bytes: &'a [u8],
    at: usize,
    left: u64,
}

impl<'a> Full<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut at = 0;
        let left = get_varint(bytes, &mut at)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        Full { bytes, at, left }
    }
}

impl<'a> Iterator for Full<'a> {
    type Item = TokRef<'a>;

    fn next(&mut self) -> Option<TokRef<'a>> {
        self.left = self.left.checked_sub(1)?;
        let v = get_varint(self.bytes, &mut self.at)?;
        let arg = u64::try_from(v >> 2).ok()?;
        match v & 3 {
            0 => Some(TokRef::Int(unzigzag(arg) as u64)),
            1 => {
                let end = self.at.checked_add(usize::try_from(arg).ok()?)?;
                let s = self.bytes.get(self.at..end)?;
                self.at = end;
                Some(TokRef::Str(s))
            }
            _ => None,
        }
    }
}

/// Writes `cur` as the difference from `prev`: a token count, then per token a varint whose
/// two low bits say what follows — `0`: an integer's zigzag change, `1`: a new string's length
/// and bytes, `2`: a run of tokens equal to `prev`'s at the same place.
pub fn encode_record(prev: &[Tok], cur: &[Tok], out: &mut Vec<u8>) {
    encode_against(prev.iter().map(Tok::as_ref), cur, out);
}

/// [`encode_record`] against the previous record's tokens in order.
fn encode_against<'a>(mut prev: impl Iterator<Item = TokRef<'a>>, cur: &[Tok], out: &mut Vec<u8>) {
    put_varint(out, cur.len() as u128);
    let mut run: u128 = 0;
    for t in cur {
        let p = prev.next();
        if p == Some(t.as_ref()) {
            run += 1;
            continue;
        }
        if run > 0 {
            put_varint(out, (run << 2) | 2);
            run = 0;
        }
        match (t, p) {
            (Tok::Int(v), Some(TokRef::Int(p))) => {
                put_varint(out, u128::from(zigzag(v.wrapping_sub(p) as i64)) << 2)
            }
            (Tok::Int(v), _) => put_varint(out, u128::from(zigzag(*v as i64)) << 2),
            (Tok::Str(s), _) => {
                put_varint(out, ((s.len() as u128) << 2) | 1);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    if run > 0 {
        put_varint(out, (run << 2) | 2);
    }
}

/// Reads one record written by [`encode_record`] against the same `prev`.
pub fn decode_record(prev: &[Tok], bytes: &[u8], at: &mut usize) -> Option<Vec<Tok>> {
    let n = u64::try_from(get_varint(bytes, at)?).ok()?;
    if n > MAX_TOKENS {
        return None;
    }
    let n = n as usize;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let i = out.len();
        let v = get_varint(bytes, at)?;
        let arg = u64::try_from(v >> 2).ok()?;
        match v & 3 {
            0 => {
                let delta = unzigzag(arg) as u64;
                let base = match prev.get(i) {
                    Some(Tok::Int(p)) => *p,
                    _ => 0,
                };
                out.push(Tok::Int(base.wrapping_add(delta)));
            }
            1 => {
                if arg > MAX_STR {
                    return None;
                }
                let end = at.checked_add(arg as usize)?;
                let s = std::str::from_utf8(bytes.get(*at..end)?).ok()?;
                *at = end;
                out.push(Tok::Str(s.to_string()));
            }
            2 => {
                let end = i.checked_add(usize::try_from(arg).ok()?)?;
                if arg == 0 || end > n {
                    return None;
                }
                out.extend_from_slice(prev.get(i..end)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Vec<Tok> {
        vec![
            Tok::Int(i),
            Tok::Int(1000 * i),
            Tok::Str("eth0".into()),
            Tok::Int((-(i as i64)) as u64),
            Tok::Str(if i % 3 == 0 { "a" } else { "bb" }.into()),
            Tok::Int(u64::MAX - i),
        ]
    }

    #[test]
    fn round_trips_extremes_and_changes_of_shape() {
        let records = [
            vec![],
            vec![Tok::Int(0), Tok::Int(u64::MAX), Tok::Str(String::new())],
            vec![Tok::Str("x".into()), Tok::Int(5)],
            vec![Tok::Int(i64::MIN as u64), Tok::Int(i64::MAX as u64)],
            rec(1),
            rec(2),
        ];
        let mut bytes = Vec::new();
        let mut prev: Vec<Tok> = Vec::new();
        for r in &records {
            encode_record(&prev, r, &mut bytes);
            prev = r.clone();
        }
        let mut at = 0;
        let mut prev: Vec<Tok> = Vec::new();
        for r in &records {
            let got = decode_record(&prev, &bytes, &mut at).unwrap();
            assert_eq!(&got, r);
            prev = got;
        }
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn ring_keeps_its_capacity_and_finds_ranges() {
        let mut r = Ring::new(100);
        for i in 0..1000 {
            r.push(i * 1000, &rec(i));
            assert!(r.len() < 100 + BLOCK as usize);
        }
        assert!(r.len() >= 100);
        let all = r.range(0, u64::MAX);
        assert_eq!(all.len(), r.len());
        assert_eq!(all.last().unwrap(), &rec(999));
        assert_eq!(r.last().unwrap(), rec(999));
        // Consecutive similar records take a few bytes each.
        let per = r.encoded_bytes() as f64 / r.len() as f64;
        assert!(per < 12.0, "{per} bytes per record");
        let some = r.range(990_000, 995_000);
        assert!(some.iter().any(|x| x == &rec(992)));
        assert!(r.range(2_000_000, 3_000_000).is_empty());
        r.set_capacity(10);
        assert!(r.len() < 10 + BLOCK as usize);
    }

    #[test]
    fn a_staggered_ring_seals_its_first_block_early_and_reads_as_any() {
        let counts = Ring::block_counts;
        for k in [0, 5, 31, 32 + 7, u64::MAX] {
            let first = 1 + (k % u64::from(BLOCK)) as u32;
            let (mut plain, mut staggered) = (Ring::new(1000), Ring::new(1000));
            staggered.stagger(k);
            for i in 0..100 {
                plain.push(i * 1000, &rec(i));
                staggered.push(i * 1000, &rec(i));
                // Sealed the moment it has its records, as a full block is.
                let back = staggered.blocks.back().unwrap();
                let full = back.count
                    == if staggered.blocks.len() == 1 {
                        first
                    } else {
                        BLOCK
                    };
                assert_eq!(
                    matches!(back.bytes, Bytes::Sealed(_)),
                    full,
                    "k {k} record {i}"
                );
            }
            let c = counts(&staggered);
            assert_eq!(c[0], first, "k {k}");
            assert!(c[1..c.len() - 1].iter().all(|&n| n == BLOCK), "{c:?}");
            assert_eq!(c.iter().sum::<u32>(), 100);
            assert_eq!(staggered.range(0, u64::MAX), plain.range(0, u64::MAX));
            assert_eq!(staggered.last(), plain.last());
            // A snapshot keeps the blocks as they are; the ring read back goes on with full ones.
            let back: Ring =
                postcard::from_bytes(&postcard::to_allocvec(&staggered).unwrap()).unwrap();
            assert_eq!(counts(&back), c);
            assert_eq!(back.range(0, u64::MAX), plain.range(0, u64::MAX));
        }
        // Once it holds a record, a ring's blocks stay as they are.
        let mut r = Ring::new(100);
        r.push(0, &rec(0));
        r.stagger(3);
        for i in 1..40 {
            r.push(i * 1000, &rec(i));
        }
        assert_eq!(counts(&r), [BLOCK, 40 - BLOCK]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for n in 0..2000 {
            let bytes: Vec<u8> = (0..n % 64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut at = 0;
            let _ = decode_record(&rec(1), &bytes, &mut at);
            let mut out = Vec::new();
            decode_records(&bytes, 64, &mut out);
            // As a snapshot's ring: a damaged one is an error or a ring that reads, no panic.
            if let Ok(r) = postcard::from_bytes::<Ring>(&bytes) {
                let _ = r.range(0, u64::MAX);
                let _ = r.last();
            }
        }
    }

    /// A block as snapshots held it when blocks were `Arc<Block>` with a `Vec<u8>`.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct OldBlock {
        min_ts: u64,
        max_ts: u64,
        count: u32,
        bytes: Vec<u8>,
    }

    /// A ring as snapshots held it.
    #[derive(Serialize)]
    struct OldRing {
        blocks: Vec<OldBlock>,
        capacity: usize,
        len: usize,
        last: Vec<Tok>,
    }

    fn old_blocks(r: &Ring) -> Vec<OldBlock> {
        r.blocks
            .iter()
            .map(|b| OldBlock {
                min_ts: b.min_ts,
                max_ts: b.max_ts(),
                count: b.count,
                bytes: r.bytes_of(b, &mut Vec::new()).unwrap().to_vec(),
            })
            .collect()
    }

    /// The ring is stored (in snapshots) as it always was, whatever it keeps in memory: blocks
    /// whose bytes are serde bytes (in postcard, the very bytes a sequence of `u8` made), and
    /// the newest record as its tokens. A ring read back goes on as the original does.
    #[test]
    fn the_ring_keeps_its_snapshot_format() {
        let mut r = Ring::new(100);
        for i in 0..70 {
            r.push(i * 1000, &rec(i));
        }
        let old = OldRing {
            blocks: old_blocks(&r),
            capacity: r.capacity,
            len: r.len,
            last: rec(69),
        };
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
        let mut back: Ring = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.last(), Some(rec(69)));
        assert!(matches!(back.blocks.back().unwrap().bytes, Bytes::Open));
        for ring in [&mut r, &mut back] {
            ring.push(70_000, &rec(70));
        }
        assert_eq!(
            postcard::to_allocvec(&back).unwrap(),
            postcard::to_allocvec(&r).unwrap()
        );
        assert_eq!(back.range(0, u64::MAX), r.range(0, u64::MAX));
        // A record of six tokens in a few dozen bytes, not six tokens of 32 bytes and strings.
        assert!(r.last.capacity() < 48, "{}", r.last.capacity());
        // Whatever its size: a string longer than decoding allows untrusted bytes is kept too.
        let long = vec![Tok::Str("x".repeat(MAX_STR as usize + 1)), Tok::Int(7)];
        let mut r = Ring::new(10);
        r.push(0, &long);
        let old = OldRing {
            blocks: old_blocks(&r),
            capacity: r.capacity,
            len: r.len,
            last: long,
        };
        assert_eq!(
            postcard::to_allocvec(&r).unwrap(),
            postcard::to_allocvec(&old).unwrap()
        );
    }

    /// Snapshots from before blocks held 32 records hold blocks of 64: they load, read back
    /// and take new records in blocks of their own.
    #[test]
    fn blocks_of_64_records_from_older_snapshots_load() {
        let mut blocks = Vec::new();
        for b in 0..3u64 {
            let n = if b == 2 { 40 } else { 64 };
            let mut bytes = Vec::new();
            let mut prev = Vec::new();
            for i in b * 64..b * 64 + n {
                encode_record(&prev, &rec(i), &mut bytes);
                prev = rec(i);
            }
            blocks.push(OldBlock {
                min_ts: b * 64_000,
                max_ts: (b * 64 + n - 1) * 1000,
                count: n as u32,
                bytes,
            });
        }
        let old = OldRing {
            blocks,
            capacity: 1000,
            len: 168,
            last: rec(167),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let mut r: Ring = postcard::from_bytes(&bytes).unwrap();
        let all: Vec<Vec<Tok>> = (0..168).map(rec).collect();
        assert_eq!(r.range(0, u64::MAX), all);
        assert_eq!(r.range(70_000, 80_000), all[64..128]);
        assert_eq!(postcard::to_allocvec(&r).unwrap(), bytes);
        r.push(168_000, &rec(168));
        assert_eq!(r.blocks.len(), 4, "the 40-record block is full at 32");
        assert_eq!(r.range(0, u64::MAX).len(), 169);
        assert_eq!(r.last(), Some(rec(168)));
    }

    /// A clone shares the full blocks and copies only the open one's bytes: the clone stays as
    /// it was, the original goes on (what a snapshot relies on).
    #[test]
    fn a_clone_keeps_what_it_saw_while_the_original_goes_on() {
        let shared = |a: &Block, b: &Block| match (&a.bytes, &b.bytes) {
            (Bytes::Sealed(x), Bytes::Sealed(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        let mut r = Ring::new(1000);
        for i in 0..100 {
            r.push(i * 1000, &rec(i));
        }
        let seen = r.clone();
        let before = postcard::to_allocvec(&seen).unwrap();
        assert!(shared(&r.blocks[0], &seen.blocks[0]));
        for i in 100..200 {
            r.push(i * 1000, &rec(i));
        }
        assert_eq!(postcard::to_allocvec(&seen).unwrap(), before);
        assert_eq!(seen.len(), 100);
        assert_eq!(r.len(), 200);
        // (A range is whole blocks; the caller filters by time.)
        assert!(r.range(0, 99_000)[..100] == seen.range(0, u64::MAX)[..]);
        // The full blocks are still shared; the one that was open has its own bytes.
        let n = seen.blocks.len();
        assert!((0..n - 1).all(|i| shared(&r.blocks[i], &seen.blocks[i])));
        assert!(matches!(seen.blocks[n - 1].bytes, Bytes::Open));
        assert!(!shared(&r.blocks[n - 1], &seen.blocks[n - 1]));
    }

    /// Records are encoded against the newest one read in place: extremes, strings and changes
    /// of shape come back as they went in.
    #[test]
    fn records_encoded_against_the_newest_in_place_round_trip() {
        let records = [
            vec![Tok::Str("x".into()), Tok::Int(5)],
            vec![],
            vec![Tok::Int(0), Tok::Int(u64::MAX), Tok::Str(String::new())],
            vec![Tok::Int(i64::MIN as u64), Tok::Int(i64::MAX as u64)],
            vec![Tok::Str("é✓".into()), Tok::Int(1), Tok::Int(2)],
            vec![Tok::Str("é✓".into()), Tok::Int(1), Tok::Int(3), Tok::Int(9)],
            rec(1),
            rec(2),
            rec(3),
        ];
        let mut r = Ring::new(1000);
        for (i, x) in records.iter().enumerate() {
            r.push(i as u64, x);
            assert_eq!(r.last().as_ref(), Some(x));
        }
        assert_eq!(r.range(0, u64::MAX), records);
    }

    /// The open block keeps at most an eighth of the block before it spare (or `MIN_STEP`
    /// bytes, or one record), grows a few times per block, not per record; a sealed block and
    /// the newest record keep no spare room to speak of, and a block's handle is 40 bytes
    /// (issue #9).
    #[test]
    fn blocks_and_the_newest_record_keep_little_spare_room() {
        assert!(std::mem::size_of::<Block>() <= 40);
        // Records of varied sizes, now and then a long one.
        let record = |i: u64| {
            let mut r = rec(i * i % 1000);
            if i % 17 == 0 {
                r.push(Tok::Str("y".repeat((i % 300) as usize)));
            }
            r
        };
        let mut r = Ring::new(1000);
        let n = BLOCK as u64;
        let mut moves = 0;
        for i in 0..5 * n {
            let before = r.blocks.back().map(|b| (b.count, r.open.as_ptr()));
            r.push(i, &record(i));
            let back = r.blocks.back().unwrap();
            if let Some((count, ptr)) = before {
                moves += usize::from(count < BLOCK && r.open.as_ptr() != ptr);
            }
            let prev = r.blocks.len().checked_sub(2).map(|i| r.blocks[i].len(0));
            let step = prev.map_or(MIN_STEP, |p| (p / 8).max(MIN_STEP));
            let mut last = Vec::new();
            encode_record(&[], &record(i), &mut last);
            if matches!(back.bytes, Bytes::Open) {
                let spare = r.open.capacity() - r.open.len();
                assert!(spare <= step.max(last.len()), "record {i}: {spare} spare");
            } else {
                assert!(matches!(back.bytes, Bytes::Sealed(_)) && r.open.capacity() == 0);
            }
            assert_eq!(r.last, last);
            assert!(r.last.capacity() <= last.len() + last.len() / 8 + 8);
        }
        assert!(moves <= 5 * 16, "{moves} moves");
        let all: Vec<Vec<Tok>> = (0..5 * n).map(record).collect();
        assert_eq!(r.range(0, u64::MAX), all);
    }

    /// A clock that jumps puts the record in a block of its own rather than widening a block
    /// past what its span holds; ranges find both sides.
    #[test]
    fn a_clock_jump_starts_a_block() {
        let mut r = Ring::new(1000);
        let far = 1u64 << 40;
        for (i, ts) in [1000, 2000, far, far + 1000, 3000].into_iter().enumerate() {
            r.push(ts, &rec(i as u64));
        }
        assert_eq!(r.blocks.len(), 3);
        assert_eq!(r.range(0, 5000), vec![rec(0), rec(1), rec(4)]);
        assert_eq!(r.range(far, far), vec![rec(2), rec(3)]);
        assert_eq!(r.range(0, u64::MAX).len(), 5);
    }

    /// A lean ring keeps its newest record as a few bytes against its block's first and is
    /// otherwise the same ring: the same records, the same snapshot bytes. One loaded from a
    /// snapshot, or made lean part way through a block, goes on as the original; so does one
    /// whose newest block was spilled.
    #[test]
    fn a_lean_ring_is_the_same_ring_in_fewer_bytes() {
        let record = |i: u64| {
            let mut r = rec(i);
            r.push(Tok::Str("memory.available".into()));
            r.push(Tok::Int(i * i));
            r
        };
        let mut full = Ring::new(100);
        let mut lean = Ring::new(100);
        lean.set_lean();
        for i in 0..150 {
            full.push(i * 1000, &record(i));
            lean.push(i * 1000, &record(i));
            assert_eq!(lean.last(), Some(record(i)));
            assert!(lean.last.len() * 2 < full.last.len(), "record {i}");
        }
        let bytes = postcard::to_allocvec(&full).unwrap();
        assert_eq!(postcard::to_allocvec(&lean).unwrap(), bytes);
        let mut loaded: Ring = postcard::from_bytes(&bytes).unwrap();
        loaded.set_lean();
        let mut midway = full.clone();
        midway.set_lean();
        let (spill, _) = crate::spill::MemSegment::spill(1 << 20);
        let mut spilled = full.clone();
        spilled.set_lean();
        for i in 150..260 {
            for r in [&mut full, &mut lean, &mut loaded, &mut midway, &mut spilled] {
                r.push(i * 1000, &record(i));
            }
            spilled.spill(&spill, 0).unwrap();
            if i % 64 == 63 {
                // The newest block full and out of memory: the newest record read from it.
                assert!(matches!(
                    spilled.blocks.back().unwrap().bytes,
                    Bytes::Out(_)
                ));
                assert_eq!(spilled.last(), Some(record(i)));
            }
        }
        assert!(spilled.spilled_bytes() > 0);
        let want = postcard::to_allocvec(&full).unwrap();
        for r in [&lean, &loaded, &midway, &spilled] {
            assert_eq!(r.last(), Some(record(259)));
            assert!(r.range(0, u64::MAX) == full.range(0, u64::MAX));
            assert!(postcard::to_allocvec(r).unwrap() == want);
        }
        // Empty, it serialises as an empty ring does.
        let mut empty = Ring::new(10);
        empty.set_lean();
        assert_eq!(
            postcard::to_allocvec(&empty).unwrap(),
            postcard::to_allocvec(&Ring::new(10)).unwrap()
        );
    }
}
