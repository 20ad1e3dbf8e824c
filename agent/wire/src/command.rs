//! Commands from the collector to an agent, and their results.

use heapless::String;
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// A command for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct Command {
    /// Chosen by the collector; the result carries it back.
    pub id: u32,
    /// How long the agent may take, in milliseconds.
    pub timeout_ms: u32,
    /// What to do.
    pub action: Action,
}

/// What a command asks for. Variants are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Action {
    /// Make the panel stand out (flash or invert) so a person can find the board.
    Identify,
    /// Show the next page on the panel.
    NextPage,
    /// Show the previous page on the panel.
    PreviousPage,
    /// Set the panel's brightness or contrast, 0 to 255.
    Brightness(u8),
    /// Publish the host inventory again.
    RepublishInventory,
    /// Run a command the agent's owner named in the agent's config (an allow-list).
    Named(String<32>),
}

/// The result of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct CommandResult {
    /// The command's id.
    pub id: u32,
    /// How it went.
    pub outcome: Outcome,
    /// Output or reason, cut to 96 bytes.
    pub detail: String<96>,
}

/// How a command went. Variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Outcome {
    /// Done.
    Done,
    /// Refused: not on the allow-list, or not supported by this agent.
    Refused,
    /// Tried and failed.
    Failed,
    /// Did not finish within its timeout.
    TimedOut,
}
