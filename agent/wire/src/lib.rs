//! Ember's wire contract.
//!
//! Every message that crosses the MQTT wire between an agent and the collector is defined here,
//! once, for both sides: postcard is not self-describing, so the peers share this crate instead of
//! a schema. The crate is `no_std`, never allocates and does no I/O; all capacities are fixed
//! (heapless) and every buffer is sized from the types through postcard's [`MaxSize`].
//!
//! A message on the wire is an [`Envelope`]: a version byte, the sending host's [`HostId`] and one
//! [`Message`]. [`decode`] checks the version before it reads anything else, so a peer from the
//! future gets [`Error::UnsupportedVersion`] rather than a confused decode.
//!
//! The MQTT topic scheme lives in [`topic`]; it is described for people in `docs/wire.md`.
//!
//! Compatibility rules: enum variants and `Message` kinds are only ever appended; any other change
//! to a type here (a new field, a changed unit) bumps [`VERSION`]. The golden-byte tests in
//! `tests/golden.rs` pin the encoding of every message.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code, missing_docs)]

pub use heapless;
pub use postcard::experimental::max_size::MaxSize;

pub mod command;
mod host;
pub mod info;
pub mod sample;
pub mod topic;

pub use command::{Action, Command, CommandResult, Outcome};
// `HostAlerts` is defined below, beside `Message`.
pub use host::{HostId, HostIdError, HOST_ID_MAX_LEN};
pub use info::{DiskInfo, HostInfo, Interface};
pub use sample::{
    Cpu, DiskIo, Filesystem, Load, Memory, NetIo, Probe, Process, Sample, Temperature, Watched,
    Wifi,
};

use serde::{Deserialize, Serialize};

/// The wire version this crate speaks: the first byte of every encoded [`Envelope`].
pub const VERSION: u8 = 1;

/// Upper bound of an encoded [`Envelope`] in bytes; size encode buffers with it.
pub const MAX_ENCODED_LEN: usize = Envelope::POSTCARD_MAX_SIZE;

/// One message on the wire, with who sent it and in which version of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, MaxSize)]
pub struct Envelope {
    /// Wire version; always [`VERSION`] for envelopes made by this crate.
    pub version: u8,
    /// The host the message is about (for commands: the host it is addressed to).
    pub host: HostId,
    /// The message itself.
    pub message: Message,
}

/// Every kind of message. Variants are only ever appended.
///
/// `Sample` is far larger than the rest; boxing it is not an option without an allocator, and a
/// message lives once per interval on a stack or in a slot, so the size is paid knowingly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, MaxSize)]
pub enum Message {
    /// A periodic measurement of the host (agent → collector).
    Sample(Sample),
    /// The host's inventory, sent retained at start and when it changes (agent → collector).
    HostInfo(HostInfo),
    /// Online/offline state, retained; the agent's last will carries `Offline`.
    Status(Status),
    /// A command for the agent (collector → agent).
    Command(Command),
    /// The result of a command (agent → collector).
    CommandResult(CommandResult),
    /// The collector's firing alerts about the host, for its panel's banner (collector →
    /// agent, retained).
    Alerts(HostAlerts),
}

/// The collector's firing alerts about one host, as its panel shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct HostAlerts {
    /// How many alerts are firing; 0 clears the banner.
    pub firing: u8,
    /// The most severe one, short (`cpu-high`), for the banner; empty when none.
    pub text: heapless::String<32>,
}

/// Whether a host's agent is connected. Variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Status {
    /// The agent went away: published by the broker as the agent's last will, or by the agent
    /// itself on a clean shutdown.
    Offline,
    /// The agent is connected and samples every `interval_ms` milliseconds.
    Online {
        /// The agent's sampling interval, so that readers can judge staleness.
        interval_ms: u32,
    },
}

impl Envelope {
    /// Wraps `message` from `host` in an envelope of the current [`VERSION`].
    pub fn new(host: HostId, message: Message) -> Self {
        Envelope {
            version: VERSION,
            host,
            message,
        }
    }

