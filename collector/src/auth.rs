//! Who may read and who may command, over HTTP (issue #8).
//!
//! - **Tokens.** `ember-collector token add NAME --role read|operator` makes a random token
//!   (`ember_` and 64 hex digits: 256 bits from the OS) and stores only its SHA-256 in the
//!   configuration (`[[http.tokens]]`). A client sends `Authorization: Bearer TOKEN`; the
//!   collector hashes what it is sent and compares it with every stored hash in constant time.
//! - **Read access** (every `GET`/`HEAD` of `/api/...` and `/metrics`, except `/api/health` and
//!   `/api/openapi.json`) is open when the configuration says so ([`ReadAccess::Open`]: the
//!   default on a loopback listener without read tokens) and otherwise needs a read or operator
//!   token, or a dashboard session.
//! - **Commands and changes** — every request under `/api` that is not `GET` or `HEAD`, today's
//!   routes and future ones — need an operator token as a bearer token (never a session cookie,
//!   so that another site cannot make a browser send one). The operator's name is put into the
//!   request's extensions as [`Operator`] for audit logs.
//! - **Dashboard sessions.** A browser cannot set headers on `EventSource` or `<img>`, so the
//!   dashboard's login form posts the token once to `POST /login`, which answers with an
//!   HMAC-signed session cookie (`HttpOnly; SameSite=Strict`, 8 hours, key made at start-up)
//!   that grants read access only.
//!
//! [`Auth::decide`] is the whole policy as a pure function; [`guard`] is the thin middleware.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The operator a command request was authenticated as, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's name in the configuration.
    pub name: String,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read the API, the event stream and the metrics.
    Read,
    /// Read, and send commands and changes.
    Operator,
}

impl Role {
    /// `read` or `operator`, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operator => "operator",
        }
    }

    /// Parses `read` or `operator`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// The SHA-256 of a token: what the configuration stores instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<TokenHash> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    /// Only a prefix: enough to tell hashes apart in a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}…", &self.to_hex()[..8])
    }
}

/// One configured token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who or what holds it (`grafana`, `alice`); shown in logs.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Its SHA-256.
    pub hash: TokenHash,
}

/// Whether reading needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAccess {
    /// Anyone who reaches the listener may read.
    Open,
    /// Reading needs a read or operator token (or a dashboard session).
    Token,
}

/// Longest token looked at; longer ones are refused without hashing.
const MAX_TOKEN_LEN: usize = 256;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ember_session";

/// How long a dashboard session lasts.
pub const SESSION_MS: u64 = 8 * 3600 * 1000;

/// A new token: `ember_` and 64 hex digits from the OS's random numbers.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(format!("ember_{}", hex(&bytes)))
}

/// The configuration lines that store `token` as `name` with `role`.
pub fn config_lines(name: &str, role: Role, token: &str) -> String {
    format!(
        "[[http.tokens]]\nname = \"{name}\"\nrole = \"{}\"\nsha256 = \"{}\"\n",
        role.as_str(),
        TokenHash::of(token).to_hex()
    )
}

/// Lower-case hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`Auth::decide`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No credentials needed (or none given where reading is open).
    Open,
    /// A reader (by token or session), by name.
    Reader(String),
    /// An operator, by name: may command.
    Operator(String),
    /// Refused.
    Refused(Refusal),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials where they are needed (401).
    Missing {
        /// An operator token is what is needed.
        operator: bool,
    },
    /// A token or session that is not valid (401).
    Invalid,
    /// A valid read token where an operator token is needed (403).
    NotOperator {
        /// The reader's name.
        name: String,
    },
}

