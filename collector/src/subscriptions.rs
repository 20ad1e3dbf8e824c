//! What one MQTT connection may subscribe to at once and how fast (issue #20), in open mode as
//! with accounts.
//!
//! rumqttd gives every filter a log of its own (with room reserved for 1,024 records) and scans
//! its whole retained table, on the router thread, for each new subscription (with the bridge,
//! `#` makes every host's JSON state). One client with 20,000 filters cost 122 MiB in open mode.
//! So the gate keeps, per connection, the set of distinct filters it holds:
//!
//! - at most `mqtt.max-subscriptions` (100): a SUBSCRIBE that would take the connection above
//!   that is not relayed; with accounts the gate answers it with a SUBACK of 0x80 for each of
//!   its filters, in open mode (where the gate relays bytes and cannot answer in the middle of
//!   the broker's stream) it closes the connection; both counted in `refused_subscriptions`;
//! - SUBSCRIBE and UNSUBSCRIBE go on at [`FILTERS_PER_SECOND`] filters a second, with a burst
//!   of the cap: above that the gate stops reading from the client until the rate allows
//!   (nothing is refused, the client's TCP window fills).
//!
//! [`Subscriptions`] is plain code with the time passed in; [`Subscriptions::admit`] adds the
//! wait.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{SubAck, Subscribe, SubscribeReasonCode, Unsubscribe};
use rumqttc::mqttbytes::{FixedHeader, PacketType};

use crate::access::TokenBucket;

/// Filters a second a connection may subscribe to or unsubscribe from, on average.
pub const FILTERS_PER_SECOND: u32 = 20;

/// One connection's filters and its SUBSCRIBE/UNSUBSCRIBE rate.
#[derive(Debug)]
pub struct Subscriptions {
    filters: HashSet<Box<str>>,
    cap: usize,
    bucket: TokenBucket,
}

/// A SUBSCRIBE or UNSUBSCRIBE, read.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    /// Its packet id and filters.
    Subscribe(u16, Vec<String>),
    /// Its filters.
    Unsubscribe(Vec<String>),
}

impl Control {
    /// Reads a SUBSCRIBE or UNSUBSCRIBE frame; `Ok(None)` for any other packet.
    pub fn read(header: FixedHeader, frame: &Bytes) -> Result<Option<Self>, String> {
        let kind = header.packet_type().map_err(|e| e.to_string())?;
        if !matches!(kind, PacketType::Subscribe | PacketType::Unsubscribe) {
            return Ok(None);
        }
        // A packet id and at least one filter's length (rumqttc's UNSUBSCRIBE reader would
        // underflow on less). The fixed header is the type byte and 1 to 4 length bytes.
        let length_bytes = frame[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
        let remaining = frame.len().saturating_sub(1 + length_bytes);
        if remaining < 4 {
            return Err(format!("{kind:?} of {remaining} bytes"));
        }
        let control = if kind == PacketType::Subscribe {
            let s = Subscribe::read(header, frame.clone()).map_err(|e| e.to_string())?;
            Control::Subscribe(s.pkid, s.filters.into_iter().map(|f| f.path).collect())
        } else {
            let u = Unsubscribe::read(header, frame.clone()).map_err(|e| e.to_string())?;
            Control::Unsubscribe(u.topics)
        };
        Ok(Some(control))
    }

    fn filters(&self) -> &[String] {
        match self {
            Control::Subscribe(_, f) | Control::Unsubscribe(f) => f,
        }
    }
}

impl Subscriptions {
    /// No filter yet; at most `cap` at once.
    pub fn new(cap: usize, now: Instant) -> Self {
        let cap = cap.max(1);
        Subscriptions {
            filters: HashSet::new(),
            cap,
            bucket: TokenBucket::new(
                FILTERS_PER_SECOND,
                u32::try_from(cap).unwrap_or(u32::MAX),
                now,
            ),
        }
    }

    /// Filters held now.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Takes the rate's room for a packet of `n` filters: `Err` says how long until there is.
    pub fn take(&mut self, n: usize, now: Instant) -> Result<(), Duration> {
        let n = u32::try_from(n.clamp(1, self.cap)).unwrap_or(u32::MAX);
        self.bucket.take_many(n, now)
    }

    /// Counts `control`'s filters: `false` for a SUBSCRIBE that would take the connection
    /// above the cap (then none of them is counted).
    pub fn apply(&mut self, control: &Control) -> bool {
        match control {
            Control::Subscribe(_, filters) => {
                let new: HashSet<&str> = filters
                    .iter()
                    .map(String::as_str)
                    .filter(|f| !self.filters.contains(*f))
                    .collect();
                if self.filters.len() + new.len() > self.cap {
                    return false;
                }
                self.filters.extend(new.into_iter().map(Box::from));
                true
            }
            Control::Unsubscribe(filters) => {
                for f in filters {
                    self.filters.remove(f.as_str());
                }
                true
            }
        }
    }

