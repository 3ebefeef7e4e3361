//! The durable core end to end: a real server, real receivers, only HTTP.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_message_reaches_the_receiver_signed_with_the_endpoint_secret() {
    let receiver = Receiver::start().await;
    let server = start_server().await;
    let (app, ep) = server.setup("order.created", &receiver.url()).await;

    let payload = json!({"orderId": "o-1", "total": 12.5, "lines": [{"sku": "a"}]});
    let msg = server.send(&app, "order.created", payload.clone()).await;

    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let (_, secret) = server
        .get(&format!("/app/{app}/endpoint/{ep}/secret"))
        .await;
    let secret = secret["key"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert!(
        verify_signature(secret, &got[0]),
        "signature must verify with the endpoint secret"
    );
    assert!(!verify_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &got[0]
    ));
    assert_eq!(got[0].header("webhook-id"), msg["id"].as_str().unwrap());
    assert_eq!(got[0].json(), payload);
    assert_eq!(got[0].header("content-type"), "application/json");
    let ts: i64 = got[0].header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);

    // The attempt is recorded with its status.
    eventually(WAIT, || async {
        let (_, list) = server
            .get(&format!(
                "/app/{app}/attempt/msg/{}",
                msg["id"].as_str().unwrap()
            ))
            .await;
        list["data"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && d[0]["responseStatusCode"] == 200)
    })
    .await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_message_on_the_attempt_after_its_failures() {
    let receiver = Receiver::start_with(Behaviour {
        script: vec![500, 503, 502],
        ..Default::default()
    })
    .await;
    let server = start_server().await;
    let (app, _) = server.setup("order.paid", &receiver.url()).await;
    let msg = server.send(&app, "order.paid", json!({"n": 1})).await;
    let msg_id = msg["id"].as_str().unwrap();

    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got.len(), 4, "three failures, then the success");
    assert!(
        got.iter().all(|r| r.header("webhook-id") == msg_id),
        "webhook-id never changes between attempts"
    );

    let path = format!("/app/{app}/attempt/msg/{msg_id}");
    eventually(WAIT, || async {
        server.get(&path).await.1["data"].as_array().unwrap().len() == 4
    })
    .await;
    let (_, list) = server.get(&path).await;
    let codes: Vec<u64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["responseStatusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 502, 503, 500], "newest first");
    let statuses: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusText"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["success", "fail", "fail", "fail"]);
    // No fifth request: the delivery is finished.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 4);
}

