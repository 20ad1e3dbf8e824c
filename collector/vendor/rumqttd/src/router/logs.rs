use super::Ack;
use slab::Slab;
use tracing::{info, trace};

use crate::protocol::{
    matches, ConnAck, ConnAckProperties, PingResp, PubAck, PubComp, PubRec, PubRel, Publish,
    PublishProperties, SubAck, UnsubAck,
};
use crate::router::{DataRequest, FilterIdx, SubscriptionMeter, Waiters};
use crate::{ConnectionId, Filter, Offset, RouterConfig, Topic};

use crate::segments::{CommitLog, Position};
use crate::Storage;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Instant;

type PubWithProp = (Publish, Option<PublishProperties>);

#[derive(Clone)]
pub struct PublishData {
    pub publish: Publish,
    pub properties: Option<PublishProperties>,
    pub timestamp: Instant,
    /// Ember: when it was retained, in the order of `DataLog::retained_seq`.
    pub seq: u64,
}

impl From<PubWithProp> for PublishData {
    fn from((publish, properties): PubWithProp) -> Self {
        PublishData {
            publish,
            properties,
            timestamp: Instant::now(),
            seq: 0, // Ember: set by `insert_to_retained_publishes`
        }
    }
}

// TODO: remove this from here
impl Storage for PublishData {
    // TODO: calculate size of publish properties as well!
    fn size(&self) -> usize {
        let publish = &self.publish;
        4 + publish.topic.len() + publish.payload.len()
    }
}

/// Stores 'device' data and 'actions' data in native commitlog
/// organized by subscription filter. Device data is replicated
/// while actions data is not
pub struct DataLog {
    pub config: RouterConfig,
    /// Native commitlog data organized by subscription. Contains
    /// device data and actions data logs.
    ///
    /// Device data is replicated while actions data is not.
    /// Also has waiters used to wake connections/replicator tracker
    /// which are caught up with all the data on 'Filter' and waiting
    /// for new data
    pub native: Slab<Data<PublishData>>,
    /// Map of subscription filter name to filter index
    filter_indexes: HashMap<Filter, FilterIdx>,
    // Ember: boxed; a `PublishData` is a few hundred bytes and the table keeps room for more
    // entries than it holds.
    retained_publishes: HashMap<Topic, Box<PublishData>>,
    /// Ember: retained messages stored so far; the next one's `PublishData::seq`.
    retained_seq: u64,
    /// List of filters associated with a topic
    publish_filters: HashMap<Topic, Vec<FilterIdx>>,
    /// Ember: the filters of `filter_indexes` with a wildcard (`+`, `#`). A topic matches the
    /// others only by being equal to one, which is a lookup; upstream matched every topic
    /// against every filter, and every new filter against every topic ever published, on the
    /// router's thread: with an agent's own `cmd` and `alerts` filters, a fleet connecting
    /// at once cost the router the square of its size.
    wildcards: HashMap<Filter, FilterIdx>,
    /// Ember: whether any retained message ever had an expiry (MQTT 5); until one has, the
    /// table need not be walked to drop expired ones at every subscription.
    retained_expiry: bool,
    /// Ember: retained messages served from elsewhere (`Router::set_retained_source`).
    pub(crate) retained_source: Option<std::sync::Arc<dyn crate::RetainedSource>>,
}

impl DataLog {
    pub fn new(config: RouterConfig) -> io::Result<DataLog> {
        let mut native = Slab::new();
        let mut filter_indexes = HashMap::new();
        let retained_publishes = HashMap::new();
        let publish_filters = HashMap::new();

        if let Some(warmup_filters) = config.initialized_filters.clone() {
            for filter in warmup_filters {
                let mut data = Data::new(&filter, &config);
                data.pinned = true; // Ember: see `Data::refs`

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = native.insert(data);
                filter_indexes.insert(filter, idx);
            }
        }
        // Ember: see `wildcards`.
        let wildcards = filter_indexes
            .iter()
            .filter(|(f, _)| crate::protocol::has_wildcards(f))
            .map(|(f, i)| (f.clone(), *i))
            .collect();

        Ok(DataLog {
            config,
            native,
            publish_filters,
            filter_indexes,
            retained_publishes,
            retained_seq: 0,       // Ember
            retained_source: None, // Ember
            wildcards,             // Ember
            retained_expiry: false, // Ember
        })
    }

    /// Ember: filters with a log.
    pub fn filter_count(&self) -> usize {
        self.native.len()
    }

