//! `/api/v1/app/{app}/endpoint`: endpoints, their secrets and headers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::parse_time;
use super::extract::{Auth, Body, QueryArgs};
use super::messages::MessageOut;
use super::{ListResponse, descending, list_params, time};
use crate::model::Endpoint;
use crate::service::{EndpointInput, EndpointPatch, Service, TaskOutcome};

pub fn routes() -> Router<Service> {
    Router::new()
        .route("/app/{app}/endpoint", get(list).post(create))
        .route(
            "/app/{app}/endpoint/{endpoint}",
            get(read).put(update).patch(patch).delete(delete),
        )
        .route("/app/{app}/endpoint/{endpoint}/secret", get(secret))
        .route("/app/{app}/endpoint/{endpoint}/secret/rotate", post(rotate))
        .route(
            "/app/{app}/endpoint/{endpoint}/headers",
            get(headers).put(set_headers).patch(patch_headers),
        )
        .route("/app/{app}/endpoint/{endpoint}/stats", get(stats))
        .route(
            "/app/{app}/endpoint/{endpoint}/send-example",
            post(send_example),
        )
        .route("/app/{app}/endpoint/{endpoint}/recover", post(recover))
        .route(
            "/app/{app}/endpoint/{endpoint}/replay-missing",
            post(replay_missing),
        )
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

/// PUT body: as `EndpointIn` without `secret` and `headers`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointUpdate {
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    filter_types: Option<Vec<String>>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    throttle_rate: Option<u16>,
    #[serde(default)]
    rate_limit: Option<u16>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

async fn update(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<EndpointUpdate>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let input = EndpointInput {
        url: b.url,
        description: b.description,
        uid: b.uid,
        event_types: b.event_types.or(b.filter_types),
        channels: b.channels,
        secret: None,
        disabled: b.disabled,
        throttle_rate: b.throttle_rate.or(b.rate_limit),
        metadata: b.metadata.unwrap_or_default(),
        headers: BTreeMap::new(),
    };
    let (ep, created) = s.put_endpoint(caller, &app, &endpoint, input).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(ep.into()),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPatchIn {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, with = "super::nullable")]
    uid: Option<Option<String>>,
    #[serde(default, with = "super::nullable")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, with = "super::nullable")]
    filter_types: Option<Option<Vec<String>>>,
    #[serde(default, with = "super::nullable")]
    channels: Option<Option<Vec<String>>>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, with = "super::nullable")]
    throttle_rate: Option<Option<u16>>,
    #[serde(default, with = "super::nullable")]
    rate_limit: Option<Option<u16>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

async fn patch(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<EndpointPatchIn>,
) -> Result<Json<EndpointOut>, ApiError> {
    let patch = EndpointPatch {
        url: b.url,
        description: b.description,
        uid: b.uid,
        event_types: b.event_types.or(b.filter_types),
        channels: b.channels,
        disabled: b.disabled,
        throttle_rate: b.throttle_rate.or(b.rate_limit),
        metadata: b.metadata,
    };
    Ok(Json(
        s.patch_endpoint(caller, &app, &endpoint, patch)
            .await?
            .into(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotateIn {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    grace_period_seconds: Option<u64>,
}

/// Answers the new secret as JSON: the Svix specs say 204, but the Python SDK parses
/// `{"key": ...}`, and the other SDKs ignore the body, so 200 with it suits every client.
async fn rotate(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<SecretOut>, ApiError> {
    let b: SecretRotateIn = if body.iter().all(u8::is_ascii_whitespace) {
        SecretRotateIn::default()
    } else {
        super::extract::parse_json(&body)?
    };
    let key = s
        .rotate_secret(caller, &app, &endpoint, b.key, b.grace_period_seconds)
        .await?;
    Ok(Json(SecretOut { key }))
}

#[derive(Serialize)]
struct HeadersOut {
    headers: BTreeMap<String, String>,
    sensitive: Vec<String>,
}

async fn headers(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<Json<HeadersOut>, ApiError> {
    let (headers, sensitive) = s.endpoint_headers(caller, &app, &endpoint).await?;
    Ok(Json(HeadersOut { headers, sensitive }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadersIn {
    headers: BTreeMap<String, String>,
}

async fn set_headers(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<HeadersIn>,
) -> Result<StatusCode, ApiError> {
    let headers = b.headers.into_iter().map(|(k, v)| (k, Some(v))).collect();
    s.set_endpoint_headers(caller, &app, &endpoint, headers, Vec::new(), true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadersPatchIn {
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    delete_headers: Vec<String>,
}

async fn patch_headers(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<HeadersPatchIn>,
) -> Result<StatusCode, ApiError> {
    s.set_endpoint_headers(caller, &app, &endpoint, b.headers, b.delete_headers, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct StatsOut {
    success: u64,
    pending: u64,
    sending: u64,
    fail: u64,
    canceled: u64,
}

async fn stats(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<StatsOut>, ApiError> {
    let st = s
        .endpoint_stats(caller, &app, &endpoint, q.time("since")?, q.time("until")?)
        .await?;
    Ok(Json(StatsOut {
        success: st.success,
        pending: st.pending,
        sending: st.sending,
        fail: st.fail,
        canceled: st.canceled,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventExampleIn {
    event_type: String,
    #[serde(default)]
    example_index: Option<u32>,
}

async fn send_example(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<EventExampleIn>,
) -> Result<(StatusCode, Json<MessageOut>), ApiError> {
    let index = b.example_index.unwrap_or(0) as usize;
    let msg = s
        .send_example(caller, &app, &endpoint, &b.event_type, index)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(MessageOut::new(msg, true))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverIn {
    since: String,
    #[serde(default)]
    until: Option<String>,
}

/// Svix's background-task answer; Herald finishes the task within the request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOut {
    id: String,
    status: &'static str,
    task: &'static str,
    updated_at: String,
}

impl TaskOut {
    pub fn new(t: TaskOutcome, task: &'static str) -> Self {
        TaskOut {
            id: t.id.to_string(),
            status: if t.finished { "finished" } else { "running" },
            task,
            updated_at: time(t.updated_at),
        }
    }
}

pub fn body_time(value: &str, field: &str) -> Result<crate::model::Micros, ApiError> {
    parse_time(value).ok_or_else(|| {
        ApiError::invalid(
            &["body", field],
            format!("'{value}' is not an RFC 3339 date-time"),
            "value_error",
        )
    })
}

async fn recover(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<RecoverIn>,
) -> Result<(StatusCode, Json<TaskOut>), ApiError> {
    let since = body_time(&b.since, "since")?;
    let until = b
        .until
        .as_deref()
        .map(|u| body_time(u, "until"))
        .transpose()?;
    let t = s.recover(caller, &app, &endpoint, since, until).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TaskOut::new(t, "endpoint.recover")),
    ))
}

async fn replay_missing(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<RecoverIn>,
) -> Result<(StatusCode, Json<TaskOut>), ApiError> {
    let since = body_time(&b.since, "since")?;
    let until = b
        .until
        .as_deref()
        .map(|u| body_time(u, "until"))
        .transpose()?;
    let t = s
        .replay_missing(caller, &app, &endpoint, since, until)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TaskOut::new(t, "endpoint.replay")),
    ))
}
