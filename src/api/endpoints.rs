//! `/api/v1/app/{app}/endpoint`: endpoints, their secrets and headers.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::checked_time;
use super::extract::{Auth, Body, OptionalBody, QueryArgs};
use super::messages::MessageOut;
use super::openapi::{AppPath, EndpointPath, Ordering, Pagination};
use super::tasks::TaskOut;
use super::{CarriesSecret, ListResponse, descending, list_params, time};
use crate::model::{BasicAuth, ClientCert, Endpoint, EndpointOptions};
use crate::model::{Caller, TaskKind};
use crate::service::{EndpointInput, EndpointPatch, Service};

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, patch, delete))
        .routes(routes!(secret))
        .routes(routes!(rotate))
        .routes(routes!(headers, set_headers, patch_headers))
        .routes(routes!(stats))
        .routes(routes!(send_example))
        .routes(routes!(recover))
        .routes(routes!(replay_missing))
        .routes(routes!(verify))
        .routes(routes!(test))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointIn {
    /// Where messages are POSTed: an `http` or `https` URL.
    url: String,
    #[serde(default)]
    description: String,
    /// Your own unique id for the endpoint, usable in paths in place of its id.
    #[serde(default)]
    uid: Option<String>,
    /// Only these event types are sent to the endpoint; null or absent: all.
    #[serde(default)]
    event_types: Option<Vec<String>>,
    /// The older Svix name of `eventTypes`.
    #[serde(default)]
    filter_types: Option<Vec<String>>,
    /// Only messages with one of these channels are sent to the endpoint; null or absent: any
    /// message, with channels or without.
    #[serde(default)]
    channels: Option<Vec<String>>,
    /// The signing secret (`whsec_` and base64); generated when absent.
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    disabled: bool,
    /// Most messages per second delivered to the endpoint.
    #[serde(default)]
    #[schema(minimum = 1)]
    throttle_rate: Option<u16>,
    /// The older Svix name of `throttleRate`.
    #[serde(default)]
    rate_limit: Option<u16>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    options: EndpointOptionsIn,
    /// Herald extension: ask for the verification handshake. Herald POSTs
    /// `{"verificationCode": ...}` to the URL; deliveries wait until the code is confirmed
    /// with `POST .../verify`.
    #[serde(default)]
    verify: bool,
}

/// Herald's endpoint extensions, accepted on create and replace.
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOptionsIn {
    /// Herald extension: HTTP basic auth sent with every delivery.
    #[serde(default)]
    basic_auth: Option<BasicAuthIn>,
    /// Herald extension: a client certificate presented in the TLS handshake.
    #[serde(default)]
    client_certificate: Option<ClientCertificateIn>,
    /// Herald extension: the whole-request timeout of an attempt, in milliseconds.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Herald extension: delays before each retry, in milliseconds (the server's when absent).
    #[serde(default)]
    retry_schedule: Option<Vec<u64>>,
    /// Herald extension: attempts a delivery gets in all; past the schedule the last delay
    /// repeats.
    #[serde(default)]
    max_attempts: Option<u32>,
    /// Herald extension: attempts in flight against this endpoint at once.
    #[serde(default)]
    concurrency_limit: Option<u32>,
}

