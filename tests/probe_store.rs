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

// ---- read-modify-write: an update reads and writes in one writer job -------------------------

use herald::model::{AppId, EndpointId};
use herald::storage::{StoreError, Writer};

/// The writer held inside a job of its own: a request sent meanwhile reads the committed
/// state, then waits behind it with its write. Released, the job makes `change` (a concurrent
/// edit, Herald disabling an endpoint, a delete) and commits before the request's write runs,
/// which is the race an update that reads in one job and writes in another loses.
struct HeldWriter {
    release: std::sync::mpsc::Sender<()>,
    job: tokio::task::JoinHandle<Result<(), StoreError>>,
}

async fn hold_writer(
    s: &common::TestServer,
    change: impl Fn(&mut Writer<'_>) -> Result<(), StoreError> + Send + 'static,
) -> HeldWriter {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, mut running) = tokio::sync::mpsc::unbounded_channel::<()>();
    let store = s.service.store().clone();
    let job = tokio::spawn(async move {
        store
            .write(move |w| {
                let _ = started.send(());
                released.recv().expect("the test releases the writer");
                change(w)
            })
            .await
    });
    running.recv().await.unwrap();
    HeldWriter { release, job }
}

impl HeldWriter {
    /// Waits until `n` more jobs wait behind the held one (the request has read and sent its
    /// write), then lets the held job make its change and commit.
    async fn release_after(self, s: &common::TestServer, n: usize) {
        let store = s.service.store().clone();
        eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { store.jobs_waiting() >= n }
        })
        .await;
        self.release.send(()).unwrap();
        self.job.await.unwrap().unwrap();
    }
}

async fn request(
    s: &common::TestServer,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (client, url, token) = (s.client.clone(), s.url(&path), s.token.clone());
    tokio::spawn(async move {
        let mut req = client.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

fn disable_endpoint(id: EndpointId) -> impl Fn(&mut Writer<'_>) -> Result<(), StoreError> {
    move |w| {
        let ep = w.endpoint(id)?.expect("the endpoint exists");
        let mut new = ep.clone();
        new.disabled = true;
        new.options.disabled_reason = Some("the receiver answered 410 Gone".into());
        w.update_endpoint(&ep, &new)
    }
}

#[tokio::test]
async fn a_patch_racing_herald_disabling_the_endpoint_leaves_it_disabled() {
    let s = start_server().await;
    let (app, ep) = s.setup("probe.race", "http://127.0.0.1:9/").await;
    let id = EndpointId::parse(&ep).unwrap();
    let path = format!("/app/{app}/endpoint/{ep}");

    let held = hold_writer(&s, disable_endpoint(id)).await;
    let patch = request(
        &s,
        reqwest::Method::PATCH,
        path.clone(),
        Some(json!({"description": "renamed"})),
    )
    .await;
    held.release_after(&s, 1).await;
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["description"], "renamed");
    assert_eq!(body["disabled"], true, "{body}");
    let (_, now) = s.get(&path).await;
    assert_eq!(now["disabled"], true, "{now}");
    assert_eq!(now["disabledReason"], "the receiver answered 410 Gone");

    // Setting it is what enables it again.
    let (status, body) = s
        .request(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"disabled": false})),
            Some(&s.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], false);
}

#[tokio::test]
async fn a_patch_racing_another_edit_keeps_the_other_edit() {
    let s = start_server().await;
    let (app, ep) = s.setup("probe.race", "http://127.0.0.1:9/").await;
    let id = EndpointId::parse(&ep).unwrap();
    let path = format!("/app/{app}/endpoint/{ep}");

    let held = hold_writer(&s, move |w| {
        let ep = w.endpoint(id)?.unwrap();
        let mut new = ep.clone();
        new.url = "http://127.0.0.1:10/moved".into();
        w.update_endpoint(&ep, &new)
    })
    .await;
    let patch = request(
        &s,
        reqwest::Method::PATCH,
        path.clone(),
        Some(json!({"description": "renamed"})),
    )
    .await;
    held.release_after(&s, 1).await;
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, now) = s.get(&path).await;
    assert_eq!(now["url"], "http://127.0.0.1:10/moved", "{now}");
    assert_eq!(now["description"], "renamed");
}

