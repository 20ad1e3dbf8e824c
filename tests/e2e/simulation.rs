//! Simulation mode (issue #3): many synthetic hosts from one process reach the collector.

use std::time::Duration;

use crate::support::{eventually, TestCollector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simulated_hosts_appear_with_samples() {
    let c = TestCollector::start().await;
    let base = c.agent_config("unused", "200ms");
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let sim = tokio::spawn(ember_agent::simulate::run(base, "sim", 20, 0, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let hosts = eventually(
        Duration::from_secs(15),
        "20 simulated hosts with samples",
        || async {
            let (_, hosts) = c.get("/api/hosts").await;
            let hosts = hosts.as_array()?.clone();
            let ready = hosts
                .iter()
                .filter(|h| h["samples"].as_u64() >= Some(3) && h["status"] == "online")
                .count();
            (ready == 20).then_some(hosts)
        },
    )
    .await;
    let ids: Vec<&str> = hosts.iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids.first(), Some(&"sim-0001"));
    assert_eq!(ids.last(), Some(&"sim-0020"));
    // Each host has its own character: not all the same CPU.
    let cpus: std::collections::BTreeSet<u64> = hosts
        .iter()
        .map(|h| h["latest"]["cpu"]["busy"].as_u64().unwrap())
        .collect();
    assert!(cpus.len() > 5, "{cpus:?}");
    assert!(hosts.iter().all(|h| h["info"]["board"]
        .as_str()
        .unwrap()
        .starts_with("Simulated")));
    stop.send(true).unwrap();
    sim.await.unwrap().unwrap();
    eventually(
        Duration::from_secs(10),
        "all simulated hosts offline",
        || async {
            let (_, hosts) = c.get("/api/hosts").await;
            hosts
                .as_array()?
                .iter()
                .all(|h| h["status"] == "offline")
                .then_some(())
        },
    )
    .await;
}
