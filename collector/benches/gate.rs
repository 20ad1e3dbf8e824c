//! What the MQTT gate's checks cost: prints figures, asserts nothing.
//!
//! ```sh
//! cargo bench -p ember-collector --bench gate
//! ```
//!
//! 1. One argon2id password check (each authenticated CONNECT pays it once).
//! 2. The same load twice through the gate: open (no accounts: bytes relayed after the CONNECT)
//!    and with accounts (every frame parsed and checked; no TLS, limits out of the way): samples
//!    per second from 20 QoS 1 publishers into the store,
//!    and publish-to-store latency at a steady 400 samples/s once connected.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ember_collector::access::{self, Role};
use ember_collector::config::User;
use ember_collector::store::Event;
use ember_collector::Config;
use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};

const PASSWORD: &str = "bench-password";
const HOSTS: usize = 20;

fn sample(host: &HostId, seq: u64) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let s = Sample {
        seq,
        timestamp_ms: ember_collector::now_ms(),
        ..Sample::default()
    };
    Envelope::new(host.clone(), Message::Sample(s))
        .encode(&mut buf)
        .unwrap()
        .to_vec()
}

/// One host's publisher: samples `seqs`, `pace` apart (none: as fast as the broker takes
/// them), its event loop polled alongside.
async fn host(port: u16, gated: bool, i: usize, seqs: RangeInclusive<u64>, pace: Option<Duration>) {
    let id = HostId::new(&format!("load-{i}")).unwrap();
    let mut options = rumqttc::MqttOptions::new(id.to_string(), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    if gated {
        options.set_credentials(id.to_string(), PASSWORD);
    }
    let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
    // Connected first, so that latencies do not include the password check.
    loop {
        match events.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(_) => return,
        }
    }
    let topic = format!("ember/v1/{id}/sample");
    let send = async {
        for seq in seqs {
            let qos = rumqttc::QoS::AtLeastOnce;
            if client
                .publish(&topic, qos, false, sample(&id, seq))
                .await
                .is_err()
            {
                return;
            }
            if let Some(p) = pace {
                tokio::time::sleep(p).await;
            }
        }
        // Let the last acknowledgements arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! {
        _ = send => {}
        _ = async { while events.poll().await.is_ok() {} } => {}
    }
}

/// Every host at once.
async fn publish(port: u16, gated: bool, seqs: RangeInclusive<u64>, pace: Option<Duration>) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..HOSTS {
        set.spawn(host(port, gated, i, seqs.clone(), pace));
    }
    while set.join_next().await.is_some() {}
}

/// p50, p99 and max of `v`, sorted in place.
fn percentiles(v: &mut [u64]) -> [u64; 3] {
    v.sort_unstable();
    let at = |p: f64| {
        v.get(((v.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    [at(0.5), at(0.99), v.last().copied().unwrap_or(0)]
}

async fn run(gated: bool) {
    let dir = std::env::temp_dir().join(format!("ember-bench-gate-{}-{gated}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::ephemeral(dir.clone());
    if gated {
        let hash = access::hash_password(PASSWORD, &[9; 16]);
        config.mqtt.users = (0..HOSTS)
            .map(|i| {
                (
                    format!("load-{i}"),
                    User {
                        password_hash: Some(hash.clone()),
                        role: Role::Agent,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        config.mqtt.max_messages_per_second = 1_000_000;
        config.mqtt.max_burst = 1_000_000;
    }
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let c = ember_collector::start(config, async move {
        let _ = rx.wait_for(|s| *s).await;
    })
    .await
    .expect("collector starts");
    let port = c.mqtt_addr.port();
    let name = if gated {
        "accounts, frames checked"
    } else {
        "open, bytes relayed"
    };

    let per_host = 500u64;
    let total = HOSTS as u64 * per_host;
    let start = Instant::now();
    tokio::spawn(publish(port, gated, 1..=per_host, None));
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.store.read().unwrap().stats().samples < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let stored = c.store.read().unwrap().stats().samples;
    println!(
        "{name}: {stored}/{total} samples from {HOSTS} QoS 1 publishers in {took:.2?}: {:.0} samples/s (connects included)",
        stored as f64 / took.as_secs_f64()
    );

    // Sequence numbers go on from where the first phase ended: new samples, not duplicates.
    let steady = HOSTS * 100;
    let mut events = c.events.subscribe();
    let paced = tokio::spawn(publish(
        port,
        gated,
        per_host + 1..=per_host + 100,
        Some(Duration::from_millis(50)),
    ));
    let mut l: Vec<u64> = Vec::with_capacity(steady);
    let until = Instant::now() + Duration::from_secs(30);
    while l.len() < steady {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(Event::Sample { sample, .. })) => {
                l.push(ember_collector::now_ms().saturating_sub(sample.timestamp_ms))
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = paced.await;
    let stored = l.len();
    let [p50, p99, max] = percentiles(&mut l);
    println!(
        "{name}: steady 400 samples/s ({stored} stored), once connected: publish-to-store latency p50 {p50} ms, p99 {p99} ms, max {max} ms"
    );
    let _ = stop.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let hash = access::hash_password(PASSWORD, &[9; 16]);
    let n = 5;
    let start = Instant::now();
    for _ in 0..n {
        assert!(access::verify_password(&hash, PASSWORD));
    }
    println!(
        "argon2id check ({}): {:.1?} each",
        hash.split('$').nth(3).unwrap_or("?"),
        start.elapsed() / n
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(false));
    rt.block_on(run(true));
}
