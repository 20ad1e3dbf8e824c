//! The MQTT gate's work before a client is authenticated, bounded in time and in count
//! (issue #20, finding 3).
//!
//! A password check is argon2: tens of milliseconds of a core on purpose, and the gate runs
//! [`Limits::at_once`] of them at a time. Without bounds, a few hundred CONNECTs with wrong
//! passwords queued on those slots delayed every good client by seconds, closed sockets were
//! still checked, and a user name without an account was answered at once, so which names
//! exist could be timed. Here:
//!
//! - at most [`Limits::queue`] logins wait or run at once; one source may fill half of that,
//!   and once it is half full each source at most [`Limits::per_source`] more (so a fleet
//!   behind one address, or the simulator, still connects together, and a flood from one
//!   address leaves room for the others); beyond that a CONNECT is refused at once (CONNACK 3,
//!   "server unavailable": the client tries again later);
//! - a login that waits longer than its deadline is refused the same way, and one whose client
//!   closed while it waited is never checked ([`Ticket::verify`]);
//! - a user name without an account, or without a password, is checked against a hash of the
//!   same cost ([`dummy_hash`]), so it answers no sooner than a wrong password;
//! - a source (an IPv4 address, an IPv6 /64) that failed more than [`Limits::free_failures`]
//!   times in a row is refused at once for a time that doubles with each further failure, up
//!   to [`Limits::backoff_max`], and its logins already waiting are refused when their turn
//!   comes rather than checked; a source is forgotten [`Limits::forget_after`] after its last
//!   failure, and at most [`Limits::max_sources`] are remembered (the oldest idle one goes).
//!
//! [`Sources`] is the bookkeeping, plain code with the time passed in; [`Admission`] adds the
//! semaphore and the blocking thread.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Bounds on the work done before authentication.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Password checks running at once (each takes a core for its duration).
    pub at_once: usize,
    /// Logins waiting for a check or being checked, all sources.
    pub queue: usize,
    /// Of those, from one source once the queue is half full.
    pub per_source: usize,
    /// Failures in a row a source may have before it is held back.
    pub free_failures: u32,
    /// The first hold after the free failures; doubled by each further failure.
    pub backoff_base: Duration,
    /// The longest hold.
    pub backoff_max: Duration,
    /// A source's failures are forgotten this long after its last one.
    pub forget_after: Duration,
    /// Sources remembered at once.
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            at_once: 2,
            queue: 128,
            per_source: 8,
            free_failures: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
            max_sources: 4096,
        }
    }
}

/// Why a login was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue, or the source's share of it, is full.
    Busy,
    /// The source failed too often lately.
    Backoff,
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches the hash.
    Match,
    /// It does not.
    NoMatch,
    /// The client closed before its turn: not checked.
    Gone,
    /// Its turn did not come before the deadline: not checked.
    Late,
    /// Its source failed too often while it waited: not checked.
    Held,
}

/// Where a connection comes from, as the backoff counts it: an IPv4 address, or the /64 of an
/// IPv6 one (a host usually has a whole /64).
pub fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Logins from this source waiting or being checked.
    pending: usize,
    /// Failures in a row.
    failures: u32,
    /// Refused until then.
    until: Instant,
    /// The last failure (or the first login).
    last: Instant,
}

/// Per-source bookkeeping, bounded; time is passed in.
#[derive(Debug)]
pub struct Sources {
    limits: Limits,
    map: HashMap<IpAddr, Entry>,
    pending: usize,
}

impl Sources {
    /// No source known yet.
    pub fn new(limits: Limits) -> Self {
        Sources {
            limits,
            map: HashMap::new(),
            pending: 0,
        }
    }

    /// A login from `src` would wait for its check: counted, or refused.
    pub fn enter(&mut self, src: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some(e) = self.map.get(&src) {
            if now < e.until {
                return Err(Refusal::Backoff);
            }
            let half = self.limits.queue / 2;
            if e.pending >= self.limits.per_source.max(half)
                || (e.pending >= self.limits.per_source && self.pending >= half)
            {
                return Err(Refusal::Busy);
            }
        }
        if self.pending >= self.limits.queue {
            return Err(Refusal::Busy);
        }
        if !self.map.contains_key(&src) && !self.make_room(now) {
            return Err(Refusal::Busy);
        }
        let e = self.map.entry(src).or_insert(Entry {
            pending: 0,
            failures: 0,
            until: now,
            last: now,
        });
        e.pending += 1;
        self.pending += 1;
        Ok(())
    }

