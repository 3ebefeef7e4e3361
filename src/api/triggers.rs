//! `/api/v1/app/{app}/trigger` (Herald extension): routing rules with conditions, templates,
//! priority and unique keys; their preview; and the merge fields of an event type.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::{Auth, Body};
use super::openapi::{AppPath, EventTypePath};
use super::{ListResponse, time};
use crate::model::{ContentType, Priority};
use crate::service::Service;
use crate::service::triggers::{Preview, TriggerInput, TriggerView};

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, delete))
        .routes(routes!(preview))
        .routes(routes!(merge_fields))
}

/// Path parameters: a trigger of an application.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TriggerPath {
    /// The application's id (`app_...`) or uid.
    app: String,
    /// The trigger's id (`trg_...`), or `builtin_<endpoint id>` for an endpoint's subscription.
    trigger: String,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum PriorityIn {
    High,
    #[default]
    Normal,
    Low,
}

impl From<PriorityIn> for Priority {
    fn from(p: PriorityIn) -> Self {
        match p {
            PriorityIn::High => Priority::High,
            PriorityIn::Normal => Priority::Normal,
            PriorityIn::Low => Priority::Low,
        }
    }
}

impl From<Priority> for PriorityIn {
    fn from(p: Priority) -> Self {
        match p {
            Priority::High => PriorityIn::High,
            Priority::Normal => PriorityIn::Normal,
            Priority::Low => PriorityIn::Low,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_content_type() -> String {
    "application/json".into()
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerIn {
    /// The endpoint it calls (id or uid).
    endpoint_id: String,
    #[serde(default)]
    description: String,
    /// Exact event type names, `prefix.*` patterns, or `*`.
    event_types: Vec<String>,
    /// A minijinja expression over `payload`, `eventType`, `msgId`, `timestamp`, `app`; the
    /// trigger fires when it is true, e.g. `payload.status in ["FULFILLED"]`.
    #[serde(default)]
    condition: Option<String>,
    /// A minijinja template of the body; values are escaped for the content type. Absent:
    /// the payload as posted.
    #[serde(default)]
    template: Option<String>,
    /// `application/json`, `application/xml` or `text/plain`.
    #[serde(default = "default_content_type")]
    content_type: String,
    #[serde(default)]
    priority: PriorityIn,
    /// A template of a key (e.g. `{{ payload.orderId }}`): a newer delivery to the same
    /// endpoint with the same key replaces one still waiting.
    #[serde(default)]
    unique_key: Option<String>,
    /// Milliseconds a delivery waits before its first attempt (the unique key's window).
    #[serde(default)]
    delay_ms: u64,
    #[serde(default = "default_true")]
    enabled: bool,
}

impl TriggerIn {
    fn into_input(self) -> Result<TriggerInput, ApiError> {
        let content_type = ContentType::from_mime(&self.content_type).ok_or_else(|| {
            ApiError::invalid(
                &["body", "contentType"],
                "must be application/json, application/xml or text/plain",
                "value_error",
            )
        })?;
        Ok(TriggerInput {
            endpoint: self.endpoint_id,
            description: self.description,
            event_types: self.event_types,
            condition: self.condition.filter(|c| !c.trim().is_empty()),
            template: self.template.filter(|t| !t.trim().is_empty()),
            content_type,
            priority: Some(self.priority.into()),
            unique_key: self.unique_key.filter(|k| !k.trim().is_empty()),
            delay_ms: self.delay_ms,
            enabled: self.enabled,
        })
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOut {
    /// `trg_...`, or `builtin_<endpoint id>` for an endpoint's subscription.
    id: String,
    /// True for an endpoint's built-in trigger (its `eventTypes` subscription).
    builtin: bool,
    endpoint_id: String,
    description: String,
    event_types: Vec<String>,
    condition: Option<String>,
    template: Option<String>,
    content_type: String,
    priority: PriorityIn,
    unique_key: Option<String>,
    delay_ms: u64,
    enabled: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<TriggerView> for TriggerOut {
    fn from(v: TriggerView) -> Self {
        let id = v.id();
        match v {
            TriggerView::Builtin(ep) => TriggerOut {
                id,
                builtin: true,
                endpoint_id: ep.id.to_string(),
                description: "The endpoint's subscription".into(),
                event_types: ep.event_types.clone().unwrap_or_else(|| vec!["*".into()]),
                condition: None,
                template: None,
                content_type: ContentType::Json.mime().into(),
                priority: PriorityIn::Normal,
                unique_key: None,
                delay_ms: 0,
                enabled: !ep.options.subscription_disabled,
                created_at: time(ep.created_at),
                updated_at: time(ep.updated_at),
            },
            TriggerView::Custom(t) => TriggerOut {
                id,
                builtin: false,
                endpoint_id: t.endpoint_id.to_string(),
                description: t.description,
                event_types: t.event_types,
                condition: t.condition,
                template: t.template,
                content_type: t.content_type.mime().into(),
                priority: t.priority.into(),
                unique_key: t.unique_key,
                delay_ms: t.delay_ms,
                enabled: t.enabled,
                created_at: time(t.created_at),
                updated_at: time(t.updated_at),
            },
        }
    }
}

/// List triggers
///
/// Every trigger of the application: each endpoint's built-in one (its subscription) first,
/// then the others. An application has few, so the list is one page.
#[utoipa::path(
    get,
    path = "/app/{app}/trigger",
    tag = "Trigger",
    operation_id = "v1.trigger.list",
    params(AppPath),
    responses(
        (status = 200, description = "Every trigger", body = ListResponse<TriggerOut>),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
    )
)]
async fn list(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
) -> Result<Json<ListResponse<TriggerOut>>, ApiError> {
    let all: Vec<TriggerOut> = s
        .list_triggers(caller, &app)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ListResponse {
        iterator: all.last().map(|t| t.id.clone()),
        prev_iterator: None,
        done: true,
        data: all,
    }))
}

/// Create a trigger
#[utoipa::path(
    post,
    path = "/app/{app}/trigger",
    tag = "Trigger",
    operation_id = "v1.trigger.create",
    params(AppPath),
    request_body = TriggerIn,
    responses(
        (status = 201, description = "Created", body = TriggerOut),
        (status = 400, description = "The application has too many triggers", body = HttpErrorOut),
        (status = 404, description = "No such application or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "A field is invalid (unknown event type, template syntax, ...)", body = HttpValidationError),
    )
)]
async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    Body(b): Body<TriggerIn>,
) -> Result<(StatusCode, Json<TriggerOut>), ApiError> {
    let t = s.create_trigger(caller, &app, b.into_input()?).await?;
    Ok((StatusCode::CREATED, Json(TriggerView::Custom(t).into())))
}

/// Get a trigger
#[utoipa::path(
    get,
    path = "/app/{app}/trigger/{trigger}",
    tag = "Trigger",
    operation_id = "v1.trigger.get",
    params(TriggerPath),
    responses(
        (status = 200, description = "The trigger", body = TriggerOut),
        (status = 404, description = "No such application or trigger for this token", body = HttpErrorOut),
    )
)]
async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, trigger)): Path<(String, String)>,
) -> Result<Json<TriggerOut>, ApiError> {
    Ok(Json(s.get_trigger(caller, &app, &trigger).await?.into()))
}

