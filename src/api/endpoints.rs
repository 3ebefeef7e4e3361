//! `/api/v1/app/{app}/endpoint`: endpoints, their secrets and headers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Auth, Body, QueryArgs};
use super::{ListResponse, descending, list_params, time};
use crate::model::Endpoint;
use crate::service::{EndpointInput, Service};

pub fn routes() -> Router<Service> {
    Router::new()
        .route("/app/{app}/endpoint", get(list).post(create))
        .route("/app/{app}/endpoint/{endpoint}", get(read).delete(delete))
        .route("/app/{app}/endpoint/{endpoint}/secret", get(secret))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointIn {
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    /// The older Svix name of `eventTypes`.
    #[serde(default)]
    filter_types: Option<Vec<String>>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    throttle_rate: Option<u16>,
    /// The older Svix name of `throttleRate`.
    #[serde(default)]
    rate_limit: Option<u16>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

impl From<EndpointIn> for EndpointInput {
    fn from(e: EndpointIn) -> Self {
        EndpointInput {
            url: e.url,
            description: e.description,
            uid: e.uid,
            event_types: e.event_types.or(e.filter_types),
            channels: e.channels,
            secret: e.secret,
            disabled: e.disabled,
            throttle_rate: e.throttle_rate.or(e.rate_limit),
            metadata: e.metadata.unwrap_or_default(),
            headers: e.headers.unwrap_or_default(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    event_types: Option<Vec<String>>,
    filter_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    throttle_rate: Option<u16>,
    rate_limit: Option<u16>,
    metadata: BTreeMap<String, String>,
    version: u8,
    created_at: String,
    updated_at: String,
}

impl From<Endpoint> for EndpointOut {
    fn from(e: Endpoint) -> Self {
        EndpointOut {
            id: e.id.to_string(),
            uid: e.uid,
            url: e.url,
            description: e.description,
            filter_types: e.event_types.clone(),
            event_types: e.event_types,
            channels: e.channels,
            disabled: e.disabled,
            throttle_rate: e.throttle_rate,
            rate_limit: e.throttle_rate,
            metadata: e.metadata,
            version: 1,
            created_at: time(e.created_at),
            updated_at: time(e.updated_at),
        }
    }
}

async fn list(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    q: QueryArgs,
) -> Result<Json<ListResponse<EndpointOut>>, ApiError> {
    let page = s
        .list_endpoints(caller, &app, list_params(&q)?, descending(&q, true)?)
        .await?;
    Ok(Json(ListResponse::from_page(page, EndpointOut::from)))
}

async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    Body(body): Body<EndpointIn>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let ep = s.create_endpoint(caller, &app, body.into()).await?;
    Ok((StatusCode::CREATED, Json(ep.into())))
}

async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<Json<EndpointOut>, ApiError> {
    Ok(Json(s.get_endpoint(caller, &app, &endpoint).await?.into()))
}

async fn delete(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_endpoint(caller, &app, &endpoint).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct SecretOut {
    key: String,
}

async fn secret(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<Json<SecretOut>, ApiError> {
    Ok(Json(SecretOut {
        key: s.endpoint_secret(caller, &app, &endpoint).await?,
    }))
}
