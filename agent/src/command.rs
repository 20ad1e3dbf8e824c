//! Named commands: the allow-list the agent's owner writes in the agent's config
//! (`[commands.NAME] run = ["/usr/bin/systemctl", "restart", "app"]`), and running one of them.
//!
//! A named command runs without a shell (the program and its arguments exactly as configured,
//! nothing from the collector), with stdin closed, and is killed when its timeout passes. Its
//! output is cut to the result's 96-byte detail. A name that is not configured is refused before
//! anything runs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_wire::Outcome;
use serde::{Deserialize, Serialize};

/// `[commands.NAME]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNamed {
    /// The program (an absolute path) and its arguments.
    pub run: Vec<String>,
    /// Longest run (`30s` by default); the command's own timeout may be shorter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// A validated named command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The name the collector asks for.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Longest run.
    pub timeout: Duration,
}

/// Longest name: the wire's `Action::Named` holds 32 bytes.
pub const NAME_MAX: usize = 32;
/// Named commands running at once at most; more are refused.
pub const MAX_RUNNING: usize = 4;

/// Checks `[commands]`: names, absolute programs, timeouts. Errors are `(key, reason)`.
pub fn validate(
    raw: &std::collections::BTreeMap<String, RawNamed>,
) -> Result<Vec<Named>, (String, String)> {
    let mut out = Vec::new();
    for (name, c) in raw {
        let key = format!("commands.{name}");
        if name.is_empty()
            || name.len() > NAME_MAX
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err((
                key,
                format!("a name is 1 to {NAME_MAX} letters, digits, `-`, `_` or `.`"),
            ));
        }
        let Some(program) = c.run.first() else {
            return Err((
                format!("{key}.run"),
                "needs the program and its arguments, e.g. [\"/usr/bin/systemctl\", \"restart\", \"app\"]".into(),
            ));
        };
        if !program.starts_with('/') {
            return Err((
                format!("{key}.run"),
                format!("the program must be an absolute path (no shell, no PATH search), got {program:?}"),
            ));
        }
        let t = c.timeout.as_deref().unwrap_or("30s");
        let timeout = humantime::parse_duration(t)
            .ok()
            .filter(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(600))
            .ok_or_else(|| {
                (
                    format!("{key}.timeout"),
                    format!("must be a duration from 100ms to 10m, got {t:?}"),
                )
            })?;
        out.push(Named {
            name: name.clone(),
            program: PathBuf::from(program),
            args: c.run[1..].to_vec(),
            timeout,
        });
    }
    Ok(out)
}

impl Named {
    /// Back to the written form.
    pub fn to_raw(&self) -> RawNamed {
        let mut run = vec![self.program.display().to_string()];
        run.extend(self.args.iter().cloned());
        RawNamed {
            run,
            timeout: Some(humantime::format_duration(self.timeout).to_string()),
        }
    }

    /// Runs the command, waiting at most the shorter of its timeout and `limit`; blocks.
    pub fn run(&self, limit: Duration) -> (Outcome, String) {
        let timeout = self.timeout.min(limit);
        let mut command = std::process::Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A process group of its own: at its timeout, what it started goes with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return (
                    Outcome::Failed,
                    format!("cannot run {}: {e}", self.program.display()),
                )
            }
        };
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        let stdout = collect(child.stdout.take(), read_tx.clone());
        let stderr = collect(child.stderr.take(), read_tx);
        let status = wait(&mut child, timeout);
        if status.is_none() {
            kill_group(&mut child);
            let _ = child.wait();
        }
        // The pipes close when the command exits: wait (briefly: a child it left behind may
        // hold them open) until both readers have taken what it wrote.
        let deadline = Instant::now() + OUTPUT_GRACE;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if read_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        let text = |buf: &Arc<Mutex<Vec<u8>>>| {
            let b = buf.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&b).trim().to_string()
        };
        match status {
            None => (
                Outcome::TimedOut,
                format!("killed after {}", humantime::format_duration(timeout)),
            ),
            Some(Ok(s)) if s.success() => (Outcome::Done, text(&stdout)),
            Some(Ok(s)) => {
                let err = text(&stderr);
                let out = if err.is_empty() { text(&stdout) } else { err };
                (Outcome::Failed, format!("{s}: {out}"))
            }
            Some(Err(e)) => (Outcome::Failed, format!("waiting for the command: {e}")),
        }
    }
}

/// Kills `child` and every process in its group (the group it leads: see [`Named::run`]).
/// The child has not been waited for, so its id still names its group.
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    {
        use rustix::process::{kill_process_group, Pid, Signal};
        let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
    }
    let _ = child.kill();
}

/// Waits for the child until `timeout`; `None` if it is still running then.
fn wait(child: &mut Child, timeout: Duration) -> Option<std::io::Result<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(Ok(s)),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Some(Err(e)),
        }
    }
}

