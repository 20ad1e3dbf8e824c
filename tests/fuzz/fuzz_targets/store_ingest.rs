//! `Store::ingest` on any sequence of topics, payloads and clock steps, then every read the API
//! does: bad messages are counted, never a panic.
//!
//! Input: records of `[topic selector][payload length (2 bytes)][payload][clock step]`.
#![no_main]

use std::sync::OnceLock;

use ember_collector::store::{Resolution, Store, StoreConfig};
use ember_collector::Config;
use libfuzzer_sys::fuzz_target;

fn config() -> &'static StoreConfig {
    static CONFIG: OnceLock<StoreConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut config = StoreConfig::from_config(&Config::ephemeral("unused".into()));
        config.raw_samples = 8;
        config
    })
}

const HOSTS: [&str; 3] = ["pi", "kitchen-pi", "sim-0001"];
const KINDS: [&str; 6] = ["sample", "info", "status", "result", "command", "x"];

fuzz_target!(|data: &[u8]| {
    let mut store = Store::new(config().clone());
    let mut now: u64 = 1_700_000_000_000;
    let mut rest = data;
    while rest.len() >= 3 {
        let selector = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 2048;
        rest = &rest[3..];
        let payload = &rest[..len.min(rest.len())];
        rest = &rest[payload.len()..];
        let topic = if selector == 0xff {
            // A raw topic from the payload's first bytes.
            String::from_utf8_lossy(&payload[..payload.len().min(40)]).into_owned()
        } else {
            let host = HOSTS[usize::from(selector) % HOSTS.len()];
            let kind = KINDS[usize::from(selector >> 4) % KINDS.len()];
            format!("ember/v1/{host}/{kind}")
        };
        let _ = store.ingest(&topic, payload, now);
        if let Some((&step, tail)) = rest.split_first() {
            now = now.saturating_add(u64::from(step) * 250);
            rest = tail;
        }
    }
    let summaries = store.summaries(now).len();
    assert_eq!(summaries, store.host_count());
    for host in HOSTS {
        let id = ember_wire::HostId::new(host).unwrap();
        let _ = store.summary(&id, now);
        let _ = store.samples(&id, None, 5);
        for resolution in [
            Resolution::Raw,
            Resolution::Auto,
            Resolution::Tier(0),
            Resolution::Tier(1),
            Resolution::Tier(7),
        ] {
            let _ = store.history(&id, 0, now, resolution, &[]);
        }
    }
});
