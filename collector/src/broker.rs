//! The embedded rumqttd broker, configured from Ember's own [`Config`], and the in-process link
//! that ingest reads from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, ConnectionSettings, Handoff, RouterConfig, ServerSettings};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::config::Config;

/// Errors starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker's thread could not be started.
    #[error("cannot start the embedded broker: {0}")]
    Thread(std::io::Error),
    /// The broker's in-process link was refused.
    #[error("cannot link to the embedded broker: {0}")]
    Link(Box<rumqttd::local::LinkError>),
    /// The broker did not answer a CONNECT.
    #[error("the embedded broker did not answer within {0:?}")]
    NotReady(Duration),
}

/// Bytes in one segment of a filter's in-memory log.
pub const SEGMENT_SIZE: usize = 1 << 20;
/// Segments a filter's log keeps; when a new one is needed the oldest goes, read or not.
pub const SEGMENT_COUNT: usize = 4;

/// The name of rumqttd's one server, whose connections the gate hands over ([`connect`]).
const SERVER: &str = "ember";

/// Bytes buffered each way between the gate and rumqttd, per connection. The buffers grow to
/// what is in flight (an agent's sample is a few hundred bytes) and are let go once read
/// ([`Pipe`]); this bounds them, and a writer that finds the buffer full waits, as on a socket.
const PIPE_BYTES: usize = 64 * 1024;

/// The broker's settings, derived from the collector's config.
///
/// rumqttd keeps each subscribed filter's log in memory as segments; the collector's own
/// subscription and every external subscriber's filter get `SEGMENT_SIZE * SEGMENT_COUNT`
/// bytes at most, so the broker's memory stays bounded however long it runs.
///
/// rumqttd has no listener: its one server takes the connections the gate (`gate.rs`) hands
/// it in-process ([`connect`]), so no other process can reach it, and a client costs one file
/// descriptor (its own socket) rather than three.
pub fn rumqttd_config(config: &Config) -> rumqttd::Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: max_packet(config),
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "ember-v4".to_string(),
        // Never bound: the server takes handed-over connections only (`Broker::handoff`).
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: RouterConfig {
            // The gate (`gate.rs`) enforces `max-connections`; the router must never refuse a
            // connection itself (rumqttd then panics when the client id comes back). The
            // headroom covers the collector's own link, the readiness probe and connections
            // rumqttd has not yet finished closing.
            max_connections: config.max_connections + ROUTER_HEADROOM,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_SIZE,
            max_segment_count: SEGMENT_COUNT,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
            // Persistent sessions kept for clients that left: as many as may connect, each
            // for a day at most (rumqttd 0.20 kept every client id's, forever).
            max_saved_sessions: Some(config.max_connections + ROUTER_HEADROOM),
            saved_session_expiry_secs: Some(SAVED_SESSION_EXPIRY.as_secs()),
        },
        // MQTT 5 clients: the gate hands them to the v5 server of the same name
        // (`connect_v5`, `gate_v5.rs`).
        v5: Some(HashMap::from([(
            SERVER.to_string(),
            ServerSettings {
                name: "ember-v5".to_string(),
                // The gate's own limit, which it tells MQTT 5 clients in the CONNACK and
                // enforces before rumqttd (3.1.1 clients, told nothing, meet rumqttd's).
                connections: ConnectionSettings {
                    max_payload_size: max_packet(config),
                    ..server.connections.clone()
                },
                ..server.clone()
            },
        )])),
        v4: Some(HashMap::from([(SERVER.to_string(), server)])),
        ws: None,
        cluster: None,
        // No console: rumqttd's has no authentication.
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// The largest packet (remaining length) the gate takes from a client, and rumqttd's own limit
/// on both servers (`max_payload_size`, which it compares with the remaining length): equal,
/// so that nothing the gate lets through (and [`crate::gate::Flow`] counts) is refused by
/// rumqttd, its room never given back while ingest is busy.
pub fn max_packet(config: &Config) -> usize {
    config.max_payload
}

/// Router connections beyond `max-connections`: see [`rumqttd_config`].
pub const ROUTER_HEADROOM: usize = 16;

/// How long rumqttd keeps a persistent session after its client left.
pub const SAVED_SESSION_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A running broker: the gate's way in and the collector's link.
pub struct Running {
    /// Hands the gate's connections to rumqttd ([`connect`]).
    pub handoff: Handoff,
    /// Sends into the broker as the collector.
    pub link_tx: LinkTx,
    /// Receives what the collector subscribed to.
    pub link_rx: LinkRx,
    /// The sizes of the router's per-client tables.
    pub gauges: Arc<rumqttd::Gauges>,
}

