//! Sealed history blocks kept out of memory (issue #9).
//!
//! A [`Ring`](crate::ring::Ring)'s full blocks never change again. Once sealed, a block's bytes
//! are written to a segment file here and the ring keeps only a [`Spilled`] handle (the segment,
//! an offset and a length) and reads them back when a query needs them, through the page cache.
//! The store's memory then holds each host's open blocks, not its history: it no longer grows
//! with `history.raw-samples` or the tiers' retention.
//!
//! This is scratch space, not durability: snapshots and the log still hold everything (a
//! snapshot reads the spilled bytes back as it writes them), and a segment file is unlinked as
//! soon as it is opened, so the kernel frees its space when the last block in it is dropped, and
//! a crash leaves nothing behind.
//!
//! Blocks are grouped into classes (raw samples, then each tier) so a segment holds blocks that
//! live about as long as each other and die together. A segment that is full and mostly dead
//! (a quarter or less of it still referenced: an offline host's blocks, kept while others'
//! rolled over) is *sparse*; the store moves its live blocks to the open segment
//! ([`Store::tick`](crate::Store::tick)), so the space on disk stays within a few times the
//! live bytes.
//!
//! A write that fails (a full disk) leaves the block in memory, as before this module, and is
//! not retried for [`RETRY_AFTER`]; the failure is counted and shown in `/api/health`.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A segment's size once full, by default.
pub const SEGMENT_BYTES: u32 = 8 << 20;
/// How long spilling waits after a failed write before it tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where a segment's bytes go: a file, or memory in tests.
pub trait SegmentIo: Send + Sync {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Fills all of `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

#[cfg(unix)]
impl SegmentIo for std::fs::File {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, bytes, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// Opens a new, empty segment.
type Open = dyn Fn() -> io::Result<Box<dyn SegmentIo>> + Send + Sync;

/// Failures and moves, counted by segments as well as the spill.
#[derive(Default)]
struct Counters {
    errors: AtomicU64,
    moved: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn failed(&self, what: &str, e: &io::Error) {
        self.errors.fetch_add(1, Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{what}: {e}"));
    }
}

struct Segment {
    io: Box<dyn SegmentIo>,
    counters: Arc<Counters>,
    /// Bytes written.
    written: AtomicU64,
    /// Bytes still referenced by a [`Spilled`].
    live: AtomicU64,
    /// No longer written to.
    full: AtomicBool,
}

impl Segment {
    fn sparse(&self) -> bool {
        self.full.load(Relaxed) && self.live.load(Relaxed) * 4 <= self.written.load(Relaxed)
    }
}

/// A block's bytes in a segment. The segment lives as long as a handle to it does.
pub struct Spilled {
    segment: Arc<Segment>,
    /// (A segment is at most [`SEGMENT_BYTES`] but for one larger block at its start.)
    offset: u32,
    len: u32,
}

impl Spilled {
    /// The bytes' length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the bytes back into `out` (replacing what it held). A failure is counted in the
    /// spill's [`SpillStats`] as well as returned.
    pub fn read(&self, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.resize(self.len as usize, 0);
        let read = self.segment.io.read_at(out, u64::from(self.offset));
        if let Err(e) = &read {
            self.segment.counters.failed("read", e);
            tracing::warn!("a spilled history block could not be read back: {e}");
        }
        read
    }

    /// Whether its segment is mostly dead and it should move (see the module's comment).
    pub fn should_move(&self) -> bool {
        self.segment.sparse()
    }
}

impl Clone for Spilled {
    fn clone(&self) -> Self {
        self.segment.live.fetch_add(u64::from(self.len), Relaxed);
        Spilled {
            segment: Arc::clone(&self.segment),
            offset: self.offset,
            len: self.len,
        }
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        self.segment.live.fetch_sub(u64::from(self.len), Relaxed);
    }
}

impl fmt::Debug for Spilled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Spilled({} bytes at {})", self.len, self.offset)
    }
}

/// What the spill holds, for `/api/health` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SpillStats {
    /// Segments open (each an unlinked file).
    pub segments: usize,
    /// Bytes written to them: their space on disk.
    pub disk_bytes: u64,
    /// Bytes of blocks still referenced.
    pub live_bytes: u64,
    /// Blocks moved out of sparse segments since start.
    pub moved_blocks: u64,
    /// Writes and reads that failed since start.
    pub errors: u64,
    /// Whether the last write failed: spilling is paused and sealed blocks stay in memory
    /// until a write works again (a full disk). `/api/health` says `degraded` meanwhile.
    pub failing: bool,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    /// The segment being written, per class.
    open: Vec<Option<Arc<Segment>>>,
    /// Every segment made, for [`SpillStats`] and [`Spill::has_sparse`]; dead ones are pruned.
    all: Vec<Weak<Segment>>,
    /// When the last write failed.
    failed_at: Option<Instant>,
}

/// Segments of sealed blocks, shared by the store and the snapshot writer.
pub struct Spill {
    open: Box<Open>,
    segment_bytes: u64,
    retry_after: Duration,
    state: Mutex<State>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Spill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spill")
            .field("segment_bytes", &self.segment_bytes)
            .finish_non_exhaustive()
    }
}

impl Spill {
    /// Segments of `segment_bytes` made by `open`.
    pub fn new(
        segment_bytes: u32,
        open: impl Fn() -> io::Result<Box<dyn SegmentIo>> + Send + Sync + 'static,
    ) -> Spill {
        Spill {
            open: Box::new(open),
            segment_bytes: u64::from(segment_bytes.max(1)),
            retry_after: RETRY_AFTER,
            state: Mutex::new(State::default()),
            counters: Arc::default(),
        }
    }

    /// Segments as files in `dir` (created if missing), each unlinked as soon as it is made.
    /// Files left by a process that died between the two are removed.
    #[cfg(unix)]
    pub fn in_dir(dir: &Path) -> io::Result<Spill> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("segment-"))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // Whether the directory takes files at all, now rather than at the first sealed block.
        let dir = dir.to_path_buf();
        let next = AtomicU64::new(0);
        let open = move || -> io::Result<Box<dyn SegmentIo>> {
            let n = next.fetch_add(1, Relaxed);
            let path = dir.join(format!("segment-{}-{n}", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(Box::new(file))
        };
        drop(open()?);
        Ok(Spill::new(SEGMENT_BYTES, open))
    }

    /// How long writes wait after a failed one (tests: not [`RETRY_AFTER`]).
    pub fn with_retry_after(mut self, wait: Duration) -> Spill {
        self.retry_after = wait;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `bytes` to `class`'s open segment. An error leaves nothing referenced; after one,
    /// writes are refused for [`RETRY_AFTER`] without trying.
    pub fn put(&self, class: usize, bytes: &[u8]) -> io::Result<Spilled> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block too large"))?;
        let mut st = self.lock();
        if let Some(at) = st.failed_at {
            if at.elapsed() < self.retry_after {
                return Err(io::Error::other("spilling paused after a failed write"));
            }
            st.failed_at = None;
        }
        if st.open.len() <= class {
            st.open.resize(class + 1, None);
        }
        let current = st.open[class].as_ref().filter(|s| {
            let written = s.written.load(Relaxed);
            written == 0 || written + u64::from(len) <= self.segment_bytes
        });
        let segment = match current {
            Some(s) => Arc::clone(s),
            None => {
                if let Some(old) = st.open[class].take() {
                    old.full.store(true, Relaxed);
                }
                let io = match (self.open)() {
                    Ok(io) => io,
                    Err(e) => return Err(self.failed(&mut st, e)),
                };
                let s = Arc::new(Segment {
                    io,
                    counters: Arc::clone(&self.counters),
                    written: AtomicU64::new(0),
                    live: AtomicU64::new(0),
                    full: AtomicBool::new(false),
                });
                st.all.retain(|w| w.strong_count() > 0);
                st.all.push(Arc::downgrade(&s));
                st.open[class] = Some(Arc::clone(&s));
                s
            }
        };
        let written = segment.written.load(Relaxed);
        let offset = u32::try_from(written)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        if let Err(e) = segment.io.write_at(bytes, written) {
            return Err(self.failed(&mut st, e));
        }
        segment.written.store(written + u64::from(len), Relaxed);
        segment.live.fetch_add(u64::from(len), Relaxed);
        Ok(Spilled {
            segment,
            offset,
            len,
        })
    }

    fn failed(&self, st: &mut State, e: io::Error) -> io::Error {
        self.counters.failed("write", &e);
        st.failed_at = Some(Instant::now());
        e
    }

    /// Counts blocks moved out of sparse segments.
    pub fn count_moved(&self, n: u64) {
        self.counters.moved.fetch_add(n, Relaxed);
    }

    /// Whether a segment is sparse (see the module's comment).
    pub fn has_sparse(&self) -> bool {
        self.lock()
            .all
            .iter()
            .filter_map(Weak::upgrade)
            .any(|s| s.sparse())
    }

    /// What the spill holds now.
    pub fn stats(&self) -> SpillStats {
        let st = self.lock();
        let c = &self.counters;
        let mut out = SpillStats {
            failing: st.failed_at.is_some(),
            moved_blocks: c.moved.load(Relaxed),
            errors: c.errors.load(Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            ..SpillStats::default()
        };
        for s in st.all.iter().filter_map(Weak::upgrade) {
            out.segments += 1;
            out.disk_bytes += s.written.load(Relaxed);
            out.live_bytes += s.live.load(Relaxed);
        }
        out
    }
}

/// Segments in memory, for tests: can be told to fail.
#[derive(Default)]
pub struct MemSegment {
    bytes: Mutex<Vec<u8>>,
    fail: Arc<AtomicBool>,
}

impl MemSegment {
    /// A spill of `segment_bytes` segments in memory, and the switch that makes every write
    /// and read fail (a full or broken disk).
    pub fn spill(segment_bytes: u32) -> (Spill, Arc<AtomicBool>) {
        let fail = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&fail);
        let spill = Spill::new(segment_bytes, move || {
            if f.load(Relaxed) {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            Ok(Box::new(MemSegment {
                bytes: Mutex::default(),
                fail: Arc::clone(&f),
            }))
        });
        (spill, fail)
    }
}

impl SegmentIo for MemSegment {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        if self.fail.load(Relaxed) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let end = offset as usize + bytes.len();
        if b.len() < end {
            b.resize(end, 0);
        }
        b[offset as usize..end].copy_from_slice(bytes);
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.fail.load(Relaxed) {
            return Err(io::Error::other("read error"));
        }
        let b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let src = b
            .get(offset as usize..offset as usize + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_back_and_segments_roll_over_and_go() {
        let (spill, _) = MemSegment::spill(100);
        let a = spill.put(0, &[1; 70]).unwrap();
        let b = spill.put(0, &[2; 20]).unwrap();
        // Does not fit: a new segment.
        let c = spill.put(0, &[3; 30]).unwrap();
        // Another class: its own segment.
        let d = spill.put(1, &[4; 10]).unwrap();
        let mut out = Vec::new();
        for (s, v, n) in [(&a, 1, 70), (&b, 2, 20), (&c, 3, 30), (&d, 4, 10)] {
            s.read(&mut out).unwrap();
            assert_eq!(out, vec![v; n]);
        }
        let st = spill.stats();
        assert_eq!((st.segments, st.disk_bytes, st.live_bytes), (3, 130, 130));
        // The first segment is full; a quarter or less of it live is sparse.
        assert!(!a.should_move() && !spill.has_sparse());
        drop(a);
        assert!(b.should_move() && spill.has_sparse());
        assert!(!c.should_move(), "the open segment never is");
        drop(b);
        let st = spill.stats();
        assert_eq!((st.segments, st.disk_bytes, st.live_bytes), (2, 40, 40));
        // A block larger than a segment gets one of its own.
        let big = spill.put(0, &[5; 500]).unwrap();
        big.read(&mut out).unwrap();
        assert_eq!(out.len(), 500);
    }

    #[test]
    fn a_failed_write_is_reported_and_not_retried_at_once() {
        let (spill, fail) = MemSegment::spill(1000);
        let a = spill.put(0, &[1; 10]).unwrap();
        fail.store(true, Relaxed);
        assert!(spill.put(0, &[2; 10]).is_err());
        fail.store(false, Relaxed);
        let e = spill.put(0, &[2; 10]).unwrap_err();
        assert!(e.to_string().contains("paused"), "{e}");
        let st = spill.stats();
        assert_eq!(st.errors, 1);
        assert!(st.failing);
        assert!(st.last_error.unwrap().contains("disk full"));
        assert_eq!(st.live_bytes, 10);
        let mut out = Vec::new();
        a.read(&mut out).unwrap();
        assert_eq!(out, [1; 10]);
        // Once the pause is over, a write that works ends it.
        let spill = spill.with_retry_after(Duration::ZERO);
        spill.put(0, &[3; 10]).unwrap();
        assert!(!spill.stats().failing);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_unlinked_and_leftovers_removed() {
        let dir = std::env::temp_dir().join(format!("ember-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("segment-1-0"), b"left over").unwrap();
        std::fs::write(dir.join("other"), b"kept").unwrap();
        let spill = Spill::in_dir(&dir).unwrap();
        let a = spill.put(0, b"hello").unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["other"]);
        let mut out = Vec::new();
        a.read(&mut out).unwrap();
        assert_eq!(out, b"hello");
        std::fs::remove_dir_all(&dir).unwrap();
        // Somewhere it cannot write: an error now, not at the first sealed block.
        assert!(Spill::in_dir(Path::new("/proc/ember-spill")).is_err());
    }
}
