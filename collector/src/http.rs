//! The HTTP interface: the JSON API, the live event stream, Prometheus `/metrics` and the
//! OpenAPI document (`docs/openapi.json`, checked against [`ROUTES`] by a test).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use ember_wire::HostId;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

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
    /// The MQTT gate's counters, when authentication is on.
    pub gate: Option<Arc<crate::gate::GateCounters>>,
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
        "/metrics" => get(metrics),
        _ => get(not_found),
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
        "memory": {
            "raw_samples": memory.raw_samples,
            "raw_bytes": memory.raw_bytes,
            "tier_buckets": memory.tier_buckets,
            "tier_bytes": memory.tier_bytes,
            "bytes_per_sample": memory.bytes_per_sample(),
        },
        "persistence": persistence,
        "mqtt_gate": state.gate.as_ref().map(|g| g.stats()),
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

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(item.get("get").is_some(), "{path} has no get");
            for (method, _) in item.as_object().unwrap() {
                assert_eq!(method, "get", "{path}: only GET is served");
            }
            // Every {parameter} in the path is declared.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let params = item["get"]["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
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
