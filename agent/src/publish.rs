//! Publishing over MQTT with rumqttc, with store-and-forward.
//!
//! Two tasks:
//! - the **event task** owns rumqttc's `EventLoop`: it polls, forwards the events that matter
//!   and, after a connection error, waits with capped exponential backoff and jitter before
//!   rumqttc reconnects;
//! - the **pump task** owns the [`Outbox`] view of what is in flight: on every CONNACK it
//!   publishes the retained `Online` status and inventory, subscribes to the host's command
//!   topic, and sends unacknowledged samples oldest-first, a window at a time; a sample leaves the
//!   outbox only when its PUBACK arrives.
//!
//! Stopping drains the outbox first: the pump keeps sending until every sample is acknowledged,
//! the connection fails or the drain's share of the stop timeout is spent, and only then
//! publishes `Offline` and disconnects. A publisher that is not connected at stop tries the
//! broker at once instead of waiting out its backoff; a broker that refuses ends the drain there.
//! A connection made during the drain only sends samples: no `Online` (the host's status would
//! flap for every subscriber), no subscriptions; a connection lost then is not retried.
//!
//! The sampler only copies an encoded sample into the outbox and wakes the pump: it never waits
//! on the network.
//!
//! Packet ids are matched to samples through the order of rumqttc's `Outgoing::Publish` events,
//! which follows the order of our requests. To keep that exact across a reconnect, the event task
//! tells the pump about an error and waits until the pump has stopped sending before it empties
//! rumqttc's request queue; the pump resumes only after the next CONNACK.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_wire::topic::{self, Kind};
use ember_wire::{
    Action, Command, CommandResult, Envelope, HostId, HostInfo, Message, Outcome, Status,
    MAX_ENCODED_LEN,
};
use rumqttc::QoS;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::command::{Named, MAX_RUNNING};
use crate::config::AgentConfig;
use crate::mqtt::{Client, Events, Failed, Polled};
use crate::outbox::Outbox;
use crate::panel::PanelControl;
use crate::recent::{Recent, Seen};

/// Samples in flight (sent, not yet acknowledged) at most.
const WINDOW: usize = 16;
/// Requests rumqttc may queue: the window plus status, inventory, subscription and results.
const REQUEST_CAPACITY: usize = WINDOW + 16;

/// The agent's MQTT side, as the sampler sees it.
pub struct Publisher {
    outbox: Arc<Mutex<Outbox>>,
    wake: Arc<Notify>,
    control: mpsc::Sender<Control>,
    pump: JoinHandle<()>,
    events: JoinHandle<()>,
}

/// Requests from the agent to the pump.
enum Control {
    /// A named command finished: publish its result.
    Result(CommandResult),
    /// New inventory: publish it (retained) if it changed.
    Info(Box<HostInfo>),
    /// Send what the outbox holds until `drain_until`, then publish `Offline`, disconnect, and
    /// tell when done.
    Stop {
        drain_until: Instant,
        done: oneshot::Sender<()>,
    },
}

/// What the event task reports to the pump.
#[derive(Debug)]
enum Ev {
    ConnAck,
    Sent(u16),
    Acked(u16),
    Command(Vec<u8>),
    /// The collector's alerts about this host (retained), for the panel.
    Alerts(Vec<u8>),
    /// A host's status (retained), for the panel's fleet page: the host its topic names, and
    /// the payload.
    Status(HostId, Vec<u8>),
    /// The connection failed; reply once nothing more will be sent on it: whether to reconnect.
    Lost(oneshot::Sender<bool>),
}

