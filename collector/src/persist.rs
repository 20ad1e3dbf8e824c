//! Persistence: a write-ahead log of every accepted message plus periodic snapshots of the whole
//! [`Store`].
//!
//! - Each accepted message is appended to an in-memory buffer ([`Persister::record`]) and written
//!   to the current log generation (`wal-{gen}.log`) every `persist.flush-every` (100 ms), and
//!   fsynced every `persist.sync-every` (1 s). A SIGKILL loses at most what was not yet written.
//! - A snapshot (`snapshot.bin`) holds the store and the first log generation after it. It is
//!   serialised in the ingest thread (so it matches the log exactly), then written to a temporary
//!   file, fsynced and renamed by a background thread; only then are the older generations
//!   removed.
//! - Recovery loads the snapshot and replays the later generations through [`Store::ingest`]
//!   with the recorded times, so the result is what the store was. A damaged snapshot or a torn
//!   log tail is read as far as it is valid and reported in [`Recovery`], never a panic.
//! - A write that fails (a full disk) is reported in [`PersistStatus`]; the log is cut back to
//!   its last whole record, the buffer is kept (up to [`MAX_PENDING`]) and the write retried,
//!   and the collector keeps serving from memory.
//!
//! File access goes through the small [`Disk`] trait so that the tests can run the same code on
//! a disk that fills up.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::store::{Accepted, Store, StoreConfig};

/// Bytes of log records kept in memory while the disk refuses them; beyond this the newest are
/// dropped and counted.
pub const MAX_PENDING: usize = 16 << 20;
const SNAPSHOT: &str = "snapshot.bin";
const SNAPSHOT_MAGIC: &[u8; 8] = b"EMBERSNP";
const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_HEADER: usize = 8 + 4 + 8 + 8 + 4;
const MAX_RECORD: u32 = (1 << 20) + 512;

/// The files the collector keeps. Implemented for a directory ([`DirDisk`]) and, in tests, for
/// memory with a quota.
pub trait Disk: Send + 'static {
    /// The file names present.
    fn list(&self) -> io::Result<Vec<String>>;
    /// A whole file.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Appends, creating the file; may write part of `bytes` before failing.
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Cuts a file to `len` bytes.
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Makes a file's content durable.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Replaces a file as a whole: all of `bytes` or the old content, never a mix.
    fn write_atomic(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic_with(name, &mut |w| w.write_all(bytes))
    }
    /// Replaces a file as a whole with what `fill` writes, streamed (it may seek back to write
    /// a header last): all of it or the old content, never a mix.
    fn write_atomic_with(
        &mut self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn SeekWrite) -> io::Result<()>,
    ) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// Another handle on the same files (for the snapshot thread).
    fn handle(&self) -> Box<dyn Disk>;
}

/// Where [`Disk::write_atomic_with`] writes.
pub trait SeekWrite: Write + std::io::Seek {}
impl<T: Write + std::io::Seek> SeekWrite for T {}

/// Files in a directory.
#[derive(Debug)]
pub struct DirDisk {
    dir: PathBuf,
    open: Option<(String, File)>,
}

impl DirDisk {
    /// Files in `dir`, which must exist.
    pub fn new(dir: PathBuf) -> Self {
        DirDisk { dir, open: None }
    }

    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(n, _)| n != name) {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))?;
            self.open = Some((name.to_string(), f));
        }
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }
}

impl Disk for DirDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            if let Some(n) = e?.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all(bytes)
    }
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.file(name)?.set_len(len)
    }
    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }
    fn write_atomic_with(
        &mut self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn SeekWrite) -> io::Result<()>,
    ) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let result = (|| {
            let mut w = io::BufWriter::with_capacity(256 * 1024, File::create(&tmp)?);
            fill(&mut w)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(name))?;
            // The rename itself is durable once the directory is synced.
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|(n, _)| n == name) {
            self.open = None;
        }
        fs::remove_file(self.dir.join(name))
    }
    fn handle(&self) -> Box<dyn Disk> {
        Box::new(DirDisk::new(self.dir.clone()))
    }
}

