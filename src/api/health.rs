//! `GET /api/v1/health`: answers 200 when the database reads, and the writer and the
//! delivery scheduler are alive and went round their loops lately (`heartbeat.rs`); 503 naming
//! the part otherwise.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut};
use crate::heartbeat::{Part, State as PartState};
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
    /// The one writer thread, which commits every change.
    writer: ComponentHealth,
    /// The delivery scheduler, which starts every attempt.
    scheduler: ComponentHealth,
}

#[derive(Serialize, ToSchema)]
pub struct ComponentHealth {
    /// Always `ok` in a 200 answer.
    status: &'static str,
}

const OK: ComponentHealth = ComponentHealth { status: "ok" };

/// Health
///
/// Whether the database answers and the writer and the delivery scheduler run. No token
/// needed.
#[utoipa::path(
    get,
    path = "/health",
    tag = "Health",
    operation_id = "v1.health.get",
    responses(
        (status = 200, description = "The database and the queue answer", body = HealthOut),
        (status = 503, description = "The database is busy or restarting (`unavailable`; retry), or the writer or the scheduler has stopped or hung (`writer_stuck`, `scheduler_stuck`; Herald exits so its supervisor restarts it)", body = HttpErrorOut),
    )
)]
async fn health(State(service): State<Service>) -> Result<Json<HealthOut>, ApiError> {
    for part in Part::ALL {
        let detail = match service.heartbeats().state(part) {
            PartState::Ok => continue,
            PartState::Dead => format!("the {}'s thread has stopped", part.name()),
            PartState::Stuck(age) => {
                format!("the {} has not run for {} s", part.name(), age.as_secs())
            }
        };
        let code = match part {
            Part::Writer => "writer_stuck",
            Part::Scheduler => "scheduler_stuck",
        };
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            detail,
        ));
    }
    match service.health().await {
        Ok(()) => {}
        // The database cannot be reached (PostgreSQL down or restarting, or the store
        // closing): say so, so a load balancer takes this node out until it answers again.
        Err(crate::service::ServiceError::Unavailable) => {
            return Err(ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unreachable",
                "the database does not answer".to_string(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Json(HealthOut {
        database: OK,
        queue: OK,
        writer: OK,
        scheduler: OK,
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