impl From<EndpointOptionsIn> for EndpointOptions {
    fn from(o: EndpointOptionsIn) -> Self {
        EndpointOptions {
            basic_auth: o.basic_auth.map(Into::into),
            client_cert: o.client_certificate.map(Into::into),
            timeout_ms: o.timeout_ms,
            retry_schedule_ms: o.retry_schedule,
            attempts_max: o.max_attempts,
            concurrency_max: o.concurrency_limit,
            ..EndpointOptions::default()
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct BasicAuthIn {
    username: String,
    password: String,
}

impl From<BasicAuthIn> for BasicAuth {
    fn from(b: BasicAuthIn) -> Self {
        BasicAuth {
            username: b.username,
            password: b.password,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateIn {
    /// The certificate chain, PEM.
    certificate: String,
    /// Its private key, PEM.
    private_key: String,
}

impl From<ClientCertificateIn> for ClientCert {
    fn from(c: ClientCertificateIn) -> Self {
        ClientCert {
            cert_pem: c.certificate,
            key_pem: c.private_key,
        }
    }
}

/// Herald's endpoint extensions as shown: secrets are never shown back.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOptionsOut {
    /// The basic-auth username; the password is never shown.
    basic_auth_username: Option<String>,
    /// Whether a client certificate is configured (it and its key are never shown).
    client_certificate: bool,
    timeout_ms: Option<u64>,
    retry_schedule: Option<Vec<u64>>,
    max_attempts: Option<u32>,
    concurrency_limit: Option<u32>,
    /// null: no verification asked; false: waiting for the code; true: verified.
    verified: Option<bool>,
    /// Whether the built-in trigger (the `eventTypes` subscription) is on.
    subscription_enabled: bool,
    /// Why Herald disabled the endpoint, when it did.
    disabled_reason: Option<String>,
}

impl From<&EndpointOptions> for EndpointOptionsOut {
    fn from(o: &EndpointOptions) -> Self {
        EndpointOptionsOut {
            basic_auth_username: o.basic_auth.as_ref().map(|b| b.username.clone()),
            client_certificate: o.client_cert.is_some(),
            timeout_ms: o.timeout_ms,
            retry_schedule: o.retry_schedule_ms.clone(),
            max_attempts: o.attempts_max,
            concurrency_limit: o.concurrency_max,
            verified: o.verification.as_ref().map(|v| v.verified_at.is_some()),
            subscription_enabled: !o.subscription_disabled,
            disabled_reason: o.disabled_reason.clone(),
        }
    }
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
            options: e.options.into(),
            verify: e.verify,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    /// `ep_...`
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    event_types: Option<Vec<String>>,
    /// The same as `eventTypes` (older Svix name).
    filter_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    throttle_rate: Option<u16>,
    /// The same as `throttleRate` (older Svix name).
    rate_limit: Option<u16>,
    metadata: BTreeMap<String, String>,
    /// Always 1 (a deprecated Svix field).
    version: u8,
    #[serde(flatten)]
    options: EndpointOptionsOut,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
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
            options: (&e.options).into(),
            created_at: time(e.created_at),
            updated_at: time(e.updated_at),
        }
    }
}

/// List endpoints
#[utoipa::path(
    get,
    path = "/app/{app}/endpoint",
    tag = "Endpoint",
    operation_id = "v1.endpoint.list",
    params(
        AppPath,
        Pagination,
        ("order" = Option<Ordering>, Query, description = "Order by id; default `descending`."),
    ),
    responses(
        (status = 200, description = "A page of the application's endpoints", body = ListResponse<EndpointOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
        (status = 422, description = "`limit` or `order` out of range", body = HttpValidationError),
    )
)]
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

/// Create an endpoint
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint",
    tag = "Endpoint",
    operation_id = "v1.endpoint.create",
    params(AppPath),
    request_body = EndpointIn,
    responses(
        (status = 201, description = "Created", body = EndpointOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
        (status = 409, description = "Another endpoint of the application has this `uid`", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid: URL, secret, headers, unknown or archived event types", body = HttpValidationError),
    )
)]
async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    Body(body): Body<EndpointIn>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let ep = s.create_endpoint(caller, &app, body.into()).await?;
    Ok((StatusCode::CREATED, Json(ep.into())))
}

/// Get an endpoint
#[utoipa::path(
    get,
    path = "/app/{app}/endpoint/{endpoint}",
    tag = "Endpoint",
    operation_id = "v1.endpoint.get",
    params(EndpointPath),
    responses(
        (status = 200, description = "The endpoint", body = EndpointOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
    )
)]
async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<Json<EndpointOut>, ApiError> {
    Ok(Json(s.get_endpoint(caller, &app, &endpoint).await?.into()))
}

/// Delete an endpoint
///
/// Its `uid` is freed for reuse.
#[utoipa::path(
    delete,
    path = "/app/{app}/endpoint/{endpoint}",
    tag = "Endpoint",
    operation_id = "v1.endpoint.delete",
    params(EndpointPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
    )
)]
async fn delete(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_endpoint(caller, &app, &endpoint).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
#[schema(as = EndpointSecretOut)]
struct SecretOut {
    /// The current signing secret, `whsec_` and base64.
    key: String,
}

/// Get an endpoint's signing secret
#[utoipa::path(
    get,
    path = "/app/{app}/endpoint/{endpoint}/secret",
    tag = "Endpoint",
    operation_id = "v1.endpoint.get-secret",
    params(EndpointPath),
    responses(
        (status = 200, description = "The current secret", body = SecretOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
    )
)]
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
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointUpdate {
    /// Where messages are POSTed: an `http` or `https` URL.
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
    #[schema(minimum = 1)]
    throttle_rate: Option<u16>,
    /// The older Svix name of `throttleRate`.
    #[serde(default)]
    rate_limit: Option<u16>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    options: EndpointOptionsIn,
}

