//! The HTTP interface: the JSON API, the live event stream, Prometheus `/metrics` and the
//! OpenAPI document (`docs/openapi.json`, checked against [`ROUTES`] by a test).
//!
//! Every request passes [`auth::guard`](crate::auth::guard) (read access, operator tokens for
//! every non-`GET` under `/api`) and every response gets [`security_headers`].

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Extension;
use axum::{Json, Router};
use ember_wire::HostId;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::alerts::run::Alerting;
use crate::auth::{self, Auth, Operator};
use crate::bridge::Publish;
use crate::commands::{CommandRequest, Commands};
use crate::persist::PersistStatus;
use crate::store::{Event, Store};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Hosts and history.
    pub store: Arc<RwLock<Store>>,
    /// When the collector started.
    pub started: Instant,
    /// The broker's address, for `/api/health`.
    pub mqtt_addr: std::net::SocketAddr,
    /// `embedded` or `external`.
    pub broker: &'static str,
    /// Persistence's health.
    pub persist: Arc<Mutex<PersistStatus>>,
    /// Live events.
    pub events: broadcast::Sender<Event>,
    /// Becomes true when the collector stops: event streams end then.
    pub stopping: watch::Receiver<bool>,
    /// Alerts, silences and webhook delivery.
    pub alerts: Arc<Alerting>,
    /// Commands and the audit log.
    pub commands: Arc<Mutex<Commands>>,
    /// Publications for the ingest thread to send (commands).
    pub outgoing: std::sync::mpsc::Sender<Publish>,
    /// Who may read and command.
    pub auth: Arc<Auth>,
    /// The MQTT gate (embedded broker only).
    pub gate: Option<Arc<crate::gate::Gate>>,
    /// Served over HTTPS: the session cookie is marked `Secure`.
    pub https: bool,
    /// The HTTP connections open, for `/api/health`.
    pub connections: Arc<crate::serve::Stats>,
    /// The `Host` values answered (DNS rebinding).
    pub hosts: Arc<crate::origin::Hosts>,
}

/// Every route: method, path and what it serves. The router is built from this list, and a test
/// checks it against `docs/openapi.json`.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/", "the dashboard"),
    (
        "get",
        "/api/health",
        "status, version, uptime, counters, memory and persistence",
    ),
    ("get", "/api/hosts", "every host"),
    ("get", "/api/hosts/{id}", "one host"),
    (
        "get",
        "/api/hosts/{id}/samples",
        "a host's newest raw samples",
    ),
    (
        "get",
        "/api/hosts/{id}/panel.png",
        "the host's panel as its display shows it",
    ),
    (
        "get",
        "/api/hosts/{id}/history",
        "a host's history by range and resolution",
    ),
    (
        "get",
        "/api/events",
        "live samples and status changes (Server-Sent Events)",
    ),
    ("get", "/api/openapi.json", "this API's OpenAPI document"),
    (
        "get",
        "/api/alerts",
        "firing and pending alerts, silences and webhook delivery",
    ),
    (
        "get",
        "/api/alerts/history",
        "alerts fired and resolved, newest first",
    ),
    ("get", "/api/alerts/silences", "the current silences"),
    (
        "post",
        "/api/alerts/silences",
        "adds a silence (operator token)",
    ),
    (
        "delete",
        "/api/alerts/silences/{id}",
        "removes a silence (operator token)",
    ),
    (
        "get",
        "/api/hosts/{id}/alerts",
        "a host's firing alerts and alert history",
    ),
    ("get", "/api/hosts/{id}/commands", "a host's commands"),
    (
        "post",
        "/api/hosts/{id}/commands",
        "sends a command to a host (operator token)",
    ),
    (
        "get",
        "/api/commands",
        "the audit log: every command, newest first",
    ),
    ("get", "/api/commands/{cmd}", "one command and its result"),
    ("get", "/metrics", "Prometheus metrics"),
    (
        "post",
        "/login",
        "a dashboard session (read access) for a token",
    ),
    ("post", "/logout", "ends the dashboard session"),
];

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The handler of one row of [`ROUTES`]. Every method other than GET changes state, and all of
/// those under `/api` need an operator token ([`auth::guard`]).
fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("get", "/") => get(index),
        ("get", "/api/health") => get(health),
        ("get", "/api/hosts") => get(hosts),
        ("get", "/api/hosts/{id}") => get(host),
        ("get", "/api/hosts/{id}/samples") => get(samples),
        ("get", "/api/hosts/{id}/panel.png") => get(panel),
        ("get", "/api/hosts/{id}/history") => get(history),
        ("get", "/api/events") => get(events),
        ("get", "/api/openapi.json") => get(openapi),
        ("get", "/api/alerts") => get(alerts),
        ("get", "/api/alerts/history") => get(alert_history),
        ("get", "/api/alerts/silences") => get(silences),
        ("post", "/api/alerts/silences") => post(add_silence),
        ("delete", "/api/alerts/silences/{id}") => delete(remove_silence),
        ("get", "/api/hosts/{id}/alerts") => get(host_alerts),
        ("get", "/api/hosts/{id}/commands") => get(host_commands),
        ("post", "/api/hosts/{id}/commands") => post(send_command),
        ("get", "/api/commands") => get(commands),
        ("get", "/api/commands/{cmd}") => get(command),
        ("get", "/metrics") => get(metrics),
        ("post", "/login") => post(login),
        ("post", "/logout") => post(logout),
        _ => get(not_found),
    }
}

