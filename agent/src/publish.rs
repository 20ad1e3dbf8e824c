//! Publishing over MQTT with rumqttc: a last will, retained status and inventory on every
//! connect, samples at QoS 1 through a bounded channel that never blocks the sampler.

use std::time::Duration;

use anyhow::Context;
use ember_wire::topic::{self, Kind};
use ember_wire::{Envelope, HostId, HostInfo, Message, Status, MAX_ENCODED_LEN};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;

use crate::config::AgentConfig;

/// Requests rumqttc may queue before `try_publish` reports the channel full.
const REQUEST_CAPACITY: usize = 64;

/// The agent's MQTT side.
pub struct Publisher {
    client: AsyncClient,
    host: HostId,
    sample_topic: String,
    events: JoinHandle<()>,
    dropped: u32,
}

fn encode(host: &HostId, message: Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    match Envelope::new(host.clone(), message).encode(&mut buf) {
        Ok(b) => b.to_vec(),
        // Cannot happen with a MAX_ENCODED_LEN buffer.
        Err(e) => unreachable!("encoding into a max-size buffer failed: {e}"),
    }
}

impl Publisher {
    /// Connects in the background; retries for ever with capped backoff.
    pub fn start(config: &AgentConfig, info: HostInfo) -> anyhow::Result<Self> {
        let host = config.host_id.clone();
        let status_topic = topic::topic(&host, Kind::Status).to_string();
        let mut options = MqttOptions::new(
            format!("ember-agent-{host}"),
            config.broker_host.clone(),
            config.broker_port,
        );
        options
            .set_keep_alive(config.keep_alive)
            .set_max_packet_size(MAX_ENCODED_LEN + 256, MAX_ENCODED_LEN + 256)
            .set_last_will(LastWill::new(
                status_topic.clone(),
                encode(&host, Message::Status(Status::Offline)),
                QoS::AtLeastOnce,
                true,
            ));
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let online = encode(
            &host,
            Message::Status(Status::Online {
                interval_ms: config.interval.as_millis().min(u32::MAX as u128) as u32,
            }),
        );
        let info = encode(&host, Message::HostInfo(info));
        let on_connect = vec![
            (status_topic, online),
            (topic::topic(&host, Kind::Info).to_string(), info),
        ];
        let events = tokio::spawn(drive(eventloop, client.clone(), on_connect));
        Ok(Publisher {
            sample_topic: topic::topic(&host, Kind::Sample).to_string(),
            client,
            host,
            events,
            dropped: 0,
        })
    }

    /// Queues one encoded sample; never waits. When the queue is full the sample is dropped and
    /// counted.
    pub fn sample(&mut self, bytes: &[u8]) {
        if let Err(e) =
            self.client
                .try_publish(self.sample_topic.as_str(), QoS::AtLeastOnce, false, bytes)
        {
            self.dropped = self.dropped.saturating_add(1);
            log::warn!("sample dropped ({} so far): {e}", self.dropped);
        }
    }

    /// Samples dropped because the queue was full.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Publishes `Offline` (retained), disconnects and waits up to `timeout` for it to go out.
    pub async fn stop(self, timeout: Duration) {
        let offline = encode(&self.host, Message::Status(Status::Offline));
        let status_topic = topic::topic(&self.host, Kind::Status).to_string();
        let done = async {
            self.client
                .publish(status_topic, QoS::AtLeastOnce, true, offline)
                .await
                .context("publishing offline")?;
            self.client.disconnect().await.context("disconnecting")?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(())) => {
                let _ = tokio::time::timeout(timeout, self.events).await;
            }
            Ok(Err(e)) => log::warn!("clean shutdown failed: {e:#}"),
            Err(_) => log::warn!("clean shutdown timed out"),
        }
    }
}

/// Polls the event loop for ever: on every CONNACK it (re)publishes the retained messages; on
/// errors it waits with capped exponential backoff before rumqttc reconnects.
async fn drive(mut eventloop: EventLoop, client: AsyncClient, on_connect: Vec<(String, Vec<u8>)>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                log::info!("connected to the broker ({:?})", ack.code);
                backoff.reset();
                for (topic, payload) in &on_connect {
                    if let Err(e) =
                        client.try_publish(topic.as_str(), QoS::AtLeastOnce, true, payload.clone())
                    {
                        log::warn!("cannot queue {topic}: {e}");
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Let the DISCONNECT reach the socket, then stop.
                let _ = eventloop.poll().await;
                return;
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(e) => {
                let wait = backoff.next_wait();
                log::warn!("broker connection: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 | 1)
            .unwrap_or(1);
        Backoff {
            min,
            max,
            next: min,
            seed,
        }
    }

    /// Back to the shortest wait (after a successful connect).
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next wait: the current step less up to a quarter of jitter, then doubles the step.
    pub fn next_wait(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = step / 4;
        let cut = jitter.mul_f64((self.seed % 1000) as f64 / 1000.0);
        step - cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..8).map(|_| b.next_wait()).collect();
        let steps = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (w, s) in waits.iter().zip(steps) {
            let s = Duration::from_millis(s);
            assert!(*w <= s && *w >= s - s / 4, "{w:?} vs step {s:?}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