/// What recovery found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Recovery {
    /// Whether a snapshot was loaded.
    pub snapshot_loaded: bool,
    /// Log records replayed.
    pub wal_records: u64,
    /// What was damaged and dropped, one line each. Empty after a clean start.
    pub problems: Vec<String>,
}

/// Persistence's health, for `/api/health` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PersistStatus {
    /// Whether the last write succeeded.
    pub ok: bool,
    /// The last write error (`No space left on device`), until a write succeeds again.
    pub last_error: Option<String>,
    /// Writes that failed.
    pub write_errors: u64,
    /// Log records dropped because the disk refused them for too long.
    pub dropped_records: u64,
    /// Bytes waiting to be written.
    pub pending_bytes: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// Size of the last snapshot written.
    pub snapshot_bytes: u64,
    /// How long ingest waited for the last snapshot to start (the store's image), in µs.
    pub snapshot_pause_us: u64,
    /// How long the last snapshot took to serialise and write (ingest going on), in ms.
    pub snapshot_write_ms: u64,
    /// What recovery found at start.
    pub recovery: Recovery,
}

/// The write-ahead log and snapshots of one data directory.
pub struct Persister {
    disk: Box<dyn Disk>,
    gen: u64,
    wal_len: u64,
    pending: Vec<u8>,
    status: Arc<Mutex<PersistStatus>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

fn wal_name(gen: u64) -> String {
    format!("wal-{gen:016}.log")
}

fn wal_gen(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One log record: `len u32, crc32 u32, body` with body `time u64, topic_len u8, topic, payload`.
pub fn encode_record(out: &mut Vec<u8>, now_ms: u64, topic: &str, payload: &[u8]) {
    let topic = &topic.as_bytes()[..topic.len().min(255)];
    let len = 8 + 1 + topic.len() + payload.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body = out.len();
    out.extend_from_slice(&now_ms.to_le_bytes());
    out.push(topic.len() as u8);
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[body..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded log record.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// When it was received.
    pub now_ms: u64,
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
}

/// Reads records from `bytes` until the end or the first invalid one; returns them and the length
/// of the valid prefix.
pub fn decode_records(bytes: &[u8]) -> (Vec<Record<'_>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = u32_at(bytes, at) {
        let Some(crc) = u32_at(bytes, at + 4) else {
            break;
        };
        if !(9..=MAX_RECORD).contains(&len) {
            break;
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let now_ms = u64_at(body, 0).unwrap_or(0);
        let tlen = usize::from(body[8]);
        let Some(topic) = body
            .get(9..9 + tlen)
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            break;
        };
        out.push(Record {
            now_ms,
            topic,
            payload: &body[9 + tlen..],
        });
        at += 8 + len as usize;
    }
    (out, at)
}

/// A snapshot's header, for a body of `len` bytes whose CRC-32 is `crc`.
fn snapshot_header(next_gen: u64, len: u64, crc: u32) -> [u8; SNAPSHOT_HEADER] {
    let mut header = [0u8; SNAPSHOT_HEADER];
    header[..8].copy_from_slice(SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&next_gen.to_le_bytes());
    header[20..28].copy_from_slice(&len.to_le_bytes());
    header[28..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Writes a snapshot to `w`: room for the header, the body as `body` writes it (its length and
/// CRC taken on the way), then the header.
fn write_snapshot(
    w: &mut dyn SeekWrite,
    next_gen: u64,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    struct Summing<'a> {
        inner: &'a mut dyn SeekWrite,
        crc: crc32fast::Hasher,
        len: u64,
    }
    impl Write for Summing<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(b)?;
            self.crc.update(&b[..n]);
            self.len += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
    w.write_all(&[0; SNAPSHOT_HEADER])?;
    let mut summing = Summing {
        inner: &mut *w,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    body(&mut summing)?;
    let (len, crc) = (summing.len, summing.crc.finalize());
    w.seek(io::SeekFrom::Start(0))?;
    w.write_all(&snapshot_header(next_gen, len, crc))?;
    Ok(SNAPSHOT_HEADER as u64 + len)
}

fn decode_snapshot(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    if bytes.get(..8) != Some(SNAPSHOT_MAGIC) {
        return Err("not an Ember snapshot (bad magic)".into());
    }
    let version = u32_at(bytes, 8).ok_or("truncated header")?;
    if version != SNAPSHOT_VERSION {
        return Err(format!("snapshot format {version} is not supported"));
    }
    let next_gen = u64_at(bytes, 12).ok_or("truncated header")?;
    let len = u64_at(bytes, 20).ok_or("truncated header")?;
    let crc = u32_at(bytes, 28).ok_or("truncated header")?;
    let body = bytes
        .get(SNAPSHOT_HEADER..)
        .filter(|b| b.len() as u64 == len)
        .ok_or_else(|| {
            format!(
                "truncated: {} of {len} bytes",
                bytes.len().saturating_sub(SNAPSHOT_HEADER)
            )
        })?;
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch (corrupt)".into());
    }
    Ok((next_gen, body))
}

impl Persister {
    /// Recovers the store from `disk` (or starts empty) and opens a new log generation.
    /// Never fails: whatever cannot be read is reported in the returned status's `recovery`.
    pub fn open(disk: Box<dyn Disk>, config: StoreConfig) -> (Persister, Store) {
        let mut recovery = Recovery::default();
        let mut store = None;
        let mut next_gen = 0;
        match disk.read(SNAPSHOT) {
            Ok(bytes) => match decode_snapshot(&bytes) {
                Ok((gen, body)) => match Store::from_bytes(config.clone(), body) {
                    Ok(s) => {
                        store = Some(s);
                        next_gen = gen;
                        recovery.snapshot_loaded = true;
                    }
                    Err(e) => recovery
                        .problems
                        .push(format!("{SNAPSHOT}: does not decode ({e}); ignored")),
                },
                Err(e) => recovery.problems.push(format!("{SNAPSHOT}: {e}; ignored")),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => recovery
                .problems
                .push(format!("{SNAPSHOT}: cannot read ({e}); ignored")),
        }
        let mut store = store.unwrap_or_else(|| Store::new(config));
        let mut gens: Vec<u64> = match disk.list() {
            Ok(names) => names.iter().filter_map(|n| wal_gen(n)).collect(),
            Err(e) => {
                recovery
                    .problems
                    .push(format!("cannot list the data directory: {e}"));
                Vec::new()
            }
        };
        gens.sort_unstable();
        let mut disk = disk;
        let mut last_gen = next_gen;
        for gen in gens {
            let name = wal_name(gen);
            if gen < next_gen {
                // Already in the snapshot: left over from a removal that did not finish.
                let _ = disk.remove(&name);
                continue;
            }
            last_gen = last_gen.max(gen + 1);
            let bytes = match disk.read(&name) {
                Ok(b) => b,
                Err(e) => {
                    recovery
                        .problems
                        .push(format!("{name}: cannot read ({e}); skipped"));
                    continue;
                }
            };
            let (records, valid) = decode_records(&bytes);
            for r in &records {
                // Everything in the log was accepted once; replaying it rebuilds the same state.
                let _ = store.ingest(r.topic, r.payload, r.now_ms);
                recovery.wal_records += 1;
            }
            if valid < bytes.len() {
                recovery.problems.push(format!(
                    "{name}: {} bytes after offset {valid} are not whole, valid records \
                     (torn write or corruption); {} records before them were recovered",
                    bytes.len() - valid,
                    records.len()
                ));
            }
        }
        store.drain_events();
        let status = PersistStatus {
            ok: true,
            recovery,
            ..PersistStatus::default()
        };
        (
            Persister {
                disk,
                gen: last_gen,
                wal_len: 0,
                pending: Vec::new(),
                status: Arc::new(Mutex::new(status)),
                writer: None,
            },
            store,
        )
    }

    /// The shared status.
    pub fn status(&self) -> Arc<Mutex<PersistStatus>> {
        self.status.clone()
    }

    fn with_status(&self, f: impl FnOnce(&mut PersistStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Logs one message the store accepted (duplicates are not logged).
    pub fn record(&mut self, now_ms: u64, topic: &str, payload: &[u8], accepted: Accepted) {
        if accepted == Accepted::Duplicate {
            return;
        }
        if self.pending.len() > MAX_PENDING {
            self.with_status(|s| s.dropped_records += 1);
            return;
        }
        encode_record(&mut self.pending, now_ms, topic, payload);
    }

    /// Writes what is pending to the log. On failure the log is cut back to its last whole
    /// record and the bytes stay pending for the next try.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let name = wal_name(self.gen);
        match self.disk.append(&name, &self.pending) {
            Ok(()) => {
                self.wal_len += self.pending.len() as u64;
                self.pending.clear();
                let was_failing = !self.status.lock().map(|s| s.ok).unwrap_or(true);
                if was_failing {
                    tracing::info!("writing the history log works again");
                }
                self.with_status(|s| {
                    s.ok = true;
                    s.last_error = None;
                    s.pending_bytes = 0;
                });
            }
            Err(e) => {
                let _ = self.disk.truncate(&name, self.wal_len);
                self.failed(&format!("writing {name}: {e}"));
            }
        }
    }

    fn failed(&self, error: &str) {
        let pending = self.pending.len() as u64;
        let first = self.status.lock().map(|s| s.ok).unwrap_or(false);
        if first {
            tracing::error!("{error}; the collector keeps serving from memory and retries");
        }
        self.with_status(|s| {
            s.ok = false;
            s.last_error = Some(error.to_string());
            s.write_errors += 1;
            s.pending_bytes = pending;
        });
    }

    /// Makes the log durable.
    pub fn sync(&mut self) {
        if self.wal_len == 0 {
            return;
        }
        let name = wal_name(self.gen);
        if let Err(e) = self.disk.sync(&name) {
            self.failed(&format!("syncing {name}: {e}"));
        }
    }

    /// Whether a snapshot is being written.
    pub fn snapshot_running(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// Starts a snapshot of `store` as it is now, serialised and written in the background
    /// (the caller's hold of the store's lock is a few milliseconds: see [`Store::image`]).
    /// Skipped while the previous one is still being written or while the log cannot be
    /// written.
    pub fn snapshot(&mut self, store: &Store) {
        if self.snapshot_running() {
            return;
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.flush();
        if !self.pending.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let image = store.image();
        self.gen += 1;
        self.wal_len = 0;
        let next_gen = self.gen;
        let mut disk = self.disk.handle();
        let status = self.status.clone();
        let pause = started.elapsed().as_micros() as u64;
        self.with_status(|s| s.snapshot_pause_us = pause);
        let spawned = std::thread::Builder::new()
            .name("ember-snapshot".into())
            .spawn(move || {
                let set = |f: &dyn Fn(&mut PersistStatus)| {
                    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()))
                };
                // Streamed to the file a host at a time: never whole in memory.
                let mut image = Some(image);
                let mut len = 0;
                let written = disk
                    .write_atomic_with(SNAPSHOT, &mut |w| {
                        let image = image.take().ok_or_else(|| {
                            io::Error::other("the snapshot's image was already written")
                        })?;
                        len = write_snapshot(w, next_gen, |body| image.write_to(body))?;
                        Ok(())
                    })
                    .map(|()| len)
                    .map_err(|e| format!("writing {SNAPSHOT}: {e}"));
                // The hosts ingest changed while the image held them were copied (see
                // `Store::image`); those copies are freed now: their pages go back at once,
                // not at the next periodic trim. At 10,000 agents x 1 Hz they were 20 to 30
                // MiB (issue #9).
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                crate::trim_heap();
                match written {
                    Ok(len) => {
                        if let Ok(names) = disk.list() {
                            for n in names {
                                if wal_gen(&n).is_some_and(|g| g < next_gen) {
                                    let _ = disk.remove(&n);
                                }
                            }
                        }
                        let took = started.elapsed().as_millis() as u64;
                        set(&|s| {
                            s.snapshots += 1;
                            s.snapshot_bytes = len;
                            s.snapshot_write_ms = took;
                        });
                    }
                    Err(error) => {
                        tracing::error!("{error}; the log is kept");
                        set(&|s| {
                            s.ok = false;
                            s.last_error = Some(error.clone());
                            s.write_errors += 1;
                        });
                    }
                }
            });
        match spawned {
            Ok(h) => self.writer = Some(h),
            Err(e) => self.failed(&format!("starting the snapshot thread: {e}")),
        }
    }

    /// Waits for a running snapshot to be written.
    pub fn wait(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Files in memory with a size quota: what the tests use to fill a disk.
#[derive(Clone, Default)]
pub struct MemDisk {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    quota: Arc<Mutex<usize>>,
}

impl MemDisk {
    /// Empty, with room for `quota` bytes.
    pub fn new(quota: usize) -> Self {
        MemDisk {
            files: Arc::default(),
            quota: Arc::new(Mutex::new(quota)),
        }
    }

    /// Changes the room.
    pub fn set_quota(&self, quota: usize) {
        *self.quota.lock().unwrap() = quota;
    }

    /// A file's bytes, to damage them.
    pub fn with_file<T>(&self, name: &str, f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
        f(self
            .files
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default())
    }

    /// The names present.
    pub fn names(&self) -> Vec<String> {
        self.files.lock().unwrap().keys().cloned().collect()
    }

    fn room(&self, files: &BTreeMap<String, Vec<u8>>) -> usize {
        let used: usize = files.values().map(Vec::len).sum();
        self.quota.lock().unwrap().saturating_sub(used)
    }
}

fn full() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl Disk for MemDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.names())
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.files
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut files = self.files.lock().unwrap();
        let room = self.room(&files);
        let f = files.entry(name.to_string()).or_default();
        // Like a real full disk: part of the write may land.
        f.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if bytes.len() > room {
            return Err(full());
        }
        Ok(())
    }
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        if let Some(f) = self.files.lock().unwrap().get_mut(name) {
            f.truncate(len as usize);
        }
        Ok(())
    }
    fn sync(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn write_atomic_with(
        &mut self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn SeekWrite) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut w = io::Cursor::new(Vec::new());
        fill(&mut w)?;
        let bytes = w.into_inner();
        let mut files = self.files.lock().unwrap();
        let old = files.get(name).map(Vec::len).unwrap_or(0);
        if bytes.len() > self.room(&files) + old {
            return Err(full());
        }
        files.insert(name.to_string(), bytes);
        Ok(())
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.files.lock().unwrap().remove(name);
        Ok(())
    }
    fn handle(&self) -> Box<dyn Disk> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StatusConfig, Tier};
    use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};
    use std::time::Duration;

    fn config() -> StoreConfig {
        StoreConfig {
            raw_samples: 1000,
            tiers: vec![Tier {
                resolution: Duration::from_secs(60),
                retention: Duration::from_secs(3600),
            }],
            max_payload: 4096,
            status: StatusConfig {
                stale_after: Duration::from_secs(3),
                stale_intervals: 3,
                offline_after: Duration::from_secs(60),
            },
            spill: None,
        }
    }

    fn sample(seq: u64) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let s = Sample {
            seq,
            timestamp_ms: seq * 1000,
            ..Sample::default()
        };
        Envelope::new(HostId::new("pi").unwrap(), Message::Sample(s))
            .encode(&mut buf)
            .unwrap()
            .to_vec()
    }

    /// Ingests `range` through the store and the log, flushing after each.
    fn feed(p: &mut Persister, s: &mut Store, range: std::ops::RangeInclusive<u64>) {
        for seq in range {
            let payload = sample(seq);
            let a = s
                .ingest("ember/v1/pi/sample", &payload, seq * 1000)
                .unwrap();
            p.record(seq * 1000, "ember/v1/pi/sample", &payload, a);
            p.flush();
        }
    }

    fn seqs(s: &Store) -> Vec<u64> {
        s.samples(&HostId::new("pi").unwrap(), None, usize::MAX)
            .unwrap_or_default()
            .iter()
            .map(|x| x.seq)
            .collect()
    }

    #[test]
    fn records_round_trip_and_stop_at_damage() {
        let mut b = Vec::new();
        encode_record(&mut b, 7, "a/b", b"xyz");
        encode_record(&mut b, 8, "c", b"");
        let whole = b.len();
        let (r, valid) = decode_records(&b);
        assert_eq!(valid, whole);
        assert_eq!(
            r,
            [
                Record {
                    now_ms: 7,
                    topic: "a/b",
                    payload: b"xyz"
                },
                Record {
                    now_ms: 8,
                    topic: "c",
                    payload: b""
                }
            ]
        );
        for cut in 0..whole {
            let (r, valid) = decode_records(&b[..cut]);
            assert!(valid <= cut && r.len() <= 1);
        }
        let mut flipped = b.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_records(&flipped).0.len(), 1);
    }

