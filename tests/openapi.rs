//! `GET /api/openapi.json`: the document is served without a token, is OpenAPI 3.x, and
//! documents every route Herald serves, with its parameters, answers, tags and auth. The list
//! of routes is written out here from SVIX_API.md (with Svix's parameter names), independently
//! of the code, so a route missing from the document fails this test.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every route Herald serves: Svix v1 (SVIX_API.md section 5) and Herald's extensions.
const ROUTES: &[(&str, &str)] = &[
    // Health (no token)
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/health/ping"),
    // Herald extensions
    ("GET", "/api/v1/app/{app_id}/trigger"),
    ("POST", "/api/v1/app/{app_id}/trigger"),
    ("GET", "/api/v1/app/{app_id}/trigger/{trigger_id}"),
    ("PUT", "/api/v1/app/{app_id}/trigger/{trigger_id}"),
    ("DELETE", "/api/v1/app/{app_id}/trigger/{trigger_id}"),
    ("POST", "/api/v1/app/{app_id}/trigger/preview"),
    ("GET", "/api/v1/event-type/{event_type_name}/merge-fields"),
    ("POST", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/verify"),
    ("POST", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/test"),
    ("GET", "/api/v1/alert"),
    ("POST", "/api/v1/alert/{alert_id}/acknowledge"),
    // Background task (Svix)
    ("GET", "/api/v1/background-task"),
    ("GET", "/api/v1/background-task/{task_id}"),
    ("GET", "/api/v1/admin/backup"),
    ("GET", "/metrics"),
    // Application
    ("GET", "/api/v1/app"),
    ("POST", "/api/v1/app"),
    ("GET", "/api/v1/app/{app_id}"),
    ("PUT", "/api/v1/app/{app_id}"),
    ("PATCH", "/api/v1/app/{app_id}"),
    ("DELETE", "/api/v1/app/{app_id}"),
    // Event type
    ("GET", "/api/v1/event-type"),
    ("POST", "/api/v1/event-type"),
    ("GET", "/api/v1/event-type/{event_type_name}"),
    ("PUT", "/api/v1/event-type/{event_type_name}"),
    ("PATCH", "/api/v1/event-type/{event_type_name}"),
    ("DELETE", "/api/v1/event-type/{event_type_name}"),
    // Endpoint
    ("GET", "/api/v1/app/{app_id}/endpoint"),
    ("POST", "/api/v1/app/{app_id}/endpoint"),
    ("GET", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("PUT", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("PATCH", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("DELETE", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("GET", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret"),
    (
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
    ),
    ("GET", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers"),
    ("PUT", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers"),
    (
        "PATCH",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
    ),
    ("GET", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats"),
    (
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
    ),
    (
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
    ),
    (
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
    ),
    // Message
    ("GET", "/api/v1/app/{app_id}/msg"),
    ("POST", "/api/v1/app/{app_id}/msg"),
    ("GET", "/api/v1/app/{app_id}/msg/{msg_id}"),
    ("DELETE", "/api/v1/app/{app_id}/msg/{msg_id}/content"),
    // Message attempt
    ("GET", "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}"),
    ("GET", "/api/v1/app/{app_id}/attempt/msg/{msg_id}"),
    (
        "GET",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
    ),
    (
        "DELETE",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
    ),
    ("GET", "/api/v1/app/{app_id}/msg/{msg_id}/endpoint"),
    (
        "POST",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
    ),
    ("GET", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg"),
    // The document itself (no token)
    ("GET", "/api/openapi.json"),
];

/// Routes that answer without a token.
const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/health/ping",
    "/api/openapi.json",
    "/metrics",
];

/// The query parameters Herald reads on each route that has any, and the JSON type of each.
const QUERY: &[(&str, &str, &[&str])] = &[
    ("GET", "/api/v1/alert", &["limit", "iterator", "open"]),
    (
        "GET",
        "/api/v1/background-task",
        &["limit", "iterator", "order", "status", "task"],
    ),
    ("GET", "/api/v1/app", &["limit", "iterator", "order"]),
    ("POST", "/api/v1/app", &["get_if_exists"]),
    (
        "GET",
        "/api/v1/event-type",
        &["limit", "iterator", "with_content", "include_archived"],
    ),
    ("DELETE", "/api/v1/event-type/{}", &["expunge"]),
    (
        "GET",
        "/api/v1/app/{}/endpoint",
        &["limit", "iterator", "order"],
    ),
    (
        "GET",
        "/api/v1/app/{}/endpoint/{}/stats",
        &["since", "until"],
    ),
    (
        "GET",
        "/api/v1/app/{}/msg",
        &[
            "limit",
            "iterator",
            "event_types",
            "channel",
            "before",
            "after",
            "with_content",
        ],
    ),
    ("POST", "/api/v1/app/{}/msg", &["with_content"]),
    ("GET", "/api/v1/app/{}/msg/{}", &["with_content"]),
    (
        "GET",
        "/api/v1/app/{}/attempt/endpoint/{}",
        &[
            "limit",
            "iterator",
            "status",
            "status_code_class",
            "event_types",
            "before",
            "after",
            "with_content",
        ],
    ),
    (
        "GET",
        "/api/v1/app/{}/attempt/msg/{}",
        &[
            "limit",
            "iterator",
            "status",
            "status_code_class",
            "endpoint_id",
            "before",
            "after",
            "with_content",
        ],
    ),
    (
        "GET",
        "/api/v1/app/{}/msg/{}/endpoint",
        &["limit", "iterator"],
    ),
    (
        "GET",
        "/api/v1/app/{}/endpoint/{}/msg",
        &[
            "limit",
            "iterator",
            "status",
            "channel",
            "event_types",
            "before",
            "after",
            "with_content",
        ],
    ),
];

/// The schema type each query parameter has wherever it appears.
const QUERY_TYPES: &[(&str, &str)] = &[
    ("limit", "integer"),
    ("iterator", "string"),
    ("order", "string"),
    ("with_content", "boolean"),
    ("include_archived", "boolean"),
    ("expunge", "boolean"),
    ("get_if_exists", "boolean"),
    ("open", "boolean"),
    ("event_types", "array"),
    ("channel", "string"),
    ("before", "string"),
    ("after", "string"),
    ("status", "integer"),
    ("status_code_class", "integer"),
    ("endpoint_id", "string"),
    ("since", "string"),
    ("until", "string"),
    ("task", "string"),
];

/// Parameters whose type on one route differs from `QUERY_TYPES` (a background task's `status`
/// is a word, a message's a number).
const QUERY_TYPES_ON: &[(&str, &str, &str)] = &[("/api/v1/background-task", "status", "string")];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `/app/{app_id}/msg` and `/app/{app}/msg` are the same route: parameter names differ
/// between Svix's reference and Herald's router, positions do not.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Follows a `$ref` to `#/components/...`; other values are answered as they are.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local reference");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("unresolved reference {r}"))
        }
        None => value,
    }
}

/// The JSON type of a schema, without `null` (`["string", "null"]` is a string).
fn schema_type(doc: &Value, schema: &Value) -> String {
    let schema = resolve(doc, schema);
    match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ => match schema["oneOf"].as_array() {
            Some(alternatives) => alternatives
                .iter()
                .map(|s| schema_type(doc, s))
                .find(|t| t != "null")
                .unwrap_or_default(),
            None => String::new(),
        },
    }
}

/// Every (METHOD, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    ops
}

async fn fetch_document(s: &TestServer) -> Value {
    let root = s.base.trim_end_matches("/api/v1");
    let resp = s
        .client
        .get(format!("{root}/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "served without a token");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).expect("the document is JSON")
}

#[tokio::test]
async fn the_document_is_openapi_3_and_served_without_a_token() {
    let s = start_server().await;
    let doc = fetch_document(&s).await;
    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let s = start_server().await;
    let doc = fetch_document(&s).await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, shape(&p)))
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), shape(p)))
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );

    // Each of them is really served: not the "No such route" fallback, not 405. Parameters
    // name nothing that exists and bodies are empty, so nothing is changed.
    let root = s.base.trim_end_matches("/api/v1");
    for (method, path) in documented.union(&expected) {
        let url = format!("{root}{}", path.replace("{}", "nothing_here"));
        let resp = s
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(status == StatusCode::NOT_FOUND && body["detail"] == "No such route"),
            "{method} {path} is documented but not served"
        );
    }
}

