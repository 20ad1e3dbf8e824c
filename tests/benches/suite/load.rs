//! Load: N real MQTT connections publishing realistic postcard samples to the release collector
//! or to Mosquitto, measured from outside.
//!
//! Every connection is an agent as the broker sees it: CONNECT with a retained last will, the
//! retained status and inventory, then samples at QoS 1 from [`Synth`] (each host its own
//! character), with `timestamp_ms` set to the send time. Two modes:
//!
//! - `paced`: every agent publishes once per `--interval-ms`, the agents spread evenly over the
//!   interval, for `--secs`. Latency is followed for one host in `--probe-every` (the send time of
//!   each of its samples is kept): to the collector's event stream (`/api/events?hosts=…`) or to a
//!   plain MQTT subscriber of Mosquitto. For the collector, `--api-probes` more agents each poll
//!   `/api/hosts/{id}/samples?after_seq=` every millisecond after each publish until the sample
//!   is there. Loss is what was sent minus what was stored (per host, from `/api/hosts`) or
//!   delivered (the subscriber's count).
//! - `saturate`: every connection keeps `--window` publishes in flight (the next one goes when a
//!   PUBACK comes), for `--secs`; the rate at which samples are stored (collector) or delivered to
//!   the subscriber (Mosquitto) is the capacity.
//!
//! The broker's RSS and CPU come from `/proc/<pid>`; the generator's own CPU from `/proc/self`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ember_agent::simulate::Synth;
use ember_wire::topic::{self, Kind};
use ember_wire::{Envelope, HostId, Message, Status, MAX_ENCODED_LEN};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::mqtt;
use crate::procs::{self, CpuWindow};
use crate::Args;

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ember,
    Mosquitto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Paced,
    Saturate { window: usize },
}

/// What every agent task shares.
struct Shared {
    broker: SocketAddr,
    mode: Mode,
    interval: Duration,
    agents: usize,
    probe_every: usize,
    /// Connected, with status and inventory acknowledged.
    ready: AtomicUsize,
    connect_failed: AtomicUsize,
    /// Samples written to a socket, and acknowledged by the broker.
    sent: AtomicU64,
    acked: AtomicU64,
    /// Connections lost after connecting.
    dropped: AtomicUsize,
    /// Ticks that fired more than 100 ms late (the generator falling behind), and the worst.
    late_ticks: AtomicU64,
    worst_lag_us: AtomicU64,
    /// Send times (µs since the epoch) of the followed hosts' samples, by (host, seq).
    probe_sent: Mutex<HashMap<(usize, u64), u64>>,
    /// Publish → PUBACK of the followed hosts, ms.
    ack_latency: Mutex<Vec<f64>>,
    go: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

fn host_id(i: usize) -> HostId {
    HostId::new(&format!("load-{i:05}")).expect("valid host id")
}

fn host_index(id: &str) -> Option<usize> {
    id.strip_prefix("load-")?.parse().ok()
}

/// Appends a PUBLISH of `message` from `host`.
fn publish_message(
    out: &mut Vec<u8>,
    host: &HostId,
    kind: Kind,
    pkid: u16,
    message: Message,
) -> anyhow::Result<()> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let bytes = Envelope::new(host.clone(), message)
        .encode(&mut buf)
        .map_err(|e| anyhow::anyhow!("encoding: {e:?}"))?;
    let t = topic::topic(host, kind);
    mqtt::publish(out, &t, pkid, kind.retained(), bytes);
    Ok(())
}

fn next_pkid(p: &mut u16) -> u16 {
    *p = p.checked_add(1).unwrap_or(1);
    *p
}

