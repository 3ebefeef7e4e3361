//! `GET /api/v1/health`: answers 200 when the database reads and the writer commits.

use axum::routing::get;
use axum::{Json, Router, extract::State};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::service::Service;

pub fn routes() -> Router<Service> {
    Router::new().route("/health", get(health)).route(
        "/health/ping",
        get(|| async { axum::http::StatusCode::NO_CONTENT }),
    )
}

async fn health(State(service): State<Service>) -> Result<Json<Value>, ApiError> {
    service.health().await?;
    Ok(Json(
        json!({ "database": { "status": "ok" }, "queue": { "status": "ok" } }),
    ))
}
