//! The `ember-agent` binary's exit status (issue #23): 78 (EX_CONFIG) for a configuration error,
//! which the unit's `RestartPreventExitStatus=78` keeps systemd from restarting every 5 s
//! forever; 1 for other errors; 2 for clap's usage errors.

use std::process::{Command, Stdio};

/// Runs the binary with `args` and `env` (the caller's `EMBER_*` variables removed); returns its
/// exit code and its stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ember-agent"));
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
        .expect("the agent binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_23_a_configuration_error_exits_78() {
    let dir = std::env::temp_dir().join(format!("ember-agent-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, "broker = \"127.0.0.1:1883\"\nintervall = \"1s\"\n").unwrap();

    // An unknown key in the file, named.
    let (code, stderr) = run(
        &["--config", config.to_str().unwrap(), "--print-config"],
        &[],
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("intervall"), "{stderr}");
    // Not TOML, and a file that is not there.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "broker = [").unwrap();
    let (code, stderr) = run(&["--config", bad.to_str().unwrap(), "--print-config"], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    let missing = dir.join("missing.toml");
    let (code, stderr) = run(&["--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    // A bad `EMBER_*` value, and an `EMBER_*` variable that names no key.
    let (code, stderr) = run(&["--print-config"], &[("EMBER_INTERVAL", "5ms")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("`interval`"), "{stderr}");
    let (code, stderr) = run(&["--print-config"], &[("EMBER_INTERVALL", "1s")]);
    assert_eq!(code, Some(78), "{stderr}");
    // A flag's value that the configuration refuses.
    let (code, stderr) = run(&["--print-config", "--interval", "5ms"], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    // clap's own usage errors keep clap's 2.
    let (code, stderr) = run(&["--no-such-flag"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An error at run time, with a valid configuration, still exits 1 (systemd retries).
#[test]
fn issue_23_a_runtime_error_exits_1() {
    let dir = std::env::temp_dir().join(format!("ember-agent-cli1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The PNG cannot be written: its folder is not there.
    let out = dir.join("no-such-dir/panel.png");
    let (code, stderr) = run(
        &[
            "render",
            "--board",
            "pi-ssd1306",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn issue_23_the_unit_does_not_restart_a_configuration_error() {
    let unit = include_str!("../debian/ember-agent.service");
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=78"),
        "{unit}"
    );
}
