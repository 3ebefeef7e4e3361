//! `/api/v1/app`: applications.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::{Auth, Body, QueryArgs};
use super::openapi::{AppPath, Ordering, Pagination};
use super::{ListResponse, descending, list_params, time};
use crate::model::App;
use crate::service::{AppInput, Service};

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, patch, delete))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationIn {
    /// A name for people; at least one character.
    name: String,
    /// Your own unique id for the application, usable in paths in place of its id.
    #[serde(default)]
    uid: Option<String>,
    /// Most messages per second delivered to each of its endpoints.
    #[serde(default)]
    #[schema(minimum = 1)]
    throttle_rate: Option<u16>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

impl From<ApplicationIn> for AppInput {
    fn from(a: ApplicationIn) -> AppInput {
        AppInput {
            name: a.name,
            uid: a.uid,
            throttle_rate: a.throttle_rate,
            metadata: a.metadata.unwrap_or_default(),
        }
    }
}

/// PATCH body: an absent field is kept, `null` clears a nullable one.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPatch {
    #[serde(default)]
    name: Option<String>,
    /// `null` removes the uid.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<String>)]
    uid: Option<Option<String>>,
    /// `null` removes the limit.
    #[serde(default, with = "super::nullable")]
    #[schema(value_type = Option<u16>, minimum = 1)]
    throttle_rate: Option<Option<u16>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    /// `app_...`
    id: String,
    uid: Option<String>,
    name: String,
    throttle_rate: Option<u16>,
    metadata: BTreeMap<String, String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<App> for ApplicationOut {
    fn from(a: App) -> Self {
        ApplicationOut {
            id: a.id.to_string(),
            uid: a.uid,
            name: a.name,
            throttle_rate: a.throttle_rate,
            metadata: a.metadata,
            created_at: time(a.created_at),
            updated_at: time(a.updated_at),
        }
    }
}

/// List applications
///
/// The applications this token may see, by id.
#[utoipa::path(
    get,
    path = "/app",
    tag = "Application",
    operation_id = "v1.application.list",
    params(
        Pagination,
        ("order" = Option<Ordering>, Query, description = "Order by id; default `ascending`."),
    ),
    responses(
        (status = 200, description = "A page of applications", body = ListResponse<ApplicationOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 422, description = "`limit` or `order` out of range", body = HttpValidationError),
    )
)]
async fn list(
    State(s): State<Service>,
    Auth(caller): Auth,
    q: QueryArgs,
) -> Result<Json<ListResponse<ApplicationOut>>, ApiError> {
    let page = s
        .list_apps(caller, list_params(&q)?, descending(&q, false)?)
        .await?;
    Ok(Json(ListResponse::from_page(page, ApplicationOut::from)))
}

/// Create an application
///
/// With `get_if_exists=true` and the `uid` of an existing application, answers that
/// application unchanged with 200.
#[utoipa::path(
    post,
    path = "/app",
    tag = "Application",
    operation_id = "v1.application.create",
    params(
        ("get_if_exists" = Option<bool>, Query, description = "Answer the application that has this `uid` instead of 409; default `false`."),
    ),
    request_body = ApplicationIn,
    responses(
        (status = 201, description = "Created", body = ApplicationOut),
        (status = 200, description = "An application with this `uid` exists (`get_if_exists=true`)", body = ApplicationOut),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 403, description = "Only an admin token may create applications", body = HttpErrorOut),
        (status = 409, description = "An application with this `uid` exists", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid", body = HttpValidationError),
    )
)]
async fn create(
    State(s): State<Service>,
    Auth(caller): Auth,
    q: QueryArgs,
    Body(body): Body<ApplicationIn>,
) -> Result<(StatusCode, Json<ApplicationOut>), ApiError> {
    let (app, created) = s
        .create_app(caller, body.into(), q.bool("get_if_exists", false)?)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(app.into())))
}

/// Get an application
#[utoipa::path(
    get,
    path = "/app/{app}",
    tag = "Application",
    operation_id = "v1.application.get",
    params(AppPath),
    responses(
        (status = 200, description = "The application", body = ApplicationOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
    )
)]
async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
) -> Result<Json<ApplicationOut>, ApiError> {
    Ok(Json(s.get_app(caller, &app).await?.into()))
}

/// Update or create an application
///
/// Replaces the application; when there is none with this id or uid, creates one (with a new
/// id and the body's `uid`).
#[utoipa::path(
    put,
    path = "/app/{app}",
    tag = "Application",
    operation_id = "v1.application.update",
    params(AppPath),
    request_body = ApplicationIn,
    responses(
        (status = 200, description = "Updated", body = ApplicationOut),
        (status = 201, description = "Created", body = ApplicationOut),
        (status = 403, description = "Only an admin token may change the `uid`", body = HttpErrorOut),
        (status = 404, description = "No such application for this token (only an admin token creates one)", body = HttpErrorOut),
        (status = 409, description = "Another application has this `uid`", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is missing or invalid", body = HttpValidationError),
    )
)]
async fn update(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    Body(body): Body<ApplicationIn>,
) -> Result<(StatusCode, Json<ApplicationOut>), ApiError> {
    let (app, created) = s.put_app(caller, &app, body.into()).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(app.into()),
    ))
}

/// Patch an application
///
/// Absent fields are kept; `null` clears a nullable field.
#[utoipa::path(
    patch,
    path = "/app/{app}",
    tag = "Application",
    operation_id = "v1.application.patch",
    params(AppPath),
    request_body = ApplicationPatch,
    responses(
        (status = 200, description = "Patched", body = ApplicationOut),
        (status = 403, description = "Only an admin token may change the `uid`", body = HttpErrorOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
        (status = 409, description = "Another application has this `uid`", body = HttpErrorOut),
        (status = 413, description = "The request body is too large", body = HttpErrorOut),
        (status = 422, description = "A field is invalid", body = HttpValidationError),
    )
)]
async fn patch(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    Body(body): Body<ApplicationPatch>,
) -> Result<Json<ApplicationOut>, ApiError> {
    let app = s
        .patch_app(
            caller,
            &app,
            body.name,
            body.uid,
            body.throttle_rate,
            body.metadata,
        )
        .await?;
    Ok(Json(app.into()))
}

/// Delete an application
///
/// Its `uid` is freed for reuse.
#[utoipa::path(
    delete,
    path = "/app/{app}",
    tag = "Application",
    operation_id = "v1.application.delete",
    params(AppPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Only an admin token may delete applications", body = HttpErrorOut),
        (status = 404, description = "No such application for this token", body = HttpErrorOut),
    )
)]
async fn delete(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete_app(caller, &app).await?;
    Ok(StatusCode::NO_CONTENT)
}
