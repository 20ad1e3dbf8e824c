//! The HTTP API's query strings, parsed by pure functions: the handlers call them with the raw
//! query, the tests and the fuzz target (`tests/fuzz`) call them with anything.
//!
//! Every bad query is an `Err` with a reason that says what is allowed; none panics.

use ember_wire::HostId;
use serde::Deserialize;

use crate::config::Tier;
use crate::store::Resolution;

/// `GET /api/hosts/{id}/samples`: the newest `limit` samples after `after_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Samples {
    /// Most samples to return (newest ones); default 300.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Only samples with a higher sequence number.
    pub after_seq: Option<u64>,
}

fn default_limit() -> usize {
    300
}

/// `GET /api/hosts/{id}/history`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Start, ms since the Unix epoch.
    pub from: u64,
    /// End, ms since the Unix epoch; not before `from`.
    pub to: u64,
    /// Which resolution.
    pub resolution: Resolution,
    /// Metrics or series asked for; empty: all.
    pub series: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawHistory {
    from: Option<u64>,
    to: Option<u64>,
    resolution: Option<String>,
    series: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawEvents {
    hosts: Option<String>,
}

fn decode<'a, T: Deserialize<'a>>(query: &'a str, allowed: &str) -> Result<T, String> {
    serde_urlencoded::from_str(query).map_err(|e| format!("bad query: {e} (allowed: {allowed})"))
}

/// Parses the query of `/api/hosts/{id}/samples`.
pub fn samples(query: &str) -> Result<Samples, String> {
    decode(query, "limit=N, after_seq=N")
}

/// Parses the query of `/api/hosts/{id}/history`; `now_ms` is the default end, `tiers` the
/// configured ones (a resolution names one of them).
pub fn history(query: &str, now_ms: u64, tiers: &[Tier]) -> Result<History, String> {
    let q: RawHistory = decode(
        query,
        "from=MS, to=MS, resolution=auto|raw|<tier>, series=a,b",
    )?;
    let to = q.to.unwrap_or(now_ms);
    let from = q.from.unwrap_or(to.saturating_sub(3_600_000));
    if from > to {
        return Err(format!("`from` ({from}) is after `to` ({to})"));
    }
    let resolution = match q.resolution.as_deref().unwrap_or("auto") {
        "auto" => Resolution::Auto,
        "raw" => Resolution::Raw,
        other => {
            let wanted = humantime::parse_duration(other).ok();
            match tiers.iter().position(|t| Some(t.resolution) == wanted) {
                Some(i) => Resolution::Tier(i),
                None => {
                    let names: Vec<String> = tiers
                        .iter()
                        .map(|t| humantime::format_duration(t.resolution).to_string())
                        .collect();
                    return Err(format!(
                        "unknown resolution {other:?}; configured: auto, raw, {}",
                        names.join(", ")
                    ));
                }
            }
        }
    };
    let series = q
        .series
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(History {
        from,
        to,
        resolution,
        series,
    })
}

/// Parses the query of `/api/events`: the hosts to follow (empty: all).
pub fn events(query: &str) -> Result<Vec<HostId>, String> {
    let q: RawEvents = decode(query, "hosts=a,b")?;
    q.hosts
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|id| HostId::new(id).map_err(|e| format!("{e}: {id:?}")))
        .collect()
}

#[derive(Debug, Deserialize)]
struct RawList {
    host: Option<String>,
    limit: Option<usize>,
}

/// The longest list asked for.
pub const MAX_LIST: usize = 10_000;

/// Parses the query of `/api/alerts/history`, `/api/commands` and `/api/hosts/{id}/commands`:
/// only this host (if any) and the most entries, newest first (default 100, at most
/// [`MAX_LIST`]).
pub fn list(query: &str) -> Result<(Option<HostId>, usize), String> {
    let q: RawList = decode(query, "host=ID, limit=N")?;
    let host = q
        .host
        .as_deref()
        .map(|id| HostId::new(id).map_err(|e| format!("{e}: {id:?}")))
        .transpose()?;
    Ok((host, q.limit.unwrap_or(100).min(MAX_LIST)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tiers() -> Vec<Tier> {
        vec![Tier {
            resolution: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
        }]
    }

    #[test]
    fn history_queries() {
        let check = |q: &str, want: Result<(u64, u64, Resolution, usize), &str>| {
            let got = history(q, 10_000_000, &tiers())
                .map(|h| (h.from, h.to, h.resolution, h.series.len()));
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{q}"),
                Err(part) => {
                    let e = got.unwrap_err();
                    assert!(e.contains(part), "{q}: {e}");
                }
            }
        };
        check("", Ok((6_400_000, 10_000_000, Resolution::Auto, 0)));
        check("from=1&to=2&resolution=raw", Ok((1, 2, Resolution::Raw, 0)));
        check(
            "resolution=1m&series=cpu.busy,%20temp,,",
            Ok((6_400_000, 10_000_000, Resolution::Tier(0), 2)),
        );
        check("to=5", Ok((0, 5, Resolution::Auto, 0)));
        check("from=3&to=2", Err("is after"));
        check("resolution=7m", Err("configured: auto, raw, 1m"));
        check("from=-1", Err("allowed: from=MS"));
        check("from=99999999999999999999999", Err("bad query"));
    }

    #[test]
    fn samples_and_events_queries() {
        assert_eq!(
            samples(""),
            Ok(Samples {
                limit: 300,
                after_seq: None
            })
        );
        assert_eq!(samples("limit=5&after_seq=9").unwrap().after_seq, Some(9));
        assert!(samples("limit=x").unwrap_err().contains("allowed: limit=N"));
        assert_eq!(events("").unwrap(), vec![]);
        assert_eq!(events("hosts=a,b,").unwrap().len(), 2);
        assert!(events("hosts=A%20B").is_err());
    }

    #[test]
    fn list_queries() {
        assert_eq!(list(""), Ok((None, 100)));
        assert_eq!(list("limit=999999"), Ok((None, MAX_LIST)));
        let (host, limit) = list("host=pi-1&limit=3").unwrap();
        assert_eq!((host.unwrap().as_str(), limit), ("pi-1", 3));
        assert!(list("limit=-1")
            .unwrap_err()
            .contains("allowed: host=ID, limit=N"));
        assert!(list("host=A%20B").is_err());
        assert!(
            list("colour=red").is_ok(),
            "unknown keys are ignored, as axum's Query did"
        );
    }
}
