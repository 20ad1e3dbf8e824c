//! Where a request comes from, for the browser's sake (issue #20).
//!
//! - **DNS rebinding.** While reading is open (no token: a loopback listener by default), a web
//!   page from anywhere can point its own name at 127.0.0.1 and read the API as "same origin".
//!   Such a request carries the page's name in `Host`, so the API then answers only a `Host`
//!   that is an IP address (a page at an address is that address's origin: nothing is
//!   rebound), `localhost`, or one of `http.allowed-hosts`; anything else gets 421. With tokens
//!   the page has no token to send, and the check is off (any name reaches the collector).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Checks a name for `http.allowed-hosts` and returns it as compared (lower case, without a
/// final dot).
pub fn host_name(name: &str) -> Result<String, String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if n.is_empty() || n.len() > 253 || !n.split('.').all(label_ok) {
        return Err("not a host name (letters, digits, `-` and dots; no port, no scheme)".into());
    }
    Ok(n)
}

/// The host part of a `Host` header value (or an `Origin`'s authority): without the port and
/// the brackets of an IPv6 address, lower case.
fn host_part(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Which `Host` values the API answers.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// Off where reading needs a token.
    check: bool,
    names: Vec<String>,
}

impl Hosts {
    /// The check for a collector where reading is open (`check`) or needs a token, with the
    /// names of `http.allowed-hosts`.
    pub fn new(check: bool, names: Vec<String>) -> Self {
        Hosts { check, names }
    }

    /// Whether a request with `host` (its `Host` header; HTTP/1.0 may send none) is answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host.filter(|_| self.check) else {
            return true;
        };
        let name = host_part(host);
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.names.contains(&name)
    }
}

/// The middleware: 421 for a `Host` that [`Hosts::allows`] refuses.
pub async fn check_host(State(hosts): State<Arc<Hosts>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if hosts.allows(host) {
        return next.run(req).await;
    }
    let host = host.unwrap_or_default().to_string();
    tracing::warn!(
        "HTTP {} {} refused: Host {host:?} is not this collector's (DNS rebinding?)",
        req.method(),
        req.uri().path()
    );
    let reason = format!(
        "Host {host:?} is not this collector's: reach it by IP address or localhost, or add the \
         name to http.allowed-hosts"
    );
    (
        StatusCode::MISDIRECTED_REQUEST,
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_answered_while_reading_is_open() {
        let h = Hosts::new(true, vec!["ember.lan".into()]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "192.168.1.9:80",
            "localhost:8080",
            "LOCALHOST.",
            "ember.lan:8080",
            "Ember.LAN",
        ] {
            assert!(h.allows(Some(ok)), "{ok}");
        }
        assert!(h.allows(None), "HTTP/1.0 without Host");
        for refused in [
            "attacker.example:8080",
            "attacker.example",
            "localhost.attacker.example",
            "127.0.0.1.nip.io:8080",
            "ember.lan.evil",
            "",
        ] {
            assert!(!h.allows(Some(refused)), "{refused}");
        }
        // With tokens: any name.
        assert!(Hosts::new(false, Vec::new()).allows(Some("attacker.example")));
    }

    #[test]
    fn allowed_host_names_are_checked() {
        assert_eq!(host_name("Ember.Lan."), Ok("ember.lan".into()));
        for bad in [
            "",
            "ember.lan:8080",
            "http://ember.lan",
            "a b",
            "-x.lan",
            "x..lan",
        ] {
            assert!(host_name(bad).is_err(), "{bad}");
        }
    }
}
