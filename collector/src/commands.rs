//! Commands to agents and the audit log: plain state. HTTP asks for a command
//! ([`Commands::request`]), which gets an id and the envelope to publish on the host's `cmd`
//! topic; the agent's result ([`Commands::on_result`]) or the timeout ([`Commands::expire`])
//! finishes it. Every change appends the command's record to `audit.jsonl` in the data directory
//! (who, what, when, outcome), read back at start.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_wire::heapless::String as HString;
use ember_wire::{Action, Command, CommandResult, Envelope, HostId, Message, Outcome};
use serde::{Deserialize, Serialize};

/// Who made a request: set as a request extension by the authentication middleware (the
/// operator's name). Without it the audit log records `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Sent, no result yet.
    Pending,
    /// The agent did it.
    Done,
    /// The agent refused (not on its allow-list, or not supported).
    Refused,
    /// The agent tried and failed.
    Failed,
    /// No result within the timeout (the agent's or ours).
    TimedOut,
}

/// A command as the API and the audit log show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Id, also in the agent's result.
    pub id: u32,
    /// The host.
    pub host: HostId,
    /// `identify`, `next-page`, `previous-page`, `brightness`, `republish-inventory`, `named`.
    pub action: String,
    /// Brightness's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u8>,
    /// A named command's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who asked.
    pub actor: String,
    /// When, ms since the Unix epoch.
    pub requested_ms: u64,
    /// How long the agent may take.
    pub timeout_ms: u32,
    /// Where it stands.
    pub status: CommandStatus,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// The agent's output or reason.
    #[serde(default)]
    pub detail: String,
}

/// A command as the API asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// See [`CommandRecord::action`].
    pub action: String,
    /// Brightness, 0 to 255.
    #[serde(default)]
    pub value: Option<u8>,
    /// A named command's name (as in the agent's config).
    #[serde(default)]
    pub name: Option<String>,
    /// Milliseconds the agent may take; default 10000, at most 600000.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

/// Default time a command may take.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Longest time a command may take.
pub const MAX_TIMEOUT_MS: u32 = 600_000;
/// How long past its timeout a command waits for a result before it counts as timed out (the
/// result's trip back over MQTT).
pub const GRACE: Duration = Duration::from_secs(5);
/// Commands kept in memory (the audit file keeps everything).
pub const KEEP: usize = 1000;

impl CommandRequest {
    /// The wire action, or why not.
    pub fn action(&self) -> Result<Action, String> {
        let no_extra = |what: &str| -> Result<(), String> {
            if self.value.is_some() || self.name.is_some() {
                Err(format!("{what} takes neither `value` nor `name`"))
            } else {
                Ok(())
            }
        };
        match self.action.as_str() {
            "identify" => no_extra("identify").map(|_| Action::Identify),
            "next-page" => no_extra("next-page").map(|_| Action::NextPage),
            "previous-page" => no_extra("previous-page").map(|_| Action::PreviousPage),
            "republish-inventory" => {
                no_extra("republish-inventory").map(|_| Action::RepublishInventory)
            }
            "brightness" => match (self.value, &self.name) {
                (Some(v), None) => Ok(Action::Brightness(v)),
                _ => Err("brightness needs `value` (0 to 255) and no `name`".into()),
            },
            "named" => match (&self.name, self.value) {
                (Some(n), None) if !n.is_empty() => {
                    // heapless 0.7's `From<&str>` panics when the text is too long.
                    let mut name = HString::new();
                    name.push_str(n)
                        .map(|_| Action::Named(name))
                        .map_err(|_| format!("`name` is at most 32 bytes, got {}", n.len()))
                }
                _ => Err("named needs `name` (as in the agent's [commands]) and no `value`".into()),
            },
            other => Err(format!(
                "unknown action {other:?}; known: identify, next-page, previous-page, \
                 brightness, republish-inventory, named"
            )),
        }
    }

    /// The timeout, or why not.
    pub fn timeout_ms(&self) -> Result<u32, String> {
        match self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS) {
            t @ 100..=MAX_TIMEOUT_MS => Ok(t),
            t => Err(format!(
                "`timeout_ms` must be 100 to {MAX_TIMEOUT_MS}, got {t}"
            )),
        }
    }
}

