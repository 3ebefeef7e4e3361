//! `GET /metrics`: the Prometheus text exposition. Unauthenticated, as scrapers expect; it
//! shows volumes and latencies, never payloads, ids or secrets.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use crate::service::Service;

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Metrics
///
/// Messages ingested, attempts and deliveries by outcome, attempt latency, writer batch size
/// and commit latency, queue depth per lane, deliveries in flight.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Health",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
async fn metrics(State(s): State<Service>) -> Result<Response, ApiError> {
    let text = s.metrics_text().await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
