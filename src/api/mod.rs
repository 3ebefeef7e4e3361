//! Front door 1: the Svix v1 compatible JSON API.
//!
//! Each resource has one file that turns Svix-shaped JSON into service calls and back. This
//! module wires the routes, bearer-token authentication and Idempotency-Key replay. Routes are
//! added only through `OpenApiRouter::routes(routes!(...))`, never `.route(...)`, so that each
//! one is in the OpenAPI document (`openapi.rs`).
//!
//! Owns: paths, JSON field names, status codes, error bodies. Must never: hold a rule of its own
//! (rules are in `service/`) or touch storage.

mod admin;
mod alerts;
mod apps;
mod endpoints;
pub mod error;
mod event_types;
pub mod extract;
#[doc(hidden)]
pub mod fuzz;
mod health;
mod messages;
mod metrics;
mod openapi;
mod portal;
mod tasks;
mod triggers;

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::model::Micros;
use crate::service::{ListPage, ListParams, Replay, Service};
use error::ApiError;
use extract::QueryArgs;

/// The API: `/api/v1/...` and its OpenAPI document at `/api/openapi.json`.
pub fn router(service: Service) -> Router {
    let config = service.config();
    // Message bodies may carry the largest payload plus the rest of the message around it;
    // every other body is held to `request_body_max_bytes`.
    let message_limit = DefaultBodyLimit::max(config.payload_max_bytes + 64 * 1024);
    let body_limit = DefaultBodyLimit::max(config.request_body_max_bytes);
    let authed = OpenApiRouter::new()
        .merge(apps::routes().layer(body_limit))
        .merge(event_types::routes().layer(body_limit))
        .merge(endpoints::routes().layer(body_limit))
        .merge(messages::routes().layer(message_limit))
        .merge(triggers::routes().layer(body_limit))
        .merge(alerts::routes().layer(body_limit))
        .merge(tasks::routes().layer(body_limit))
        .merge(admin::routes().layer(body_limit))
        .merge(portal::routes().layer(body_limit));
    let authed = openapi::authenticated(authed)
        .layer(middleware::from_fn_with_state(service.clone(), idempotency))
        .layer(middleware::from_fn_with_state(
            service.clone(),
            authenticate,
        ));
    let api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", authed.merge(health::routes()))
        .merge(metrics::routes());
    openapi::serve_document(api)
        .fallback(|| async { ApiError::not_found("No such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::status(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This method is not allowed here",
            )
        })
        .layer(middleware::from_fn(reject_undecodable_paths))
        .with_state(service)
}

/// What a `worker` node answers over HTTP: health and metrics, for its supervisor and its
/// scraper; the API and the dashboard are the `api` nodes'.
pub fn worker_router(service: Service) -> Router {
    let api = OpenApiRouter::new()
        .nest("/api/v1", health::routes())
        .merge(metrics::routes());
    let (router, _) = api.split_for_parts();
    router
        .fallback(|| async {
            ApiError::status(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "This node is a worker: it answers only health and metrics",
            )
        })
        .with_state(service)
}

/// Answers a path whose percent-escapes do not decode to UTF-8 with the Svix error shape,
/// before the path extractors would answer it in plain text.
async fn reject_undecodable_paths(req: Request, next: Next) -> Response {
    let path = req.uri().path().as_bytes();
    // A path without escapes is already UTF-8 (it is a `str`): nothing to decode.
    if !path.contains(&b'%') {
        return next.run(req).await;
    }
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            path[i],
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return ApiError::bad_request("The path is not valid UTF-8 once decoded").into_response();
    }
    next.run(req).await
}

/// Resolves `Authorization: Bearer <token>` to a `Caller` in the request's extensions.
async fn authenticate(State(service): State<Service>, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(bearer) = bearer else {
        return ApiError::unauthorized().into_response();
    };
    match service.authenticate(bearer).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The scope a POST's Idempotency-Key is remembered under (its credentials, key and URI), or
/// `None` when it carries no usable key.
fn idempotency_scope(headers: &header::HeaderMap, uri: &axum::http::Uri) -> Option<[u8; 32]> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Some(Service::idempotency_key(auth, key, &uri.to_string()))
}

/// Whether a path is the route that remembers its own answers, `/app/{app}/msg` (POST: create a
/// message), the API's hottest POST and one the SDKs always send with a key. Remembering the
/// answer in the message's own commit spares it a read before and a second commit after
/// (`messages::create`). Paths are seen here without the `/api/v1` the router is nested under.
fn remembers_itself(path: &str) -> bool {
    let mut segments = path.trim_end_matches('/').split('/');
    matches!(
        (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next()
        ),
        (Some(""), Some("app"), Some(app), Some("msg"), None) if !app.is_empty()
    )
}

/// The scope of a create's Idempotency-Key, handed to the route that remembers its own answers.
#[derive(Clone, Copy)]
pub(crate) struct IdempotencyScope(pub [u8; 32]);

