//! Network probes: latency and loss to configured targets.
//!
//! A target `host:port` is probed with a TCP connect. A bare `host` is pinged with an ICMP echo
//! through an unprivileged ICMP socket where the kernel allows it (`net.ipv4.ping_group_range`
//! includes the agent's group); otherwise with a TCP connect to port 80, where a refusal (RST)
//! counts as a reply: it crossed the network and back. Probes run on their own task, once per
//! interval; the sampler copies the latest results and never waits for them.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_wire::heapless::{String, Vec};
use ember_wire::sample::MAX_PROBES;
use ember_wire::Probe;

/// Attempts remembered per target to compute loss.
pub const WINDOW: usize = 10;

/// How a target is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// TCP connect to `host:port`.
    Tcp(std::string::String, u16),
    /// ICMP echo to `host`, or TCP port 80 where ICMP is not allowed.
    Echo(std::string::String),
}

impl Method {
    /// Parses a configured target: `host:port`, `[v6]:port`, or a bare host.
    pub fn parse(target: &str) -> Method {
        if let Ok(addr) = target.parse::<SocketAddr>() {
            return Method::Tcp(addr.ip().to_string(), addr.port());
        }
        match target.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => match port.parse() {
                Ok(port) => Method::Tcp(host.to_string(), port),
                Err(_) => Method::Echo(target.to_string()),
            },
            _ => Method::Echo(target.trim_matches(|c| c == '[' || c == ']').to_string()),
        }
    }
}

/// Results of one target's last attempts: the sans-I/O part.
#[derive(Debug, Clone)]
pub struct History {
    label: String<32>,
    attempts: [Option<u32>; WINDOW],
    len: usize,
    next: usize,
}

impl History {
    /// An empty history for `label` (cut to 32 bytes).
    pub fn new(label: &str) -> Self {
        History {
            label: crate::sampler::truncated(label),
            attempts: [None; WINDOW],
            len: 0,
            next: 0,
        }
    }

    /// Records one attempt: its round-trip time in microseconds, or `None` for no reply.
    pub fn record(&mut self, rtt_us: Option<u32>) {
        self.attempts[self.next] = rtt_us;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
    }

    /// The probe as it goes into a sample: the last attempt's time and the loss over the window.
    pub fn probe(&self) -> Option<Probe> {
        if self.len == 0 {
            return None;
        }
        let last = self.attempts[(self.next + WINDOW - 1) % WINDOW];
        let recent = (0..self.len).map(|i| self.attempts[(self.next + WINDOW - 1 - i) % WINDOW]);
        let lost = recent.filter(Option::is_none).count();
        Some(Probe {
            target: self.label.clone(),
            rtt_us: last,
            loss: (lost * 10_000 / self.len) as u16,
        })
    }
}

/// The latest results, shared with the sampler.
pub type Results = Arc<Mutex<Vec<Probe, MAX_PROBES>>>;

/// Starts probing `targets` every `interval` on a task of its own; returns the shared results.
pub fn spawn(targets: &[std::string::String], interval: Duration) -> Results {
    let results: Results = Arc::default();
    if targets.is_empty() {
        return results;
    }
    let mut probes: std::vec::Vec<(Method, History)> = targets
        .iter()
        .take(MAX_PROBES)
        .map(|t| (Method::parse(t), History::new(t)))
        .collect();
    let timeout = interval.min(Duration::from_secs(2));
    let shared = results.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for (method, history) in probes.iter_mut() {
                history.record(
                    attempt(method, timeout)
                        .await
                        .map(|d| d.as_micros().min(u32::MAX as u128) as u32),
                );
            }
            let mut latest = Vec::new();
            for (_, h) in &probes {
                if let Some(p) = h.probe() {
                    let _ = latest.push(p);
                }
            }
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = latest;
        }
    });
    results
}

