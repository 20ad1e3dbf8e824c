//! The README's run command, as a user runs it: the `ember-collector` binary with
//! `--local-agent`, on free ports. It must print the dashboard URL, show this machine in
//! `/api/hosts` with live samples, write the panel preview, and stop cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get_json(url: &str) -> Option<serde_json::Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_json().ok()
}

#[test]
fn run_command_serves_this_machine_and_stops_cleanly() {
    let data_dir = std::env::temp_dir().join(format!("ember-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember-collector"))
        .args([
            "--local-agent",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
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

    // This machine appears with live samples.
    let deadline = Instant::now() + Duration::from_secs(15);
    let host = loop {
        assert!(
            Instant::now() < deadline,
            "no local host with samples in /api/hosts"
        );
        if let Some(hosts) = get_json(&format!("{base}/api/hosts")) {
            if let Some(h) = hosts
                .as_array()
                .and_then(|a| a.iter().find(|h| h["samples"].as_u64() >= Some(2)))
            {
                break h.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(host["status"], "online");
    assert!(host["latest"]["memory"]["total"].as_u64().unwrap() > 0);

    // No panel here: the agent's panel is rendered to a PNG preview in the data directory.
    let png = std::fs::read(data_dir.join("panel.png")).expect("panel preview written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // SIGTERM stops it with success.
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
    let _ = std::fs::remove_dir_all(&data_dir);
}
