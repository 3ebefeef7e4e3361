//! `/api/v1/app/{app}/msg` and `/attempt`: messages and their delivery attempts.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::{Auth, Body, QueryArgs};
use super::openapi::{
    AppPath, AttemptPath, EndpointPath, EventTypesFilter, MessageEndpointPath, MessagePath,
    Pagination, TimeWindow, WithContent,
};
use super::{IdempotencyScope, ListResponse, list_params, raw_json, time};
use crate::model::{Attempt, Message, MessageStatus, TriggerType};
use crate::service::{
    AttemptFilter, Created, Destination, EndpointMessage, MessageFilter, MessageInput, Remember,
    Service,
};

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read))
        .routes(routes!(expunge))
        .routes(routes!(attempts_by_msg))
        .routes(routes!(attempts_by_endpoint))
        .routes(routes!(attempt))
        .routes(routes!(expunge_attempt))
        .routes(routes!(destinations))
        .routes(routes!(resend))
        .routes(routes!(endpoint_messages))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageIn {
    /// The event type's name; it must be in the catalog and not archived.
    event_type: String,
    /// The payload: a JSON object.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    /// Your own id for the message, unique within the application (a second message with it
    /// answers 409); usable in paths in place of its id.
    #[serde(default)]
    event_id: Option<String>,
    /// Sent only to endpoints without channels or sharing one of these.
    #[serde(default)]
    channels: Option<Vec<String>>,
    /// Days the payload is kept; default the server's `retention_days`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 90)]
    payload_retention_period: Option<u16>,
    /// Creates the application (its `uid` must be the path's) when it does not exist.
    #[serde(default)]
    application: Option<super::apps::ApplicationIn>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    /// `msg_...`
    id: String,
    event_type: String,
    /// The payload; `{}` with `with_content=false`, `{"expired": true}` once expired or
    /// expunged.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    event_id: Option<String>,
    channels: Option<Vec<String>>,
    /// When the message was created.
    #[schema(format = DateTime)]
    timestamp: String,
}

impl MessageOut {
    pub fn new(m: Message, with_content: bool) -> Self {
        let payload = match (&m.payload, with_content) {
            (_, false) => raw_json("{}"),
            (Some(p), true) => raw_json(p),
            (None, true) => raw_json(r#"{"expired":true}"#),
        };
        MessageOut {
            id: m.id.to_string(),
            event_type: m.event_type,
            payload,
            event_id: m.event_id,
            channels: m.channels,
            timestamp: time(m.created_at),
        }
    }
}

/// Create a message
///
/// Stores the message and queues a delivery to every endpoint whose subscription covers it;
/// answers once that is durable.
#[utoipa::path(
    post,
    path = "/app/{app}/msg",
    tag = "Message",
    operation_id = "v1.message.create",
    params(AppPath, WithContent),
    request_body = MessageIn,
    responses(
        (status = 202, description = "Accepted: stored and queued", body = MessageOut),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 403, description = "Only an admin token may create the application", body = HttpErrorOut),
        (status = 404, description = "No such application for this token (and no `application` in the body)", body = HttpErrorOut),
        (status = 409, description = "The application has a message with this `eventId`", body = HttpErrorOut),
        (status = 413, description = "The payload or the request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid (the payload is not an object, the event type is unknown, ...)", body = HttpValidationError),
    )
)]
async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    q: QueryArgs,
    scope: Option<Extension<IdempotencyScope>>,
    Body(body): Body<MessageIn>,
) -> Result<Response, ApiError> {
    // Read before anything is stored: a bad query must not follow a stored message.
    let with_content = q.bool("with_content", true)?;
    let input = MessageInput {
        event_type: body.event_type,
        payload_json: body.payload.get().to_string(),
        event_id: body.event_id,
        channels: body.channels,
        retention_days: body.payload_retention_period,
        application: body.application.map(Into::into),
    };
    // The Idempotency-Key is handled here rather than by the `idempotency` middleware, which
    // hands over its scope: the answer is remembered in the message's own commit (see
    // `super::remembers_itself`).
    let scope = scope.map(|Extension(IdempotencyScope(key))| key);
    let remember = scope.map(|key| Remember { key, with_content });
    match s
        .send_message_remembered(caller, &app, input, remember)
        .await
    {
        Ok(Created::New(msg)) => Ok(accepted(msg, with_content)),
        Ok(Created::Replayed(answer)) => Ok(super::replayed(answer)),
        Err(e) => {
            // A key answered before is replayed even when this request would now be refused
            // (the middleware looks it up before anything runs; this looks only on refusal).
            if let Some(key) = scope
                && let Ok(Some(answer)) = s.idempotent_response(key).await
            {
                return Ok(super::replayed(answer));
            }
            Err(e.into())
        }
    }
}

