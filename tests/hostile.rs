//! Hostile input: hundreds of generated bad requests against a real server. Each must be
//! answered 4xx (never 5xx, never a dropped connection) with a JSON body in the Svix error
//! shape (`{"code","detail"}`, or for 422 `{"detail":[{"loc","msg","type"}]}`); the server
//! keeps serving after every batch; and nothing is stored half-way: after the barrage every
//! application, event type, endpoint (with its secret and headers), message and trigger reads
//! exactly as the valid setup left it.
//!
//! Requests go over a raw TCP connection so that every byte is the test's: paths are sent
//! as written (no client-side normalisation of `..` or percent escapes), and header values may
//! carry bytes a typed client would refuse to build.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a single hostile request may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// Depth of the deeply nested documents.
const NESTING: usize = 10_000;

/// One generated bad request.
struct Case {
    /// What the case is, for the report.
    label: String,
    method: String,
    /// The request target, sent byte for byte.
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// The exact status expected, when only one is right (405, 401, 404, 413).
    expect: Option<u16>,
}

impl Case {
    fn new(label: impl Into<String>, method: &str, target: impl Into<String>) -> Case {
        Case {
            label: label.into(),
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            expect: None,
        }
    }

    /// Authenticates with a bearer token.
    fn auth(mut self, token: &str) -> Case {
        self.headers.push((
            "Authorization".into(),
            format!("Bearer {token}").into_bytes(),
        ));
        self
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Case {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = body.into();
        self.headers
            .push(("Content-Type".into(), b"application/json".to_vec()));
        self
    }

    fn json(self, body: &Value) -> Case {
        self.body(serde_json::to_vec(body).unwrap())
    }

    fn expect(mut self, status: u16) -> Case {
        self.expect = Some(status);
        self
    }

    /// The request as it is written on the wire, without its (possibly huge) body.
    fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (name, value) in &self.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        head
    }

    /// How the case is shown in the report: method, target and the start of the body.
    fn describe(&self) -> String {
        let target: String = self.target.chars().take(160).collect();
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(160)]).into_owned();
        let headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n != "Content-Type")
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(&v[..v.len().min(60)]).into_owned();
                format!("{n}: {v}{}", if v.len() >= 60 { "..." } else { "" })
            })
            .collect();
        format!(
            "[{}] {} {}{} headers {:?} body ({} bytes) {:?}",
            self.label,
            self.method,
            target,
            if self.target.len() > 160 { "..." } else { "" },
            headers,
            self.body.len(),
            body
        )
    }
}

/// An HTTP answer as read off the socket.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// Sends one request on a fresh connection and reads the answer until the server closes it.
/// The body is written concurrently with reading, so an early answer (413) is still read.
async fn send(addr: SocketAddr, case: &Case) -> Result<Answer, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let mut request = case.head();
    request.extend_from_slice(&case.body);
    // The write half stays open until the answer is read: a half-closed connection could
    // make the server drop its answer.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        let _ = wr.flush().await;
        wr
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(ANSWER_WITHIN, rd.read_to_end(&mut raw)).await;
    let write_half = tokio::time::timeout(Duration::from_secs(1), writer).await;
    drop(write_half);
    match read {
        Err(_) => return Err(format!("no answer within {ANSWER_WITHIN:?}")),
        // A reset after the whole answer arrived is the server closing on an unread body.
        Ok(Err(e)) if raw.is_empty() => return Err(format!("connection failed: {e}")),
        _ => {}
    }
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut headers = BTreeMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let rest = &raw[end + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(n) = headers.get("content-length") {
        let n: usize = n.parse().map_err(|_| "bad content-length".to_string())?;
        if rest.len() < n {
            return Err(format!("answer cut short: {} of {n} bytes", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunk cut short".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Whether `answer` is a 4xx in the Svix error shape; otherwise why not.
fn judge(case: &Case, answer: &Answer) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
    if !(400..500).contains(&answer.status) {
        return Err(format!("answered {} (want 4xx): {text}", answer.status));
    }
    if let Some(want) = case.expect
        && answer.status != want
    {
        return Err(format!("answered {} (want {want}): {text}", answer.status));
    }
    // Headers too large to parse are refused by the HTTP layer (hyper) before any of Herald's
    // code runs: 431 with no body is all it can say there. Still a 4xx, still no harm done.
    if answer.status == 431 && answer.body.is_empty() {
        return Ok(());
    }
    if !answer.content_type.starts_with("application/json") {
        return Err(format!(
            "answered {} with content-type {:?} and body {text:?} (want a JSON error body)",
            answer.status, answer.content_type
        ));
    }
    let value: Value = serde_json::from_slice(&answer.body).map_err(|e| {
        format!(
            "answered {} with a body that is not JSON ({e}): {text:?}",
            answer.status
        )
    })?;
    let shape_ok = if answer.status == 422 {
        value["detail"].as_array().is_some_and(|items| {
            !items.is_empty()
                && items.iter().all(|i| {
                    i["loc"].as_array().is_some_and(|l| {
                        !l.is_empty() && l.iter().all(|p| p.is_string() || p.is_number())
                    }) && i["msg"].is_string()
                        && i["type"].is_string()
                })
        })
    } else {
        value["code"].as_str().is_some_and(|c| !c.is_empty()) && value["detail"].is_string()
    };
    if !shape_ok {
        return Err(format!(
            "answered {} with JSON not in the Svix error shape: {text}",
            answer.status
        ));
    }
    Ok(())
}

/// The JSON type of a request field, as far as hostile values go.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    U16,
    U32,
    U64,
    StrList,
    U64List,
    StrMap,
    /// A map whose values may be null (header patches).
    NullableStrMap,
    /// `{"username","password"}` / `{"certificate","privateKey"}`.
    Object,
    /// A message payload: a JSON object.
    Payload,
    /// `{"1": <JSON schema>}` / an example: a JSON object.
    JsonObject,
    Priority,
    /// An RFC 3339 time as a string.
    Time,
    /// An application body nested in a message.
    App,
}

/// One field of a request body: its name, type, and whether `null` is a valid value.
#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    nullable: bool,
    /// The body is invalid without it.
    required: bool,
}

/// A required field.
const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        nullable: false,
        required: true,
    }
}

/// A field with a default, never null.
const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        nullable: false,
        required: false,
    }
}

/// An optional field; null is a valid value.
const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        nullable: true,
        required: false,
    }
}

