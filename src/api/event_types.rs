//! `/api/v1/event-type`: the event catalog.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::{Auth, Body, QueryArgs};
use super::openapi::{EventTypePath, Pagination};
use super::{ListResponse, list_params, raw_json, time};
use crate::model::EventType;
use crate::service::{EventTypeInput, Service};

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, patch, delete))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeIn {
    /// The event type's name, e.g. `user.created`: letters, digits, `-`, `_`, `.`.
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    /// JSON Schemas of the payload by version, e.g. `{"1": {...}}`; their `examples` feed
    /// send-example.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schemas: Option<Box<RawValue>>,
    #[serde(default)]
    group_name: Option<String>,
    #[serde(default)]
    feature_flags: Option<Vec<String>>,
    /// Herald extension: an example payload, used by send-example and the endpoint test.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    example: Option<Box<RawValue>>,
}

/// PUT body: as `EventTypeIn` without the name (it is in the path).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeUpsertIn {
    #[serde(default)]
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schemas: Option<Box<RawValue>>,
    #[serde(default)]
    group_name: Option<String>,
    #[serde(default)]
    feature_flags: Option<Vec<String>>,
    /// Herald extension: an example payload.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    example: Option<Box<RawValue>>,
}

/// PATCH body: absent fields are kept; `null` clears a nullable field.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypePatch {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    archived: Option<bool>,
    #[serde(default)]
    deprecated: Option<bool>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Object>)]
    schemas: Option<Option<Box<RawValue>>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<String>)]
    group_name: Option<Option<String>>,
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    feature_flags: Option<Option<Vec<String>>>,
    /// Herald extension: an example payload.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<Object>)]
    example: Option<Option<Box<RawValue>>>,
}

fn json_text(v: Option<Box<RawValue>>) -> Option<String> {
    v.map(|r| r.get().to_string()).filter(|s| s != "null")
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    name: String,
    description: String,
    archived: bool,
    deprecated: bool,
    /// Null when listed with `with_content=false`.
    #[schema(value_type = Option<Object>)]
    schemas: Option<Box<RawValue>>,
    group_name: Option<String>,
    feature_flags: Option<Vec<String>>,
    /// Herald extension: the example payload; null when listed with `with_content=false`.
    #[schema(value_type = Option<Object>)]
    example: Option<Box<RawValue>>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
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

/// List event types
///
/// By name, ascending.
#[utoipa::path(
    get,
    path = "/event-type",
    tag = "Event Type",
    operation_id = "v1.event-type.list",
    params(
        Pagination,
        ("with_content" = Option<bool>, Query, description = "Include `schemas` and `example`; default `true`."),
        ("include_archived" = Option<bool>, Query, description = "Include archived event types; default `false`."),
    ),
    responses(
        (status = 200, description = "A page of event types", body = ListResponse<EventTypeOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 422, description = "`limit` out of range", body = HttpValidationError),
    )
)]
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

/// Create an event type
///
/// An archived event type of the same name is restored and overwritten.
#[utoipa::path(
    post,
    path = "/event-type",
    tag = "Event Type",
    operation_id = "v1.event-type.create",
    request_body = EventTypeIn,
    responses(
        (status = 201, description = "Created", body = EventTypeOut),
        (status = 403, description = "Only an admin token may change the catalog", body = HttpErrorOut),
        (status = 409, description = "An event type of this name exists (`event_type_exists`)", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid", body = HttpValidationError),
    )
)]
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

/// Get an event type
///
/// Archived ones too, with their schemas.
#[utoipa::path(
    get,
    path = "/event-type/{name}",
    tag = "Event Type",
    operation_id = "v1.event-type.get",
    params(EventTypePath),
    responses(
        (status = 200, description = "The event type", body = EventTypeOut),
        (status = 404, description = "No such event type", body = HttpErrorOut),
    )
)]
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

/// Update or create an event type
#[utoipa::path(
    put,
    path = "/event-type/{name}",
    tag = "Event Type",
    operation_id = "v1.event-type.update",
    params(EventTypePath),
    request_body = EventTypeUpsertIn,
    responses(
        (status = 200, description = "Updated", body = EventTypeOut),
        (status = 201, description = "Created", body = EventTypeOut),
        (status = 403, description = "Only an admin token may change the catalog", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field or the name is invalid", body = HttpValidationError),
    )
)]
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

/// Patch an event type
#[utoipa::path(
    patch,
    path = "/event-type/{name}",
    tag = "Event Type",
    operation_id = "v1.event-type.patch",
    params(EventTypePath),
    request_body = EventTypePatch,
    responses(
        (status = 200, description = "Patched", body = EventTypeOut),
        (status = 403, description = "Only an admin token may change the catalog", body = HttpErrorOut),
        (status = 404, description = "No such event type", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is invalid", body = HttpValidationError),
    )
)]
async fn patch(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    Body(b): Body<EventTypePatch>,
) -> Result<Json<EventTypeOut>, ApiError> {
    let patch = crate::service::EventTypePatch {
        description: b.description,
        archived: b.archived,
        deprecated: b.deprecated,
        schemas_json: b.schemas.map(json_text),
        group_name: b.group_name,
        feature_flags: b.feature_flags,
        example_json: b.example.map(json_text),
    };
    let et = s.patch_event_type(caller, &name, patch).await?;
    Ok(Json(EventTypeOut::new(et, true)))
}

/// Delete an event type
///
/// Archives it, or with `expunge=true` removes it for good.
#[utoipa::path(
    delete,
    path = "/event-type/{name}",
    tag = "Event Type",
    operation_id = "v1.event-type.delete",
    params(
        EventTypePath,
        ("expunge" = Option<bool>, Query, description = "Remove the event type instead of archiving it; default `false`."),
    ),
    responses(
        (status = 204, description = "Archived or removed"),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 403, description = "Only an admin token may change the catalog", body = HttpErrorOut),
        (status = 404, description = "No such event type", body = HttpErrorOut),
    )
)]
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
