//! The gate under attack (issue #20): a real rumqttd behind a real gate on loopback, clients
//! written byte by byte. Each test is an attack the issue found or suspected.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::access::Role;
use crate::config::{Config, User};
use crate::gate::{serve, Flow, Gate, Settings};

/// A gate in front of a real rumqttd on a loopback port, with `edit` applied to a default
/// config; the broker's link is kept open, nobody reads it.
pub(crate) async fn start(edit: impl FnOnce(&mut Config)) -> (SocketAddr, Arc<Gate>) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ember-gate-attacks-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut config = Config::ephemeral(dir);
    edit(&mut config);
    let broker = crate::broker::start(&config)
        .await
        .expect("the broker starts");
    std::mem::forget((broker.link_tx, broker.link_rx));
    let settings = Settings::from_config(&config, broker.handoff).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Gate::new(settings, Flow::new(1 << 20));
    tokio::spawn(serve(listener, gate.clone()));
    (addr, gate)
}

/// An argon2id hash of `password` with `t` passes over 19 MiB (argon2's default memory).
pub(crate) fn hash(password: &str, t: u32) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(19 * 1024, t, 1, None).unwrap();
    let salt = SaltString::encode_b64(&[5; 16]).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

pub(crate) fn account(config: &mut Config, name: &str, role: Role, hash: String) {
    config.mqtt.users.insert(
        name.to_string(),
        User {
            password_hash: Some(hash),
            role,
        },
    );
}

/// A TCP connection to `addr` from the loopback address `from` (any 127.x.y.z on Linux).
pub(crate) async fn tcp_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

pub(crate) fn connect_bytes(id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut c = Connect::new(id);
    c.keep_alive = 30;
    if let Some((u, p)) = login {
        c.set_login(u, p);
    }
    let mut b = BytesMut::new();
    c.write(&mut b).unwrap();
    b.to_vec()
}

/// Sends a CONNECT from `from` and returns the connection and the CONNACK's return code.
pub(crate) async fn login(
    addr: SocketAddr,
    from: [u8; 4],
    id: &str,
    login: Option<(&str, &str)>,
) -> (TcpStream, u8) {
    let mut s = tcp_from(from, addr).await;
    s.write_all(&connect_bytes(id, login)).await.unwrap();
    let code = connack(&mut s).await;
    (s, code)
}

/// The CONNACK's return code.
pub(crate) async fn connack(s: &mut TcpStream) -> u8 {
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut ack))
        .await
        .expect("a CONNACK in time")
        .expect("a CONNACK");
    assert_eq!(ack[..2], [0x20, 2]);
    ack[3]
}

/// Whether the gate closed `s` (within a few seconds).
pub(crate) async fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

/// Finding 3: hundreds of CONNECTs with a wrong password, all at once from one source, do
/// not hold a good client back: the source's share of the queue is bounded, then it is held
/// back, and what it left waiting is refused at once rather than checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_does_not_hold_a_good_client_back() {
    let (addr, gate) = start(|c| {
        account(c, "pi-a", Role::Agent, hash("right", 2));
    })
    .await;
    let wrong = connect_bytes("x", Some(("pi-a", "wrong")));
    let mut flood = Vec::new();
    for _ in 0..400 {
        let mut s = tcp_from([127, 0, 0, 2], addr).await;
        s.write_all(&wrong).await.unwrap();
        flood.push(s);
    }
    let t = Instant::now();
    let (_good, code) = login(addr, [127, 0, 0, 1], "good", Some(("pi-a", "right"))).await;
    let took = t.elapsed();
    assert_eq!(code, 0, "the good client is let in");
    assert!(
        took < Duration::from_secs(3),
        "the good client waited {took:?} behind the flood"
    );
    // Every flooding connection is answered, most of them at once without a check.
    for s in &mut flood {
        assert_ne!(connack(s).await, 0);
    }
    let stats = gate.stats();
    let checked = gate_admission(&gate).checked();
    assert!(checked < 50, "{checked} wrong passwords checked");
    assert!(stats.refused_busy > 300, "{stats:?}");
    assert_eq!(gate_admission(&gate).pending(), 0);
}

fn gate_admission(gate: &Gate) -> &crate::admission::Admission {
    &gate.accounts().expect("accounts").admission
}