impl Refusal {
    /// The HTTP status and the reason served.
    pub fn status_and_reason(&self) -> (StatusCode, String) {
        match self {
            Refusal::Missing { operator: true } => (
                StatusCode::UNAUTHORIZED,
                "this request needs an operator token: send `Authorization: Bearer TOKEN` \
                 (make one with `ember-collector token add NAME --role operator`)"
                    .into(),
            ),
            Refusal::Missing { operator: false } => (
                StatusCode::UNAUTHORIZED,
                "reading needs a token: send `Authorization: Bearer TOKEN`, or log in on the \
                 dashboard (make one with `ember-collector token add NAME --role read`)"
                    .into(),
            ),
            Refusal::Invalid => (
                StatusCode::UNAUTHORIZED,
                "unknown token or expired session".into(),
            ),
            Refusal::NotOperator { name } => (
                StatusCode::FORBIDDEN,
                format!("token {name:?} may only read; this request needs an operator token"),
            ),
        }
    }
}

/// The access policy: the configured tokens and the key that signs dashboard sessions.
pub struct Auth {
    read: ReadAccess,
    tokens: Vec<TokenEntry>,
    key: [u8; 32],
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("read", &self.read)
            .field("tokens", &self.tokens)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Paths anyone may `GET`: the dashboard page (it shows the login form), health and the API's
/// description.
fn public(path: &str) -> bool {
    matches!(path, "/" | "/api/health" | "/api/openapi.json")
}

impl Auth {
    /// The policy with a fresh random session key.
    pub fn new(read: ReadAccess, tokens: Vec<TokenEntry>) -> Result<Auth, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)?;
        Ok(Auth::with_key(read, tokens, key))
    }

    /// The policy with a given session key (tests).
    pub fn with_key(read: ReadAccess, tokens: Vec<TokenEntry>, key: [u8; 32]) -> Auth {
        Auth { read, tokens, key }
    }

    /// The configured token `token` is, if any: its name and role. Compares the hash with every
    /// entry in constant time.
    pub fn verify(&self, token: &str) -> Option<(&str, Role)> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let presented = TokenHash::of(token);
        let mut found = None;
        for entry in &self.tokens {
            let same: bool = presented.0.ct_eq(&entry.hash.0).into();
            if same && found.is_none() {
                found = Some((entry.name.as_str(), entry.role));
            }
        }
        found
    }

    fn mac(&self, expires_ms: u64, name: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("ember-session\n{expires_ms}\n{name}").as_bytes());
        mac
    }

    /// A session cookie's value for reader `name`, valid until `now_ms + SESSION_MS`.
    pub fn session(&self, name: &str, now_ms: u64) -> String {
        let expires = now_ms.saturating_add(SESSION_MS);
        let tag = self.mac(expires, name).finalize().into_bytes();
        format!("{expires}.{}.{name}", hex(&tag))
    }

    /// The reader a session cookie's value names, if it is signed by this process and current.
    pub fn check_session(&self, value: &str, now_ms: u64) -> Option<String> {
        let mut parts = value.splitn(3, '.');
        let expires: u64 = parts.next()?.parse().ok()?;
        let tag = parts.next()?;
        let name = parts.next()?;
        if expires <= now_ms || tag.len() != 64 {
            return None;
        }
        let tag = TokenHash::from_hex(tag)?;
        self.mac(expires, name).verify_slice(&tag.0).ok()?;
        Some(name.to_string())
    }

    /// Decides a request from its method, path, bearer token and session cookie.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        bearer: Option<&str>,
        session: Option<&str>,
        now_ms: u64,
    ) -> Decision {
        let reading = *method == Method::GET || *method == Method::HEAD;
        let under_api = path == "/api" || path.starts_with("/api/");
        if !reading && under_api {
            // Commands and changes: an operator's bearer token, nothing else.
            return match bearer.map(|t| self.verify(t)) {
                None => Decision::Refused(Refusal::Missing { operator: true }),
                Some(None) => Decision::Refused(Refusal::Invalid),
                Some(Some((name, Role::Operator))) => Decision::Operator(name.to_string()),
                Some(Some((name, Role::Read))) => Decision::Refused(Refusal::NotOperator {
                    name: name.to_string(),
                }),
            };
        }
        // A wrong token is refused even where it is not needed: it is a misconfigured client.
        if let Some(token) = bearer {
            return match self.verify(token) {
                None => Decision::Refused(Refusal::Invalid),
                Some((name, Role::Read)) => Decision::Reader(name.to_string()),
                Some((name, Role::Operator)) => Decision::Operator(name.to_string()),
            };
        }
        let needs_read = reading && (under_api || path == "/metrics") && !public(path);
        if !needs_read || self.read == ReadAccess::Open {
            return Decision::Open;
        }
        match session.map(|s| self.check_session(s, now_ms)) {
            Some(Some(name)) => Decision::Reader(name),
            Some(None) => Decision::Refused(Refusal::Invalid),
            None => Decision::Refused(Refusal::Missing { operator: false }),
        }
    }
}

