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

/// Runs the binary with `args` and `env` (the caller's `EMBER_*` variables removed); returns its
/// exit code and its stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ember-collector"));
    for (name, _) in std::env::vars() {
        if name.starts_with("EMBER_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the collector binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue #23: a configuration error exits 78 (EX_CONFIG), which the unit's
/// `RestartPreventExitStatus=78` keeps systemd from restarting every 5 s forever.
#[test]
fn issue_23_a_configuration_error_exits_78() {
    let dir = std::env::temp_dir().join(format!("ember-cli-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        "mqtt-listen = \"127.0.0.1:0\"\nhttp-lisen = \"x\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // An unknown key in the file, named.
    let (code, stderr) = run(&["--config", config, "--print-config"], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("http-lisen"), "{stderr}");
    // The same file for a subcommand that reads it.
    let (code, stderr) = run(
        &["--config", config, "token", "add", "x", "--role", "read"],
        &[],
    );
    assert_eq!(code, Some(78), "{stderr}");
    let tls = dir.join("tls");
    let (code, stderr) = run(
        &[
            "--config",
            config,
            "agent",
            "add",
            "pi",
            "--broker",
            "127.0.0.1:1883",
        ]
        .into_iter()
        .chain(["--dir", tls.to_str().unwrap()])
        .collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(!tls.exists(), "nothing made for a broken configuration");
    // Not TOML, and a file that is not there.
    std::fs::write(dir.join("bad.toml"), "mqtt-listen = [").unwrap();
    let bad = dir.join("bad.toml");
    let (code, stderr) = run(&["--config", bad.to_str().unwrap(), "--print-config"], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    let missing = dir.join("missing.toml");
    let (code, stderr) = run(&["--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    // A bad `EMBER_*` value, and an `EMBER_*` variable that names no key.
    let (code, stderr) = run(&["--print-config"], &[("EMBER_HTTP_LISTEN", "nowhere")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("`http-listen`"), "{stderr}");
    let (code, stderr) = run(&["--print-config"], &[("EMBER_HTTP_LISEN", "x")]);
    assert_eq!(code, Some(78), "{stderr}");
    // A flag's value that the configuration refuses.
    let (code, stderr) = run(&["--print-config", "--mqtt-listen", "nowhere"], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    // clap's own usage errors keep clap's 2.
    let (code, stderr) = run(&["--no-such-flag"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #23: an error at run time, with a valid configuration, still exits 1 (systemd retries).
#[test]
fn issue_23_a_runtime_error_exits_1() {
    let dir = std::env::temp_dir().join(format!("ember-cli-exit1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The MQTT address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.join("data");
    let (code, stderr) = run(
        &[
            "--mqtt-listen",
            &addr,
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #23: the packaged unit does not restart a configuration error.
#[test]
fn issue_23_the_unit_does_not_restart_a_configuration_error() {
    let unit = include_str!("../debian/ember-collector.service");
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=78"),
        "{unit}"
    );
}