    /// Ember: a subscription reads the log `filter_idx` (see `Data::refs`).
    pub fn hold(&mut self, filter_idx: FilterIdx) {
        if let Some(data) = self.native.get_mut(filter_idx) {
            data.refs += 1;
        }
    }

    /// Ember: a subscription to `path` (`$share/g/` prefix allowed) is gone; the last one
    /// lets its filter's log go, with its place in the tables. Upstream kept every filter ever
    /// subscribed, each with a log that reserved room for 1,024 messages.
    pub fn release(&mut self, path: &str) {
        let filter = shared_filter(path);
        let Some(&idx) = self.filter_indexes.get(filter) else {
            return;
        };
        let Some(data) = self.native.get_mut(idx) else {
            return;
        };
        data.refs = data.refs.saturating_sub(1);
        if data.refs > 0 || data.pinned {
            return;
        }
        self.native.remove(idx);
        self.filter_indexes.remove(filter);
        if self.wildcards.remove(filter).is_some() {
            self.publish_filters.retain(|_, filters| {
                filters.retain(|i| *i != idx);
                !filters.is_empty()
            });
        } else if let Some(filters) = self.publish_filters.get_mut(filter) {
            filters.retain(|i| *i != idx);
            if filters.is_empty() {
                self.publish_filters.remove(filter);
            }
        }
        // The tables' room goes too once they are mostly empty (a slab keeps its keys: only
        // the vacant entries at its end go).
        if self.native.len() * 4 < self.native.capacity() {
            self.native.shrink_to_fit();
        }
        shrink(&mut self.filter_indexes);
        shrink(&mut self.wildcards);
        shrink(&mut self.publish_filters);
    }

