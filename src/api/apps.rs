//! `/api/v1/app`: applications.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Auth, Body, QueryArgs};
use super::{ListResponse, descending, list_params, time};
use crate::model::App;
use crate::service::{AppInput, Service};

pub fn routes() -> Router<Service> {
    Router::new().route("/app", get(list).post(create)).route(
        "/app/{app}",
        get(read).put(update).patch(patch).delete(delete),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationIn {
    name: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
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
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, with = "super::nullable")]
    uid: Option<Option<String>>,
    #[serde(default, with = "super::nullable")]
    throttle_rate: Option<Option<u16>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    id: String,
    uid: Option<String>,
    name: String,
    throttle_rate: Option<u16>,
    metadata: BTreeMap<String, String>,
    created_at: String,
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

async fn read(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
) -> Result<Json<ApplicationOut>, ApiError> {
    Ok(Json(s.get_app(caller, &app).await?.into()))
}

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

async fn delete(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete_app(caller, &app).await?;
    Ok(StatusCode::NO_CONTENT)
}
