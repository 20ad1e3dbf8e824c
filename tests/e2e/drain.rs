//! A stopping agent first sends what its outbox holds (each sample acknowledged), then publishes
//! `Offline` and disconnects; and it stops within its timeout however the broker is gone.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember_agent::publish::Publisher;
use ember_agent::AgentConfig;
use ember_wire::topic;
use ember_wire::{Envelope, HostId, HostInfo, Message, Sample, Status, MAX_ENCODED_LEN};
use rumqttc::QoS;

use crate::harness;
use crate::support::{eventually, Proxy, TestCollector};

/// Samples queued at stop: fewer than the gate's default burst (200 messages), so that its rate
/// limit holds none back.
const QUEUED: u64 = 150;

/// The stop timeout the agent uses.
const TIMEOUT: Duration = ember_agent::STOP_TIMEOUT;

/// How long after a failed connection the agent's reconnect backoff waits longer than
/// [`TIMEOUT`]: it grows 250 ms, 500 ms, 1 s, 2 s (each less up to a quarter of jitter), so from
/// at most 3.75 s on it waits 3 to 4 s.
const BACKOFF_PAST_TIMEOUT: Duration = Duration::from_secs(4);

/// Queues samples `seqs`, taken a second apart up to now, as the sampler would.
fn queue(publisher: &Publisher, host: &HostId, seqs: RangeInclusive<u64>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let last = *seqs.end();
    let mut buf = [0u8; MAX_ENCODED_LEN];
    for seq in seqs {
        let sample = Sample {
            seq,
            timestamp_ms: now - (last - seq) * 1000,
            ..Sample::default()
        };
        let bytes = Envelope::new(host.clone(), Message::Sample(sample))
            .encode(&mut buf)
            .unwrap();
        publisher.sample(seq, bytes);
    }
}

fn config(broker: &str, host: &HostId) -> AgentConfig {
    AgentConfig::new(broker, Some(host.as_str()), "1s", None).unwrap()
}

/// One host's publishes as a plain MQTT client on the collector's broker sees them.
struct Watcher {
    mqtt: harness::Mqtt,
    host: HostId,
}

impl Watcher {
    async fn start(c: &TestCollector, host: &HostId) -> Self {
        let mqtt = harness::mqtt(harness::options("drain-watcher", c.mqtt_port()));
        // One filter for every agent topic: the broker keeps one log per filter, so the
        // watcher sees the agent's publishes in the order the broker took them.
        mqtt.client
            .subscribe(topic::FROM_AGENTS, QoS::AtLeastOnce)
            .await
            .unwrap();
        Watcher {
            mqtt,
            host: host.clone(),
        }
    }

    async fn next(&mut self) -> Message {
        loop {
            let (t, payload, _) = self.mqtt.rx.recv().await.expect("the watcher runs");
            if topic::parse(&t).is_some_and(|(h, _)| h == self.host) {
                return ember_wire::decode(&payload).unwrap().message;
            }
        }
    }

    /// Waits for `Online` (retained: seen even if it went out before the subscription).
    async fn online(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(self.next().await, Message::Status(Status::Online { .. })) {}
        })
        .await
        .expect("Online within 10 s");
    }

    /// What the host published up to the next `Offline`, that excluded.
    async fn until_offline(&mut self) -> Vec<Message> {
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.next().await {
                    Message::Status(Status::Offline) => break,
                    m => seen.push(m),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no Offline within 10 s; seen: {seen:?}"));
        seen
    }

    /// The samples published after the last `Online` up to the next `Offline`.
    async fn samples_until_offline(&mut self) -> Vec<u64> {
        let mut seqs = Vec::new();
        for m in self.until_offline().await {
            match m {
                Message::Sample(s) => seqs.push(s.seq),
                Message::Status(Status::Online { .. }) => seqs.clear(),
                _ => {}
            }
        }
        seqs
    }
}