/// The commands sent and the audit log.
#[derive(Debug)]
pub struct Commands {
    next_id: u32,
    records: VecDeque<CommandRecord>,
    log: Option<PathBuf>,
}

impl Commands {
    /// Commands kept in memory only (tests).
    pub fn new() -> Self {
        Commands {
            next_id: 1,
            records: VecDeque::new(),
            log: None,
        }
    }

    /// Reads the audit log in `data_dir` (the newest [`KEEP`] commands) and appends to it.
    /// Commands still pending in the log were cut short by a restart: they stay pending until
    /// their timeout passes.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join("audit.jsonl");
        let mut c = Commands::new();
        if let Ok(f) = std::fs::File::open(&path) {
            for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<CommandRecord>(&line) {
                    Ok(r) => c.keep(r),
                    Err(e) => tracing::warn!("{}:{}: skipped: {e}", path.display(), i + 1),
                }
            }
        }
        c.next_id = c
            .records
            .iter()
            .map(|r| r.id)
            .max()
            .unwrap_or(0)
            .wrapping_add(1)
            .max(1);
        c.log = Some(path);
        c
    }

    fn keep(&mut self, r: CommandRecord) {
        match self.records.iter_mut().find(|o| o.id == r.id) {
            Some(o) => *o = r,
            None => {
                self.records.push_back(r);
                if self.records.len() > KEEP {
                    self.records.pop_front();
                }
            }
        }
    }

    fn write(&self, r: &CommandRecord) {
        let Some(path) = &self.log else { return };
        let line = match serde_json::to_string(r) {
            Ok(l) => l + "\n",
            Err(_) => return,
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::error!("cannot write the audit log {}: {e}", path.display());
        }
    }

    /// Records a command for `host` and returns it with the envelope to publish.
    pub fn request(
        &mut self,
        host: HostId,
        req: &CommandRequest,
        actor: &str,
        now_ms: u64,
    ) -> Result<(CommandRecord, Vec<u8>), String> {
        let action = req.action()?;
        let timeout_ms = req.timeout_ms()?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let command = Command {
            id,
            timeout_ms,
            action: action.clone(),
        };
        let mut buf = [0u8; ember_wire::MAX_ENCODED_LEN];
        let payload = Envelope::new(host.clone(), Message::Command(command))
            .encode(&mut buf)
            .map_err(|e| e.to_string())?
            .to_vec();
        let record = CommandRecord {
            id,
            host,
            action: req.action.clone(),
            value: req.value,
            name: req.name.clone(),
            actor: actor.to_string(),
            requested_ms: now_ms,
            timeout_ms,
            status: CommandStatus::Pending,
            finished_ms: None,
            detail: String::new(),
        };
        self.write(&record);
        self.keep(record.clone());
        Ok((record, payload))
    }

    /// An agent's result. A result for an unknown id, from another host than the command's, or
    /// for a command already finished changes nothing.
    pub fn on_result(
        &mut self,
        host: &HostId,
        result: &CommandResult,
        now_ms: u64,
    ) -> Option<CommandRecord> {
        let r = self
            .records
            .iter_mut()
            .find(|r| r.id == result.id && &r.host == host)?;
        if r.status != CommandStatus::Pending {
            return None;
        }
        r.status = match result.outcome {
            Outcome::Done => CommandStatus::Done,
            Outcome::Refused => CommandStatus::Refused,
            Outcome::Failed => CommandStatus::Failed,
            Outcome::TimedOut => CommandStatus::TimedOut,
        };
        r.finished_ms = Some(now_ms);
        r.detail = result.detail.to_string();
        let r = r.clone();
        self.write(&r);
        Some(r)
    }

    /// Marks commands without a result past their timeout (plus [`GRACE`]) as timed out.
    pub fn expire(&mut self, now_ms: u64) -> Vec<CommandRecord> {
        let mut done = Vec::new();
        for r in &mut self.records {
            let deadline = r.requested_ms + u64::from(r.timeout_ms) + GRACE.as_millis() as u64;
            if r.status == CommandStatus::Pending && now_ms >= deadline {
                r.status = CommandStatus::TimedOut;
                r.finished_ms = Some(now_ms);
                r.detail = "no result from the agent within the timeout".into();
                done.push(r.clone());
            }
        }
        for r in &done {
            self.write(r);
        }
        done
    }

    /// The newest `limit` commands (of `host`, if given), newest first.
    pub fn list(&self, host: Option<&HostId>, limit: usize) -> Vec<CommandRecord> {
        self.records
            .iter()
            .rev()
            .filter(|r| host.is_none_or(|h| &r.host == h))
            .take(limit)
            .cloned()
            .collect()
    }

    /// One command.
    pub fn get(&self, id: u32) -> Option<&CommandRecord> {
        self.records.iter().find(|r| r.id == id)
    }
}