    /// Encodes into `buf` and returns the used prefix. A buffer of [`MAX_ENCODED_LEN`] bytes
    /// always suffices.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
        postcard::to_slice(self, buf).map_err(|e| match e {
            postcard::Error::SerializeBufferFull => Error::BufferFull,
            _ => Error::Malformed,
        })
    }
}

impl Message {
    /// How many message kinds this version knows; the kind byte is below this.
    pub const KINDS: u8 = 6;
    /// The kind byte of [`Message::Sample`] ([`split_message`]).
    pub const SAMPLE: u8 = 0;

    /// The topic kind this message travels on.
    pub fn kind(&self) -> topic::Kind {
        match self {
            Message::Sample(_) => topic::Kind::Sample,
            Message::HostInfo(_) => topic::Kind::Info,
            Message::Status(_) => topic::Kind::Status,
            Message::Command(_) => topic::Kind::Command,
            Message::CommandResult(_) => topic::Kind::Result,
            Message::Alerts(_) => topic::Kind::Alerts,
        }
    }
}

/// Why bytes could not be decoded, or a message not encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the message did.
    Truncated,
    /// The envelope is of a version this build does not speak.
    UnsupportedVersion(u8),
    /// A message kind this build does not know (from a newer peer, or garbage).
    UnknownMessage(u8),
    /// A value breaks its limits: a string or list longer than its fixed capacity, a host id
    /// that breaks the host-id rules, or an enum variant this build does not know.
    Invalid,
    /// Bytes left over after a complete message.
    TrailingBytes,
    /// Anything else that is not a valid encoding.
    Malformed,
    /// The output buffer is too small (never with [`MAX_ENCODED_LEN`] bytes).
    BufferFull,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("message is truncated"),
            Error::UnsupportedVersion(v) => {
                write!(
                    f,
                    "wire version {v} is not supported (this build speaks {VERSION})"
                )
            }
            Error::UnknownMessage(k) => write!(f, "unknown message kind {k}"),
            Error::Invalid => f.write_str(
                "a value breaks its limits (string or list over capacity, bad host id, \
                 or unknown enum variant)",
            ),
            Error::TrailingBytes => f.write_str("bytes left over after the message"),
            Error::Malformed => f.write_str("malformed message"),
            Error::BufferFull => f.write_str("encode buffer too small"),
        }
    }
}

impl core::error::Error for Error {}

/// An encoded envelope's message kind (`Message`'s variant index, [`Message::SAMPLE`] for a
/// sample) and the message's own postcard bytes, from the layout postcard gives an envelope: the
/// version byte, the host id's length (one byte: an id is at most 32 bytes) and bytes, the kind
/// (one byte), then the message. `None` where `bytes` cannot be that. For bytes [`decode`]
/// accepts, the message's bytes run exactly to the end.
pub fn split_message(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let host_len = *bytes.get(1)?;
    if host_len > 0x7f {
        return None;
    }
    let at = 2 + usize::from(host_len);
    Some((*bytes.get(at)?, bytes.get(at + 1..)?))
}

/// Decodes one envelope from exactly `bytes`. Never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<Envelope, Error> {
    match bytes.first() {
        None => return Err(Error::Truncated),
        Some(&v) if v != VERSION => return Err(Error::UnsupportedVersion(v)),
        Some(_) => {}
    }
    // Name an unknown message kind before the body decoder sees it.
    if let Some((kind, _)) = split_message(bytes) {
        if kind >= Message::KINDS {
            return Err(Error::UnknownMessage(kind));
        }
    }
    let (envelope, rest) = postcard::take_from_bytes::<Envelope>(bytes).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => Error::Truncated,
        // heapless reports an over-long string or list, HostId a broken id and serde an unknown
        // variant as a custom error: postcard keeps no more than that.
        postcard::Error::SerdeDeCustom | postcard::Error::DeserializeBadEnum => Error::Invalid,
        _ => Error::Malformed,
    })?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes);
    }
    Ok(envelope)
}
