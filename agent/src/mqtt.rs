//! The MQTT version the agent speaks (`mqtt-version`): rumqttc's 3.1.1 client (the default) or
//! its MQTT 5 client, behind one small interface for the publisher (`publish.rs`): what it
//! requests ([`Client`]) and the events it reads ([`Events`], as [`Polled`]).

use rumqttc::{Outgoing, QoS};

use crate::config::{AgentConfig, Version};

/// What the agent asks of the broker connection.
#[derive(Clone)]
pub enum Client {
    /// rumqttc's 3.1.1 client.
    V4(rumqttc::AsyncClient),
    /// rumqttc's MQTT 5 client.
    V5(rumqttc::v5::AsyncClient),
}

/// rumqttc's event loop for either version (boxed, once at start: the two differ in size).
pub enum Events {
    /// 3.1.1.
    V4(Box<rumqttc::EventLoop>),
    /// MQTT 5.
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the publisher reads of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// Connected (the CONNACK's code, for the log).
    ConnAck(String),
    /// A PUBLISH went out with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id (whatever its reason: a publish it refused is not
    /// sent again either).
    Acked(u16),
    /// A message on `topic`.
    Message(String, Vec<u8>),
    /// A DISCONNECT went out.
    Disconnecting,
    /// Nothing the publisher needs.
    Other,
}

/// Why polling failed.
#[derive(Debug)]
pub enum Failed {
    /// The client (every request sender) is gone.
    RequestsDone,
    /// The connection failed.
    Connection(String),
}

fn qos5(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// A client and its event loop for `config`, as the agent connects: client id
/// `ember-agent-{host}`, no session kept, the retained `will` on `will_topic`, packets up to
/// `max_packet` bytes, `capacity` requests queued.
pub fn connect(
    config: &AgentConfig,
    will_topic: &str,
    will: Vec<u8>,
    max_packet: usize,
    capacity: usize,
) -> (Client, Events) {
    let id = format!("ember-agent-{}", config.host_id);
    let (host, port) = (config.broker_host.clone(), config.broker_port);
    let transport = config.tls.as_ref().map(|tls| {
        rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.config.clone()))
    });
    let login = config
        .login
        .as_ref()
        .map(|l| (l.username.clone(), l.password.clone()));
    match config.mqtt_version {
        Version::V311 => {
            let mut options = rumqttc::MqttOptions::new(id, host, port);
            options
                .set_keep_alive(config.keep_alive)
                .set_clean_session(true)
                .set_inflight(capacity as u16)
                .set_max_packet_size(max_packet, max_packet)
                .set_last_will(rumqttc::LastWill::new(
                    will_topic,
                    will,
                    QoS::AtLeastOnce,
                    true,
                ));
            if let Some((user, password)) = login {
                options.set_credentials(user, password);
            }
            if let Some(t) = transport {
                options.set_transport(t);
            }
            let (client, events) = rumqttc::AsyncClient::new(options, capacity);
            (Client::V4(client), Events::V4(Box::new(events)))
        }
        Version::V5 => {
            use rumqttc::v5::mqttbytes::v5::LastWill;
            let mut options = rumqttc::v5::MqttOptions::new(id, host, port);
            options
                .set_keep_alive(config.keep_alive)
                .set_clean_start(true)
                // No session after the connection (expiry 0): as 3.1.1's clean session.
                .set_session_expiry_interval(None)
                .set_outgoing_inflight_upper_limit(capacity as u16)
                .set_max_packet_size(Some(max_packet as u32))
                .set_last_will(LastWill::new(
                    will_topic,
                    will,
                    qos5(QoS::AtLeastOnce),
                    true,
                    None,
                ));
            if let Some((user, password)) = login {
                options.set_credentials(user, password);
            }
            if let Some(t) = transport {
                options.set_transport(t);
            }
            let (client, events) = rumqttc::v5::AsyncClient::new(options, capacity);
            (Client::V5(client), Events::V5(Box::new(events)))
        }
    }
}

