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
//! Bad bytes (from a damaged snapshot) are never a panic: decoding stops at the first record that
//! does not make sense.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spill::{Spill, Spilled};

/// Records per block.
pub const BLOCK: u32 = 64;
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Block {
    min_ts: u64,
    max_ts: u64,
    count: u32,
    /// Written as bytes, which in postcard is the very format a sequence of `u8` has, a copy
    /// where the sequence was a call per byte (a snapshot is mostly these).
    #[serde(with = "as_bytes")]
    bytes: Bytes,
}

/// A block's encoded records: in memory, or (sealed) in a [`Spill`] segment.
#[derive(Debug, Clone)]
enum Bytes {
    Mem(Vec<u8>),
    Out(Spilled),
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::Mem(Vec::new())
    }
}

impl Bytes {
    fn len(&self) -> usize {
        match self {
            Bytes::Mem(v) => v.len(),
            Bytes::Out(s) => s.len(),
        }
    }

    /// The bytes in memory (tests of blocks never spilled).
    #[cfg(test)]
    fn mem(&self) -> &Vec<u8> {
        match self {
            Bytes::Mem(v) => v,
            Bytes::Out(_) => panic!("spilled"),
        }
    }

    /// The bytes: borrowed, or read into `buf`.
    fn get<'a>(&'a self, buf: &'a mut Vec<u8>) -> std::io::Result<&'a [u8]> {
        match self {
            Bytes::Mem(v) => Ok(v),
            Bytes::Out(s) => {
                s.read(buf)?;
                Ok(buf)
            }
        }
    }
}

/// [`Block::bytes`] as serde bytes (read back from the spill if they were spilled).
mod as_bytes {
    use serde::de::{Deserializer, Error, Visitor};
    use serde::ser::Error as _;
    use serde::Serializer;

    use super::Bytes;

    pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        let bytes = bytes
            .get(&mut buf)
            .map_err(|e| S::Error::custom(format!("a spilled history block: {e}")))?;
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
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
        d.deserialize_byte_buf(Bytes).map(super::Bytes::Mem)
    }
}

/// A ring of delta-encoded records.
///
/// A clone is cheap: blocks are shared, and a full block never changes again. Only the open
/// (newest) block is copied, and only if a clone still holds it when the next record goes in.
/// This is what lets a snapshot take the store as it is in a moment and write it from another
/// thread while ingest goes on (see `Store::image`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ring {
    blocks: VecDeque<Arc<Block>>,
    capacity: usize,
    len: usize,
    /// The newest record, which the next one is encoded against, written in full (as a block's
    /// first record is) and read in place: a few hundred bytes where its tokens took kilobytes
    /// (issue #9). Stored (in snapshots) as its tokens, as it always was.
    #[serde(with = "as_tokens")]
    last: Vec<u8>,
}

/// [`Ring::last`] as the list of tokens it was before it was kept encoded.
mod as_tokens {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{encode_record, Full, Tok, TokRef};