/// Connects from one of many loopback source addresses, so that ten thousand connections and
/// the TIME_WAIT of a previous run never run out of ports.
async fn connect_tcp(i: usize, broker: SocketAddr) -> std::io::Result<TcpStream> {
    let source = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1 + (i / 250 % 200) as u8,
            2 + (i % 250) as u8,
        )),
        0,
    );
    let socket = tokio::net::TcpSocket::new_v4()?;
    if broker.ip().is_loopback() {
        socket.bind(source)?;
    }
    let stream = socket.connect(broker).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads until one whole packet is buffered; returns its frame.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<mqtt::Frame> {
    loop {
        if let Some(f) = mqtt::frame(buf).map_err(|_| anyhow::anyhow!("malformed packet"))? {
            return Ok(f);
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the broker closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects host `i`: CONNECT with a last will, CONNACK, retained status and inventory, both
/// acknowledged.
async fn hello(i: usize, sh: &Shared, synth: &Synth) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let host = host_id(i);
    let mut will = Vec::new();
    let mut b = [0u8; MAX_ENCODED_LEN];
    let offline = Envelope::new(host.clone(), Message::Status(Status::Offline))
        .encode(&mut b)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    will.extend_from_slice(offline);
    let status_topic = topic::topic(&host, Kind::Status);
    let mut stream = connect_tcp(i, sh.broker).await?;
    let connect = mqtt::connect(
        host.as_str(),
        60,
        Some(mqtt::Will {
            topic: &status_topic,
            payload: &will,
        }),
    );
    stream.write_all(&connect).await?;
    let mut rbuf = Vec::with_capacity(256);
    let f = read_frame(&mut stream, &mut rbuf).await?;
    if f.kind() != 2 || rbuf.get(f.body + 1) != Some(&0) {
        bail!("no CONNACK: {:?}", &rbuf[..f.len.min(rbuf.len())]);
    }
    rbuf.drain(..f.len);
    let mut out = Vec::with_capacity(512);
    let interval_ms = sh.interval.as_millis() as u32;
    publish_message(
        &mut out,
        &host,
        Kind::Status,
        1,
        Message::Status(Status::Online { interval_ms }),
    )?;
    publish_message(
        &mut out,
        &host,
        Kind::Info,
        2,
        Message::HostInfo(synth.info(&host)),
    )?;
    stream.write_all(&out).await?;
    let mut acks = 0;
    while acks < 2 {
        let f = read_frame(&mut stream, &mut rbuf).await?;
        if f.kind() == 4 {
            acks += 1;
        }
        rbuf.drain(..f.len);
    }
    Ok((stream, rbuf))
}

/// One agent: connects, waits for the start, publishes until the stop, then waits for the last
/// acknowledgements. Returns the samples it sent.
async fn agent(i: usize, sh: Arc<Shared>, gate: Arc<Semaphore>) -> u64 {
    let mut synth = Synth::new(i as u64 + 1, 0, sh.interval);
    let permit = gate.acquire().await;
    let mut tries = 0;
    let (mut stream, mut rbuf) = loop {
        match tokio::time::timeout(Duration::from_secs(30), hello(i, &sh, &synth)).await {
            Ok(Ok(c)) => break c,
            Ok(Err(_)) | Err(_) if tries < 3 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            _ => {
                sh.connect_failed.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
        }
    };
    drop(permit);
    sh.ready.fetch_add(1, Ordering::Relaxed);
    let mut go = sh.go.clone();
    let mut stop = sh.stop.clone();
    if go.wait_for(|g| *g).await.is_err() || *stop.borrow() {
        return 0;
    }
    let host = host_id(i);
    let followed = i.is_multiple_of(sh.probe_every.max(1));
    let mut pkid = 0u16;
    let mut pending: VecDeque<(u16, Instant)> = VecDeque::new();
    let mut sent = 0u64;
    let mut out = Vec::with_capacity(512);
    let mut chunk = vec![0u8; 512];
    // Paced agents are spread over the interval, as real boards would be.
    let offset = sh.interval.mul_f64(i as f64 / sh.agents.max(1) as f64);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, sh.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let window = match sh.mode {
        Mode::Paced => usize::MAX,
        Mode::Saturate { window } => window,
    };
    let mut lost = false;
    'run: loop {
        let mut due = false;
        if let Mode::Saturate { .. } = sh.mode {
            due = pending.len() < window;
        }
        if !due {
            tokio::select! {
                scheduled = ticker.tick(), if sh.mode == Mode::Paced => {
                    let lag = scheduled.elapsed();
                    if lag > Duration::from_millis(100) {
                        sh.late_ticks.fetch_add(1, Ordering::Relaxed);
                    }
                    sh.worst_lag_us.fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
                    due = true;
                }
                r = stream.read(&mut chunk) => match r {
                    Ok(n) if n > 0 => rbuf.extend_from_slice(&chunk[..n]),
                    _ => { lost = true; break 'run; }
                },
                _ = stop.wait_for(|s| *s) => break 'run,
            }
        }
        if due {
            let mut sample = synth.sample();
            let sent_us = now_us();
            sample.timestamp_ms = sent_us / 1000;
            let seq = sample.seq;
            out.clear();
            let id = next_pkid(&mut pkid);
            if publish_message(&mut out, &host, Kind::Sample, id, Message::Sample(sample)).is_err()
            {
                break;
            }
            if followed {
                sh.probe_sent.lock().unwrap().insert((i, seq), sent_us);
            }
            if stream.write_all(&out).await.is_err() {
                lost = true;
                break;
            }
            pending.push_back((id, Instant::now()));
            sent += 1;
            sh.sent.fetch_add(1, Ordering::Relaxed);
        }
        if !drain_acks(&sh, &mut rbuf, &mut pending, followed) {
            lost = true;
            break;
        }
    }
    // The last acknowledgements, then a clean DISCONNECT.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !lost && !pending.is_empty() {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => rbuf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
        if !drain_acks(&sh, &mut rbuf, &mut pending, followed) {
            break;
        }
    }
    if lost {
        sh.dropped.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = stream.write_all(&mqtt::DISCONNECT).await;
    }
    sent
}

/// Takes the PUBACKs out of `rbuf`. False on a malformed stream.
fn drain_acks(
    sh: &Shared,
    rbuf: &mut Vec<u8>,
    pending: &mut VecDeque<(u16, Instant)>,
    followed: bool,
) -> bool {
    let mut at = 0;
    loop {
        match mqtt::frame(&rbuf[at..]) {
            Ok(Some(f)) => {
                if f.kind() == 4 {
                    let id = mqtt::packet_id(&rbuf[at..], &f);
                    if let Some(pos) = pending.iter().position(|(p, _)| Some(*p) == id) {
                        let (_, t) = pending.remove(pos).unwrap_or((0, Instant::now()));
                        sh.acked.fetch_add(1, Ordering::Relaxed);
                        if followed {
                            let ms = t.elapsed().as_secs_f64() * 1000.0;
                            sh.ack_latency.lock().unwrap().push(ms);
                        }
                    }
                }
                at += f.len;
            }
            Ok(None) => break,
            Err(()) => return false,
        }
    }
    rbuf.drain(..at);
    true
}

/// Mosquitto's one plain subscriber: counts every sample delivered and follows the latency of
/// the followed hosts' samples.
async fn subscriber(
    broker: SocketAddr,
    sh: Arc<Shared>,
    delivered: Arc<AtomicU64>,
    latency: Arc<Mutex<Vec<f64>>>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(broker).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(&mqtt::connect("bench-subscriber", 60, None))
        .await?;
    let filter = format!("{}/+/{}", topic::PREFIX, Kind::Sample.suffix());
    stream.write_all(&mqtt::subscribe(1, &filter, 0)).await?;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut ready = Some(ready);
    let mut stop = sh.stop.clone();
    let mut chunk = vec![0u8; 1 << 16];
    // A subscriber only reads, so it must ping: Mosquitto drops a client that sends nothing for
    // 1.5 keep-alives (it did, 90 s into a 300 s run, before this).
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => r?,
            _ = ping.tick() => {
                stream.write_all(&[0xC0, 0x00]).await?;
                continue;
            }
            // Whatever is still on its way arrives within a second of the stop.
            _ = async {
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            } => return Ok(()),
        };
        if n == 0 {
            bail!("Mosquitto closed the subscriber's connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(f) = mqtt::frame(&buf[at..]).map_err(|_| anyhow::anyhow!("malformed"))? {
            match f.kind() {
                9 => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                3 => {
                    let received_us = now_us();
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some((t, _, payload)) = mqtt::parse_publish(&buf[at..], &f) {
                        let host = std::str::from_utf8(t)
                            .ok()
                            .and_then(topic::parse)
                            .and_then(|(h, _)| host_index(h.as_str()));
                        if let Some(i) = host.filter(|i| i.is_multiple_of(sh.probe_every.max(1))) {
                            if let Ok(Envelope {
                                message: Message::Sample(s),
                                ..
                            }) = ember_wire::decode(payload)
                            {
                                if let Some(sent) =
                                    sh.probe_sent.lock().unwrap().remove(&(i, s.seq))
                                {
                                    latency
                                        .lock()
                                        .unwrap()
                                        .push(received_us.saturating_sub(sent) as f64 / 1000.0);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            at += f.len;
        }
        buf.drain(..at);
    }
}

/// The collector's event stream for the followed hosts, on a thread: latency of each of their
/// samples from its send time to its `sample` event.
fn event_stream(
    http: SocketAddr,
    hosts: Vec<String>,
    sh: Arc<Shared>,
    latency: Arc<Mutex<Vec<f64>>>,
    lagged: Arc<AtomicU64>,
) -> std::sync::mpsc::Receiver<()> {
    use std::io::BufRead;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let url = format!("http://{http}/api/events?hosts={}", hosts.join(","));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(None)
            .build()
            .into();
        let Ok(response) = agent.get(&url).call() else {
            return;
        };
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            let received_us = now_us();
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
                continue;
            }
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            match event.as_str() {
                "hosts" => {
                    let _ = ready_tx.send(());
                }
                "lagged" => {
                    let v: Value = serde_json::from_str(data.trim()).unwrap_or_default();
                    lagged.fetch_add(v["missed"].as_u64().unwrap_or(1), Ordering::Relaxed);
                }
                "sample" => {
                    let v: Value = serde_json::from_str(data.trim()).unwrap_or_default();
                    let i = v["host"].as_str().and_then(host_index);
                    let seq = v["sample"]["seq"].as_u64();
                    if let (Some(i), Some(seq)) = (i, seq) {
                        if let Some(sent) = sh.probe_sent.lock().unwrap().remove(&(i, seq)) {
                            latency
                                .lock()
                                .unwrap()
                                .push(received_us.saturating_sub(sent) as f64 / 1000.0);
                        }
                    }
                }
                _ => {}
            }
        }
    });
    ready_rx
}

/// What the API probes share.
struct ApiProbes {
    count: usize,
    broker: SocketAddr,
    http: SocketAddr,
    interval: Duration,
    /// Set when publishing starts.
    go: (Mutex<bool>, std::sync::Condvar),
    stop: std::sync::atomic::AtomicBool,
    /// Publish → visible in the API, ms.
    latency: Mutex<Vec<f64>>,
    /// Samples not visible within 10 s.
    unseen: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
}

/// An agent that, after each publish, polls the API until its sample is there: the latency from
/// publish to being visible in `/api/hosts/{id}/samples`. Blocking, on its own thread.
fn api_probe(k: usize, p: &ApiProbes) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let (broker, http, interval) = (p.broker, p.http, p.interval);
    let host = HostId::new(&format!("probe-{k:02}"))?;
    let mut s = std::net::TcpStream::connect(broker)?;
    s.set_nodelay(true)?;
    // Connecting beside thousands of agents can take a while.
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(&mqtt::connect(host.as_str(), 60, None))?;
    let mut rbuf = Vec::new();
    let mut read_packet = |s: &mut std::net::TcpStream| -> anyhow::Result<u8> {
        loop {
            if let Some(f) = mqtt::frame(&rbuf).map_err(|_| anyhow::anyhow!("malformed"))? {
                rbuf.drain(..f.len);
                return Ok(f.kind());
            }
            let mut c = [0u8; 256];
            let n = s.read(&mut c)?;
            if n == 0 {
                bail!("closed");
            }
            rbuf.extend_from_slice(&c[..n]);
        }
    };
    anyhow::ensure!(read_packet(&mut s)? == 2, "no CONNACK");
    let mut synth = Synth::new(1_000_000 + k as u64, 0, interval);
    let mut out = Vec::new();
    publish_message(
        &mut out,
        &host,
        Kind::Status,
        1,
        Message::Status(Status::Online {
            interval_ms: interval.as_millis() as u32,
        }),
    )?;
    publish_message(
        &mut out,
        &host,
        Kind::Info,
        2,
        Message::HostInfo(synth.info(&host)),
    )?;
    s.write_all(&out)?;
    {
        let (lock, cv) = &p.go;
        let mut g = lock.lock().unwrap();
        while !*g {
            g = cv.wait(g).unwrap();
        }
    }
    let agent = procs::http_agent(Duration::from_secs(5));
    let mut pkid = 2u16;
    let mut acks = 0u64;
    let start = Instant::now() + interval.mul_f64(k as f64 / p.count.max(1) as f64);
    let mut n = 0u32;
    while !p.stop.load(Ordering::Relaxed) {
        let at = start + interval * n;
        n += 1;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut sample = synth.sample();
        sample.timestamp_ms = now_us() / 1000;
        let seq = sample.seq;
        out.clear();
        publish_message(
            &mut out,
            &host,
            Kind::Sample,
            next_pkid(&mut pkid),
            Message::Sample(sample),
        )?;
        let t0 = Instant::now();
        s.write_all(&out)?;
        p.sent.fetch_add(1, Ordering::Relaxed);
        let url = format!(
            "http://{http}/api/hosts/{host}/samples?after_seq={}&limit=1",
            seq - 1
        );
        loop {
            let found = procs::get_json(&agent, &url)
                .ok()
                .and_then(|v| v["samples"].as_array().map(|a| !a.is_empty()))
                .unwrap_or(false);
            if found {
                p.latency
                    .lock()
                    .unwrap()
                    .push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                p.unseen.fetch_add(1, Ordering::Relaxed);
                break;
            }
            // Every millisecond at first; later every 5 % of the time waited so far (at most
            // 20 ms), so that a slow collector is not also flooded with requests.
            let pause =
                (t0.elapsed() / 20).clamp(Duration::from_millis(1), Duration::from_millis(20));
            std::thread::sleep(pause);
        }
        // Its PUBACK came long ago (the first time, after those of the status and inventory).
        s.set_read_timeout(Some(Duration::from_millis(1)))?;
        while let Ok(kind) = read_packet(&mut s) {
            if kind == 4 {
                acks += 1;
            }
        }
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
    }
    p.acked.fetch_add(acks.saturating_sub(2), Ordering::Relaxed);
    let _ = s.write_all(&mqtt::DISCONNECT);
    Ok(())
}

/// Mosquitto on a free loopback port with a minimal configuration.
fn start_mosquitto(
    bin: &Path,
    dir: &Path,
    log: &Path,
) -> anyhow::Result<(procs::Proc, SocketAddr)> {
    let port = procs::free_port()?;
    let conf = dir.join("mosquitto.conf");
    // Debian's defaults, but for the listener (loopback, anonymous: as Ember's embedded broker)
    // and no persistence file (Ember's broker keeps none either).
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             log_dest stderr\nlog_type error\nlog_type warning\n"
        ),
    )?;
    let mut cmd = procs::command(bin);
    cmd.arg("-c").arg(&conf);
    let proc = procs::spawn_logged(cmd, "mosquitto", log)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    procs::wait_port(addr, Duration::from_secs(10))?;
    Ok((proc, addr))
}