/// Update a trigger
///
/// Replaces its settings. A built-in trigger takes only `eventTypes` (exact names, or `*`)
/// and `enabled`.
#[utoipa::path(
    put,
    path = "/app/{app}/trigger/{trigger}",
    tag = "Trigger",
    operation_id = "v1.trigger.update",
    params(TriggerPath),
    request_body = TriggerIn,
    responses(
        (status = 200, description = "Updated", body = TriggerOut),
        (status = 404, description = "No such application, trigger or endpoint for this token", body = HttpErrorOut),
        (status = 422, description = "A field is invalid", body = HttpValidationError),
    )
)]
async fn update(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, trigger)): Path<(String, String)>,
    Body(b): Body<TriggerIn>,
) -> Result<Json<TriggerOut>, ApiError> {
    Ok(Json(
        s.update_trigger(caller, &app, &trigger, b.into_input()?)
            .await?
            .into(),
    ))
}

/// Delete a trigger
#[utoipa::path(
    delete,
    path = "/app/{app}/trigger/{trigger}",
    tag = "Trigger",
    operation_id = "v1.trigger.delete",
    params(TriggerPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A built-in trigger cannot be deleted (disable it)", body = HttpErrorOut),
        (status = 404, description = "No such application or trigger for this token", body = HttpErrorOut),
    )
)]
async fn delete(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path((app, trigger)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_trigger(caller, &app, &trigger).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerPreviewIn {
    /// Render against this event type's example payload...
    event_type: String,
    /// ...or against this payload.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    payload: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default = "default_content_type")]
    content_type: String,
    #[serde(default)]
    unique_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerPreviewOut {
    /// Whether the condition holds (true without one); null when it failed to evaluate.
    condition: Option<bool>,
    /// The body as it would be sent; null when the template failed.
    body: Option<String>,
    content_type: String,
    unique_key: Option<String>,
    /// What failed, readable.
    errors: Vec<String>,
}

impl From<Preview> for TriggerPreviewOut {
    fn from(p: Preview) -> Self {
        let mut errors = Vec::new();
        let condition = p
            .condition
            .map_err(|e| errors.push(format!("condition: {e}")))
            .ok();
        let body = p
            .body
            .map_err(|e| errors.push(format!("template: {e}")))
            .ok();
        let unique_key = p
            .unique_key
            .and_then(|k| k.map_err(|e| errors.push(format!("unique key: {e}"))).ok());
        TriggerPreviewOut {
            condition,
            body,
            content_type: p.content_type.mime().into(),
            unique_key,
            errors,
        }
    }
}

/// Preview a trigger
///
/// Renders a condition, template and unique key against an event type's example payload (or
/// a given payload) exactly as a delivery would, without saving or sending anything.
#[utoipa::path(
    post,
    path = "/app/{app}/trigger/preview",
    tag = "Trigger",
    operation_id = "v1.trigger.preview",
    params(AppPath),
    request_body = TriggerPreviewIn,
    responses(
        (status = 200, description = "What the trigger would do", body = TriggerPreviewOut),
        (status = 404, description = "No such application or event type", body = HttpErrorOut),
        (status = 422, description = "A field is invalid", body = HttpValidationError),
    )
)]
async fn preview(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    Body(b): Body<TriggerPreviewIn>,
) -> Result<Json<TriggerPreviewOut>, ApiError> {
    let content_type = ContentType::from_mime(&b.content_type).ok_or_else(|| {
        ApiError::invalid(
            &["body", "contentType"],
            "must be application/json, application/xml or text/plain",
            "value_error",
        )
    })?;
    let input = TriggerInput {
        condition: b.condition.filter(|c| !c.trim().is_empty()),
        template: b.template.filter(|t| !t.trim().is_empty()),
        content_type,
        unique_key: b.unique_key.filter(|k| !k.trim().is_empty()),
        ..TriggerInput::default()
    };
    let payload = b.payload.map(|p| p.get().to_string());
    if payload
        .as_deref()
        .is_some_and(|p| !p.trim_start().starts_with('{'))
    {
        return Err(ApiError::invalid(
            &["body", "payload"],
            "must be a JSON object",
            "type_error.dict",
        ));
    }
    Ok(Json(
        s.preview_trigger(caller, &app, &b.event_type, payload, &input)
            .await?
            .into(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct MergeFieldsOut {
    /// Dotted paths usable in conditions and templates (`payload.lines[].sku` marks an
    /// array's items).
    fields: Vec<String>,
}

/// List merge fields
///
/// The fields a trigger's condition and template can use for an event type, flattened from
/// its example payload and its newest JSON Schema.
#[utoipa::path(
    get,
    path = "/event-type/{name}/merge-fields",
    tag = "Trigger",
    operation_id = "v1.event-type.merge-fields",
    params(EventTypePath),
    responses(
        (status = 200, description = "The merge fields", body = MergeFieldsOut),
        (status = 404, description = "No such event type", body = HttpErrorOut),
    )
)]
async fn merge_fields(
    State(s): State<Service>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Json<MergeFieldsOut>, ApiError> {
    Ok(Json(MergeFieldsOut {
        fields: s.event_type_merge_fields(&name).await?,
    }))
}