/// A host's retained status, published on the status topic of `from`, as the fleet page needs
/// it: the host and whether it is up. `None` for anything else (bad bytes are logged, never
/// fatal), and for an envelope naming another host than its topic: an agent may publish on its
/// own topic only, so such an envelope is one host speaking for another (issue #20).
fn host_status(from: &HostId, payload: &[u8]) -> Option<(HostId, bool)> {
    match ember_wire::decode(payload) {
        Ok(Envelope {
            host,
            message: Message::Status(status),
            ..
        }) if host == *from => Some((host, matches!(status, Status::Online { .. }))),
        Ok(Envelope {
            host,
            message: Message::Status(_),
            ..
        }) => {
            log::warn!("ignored a status for {host} published on {from}'s topic");
            None
        }
        Ok(_) => None,
        Err(e) => {
            log::debug!("ignored an undecodable status: {e}");
            None
        }
    }
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
    /// Starts both tasks; connects in the background and retries for ever.
    pub fn start(config: &AgentConfig, info: HostInfo) -> Self {
        Self::start_with_panel(config, info, None)
    }

    /// [`Publisher::start`] with the panel that identify and page commands act on.
    pub fn start_with_panel(
        config: &AgentConfig,
        info: HostInfo,
        panel: Option<PanelControl>,
    ) -> Self {
        let host = config.host_id.clone();
        // MQTT 3.1.1 or 5 (`mqtt-version`), the retained `Offline` as the last will.
        let (client, eventloop) = crate::mqtt::connect(
            config,
            topic::topic(&host, Kind::Status).as_str(),
            encode(&host, Message::Status(Status::Offline)),
            MAX_ENCODED_LEN + 256,
            REQUEST_CAPACITY,
        );
        let outbox = Arc::new(Mutex::new(Outbox::new(config.buffer)));
        let wake = Arc::new(Notify::new());
        let (ev_tx, ev_rx) = mpsc::channel(REQUEST_CAPACITY * 2);
        let (control, control_rx) = mpsc::channel(4);
        let retry = Arc::new(Notify::new());
        let interval_ms = config.interval.as_millis().min(u32::MAX as u128) as u32;
        let pump = Pump {
            client,
            host: host.clone(),
            sample_topic: topic::topic(&host, Kind::Sample).to_string(),
            outbox: outbox.clone(),
            info,
            interval_ms,
            connected: false,
            stopping: false,
            unassigned: VecDeque::new(),
            in_flight: Vec::new(),
            named: config.commands.clone(),
            running: Arc::new(AtomicUsize::new(0)),
            results: control.downgrade(),
            panel,
            retry: retry.clone(),
            recent: Recent::default(),
        };
        let pump = tokio::spawn(pump.run(ev_rx, control_rx, wake.clone()));
        let events = tokio::spawn(drive(eventloop, ev_tx, host.clone(), retry));
        Publisher {
            outbox,
            wake,
            control,
            pump,
            events,
        }
    }

    /// Keeps one encoded sample until the broker acknowledges it; never waits on the network.
    /// When the outbox is full the oldest sample is dropped and counted.
    pub fn sample(&self, seq: u64, bytes: &[u8]) {
        lock(&self.outbox).push(seq, bytes);
        self.wake.notify_one();
    }

    /// Samples dropped because the outbox was full, since start.
    pub fn dropped(&self) -> u32 {
        lock(&self.outbox).dropped()
    }

    /// The outbox itself, which outlives [`Publisher::stop`]: what it still holds then is
    /// what the spool keeps.
    pub fn outbox(&self) -> Arc<Mutex<Outbox>> {
        self.outbox.clone()
    }

    /// Samples waiting for an acknowledgement.
    pub fn backlog(&self) -> usize {
        lock(&self.outbox).len()
    }

    /// Publishes new inventory (retained) if it differs from the last.
    pub fn update_info(&self, info: HostInfo) {
        let _ = self.control.try_send(Control::Info(Box::new(info)));
    }

    /// Sends what the outbox holds, then publishes `Offline` (retained) and disconnects, all
    /// within `timeout`; returns how many samples were left unsent (and logs it).
    ///
    /// The drain (each sample acknowledged) may take three quarters of `timeout`, the rest is
    /// for `Offline` and the DISCONNECT. It ends early when the broker cannot be reached: not
    /// connected, the publisher tries once at once rather than at the end of its backoff, and
    /// stops if that fails. At `timeout` both tasks are ended whatever they are doing; the
    /// broker then publishes the last will. What is left unsent stays in the outbox
    /// ([`Publisher::outbox`]), for the spool.
    pub async fn stop(mut self, timeout: Duration) -> usize {
        let queued = self.backlog();
        // A day at most: an absurd timeout must not overflow the clock.
        let timeout = timeout.min(Duration::from_secs(86_400));
        let deadline = Instant::now() + timeout;
        let drain_until = deadline - timeout / 4;
        let (tx, rx) = oneshot::channel();
        let done = async {
            let stop = Control::Stop {
                drain_until,
                done: tx,
            };
            if self.control.send(stop).await.is_ok() {
                let _ = rx.await;
            }
            let _ = (&mut self.events).await;
        };
        let clean = tokio::time::timeout_at(deadline, done).await.is_ok();
        self.pump.abort();
        self.events.abort();
        let unsent = self.backlog();
        if unsent > 0 {
            log::warn!("stopped with {unsent} of the {queued} queued samples unacknowledged");
        } else if queued > 0 {
            log::info!("sent the {queued} samples queued at stop");
        }
        if !clean {
            log::warn!("clean shutdown timed out; the broker will publish the last will");
        }
        unsent
    }
}

fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    // The outbox holds no invariant a panic elsewhere could break half-way.
    outbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a request in flight carries, in the order the requests were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Sample(u64),
    Other,
}

struct Pump {
    client: Client,
    host: HostId,
    sample_topic: String,
    outbox: Arc<Mutex<Outbox>>,
    info: HostInfo,
    interval_ms: u32,
    connected: bool,
    /// Stop has begun: a reconnect only drains the outbox (no `Online`, no subscriptions), and
    /// a lost connection is not retried.
    stopping: bool,
    /// Requests made whose packet id is not known yet, oldest first.
    unassigned: VecDeque<Entry>,
    /// Packet ids of requests sent and not yet acknowledged.
    in_flight: Vec<(u16, Entry)>,
    /// The allow-list of named commands.
    named: Vec<Named>,
    /// Named commands running now.
    running: Arc<AtomicUsize>,
    /// Where a finished named command sends its result (weak: the publisher's going ends the
    /// pump as before).
    results: mpsc::WeakSender<Control>,
    /// The attached panel, if any.
    panel: Option<PanelControl>,
    /// Cuts the event task's backoff short (stopping with samples to send).
    retry: Arc<Notify>,
    /// The commands received lately: one delivered again is answered, not run again.
    recent: Recent,
}

impl Pump {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Ev>,
        mut control: mpsc::Receiver<Control>,
        wake: Arc<Notify>,
    ) {
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return,
                },
                c = control.recv() => match c {
                    Some(Control::Result(r)) => self.publish_result(r),
                    Some(Control::Info(info)) => {
                        if *info != self.info {
                            self.info = *info;
                            if self.connected {
                                self.publish_info();
                            }
                        }
                    }
                    Some(Control::Stop { drain_until, done }) => {
                        self.stopping = true;
                        self.drain(&mut events, drain_until).await;
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
            self.fill();
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::ConnAck => {
                self.connected = true;
                if self.stopping {
                    // Back only to hand over the outbox before `Offline`: announcing `Online`
                    // now would flap the host's status for every subscriber.
                    return;
                }
                let online = encode(
                    &self.host,
                    Message::Status(Status::Online {
                        interval_ms: self.interval_ms,
                    }),
                );
                self.publish(Kind::Status, online, true);
                self.publish_info();
                for kind in [Kind::Command, Kind::Alerts] {
                    let t = topic::topic(&self.host, kind);
                    if let Err(e) = self.client.try_subscribe(t.as_str(), QoS::AtLeastOnce) {
                        log::warn!("cannot subscribe to {t}: {e}");
                    }
                }
                // The fleet page: every host's retained status, only where a panel shows it.
                if self.panel.is_some() {
                    if let Err(e) = self
                        .client
                        .try_subscribe(topic::ALL_STATUS, QoS::AtMostOnce)
                    {
                        log::warn!("cannot subscribe to {}: {e}", topic::ALL_STATUS);
                    }
                }
            }
            Ev::Sent(pkid) => {
                if let Some(entry) = self.unassigned.pop_front() {
                    self.in_flight.push((pkid, entry));
                }
            }
            Ev::Acked(pkid) => {
                if let Some(i) = self.in_flight.iter().position(|(p, _)| *p == pkid) {
                    if let (_, Entry::Sample(seq)) = self.in_flight.swap_remove(i) {
                        lock(&self.outbox).acked(seq);
                    }
                }
            }
            Ev::Command(payload) => self.on_command(&payload),
            Ev::Alerts(payload) => match ember_wire::decode(&payload) {
                Ok(Envelope {
                    host,
                    message: Message::Alerts(a),
                    ..
                }) if host == self.host => {
                    if let Some(p) = &self.panel {
                        p.set_alerts(&a);
                    }
                }
                Ok(_) => log::warn!("ignored an alerts envelope for another host or kind"),
                Err(e) => log::warn!("ignored undecodable alerts: {e}"),
            },
            Ev::Status(from, payload) => {
                if let (Some((host, up)), Some(p)) = (host_status(&from, &payload), &self.panel) {
                    if !p.set_host_status(host.as_str(), up) {
                        log::debug!("fleet page full: {host} left out");
                    }
                }
            }
            Ev::Lost(paused) => {
                self.connected = false;
                self.unassigned.clear();
                self.in_flight.clear();
                lock(&self.outbox).rewind();
                // Stopping: no reconnect (the drain ends on a lost connection).
                let _ = paused.send(!self.stopping);
            }
        }
    }

    /// Sends unacknowledged samples, oldest first, while the window has room.
    fn fill(&mut self) {
        if !self.connected {
            return;
        }
        let mut outbox = lock(&self.outbox);
        while outbox.in_flight() < WINDOW {
            let Some((seq, bytes)) = outbox.next_unsent() else {
                break;
            };
            match self.client.try_publish(
                self.sample_topic.as_str(),
                QoS::AtLeastOnce,
                false,
                bytes,
            ) {
                Ok(()) => {
                    outbox.sent(seq);
                    self.unassigned.push_back(Entry::Sample(seq));
                }
                // rumqttc's queue is full: try again on the next event.
                Err(_) => break,
            }
        }
    }

    fn publish(&mut self, kind: Kind, payload: Vec<u8>, retain: bool) {
        let topic = topic::topic(&self.host, kind);
        match self
            .client
            .try_publish(topic.as_str(), QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => self.unassigned.push_back(Entry::Other),
            Err(e) => log::warn!("cannot queue {topic}: {e}"),
        }
    }

    fn publish_info(&mut self) {
        let info = encode(&self.host, Message::HostInfo(self.info.clone()));
        self.publish(Kind::Info, info, true);
    }

    fn on_command(&mut self, payload: &[u8]) {
        let command = match ember_wire::decode(payload) {
            Ok(Envelope {
                host,
                message: Message::Command(c),
                ..
            }) if host == self.host => c,
            Ok(_) => {
                log::warn!("ignored a command envelope for another host or of another kind");
                return;
            }
            Err(e) => {
                log::warn!("ignored an undecodable command: {e}");
                return;
            }
        };
        match self.recent.admit(&command, std::time::Instant::now()) {
            Seen::New => {}
            Seen::Running => {
                log::info!("command {} delivered again while it runs", command.id);
                return;
            }
            Seen::Done(result) => {
                log::info!(
                    "command {} delivered again: its result sent again",
                    command.id
                );
                let payload = encode(&self.host, Message::CommandResult(result));
                self.publish(Kind::Result, payload, false);
                return;
            }
        }
        let Some((outcome, detail)) = self.execute(&command) else {
            // A named command started: its result comes later.
            return;
        };
        self.publish_result(CommandResult {
            id: command.id,
            outcome,
            detail: crate::sampler::truncated(detail),
        });
    }

    /// Publishes a command's result, kept for a delivery of the same command again.
    fn publish_result(&mut self, result: CommandResult) {
        self.recent.finish(&result);
        let payload = encode(&self.host, Message::CommandResult(result));
        self.publish(Kind::Result, payload, false);
    }

    /// Does what `command` asks, or starts it; `None` when the result will come later.
    fn execute(&mut self, command: &Command) -> Option<(Outcome, &'static str)> {
        let panel = |f: &dyn Fn(&PanelControl)| match &self.panel {
            Some(p) => {
                f(p);
                (Outcome::Done, "")
            }
            None => (Outcome::Failed, "no panel attached to this agent"),
        };
        Some(match &command.action {
            Action::RepublishInventory => {
                self.publish_info();
                (Outcome::Done, "")
            }
            Action::Identify => panel(&|p| p.identify()),
            Action::NextPage => panel(&|p| p.turn(1)),
            Action::PreviousPage => panel(&|p| p.turn(-1)),
            Action::Brightness(level) => match &self.panel {
                Some(p) => match p.set_brightness(*level) {
                    Ok(()) => (Outcome::Done, ""),
                    Err(why) => (Outcome::Refused, why),
                },
                None => (Outcome::Failed, "no panel attached to this agent"),
            },
            Action::Named(name) => {
                let Some(named) = self.named.iter().find(|n| n.name == name.as_str()) else {
                    log::warn!("refused command {name:?}: not on this agent's allow-list");
                    return Some((Outcome::Refused, "not on this agent's allow-list"));
                };
                let Some(results) = self.results.upgrade() else {
                    return Some((Outcome::Failed, "the agent is stopping"));
                };
                if self.running.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
                    self.running.fetch_sub(1, Ordering::SeqCst);
                    return Some((Outcome::Refused, "busy: too many commands running"));
                }
                log::info!("running command {name:?} (id {})", command.id);
                let (named, id) = (named.clone(), command.id);
                let limit = Duration::from_millis(command.timeout_ms.into());
                let running = self.running.clone();
                tokio::spawn(async move {
                    let done = tokio::task::spawn_blocking(move || named.run(limit)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    let (outcome, detail) = done.unwrap_or_else(|e| {
                        (Outcome::Failed, format!("the command's task failed: {e}"))
                    });
                    let result = CommandResult {
                        id,
                        outcome,
                        detail: crate::sampler::truncated(&detail),
                    };
                    let _ = results.send(Control::Result(result)).await;
                });
                return None;
            }
        })
    }

    /// Sends the outbox until every sample is acknowledged, the connection fails, or `until`.
    async fn drain(&mut self, events: &mut mpsc::Receiver<Ev>, until: Instant) {
        if !self.connected && !lock(&self.outbox).is_empty() {
            // Try the broker now rather than at the end of the backoff.
            self.retry.notify_one();
        }
        loop {
            self.fill();
            if lock(&self.outbox).is_empty() {
                return;
            }
            let ev = tokio::select! {
                ev = events.recv() => ev,
                _ = tokio::time::sleep_until(until) => return,
            };
            match ev {
                // The broker is unreachable: nothing to wait for.
                Some(ev @ Ev::Lost(_)) => {
                    self.on_event(ev);
                    return;
                }
                Some(ev) => self.on_event(ev),
                None => return,
            }
        }
    }

    /// Publishes `Offline` and disconnects, if connected (if not, the broker has published the
    /// last will, or will when the keep-alive runs out).
    async fn stop(&mut self) {
        if !self.connected {
            return;
        }
        let offline = encode(&self.host, Message::Status(Status::Offline));
        let status = topic::topic(&self.host, Kind::Status);
        self.client
            .publish(status.as_str(), QoS::AtLeastOnce, true, offline)
            .await;
        self.client.disconnect().await;
    }
}

