//! What Herald keeps on disk, as an outside probe would look at it: no secret in the
//! idempotency table (so none in a backup), and every file holding secrets readable by its
//! owner only.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, start_on, start_server, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

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

#[tokio::test]
async fn the_database_file_is_created_readable_by_its_owner_only() {
    let s = start_server().await;
    assert_eq!(mode(&s.db), 0o600);
}

#[tokio::test]
async fn an_existing_database_file_open_to_others_is_tightened() {
    let s = start_server().await;
    let config = test_config(s.db.parent().unwrap());
    let dir = s.stop().await.unwrap();
    std::fs::set_permissions(&config.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = start_on(config).await;
    assert_eq!(mode(&s.db), 0o600);
    drop(s);
    drop(dir);
}

#[tokio::test]
async fn backups_are_readable_by_their_owner_only() {
    let s = start_server().await;
    let dir = tempfile::tempdir().unwrap();

    // From a running server.
    let from_server = dir.path().join("from-server.redb");
    let base = s.base.trim_end_matches("/api/v1").to_string();
    let out = tokio::process::Command::new(BIN)
        .args(["backup", "--url", &base, "--token", &s.token])
        .arg(&from_server)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&from_server), 0o600);

    // From the file, the server stopped.
    let db = s.db.clone();
    let _live = s.stop().await;
    let from_file = dir.path().join("from-file.redb");
    let out = Command::new(BIN)
        .args(["backup", "--db"])
        .arg(&db)
        .arg(&from_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&from_file), 0o600);
}

/// The first start writes an admin token beside the database; a file left there from an
/// earlier database (mode 0644) is taken over, tightened before the token is written.
#[tokio::test]
async fn the_first_start_token_file_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let token_file = dir.path().join("herald.redb.admin-token");
    std::fs::write(&token_file, "hrld_stale\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--db"])
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"])
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        std::fs::read_to_string(&token_file)
            .is_ok_and(|t| t.starts_with("hrld_") && t != "hrld_stale\n")
    })
    .await;
    let token_mode = mode(&token_file);
    let db_mode = mode(&db);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(token_mode, 0o600);
    assert_eq!(db_mode, 0o600);
}
