//! `ember-agent`: loads the configuration and runs [`ember_agent::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ember_agent::config::RawConfig;

/// Ember's agent: samples this board and publishes to the collector over MQTT.
///
/// Configuration comes from built-in defaults, then the TOML file (--config, or EMBER_CONFIG),
/// then EMBER_* environment variables, then these flags; later ones win.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "EMBER_CONFIG")]
    config: Option<PathBuf>,
    /// The collector's (or any MQTT broker's) address [default: 127.0.0.1:1883].
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// This host's id: a-z, 0-9 and '-', up to 32 characters [default: from the host name].
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// How often to sample and publish (`1s`, `500ms`, `1m`) [default: 1s].
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Samples kept while the broker is unreachable [default: 10 minutes' worth, at least 600].
    #[arg(long, value_name = "N")]
    buffer: Option<usize>,
    /// Write what the panel would show to this PNG file after each sample.
    #[arg(long, value_name = "FILE.png")]
    preview: Option<PathBuf>,
    /// The attached panel: a board profile's name (`pi-ssd1306`, see boards/) or a path.
    #[arg(long, value_name = "NAME")]
    board: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print one sample as JSON and exit, without connecting.
    #[arg(long)]
    once: bool,
    /// Instead of this machine, simulate N hosts with synthetic data (for load tests and demos).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// Host ids of simulated hosts: PREFIX-0001, PREFIX-0002, …
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "sim",
        requires = "simulate"
    )]
    simulate_prefix: String,
    /// A simulated host goes offline for 10 to 60 intervals about once per N samples (0: never).
    #[arg(long, value_name = "N", default_value_t = 3600, requires = "simulate")]
    simulate_outage_every: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render what the board's panel would show for this machine now, as a PNG.
    Render {
        /// The board profile (name or path) [default: the configuration's `board`].
        #[arg(long, value_name = "NAME")]
        board: Option<String>,
        /// The PNG file to write.
        #[arg(long, value_name = "FILE.png")]
        out: PathBuf,
        /// The page (overview, cpu, network, disks, temperatures, processes, fleet)
        /// [default: the first configured].
        #[arg(long, value_name = "PAGE")]
        page: Option<String>,
        /// Pixels per panel pixel.
        #[arg(long, value_name = "N", default_value_t = 1)]
        scale: u32,
    },
}

/// The exit status of a configuration error: `EX_CONFIG` of sysexits.h. The service's
/// `RestartPreventExitStatus=78` keeps systemd from restarting a bad configuration forever.
const EX_CONFIG: u8 = 78;

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line, without a backtrace: these are users' errors.
            eprintln!("ember-agent: {e:#}");
            if e.chain()
                .any(|c| c.is::<ember_agent::config::ConfigError>())
            {
                std::process::ExitCode::from(EX_CONFIG)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("EMBER_LOG", "info")).init();
    let flags = Flags::parse();
    let file = match &flags.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let raw = RawConfig::defaults()
        .merge(file)
        .merge(RawConfig::from_env(std::env::vars())?)
        .merge(RawConfig {
            broker: flags.broker,
            host_id: flags.host_id,
            interval: flags.interval,
            buffer: flags.buffer,
            preview: flags.preview,
            board: match &flags.command {
                Some(Command::Render { board: Some(b), .. }) => Some(b.clone()),
                _ => flags.board,
            },
            ..RawConfig::default()
        });
    let config = raw.validate()?;
    if let Some(Command::Render {
        out, page, scale, ..
    }) = &flags.command
    {
        return render(&config, out, page.as_deref(), *scale);
    }
    if flags.print_config {
        print!("{}", toml::to_string(&config.to_raw())?);
        return Ok(());
    }
    if flags.once {
        let mut sampler =
            ember_agent::Sampler::new(&config).context("cannot read this machine's metrics")?;
        std::thread::sleep(std::time::Duration::from_millis(250));
        let sample = sampler.sample();
        println!("{}", serde_json::to_string_pretty(&sample)?);
        return Ok(());
    }
    if let Some(count) = flags.simulate {
        if count == 0 || count > 100_000 {
            anyhow::bail!("invalid `simulate`: must be 1 to 100000 hosts, got {count}");
        }
        // Simulated hosts need little buffer each: a minute of samples.
        let mut base = config;
        base.buffer = base.buffer.min(60);
        let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
        log::info!(
            "simulating {count} hosts ({}-0001…) → {}:{} every {:?}",
            flags.simulate_prefix,
            base.broker_host,
            base.broker_port,
            base.interval
        );
        return runtime.block_on(ember_agent::simulate::run(
            base,
            &flags.simulate_prefix,
            count,
            flags.simulate_outage_every,
            shutdown_signal(),
        ));
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

/// `ember-agent render`: one sample of this machine on the board's panel, as a PNG.
fn render(
    config: &ember_agent::AgentConfig,
    out: &std::path::Path,
    page: Option<&str>,
    scale: u32,
) -> anyhow::Result<()> {
    use ember_agent::panel::Renderer;
    use ember_display::{Histories, Model, Page};
    let Some(panel) = &config.panel else {
        anyhow::bail!(
            "invalid `board`: render needs one (--board NAME; built in: {})",
            ember_agent::panel::board::known()
        );
    };
    let page = match page {
        None => panel.pages[0],
        Some(name) => Page::from_name(name).with_context(|| {
            let all: Vec<&str> = Page::ALL.iter().map(|p| p.name()).collect();
            format!("invalid `page`: {name:?} is not one of {}", all.join(", "))
        })?,
    };
    if !(1..=16).contains(&scale) {
        anyhow::bail!("invalid `scale`: must be 1 to 16, got {scale}");
    }
    let mut sampler =
        ember_agent::Sampler::new(config).context("cannot read this machine's metrics")?;
    let info = sampler.host_info();
    // Two samples a moment apart, so that rates have an interval to cover.
    let mut history = Histories::new();
    history.record(&sampler.sample());
    std::thread::sleep(std::time::Duration::from_millis(250));
    let sample = sampler.sample();
    history.record(&sample);
    let ipv4 = info
        .interfaces
        .iter()
        .flat_map(|i| i.ipv4.iter())
        .find(|a| a[0] != 127 && !(a[0] == 169 && a[1] == 254))
        .copied();
    let model = Model {
        host: config.host_id.as_str(),
        ipv4,
        sample: &sample,
        history: &history,
        fleet: &[],
    };
    let renderer = Renderer::new(&panel.board, &panel.settings);
    let png = renderer.png(&renderer.render(page, &model, (0, 0)), scale);
    std::fs::write(out, png).with_context(|| format!("cannot write {}", out.display()))?;
    let (w, h) = panel.board.drawn_size();
    println!(
        "{}: {} page of {} ({w}x{h}) for {}",
        out.display(),
        page.name(),
        panel.board.name,
        config.host_id
    );
    Ok(())
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
