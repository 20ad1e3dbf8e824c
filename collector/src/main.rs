//! `ember-collector`: loads the configuration and runs [`ember_collector::start`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ember_collector::auth::Role;
use ember_collector::config::{RawConfig, RawHistory};

/// Ember's collector: MQTT broker, per-host history, HTTP API, Prometheus metrics and the MQTT
/// bridge.
///
/// Configuration comes from built-in defaults, then the TOML file (--config, or EMBER_CONFIG),
/// then EMBER_* environment variables, then these flags; later ones win.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "EMBER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where the embedded MQTT broker listens [default: 127.0.0.1:1883].
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<String>,
    /// Where the dashboard and JSON API listen [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// Where the collector keeps its files [default: ember-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Raw samples kept per host (`history.raw-samples`) [default: 3600].
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    /// Connect to this MQTT broker instead of embedding one (`broker.external`).
    #[arg(long, value_name = "HOST:PORT")]
    external_broker: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Also run an agent for this machine, publishing to the broker; its panel is rendered to
    /// DATA_DIR/panel.png.
    #[cfg(feature = "local-agent")]
    #[arg(long)]
    local_agent: bool,
    /// The local agent's sampling interval.
    #[cfg(feature = "local-agent")]
    #[arg(
        long,
        default_value = "1s",
        value_name = "DURATION",
        requires = "local_agent"
    )]
    local_agent_interval: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP tokens for the API, the dashboard and /metrics.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a random token, print it once, and append its SHA-256 to the --config file (or,
    /// without --config, print the lines to add). Restart the collector to use it.
    Add {
        /// Who or what holds it (`grafana`, `alice`): shown in logs.
        name: String,
        /// `read`: the API, the event stream, /metrics; `operator`: also commands and changes.
        #[arg(long, value_parser = ["read", "operator"])]
        role: String,
    },
}

/// `token add`: the token goes to stdout once; the file gets only its hash.
fn token_add(config: Option<&std::path::Path>, name: &str, role: &str) -> anyhow::Result<()> {
    let role = Role::parse(role).context("role must be read or operator")?;
    let token = ember_collector::auth::generate_token()
        .map_err(|e| anyhow::anyhow!("no random numbers from the OS: {e}"))?;
    match config {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            let new = ember_collector::config::add_token(&text, name, role, &token)
                .with_context(|| format!("not changed: {}", path.display()))?;
            // Written beside and renamed over, so that a crash leaves the old file or the new.
            let tmp = path.with_extension("toml.new");
            std::fs::write(&tmp, new).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
            println!("{token}");
            eprintln!(
                "Token {name:?} ({}) added to {} as its SHA-256. It is shown only now: keep it. \
                 Restart the collector to use it.",
                role.as_str(),
                path.display()
            );
        }
        None => {
            ember_collector::config::add_token("", name, role, &token)?;
            println!("{token}");
            eprintln!(
                "Token {name:?} ({}): shown only now, keep it. No --config given: add these \
                 lines to the collector's configuration file and restart it:\n",
                role.as_str()
            );
            eprint!(
                "{}",
                ember_collector::auth::config_lines(name, role, &token)
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line, without a backtrace: these are users' errors.
            eprintln!("ember-collector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rumqttd logs every client disconnect as an error; RUST_LOG=rumqttd=info shows it.
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .init();
    let flags = Flags::parse();
    if let Some(Command::Token(TokenCommand::Add { name, role })) = &flags.command {
        return token_add(flags.config.as_deref(), name, role);
    }
    let file = match &flags.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let mut over = RawConfig {
        mqtt_listen: flags.mqtt_listen.clone(),
        http_listen: flags.http_listen.clone(),
        data_dir: flags.data_dir.clone(),
        history: RawHistory {
            raw_samples: flags.history,
            tiers: None,
        },
        ..RawConfig::default()
    };
    over.broker.external = flags.external_broker.clone();
    let config = RawConfig::defaults()
        .merge(file)
        .merge(RawConfig::from_env(std::env::vars())?)
        .merge(over)
        .validate()?;
    if flags.print_config {
        print!("{}", toml::to_string(&config.to_raw())?);
        return Ok(());
    }
    #[cfg(feature = "local-agent")]
    let data_dir = config.data_dir.clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut http_stop = stop_rx.clone();
        let collector = ember_collector::start(config, async move {
            let _ = http_stop.wait_for(|s| *s).await;
        })
        .await?;
        let http = collector.http_addr;
        let shown = if http.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], http.port()))
        } else {
            http
        };
        println!("Ember collector {}", env!("CARGO_PKG_VERSION"));
        println!("  dashboard: http://{shown}/");
        println!("  API:       http://{shown}/api/hosts");
        println!("  metrics:   http://{shown}/metrics");
        println!("  MQTT:      {}", collector.mqtt_addr);

        #[cfg(feature = "local-agent")]
        let agent = if flags.local_agent {
            let mqtt = collector.mqtt_addr;
            let broker = if mqtt.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], mqtt.port()))
            } else {
                mqtt
            };
            let preview = data_dir.join("panel.png");
            let agent_config = ember_agent::AgentConfig::new(
                &broker.to_string(),
                None,
                &flags.local_agent_interval,
                Some(preview.clone()),
            )?;
            println!(
                "  agent:     {} (panel preview: {})",
                agent_config.host_id,
                preview.display()
            );
            let mut agent_stop = stop_rx.clone();
            Some(tokio::spawn(ember_agent::run(agent_config, async move {
                let _ = agent_stop.wait_for(|s| *s).await;
            })))
        } else {
            None
        };

        shutdown_signal().await;
        let _ = stop_tx.send(true);
        #[cfg(feature = "local-agent")]
        if let Some(agent) = agent {
            if let Ok(Err(e)) = agent.await {
                tracing::warn!("local agent: {e:#}");
            }
        }
        collector.join().await
    })
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