    pub fn meter(&mut self, filter: &str) -> Option<&mut SubscriptionMeter> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        Some(&mut data.meter)
    }

    pub fn waiters(&self, filter: &Filter) -> Option<&Waiters<DataRequest>> {
        self.native
            .get(*self.filter_indexes.get(filter)?)
            .map(|data| &data.waiters)
    }

    pub fn remove_waiters_for_id(
        &mut self,
        id: ConnectionId,
        filter: &Filter,
    ) -> Option<DataRequest> {
        let data = self
            .native
            .get_mut(*self.filter_indexes.get(filter)?)
            .unwrap();
        let waiters = data.waiters.get_mut();

        waiters
            .iter()
            .position(|&(conn_id, _)| conn_id == id)
            .and_then(|index| {
                waiters
                    .swap_remove_back(index)
                    .map(|(_, data_req)| data_req)
            })
    }

    // TODO: Currently returning a Option<Vec> instead of Option<&Vec> due to Rust borrow checker
    // limitation
    pub fn matches(&mut self, topic: &str) -> Option<Vec<usize>> {
        match &self.publish_filters.get(topic) {
            Some(v) => Some(v.to_vec()),
            None => {
                // Ember: the filter equal to the topic, looked up, and the wildcards matched
                // (was: every filter matched). A `$` topic is matched by its own filter and by
                // wildcards that do not start with one [MQTT-4.7.2-1] (`matches`).
                let exact = self
                    .filter_indexes
                    .get(topic)
                    .filter(|_| !crate::protocol::has_wildcards(topic));
                let v: Vec<usize> = exact
                    .into_iter()
                    .copied()
                    .chain(
                        self.wildcards
                            .iter()
                            .filter(|(filter, _)| matches(topic, filter))
                            .map(|(_, filter_idx)| *filter_idx),
                    )
                    .collect();

                if !v.is_empty() {
                    self.publish_filters.insert(topic.to_owned(), v.clone());
                }

                Some(v)
            }
        }
    }

    pub fn next_native_offset(&mut self, filter: &str) -> (FilterIdx, Offset) {
        let publish_filters = &mut self.publish_filters;
        let filter_indexes = &mut self.filter_indexes;

        let (filter_idx, data) = match filter_indexes.get(filter) {
            Some(idx) => (*idx, self.native.get(*idx).unwrap()),
            None => {
                let data = Data::new(filter, &self.config);

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = self.native.insert(data);
                self.filter_indexes.insert(filter.to_owned(), idx);

                // Match new filter to existing topics and add to publish_filters if it matches
                if crate::protocol::has_wildcards(filter) {
                    self.wildcards.insert(filter.to_owned(), idx); // Ember
                    for (topic, filters) in publish_filters.iter_mut() {
                        if matches(topic, filter) {
                            filters.push(idx);
                        }
                    }
                } else if let Some(filters) = publish_filters.get_mut(filter) {
                    // Ember: a filter without wildcards matches its own topic only.
                    filters.push(idx);
                }

                (idx, self.native.get(idx).unwrap())
            }
        };

        (filter_idx, data.log.next_offset())
    }

    pub fn native_readv(
        &self,
        filter_idx: FilterIdx,
        offset: Offset,
        len: u64,
    ) -> io::Result<(Position, Vec<(PubWithProp, Offset)>)> {
        // unwrap to get index of `self.native` is fine here, because when a new subscribe packet
        // arrives in `Router::handle_device_payload`, it first calls the function
        // `next_native_offset` which creates a new commitlog if one doesn't exist. So any new
        // reads will definitely happen on a valid filter.
        let data = self.native.get(filter_idx).unwrap();
        let mut o = Vec::new();
        // TODO: `readv` is infallible but its current return type does not
        // reflect that. Consequently, this method is also infallible.
        // Encoding this information is important so that calling function
        // has more information on how this method behaves.
        let next = data.log.readv(offset, len, &mut o)?;

        let now = Instant::now();
        o.retain_mut(|(pubdata, _)| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });

        // no need to include timestamp when returning
        let o = o
            .into_iter()
            .map(|(pubdata, offset)| ((pubdata.publish, pubdata.properties), offset))
            .collect();

        Ok((next, o))
    }

    pub fn shadow(&mut self, filter: &str) -> Option<PubWithProp> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        data.log.last().map(|p| (p.publish, p.properties))
    }

    /// This method is called when the subscriber has caught up with the commit log. In which case,
    /// instead of actively checking for commits in each `Router::run_inner` iteration, we instead
    /// wait and only try reading again when new messages have been added to the commit log. This
    /// methods converts a `DataRequest` (which actively reads the commit log in `Router::consume`)
    /// to a `Waiter` (which only reads when notified).
    pub fn park(&mut self, id: ConnectionId, request: DataRequest) {
        // calling unwrap on index here is fine, because only place this function is called is in
        // `Router::consume` method, when the status after reading from commit log of the same
        // filter as `request` is "done", that is, the subscriber has caught up. In other words,
        // there has been atleast 1 call to `native_readv` for the same filter, which means if
        // `native_readv` hasn't paniced, so this won't panic either.
        let data = self.native.get_mut(request.filter_idx).unwrap();
        data.waiters.register(id, request);
    }

    /// Ember: `clean` for the logs of `filters` only (a connection's subscriptions, `$share/g/`
    /// prefixes allowed): `clean` walked every filter's log at every disconnection.
    pub fn clean_filters<'a>(
        &mut self,
        id: ConnectionId,
        filters: impl Iterator<Item = &'a String>,
    ) -> Vec<DataRequest> {
        let mut indexes: Vec<FilterIdx> = filters
            .filter_map(|f| self.filter_indexes.get(shared_filter(f)).copied())
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut inflight = Vec::new();
        for idx in indexes {
            if let Some(data) = self.native.get_mut(idx) {
                inflight.append(&mut data.waiters.remove(id));
            }
        }
        inflight
    }

    /// Cleanup a connection from all the waiters
    pub fn clean(&mut self, id: ConnectionId) -> Vec<DataRequest> {
        let mut inflight = Vec::new();
        for (_, data) in self.native.iter_mut() {
            inflight.append(&mut data.waiters.remove(id));
        }

        inflight
    }

    pub fn insert_to_retained_publishes(
        &mut self,
        publish: Publish,
        publish_properties: Option<PublishProperties>,
        topic: Topic,
    ) {
        // Ember: `publish` is compact already (`compact`, called by `append_to_commitlog`).
        // Ember: see `retained_expiry`.
        self.retained_expiry |= publish_properties
            .as_ref()
            .is_some_and(|p| p.message_expiry_interval.is_some());
        let pub_with_props = (publish, publish_properties);
        let mut data = Box::new(PublishData::from(pub_with_props)); // Ember
        data.seq = self.retained_seq; // Ember
        self.retained_seq += 1; // Ember
        self.retained_publishes.insert(topic, data); // Ember
    }

    /// Ember: the `seq` the next retained message will have. A subscription notes it: the
    /// retained messages from then on reach it through the filter's log instead.
    pub fn retained_seq(&self) -> u64 {
        self.retained_seq
    }

    pub fn remove_from_retained_publishes(&mut self, topic: Topic) {
        self.retained_publishes.remove(&topic);
    }

    /// Ember: the topics of the retained messages `filter` matches (expired ones dropped first,
    /// as `read_retained_messages` does), for `forward_device_data` to send a read's room at a
    /// time with [`DataLog::retained`].
    pub fn retained_topics(&mut self, filter: &str) -> VecDeque<String> {
        self.drop_expired_retained();
        // Ember: a filter without wildcards is looked up (was: the whole table matched, on
        // the router's thread, for every subscription: agents subscribe to their own topics).
        let mut topics: VecDeque<String> = if crate::protocol::has_wildcards(filter) {
            self.retained_publishes
                .keys()
                .filter(|topic| matches(topic, filter))
                .cloned()
                .collect()
        } else {
            self.retained_publishes
                .get_key_value(filter)
                .filter(|(topic, _)| matches(topic, filter))
                .map(|(topic, _)| topic.clone())
                .into_iter()
                .collect()
        };
        if let Some(source) = &self.retained_source {
            let served = source.topics(filter);
            let table = &self.retained_publishes;
            topics.extend(served.into_iter().filter(|t| !table.contains_key(t)));
        }
        topics
    }

    /// Ember: the retained message on `topic`, if there is one: the table's, else the
    /// retained source's as it is now. None for one the table got at or after `since` (a
    /// subscription's [`DataLog::retained_seq`]): the subscription's log has it, and sending
    /// it as retained too would deliver it twice, the newer value first.
    pub fn retained(&self, topic: &str, since: u64) -> Option<PubWithProp> {
        if let Some(p) = self.retained_publishes.get(topic) {
            return (p.seq < since).then(|| (p.publish.clone(), p.properties.clone()));
        }
        let payload = self.retained_source.as_ref()?.payload(topic)?;
        let publish = Publish::new(bytes::Bytes::from(topic.to_string()), payload.into(), true);
        Some((publish, None))
    }

    pub fn read_retained_messages(&mut self, filter: &str) -> Vec<PubWithProp> {
        trace!(info = "reading retain msg", filter = &filter);
        self.drop_expired_retained(); // Ember: moved into a function of its own

        // no need to include timestamp when returning
        self.retained_publishes
            .iter()
            .filter(|(topic, _)| matches(topic, filter))
            .map(|(_, p)| (p.publish.clone(), p.properties.clone()))
            .collect()
    }

    fn drop_expired_retained(&mut self) {
        if !self.retained_expiry {
            return; // Ember: none can expire
        }
        let now = Instant::now();

        // discard expired retained messages
        self.retained_publishes.retain(|_, pubdata| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });
    }
}