#[tokio::test]
async fn a_patch_or_put_racing_the_delete_of_its_endpoint_answers_404_and_creates_nothing() {
    let s = start_server().await;
    let (app, _) = s.setup("probe.race", "http://127.0.0.1:9/").await;
    for (method, body) in [
        (reqwest::Method::PATCH, json!({"description": "renamed"})),
        (
            reqwest::Method::PUT,
            json!({"url": "http://127.0.0.1:9/", "description": "put"}),
        ),
    ] {
        let (_, ep) = s
            .post(
                &format!("/app/{app}/endpoint"),
                json!({"url": "http://127.0.0.1:9/", "uid": "doomed"}),
            )
            .await;
        let id = EndpointId::parse(ep["id"].as_str().unwrap()).unwrap();
        let held = hold_writer(&s, move |w| {
            let ep = w.endpoint(id)?.unwrap();
            w.delete_endpoint_triggers(ep.app_id, ep.id)?;
            w.delete_endpoint(&ep)
        })
        .await;
        let answer = request(
            &s,
            method.clone(),
            format!("/app/{app}/endpoint/{id}"),
            Some(body),
        )
        .await;
        held.release_after(&s, 1).await;
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {body}");
        let (_, list) = s.get(&format!("/app/{app}/endpoint")).await;
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert!(!ids.contains(&id.to_string().as_str()), "{method}: {list}");
        assert!(
            s.service
                .store()
                .read(move |r| r.endpoint(id))
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_patch_or_put_racing_the_delete_of_its_application_brings_nothing_back() {
    let s = start_server().await;
    for (method, body) in [
        (reqwest::Method::PATCH, json!({"name": "renamed"})),
        (reqwest::Method::PUT, json!({"name": "put"})),
    ] {
        let (_, app) = s
            .post("/app", json!({"name": "Doomed", "uid": "doomed"}))
            .await;
        let id = AppId::parse(app["id"].as_str().unwrap()).unwrap();
        let held = hold_writer(&s, move |w| {
            let app = w.app(id)?.unwrap();
            w.delete_app(&app)
        })
        .await;
        let answer = request(&s, method.clone(), format!("/app/{id}"), Some(body)).await;
        held.release_after(&s, 1).await;
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {body}");
        assert!(
            s.service
                .store()
                .read(move |r| r.app(id))
                .await
                .unwrap()
                .is_none(),
            "{method} brought the application back"
        );
        let (status, _) = s.get("/app/doomed").await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method}: the uid still names something"
        );
    }
}

#[tokio::test]
async fn a_patch_racing_an_archive_or_expunge_of_its_event_type_brings_nothing_back() {
    let s = start_server().await;
    let (status, _) = s
        .post(
            "/event-type",
            json!({"name": "probe.archived", "description": "a"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let held = hold_writer(&s, |w| {
        let mut et = w.event_type("probe.archived")?.unwrap();
        et.archived = true;
        w.put_event_type(&et)
    })
    .await;
    let patch = request(
        &s,
        reqwest::Method::PATCH,
        "/event-type/probe.archived".into(),
        Some(json!({"description": "b"})),
    )
    .await;
    held.release_after(&s, 1).await;
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["archived"], true, "{body}");
    assert_eq!(body["description"], "b");

    let (status, _) = s
        .post(
            "/event-type",
            json!({"name": "probe.expunged", "description": "a"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let held = hold_writer(&s, |w| w.remove_event_type("probe.expunged")).await;
    let patch = request(
        &s,
        reqwest::Method::PATCH,
        "/event-type/probe.expunged".into(),
        Some(json!({"description": "b"})),
    )
    .await;
    held.release_after(&s, 1).await;
    let (status, body) = patch.await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let gone = s
        .service
        .store()
        .read(|r| r.event_type("probe.expunged"))
        .await
        .unwrap();
    assert!(
        gone.is_none(),
        "the PATCH made the expunged event type again"
    );
}

#[tokio::test]
async fn an_example_sent_while_its_endpoint_is_deleted_makes_no_message() {
    let s = start_server().await;
    let (app, ep) = s.setup("probe.race", "http://127.0.0.1:9/").await;
    let id = EndpointId::parse(&ep).unwrap();
    let held = hold_writer(&s, move |w| {
        let ep = w.endpoint(id)?.unwrap();
        w.delete_endpoint_triggers(ep.app_id, ep.id)?;
        w.delete_endpoint(&ep)
    })
    .await;
    let send = request(
        &s,
        reqwest::Method::POST,
        format!("/app/{app}/endpoint/{ep}/send-example"),
        Some(json!({"eventType": "svix.ping"})),
    )
    .await;
    held.release_after(&s, 1).await;
    let (status, body) = send.await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, messages) = s.get(&format!("/app/{app}/msg")).await;
    assert_eq!(messages["data"], json!([]), "{messages}");
}

#[tokio::test]
async fn a_token_made_while_its_application_is_deleted_is_not_made() {
    let s = start_server().await;
    let (_, app) = s.post("/app", json!({"name": "Doomed"})).await;
    let id = AppId::parse(app["id"].as_str().unwrap()).unwrap();
    let held = hold_writer(&s, move |w| {
        let app = w.app(id)?.unwrap();
        w.delete_app(&app)
    })
    .await;
    let service = s.service.clone();
    let create =
        tokio::spawn(async move { service.create_token("scoped", Some(&id.to_string())).await });
    held.release_after(&s, 1).await;
    assert!(create.await.unwrap().is_err());
    let tokens = s.service.list_tokens().await.unwrap();
    assert!(
        tokens.iter().all(|t| t.name != "scoped"),
        "a token was made for a deleted application"
    );
}
