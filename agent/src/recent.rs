//! The commands this agent received lately, so that one delivered again is answered, not run
//! again: QoS 1 sends a command once more when its acknowledgement was lost (a dropped
//! connection, a broker restart), and a named command such as a restart must not run twice.
//!
//! A fixed array of [`RECENT`] entries, the oldest replaced first: nothing is allocated after
//! start, whatever the collector (or anyone allowed on the command topic) sends.

use std::time::{Duration, Instant};

use ember_wire::{Command, CommandResult};

/// Commands remembered at most.
pub const RECENT: usize = 32;
/// How long a command is remembered. A redelivery comes with the next connection, within
/// seconds; the same id much later is a new command (a collector whose data directory was lost
/// counts its ids from 1 again).
pub const REMEMBER: Duration = Duration::from_secs(600);

/// What [`Recent::admit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not seen lately: do it (and report its result with [`Recent::finish`]).
    New,
    /// Seen and still running: its result will come, once.
    Running,
    /// Seen and done: answer with this result again, run nothing.
    Done(CommandResult),
}

#[derive(Debug)]
struct Entry {
    command: Command,
    at: Instant,
    result: Option<CommandResult>,
}

/// The last [`RECENT`] commands and their results.
#[derive(Debug)]
pub struct Recent {
    entries: [Option<Entry>; RECENT],
    next: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            entries: std::array::from_fn(|_| None),
            next: 0,
        }
    }
}

impl Recent {
    /// Looks `command` up (the same id, timeout and action, received less than [`REMEMBER`]
    /// ago); remembers it when it is new.
    pub fn admit(&mut self, command: &Command, now: Instant) -> Seen {
        let seen = self
            .entries
            .iter()
            .flatten()
            .find(|e| e.command == *command && now.saturating_duration_since(e.at) < REMEMBER);
        if let Some(e) = seen {
            return match &e.result {
                Some(r) => Seen::Done(r.clone()),
                None => Seen::Running,
            };
        }
        self.entries[self.next] = Some(Entry {
            command: command.clone(),
            at: now,
            result: None,
        });
        self.next = (self.next + 1) % RECENT;
        Seen::New
    }

    /// Keeps `result` for the command it answers (the latest with its id still running).
    pub fn finish(&mut self, result: &CommandResult) {
        let running = self
            .entries
            .iter_mut()
            .flatten()
            .filter(|e| e.command.id == result.id && e.result.is_none())
            .max_by_key(|e| e.at);
        if let Some(e) = running {
            e.result = Some(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_wire::{Action, Outcome};

    fn command(id: u32) -> Command {
        Command {
            id,
            timeout_ms: 1000,
            action: Action::Identify,
        }
    }

    fn result(id: u32) -> CommandResult {
        CommandResult {
            id,
            outcome: Outcome::Done,
            detail: Default::default(),
        }
    }

    #[test]
    fn a_redelivered_command_is_answered_not_run_again() {
        let mut r = Recent::default();
        let t = Instant::now();
        assert_eq!(r.admit(&command(1), t), Seen::New);
        assert_eq!(r.admit(&command(1), t), Seen::Running);
        r.finish(&result(1));
        assert_eq!(r.admit(&command(1), t), Seen::Done(result(1)));
        // Another action under the same id, or the same one after REMEMBER, is new.
        let other = Command {
            action: Action::NextPage,
            ..command(1)
        };
        assert_eq!(r.admit(&other, t), Seen::New);
        assert_eq!(r.admit(&command(1), t + REMEMBER), Seen::New);
    }

    /// The bound: RECENT commands are remembered, the oldest is forgotten first.
    #[test]
    fn holds_the_last_recent_commands() {
        let mut r = Recent::default();
        let t = Instant::now();
        for id in 0..RECENT as u32 + 1 {
            assert_eq!(r.admit(&command(id), t), Seen::New);
            r.finish(&result(id));
        }
        assert_eq!(
            r.admit(&command(0), t),
            Seen::New,
            "the oldest is forgotten"
        );
        assert_eq!(
            r.admit(&command(RECENT as u32), t),
            Seen::Done(result(RECENT as u32))
        );
        assert_eq!(r.entries.len(), RECENT);
    }
}
