//! Golden bytes: the exact encoding of every message, pinned.
//!
//! A failure here means the wire format changed. If that was intended, bump `ember_wire::VERSION`
//! and update the bytes; peers of the old version must keep decoding or be refused clearly.

mod fixtures;

use ember_wire::*;
use fixtures::{fixtures, host};

fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_message_encodes_to_its_golden_bytes() {
    let mut failures = std::vec::Vec::new();
    for (message, want) in fixtures() {
        let envelope = Envelope::new(host(), message);
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let got = hex(envelope.encode(&mut buf).unwrap());
        let want: std::string::String = want.split_whitespace().collect();
        if got != want {
            failures.push(format!(
                "{:?}\n  want {want}\n  got  {got}",
                envelope.message.kind()
            ));
        }
        // And back again.
        let bytes = envelope.encode(&mut buf).unwrap();
        assert_eq!(decode(bytes).unwrap(), envelope);
    }
    assert!(
        failures.is_empty(),
        "wire format changed:\n{}",
        failures.join("\n")
    );
}
