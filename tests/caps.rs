//! Per-application caps: each is a setting, refused with a 422 naming it when reached, checked
//! in the writer job that would create the thing (so racing creates cannot pass it), and
//! nothing is stored by the refused request.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A 422 in the Svix validation shape whose message names the setting.
fn assert_cap(what: &str, r: &(StatusCode, Value), setting: &str) {
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {}", r.1);
    let detail = r.1["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {}", r.1));
    assert!(detail[0]["loc"].is_array(), "{what}: {}", r.1);
    assert_eq!(detail[0]["type"], "value_error", "{what}: {}", r.1);
    let msg = detail[0]["msg"].as_str().unwrap();
    assert!(msg.contains(setting), "{what}: '{msg}' names {setting}");
}

async fn server_with(setting: &str, value: Value) -> TestServer {
    let (setting, value) = (setting.to_string(), value);
    let s = start_server_with(move |c| set(c, &setting, value)).await;
    s.post("/event-type", json!({"name": "t.e", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    s
}

async fn count_endpoints(s: &TestServer) -> usize {
    s.get("/app/a/endpoint?limit=250").await.1["data"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn endpoints_per_app_max_holds_on_create_on_put_and_under_racing_creates() {
    let s = server_with("endpoints_per_app_max", json!(3)).await;
    let url = dead_url();
    // Racing creates: ten at once, three may win.
    let creates = (0..10).map(|i| {
        let (s, url) = (&s, url.clone());
        async move {
            s.post(
                "/app/a/endpoint",
                json!({"url": url, "uid": format!("e{i}")}),
            )
            .await
        }
    });
    let answers = futures::future::join_all(creates).await;
    let created = answers
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .count();
    assert_eq!(created, 3, "{answers:?}");
    for r in answers.iter().filter(|r| r.0 != StatusCode::CREATED) {
        assert_cap("create", r, "endpoints_per_app_max");
    }
    // PUT to an unknown uid creates: the same cap.
    let put = s
        .request(
            Method::PUT,
            "/app/a/endpoint/new-one",
            Some(json!({"url": url})),
            Some(&s.token),
        )
        .await;
    assert_cap("put", &put, "endpoints_per_app_max");
    assert_eq!(count_endpoints(&s).await, 3);
    // Another application has its own allowance.
    s.post("/app", json!({"name": "B", "uid": "b"})).await;
    assert_eq!(
        s.post("/app/b/endpoint", json!({"url": url})).await.0,
        StatusCode::CREATED
    );
    // Deleting one makes room again.
    let (_, list) = s.get("/app/a/endpoint").await;
    let one = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.delete(&format!("/app/a/endpoint/{one}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.post("/app/a/endpoint", json!({"url": url})).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn triggers_per_app_max_is_a_setting_answered_with_a_422() {
    let s = server_with("triggers_per_app_max", json!(2)).await;
    s.post("/app/a/endpoint", json!({"url": dead_url(), "uid": "e"}))
        .await;
    let trigger = json!({"endpointId": "e", "eventTypes": ["t.e"]});
    for _ in 0..2 {
        let (st, t) = s.post("/app/a/trigger", trigger.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "{t}");
    }
    let refused = s.post("/app/a/trigger", trigger.clone()).await;
    assert_cap("third trigger", &refused, "triggers_per_app_max");
    let (_, list) = s.get("/app/a/trigger").await;
    let custom = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["id"].as_str().unwrap().starts_with("builtin_"))
        .count();
    assert_eq!(custom, 2, "{list}");
}

#[tokio::test]
async fn headers_per_endpoint_max_holds_on_create_and_on_both_header_calls() {
    let s = server_with("headers_per_endpoint_max", json!(2)).await;
    let three = json!({"X-A": "1", "X-B": "2", "X-C": "3"});
    let create = s
        .post(
            "/app/a/endpoint",
            json!({"url": dead_url(), "uid": "e0", "headers": three}),
        )
        .await;
    assert_cap("create", &create, "headers_per_endpoint_max");
    let (st, _) = s
        .post(
            "/app/a/endpoint",
            json!({"url": dead_url(), "uid": "e", "headers": {"X-A": "1"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let put = s
        .request(
            Method::PUT,
            "/app/a/endpoint/e/headers",
            Some(json!({"headers": three})),
            Some(&s.token),
        )
        .await;
    assert_cap("put headers", &put, "headers_per_endpoint_max");
    let patch = s
        .request(
            Method::PATCH,
            "/app/a/endpoint/e/headers",
            Some(json!({"headers": {"X-B": "2", "X-C": "3"}})),
            Some(&s.token),
        )
        .await;
    assert_cap("patch headers", &patch, "headers_per_endpoint_max");
    let (_, h) = s.get("/app/a/endpoint/e/headers").await;
    assert_eq!(h["headers"], json!({"X-A": "1"}), "nothing stored: {h}");
}

#[tokio::test]
async fn resends_per_message_max_refuses_before_writing() {
    let s = server_with("resends_per_message_max", json!(3)).await;
    let receiver = Receiver::start().await;
    s.post(
        "/app/a/endpoint",
        json!({"url": receiver.url(), "uid": "e"}),
    )
    .await;
    let msg = s.send("a", "t.e", json!({"n": 1})).await;
    let id = msg["id"].as_str().unwrap();
    receiver.wait_for(1, WAIT).await;
    let path = format!("/app/a/msg/{id}/endpoint/e/resend");
    for _ in 0..3 {
        let (st, body) = s.post(&path, json!({})).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    }
    let refused = s.post(&path, json!({})).await;
    assert_cap("fourth resend", &refused, "resends_per_message_max");
    // The routed delivery and three resends were attempted; the refused one never existed.
    receiver.wait_for(4, WAIT).await;
    eventually(WAIT, || async {
        s.get(&format!("/app/a/attempt/msg/{id}")).await.1["data"]
            .as_array()
            .unwrap()
            .len()
            == 4
    })
    .await;
    // Other messages are not affected.
    let other = s.send("a", "t.e", json!({"n": 2})).await;
    let other = other["id"].as_str().unwrap();
    let (st, _) = s
        .post(&format!("/app/a/msg/{other}/endpoint/e/resend"), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn tasks_running_per_app_max_refuses_another_task_while_one_runs() {
    // One running task at a time, chunks of one message: the first task is still running
    // when the second is asked for.
    let s = start_server_with(|c| {
        set(c, "tasks_running_per_app_max", json!(1));
        set(c, "task_chunk_max", json!(1));
    })
    .await;
    s.post("/event-type", json!({"name": "t.e", "description": ""}))
        .await;
    s.post("/app", json!({"name": "A", "uid": "a"})).await;
    s.post("/app", json!({"name": "B", "uid": "b"})).await;
    for i in 0..1_000 {
        s.send("a", "t.e", json!({"i": i})).await;
    }
    for app in ["a", "b"] {
        s.post(
            &format!("/app/{app}/endpoint"),
            json!({"url": dead_url(), "uid": "e", "disabled": true}),
        )
        .await;
    }
    let since = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    let (st, first) = s
        .post("/app/a/endpoint/e/replay-missing", json!({"since": since}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    let refused = s
        .post("/app/a/endpoint/e/recover", json!({"since": since}))
        .await;
    assert_cap("second task", &refused, "tasks_running_per_app_max");
    // Another application's allowance is its own.
    let (st, other) = s
        .post("/app/b/endpoint/e/recover", json!({"since": since}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{other}");
    let path = format!("/background-task/{}", first["id"].as_str().unwrap());
    eventually(Duration::from_secs(60), || async {
        s.get(&path).await.1["status"] == "finished"
    })
    .await;
    let (st, _) = s
        .post("/app/a/endpoint/e/recover", json!({"since": since}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "room again once it finished");
}

#[tokio::test]
async fn tasks_kept_per_app_max_drops_the_oldest_finished_tasks() {
    let s = server_with("tasks_kept_per_app_max", json!(2)).await;
    s.post("/app/a/endpoint", json!({"url": dead_url(), "uid": "e"}))
        .await;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (st, t) = s
            .post("/app/a/endpoint/e/recover", json!({"since": since}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{t}");
        let id = t["id"].as_str().unwrap().to_string();
        let path = format!("/background-task/{id}");
        eventually(WAIT, || async {
            s.get(&path).await.1["status"] == "finished"
        })
        .await;
        ids.push(id);
    }
    let (_, list) = s.get("/background-task").await;
    let kept: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [ids[3].as_str(), ids[2].as_str()], "{list}");
    assert_eq!(
        s.get(&format!("/background-task/{}", ids[0])).await.0,
        StatusCode::NOT_FOUND
    );
}
