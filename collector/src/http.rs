//! The HTTP interface: the JSON API, the live event stream, Prometheus `/metrics` and the
//! OpenAPI document (`docs/openapi.json`, checked against [`ROUTES`] by a test).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, MethodRouter};
use axum::Extension;
use axum::{Json, Router};
use ember_wire::HostId;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::alerts::run::Alerting;
use crate::bridge::Publish;
use crate::commands::{Actor, CommandRequest, Commands};
use crate::persist::PersistStatus;
use crate::store::{Event, Resolution, Store};

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
    /// The MQTT gate's connection counters (embedded broker only).
    pub gate: Option<Arc<crate::gate::Gate>>,
}

/// Every route: path and what it serves. The router is built from this list, and a test checks
/// it against `docs/openapi.json`.
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "the dashboard"),
    (
        "/api/health",
        "status, version, uptime, counters, memory and persistence",
    ),
    ("/api/hosts", "every host"),
    ("/api/hosts/{id}", "one host"),
    ("/api/hosts/{id}/samples", "a host's newest raw samples"),
    (
        "/api/hosts/{id}/panel.png",
        "the host's panel as its display shows it",
    ),
    (
        "/api/hosts/{id}/history",
        "a host's history by range and resolution",
    ),
    (
        "/api/events",
        "live samples and status changes (Server-Sent Events)",
    ),
    ("/api/openapi.json", "this API's OpenAPI document"),
    (
        "/api/alerts",
        "firing and pending alerts, silences and webhook delivery",
    ),
    (
        "/api/alerts/history",
        "alerts fired and resolved, newest first",
    ),
    ("/api/alerts/silences", "silences: list (GET), add (POST)"),
    ("/api/alerts/silences/{id}", "remove a silence (DELETE)"),
    (
        "/api/hosts/{id}/alerts",
        "a host's firing alerts and alert history",
    ),
    (
        "/api/hosts/{id}/commands",
        "a host's commands: list (GET), send (POST)",
    ),
    (
        "/api/commands",
        "the audit log: every command, newest first",
    ),
    ("/api/commands/{cmd}", "one command and its result"),
    ("/metrics", "Prometheus metrics"),
];

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

fn handler(path: &str) -> MethodRouter<AppState> {
    match path {
        "/" => get(index),
        "/api/health" => get(health),
        "/api/hosts" => get(hosts),
        "/api/hosts/{id}" => get(host),
        "/api/hosts/{id}/samples" => get(samples),
        "/api/hosts/{id}/panel.png" => get(panel),
        "/api/hosts/{id}/history" => get(history),
        "/api/events" => get(events),
        "/api/openapi.json" => get(openapi),
        "/api/alerts" => get(alerts),
        "/api/alerts/history" => get(alert_history),
        "/api/alerts/silences" => get(silences).post(add_silence),
        "/api/alerts/silences/{id}" => delete(remove_silence),
        "/api/hosts/{id}/alerts" => get(host_alerts),
        "/api/hosts/{id}/commands" => get(host_commands).post(send_command),
        "/api/commands" => get(commands),
        "/api/commands/{cmd}" => get(command),
        "/metrics" => get(metrics),
        _ => get(not_found),
    }
}

/// The HTTP methods served on `path` (the OpenAPI check compares them with the document). Every
/// method other than GET changes state; all of them are under `/api`.
pub fn methods(path: &str) -> &'static [&'static str] {
    match path {
        "/api/alerts/silences" | "/api/hosts/{id}/commands" => &["get", "post"],
        "/api/alerts/silences/{id}" => &["delete"],
        _ => &["get"],
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |r, (path, _)| r.route(path, handler(path)))
        .fallback(not_found)
        .with_state(state)
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
    // A panic while holding the lock cannot leave the store half-changed in a way that matters
    // for reading: serve what is there.
    state.store.read().unwrap_or_else(|e| e.into_inner())
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
            .latest
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no sample from {id} yet")))?;
        let ip = summary.info.and_then(|i| {
            i.interfaces
                .iter()
                .flat_map(|n| n.ipv4.iter())
                .find(|a| a[0] != 127)
                .copied()
        });
        let mut fb = ember_display::framebuffer::Mono128x64::new();
        let model = ember_display::overview::Overview::from_sample(id.as_str(), ip, sample);
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
    let status = if persistence.ok { "ok" } else { "degraded" };
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
        "memory": {
            "raw_samples": memory.raw_samples,
            "raw_bytes": memory.raw_bytes,
            "tier_buckets": memory.tier_buckets,
            "tier_bytes": memory.tier_bytes,
            "bytes_per_sample": memory.bytes_per_sample(),
        },
        "persistence": persistence,
    }))
    .into_response()
}

async fn hosts(State(state): State<AppState>) -> Response {
    let store = read(&state);
    Json(store.summaries(crate::now_ms())).into_response()
}

async fn host(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let store = read(&state);
    let summary = store
        .summary(&id, crate::now_ms())
        .ok_or_else(|| no_host(&id))?;
    Ok(Json(summary).into_response())
}

/// Query of `/api/hosts/{id}/samples`.
#[derive(Debug, Deserialize)]
struct SamplesQuery {
    /// Most samples to return (newest ones); default 300.
    limit: Option<usize>,
    /// Only samples with a higher sequence number.
    after_seq: Option<u64>,
}

