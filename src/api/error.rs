//! The API's one error type: every failure leaves as Svix-shaped JSON.
//!
//! `{"code", "detail"}` for most statuses, and for 422 `{"detail": [{"loc", "msg", "type"}]}`.
//! Internal causes are logged here and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    /// 422 with each field's location (`["body", "url"]`) and message.
    Validation(Vec<ValidationItem>),
    Status {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
}

#[derive(Debug, Serialize)]
pub struct ValidationItem {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ApiError {
    pub fn status(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Status {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::status(StatusCode::BAD_REQUEST, "generic_error", detail)
    }

    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &str) -> ApiError {
        ApiError::Validation(vec![ValidationItem {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }])
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::status(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::status(
            StatusCode::UNAUTHORIZED,
            "authentication_failed",
            "Invalid or missing token",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ServiceError::Conflict { code, detail } => {
                ApiError::status(StatusCode::CONFLICT, code, detail)
            }
            ServiceError::Invalid(fields) => {
                // Query parameters are validated by the service too; they say so by name.
                const QUERY_FIELDS: &[&str] =
                    &["limit", "iterator", "since", "until", "before", "after"];
                ApiError::Validation(
                    fields
                        .into_iter()
                        .map(|f| {
                            let place = if QUERY_FIELDS.contains(&f.field.as_str()) {
                                "query"
                            } else {
                                "body"
                            };
                            ValidationItem {
                                loc: vec![place.into(), f.field],
                                msg: f.msg,
                                kind: "value_error".into(),
                            }
                        })
                        .collect(),
                )
            }
            ServiceError::BadRequest { code, detail } => {
                ApiError::status(StatusCode::BAD_REQUEST, code, detail)
            }
            ServiceError::PayloadTooLarge(detail) => {
                ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            }
            ServiceError::Unauthorized => ApiError::unauthorized(),
            ServiceError::Forbidden => ApiError::status(
                StatusCode::FORBIDDEN,
                "insufficient_access",
                "This token may not do this",
            ),
            ServiceError::Unavailable => ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable, retry",
            ),
            ServiceError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                ApiError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Internal server error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(items) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": items })),
            )
                .into_response(),
            ApiError::Status {
                status,
                code,
                detail,
            } => (status, Json(json!({ "code": code, "detail": detail }))).into_response(),
        }
    }
}