/// Finding 3: a user name without an account is answered no sooner than a wrong password, so
/// which names exist cannot be timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_name_answers_no_sooner_than_a_wrong_password() {
    let (addr, _gate) = start(|c| {
        account(c, "pi-a", Role::Agent, hash("right", 4));
    })
    .await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Each from a source of its own: no backoff in the way.
    for i in 0..7u8 {
        let t = Instant::now();
        let (_, code) = login(addr, [127, 0, 1, i], "x", Some(("pi-a", "wrong"))).await;
        known.push(t.elapsed());
        assert_eq!(code, 4);
        let t = Instant::now();
        let (_, code) = login(addr, [127, 0, 2, i], "x", Some(("pi-nobody", "wrong"))).await;
        unknown.push(t.elapsed());
        assert_eq!(code, 4);
    }
    // The fastest of each: the check's own cost, whatever else shares the cores meanwhile.
    let known = known.into_iter().min().unwrap();
    let unknown = unknown.into_iter().min().unwrap();
    assert!(
        unknown * 2 >= known,
        "an unknown name answered in {unknown:?}, a wrong password in {known:?}"
    );
}

/// Finding 3: a login waiting for its password check holds one of `max-connections`, and
/// one whose client closed is never checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_logins_count_toward_max_connections_and_closed_ones_are_not_checked() {
    let (addr, gate) = start(|c| {
        c.max_connections = 1;
        // A slow hash: the check takes a while.
        account(c, "pi-a", Role::Agent, hash("right", 40));
    })
    .await;
    let mut slow = tcp_from([127, 0, 0, 1], addr).await;
    slow.write_all(&connect_bytes("a", Some(("pi-a", "wrong"))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(gate.stats().open, 1, "the pending login holds a slot");
    // Anyone else is refused for the limit, before any check.
    let (_, code) = login(addr, [127, 0, 0, 1], "b", None).await;
    assert_eq!(code, 3, "refused: max-connections");
    assert_eq!(connack(&mut slow).await, 4);
    // Given back once the refusal is written.
    let t = Instant::now();
    while gate.stats().open != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the slot is given back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Finding 3: logins whose clients closed while they waited for a check are never checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_client_closed_is_not_checked() {
    let (addr, gate) = start(|c| {
        account(c, "pi-a", Role::Agent, hash("right", 40));
    })
    .await;
    let wrong = connect_bytes("a", Some(("pi-a", "wrong")));
    // Two slow checks take both slots.
    let mut running = Vec::new();
    for i in 0..2u8 {
        let mut s = tcp_from([127, 0, 3, i], addr).await;
        s.write_all(&wrong).await.unwrap();
        running.push(s);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Four more wait behind them, and their clients leave.
    for i in 0..4u8 {
        let mut s = tcp_from([127, 0, 4, i], addr).await;
        s.write_all(&wrong).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(s);
    }
    for s in &mut running {
        assert_eq!(connack(s).await, 4);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admission = gate_admission(&gate);
    assert_eq!(
        admission.checked(),
        2,
        "only the clients still there were checked"
    );
    assert_eq!(admission.pending(), 0);
}

/// Suspected: a publish between `max-payload` and `max-payload + 1024` bytes went through the
/// gate, was counted by [`Flow`], and was refused by the broker: its room was never given
/// back. Now the gate refuses it first, in open mode and with accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_broker_would_refuse_takes_no_flow_room() {
    for accounts in [false, true] {
        let (addr, gate) = start(|c| {
            c.max_payload = 4096;
            if accounts {
                account(c, "pi-a", Role::Agent, hash("right", 1));
            }
        })
        .await;
        let (mut s, code) = login(
            addr,
            [127, 0, 0, 1],
            "pi-a",
            accounts.then_some(("pi-a", "right")),
        )
        .await;
        assert_eq!(code, 0);
        let mut p = Publish::new("ember/v1/pi-a/sample", QoS::AtLeastOnce, vec![7u8; 4096]);
        p.pkid = 1;
        let mut b = BytesMut::new();
        p.write(&mut b).unwrap();
        let _ = s.write_all(&b).await;
        assert!(closed(&mut s).await, "accounts: {accounts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = gate.stats();
        assert_eq!(stats.ingest_lag_bytes, 0, "accounts: {accounts}: {stats:?}");
        assert_eq!(stats.oversized, 1, "accounts: {accounts}: {stats:?}");
    }
}

/// A client's side of the byte stream: whole packets back from the gate.
struct Peer {
    s: TcpStream,
    buf: BytesMut,
}

impl Peer {
    /// Connects (and is let in), as `login` if given.
    async fn connect(addr: SocketAddr, id: &str, who: Option<(&str, &str)>) -> Self {
        let (s, code) = login(addr, [127, 0, 0, 1], id, who).await;
        assert_eq!(code, 0, "{id} let in");
        Peer {
            s,
            buf: BytesMut::new(),
        }
    }

    async fn subscribe(&mut self, pkid: u16, filters: &[String]) {
        let mut sub = rumqttc::mqttbytes::v4::Subscribe::new_many(
            filters
                .iter()
                .map(|f| rumqttc::mqttbytes::v4::SubscribeFilter::new(f.clone(), QoS::AtMostOnce)),
        );
        sub.pkid = pkid;
        let mut b = BytesMut::new();
        sub.write(&mut b).unwrap();
        self.s.write_all(&b).await.unwrap();
    }

    async fn unsubscribe(&mut self, pkid: u16, filters: &[String]) {
        let mut u = rumqttc::mqttbytes::v4::Unsubscribe::new(filters[0].clone());
        u.topics = filters.to_vec();
        u.pkid = pkid;
        let mut b = BytesMut::new();
        u.write(&mut b).unwrap();
        self.s.write_all(&b).await.unwrap();
    }

    /// The next packet from the gate, skipping publishes; `None` once it closed.
    async fn next(&mut self) -> Option<bytes::Bytes> {
        loop {
            if let Some((_, frame)) = crate::gate::next_frame(&mut self.buf, 1 << 20).unwrap() {
                if frame[0] >> 4 == 3 {
                    continue;
                }
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
                .await
                .expect("an answer in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The SUBACK's return codes for `pkid`.
    async fn suback(&mut self, pkid: u16) -> Option<Vec<u8>> {
        let frame = self.next().await?;
        assert_eq!(frame[0], 0x90, "a SUBACK: {frame:?}");
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), pkid);
        Some(frame[4..].to_vec())
    }
}

/// A gate whose connections hold at most `cap` filters, and a client let in: as a reader if
/// `accounts`, else in open mode.
async fn subscriber(accounts: bool, cap: usize) -> (Arc<Gate>, Peer) {
    let (addr, gate) = start(|c| {
        c.mqtt.max_subscriptions = cap;
        if accounts {
            account(c, "dash", Role::Reader, hash("pw", 1));
        }
    })
    .await;
    let who = accounts.then_some(("dash", "pw"));
    (gate, Peer::connect(addr, "r", who).await)
}

fn filters(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("x/{i}")).collect()
}

/// Issue #20 (finding 2 and least privilege): no connection holds more than
/// `mqtt.max-subscriptions` filters. With accounts, a SUBSCRIBE above the cap is answered
/// with 0x80 for each filter and the connection stays; in open mode, where the gate relays
/// bytes, the connection is closed. Unsubscribing gives room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_holds_more_filters_than_the_cap() {
    for accounts in [true, false] {
        let (gate, mut p) = subscriber(accounts, 4).await;
        p.subscribe(1, &filters(0, 3)).await;
        assert_eq!(
            p.suback(1).await,
            Some(vec![0, 0, 0]),
            "accounts: {accounts}"
        );
        // The same filters again take no room.
        p.subscribe(2, &filters(1, 3)).await;
        assert_eq!(
            p.suback(2).await,
            Some(vec![0, 0, 0]),
            "accounts: {accounts}"
        );
        // Room given back by an UNSUBSCRIBE.
        p.unsubscribe(3, &filters(0, 1)).await;
        assert_eq!(p.next().await.map(|f| f[0]), Some(0xb0), "UNSUBACK");
        p.subscribe(4, &filters(3, 2)).await;
        assert_eq!(p.suback(4).await, Some(vec![0, 0]), "accounts: {accounts}");
        // Four held: a fifth is refused.
        p.subscribe(5, &filters(100, 2)).await;
        if accounts {
            assert_eq!(p.suback(5).await, Some(vec![0x80, 0x80]));
            // The connection is still served.
            p.subscribe(6, &filters(1, 1)).await;
            assert_eq!(p.suback(6).await, Some(vec![0]));
        } else {
            assert_eq!(p.next().await, None, "open mode: closed");
        }
        assert_eq!(
            gate.stats().refused_subscriptions,
            1,
            "accounts: {accounts}"
        );
    }
}

/// Issue #20 (suspected: each SUBSCRIBE scans the broker's retained table on its router
/// thread): SUBSCRIBE and UNSUBSCRIBE go on at 20 filters a second after a burst of the cap,
/// with accounts and in open mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_and_unsubscribes_are_held_to_a_rate() {
    for accounts in [true, false] {
        let (_gate, mut p) = subscriber(accounts, 20).await;
        let t = Instant::now();
        // 60 filters' worth: 20 at once, then 40 at 20 a second.
        for round in 0..3u16 {
            p.subscribe(2 * round + 1, &filters(0, 10)).await;
            p.unsubscribe(2 * round + 2, &filters(0, 10)).await;
        }
        // Until the last UNSUBSCRIBE is answered.
        loop {
            let f = p.next().await.expect("answered");
            if f[0] == 0xb0 && f[2..4] == [0, 6] {
                break;
            }
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1800),
            "accounts: {accounts}: 60 filters in {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "accounts: {accounts}: {took:?}"
        );
    }
}