/// Ember: copies a publish's topic and payload into one allocation of their own size. Read
/// from a connection, they are slices of its read buffer, which they would keep whole (with
/// every other packet read with them) for as long as the message stays in a filter's log or
/// is retained.
pub fn compact(publish: &mut Publish) {
    let (topic, payload) = (&publish.topic, &publish.payload);
    let mut both = bytes::BytesMut::with_capacity(topic.len() + payload.len());
    both.extend_from_slice(topic);
    both.extend_from_slice(payload);
    let mut both = both.freeze();
    publish.payload = both.split_off(topic.len());
    publish.topic = both;
}

/// Ember: lets a map's room go once it is mostly empty (at most a quarter used).
pub(crate) fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

/// Ember: the filter whose log a subscription to `path` reads: `f` for `$share/g/f`.
fn shared_filter(path: &str) -> &str {
    path.strip_prefix("$share/")
        .and_then(|s| s.split_once('/'))
        .map_or(path, |(_, filter)| filter)
}

pub struct Data<T> {
    filter: Filter,
    pub log: CommitLog<T>,
    pub waiters: Waiters<DataRequest>,
    meter: SubscriptionMeter,
    /// Ember: subscriptions reading this log, of connections and of saved sessions; the log
    /// is let go when the last one goes (`DataLog::release`), unless `pinned`.
    refs: usize,
    /// Ember: an `initialized_filters` log, kept for good.
    pinned: bool,
}

impl<T> Data<T>
where
    T: Storage + Clone,
{
    pub fn new(filter: &str, router_config: &RouterConfig) -> Data<T> {
        let mut max_segment_size = router_config.max_segment_size;
        let mut max_mem_segments = router_config.max_segment_count;

        // Override segment config for selected filter
        if let Some(config) = &router_config.custom_segment {
            for (f, segment_config) in config {
                if matches(filter, f) {
                    info!("Overriding segment config for filter: {}", filter);
                    max_segment_size = segment_config.max_segment_size;
                    max_mem_segments = segment_config.max_segment_count;
                }
            }
        }

        // max_segment_size: usize, max_mem_segments: usize
        let log = CommitLog::new(max_segment_size, max_mem_segments).unwrap();

        let waiters = Waiters::with_capacity(0); // Ember: was 10; grows on demand
        let metrics = SubscriptionMeter::default();
        Data {
            filter: filter.to_owned(),
            log,
            waiters,
            meter: metrics,
            refs: 0,        // Ember
            pinned: false,  // Ember
        }
    }

    /// Writes to all the filters that are mapped to this publish topic
    /// and wakes up consumers that are matching this topic (if they exist)
    pub fn append(
        &mut self,
        item: T,
        notifications: &mut VecDeque<(ConnectionId, DataRequest)>,
    ) -> (Offset, &Filter) {
        let size = item.size();
        let offset = self.log.append(item);
        if let Some(mut parked) = self.waiters.take() {
            notifications.append(&mut parked);
        }

        self.meter.count += 1;
        self.meter.total_size += size;

        (offset, &self.filter)
    }
}