/// [`ROUTES`] grouped by path, in the table's order: each path's methods in one
/// [`MethodRouter`] (axum wants one per path).
fn method_routers() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let mut out: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for (method, path, _) in ROUTES {
        let h = handler(method, path);
        match out.iter_mut().find(|(p, _)| p == path) {
            Some((_, m)) => *m = std::mem::take(m).merge(h),
            None => out.push((path, h)),
        }
    }
    out
}

/// The routes, behind the access check and with the security headers. Every route is added
/// before the layers, so that none escapes them: add new routes to [`ROUTES`].
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    let hosts = state.hosts.clone();
    method_routers()
        .into_iter()
        .fold(Router::new(), |r, (path, methods)| r.route(path, methods))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            crate::serve::BODY_TIMEOUT,
            crate::serve::body_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, auth::guard))
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::origin::check_host,
        ))
        .layer(axum::middleware::map_response(security_headers))
}

/// The Content-Security-Policy: the dashboard's one inline script and one inline style are
/// allowed by their SHA-256, nothing else inline; data only from this origin; no framing.
pub fn content_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let between = |open: &str, close: &str| -> &'static str {
            let start = DASHBOARD.find(open).map(|i| i + open.len()).unwrap_or(0);
            let end = DASHBOARD[start..]
                .find(close)
                .map(|i| start + i)
                .unwrap_or(start);
            &DASHBOARD[start..end]
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            csp_hash(between("<script>", "</script>")),
            csp_hash(between("<style>", "</style>")),
        )
    })
}

/// `'sha256-BASE64'`: a CSP source that allows the inline element whose text is `text`.
fn csp_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(text.as_bytes());
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(out, "{}", B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("'sha256-{out}'")
}

/// Adds the security headers to every response (the dashboard, the API, errors).
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let csp = HeaderValue::from_static(content_security_policy());
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Body of `POST /login`.
#[derive(Deserialize)]
struct Login {
    token: String,
}

/// A dashboard session for a valid token: an HMAC-signed, `HttpOnly`, `SameSite=Strict` cookie
/// that grants read access (never commands). The token is not logged nor echoed.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    crate::origin::cookie_post(&headers).map_err(|(status, why)| ApiError(status, why))?;
    let Ok(Login { token }) = serde_json::from_slice::<Login>(&body) else {
        return Err(bad(r#"expected {"token": "…"}"#.into()));
    };
    let Some((name, role)) = state.auth.verify(&token) else {
        tracing::warn!("dashboard login refused: unknown token");
        return Err(ApiError(StatusCode::UNAUTHORIZED, "unknown token".into()));
    };
    tracing::info!("dashboard login by {name:?} ({})", role.as_str());
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::SESSION_COOKIE,
        state.auth.session(name, crate::now_ms()),
        auth::SESSION_MS / 1000,
        if state.https { "; Secure" } else { "" }
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "name": name, "access": "read" })),
    )
        .into_response())
}

/// Ends the dashboard session (clears the cookie); from the dashboard's origin only, as
/// `/login`.
async fn logout(headers: HeaderMap) -> Response {
    if let Err((status, why)) = crate::origin::same_origin(&headers) {
        return ApiError(status, why).into_response();
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        auth::SESSION_COOKIE
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// An API error: a status and a reason, served as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(reason: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, reason)
}

fn host_id(id: &str) -> Result<HostId, ApiError> {
    HostId::new(id).map_err(|e| bad(format!("{e}: {id:?}")))
}

fn no_host(id: &HostId) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no host {id}"))
}

fn read(state: &AppState) -> std::sync::RwLockReadGuard<'_, Store> {
    Store::read_lock(&state.store)
}