    /// A login from `src` was checked (or given up).
    pub fn leave(&mut self, src: IpAddr) {
        if let Some(e) = self.map.get_mut(&src) {
            e.pending = e.pending.saturating_sub(1);
            self.pending = self.pending.saturating_sub(1);
            if e.pending == 0 && e.failures == 0 {
                self.map.remove(&src);
            }
        }
    }

    /// A login from `src` failed: held back once it failed more than the free failures.
    pub fn failed(&mut self, src: IpAddr, now: Instant) {
        if !self.map.contains_key(&src) && !self.make_room(now) {
            return;
        }
        let limits = self.limits;
        let e = self.map.entry(src).or_insert(Entry {
            pending: 0,
            failures: 0,
            until: now,
            last: now,
        });
        if now.saturating_duration_since(e.last) >= limits.forget_after {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if let Some(over) = e.failures.checked_sub(limits.free_failures + 1) {
            let hold = limits
                .backoff_base
                .saturating_mul(1u32 << over.min(20))
                .min(limits.backoff_max);
            e.until = now + hold;
        }
    }

    /// Whether `src` is held back now.
    pub fn held(&self, src: IpAddr, now: Instant) -> bool {
        self.map.get(&src).is_some_and(|e| now < e.until)
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Logins waiting or being checked now.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Room for one more source: forgets those whose failures expired, then the idle one whose
    /// last failure is the oldest. `false` if every source has logins pending.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.map.len() < self.limits.max_sources {
            return true;
        }
        let forget = self.limits.forget_after;
        self.map.retain(|_, e| {
            e.pending > 0 || (now.saturating_duration_since(e.last) < forget || now < e.until)
        });
        if self.map.len() < self.limits.max_sources {
            return true;
        }
        let oldest = self
            .map
            .iter()
            .filter(|(_, e)| e.pending == 0)
            .min_by_key(|(_, e)| e.last)
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.map.remove(&k);
                true
            }
            None => false,
        }
    }
}

/// The password checks: a bounded queue in front of [`Limits::at_once`] slots.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    sources: Mutex<Sources>,
    dummy: String,
    checked: AtomicU64,
}

/// A login counted in the queue; leaves it when dropped.
#[derive(Debug)]
pub struct Ticket<'a> {
    admission: &'a Admission,
    src: IpAddr,
}

impl Admission {
    /// Checks bounded by `limits`; `dummy` is the hash names without an account are checked
    /// against ([`dummy_hash`]).
    pub fn new(limits: Limits, dummy: String) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limits.at_once.max(1))),
            sources: Mutex::new(Sources::new(limits)),
            dummy,
            checked: AtomicU64::new(0),
        }
    }

    /// The hash to check a password against when the name has none.
    pub fn dummy(&self) -> &str {
        &self.dummy
    }

    /// Passwords checked since start (argon2 runs).
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// Logins waiting or being checked now.
    pub fn pending(&self) -> usize {
        lock(&self.sources).pending()
    }

    /// Sources remembered now.
    pub fn sources(&self) -> usize {
        lock(&self.sources).len()
    }

    /// A place in the queue for a login from `ip`, or why not.
    pub fn enter(&self, ip: IpAddr) -> Result<Ticket<'_>, Refusal> {
        let src = source(ip);
        lock(&self.sources).enter(src, Instant::now())?;
        Ok(Ticket {
            admission: self,
            src,
        })
    }
}