#[tokio::test]
async fn every_operation_has_a_tag_an_id_a_2xx_answer_and_its_path_parameters() {
    let s = start_server().await;
    let doc = fetch_document(&s).await;
    let declared_tags: HashSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = HashSet::new();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!tags.is_empty(), "{what}: no tag");
        for tag in tags {
            assert!(
                declared_tags.contains(tag.as_str().unwrap()),
                "{what}: undeclared tag {tag}"
            );
        }
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty() && ids.insert(id.to_string()),
            "{what}: operationId {id:?}"
        );

        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{what}: no 2xx answer"
        );

        let params = op["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let path_params: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(path_params, in_template, "{what}: path parameters");
        for p in params.iter().filter(|p| p["in"] == "path") {
            assert_eq!(
                p["required"], true,
                "{what}: {} must be required",
                p["name"]
            );
        }
    }
}

#[tokio::test]
async fn errors_use_the_svix_shapes_and_bearer_auth_is_declared() {
    let s = start_server().await;
    let doc = fetch_document(&s).await;
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let bearer: Vec<&String> = schemes
        .iter()
        .filter(|(_, s)| s["type"] == "http" && s["scheme"] == "bearer")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(bearer.len(), 1, "one bearer scheme: {schemes:?}");

    let error_schema = |op: &Value, status: &str| -> Value {
        resolve(
            &doc,
            &op["responses"][status]["content"]["application/json"]["schema"],
        )
        .clone()
    };
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let public = PUBLIC.contains(&path.as_str());
        let security = op["security"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if public {
            assert!(security.is_empty(), "{what}: needs no token");
        } else {
            assert!(
                security.iter().any(|req| req.get(bearer[0]).is_some()),
                "{what}: bearer auth"
            );
            assert!(op["responses"].get("401").is_some(), "{what}: 401");
        }
        if method == "POST" && !public {
            let params = op["parameters"].as_array().expect("parameters");
            assert!(
                params
                    .iter()
                    .any(|p| p["in"] == "header" && p["name"] == "idempotency-key"),
                "{what}: Idempotency-Key header"
            );
        }
        for status in op["responses"].as_object().unwrap().keys() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let schema = error_schema(op, status);
            let mut fields: Vec<&str> = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{what} {status}: an object body"))
                .keys()
                .map(String::as_str)
                .collect();
            fields.sort_unstable();
            if status == "422" {
                assert_eq!(fields, ["detail"], "{what} {status}");
                assert_eq!(schema["properties"]["detail"]["type"], "array", "{what}");
                let item = resolve(&doc, &schema["properties"]["detail"]["items"]);
                let mut item_fields: Vec<&str> = item["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                item_fields.sort_unstable();
                assert_eq!(item_fields, ["loc", "msg", "type"], "{what} {status}");
            } else {
                assert_eq!(fields, ["code", "detail"], "{what} {status}");
            }
        }
    }

    // The documented shapes are the ones sent.
    let (status, body) = s.request(Method::GET, "/app", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "detail"], "{body}");
    let (status, body) = s
        .request(
            Method::POST,
            "/app",
            Some(serde_json::json!({})),
            Some(&s.token),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut keys: Vec<&String> = body["detail"][0].as_object().unwrap().keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["loc", "msg", "type"], "{body}");
}

