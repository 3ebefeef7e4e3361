//! `/api/v1/event-type`: the event catalog.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::extract::{Auth, Body, QueryArgs};
use super::{ListResponse, list_params, raw_json, time};
use crate::model::EventType;
use crate::service::{EventTypeInput, Service};

pub fn routes() -> Router<Service> {
    Router::new()
        .route("/event-type", get(list).post(create))
        .route(
            "/event-type/{name}",
            get(read).put(update).patch(patch).delete(delete),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeIn {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    #[serde(default)]
    schemas: Option<Box<RawValue>>,
    #[serde(default)]
    group_name: Option<String>,
    #[serde(default)]
    feature_flags: Option<Vec<String>>,
    /// Herald extension: an example payload, used by send-example and the endpoint test.
    #[serde(default)]
    example: Option<Box<RawValue>>,
}

/// PUT body: as `EventTypeIn` without the name (it is in the path).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeUpsertIn {
    #[serde(default)]
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    #[serde(default)]
    schemas: Option<Box<RawValue>>,
    #[serde(default)]
    group_name: Option<String>,
    #[serde(default)]
    feature_flags: Option<Vec<String>>,
    #[serde(default)]
    example: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypePatch {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    archived: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
    #[serde(default, with = "super::nullable")]
    schemas: Option<Option<Box<RawValue>>>,
    #[serde(default, with = "super::nullable")]
    group_name: Option<Option<String>>,
    #[serde(default, with = "super::nullable")]
    feature_flags: Option<Option<Vec<String>>>,
    #[serde(default, with = "super::nullable")]
    example: Option<Option<Box<RawValue>>>,
}

fn json_text(v: Option<Box<RawValue>>) -> Option<String> {
    v.map(|r| r.get().to_string()).filter(|s| s != "null")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    name: String,
    description: String,
    archived: bool,
    deprecated: bool,
    schemas: Option<Box<RawValue>>,
    group_name: Option<String>,
    feature_flags: Option<Vec<String>>,
    example: Option<Box<RawValue>>,
    created_at: String,
    updated_at: String,
}

impl EventTypeOut {
    fn new(e: EventType, with_content: bool) -> Self {
        EventTypeOut {
            name: e.name,
            description: e.description,
            archived: e.archived,
            deprecated: e.deprecated,
            schemas: e
                .schemas_json
                .as_deref()
                .filter(|_| with_content)
                .map(raw_json),
            group_name: e.group_name,
            feature_flags: e.feature_flags,
            example: e
                .example_json
                .as_deref()
                .filter(|_| with_content)
                .map(raw_json),
            created_at: time(e.created_at),
            updated_at: time(e.updated_at),
        }
    }
}

async fn list(
    State(s): State<Service>,
    Auth(_): Auth,
    q: QueryArgs,
) -> Result<Json<ListResponse<EventTypeOut>>, ApiError> {
    let with_content = q.bool("with_content", true)?;
    let page = s
        .list_event_types(list_params(&q)?, q.bool("include_archived", false)?)
        .await?;
    Ok(Json(ListResponse::from_page(page, |e| {
        EventTypeOut::new(e, with_content)
    })))
}

async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    Body(b): Body<EventTypeIn>,
) -> Result<(StatusCode, Json<EventTypeOut>), ApiError> {
    let input = EventTypeInput {
        name: b.name,
        description: b.description,
        archived: b.archived,
        deprecated: b.deprecated,
        schemas_json: json_text(b.schemas),
        group_name: b.group_name,
        feature_flags: b.feature_flags,
        example_json: json_text(b.example),
    };
    let et = s.create_event_type(caller, input).await?;
    Ok((StatusCode::CREATED, Json(EventTypeOut::new(et, true))))
}

async fn read(
    State(s): State<Service>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Json<EventTypeOut>, ApiError> {
    Ok(Json(EventTypeOut::new(
        s.get_event_type(&name).await?,
        true,
    )))
}

async fn update(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    Body(b): Body<EventTypeUpsertIn>,
) -> Result<(StatusCode, Json<EventTypeOut>), ApiError> {
    let input = EventTypeInput {
        name,
        description: b.description,
        archived: b.archived,
        deprecated: b.deprecated,
        schemas_json: json_text(b.schemas),
        group_name: b.group_name,
        feature_flags: b.feature_flags,
        example_json: json_text(b.example),
    };
    let (et, created) = s.put_event_type(caller, input).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(EventTypeOut::new(et, true)),
    ))
}

async fn patch(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    Body(b): Body<EventTypePatch>,
) -> Result<Json<EventTypeOut>, ApiError> {
    let old = s.get_event_type(&name).await?;
    let input = EventTypeInput {
        name,
        description: b.description.unwrap_or(old.description),
        archived: b.archived.unwrap_or(old.archived),
        deprecated: b.deprecated.unwrap_or(old.deprecated),
        schemas_json: b.schemas.map_or(old.schemas_json, json_text),
        group_name: b.group_name.unwrap_or(old.group_name),
        feature_flags: b.feature_flags.unwrap_or(old.feature_flags),
        example_json: b.example.map_or(old.example_json, json_text),
    };
    let (et, _) = s.put_event_type(caller, input).await?;
    Ok(Json(EventTypeOut::new(et, true)))
}

async fn delete(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    q: QueryArgs,
) -> Result<StatusCode, ApiError> {
    s.delete_event_type(caller, &name, q.bool("expunge", false)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
