//! Ember: sizes of the router's per-client tables, for tests and the collector's health.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Ember: what the router holds, updated by its thread after every event it handles
/// ([`crate::Broker::gauges`]).
#[derive(Debug, Default)]
pub struct Gauges {
    connections: AtomicUsize,
    saved_sessions: AtomicUsize,
    filters: AtomicUsize,
}

impl Gauges {
    /// Connections registered with the router.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Sessions kept for clients that left (persistent sessions, `Graveyard`).
    pub fn saved_sessions(&self) -> usize {
        self.saved_sessions.load(Ordering::Relaxed)
    }

    /// Filters with a log of their own.
    pub fn filters(&self) -> usize {
        self.filters.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, connections: usize, saved_sessions: usize, filters: usize) {
        self.connections.store(connections, Ordering::Relaxed);
        self.saved_sessions.store(saved_sessions, Ordering::Relaxed);
        self.filters.store(filters, Ordering::Relaxed);
    }
}
