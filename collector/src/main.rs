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
    #[command(subcommand)]
    command: Option<Cmd>,
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

/// Tokens, certificates and agents' credentials.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// HTTP tokens for the API, the dashboard and /metrics.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The certificate authority and the collector's server certificate.
    Ca {
        #[command(subcommand)]
        command: CaCmd,
    },
    /// Agents' credentials.
    Agent {
        #[command(subcommand)]
        command: AgentCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CaCmd {
    /// Creates ca.pem, ca.key, server.pem and server.key in DIR.
    Init {
        /// Where the files go.
        #[arg(long, value_name = "DIR", default_value = "/etc/ember/tls")]
        dir: PathBuf,
        /// Names and addresses of the collector for its certificate (repeat) [default:
        /// localhost, 127.0.0.1, ::1, this host's name and NAME.local].
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCmd {
    /// Onboards a board in one step: creates the CA if needed, a password whose hash goes into
    /// the collector's config, optionally a client certificate, and DIR/agents/HOST/ to copy to
    /// the board's /etc/ember/.
    Add {
        /// The board's host id (its MQTT user name).
        host: String,
        /// Where the CA lives.
        #[arg(long, value_name = "DIR", default_value = "/etc/ember/tls")]
        dir: PathBuf,
        /// The collector's address as the board reaches it [default: this host's name and the
        /// config's MQTT port].
        #[arg(long, value_name = "HOST:PORT")]
        broker: Option<String>,
        /// Also issue a client certificate (mTLS).
        #[arg(long)]
        cert: bool,
        /// A subscribe-only account (dashboards, Home Assistant) instead of an agent.
        #[arg(long)]
        reader: bool,
        /// Names of the collector for its certificate, if the CA is created now (repeat).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
}

/// `token add`, `ca init` and `agent add`. `agent add` appends to `config` (the global
/// `--config`), by default the packaged service's file.
fn command(cmd: Cmd, config: Option<PathBuf>) -> anyhow::Result<()> {
    use ember_collector::onboard;
    let names = |n: Vec<String>| {
        if n.is_empty() {
            ember_collector::pki::default_server_names()
        } else {
            n
        }
    };
    match cmd {
        Cmd::Token(TokenCommand::Add { name, role }) => {
            return token_add(config.as_deref(), &name, &role);
        }
        Cmd::Ca {
            command: CaCmd::Init { dir, names: n },
        } => {
            let n = names(n);
            let files = onboard::ca_init(&dir, &n)?;
            println!(
                "CA:     {} (key: {})",
                files.ca.display(),
                files.ca_key.display()
            );
            println!("server: {} for {}", files.server.display(), n.join(", "));
            println!(
                "Add agents with `ember-collector agent add HOST --dir {}`.",
                dir.display()
            );
        }
        Cmd::Agent {
            command:
                AgentCmd::Add {
                    host,
                    dir,
                    broker,
                    cert,
                    reader,
                    names: n,
                },
        } => {
            let config = config.unwrap_or_else(|| PathBuf::from("/etc/ember/collector.toml"));
            // A file that is there must be a configuration: appending to a broken one would
            // hide the error until the next start.
            if config.exists() {
                RawConfig::from_file(&config)?;
            }
            let n = names(n);
            let broker = match broker {
                Some(b) => b,
                None => {
                    let port = RawConfig::from_file(&config)
                        .ok()
                        .and_then(|r| r.mqtt_listen)
                        .and_then(|l| l.parse::<SocketAddr>().ok())
                        .map_or(1883, |a| a.port());
                    let name = n
                        .iter()
                        .find(|x| {
                            x.as_str() != "localhost" && x.parse::<std::net::IpAddr>().is_err()
                        })
                        .or(n.first())
                        .cloned()
                        .unwrap_or_else(|| "localhost".into());
                    format!("{name}:{port}")
                }
            };
            let added = onboard::agent_add(&onboard::AgentAdd {
                host: &host,
                config: &config,
                pki_dir: &dir,
                server_names: &n,
                broker: &broker,
                client_cert: cert,
                role: if reader {
                    ember_collector::access::Role::Reader
                } else {
                    ember_collector::access::Role::Agent
                },
                board_dir: "/etc/ember",
            })?;
            if added.created_ca {
                println!(
                    "Created the CA and server certificate in {}.",
                    dir.display()
                );
            }
            println!(
                "Added [mqtt.users.{host}] to {} (the password's hash only).",
                config.display()
            );
            println!(
                "Copy {}/* to the board's /etc/ember/ (the password is in `password`, mode 600), then restart the collector and the agent.",
                added.dir.display()
            );
        }
    }
    Ok(())
}

/// The exit status of a configuration error: `EX_CONFIG` of sysexits.h. The service's
/// `RestartPreventExitStatus=78` keeps systemd from restarting a bad configuration forever.
const EX_CONFIG: u8 = 78;

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line, without a backtrace: these are users' errors.
            eprintln!("ember-collector: {e:#}");
            if is_config_error(&e) {
                std::process::ExitCode::from(EX_CONFIG)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// Whether `e` (or an error it wraps) is a refused configuration: the collector's, or the local
/// agent's.
fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        #[cfg(feature = "local-agent")]
        if c.is::<ember_agent::config::ConfigError>() {
            return true;
        }
        c.is::<ember_collector::config::ConfigError>()
    })
}

fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rumqttd logs every client disconnect as an error; RUST_LOG=rumqttd=info shows it.
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .init();
    let mut flags = Flags::parse();
    if let Some(cmd) = flags.command.take() {
        return command(cmd, flags.config.take());
    }
    // One descriptor per connection: as many as the system lets this process have.
    let shown = |l: Option<u64>| l.map_or("unlimited".to_string(), |n| n.to_string());
    match ember_collector::descriptors::raise_limit() {
        Ok((before, after)) if before != after => tracing::info!(
            "open files: limit raised from {} to {}",
            shown(before),
            shown(after)
        ),
        Ok((_, limit)) => tracing::info!("open files: limit {}", shown(limit)),
        Err(e) => tracing::warn!("open files: cannot raise the limit: {e}"),
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
            spill: None,
        },
        ..RawConfig::default()
    };
    over.broker.external = flags.external_broker.clone();
    #[allow(unused_mut)]
    let mut config = RawConfig::defaults()
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
    // With MQTT accounts, the local agent gets one of its own, for this process only.
    #[cfg(feature = "local-agent")]
    let local_login = if flags.local_agent && config.mqtt.gated() {
        let host = ember_agent::AgentConfig::new("127.0.0.1:1", None, "1s", None)?
            .host_id
            .to_string();
        let password = ember_collector::onboard::local_account(&mut config.mqtt.users, &host)?;
        Some(ember_agent::config::Login {
            username: host,
            password,
            password_file: None,
        })
    } else {
        None
    };
    #[cfg(feature = "local-agent")]
    let local_tls = match (&config.mqtt.tls, &config.mqtt.client_ca) {
        (None, _) => None,
        (Some(_), Some(ca)) => Some(ca.clone()),
        (Some(_), None) if flags.local_agent => anyhow::bail!(
            "--local-agent over TLS needs the CA of the server certificate: set mqtt.client-ca (`ember-collector agent add` does)"
        ),
        (Some(_), None) => None,
    };

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
        let scheme = if collector.https { "https" } else { "http" };
        println!("  dashboard: {scheme}://{shown}/");
        println!("  API:       {scheme}://{shown}/api/hosts");
        println!("  metrics:   {scheme}://{shown}/metrics");
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
            let mut agent_config = ember_agent::config::RawConfig::defaults()
                .merge(ember_agent::config::RawConfig {
                    broker: Some(broker.to_string()),
                    interval: Some(flags.local_agent_interval.clone()),
                    preview: Some(preview.clone()),
                    tls_ca: local_tls,
                    ..Default::default()
                })
                .validate()?;
            agent_config.login = local_login;
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