impl Ticket<'_> {
    /// Checks `password` against `hash` once a slot is free, unless `gone` (the client closed)
    /// or `deadline` comes first. A check started runs to its end on its blocking thread,
    /// holding its slot, even if this is no longer awaited.
    pub async fn verify(
        &self,
        hash: &str,
        password: &str,
        gone: impl Future<Output = ()>,
        deadline: Instant,
    ) -> Verdict {
        let slots = self.admission.slots.clone();
        let check = async {
            let Ok(permit) = slots.acquire_owned().await else {
                return Verdict::Late;
            };
            if lock(&self.admission.sources).held(self.src, Instant::now()) {
                return Verdict::Held;
            }
            self.admission.checked.fetch_add(1, Ordering::Relaxed);
            let (hash, password) = (hash.to_owned(), password.to_owned());
            let ok = tokio::task::spawn_blocking(move || {
                let _slot = permit;
                crate::access::verify_password(&hash, &password)
            })
            .await
            .unwrap_or(false);
            if ok {
                Verdict::Match
            } else {
                Verdict::NoMatch
            }
        };
        tokio::select! {
            biased;
            () = gone => Verdict::Gone,
            v = check => v,
            () = tokio::time::sleep_until(deadline.into()) => Verdict::Late,
        }
    }

    /// The login failed: counts toward its source's backoff.
    pub fn failed(&self) {
        lock(&self.admission.sources).failed(self.src, Instant::now());
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        lock(&self.admission.sources).leave(self.src);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hash of a password nobody knows, with the parameters of `like` (a PHC string of one of
/// the accounts; argon2's defaults if `None` or unreadable): a name without an account is
/// checked against it, at the same cost as a wrong password.
pub fn dummy_hash(like: Option<&str>) -> String {
    use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
    let params = like
        .and_then(|h| PasswordHash::new(h).ok())
        .and_then(|h| argon2::Params::try_from(&h).ok())
        .unwrap_or_default();
    let salt = SaltString::encode_b64(b"ember-no-account").expect("16 bytes are a valid salt");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(b"no account has this password", &salt)
        .map(|h| h.to_string())
        .unwrap_or_else(|_| crate::access::hash_password("no account", &[0; 16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn limits() -> Limits {
        Limits {
            at_once: 1,
            queue: 4,
            per_source: 2,
            free_failures: 2,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            forget_after: Duration::from_secs(100),
            max_sources: 3,
        }
    }

    #[test]
    fn the_queue_and_each_sources_share_are_bounded() {
        let t = Instant::now();
        let mut s = Sources::new(Limits {
            queue: 8,
            per_source: 1,
            max_sources: 10,
            ..limits()
        });
        // One source fills half the queue.
        for _ in 0..4 {
            s.enter(ip(1), t).unwrap();
        }
        assert_eq!(s.enter(ip(1), t), Err(Refusal::Busy), "the source's half");
        // Then each of the others its share.
        s.enter(ip(2), t).unwrap();
        assert_eq!(s.enter(ip(2), t), Err(Refusal::Busy), "the source's share");
        s.enter(ip(3), t).unwrap();
        s.enter(ip(4), t).unwrap();
        s.enter(ip(5), t).unwrap();
        assert_eq!(s.enter(ip(6), t), Err(Refusal::Busy), "the whole queue");
        assert_eq!(s.pending(), 8);
        s.leave(ip(1));
        s.enter(ip(6), t).unwrap();
        for i in [1, 1, 1, 2, 3, 4, 5, 6] {
            s.leave(ip(i));
        }
        assert_eq!(
            (s.pending(), s.len()),
            (0, 0),
            "nothing kept without failures"
        );
        // Below half full, one source may take more than its share.
        let mut s = Sources::new(limits());
        s.enter(ip(1), t).unwrap();
        s.enter(ip(1), t).unwrap();
        assert_eq!(s.enter(ip(1), t), Err(Refusal::Busy), "half of 4");
    }

    #[test]
    fn a_failing_source_is_held_back_longer_each_time_then_forgotten() {
        let t = Instant::now();
        let s1 = Duration::from_secs(1);
        let mut s = Sources::new(limits());
        // The free failures.
        s.failed(ip(1), t);
        s.failed(ip(1), t);
        s.enter(ip(1), t).unwrap();
        s.leave(ip(1));
        // Then 1 s, 2 s, 4 s, 8 s, 8 s.
        for hold in [1, 2, 4, 8, 8] {
            s.failed(ip(1), t);
            assert_eq!(s.enter(ip(1), t), Err(Refusal::Backoff));
            let until = t + s1 * hold;
            assert_eq!(
                s.enter(ip(1), until - Duration::from_millis(1)),
                Err(Refusal::Backoff),
                "{hold} s"
            );
            s.enter(ip(1), until).unwrap();
            s.leave(ip(1));
        }
        // Another source is not held back.
        s.enter(ip(2), t).unwrap();
        s.leave(ip(2));
        // Forgotten after a quiet while: the free failures again.
        let later = t + Duration::from_secs(200);
        s.failed(ip(1), later);
        s.enter(ip(1), later).unwrap();
        s.leave(ip(1));
    }

    #[test]
    fn the_sources_remembered_are_bounded() {
        let t = Instant::now();
        let mut s = Sources::new(limits());
        for i in 0..100 {
            s.failed(ip(i), t + Duration::from_millis(u64::from(i)));
            assert!(s.len() <= 3, "{} sources", s.len());
        }
        // The newest are kept, the oldest idle ones went.
        for _ in 0..3 {
            s.failed(ip(99), t + Duration::from_secs(1));
        }
        assert_eq!(
            s.enter(ip(99), t + Duration::from_secs(1)),
            Err(Refusal::Backoff)
        );
        // Sources with logins pending are never forgotten; when all have, a new one waits.
        let mut s = Sources::new(limits());
        for i in 1..=3 {
            s.enter(ip(i), t).unwrap();
        }
        assert_eq!(s.enter(ip(4), t), Err(Refusal::Busy));
        s.failed(ip(4), t);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn ipv6_sources_are_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source(a), source(b));
        assert_ne!(source(a), source(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source(mapped), ip(1));
    }

    fn cheap(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(&[3; 16]).unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_dummy_hash_costs_what_the_accounts_hashes_cost() {
        let like = cheap("x");
        let dummy = dummy_hash(Some(&like));
        let params = |h: &str| {
            let h = argon2::password_hash::PasswordHash::new(h).unwrap();
            let p = argon2::Params::try_from(&h).unwrap();
            (p.m_cost(), p.t_cost(), p.p_cost())
        };
        assert_eq!(params(&dummy), params(&like));
        assert!(!crate::access::verify_password(&dummy, "x"));
        let default = dummy_hash(None);
        let d = argon2::Params::default();
        assert_eq!(params(&default), (d.m_cost(), d.t_cost(), d.p_cost()));
        assert_eq!(dummy_hash(Some("not a hash")), default);
    }

    #[tokio::test]
    async fn a_closed_late_or_held_login_is_not_checked() {
        let hash = cheap("right");
        let a = Admission::new(limits(), dummy_hash(Some(&hash)));
        let far = Instant::now() + Duration::from_secs(10);
        let t = a.enter(ip(1)).unwrap();
        assert_eq!(
            t.verify(&hash, "right", std::future::pending(), far).await,
            Verdict::Match
        );
        assert_eq!(
            t.verify(&hash, "wrong", std::future::pending(), far).await,
            Verdict::NoMatch
        );
        assert_eq!(a.checked(), 2);
        // The client closed while it waited: never checked.
        assert_eq!(
            t.verify(&hash, "right", std::future::ready(()), far).await,
            Verdict::Gone
        );
        assert_eq!(a.checked(), 2);
        // Every slot taken: the deadline passes first.
        let held = a.slots.clone().acquire_owned().await.unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            t.verify(&hash, "right", std::future::pending(), soon).await,
            Verdict::Late
        );
        assert_eq!(a.checked(), 2);
        drop(held);
        // Its source failed too often while it waited: refused when its turn comes.
        for _ in 0..3 {
            t.failed();
        }
        assert_eq!(
            t.verify(&hash, "right", std::future::pending(), far).await,
            Verdict::Held
        );
        assert_eq!(a.checked(), 2);
        assert_eq!(a.pending(), 1);
        drop(t);
        assert_eq!(a.pending(), 0);
        assert_eq!(a.enter(ip(1)).unwrap_err(), Refusal::Backoff);
    }
}