    /// A snapshot streamed to a file is the store's bytes behind a header that checks them,
    /// and a write that fails half-way leaves the file before it.
    #[test]
    fn a_streamed_snapshot_is_the_store_whole_or_not_at_all() {
        let mut st = Store::new(config());
        for seq in 1..=300 {
            st.ingest("ember/v1/pi/sample", &sample(seq), seq * 1000)
                .unwrap();
        }
        let body = st.to_bytes_after(0).unwrap();
        let dir = std::env::temp_dir().join(format!("ember-persist-stream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut disk = DirDisk::new(dir.clone());
        let mut len = 0;
        disk.write_atomic_with(SNAPSHOT, &mut |w| {
            len = write_snapshot(w, 9, |b| st.image().write_to(b))?;
            Ok(())
        })
        .unwrap();
        let file = disk.read(SNAPSHOT).unwrap();
        assert_eq!(file.len() as u64, len);
        assert_eq!(decode_snapshot(&file).unwrap(), (9, &body[..]));

        // A write that fails after part of the body: the old snapshot stays, no tmp is left.
        let failed = disk.write_atomic_with(SNAPSHOT, &mut |w| {
            write_snapshot(w, 10, |b| {
                b.write_all(&body[..body.len() / 2])?;
                Err(io::Error::other("disk full"))
            })
            .map(|_| ())
        });
        assert!(failed.is_err());
        assert_eq!(disk.read(SNAPSHOT).unwrap(), file);
        assert_eq!(disk.list().unwrap(), [SNAPSHOT]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_then_snapshot_then_log_recovers_everything() {
        let disk = MemDisk::new(usize::MAX);
        let (mut p, mut s) = Persister::open(Box::new(disk.clone()), config());
        assert_eq!(p.status.lock().unwrap().recovery, Recovery::default());
        feed(&mut p, &mut s, 1..=100);
        p.snapshot(&s);
        p.wait();
        feed(&mut p, &mut s, 101..=150);
        // "Crash": drop without another snapshot.
        drop(p);
        let (p2, s2) = Persister::open(Box::new(disk.clone()), config());
        let rec = p2.status.lock().unwrap().recovery.clone();
        assert!(rec.snapshot_loaded);
        assert_eq!(rec.wal_records, 50);
        assert!(rec.problems.is_empty(), "{rec:?}");
        assert_eq!(seqs(&s2), seqs(&s));
        assert_eq!(s2.stats(), s.stats());
        // The generation before the snapshot was removed.
        let wals = disk.names().iter().filter(|n| wal_gen(n).is_some()).count();
        assert_eq!(wals, 1, "{:?}", disk.names());
    }

    /// The snapshot is written from another thread while ingest goes on: it holds the store as
    /// it was when it started, and what came after is in the next log, once.
    #[test]
    fn ingest_during_a_snapshot_is_logged_not_snapshotted() {
        let disk = MemDisk::new(usize::MAX);
        let (mut p, mut s) = Persister::open(Box::new(disk.clone()), config());
        feed(&mut p, &mut s, 1..=100);
        p.snapshot(&s);
        feed(&mut p, &mut s, 101..=150);
        p.wait();
        feed(&mut p, &mut s, 151..=160);
        drop(p);
        let (p2, s2) = Persister::open(Box::new(disk.clone()), config());
        let rec = p2.status.lock().unwrap().recovery.clone();
        assert!(rec.snapshot_loaded);
        assert_eq!(rec.wal_records, 60);
        assert!(rec.problems.is_empty(), "{rec:?}");
        assert_eq!(seqs(&s2), seqs(&s));
        assert_eq!(s2.stats(), s.stats());
        assert_eq!(s2.to_bytes_after(0).unwrap(), s.to_bytes_after(0).unwrap());
    }

    #[test]
    fn torn_log_tail_is_recovered_as_far_as_valid_and_reported() {
        let disk = MemDisk::new(usize::MAX);
        let (mut p, mut s) = Persister::open(Box::new(disk.clone()), config());
        feed(&mut p, &mut s, 1..=20);
        let name = wal_name(p.gen);
        drop(p);
        // A torn last record, then garbage.
        disk.with_file(&name, |f| {
            let n = f.len();
            f.truncate(n - 3);
            f.extend_from_slice(b"\x00garbage");
        });
        let (_, s2) = Persister::open(Box::new(disk.clone()), config());
        assert_eq!(seqs(&s2), (1..=19).collect::<Vec<_>>());
        let (p3, _) = Persister::open(Box::new(disk), config());
        let rec = p3.status.lock().unwrap().recovery.clone();
        assert_eq!(rec.problems.len(), 1, "{rec:?}");
        assert!(rec.problems[0].contains(&name), "{rec:?}");
    }

    #[test]
    fn corrupt_or_truncated_snapshot_is_reported_and_the_log_still_replays() {
        for damage in [
            (|f: &mut Vec<u8>| f.truncate(f.len() / 2)) as fn(&mut Vec<u8>),
            |f| {
                let i = f.len() - 5;
                f[i] ^= 0xff
            },
            |f| f[0] = b'X',
            |f| f.clear(),
        ] {
            let disk = MemDisk::new(usize::MAX);
            let (mut p, mut s) = Persister::open(Box::new(disk.clone()), config());
            feed(&mut p, &mut s, 1..=10);
            p.snapshot(&s);
            p.wait();
            feed(&mut p, &mut s, 11..=15);
            drop(p);
            disk.with_file(SNAPSHOT, damage);
            let (p2, s2) = Persister::open(Box::new(disk.clone()), config());
            let rec = p2.status.lock().unwrap().recovery.clone();
            assert!(!rec.snapshot_loaded);
            assert_eq!(rec.problems.len(), 1, "{rec:?}");
            assert!(rec.problems[0].starts_with(SNAPSHOT), "{rec:?}");
            // The snapshot's part is lost (its log was removed); the log after it is not.
            assert_eq!(seqs(&s2), (11..=15).collect::<Vec<_>>());
        }
    }

    #[test]
    fn full_disk_is_reported_and_writing_resumes_without_damage() {
        let disk = MemDisk::new(usize::MAX);
        let (mut p, mut s) = Persister::open(Box::new(disk.clone()), config());
        feed(&mut p, &mut s, 1..=10);
        let used: usize = disk
            .names()
            .iter()
            .map(|n| disk.read(n).unwrap().len())
            .sum();
        // Room for half a record more.
        disk.set_quota(used + 30);
        feed(&mut p, &mut s, 11..=20);
        let st = p.status.lock().unwrap().clone();
        assert!(!st.ok);
        assert!(
            st.last_error.as_deref().unwrap().contains("os error 28"),
            "{st:?}"
        );
        assert!(st.write_errors >= 10);
        assert!(st.pending_bytes > 0);
        // A snapshot cannot be taken while the log is failing.
        p.snapshot(&s);
        p.wait();
        assert_eq!(p.status.lock().unwrap().snapshots, 0);
        // Space again: everything pending lands, whole.
        disk.set_quota(usize::MAX);
        p.flush();
        assert!(p.status.lock().unwrap().ok);
        drop(p);
        let (p2, s2) = Persister::open(Box::new(disk.clone()), config());
        assert!(p2.status.lock().unwrap().recovery.problems.is_empty());
        assert_eq!(seqs(&s2), (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn failed_snapshot_keeps_the_log() {
        let disk = MemDisk::new(usize::MAX);
        let (mut p, mut s) = Persister::open(Box::new(disk.clone()), config());
        feed(&mut p, &mut s, 1..=30);
        let used: usize = disk
            .names()
            .iter()
            .map(|n| disk.read(n).unwrap().len())
            .sum();
        disk.set_quota(used + 10);
        p.snapshot(&s);
        p.wait();
        let st = p.status.lock().unwrap().clone();
        assert!(!st.ok && st.snapshots == 0, "{st:?}");
        disk.set_quota(usize::MAX);
        feed(&mut p, &mut s, 31..=40);
        drop(p);
        let (_, s2) = Persister::open(Box::new(disk), config());
        assert_eq!(seqs(&s2), (1..=40).collect::<Vec<_>>());
    }
}
