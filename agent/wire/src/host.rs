//! Host ids: the name a host goes by in topics, the API and the dashboard.

use core::fmt;

use heapless::String;
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// Longest host id, in bytes.
pub const HOST_ID_MAX_LEN: usize = 32;

/// A host's id: 1 to 32 characters of `a-z`, `0-9` and `-`, starting with a letter or digit.
///
/// These rules keep an id safe as one MQTT topic level (no `/`, `+`, `#`), in URLs and in
/// Prometheus labels. A `HostId` is valid by construction, also when deserialized.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String<HOST_ID_MAX_LEN>", into = "String<HOST_ID_MAX_LEN>")]
pub struct HostId(String<HOST_ID_MAX_LEN>);

/// Why a string is not a valid [`HostId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostIdError {
    /// The id is empty.
    Empty,
    /// The id is longer than [`HOST_ID_MAX_LEN`] bytes.
    TooLong,
    /// The id holds a character other than `a-z`, `0-9` and `-`, or starts with `-`.
    BadCharacter,
}

impl fmt::Display for HostIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostIdError::Empty => "host id is empty",
            HostIdError::TooLong => "host id is longer than 32 characters",
            HostIdError::BadCharacter => {
                "host id may hold only a-z, 0-9 and '-', and must start with a letter or digit"
            }
        })
    }
}

impl core::error::Error for HostIdError {}

impl HostId {
    /// Checks `s` against the host-id rules.
    pub fn new(s: &str) -> Result<Self, HostIdError> {
        if s.is_empty() {
            return Err(HostIdError::Empty);
        }
        if s.len() > HOST_ID_MAX_LEN {
            return Err(HostIdError::TooLong);
        }
        let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-';
        if s.as_bytes()[0] == b'-' || !s.bytes().all(ok) {
            return Err(HostIdError::BadCharacter);
        }
        let mut id = String::new();
        // Cannot fail: the length was checked above.
        let _ = id.push_str(s);
        Ok(HostId(id))
    }

    /// Makes a valid id from any name (a hostname, say): lower-cases it, turns every other
    /// character into `-`, drops leading `-` and cuts it to 32 bytes. `None` if nothing is left.
    pub fn sanitize(name: &str) -> Option<Self> {
        let mut id: String<HOST_ID_MAX_LEN> = String::new();
        for c in name.chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            };
            if id.is_empty() && c == '-' {
                continue;
            }
            if id.push(c).is_err() {
                break;
            }
        }
        while id.ends_with('-') {
            id.pop();
        }
        if id.is_empty() {
            None
        } else {
            Some(HostId(id))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String<HOST_ID_MAX_LEN>> for HostId {
    type Error = HostIdError;
    fn try_from(s: String<HOST_ID_MAX_LEN>) -> Result<Self, HostIdError> {
        HostId::new(&s)
    }
}

impl From<HostId> for String<HOST_ID_MAX_LEN> {
    fn from(id: HostId) -> Self {
        id.0
    }
}

impl core::str::FromStr for HostId {
    type Err = HostIdError;
    fn from_str(s: &str) -> Result<Self, HostIdError> {
        HostId::new(s)
    }
}

impl MaxSize for HostId {
    const POSTCARD_MAX_SIZE: usize = String::<HOST_ID_MAX_LEN>::POSTCARD_MAX_SIZE;
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostId({:?})", self.0.as_str())
    }
}

impl AsRef<str> for HostId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses_by_the_rules() {
        assert!(HostId::new("pi-zero-2").is_ok());
        assert!(HostId::new("0pi").is_ok());
        assert_eq!(HostId::new(""), Err(HostIdError::Empty));
        assert_eq!(HostId::new("-pi"), Err(HostIdError::BadCharacter));
        assert_eq!(HostId::new("Pi"), Err(HostIdError::BadCharacter));
        assert_eq!(HostId::new("a/b"), Err(HostIdError::BadCharacter));
        assert_eq!(HostId::new("a+"), Err(HostIdError::BadCharacter));
        assert_eq!(HostId::new(&"a".repeat(33)), Err(HostIdError::TooLong));
        assert!(HostId::new(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn sanitizes_hostnames() {
        let check = |name: &str, want: Option<&str>| {
            assert_eq!(
                HostId::sanitize(name).as_ref().map(HostId::as_str),
                want,
                "{name}"
            );
        };
        check("raspberrypi", Some("raspberrypi"));
        check("Kitchen Pi.local", Some("kitchen-pi-local"));
        check("--weird__", Some("weird"));
        check("ünïcode", Some("n-code"));
        check("", None);
        check("///", None);
        check(&"x".repeat(40), Some(&"x".repeat(32)));
    }
}