fn persist(state: &AppState) -> PersistStatus {
    state
        .persist
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The dashboard: one page, its style and script inlined, built into the binary.
pub const DASHBOARD: &str = concat!(
    include_str!("dashboard/head.html"),
    include_str!("dashboard/app.css"),
    include_str!("dashboard/body.html"),
    include_str!("dashboard/app.js"),
    include_str!("dashboard/tail.html"),
);

async fn index() -> Html<&'static str> {
    Html(DASHBOARD)
}

/// The host's panel as its display shows it (the overview screen, drawn by the same code as on
/// the board), from the newest sample.
async fn panel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let png = {
        let store = read(&state);
        let summary = store
            .summary(&id, crate::now_ms())
            .ok_or_else(|| no_host(&id))?;
        let sample = summary
            .latest()
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no sample from {id} yet")))?;
        let ip = summary.info().and_then(|i| {
            i.interfaces
                .iter()
                .flat_map(|n| n.ipv4.iter())
                .find(|a| a[0] != 127)
                .copied()
        });
        let mut fb = ember_display::framebuffer::Mono128x64::new();
        let model = ember_display::overview::Overview::from_sample(id.as_str(), ip, &sample);
        // Drawing into a framebuffer cannot fail.
        let _ = ember_display::overview::draw(&model, &mut fb);
        ember_display::png::encode_png(&fb, 3)
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        png,
    )
        .into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    let persistence = persist(&state);
    let store = read(&state);
    let memory = store.memory();
    let spill = store.spill_stats();
    // The disk refuses writes: the log's and snapshots' (`persistence`), or the spill's (its
    // blocks then stay in memory).
    let failing = spill.as_ref().is_some_and(|s| s.failing);
    let status = if persistence.ok && !failing {
        "ok"
    } else {
        "degraded"
    };
    Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "hosts": store.host_count(),
        "mqtt": state.mqtt_addr.to_string(),
        "broker": state.broker,
        "ingest": store.stats(),
        "ingest_rate": store.ingest_rate(),
        "connections": state.gate.as_ref().map(|g| g.stats()),
        "http": state.connections.view(),
        "descriptors": crate::descriptors::now(),
        "memory": {
            "raw_samples": memory.raw_samples,
            "raw_bytes": memory.raw_bytes,
            "tier_buckets": memory.tier_buckets,
            "tier_bytes": memory.tier_bytes,
            "raw_spilled_bytes": memory.raw_spilled_bytes,
            "tier_spilled_bytes": memory.tier_spilled_bytes,
            "bytes_per_sample": memory.bytes_per_sample(),
        },
        "spill": spill,
        "persistence": persistence,
    }))
    .into_response()
}

/// A host's summary with `tags`, its tags from `[alerts.tags]`.
#[derive(serde::Serialize)]
struct Tagged<'a> {
    #[serde(flatten)]
    summary: crate::store::HostSummary<'a>,
    tags: Vec<String>,
}

/// The tags of each host, from `[alerts.tags]` as configured now (copied: the alert thread
/// holds the engine while it evaluates).
fn tagger(state: &AppState) -> impl Fn(&str) -> Vec<String> {
    let tags = state.alerts.engine().config().tags.clone();
    move |host| crate::alerts::rules::tags_in(&tags, host)
}

/// JSON written straight from the store, not built as a `serde_json::Value` first: for
/// 10,000 hosts that tree took about 150 MB for a moment, under the store's lock (issue #9).
fn json_bytes(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write JSON: {e}"),
        )
        .into_response(),
    }
}

/// Hosts `/api/hosts` writes per hold of the store's lock (a host's JSON is about 3 KB).
const HOSTS_CHUNK: usize = 64;

