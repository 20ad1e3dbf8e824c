//! The wire decoder on any bytes: an `Err`, never a panic; what decodes encodes back to bytes
//! that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = ember_wire::decode(data) {
        let mut buf = [0u8; ember_wire::MAX_ENCODED_LEN];
        let bytes = envelope
            .encode(&mut buf)
            .expect("a decoded message fits MAX_ENCODED_LEN");
        let again = ember_wire::decode(bytes).expect("re-encoded bytes decode");
        assert_eq!(again, envelope);
    }
});
