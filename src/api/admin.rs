//! `/api/v1/admin` (Herald extension): operations on the server itself, admin tokens only.

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut};
use super::extract::Auth;
use crate::service::Service;

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new().routes(routes!(backup))
}

/// Back up the database
///
/// Streams a consistent copy of the live database (a redb file), taken from one read
/// transaction while the server keeps serving. `herald backup --url` calls this.
#[utoipa::path(
    get,
    path = "/admin/backup",
    tag = "Admin",
    operation_id = "v1.admin.backup",
    responses(
        (status = 200, description = "The database file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "Only an admin token may back up", body = HttpErrorOut),
    )
)]
async fn backup(State(s): State<Service>, Auth(caller): Auth) -> Result<Response, ApiError> {
    let file = s.backup_to_temp(caller).await?;
    let length = file.len;
    let stream = tokio_util::io::ReaderStream::new(file.reader);
    let mut response = Response::new(HttpBody::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"herald-backup.redb\""),
    );
    Ok(response)
}
