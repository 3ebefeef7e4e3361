//! `/api/v1/alert` (Herald extension): deliveries that used every attempt and endpoints Herald
//! disabled, newest first; and their acknowledgement.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut};
use super::extract::{Auth, QueryArgs};
use super::{ListResponse, time};
use crate::model::{Alert, AlertId};
use crate::service::Service;

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(acknowledge))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertOut {
    /// `alrt_...`
    id: String,
    /// `message.attempt.exhausted`, `endpoint.disabled` or `message.delivery.unreadable`.
    kind: &'static str,
    app_id: String,
    endpoint_id: String,
    msg_id: Option<String>,
    detail: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    acknowledged_at: Option<String>,
}

impl From<Alert> for AlertOut {
    fn from(a: Alert) -> Self {
        AlertOut {
            id: a.id.to_string(),
            kind: crate::ops::webhooks::event_type(a.kind),
            app_id: a.app_id.to_string(),
            endpoint_id: a.endpoint_id.to_string(),
            msg_id: a.msg_id.map(|m| m.to_string()),
            detail: a.detail,
            created_at: time(a.created_at),
            acknowledged_at: a.acknowledged_at.map(time),
        }
    }
}

/// Query parameters of the alert list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AlertQuery {
    /// Page size, default 50.
    limit: Option<u32>,
    /// The `iterator` of the previous page: older alerts.
    iterator: Option<String>,
    /// Only alerts not yet acknowledged; default false.
    open: Option<bool>,
}

/// List alerts
///
/// Newest first. A token scoped to an application sees that application's alerts only.
#[utoipa::path(
    get,
    path = "/alert",
    tag = "Alert",
    operation_id = "v1.alert.list",
    params(AlertQuery),
    responses(
        (status = 200, description = "A page of alerts", body = ListResponse<AlertOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
    )
)]
async fn list(
    State(s): State<Service>,
    Auth(caller): Auth,
    q: QueryArgs,
) -> Result<Json<ListResponse<AlertOut>>, ApiError> {
    let before = match q.str("iterator") {
        Some(it) => Some(AlertId::parse(it).ok_or_else(|| {
            ApiError::invalid(&["query", "iterator"], "invalid iterator", "value_error")
        })?),
        None => None,
    };
    let page = s
        .list_alerts(
            caller,
            q.bool("open", false)?,
            before,
            q.usize("limit")?.unwrap_or(50),
        )
        .await?;
    let data: Vec<AlertOut> = page.alerts.into_iter().map(Into::into).collect();
    Ok(Json(ListResponse {
        iterator: page.next.map(|n| n.to_string()),
        prev_iterator: None,
        done: page.next.is_none(),
        data,
    }))
}

/// Acknowledge an alert
#[utoipa::path(
    post,
    path = "/alert/{alert}/acknowledge",
    tag = "Alert",
    operation_id = "v1.alert.acknowledge",
    params(("alert" = String, Path, description = "The alert's id (`alrt_...`)")),
    responses(
        (status = 200, description = "Acknowledged", body = AlertOut),
        (status = 404, description = "No such alert for this token", body = HttpErrorOut),
    )
)]
async fn acknowledge(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(alert): Path<String>,
) -> Result<Json<AlertOut>, ApiError> {
    Ok(Json(s.acknowledge_alert(caller, &alert).await?.into()))
}