    pub fn serialize<S: Serializer>(last: &[u8], s: S) -> Result<S::Ok, S::Error> {
        // Every token, whatever its size (decode_record's limits are for untrusted bytes).
        let toks: Vec<Tok> = Full::new(last)
            .map(|t| match t {
                TokRef::Int(v) => Tok::Int(v),
                TokRef::Str(b) => Tok::Str(String::from_utf8_lossy(b).into_owned()),
            })
            .collect();
        toks.serialize(s)
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

    /// Memory held, in bytes (encoded data in memory, block headers and the last record).
    pub fn bytes(&self) -> usize {
        let last = self.last.capacity();
        self.blocks
            .iter()
            .map(|b| {
                let data = match &b.bytes {
                    Bytes::Mem(v) => v.capacity(),
                    Bytes::Out(_) => 0,
                };
                data + std::mem::size_of::<Block>()
            })
            .sum::<usize>()
            + last
    }

    /// Bytes of encoded records spilled out of memory.
    pub fn spilled_bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| match &b.bytes {
                Bytes::Out(s) => s.len(),
                Bytes::Mem(_) => 0,
            })
            .sum()
    }

    /// Moves sealed blocks still in memory to `spill`'s `class`, newest first, up to the first
    /// one already out (so, once caught up, it looks at one block). A block that cannot be
    /// written stays in memory; the error is returned.
    pub fn spill(&mut self, spill: &Spill, class: usize) -> std::io::Result<()> {
        for b in self.blocks.iter_mut().rev() {
            match &b.bytes {
                Bytes::Out(_) => break,
                Bytes::Mem(_) if b.count < BLOCK => continue,
                Bytes::Mem(bytes) => {
                    let out = spill.put(class, bytes)?;
                    // A new block: a snapshot's clone may still hold the old one.
                    *b = Arc::new(Block {
                        bytes: Bytes::Out(out),
                        ..**b
                    });
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
                    let out = spill.put(class, &buf)?;
                    *b = Arc::new(Block {
                        bytes: Bytes::Out(out),
                        ..**b
                    });
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// Bytes of encoded records only.
    pub fn encoded_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.bytes.len()).sum()
    }

    /// The newest record.
    pub fn last(&self) -> Option<Vec<Tok>> {
        if self.is_empty() {
            return None;
        }
        decode_record(&[], &self.last, &mut 0)
    }

    /// Appends a record taken at `ts` (any monotonic-ish time; used to find records by range).
    /// The ring keeps no reference to `record`: a caller can refill it without allocating.
    pub fn push(&mut self, ts: u64, record: &[Tok]) {
        // (A spilled block is full; only a damaged snapshot could have one that is not.)
        let new_block = self
            .blocks
            .back()
            .is_none_or(|b| b.count >= BLOCK || matches!(b.bytes, Bytes::Out(_)));
        if new_block {
            self.blocks.push_back(Arc::new(Block {
                min_ts: ts,
                max_ts: ts,
                count: 0,
                bytes: Bytes::Mem(Vec::new()),
            }));
        }
        // The open block grows by an eighth of what the block before it took (at least
        // `MIN_STEP`), not by doubling, which left it up to half empty, nor all at once at
        // its expected size, which left it half empty on average until it was full (issue #9).
        let n = self.blocks.len();
        let step = match n.checked_sub(2) {
            Some(i) => (self.blocks[i].bytes.len() / 8).max(MIN_STEP),
            None => MIN_STEP,
        };
        let back = self.blocks.back_mut().expect("a block was just ensured");
        // Copied here if a snapshot's clone still holds it (see the type's comment).
        let block = Arc::make_mut(back);
        let Bytes::Mem(bytes) = &mut block.bytes else {
            unreachable!("the open block is in memory: a spilled one starts a new block")
        };
        let prev = if new_block { &[][..] } else { &self.last[..] };
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            encode_against(Full::new(prev), record, buf);
            if bytes.capacity() - bytes.len() < buf.len() {
                bytes.reserve_exact(buf.len().max(step));
            }
            bytes.extend_from_slice(buf);
        });
        // The newest record at its own size.
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            encode_record(&[], record, buf);
            crate::packed::refill(&mut self.last, buf);
        });
        block.count += 1;
        block.min_ts = block.min_ts.min(ts);
        block.max_ts = block.max_ts.max(ts);
        if block.count >= BLOCK {
            // Full: it never changes again.
            bytes.shrink_to_fit();
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
            if b.max_ts >= from && b.min_ts <= to {
                decode_block(b, &mut out);
            }
        }
        out
    }

    /// Blocks from the newest back, each decoded oldest first; stops when `f` returns false.
    pub fn newest_blocks(&self, mut f: impl FnMut(Vec<Vec<Tok>>) -> bool) {
        for b in self.blocks.iter().rev() {
            let mut records = Vec::with_capacity(b.count as usize);
            decode_block(b, &mut records);
            if !f(records) {
                return;
            }
        }
    }

    /// Time of the oldest block's first record.
    pub fn oldest_ts(&self) -> Option<u64> {
        self.blocks.front().map(|b| b.min_ts)
    }
}

