//! `GET /api/v1/health`: answers 200 when the database reads and the writer commits.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut};
use crate::service::Service;

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ping))
}

#[derive(Serialize, ToSchema)]
pub struct HealthOut {
    database: ComponentHealth,
    queue: ComponentHealth,
}

#[derive(Serialize, ToSchema)]
pub struct ComponentHealth {
    /// Always `ok` in a 200 answer.
    status: &'static str,
}

const OK: ComponentHealth = ComponentHealth { status: "ok" };

/// Health
///
/// Whether the database answers. No token needed.
#[utoipa::path(
    get,
    path = "/health",
    tag = "Health",
    operation_id = "v1.health.get",
    responses(
        (status = 200, description = "The database and the queue answer", body = HealthOut),
        (status = 503, description = "The database is busy or restarting (`unavailable`); retry", body = HttpErrorOut),
    )
)]
async fn health(State(service): State<Service>) -> Result<Json<HealthOut>, ApiError> {
    service.health().await?;
    Ok(Json(HealthOut {
        database: OK,
        queue: OK,
    }))
}

/// Ping
///
/// Answers 204 while the server runs, without touching the database. No token needed.
#[utoipa::path(
    get,
    path = "/health/ping",
    tag = "Health",
    operation_id = "v1.health.ping",
    responses((status = 204, description = "The server runs"))
)]
async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}