/// Starts rumqttd on its own threads and waits until it answers a CONNECT.
///
/// rumqttd has no way to stop; its threads end with the process.
pub async fn start(config: &Config) -> Result<Running, BrokerError> {
    start_serving(config, None).await
}

/// [`start`], new subscriptions also getting the retained messages `source` serves (the MQTT
/// bridge's, [`crate::bridge::Served`]), which rumqttd's retained table then need not hold.
pub async fn start_serving(
    config: &Config,
    source: Option<Arc<dyn rumqttd::RetainedSource>>,
) -> Result<Running, BrokerError> {
    let mut broker = Broker::with_retained_source(rumqttd_config(config), source);
    let handoff = broker.handoff(SERVER);
    let gauges = broker.gauges();
    let (link_tx, link_rx) = broker
        .link("ember-collector")
        .map_err(|e| BrokerError::Link(Box::new(e)))?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("the embedded broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    let timeout = Duration::from_secs(5);
    match tokio::time::timeout(timeout, mqtt_ping(&handoff)).await {
        Ok(Ok(())) => Ok(Running {
            handoff,
            gauges,
            link_tx,
            link_rx,
        }),
        _ => Err(BrokerError::NotReady(timeout)),
    }
}

/// A [`Handoff`] to a broker whose server never starts (its router does): for tests and fuzzing
/// of what the gate decides before it connects anything.
pub fn idle_handoff() -> Handoff {
    Broker::new(rumqttd_config(&Config::ephemeral(std::env::temp_dir()))).handoff(SERVER)
}

/// A new connection to rumqttd, as if it had connected to its listener: the gate's end of an
/// in-memory pipe whose other end rumqttd serves.
pub fn connect(handoff: &Handoff) -> std::io::Result<Pipe> {
    handed(|theirs| handoff.hand(theirs))
}

/// [`connect`] for an MQTT 5 client: the connection goes to rumqttd's v5 server.
pub fn connect_v5(handoff: &Handoff) -> std::io::Result<Pipe> {
    handed(|theirs| handoff.hand_v5(theirs))
}

/// A pipe whose other end `hand` gives rumqttd.
fn handed(
    hand: impl FnOnce(Box<dyn rumqttd::N>) -> Result<(), Box<dyn rumqttd::N>>,
) -> std::io::Result<Pipe> {
    let (ours, theirs) = pipe(PIPE_BYTES);
    hand(Box::new(theirs)).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the embedded broker has stopped",
        )
    })?;
    Ok(ours)
}

/// One end of an in-memory pipe between the gate and rumqttd: what one end writes, the other
/// reads. As tokio's `duplex`, except that a direction's buffer is let go once it has been
/// read to the end, so a connection that is not sending holds none (tokio's keeps the largest
/// it ever held, each way, for the connection's life). Dropping an end closes both directions.
#[derive(Debug)]
pub struct Pipe {
    read: Arc<Mutex<Simplex>>,
    write: Arc<Mutex<Simplex>>,
}

/// One direction of a [`Pipe`].
#[derive(Debug)]
struct Simplex {
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    at: usize,
    max: usize,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Simplex {
    fn new(max: usize) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Simplex {
            buf: Vec::new(),
            at: 0,
            max,
            closed: false,
            reader: None,
            writer: None,
        }))
    }

    /// Closes this direction; returns the waker of its reader or writer to wake.
    fn close(&mut self) -> (Option<Waker>, Option<Waker>) {
        self.closed = true;
        (self.reader.take(), self.writer.take())
    }
}

/// Two connected [`Pipe`] ends, each direction holding up to `max` bytes unread.
pub fn pipe(max: usize) -> (Pipe, Pipe) {
    let (one, two) = (Simplex::new(max), Simplex::new(max));
    (
        Pipe {
            read: one.clone(),
            write: two.clone(),
        },
        Pipe {
            read: two,
            write: one,
        },
    )
}

