//! The API's one error type: every failure leaves as Svix-shaped JSON.
//!
//! `{"code", "detail"}` for most statuses, and for 422 `{"detail": [{"loc", "msg", "type"}]}`.
//! Internal causes are logged here and never sent to the client. The bodies are typed so that
//! the OpenAPI document describes exactly what is sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

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

/// One invalid field of a 422 answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ValidationError)]
pub struct ValidationItem {
    /// Where the field is: `body`, `query` or `path`, then the field names (list indices as
    /// numbers), e.g. `["body", "eventTypes"]`.
    pub loc: Vec<String>,
    pub msg: String,
    /// `value_error`, `value_error.missing`, `value_error.jsondecode` or `type_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The body of every error answer except 422.
#[derive(Serialize, ToSchema)]
pub struct HttpErrorOut {
    /// A stable, machine-readable code, e.g. `not_found`, `conflict`, `authentication_failed`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub detail: String,
}

/// The body of a 422 answer: every invalid field.
#[derive(Serialize, ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct HttpValidationError {
    pub detail: Vec<ValidationItem>,
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
                            // No field: the request as a whole (a cap reached).
                            let mut loc = vec![place.to_string()];
                            loc.extend((!f.field.is_empty()).then_some(f.field));
                            ValidationItem {
                                loc,
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
            ServiceError::AdminOnly(detail) => {
                ApiError::status(StatusCode::FORBIDDEN, "insufficient_access", detail)
            }
            ServiceError::Busy => ApiError::status(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Herald is busy; retry after a moment",
            ),
            ServiceError::BusyTenant => ApiError::status(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "This application's trigger conditions and unique keys have used their share of \
                 Herald's writer for this second; retry after a moment",
            ),
            ServiceError::Unavailable => ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable, retry",
            ),
            // The writer logged the panic; the client learns that nothing was kept.
            ServiceError::NotStored => ApiError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal server error: nothing of this request was stored; it may be retried",
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
                Json(HttpValidationError { detail: items }),
            )
                .into_response(),
            ApiError::Status {
                status,
                code,
                detail,
            } => {
                let mut response = (status, Json(HttpErrorOut { code, detail })).into_response();
                // Load shedding and restarts are short: tell clients when to come back.
                if matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) {
                    response.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from_static("1"),
                    );
                }
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreError;

    #[test]
    fn a_panicked_write_is_a_500_saying_nothing_was_stored() {
        let ApiError::Status {
            status,
            code,
            detail,
        } = ApiError::from(ServiceError::from(StoreError::Panicked))
        else {
            panic!("not a status answer");
        };
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "server_error");
        assert!(
            detail.contains("nothing of this request was stored"),
            "{detail}"
        );
    }
}
