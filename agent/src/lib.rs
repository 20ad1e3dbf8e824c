//! Ember's agent: samples a board, draws the panel, publishes postcard samples over MQTT.
//!
//! The binary (`main.rs`) only loads the configuration and calls [`run`]; tests and the
//! collector's `--local-agent` call the same function.

#![deny(unsafe_code)]

pub mod command;
pub mod config;
pub mod mqtt;
pub mod outbox;
pub mod panel;
pub mod preview;
pub mod probe;
pub mod procfs;
pub mod publish;
pub mod recent;
pub mod sampler;
pub mod simulate;
pub mod spool;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use ember_wire::{Envelope, Message, MAX_ENCODED_LEN};

pub use config::AgentConfig;
pub use sampler::Sampler;

/// How often the inventory is checked for changes (an address, a disk).
const INFO_EVERY: Duration = Duration::from_secs(60);
/// How long a stopping agent may take to send its outbox, `Offline` and the DISCONNECT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the agent until `shutdown` resolves: samples every interval and publishes through the
/// store-and-forward outbox. On shutdown it first sends what the outbox still holds (each
/// sample acknowledged), then publishes a retained `Offline` status and disconnects cleanly, all
/// within [`STOP_TIMEOUT`]; samples still unsent then go to the spool (`spool` in the config),
/// which the next start sends first, its sequence going on from them.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let sampler_config = config.clone();
    let mut sampler = tokio::task::spawn_blocking(move || Sampler::new(&sampler_config))
        .await
        .context("sampler thread")?
        .context("cannot read this machine's metrics")?;
    let info = sampler.host_info();
    let mut preview = config.preview.clone();
    if let Some(p) = &mut preview {
        p.set_ip(first_ipv4(&info));
    }
    // The attached panel runs on its own thread: `update` never blocks, a missing device is
    // retried with backoff.
    let panel = config.panel.as_ref().map(|p| {
        let h = panel::Panel::start(p, config.host_id.as_str());
        h.set_ip(first_ipv4(&info));
        h
    });
    let publisher =
        publish::Publisher::start_with_panel(&config, info, panel.as_ref().map(|p| p.control()));
    if let Some(path) = &config.spool {
        match spool::take(path) {
            Ok(Some(s)) => {
                log::info!(
                    "sending the {} samples unsent at the last stop (from {})",
                    s.samples.len(),
                    path.display()
                );
                for (seq, bytes) in &s.samples {
                    publisher.sample(*seq, bytes);
                }
                sampler.continue_from(s.next_seq);
            }
            Ok(None) => {}
            // A damaged file is kept as `*.bad` (see `spool::take`); starting goes on.
            Err(e) => log::error!(
                "{}: {e}; starting without the samples it held",
                path.display()
            ),
        }
    }
    let probes = probe::spawn(&config.probes, config.interval);

    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the sampler's rates then cover its start-up time.
    ticker.tick().await;
    tokio::pin!(shutdown);
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut info_checked = Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let check_info = info_checked.elapsed() >= INFO_EVERY;
        let (s, mut sample, info) = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample();
            let info = check_info.then(|| sampler.host_info());
            (sampler, sample, info)
        })
        .await
        .context("sampler thread")?;
        sampler = s;
        if let Some(info) = info {
            info_checked = Instant::now();
            if let Some(p) = &mut preview {
                p.set_ip(first_ipv4(&info));
            }
            if let Some(h) = &panel {
                h.set_ip(first_ipv4(&info));
            }
            publisher.update_info(info);
        }
        sample.dropped = publisher.dropped();
        sample.probes = probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(preview) = &mut preview {
            preview.update(&config.host_id, &sample);
        }
        if let Some(h) = &panel {
            h.update(&sample);
        }
        let seq = sample.seq;
        let envelope = Envelope::new(config.host_id.clone(), Message::Sample(sample));
        match envelope.encode(&mut buf) {
            Ok(bytes) => publisher.sample(seq, bytes),
            Err(e) => log::error!("cannot encode a sample: {e}"),
        }
    }
    let outbox = publisher.outbox();
    let unsent = publisher.stop(STOP_TIMEOUT).await;
    if unsent > 0 {
        match &config.spool {
            Some(path) => {
                let bytes = {
                    let outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
                    spool::encode(sampler.next_seq(), outbox.unacked())
                };
                match spool::save(path, &bytes) {
                    Ok(()) => log::info!(
                        "kept the {unsent} unsent samples in {} for the next start",
                        path.display()
                    ),
                    Err(e) => log::error!(
                        "cannot keep the {unsent} unsent samples in {}: {e}; they are lost",
                        path.display()
                    ),
                }
            }
            None => log::warn!(
                "the {unsent} unsent samples are lost: set `spool` to keep them for the next start"
            ),
        }
    }
    Ok(())
}

/// The address a person would use to reach the host: the first IPv4 address that is not
/// loopback or link-local.
fn first_ipv4(info: &ember_wire::HostInfo) -> Option<[u8; 4]> {
    info.interfaces
        .iter()
        .flat_map(|i| i.ipv4.iter())
        .find(|a| a[0] != 127 && !(a[0] == 169 && a[1] == 254))
        .copied()
}
