//! The HTTP API's query strings (`collector/src/query.rs`): any text is parsed or refused with
//! a reason, never a panic, and a parsed history range is ordered.
#![no_main]

use std::sync::OnceLock;

use ember_collector::config::Tier;
use ember_collector::{query, Config};
use libfuzzer_sys::fuzz_target;

fn tiers() -> &'static [Tier] {
    static TIERS: OnceLock<Vec<Tier>> = OnceLock::new();
    TIERS.get_or_init(|| Config::ephemeral("unused".into()).history.tiers)
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(h) = query::history(q, 1_700_000_000_000, tiers()) {
        assert!(h.from <= h.to);
    }
    let _ = query::samples(q);
    let _ = query::events(q);
    let _ = query::list(q);
});
