//! The Svix v1 API surface: each route's success and its 4xx answers (unknown ids, another
//! application's ids, invalid fields), in the Svix error shapes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn req(s: &TestServer, m: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    s.request(m, path, body, Some(&s.token)).await
}

fn assert_not_found(what: &str, r: (StatusCode, Value)) {
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{what}: {}", r.1);
    assert_eq!(r.1["code"], "not_found", "{what}");
    assert!(r.1["detail"].is_string());
}

fn assert_invalid(what: &str, r: (StatusCode, Value), field: &str) {
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {}", r.1);
    let fields: Vec<String> = r.1["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["loc"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        fields.iter().any(|f| f == field),
        "{what}: expected {field} in {}",
        r.1
    );
}

#[tokio::test]
async fn applications_crud() {
    let s = start_server().await;
    let (st, a) = s
        .post(
            "/app",
            json!({"name": "A", "uid": "a-1", "metadata": {"k": "v"}, "throttleRate": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(a["metadata"]["k"], "v");
    assert_eq!(a["throttleRate"], 5);
    let id = a["id"].as_str().unwrap();

    let (st, got) = s.get(&format!("/app/{id}")).await;
    assert_eq!((st, got["uid"].clone()), (StatusCode::OK, json!("a-1")));

    let (st, put) = req(&s, Method::PUT, "/app/a-1", Some(json!({"name": "A2"}))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(put["name"], "A2");
    assert_eq!(put["uid"], Value::Null, "PUT replaces every field");
    let (st, patched) = req(
        &s,
        Method::PATCH,
        &format!("/app/{id}"),
        Some(json!({"uid": "a-2"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (patched["uid"].as_str(), patched["name"].as_str()),
        (Some("a-2"), Some("A2"))
    );
    let (st, _) = req(
        &s,
        Method::PATCH,
        &format!("/app/{id}"),
        Some(json!({"throttleRate": null})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, created) = req(
        &s,
        Method::PUT,
        "/app/brand-new",
        Some(json!({"name": "B", "uid": "b"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(created["uid"], "b");

    // Paging: limit, iterator, prevIterator, done; ascending by default.
    for i in 0..5 {
        s.post("/app", json!({"name": format!("p{i}")})).await;
    }
    let (_, p1) = s.get("/app?limit=3").await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    assert_eq!(p1["done"], false);
    let it = p1["iterator"].as_str().unwrap();
    let (_, p2) = s.get(&format!("/app?limit=3&iterator={it}")).await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 3);
    assert!(p2["data"][0]["id"].as_str().unwrap() > it);
    let prev = p2["prevIterator"].as_str().unwrap();
    let (_, back) = s.get(&format!("/app?limit=3&iterator={prev}")).await;
    assert_eq!(
        back["data"], p1["data"],
        "prevIterator leads back to the first page"
    );
    let (_, desc) = s.get("/app?order=descending&limit=1").await;
    assert!(desc["data"][0]["id"].as_str().unwrap() >= p2["data"][2]["id"].as_str().unwrap());

    assert_invalid("limit too large", s.get("/app?limit=251").await, "limit");
    assert_eq!(s.get("/app?limit=abc").await.0, StatusCode::BAD_REQUEST);
    assert_invalid(
        "empty name",
        s.post("/app", json!({"name": ""})).await,
        "name",
    );
    assert_invalid(
        "bad uid",
        s.post("/app", json!({"name": "x", "uid": "no spaces"}))
            .await,
        "uid",
    );
    assert_invalid(
        "uid with id prefix",
        s.post("/app", json!({"name": "x", "uid": "app_x"})).await,
        "uid",
    );
    assert_eq!(
        s.post("/app", json!({"name": "x", "uid": "a-2"})).await.0,
        StatusCode::CONFLICT
    );

    let (st, _) = s.delete(&format!("/app/{id}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_not_found("deleted app", s.get(&format!("/app/{id}")).await);
    assert_not_found("delete twice", s.delete(&format!("/app/{id}")).await);
    assert_not_found("unknown uid", s.get("/app/nobody").await);
    // The uid is free again.
    assert_eq!(
        s.post("/app", json!({"name": "again", "uid": "a-2"}))
            .await
            .0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn event_types_crud() {
    let s = start_server().await;
    let schema = json!({"1": {"type": "object", "properties": {"id": {"type": "string"}}}});
    let (st, et) = s
        .post("/event-type", json!({"name": "invoice.paid", "description": "Paid", "schemas": schema, "groupName": "invoice", "example": {"id": "inv_1"}}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(et["schemas"], schema);
    assert_eq!(et["example"], json!({"id": "inv_1"}));
    let (st, e) = s
        .post(
            "/event-type",
            json!({"name": "invoice.paid", "description": "again"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "event_type_exists");
    s.post(
        "/event-type",
        json!({"name": "invoice.sent", "description": ""}),
    )
    .await;

    let (_, list) = s.get("/event-type?with_content=false").await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["invoice.paid", "invoice.sent"]);
    assert_eq!(
        list["data"][0]["schemas"],
        Value::Null,
        "with_content=false leaves schemas out"
    );
    let (_, page) = s.get("/event-type?limit=1").await;
    assert_eq!(page["iterator"], "invoice.paid");
    let (_, page2) = s.get("/event-type?limit=1&iterator=invoice.paid").await;
    assert_eq!(page2["data"][0]["name"], "invoice.sent");
    assert_eq!(page2["done"], true);

    let (st, patched) = req(
        &s,
        Method::PATCH,
        "/event-type/invoice.paid",
        Some(json!({"description": "Paid!", "deprecated": true})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            patched["description"].as_str(),
            patched["deprecated"].as_bool()
        ),
        (Some("Paid!"), Some(true))
    );
    assert_eq!(
        patched["schemas"], schema,
        "PATCH keeps what it does not name"
    );
    let (st, _) = req(
        &s,
        Method::PUT,
        "/event-type/invoice.void",
        Some(json!({"description": "new"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    // Delete archives; archived types are hidden unless asked for, and may be re-created.
    assert_eq!(
        s.delete("/event-type/invoice.sent").await.0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = s.get("/event-type").await;
    assert!(
        !list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "invoice.sent")
    );
    let (_, list) = s.get("/event-type?include_archived=true").await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "invoice.sent" && e["archived"] == true)
    );
    assert_eq!(
        s.post(
            "/event-type",
            json!({"name": "invoice.sent", "description": "back"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.delete("/event-type/invoice.void?expunge=true").await.0,
        StatusCode::NO_CONTENT
    );
    assert_not_found("expunged", s.get("/event-type/invoice.void").await);
    assert_not_found("unknown", s.get("/event-type/nope").await);
    assert_invalid(
        "bad name",
        s.post(
            "/event-type",
            json!({"name": "has space", "description": ""}),
        )
        .await,
        "name",
    );
    assert_invalid(
        "schemas not an object",
        s.post(
            "/event-type",
            json!({"name": "x.y", "description": "", "schemas": [1]}),
        )
        .await,
        "schemas",
    );
}

#[tokio::test]
async fn endpoints_crud_secret_rotation_and_headers() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/event-type", json!({"name": "c.d", "description": ""}))
        .await;
    let (_, app) = s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let (_, other) = s.post("/app", json!({"name": "B", "uid": "b"})).await;
    let _ = (app, other);

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (st, ep) = s
        .post("/app/a/endpoint", json!({"url": receiver.url(), "uid": "main", "eventTypes": ["a.b"], "secret": secret, "metadata": {"team": "x"}, "headers": {"X-Shop": "1", "Authorization": "Bearer s3cret"}}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");
    let id = ep["id"].as_str().unwrap().to_string();
    assert_eq!(s.get("/app/a/endpoint/main/secret").await.1["key"], secret);
    assert_eq!(
        s.get(&format!("/app/a/endpoint/{id}")).await.1["uid"],
        "main"
    );

    // Another application's ids are unknown here.
    assert_not_found(
        "endpoint through another app",
        s.get(&format!("/app/b/endpoint/{id}")).await,
    );
    assert_not_found(
        "secret through another app",
        s.get(&format!("/app/b/endpoint/{id}/secret")).await,
    );
    assert_not_found(
        "unknown endpoint",
        s.get("/app/a/endpoint/ep_01ARZ3NDEKTSV4RRFFQ69G5FAV").await,
    );
    assert_not_found("unknown app", s.get("/app/zz/endpoint").await);

    // PUT replaces settings but keeps the secret; PATCH changes what it names.
    let (st, put) = req(
        &s,
        Method::PUT,
        "/app/a/endpoint/main",
        Some(json!({"url": receiver.url(), "uid": "main", "description": "d"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{put}");
    assert_eq!(put["eventTypes"], Value::Null);
    assert_eq!(s.get("/app/a/endpoint/main/secret").await.1["key"], secret);
    let (st, patched) = req(
        &s,
        Method::PATCH,
        "/app/a/endpoint/main",
        Some(json!({"eventTypes": ["c.d"], "disabled": true})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            patched["eventTypes"].clone(),
            patched["disabled"].clone(),
            patched["description"].clone()
        ),
        (json!(["c.d"]), json!(true), json!("d"))
    );
    assert_invalid(
        "patch to unknown type",
        req(
            &s,
            Method::PATCH,
            "/app/a/endpoint/main",
            Some(json!({"eventTypes": ["zz"]})),
        )
        .await,
        "eventTypes",
    );
    req(
        &s,
        Method::PATCH,
        "/app/a/endpoint/main",
        Some(json!({"disabled": false, "eventTypes": null})),
    )
    .await;

    // Headers: sensitive values are never shown back.
    let (st, h) = s.get("/app/a/endpoint/main/headers").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["headers"], json!({"X-Shop": "1"}));
    assert_eq!(h["sensitive"], json!(["Authorization"]));
    assert!(!h.to_string().contains("s3cret"));
    assert_eq!(
        req(
            &s,
            Method::PATCH,
            "/app/a/endpoint/main/headers",
            Some(json!({"headers": {"X-New": "2"}, "deleteHeaders": ["X-Shop"]}))
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/app/a/endpoint/main/headers").await.1["headers"],
        json!({"X-New": "2"})
    );
    assert_eq!(
        req(
            &s,
            Method::PUT,
            "/app/a/endpoint/main/headers",
            Some(json!({"headers": {"X-Only": "3"}}))
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/app/a/endpoint/main/headers").await.1,
        json!({"headers": {"X-Only": "3"}, "sensitive": []})
    );
    assert_invalid(
        "forbidden header",
        req(
            &s,
            Method::PUT,
            "/app/a/endpoint/main/headers",
            Some(json!({"headers": {"svix-id": "x"}})),
        )
        .await,
        "headers",
    );

    // Rotation: the new secret is answered; both keys sign during the grace period.
    let (st, rotated) = s
        .post("/app/a/endpoint/main/secret/rotate", json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(
        s.get("/app/a/endpoint/main/secret").await.1["key"],
        new_secret
    );
    s.send("a", "a.b", json!({"after": "rotation"})).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("x-only"), "3", "custom headers are sent");
    assert!(verify_signature(&new_secret, &got[0]));
    assert!(
        verify_signature(secret, &got[0]),
        "the old key still signs in its grace period"
    );
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    // An explicit new key, and a bad one.
    let chosen = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    assert_eq!(
        s.post("/app/a/endpoint/main/secret/rotate", json!({"key": chosen}))
            .await
            .1["key"],
        chosen
    );
    assert_invalid(
        "bad key",
        s.post(
            "/app/a/endpoint/main/secret/rotate",
            json!({"key": "short"}),
        )
        .await,
        "key",
    );
    // Too many old keys still in grace.
    for _ in 0..9 {
        s.post("/app/a/endpoint/main/secret/rotate", json!({}))
            .await;
    }
    let (st, e) = s
        .post("/app/a/endpoint/main/secret/rotate", json!({}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "limit_reached");
    // With no grace period the current key is dropped at once, so the count does not grow.
    assert_eq!(
        s.post(
            "/app/a/endpoint/main/secret/rotate",
            json!({"gracePeriodSeconds": 0})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_invalid(
        "grace too long",
        s.post(
            "/app/a/endpoint/main/secret/rotate",
            json!({"gracePeriodSeconds": 604801}),
        )
        .await,
        "gracePeriodSeconds",
    );

    // Listing, paging, delete.
    s.post("/app/a/endpoint", json!({"url": receiver.url()}))
        .await;
    let (_, list) = s.get("/app/a/endpoint?limit=1").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["done"], false);
    assert_ne!(list["data"][0]["id"], id, "newest first");
    assert_eq!(
        s.delete("/app/a/endpoint/main").await.0,
        StatusCode::NO_CONTENT
    );
    assert_not_found("deleted endpoint", s.get("/app/a/endpoint/main").await);
    assert_not_found(
        "deleted endpoint secret",
        s.get(&format!("/app/a/endpoint/{id}/secret")).await,
    );
    // The uid is free again.
    assert_eq!(
        s.post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "uid": "main"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "uid": "main"})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn messages_attempts_resend_recover_and_stats() {
    let receiver = Receiver::start_with(Behaviour {
        script: vec![500, 500, 500, 500],
        ..Default::default()
    })
    .await;
    let s = start_server().await; // 4 attempts: the first message fails for good
    s.post(
        "/event-type",
        json!({"name": "o.c", "description": "", "example": {"example": true}}),
    )
    .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    s.post("/app", json!({"name": "B", "uid": "b"})).await;
    let (_, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "uid": "main"}),
        )
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_string();
    let (_, other_ep) = s
        .post("/app/b/endpoint", json!({"url": receiver.url()}))
        .await;
    let other_ep = other_ep["id"].as_str().unwrap().to_string();

    let start = chrono::Utc::now();
    let (st, m1) = s
        .post(
            "/app/a/msg?with_content=false",
            json!({"eventType": "o.c", "payload": {"n": 1}, "eventId": "e1", "channels": ["eu"]}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(m1["payload"], json!({}), "with_content=false");
    assert_eq!(m1["channels"], json!(["eu"]));
    let m1_id = m1["id"].as_str().unwrap().to_string();
    receiver.wait_for(4, WAIT).await;
    let by_msg = format!("/app/a/attempt/msg/{m1_id}");
    eventually(WAIT, || async {
        s.get(&by_msg).await.1["data"].as_array().unwrap().len() == 4
    })
    .await;

    // Attempts by endpoint, with filters; one attempt; its content expunged.
    let (_, by_ep) = s
        .get(&format!("/app/a/attempt/endpoint/{ep_id}?status=2"))
        .await;
    assert_eq!(by_ep["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        s.get(&format!("/app/a/attempt/endpoint/{ep_id}?status=0"))
            .await
            .1["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        s.get(&format!(
            "/app/a/attempt/endpoint/{ep_id}?status_code_class=500"
        ))
        .await
        .1["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        s.get(&format!(
            "/app/a/attempt/endpoint/{ep_id}?status_code_class=200"
        ))
        .await
        .1["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        s.get(&format!("/app/a/attempt/endpoint/{ep_id}?event_types=zz"))
            .await
            .1["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let atmpt = by_ep["data"][0]["id"].as_str().unwrap().to_string();
    let (st, one) = s.get(&format!("/app/a/msg/{m1_id}/attempt/{atmpt}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["msgId"], m1_id.as_str());
    assert_eq!(one["endpointId"], ep_id.as_str());
    assert_eq!(
        s.delete(&format!("/app/a/msg/{m1_id}/attempt/{atmpt}/content"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get(&format!("/app/a/msg/{m1_id}/attempt/{atmpt}"))
            .await
            .1["response"],
        "EXPUNGED"
    );
    assert_not_found(
        "attempt of another app",
        s.get(&format!("/app/b/msg/{m1_id}/attempt/{atmpt}")).await,
    );
    assert_not_found(
        "attempts of another app's endpoint",
        s.get(&format!("/app/a/attempt/endpoint/{other_ep}")).await,
    );

    // Attempted destinations and attempted messages show the final status.
    let (_, dests) = s.get(&format!("/app/a/msg/{m1_id}/endpoint")).await;
    assert_eq!(dests["data"][0]["id"], ep_id.as_str());
    assert_eq!(dests["data"][0]["status"], 2);
    assert_eq!(dests["data"][0]["statusText"], "fail");
    let (_, msgs) = s.get(&format!("/app/a/endpoint/{ep_id}/msg")).await;
    assert_eq!(
        msgs["data"].as_array().unwrap().len(),
        1,
        "each message once: {msgs}"
    );
    assert_eq!(msgs["data"][0]["id"], m1_id.as_str());
    assert_eq!(msgs["data"][0]["status"], 2);

    // Stats count the failed delivery.
    let (st, stats) = s.get(&format!("/app/a/endpoint/{ep_id}/stats")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        stats,
        json!({"success": 0, "pending": 0, "sending": 0, "fail": 1, "canceled": 0})
    );
    assert_eq!(
        s.get(&format!(
            "/app/a/endpoint/{ep_id}/stats?until=2999-01-01T00:00:00Z"
        ))
        .await
        .0,
        StatusCode::BAD_REQUEST
    );

    // Recover re-queues the failed delivery; the receiver now succeeds.
    let since = (start - chrono::Duration::minutes(1)).to_rfc3339();
    let (st, task) = s
        .post(
            &format!("/app/a/endpoint/{ep_id}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{task}");
    assert_eq!(task["task"], "endpoint.recover");
    assert!(task["id"].as_str().unwrap().starts_with("qtask_"));
    let got = receiver.wait_for(5, WAIT).await;
    assert_eq!(
        got[4].header("webhook-id"),
        m1_id.as_str(),
        "same id on recovery"
    );
    eventually(WAIT, || async {
        s.get(&format!("/app/a/endpoint/{ep_id}/stats")).await.1["success"] == 1
    })
    .await;
    assert_invalid(
        "recover window too wide",
        s.post(
            &format!("/app/a/endpoint/{ep_id}/recover"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await,
        "since",
    );
    assert_invalid(
        "recover bad time",
        s.post(
            &format!("/app/a/endpoint/{ep_id}/recover"),
            json!({"since": "yesterday"}),
        )
        .await,
        "since",
    );

    // Resend: a manual attempt with the same webhook-id.
    let (st, empty) = s
        .request(
            Method::POST,
            &format!("/app/a/msg/{m1_id}/endpoint/{ep_id}/resend"),
            None,
            Some(&s.token),
        )
        .await;
    assert_eq!((st, empty), (StatusCode::ACCEPTED, json!({})));
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(got[5].header("webhook-id"), m1_id.as_str());
    eventually(WAIT, || async {
        s.get(&by_msg).await.1["data"][0]["triggerType"] == 1
    })
    .await;
    assert_not_found(
        "resend to another app's endpoint",
        s.post(
            &format!("/app/a/msg/{m1_id}/endpoint/{other_ep}/resend"),
            json!({}),
        )
        .await,
    );
    assert_not_found(
        "resend unknown message",
        s.post(
            &format!("/app/a/msg/msg_01ARZ3NDEKTSV4RRFFQ69G5FAV/endpoint/{ep_id}/resend"),
            json!({}),
        )
        .await,
    );

    // Messages: list with filters, get by eventId, expunge content.
    s.post(
        "/app/a/msg",
        json!({"eventType": "o.c", "payload": {"n": 2}}),
    )
    .await;
    let (_, list) = s.get("/app/a/msg").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        list["data"][0]["payload"],
        json!({"n": 2}),
        "newest first, with content by default"
    );
    assert_eq!(
        s.get("/app/a/msg?channel=eu").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/app/a/msg?event_types=o.c,x.y").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.get("/app/a/msg?event_types=x.y").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        s.get("/app/a/msg?before=2000-01-01T00:00:00").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "naive times are UTC"
    );
    assert_eq!(
        s.get("/app/a/msg?after=2000-01-01T00:00:00%2B00:00")
            .await
            .1["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.get("/app/a/msg/e1").await.1["id"], m1_id.as_str());
    assert_not_found(
        "message of another app",
        s.get(&format!("/app/b/msg/{m1_id}")).await,
    );
    assert_eq!(
        s.delete(&format!("/app/a/msg/{m1_id}/content")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get(&format!("/app/a/msg/{m1_id}")).await.1["payload"],
        json!({"expired": true})
    );
    let (st, e) = s
        .post(
            &format!("/app/a/msg/{m1_id}/endpoint/{ep_id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("missing_payload"))
    );
    assert_invalid(
        "bad channel",
        s.post(
            "/app/a/msg",
            json!({"eventType": "o.c", "payload": {}, "channels": ["no spaces"]}),
        )
        .await,
        "channels",
    );
    assert_invalid(
        "retention",
        s.post(
            "/app/a/msg",
            json!({"eventType": "o.c", "payload": {}, "payloadRetentionPeriod": 0}),
        )
        .await,
        "payloadRetentionPeriod",
    );

    // Send-example: the event type's example, to this endpoint only.
    let (st, ex) = s
        .post(
            &format!("/app/a/endpoint/{ep_id}/send-example"),
            json!({"eventType": "o.c"}),
        )
        .await;
    assert!(st.is_success(), "{ex}");
    assert_eq!(ex["payload"], json!({"example": true}));
    let got = receiver.wait_for(8, WAIT).await;
    assert!(got.iter().any(|r| r.json() == json!({"example": true})));
    let (st, ping) = s
        .post(
            &format!("/app/a/endpoint/{ep_id}/send-example"),
            json!({"eventType": "svix.ping"}),
        )
        .await;
    assert!(st.is_success());
    assert_eq!(ping["payload"], json!({"success": true}));
    s.post(
        "/event-type",
        json!({"name": "no.example", "description": ""}),
    )
    .await;
    let (st, e) = s
        .post(
            &format!("/app/a/endpoint/{ep_id}/send-example"),
            json!({"eventType": "no.example"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_scheme"))
    );
    assert_not_found(
        "example of unknown type",
        s.post(
            &format!("/app/a/endpoint/{ep_id}/send-example"),
            json!({"eventType": "zz"}),
        )
        .await,
    );

    // A message can create its application on the fly.
    let (st, _) = s.post("/app/fresh/msg", json!({"eventType": "o.c", "payload": {}, "application": {"name": "Fresh", "uid": "fresh"}})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(s.get("/app/fresh").await.1["name"], "Fresh");
    assert_invalid("application uid mismatch", s.post("/app/fresh2/msg", json!({"eventType": "o.c", "payload": {}, "application": {"name": "X", "uid": "other"}})).await, "application.uid");
}

#[tokio::test]
async fn paging_through_1000_messages_returns_each_once_in_order_while_new_ones_arrive() {
    let s = start_server().await;
    s.post("/event-type", json!({"name": "tick", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let mut sent = Vec::new();
    for chunk in 0..10 {
        let futures: Vec<_> = (0..100)
            .map(|i| {
                s.post(
                    "/app/a/msg",
                    json!({"eventType": "tick", "payload": {"i": chunk * 100 + i}}),
                )
            })
            .collect();
        for (st, m) in futures::future::join_all(futures).await {
            assert_eq!(st, StatusCode::ACCEPTED);
            sent.push(m["id"].as_str().unwrap().to_string());
        }
    }
    // Keep inserting while paging.
    let writer = {
        let (base, token) = (s.base.clone(), s.token.clone());
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            for i in 0..200 {
                c.post(format!("{base}/app/a/msg"))
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "tick", "payload": {"late": i}}))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    let (_, first) = s.get("/app/a/msg?limit=37").await;
    let newest_at_start = first["data"][0]["id"].as_str().unwrap().to_string();
    let mut page = first;
    loop {
        for m in page["data"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_string());
        }
        if page["done"] == true {
            break;
        }
        let it = page["iterator"].as_str().unwrap().to_string();
        page = s.get(&format!("/app/a/msg?limit=37&iterator={it}")).await.1;
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no message twice");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    let older: Vec<&String> = seen.iter().filter(|id| **id <= newest_at_start).collect();
    let sent_set: HashSet<&String> = sent.iter().collect();
    assert!(
        sent_set.iter().all(|id| older.contains(id)),
        "every message that existed is listed"
    );
    assert!(seen.len() >= 1000);
}

#[tokio::test]
async fn an_app_scoped_token_cannot_change_anything_of_another_application() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "Mine", "uid": "mine"})).await;
    s.post("/app", json!({"name": "Theirs", "uid": "theirs"}))
        .await;
    let (_, their_ep) = s
        .post("/app/theirs/endpoint", json!({"url": receiver.url()}))
        .await;
    let their_ep = their_ep["id"].as_str().unwrap().to_string();
    let their_msg = s.send("theirs", "a.b", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let scoped = s
        .service
        .create_token("tenant", Some("mine"))
        .await
        .unwrap()
        .text;
    let as_tenant = |m: Method, p: String, b: Option<Value>| {
        let scoped = scoped.clone();
        let s = &s;
        async move { s.request(m, &p, b, Some(&scoped)).await }
    };
    let attempts = [
        (
            Method::PATCH,
            "/app/theirs".to_string(),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, "/app/theirs".to_string(), None),
        (
            Method::POST,
            "/app/theirs/endpoint".to_string(),
            Some(json!({"url": receiver.url()})),
        ),
        (
            Method::PATCH,
            format!("/app/theirs/endpoint/{their_ep}"),
            Some(json!({"url": receiver.url()})),
        ),
        (
            Method::PATCH,
            format!("/app/mine/endpoint/{their_ep}"),
            Some(json!({"url": receiver.url()})),
        ),
        (
            Method::DELETE,
            format!("/app/mine/endpoint/{their_ep}"),
            None,
        ),
        (
            Method::GET,
            format!("/app/mine/endpoint/{their_ep}/secret"),
            None,
        ),
        (
            Method::POST,
            format!("/app/theirs/endpoint/{their_ep}/secret/rotate"),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/app/theirs/endpoint/{their_ep}/headers"),
            Some(json!({"headers": {}})),
        ),
        (Method::GET, format!("/app/mine/msg/{their_msg}"), None),
        (
            Method::GET,
            format!("/app/theirs/attempt/msg/{their_msg}"),
            None,
        ),
        (
            Method::POST,
            format!("/app/theirs/msg/{their_msg}/endpoint/{their_ep}/resend"),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/app/theirs/msg/{their_msg}/content"),
            None,
        ),
        (
            Method::POST,
            format!("/app/theirs/endpoint/{their_ep}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
    ];
    for (m, p, b) in attempts {
        let (st, e) = as_tenant(m.clone(), p.clone(), b).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{m} {p}: {e}");
    }
    // Catalog changes need an admin token.
    assert_eq!(
        as_tenant(
            Method::POST,
            "/event-type".into(),
            Some(json!({"name": "t.x", "description": ""}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Nothing changed.
    let (_, theirs) = s.get(&format!("/app/theirs/endpoint/{their_ep}")).await;
    assert_eq!(theirs["url"], receiver.url().as_str());
    assert_eq!(s.get("/app/theirs").await.1["name"], "Theirs");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_though_it_was_just_used() {
    let s = start_server().await;
    let second = s.service.create_token("second", None).await.unwrap();
    let (st, _) = s
        .request(Method::GET, "/app", None, Some(&second.text))
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the new token works (and is now remembered)"
    );
    s.service
        .revoke_token(&second.token.id.to_string())
        .await
        .unwrap();
    let (st, body) = s
        .request(Method::GET, "/app", None, Some(&second.text))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    // The other token is unaffected.
    assert_eq!(req(&s, Method::GET, "/app", None).await.0, StatusCode::OK);
}