#[tokio::test]
async fn query_parameters_are_named_and_typed_as_herald_reads_them() {
    let s = start_server().await;
    let doc = fetch_document(&s).await;
    let types: BTreeMap<&str, &str> = QUERY_TYPES.iter().copied().collect();
    let expected: BTreeMap<(String, String), BTreeSet<&str>> = QUERY
        .iter()
        .map(|(m, p, names)| {
            (
                (m.to_string(), p.to_string()),
                names.iter().copied().collect(),
            )
        })
        .collect();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let params = op["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let query: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
        let names: BTreeSet<&str> = query.iter().map(|p| p["name"].as_str().unwrap()).collect();
        let want = expected
            .get(&(method.clone(), shape(&path)))
            .cloned()
            .unwrap_or_default();
        assert_eq!(names, want, "{what}: query parameters");
        for p in query {
            let name = p["name"].as_str().unwrap();
            assert_eq!(p["required"], false, "{what}: {name} is optional");
            let want = QUERY_TYPES_ON
                .iter()
                .find(|(route, n, _)| *route == path && *n == name)
                .map_or(types[name], |(_, _, t)| *t);
            assert_eq!(
                schema_type(&doc, &p["schema"]),
                want,
                "{what}: type of {name}"
            );
        }
    }
    // The two request-time formats that clients must get right.
    let list = &doc["paths"]["/api/v1/app/{app}/msg"]["get"]["parameters"];
    let param = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(param("before")["schema"]["format"], "date-time");
    assert_eq!(param("event_types")["schema"]["items"]["type"], "string");
    let order = &doc["paths"]["/api/v1/app"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "order")
        .unwrap()["schema"];
    let order = resolve(&doc, order);
    assert_eq!(
        order["enum"],
        serde_json::json!(["ascending", "descending"])
    );
}