/// Update or create an endpoint
///
/// Replaces the endpoint's settings; its secret and headers stay. When there is none with
/// this id or uid, creates one with a new secret.
#[utoipa::path(
    put,
    path = "/app/{app}/endpoint/{endpoint}",
    tag = "Endpoint",
    operation_id = "v1.endpoint.update",
    params(EndpointPath),
    request_body = EndpointUpdate,
    responses(
        (status = 200, description = "Updated", body = EndpointOut),
        (status = 201, description = "Created", body = EndpointOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
        (status = 409, description = "Another endpoint of the application has this `uid`", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid", body = HttpValidationError),
    )
)]
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
        options: b.options.into(),
        verify: false,
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

/// PATCH body: absent fields are kept; `null` clears a nullable field.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EndpointPatch)]
pub struct EndpointPatchIn {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<String>)]
    uid: Option<Option<String>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<Option<Vec<String>>>,
    /// The older Svix name of `eventTypes`.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    filter_types: Option<Option<Vec<String>>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    channels: Option<Option<Vec<String>>>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<u16>, minimum = 1)]
    throttle_rate: Option<Option<u16>>,
    /// The older Svix name of `throttleRate`.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<u16>)]
    rate_limit: Option<Option<u16>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Herald extension; `null` removes it.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<BasicAuthIn>)]
    basic_auth: Option<Option<BasicAuthIn>>,
    /// Herald extension; `null` removes it.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<ClientCertificateIn>)]
    client_certificate: Option<Option<ClientCertificateIn>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<u64>)]
    timeout_ms: Option<Option<u64>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Vec<u64>>)]
    retry_schedule: Option<Option<Vec<u64>>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<u32>)]
    max_attempts: Option<Option<u32>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<u32>)]
    concurrency_limit: Option<Option<u32>>,
}

/// Patch an endpoint
#[utoipa::path(
    patch,
    path = "/app/{app}/endpoint/{endpoint}",
    tag = "Endpoint",
    operation_id = "v1.endpoint.patch",
    params(EndpointPath),
    request_body = EndpointPatchIn,
    responses(
        (status = 200, description = "Patched", body = EndpointOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 409, description = "Another endpoint of the application has this `uid`", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is invalid", body = HttpValidationError),
    )
)]
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
        basic_auth: b.basic_auth.map(|o| o.map(Into::into)),
        client_cert: b.client_certificate.map(|o| o.map(Into::into)),
        timeout_ms: b.timeout_ms,
        retry_schedule_ms: b.retry_schedule,
        attempts_max: b.max_attempts,
        concurrency_max: b.concurrency_limit,
    };
    Ok(Json(
        s.patch_endpoint(caller, &app, &endpoint, patch)
            .await?
            .into(),
    ))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EndpointSecretRotateIn)]
pub struct SecretRotateIn {
    /// The new secret; generated when absent or null.
    #[serde(default)]
    key: Option<String>,
    /// How long the previous secret keeps signing too, in seconds (Svix default 86400).
    #[serde(default)]
    grace_period_seconds: Option<u64>,
}

/// Rotate an endpoint's signing secret
///
/// The previous secret keeps signing during its grace period. Answers the new secret as JSON:
/// the Svix specs say 204, but the Python SDK parses `{"key": ...}`, and the other SDKs ignore
/// the body, so 200 with it suits every client.
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint/{endpoint}/secret/rotate",
    tag = "Endpoint",
    operation_id = "v1.endpoint.rotate-secret",
    params(EndpointPath),
    request_body(content = Option<SecretRotateIn>, description = "May be empty or `{}`: a new secret is generated"),
    responses(
        (status = 200, description = "Rotated; the new current secret", body = SecretOut),
        (status = 400, description = "Too many previous secrets still in their grace period (`limit_reached`)", body = HttpErrorOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "A field is invalid", body = HttpValidationError),
    )
)]
async fn rotate(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    OptionalBody(b): OptionalBody<SecretRotateIn>,
) -> Result<CarriesSecret<Json<SecretOut>>, ApiError> {
    let key = s
        .rotate_secret(caller, &app, &endpoint, b.key, b.grace_period_seconds)
        .await?;
    Ok(CarriesSecret(Json(SecretOut { key })))
}

#[derive(Serialize, ToSchema)]
#[schema(as = EndpointHeadersOut)]
struct HeadersOut {
    /// The headers whose values may be shown.
    headers: BTreeMap<String, String>,
    /// Names of the headers whose values are withheld (credentials).
    sensitive: Vec<String>,
}

