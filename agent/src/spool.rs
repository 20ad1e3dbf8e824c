//! The spool: samples the broker had not acknowledged when the agent stopped, kept in a file
//! for the next start (config `spool`; under systemd, `outbox.spool` in the state directory).
//!
//! At stop the agent writes what its outbox still holds, with the next sequence number; at
//! start it puts those samples back into the outbox, ahead of new ones, and its sequence goes
//! on from there, so the collector sees one unbroken sequence and no restart. The file is
//! written once per stop (tmp file, fsync, rename): an SD card sees no writes while the agent
//! runs.
//!
//! Format, little-endian: `b"EMBSPOOL"`, version `u8` (1), next sequence `u64`, count `u32`,
//! then per sample `seq u64, len u16, bytes`, and last the CRC-32 of everything before it. A
//! file that is short, damaged or of another version is reported and set aside, never a panic.

use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"EMBSPOOL";
const VERSION: u8 = 1;
/// Most samples a spool holds (the outbox's largest `buffer`).
const MAX_SAMPLES: usize = 100_000;

/// What a spool file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// The sequence number the next new sample takes.
    pub next_seq: u64,
    /// The samples, oldest first: sequence number and encoded envelope.
    pub samples: Vec<(u64, Vec<u8>)>,
}

/// Why a spool file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// It cannot be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It is not a spool, or is damaged.
    #[error("not a spool file or damaged: {0}")]
    Damaged(&'static str),
    /// Written by another version of the agent.
    #[error("spool version {0}, this agent reads version {VERSION}")]
    Version(u8),
}

/// The file's bytes for `samples` (oldest first) and `next_seq`.
pub fn encode<'a>(next_seq: u64, samples: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&next_seq.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for (seq, bytes) in samples {
        // A sample is at most ember_wire::MAX_ENCODED_LEN bytes; anything longer is not one.
        let Ok(len) = u16::try_from(bytes.len()) else {
            continue;
        };
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a spool file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Spooled, SpoolError> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or(SpoolError::Damaged("too short"))?;
    let (body, crc) = bytes.split_at(body_len);
    if body.len() < MAGIC.len() + 1 + 8 + 4 || &body[..MAGIC.len()] != MAGIC {
        return Err(SpoolError::Damaged("no spool header"));
    }
    let version = body[MAGIC.len()];
    if version != VERSION {
        return Err(SpoolError::Version(version));
    }
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(SpoolError::Damaged("checksum mismatch"));
    }
    let mut rest = &body[MAGIC.len() + 1..];
    let mut take = |n: usize| -> Result<&[u8], SpoolError> {
        if rest.len() < n {
            return Err(SpoolError::Damaged("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let next_seq = u64_at(take(8)?);
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    if count > MAX_SAMPLES {
        return Err(SpoolError::Damaged("too many samples"));
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let seq = u64_at(take(8)?);
        let len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
        samples.push((seq, take(len)?.to_vec()));
    }
    if !rest.is_empty() {
        return Err(SpoolError::Damaged("bytes after the last sample"));
    }
    Ok(Spooled { next_seq, samples })
}

/// Writes `bytes` to `path` whole or not at all: a tmp file beside it, fsync, rename.
pub fn save(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

/// Takes the spool at `path`: its contents, and the file removed (what it held now lives in the
/// outbox). `Ok(None)`: there is none. A file that cannot be used is renamed to `*.bad`
/// (kept for a person to look at) and reported.
pub fn take(path: &Path) -> Result<Option<Spooled>, SpoolError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match decode(&bytes) {
        Ok(s) => {
            std::fs::remove_file(path)?;
            Ok(Some(s))
        }
        Err(e) => {
            let _ = std::fs::rename(path, path.with_extension("bad"));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<(u64, Vec<u8>)> {
        (40..45u64)
            .map(|s| (s, vec![s as u8; 100 + s as usize]))
            .collect()
    }

    #[test]
    fn a_spool_reads_back_what_was_written() {
        let s = samples();
        let bytes = encode(45, s.iter().map(|(q, b)| (*q, b.as_slice())));
        assert_eq!(
            decode(&bytes).unwrap(),
            Spooled {
                next_seq: 45,
                samples: s
            }
        );
        let empty = encode(7, std::iter::empty());
        assert_eq!(decode(&empty).unwrap().samples, []);
    }

    /// Every truncation and every flipped byte is an error, never a panic or a wrong sample.
    #[test]
    fn damaged_spools_are_refused() {
        let s = samples();
        let bytes = encode(45, s.iter().map(|(q, b)| (*q, b.as_slice())));
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            assert!(decode(&bad).is_err(), "byte {i} flipped");
        }
        let mut v2 = bytes.clone();
        v2[MAGIC.len()] = 2;
        assert!(matches!(decode(&v2), Err(SpoolError::Version(2))));
    }

    #[test]
    fn take_removes_a_good_spool_and_sets_a_bad_one_aside() {
        let dir = std::env::temp_dir().join(format!("ember-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.spool");
        assert!(take(&path).unwrap().is_none(), "no spool yet");
        let s = samples();
        save(
            &path,
            &encode(45, s.iter().map(|(q, b)| (*q, b.as_slice()))),
        )
        .unwrap();
        assert_eq!(take(&path).unwrap().unwrap().samples, s);
        assert!(!path.exists(), "taken");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(take(&path).is_err());
        assert!(!path.exists());
        assert!(
            path.with_extension("bad").exists(),
            "kept for a person to look at"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