impl Client {
    /// Queues a PUBLISH; fails when rumqttc's request queue is full.
    pub fn try_publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), String> {
        let payload: Vec<u8> = payload.into();
        match self {
            Client::V4(c) => c
                .try_publish(topic, qos, retain, payload)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_publish(topic, qos5(qos), retain, payload)
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a SUBSCRIBE; fails when rumqttc's request queue is full.
    pub fn try_subscribe(&self, filter: &str, qos: QoS) -> Result<(), String> {
        match self {
            Client::V4(c) => c.try_subscribe(filter, qos).map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, qos5(qos))
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a PUBLISH, waiting for room in the queue.
    pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>) {
        let _ = match self {
            Client::V4(c) => c
                .publish(topic, qos, retain, payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish(topic, qos5(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
        };
    }

    /// Queues a DISCONNECT.
    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

impl Events {
    /// The next event, as the publisher reads it.
    pub async fn poll(&mut self) -> Result<Polled, Failed> {
        match self {
            Events::V4(e) => {
                use rumqttc::{Event, Packet};
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        Ok(Polled::ConnAck(format!("{:?}", ack.code)))
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Ok(Polled::Acked(ack.pkid)),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Ok(Polled::Message(p.topic, p.payload.to_vec()))
                    }
                    Ok(Event::Outgoing(o)) => Ok(outgoing(o)),
                    Ok(_) => Ok(Polled::Other),
                    Err(rumqttc::ConnectionError::RequestsDone) => Err(Failed::RequestsDone),
                    Err(e) => Err(Failed::Connection(e.to_string())),
                }
            }
            Events::V5(e) => {
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
                use rumqttc::v5::Event;
                match e.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        Ok(Polled::ConnAck(format!("{:?}", ack.code)))
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if !matches!(
                            ack.reason,
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                        ) {
                            log::warn!("the broker refused a publish: {:?}", ack.reason);
                        }
                        Ok(Polled::Acked(ack.pkid))
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => Ok(Polled::Message(
                        String::from_utf8_lossy(&p.topic).into_owned(),
                        p.payload.to_vec(),
                    )),
                    Ok(Event::Outgoing(o)) => Ok(outgoing(o)),
                    Ok(_) => Ok(Polled::Other),
                    Err(rumqttc::v5::ConnectionError::RequestsDone) => Err(Failed::RequestsDone),
                    Err(e) => Err(Failed::Connection(e.to_string())),
                }
            }
        }
    }

    /// Forgets what rumqttc still queues (after a connection failed).
    pub fn clean(&mut self) {
        match self {
            Events::V4(e) => {
                e.clean();
                e.pending.clear();
            }
            Events::V5(e) => {
                e.clean();
                e.pending.clear();
            }
        }
    }
}

fn outgoing(o: Outgoing) -> Polled {
    match o {
        Outgoing::Publish(pkid) => Polled::Sent(pkid),
        Outgoing::Disconnect => Polled::Disconnecting,
        _ => Polled::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_key_takes_3_1_1_or_5() {
        assert_eq!(Version::parse(None), Ok(Version::V311));
        for v in ["3.1.1", "311", "4", " 3.1.1 "] {
            assert_eq!(Version::parse(Some(v)), Ok(Version::V311), "{v}");
        }
        for v in ["5", "5.0"] {
            assert_eq!(Version::parse(Some(v)), Ok(Version::V5), "{v}");
        }
        for v in ["3.1", "6", "v5", ""] {
            let e = Version::parse(Some(v)).unwrap_err();
            assert!(e.contains("mqtt-version"), "{e}");
        }
        assert_eq!(Version::V5.to_string(), "5");
        assert_eq!(
            Version::parse(Some(&Version::V311.to_string())),
            Ok(Version::V311)
        );
    }

    /// The key through the config's layers: a file's `mqtt-version`, `EMBER_MQTT_VERSION`,
    /// `--print-config`; a bad value is refused naming the key.
    #[test]
    fn mqtt_version_is_a_config_key() {
        use crate::config::RawConfig;
        let with = |raw: RawConfig| RawConfig::defaults().merge(raw).validate();
        let file = RawConfig::from_toml("host-id = \"pi\"\nmqtt-version = \"5\"").unwrap();
        let config = with(file).unwrap();
        assert_eq!(config.mqtt_version, Version::V5);
        assert_eq!(config.to_raw().mqtt_version.as_deref(), Some("5"));
        let env = [("EMBER_MQTT_VERSION".to_string(), "5.0".to_string())];
        let env = RawConfig::from_env(env).unwrap();
        let host = RawConfig::from_toml("host-id = \"pi\"").unwrap();
        assert_eq!(with(host.merge(env)).unwrap().mqtt_version, Version::V5);
        let host = RawConfig::from_toml("host-id = \"pi\"").unwrap();
        assert_eq!(with(host).unwrap().mqtt_version, Version::V311, "default");
        let bad = RawConfig::from_toml("host-id = \"pi\"\nmqtt-version = \"3\"").unwrap();
        assert_eq!(with(bad).unwrap_err().key, "mqtt-version");
    }
}
