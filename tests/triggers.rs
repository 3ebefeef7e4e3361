//! Triggers and delivery options with real receivers: conditions, templates, priority lanes,
//! unique keys, basic auth, client certificates, verification, rate limits, disable/enable,
//! replay-missing, the endpoint test, alerts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn req(s: &TestServer, m: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    s.request(m, path, body, Some(&s.token)).await
}

/// An application "shop" with event types and one endpoint whose subscription is off, so only
/// triggers route to it.
async fn shop(s: &TestServer, url: &str) -> String {
    for t in [
        "order.created",
        "order.updated",
        "order.deleted",
        "invoice.paid",
    ] {
        s.post(
            "/event-type",
            json!({"name": t, "description": "", "example": {"orderId": "o-ex", "status": "NEW"}}),
        )
        .await;
    }
    s.post("/app", json!({"name": "Shop & Co", "uid": "shop"}))
        .await;
    let (st, ep) = s
        .post(
            "/app/shop/endpoint",
            json!({"url": url, "eventTypes": ["invoice.paid"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");
    let id = ep["id"].as_str().unwrap().to_string();
    let (st, _) = req(
        s,
        Method::PUT,
        &format!("/app/shop/trigger/builtin_{id}"),
        Some(json!({"endpointId": id, "eventTypes": ["invoice.paid"], "enabled": false})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    id
}

#[tokio::test]
async fn a_condition_routes_only_matching_messages_and_an_xml_template_arrives_well_formed() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    let ep = shop(&s, &receiver.url()).await;
    let (st, t) = s
        .post("/app/shop/trigger", json!({
            "endpointId": ep,
            "eventTypes": ["order.*"],
            "condition": "payload.status in [\"FULFILLED\", \"FAILED_PERMANENTLY\"]",
            "template": "<order id=\"{{ payload.orderId }}\" shop=\"{{ app.name }}\"><status>{{ payload.status }}</status><type>{{ eventType }}</type><msg>{{ msgId }}</msg></order>",
            "contentType": "application/xml",
            "priority": "high"
        }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    for (status, id) in [
        ("NEW", "o-1"),
        ("FULFILLED", "o-2"),
        ("PAID", "o-3"),
        ("FAILED_PERMANENTLY", "o-4"),
    ] {
        s.send(
            "shop",
            "order.updated",
            json!({"orderId": id, "status": status}),
        )
        .await;
    }
    s.send(
        "shop",
        "invoice.paid",
        json!({"orderId": "o-5", "status": "FULFILLED"}),
    )
    .await; // not order.*
    let got = receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 2, "only the two matching messages");
    let mut ids = Vec::new();
    for r in &got {
        assert_eq!(r.header("content-type"), "application/xml");
        let text = std::str::from_utf8(&r.body).unwrap();
        let doc = roxmltree::Document::parse(text).expect("well-formed XML");
        let order = doc.root_element();
        assert_eq!(
            order.attribute("shop"),
            Some("Shop & Co"),
            "escaped in the body, whole when parsed"
        );
        assert!(text.contains("Shop &amp; Co"));
        assert_eq!(
            order
                .descendants()
                .find(|n| n.has_tag_name("type"))
                .unwrap()
                .text(),
            Some("order.updated")
        );
        assert_eq!(
            order
                .descendants()
                .find(|n| n.has_tag_name("msg"))
                .unwrap()
                .text(),
            Some(r.header("webhook-id"))
        );
        ids.push(order.attribute("id").unwrap().to_string());
    }
    ids.sort();
    assert_eq!(ids, vec!["o-2", "o-4"]);
    // The signature covers the rendered body.
    let (_, secret) = s.get(&format!("/app/shop/endpoint/{ep}/secret")).await;
    assert!(
        got.iter()
            .all(|r| verify_signature(secret["key"].as_str().unwrap(), r))
    );
}

#[tokio::test]
async fn a_broken_template_fails_its_attempts_readably_while_other_deliveries_go_on() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    let ep = shop(&s, &receiver.url()).await;
    // Parses, but renders invalid JSON at delivery time.
    let (st, _) = s
        .post("/app/shop/trigger", json!({"endpointId": ep, "eventTypes": ["order.created"], "template": "{\"id\": {{ payload.orderId }}, }"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    s.post(
        "/app/shop/trigger",
        json!({"endpointId": ep, "eventTypes": ["order.deleted"]}),
    )
    .await;
    let bad = s
        .send("shop", "order.created", json!({"orderId": "o-1"}))
        .await;
    s.send("shop", "order.deleted", json!({"orderId": "o-2"}))
        .await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json(), json!({"orderId": "o-2"}));
    let path = format!("/app/shop/attempt/msg/{}", bad["id"].as_str().unwrap());
    eventually(WAIT, || async {
        s.get(&path).await.1["data"].as_array().unwrap().len() == 4
    })
    .await;
    let (_, attempts) = s.get(&path).await;
    let reason = attempts["data"][0]["response"].as_str().unwrap();
    assert!(reason.contains("did not render valid JSON"), "{reason}");
    assert_eq!(attempts["data"][0]["responseStatusCode"], 0);
    assert_eq!(
        receiver.count(),
        1,
        "the broken one never reached the receiver"
    );
    // A template that does not even parse is refused when saved.
    let (st, e) = s
        .post(
            "/app/shop/trigger",
            json!({"endpointId": ep, "eventTypes": ["order.created"], "template": "{{ payload.x "}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["detail"][0]["loc"], json!(["body", "template"]));
}

#[tokio::test]
async fn high_priority_overtakes_a_low_backlog_and_the_low_ones_still_all_arrive() {
    let receiver = Receiver::start_with(Behaviour {
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let s = start_server_with(|c| c.deliveries_in_flight_max = 1).await;
    let ep = shop(&s, &receiver.url()).await;
    s.post(
        "/app/shop/trigger",
        json!({"endpointId": ep, "eventTypes": ["order.created"], "priority": "low"}),
    )
    .await;
    s.post(
        "/app/shop/trigger",
        json!({"endpointId": ep, "eventTypes": ["order.updated"], "priority": "high"}),
    )
    .await;
    for i in 0..30 {
        s.send("shop", "order.created", json!({"low": i})).await;
    }
    for i in 0..5 {
        s.send("shop", "order.updated", json!({"high": i})).await;
    }
    let got = receiver.wait_for(35, Duration::from_secs(30)).await;
    let order: Vec<&str> = got
        .iter()
        .map(|r| {
            if r.json().get("high").is_some() {
                "H"
            } else {
                "L"
            }
        })
        .collect();
    let last_high = order.iter().rposition(|x| *x == "H").unwrap();
    let lows_before_last_high = order[..last_high].iter().filter(|x| **x == "L").count();
    assert!(
        lows_before_last_high < 15,
        "high went ahead of the low backlog: {}",
        order.concat()
    );
    assert_eq!(
        order.iter().filter(|x| **x == "L").count(),
        30,
        "no low delivery starved"
    );
}

#[tokio::test]
async fn ten_updates_within_the_wait_yield_one_delivery_carrying_the_last() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    let ep = shop(&s, &receiver.url()).await;
    s.post("/app/shop/trigger", json!({"endpointId": ep, "eventTypes": ["order.updated"], "uniqueKey": "order-{{ payload.orderId }}", "delayMs": 1500})).await;
    for i in 0..10 {
        s.send(
            "shop",
            "order.updated",
            json!({"orderId": "o-7", "version": i}),
        )
        .await;
    }
    s.send(
        "shop",
        "order.updated",
        json!({"orderId": "o-8", "version": 0}),
    )
    .await;
    let got = receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 2, "one per order");
    let seven = got.iter().find(|r| r.json()["orderId"] == "o-7").unwrap();
    assert_eq!(seven.json()["version"], 9, "the latest state");
}

#[tokio::test]
async fn basic_auth_is_sent() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let (st, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "basicAuth": {"username": "shop", "password": "s3cret"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");
    assert_eq!(ep["basicAuthUsername"], "shop");
    assert!(
        !ep.to_string().contains("s3cret"),
        "the password is never shown back"
    );
    s.send("a", "a.b", json!({})).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("authorization"), "Basic c2hvcDpzM2NyZXQ=");
}

/// A TLS receiver that demands a client certificate signed by `ca`.
async fn mtls_receiver(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> (Receiver, u16) {
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, ca)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = herald::tls::TlsListener::new(tcp, Arc::new(config)).unwrap();
    (Receiver::on_listener(listener).await, port)
}

#[tokio::test]
async fn a_client_certificate_endpoint_is_reached_with_the_right_certificate() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let (receiver, port) = mtls_receiver(&ca).await;

    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["herald-client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let s = start_server_with(|c| c.destination_ca_file = Some(ca_file)).await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let url = format!("https://localhost:{port}/hook");
    let (st, with_cert) = s
        .post("/app/a/endpoint", json!({"url": url, "clientCertificate": {"certificate": client_cert.pem(), "privateKey": client_key.serialize_pem()}}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{with_cert}");
    assert_eq!(with_cert["clientCertificate"], true);
    assert!(!with_cert.to_string().contains("PRIVATE KEY"));
    let (st, without) = s.post("/app/a/endpoint", json!({"url": url})).await;
    assert_eq!(st, StatusCode::CREATED);

    let msg = s.send("a", "a.b", json!({"mtls": true})).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json(), json!({"mtls": true}));
    // The endpoint without a certificate is refused in the handshake.
    let path = format!(
        "/app/a/attempt/endpoint/{}",
        without["id"].as_str().unwrap()
    );
    eventually(WAIT, || async {
        !s.get(&path).await.1["data"].as_array().unwrap().is_empty()
    })
    .await;
    let (_, attempts) = s.get(&path).await;
    assert_eq!(attempts["data"][0]["responseStatusCode"], 0);
    assert_eq!(attempts["data"][0]["msgId"], msg["id"]);
    assert_eq!(receiver.count(), 1);
    // A certificate that does not parse is refused when saved.
    let (st, _) = s
        .post(
            "/app/a/endpoint",
            json!({"url": url, "clientCertificate": {"certificate": "nope", "privateKey": "nope"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_unverified_endpoint_receives_nothing_until_verified_then_everything_queued() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let (st, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "verify": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(ep["verified"], false);
    let ep = ep["id"].as_str().unwrap().to_string();
    // The handshake arrives, signed.
    let hello = receiver.wait_for(1, WAIT).await;
    let code = hello[0].json()["verificationCode"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, secret) = s.get(&format!("/app/a/endpoint/{ep}/secret")).await;
    assert!(verify_signature(secret["key"].as_str().unwrap(), &hello[0]));
    for i in 0..3 {
        s.send("a", "a.b", json!({"n": i})).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        receiver.count(),
        1,
        "nothing but the handshake before verification"
    );
    let (_, attempts) = s.get(&format!("/app/a/attempt/endpoint/{ep}")).await;
    assert_eq!(
        attempts["data"].as_array().unwrap().len(),
        0,
        "not attempted, not counted as failures"
    );

    let (st, e) = s
        .post(
            &format!("/app/a/endpoint/{ep}/verify"),
            json!({"code": "wrong"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, verified) = s
        .post(
            &format!("/app/a/endpoint/{ep}/verify"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(verified["verified"], true);
    let got = receiver.wait_for(4, WAIT).await;
    let mut ns: Vec<i64> = got[1..]
        .iter()
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, vec![0, 1, 2]);
}

#[tokio::test]
async fn a_rate_limit_holds_while_another_endpoint_runs_at_full_speed() {
    const RATE: u64 = 20;
    let limited = Receiver::start().await;
    let free = Receiver::start().await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    s.post(
        "/app/a/endpoint",
        json!({"url": limited.url(), "throttleRate": RATE}),
    )
    .await;
    s.post("/app/a/endpoint", json!({"url": free.url()})).await;
    let n = RATE * 3;
    let started = Instant::now();
    for i in 0..n {
        s.send("a", "a.b", json!({"i": i})).await;
    }
    free.wait_for(n as usize, WAIT).await;
    let free_done = started.elapsed();
    limited.wait_for(n as usize, Duration::from_secs(30)).await;
    let limited_done = started.elapsed();
    // n deliveries at RATE/s take (n - 1) / RATE seconds after the first.
    let expected = Duration::from_secs_f64((n - 1) as f64 / RATE as f64);
    let ratio = limited_done.as_secs_f64() / expected.as_secs_f64();
    println!(
        "{n} at {RATE}/s: limited took {limited_done:?} (expected {expected:?}, ratio {ratio:.3}); unlimited {free_done:?}"
    );
    assert!(
        (0.9..=1.15).contains(&ratio),
        "rate held within 10%: ratio {ratio:.3}"
    );
    assert!(
        free_done < expected / 2,
        "the other endpoint was not held back: {free_done:?}"
    );
}

#[tokio::test]
async fn disabling_pauses_enabling_resumes_and_deleting_cancels() {
    let receiver = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retry_schedule_ms = vec![200; 20];
    let s = start_on(config).await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let (_, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "uid": "e"}),
        )
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_string();
    s.send("a", "a.b", json!({"n": 1})).await;
    receiver.wait_for(1, WAIT).await;
    req(
        &s,
        Method::PATCH,
        "/app/a/endpoint/e",
        Some(json!({"disabled": true})),
    )
    .await;
    let before = receiver.count();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        receiver.count() <= before + 1,
        "paused while disabled (one attempt may have been in flight)"
    );
    let paused = receiver.count();
    // Messages sent while disabled make no delivery: they are "missing".
    s.send("a", "a.b", json!({"n": 2})).await;
    receiver.set_behaviour(Behaviour::default());
    let (_, enabled) = req(
        &s,
        Method::PATCH,
        "/app/a/endpoint/e",
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(enabled["disabled"], false);
    let got = receiver.wait_for(paused + 1, WAIT).await;
    assert_eq!(
        got.last().unwrap().json(),
        json!({"n": 1}),
        "the paused delivery resumed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.json() != json!({"n": 2}))
    );
    // Replay-missing brings the message sent while disabled, and only it.
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    // Counted before the call: the replayed delivery may arrive before the 202 is read.
    let count = receiver.count();
    let (st, task) = s
        .post("/app/a/endpoint/e/replay-missing", json!({"since": since}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{task}");
    assert_eq!(task["task"], "endpoint.replay");
    let got = receiver.wait_for(count + 1, WAIT).await;
    assert_eq!(got.last().unwrap().json(), json!({"n": 2}));
    s.post("/app/a/endpoint/e/replay-missing", json!({"since": since}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.count(),
        count + 1,
        "a second replay finds nothing missing"
    );

    // Deleting an endpoint cancels what it still owed.
    receiver.set_behaviour(Behaviour {
        then: 500,
        ..Default::default()
    });
    let c = receiver.count();
    s.send("a", "a.b", json!({"n": 3})).await;
    receiver.wait_for(c + 1, WAIT).await;
    assert_eq!(
        s.delete("/app/a/endpoint/e").await.0,
        StatusCode::NO_CONTENT
    );
    let c = receiver.count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(receiver.count() <= c + 1, "no attempts after deletion");
    let _ = ep_id;
}

#[tokio::test]
async fn replay_missing_delivers_exactly_what_was_missed_while_unsubscribed() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    for t in ["a.one", "a.two"] {
        s.post("/event-type", json!({"name": t, "description": ""}))
            .await;
    }
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    s.post(
        "/app/a/endpoint",
        json!({"url": receiver.url(), "uid": "e", "eventTypes": ["a.one"]}),
    )
    .await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let one = s.send("a", "a.one", json!({"k": "one"})).await;
    let two = s.send("a", "a.two", json!({"k": "two"})).await;
    receiver.wait_for(1, WAIT).await;
    // Subscribe to both; replay: only the a.two message was missed.
    req(
        &s,
        Method::PATCH,
        "/app/a/endpoint/e",
        Some(json!({"eventTypes": ["a.one", "a.two"]})),
    )
    .await;
    let (st, _) = s
        .post(
            "/app/a/endpoint/e/replay-missing",
            json!({"since": since.to_rfc3339()}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let got = receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 2);
    assert_eq!(got[0].header("webhook-id"), one["id"].as_str().unwrap());
    assert_eq!(got[1].header("webhook-id"), two["id"].as_str().unwrap());
}

#[tokio::test]
async fn triggers_are_listed_with_the_built_in_ones_previewed_and_their_merge_fields_known() {
    let receiver = Receiver::start_with(Behaviour {
        script: vec![200, 503],
        ..Default::default()
    })
    .await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "order.created", "description": "", "example": {"orderId": "o-1", "lines": [{"sku": "a"}]}, "schemas": {"1": {"properties": {"status": {"type": "string"}}}}})).await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let (_, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "eventTypes": ["order.created"]}),
        )
        .await;
    let ep = ep["id"].as_str().unwrap().to_string();
    let (_, t) = s.post("/app/a/trigger", json!({"endpointId": ep, "eventTypes": ["order.*"], "template": "{\"id\": {{ payload.orderId }}}"})).await;
    let (_, list) = s.get("/app/a/trigger").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], format!("builtin_{ep}"));
    assert_eq!(data[0]["builtin"], true);
    assert_eq!(data[0]["eventTypes"], json!(["order.created"]));
    assert_eq!(data[1]["id"], t["id"]);
    assert_eq!(
        s.delete(&format!("/app/a/trigger/builtin_{ep}")).await.0,
        StatusCode::BAD_REQUEST
    );

    let (st, p) = s.post("/app/a/trigger/preview", json!({"eventType": "order.created", "template": "{\"id\": {{ payload.orderId }}, \"n\": {{ payload.lines|length }}}", "uniqueKey": "{{ payload.orderId }}", "condition": "payload.orderId == 'o-1'"})).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        serde_json::from_str::<Value>(p["body"].as_str().unwrap()).unwrap(),
        json!({"id": "o-1", "n": 1})
    );
    assert_eq!(
        (p["condition"].clone(), p["uniqueKey"].clone()),
        (json!(true), json!("o-1"))
    );
    let (_, p) = s
        .post(
            "/app/a/trigger/preview",
            json!({"eventType": "order.created", "template": "{{ payload.nope.deeper }}"}),
        )
        .await;
    assert!(
        p["errors"][0].as_str().unwrap().starts_with("template:"),
        "{p}"
    );

    let (_, fields) = s.get("/event-type/order.created/merge-fields").await;
    let fields: Vec<&str> = fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "payload.orderId",
        "payload.lines[].sku",
        "payload.status",
        "eventType",
        "msgId",
        "app.uid",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }

    // The endpoint test sends the example now and reports the answers.
    let (st, test) = s
        .post(&format!("/app/a/endpoint/{ep}/test"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{test}");
    assert_eq!(test["error"], Value::Null);
    assert_eq!(test["data"]["testsRun"], 1);
    assert_eq!(test["data"]["testsSucceeded"], 1);
    assert_eq!(test["data"]["tests"][0]["statusCode"], 200);
    let (_, test) = s
        .post(
            &format!("/app/a/endpoint/{ep}/test"),
            json!({"eventType": "order.created"}),
        )
        .await;
    assert_eq!(test["data"]["testsFailed"], 1);
    assert_eq!(test["data"]["tests"][0]["statusCode"], 503);
    assert!(test["data"]["tests"][0]["durationMs"].is_u64());
}

#[tokio::test]
async fn exhausted_deliveries_and_disabled_endpoints_raise_alerts() {
    let receiver = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let gone = Receiver::start_with(Behaviour {
        then: 410,
        ..Default::default()
    })
    .await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    s.post(
        "/app/a/endpoint",
        json!({"url": receiver.url(), "maxAttempts": 2, "retrySchedule": [10]}),
    )
    .await;
    s.post("/app/a/endpoint", json!({"url": gone.url()})).await;
    s.send("a", "a.b", json!({})).await;
    eventually(WAIT, || async {
        s.get("/alert").await.1["data"].as_array().unwrap().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 2, "maxAttempts 2 is honoured");
    let (_, alerts) = s.get("/alert").await;
    let kinds: Vec<&str> = alerts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"message.attempt.exhausted") && kinds.contains(&"endpoint.disabled"),
        "{kinds:?}"
    );
    let id = alerts["data"][0]["id"].as_str().unwrap();
    let (st, acked) = s.post(&format!("/alert/{id}/acknowledge"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert!(acked["acknowledgedAt"].is_string());
    assert_eq!(
        s.get("/alert?open=true").await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_concurrency_limit_caps_attempts_in_flight_against_one_endpoint() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A receiver that counts requests in progress and remembers the most at once.
    #[derive(Clone, Default)]
    struct Gauge {
        now: Arc<AtomicUsize>,
        max: Arc<AtomicUsize>,
        done: Arc<AtomicUsize>,
    }
    let gauge = Gauge::default();
    let app = axum::Router::new()
        .fallback(
            |axum::extract::State(g): axum::extract::State<Gauge>| async move {
                let n = g.now.fetch_add(1, Ordering::SeqCst) + 1;
                g.max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                g.now.fetch_sub(1, Ordering::SeqCst);
                g.done.fetch_add(1, Ordering::SeqCst);
                "ok"
            },
        )
        .with_state(gauge.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let (st, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": url, "concurrencyLimit": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");
    assert_eq!(ep["concurrencyLimit"], 2);
    // A burst, so the first dispatch sees many deliveries before the cap is known.
    let sends = (0..10).map(|i| {
        s.post(
            "/app/a/msg",
            json!({"eventType": "a.b", "payload": {"i": i}}),
        )
    });
    for (st, _) in futures::future::join_all(sends).await {
        assert_eq!(st, StatusCode::ACCEPTED);
    }
    eventually(WAIT, || async { gauge.done.load(Ordering::SeqCst) == 10 }).await;
    let max = gauge.max.load(Ordering::SeqCst);
    assert!(max <= 2, "at most 2 at once, saw {max}");
    assert_eq!(max, 2, "and the cap is used");
}

#[tokio::test]
async fn a_capped_slow_endpoint_does_not_hold_back_other_endpoints() {
    // One endpoint takes one request at a time and answers slowly, with a long backlog; another
    // endpoint's deliveries must not wait behind that backlog.
    let slow = Receiver::start_with(Behaviour {
        delay: Duration::from_millis(100),
        ..Behaviour::default()
    })
    .await;
    let fast = Receiver::start().await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    for (uid, url, limit) in [
        ("slow", slow.url(), json!(1)),
        ("fast", fast.url(), json!(null)),
    ] {
        s.post("/app", json!({"name": uid, "uid": uid})).await;
        let (st, ep) = s
            .post(
                &format!("/app/{uid}/endpoint"),
                json!({"url": url, "concurrencyLimit": limit}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{ep}");
    }
    // More than a narrow queue scan covers, so the scheduler must look past the backlog.
    for chunk in 0..30 {
        let sends = (0..100).map(|i| s.send("slow", "a.b", json!({"i": chunk * 100 + i})));
        futures::future::join_all(sends).await;
    }
    let started = std::time::Instant::now();
    for i in 0..50 {
        s.send("fast", "a.b", json!({"i": i})).await;
    }
    // The slow backlog needs minutes; the other endpoint's 50 arrive long before.
    fast.wait_for(50, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(
        slow.count() < 3_000,
        "the slow backlog is still draining, so the test shows what it means to"
    );
    println!("50 deliveries to the uncapped endpoint in {took:?}");
}