/// Polls the event loop until the client disconnects.
async fn drive(mut eventloop: Events, pump: mpsc::Sender<Ev>, host: HostId, retry: Arc<Notify>) {
    let cmd_topic = topic::topic(&host, Kind::Command);
    let alerts_topic = topic::topic(&host, Kind::Alerts);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let ev = match eventloop.poll().await {
            Ok(Polled::ConnAck(code)) => {
                log::info!("connected to the broker ({code})");
                backoff.reset();
                Some(Ev::ConnAck)
            }
            Ok(Polled::Sent(pkid)) => Some(Ev::Sent(pkid)),
            Ok(Polled::Acked(pkid)) => Some(Ev::Acked(pkid)),
            Ok(Polled::Message(t, payload)) if t == cmd_topic.as_str() => {
                Some(Ev::Command(payload))
            }
            Ok(Polled::Message(t, payload)) if t == alerts_topic.as_str() => {
                Some(Ev::Alerts(payload))
            }
            Ok(Polled::Message(t, payload)) => match topic::parse(&t) {
                Some((from, Kind::Status)) => Some(Ev::Status(from, payload)),
                _ => None,
            },
            Ok(Polled::Disconnecting) => {
                // Let the DISCONNECT reach the socket, then stop.
                let _ = eventloop.poll().await;
                return;
            }
            Ok(_) => None,
            Err(Failed::RequestsDone) => return,
            Err(Failed::Connection(e)) => {
                let (paused, is_paused) = oneshot::channel();
                if pump.send(Ev::Lost(paused)).await.is_err() {
                    return;
                }
                if is_paused.await != Ok(true) {
                    // The pump is stopping, or gone: nobody to reconnect for.
                    return;
                }
                // Nothing more is requested until the next CONNACK: drop what rumqttc still
                // queues, the outbox sends it again in order.
                eventloop.clean();
                let wait = backoff.next_wait();
                log::warn!("broker connection: {e}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // Stopping with samples to send: try now.
                    _ = retry.notified() => {}
                    // Stopped: no one to reconnect for.
                    _ = pump.closed() => return,
                }
                None
            }
        };
        if let Some(ev) = ev {
            if pump.send(ev).await.is_err() {
                return;
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
    fn the_fleet_page_reads_every_hosts_retained_status() {
        let pi = HostId::new("garage-pi").unwrap();
        let online = encode(&pi, Message::Status(Status::Online { interval_ms: 1000 }));
        let offline = encode(&pi, Message::Status(Status::Offline));
        assert_eq!(host_status(&pi, &online), Some((pi.clone(), true)));
        assert_eq!(host_status(&pi, &offline), Some((pi.clone(), false)));
        // Another kind on a status topic, or bytes that do not decode: nothing, no panic.
        let info = encode(&pi, Message::HostInfo(HostInfo::default()));
        assert_eq!(host_status(&pi, &info), None);
        assert_eq!(host_status(&pi, &online[..online.len() / 2]), None);
        assert_eq!(host_status(&pi, b"offline"), None);
        // The subscription's filter matches every host's status topic and nothing else.
        let status = topic::topic(&pi, Kind::Status);
        assert_eq!(topic::ALL_STATUS.replace('+', pi.as_str()), status.as_str());
        assert_eq!(topic::parse(&status), Some((pi, Kind::Status)));
    }

    /// Issue #20 (finding 7): an agent publishing, on its own status topic, an envelope that
    /// names another host made every agent's fleet page show that host as it said.
    #[test]
    fn issue_20_a_status_naming_another_host_than_its_topic_is_dropped() {
        let (rogue, victim) = (HostId::new("rogue").unwrap(), HostId::new("nas").unwrap());
        let spoofed = encode(&victim, Message::Status(Status::Offline));
        assert_eq!(host_status(&rogue, &spoofed), None);
        assert_eq!(host_status(&victim, &spoofed), Some((victim, false)));
    }

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