/// The answer to a message create: 202 and the message.
pub(super) fn accepted(msg: Message, with_content: bool) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(MessageOut::new(msg, with_content)),
    )
        .into_response()
}

/// Get a message
#[utoipa::path(
    get,
    path = "/app/{app}/msg/{msg}",
    tag = "Message",
    operation_id = "v1.message.get",
    params(MessagePath, WithContent),
    responses(
        (status = 200, description = "The message", body = MessageOut),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application or message for this token", body = HttpErrorOut),
    )
)]
async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<MessageOut>, ApiError> {
    let msg = s.get_message(caller, &app, &msg).await?;
    Ok(Json(MessageOut::new(msg, q.bool("with_content", true)?)))
}

/// List messages
///
/// Newest first.
#[utoipa::path(
    get,
    path = "/app/{app}/msg",
    tag = "Message",
    operation_id = "v1.message.list",
    params(
        AppPath,
        Pagination,
        EventTypesFilter,
        ("channel" = Option<String>, Query, description = "Only messages with this channel."),
        TimeWindow,
        WithContent,
    ),
    responses(
        (status = 200, description = "A page of messages", body = ListResponse<MessageOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
        (status = 422, description = "`limit` out of range or a time is invalid", body = HttpValidationError),
    )
)]
async fn list(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    q: QueryArgs,
) -> Result<Json<ListResponse<MessageOut>>, ApiError> {
    let filter = MessageFilter {
        event_types: q.list("event_types"),
        channel: q.str("channel").map(str::to_owned),
        before: q.time("before")?,
        after: q.time("after")?,
    };
    let with_content = q.bool("with_content", true)?;
    let page = s
        .list_messages(caller, &app, list_params(&q)?, filter)
        .await?;
    Ok(Json(ListResponse::from_page(page, |m| {
        MessageOut::new(m, with_content)
    })))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MessageAttemptOut)]
pub struct AttemptOut {
    /// `atmpt_...`
    id: String,
    msg_id: String,
    endpoint_id: String,
    /// The URL the attempt was sent to.
    url: String,
    /// The response body, cut at `response_body_max_bytes`; `{}` with `with_content=false`,
    /// `EXPUNGED` once expunged.
    response: String,
    /// The HTTP status answered; 0 when there was no answer (connection error, timeout).
    response_status_code: u16,
    response_duration_ms: u64,
    /// `MessageStatus`: 0 success, 2 fail (an attempt on its own is one or the other).
    #[schema(maximum = 4)]
    status: u8,
    #[schema(value_type = MessageStatusText)]
    status_text: &'static str,
    /// 0 scheduled (the first delivery and its retries), 1 manual (resend, recover, replay).
    #[schema(maximum = 1)]
    trigger_type: u8,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// `statusText`: always the name of `status` (0 success, 1 pending, 2 fail, 3 sending,
/// 4 canceled).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum MessageStatusText {
    Success,
    Pending,
    Fail,
    Sending,
    Canceled,
}

impl AttemptOut {
    pub fn new(a: Attempt, status: MessageStatus, with_content: bool) -> Self {
        AttemptOut {
            id: a.id.to_string(),
            msg_id: a.msg_id.to_string(),
            endpoint_id: a.endpoint_id.to_string(),
            url: a.url,
            response: if with_content {
                a.response
            } else {
                "{}".into()
            },
            response_status_code: a.status_code,
            response_duration_ms: a.duration_ms,
            status: status as u8,
            status_text: status.text(),
            trigger_type: match a.trigger_type {
                TriggerType::Scheduled => 0,
                TriggerType::Manual => 1,
            },
            timestamp: time(a.created_at),
        }
    }
}

/// `status` and `status_code_class` of the attempt lists (parsed by `attempt_filter`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AttemptStatusFilter {
    /// Only attempts with this `MessageStatus`: 0 success, 2 fail (3 sending is taken as fail).
    #[param(maximum = 4)]
    status: Option<u8>,
    /// Only attempts whose HTTP status is in this class: 0 (no answer), 100, 200, 300, 400, 500.
    status_code_class: Option<u16>,
}

pub fn attempt_filter(q: &QueryArgs) -> Result<AttemptFilter, ApiError> {
    let status = match q.u16("status")? {
        None => None,
        Some(code) => Some(
            u8::try_from(code)
                .ok()
                .and_then(MessageStatus::from_code)
                .ok_or_else(|| {
                    ApiError::invalid(&["query", "status"], "must be 0 to 4", "value_error")
                })?,
        ),
    };
    Ok(AttemptFilter {
        status,
        status_code_class: q.u16("status_code_class")?,
        endpoint: q.str("endpoint_id").map(str::to_owned),
        event_types: q.list("event_types"),
        before: q.time("before")?,
        after: q.time("after")?,
    })
}