/// Values that are not of the field's type (and `null` where the field may not be null).
fn wrong_values(field: Field) -> Vec<Value> {
    let mut values = match field.kind {
        Kind::Str => vec![json!(1), json!(true), json!([]), json!({}), json!(2.5)],
        Kind::Bool => vec![json!("yes"), json!(1), json!([]), json!({})],
        Kind::U16 => vec![
            json!(-1),
            json!(65_536),
            json!(1.5),
            json!("5"),
            json!([]),
            json!(true),
        ],
        Kind::U32 => vec![json!(-1), json!(4_294_967_296u64), json!(1.5), json!("5")],
        Kind::U64 => vec![json!(-1), json!(1e40), json!(1.5), json!("5"), json!({})],
        Kind::StrList => vec![
            json!("a"),
            json!(1),
            json!({}),
            json!([1]),
            json!([null]),
            json!([[]]),
        ],
        Kind::U64List => vec![
            json!("1"),
            json!([-1]),
            json!([1.5]),
            json!(["1"]),
            json!({}),
        ],
        Kind::StrMap => vec![
            json!([]),
            json!("x"),
            json!(1),
            json!({"k": 1}),
            json!({"k": []}),
        ],
        Kind::NullableStrMap => vec![json!([]), json!("x"), json!({"k": 1}), json!({"k": {}})],
        Kind::Object => vec![json!("x"), json!(1), json!([]), json!({})],
        Kind::Payload => vec![json!("x"), json!(1), json!([1, 2]), json!(true)],
        Kind::JsonObject => vec![json!("x"), json!(1), json!([1])],
        Kind::Priority => vec![json!("urgent"), json!("HIGH"), json!(1), json!({})],
        Kind::Time => vec![
            json!("yesterday"),
            json!(1_700_000_000),
            json!("2024-13-45T25:61:00Z"),
            json!(""),
        ],
        Kind::App => vec![json!("x"), json!([]), json!({"name": 1})],
    };
    if !field.nullable && !matches!(field.kind, Kind::Payload) {
        values.push(Value::Null);
    }
    if matches!(field.kind, Kind::Payload) {
        values.push(Value::Null); // a JSON value, but not an object
    }
    values
}

/// A route that takes a JSON body: a valid body, and each field's type.
struct BodyRoute {
    method: &'static str,
    path: String,
    /// A body the route would accept (never sent as is: only variants of it that are bad).
    valid: Value,
    fields: Vec<Field>,
    /// An empty body is valid here (Svix SDKs send some POSTs without one).
    body_optional: bool,
}

/// The ids the setup created.
struct World {
    app_a: String,
    app_b: String,
    ep_a: String,
    ep_b: String,
    msg_a: String,
    msg_b: String,
    trg_a: String,
    trg_b: String,
    attempt_a: String,
    receiver_url: String,
}

fn body_routes(w: &World) -> Vec<BodyRoute> {
    use Kind::*;
    let (a, ep) = (&w.app_a, &w.ep_a);
    let app_fields = vec![
        req("name", Str),
        opt("uid", Str),
        opt("throttleRate", U16),
        opt("metadata", StrMap),
    ];
    let app_patch = vec![
        opt("name", Str),
        opt("uid", Str),
        opt("throttleRate", U16),
        opt("metadata", StrMap),
    ];
    let event_type = vec![
        req("name", Str),
        f("description", Str),
        f("archived", Bool),
        f("deprecated", Bool),
        opt("schemas", JsonObject),
        opt("groupName", Str),
        opt("featureFlags", StrList),
        opt("example", JsonObject),
    ];
    let event_type_patch = vec![
        opt("description", Str),
        opt("archived", Bool),
        opt("deprecated", Bool),
        opt("schemas", JsonObject),
        opt("groupName", Str),
        opt("featureFlags", StrList),
        opt("example", JsonObject),
    ];
    let endpoint_options = [
        opt("basicAuth", Object),
        opt("clientCertificate", Object),
        opt("timeoutMs", U64),
        opt("retrySchedule", U64List),
        opt("maxAttempts", U32),
        opt("concurrencyLimit", U32),
    ];
    let mut endpoint = vec![
        req("url", Str),
        f("description", Str),
        opt("uid", Str),
        opt("eventTypes", StrList),
        opt("filterTypes", StrList),
        opt("channels", StrList),
        opt("secret", Str),
        f("disabled", Bool),
        opt("throttleRate", U16),
        opt("rateLimit", U16),
        opt("metadata", StrMap),
        opt("headers", StrMap),
        f("verify", Bool),
    ];
    endpoint.extend(endpoint_options);
    let endpoint_update: Vec<Field> = endpoint
        .iter()
        .copied()
        .filter(|x| !matches!(x.name, "secret" | "headers" | "verify"))
        .collect();
    let mut endpoint_patch = vec![
        opt("url", Str),
        opt("description", Str),
        opt("uid", Str),
        opt("eventTypes", StrList),
        opt("filterTypes", StrList),
        opt("channels", StrList),
        opt("disabled", Bool),
        opt("throttleRate", U16),
        opt("rateLimit", U16),
        opt("metadata", StrMap),
    ];
    endpoint_patch.extend(endpoint_options);
    let trigger = vec![
        req("endpointId", Str),
        f("description", Str),
        req("eventTypes", StrList),
        opt("condition", Str),
        opt("template", Str),
        f("contentType", Str),
        f("priority", Priority),
        opt("uniqueKey", Str),
        f("delayMs", U64),
        f("enabled", Bool),
    ];
    let valid_trigger = json!({"endpointId": ep, "eventTypes": ["hostile.other"]});
    let valid_endpoint = json!({"url": w.receiver_url, "eventTypes": ["hostile.ok"]});
    let ep_path = format!("/api/v1/app/{a}/endpoint/{ep}");
    vec![
        BodyRoute {
            method: "POST",
            path: "/api/v1/app".into(),
            valid: json!({"name": "N"}),
            fields: app_fields.clone(),
            body_optional: false,
        },
        BodyRoute {
            method: "PUT",
            path: format!("/api/v1/app/{a}"),
            valid: json!({"name": "N"}),
            fields: app_fields.clone(),
            body_optional: false,
        },
        BodyRoute {
            method: "PATCH",
            path: format!("/api/v1/app/{a}"),
            valid: json!({"name": "N"}),
            fields: app_patch,
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: "/api/v1/event-type".into(),
            valid: json!({"name": "hostile.new", "description": "d"}),
            fields: event_type.clone(),
            body_optional: false,
        },
        BodyRoute {
            method: "PUT",
            path: "/api/v1/event-type/hostile.ok".into(),
            valid: json!({"description": "d"}),
            fields: event_type[1..].to_vec(),
            body_optional: false,
        },
        BodyRoute {
            method: "PATCH",
            path: "/api/v1/event-type/hostile.ok".into(),
            valid: json!({"description": "d"}),
            fields: event_type_patch,
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("/api/v1/app/{a}/endpoint"),
            valid: valid_endpoint.clone(),
            fields: endpoint,
            body_optional: false,
        },
        BodyRoute {
            method: "PUT",
            path: ep_path.clone(),
            valid: valid_endpoint.clone(),
            fields: endpoint_update,
            body_optional: false,
        },
        BodyRoute {
            method: "PATCH",
            path: ep_path.clone(),
            valid: json!({"description": "d"}),
            fields: endpoint_patch,
            body_optional: false,
        },
        BodyRoute {
            method: "PUT",
            path: format!("{ep_path}/headers"),
            valid: json!({"headers": {"x-a": "1"}}),
            fields: vec![req("headers", StrMap)],
            body_optional: false,
        },
        BodyRoute {
            method: "PATCH",
            path: format!("{ep_path}/headers"),
            valid: json!({"headers": {"x-a": "1"}}),
            fields: vec![f("headers", NullableStrMap), f("deleteHeaders", StrList)],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("{ep_path}/secret/rotate"),
            valid: json!({}),
            fields: vec![opt("key", Str), opt("gracePeriodSeconds", U64)],
            body_optional: true,
        },
        BodyRoute {
            method: "POST",
            path: format!("{ep_path}/send-example"),
            valid: json!({"eventType": "hostile.ok"}),
            fields: vec![req("eventType", Str), opt("exampleIndex", U32)],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("{ep_path}/recover"),
            valid: json!({"since": "2024-01-01T00:00:00Z"}),
            fields: vec![req("since", Time), opt("until", Time)],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("{ep_path}/replay-missing"),
            valid: json!({"since": "2024-01-01T00:00:00Z"}),
            fields: vec![req("since", Time), opt("until", Time)],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("{ep_path}/verify"),
            valid: json!({"code": "x"}),
            fields: vec![req("code", Str)],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("{ep_path}/test"),
            valid: json!({}),
            fields: vec![opt("eventType", Str)],
            body_optional: true,
        },
        BodyRoute {
            method: "POST",
            path: format!("/api/v1/app/{a}/msg"),
            valid: json!({"eventType": "hostile.ok", "payload": {"k": 1}}),
            fields: vec![
                req("eventType", Str),
                req("payload", Payload),
                opt("eventId", Str),
                opt("channels", StrList),
                opt("payloadRetentionPeriod", U16),
                opt("application", App),
            ],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("/api/v1/app/{a}/trigger"),
            valid: valid_trigger.clone(),
            fields: trigger.clone(),
            body_optional: false,
        },
        BodyRoute {
            method: "PUT",
            path: format!("/api/v1/app/{a}/trigger/{}", w.trg_a),
            valid: valid_trigger,
            fields: trigger,
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("/api/v1/app/{a}/trigger/preview"),
            valid: json!({"eventType": "hostile.ok", "payload": {"k": 1}}),
            fields: vec![
                req("eventType", Str),
                opt("payload", JsonObject),
                opt("condition", Str),
                opt("template", Str),
                f("contentType", Str),
                opt("uniqueKey", Str),
            ],
            body_optional: false,
        },
        BodyRoute {
            method: "POST",
            path: format!("/api/v1/auth/app-portal-access/{a}"),
            valid: json!({}),
            fields: vec![opt("expiry", U64), opt("readOnly", Bool)],
            body_optional: true,
        },
    ]
}

