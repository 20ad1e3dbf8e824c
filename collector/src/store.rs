//! Per-host state and history: the sans-I/O core of ingest. Messages go in as `(topic, payload)`
//! with the current time; nothing here touches a socket, a file or a clock.

use std::collections::{BTreeMap, VecDeque};

use ember_wire::topic::{self, Kind};
use ember_wire::{HostId, HostInfo, Message, Sample, Status};
use serde::Serialize;

/// Why a message was dropped. Each reason has its own counter in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not an Ember topic, or a topic agents do not publish on (commands).
    Topic,
    /// Larger than the configured payload limit.
    Oversized,
    /// The payload did not decode.
    Decode(ember_wire::Error),
    /// The payload's host differs from the topic's: one host speaking for another.
    HostMismatch,
    /// The payload's kind differs from the topic's.
    KindMismatch,
}

/// What happened to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A new sample was stored.
    Sample {
        /// Samples missing before this one, by sequence number.
        missing: u64,
    },
    /// A sample already stored arrived again and was dropped.
    Duplicate,
    /// The host's status changed or was confirmed.
    Status,
    /// The host's inventory was stored.
    Info,
}

/// Collector-wide counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted.
    pub accepted: u64,
    /// Samples dropped as duplicates.
    pub duplicates: u64,
    /// Messages on foreign topics.
    pub rejected_topic: u64,
    /// Messages over the payload limit.
    pub rejected_oversized: u64,
    /// Payloads that did not decode.
    pub rejected_decode: u64,
    /// Payloads whose host or kind disagreed with the topic.
    pub rejected_mismatch: u64,
}

/// A host as the collector knows it.
#[derive(Debug, Default)]
pub struct Host {
    samples: VecDeque<Stored>,
    latest: Option<Sample>,
    info: Option<HostInfo>,
    status: Option<Status>,
    last_seen_ms: u64,
    last_seq: Option<u64>,
    last_timestamp_ms: u64,
    received: u64,
    missing: u64,
    duplicates: u64,
    restarts: u64,
}

/// One stored sample, kept as its compact wire encoding and decoded when read.
#[derive(Debug)]
struct Stored {
    seq: u64,
    payload: Box<[u8]>,
}

/// A host's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    /// Connected and sampling on time.
    Online,
    /// Says it is online, but no sample came for three intervals.
    Stale,
    /// Its agent disconnected (last will) or stopped.
    Offline,
    /// Samples seen but no status message yet.
    Unknown,
}

/// A host's summary for `/api/hosts`.
#[derive(Debug, Serialize)]
pub struct HostSummary<'a> {
    /// Host id.
    pub id: &'a HostId,
    /// Online, stale, offline or unknown.
    pub status: HostStatus,
    /// When anything was last heard from the host, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// The agent's sampling interval, from its status.
    pub interval_ms: Option<u32>,
    /// Samples held in the ring.
    pub samples: usize,
    /// Samples received and stored.
    pub received: u64,
    /// Samples never received (gaps in sequence numbers).
    pub missing: u64,
    /// Samples received twice and dropped.
    pub duplicates: u64,
    /// Times the agent started again (sequence numbers restarted).
    pub restarts: u64,
    /// The newest sample.
    pub latest: Option<&'a Sample>,
    /// The host's inventory.
    pub info: Option<&'a HostInfo>,
}

/// Every host's state and history.
#[derive(Debug)]
pub struct Store {
    hosts: BTreeMap<HostId, Host>,
    capacity: usize,
    max_payload: usize,
    stats: Stats,
}

impl Store {
    /// A store keeping up to `capacity` samples per host and refusing payloads over
    /// `max_payload` bytes.
    pub fn new(capacity: usize, max_payload: usize) -> Self {
        Store {
            hosts: BTreeMap::new(),
            capacity: capacity.max(1),
            max_payload,
            stats: Stats::default(),
        }
    }

    /// Takes in one MQTT message. Bad input is counted and reported, never a panic.
    pub fn ingest(&mut self, topic: &str, payload: &[u8], now_ms: u64) -> Result<Accepted, Reject> {
        let result = self.ingest_inner(topic, payload, now_ms);
        let s = &mut self.stats;
        match result {
            Ok(Accepted::Duplicate) => s.duplicates += 1,
            Ok(_) => s.accepted += 1,
            Err(Reject::Topic) => s.rejected_topic += 1,
            Err(Reject::Oversized) => s.rejected_oversized += 1,
            Err(Reject::Decode(_)) => s.rejected_decode += 1,
            Err(Reject::HostMismatch | Reject::KindMismatch) => s.rejected_mismatch += 1,
        }
        result
    }