/// How long, once the command has ended, its output may take to be read to the end.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Reads a pipe to its end on a thread of its own (so that a chatty command never blocks on a
/// full pipe), keeping the first 256 bytes; says so on `done` when the pipe has closed.
fn collect(
    pipe: Option<impl Read + Send + 'static>,
    done: std::sync::mpsc::Sender<()>,
) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let Some(mut p) = pipe else {
        let _ = done.send(());
        return buf;
    };
    let out = buf.clone();
    // Without a thread there is no output: the result then says only how the command ended.
    let _ = std::thread::Builder::new()
        .name("ember-cmd-output".into())
        .spawn(move || {
            let mut chunk = [0u8; 1024];
            while let Ok(n @ 1..) = p.read(&mut chunk) {
                let mut b = out.lock().unwrap_or_else(|e| e.into_inner());
                let room = 256usize.saturating_sub(b.len()).min(n);
                b.extend_from_slice(&chunk[..room]);
            }
            let _ = done.send(());
        });
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn named(run: &[&str], timeout: &str) -> Named {
        let mut m = BTreeMap::new();
        m.insert(
            "x".to_string(),
            RawNamed {
                run: run.iter().map(|s| s.to_string()).collect(),
                timeout: Some(timeout.into()),
            },
        );
        validate(&m).unwrap().remove(0)
    }

    #[test]
    fn runs_without_a_shell_and_reports() {
        let (o, d) = named(&["/bin/echo", "hello", "$HOME;", "ls"], "5s").run(Duration::MAX);
        assert_eq!((o, d.as_str()), (Outcome::Done, "hello $HOME; ls"));
        let (o, d) = named(&["/bin/sh", "-c", "echo bad >&2; exit 3"], "5s").run(Duration::MAX);
        assert_eq!(o, Outcome::Failed);
        assert!(d.contains("3") && d.ends_with("bad"), "{d}");
        let (o, d) = named(&["/nonexistent/tool"], "5s").run(Duration::MAX);
        assert_eq!(o, Outcome::Failed);
        assert!(d.starts_with("cannot run /nonexistent/tool"), "{d}");
    }

    /// A quick command's output is in its result every time, however the threads are scheduled
    /// (it once came back empty when the command exited before its output was read).
    #[test]
    fn a_quick_commands_output_is_never_lost() {
        let echo = named(&["/bin/echo", "quick"], "5s");
        for i in 0..200 {
            assert_eq!(
                echo.run(Duration::MAX),
                (Outcome::Done, "quick".into()),
                "run {i}"
            );
        }
    }

    /// A command that leaves a child behind holding its output open still reports at once.
    #[test]
    fn a_child_left_behind_does_not_hold_the_result() {
        let started = Instant::now();
        let cmd = named(&["/bin/sh", "-c", "sleep 5 & echo started"], "10s");
        assert_eq!(cmd.run(Duration::MAX), (Outcome::Done, "started".into()));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn killed_at_the_shorter_timeout() {
        let started = Instant::now();
        let (o, d) = named(&["/bin/sleep", "10"], "5s").run(Duration::from_millis(200));
        assert_eq!(o, Outcome::TimedOut);
        assert_eq!(d, "killed after 200ms");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Issue #20: at its timeout, a command was killed but what it started (a shell's
    /// children) ran on.
    #[test]
    fn issue_20_a_timeout_kills_what_the_command_started() {
        let pidfile =
            std::env::temp_dir().join(format!("ember-cmd-grandchild-{}", std::process::id()));
        let _ = std::fs::remove_file(&pidfile);
        let script = format!("sleep 100 & echo $! > {}; sleep 100", pidfile.display());
        let (o, _) = named(&["/bin/sh", "-c", &script], "5s").run(Duration::from_millis(500));
        assert_eq!(o, Outcome::TimedOut);
        let pid = std::fs::read_to_string(&pidfile).expect("the script wrote its child's id");
        std::fs::remove_file(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // Gone, or a zombie waiting for whoever inherited it.
        let gone = || match std::fs::read_to_string(&stat) {
            Err(_) => true,
            Ok(s) => s
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the grandchild {} still runs", pid.trim());
    }

    #[test]
    fn bad_entries_name_their_key() {
        let check = |name: &str, run: &[&str], timeout: Option<&str>, key: &str| {
            let mut m = BTreeMap::new();
            m.insert(
                name.to_string(),
                RawNamed {
                    run: run.iter().map(|s| s.to_string()).collect(),
                    timeout: timeout.map(str::to_string),
                },
            );
            assert_eq!(validate(&m).unwrap_err().0, key);
        };
        check("ok", &[], None, "commands.ok.run");
        check("ok", &["echo", "x"], None, "commands.ok.run");
        check("ok", &["/bin/echo"], Some("1h"), "commands.ok.timeout");
        check(
            &"n".repeat(33),
            &["/bin/echo"],
            None,
            &format!("commands.{}", "n".repeat(33)),
        );
        check("a b", &["/bin/echo"], None, "commands.a b");
    }
}