/// The bearer token of an `Authorization` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

fn refused(r: &Refusal) -> Response {
    let (status, reason) = r.status_and_reason();
    let mut response = (status, axum::Json(json!({ "error": reason }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The middleware: applies [`Auth::decide`] to every request, and puts [`Operator`] into the
/// extensions of an operator's requests.
pub async fn guard(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let decision = auth.decide(
        req.method(),
        req.uri().path(),
        bearer(req.headers()),
        session_cookie(req.headers()),
        crate::now_ms(),
    );
    match decision {
        Decision::Refused(r) => {
            // Never the token itself: only what was refused and why.
            tracing::warn!(
                "HTTP {} {} refused: {}",
                req.method(),
                req.uri().path(),
                r.status_and_reason().1
            );
            refused(&r)
        }
        Decision::Operator(name) => {
            let command = !(req.method() == Method::GET || req.method() == Method::HEAD);
            if command {
                tracing::info!(
                    "HTTP {} {} by operator {name:?}",
                    req.method(),
                    req.uri().path()
                );
            }
            req.extensions_mut().insert(Operator { name });
            next.run(req).await
        }
        Decision::Open | Decision::Reader(_) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(read: ReadAccess) -> Auth {
        Auth::with_key(
            read,
            vec![
                TokenEntry {
                    name: "viewer".into(),
                    role: Role::Read,
                    hash: TokenHash::of("ember_read"),
                },
                TokenEntry {
                    name: "alice".into(),
                    role: Role::Operator,
                    hash: TokenHash::of("ember_op"),
                },
            ],
            [7; 32],
        )
    }

    #[test]
    fn hashes_are_sha256_in_hex_and_read_back() {
        // SHA-256("abc"), FIPS 180-2's example.
        let h = TokenHash::of("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(TokenHash::from_hex("ba78"), None);
        assert_eq!(TokenHash::from_hex(&"zz".repeat(32)), None);
        assert_eq!(TokenHash::from_hex(&"é".repeat(32)), None);
        assert_eq!(format!("{h:?}"), "sha256:ba7816bf…");
    }

    #[test]
    fn tokens_verify_by_hash_only() {
        let a = auth(ReadAccess::Token);
        assert_eq!(a.verify("ember_read"), Some(("viewer", Role::Read)));
        assert_eq!(a.verify("ember_op"), Some(("alice", Role::Operator)));
        assert_eq!(a.verify("ember_op "), None);
        assert_eq!(a.verify(""), None);
        assert_eq!(a.verify(&"x".repeat(10_000)), None);
        // The hash itself is not a token.
        assert_eq!(a.verify(&TokenHash::of("ember_op").to_hex()), None);
    }

    #[test]
    fn generated_tokens_are_new_and_verify() {
        let t1 = generate_token().unwrap();
        let t2 = generate_token().unwrap();
        assert_ne!(t1, t2);
        assert_eq!(t1.len(), 6 + 64);
        assert!(t1.starts_with("ember_"));
        let lines = config_lines("bob", Role::Operator, &t1);
        assert!(!lines.contains(&t1), "the token itself is never stored");
        assert!(lines.contains(&TokenHash::of(&t1).to_hex()));
    }

    #[test]
    fn sessions_are_signed_and_expire() {
        let a = auth(ReadAccess::Token);
        let s = a.session("viewer", 1000);
        assert_eq!(a.check_session(&s, 1000), Some("viewer".into()));
        assert_eq!(a.check_session(&s, 1000 + SESSION_MS), None, "expired");
        let forged = s.replace("viewer", "alice");
        assert_eq!(a.check_session(&forged, 1000), None);
        let other = Auth::with_key(ReadAccess::Token, vec![], [8; 32]);
        assert_eq!(other.check_session(&s, 1000), None, "another process's key");
        for junk in ["", "1", "x.y.z", "99999999999999.00.viewer", "."] {
            assert_eq!(a.check_session(junk, 0), None, "{junk:?}");
        }
    }

    #[test]
    fn the_policy() {
        use Decision::*;
        let get = Method::GET;
        let post = Method::POST;
        let del = Method::DELETE;
        let check = |a: &Auth, m: &Method, path: &str, bearer: Option<&str>, want: Decision| {
            assert_eq!(
                a.decide(m, path, bearer, None, 0),
                want,
                "{m} {path} {bearer:?}"
            );
        };
        for read in [ReadAccess::Open, ReadAccess::Token] {
            let a = auth(read);
            // Commands, on every path under /api, need an operator's bearer token.
            for path in [
                "/api/hosts/x/commands",
                "/api/silences",
                "/api/anything",
                "/api",
            ] {
                for m in [&post, &del, &Method::PUT, &Method::PATCH] {
                    check(
                        &a,
                        m,
                        path,
                        None,
                        Refused(Refusal::Missing { operator: true }),
                    );
                    check(&a, m, path, Some("nope"), Refused(Refusal::Invalid));
                    check(
                        &a,
                        m,
                        path,
                        Some("ember_read"),
                        Refused(Refusal::NotOperator {
                            name: "viewer".into(),
                        }),
                    );
                    check(&a, m, path, Some("ember_op"), Operator("alice".into()));
                }
            }
            // A session cookie never commands.
            let s = a.session("viewer", 0);
            assert_eq!(
                a.decide(&post, "/api/x", None, Some(&s), 0),
                Refused(Refusal::Missing { operator: true })
            );
            // Public pages, and the login form's target.
            for path in ["/", "/api/health", "/api/openapi.json"] {
                check(&a, &get, path, None, Open);
            }
            check(&a, &post, "/login", None, Open);
            check(
                &a,
                &get,
                "/api/hosts",
                Some("ember_read"),
                Reader("viewer".into()),
            );
            check(
                &a,
                &get,
                "/metrics",
                Some("ember_op"),
                Operator("alice".into()),
            );
            check(
                &a,
                &get,
                "/api/hosts",
                Some("bad"),
                Refused(Refusal::Invalid),
            );
        }
        let open = auth(ReadAccess::Open);
        let closed = auth(ReadAccess::Token);
        for path in [
            "/api/hosts",
            "/api/events",
            "/api/hosts/a/history",
            "/metrics",
        ] {
            check(&open, &get, path, None, Open);
            check(&open, &Method::HEAD, path, None, Open);
            check(
                &closed,
                &get,
                path,
                None,
                Refused(Refusal::Missing { operator: false }),
            );
            let s = closed.session("viewer", 0);
            assert_eq!(
                closed.decide(&get, path, None, Some(&s), 5),
                Reader("viewer".into())
            );
            assert_eq!(
                closed.decide(&get, path, None, Some("1.2.3"), 5),
                Refused(Refusal::Invalid)
            );
        }
    }

    #[test]
    fn headers_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(
            header::COOKIE,
            "a=b; ember_session=1.2.x; c=d".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some("1.2.x"));
    }
}
