//! The sampling path allocates nothing once warmed up: sample → encode → outbox, counted by a
//! global allocator that counts the calls made on this test's thread.
//!
//! What this does not cover: rumqttc takes each publish as an owned `String` topic and
//! `Vec<u8>` payload, so handing a sample to the MQTT client allocates inside rumqttc; the
//! agent's own path up to its outbox does not.

#![allow(unsafe_code)] // a counting allocator must implement `GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use ember_agent::outbox::Outbox;
use ember_agent::{AgentConfig, Sampler};
use ember_wire::{Envelope, Message, MAX_ENCODED_LEN};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// Runs `cycles` full cycles after a warm-up and returns the allocations they made.
fn allocations_per_cycles(sampler: &mut Sampler, cycles: u64) -> u64 {
    let config = AgentConfig::new("127.0.0.1:1883", Some("alloc"), "1s", None).unwrap();
    let mut outbox = Outbox::new(config.buffer);
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut cycle = |sampler: &mut Sampler, outbox: &mut Outbox| {
        // One second per cycle, so that every cycle walks the process table too.
        let sample = sampler.sample_over(std::time::Duration::from_secs(1));
        let seq = sample.seq;
        let envelope = Envelope::new(config.host_id.clone(), Message::Sample(sample));
        let bytes = envelope.encode(&mut buf).expect("fits");
        outbox.push(seq, bytes);
    };
    // Warm-up: the process table and buffers reach their working size.
    for _ in 0..3 {
        cycle(sampler, &mut outbox);
    }
    let before = allocations();
    for _ in 0..cycles {
        cycle(sampler, &mut outbox);
    }
    allocations() - before
}

#[test]
fn sampling_this_machine_allocates_nothing_after_warm_up() {
    let mut config = AgentConfig::new("127.0.0.1:1883", Some("alloc"), "1s", None).unwrap();
    config.watch = vec!["init".into(), "sshd".into()];
    config.process_interval = std::time::Duration::from_secs(1);
    let mut sampler = Sampler::new(&config).unwrap();
    let n = allocations_per_cycles(&mut sampler, 20);
    assert_eq!(n, 0, "{n} allocations in 20 cycles");
}

#[test]
fn sampling_the_pi_fixture_allocates_nothing_after_warm_up() {
    fn usage(_: &Path) -> Option<(u64, u64)> {
        Some((32 << 30, 8 << 30))
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi4");
    let mut config = AgentConfig::new("127.0.0.1:1883", Some("alloc"), "1s", None).unwrap();
    config.process_interval = std::time::Duration::from_secs(1);
    let mut sampler = Sampler::with_root(&config, root, usage).unwrap();
    let n = allocations_per_cycles(&mut sampler, 20);
    assert_eq!(n, 0, "{n} allocations in 20 cycles");
}

#[test]
fn the_counter_counts() {
    // Guards the two tests above against a counter that never moves.
    let before = allocations();
    let v: Vec<u8> = Vec::with_capacity(10);
    std::hint::black_box(&v);
    assert_eq!(allocations() - before, 1);
}
