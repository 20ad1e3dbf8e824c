//! Processes under measurement: starting them, reading their memory and CPU from `/proc`,
//! stopping them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Resident memory in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Peak resident memory (`VmHWM`) in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time used (user + system, all threads), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// CPU time (s) of each thread of `pid`, summed by thread name.
pub fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.filter_map(Result::ok) {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_insert(0.0) += ticks as f64 / hz;
    }
    out
}

/// Percent of one core per thread name between two [`thread_cpu`] readings `secs` apart.
pub fn thread_share(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    secs: f64,
) -> serde_json::Value {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - before.get(k).copied().unwrap_or(0.0)) / secs * 100.0,
            )
        })
        .filter(|(_, p)| *p >= 0.5)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    serde_json::Value::Array(
        rows.into_iter()
            .map(|(k, p)| serde_json::json!({ "thread": k, "cpu_percent": p }))
            .collect(),
    )
}

/// CPU share of one core over a window: create at the start, read at the end.
pub struct CpuWindow {
    pid: u32,
    cpu0: f64,
    t0: Instant,
}

impl CpuWindow {
    /// Starts the window.
    pub fn start(pid: u32) -> Self {
        CpuWindow {
            pid,
            cpu0: cpu_secs(pid).unwrap_or(0.0),
            t0: Instant::now(),
        }
    }

    /// Percent of one core since the start.
    pub fn percent(&self) -> f64 {
        let used = cpu_secs(self.pid).unwrap_or(self.cpu0) - self.cpu0;
        used / self.t0.elapsed().as_secs_f64().max(1e-9) * 100.0
    }
}

/// A child process killed when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command with Ember's variables removed: both Ember binaries refuse `EMBER_*` variables they
/// do not know, and the benchmark's own settings are flags.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EMBER_") {
            c.env_remove(name);
        }
    }
    c
}

/// Starts `command` and keeps its output in `log`.
pub fn spawn_logged(mut command: Command, name: &str, log: &Path) -> anyhow::Result<Proc> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = command
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        child,
        name: name.to_string(),
    })
}

/// A running release collector.
pub struct Collector {
    /// The process.
    pub proc: Proc,
    /// Its MQTT address.
    pub mqtt: SocketAddr,
    /// Its HTTP address.
    pub http: SocketAddr,
}

/// Starts `ember-collector` from `bin_dir` on free loopback ports with its data in `data_dir`
/// and `config` (TOML, may be empty) as its configuration file; its output goes to `log`.
pub fn start_collector(
    bin_dir: &Path,
    data_dir: &Path,
    config: &str,
    log: &Path,
) -> anyhow::Result<Collector> {
    std::fs::create_dir_all(data_dir)?;
    let config_file = data_dir.join("bench-collector.toml");
    std::fs::write(&config_file, config)?;
    let bin = bin_dir.join("ember-collector");
    std::fs::File::create(log)?;
    let append = || std::fs::OpenOptions::new().append(true).open(log);
    let mut child = command(&bin)
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "warn,rumqttd=off")
        .stdout(Stdio::piped())
        .stderr(append()?)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("collector stdout")?;
    let proc = Proc {
        child,
        name: "ember-collector".into(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = append()?;
    std::thread::spawn(move || {
        use std::io::Write;
        let mut mqtt = None;
        let mut http = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
            let t = line.trim();
            if let Some(a) = t.strip_prefix("MQTT:") {
                mqtt = a.trim().parse::<SocketAddr>().ok();
            }
            if let Some(a) = t.strip_prefix("API:") {
                http = a
                    .trim()
                    .strip_prefix("http://")
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse::<SocketAddr>().ok());
            }
            if let (Some(m), Some(h)) = (mqtt, http) {
                let _ = tx.send((m, h));
                mqtt = None;
            }
        }
    });
    let (mqtt, http) = rx.recv_timeout(Duration::from_secs(120)).with_context(|| {
        format!(
            "the collector did not print its addresses (log: {})",
            log.display()
        )
    })?;
    Ok(Collector { proc, mqtt, http })
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

/// A fresh scratch directory under the system's temporary directory.
pub fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ember-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Size of a file in bytes (0 if missing).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of every file under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_size(&p)
            } else {
                file_size(&p)
            }
        })
        .sum()
}

/// A blocking HTTP client for the collector's API.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// GET `url` as JSON.
pub fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<serde_json::Value> {
    let mut r = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .with_context(|| format!("reading {url}"))?;
    if status != 200 {
        bail!("GET {url}: {status} {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Percentiles of a set of values: sorts it.
pub fn percentiles(values: &mut [f64]) -> serde_json::Value {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let i = ((values.len() as f64 - 1.0) * p).round() as usize;
        Some(values[i])
    };
    serde_json::json!({
        "n": values.len(),
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "max": values.last().copied(),
    })
}
