//! What Herald keeps on disk, as an outside probe would look at it: no secret in the
//! idempotency table (so none in a backup), and every file holding secrets readable by its
//! owner only.

mod common;

use common::start_server;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn post_with_key(
    s: &common::TestServer,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(s.url(path))
        .bearer_auth(&s.token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// The bytes of a backup taken from the running server (`GET /admin/backup`, what
/// `herald backup --url` saves).
async fn backup_bytes(s: &common::TestServer) -> Vec<u8> {
    let resp = s
        .client
        .get(s.url("/admin/backup"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn a_portal_link_asked_with_an_idempotency_key_is_kept_neither_in_the_file_nor_in_a_backup() {
    let s = start_server().await;
    let (_, app) = s.post("/app", json!({"name": "Acme"})).await;
    let app = app["id"].as_str().unwrap().to_string();
    let path = format!("/auth/app-portal-access/{app}");

    let (status, first) = post_with_key(&s, &path, "portal-1", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let token = first["token"].as_str().unwrap().to_string();
    assert!(first["url"].as_str().unwrap().contains(&token));

    let file = std::fs::read(&s.db).unwrap();
    assert!(
        !contains(&file, &token),
        "the portal token is in the database file"
    );
    let backup = backup_bytes(&s).await;
    assert!(
        !contains(&backup, &token),
        "the portal token is in the backup"
    );

    // A retry with the key mints a fresh link: the first one is not kept to be sent again.
    let (status, again) = post_with_key(&s, &path, "portal-1", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let second = again["token"].as_str().unwrap();
    assert_ne!(second, token);
    for link in [&first, &again] {
        let page = s
            .client
            .get(link["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{link}");
    }
}

#[tokio::test]
async fn a_rotated_secret_asked_with_an_idempotency_key_is_not_remembered() {
    let s = start_server().await;
    let (app, ep) = s.setup("probe.rotate", "http://127.0.0.1:9/").await;
    let path = format!("/app/{app}/endpoint/{ep}/secret/rotate");
    let scope = herald::service::Service::idempotency_key(
        &format!("Bearer {}", s.token),
        "rotate-1",
        &format!("/app/{app}/endpoint/{ep}/secret/rotate"),
    );

    let (status, first) = post_with_key(&s, &path, "rotate-1", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["key"].as_str().unwrap().starts_with("whsec_"));
    assert!(
        s.service
            .idempotent_response(scope)
            .await
            .unwrap()
            .is_none(),
        "the answer holding the new secret was remembered"
    );
    // The key is not replayed from the table: a retry rotates again, and the secret the
    // lost answer carried keeps signing through its grace period.
    let (status, again) = post_with_key(&s, &path, "rotate-1", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_ne!(again["key"], first["key"]);
}

#[tokio::test]
async fn answers_without_secrets_are_still_replayed() {
    let s = start_server().await;
    let (status, first) = post_with_key(&s, "/app", "app-1", json!({"name": "Once"})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = post_with_key(&s, "/app", "app-1", json!({"name": "Once"})).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(first["id"], again["id"]);
}
