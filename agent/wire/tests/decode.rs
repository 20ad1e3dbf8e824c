//! Bad input: random, truncated, future-version and out-of-limits bytes give an error, never a
//! panic, and never a wrong message.

mod fixtures;

use ember_wire::heapless::String;
use ember_wire::*;
use fixtures::{fixtures, host, pi_sample};

fn encode(envelope: &Envelope) -> std::vec::Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    envelope.encode(&mut buf).unwrap().to_vec()
}

fn golden_encodings() -> std::vec::Vec<std::vec::Vec<u8>> {
    fixtures()
        .into_iter()
        .map(|(m, _)| encode(&Envelope::new(host(), m)))
        .collect()
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in golden_encodings() {
        for len in 0..bytes.len() {
            let got = decode(&bytes[..len]);
            assert!(got.is_err(), "prefix of {len} bytes decoded: {got:?}");
        }
        assert!(decode(&bytes).is_ok());
    }
    assert_eq!(decode(&[]), Err(Error::Truncated));
    assert_eq!(decode(&[VERSION]), Err(Error::Truncated));
}

#[test]
fn future_and_past_versions_are_refused_by_number() {
    for bytes in golden_encodings() {
        for v in [0u8, 2, 3, 0x7f, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[0] = v;
            assert_eq!(decode(&b), Err(Error::UnsupportedVersion(v)));
        }
    }
}

#[test]
fn unknown_message_kind_is_refused() {
    // Envelope of version 1 for host "pi4" with message kind 6, which does not exist (yet).
    assert_eq!(
        decode(&[1, 3, b'p', b'i', b'4', 6, 0]),
        Err(Error::UnknownMessage(6))
    );
    // A Status with an unknown variant.
    assert_eq!(decode(&[1, 3, b'p', b'i', b'4', 2, 9]), Err(Error::Invalid));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut b = encode(&Envelope::new(host(), Message::Status(Status::Offline)));
    b.push(0);
    assert_eq!(decode(&b), Err(Error::TrailingBytes));
}

#[test]
fn bad_host_ids_are_refused() {
    for id in [&b"Pi4"[..], b"a/b", b"#", b"-x", b""] {
        let mut b = vec![VERSION, id.len() as u8];
        b.extend_from_slice(id);
        b.extend_from_slice(&[2, 0]); // Status::Offline
        assert_eq!(decode(&b), Err(Error::Invalid), "{id:?}");
    }
    // Longer than 32 bytes.
    let mut b = vec![VERSION, 33];
    b.extend_from_slice(&[b'a'; 33]);
    b.extend_from_slice(&[2, 0]);
    assert_eq!(decode(&b), Err(Error::Invalid));
}

#[test]
fn over_capacity_lists_and_strings_are_refused() {
    let offline = encode(&Envelope::new(host(), Message::Status(Status::Offline)));
    let prefix = &offline[..5]; // version + host

    // A sample claiming 17 cores (capacity 16): seq, ts, uptime, busy, user, system, iowait.
    let mut b = prefix.to_vec();
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 17]);
    b.extend(std::iter::repeat_n(0, 17));
    assert_eq!(decode(&b), Err(Error::Invalid));
    // A named command whose name claims 200 bytes (capacity 32).
    let mut b = prefix.to_vec();
    b.extend_from_slice(&[3, 1, 1, 5, 0xc8, 0x01]);
    b.extend(std::iter::repeat_n(b'x', 200));
    assert_eq!(decode(&b), Err(Error::Invalid));
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut b = vec![VERSION, 3, b'p', b'i', b'4', 4, 1, 0, 2, 0xff, 0xfe];
    assert_eq!(decode(&b), Err(Error::Malformed));
    b[9] = b'o';
    b[10] = b'k';
    assert!(decode(&b).is_ok());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..200_000 {
        let len = (rng.next() % 96) as usize;
        let mut b: std::vec::Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = b.first_mut() {
            // Half the inputs get past the version check to reach the body decoder.
            if rng.next() % 2 == 0 {
                *first = VERSION;
            }
        }
        if let Ok(env) = decode(&b) {
            // Whatever decodes must be a valid message that survives a round trip.
            assert_eq!(decode(&encode(&env)).unwrap(), env);
            ok += 1;
        }
    }
    // Some random inputs are valid short messages (a Status, a Command), so this is not zero;
    // the point is that none of the rest panicked.
    assert!(ok < 200_000);
}

#[test]
fn mutated_golden_messages_never_panic() {
    let mut rng = Rng(42);
    for bytes in golden_encodings() {
        for _ in 0..5_000 {
            let mut b = bytes.clone();
            for _ in 0..=(rng.next() % 4) {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            if let Ok(env) = decode(&b) {
                // postcard accepts over-long varints, so the bytes need not be canonical; what
                // decodes must still be a valid message that survives a round trip.
                assert_eq!(decode(&encode(&env)).unwrap(), env);
            }
        }
    }
}

#[test]
fn a_full_sample_fits_the_max_size() {
    let mut sample = pi_sample();
    let full = |n: usize| -> String<32> { String::from("x".repeat(n).as_str()) };
    sample.seq = u64::MAX;
    sample.timestamp_ms = u64::MAX;
    sample.cpu.cores.clear();
    while sample.cpu.cores.push(u16::MAX).is_ok() {}
    sample.filesystems.clear();
    while sample
        .filesystems
        .push(Filesystem {
            mount: full(32),
            total: u64::MAX,
            used: u64::MAX,
        })
        .is_ok()
    {}
    let envelope = Envelope::new(
        HostId::new(&"h".repeat(32)).unwrap(),
        Message::Sample(sample),
    );
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let len = envelope.encode(&mut buf).unwrap().len();
    assert!(len <= MAX_ENCODED_LEN);
    assert_eq!(decode(&buf[..len]).unwrap(), envelope);
}

/// `split_message` finds every fixture's kind and its message's own postcard bytes, whatever the
/// host id's length, and nothing where the bytes are too short to hold them.
#[test]
fn split_message_finds_the_kind_and_the_message_bytes() {
    for id in ["a", "pi", &"h".repeat(HOST_ID_MAX_LEN)] {
        let host = HostId::new(id).unwrap();
        for (m, _) in fixtures() {
            let bytes = encode(&Envelope::new(host.clone(), m.clone()));
            let (kind, body) = split_message(&bytes).expect("an envelope");
            let mut whole = [0u8; MAX_ENCODED_LEN];
            let message = postcard::to_slice(&m, &mut whole).unwrap();
            // A message is its kind byte, then its body.
            assert_eq!(kind, message[0], "{m:?}");
            assert_eq!(body, &message[1..], "{m:?}");
            assert_eq!(kind == Message::SAMPLE, matches!(m, Message::Sample(_)));
        }
    }
    assert_eq!(split_message(&[]), None);
    assert_eq!(split_message(&[1, 5, b'a']), None);
    assert_eq!(split_message(&[1, 0x80, 0, 0]), None);
}
