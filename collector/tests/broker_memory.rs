//! The embedded broker keeps nothing for a client that has gone with a clean session: connecting
//! and disconnecting thousands of client ids (MQTT 5 clients with an empty id get one each from
//! the gate, `v5-{n}`; rumqttd makes one for a 3.1.1 client) must not grow the heap.
//!
//! Its own test binary: it counts the process's live heap bytes with a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to `System` unchanged; only a counter is kept besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Connects as `id` (clean session; MQTT 5 with `v5`), waits for the CONNACK, disconnects and
/// waits until rumqttd has closed its side.
async fn visit(handoff: &rumqttd::Handoff, id: &str, v5: bool) {
    let mut out = bytes::BytesMut::new();
    let mut s = if v5 {
        let connect = rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive: 30,
            client_id: id.to_owned(),
            clean_start: true,
            properties: None,
        };
        connect.write(&None, &None, &mut out).unwrap();
        ember_collector::broker::connect_v5(handoff).unwrap()
    } else {
        let mut connect = rumqttc::mqttbytes::v4::Connect::new(id);
        connect.keep_alive = 30;
        connect.write(&mut out).unwrap();
        ember_collector::broker::connect(handoff).unwrap()
    };
    s.write_all(&out).await.unwrap();
    // The CONNACK (MQTT 5's has properties after the code).
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!((head[0], body[1]), (0x20, 0), "{id} accepted");
    s.write_all(&[0xe0, 0]).await.unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_have_gone_leave_nothing_in_the_broker() {
    let dir = std::env::temp_dir().join(format!("ember-broker-memory-{}", std::process::id()));
    let config = ember_collector::Config::ephemeral(dir);
    let running = ember_collector::broker::start(&config)
        .await
        .expect("the broker starts");
    // Warm up: buffers, the router's slabs and maps at their working size.
    for i in 0..500 {
        visit(&running.handoff, &format!("warm-{i}"), i % 2 == 0).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = LIVE.load(Ordering::Relaxed);
    const N: isize = 3000;
    for i in 0..N {
        visit(&running.handoff, &format!("gone-{i}"), i % 2 == 0).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_client = (LIVE.load(Ordering::Relaxed) - before) / N;
    eprintln!("heap kept per client that has gone: {per_client} bytes");
    assert!(
        per_client < 32,
        "{per_client} bytes of heap kept per client that has gone"
    );
}