/// List a message's attempts
///
/// Newest first.
#[utoipa::path(
    get,
    path = "/app/{app}/attempt/msg/{msg}",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.list-by-msg",
    params(
        MessagePath,
        Pagination,
        AttemptStatusFilter,
        ("endpoint_id" = Option<String>, Query, description = "Only attempts to this endpoint (id or uid)."),
        TimeWindow,
        WithContent,
    ),
    responses(
        (status = 200, description = "A page of attempts", body = ListResponse<AttemptOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application, message or `endpoint_id` endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "`limit` or `status` out of range, or a time is invalid", body = HttpValidationError),
    )
)]
async fn attempts_by_msg(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<ListResponse<AttemptOut>>, ApiError> {
    let with_content = q.bool("with_content", true)?;
    let page = s
        .list_message_attempts(caller, &app, &msg, list_params(&q)?, attempt_filter(&q)?)
        .await?;
    Ok(Json(ListResponse::from_page(page, |(a, st)| {
        AttemptOut::new(a, st, with_content)
    })))
}

/// Expunge a message's payload
///
/// The payload reads as `{"expired": true}` afterwards, and the message cannot be resent.
#[utoipa::path(
    delete,
    path = "/app/{app}/msg/{msg}/content",
    tag = "Message",
    operation_id = "v1.message.expunge-content",
    params(MessagePath),
    responses(
        (status = 204, description = "Expunged"),
        (status = 404, description = "No such application or message for this token", body = HttpErrorOut),
    )
)]
async fn expunge(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.expunge_message_content(caller, &app, &msg).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List an endpoint's attempts
///
/// Newest first.
#[utoipa::path(
    get,
    path = "/app/{app}/attempt/endpoint/{endpoint}",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.list-by-endpoint",
    params(
        EndpointPath,
        Pagination,
        AttemptStatusFilter,
        EventTypesFilter,
        TimeWindow,
        WithContent,
    ),
    responses(
        (status = 200, description = "A page of attempts", body = ListResponse<AttemptOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "`limit` or `status` out of range, or a time is invalid", body = HttpValidationError),
    )
)]
async fn attempts_by_endpoint(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<ListResponse<AttemptOut>>, ApiError> {
    let with_content = q.bool("with_content", true)?;
    let page = s
        .list_endpoint_attempts(
            caller,
            &app,
            &endpoint,
            list_params(&q)?,
            attempt_filter(&q)?,
        )
        .await?;
    Ok(Json(ListResponse::from_page(page, |(a, st)| {
        AttemptOut::new(a, st, with_content)
    })))
}

/// Get an attempt
#[utoipa::path(
    get,
    path = "/app/{app}/msg/{msg}/attempt/{attempt}",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.get",
    params(AttemptPath),
    responses(
        (status = 200, description = "The attempt", body = AttemptOut),
        (status = 404, description = "No such application, message or attempt for this token", body = HttpErrorOut),
    )
)]
async fn attempt(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg, attempt)): Path<(String, String, String)>,
) -> Result<Json<AttemptOut>, ApiError> {
    let (a, st) = s.get_attempt(caller, &app, &msg, &attempt).await?;
    Ok(Json(AttemptOut::new(a, st, true)))
}

/// Expunge an attempt's response
///
/// The response reads as `EXPUNGED` afterwards.
#[utoipa::path(
    delete,
    path = "/app/{app}/msg/{msg}/attempt/{attempt}/content",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.expunge-content",
    params(AttemptPath),
    responses(
        (status = 204, description = "Expunged"),
        (status = 404, description = "No such application, message or attempt for this token", body = HttpErrorOut),
    )
)]
async fn expunge_attempt(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg, attempt)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    s.expunge_attempt_content(caller, &app, &msg, &attempt)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Always `{}`: the Python SDK parses the body of a resend.
#[derive(Serialize, ToSchema)]
pub struct EmptyResponse {}

/// Resend a message to an endpoint
///
/// Queues a new, manual delivery of the message to this endpoint; no request body.
#[utoipa::path(
    post,
    path = "/app/{app}/msg/{msg}/endpoint/{endpoint}/resend",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.resend",
    params(MessageEndpointPath),
    responses(
        (status = 202, description = "Queued", body = EmptyResponse),
        (status = 400, description = "The payload has expired or was expunged (`missing_payload`)", body = HttpErrorOut),
        (status = 404, description = "No such application, message or endpoint for this token", body = HttpErrorOut),
    )
)]
async fn resend(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg, endpoint)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<EmptyResponse>), ApiError> {
    s.resend(caller, &app, &msg, &endpoint).await?;
    Ok((StatusCode::ACCEPTED, Json(EmptyResponse {})))
}