fn health(agent: &ureq::Agent, http: SocketAddr) -> Option<Value> {
    procs::get_json(agent, &format!("http://{http}/api/health")).ok()
}

fn stored(agent: &ureq::Agent, http: SocketAddr) -> Option<u64> {
    health(agent, http)?["ingest"]["samples"].as_u64()
}

fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

pub fn run(args: &Args) -> anyhow::Result<Value> {
    let target = match args.str("target", "ember").as_str() {
        "ember" => Target::Ember,
        "mosquitto" => Target::Mosquitto,
        other => bail!("--target {other:?}: ember or mosquitto"),
    };
    let mode = match args.str("mode", "paced").as_str() {
        "paced" => Mode::Paced,
        "saturate" => Mode::Saturate {
            window: args.get("window", 10usize)?,
        },
        other => bail!("--mode {other:?}: paced or saturate"),
    };
    let agents: usize = args.get("agents", 1000)?;
    let secs: u64 = args.get("secs", 60)?;
    let interval = Duration::from_millis(args.get("interval-ms", 1000u64)?);
    let probe_every: usize = args.get("probe-every", 100)?;
    let api_probes: usize = if target == Target::Ember && mode == Mode::Paced {
        args.get("api-probes", 10usize)?.min(agents)
    } else {
        0
    };
    let every = Duration::from_secs(args.get("every", 5u64)?);
    let bin_dir = args.path("bin-dir", "target/bench/release");
    let mosquitto_bin = args.path("mosquitto", "/usr/sbin/mosquitto");
    let collector_config = args.str("collector-config", "");
    let out = args.path("out", "target/bench/results");
    let name = args.str("name", "load");
    let limit = nofile_limit();
    if limit < agents as u64 + 100 {
        bail!("the open-file limit is {limit}, too low for {agents} connections: raise it (ulimit -n)");
    }
    let regular = agents - api_probes;

    let dir = procs::scratch(&name)?;
    let log = out.join(format!("{name}.log"));
    let (mut broker_proc, broker, http) = match target {
        Target::Ember => {
            let c = procs::start_collector(&bin_dir, &dir.join("data"), &collector_config, &log)?;
            (c.proc, c.mqtt, Some(c.http))
        }
        Target::Mosquitto => {
            let (p, a) = start_mosquitto(&mosquitto_bin, &dir, &log)?;
            (p, a, None)
        }
    };
    let pid = broker_proc.pid();
    let api = procs::http_agent(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let rss_base = procs::rss_kib(pid).context("broker RSS")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sh = Arc::new(Shared {
        broker,
        mode,
        interval,
        agents: regular,
        probe_every,
        ready: AtomicUsize::new(0),
        connect_failed: AtomicUsize::new(0),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        dropped: AtomicUsize::new(0),
        late_ticks: AtomicU64::new(0),
        worst_lag_us: AtomicU64::new(0),
        probe_sent: Mutex::new(HashMap::new()),
        ack_latency: Mutex::new(Vec::new()),
        go: go_rx,
        stop: stop_rx,
    });
    let consumer_latency = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicU64::new(0));
    let followed: Vec<String> = (0..regular)
        .step_by(probe_every.max(1))
        .map(|i| host_id(i).as_str().to_string())
        .collect();
    let mut sub_task = None;
    match (target, http) {
        (Target::Ember, Some(http)) => {
            let ready = event_stream(
                http,
                followed.clone(),
                sh.clone(),
                consumer_latency.clone(),
                lagged.clone(),
            );
            ready
                .recv_timeout(Duration::from_secs(10))
                .context("the event stream did not start")?;
        }
        _ => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            sub_task = Some(rt.spawn(subscriber(
                broker,
                sh.clone(),
                delivered.clone(),
                consumer_latency.clone(),
                tx,
            )));
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), rx).await })
                .context("the subscriber did not get its SUBACK")??;
        }
    }

    // Connect everyone.
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let tasks: Vec<_> = (0..regular)
        .map(|i| rt.spawn(agent(i, sh.clone(), gate.clone())))
        .collect();
    let probe_set = Arc::new(ApiProbes {
        count: api_probes,
        broker,
        http: http.unwrap_or(broker),
        interval,
        go: (Mutex::new(false), std::sync::Condvar::new()),
        stop: std::sync::atomic::AtomicBool::new(false),
        latency: Mutex::new(Vec::new()),
        unseen: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
    });
    let probes: Vec<_> = (0..api_probes)
        .map(|k| {
            let p = probe_set.clone();
            std::thread::spawn(move || api_probe(k, &p))
        })
        .collect();
    let connect_deadline = Instant::now() + Duration::from_secs(300);
    while sh.ready.load(Ordering::Relaxed) + sh.connect_failed.load(Ordering::Relaxed) < regular {
        if Instant::now() > connect_deadline {
            break;
        }
        broker_proc.check_running()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let connect_s = connect_start.elapsed().as_secs_f64();
    let connected = sh.ready.load(Ordering::Relaxed);
    eprintln!(
        "{name}: {connected}/{regular} agents connected in {connect_s:.1} s ({} failed)",
        sh.connect_failed.load(Ordering::Relaxed)
    );
    // Let the broker and ingest settle, then weigh the connections.
    std::thread::sleep(Duration::from_secs(3));
    let rss_connected = procs::rss_kib(pid).unwrap_or(0);
    let health_connected = http.and_then(|h| health(&api, h));
    let stored0 = http.and_then(|h| stored(&api, h)).unwrap_or(0);

    // Publish.
    let broker_cpu = CpuWindow::start(pid);
    let threads0 = procs::thread_cpu(pid);
    let gen_cpu_run = CpuWindow::start(std::process::id());
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    {
        let (lock, cv) = &probe_set.go;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    let mut timeline = Vec::new();
    let mut points = Vec::new();
    let (mut last_t, mut last_delivered, mut last_acked) = (0.0, 0u64, 0u64);
    let mut last_cpu = (procs::cpu_secs(pid).unwrap_or(0.0), Instant::now());
    // Capacity is read from the middle of a saturating run: after a warm-up, before the end.
    let warmup = (secs as f64 * 0.2).clamp(1.0, 30.0);
    let mut window_start: Option<(f64, u64)> = None;
    // The consumer's latencies already put in a row: each row has its own window's tail, so a
    // slow stretch shows when it happened.
    let mut consumer_seen = 0usize;
    let mut alive = true;
    while t0.elapsed() < Duration::from_secs(secs) {
        let left = Duration::from_secs(secs).saturating_sub(t0.elapsed());
        std::thread::sleep(every.min(left));
        if broker_proc.check_running().is_err() {
            alive = false;
            break;
        }
        let t = t0.elapsed().as_secs_f64();
        let d = match http {
            Some(h) => stored(&api, h).unwrap_or(stored0) - stored0,
            None => delivered.load(Ordering::Relaxed),
        };
        let acked = sh.acked.load(Ordering::Relaxed);
        let rss = procs::rss_kib(pid).unwrap_or(0);
        let cpu = procs::cpu_secs(pid).unwrap_or(0.0);
        let cpu_pct = (cpu - last_cpu.0) / last_cpu.1.elapsed().as_secs_f64() * 100.0;
        last_cpu = (cpu, Instant::now());
        let window_latency = {
            let all = consumer_latency.lock().unwrap();
            let mut window: Vec<f64> = all[consumer_seen.min(all.len())..].to_vec();
            consumer_seen = all.len();
            procs::percentiles(&mut window)
        };
        let row = json!({
            "consumer_ms": window_latency,
            "t_s": t,
            "delivered": d,
            "rate": (d - last_delivered) as f64 / (t - last_t),
            "acked_rate": (acked - last_acked) as f64 / (t - last_t),
            "rss_kib": rss,
            "cpu_percent": cpu_pct,
        });
        eprintln!("{name}: {row}");
        timeline.push(row);
        if t >= warmup {
            points.push((d as f64, rss as f64 * 1024.0));
            if window_start.is_none() {
                window_start = Some((t, d));
            }
        }
        (last_t, last_delivered, last_acked) = (t, d, acked);
    }
    let run_s = t0.elapsed().as_secs_f64();
    let window_end = (last_t, last_delivered);
    let broker_cpu_pct = broker_cpu.percent();
    let threads = procs::thread_share(&threads0, &procs::thread_cpu(pid), run_s);
    let gen_cpu_pct = gen_cpu_run.percent();
    let rss_loaded = procs::rss_kib(pid).unwrap_or(0);

    // Stop, let the last samples land.
    let _ = stop_tx.send(true);
    probe_set.stop.store(true, Ordering::Relaxed);
    let mut per_host = vec![0u64; regular];
    rt.block_on(async {
        for (i, t) in tasks.into_iter().enumerate() {
            per_host[i] = t.await.unwrap_or(0);
        }
    });
    let mut probe_errors = Vec::new();
    for p in probes {
        match p.join() {
            Ok(Err(e)) => probe_errors.push(format!("{e:#}")),
            Err(_) => probe_errors.push("an API probe panicked".into()),
            Ok(Ok(())) => {}
        }
    }
    if let Some(t) = sub_task {
        match rt.block_on(t) {
            Ok(Err(e)) => probe_errors.push(format!("subscriber: {e:#}")),
            Err(e) => probe_errors.push(format!("subscriber: {e}")),
            Ok(Ok(())) => {}
        }
    }
    let sent = sh.sent.load(Ordering::Relaxed) + probe_set.sent.load(Ordering::Relaxed);
    let acked = sh.acked.load(Ordering::Relaxed) + probe_set.acked.load(Ordering::Relaxed);
    // Drain: wait until the count stops moving.
    let final_delivered;
    let mut hosts_seen = 0usize;
    let (mut received, mut missing, mut duplicates) = (0u64, 0u64, 0u64);
    let drain_started = Instant::now();
    // The peak of the load itself, before this bench's own `/api/hosts` (below: 30 MB of JSON
    // at 10,000 hosts) adds its response to it.
    let mut peak_load = None;
    if let Some(h) = http {
        // Until the count stops moving and the gate has nothing relayed that ingest has not
        // read (at most 30 s): a thousand publishers stopping at once keep the broker busy a
        // while, and a count read too early would show as loss.
        let mut last = u64::MAX;
        for _ in 0..60 {
            let health = health(&api, h);
            let n = health
                .as_ref()
                .and_then(|v| v["ingest"]["samples"].as_u64())
                .unwrap_or(0);
            let lag = health
                .as_ref()
                .and_then(|v| v["connections"]["ingest_lag_bytes"].as_u64())
                .unwrap_or(0);
            if n == last && lag == 0 {
                break;
            }
            last = n;
            std::thread::sleep(Duration::from_millis(500));
        }
        final_delivered = last.saturating_sub(stored0);
        peak_load = procs::peak_rss_kib(pid);
        let hosts = procs::get_json(&api, &format!("http://{h}/api/hosts"))?;
        for host in hosts.as_array().into_iter().flatten() {
            let id = host["id"].as_str().unwrap_or("");
            if id.starts_with("load-") || id.starts_with("probe-") {
                hosts_seen += 1;
                received += host["received"].as_u64().unwrap_or(0);
                missing += host["missing"].as_u64().unwrap_or(0);
                duplicates += host["duplicates"].as_u64().unwrap_or(0);
            }
        }
    } else {
        final_delivered = delivered.load(Ordering::Relaxed);
        received = final_delivered;
    }
    let rss_end = procs::rss_kib(pid).unwrap_or(0);
    let peak = procs::peak_rss_kib(pid).unwrap_or(0);
    let health_end = http.and_then(|h| health(&api, h));
    let gen_rss = procs::rss_kib(std::process::id()).unwrap_or(0);

    let lat = |v: &Mutex<Vec<f64>>| procs::percentiles(&mut v.lock().unwrap());
    let steady_rate = match window_start {
        Some((ts, ds)) if window_end.0 > ts => (window_end.1 - ds) as f64 / (window_end.0 - ts),
        _ => final_delivered as f64 / run_s,
    };
    let per_sample = slope(&points);
    let connections = connected + api_probes;
    let per_agent_idle =
        (rss_connected as f64 - rss_base as f64) * 1024.0 / connections.max(1) as f64;
    let held = received as f64;
    let per_agent_active = per_sample.map(|s| {
        ((rss_loaded as f64 - rss_base as f64) * 1024.0 - s * held) / connections.max(1) as f64
    });
    let pending_probes = sh.probe_sent.lock().unwrap().len();
    let result = json!({
        "target": format!("{target:?}").to_lowercase(),
        "mode": match mode { Mode::Paced => "paced", Mode::Saturate { .. } => "saturate" },
        "window": match mode { Mode::Saturate { window } => Some(window), _ => None },
        "agents": agents,
        "api_probes": api_probes,
        "probe_every": probe_every,
        "interval_ms": interval.as_millis() as u64,
        "secs": secs,
        "run_s": run_s,
        "broker_alive": alive,
        "nofile_limit": limit,
        "connect_s": connect_s,
        "connected": connections,
        "connect_failed": sh.connect_failed.load(Ordering::Relaxed),
        "connections_lost": sh.dropped.load(Ordering::Relaxed),
        "sent": sent,
        "acked": acked,
        "delivered": final_delivered,
        "received": received,
        "lost": sent.saturating_sub(received),
        "missing": missing,
        "duplicates": duplicates,
        "hosts_seen": hosts_seen,
        "rate_per_s": final_delivered as f64 / run_s,
        "steady_rate_per_s": steady_rate,
        "latency_ms": {
            "consumer": lat(&consumer_latency),
            "api": lat(&probe_set.latency),
            "puback": lat(&sh.ack_latency),
        },
        "followed_hosts": followed.len(),
        "followed_not_seen": pending_probes,
        "api_not_seen": probe_set.unseen.load(Ordering::Relaxed),
        "lagged_events": lagged.load(Ordering::Relaxed),
        "late_ticks": sh.late_ticks.load(Ordering::Relaxed),
        "worst_tick_lag_ms": sh.worst_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        "rss_base_kib": rss_base,
        "rss_connected_kib": rss_connected,
        "rss_loaded_kib": rss_loaded,
        "rss_end_kib": rss_end,
        "peak_rss_kib": peak,
        "peak_rss_load_kib": peak_load,
        "per_agent_idle_bytes": per_agent_idle,
        "per_agent_active_bytes": per_agent_active,
        "per_sample_bytes": per_sample,
        "broker_cpu_percent": broker_cpu_pct,
        "broker_threads": threads,
        "generator_cpu_percent": gen_cpu_pct,
        "generator_rss_kib": gen_rss,
        "health_connected": health_connected,
        "health_end": health_end,
        "drain_s": drain_started.elapsed().as_secs_f64(),
        "errors": probe_errors,
        "timeline": timeline,
    });
    drop(broker_proc);
    let _ = std::fs::remove_dir_all(&dir);
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(result)
}

/// One blocking MQTT connection: whether the broker accepted it (CONNACK 0 within 5 s). The
/// stream is kept open while the returned value lives.
fn try_connect(broker: SocketAddr, client_id: &str) -> Option<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&broker, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(&mqtt::connect(client_id, 60, None)).ok()?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).ok()?;
    (ack == [0x20, 2, 0, 0]).then_some(s)
}

