//! Who may use the embedded broker and what each may publish: the sans-I/O core of the MQTT
//! gate ([`crate::gate`]). No sockets, no clocks (time is passed in), no files.
//!
//! rumqttd 0.20 has no topic ACLs and its in-process link does not say which client published a
//! message, so these decisions are taken per connection by the gate, before a packet reaches
//! the broker:
//! - an **agent** account is bound to one host id: it may publish only that host's `sample`,
//!   `info`, `status` and `result` topics (never `cmd` nor `alerts`: only the collector commands
//!   and sets a host's alert banner), may name only its own `status` topic as last will, and may
//!   subscribe only to its own `cmd` and `alerts` and to every host's `status` (what
//!   `ember-agent` subscribes to);
//! - a **reader** account may subscribe to anything but `$`-topics and publish nothing but Home
//!   Assistant's birth message and last will (dashboards, Home Assistant, `mosquitto_sub`).

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ember_wire::topic::{self, Kind};
use ember_wire::HostId;
use serde::Serialize;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Publishes one host's data: the account's name is the host id.
    Agent,
    /// Subscribes, never publishes.
    Reader,
}

/// An authenticated client: the account's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account (for an agent: its host id).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Identity {
    /// May this client publish to `topic` (or name it as its last will)? `reader_topics` are
    /// the few a reader may: Home Assistant's birth and last will (`{discovery-prefix}/status`),
    /// which the bridge listens to.
    pub fn may_publish(&self, topic: &str, reader_topics: &[String]) -> bool {
        match self.role {
            Role::Reader => reader_topics.iter().any(|t| t == topic),
            Role::Agent => match topic::parse(topic) {
                // `cmd` and `alerts` are the collector's: only its in-process link publishes
                // there (an agent's retained `alerts` would replace the collector's banner).
                Some((host, kind)) => host.as_str() == self.name && !kind.from_collector(),
                None => false,
            },
        }
    }

    /// May this client name `topic` as its last will? An agent only its own `status` (the
    /// `Offline` the broker publishes for it), a reader what it may publish.
    pub fn may_will(&self, topic: &str, reader_topics: &[String]) -> bool {
        match self.role {
            Role::Reader => self.may_publish(topic, reader_topics),
            Role::Agent => topic::parse(topic)
                .is_some_and(|(host, kind)| host.as_str() == self.name && kind == Kind::Status),
        }
    }

    /// May this client subscribe to `filter`? An agent to exactly what `ember-agent`
    /// subscribes to: its own `cmd` and `alerts` banner, and every host's `status` (the fleet
    /// page of its panel: online or offline, nothing a board does not see on the dashboard's
    /// fleet page anyway). A reader to anything but `$`-topics (`$share/…`: rumqttd's shared
    /// subscriptions, which crashed its router; `$SYS`).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        match self.role {
            Role::Reader => !filter.starts_with('$'),
            Role::Agent => {
                filter == topic::ALL_STATUS
                    || topic::parse(filter).is_some_and(|(host, kind)| {
                        host.as_str() == self.name && kind.from_collector()
                    })
            }
        }
    }

    /// The client id the broker sees. An agent's is fixed by its host, so that a client with
    /// another host's client id cannot take over (and disconnect) that host's session; a
    /// reader's is prefixed with its account. `None`: an id the broker would refuse.
    pub fn broker_client_id(&self, requested: &str, connection: u64) -> Option<String> {
        match self.role {
            Role::Agent => Some(format!("ember-agent-{}", self.name)),
            Role::Reader => {
                if requested.contains(['+', '#', '/', '$']) {
                    return None;
                }
                if requested.is_empty() {
                    Some(format!("{}.{connection}", self.name))
                } else {
                    Some(format!("{}.{requested}", self.name))
                }
            }
        }
    }
}

/// Checks an account name: a valid host id (the agent's topics carry it), which is also a valid
/// MQTT client id and user name.
pub fn check_name(name: &str) -> Result<(), String> {
    HostId::new(name)
        .map(|_| ())
        .map_err(|e| format!("{name:?} is not a valid host id: {e}"))
}

/// Hashes a password as an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with
/// argon2's default parameters (OWASP's minimum) and `salt`.
pub fn hash_password(password: &str, salt: &[u8; 16]) -> String {
    let salt = SaltString::encode_b64(salt).expect("16 bytes are a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks that `hash` is a PHC string of an argon2 hash with parameters argon2 accepts.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm {} is not argon2 (use `ember-collector agent add`)",
            parsed.algorithm
        ));
    }
    argon2::Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    Ok(())
}