/// Decodes a block's records into `out`. A spilled block that cannot be read back gives none
/// (the spill counts and reports the failure).
fn decode_block(b: &Block, out: &mut Vec<Vec<Tok>>) {
    let mut buf = Vec::new();
    let Ok(bytes) = b.bytes.get(&mut buf) else {
        return;
    };
    let mut at = 0;
    let mut prev: Vec<Tok> = Vec::new();
    for _ in 0..b.count {
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
            let b = Block {
                min_ts: 0,
                max_ts: 0,
                count: 64,
                bytes: Bytes::Mem(bytes),
            };
            let mut out = Vec::new();
            decode_block(&b, &mut out);
        }
    }

    /// The newest record is kept encoded (issue #9) but stored in snapshots as its tokens, as
    /// it was: the same bytes, and a ring read back goes on as the original does.
    #[test]
    fn the_newest_record_keeps_its_snapshot_format() {
        #[derive(Serialize)]
        struct OldRing {
            blocks: VecDeque<Block>,
            capacity: usize,
            len: usize,
            last: Vec<Tok>,
        }
        let mut r = Ring::new(100);
        for i in 0..70 {
            r.push(i * 1000, &rec(i));
        }
        let old = OldRing {
            blocks: r.blocks.iter().map(|b| Block::clone(b)).collect(),
            capacity: r.capacity,
            len: r.len,
            last: rec(69),
        };
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
        let mut back: Ring = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.last(), Some(rec(69)));
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
            blocks: r.blocks.iter().map(|b| Block::clone(b)).collect(),
            capacity: r.capacity,
            len: r.len,
            last: long,
        };
        assert_eq!(
            postcard::to_allocvec(&r).unwrap(),
            postcard::to_allocvec(&old).unwrap()
        );
    }

    /// A block's bytes are written as serde bytes, which in postcard are the very bytes the
    /// sequence of `u8` they were before made: old snapshots load, new ones are the same.
    #[test]
    fn block_bytes_keep_their_snapshot_format() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct OldBlock {
            min_ts: u64,
            max_ts: u64,
            count: u32,
            bytes: Vec<u8>,
        }
        let mut r = Ring::new(100);
        for i in 0..70 {
            r.push(i * 1000, &rec(i));
        }
        assert_eq!(r.blocks.len(), 2);
        for b in &r.blocks {
            let old = OldBlock {
                min_ts: b.min_ts,
                max_ts: b.max_ts,
                count: b.count,
                bytes: b.bytes.mem().clone(),
            };
            let bytes = postcard::to_allocvec(&**b).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
            let back: Block = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.bytes.mem(), &old.bytes);
            assert_eq!(postcard::from_bytes::<OldBlock>(&bytes).unwrap(), old);
        }
    }

    /// A clone shares the full blocks and copies the open one only when either side writes to
    /// it: the clone stays as it was, the original goes on (what a snapshot relies on).
    #[test]
    fn a_clone_keeps_what_it_saw_while_the_original_goes_on() {
        let mut r = Ring::new(1000);
        for i in 0..100 {
            r.push(i * 1000, &rec(i));
        }
        let seen = r.clone();
        let before = postcard::to_allocvec(&seen).unwrap();
        assert!(Arc::ptr_eq(&r.blocks[0], &seen.blocks[0]));
        for i in 100..200 {
            r.push(i * 1000, &rec(i));
        }
        assert_eq!(postcard::to_allocvec(&seen).unwrap(), before);
        assert_eq!(seen.len(), 100);
        assert_eq!(r.len(), 200);
        // (A range is whole blocks; the caller filters by time.)
        assert!(r.range(0, 99_000)[..100] == seen.range(0, u64::MAX)[..]);
        // The full block is still shared; the one that was open was copied.
        assert!(Arc::ptr_eq(&r.blocks[0], &seen.blocks[0]));
        assert!(!Arc::ptr_eq(&r.blocks[1], &seen.blocks[1]));
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
    /// the newest record keep no spare room to speak of (issue #9).
    #[test]
    fn blocks_and_the_newest_record_keep_little_spare_room() {
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
            let before = r.blocks.back().map(|b| (b.count, b.bytes.mem().as_ptr()));
            r.push(i, &record(i));
            let back = r.blocks.back().unwrap();
            if let Some((count, ptr)) = before {
                moves += usize::from(count < BLOCK && back.bytes.mem().as_ptr() != ptr);
            }
            let prev = r
                .blocks
                .len()
                .checked_sub(2)
                .map(|i| r.blocks[i].bytes.len());
            let step = prev.map_or(MIN_STEP, |p| (p / 8).max(MIN_STEP));
            let mut last = Vec::new();
            encode_record(&[], &record(i), &mut last);
            let spare = back.bytes.mem().capacity() - back.bytes.len();
            assert!(spare <= step.max(last.len()), "record {i}: {spare} spare");
            assert_eq!(r.last, last);
            assert!(r.last.capacity() <= last.len() + last.len() / 8 + 8);
        }
        for b in r.blocks.iter().take(4) {
            assert_eq!(b.bytes.mem().capacity(), b.bytes.len());
        }
        assert!(moves <= 5 * 16, "{moves} moves");
        let all: Vec<Vec<Tok>> = (0..5 * n).map(record).collect();
        assert_eq!(r.range(0, u64::MAX), all);
    }
}