    fn ingest_inner(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Accepted, Reject> {
        let (host, kind) = topic::parse(topic).ok_or(Reject::Topic)?;
        if matches!(kind, Kind::Command) {
            return Err(Reject::Topic);
        }
        if payload.len() > self.max_payload {
            return Err(Reject::Oversized);
        }
        let envelope = ember_wire::decode(payload).map_err(Reject::Decode)?;
        if envelope.host != host {
            return Err(Reject::HostMismatch);
        }
        if envelope.message.kind() != kind {
            return Err(Reject::KindMismatch);
        }
        let capacity = self.capacity;
        let entry = self.hosts.entry(host).or_default();
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        match envelope.message {
            Message::Sample(sample) => Ok(entry.push_sample(sample, payload, capacity)),
            Message::Status(status) => {
                entry.status = Some(status);
                Ok(Accepted::Status)
            }
            Message::HostInfo(info) => {
                entry.info = Some(info);
                Ok(Accepted::Info)
            }
            // Results are kept by the command log (a later part); accepted and counted for now.
            Message::CommandResult(_) => Ok(Accepted::Status),
            Message::Command(_) => Err(Reject::Topic),
        }
    }

    /// Collector-wide counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of hosts known.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Every host's summary, ordered by id.
    pub fn summaries(&self, now_ms: u64) -> Vec<HostSummary<'_>> {
        self.hosts
            .iter()
            .map(|(id, h)| h.summary(id, now_ms))
            .collect()
    }

    /// One host's summary.
    pub fn summary(&self, id: &HostId, now_ms: u64) -> Option<HostSummary<'_>> {
        self.hosts
            .get_key_value(id)
            .map(|(id, h)| h.summary(id, now_ms))
    }

    /// Up to `limit` of a host's newest samples with a sequence number above `after_seq`,
    /// oldest first. `None` if the host is unknown.
    pub fn samples(
        &self,
        id: &HostId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Option<Vec<Sample>> {
        let host = self.hosts.get(id)?;
        let newer: Vec<&Stored> = host
            .samples
            .iter()
            .filter(|s| after_seq.is_none_or(|a| s.seq > a))
            .collect();
        let skip = newer.len().saturating_sub(limit);
        Some(
            newer[skip..]
                .iter()
                .filter_map(|s| match ember_wire::decode(&s.payload) {
                    Ok(e) => match e.message {
                        Message::Sample(sample) => Some(sample),
                        _ => None,
                    },
                    Err(_) => None,
                })
                .collect(),
        )
    }
}

