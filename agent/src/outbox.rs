//! Store-and-forward: the samples the broker has not acknowledged yet.
//!
//! rumqttc forgets its queue when a connection ends without a session, so the agent keeps its
//! own: every encoded sample stays here from the moment it is taken until its PUBACK arrives.
//! Storage is one byte ring allocated at start (variable-length records) plus a fixed-capacity
//! index; nothing grows afterwards. When either is full the oldest sample is dropped and counted.
//!
//! Sans-I/O: the publisher calls [`Outbox::push`], [`Outbox::next_unsent`], [`Outbox::sent`],
//! [`Outbox::acked`] and [`Outbox::rewind`]; tests drive the same calls.

use std::collections::VecDeque;

/// Bytes reserved per sample slot: a Raspberry Pi's sample encodes to about 200 bytes, the
/// largest possible to `ember_wire::MAX_ENCODED_LEN`.
pub const BYTES_PER_SLOT: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Record {
    seq: u64,
    start: usize,
    len: usize,
    sent: bool,
    acked: bool,
}

/// The agent's send buffer.
#[derive(Debug)]
pub struct Outbox {
    bytes: Box<[u8]>,
    records: VecDeque<Record>,
    capacity: usize,
    /// Where the next record's bytes go.
    head: usize,
    dropped: u32,
}

impl Outbox {
    /// Room for `capacity` samples (and `capacity * BYTES_PER_SLOT` bytes of them).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Outbox {
            bytes: vec![0; capacity * BYTES_PER_SLOT].into_boxed_slice(),
            records: VecDeque::with_capacity(capacity),
            capacity,
            head: 0,
            dropped: 0,
        }
    }

    /// Samples waiting (sent or not) for an acknowledgement.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Samples dropped because the buffer was full, since start.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Keeps an encoded sample, dropping the oldest ones if there is no room. A payload larger
    /// than the whole buffer is refused (dropped and counted).
    pub fn push(&mut self, seq: u64, payload: &[u8]) {
        let len = payload.len();
        if len > self.bytes.len() {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        // Records are contiguous: wrap to 0 when the tail of the ring is too short.
        let start = if self.head + len > self.bytes.len() {
            0
        } else {
            self.head
        };
        while self.records.len() == self.capacity || self.overlaps_live(start, len) {
            if self.records.pop_front().is_some() {
                self.dropped = self.dropped.saturating_add(1);
            }
        }
        self.bytes[start..start + len].copy_from_slice(payload);
        self.head = start + len;
        self.records.push_back(Record {
            seq,
            start,
            len,
            sent: false,
            acked: false,
        });
    }

    /// Whether `[start, start + len)` holds bytes of a kept record. The ring is written in
    /// order, so such records are always the oldest ones.
    fn overlaps_live(&self, start: usize, len: usize) -> bool {
        let end = start + len;
        self.records
            .iter()
            .any(|r| r.start < end && start < r.start + r.len)
    }

    /// The oldest sample not yet handed to the network, if any.
    pub fn next_unsent(&self) -> Option<(u64, &[u8])> {
        self.records
            .iter()
            .find(|r| !r.sent && !r.acked)
            .map(|r| (r.seq, &self.bytes[r.start..r.start + r.len]))
    }

    /// Marks `seq` as handed to the network.
    pub fn sent(&mut self, seq: u64) {
        if let Some(r) = self.records.iter_mut().find(|r| r.seq == seq) {
            r.sent = true;
        }
    }

    /// The broker acknowledged `seq`: forget it (and everything acknowledged before it).
    pub fn acked(&mut self, seq: u64) {
        if let Some(r) = self.records.iter_mut().find(|r| r.seq == seq) {
            r.acked = true;
        }
        while self.records.front().is_some_and(|r| r.acked) {
            self.records.pop_front();
        }
    }

    /// The connection ended: everything not acknowledged must be sent again, oldest first.
    pub fn rewind(&mut self) {
        for r in &mut self.records {
            r.sent = false;
        }
    }

    /// Every sample not acknowledged, oldest first (what the spool keeps at stop).
    pub fn unacked(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.records
            .iter()
            .filter(|r| !r.acked)
            .map(|r| (r.seq, &self.bytes[r.start..r.start + r.len]))
    }

    /// Samples handed to the network and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.records.iter().filter(|r| r.sent && !r.acked).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (seq as usize + i) as u8).collect()
    }

    fn send_all(o: &mut Outbox) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some((seq, bytes)) = o.next_unsent() {
            assert_eq!(
                bytes,
                payload(seq, bytes.len()).as_slice(),
                "bytes of {seq} intact"
            );
            sent.push(seq);
            o.sent(seq);
        }
        sent
    }

    #[test]
    fn sends_in_order_and_forgets_what_is_acked() {
        let mut o = Outbox::new(10);
        for seq in 1..=5 {
            o.push(seq, &payload(seq, 200));
        }
        assert_eq!(send_all(&mut o), [1, 2, 3, 4, 5]);
        assert_eq!(o.in_flight(), 5);
        o.acked(1);
        o.acked(2);
        assert_eq!(o.len(), 3);
        assert_eq!(o.next_unsent(), None);
    }

    #[test]
    fn rewind_resends_everything_unacked_oldest_first() {
        let mut o = Outbox::new(10);
        for seq in 1..=6 {
            o.push(seq, &payload(seq, 100));
        }
        send_all(&mut o);
        o.acked(1);
        o.acked(3); // out of order: 2 still outstanding
        o.rewind();
        assert_eq!(send_all(&mut o), [2, 4, 5, 6]);
        o.acked(2);
        assert_eq!(o.len(), 3, "3 was acked earlier and goes with 2");
    }

    #[test]
    fn full_by_count_drops_the_oldest_and_counts() {
        let mut o = Outbox::new(3);
        for seq in 1..=5 {
            o.push(seq, &payload(seq, 50));
        }
        assert_eq!(o.dropped(), 2);
        assert_eq!(send_all(&mut o), [3, 4, 5]);
    }

    #[test]
    fn full_by_bytes_drops_the_oldest_and_keeps_bytes_intact() {
        // 4 slots = 2048 bytes; 700-byte samples: only two fit at once.
        let mut o = Outbox::new(4);
        for seq in 1..=7 {
            o.push(seq, &payload(seq, 700));
            assert!(o.len() <= 2, "after {seq}: {}", o.len());
        }
        assert_eq!(o.dropped(), 5);
        assert_eq!(send_all(&mut o), [6, 7]);
    }

    #[test]
    fn wraps_around_many_times_without_growing() {
        let mut o = Outbox::new(8);
        let ptr = o.bytes.as_ptr();
        for seq in 1..=10_000u64 {
            o.push(seq, &payload(seq, 150 + (seq % 300) as usize));
            if seq % 3 == 0 {
                for s in send_all(&mut o) {
                    o.acked(s);
                }
            }
        }
        assert_eq!(o.bytes.as_ptr(), ptr, "the ring was never reallocated");
        assert!(o.records.capacity() >= 8 && o.records.len() <= 8);
    }

    #[test]
    fn an_impossible_payload_is_dropped_and_counted() {
        let mut o = Outbox::new(1);
        o.push(1, &vec![0; BYTES_PER_SLOT + 1]);
        assert_eq!((o.len(), o.dropped()), (0, 1));
    }
}