/// Bodies that are not JSON, not one JSON document, or not a JSON object.
fn malformed_bodies(route: &BodyRoute) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"{\"name\":".to_vec(),
        b"{\"name\": \"x\"".to_vec(),
        b"[".to_vec(),
        b"nul".to_vec(),
        b"{\"a\": 1,}".to_vec(),
        b"{'name': 'x'}".to_vec(),
        b"{} {}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"\x00\x01\x02".to_vec(),
        b"\"just a string\"".to_vec(),
        b"42".to_vec(),
        b"true".to_vec(),
        // An array where an object belongs.
        b"[]".to_vec(),
    ];
    // A lone surrogate in a string field the route reads.
    if let Some(field) = route.fields.iter().find(|x| matches!(x.kind, Kind::Str)) {
        bodies.push(format!("{{\"{}\": \"\\ud800\"}}", field.name).into_bytes());
    }
    if !route.body_optional {
        bodies.push(Vec::new());
        bodies.push(b"   ".to_vec());
        bodies.push(b"null".to_vec());
    }
    if route.fields.iter().any(|x| x.required) {
        bodies.push(b"{}".to_vec());
    }
    bodies
}

fn nested_array(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

fn nested_object(depth: usize) -> String {
    "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth)
}

/// Generates every case: each is a request Herald must refuse with a 4xx in the Svix shape.
fn generate(w: &World, admin: &str, tenant_b: &str) -> Vec<(&'static str, Vec<Case>)> {
    let admin_auth = admin;
    let mut batches: Vec<(&'static str, Vec<Case>)> = Vec::new();
    let routes = body_routes(w);

    // 1. Malformed and truncated JSON, on every route that takes a body.
    let mut cases = Vec::new();
    for r in &routes {
        for body in malformed_bodies(r) {
            cases.push(
                Case::new("malformed JSON", r.method, &r.path)
                    .auth(admin_auth)
                    .body(body),
            );
        }
        // The valid body cut in half.
        let text = serde_json::to_vec(&r.valid).unwrap();
        cases.push(
            Case::new("truncated JSON", r.method, &r.path)
                .auth(admin_auth)
                .body(text[..text.len() / 2].to_vec()),
        );
    }
    batches.push(("malformed JSON", cases));

    // 2. A wrong type in every field of every body.
    let mut cases = Vec::new();
    for r in &routes {
        for field in &r.fields {
            for bad in wrong_values(*field) {
                let mut body = r.valid.clone();
                body[field.name] = bad.clone();
                cases.push(
                    Case::new(format!("wrong type in {}", field.name), r.method, &r.path)
                        .auth(admin_auth)
                        .json(&body),
                );
            }
        }
        // Each required field missing.
        for required in r.fields.iter().filter(|x| x.required) {
            let mut body = r.valid.clone();
            body.as_object_mut().unwrap().remove(required.name);
            cases.push(
                Case::new(format!("missing {}", required.name), r.method, &r.path)
                    .auth(admin_auth)
                    .json(&body),
            );
        }
    }
    // Positional arrays in place of objects.
    for (method, path, body) in [
        ("POST", "/api/v1/app".to_string(), json!(["Positional"])),
        (
            "POST",
            "/api/v1/event-type".to_string(),
            json!(["positional.type", "d"]),
        ),
        (
            "POST",
            format!("/api/v1/app/{}/msg", w.app_a),
            json!(["hostile.ok", {"k": 1}]),
        ),
    ] {
        cases.push(
            Case::new("an array as the body", method, path)
                .auth(admin_auth)
                .json(&body),
        );
    }
    batches.push(("wrong types", cases));

    // 3. Values of the right type that no rule allows.
    let a = &w.app_a;
    let ep_path = format!("/api/v1/app/{a}/endpoint/{}", w.ep_a);
    let mut cases = Vec::new();
    let bad_values: Vec<(&str, String, Value)> = vec![
        ("POST", "/api/v1/app".into(), json!({"name": ""})),
        (
            "POST",
            "/api/v1/app".into(),
            json!({"name": "N", "uid": "has space"}),
        ),
        (
            "POST",
            "/api/v1/app".into(),
            json!({"name": "N", "uid": "app_01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        ),
        (
            "POST",
            "/api/v1/app".into(),
            json!({"name": "N", "throttleRate": 0}),
        ),
        (
            "POST",
            "/api/v1/app".into(),
            json!({"name": "x".repeat(5000)}),
        ),
        (
            "POST",
            "/api/v1/app".into(),
            json!({"name": "N", "metadata": {"k": "v".repeat(5000)}}),
        ),
        ("POST", "/api/v1/app".into(), json!({"name": "N\u{0}"})),
        (
            "POST",
            "/api/v1/event-type".into(),
            json!({"name": "bad name!"}),
        ),
        ("POST", "/api/v1/event-type".into(), json!({"name": ""})),
        (
            "POST",
            "/api/v1/event-type".into(),
            json!({"name": "ü.event"}),
        ),
        (
            "POST",
            "/api/v1/event-type".into(),
            json!({"name": "x".repeat(300)}),
        ),
        (
            "POST",
            "/api/v1/event-type".into(),
            json!({"name": "hostile.ok"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": "ftp://127.0.0.1/x"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": "not a url"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": ""}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": "http://10.0.0.1/hook"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": "http://169.254.169.254/latest"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": "javascript:alert(1)"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "eventTypes": ["no.such.type"]}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "secret": "not-a-secret"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "channels": []}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "headers": {"bad header": "v"}}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "headers": {"x-a": "line\r\nbreak"}}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "retrySchedule": []}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "basicAuth": {"username": "u"}}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": w.receiver_url, "clientCertificate": {"certificate": "x", "privateKey": "y"}}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            json!({"url": format!("http://127.0.0.1/{}", "a".repeat(70_000))}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg"),
            json!({"eventType": "no.such.type", "payload": {}}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg"),
            json!({"eventType": "hostile.ok", "payload": {}, "channels": vec!["a"; 11]}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg"),
            json!({"eventType": "hostile.ok", "payload": {}, "eventId": "bad id!"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg"),
            json!({"eventType": "hostile.ok", "payload": {}, "payloadRetentionPeriod": 0}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg"),
            json!({"eventType": "hostile.ok", "payload": {}, "application": {"name": "Other", "uid": "not-the-path"}}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/trigger"),
            json!({"endpointId": w.ep_b, "eventTypes": ["hostile.ok"]}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/trigger"),
            json!({"endpointId": w.ep_a, "eventTypes": ["hostile.ok"], "condition": "{{ unclosed"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/trigger"),
            json!({"endpointId": w.ep_a, "eventTypes": ["hostile.ok"], "template": "{% for %}"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/trigger"),
            json!({"endpointId": w.ep_a, "eventTypes": ["hostile.ok"], "contentType": "image/png"}),
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/trigger"),
            json!({"endpointId": w.ep_a, "eventTypes": []}),
        ),
        (
            "POST",
            format!("{ep_path}/recover"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        ),
        (
            "POST",
            format!("{ep_path}/recover"),
            json!({"since": "2999-01-01T00:00:00Z"}),
        ),
        (
            "POST",
            format!("{ep_path}/replay-missing"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        ),
        (
            "POST",
            format!("{ep_path}/verify"),
            json!({"code": "wrong"}),
        ),
        (
            "POST",
            format!("{ep_path}/send-example"),
            json!({"eventType": "no.such.type"}),
        ),
        (
            "POST",
            format!("{ep_path}/secret/rotate"),
            json!({"key": "whsec_short"}),
        ),
        (
            "PATCH",
            format!("/api/v1/app/{a}"),
            json!({"throttleRate": 0}),
        ),
        ("PATCH", format!("/api/v1/app/{a}"), json!({"uid": "app-b"})),
        (
            "PATCH",
            ep_path.clone(),
            json!({"url": "gopher://127.0.0.1/"}),
        ),
        (
            "PUT",
            format!("{ep_path}/headers"),
            json!({"headers": {"content-length": "1"}}),
        ),
        (
            "POST",
            format!("/api/v1/auth/app-portal-access/{a}"),
            json!({"expiry": 1}),
        ),
        (
            "POST",
            format!("/api/v1/auth/app-portal-access/{a}"),
            json!({"expiry": 100_000_000}),
        ),
    ];
    for (method, path, body) in bad_values {
        cases.push(
            Case::new("value no rule allows", method, path)
                .auth(admin_auth)
                .json(&body),
        );
    }
    batches.push(("invalid values", cases));

    // 4. Huge bodies and deeply nested JSON.
    let mut cases = Vec::new();
    let mib = 1024 * 1024;
    let payload_over = format!(
        "{{\"eventType\":\"hostile.ok\",\"payload\":{{\"x\":\"{}\"}}}}",
        "a".repeat(mib + 16)
    );
    cases.push(
        Case::new("payload over 1 MiB", "POST", format!("/api/v1/app/{a}/msg"))
            .auth(admin_auth)
            .body(payload_over)
            .expect(413),
    );
    for size in [2 * mib, 8 * mib] {
        let body = format!("{{\"name\":\"{}\"}}", "a".repeat(size));
        for (method, path) in [
            ("POST", "/api/v1/app".to_string()),
            ("POST", format!("/api/v1/app/{a}/msg")),
            ("POST", format!("/api/v1/app/{a}/endpoint")),
        ] {
            cases.push(
                Case::new("body over the request limit", method, path)
                    .auth(admin_auth)
                    .body(body.clone())
                    .expect(413),
            );
        }
    }
    // Over `request_body_max_bytes` (256 KiB) but under the message limit: only messages may
    // be that large.
    let schema_600k = json!({
        "name": "hostile.big",
        "schemas": {"1": {"description": "d".repeat(600 * 1024)}}
    });
    cases.push(
        Case::new(
            "event type over request_body_max_bytes",
            "POST",
            "/api/v1/event-type",
        )
        .auth(admin_auth)
        .json(&schema_600k)
        .expect(413),
    );
    let deep_values = [nested_array(NESTING), nested_object(NESTING)];
    for r in &routes {
        let field = r.fields[0].name;
        for deep in &deep_values {
            cases.push(
                Case::new(format!("{NESTING} levels in {field}"), r.method, &r.path)
                    .auth(admin_auth)
                    .body(format!("{{\"{field}\": {deep}}}")),
            );
        }
        cases.push(
            Case::new(format!("{NESTING} levels as the body"), r.method, &r.path)
                .auth(admin_auth)
                .body(nested_array(NESTING)),
        );
    }
    for deep in &deep_values {
        cases.push(
            Case::new(
                format!("payload {NESTING} levels deep"),
                "POST",
                format!("/api/v1/app/{a}/msg"),
            )
            .auth(admin_auth)
            .body(format!(
                "{{\"eventType\":\"hostile.ok\",\"payload\":{{\"x\":{deep}}}}}"
            )),
        );
    }
    batches.push(("huge and nested", cases));

    // 5. Invalid UTF-8 in bodies, paths and headers.
    let mut cases = Vec::new();
    for r in &routes {
        for field in r
            .fields
            .iter()
            .filter(|x| matches!(x.kind, Kind::Str))
            .take(3)
        {
            let mut body = format!("{{\"{}\": \"", field.name).into_bytes();
            body.extend_from_slice(b"\xff\xfe\xc3\x28");
            body.extend_from_slice(b"\"}");
            cases.push(
                Case::new(
                    format!("invalid UTF-8 in {}", field.name),
                    r.method,
                    &r.path,
                )
                .auth(admin_auth)
                .body(body),
            );
        }
    }
    let mut payload = b"{\"eventType\":\"hostile.ok\",\"payload\":{\"x\":\"\xff\xfe\"}}".to_vec();
    cases.push(
        Case::new(
            "invalid UTF-8 in the payload",
            "POST",
            format!("/api/v1/app/{a}/msg"),
        )
        .auth(admin_auth)
        .body(payload.clone()),
    );
    payload = b"{\"eventType\":\"hostile.ok\",\"payload\":{\"\xc0\xaf\":1}}".to_vec();
    cases.push(
        Case::new(
            "overlong UTF-8 in a payload key",
            "POST",
            format!("/api/v1/app/{a}/msg"),
        )
        .auth(admin_auth)
        .body(payload),
    );
    for target in [
        "/api/v1/app/%FF".to_string(),
        "/api/v1/app/%FF/msg".to_string(),
        format!("/api/v1/app/{a}/endpoint/%C3%28"),
        format!("/api/v1/app/{a}/msg/%ED%A0%80"),
        "/api/v1/event-type/%FE%FF".to_string(),
    ] {
        cases.push(Case::new("invalid UTF-8 in the path", "GET", target).auth(admin_auth));
    }
    cases.push(
        Case::new("invalid UTF-8 in the token", "GET", "/api/v1/app")
            .header("Authorization", b"Bearer \xff\xfe\xfd".to_vec())
            .expect(401),
    );
    cases.push(
        Case::new("invalid UTF-8 in Idempotency-Key", "POST", "/api/v1/app")
            .auth(admin_auth)
            .header("Idempotency-Key", b"\xff\xfe".to_vec())
            .body(b"{\"name\": 1}".to_vec()),
    );
    batches.push(("invalid UTF-8", cases));

    // 6. Bad and oversized headers.
    let mut cases = Vec::new();
    for size in [8 * 1024, 64 * 1024] {
        cases.push(
            Case::new(format!("{size}-byte token"), "GET", "/api/v1/app")
                .header("Authorization", format!("Bearer {}", "t".repeat(size)))
                .expect(401),
        );
        cases.push(
            Case::new(format!("{size}-byte header"), "POST", "/api/v1/app")
                .auth(admin_auth)
                .header("X-Junk", "j".repeat(size))
                .body(b"{\"name\": 1}".to_vec()),
        );
        cases.push(
            Case::new(
                format!("{size}-byte Idempotency-Key"),
                "POST",
                "/api/v1/app",
            )
            .auth(admin_auth)
            .header("Idempotency-Key", "k".repeat(size))
            .body(b"{\"name\": []}".to_vec()),
        );
    }
    // Beyond what the HTTP layer buffers: a 2 MiB header, and 150 headers.
    cases.push(
        Case::new("2 MiB header", "POST", "/api/v1/app")
            .auth(admin_auth)
            .header("X-Junk", "j".repeat(2 * 1024 * 1024))
            .body(b"{\"name\": 1}".to_vec()),
    );
    for count in [90, 150] {
        let mut many = Case::new(format!("{count} extra headers"), "POST", "/api/v1/app")
            .auth(admin_auth)
            .body(b"{\"name\": 1}".to_vec());
        for i in 0..count {
            many = many.header(&format!("X-H{i}"), "v");
        }
        cases.push(many);
    }
    for ct in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        cases.push(
            Case::new(format!("Content-Type {ct:?}"), "POST", "/api/v1/app")
                .auth(admin_auth)
                .header("Content-Type", ct)
                .body(b"<app name=\"x\"/>".to_vec()),
        );
    }
    batches.push(("headers", cases));

    // 7. Authorization: missing, malformed, wrong, and another tenant's token.
    let mut cases = Vec::new();
    let protected = [
        ("GET", "/api/v1/app".to_string()),
        ("POST", "/api/v1/app".to_string()),
        ("GET", format!("/api/v1/app/{a}/msg")),
        ("POST", format!("/api/v1/app/{a}/msg")),
        ("DELETE", format!("/api/v1/app/{a}")),
        ("GET", "/api/v1/admin/backup".to_string()),
        ("GET", "/api/v1/event-type".to_string()),
    ];
    let bad_auth: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(b"".to_vec()),
        Some(b"Bearer".to_vec()),
        Some(b"Bearer ".to_vec()),
        Some(b"Bearer wrong".to_vec()),
        Some(b"Basic dXNlcjpwYXNz".to_vec()),
        Some(format!("Token {admin}").into_bytes()),
        Some(format!("BEARER {admin}").into_bytes()),
        Some(format!("Bearer {admin}x").into_bytes()),
        Some(format!("Bearer {admin} {admin}").into_bytes()),
        Some(format!("Bearer\t{admin}").into_bytes()),
        Some(format!("Bearer {}", &admin[..admin.len() - 1]).into_bytes()),
    ];
    let valid_for = |method: &str, path: &str| -> Option<Value> {
        match (method, path.ends_with("/msg")) {
            ("POST", true) => Some(json!({"eventType": "hostile.ok", "payload": {}})),
            ("POST", false) => Some(json!({"name": "Intruder"})),
            _ => None,
        }
    };
    for (method, path) in &protected {
        for auth in &bad_auth {
            let mut case = Case::new("bad Authorization", method, path).expect(401);
            if let Some(v) = auth {
                case = case.header("Authorization", v.clone());
            }
            if let Some(body) = valid_for(method, path) {
                case = case.json(&body);
            }
            cases.push(case);
        }
    }
    // Application B's token on application A, and on admin-only routes.
    let tenant = tenant_b;
    let ep_a_path = format!("/api/v1/app/{a}/endpoint/{}", w.ep_a);
    let tenant_cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("GET", format!("/api/v1/app/{a}"), None, 404),
        ("DELETE", format!("/api/v1/app/{a}"), None, 404),
        (
            "PUT",
            format!("/api/v1/app/{a}"),
            Some(json!({"name": "Taken"})),
            404,
        ),
        ("GET", format!("/api/v1/app/{a}/endpoint"), None, 404),
        ("GET", ep_a_path.clone(), None, 404),
        ("GET", format!("{ep_a_path}/secret"), None, 404),
        ("DELETE", ep_a_path.clone(), None, 404),
        (
            "POST",
            format!("/api/v1/app/{a}/endpoint"),
            Some(json!({"url": w.receiver_url})),
            404,
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg"),
            Some(json!({"eventType": "hostile.ok", "payload": {}})),
            404,
        ),
        ("GET", format!("/api/v1/app/{a}/msg/{}", w.msg_a), None, 404),
        ("GET", format!("/api/v1/app/{a}/trigger"), None, 404),
        (
            "DELETE",
            format!("/api/v1/app/{a}/trigger/{}", w.trg_a),
            None,
            404,
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg/{}/endpoint/{}/resend", w.msg_a, w.ep_a),
            None,
            404,
        ),
        (
            "POST",
            format!("/api/v1/auth/app-portal-access/{a}"),
            None,
            403,
        ),
        ("GET", "/api/v1/admin/backup".into(), None, 403),
        (
            "POST",
            "/api/v1/event-type".into(),
            Some(json!({"name": "tenant.made"})),
            403,
        ),
        ("DELETE", "/api/v1/event-type/hostile.ok".into(), None, 403),
    ];
    for (method, path, body, want) in tenant_cases {
        let mut case = Case::new("another tenant's token", method, path)
            .auth(tenant)
            .expect(want);
        if let Some(b) = body {
            case = case.json(&b);
        }
        cases.push(case);
    }
    batches.push(("authorization", cases));

    // 8. Odd ids in paths: traversal, very long, another application's, wrong prefix, unicode.
    let mut cases = Vec::new();
    let odd_ids = [
        "..%2F..%2Fetc%2Fpasswd".to_string(),
        "%2e%2e".to_string(),
        "..".to_string(),
        "a".repeat(8 * 1024),
        "%C3%BC%E2%9C%93%F0%9F%92%A5".to_string(),
        "%00".to_string(),
        "%20".to_string(),
        "app_ZZZZZZZZZZZZZZZZZZZZZZZZZZ".to_string(),
        "msg_".to_string(),
        "%27%20OR%201%3D1--".to_string(),
        "(an id of the wrong kind)".to_string(),
    ];
    for (i, id) in odd_ids.iter().enumerate() {
        // Last, an id of the wrong kind: an endpoint's id where an application's or event
        // type's belongs, an application's id where a message's, endpoint's, ... belongs.
        let top = if i + 1 == odd_ids.len() { &w.ep_a } else { id };
        let nested = if i + 1 == odd_ids.len() { &w.app_a } else { id };
        for (method, template) in [
            ("GET", "/api/v1/app/{}"),
            ("GET", "/api/v1/app/{}/msg"),
            ("DELETE", "/api/v1/app/{}"),
            ("GET", "/api/v1/event-type/{}"),
            ("DELETE", "/api/v1/event-type/{}"),
        ] {
            cases.push(
                Case::new("odd id", method, template.replace("{}", top))
                    .auth(admin_auth)
                    .expect(404),
            );
        }
        for (method, template) in [
            ("GET", "/api/v1/app/A/msg/{}"),
            ("GET", "/api/v1/app/A/endpoint/{}"),
            ("DELETE", "/api/v1/app/A/endpoint/{}"),
            ("GET", "/api/v1/app/A/trigger/{}"),
            ("GET", "/api/v1/app/A/attempt/msg/{}"),
            ("GET", "/api/v1/app/A/msg/M/attempt/{}"),
            ("POST", "/api/v1/app/A/msg/{}/endpoint/E/resend"),
        ] {
            let target = template
                .replace("/A/", &format!("/{a}/"))
                .replace("/M/", &format!("/{}/", w.msg_a))
                .replace("/E/", &format!("/{}/", w.ep_a))
                .replace("{}", nested);
            cases.push(
                Case::new("odd id", method, target)
                    .auth(admin_auth)
                    .expect(404),
            );
        }
    }
    for target in [
        "/api/v1/app/../../../etc/passwd",
        "/api/v1/../../etc/passwd",
        "/api/v1/app/%2F..%2F..%2F/endpoint",
        "/api/v1//app",
        "/api/v1/app/./.",
    ] {
        cases.push(
            Case::new("path traversal", "GET", target)
                .auth(admin_auth)
                .expect(404),
        );
    }
    // Another application's ids under application A, with bodies that would otherwise work.
    let b_under_a = format!("/api/v1/app/{a}/endpoint/{}", w.ep_b);
    let cross: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", b_under_a.clone(), None),
        ("DELETE", b_under_a.clone(), None),
        (
            "PUT",
            b_under_a.clone(),
            Some(json!({"url": w.receiver_url})),
        ),
        (
            "PATCH",
            b_under_a.clone(),
            Some(json!({"description": "stolen"})),
        ),
        ("GET", format!("{b_under_a}/secret"), None),
        (
            "POST",
            format!("{b_under_a}/secret/rotate"),
            Some(json!({})),
        ),
        (
            "PUT",
            format!("{b_under_a}/headers"),
            Some(json!({"headers": {"x-a": "1"}})),
        ),
        (
            "POST",
            format!("{b_under_a}/recover"),
            Some(json!({"since": "2024-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            format!("{b_under_a}/send-example"),
            Some(json!({"eventType": "hostile.ok"})),
        ),
        ("GET", format!("/api/v1/app/{a}/msg/{}", w.msg_b), None),
        (
            "DELETE",
            format!("/api/v1/app/{a}/msg/{}/content", w.msg_b),
            None,
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg/{}/endpoint/{}/resend", w.msg_b, w.ep_b),
            None,
        ),
        (
            "POST",
            format!("/api/v1/app/{a}/msg/{}/endpoint/{}/resend", w.msg_a, w.ep_b),
            None,
        ),
        ("GET", format!("/api/v1/app/{a}/trigger/{}", w.trg_b), None),
        (
            "PUT",
            format!("/api/v1/app/{a}/trigger/{}", w.trg_b),
            Some(json!({"endpointId": w.ep_a, "eventTypes": ["hostile.ok"]})),
        ),
        (
            "DELETE",
            format!("/api/v1/app/{a}/trigger/{}", w.trg_b),
            None,
        ),
        (
            "GET",
            format!(
                "/api/v1/app/{}/msg/{}/attempt/{}",
                w.app_b, w.msg_b, w.attempt_a
            ),
            None,
        ),
    ];
    for (method, path, body) in cross {
        let mut case = Case::new("another application's id", method, path)
            .auth(admin_auth)
            .expect(404);
        if let Some(b) = body {
            case = case.json(&b);
        }
        cases.push(case);
    }
    batches.push(("paths and ids", cases));

    // 9. Query strings with bad values.
    let mut cases = Vec::new();
    let m = &w.msg_a;
    let e = &w.ep_a;
    let lists: Vec<(String, &[&str])> = vec![
        ("/api/v1/app".into(), &["order"]),
        (
            "/api/v1/event-type".into(),
            &["with_content", "include_archived"],
        ),
        (format!("/api/v1/app/{a}/endpoint"), &["order"]),
        (
            format!("/api/v1/app/{a}/msg"),
            &["before", "after", "with_content"],
        ),
        (
            format!("/api/v1/app/{a}/attempt/endpoint/{e}"),
            &["status", "before", "after", "with_content"],
        ),
        (
            format!("/api/v1/app/{a}/attempt/msg/{m}"),
            &["status", "before", "after", "with_content"],
        ),
        (
            format!("/api/v1/app/{a}/endpoint/{e}/msg"),
            &["status", "before", "after", "with_content"],
        ),
        (format!("/api/v1/app/{a}/msg/{m}/endpoint"), &[]),
        ("/api/v1/alert".into(), &["open"]),
    ];
    for (path, extra) in &lists {
        let mut queries = vec![
            "limit=-1".to_string(),
            "limit=abc".into(),
            "limit=100000".into(),
            "limit=1.5".into(),
            "limit=".into(),
            "limit=99999999999999999999999".into(),
        ];
        // Event type iterators are names: any text is one.
        if !path.starts_with("/api/v1/event-type") {
            queries.push("iterator=%00%FF".into());
            queries.push("iterator=not-an-iterator".into());
        }
        for name in *extra {
            let bad: &[&str] = match *name {
                "order" => &["sideways", "ASC", "1"],
                "before" | "after" => &["yesterday", "2024-02-30T00:00:00Z", "1700000000", "%FF"],
                "status" => &["9", "-1", "success"],
                _ => &["maybe", "2", "%FF"],
            };
            for v in bad {
                queries.push(format!("{name}={v}"));
            }
        }
        for q in queries {
            cases.push(Case::new("bad query", "GET", format!("{path}?{q}")).auth(admin_auth));
        }
    }
    cases.push(
        Case::new(
            "bad query",
            "GET",
            format!("/api/v1/app/{a}/endpoint/{e}/stats?since=soon"),
        )
        .auth(admin_auth),
    );
    cases.push(
        Case::new(
            "bad query",
            "GET",
            format!("/api/v1/app/{a}/msg/{m}?with_content=perhaps"),
        )
        .auth(admin_auth),
    );
    cases.push(
        Case::new("bad query", "POST", "/api/v1/app?get_if_exists=perhaps")
            .auth(admin_auth)
            .json(&json!({"name": "Q"})),
    );
    cases.push(
        Case::new(
            "bad query",
            "DELETE",
            "/api/v1/event-type/hostile.ok?expunge=perhaps",
        )
        .auth(admin_auth),
    );
    batches.push(("query strings", cases));

    // 10. Methods a route does not allow (with a valid token, so only the method is wrong).
    let mut cases = Vec::new();
    let ep_path = format!("/api/v1/app/{a}/endpoint/{e}");
    let routes_methods: Vec<(String, &[&str])> = vec![
        ("/api/v1/app".into(), &["PUT", "PATCH", "DELETE"]),
        (format!("/api/v1/app/{a}"), &["POST"]),
        ("/api/v1/event-type".into(), &["PUT", "PATCH", "DELETE"]),
        ("/api/v1/event-type/hostile.ok".into(), &["POST"]),
        (format!("/api/v1/app/{a}/msg"), &["PUT", "PATCH", "DELETE"]),
        (
            format!("/api/v1/app/{a}/msg/{m}"),
            &["POST", "PUT", "PATCH", "DELETE"],
        ),
        (
            format!("/api/v1/app/{a}/endpoint"),
            &["PUT", "PATCH", "DELETE"],
        ),
        (ep_path.clone(), &["POST"]),
        (format!("{ep_path}/secret"), &["POST", "PUT", "DELETE"]),
        (format!("{ep_path}/headers"), &["POST", "DELETE"]),
        (format!("{ep_path}/recover"), &["GET", "PUT", "DELETE"]),
        (format!("/api/v1/app/{a}/trigger"), &["PUT", "DELETE"]),
        ("/api/v1/health".into(), &["POST", "DELETE"]),
        ("/api/v1/admin/backup".into(), &["POST", "DELETE"]),
        ("/api/v1/alert".into(), &["POST", "DELETE"]),
    ];
    for (path, methods) in &routes_methods {
        for method in *methods {
            cases.push(
                Case::new("method not allowed", method, path)
                    .auth(admin_auth)
                    .json(&json!({}))
                    .expect(405),
            );
        }
    }
    batches.push(("methods", cases));
    batches
}

/// Everything a client can read back: the state that must not change.
async fn snapshot(s: &TestServer, w: &World) -> BTreeMap<String, (u16, Value)> {
    let mut snap = BTreeMap::new();
    let mut paths = vec![
        "/app?limit=250".to_string(),
        "/event-type?limit=250&include_archived=true&with_content=true".to_string(),
    ];
    for app in [&w.app_a, &w.app_b] {
        paths.push(format!("/app/{app}"));
        paths.push(format!("/app/{app}/endpoint?limit=250"));
        paths.push(format!("/app/{app}/msg?limit=250"));
        paths.push(format!("/app/{app}/trigger"));
    }
    for (app, ep) in [(&w.app_a, &w.ep_a), (&w.app_b, &w.ep_b)] {
        paths.push(format!("/app/{app}/endpoint/{ep}"));
        paths.push(format!("/app/{app}/endpoint/{ep}/secret"));
        paths.push(format!("/app/{app}/endpoint/{ep}/headers"));
    }
    for (app, msg) in [(&w.app_a, &w.msg_a), (&w.app_b, &w.msg_b)] {
        paths.push(format!("/app/{app}/msg/{msg}"));
        paths.push(format!("/app/{app}/msg/{msg}/endpoint"));
        paths.push(format!("/app/{app}/attempt/msg/{msg}"));
    }
    for p in paths {
        let (status, body) = s.get(&p).await;
        snap.insert(p, (status.as_u16(), body));
    }
    snap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_cleanly_and_store_nothing() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    let addr: SocketAddr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .parse()
        .unwrap();

    // The valid setup: two applications, each with an endpoint, a message and a trigger.
    for name in ["hostile.ok", "hostile.other"] {
        let (st, body) = s
            .post("/event-type", json!({"name": name, "description": "d"}))
            .await;
        assert_eq!(st, 201, "{body}");
    }
    let mut ids = Vec::new();
    for uid in ["app-a", "app-b"] {
        let (st, app) = s.post("/app", json!({"name": uid, "uid": uid})).await;
        assert_eq!(st, 201, "{app}");
        let app = app["id"].as_str().unwrap().to_string();
        let (st, ep) = s
            .post(
                &format!("/app/{app}/endpoint"),
                json!({"url": receiver.url(), "eventTypes": ["hostile.ok"], "headers": {"x-keep": "1"}}),
            )
            .await;
        assert_eq!(st, 201, "{ep}");
        let ep = ep["id"].as_str().unwrap().to_string();
        let msg = s.send(&app, "hostile.ok", json!({"k": uid})).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, trg) = s
            .post(
                &format!("/app/{app}/trigger"),
                json!({"endpointId": ep, "eventTypes": ["hostile.other"]}),
            )
            .await;
        assert_eq!(st, 201, "{trg}");
        ids.push((app, ep, msg, trg["id"].as_str().unwrap().to_string()));
    }
    receiver.wait_for(2, Duration::from_secs(15)).await;
    let (a, b) = (ids[0].clone(), ids[1].clone());
    // Both deliveries recorded (the receiver answered; wait for the attempts to be stored).
    let attempts_a = format!("/app/{}/attempt/msg/{}", a.0, a.2);
    let attempts_b = format!("/app/{}/attempt/msg/{}", b.0, b.2);
    eventually(Duration::from_secs(15), || async {
        let one = |v: Value| v["data"].as_array().is_some_and(|d| d.len() == 1);
        one(s.get(&attempts_a).await.1) && one(s.get(&attempts_b).await.1)
    })
    .await;
    let attempt_a = s.get(&attempts_a).await.1["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let world = World {
        app_a: a.0,
        app_b: b.0.clone(),
        ep_a: a.1,
        ep_b: b.1,
        msg_a: a.2,
        msg_b: b.2,
        trg_a: a.3,
        trg_b: b.3,
        attempt_a,
        receiver_url: receiver.url(),
    };
    let tenant_b = s
        .service
        .create_token("tenant-b", Some(&b.0))
        .await
        .unwrap()
        .text;
    let before = snapshot(&s, &world).await;
    for (path, (status, body)) in &before {
        assert_eq!(*status, 200, "setup: GET {path}: {body}");
    }
    let received_before = receiver.count();

    let batches = generate(&world, &s.token, &tenant_b);
    let total: usize = batches.iter().map(|(_, c)| c.len()).sum();
    let mut histogram: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    for (batch, cases) in &batches {
        let mut batch_histogram: BTreeMap<u16, usize> = BTreeMap::new();
        for case in cases {
            match send(addr, case).await {
                Ok(answer) => {
                    *histogram.entry(answer.status).or_default() += 1;
                    *batch_histogram.entry(answer.status).or_default() += 1;
                    if let Err(why) = judge(case, &answer) {
                        failures.push(format!("{}\n    -> {why}", case.describe()));
                    }
                }
                Err(why) => {
                    *histogram.entry(0).or_default() += 1;
                    failures.push(format!("{}\n    -> no answer: {why}", case.describe()));
                }
            }
        }
        // The server still serves after every batch.
        let health = send(addr, &Case::new("health", "GET", "/api/v1/health")).await;
        assert!(
            health.as_ref().is_ok_and(|h| h.status == 200),
            "health after the {batch} batch: {:?}",
            health.map(|h| (h.status, String::from_utf8_lossy(&h.body).into_owned()))
        );
        println!(
            "batch {batch:<16} {:>4} cases  statuses {batch_histogram:?}",
            cases.len()
        );
    }
    println!(
        "{total} hostile cases in {:?}; status histogram (0 = no answer): {histogram:?}",
        started.elapsed()
    );

    // Nothing half-stored: everything reads back exactly as the setup left it, and nothing
    // was sent to the receiver.
    let after = snapshot(&s, &world).await;
    let mut changed = Vec::new();
    for (path, value) in &before {
        if after.get(path) != Some(value) {
            let short = |v: String| v.chars().take(400).collect::<String>();
            changed.push(format!(
                "GET {path} changed:\n    before {}\n    after  {}",
                short(format!("{value:?}")),
                short(format!("{:?}", after.get(path)))
            ));
        }
    }
    let deliveries = receiver.count() - received_before;
    if deliveries > 0 {
        changed.push(format!("{deliveries} deliveries reached the receiver"));
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    for c in &changed {
        println!("CHANGED {c}");
    }
    assert!(total >= 200, "only {total} cases");
    assert!(
        failures.is_empty() && changed.is_empty(),
        "{} of {total} hostile requests were not refused cleanly, {} resources changed (listed above)",
        failures.len(),
        changed.len()
    );
    s.stop().await;
}