impl Host {
    fn push_sample(&mut self, sample: Sample, payload: &[u8], capacity: usize) -> Accepted {
        let mut missing = 0;
        if let Some(last) = self.last_seq {
            if sample.seq <= last {
                // Older sequence number: either the agent restarted (its clock moved on) or
                // this is a copy of something already stored.
                if sample.timestamp_ms > self.last_timestamp_ms && sample.seq == 1 {
                    self.restarts += 1;
                } else {
                    self.duplicates += 1;
                    return Accepted::Duplicate;
                }
            } else {
                missing = sample.seq - last - 1;
            }
        }
        self.missing += missing;
        self.received += 1;
        self.last_seq = Some(sample.seq);
        self.last_timestamp_ms = sample.timestamp_ms;
        if self.samples.len() == capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Stored {
            seq: sample.seq,
            payload: payload.into(),
        });
        self.latest = Some(sample);
        Accepted::Sample { missing }
    }

    fn status(&self, now_ms: u64) -> HostStatus {
        match self.status {
            Some(Status::Offline) => HostStatus::Offline,
            Some(Status::Online { interval_ms }) => {
                let allowed = u64::from(interval_ms).saturating_mul(3).max(3_000);
                if now_ms.saturating_sub(self.last_seen_ms) > allowed {
                    HostStatus::Stale
                } else {
                    HostStatus::Online
                }
            }
            None => HostStatus::Unknown,
        }
    }

    fn summary<'a>(&'a self, id: &'a HostId, now_ms: u64) -> HostSummary<'a> {
        HostSummary {
            id,
            status: self.status(now_ms),
            last_seen_ms: self.last_seen_ms,
            interval_ms: match self.status {
                Some(Status::Online { interval_ms }) => Some(interval_ms),
                _ => None,
            },
            samples: self.samples.len(),
            received: self.received,
            missing: self.missing,
            duplicates: self.duplicates,
            restarts: self.restarts,
            latest: self.latest.as_ref(),
            info: self.info.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{Envelope, MAX_ENCODED_LEN};

    fn id(s: &str) -> HostId {
        HostId::new(s).unwrap()
    }

    fn enc(host: &str, message: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        Envelope::new(id(host), message)
            .encode(&mut buf)
            .unwrap()
            .to_vec()
    }

    fn sample(host: &str, seq: u64, ts: u64) -> Vec<u8> {
        enc(
            host,
            Message::Sample(Sample {
                seq,
                timestamp_ms: ts,
                ..Sample::default()
            }),
        )
    }

    const T: &str = "ember/v1/pi/sample";

    #[test]
    fn stores_samples_in_order_and_rings_over() {
        let mut s = Store::new(3, 4096);
        for seq in 1..=5 {
            assert_eq!(
                s.ingest(T, &sample("pi", seq, seq * 1000), seq * 1000),
                Ok(Accepted::Sample { missing: 0 })
            );
        }
        let got: Vec<u64> = s
            .samples(&id("pi"), None, 10)
            .unwrap()
            .iter()
            .map(|x| x.seq)
            .collect();
        assert_eq!(got, [3, 4, 5]);
        let got: Vec<u64> = s
            .samples(&id("pi"), Some(3), 10)
            .unwrap()
            .iter()
            .map(|x| x.seq)
            .collect();
        assert_eq!(got, [4, 5]);
        let got: Vec<u64> = s
            .samples(&id("pi"), None, 1)
            .unwrap()
            .iter()
            .map(|x| x.seq)
            .collect();
        assert_eq!(got, [5]);
        assert_eq!(s.samples(&id("other"), None, 10), None);
    }

    #[test]
    fn gaps_duplicates_and_restarts() {
        let mut s = Store::new(100, 4096);
        s.ingest(T, &sample("pi", 1, 1000), 1000).unwrap();
        assert_eq!(
            s.ingest(T, &sample("pi", 4, 4000), 4000),
            Ok(Accepted::Sample { missing: 2 })
        );
        assert_eq!(
            s.ingest(T, &sample("pi", 4, 4000), 4001),
            Ok(Accepted::Duplicate)
        );
        assert_eq!(
            s.ingest(T, &sample("pi", 2, 2000), 4002),
            Ok(Accepted::Duplicate)
        );
        // The agent restarted: seq 1 again, later timestamp.
        assert_eq!(
            s.ingest(T, &sample("pi", 1, 9000), 9000),
            Ok(Accepted::Sample { missing: 0 })
        );
        let h = s.summary(&id("pi"), 9000).unwrap();
        assert_eq!(
            (h.received, h.missing, h.duplicates, h.restarts),
            (3, 2, 2, 1)
        );
        assert_eq!(s.stats().duplicates, 2);
    }

    #[test]
    fn bad_input_is_counted_and_changes_nothing() {
        let mut s = Store::new(10, 64);
        assert_eq!(
            s.ingest("other/topic", &sample("pi", 1, 1), 1),
            Err(Reject::Topic)
        );
        assert_eq!(
            s.ingest("ember/v1/pi/cmd", &sample("pi", 1, 1), 1),
            Err(Reject::Topic)
        );
        assert_eq!(s.ingest(T, &[0u8; 65], 1), Err(Reject::Oversized));
        assert_eq!(
            s.ingest(T, &[], 1),
            Err(Reject::Decode(ember_wire::Error::Truncated))
        );
        assert_eq!(
            s.ingest(T, &[9, 2, b'p', b'i'], 1),
            Err(Reject::Decode(ember_wire::Error::UnsupportedVersion(9)))
        );
        // Another host's sample on pi's topic: spoofing.
        assert_eq!(
            s.ingest(T, &sample("evil", 1, 1), 1),
            Err(Reject::HostMismatch)
        );
        // A status on the sample topic.
        let status = enc("pi", Message::Status(Status::Offline));
        assert_eq!(s.ingest(T, &status, 1), Err(Reject::KindMismatch));
        assert_eq!(s.host_count(), 0);
        let st = s.stats();
        assert_eq!(
            (
                st.accepted,
                st.rejected_topic,
                st.rejected_oversized,
                st.rejected_decode,
                st.rejected_mismatch
            ),
            (0, 2, 1, 2, 2)
        );
    }

    #[test]
    fn status_online_stale_offline() {
        let mut s = Store::new(10, 4096);
        s.ingest(T, &sample("pi", 1, 1000), 1000).unwrap();
        assert_eq!(
            s.summary(&id("pi"), 1000).unwrap().status,
            HostStatus::Unknown
        );
        let online = enc("pi", Message::Status(Status::Online { interval_ms: 1000 }));
        s.ingest("ember/v1/pi/status", &online, 1000).unwrap();
        assert_eq!(
            s.summary(&id("pi"), 3500).unwrap().status,
            HostStatus::Online
        );
        assert_eq!(
            s.summary(&id("pi"), 4001).unwrap().status,
            HostStatus::Stale
        );
        let offline = enc("pi", Message::Status(Status::Offline));
        s.ingest("ember/v1/pi/status", &offline, 5000).unwrap();
        assert_eq!(
            s.summary(&id("pi"), 5000).unwrap().status,
            HostStatus::Offline
        );
    }
}
