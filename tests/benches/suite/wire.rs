//! Wire size: samples as postcard (what agents send) beside the same envelope as JSON (what a
//! self-describing encoding would send), and the time to encode and decode each.

use std::time::{Duration, Instant};

use ember_agent::simulate::Synth;
use ember_wire::{Envelope, HostId, Message, MAX_ENCODED_LEN};
use serde_json::{json, Value};

use crate::Args;

/// The wire contract's golden Raspberry Pi 4 sample and inventory.
#[path = "../../../agent/wire/tests/fixtures/mod.rs"]
mod fixtures;

fn postcard_len(e: &Envelope) -> usize {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    e.encode(&mut buf).map(|b| b.len()).unwrap_or(0)
}

fn json_len(e: &Envelope) -> usize {
    serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0)
}

/// Nanoseconds per call of `f`, over at least 200 ms.
fn ns_per(mut f: impl FnMut()) -> f64 {
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn row(what: &str, e: &Envelope) -> Value {
    let p = postcard_len(e);
    let j = json_len(e);
    json!({ "what": what, "postcard": p, "json": j, "ratio": j as f64 / p as f64 })
}

pub fn run(_args: &Args) -> anyhow::Result<Value> {
    let pi = Envelope::new(fixtures::host(), Message::Sample(fixtures::pi_sample()));
    let info = Envelope::new(fixtures::host(), Message::HostInfo(fixtures::pi_info()));

    // The simulation's hosts: 100 hosts, 100 samples each.
    let (mut p_sum, mut j_sum, mut n) = (0usize, 0usize, 0usize);
    let (mut p_min, mut p_max) = (usize::MAX, 0);
    for h in 0..100u64 {
        let host = HostId::new(&format!("load-{h:05}"))?;
        let mut synth = Synth::new(h + 1, 1_795_000_000_000, Duration::from_secs(1));
        for _ in 0..100 {
            let e = Envelope::new(host.clone(), Message::Sample(synth.sample()));
            let p = postcard_len(&e);
            p_sum += p;
            j_sum += json_len(&e);
            p_min = p_min.min(p);
            p_max = p_max.max(p);
            n += 1;
        }
    }
    let synth_row = json!({
        "what": "simulated host (`Synth`), mean of 10,000 samples",
        "postcard": p_sum as f64 / n as f64,
        "postcard_min": p_min,
        "postcard_max": p_max,
        "json": j_sum as f64 / n as f64,
        "ratio": j_sum as f64 / p_sum as f64,
    });

    // Encoding and decoding time, the Pi sample.
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let bytes = pi.encode(&mut buf).expect("fits").to_vec();
    let text = serde_json::to_vec(&pi)?;
    let enc_p = ns_per(|| {
        let mut b = [0u8; MAX_ENCODED_LEN];
        std::hint::black_box(pi.encode(&mut b).map(|b| b.len()).unwrap_or(0));
    });
    let enc_j = ns_per(|| {
        std::hint::black_box(serde_json::to_vec(&pi).map(|v| v.len()).unwrap_or(0));
    });
    let dec_p = ns_per(|| {
        std::hint::black_box(ember_wire::decode(&bytes).is_ok());
    });
    let dec_j = ns_per(|| {
        std::hint::black_box(serde_json::from_slice::<Envelope>(&text).is_ok());
    });
    Ok(json!({
        "rows": [
            row("Raspberry Pi 4 sample (golden fixture)", &pi),
            synth_row,
            row("Raspberry Pi 4 inventory (`HostInfo`, golden fixture)", &info),
        ],
        "max_encoded_len": MAX_ENCODED_LEN,
        "pi_json_example": String::from_utf8_lossy(&text),
        "timing_ns": {
            "postcard_encode": enc_p,
            "postcard_decode": dec_p,
            "json_encode": enc_j,
            "json_decode": dec_j,
        },
    }))
}
