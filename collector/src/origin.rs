//! Where a request comes from, for the browser's sake (issue #20):
//!
//! - **DNS rebinding.** While reading is open (no token: a loopback listener by default), a web
//!   page from anywhere can point its own name at 127.0.0.1 and read the API as "same origin".
//!   Such a request carries the page's name in `Host`, so the API then answers only a `Host`
//!   that is an IP address (a page at an address is that address's origin: nothing is
//!   rebound), `localhost`, or one of `http.allowed-hosts`; anything else gets 421. With tokens
//!   the page has no token to send, and the check is off (any name reaches the collector).
//! - **Login CSRF.** `POST /login` and `/logout` set the session cookie: they take JSON only
//!   (another site's form cannot send it without a CORS preflight, which is never granted), and
//!   a browser's request must come from the dashboard's own origin (`Sec-Fetch-Site`, or where
//!   a browser does not send it, `Origin`): 403 otherwise.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
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

/// Whether a request that sets the session cookie may: JSON only, and from the dashboard's own
/// origin when a browser sends it. The refusal's status and reason otherwise.
pub fn cookie_post(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let json = text(header::CONTENT_TYPE)
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json".into(),
        ));
    }
    same_origin(headers)
}

/// Whether a browser's request comes from the dashboard's own origin (`Sec-Fetch-Site`, or
/// `Origin` against `Host`); a request that is not a browser's has neither and passes. 403
/// and the reason otherwise.
pub fn same_origin(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let cross = || {
        (
            StatusCode::FORBIDDEN,
            "not from the dashboard's own origin".to_string(),
        )
    };
    // Every current browser sends Fetch Metadata: `none` is a request the user typed.
    if let Some(site) = text("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(cross()),
        };
    }
    match text("origin") {
        // Not a browser (curl, scripts): nothing to forge.
        None => Ok(()),
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
            let host = text("host").unwrap_or("");
            if !authority.is_empty() && authority.eq_ignore_ascii_case(host) {
                Ok(())
            } else {
                Err(cross())
            }
        }
    }
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

    #[test]
    fn the_session_cookie_is_set_for_json_from_the_same_origin_only() {
        let check = |headers: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in headers {
                m.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            cookie_post(&m).map_err(|(s, _)| s.as_u16())
        };
        let json = ("content-type", "application/json");
        assert_eq!(check(&[json]), Ok(()), "curl");
        assert_eq!(
            check(&[("content-type", "application/json; charset=utf-8")]),
            Ok(())
        );
        assert_eq!(check(&[json, ("sec-fetch-site", "same-origin")]), Ok(()));
        assert_eq!(check(&[("content-type", "text/plain")]), Err(415));
        assert_eq!(
            check(&[("content-type", "application/x-www-form-urlencoded")]),
            Err(415)
        );
        assert_eq!(check(&[]), Err(415));
        assert_eq!(check(&[json, ("sec-fetch-site", "cross-site")]), Err(403));
        assert_eq!(check(&[json, ("sec-fetch-site", "same-site")]), Err(403));
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(
            check(&[json, host, ("origin", "http://127.0.0.1:8080")]),
            Ok(())
        );
        assert_eq!(
            check(&[json, host, ("origin", "http://evil.example")]),
            Err(403)
        );
        assert_eq!(check(&[json, host, ("origin", "null")]), Err(403));
    }
}