fn next_attempt(ms: Option<u64>, status: MessageStatus) -> Option<String> {
    match (status, ms) {
        (MessageStatus::Pending | MessageStatus::Sending, Some(ms)) => Some(time(ms as i64 * 1000)),
        _ => None,
    }
}

/// An endpoint a message was sent to, with the status of its latest delivery there. A
/// deleted endpoint is still listed, with an empty `url` and `disabled: true`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEndpointOut {
    /// The endpoint's id, `ep_...`
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    throttle_rate: Option<u16>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// `MessageStatus`: 0 success, 1 pending, 2 fail, 3 sending (a retry is scheduled),
    /// 4 canceled.
    #[schema(maximum = 4)]
    status: u8,
    #[schema(value_type = MessageStatusText)]
    status_text: &'static str,
    /// When the next attempt is due, while one is.
    #[schema(format = DateTime)]
    next_attempt: Option<String>,
}

impl From<Destination> for MessageEndpointOut {
    fn from(d: Destination) -> Self {
        let next_attempt = next_attempt(d.next_attempt_ms, d.status);
        // A deleted endpoint is still listed (it was attempted), with what is known of it.
        let (
            uid,
            url,
            description,
            event_types,
            channels,
            disabled,
            throttle_rate,
            created,
            updated,
        ) = match d.endpoint {
            Some(e) => (
                e.uid,
                e.url,
                e.description,
                e.event_types,
                e.channels,
                e.disabled,
                e.throttle_rate,
                e.created_at,
                e.updated_at,
            ),
            None => (
                None,
                String::new(),
                "(deleted)".into(),
                None,
                None,
                true,
                None,
                0,
                0,
            ),
        };
        MessageEndpointOut {
            id: d.endpoint_id.to_string(),
            uid,
            url,
            description,
            event_types,
            channels,
            disabled,
            throttle_rate,
            created_at: time(created),
            updated_at: time(updated),
            status: d.status as u8,
            status_text: d.status.text(),
            next_attempt,
        }
    }
}

/// List a message's destinations
///
/// The endpoints the message was sent to, by endpoint id, with the status of the latest
/// delivery to each.
#[utoipa::path(
    get,
    path = "/app/{app}/msg/{msg}/endpoint",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.list-attempted-destinations",
    params(MessagePath, Pagination),
    responses(
        (status = 200, description = "A page of endpoints", body = ListResponse<MessageEndpointOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application or message for this token", body = HttpErrorOut),
        (status = 422, description = "`limit` out of range", body = HttpValidationError),
    )
)]
async fn destinations(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<ListResponse<MessageEndpointOut>>, ApiError> {
    let page = s
        .attempted_destinations(caller, &app, &msg, list_params(&q)?)
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        MessageEndpointOut::from,
    )))
}

/// A message as seen from one endpoint: the status of its latest delivery there.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessageOut {
    #[serde(flatten)]
    message: MessageOut,
    /// `MessageStatus`: 0 success, 1 pending, 2 fail, 3 sending (a retry is scheduled),
    /// 4 canceled.
    #[schema(maximum = 4)]
    status: u8,
    #[schema(value_type = MessageStatusText)]
    status_text: &'static str,
    /// When the next attempt is due, while one is.
    #[schema(format = DateTime)]
    next_attempt: Option<String>,
}

/// List the messages sent to an endpoint
///
/// Newest first, each with the status of its latest delivery to the endpoint.
#[utoipa::path(
    get,
    path = "/app/{app}/endpoint/{endpoint}/msg",
    tag = "Message Attempt",
    operation_id = "v1.message-attempt.list-attempted-messages",
    params(
        EndpointPath,
        Pagination,
        ("status" = Option<u8>, Query, maximum = 4, description = "Only messages whose latest delivery has this `MessageStatus`: 0 success, 1 pending, 2 fail, 3 sending, 4 canceled."),
        ("channel" = Option<String>, Query, description = "Only messages with this channel."),
        EventTypesFilter,
        TimeWindow,
        WithContent,
    ),
    responses(
        (status = 200, description = "A page of messages", body = ListResponse<EndpointMessageOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "`limit` or `status` out of range, or a time is invalid", body = HttpValidationError),
    )
)]
async fn endpoint_messages(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, endpoint)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<ListResponse<EndpointMessageOut>>, ApiError> {
    let with_content = q.bool("with_content", true)?;
    let channel = q.str("channel").map(str::to_owned);
    let page = s
        .attempted_messages(
            caller,
            &app,
            &endpoint,
            list_params(&q)?,
            attempt_filter(&q)?,
            channel,
        )
        .await?;
    Ok(Json(ListResponse::from_page(page, |m: EndpointMessage| {
        EndpointMessageOut {
            next_attempt: next_attempt(m.next_attempt_ms, m.status),
            status: m.status as u8,
            status_text: m.status.text(),
            message: MessageOut::new(m.message, with_content),
        }
    })))
}
