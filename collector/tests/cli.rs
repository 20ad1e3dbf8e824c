//! The README's run command, as a user runs it: the `ember-collector` binary with
//! `--local-agent`, on free ports. It must print the dashboard URL, show this machine in
//! `/api/hosts` with live samples, write the panel preview, and stop cleanly on SIGTERM. The
//! same with MQTT accounts and TLS made by `agent add`: the local agent then gets an account of
//! its own and connects over TLS.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn get_json(url: &str) -> Option<serde_json::Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_json().ok()
}

/// Starts the binary with `--local-agent` on free ports and `args`; returns it and its base URL.
fn start(data_dir: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember-collector"))
        .args(args)
        .args([
            "--local-agent",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the collector binary starts");

    // The dashboard URL is printed.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("stdout ended before the dashboard URL")
            .unwrap();
        if let Some(url) = line.trim().strip_prefix("dashboard: ") {
            break url.trim_end_matches('/').to_string();
        }
    };
    // Keep reading what it prints (its log goes to stdout too), so that it never writes to a
    // closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

/// This machine, once it is in `/api/hosts` with live samples.
fn local_host(base: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "no local host with samples in /api/hosts"
        );
        if let Some(hosts) = get_json(&format!("{base}/api/hosts")) {
            if let Some(h) = hosts
                .as_array()
                .and_then(|a| a.iter().find(|h| h["samples"].as_u64() >= Some(2)))
            {
                return h.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM stops it with success.
fn stop(mut child: Child) {
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn run_command_serves_this_machine_and_stops_cleanly() {
    let data_dir = std::env::temp_dir().join(format!("ember-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let (child, base) = start(&data_dir, &[]);
    let host = local_host(&base);
    assert_eq!(host["status"], "online");
    assert!(host["latest"]["memory"]["total"].as_u64().unwrap() > 0);

    // No panel here: the agent's panel is rendered to a PNG preview in the data directory.
    let png = std::fs::read(data_dir.join("panel.png")).expect("panel preview written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    stop(child);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Onboarding as the README tells it (`agent add` makes the CA, the server certificate, the
/// account and the config), then the run command on that config: the local agent gets an
/// account of its own for the life of the process and connects over TLS through the gate.
#[test]
fn with_accounts_and_tls_the_local_agent_gets_in_over_tls() {
    let dir = std::env::temp_dir().join(format!("ember-cli-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("collector.toml");
    let tls = dir.join("tls");
    let added = Command::new(env!("CARGO_BIN_EXE_ember-collector"))
        .arg("--config")
        .arg(&config)
        .args(["agent", "add", "kitchen-pi", "--broker", "127.0.0.1:8883"])
        .args(["--name", "localhost", "--name", "127.0.0.1", "--dir"])
        .arg(&tls)
        .output()
        .expect("agent add runs");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(tls.join("agents/kitchen-pi/password").exists());

    let data_dir = dir.join("data");
    let (child, base) = start(&data_dir, &["--config", config.to_str().unwrap()]);
    let host = local_host(&base);
    assert_eq!(host["status"], "online");
    let health = get_json(&format!("{base}/api/health")).expect("health");
    let gate = &health["connections"];
    assert_eq!(gate["authenticated"], true, "{health}");
    assert_eq!(gate["tls"], true, "{health}");
    assert!(gate["accepted"].as_u64() >= Some(1), "{health}");
    assert_eq!(gate["refused_auth"], 0, "{health}");
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
