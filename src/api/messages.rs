//! `/api/v1/app/{app}/msg` and `/attempt`: messages and their delivery attempts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{Auth, Body, QueryArgs};
use super::{ListResponse, list_params, raw_json, time};
use crate::model::{Attempt, Message, MessageStatus, TriggerType};
use crate::service::{
    AttemptFilter, Destination, EndpointMessage, MessageFilter, MessageInput, Service,
};

pub fn routes() -> Router<Service> {
    Router::new()
        .route("/app/{app}/msg", get(list).post(create))
        .route("/app/{app}/msg/{msg}", get(read))
        .route("/app/{app}/msg/{msg}/content", delete(expunge))
        .route("/app/{app}/attempt/msg/{msg}", get(attempts_by_msg))
        .route(
            "/app/{app}/attempt/endpoint/{endpoint}",
            get(attempts_by_endpoint),
        )
        .route("/app/{app}/msg/{msg}/attempt/{attempt}", get(attempt))
        .route(
            "/app/{app}/msg/{msg}/attempt/{attempt}/content",
            delete(expunge_attempt),
        )
        .route("/app/{app}/msg/{msg}/endpoint", get(destinations))
        .route(
            "/app/{app}/msg/{msg}/endpoint/{endpoint}/resend",
            post(resend),
        )
        .route("/app/{app}/endpoint/{endpoint}/msg", get(endpoint_messages))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageIn {
    event_type: String,
    payload: Box<RawValue>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    payload_retention_period: Option<u16>,
    #[serde(default)]
    application: Option<super::apps::ApplicationIn>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    id: String,
    event_type: String,
    payload: Box<RawValue>,
    event_id: Option<String>,
    channels: Option<Vec<String>>,
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

async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    q: QueryArgs,
    Body(body): Body<MessageIn>,
) -> Result<(StatusCode, Json<MessageOut>), ApiError> {
    let input = MessageInput {
        event_type: body.event_type,
        payload_json: body.payload.get().to_string(),
        event_id: body.event_id,
        channels: body.channels,
        retention_days: body.payload_retention_period,
        application: body.application.map(Into::into),
    };
    let msg = s.send_message(caller, &app, input).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageOut::new(msg, q.bool("with_content", true)?)),
    ))
}

async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg)): Path<(String, String)>,
    q: QueryArgs,
) -> Result<Json<MessageOut>, ApiError> {
    let msg = s.get_message(caller, &app, &msg).await?;
    Ok(Json(MessageOut::new(msg, q.bool("with_content", true)?)))
}

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    id: String,
    msg_id: String,
    endpoint_id: String,
    url: String,
    response: String,
    response_status_code: u16,
    response_duration_ms: u64,
    status: u8,
    status_text: &'static str,
    trigger_type: u8,
    timestamp: String,
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

async fn expunge(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.expunge_message_content(caller, &app, &msg).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

async fn attempt(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg, attempt)): Path<(String, String, String)>,
) -> Result<Json<AttemptOut>, ApiError> {
    let (a, st) = s.get_attempt(caller, &app, &msg, &attempt).await?;
    Ok(Json(AttemptOut::new(a, st, true)))
}

async fn expunge_attempt(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg, attempt)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    s.expunge_attempt_content(caller, &app, &msg, &attempt)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resend(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, msg, endpoint)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    s.resend(caller, &app, &msg, &endpoint).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({}))))
}

fn next_attempt(ms: Option<u64>, status: MessageStatus) -> Option<String> {
    match (status, ms) {
        (MessageStatus::Pending | MessageStatus::Sending, Some(ms)) => Some(time(ms as i64 * 1000)),
        _ => None,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageEndpointOut {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    throttle_rate: Option<u16>,
    created_at: String,
    updated_at: String,
    status: u8,
    status_text: &'static str,
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessageOut {
    #[serde(flatten)]
    message: MessageOut,
    status: u8,
    status_text: &'static str,
    next_attempt: Option<String>,
}

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
