//! The OpenAPI 3.1 document of the API, generated from the code and served at
//! `GET /api/openapi.json`.
//!
//! Every route is registered with `OpenApiRouter::routes(routes!(handler, ...))`, which takes the
//! method and path from the handler's `#[utoipa::path]` attribute: the router and the document
//! are built from the same attribute, so a route cannot be served without being documented.
//! Schemas come from `ToSchema` on the very types that are (de)serialized. What a middleware
//! adds to every route it wraps (bearer auth, its 401, Idempotency-Key) is documented by
//! `authenticated`, called where that middleware is layered.
//!
//! Owns: the document's metadata, tags and security scheme, and the parameter types shared by
//! several handlers. Must never: change what a route answers; the types here that are not
//! (de)serialized exist only to be documented.

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{HttpErrorOut, HttpValidationError, ValidationItem};
use crate::service::Service;

/// The name of the bearer-token security scheme (Svix's name for it).
const BEARER: &str = "HTTPBearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "A webhook delivery appliance with a Svix v1 compatible API. Paths, \
            camelCase fields, status codes and error bodies are Svix's; the official Svix SDKs \
            work with their server URL pointed at Herald. Endpoints marked as Herald extensions \
            follow the same conventions."
    ),
    tags(
        (name = "Application", description = "Applications: the tenants that messages are sent for."),
        (name = "Event Type", description = "The event catalog shared by every application."),
        (name = "Endpoint", description = "An application's webhook endpoints, their secrets, headers and statistics."),
        (name = "Message", description = "Messages sent to an application's endpoints."),
        (name = "Message Attempt", description = "Delivery attempts of messages to endpoints; resend."),
        (name = "Trigger", description = "Herald extension: routing rules with conditions, payload templates, priority and unique keys."),
        (name = "Background Tasks", description = "Recover and replay-missing as they run: read back by id or listed."),
        (name = "Alert", description = "Herald extension: exhausted deliveries, disabled endpoints and unreadable deliveries taken out of the queue."),
        (name = "Admin", description = "Herald extension: operating the server (admin tokens only)."),
        (name = "Health", description = "Liveness of the server and its database; no token needed."),
        (name = "OpenAPI", description = "This document; no token needed."),
    ),
    // Schemas that handlers name only in inline parameters or not at all.
    components(schemas(HttpErrorOut, HttpValidationError, ValidationItem, Ordering)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token made with `herald token create`: an admin token (every \
                         application) or one scoped to a single application.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answers the authentication middleware can give instead of the handler's.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum AuthResponses {
    /// The `Authorization: Bearer` token is missing, unknown or revoked
    /// (`authentication_failed`).
    #[response(status = 401)]
    Unauthorized(HttpErrorOut),
    /// The database is busy or restarting (`unavailable`); retry.
    #[response(status = 503)]
    Unavailable(HttpErrorOut),
}

/// The header the idempotency middleware reads on POST.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IdempotencyHeader {
    /// Any string. The first 2xx answer to a POST with this key (and the same token and URI)
    /// is remembered and replayed to later requests carrying it; failed answers are not kept.
    #[param(rename = "idempotency-key")]
    idempotency_key: Option<String>,
}

/// Documents, on every route of `router`, what the authentication and idempotency middleware
/// add: the bearer requirement, their error answers, and the Idempotency-Key header on POST.
/// Call it on exactly the router those middleware wrap.
pub fn authenticated(mut router: OpenApiRouter<Service>) -> OpenApiRouter<Service> {
    let auth_responses = AuthResponses::responses();
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        let PathItem {
            get,
            put,
            post,
            delete,
            options,
            head,
            patch,
            trace,
            ..
        } = item;
        for (is_post, op) in [
            (false, get),
            (false, put),
            (true, post),
            (false, delete),
            (false, options),
            (false, head),
            (false, patch),
            (false, trace),
        ] {
            let Some(op) = op else { continue };
            op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            for (status, response) in &auth_responses {
                op.responses
                    .responses
                    .entry(status.clone())
                    .or_insert_with(|| response.clone());
            }
            if is_post {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .extend(IdempotencyHeader::into_params(|| None));
            }
        }
    }
    router
}

/// The serialized document, made once when the router is built.
#[derive(Clone)]
struct DocumentJson(Bytes);

/// Adds `GET /api/openapi.json` to `api` and turns both into a plain router. The document
/// covers every route of `api` and this one.
pub fn serve_document(api: OpenApiRouter<Service>) -> Router<Service> {
    let (own_route, own_doc) = OpenApiRouter::new()
        .routes(routes!(document))
        .split_for_parts();
    let (api, mut doc) = api.split_for_parts();
    doc.merge(own_doc);
    let mut doc = serde_json::to_value(&doc).expect("an OpenAPI document serializes to JSON");
    refer_to_components(&mut doc);
    let json = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
    // Only the document's own route needs the document.
    api.merge(own_route.layer(Extension(DocumentJson(Bytes::from(json)))))
}

