//! The MQTT topic scheme (`docs/wire.md` explains it for people).
//!
//! ```text
//! ember/v1/{host}/sample   agent → collector   QoS 1   not retained   Message::Sample
//! ember/v1/{host}/info     agent → collector   QoS 1   retained       Message::HostInfo
//! ember/v1/{host}/status   agent → collector   QoS 1   retained       Message::Status (last will: Offline)
//! ember/v1/{host}/cmd      collector → agent   QoS 1   not retained   Message::Command
//! ember/v1/{host}/result   agent → collector   QoS 1   not retained   Message::CommandResult
//! ember/v1/{host}/alerts   collector → agent   QoS 1   retained       Message::Alerts
//! ```
//!
//! Every payload is a postcard [`Envelope`](crate::Envelope) whose host equals the topic's
//! `{host}` level; readers drop messages where the two disagree.

use core::fmt::Write;

use heapless::String;

use crate::host::{HostId, HOST_ID_MAX_LEN};

/// The first two levels of every Ember topic.
pub const PREFIX: &str = "ember/v1";

/// Longest topic this scheme produces.
pub const MAX_TOPIC_LEN: usize = PREFIX.len() + 1 + HOST_ID_MAX_LEN + 1 + 6;

/// The filter that matches everything agents publish and the collector reads.
pub const FROM_AGENTS: &str = "ember/v1/+/+";

/// The filter that matches every host's retained status: what an agent's fleet page follows.
pub const ALL_STATUS: &str = "ember/v1/+/status";

/// Which topic of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `sample`
    Sample,
    /// `info`
    Info,
    /// `status`
    Status,
    /// `cmd`
    Command,
    /// `result`
    Result,
    /// `alerts`
    Alerts,
}

/// MQTT quality of service levels used by the scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// At most once.
    AtMostOnce,
    /// At least once.
    AtLeastOnce,
}

impl Kind {
    /// Every kind, in scheme order.
    pub const ALL: [Kind; 6] = [
        Kind::Sample,
        Kind::Info,
        Kind::Status,
        Kind::Command,
        Kind::Result,
        Kind::Alerts,
    ];

    /// The topic's last level.
    pub const fn suffix(self) -> &'static str {
        match self {
            Kind::Sample => "sample",
            Kind::Info => "info",
            Kind::Status => "status",
            Kind::Command => "cmd",
            Kind::Result => "result",
            Kind::Alerts => "alerts",
        }
    }

    /// Whether the collector, not the agent, publishes on this kind's topic.
    pub const fn from_collector(self) -> bool {
        matches!(self, Kind::Command | Kind::Alerts)
    }

    /// Whether the broker keeps the last message for new subscribers.
    pub const fn retained(self) -> bool {
        matches!(self, Kind::Info | Kind::Status | Kind::Alerts)
    }

    /// The QoS messages of this kind are published with.
    pub const fn qos(self) -> Qos {
        Qos::AtLeastOnce
    }

    fn from_suffix(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.suffix() == s)
    }
}

/// The topic of `host`'s messages of `kind`.
pub fn topic(host: &HostId, kind: Kind) -> String<MAX_TOPIC_LEN> {
    let mut t = String::new();
    // Cannot fail: MAX_TOPIC_LEN covers the longest host id and suffix.
    let _ = write!(t, "{PREFIX}/{host}/{}", kind.suffix());
    t
}

/// Splits an Ember topic into its host and kind; `None` for anything else.
pub fn parse(topic: &str) -> Option<(HostId, Kind)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let (host, suffix) = rest.split_once('/')?;
    Some((HostId::new(host).ok()?, Kind::from_suffix(suffix)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let host = HostId::new("pi4").unwrap();
        for kind in Kind::ALL {
            let t = topic(&host, kind);
            assert_eq!(parse(&t), Some((host.clone(), kind)), "{t}");
        }
        assert_eq!(topic(&host, Kind::Sample).as_str(), "ember/v1/pi4/sample");
        assert_eq!(topic(&host, Kind::Command).as_str(), "ember/v1/pi4/cmd");
    }

    #[test]
    fn longest_host_fits() {
        let host = HostId::new(&"a".repeat(HOST_ID_MAX_LEN)).unwrap();
        for kind in Kind::ALL {
            assert!(topic(&host, kind).ends_with(kind.suffix()));
        }
    }

    #[test]
    fn rejects_foreign_topics() {
        for t in [
            "",
            "ember/v1",
            "ember/v1/pi4",
            "ember/v2/pi4/sample",
            "ember/v1/Pi4/sample",
            "ember/v1/pi4/sample/extra",
            "ember/v1/pi4/unknown",
            "ember/v1//sample",
            "homeassistant/status",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
    }

    #[test]
    fn retained_and_qos() {
        assert!(Kind::Status.retained() && Kind::Info.retained());
        assert!(!Kind::Sample.retained() && !Kind::Command.retained());
        assert!(Kind::ALL.iter().all(|k| k.qos() == Qos::AtLeastOnce));
    }
}