/// An answer that carries a secret (a portal link's token, a new signing key). The
/// idempotency middleware never remembers it: that table is kept for hours and copied into
/// every backup, and a secret must not live anywhere but where its rules keep it (a portal
/// token only as a hash; a signing key only in its endpoint). So a retry with the same key
/// runs again: a portal link is minted afresh (the lost one expires on its own), a rotation
/// rotates again (the key the lost answer carried keeps signing through its grace period).
pub(crate) struct CarriesSecret<T>(pub T);

/// The mark `CarriesSecret` leaves on a response for the middleware.
#[derive(Clone, Copy)]
struct SecretAnswer;

impl<T: IntoResponse> IntoResponse for CarriesSecret<T> {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response.extensions_mut().insert(SecretAnswer);
        response
    }
}

/// Replays the first 2xx answer to a POST carrying the same Idempotency-Key (and the same
/// credentials and URI); a failed answer is not remembered, so a retry runs again, and neither
/// is one that carries a secret (`CarriesSecret`).
async fn idempotency(State(service): State<Service>, mut req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(scope) = idempotency_scope(req.headers(), req.uri()) else {
        return next.run(req).await;
    };
    if remembers_itself(req.uri().path()) {
        req.extensions_mut().insert(IdempotencyScope(scope));
        return next.run(req).await;
    }
    match service.idempotent_response(scope).await {
        Ok(Some(answer)) => return replayed(answer),
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let response = next.run(req).await;
    if !response.status().is_success() || response.extensions().get::<SecretAnswer>().is_some() {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The handlers' answers are already whole in memory (JSON); `remember_response` decides
    // whether one is small enough to keep. The work is done either way, so it is answered.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::from(crate::service::ServiceError::Internal(format!(
                "an answer could not be read to remember it: {e}"
            )))
            .into_response();
        }
    };
    if let Err(e) = service
        .remember_response(scope, parts.status.as_u16(), bytes.to_vec())
        .await
    {
        tracing::warn!(error = %e, "idempotent response not remembered");
    }
    Response::from_parts(parts, HttpBody::from(bytes))
}

/// The answer remembered under a repeated Idempotency-Key, sent again.
fn replayed(answer: Replay) -> Response {
    let (status, body) = match answer {
        Replay::Sent(status, body) => (status, body),
        Replay::Message(msg, with_content) => return messages::accepted(msg, with_content),
    };
    let mut response = Response::new(HttpBody::from(body));
    *response.status_mut() =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Svix's list envelope. `iterator` is always present (null on an empty page).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    /// Pass as `iterator` to read the next page; null when the page is empty.
    #[schema(required = true)]
    pub iterator: Option<String>,
    /// Pass as `iterator` to read the page before this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_iterator: Option<String>,
    /// No more items in the direction read.
    pub done: bool,
}

impl<T> ListResponse<T> {
    pub fn from_page<U>(page: ListPage<U>, f: impl FnMut(U) -> T) -> ListResponse<T> {
        ListResponse {
            data: page.data.into_iter().map(f).collect(),
            iterator: page.iterator,
            prev_iterator: page.prev_iterator,
            done: page.done,
        }
    }
}

/// `limit` and `iterator` from the query string.
fn list_params(q: &QueryArgs) -> Result<ListParams, ApiError> {
    Ok(ListParams {
        limit: q.usize("limit")?,
        iterator: q.str("iterator").map(str::to_owned),
    })
}

/// `ascending` / `descending`, with the list's own default.
fn descending(q: &QueryArgs, default: bool) -> Result<bool, ApiError> {
    match q.str("order") {
        None => Ok(default),
        Some("ascending") => Ok(false),
        Some("descending") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            &["query", "order"],
            format!("'{other}' is not ascending or descending"),
            "value_error",
        )),
    }
}

/// RFC 3339 in UTC with microseconds and `Z`, as Svix writes times.
pub fn time(us: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Stored JSON text as a raw JSON value in a response.
pub fn raw_json(text: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(text.to_owned())
        .unwrap_or_else(|_| serde_json::value::RawValue::from_string("{}".into()).expect("valid"))
}

/// Serde helper for PATCH fields: absent -> `None` (keep), `null` -> `Some(None)` (clear),
/// a value -> `Some(Some(v))`. Use with `#[serde(default, with = "super::nullable")]`.
pub mod nullable {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::remembers_itself;

    #[test]
    fn only_the_message_create_path_remembers_its_own_answers() {
        for path in ["/app/acme/msg", "/app/app_01J/msg/"] {
            assert!(remembers_itself(path), "{path}");
        }
        for path in [
            "/app",
            "/app/acme",
            "/app//msg",
            "/app/acme/msg/msg_1",
            "/app/acme/endpoint",
            "/app/acme/msg/extra/msg",
            "/api/v1/app/acme/msg",
        ] {
            assert!(!remembers_itself(path), "{path}");
        }
    }
}