/// Stops `publisher`, which holds samples 1 to [`QUEUED`]: each must be acknowledged, and reach
/// the broker in order before `Offline`.
async fn stop_sends_everything(publisher: Publisher, watcher: &mut Watcher) {
    let unsent = publisher.stop(TIMEOUT).await;
    assert_eq!(unsent, 0, "everything queued was acknowledged");
    let want: Vec<u64> = (1..=QUEUED).collect();
    assert_eq!(
        watcher.samples_until_offline().await,
        want,
        "every queued sample, in order, before Offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_queued_at_stop_are_acknowledged_before_offline() {
    let c = TestCollector::start().await;
    let host = HostId::new("drain-pi").unwrap();
    let mut watcher = Watcher::start(&c, &host).await;
    let broker = c.collector.mqtt_addr.to_string();
    let publisher = Publisher::start(&config(&broker, &host), HostInfo::default());
    watcher.online().await;

    // More than the 16 in flight, then SIGTERM.
    queue(&publisher, &host, 1..=QUEUED);
    stop_sends_everything(publisher, &mut watcher).await;
    // And the collector stored them all.
    eventually(Duration::from_secs(10), "the samples stored", || async {
        let (_, h) = c.get("/api/hosts/drain-pi").await;
        (h["received"] == QUEUED && h["status"] == "offline").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_of_an_outage_that_just_ended_is_sent_at_stop() {
    let c = TestCollector::start().await;
    let mut proxy = Proxy::start(c.collector.mqtt_addr).await;
    let host = HostId::new("drain-outage").unwrap();
    let mut watcher = Watcher::start(&c, &host).await;
    let broker = proxy.addr.to_string();
    let publisher = Publisher::start(&config(&broker, &host), HostInfo::default());
    watcher.online().await;

    proxy.down();
    assert!(
        watcher.samples_until_offline().await.is_empty(),
        "the last will"
    );
    queue(&publisher, &host, 1..=QUEUED);
    tokio::time::sleep(BACKOFF_PAST_TIMEOUT).await;
    // The broker is back, the agent has not noticed yet, and SIGTERM comes.
    proxy.up().await;
    let unsent = publisher.stop(TIMEOUT).await;
    assert_eq!(unsent, 0, "everything queued was acknowledged");
    // Back only to hand the outbox over: no `Online` (the host's status would flap for
    // every subscriber), only the samples, in order, then `Offline`.
    let seen = watcher.until_offline().await;
    let seqs: Vec<u64> = seen
        .iter()
        .filter_map(|m| match m {
            Message::Sample(s) => Some(s.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=QUEUED).collect::<Vec<_>>(),
        "every queued sample, in order"
    );
    let other: Vec<&Message> = seen
        .iter()
        .filter(|m| !matches!(m, Message::Sample(_)))
        .collect();
    assert!(other.is_empty(), "samples only, no status: {other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_gives_up_at_once_when_the_broker_refuses() {
    let host = HostId::new("drain-refused").unwrap();
    // Nothing listens there.
    let broker = format!("127.0.0.1:{}", harness::free_port());
    let publisher = Publisher::start(&config(&broker, &host), HostInfo::default());
    queue(&publisher, &host, 1..=QUEUED);
    tokio::time::sleep(BACKOFF_PAST_TIMEOUT).await;

    let start = Instant::now();
    let unsent = publisher.stop(TIMEOUT).await;
    let took = start.elapsed();
    eprintln!("drain: refused broker, stop took {took:?}");
    assert_eq!(unsent, QUEUED as usize, "nothing could be sent");
    // One immediate attempt, refused: no waiting out the backoff or the timeout.
    assert!(took < TIMEOUT / 2, "stop took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_returns_within_its_timeout_when_the_broker_stops_answering() {
    let c = TestCollector::start().await;
    let proxy = Proxy::start(c.collector.mqtt_addr).await;
    let host = HostId::new("drain-held").unwrap();
    let broker = proxy.addr.to_string();
    let publisher = Publisher::start(&config(&broker, &host), HostInfo::default());
    queue(&publisher, &host, 1..=1);
    eventually(
        Duration::from_secs(10),
        "the first sample acknowledged",
        || {
            let backlog = publisher.backlog();
            async move { (backlog == 0).then_some(()) }
        },
    )
    .await;

    // The network drops everything: no PUBACK comes, no error either.
    proxy.hold();
    queue(&publisher, &host, 2..=QUEUED + 1);
    let start = Instant::now();
    let unsent = publisher.stop(TIMEOUT).await;
    let took = start.elapsed();
    eprintln!("drain: broker not answering, stop took {took:?}");
    assert_eq!(unsent, QUEUED as usize, "nothing was acknowledged");
    assert!(
        took < TIMEOUT + Duration::from_millis(250),
        "stop took {took:?} with a timeout of {TIMEOUT:?}"
    );
}

/// With a `spool`, the samples still unsent at stop are kept in a file; the next start sends
/// them first and its sequence goes on from them, so the collector stores one unbroken
/// sequence: nothing missing, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_unsent_at_stop_are_spooled_and_sent_at_the_next_start() {
    let dir = std::env::temp_dir().join(format!("ember-e2e-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("outbox.spool");
    // Nothing listens there: every sample stays in the outbox.
    let refused: std::net::SocketAddr = format!("127.0.0.1:{}", harness::free_port())
        .parse()
        .unwrap();
    let mut offline = harness::agent_config(refused, "spool-pi", "100ms");
    offline.spool = Some(spool.clone());
    let (stop, agent) = crate::support::spawn_agent(offline);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    let kept = ember_agent::spool::decode(&std::fs::read(&spool).expect("spooled")).unwrap();
    let n = kept.samples.len() as u64;
    assert!(n >= 5, "{n} samples spooled");
    let seqs: Vec<u64> = kept.samples.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    assert_eq!(kept.next_seq, n + 1);

    let c = TestCollector::start().await;
    let mut online = harness::agent_config(c.collector.mqtt_addr, "spool-pi", "100ms");
    online.spool = Some(spool.clone());
    let (stop, agent) = crate::support::spawn_agent(online);
    let h = eventually(
        Duration::from_secs(10),
        "the spooled samples and new ones",
        || async {
            let (_, h) = c.get("/api/hosts/spool-pi").await;
            (h["received"].as_u64() >= Some(n + 5)).then_some(h)
        },
    )
    .await;
    assert!(!spool.exists(), "the spool is taken at start");
    assert_eq!(h["missing"], 0, "{h}");
    assert_eq!(h["restarts"], 0, "one sequence: {h}");
    assert_eq!(h["duplicates"], 0, "{h}");
    // The spooled samples themselves were stored, then the new ones, one sequence.
    let (_, stored) = c.get("/api/hosts/spool-pi/samples?limit=100000").await;
    let mut stored: Vec<u64> = stored["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect();
    stored.sort();
    let last = *stored.last().unwrap();
    assert_eq!(stored, (1..=last).collect::<Vec<_>>(), "{n} spooled");
    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