/// Every host's summary, ordered by id, written out as it is read, [`HOSTS_CHUNK`] hosts per
/// hold of the store's lock. At 10,000 hosts the list is 30 MB of JSON: made whole before the
/// first byte went out, it raised the collector's RSS by as much for a moment (issue #9), and
/// ingest waited for the store while it was made. Each host is as it was when its share was
/// read; a host that appears meanwhile is listed if its id sorts after the share being written.
async fn hosts(State(state): State<AppState>) -> Response {
    let tags = tagger(&state);
    let now_ms = crate::now_ms();
    // The state: after which host to go on, or `None` once the list is closed.
    let chunks = futures_util::stream::unfold(Some(None), move |after: Option<Option<HostId>>| {
        let chunk = after.map(|after| {
            let mut buf = Vec::new();
            if after.is_none() {
                buf.push(b'[');
            }
            let store = read(&state);
            let list = store.summaries_after(after.as_ref(), HOSTS_CHUNK, now_ms);
            let done = list.len() < HOSTS_CHUNK;
            let last = list.last().map(|h| h.id.clone());
            for (i, summary) in list.into_iter().enumerate() {
                // A comma before every host but the list's first.
                if i > 0 || after.is_some() {
                    buf.push(b',');
                }
                let tags = tags(summary.id.as_str());
                if let Err(e) = serde_json::to_writer(&mut buf, &Tagged { summary, tags }) {
                    // (Cannot happen: every key is a string.) The response ends short, which a
                    // client sees as JSON that does not parse.
                    return (Err(std::io::Error::other(e)), None);
                }
            }
            if done {
                buf.push(b']');
                (Ok(Bytes::from(buf)), None)
            } else {
                (Ok(Bytes::from(buf)), Some(last))
            }
        });
        std::future::ready(chunk)
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

async fn host(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let tags = tagger(&state);
    let store = read(&state);
    let summary = store
        .summary(&id, crate::now_ms())
        .ok_or_else(|| no_host(&id))?;
    Ok(json_bytes(&Tagged {
        tags: tags(id.as_str()),
        summary,
    }))
}

async fn samples(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let q = crate::query::samples(query.as_deref().unwrap_or("")).map_err(bad)?;
    let store = read(&state);
    let samples = store
        .samples(&id, q.after_seq, q.limit)
        .ok_or_else(|| no_host(&id))?;
    Ok(Json(json!({ "host": id, "samples": samples })).into_response())
}

async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let store = read(&state);
    let q = crate::query::history(
        query.as_deref().unwrap_or(""),
        crate::now_ms(),
        &store.config().tiers,
    )
    .map_err(bad)?;
    let (from, to) = (q.from, q.to);
    let h = store
        .history(&id, from, to, q.resolution, &q.series)
        .ok_or_else(|| no_host(&id))?;
    Ok(Json(json!({
        "host": id,
        "from": from,
        "to": to,
        "resolution": h.resolution,
        "step_ms": h.step_ms,
        "series": h.series,
    }))
    .into_response())
}

fn sse_event(e: &Event) -> SseEvent {
    let (name, data) = match e {
        Event::Sample { host, sample } => ("sample", json!({ "host": host, "sample": &**sample })),
        Event::Status {
            host,
            status,
            previous,
        } => (
            "status",
            json!({ "host": host, "status": status, "previous": previous }),
        ),
        Event::Info { host } => ("info", json!({ "host": host })),
    };
    SseEvent::default().event(name).data(data.to_string())
}

fn event_host(e: &Event) -> &HostId {
    match e {
        Event::Sample { host, .. } | Event::Status { host, .. } | Event::Info { host } => host,
    }
}

async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let only = crate::query::events(query.as_deref().unwrap_or("")).map_err(bad)?;
    let rx = state.events.subscribe();
    // First, every host's current status, so that a client starts from the whole picture.
    let hello = {
        let store = read(&state);
        let hosts: Vec<_> = store
            .summaries(crate::now_ms())
            .into_iter()
            .filter(|h| only.is_empty() || only.contains(h.id))
            .map(|h| json!({ "host": h.id, "status": h.status, "last_seen_ms": h.last_seen_ms }))
            .collect();
        SseEvent::default()
            .event("hosts")
            .data(json!(hosts).to_string())
    };
    struct S {
        rx: broadcast::Receiver<Event>,
        stopping: watch::Receiver<bool>,
        only: Vec<HostId>,
        hello: Option<SseEvent>,
    }
    let init = S {
        rx,
        stopping: state.stopping.clone(),
        only,
        hello: Some(hello),
    };
    let stream = futures_util::stream::unfold(init, |mut s| async move {
        if let Some(h) = s.hello.take() {
            return Some((Ok(h), s));
        }
        loop {
            let next = tokio::select! {
                e = s.rx.recv() => e,
                _ = s.stopping.wait_for(|v| *v) => return None,
            };
            match next {
                Ok(e) => {
                    if s.only.is_empty() || s.only.contains(event_host(&e)) {
                        return Some((Ok(sse_event(&e)), s));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let e = SseEvent::default()
                        .event("lagged")
                        .data(json!({ "missed": n }).to_string());
                    return Some((Ok(e), s));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let persistence = persist(&state);
    let store = read(&state);
    let extra = crate::prom::Extra {
        uptime_s: state.started.elapsed().as_secs(),
        event_subscribers: state.events.receiver_count(),
        gate: state.gate.as_ref().map(|g| g.stats()),
    };
    let text = crate::prom::render(&store, &persistence, extra, crate::now_ms());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn list_query(query: Option<String>) -> Result<(Option<HostId>, usize), ApiError> {
    crate::query::list(query.as_deref().unwrap_or("")).map_err(bad)
}

fn commands_lock(state: &AppState) -> std::sync::MutexGuard<'_, Commands> {
    state.commands.lock().unwrap_or_else(|e| e.into_inner())
}

async fn alerts(State(state): State<AppState>) -> Response {
    let now = crate::now_ms();
    let delivery = state.alerts.notifier.stats();
    let e = state.alerts.engine();
    let c = e.config();
    let maintenance: Vec<_> = c
        .maintenance
        .iter()
        .map(|m| json!({ "name": m.name, "open": m.open_at(now) }))
        .collect();
    let rules: Vec<_> = c
        .rules
        .iter()
        .map(|r| json!({ "name": r.name, "severity": r.severity }))
        .collect();
    Json(json!({
        "enabled": c.enabled,
        "active": e.active(now),
        "pending": e.pending(now),
        "silences": e.silences(now),
        "maintenance": maintenance,
        "rules": rules,
        "webhooks": c.webhooks.len(),
        "delivery": delivery,
    }))
    .into_response()
}

async fn alert_history(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (host, limit) = list_query(query)?;
    let history = state.alerts.engine().history(host.as_ref(), limit);
    Ok(Json(json!({ "history": history })).into_response())
}

async fn host_alerts(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    if read(&state).summary(&id, crate::now_ms()).is_none() {
        return Err(no_host(&id));
    }
    let now = crate::now_ms();
    let e = state.alerts.engine();
    let active: Vec<_> = e.active(now).into_iter().filter(|a| a.host == id).collect();
    Ok(Json(json!({
        "host": id,
        "active": active,
        "history": e.history(Some(&id), 50),
    }))
    .into_response())
}

async fn silences(State(state): State<AppState>) -> Response {
    let list = state.alerts.engine().silences(crate::now_ms());
    Json(json!({ "silences": list })).into_response()
}

/// Body of `POST /api/alerts/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    /// Only this rule.
    rule: Option<String>,
    /// Only this host (or `prefix*`).
    host: Option<String>,
    /// How long, e.g. `2h`.
    duration: String,
    /// Why.
    #[serde(default)]
    comment: String,
}

async fn add_silence(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    body: Result<Json<SilenceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| {
        bad(format!(
            "{e} (expected {{\"duration\": \"2h\", \"rule\"?: NAME, \"host\"?: ID or PREFIX*, \"comment\"?: TEXT}})"
        ))
    })?;
    let d = humantime::parse_duration(&req.duration)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(366 * 86_400))
        .ok_or_else(|| {
            bad(format!(
                "`duration` must be a time span up to a year such as `30m` or `2h`, got {:?}",
                req.duration
            ))
        })?;
    let now = crate::now_ms();
    let mut e = state.alerts.engine();
    if let Some(r) = &req.rule {
        if !e.config().rules.iter().any(|x| &x.name == r) {
            return Err(bad(format!("no rule {r:?} (GET /api/alerts lists them)")));
        }
    }
    let s = e.silence(
        req.rule,
        req.host,
        now + d.as_millis() as u64,
        req.comment,
        operator.name,
        now,
    );
    drop(e);
    state.alerts.save_silences();
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn remove_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| bad(format!("silence ids are numbers, got {id:?}")))?;
    let removed = state.alerts.engine().unsilence(id);
    if removed {
        state.alerts.save_silences();
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no silence {id}")))
    }
}

async fn send_command(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(operator): Extension<Operator>,
    body: Result<Json<CommandRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let Json(req) = body.map_err(|e| {
        bad(format!(
            "{e} (expected {{\"action\": \"identify\"|\"next-page\"|\"previous-page\"|\"brightness\"|\"republish-inventory\"|\"named\", \"value\"?: 0-255, \"name\"?: NAME, \"timeout_ms\"?: MS}})"
        ))
    })?;
    let now = crate::now_ms();
    match read(&state).summary(&id, now).map(|h| h.status) {
        None => return Err(no_host(&id)),
        Some(crate::store::HostStatus::Offline) => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("{id} is offline: the command could not arrive"),
            ))
        }
        Some(_) => {}
    }
    let (record, payload) = commands_lock(&state)
        .request(id.clone(), &req, &operator.name, now)
        .map_err(bad)?;
    let topic = ember_wire::topic::topic(&id, ember_wire::topic::Kind::Command).to_string();
    let sent = state.outgoing.send(Publish {
        topic,
        payload,
        retain: false,
    });
    if sent.is_err() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is stopping".into(),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(record)).into_response())
}