/// Get an endpoint's extra headers
#[utoipa::path(
    get,
    path = "/app/{app}/endpoint/{endpoint}/headers",
    tag = "Endpoint",
    operation_id = "v1.endpoint.get-headers",
    params(EndpointPath),
    responses(
        (status = 200, description = "The headers sent with every delivery", body = HeadersOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
    )
)]
async fn headers(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
) -> Result<Json<HeadersOut>, ApiError> {
    let (headers, sensitive) = s.endpoint_headers(caller, &app, &endpoint).await?;
    Ok(Json(HeadersOut { headers, sensitive }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EndpointHeadersIn)]
pub struct HeadersIn {
    headers: BTreeMap<String, String>,
}

/// Replace an endpoint's extra headers
#[utoipa::path(
    put,
    path = "/app/{app}/endpoint/{endpoint}/headers",
    tag = "Endpoint",
    operation_id = "v1.endpoint.update-headers",
    params(EndpointPath),
    request_body = HeadersIn,
    responses(
        (status = 204, description = "Replaced"),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A header is invalid or not allowed", body = HttpValidationError),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EndpointHeadersPatchIn)]
pub struct HeadersPatchIn {
    /// Headers to set; a `null` value removes that header.
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    /// Names of headers to remove.
    #[serde(default)]
    delete_headers: Vec<String>,
}

/// Patch an endpoint's extra headers
#[utoipa::path(
    patch,
    path = "/app/{app}/endpoint/{endpoint}/headers",
    tag = "Endpoint",
    operation_id = "v1.endpoint.patch-headers",
    params(EndpointPath),
    request_body = HeadersPatchIn,
    responses(
        (status = 204, description = "Patched"),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A header is invalid or not allowed", body = HttpValidationError),
    )
)]
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

/// Deliveries to the endpoint by the status of their latest attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = EndpointStats)]
struct StatsOut {
    success: u64,
    pending: u64,
    sending: u64,
    fail: u64,
    canceled: u64,
}

/// Get an endpoint's delivery statistics
///
/// Counts the deliveries whose latest attempt falls in `[since, until]`.
#[utoipa::path(
    get,
    path = "/app/{app}/endpoint/{endpoint}/stats",
    tag = "Endpoint",
    operation_id = "v1.endpoint.get-stats",
    params(
        EndpointPath,
        ("since" = Option<String>, Query, format = DateTime, description = "Start (RFC 3339; without an offset it is UTC); default 28 days before `until`."),
        ("until" = Option<String>, Query, format = DateTime, description = "End (RFC 3339; without an offset it is UTC); default now."),
    ),
    responses(
        (status = 200, description = "The counts", body = StatsOut),
        (status = 400, description = "The range ends in the future or spans more than 28 days (`invalid_range`)", body = HttpErrorOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "`since` or `until` is not a date-time", body = HttpValidationError),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventExampleIn {
    /// The event type whose example is sent; `svix.ping` needs no catalog entry.
    event_type: String,
    /// Which of the newest schema's `examples`; default 0.
    #[serde(default)]
    example_index: Option<u32>,
}

/// Send an example message to an endpoint
///
/// Creates a message with the event type's example payload, sent to this endpoint only.
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint/{endpoint}/send-example",
    tag = "Endpoint",
    operation_id = "v1.endpoint.send-example",
    params(EndpointPath),
    request_body = EventExampleIn,
    responses(
        (status = 202, description = "The message created", body = MessageOut),
        (status = 400, description = "The event type has no example at this index (`invalid_scheme`)", body = HttpErrorOut),
        (status = 404, description = "No such application, endpoint or event type", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid", body = HttpValidationError),
    )
)]
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

/// The time range of recover and replay-missing.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverIn {
    /// Start (RFC 3339); at most 14 days before `until`.
    #[schema(format = DateTime)]
    since: String,
    /// End (RFC 3339); default now.
    #[serde(default)]
    #[schema(format = DateTime)]
    until: Option<String>,
}

pub fn body_time(value: &str, field: &str) -> Result<crate::model::Micros, ApiError> {
    checked_time(value, &["body", field])
}

/// Recover failed messages
///
/// Sends again every message whose newest delivery to this endpoint failed for good, with its
/// last attempt in `[since, until]`, as a background task (poll `/background-task/{task_id}`).
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint/{endpoint}/recover",
    tag = "Endpoint",
    operation_id = "v1.endpoint.recover",
    params(EndpointPath),
    request_body = RecoverIn,
    responses(
        (status = 202, description = "The task is recorded and running", body = TaskOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A time is invalid, `since` is more than 14 days before `until`, or the application has `tasks_running_per_app_max` tasks running", body = HttpValidationError),
    )
)]
async fn recover(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<RecoverIn>,
) -> Result<(StatusCode, Json<TaskOut>), ApiError> {
    start_task(&s, caller, &app, &endpoint, &b, TaskKind::Recover).await
}