#[tokio::test]
async fn a_delivery_that_exhausts_its_attempts_stops() {
    let receiver = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let server = start_server().await; // schedule: 3 retries -> 4 attempts
    let (app, _) = server.setup("order.failed", &receiver.url()).await;
    let msg = server.send(&app, "order.failed", json!({})).await;
    receiver.wait_for(4, WAIT).await;
    let path = format!("/app/{app}/attempt/msg/{}", msg["id"].as_str().unwrap());
    eventually(WAIT, || async {
        server.get(&path).await.1["data"].as_array().unwrap().len() == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.count(), 4, "no attempt after the last one");
}

#[tokio::test]
async fn gone_disables_the_endpoint() {
    let receiver = Receiver::start_with(Behaviour {
        then: 410,
        ..Default::default()
    })
    .await;
    let server = start_server().await;
    let (app, ep) = server.setup("order.gone", &receiver.url()).await;
    server.send(&app, "order.gone", json!({})).await;
    receiver.wait_for(1, WAIT).await;
    eventually(WAIT, || async {
        server.get(&format!("/app/{app}/endpoint/{ep}")).await.1["disabled"] == true
    })
    .await;
    // Later messages create no delivery for it.
    server.send(&app, "order.gone", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start_with(Behaviour {
        script: vec![429],
        extra_headers: vec![("retry-after".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let server = start_server().await; // schedule says 20 ms; the receiver asks for 1 s
    let (app, _) = server.setup("order.slow", &receiver.url()).await;
    server.send(&app, "order.slow", json!({})).await;
    receiver.wait_for(1, WAIT).await;
    let first = std::time::Instant::now();
    receiver.wait_for(2, WAIT).await;
    assert!(
        first.elapsed() >= Duration::from_millis(900),
        "second attempt after {:?}",
        first.elapsed()
    );
}

#[tokio::test]
async fn pending_deliveries_resume_after_a_restart() {
    // A port with nothing listening: every attempt fails to connect.
    let placeholder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = placeholder.local_addr().unwrap();
    drop(placeholder);
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retry_schedule_ms = vec![100; 50];
    let server = start_on(config.clone()).await;
    let (app, _) = server
        .setup("order.created", &format!("http://{addr}/hook"))
        .await;
    let msg = server
        .send(&app, "order.created", json!({"keep": "me"}))
        .await;
    let path = format!("/app/{app}/attempt/msg/{}", msg["id"].as_str().unwrap());
    eventually(WAIT, || async {
        !server.get(&path).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let (_, attempts) = server.get(&path).await;
    assert_eq!(
        attempts["data"][0]["responseStatusCode"], 0,
        "no response: connection refused"
    );
    server.stop().await;

    // The receiver comes up on that port, and Herald restarts on the same file.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::on(listener, Behaviour::default()).await;
    let server = start_on(config).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json(), json!({"keep": "me"}));
    assert_eq!(got[0].header("webhook-id"), msg["id"].as_str().unwrap());
    server.stop().await;
}

#[tokio::test]
async fn fan_out_follows_event_types_and_channels() {
    let all = Receiver::start().await;
    let only_paid = Receiver::start().await;
    let eu = Receiver::start().await;
    let server = start_server().await;
    for t in ["order.created", "order.paid"] {
        server
            .post("/event-type", json!({"name": t, "description": ""}))
            .await;
    }
    let (_, app) = server.post("/app", json!({"name": "Shop"})).await;
    let app = app["id"].as_str().unwrap();
    server
        .post(&format!("/app/{app}/endpoint"), json!({"url": all.url()}))
        .await;
    server
        .post(
            &format!("/app/{app}/endpoint"),
            json!({"url": only_paid.url(), "eventTypes": ["order.paid"]}),
        )
        .await;
    server
        .post(
            &format!("/app/{app}/endpoint"),
            json!({"url": eu.url(), "channels": ["eu"]}),
        )
        .await;

    server.send(app, "order.created", json!({"n": 1})).await;
    server.send(app, "order.paid", json!({"n": 2})).await;
    let (s, _) = server
        .post(
            &format!("/app/{app}/msg"),
            json!({"eventType": "order.paid", "payload": {"n": 3}, "channels": ["eu"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    all.wait_for(3, WAIT).await;
    only_paid.wait_for(2, WAIT).await;
    eu.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((all.count(), only_paid.count(), eu.count()), (3, 2, 1));
    assert_eq!(eu.received()[0].json(), json!({"n": 3}));
}

#[tokio::test]
async fn event_ids_deduplicate_and_idempotency_keys_replay() {
    let receiver = Receiver::start().await;
    let server = start_server().await;
    let (app, _) = server.setup("order.created", &receiver.url()).await;
    let body = json!({"eventType": "order.created", "payload": {"a": 1}, "eventId": "evt-1"});
    let (s, first) = server.post(&format!("/app/{app}/msg"), body.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, err) = server.post(&format!("/app/{app}/msg"), body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(err["code"], "conflict");
    // The eventId also finds the message.
    let (s, got) = server.get(&format!("/app/{app}/msg/evt-1")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["id"], first["id"]);

    // Same Idempotency-Key: same answer, one message.
    let send = |key: &'static str| {
        server
            .client
            .post(server.url(&format!("/app/{app}/msg")))
            .bearer_auth(&server.token)
            .header("idempotency-key", key)
            .json(&json!({"eventType": "order.created", "payload": {"b": 2}}))
            .send()
    };
    let a: serde_json::Value = send("key-1").await.unwrap().json().await.unwrap();
    let r = send("key-1").await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let (_, list) = server.get(&format!("/app/{app}/msg")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    receiver.wait_for(2, WAIT).await;
}

/// The writer jobs committed so far (`herald_writer_batch_jobs_sum` in /metrics).
async fn writer_jobs(server: &TestServer) -> f64 {
    server
        .metric("herald_writer_batch_jobs_sum")
        .await
        .expect("the writer's job count is exported")
}

#[tokio::test]
async fn a_message_create_remembers_its_idempotency_key_in_its_own_commit() {
    let server = start_server().await;
    let (s, _) = server
        .post("/event-type", json!({"name": "a.b", "description": "x"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // No endpoint: no attempt jobs, so every writer job below is a create's.
    let (_, app) = server.post("/app", json!({"name": "Keys"})).await;
    let msgs = format!("/app/{}/msg", app["id"].as_str().unwrap());
    let send = |key: String, payload: serde_json::Value| {
        server
            .client
            .post(server.url(&msgs))
            .bearer_auth(&server.token)
            .header("idempotency-key", key)
            .json(&json!({"eventType": "a.b", "payload": payload}))
            .send()
    };
    // Background writes (the retention task's first pass at start; its next is a minute away)
    // must be done before counting, so the count below is the creates' alone.
    let mut before = writer_jobs(&server).await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = writer_jobs(&server).await;
        if now == before {
            break;
        }
        before = now;
    }
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = send(format!("auto_{i}"), json!({"i": i})).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = r.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // One commit per create, the answer remembered in it (not a second commit per key).
    assert_eq!(writer_jobs(&server).await - before, 5.0);

    // A key answered before is replayed, even with a body that would now be refused.
    for payload in [json!({"i": 0}), json!("not an object")] {
        let r = send("auto_0".into(), payload).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["id"], ids[0].as_str());
        assert_eq!(body["payload"], json!({"i": 0}));
    }

    // The answer is read back from the message: once its content is expunged, no copy of the
    // payload is kept for the key either.
    let (s, _) = server.delete(&format!("{msgs}/{}/content", ids[1])).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = send("auto_1".into(), json!({"i": 1})).await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["id"].as_str(), &body["payload"]),
        (Some(ids[1].as_str()), &json!({"expired": true}))
    );

    // The answer is rendered again as the first request asked for it (`with_content=false`).
    let mut without = Vec::new();
    for _ in 0..2 {
        let r = server
            .client
            .post(server.url(&format!("{msgs}?with_content=false")))
            .bearer_auth(&server.token)
            .header("idempotency-key", "auto_bare")
            .json(&json!({"eventType": "a.b", "payload": {"secret": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["payload"], json!({}));
        without.push(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(without[0], without[1]);

    // Creates racing with one new key make one message, and all get its answer.
    let racing = futures::future::join_all((0..8).map(|_| send("auto_race".into(), json!({}))));
    let mut answered = std::collections::HashSet::new();
    for r in racing.await {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = r.json().await.unwrap();
        answered.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(answered.len(), 1, "{answered:?}");
    let (_, list) = server.get(&format!("{msgs}?limit=50")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn an_answer_too_large_to_remember_is_sent_and_not_replayed_but_a_message_create_is() {
    // Every answer below is larger than 64 bytes. A message create's is remembered all the same:
    // it is kept as a reference to its message, not as the answer's bytes.
    let server = start_server_with(|c| c.idempotency_body_max_bytes = 64).await;
    let (s, _) = server
        .post("/event-type", json!({"name": "a.b", "description": "x"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let send = |path: String, body: serde_json::Value| {
        server
            .client
            .post(server.url(&path))
            .bearer_auth(&server.token)
            .header("idempotency-key", "k-1")
            .json(&body)
            .send()
    };
    // Through the middleware (any POST): answered, not remembered, so the same key runs again.
    let mut apps = Vec::new();
    for _ in 0..2 {
        let r = send("/app".into(), json!({"name": "Big"})).await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let app: serde_json::Value = r.json().await.unwrap();
        apps.push(app["id"].as_str().unwrap().to_string());
    }
    assert_ne!(apps[0], apps[1]);
    let msgs = format!("/app/{}/msg", apps[0]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = send(msgs.clone(), json!({"eventType": "a.b", "payload": {}}))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let msg: serde_json::Value = r.json().await.unwrap();
        ids.push(msg["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_svix_error_and_stores_nothing() {
    let server = start_server_with(|c| c.payload_max_bytes = 1024).await;
    let (app, _) = server
        .setup("order.created", "http://127.0.0.1:9/hook")
        .await;
    let msgs = format!("/app/{app}/msg");
    let eps = format!("/app/{app}/endpoint");

    let cases: Vec<(&str, StatusCode, serde_json::Value)> = vec![
        (
            "malformed JSON",
            server.post_raw(&msgs, "{\"eventType\": ").await.0,
            server.post_raw(&msgs, "{\"eventType\": ").await.1,
        ),
        (
            "wrong field type",
            {
                let r = server
                    .post(&msgs, json!({"eventType": 5, "payload": {}}))
                    .await;
                (r.0, r.1)
            }
            .0,
            server
                .post(&msgs, json!({"eventType": 5, "payload": {}}))
                .await
                .1,
        ),
        (
            "payload not an object",
            server
                .post(&msgs, json!({"eventType": "order.created", "payload": [1]}))
                .await
                .0,
            json!(null),
        ),
        (
            "unknown event type",
            server
                .post(&msgs, json!({"eventType": "nope.never", "payload": {}}))
                .await
                .0,
            json!(null),
        ),
        (
            "payload too large",
            server
                .post(
                    &msgs,
                    json!({"eventType": "order.created", "payload": {"x": "y".repeat(2000)}}),
                )
                .await
                .0,
            json!(null),
        ),
        (
            "invalid URL",
            server.post(&eps, json!({"url": "not a url"})).await.0,
            json!(null),
        ),
        (
            "ftp URL",
            server
                .post(&eps, json!({"url": "ftp://example.com/"}))
                .await
                .0,
            json!(null),
        ),
        (
            "private destination",
            server
                .post(&eps, json!({"url": "http://10.1.2.3/hook"}))
                .await
                .0,
            json!(null),
        ),
        (
            "unknown endpoint event type",
            server
                .post(
                    &eps,
                    json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["nope"]}),
                )
                .await
                .0,
            json!(null),
        ),
        (
            "bad secret",
            server
                .post(
                    &eps,
                    json!({"url": "http://127.0.0.1:9/x", "secret": "short"}),
                )
                .await
                .0,
            json!(null),
        ),
        (
            "forbidden header",
            server
                .post(
                    &eps,
                    json!({"url": "http://127.0.0.1:9/x", "headers": {"Content-Type": "x"}}),
                )
                .await
                .0,
            json!(null),
        ),
        (
            "unknown app",
            server
                .post(
                    "/app/app_nope/msg",
                    json!({"eventType": "order.created", "payload": {}}),
                )
                .await
                .0,
            json!(null),
        ),
    ];
    for (name, status, _) in &cases {
        assert!(status.is_client_error(), "{name}: {status}");
    }
    // Exact statuses where Svix defines them.
    assert_eq!(cases[0].1, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cases[4].1, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(cases[7].1, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cases[11].1, StatusCode::NOT_FOUND);

    // The error bodies have the Svix shapes.
    let (_, e) = server
        .post(&msgs, json!({"eventType": 5, "payload": {}}))
        .await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "eventType"]));
    assert!(e["detail"][0]["msg"].is_string());
    let (_, e) = server
        .post(&eps, json!({"url": "http://10.1.2.3/hook"}))
        .await;
    assert_eq!(e["detail"][0]["loc"], json!(["body", "url"]));
    let (_, e) = server
        .post(
            &msgs,
            json!({"eventType": "order.created", "payload": {"x": "y".repeat(2000)}}),
        )
        .await;
    assert_eq!(e["code"], "payload_too_large");
    let (_, e) = server.post(&eps, json!({})).await;
    assert_eq!(
        e["detail"][0]["loc"],
        json!(["body", "url"]),
        "a missing field is named"
    );

    // Tokens: missing and wrong.
    let (s, e) = server
        .request(reqwest::Method::GET, "/app", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(e["code"], "authentication_failed");
    let (s, _) = server
        .request(reqwest::Method::GET, "/app", None, Some("hrld_wrong"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Nothing was stored, and the server still serves.
    let (_, list) = server.get(&msgs).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (_, list) = server.get(&eps).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "only the endpoint from setup"
    );
    let (s, _) = server.get("/health").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_server_without_the_loopback_allowlist_never_reaches_a_loopback_receiver() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let open = test_config(dir.path());
    let server = start_on(open.clone()).await;
    let (app, _) = server.setup("order.created", &receiver.url()).await;
    // Creating such an endpoint on a guarded server is refused outright.
    server.stop().await;

    let guarded = herald::config::Config {
        allow_destination: vec![],
        ..open
    };
    let server = start_on(guarded).await;
    let (s, e) = server
        .post(
            &format!("/app/{app}/endpoint"),
            json!({"url": receiver.url()}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, _) = server
        .post(
            &format!("/app/{app}/endpoint"),
            json!({"url": format!("http://localhost:{}/x", receiver.addr.port())}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // An endpoint stored earlier is not reached: the attempt fails as blocked.
    let msg = server.send(&app, "order.created", json!({})).await;
    let path = format!("/app/{app}/attempt/msg/{}", msg["id"].as_str().unwrap());
    eventually(WAIT, || async {
        !server.get(&path).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let (_, attempts) = server.get(&path).await;
    assert_eq!(attempts["data"][0]["responseStatusCode"], 0);
    assert!(
        attempts["data"][0]["response"]
            .as_str()
            .unwrap()
            .contains("not public"),
        "{attempts}"
    );
    assert_eq!(receiver.count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn trailing_slashes_and_uids_work_like_svix() {
    let server = start_server().await;
    let (s, app) = server
        .post("/app/", json!({"name": "Shop", "uid": "shop-7"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, same) = server.get("/app/shop-7/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(same["id"], app["id"]);
    let (s, again) = server
        .post(
            "/app?get_if_exists=true",
            json!({"name": "Other", "uid": "shop-7"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["id"], app["id"]);
    let (s, e) = server
        .post("/app", json!({"name": "Other", "uid": "shop-7"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["code"], "conflict");
}

#[tokio::test]
async fn an_app_scoped_token_sees_only_its_application() {
    let server = start_server().await;
    let (_, mine) = server
        .post("/app", json!({"name": "Mine", "uid": "mine"}))
        .await;
    let (_, theirs) = server
        .post("/app", json!({"name": "Theirs", "uid": "theirs"}))
        .await;
    let scoped = server
        .service
        .create_token("tenant", Some("mine"))
        .await
        .unwrap()
        .text;
    let (s, _) = server
        .request(reqwest::Method::GET, "/app/mine", None, Some(&scoped))
        .await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/app/theirs".to_string(),
        format!("/app/{}", theirs["id"].as_str().unwrap()),
        "/app/theirs/endpoint".into(),
        "/app/theirs/msg".into(),
    ] {
        let (s, e) = server
            .request(reqwest::Method::GET, &path, None, Some(&scoped))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {e}");
    }
    let (s, _) = server
        .request(
            reqwest::Method::POST,
            "/app/theirs/msg",
            Some(json!({"eventType": "x", "payload": {}})),
            Some(&scoped),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = server
        .request(reqwest::Method::GET, "/app", None, Some(&scoped))
        .await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mine["id"].as_str().unwrap()]);
    let (s, _) = server
        .request(
            reqwest::Method::POST,
            "/app",
            Some(json!({"name": "New"})),
            Some(&scoped),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