async fn host_commands(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let (_, limit) = list_query(query)?;
    let list = commands_lock(&state).list(Some(&id), limit);
    Ok(Json(json!({ "host": id, "commands": list })).into_response())
}

async fn commands(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (host, limit) = list_query(query)?;
    let list = commands_lock(&state).list(host.as_ref(), limit);
    Ok(Json(json!({ "commands": list })).into_response())
}

async fn command(
    State(state): State<AppState>,
    Path(cmd): Path<String>,
) -> Result<Response, ApiError> {
    let n: u32 = cmd
        .parse()
        .map_err(|_| bad(format!("command ids are numbers, got {cmd:?}")))?;
    let c = commands_lock(&state);
    let r = c
        .get(n)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no command {n}")))?;
    Ok(Json(r).into_response())
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The state the routes get, over `store`, with a fresh data directory named after `name`;
    /// and what the routes publish.
    fn app_state(
        store: Store,
        config: &Config,
        name: &str,
    ) -> (
        AppState,
        std::sync::mpsc::Receiver<Publish>,
        std::path::PathBuf,
    ) {
        let dir = std::env::temp_dir().join(format!("ember-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (_, alerts) = crate::alerts::run::Evaluator::start(config.alerts.clone(), &dir);
        let (outgoing, sent) = std::sync::mpsc::channel();
        let state = AppState {
            store: Arc::new(RwLock::new(store)),
            started: Instant::now(),
            mqtt_addr: "127.0.0.1:1883".parse().unwrap(),
            broker: "embedded",
            persist: Arc::default(),
            events: broadcast::channel(4).0,
            stopping: watch::channel(false).1,
            alerts,
            commands: Arc::new(Mutex::new(Commands::open(&dir))),
            outgoing,
            auth: Arc::new(Auth::with_key(auth::ReadAccess::Open, Vec::new(), [7; 32])),
            gate: None,
            https: false,
            connections: crate::serve::Stats::new(crate::serve::MAX_CONNECTIONS),
            hosts: Arc::new(crate::origin::Hosts::new(true, Vec::new())),
        };
        (state, sent, dir)
    }

    /// A disk that refuses the spill's writes (full) makes `/api/health` say `degraded`, as
    /// one that refuses the log's does, and `ok` again once a write works.
    #[tokio::test]
    async fn health_is_degraded_while_spill_writes_fail() {
        use crate::spill::MemSegment;
        use crate::store::StoreConfig;
        use ember_wire::{Envelope, Message, Sample};
        use std::sync::atomic::Ordering::Relaxed;
        let config = crate::config::RawConfig::default().validate().unwrap();
        let (spill, fail) = MemSegment::spill(1 << 20);
        let spill = Arc::new(spill.with_retry_after(Duration::ZERO));
        let mut store_config = StoreConfig::from_config(&config);
        store_config.spill = Some(spill.clone());
        let mut store = Store::new(store_config);
        fail.store(true, Relaxed);
        let now = crate::now_ms();
        let mut buf = [0u8; ember_wire::MAX_ENCODED_LEN];
        let mut feed = |store: &mut Store, seqs: std::ops::Range<u64>| {
            for seq in seqs {
                let s = Sample {
                    seq,
                    timestamp_ms: now + seq,
                    ..Sample::default()
                };
                let bytes = Envelope::new(HostId::new("pi").unwrap(), Message::Sample(s))
                    .encode(&mut buf)
                    .unwrap()
                    .to_vec();
                store
                    .ingest("ember/v1/pi/sample", &bytes, now + seq)
                    .unwrap();
            }
        };
        // A block of 32 (or the first, shorter) is sealed and its write fails.
        feed(&mut store, 1..40);
        let (state, _, dir) = app_state(store, &config, "spill-health");
        // The log's writes work: only the spill's fail.
        state.persist.lock().unwrap().ok = true;
        let health = |state: &AppState| {
            let state = state.clone();
            async move {
                let body = super::health(State(state)).await.into_body();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
            }
        };
        let h = health(&state).await;
        assert_eq!(h["status"], "degraded", "{h}");
        assert_eq!(h["spill"]["failing"], true);
        assert!(h["spill"]["errors"].as_u64().unwrap() >= 1);
        // The disk has room again: the next sealed block goes out, and health is back.
        fail.store(false, Relaxed);
        feed(&mut state.store.write().unwrap(), 40..80);
        let h = health(&state).await;
        assert_eq!(h["status"], "ok", "{h}");
        assert_eq!(h["spill"]["failing"], false);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue #20: `/api/health` reports the descriptors in use and their limit, and the HTTP
    /// connections; every field it serves is in docs/openapi.json's `Health`, the required ones
    /// always there.
    #[tokio::test]
    async fn issue_20_health_reports_descriptors_and_matches_openapi() {
        let config = crate::config::RawConfig::default().validate().unwrap();
        let store = Store::new(crate::store::StoreConfig::from_config(&config));
        let (state, _, dir) = app_state(store, &config, "fd-health");
        let body = super::health(State(state)).await.into_body();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let h: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let open = h["descriptors"]["open"].as_u64().expect("descriptors.open");
        assert!(open >= 3, "{h}");
        // A number (another test may raise it meanwhile), or null for unlimited.
        let limit = &h["descriptors"]["limit"];
        assert!(limit.is_null() || limit.as_u64() >= Some(open), "{h}");
        assert_eq!(h["http"]["limit"], crate::serve::MAX_CONNECTIONS, "{h}");
        assert_eq!(h["http"]["open"], 0, "{h}");
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let schema = &doc["components"]["schemas"]["Health"];
        for key in h.as_object().unwrap().keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "{key} is not in the Health schema"
            );
        }
        for key in schema["required"].as_array().unwrap() {
            assert!(h.get(key.as_str().unwrap()).is_some(), "{key} missing");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `/api/hosts` is written a share of hosts at a time (issue #9): whatever the number of
    /// hosts, around and across the shares' edges, it is the one JSON array it was when it was
    /// made whole, every host once, in order, with its tags.
    #[tokio::test]
    async fn the_hosts_list_streamed_is_the_list_made_whole() {
        use crate::store::StoreConfig;
        use ember_wire::{Envelope, Message, Sample};
        let config = crate::config::RawConfig::default().validate().unwrap();
        let now = crate::now_ms();
        for n in [
            0,
            1,
            HOSTS_CHUNK - 1,
            HOSTS_CHUNK,
            HOSTS_CHUNK + 1,
            2 * HOSTS_CHUNK + 7,
        ] {
            let mut store = Store::new(StoreConfig::from_config(&config));
            let mut buf = [0u8; ember_wire::MAX_ENCODED_LEN];
            for i in (0..n).rev() {
                let host = format!("pi-{i:03}");
                let mut s = Sample {
                    seq: 1,
                    timestamp_ms: now,
                    ..Sample::default()
                };
                s.cpu.busy = i as u16;
                let sample = Envelope::new(HostId::new(&host).unwrap(), Message::Sample(s))
                    .encode(&mut buf)
                    .unwrap()
                    .to_vec();
                store
                    .ingest(&format!("ember/v1/{host}/sample"), &sample, now)
                    .unwrap();
            }
            let (state, _, dir) = app_state(store, &config, "hosts");
            let body = hosts(State(state.clone())).await.into_body();
            let got: serde_json::Value =
                serde_json::from_slice(&axum::body::to_bytes(body, usize::MAX).await.unwrap())
                    .expect("one JSON document");
            let tags = tagger(&state);
            let store = read(&state);
            let whole: Vec<Tagged> = store
                .summaries(now)
                .into_iter()
                .map(|summary| Tagged {
                    tags: tags(summary.id.as_str()),
                    summary,
                })
                .collect();
            let whole = serde_json::to_value(&whole).unwrap();
            drop(store);
            let ids: Vec<&str> = got
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap())
                .collect();
            let expected: Vec<String> = (0..n).map(|i| format!("pi-{i:03}")).collect();
            assert_eq!(ids, expected, "{n} hosts");
            assert_eq!(got, whole, "{n} hosts");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Issue #7 with #8: the audit log's "who" is the operator that `auth::guard` put into the
    /// request's extensions (the name of the operator token), for commands and silences.
    #[tokio::test]
    async fn the_audit_log_records_the_operator_from_the_request() {
        use crate::store::StoreConfig;
        use ember_wire::{Envelope, Message, Status};
        let config = crate::config::RawConfig::default().validate().unwrap();
        let mut store = Store::new(StoreConfig::from_config(&config));
        let mut buf = [0u8; ember_wire::MAX_ENCODED_LEN];
        let online = Envelope::new(
            HostId::new("pi").unwrap(),
            Message::Status(Status::Online { interval_ms: 1000 }),
        )
        .encode(&mut buf)
        .unwrap()
        .to_vec();
        store
            .ingest("ember/v1/pi/status", &online, crate::now_ms())
            .unwrap();
        let (state, sent, dir) = app_state(store, &config, "actor");
        let req = |json: &str| Ok(Json(serde_json::from_str(json).unwrap()));
        let operator = |name: &str| {
            Extension(Operator {
                name: name.to_string(),
            })
        };
        let r = send_command(
            State(state.clone()),
            Path("pi".into()),
            operator("alice"),
            req(r#"{"action":"identify"}"#),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let published = sent.try_recv().unwrap();
        assert_eq!(published.topic, "ember/v1/pi/cmd");
        send_command(
            State(state.clone()),
            Path("pi".into()),
            operator("bob"),
            req(r#"{"action":"next-page"}"#),
        )
        .await
        .unwrap();
        let log = commands_lock(&state).list(None, 10);
        assert_eq!(log[0].actor, "bob");
        assert_eq!(log[1].actor, "alice");
        let silence = add_silence(
            State(state.clone()),
            operator("alice"),
            Ok(Json(SilenceRequest {
                rule: None,
                host: Some("pi".into()),
                duration: "1h".into(),
                comment: String::new(),
            })),
        )
        .await
        .unwrap();
        assert_eq!(silence.status(), StatusCode::CREATED);
        assert_eq!(
            state.alerts.engine().silences(crate::now_ms())[0].created_by,
            "alice"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// axum gets one MethodRouter per path (two `route` calls on a path would conflict): the
    /// rows of a path with several methods are folded into one, in the table's order.
    #[test]
    fn one_method_router_per_path() {
        let grouped: Vec<&str> = method_routers().into_iter().map(|(p, _)| p).collect();
        let mut distinct: Vec<&str> = Vec::new();
        for (_, path, _) in ROUTES {
            if !distinct.contains(path) {
                distinct.push(path);
            }
        }
        assert_eq!(grouped, distinct);
        assert!(
            grouped.len() < ROUTES.len(),
            "some path has several methods"
        );
        // The routes build as `router` folds them (axum panics on a conflicting route).
        let _ = method_routers()
            .into_iter()
            .fold(Router::<AppState>::new(), |r, (path, m)| r.route(path, m));
    }

    /// The OpenAPI document lists exactly the routes served, with their methods.
    #[test]
    fn openapi_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<(&str, &str)> = paths
            .iter()
            .flat_map(|(p, item)| {
                let methods = item.as_object().expect("a path item");
                methods
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(move |m| (m.as_str(), p.as_str()))
            })
            .collect();
        let mut served: Vec<(&str, &str)> = ROUTES.iter().map(|(m, p, _)| (*m, *p)).collect();
        documented.sort_unstable();
        served.sort_unstable();
        assert_eq!(
            documented, served,
            "docs/openapi.json and http::ROUTES differ"
        );
        for (path, item) in paths {
            // Every {parameter} in the path is declared, for every method.
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for seg in path.split('/').filter(|s| s.starts_with('{')) {
                    let name = seg.trim_matches(|c| c == '{' || c == '}');
                    let params = op["parameters"].as_array().cloned().unwrap_or_default();
                    let declared = params.iter().any(|p| {
                        let p = if let Some(r) = p.get("$ref") {
                            let key = r.as_str().unwrap().rsplit('/').next().unwrap();
                            &doc["components"]["parameters"][key]
                        } else {
                            p
                        };
                        p["name"] == name && p["in"] == "path"
                    });
                    assert!(declared, "{method} {path}: parameter {name} not declared");
                }
            }
        }
    }

    /// CSP hashes are base64 SHA-256; the dashboard's script and style are hashed.
    #[test]
    fn the_csp_allows_exactly_the_dashboards_inline_script_and_style() {
        let csp = content_security_policy();
        // SHA-256 of nothing, as browsers' consoles print it.
        assert_eq!(
            csp_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        // The hashed script is the whole of app.js (so a change to it changes the hash).
        let open = DASHBOARD.find("<script>").unwrap() + "<script>".len();
        let script = &DASHBOARD[open..DASHBOARD.find("</script>").unwrap()];
        assert!(script.contains(include_str!("dashboard/app.js")));
        assert!(csp.contains(&csp_hash(script)), "{csp}");
        assert_eq!(DASHBOARD.matches("<script").count(), 1);
        assert_eq!(DASHBOARD.matches("<style").count(), 1);
        assert!(
            !DASHBOARD.contains(" style=\""),
            "inline style attributes need unsafe-inline"
        );
        assert!(
            !DASHBOARD.contains(" onclick=\""),
            "inline handlers need unsafe-inline"
        );
    }
}