/// `limits`: the collector at its connection limit. With `max-connections = --max`, connects
/// `--max + 5` clients, then connects each refused client id once more (as an agent's reconnect
/// would), and reports how many were admitted and whether the collector is still running.
pub fn limits(args: &Args) -> anyhow::Result<Value> {
    let max: usize = args.get("max", 50)?;
    let bin_dir = args.path("bin-dir", "target/bench/release");
    let out = args.path("out", "target/bench/results");
    let name = args.str("name", "limits");
    let dir = procs::scratch(&name)?;
    let log = out.join(format!("{name}.log"));
    let mut c = procs::start_collector(
        &bin_dir,
        &dir.join("data"),
        &format!("max-connections = {max}\n"),
        &log,
    )?;
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for i in 0..max + 5 {
        let id = format!("limit-{i:04}");
        match try_connect(c.mqtt, &id) {
            Some(s) => open.push(s),
            None => refused.push(id),
        }
    }
    let admitted = open.len();
    let mut retried = 0;
    for id in &refused {
        if c.proc.check_running().is_err() {
            break;
        }
        retried += 1;
        let _ = try_connect(c.mqtt, id);
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let exit = c.proc.child.try_wait()?.map(|s| s.to_string());
    let panic = std::fs::read_to_string(&log).ok().and_then(|l| {
        l.lines()
            .find(|l| l.contains("panicked at"))
            .map(|l| l.trim().to_string())
    });
    drop(open);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "max_connections": max,
        "tried": max + 5,
        "admitted": admitted,
        "refused": refused.len(),
        "retried": retried,
        "collector_alive": exit.is_none(),
        "exit": exit,
        "panic": panic,
    }))
}