/// utoipa 5 writes the schema of a generic argument inline (the items of
/// `ListResponse<ApplicationOut>` are a copy of `ApplicationOut`) instead of referring to the
/// component: put the reference back, so that generated clients name the type. Only object
/// and composed (`allOf`) schemas are replaced, so a plain string or enum never turns into a
/// reference.
fn refer_to_components(doc: &mut Value) {
    let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") else {
        return;
    };
    let named: Vec<(String, Value)> = schemas
        .iter()
        .filter(|(_, schema)| schema.get("properties").is_some() || schema.get("allOf").is_some())
        .map(|(name, schema)| (name.clone(), schema.clone()))
        .collect();
    for schema in schemas.values_mut() {
        // The component itself stays; what is inside it may become a reference.
        if let Value::Object(fields) = schema {
            refer_within(fields, &named);
        }
    }
}

fn refer_within(fields: &mut Map<String, Value>, named: &[(String, Value)]) {
    for value in fields.values_mut() {
        refer_value(value, named);
    }
}

fn refer_value(value: &mut Value, named: &[(String, Value)]) {
    if let Some((name, _)) = named.iter().find(|(_, schema)| schema == value) {
        *value = json!({ "$ref": format!("#/components/schemas/{name}") });
        return;
    }
    match value {
        Value::Object(fields) => refer_within(fields, named),
        Value::Array(items) => items.iter_mut().for_each(|v| refer_value(v, named)),
        _ => {}
    }
}

/// The OpenAPI document
///
/// This document: every route of the API with its parameters, bodies and answers.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "OpenAPI",
    operation_id = "openapi.get",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
    )
)]
async fn document(Extension(DocumentJson(json)): Extension<DocumentJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// Ordering of a list by id, that is by creation time.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Ordering {
    Ascending,
    Descending,
}

/// `limit` and `iterator` of every list (parsed by `list_params`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct Pagination {
    /// Page size: 1 to `page_limit_max` (250 unless configured), default 50.
    #[param(minimum = 1, default = 50)]
    limit: Option<u32>,
    /// The `iterator` of the previous page to read the next one, or its `prevIterator` (a key
    /// with a leading `-`) to read the page before.
    iterator: Option<String>,
}

/// `with_content` of the message and attempt reads.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct WithContent {
    /// Include payloads (and attempt responses); `false` answers `{}` in their place.
    #[param(default = true)]
    with_content: Option<bool>,
}

/// `before` and `after` of the time-ordered lists (messages and attempts).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TimeWindow {
    /// Only items created before this time (RFC 3339; without an offset it is UTC).
    #[param(format = DateTime)]
    before: Option<String>,
    /// Only items created after this time (RFC 3339; without an offset it is UTC).
    #[param(format = DateTime)]
    after: Option<String>,
}

/// `event_types` of the message and attempt lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventTypesFilter {
    /// Only these event types. Repeated (`event_types=a&event_types=b`), with brackets
    /// (`event_types[]=a`) or comma-separated (`event_types=a,b`).
    event_types: Option<Vec<String>>,
}

/// Path parameters: an application.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AppPath {
    /// The application's id (`app_...`) or uid.
    app: String,
}

/// Path parameters: an event type.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EventTypePath {
    /// The event type's name, e.g. `user.created`.
    name: String,
}

/// Path parameters: an endpoint of an application.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EndpointPath {
    /// The application's id (`app_...`) or uid.
    app: String,
    /// The endpoint's id (`ep_...`) or uid.
    endpoint: String,
}

/// Path parameters: a message of an application.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct MessagePath {
    /// The application's id (`app_...`) or uid.
    app: String,
    /// The message's id (`msg_...`) or `eventId`.
    msg: String,
}

/// Path parameters: one attempt of a message.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AttemptPath {
    /// The application's id (`app_...`) or uid.
    app: String,
    /// The message's id (`msg_...`) or `eventId`.
    msg: String,
    /// The attempt's id (`atmpt_...`).
    attempt: String,
}

/// Path parameters: a message and one endpoint.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct MessageEndpointPath {
    /// The application's id (`app_...`) or uid.
    app: String,
    /// The message's id (`msg_...`) or `eventId`.
    msg: String,
    /// The endpoint's id (`ep_...`) or uid.
    endpoint: String,
}
