//! The MQTT gate on any client byte stream: everything it parses from an untrusted client (the
//! byte relay's publish scanner, the CONNECT's protocol level and fields, every frame the
//! checked relay judges) returns a value, never a panic (the collector is built with
//! `panic = "abort"`). The scanner counts the same however the stream is cut.
//!
//! Input: the first byte picks the cut (1 to 64 bytes per read); the rest is the stream.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::BytesMut;
use ember_collector::access::{Identity, Role, TokenBucket};
use ember_collector::gate::{self, Accounts, Flow, Gate, Scanner, Settings};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::Connect;
use rumqttc::mqttbytes::PacketType;

fn gate() -> &'static Arc<Gate> {
    static GATE: OnceLock<Arc<Gate>> = OnceLock::new();
    GATE.get_or_init(|| {
        let settings = Settings {
            broker: ember_collector::broker::idle_handoff(),
            max_connections: 1,
            max_packet: 8 * 1024,
            max_subscriptions: 100,
            tls: None,
            accounts: Some(Accounts {
                users: BTreeMap::new(),
                require_client_cert: false,
                max_connections_per_client: 1,
                rate: 1_000_000,
                burst: 1_000_000,
                reader_topics: vec!["homeassistant/status".into()],
                admission: ember_collector::admission::Admission::new(
                    Default::default(),
                    String::new(),
                ),
            }),
        };
        Gate::new(settings, Flow::new(1 << 20))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut % 64) + 1;

    // The open relay's scanner: the same count whole or in pieces.
    let whole = Scanner::default().feed(stream);
    let mut s = Scanner::default();
    let pieces: u64 = stream.chunks(cut).map(|c| s.feed(c)).sum();
    assert_eq!(whole, pieces);

    // The checked relay: the CONNECT, then every frame judged for an agent and for a reader.
    let _ = gate::protocol_level(stream);
    let agent = Identity {
        name: "pi".into(),
        role: Role::Agent,
    };
    let reader = Identity {
        name: "ha".into(),
        role: Role::Reader,
    };
    let mut bucket = TokenBucket::new(1_000_000, 1_000_000, Instant::now());
    let mut buf = BytesMut::new();
    for piece in stream.chunks(cut) {
        buf.extend_from_slice(piece);
        loop {
            match gate::next_frame(&mut buf, 8 * 1024) {
                Ok(Some((header, frame))) => {
                    if matches!(header.packet_type(), Ok(PacketType::Connect)) {
                        let _ = Connect::read(header, frame.clone());
                    }
                    let _ = gate().check_frame(&agent, &mut bucket, header, frame.clone());
                    let _ = gate().check_frame(&reader, &mut bucket, header, frame);
                }
                Ok(None) => break,
                // The gate closes the connection here.
                Err(_) => return,
            }
        }
    }
});