fn lock(s: &Mutex<Simplex>) -> std::sync::MutexGuard<'_, Simplex> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut s = lock(&self.read);
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let unread = s.buf.len() - s.at;
        if unread > 0 {
            let n = unread.min(out.remaining());
            out.put_slice(&s.buf[s.at..s.at + n]);
            s.at += n;
            if s.at == s.buf.len() {
                // Read to the end: let the memory go.
                s.buf = Vec::new();
                s.at = 0;
            }
            let writer = s.writer.take();
            drop(s);
            wake(writer);
            Poll::Ready(Ok(()))
        } else if s.closed {
            Poll::Ready(Ok(()))
        } else {
            s.reader = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut s = lock(&self.write);
        if s.closed {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = s.max - (s.buf.len() - s.at);
        if room == 0 {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if s.at > 0 && s.buf.len() + data.len().min(room) > s.buf.capacity() {
            // Move the unread bytes to the front rather than grow.
            let at = s.at;
            s.buf.drain(..at);
            s.at = 0;
        }
        let n = data.len().min(room);
        s.buf.extend_from_slice(&data[..n]);
        let reader = s.reader.take();
        drop(s);
        wake(reader);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (reader, _) = lock(&self.write).close();
        wake(reader);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // What this end would have written ends (its reader sees the end of the stream); what
        // it would have read is refused (its writer gets `BrokenPipe`).
        let (reader, _) = lock(&self.write).close();
        let (_, writer) = lock(&self.read).close();
        wake(reader);
        wake(writer);
    }
}

/// Connects, waits for the CONNACK, and disconnects cleanly.
async fn mqtt_ping(handoff: &Handoff) -> std::io::Result<()> {
    let mut probe = rumqttc::mqttbytes::v4::Connect::new("ember-collector-probe");
    probe.keep_alive = 10;
    let mut packet = bytes::BytesMut::new();
    probe
        .write(&mut packet)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut stream = connect(handoff)?;
    stream.write_all(&packet).await?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await?;
    if connack != [0x20, 2, 0, 0] {
        return Err(std::io::Error::other("not an MQTT CONNACK"));
    }
    stream.write_all(&[0xe0, 0]).await?;
    Ok(())
}

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipe carries bytes both ways in order, holds a writer back while its direction is
    /// full, ends at a shutdown or a drop, and lets a direction's buffer go once it is read.
    #[tokio::test]
    async fn the_pipe_carries_bytes_and_keeps_no_buffer_once_read() {
        let (mut a, mut b) = pipe(16);
        let sent: Vec<u8> = (0..200u8).collect();
        let writer = tokio::spawn({
            let sent = sent.clone();
            async move {
                for piece in sent.chunks(7) {
                    a.write_all(piece).await.unwrap();
                }
                a
            }
        });
        let mut got = vec![0u8; sent.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent);
        let mut a = writer.await.unwrap();
        assert_eq!(lock(&b.read).buf.capacity(), 0, "read to the end: let go");
        // A full direction holds its writer back until the reader takes some.
        a.write_all(&[1; 16]).await.unwrap();
        let mut more = tokio::spawn(async move {
            a.write_all(&[2; 4]).await.unwrap();
            a
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!more.is_finished(), "held while full");
        let mut four = [0u8; 4];
        b.read_exact(&mut four).await.unwrap();
        let mut a = tokio::time::timeout(Duration::from_secs(1), &mut more)
            .await
            .expect("released once read")
            .unwrap();
        let mut rest = vec![0u8; 16];
        b.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest[12..], [2; 4]);
        // The other way, then a shutdown: the reader sees the end.
        b.write_all(b"ack").await.unwrap();
        b.shutdown().await.unwrap();
        let mut back = Vec::new();
        a.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ack");
        // A dropped end: the other's writes fail.
        drop(b);
        assert!(a.write_all(b"x").await.is_err());
    }

    /// A subscriber gets every retained message its filter matches, however many: rumqttd 0.20
    /// sent as many as one read's room (200 at QoS 0, the free inflight slots at QoS 1) and
    /// dropped the rest, so Home Assistant subscribing to discovery behind a fleet of more
    /// than a hundred or two hosts saw only some of them. Those a retained source serves (the
    /// MQTT bridge's, from the store) come the same way, the table's first where both have one.
    #[tokio::test]
    async fn a_subscriber_gets_every_retained_message() {
        use rumqttc::mqttbytes::v4::{self, Packet as In};
        use rumqttc::mqttbytes::QoS;
        use rumqttd::protocol::{Packet, Publish};
        const N: usize = 1000;
        /// Serves `s/0` … `s/499`, each its number.
        struct Source;
        impl rumqttd::RetainedSource for Source {
            fn topics(&self, filter: &str) -> Vec<String> {
                (0..N / 2)
                    .map(|i| format!("s/{i}"))
                    .filter(|t| rumqttd::protocol::matches(t, filter))
                    .collect()
            }
            fn payload(&self, topic: &str) -> Option<Vec<u8>> {
                topic.strip_prefix("s/").map(|i| i.as_bytes().to_vec())
            }
        }
        let dir =
            std::env::temp_dir().join(format!("ember-broker-retained-{}", std::process::id()));
        let mut running = start_serving(&Config::ephemeral(dir), Some(Arc::new(Source)))
            .await
            .expect("the broker starts");
        let mut retained: Vec<(String, Vec<u8>)> =
            (0..N).map(|i| (format!("t/{i}"), vec![7; 300])).collect();
        // Another topic; and one the source serves too, whose table copy is sent.
        retained.push(("other".into(), vec![1]));
        retained.push(("s/0".into(), b"table".to_vec()));
        for (topic, payload) in retained {
            let p = Publish::new(topic.into_bytes(), payload, true);
            running
                .link_tx
                .send(Packet::Publish(p, None))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (filter, qos, n) in [
            ("t/#", QoS::AtMostOnce, N),
            ("t/#", QoS::AtLeastOnce, N),
            ("#", QoS::AtMostOnce, N + 1 + N / 2),
        ] {
            let mut s = connect(&running.handoff).unwrap();
            let mut out = bytes::BytesMut::new();
            let mut c = v4::Connect::new(format!("retained-{n}-{qos:?}"));
            c.keep_alive = 30;
            c.write(&mut out).unwrap();
            v4::Subscribe::new(filter, qos).write(&mut out).unwrap();
            s.write_all(&out).await.unwrap();
            let mut got = std::collections::HashMap::new();
            let mut buf = bytes::BytesMut::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while got.len() < n {
                match In::read(&mut buf, 1 << 20) {
                    Ok(In::Publish(p)) => {
                        assert!(p.retain, "sent as retained");
                        if p.qos == QoS::AtLeastOnce {
                            let mut ack = bytes::BytesMut::new();
                            v4::PubAck::new(p.pkid).write(&mut ack).unwrap();
                            s.write_all(&ack).await.unwrap();
                        }
                        assert!(got.insert(p.topic, p.payload).is_none(), "sent twice");
                    }
                    Ok(_) => {}
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                        let mut more = [0u8; 4096];
                        let read = tokio::time::timeout_at(deadline, s.read(&mut more)).await;
                        let k = read
                            .unwrap_or_else(|_| panic!("{filter}: {} of {n} in 10 s", got.len()))
                            .unwrap();
                        assert!(k > 0, "closed");
                        buf.extend_from_slice(&more[..k]);
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            assert_eq!(got.len(), n, "{filter} {qos:?}");
            if filter == "#" {
                assert_eq!(&got["s/0"][..], b"table");
                assert_eq!(&got["s/499"][..], b"499");
                assert_eq!(&got["other"][..], [1]);
            }
        }
    }

    /// rumqttd's MQTT 5 reader answers a packet only a server sends (CONNACK, UNSUBACK) with an
    /// error: rumqttd 0.20 reached `unreachable!()` there, a panic per packet from any client
    /// (with `panic = "abort"`, the collector's end).
    #[test]
    fn a_clients_server_packets_are_an_error_not_a_panic() {
        use rumqttd::protocol::{v5::V5, Protocol};
        for packet in [
            &[0x20u8, 3, 0, 0, 0][..],
            &[0xb0, 3, 0, 1, 0],
            &[0xb0, 4, 0, 1, 0, 0],
        ] {
            let read = std::panic::catch_unwind(|| {
                V5.read_mut(&mut bytes::BytesMut::from(packet), 1024)
                    .map(|_| ())
            });
            assert!(matches!(read, Ok(Err(_))), "{packet:?}: {read:?}");
        }
    }

    /// rumqttd is reached through the handoff only: every connection handed over is served,
    /// side by side, and none needs a password.
    #[tokio::test]
    async fn connections_handed_over_are_served() {
        let dir = std::env::temp_dir().join(format!("ember-broker-handoff-{}", std::process::id()));
        let running = start(&Config::ephemeral(dir))
            .await
            .expect("the broker starts");
        let mut streams = Vec::new();
        for i in 0..3 {
            let mut packet = rumqttc::mqttbytes::v4::Connect::new(format!("handed-{i}"));
            packet.keep_alive = 10;
            let mut bytes = bytes::BytesMut::new();
            packet.write(&mut bytes).unwrap();
            let mut s = connect(&running.handoff).expect("the broker takes connections");
            s.write_all(&bytes).await.unwrap();
            streams.push(s);
        }
        for s in &mut streams {
            let mut ack = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
                .await
                .expect("a CONNACK in time")
                .unwrap();
            assert_eq!(ack, [0x20, 2, 0, 0]);
        }
        // PINGREQ, PINGRESP on a connection that is open.
        streams[1].write_all(&[0xc0, 0]).await.unwrap();
        let mut pong = [0u8; 2];
        streams[1].read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0xd0, 0]);
    }
}
