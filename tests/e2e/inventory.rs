//! Inventory (issue #3): published retained at start, and again when it changes.

use std::time::Duration;

use ember_agent::publish::Publisher;
use ember_wire::HostInfo;

use crate::support::{eventually, TestCollector};

fn info(board: &str, ip: [u8; 4]) -> HostInfo {
    let mut i = HostInfo {
        board: ember_wire::heapless::String::from(board),
        ..HostInfo::default()
    };
    let mut iface = ember_wire::Interface {
        name: ember_wire::heapless::String::from("eth0"),
        ..Default::default()
    };
    iface.ipv4.push(ip).unwrap();
    i.interfaces.push(iface).unwrap();
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_inventory_is_published_again() {
    let c = TestCollector::start().await;
    let config = c.agent_config("inv-host", "1s");
    let publisher = Publisher::start(&config, info("Raspberry Pi 4", [192, 168, 1, 40]));
    eventually(Duration::from_secs(10), "the first inventory", || async {
        let (_, h) = c.get("/api/hosts/inv-host").await;
        (h["info"]["board"] == "Raspberry Pi 4").then_some(())
    })
    .await;
    // DHCP gave the board a new address.
    publisher.update_info(info("Raspberry Pi 4", [192, 168, 1, 77]));
    eventually(Duration::from_secs(10), "the new address", || async {
        let (_, h) = c.get("/api/hosts/inv-host").await;
        (h["info"]["interfaces"][0]["ipv4"][0] == serde_json::json!([192, 168, 1, 77]))
            .then_some(())
    })
    .await;
    publisher.stop(Duration::from_secs(2)).await;
}