async fn samples(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<SamplesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let Query(q) = query.map_err(|e| bad(format!("{e} (allowed: limit=N, after_seq=N)")))?;
    let store = read(&state);
    let samples = store
        .samples(&id, q.after_seq, q.limit.unwrap_or(300))
        .ok_or_else(|| no_host(&id))?;
    Ok(Json(json!({ "host": id, "samples": samples })).into_response())
}

/// Query of `/api/hosts/{id}/history`.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    /// Start, ms since the Unix epoch; default: an hour before `to`.
    from: Option<u64>,
    /// End, ms since the Unix epoch; default: now.
    to: Option<u64>,
    /// `auto` (default), `raw`, or a tier's resolution (`1m`, `15m`).
    resolution: Option<String>,
    /// Comma-separated metrics (`cpu.busy`) or series (`temp|cpu_thermal`); default all.
    series: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let allowed = "allowed: from=MS, to=MS, resolution=auto|raw|<tier>, series=a,b";
    let Query(q) = query.map_err(|e| bad(format!("{e} ({allowed})")))?;
    let to = q.to.unwrap_or_else(crate::now_ms);
    let from = q.from.unwrap_or(to.saturating_sub(3_600_000));
    if from > to {
        return Err(bad(format!("`from` ({from}) is after `to` ({to})")));
    }
    let store = read(&state);
    let tiers = &store.config().tiers;
    let resolution = match q.resolution.as_deref().unwrap_or("auto") {
        "auto" => Resolution::Auto,
        "raw" => Resolution::Raw,
        other => {
            let names: Vec<String> = tiers
                .iter()
                .map(|t| humantime::format_duration(t.resolution).to_string())
                .collect();
            let wanted = humantime::parse_duration(other).ok();
            match tiers.iter().position(|t| Some(t.resolution) == wanted) {
                Some(i) => Resolution::Tier(i),
                None => {
                    return Err(bad(format!(
                        "unknown resolution {other:?}; configured: auto, raw, {}",
                        names.join(", ")
                    )))
                }
            }
        }
    };
    let only: Vec<String> = q
        .series
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let h = store
        .history(&id, from, to, resolution, &only)
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

/// Query of `/api/events`.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// Comma-separated host ids; default every host.
    hosts: Option<String>,
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
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(q) = query.map_err(|e| bad(format!("{e} (allowed: hosts=a,b)")))?;
    let only: Vec<HostId> = q
        .hosts
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(host_id)
        .collect::<Result<_, _>>()?;
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

/// Query of the alert history and the command lists.
#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Only this host.
    host: Option<String>,
    /// Most entries (newest first); default 100.
    limit: Option<usize>,
}

fn list_query(
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(Option<HostId>, usize), ApiError> {
    let Query(q) = query.map_err(|e| bad(format!("{e} (allowed: host=ID, limit=N)")))?;
    let host = q.host.as_deref().map(host_id).transpose()?;
    Ok((host, q.limit.unwrap_or(100).min(10_000)))
}

fn actor(a: Option<Extension<Actor>>) -> String {
    a.map(|Extension(Actor(name))| name)
        .unwrap_or_else(|| "anonymous".into())
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
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
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
    who: Option<Extension<Actor>>,
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
        actor(who),
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
    who: Option<Extension<Actor>>,
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
        .request(id.clone(), &req, &actor(who), now)
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
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = host_id(&id)?;
    let (_, limit) = list_query(query)?;
    let list = commands_lock(&state).list(Some(&id), limit);
    Ok(Json(json!({ "host": id, "commands": list })).into_response())
}

async fn commands(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
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

    /// Issue #7: the audit log's "who" comes from the `Actor` request extension that the
    /// authentication layer sets; without one it is `anonymous`.
    #[tokio::test]
    async fn the_audit_log_records_the_actor_from_the_request() {
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
        let dir = std::env::temp_dir().join(format!("ember-http-actor-{}", std::process::id()));
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
            gate: None,
        };
        let req = |json: &str| Ok(Json(serde_json::from_str(json).unwrap()));
        let alice = Some(Extension(Actor("alice".into())));
        let r = send_command(
            State(state.clone()),
            Path("pi".into()),
            alice.clone(),
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
            None,
            req(r#"{"action":"next-page"}"#),
        )
        .await
        .unwrap();
        let log = commands_lock(&state).list(None, 10);
        assert_eq!(log[0].actor, "anonymous");
        assert_eq!(log[1].actor, "alice");
        let silence = add_silence(
            State(state.clone()),
            alice,
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

    /// The OpenAPI document lists exactly the routes served, each with a `get`.
    #[test]
    fn openapi_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut served: Vec<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
        documented.sort_unstable();
        served.sort_unstable();
        assert_eq!(
            documented, served,
            "docs/openapi.json and http::ROUTES differ"
        );
        for (path, item) in paths {
            let mut documented: Vec<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            documented.retain(|m| *m != "parameters");
            documented.sort_unstable();
            let mut served = methods(path).to_vec();
            served.sort_unstable();
            assert_eq!(
                documented, served,
                "{path}: documented and served methods differ"
            );
            // Every {parameter} in the path is declared.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let params: Vec<serde_json::Value> = served
                    .iter()
                    .flat_map(|m| {
                        item[*m]["parameters"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                let declared = params.iter().any(|p| {
                    let p = if let Some(r) = p.get("$ref") {
                        let key = r.as_str().unwrap().rsplit('/').next().unwrap();
                        &doc["components"]["parameters"][key]
                    } else {
                        p
                    };
                    p["name"] == name && p["in"] == "path"
                });
                assert!(declared, "{path}: parameter {name} not declared");
            }
        }
    }
}