#[tokio::test]
async fn bodies_have_the_svix_field_names() {
    let s = start_server().await;
    let doc = fetch_document(&s).await;
    let body_schema = |method: &str, path: &str, status: &str| -> Value {
        let op = &doc["paths"][path][method];
        let schema = if status.is_empty() {
            &op["requestBody"]["content"]["application/json"]["schema"]
        } else {
            &op["responses"][status]["content"]["application/json"]["schema"]
        };
        resolve(&doc, schema).clone()
    };
    // Properties of the schema itself and of every `allOf` part (a flattened struct, such
    // as Herald's endpoint extensions, is documented as one).
    let fields = |schema: &Value| -> BTreeSet<String> {
        let mut out: BTreeSet<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let part = resolve(&doc, part);
            out.extend(
                part["properties"]
                    .as_object()
                    .into_iter()
                    .flat_map(|p| p.keys().cloned()),
            );
        }
        out
    };
    let has = |schema: &Value, names: &[&str], what: &str| {
        let got = fields(schema);
        for name in names {
            assert!(got.contains(*name), "{what}: no {name} in {got:?}");
        }
    };
    has(
        &body_schema("post", "/api/v1/app/{app}/msg", ""),
        &[
            "eventType",
            "payload",
            "eventId",
            "channels",
            "payloadRetentionPeriod",
            "application",
        ],
        "MessageIn",
    );
    let message_in = body_schema("post", "/api/v1/app/{app}/msg", "");
    assert_eq!(message_in["properties"]["payload"]["type"], "object");
    has(
        &body_schema("post", "/api/v1/app/{app}/msg", "202"),
        &[
            "id",
            "eventType",
            "payload",
            "eventId",
            "channels",
            "timestamp",
        ],
        "MessageOut",
    );
    has(
        &body_schema("post", "/api/v1/app/{app}/endpoint", ""),
        &[
            "url",
            "eventTypes",
            "channels",
            "secret",
            "throttleRate",
            "disabled",
            "metadata",
            "uid",
        ],
        "EndpointIn",
    );
    has(
        &body_schema("get", "/api/v1/app/{app}/attempt/msg/{msg}", "200"),
        &["data", "iterator", "prevIterator", "done"],
        "ListResponse",
    );
    let list = body_schema("get", "/api/v1/app/{app}/attempt/msg/{msg}", "200");
    let required: Vec<&str> = list["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"iterator"), "the SDK needs `iterator`");
    let attempt = resolve(&doc, &list["properties"]["data"]["items"]);
    has(
        attempt,
        &[
            "id",
            "msgId",
            "endpointId",
            "url",
            "response",
            "responseStatusCode",
            "responseDurationMs",
            "status",
            "statusText",
            "triggerType",
            "timestamp",
        ],
        "MessageAttemptOut",
    );
    has(
        &body_schema("get", "/api/v1/app/{app}/endpoint/{endpoint}/stats", "200"),
        &["success", "pending", "sending", "fail", "canceled"],
        "EndpointStats",
    );
    has(
        &body_schema(
            "post",
            "/api/v1/app/{app}/endpoint/{endpoint}/recover",
            "202",
        ),
        &["id", "status", "task", "updatedAt"],
        "RecoverOut",
    );
}