impl Default for Commands {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> CommandRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn requests_are_checked() {
        let check = |json: &str, hint: &str| {
            let r = req(json);
            let e = r.action().and(r.timeout_ms().map(|_| Action::Identify));
            assert!(e.as_ref().is_err_and(|e| e.contains(hint)), "{json}: {e:?}");
        };
        check(r#"{"action":"reboot"}"#, "known: identify");
        check(r#"{"action":"brightness"}"#, "needs `value`");
        check(r#"{"action":"identify","value":3}"#, "neither");
        check(r#"{"action":"named"}"#, "needs `name`");
        check(
            &format!(r#"{{"action":"named","name":"{}"}}"#, "x".repeat(33)),
            "32 bytes",
        );
        check(r#"{"action":"identify","timeout_ms":5}"#, "100 to");
        assert_eq!(
            req(r#"{"action":"brightness","value":7}"#).action(),
            Ok(Action::Brightness(7))
        );
        assert!(serde_json::from_str::<CommandRequest>(r#"{"action":"x","extra":1}"#).is_err());
    }

    #[test]
    fn results_finish_commands_once_and_only_from_their_host() {
        let mut c = Commands::new();
        let pi = HostId::new("pi").unwrap();
        let other = HostId::new("other").unwrap();
        let (r, payload) = c
            .request(pi.clone(), &req(r#"{"action":"identify"}"#), "ops", 1000)
            .unwrap();
        let env = ember_wire::decode(&payload).unwrap();
        assert_eq!(env.host, pi);
        assert!(
            matches!(env.message, Message::Command(Command { id, action: Action::Identify, timeout_ms: 10_000 }) if id == r.id)
        );
        let result = CommandResult {
            id: r.id,
            outcome: Outcome::Done,
            detail: "ok".into(),
        };
        assert!(c.on_result(&other, &result, 1500).is_none(), "another host");
        let done = c.on_result(&pi, &result, 2000).unwrap();
        assert_eq!(done.status, CommandStatus::Done);
        assert_eq!(done.finished_ms, Some(2000));
        assert!(c.on_result(&pi, &result, 2100).is_none(), "only once");
        let (r2, _) = c
            .request(
                pi.clone(),
                &req(r#"{"action":"next-page","timeout_ms":1000}"#),
                "ops",
                3000,
            )
            .unwrap();
        assert_ne!(r2.id, r.id);
        assert!(c
            .expire(3000 + 1000 + GRACE.as_millis() as u64 - 1)
            .is_empty());
        let expired = c.expire(3000 + 1000 + GRACE.as_millis() as u64);
        assert_eq!(expired.len(), 1);
        assert_eq!(c.get(r2.id).unwrap().status, CommandStatus::TimedOut);
        assert_eq!(c.list(Some(&pi), 10).len(), 2);
        assert!(c.list(Some(&other), 10).is_empty());
    }

    #[test]
    fn the_audit_log_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("ember-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pi = HostId::new("pi").unwrap();
        let mut c = Commands::open(&dir);
        let (r, _) = c
            .request(
                pi.clone(),
                &req(r#"{"action":"named","name":"restart-app"}"#),
                "alice",
                10,
            )
            .unwrap();
        c.on_result(
            &pi,
            &CommandResult {
                id: r.id,
                outcome: Outcome::Refused,
                detail: "not on this agent's allow-list".into(),
            },
            20,
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("audit.jsonl"))
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        let again = Commands::open(&dir);
        let list = again.list(None, 10);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].actor, "alice");
        assert_eq!(list[0].status, CommandStatus::Refused);
        assert_eq!(list[0].name.as_deref(), Some("restart-app"));
        assert_eq!(again.next_id, r.id + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
