//! Connect storms (issue #20, finding 0): a fleet of real simulated agents (the agent's own
//! publisher: last will, retained status and inventory, subscriptions on every CONNACK, QoS 1
//! samples forgotten at their PUBACK) connecting together to a fresh collector, and again after
//! a restart of the collector with its data. All are listed within a bound, the collector does
//! not crash, and nothing acknowledged is dropped: `broker_dropped` and `missing` stay 0.
//!
//! `EMBER_STORM_AGENTS` sets the fleet's size (default [`AGENTS`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember_collector::store::{HostStatus, Stats};
use ember_collector::{Collector, Config, Store};
use tokio::sync::watch;

use crate::support::Proxy;

/// Agents in the storm: enough that the collector before issue #20 lost acknowledged samples
/// and listed them slowly, small enough for CI's two cores.
const AGENTS: usize = 2000;

/// How long the whole fleet may take to be listed, from the first CONNECT.
const LISTED_WITHIN: Duration = Duration::from_secs(30);

fn agents() -> usize {
    std::env::var("EMBER_STORM_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(AGENTS)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A collector keeping its data in `dir`, and the sender that stops it.
async fn start(dir: &Path) -> (Collector, watch::Sender<bool>) {
    let (stop, mut rx) = watch::channel(false);
    let collector = ember_collector::start(Config::ephemeral(dir.to_path_buf()), async move {
        let _ = rx.wait_for(|s| *s).await;
    })
    .await
    .expect("collector starts");
    (collector, stop)
}

/// Hosts online that were last heard from at or after `since_ms`, and the counters.
fn census(store: &Arc<RwLock<Store>>, since_ms: u64) -> (usize, Stats) {
    let store = Store::read_lock(store);
    let heard = store
        .summaries(now_ms())
        .iter()
        .filter(|h| h.status == HostStatus::Online && h.last_seen_ms >= since_ms && h.received > 0)
        .count();
    (heard, store.stats())
}

/// Waits until all `n` hosts were heard from since `since_ms`; the time it took.
async fn all_heard(c: &Collector, n: usize, since_ms: u64, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (heard, stats) = census(&c.store, since_ms);
        if heard == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < LISTED_WITHIN,
            "{what}: {heard} of {n} hosts heard from within {LISTED_WITHIN:?} ({stats:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets the fleet publish a while, then checks that nothing acknowledged was dropped.
async fn nothing_dropped(c: &Collector, what: &str) {
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, stats) = census(&c.store, 0);
    assert_eq!(stats.broker_dropped, 0, "{what}: {stats:?}");
    assert_eq!(stats.missing, 0, "{what}: {stats:?}");
    assert!(stats.samples > 0, "{what}: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_a_fleet_connecting_at_once_is_listed_and_loses_nothing() {
    let n = agents();
    let dir: PathBuf = std::env::temp_dir().join(format!("ember-e2e-storm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (first, stop_first) = start(&dir).await;
    // The agents' broker address, kept across the restart (a collector restarted in-process
    // listens on a new port).
    let mut proxy = Proxy::start(first.mqtt_addr).await;
    let port = proxy.addr.port();

    // The simulator spreads its hosts' first CONNECTs over one interval: all within a second.
    let base = ember_agent::AgentConfig::new(&format!("127.0.0.1:{port}"), Some("x"), "1s", None)
        .expect("agent config");
    let (stop_sim, mut rx) = watch::channel(false);
    let sim = tokio::spawn(ember_agent::simulate::run(
        base,
        "storm",
        n,
        0, // no simulated outages: every sample is sent
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    let took = all_heard(&first, n, 0, "a fresh collector").await;
    eprintln!("{n} agents listed {took:?} after they started connecting");
    nothing_dropped(&first, "a fresh collector").await;

    // A graceful restart with the same data: the whole fleet reconnects at once.
    // The fleet stays connected while the collector stops, as it does when the process exits
    // (here the stopped collector's listener lives on: the proxy then cuts the agents off).
    stop_first.send(true).unwrap();
    first.join().await.expect("the collector stops cleanly");
    proxy.down();
    let restarted_ms = now_ms();
    let (second, stop_second) = start(&dir).await;
    proxy.up_to(second.mqtt_addr).await;
    let took = all_heard(&second, n, restarted_ms, "after a restart").await;
    eprintln!("{n} agents back {took:?} after the restart");
    nothing_dropped(&second, "after a restart").await;

    stop_sim.send(true).unwrap();
    sim.await.unwrap().unwrap();
    stop_second.send(true).unwrap();
    second.join().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