/// Does `password` match `hash`? Takes as long as the hash's parameters say (tens of ms):
/// call it off the async threads.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A token bucket: `rate` messages a second on average, up to `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Takes a token: `Ok` if there was one, else how long until there is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.take_many(1, now)
    }

    /// Takes `n` tokens (at most the burst): `Ok` if there were, else how long until there are.
    pub fn take_many(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let n = f64::from(n).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> Identity {
        Identity {
            name: name.into(),
            role: Role::Agent,
        }
    }

    #[test]
    fn an_agent_publishes_only_its_own_hosts_topics_and_never_commands() {
        let a = agent("pi-a");
        let check = |topic: &str, expected: bool| {
            assert_eq!(a.may_publish(topic, &[]), expected, "{topic}");
            // What readers may publish is theirs alone.
            let ha = ["homeassistant/status".to_string()];
            assert_eq!(a.may_publish(topic, &ha), expected, "{topic}");
        };
        check("ember/v1/pi-a/sample", true);
        check("ember/v1/pi-a/info", true);
        check("ember/v1/pi-a/status", true);
        check("ember/v1/pi-a/result", true);
        check("ember/v1/pi-a/cmd", false);
        // The collector's banner for the host (retained): not the agent's to overwrite.
        check("ember/v1/pi-a/alerts", false);
        check("ember/v1/pi-b/sample", false);
        check("ember/v1/pi-a2/sample", false);
        check("ember/v1/pi-/sample", false);
        check("ember/v1/+/sample", false);
        check("ember/v1/pi-a/sample/x", false);
        check("homeassistant/sensor/x/config", false);
        check("", false);
    }

    #[test]
    fn an_agents_last_will_is_its_own_status_only() {
        let a = agent("pi-a");
        assert!(a.may_will("ember/v1/pi-a/status", &[]));
        for topic in [
            "ember/v1/pi-a/sample",
            "ember/v1/pi-a/info",
            "ember/v1/pi-a/result",
            "ember/v1/pi-a/alerts",
            "ember/v1/pi-a/cmd",
            "ember/v1/pi-b/status",
        ] {
            assert!(!a.may_will(topic, &[]), "{topic}");
        }
    }

    #[test]
    fn an_agent_subscribes_only_to_what_the_agent_needs() {
        let a = agent("pi-a");
        for (filter, expected) in [
            ("ember/v1/pi-a/cmd", true),
            // Issue #20: least privilege, no more than `ember-agent` subscribes to.
            ("ember/v1/pi-a/#", false),
            ("ember/v1/pi-a/+", false),
            ("ember/v1/pi-a/sample", false),
            ("ember/v1/pi-a/status", false),
            ("ember/v1/pi-a/cmd/#", false),
            ("$share/g/ember/v1/pi-a/cmd", false),
            ("ember/v1/pi-b/cmd", false),
            ("ember/v1/+/cmd", false),
            ("ember/v1/#", false),
            ("#", false),
            ("ember/v1/pi-ab/cmd", false),
            ("ember/v1/pi-a/alerts", true),
            // The fleet page: every host's status, and only that.
            (topic::ALL_STATUS, true),
            ("ember/v1/+/sample", false),
            ("ember/v1/+/+", false),
        ] {
            assert_eq!(a.may_subscribe(filter), expected, "{filter}");
        }
    }

    #[test]
    fn a_reader_subscribes_to_all_but_dollar_topics_and_publishes_only_has_status() {
        let r = Identity {
            name: "ha".into(),
            role: Role::Reader,
        };
        assert!(r.may_subscribe("#"));
        assert!(r.may_subscribe("ember/v1/+/sample"));
        // Issue #20: rumqttd's shared subscriptions crashed its router; no `$SYS` either.
        assert!(!r.may_subscribe("$share/g/ember/v1/+/sample"));
        assert!(!r.may_subscribe("$SYS/#"));
        assert!(!r.may_publish("ember/v1/ha/sample", &[]));
        // Home Assistant's birth message and last will, when the bridge listens for them.
        let ha = ["homeassistant/status".to_string()];
        assert!(r.may_publish("homeassistant/status", &ha));
        assert!(!r.may_publish("homeassistant/status", &[]));
        assert!(!r.may_publish("homeassistant/other", &ha));
        assert!(!r.may_publish("ember/v1/ha/sample", &ha));
        assert_eq!(r.broker_client_id("x", 3).as_deref(), Some("ha.x"));
        assert_eq!(r.broker_client_id("", 3).as_deref(), Some("ha.3"));
        assert_eq!(r.broker_client_id("a/b", 3), None);
    }

    #[test]
    fn an_agents_client_id_is_fixed_by_its_host() {
        let a = agent("pi-a");
        assert_eq!(
            a.broker_client_id("ember-agent-pi-b", 1).as_deref(),
            Some("ember-agent-pi-a")
        );
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse", &[7; 16]);
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        check_hash(&hash).unwrap();
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct hors"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(check_hash("$pbkdf2-sha256$i=1$c2FsdA$aGFzaA").is_err());
        assert!(check_hash("plain").is_err());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            b.take(t0).unwrap();
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        b.take(t0 + Duration::from_millis(100)).unwrap();
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            b.take(later).unwrap();
        }
        assert!(b.take(later).is_err());
    }
}
