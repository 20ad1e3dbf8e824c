//! File descriptors: the collector holds one per MQTT and HTTP connection, so at start it
//! raises its soft limit to the hard one (a systemd service starts with 1,024 unless the unit
//! says otherwise: too few for a fleet), and `/api/health` reports how many are in use.

use serde::Serialize;

/// Descriptors in use and the limit, for `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Descriptors {
    /// Open now (`/proc/self/fd`); `None` where it cannot be read.
    pub open: Option<u64>,
    /// The soft limit (`RLIMIT_NOFILE`); `None` for unlimited or unknown.
    pub limit: Option<u64>,
}

/// The limit now.
pub fn limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, Resource};
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    None
}

/// Descriptors open now and the limit.
pub fn now() -> Descriptors {
    // The directory's own descriptor, open while it is read, is not counted.
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count().saturating_sub(1) as u64);
    Descriptors {
        open,
        limit: limit(),
    }
}

/// Raises the soft limit on open descriptors to the hard limit; returns the limits before and
/// after. Not fatal when it fails: the collector then serves fewer connections.
pub fn raise_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut l = getrlimit(Resource::Nofile);
        let before = l.current;
        if l.current != l.maximum {
            l.current = l.maximum;
            setrlimit(Resource::Nofile, l)?;
        }
        Ok((before, limit()))
    }
    #[cfg(not(unix))]
    Ok((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_opened_and_raises_to_the_hard_limit() {
        let files: Vec<_> = (0..20)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        // Other tests open and close files meanwhile: at least these 20 are counted.
        assert!(now().open.expect("/proc/self/fd") >= 20, "{:?}", now());
        drop(files);
        let (_, after) = raise_limit().unwrap();
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(after, hard);
        assert_eq!(now().limit, hard);
    }

    /// Issue #20: the packaged unit left the default 1,024 descriptors, too few for a fleet.
    #[test]
    fn issue_20_the_packaged_unit_allows_65536_descriptors() {
        let unit = include_str!("../debian/ember-collector.service");
        assert!(
            unit.lines().any(|l| l.trim() == "LimitNOFILE=65536"),
            "{unit}"
        );
    }
}
