//! `POST /api/v1/auth/app-portal-access/{app}`: a short-lived link into Herald's tenant portal
//! for one application (Svix's path, body and answer). Admin tokens only.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::CarriesSecret;
use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::{Auth, OptionalBody};
use super::openapi::AppPath;
use crate::service::Service;

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(app_portal_access))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPortalAccessIn {
    /// Seconds the link works: 60 to 604800 (7 days); default `portal_link_expiry_default_s`
    /// (1 hour).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 604800)]
    expiry: Option<u64>,
    /// The portal may look but not change anything.
    #[serde(default)]
    read_only: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct AppPortalAccessOut {
    /// The link to give the application's owner; it opens the portal scoped to this
    /// application.
    url: String,
    /// The secret part of the link (already inside `url`).
    token: String,
}

/// Get a portal link
///
/// A short-lived link into the tenant portal of one application: its endpoints (event types,
/// URL, secret, headers, test), its messages, deliveries and attempts, and resend; nothing of
/// any other application. A `readOnly` link can look but not change.
#[utoipa::path(
    post,
    path = "/auth/app-portal-access/{app}",
    tag = "Application",
    operation_id = "v1.authentication.app-portal-access",
    params(AppPath),
    request_body(content = AppPortalAccessIn, description = "Optional; `{}` or no body for a 1-hour link that may change things"),
    responses(
        (status = 200, description = "The link", body = AppPortalAccessOut),
        (status = 403, description = "Only an admin token may make portal links", body = HttpErrorOut),
        (status = 404, description = "No such application", body = HttpErrorOut),
        (status = 422, description = "`expiry` out of range", body = HttpValidationError),
    )
)]
async fn app_portal_access(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(app): Path<String>,
    OptionalBody(body): OptionalBody<AppPortalAccessIn>,
) -> Result<CarriesSecret<Json<AppPortalAccessOut>>, ApiError> {
    let access = s
        .create_portal_link(caller, &app, body.expiry, body.read_only.unwrap_or(false))
        .await?;
    Ok(CarriesSecret(Json(AppPortalAccessOut {
        url: access.url,
        token: access.token,
    })))
}