/// Acks log for a subscription
#[derive(Debug)]
pub struct AckLog {
    // Committed acks per connection. First pkid, last pkid, data
    committed: VecDeque<Ack>,
    // Recorded qos 2 publishes
    recorded: VecDeque<(Publish, Option<PublishProperties>)>,
}

impl AckLog {
    /// New log
    pub fn new() -> AckLog {
        AckLog {
            // Ember: was with_capacity(100) each; they grow on demand.
            committed: VecDeque::new(),
            recorded: VecDeque::new(),
        }
    }

    pub fn connack(&mut self, id: ConnectionId, ack: ConnAck, props: Option<ConnAckProperties>) {
        let ack = Ack::ConnAck(id, ack, props);
        self.committed.push_back(ack);
    }

    pub fn suback(&mut self, ack: SubAck) {
        let ack = Ack::SubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn puback(&mut self, ack: PubAck) {
        let ack = Ack::PubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn pubrec(&mut self, publish: Publish, props: Option<PublishProperties>, ack: PubRec) {
        let ack = Ack::PubRec(ack);
        // Ember: a QoS 2 PUBLISH sent again before its PUBREL is the same message: PUBREC'd
        // again, recorded once [MQTT-4.3.3-2] (upstream recorded each copy).
        if !self.recorded.iter().any(|(p, _)| p.pkid == publish.pkid) {
            self.recorded.push_back((publish, props)); // Ember
        }
        self.committed.push_back(ack);
    }

    pub fn pubrel(&mut self, ack: PubRel) {
        let ack = Ack::PubRel(ack);
        self.committed.push_back(ack);
    }

    pub fn pubcomp(&mut self, ack: PubComp) -> Option<(Publish, Option<PublishProperties>)> {
        // Ember: the PUBREL releases the message with its packet id (upstream: the oldest).
        let pkid = ack.pkid; // Ember
        let ack = Ack::PubComp(ack);
        self.committed.push_back(ack);
        let at = self.recorded.iter().position(|(p, _)| p.pkid == pkid)?; // Ember
        self.recorded.remove(at) // Ember
    }

    pub fn pingresp(&mut self, ack: PingResp) {
        let ack = Ack::PingResp(ack);
        self.committed.push_back(ack);
    }

    pub fn unsuback(&mut self, ack: UnsubAck) {
        let ack = Ack::UnsubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn readv(&mut self) -> &mut VecDeque<Ack> {
        &mut self.committed
    }
}

#[cfg(test)]
mod test {
    use super::DataLog;
    use crate::router::shared_subs::Strategy;
    use crate::RouterConfig;

    #[test]
    fn publish_filters_updating_correctly_on_new_topic_subscription() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            max_saved_sessions: None,        // Ember
            saved_session_expiry_secs: None, // Ember
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("topic/a");
        data.matches("topic/a");

        data.next_native_offset("topic/+");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 2);
    }

    #[test]
    fn publish_filters_updating_correctly_on_new_publish() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            max_saved_sessions: None,        // Ember
            saved_session_expiry_secs: None, // Ember
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("+/+");

        data.matches("topic/a");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 1);
    }

    //     #[test]
    //     fn appends_are_written_to_correct_commitlog() {
    //         pretty_env_logger::init();
    //         let config = RouterConfig {
    //             instant_ack: true,
    //             max_segment_size: 1024,
    //             max_connections: 10,
    //             max_mem_segments: 10,
    //             max_disk_segments: 0,
    //             max_read_len: 1024,
    //             log_dir: None,
    //             dynamic_log: true,
    //         };

    //         let mut data = DataLog::new(config).unwrap();
    //         data.next_native_offset("/devices/2321/actions");
    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/events/imu/jsonarray", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }

    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/actions", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }
    //     }
}