/// One attempt; `None` when nothing came back in time.
pub async fn attempt(method: &Method, timeout: Duration) -> Option<Duration> {
    match method {
        Method::Tcp(host, port) => tcp(host, *port, timeout).await,
        Method::Echo(host) => {
            let ip = resolve(host, 0).await?.ip();
            match tokio::task::spawn_blocking(move || icmp_echo(ip, timeout))
                .await
                .ok()?
            {
                Ok(rtt) => rtt,
                // ICMP sockets not allowed for this group: TCP instead.
                Err(_) => tcp(host, 80, timeout).await,
            }
        }
    }
}

async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Option<Duration> {
    let addr = resolve(host, port).await?;
    let start = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Some(start.elapsed()),
        // A refusal is an answer from the host.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(start.elapsed()),
        _ => None,
    }
}

/// One ICMP echo through an unprivileged ICMP socket. `Err` if such sockets are not allowed;
/// `Ok(None)` if no reply came in time.
fn icmp_echo(ip: IpAddr, timeout: Duration) -> std::io::Result<Option<Duration>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, protocol, request) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol))?;
    socket.set_read_timeout(Some(timeout))?;
    // Type, code, checksum and identifier are filled in by the kernel for ICMP sockets;
    // sequence 1, and a payload to match the reply.
    let packet = [request, 0, 0, 0, 0, 0, 0, 1, b'e', b'm', b'b', b'e', b'r'];
    let start = Instant::now();
    socket.send_to(&packet, &SocketAddr::new(ip, 0).into())?;
    let mut reply = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    loop {
        match socket.recv(&mut reply) {
            Ok(n) if n >= 8 => return Ok(Some(start.elapsed())),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_into_methods() {
        assert_eq!(
            Method::parse("192.168.1.1"),
            Method::Echo("192.168.1.1".into())
        );
        assert_eq!(
            Method::parse("example.org:443"),
            Method::Tcp("example.org".into(), 443)
        );
        assert_eq!(
            Method::parse("10.0.0.1:22"),
            Method::Tcp("10.0.0.1".into(), 22)
        );
        assert_eq!(Method::parse("[::1]:8080"), Method::Tcp("::1".into(), 8080));
        assert_eq!(Method::parse("::1"), Method::Echo("::1".into()));
        assert_eq!(Method::parse("router"), Method::Echo("router".into()));
    }

    #[test]
    fn loss_over_the_window_and_the_last_time() {
        let mut h = History::new("gw");
        assert_eq!(h.probe(), None);
        h.record(Some(1500));
        h.record(None);
        let p = h.probe().unwrap();
        assert_eq!((p.rtt_us, p.loss), (None, 5000));
        h.record(Some(900));
        h.record(Some(1100));
        let p = h.probe().unwrap();
        assert_eq!((p.rtt_us, p.loss), (Some(1100), 2500));
        for _ in 0..WINDOW {
            h.record(Some(1000));
        }
        assert_eq!(h.probe().unwrap().loss, 0, "old losses leave the window");
        for _ in 0..WINDOW {
            h.record(None);
        }
        assert_eq!(h.probe().unwrap().loss, 10_000);
        assert_eq!(h.probe().unwrap().target.as_str(), "gw");
    }

    #[tokio::test]
    async fn tcp_to_an_open_port_a_closed_port_and_nowhere() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Method::Tcp("127.0.0.1".into(), port);
        assert!(attempt(&open, Duration::from_secs(1)).await.is_some());
        drop(listener);
        // Closed now: the refusal is still an answer.
        assert!(attempt(&open, Duration::from_secs(1)).await.is_some());
        // A name that does not resolve gives no answer.
        let nowhere = Method::Tcp("nonexistent.invalid".into(), 80);
        assert!(attempt(&nowhere, Duration::from_millis(200))
            .await
            .is_none());
    }

    #[tokio::test]
    async fn echo_to_loopback_answers_by_icmp_or_tcp() {
        // ICMP where ping_group_range allows it, TCP port 80 (refused: still an answer) where not.
        let rtt = attempt(&Method::Echo("127.0.0.1".into()), Duration::from_secs(1)).await;
        assert!(rtt.is_some());
    }
}
