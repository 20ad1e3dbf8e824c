//! Issue #5: history, host registry and inventory survive a SIGKILL of the real binary with at
//! most one second of samples lost, and a damaged data directory is recovered as far as it is
//! valid and reported, never a crash.
//!
//! The binary runs with `--local-agent` at 100 ms, so the publisher dies with it and starts again
//! (sequence numbers restart at 1) with the collector.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &Path, mqtt: u16, http: u16) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember-collector"))
        .args(["--local-agent", "--local-agent-interval", "100ms"])
        .arg("--mqtt-listen")
        .arg(format!("127.0.0.1:{mqtt}"))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("EMBER_PERSIST_SNAPSHOT_EVERY", "2s")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the collector binary starts");
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
    // Keep reading stdout so that the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, base }
}

fn get(url: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_json().ok()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The local host's id and its samples' sequence numbers, oldest first.
fn samples(base: &str) -> Option<(String, Vec<u64>)> {
    let hosts = get(&format!("{base}/api/hosts"))?;
    let id = hosts.as_array()?.first()?["id"].as_str()?.to_string();
    let s = get(&format!("{base}/api/hosts/{id}/samples?limit=100000"))?;
    let seqs = s["samples"]
        .as_array()?
        .iter()
        .map(|x| x["seq"].as_u64().unwrap())
        .collect();
    Some((id, seqs))
}

fn sigkill(p: &mut Proc) {
    // SIGKILL: no chance to flush or snapshot.
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn sigkill_loses_at_most_a_second_and_damage_is_recovered_and_reported() {
    let dir = data_dir("sigkill");
    let (mqtt, http) = (free_port(), free_port());
    let mut p = start(&dir, mqtt, http);

    // Run past a snapshot (every 2 s here) so that recovery uses both the snapshot and the log,
    // and past a full history block (64 samples), which is spilled out of memory: the snapshot
    // reads it back from the spill, and the restarted collector spills it again as it loads.
    let (id, _) = wait_for("80 samples", Duration::from_secs(30), || {
        samples(&p.base).filter(|(_, s)| s.len() >= 80)
    });
    let spilled = |base: &str| {
        let h = get(&format!("{base}/api/health"))?;
        let n = h["memory"]["raw_spilled_bytes"].as_u64()?;
        (n > 0 && h["spill"]["errors"] == 0 && h["spill"]["live_bytes"].as_u64()? >= n)
            .then_some(())
    };
    wait_for("a block spilled", Duration::from_secs(10), || {
        spilled(&p.base)
    });
    let snapshots = |base: &str| {
        let h = get(&format!("{base}/api/health"))?;
        h["persistence"]["snapshots"].as_u64()
    };
    let first = snapshots(&p.base).unwrap();
    wait_for("a snapshot", Duration::from_secs(10), || {
        (snapshots(&p.base)? > first).then_some(())
    });
    // Then a second of samples that only the log holds (the next snapshot is 2 s away).
    let at_snapshot = samples(&p.base).unwrap().1.len();
    let (_, before) = wait_for(
        "samples after the snapshot",
        Duration::from_secs(10),
        || samples(&p.base).filter(|(_, s)| s.len() >= at_snapshot + 8),
    );
    let host_before = get(&format!("{}/api/hosts/{id}", p.base)).unwrap();
    let last_seen_by_api = *before.last().unwrap();
    sigkill(&mut p);

    let p = start(&dir, mqtt, http);
    let (_, after) = wait_for("the restarted collector", Duration::from_secs(30), || {
        samples(&p.base)
    });
    // The agent restarted with the collector: the samples before its restart are the old run's.
    let old_run: Vec<u64> = after
        .iter()
        .copied()
        .take_while({
            let mut prev = 0;
            move |s| {
                let keep = *s > prev;
                prev = *s;
                keep
            }
        })
        .collect();
    let recovered_last = *old_run.last().expect("history survived");
    spilled(&p.base).expect("the loaded history spilled again");
    // The spill's segment files are unlinked as soon as they are made: nothing to clean up.
    let left: Vec<_> = std::fs::read_dir(dir.join("spill"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // At 100 ms a second is 10 samples.
    assert!(
        recovered_last + 10 >= last_seen_by_api,
        "lost more than a second: API showed {last_seen_by_api} before the kill, {recovered_last} after"
    );
    assert_eq!(
        old_run[..before.len().min(old_run.len())],
        before[..before.len().min(old_run.len())]
    );
    let host_after = get(&format!("{}/api/hosts/{id}", p.base)).unwrap();
    // The restarted agent publishes its inventory again; the stable parts must be the same.
    for key in ["hostname", "kernel", "os", "cpu_model", "memory"] {
        assert_eq!(
            host_after["info"][key], host_before["info"][key],
            "inventory survived: {key}"
        );
    }
    let health = get(&format!("{}/api/health", p.base)).unwrap();
    let recovery = &health["persistence"]["recovery"];
    assert_eq!(recovery["snapshot_loaded"], true, "{health}");
    assert!(recovery["wal_records"].as_u64().unwrap() > 0, "{health}");
    assert_eq!(recovery["problems"], serde_json::json!([]), "{health}");
    // History (the 1-minute tier) survived too.
    let h = get(&format!(
        "{}/api/hosts/{id}/history?resolution=1m&series=cpu.busy",
        p.base
    ))
    .unwrap();
    assert!(
        !h["series"][0]["points"].as_array().unwrap().is_empty(),
        "{h}"
    );

    // Damage: tear the newest log's tail and corrupt the snapshot, then kill again.
    let mut p = p;
    wait_for("more samples", Duration::from_secs(10), || {
        samples(&p.base).filter(|(_, s)| s.len() > after.len() + 5)
    });
    sigkill(&mut p);
    let mut wals: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    wals.sort();
    let newest = wals.last().expect("a log file").clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let cut = bytes.len().saturating_sub(7);
    bytes.truncate(cut);
    bytes.extend_from_slice(b"\xde\xad\xbe\xef garbage");
    std::fs::write(&newest, bytes).unwrap();
    let snap = dir.join("snapshot.bin");
    let mut s = std::fs::read(&snap).unwrap();
    let mid = s.len() / 2;
    s[mid] ^= 0xff;
    std::fs::write(&snap, s).unwrap();

    let p = start(&dir, mqtt, http);
    let health = wait_for("health after damage", Duration::from_secs(30), || {
        get(&format!("{}/api/health", p.base))
    });
    let problems = health["persistence"]["recovery"]["problems"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(problems.len(), 2, "{health}");
    let text = format!("{problems:?}");
    assert!(
        text.contains("snapshot.bin") && text.contains("checksum"),
        "{text}"
    );
    assert!(
        text.contains(newest.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );
    // Still serving, and new samples flow.
    wait_for("samples after damage", Duration::from_secs(15), || {
        samples(&p.base).filter(|(_, s)| !s.is_empty())
    });
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
