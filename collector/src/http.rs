//! The HTTP interface: the JSON API (and, later, the dashboard).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ember_wire::HostId;
use serde::Deserialize;
use serde_json::json;

use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Hosts and history.
    pub store: Arc<RwLock<Store>>,
    /// When the collector started.
    pub started: Instant,
    /// The broker's address, for `/api/health`.
    pub mqtt_addr: std::net::SocketAddr,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/health", get(health))
        .route("/api/hosts", get(hosts))
        .route("/api/hosts/{id}", get(host))
        .route("/api/hosts/{id}/samples", get(samples))
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

fn host_id(id: &str) -> Result<HostId, ApiError> {
    HostId::new(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}: {id:?}")))
}

fn no_host(id: &HostId) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no host {id}"))
}

fn read(state: &AppState) -> std::sync::RwLockReadGuard<'_, Store> {
    // A panic while holding the lock cannot leave the store half-changed in a way that matters
    // for reading: serve what is there.
    state.store.read().unwrap_or_else(|e| e.into_inner())
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

async fn health(State(state): State<AppState>) -> Response {
    let store = read(&state);
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "hosts": store.host_count(),
        "mqtt": state.mqtt_addr.to_string(),
        "ingest": store.stats(),
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
    let Query(q) = query.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{e} (allowed: limit=N, after_seq=N)"),
        )
    })?;
    let store = read(&state);
    let samples = store
        .samples(&id, q.after_seq, q.limit.unwrap_or(300))
        .ok_or_else(|| no_host(&id))?;
    Ok(Json(json!({ "host": id, "samples": samples })).into_response())
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}
