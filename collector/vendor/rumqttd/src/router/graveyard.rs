// Ember: rewritten: the saved sessions are bounded in number and age, and a clean session
// leaves nothing behind (upstream kept an entry, with its connection events, for every client
// id that ever connected, forever: ~650 B each, and a client with an empty id gets a new id
// at each connection).
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{
    scheduler::{PauseReason, Tracker},
    ConnectionEvents,
};

pub struct Graveyard {
    connections: HashMap<String, (u64, Instant, SavedState)>,
    /// Ember: the saved sessions' ids, oldest first, with the number each was saved under (an
    /// entry whose number is no longer its id's is stale and skipped).
    order: VecDeque<(u64, String)>,
    next: u64,
    max: usize,
    expiry: Duration,
    /// Ember: sessions evicted or expired, for the router to let their filters' logs go
    /// (`take_released`).
    released: Vec<SessionState>,
}

impl Graveyard {
    /// Ember: keeps at most `max` sessions, each at most `expiry` after its client left.
    pub fn new(max: usize, expiry: Duration) -> Graveyard {
        Graveyard {
            connections: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            max,
            expiry,
            released: Vec::new(),
        }
    }

    /// Sessions kept.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// Add a new connection.
    /// Return tracker of previous connection if connection id already exists
    pub fn retrieve(&mut self, id: &str) -> Option<SavedState> {
        let (_, saved_at, state) = self.connections.remove(id)?;
        // Ember: an expired session is not restored.
        if saved_at.elapsed() < self.expiry {
            return Some(state);
        }
        self.released.extend(state.session_state);
        None
    }

    /// Ember: the sessions evicted or expired since the last call.
    pub fn take_released(&mut self) -> Vec<SessionState> {
        std::mem::take(&mut self.released)
    }

    /// Save connection tracker. Ember: the sessions evicted to make room or expired go to
    /// `take_released`.
    pub fn save_state(
        &mut self,
        mut tracker: Tracker,
        subscriptions: HashSet<String>,
        metrics: ConnectionEvents,
        unacked_pubrels: VecDeque<u16>,
    ) {
        tracker.pause(PauseReason::Busy);
        let id = tracker.id.clone();

        let session_state = SessionState {
            tracker,
            subscriptions,
            unacked_pubrels,
        };

        let number = self.next;
        self.next += 1;
        self.order.push_back((number, id.clone()));
        let replaced: Vec<SessionState> = self
            .connections
            .insert(
                id,
                (
                    number,
                    Instant::now(),
                    SavedState {
                        session_state: Some(session_state),
                        metrics,
                    },
                ),
            )
            .and_then(|(_, _, old)| old.session_state)
            .into_iter()
            .collect();
        self.released.extend(replaced);
        self.evict();
    }

    /// Ember: drops sessions beyond `max` and those older than `expiry`, oldest first.
    fn evict(&mut self) {
        let evicted = &mut self.released;
        while let Some((number, id)) = self.order.front() {
            let current = self
                .connections
                .get(id)
                .filter(|(n, _, _)| n == number)
                .map(|(_, saved_at, _)| *saved_at);
            match current {
                None => {} // stale: retrieved or saved again since
                Some(saved_at)
                    if self.connections.len() > self.max || saved_at.elapsed() >= self.expiry =>
                {
                    if let Some((_, _, state)) = self.connections.remove(id) {
                        evicted.extend(state.session_state);
                    }
                }
                Some(_) => break,
            }
            self.order.pop_front();
        }
        // Stale entries behind the front: dropped once they are most of the queue.
        if self.order.len() > 2 * self.connections.len() + 64 {
            let connections = &self.connections;
            self.order
                .retain(|(n, id)| connections.get(id).is_some_and(|(m, _, _)| m == n));
        }
    }
}

#[derive(Debug)]
pub struct SavedState {
    pub session_state: Option<SessionState>,
    pub metrics: ConnectionEvents,
}

#[derive(Debug)]
pub struct SessionState {
    pub tracker: Tracker,
    pub subscriptions: HashSet<String>,
    // used for pubrel in qos2
    pub unacked_pubrels: VecDeque<u16>,
}
