//! `ember-agent`: parses flags and runs [`ember_agent::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ember_agent::AgentConfig;

/// Ember's agent: samples this board and publishes to the collector over MQTT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// The collector's (or any MQTT broker's) address.
    #[arg(long, default_value = "127.0.0.1:1883", value_name = "HOST:PORT")]
    broker: String,
    /// This host's id: a-z, 0-9 and '-', up to 32 characters. Default: from the host name.
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// How often to sample and publish (`1s`, `500ms`, `1m`).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    interval: String,
    /// Write what the panel would show to this PNG file after each sample.
    #[arg(long, value_name = "FILE.png")]
    preview: Option<PathBuf>,
    /// Print one sample as JSON and exit, without connecting.
    #[arg(long)]
    once: bool,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let flags = Flags::parse();
    let config = AgentConfig::new(
        &flags.broker,
        flags.host_id.as_deref(),
        &flags.interval,
        flags.preview,
    )?;
    if flags.once {
        let mut sampler =
            ember_agent::Sampler::new().context("cannot read this machine's metrics")?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let sample = sampler.sample();
        println!("{}", serde_json::to_string_pretty(&sample)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    log::info!(
        "ember-agent {} as {} → {}:{} every {:?}",
        env!("CARGO_PKG_VERSION"),
        config.host_id,
        config.broker_host,
        config.broker_port,
        config.interval
    );
    runtime.block_on(ember_agent::run(config, shutdown_signal()))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
