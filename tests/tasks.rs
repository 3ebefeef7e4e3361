//! Recover and replay-missing as background tasks (Svix's shape): answered 202 `running` once
//! recorded, polled at `/api/v1/background-task/{id}` until `finished` with exact counts, seen
//! only by their application, and carried on from their cursor after a `kill -9`.

mod common;

use std::time::Duration;

use common::child::HeraldProcess;
use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn since_minutes_ago(m: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(m)).to_rfc3339()
}

/// Polls the task until it is no longer running; answers its last state.
async fn finished(s: &TestServer, id: &str) -> Value {
    let path = format!("/background-task/{id}");
    eventually(WAIT, || async {
        let (st, t) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{t}");
        t["status"] != "running"
    })
    .await;
    s.get(&path).await.1
}

/// An application `uid` with an endpoint `e` whose deliveries fail for good at their first
/// attempt, and `n` messages that failed there.
async fn failed_messages(s: &TestServer, uid: &str, n: usize) -> String {
    s.post("/event-type", json!({"name": "t.e", "description": ""}))
        .await;
    s.post("/app", json!({"name": uid, "uid": uid})).await;
    let (st, ep) = s
        .post(
            &format!("/app/{uid}/endpoint"),
            json!({"url": dead_url(), "uid": "e", "maxAttempts": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");
    for i in 0..n {
        s.send(uid, "t.e", json!({"i": i})).await;
    }
    eventually(WAIT, || async {
        s.get(&format!("/app/{uid}/endpoint/e/stats")).await.1["fail"] == n
    })
    .await;
    ep["id"].as_str().unwrap().to_string()
}

fn assert_task_shape(t: &Value, task: &str) {
    assert!(t["id"].as_str().unwrap().starts_with("qtask_"), "{t}");
    assert_eq!(t["task"], task, "{t}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(t["updatedAt"].as_str().unwrap()).is_ok(),
        "{t}"
    );
}

#[tokio::test]
async fn recover_answers_a_running_task_that_finishes_with_exactly_the_failed_messages() {
    let s = start_server().await;
    failed_messages(&s, "a", 5).await;
    failed_messages(&s, "other", 2).await; // another tenant's failures are not counted

    let (st, t) = s
        .post(
            "/app/a/endpoint/e/recover",
            json!({"since": since_minutes_ago(5)}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{t}");
    assert_task_shape(&t, "endpoint.recover");
    assert_eq!(
        t["status"], "running",
        "answered once recorded, not once done"
    );

    let done = finished(&s, t["id"].as_str().unwrap()).await;
    assert_task_shape(&done, "endpoint.recover");
    assert_eq!(done["id"], t["id"]);
    assert_eq!(done["status"], "finished", "{done}");
    assert_eq!(done["data"], json!({"deliveries": 5}), "{done}");

    // The recovered deliveries fail again (stats count deliveries: five more); a message is
    // counted once however often it failed.
    eventually(WAIT, || async {
        let stats = s.get("/app/a/endpoint/e/stats").await.1;
        stats["fail"] == 10 && stats["pending"] == 0
    })
    .await;
    let (_, again) = s
        .post(
            "/app/a/endpoint/e/recover",
            json!({"since": since_minutes_ago(5)}),
        )
        .await;
    let again = finished(&s, again["id"].as_str().unwrap()).await;
    assert_eq!(again["data"], json!({"deliveries": 5}), "{again}");
}

#[tokio::test]
async fn replay_missing_works_through_many_chunks_and_counts_each_message_once() {
    // More messages than one chunk (200) holds, so the cursor moves several times.
    const N: usize = 450;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "t.e", "description": ""}))
        .await;
    s.post("/event-type", json!({"name": "t.other", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let sends = (0..N).map(|i| {
        let s = &s;
        async move { s.send("a", "t.e", json!({"i": i})).await }
    });
    futures::stream::iter(sends)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for i in 0..3 {
        s.send("a", "t.other", json!({"i": i})).await; // not subscribed: not missing
    }
    // Created after the messages, disabled: what it missed is queued (parked) for it.
    let (st, ep) = s
        .post(
            "/app/a/endpoint",
            json!({"url": dead_url(), "uid": "late", "eventTypes": ["t.e"], "disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");

    let (st, t) = s
        .post(
            "/app/a/endpoint/late/replay-missing",
            json!({"since": since_minutes_ago(10)}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{t}");
    assert_task_shape(&t, "endpoint.replay");
    assert_eq!(t["status"], "running");
    let done = finished(&s, t["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "finished", "{done}");
    assert_eq!(done["data"], json!({"deliveries": N}), "{done}");

    // Nothing is missing any more.
    let (_, again) = s
        .post(
            "/app/a/endpoint/late/replay-missing",
            json!({"since": since_minutes_ago(10)}),
        )
        .await;
    let again = finished(&s, again["id"].as_str().unwrap()).await;
    assert_eq!(again["data"], json!({"deliveries": 0}), "{again}");
}

#[tokio::test]
async fn a_task_is_seen_only_by_its_own_application() {
    let s = start_server().await;
    failed_messages(&s, "a", 1).await;
    s.post("/app", json!({"name": "B", "uid": "b"})).await;
    let (_, t) = s
        .post(
            "/app/a/endpoint/e/recover",
            json!({"since": since_minutes_ago(5)}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    finished(&s, &id).await;
    let a = s.service.create_token("a", Some("a")).await.unwrap().text;
    let b = s.service.create_token("b", Some("b")).await.unwrap().text;

    let path = format!("/background-task/{id}");
    let (st, mine) = s.request(Method::GET, &path, None, Some(&a)).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(mine["id"], id.as_str());
    let (st, theirs) = s.request(Method::GET, &path, None, Some(&b)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{theirs}");
    assert_eq!(theirs["code"], "not_found");
    let (st, _) = s
        .request(
            Method::GET,
            "/background-task/qtask_nonsense",
            None,
            Some(&a),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Lists: the admin and the owner see it, another tenant sees nothing.
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, all) = s.get("/background-task").await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(ids(&all), vec![id.clone()]);
    assert_eq!(all["done"], true);
    let (_, own) = s
        .request(Method::GET, "/background-task", None, Some(&a))
        .await;
    assert_eq!(ids(&own), vec![id.clone()]);
    let (_, other) = s
        .request(Method::GET, "/background-task", None, Some(&b))
        .await;
    assert_eq!(ids(&other), Vec::<String>::new(), "{other}");
    // Another tenant cannot start one on this endpoint either.
    let (st, _) = s
        .request(
            Method::POST,
            "/app/a/endpoint/e/recover",
            Some(json!({"since": since_minutes_ago(5)})),
            Some(&b),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_task_list_pages_newest_first_and_filters_by_kind() {
    let s = start_server().await;
    failed_messages(&s, "a", 1).await;
    let mut ids = Vec::new();
    for path in ["recover", "replay-missing", "recover"] {
        let (st, t) = s
            .post(
                &format!("/app/a/endpoint/e/{path}"),
                json!({"since": since_minutes_ago(5)}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{t}");
        let id = t["id"].as_str().unwrap().to_string();
        finished(&s, &id).await;
        ids.push(id);
    }
    let (_, first) = s.get("/background-task?limit=2").await;
    let page: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(first["done"], false);
    let next = first["iterator"].as_str().unwrap();
    let (_, second) = s
        .get(&format!("/background-task?limit=2&iterator={next}"))
        .await;
    assert_eq!(second["data"][0]["id"], ids[0].as_str());
    assert_eq!(second["done"], true);
    let (_, replays) = s.get("/background-task?task=endpoint.replay").await;
    assert_eq!(replays["data"].as_array().unwrap().len(), 1, "{replays}");
    assert_eq!(replays["data"][0]["id"], ids[1].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_cut_short_by_kill_9_resumes_from_its_cursor_and_queues_each_message_once() {
    const N: usize = 1_500;
    // Chunks of 5 messages: the task takes hundreds of commits, long enough to be killed.
    let env = [("HERALD_TASK_CHUNK_MAX", "5")];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let mut h = HeraldProcess::start_with_token(&db, None, &env).await;
    h.post("/event-type", json!({"name": "t.e", "description": ""}))
        .await;
    h.post("/app", json!({"name": "A", "uid": "a"})).await;
    let mut sends = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (client, base, token) = (h.client.clone(), h.base.clone(), h.token.clone());
        sends.spawn(async move {
            for i in (w..N).step_by(16) {
                let r = client
                    .post(format!("{base}/app/a/msg"))
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "t.e", "payload": {"i": i}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
        });
    }
    sends.join_all().await;
    let receiver = Receiver::start().await;
    let (st, _) = h
        .post(
            "/app/a/endpoint",
            json!({"url": receiver.url(), "uid": "late", "disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, t) = h
        .post(
            "/app/a/endpoint/late/replay-missing",
            json!({"since": since_minutes_ago(10)}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{t}");
    let path = format!("/background-task/{}", t["id"].as_str().unwrap());
    eventually(WAIT, || async {
        let (_, t) = h.get(&path).await;
        assert_eq!(t["status"], "running", "killed before it finished: {t}");
        t["data"]["deliveries"].as_u64().unwrap_or(0) > 0
    })
    .await;
    h.kill9();
    let token = h.token.clone();
    drop(h);

    let h = HeraldProcess::start_with_token(&db, Some(&token), &env).await;
    eventually(WAIT, || async {
        h.get(&path).await.1["status"] != "running"
    })
    .await;
    let last = h.get(&path).await.1;
    assert_eq!(last["status"], "finished", "{last}");
    assert_eq!(last["data"], json!({"deliveries": N}), "{last}");

    // Each message was queued for it once: enabled, it receives N, each message once.
    let (st, _) = h
        .request(
            Method::PATCH,
            "/app/a/endpoint/late",
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let got = receiver.wait_for(N, WAIT).await;
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), N);
    eventually(WAIT, || async {
        h.get("/app/a/endpoint/late/stats").await.1["success"] == N
    })
    .await;
    assert_eq!(receiver.count(), N, "no message was queued twice");
}

#[tokio::test]
async fn a_second_recover_does_not_queue_again_what_the_first_queued() {
    let s = start_server().await;
    failed_messages(&s, "a", 3).await;
    // Disabled: what recover queues waits (parked), still pending when the second one runs.
    let (st, _) = s
        .request(
            Method::PATCH,
            "/app/a/endpoint/e",
            Some(json!({"disabled": true})),
            Some(&s.token),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut counts = Vec::new();
    for _ in 0..2 {
        let (st, t) = s
            .post(
                "/app/a/endpoint/e/recover",
                json!({"since": since_minutes_ago(5)}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{t}");
        let done = finished(&s, t["id"].as_str().unwrap()).await;
        counts.push(done["data"]["deliveries"].clone());
    }
    assert_eq!(counts, [json!(3), json!(0)]);
    // Replay finds nothing missing either: every message has a delivery to it.
    let (_, t) = s
        .post(
            "/app/a/endpoint/e/replay-missing",
            json!({"since": since_minutes_ago(5)}),
        )
        .await;
    let done = finished(&s, t["id"].as_str().unwrap()).await;
    assert_eq!(done["data"], json!({"deliveries": 0}), "{done}");
}
