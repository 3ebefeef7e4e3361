//! `/api/v1/app/{app}/msg` and `/attempt`: messages and their delivery attempts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{Auth, Body, QueryArgs};
use super::{ListResponse, list_params, raw_json, time};
use crate::model::{Attempt, Message, MessageStatus, TriggerType};
use crate::service::{AttemptFilter, MessageFilter, MessageInput, Service};

pub fn routes() -> Router<Service> {
    Router::new()
        .route("/app/{app}/msg", get(list).post(create))
        .route("/app/{app}/msg/{msg}", get(read))
        .route("/app/{app}/attempt/msg/{msg}", get(attempts_by_msg))
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