/// Replay missing messages
///
/// Herald extension (Svix's lib-spec): sends every message created in `[since, until]` that
/// the endpoint's subscription covers and that was never sent to it, e.g. while it was
/// disabled or not yet subscribed, as a background task (poll `/background-task/{task_id}`).
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint/{endpoint}/replay-missing",
    tag = "Endpoint",
    operation_id = "v1.endpoint.replay-missing",
    params(EndpointPath),
    request_body = RecoverIn,
    responses(
        (status = 202, description = "The task is recorded and running", body = TaskOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A time is invalid, `since` is more than 14 days before `until`, or the application has `tasks_running_per_app_max` tasks running", body = HttpValidationError),
    )
)]
async fn replay_missing(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<RecoverIn>,
) -> Result<(StatusCode, Json<TaskOut>), ApiError> {
    start_task(&s, caller, &app, &endpoint, &b, TaskKind::Replay).await
}

/// What recover and replay-missing share: the body's time range, and the task started.
async fn start_task(
    s: &Service,
    caller: Caller,
    app: &str,
    endpoint: &str,
    b: &RecoverIn,
    kind: TaskKind,
) -> Result<(StatusCode, Json<TaskOut>), ApiError> {
    let since = body_time(&b.since, "since")?;
    let until = b
        .until
        .as_deref()
        .map(|u| body_time(u, "until"))
        .transpose()?;
    let t = s
        .start_task(caller, app, endpoint, kind, since, until)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(TaskOut::from(&t))))
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyIn {
    /// The `verificationCode` Herald POSTed to the endpoint.
    code: String,
}

/// Verify an endpoint
///
/// Herald extension: confirms the code of the verification handshake; the deliveries that
/// waited for it are sent.
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint/{endpoint}/verify",
    tag = "Endpoint",
    operation_id = "v1.endpoint.verify",
    params(EndpointPath),
    request_body = VerifyIn,
    responses(
        (status = 200, description = "Verified", body = EndpointOut),
        (status = 400, description = "The endpoint asked for no verification", body = HttpErrorOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "The code is not right", body = HttpValidationError),
    )
)]
async fn verify(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    Body(b): Body<VerifyIn>,
) -> Result<Json<EndpointOut>, ApiError> {
    Ok(Json(
        s.verify_endpoint(caller, &app, &endpoint, &b.code)
            .await?
            .into(),
    ))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointTestIn {
    /// Test only this event type; default: every type the endpoint subscribes to.
    #[serde(default)]
    event_type: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointTestResultOut {
    event_type: String,
    /// The receiver's HTTP status, or 0 when none came.
    status_code: u16,
    duration_ms: u64,
    success: bool,
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointTestOut {
    #[schema(format = DateTime)]
    started_at: String,
    tests_run: usize,
    tests_succeeded: usize,
    tests_failed: usize,
    tests: Vec<EndpointTestResultOut>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointTestEnvelope {
    data: EndpointTestOut,
    /// Always null when the tests ran (their failures are in `data.tests`).
    #[schema(value_type = Option<String>)]
    error: Option<String>,
}

/// Test an endpoint
///
/// Herald extension: sends the example payload of each event type the endpoint subscribes to
/// (or of `eventType`) now, signed like a delivery but not stored, and answers what the
/// receiver said to each.
#[utoipa::path(
    post,
    path = "/app/{app}/endpoint/{endpoint}/test",
    tag = "Endpoint",
    operation_id = "v1.endpoint.test",
    params(EndpointPath),
    request_body(content = EndpointTestIn, description = "Optional; `{}` or no body tests every subscribed type"),
    responses(
        (status = 200, description = "The tests ran", body = EndpointTestEnvelope),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "The body is invalid", body = HttpValidationError),
    )
)]
async fn test(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    OptionalBody(b): OptionalBody<EndpointTestIn>,
) -> Result<Json<EndpointTestEnvelope>, ApiError> {
    let result = s
        .test_endpoint(caller, &app, &endpoint, b.event_type.as_deref())
        .await?;
    let tests: Vec<EndpointTestResultOut> = result
        .tests
        .into_iter()
        .map(|t| EndpointTestResultOut {
            event_type: t.event_type,
            status_code: t.status_code,
            duration_ms: t.duration_ms,
            success: t.success,
            error: t.error,
        })
        .collect();
    let succeeded = tests.iter().filter(|t| t.success).count();
    Ok(Json(EndpointTestEnvelope {
        data: EndpointTestOut {
            started_at: time(result.started_at),
            tests_run: tests.len(),
            tests_succeeded: succeeded,
            tests_failed: tests.len() - succeeded,
            tests,
        },
        error: None,
    }))
}