    /// Waits out the rate for `control`, then counts it: `None`, relay it; `Some`, a SUBSCRIBE
    /// over the cap, not to be relayed: the SUBACK that refuses each of its filters.
    pub async fn admit(&mut self, control: Control) -> Option<BytesMut> {
        while let Err(wait) = self.take(control.filters().len(), Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        if self.apply(&control) {
            return None;
        }
        let Control::Subscribe(pkid, filters) = control else {
            return None;
        };
        let mut out = BytesMut::new();
        let codes = vec![SubscribeReasonCode::Failure; filters.len()];
        let _ = SubAck::new(pkid, codes).write(&mut out);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::QoS;

    fn subscribe(filters: &[&str]) -> Control {
        Control::Subscribe(7, filters.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn the_cap_counts_distinct_filters_and_unsubscribing_frees_room() {
        let t = Instant::now();
        let mut s = Subscriptions::new(3, t);
        assert!(s.apply(&subscribe(&["a", "b"])));
        // Again: nothing new.
        assert!(s.apply(&subscribe(&["a", "b", "b"])));
        assert_eq!(s.len(), 2);
        // Over the cap: refused whole.
        assert!(!s.apply(&subscribe(&["c", "d"])));
        assert_eq!(s.len(), 2);
        assert!(s.apply(&subscribe(&["c", "a"])));
        assert!(!s.apply(&subscribe(&["d"])));
        assert!(s.apply(&Control::Unsubscribe(vec!["a".into(), "zz".into()])));
        assert!(s.apply(&subscribe(&["d"])));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn the_rate_allows_the_cap_at_once_then_filters_per_second() {
        let t = Instant::now();
        let mut s = Subscriptions::new(100, t);
        s.take(100, t).unwrap();
        let wait = s.take(10, t).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_millis(500),
            "10 filters at 20 a second"
        );
        s.take(10, t + Duration::from_millis(500)).unwrap();
        // A packet of more filters than the cap waits for the cap's worth, not for ever.
        let later = t + Duration::from_secs(60);
        s.take(100_000, later).unwrap();
        assert!(s.take(1, later).is_err());
    }

    #[test]
    fn subscribe_and_unsubscribe_frames_are_read_and_bad_ones_refused() {
        let frame = |write: &dyn Fn(&mut BytesMut)| {
            let mut b = BytesMut::new();
            write(&mut b);
            let header = rumqttc::mqttbytes::check(b.iter(), 1 << 20).unwrap();
            (header, b.freeze())
        };
        let (h, f) = frame(&|b| {
            let mut s = Subscribe::new("ember/v1/+/status", QoS::AtMostOnce);
            s.pkid = 9;
            s.add("ember/v1/pi/cmd".into(), QoS::AtLeastOnce);
            s.write(b).unwrap();
        });
        assert_eq!(
            Control::read(h, &f).unwrap(),
            Some(Control::Subscribe(
                9,
                vec!["ember/v1/+/status".into(), "ember/v1/pi/cmd".into()]
            ))
        );
        let (h, f) = frame(&|b| {
            let mut u = Unsubscribe::new("a/b");
            u.pkid = 3;
            u.write(b).unwrap();
        });
        assert_eq!(
            Control::read(h, &f).unwrap(),
            Some(Control::Unsubscribe(vec!["a/b".into()]))
        );
        // Too short for a packet id and a filter, or a filter longer than the packet.
        for bad in [&[0xa2u8, 2, 0, 1][..], &[0x82, 5, 0, 1, 0, 9, b'a']] {
            let header = rumqttc::mqttbytes::check(bad.iter(), 1 << 20).unwrap();
            assert!(
                Control::read(header, &Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        let (h, f) = frame(&|b| {
            b.extend_from_slice(&[0xc0, 0]);
        });
        assert_eq!(Control::read(h, &f).unwrap(), None);
    }

    /// Open mode: the scanner hands the relay everything up to a SUBSCRIBE or UNSUBSCRIBE,
    /// however the stream is cut, and counts the publishes around them as [`Scanner::feed`].
    #[test]
    fn the_open_relays_scanner_stops_before_each_subscribe_and_unsubscribe() {
        use crate::gate::{next_frame, Scanner};
        use rumqttc::mqttbytes::v4::Publish;
        let mut stream = BytesMut::new();
        let mut p = Publish::new("ember/v1/pi/sample", QoS::AtLeastOnce, vec![1u8; 300]);
        p.pkid = 1;
        p.write(&mut stream).unwrap();
        let controls = [stream.len()];
        let mut s = Subscribe::new("a/#", QoS::AtMostOnce);
        s.pkid = 2;
        s.write(&mut stream).unwrap();
        let second = stream.len();
        let mut u = Unsubscribe::new("a/#");
        u.pkid = 3;
        u.write(&mut stream).unwrap();
        p.write(&mut stream).unwrap();
        let stream = stream.freeze();
        let whole = Scanner::default().feed(&stream);
        assert_eq!(whole, 2 * (4 + 18 + 300));
        for piece in [1, 2, 7, 100, stream.len()] {
            let mut scanner = Scanner::default();
            let (mut counted, mut at, mut stops) = (0, 0, Vec::new());
            let mut held = BytesMut::new();
            while at < stream.len() {
                let end = (at + piece).min(stream.len());
                let mut data = stream.slice(at..end);
                at = end;
                while !data.is_empty() {
                    if held.is_empty() {
                        let (c, used) = scanner.feed_until_control(&data);
                        counted += c;
                        if used < data.len() {
                            stops.push(end - data.len() + used);
                        }
                        data = data.slice(used..);
                        if data.is_empty() {
                            break;
                        }
                    }
                    held.extend_from_slice(&data);
                    data = Bytes::new();
                    if let Some((h, frame)) = next_frame(&mut held, 1 << 20).unwrap() {
                        assert!(Control::read(h, &frame).unwrap().is_some());
                        data = std::mem::take(&mut held).freeze();
                    }
                }
            }
            assert_eq!(counted, whole, "pieces of {piece}");
            assert_eq!(stops, [controls[0], second], "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn a_subscribe_over_the_cap_is_answered_with_0x80_per_filter() {
        let mut s = Subscriptions::new(1, Instant::now());
        assert_eq!(s.admit(subscribe(&["a"])).await, None);
        let suback = s.admit(subscribe(&["b", "c"])).await.expect("refused");
        assert_eq!(&suback[..], &[0x90, 4, 0, 7, 0x80, 0x80]);
    }
}
