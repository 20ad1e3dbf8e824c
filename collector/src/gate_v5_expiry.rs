//! MQTT 5 session expiry on rumqttd, which has one flag for both ends of a session
//! (`clean_session`: start afresh *and* keep nothing afterwards) and keeps a session it keeps
//! for ever. The gate maps a v5 session onto it:
//!
//! - expiry 0 (the default): connected clean, so rumqttd keeps nothing after the connection;
//! - expiry above 0 with a clean start: rumqttd's session for the id is ended first ([`purge`]:
//!   a clean connection of that id, closed at once), then the client connects not clean;
//! - once a kept session's connection has closed, its expiry is timed here ([`Expiries`]); at
//!   its end, if no connection has taken the id since, the session is purged (its delayed will,
//!   if any, is then sent, as MQTT 5 says for a session's end). 0xFFFFFFFF never expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5 as m5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::{lock, read_frame, Gate, Session, SessionGuard};

/// How long a purge waits for rumqttd at most.
const PURGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which connection of a client id last set its session's expiry, per gate and id: an entry
/// per open v5 connection with a kept session and per session whose expiry is being timed.
static EXPIRIES: Mutex<Option<HashMap<(usize, String), u64>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// One connection's claim on its client id's session expiry. When dropped (the connection has
/// closed, however it ended) its session ends in `expiry` seconds (0: it is already gone;
/// `u32::MAX`: never), unless a connection takes the id before.
pub struct Expiries {
    claim: Claim,
    expiry: u32,
    gate: Arc<Gate>,
}

/// A client id's expiry as one connection set it.
struct Claim {
    key: (usize, String),
    generation: u64,
}

impl Expiries {
    /// Called once the connection holds the id at the gate: later connections of the id
    /// supersede this one's expiry.
    pub fn begin(gate: &Arc<Gate>, client_id: &str, expiry: u32) -> Self {
        let key = (Arc::as_ptr(gate) as usize, client_id.to_owned());
        let generation = NEXT.fetch_add(1, Ordering::Relaxed);
        lock(&EXPIRIES)
            .get_or_insert_with(HashMap::new)
            .insert(key.clone(), generation);
        Expiries {
            claim: Claim { key, generation },
            expiry,
            gate: gate.clone(),
        }
    }
}

impl Drop for Expiries {
    fn drop(&mut self) {
        let claim = Claim {
            key: std::mem::take(&mut self.claim.key),
            generation: self.claim.generation,
        };
        let expiry = self.expiry;
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if expiry != 0 && expiry != u32::MAX => {
                let gate = self.gate.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(u64::from(expiry))).await;
                    claim.expire(&gate).await;
                });
            }
            _ => claim.forget(),
        }
    }
}

impl Claim {
    /// Whether this is still the id's latest claim.
    fn current(&self) -> bool {
        lock(&EXPIRIES)
            .as_ref()
            .and_then(|m| m.get(&self.key))
            .is_some_and(|g| *g == self.generation)
    }

    fn forget(&self) {
        let mut map = lock(&EXPIRIES);
        if let Some(m) = map.as_mut() {
            if m.get(&self.key) == Some(&self.generation) {
                m.remove(&self.key);
            }
        }
    }

    /// The session's time is up: purged unless a connection holds the id or took it since.
    async fn expire(self, gate: &Gate) {
        let id = &self.key.1;
        let session = Arc::new(Session {
            kick: Default::default(),
            closed: Default::default(),
            closing: Default::default(),
        });
        {
            // Under the gate's lock: a connection taking the id now waits for the purge.
            let mut sessions = lock(&gate.sessions);
            if sessions.contains_key(id) || !self.current() {
                return;
            }
            sessions.insert(id.clone(), session.clone());
        }
        let guard = SessionGuard {
            gate,
            id: id.clone(),
            session,
        };
        if let Err(e) = purge(gate, id).await {
            tracing::debug!(client_id = %id, "an expired MQTT 5 session was not purged: {e}");
        }
        drop(guard);
        self.forget();
    }
}

/// Ends rumqttd's session of `client_id`: a clean connection of that id, closed at once. The
/// caller holds the id at the gate.
pub async fn purge(gate: &Gate, client_id: &str) -> std::io::Result<()> {
    let mut s = crate::broker::connect_v5(&gate.settings.broker)?;
    let connect = m5::Connect {
        keep_alive: 10,
        client_id: client_id.to_owned(),
        clean_start: true,
        properties: None,
    };
    let mut out = BytesMut::new();
    connect
        .write(&None, &None, &mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let exchange = async {
        s.write_all(&out).await?;
        let mut buf = BytesMut::new();
        match read_frame(&mut s, &mut buf, 1 << 16).await {
            Ok(Some((_, ack))) if ack.first() == Some(&0x20) => {}
            _ => return Err(std::io::Error::other("no CONNACK")),
        }
        s.write_all(&[0xe0, 0]).await?;
        // rumqttd closes once it has handled the DISCONNECT.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
        Ok(())
    };
    tokio::time::timeout(PURGE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("rumqttd did not answer in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A later connection's claim supersedes an earlier one's; a forgotten claim leaves no
    /// entry behind (the map holds open connections and timed sessions only).
    #[test]
    fn the_latest_connection_of_an_id_owns_its_expiry() {
        let settings = crate::gate::Settings {
            broker: crate::broker::idle_handoff(),
            max_connections: 1,
            max_packet: 1024,
            max_subscriptions: 100,
            tls: None,
            accounts: None,
        };
        let gate = Gate::new(settings, crate::gate::Flow::new(1024));
        let first = Expiries::begin(&gate, "exp-a", 0);
        assert!(first.claim.current());
        let second = Expiries::begin(&gate, "exp-a", 0);
        assert!(!first.claim.current() && second.claim.current());
        drop(first);
        assert!(
            second.claim.current(),
            "an earlier claim's end leaves the later one"
        );
        drop(second);
        let left = lock(&EXPIRIES)
            .as_ref()
            .is_some_and(|m| m.keys().any(|(_, id)| id == "exp-a"));
        assert!(!left, "no entry left behind");
    }
}
