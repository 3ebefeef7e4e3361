//! A full disk: ingest fails cleanly (5xx, nothing half-stored), Herald keeps serving, and it
//! recovers by itself when space returns, with nothing acknowledged lost.
//!
//! Needs root to mount a small tmpfs, so it is `#[ignore]`d in a plain `cargo test`; `.ci/run`
//! runs it explicitly (CI runs as root).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Kills the server if the test fails before stopping it, so the tmpfs can be unmounted.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore]
async fn a_full_disk_fails_ingest_cleanly_and_herald_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root");
    let _mount = Mount(dir.path().to_path_buf());
    // Space that can be given back later.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).unwrap();
    let db = dir.path().join("herald.redb");
    let port = common::child::free_port();
    let mut server = Command::new(BIN)
        .args(["serve", "--db"])
        .arg(&db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HERALD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Server)
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = std::fs::read_to_string(format!("{}.admin-token", db.display()))
        .unwrap()
        .trim()
        .to_string();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    post("/event-type", json!({"name": "a.b", "description": ""}))
        .await
        .unwrap();
    post("/app", json!({"name": "A", "uid": "a"}))
        .await
        .unwrap();

    // Fill the disk with 20 KB payloads until ingest refuses.
    let big = "x".repeat(20_000);
    let mut acked = 0;
    let mut refused = None;
    for _ in 0..1_000 {
        let r = post(
            "/app/a/msg",
            json!({"eventType": "a.b", "payload": {"big": big}}),
        )
        .await
        .unwrap();
        if r.status() == 202 {
            acked += 1;
        } else {
            refused = Some(r.status());
            break;
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(
        refused.is_server_error(),
        "a full disk is a server-side failure: {refused}"
    );
    // It keeps serving reads, and keeps refusing writes cleanly.
    assert!(
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let r = post(
        "/app/a/msg",
        json!({"eventType": "a.b", "payload": {"big": big}}),
    )
    .await
    .unwrap();
    assert!(r.status().is_server_error());
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["code"].is_string(), "a JSON error body");

    // Space returns: ingest works again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        let r = post(
            "/app/a/msg",
            json!({"eventType": "a.b", "payload": {"small": 1}}),
        )
        .await
        .unwrap();
        if r.status() == 202 {
            recovered = true;
            acked += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "ingest recovers when space returns");
    let listed: serde_json::Value = client
        .get(format!("{base}/app/a/msg?limit=250&with_content=false"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        acked,
        "every acknowledged message, nothing else"
    );
    println!("{acked} acknowledged; the full disk answered {refused}; recovered without restart");

    Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    server.0.wait().unwrap();
    let check = Command::new(BIN).arg("check").arg(&db).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A full disk while endpoints are verified, enabled and deleted: each change is refused
/// whole (5xx) or made whole, its parked deliveries with it; a `kill -9` while the disk is
/// still full, then a start with space back, leaves nothing to mend and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn a_full_disk_while_endpoints_change_strands_no_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root");
    let _mount = Mount(dir.path().to_path_buf());
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).unwrap();
    let db = dir.path().join("herald.redb");
    let port = common::child::free_port();
    let start = || {
        common::child::serve_command(&db, port)
            .stderr(Stdio::null())
            .spawn()
            .map(Server)
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let client = reqwest::Client::new();
    let healthy = || async {
        common::eventually(Duration::from_secs(20), || async {
            client
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
    };
    let mut server = start();
    healthy().await;
    let token = std::fs::read_to_string(format!("{}.admin-token", db.display()))
        .unwrap()
        .trim()
        .to_string();
    let send = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let req = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        async move {
            let r = req.json(&body).send().await.unwrap();
            let status = r.status();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let post = |path: &str, body| send(reqwest::Method::POST, path.to_string(), body);
    post("/event-type", json!({"name": "a.b", "description": ""})).await;
    for app in ["a", "b"] {
        post("/app", json!({"name": app, "uid": app})).await;
    }
    // Three endpoints waiting for their verification: one to verify, one to delete, one in
    // the application to delete.
    let mut waiting = Vec::new();
    for app in ["a", "a", "b"] {
        let receiver = common::Receiver::start().await;
        let (s, ep) = post(
            &format!("/app/{app}/endpoint"),
            json!({"url": receiver.url(), "verify": true}),
        )
        .await;
        assert!(s.is_success(), "{ep}");
        waiting.push((app, ep["id"].as_str().unwrap().to_string(), receiver));
    }
    const N: usize = 20;
    for i in 0..N {
        for app in ["a", "b"] {
            let (s, _) = post(
                &format!("/app/{app}/msg"),
                json!({"eventType": "a.b", "payload": {"i": i}}),
            )
            .await;
            assert_eq!(s, 202);
        }
    }
    let code = |r: &common::Receiver| {
        r.received()
            .iter()
            .find_map(|m| m.json()["verificationCode"].as_str().map(String::from))
    };
    common::eventually(Duration::from_secs(10), || async {
        waiting.iter().all(|(_, _, r)| code(r).is_some())
    })
    .await;
    // Fill the disk until ingest refuses.
    let big = "x".repeat(20_000);
    for _ in 0..1_000 {
        let (s, _) = post(
            "/app/a/msg",
            json!({"eventType": "a.b", "payload": {"big": big}}),
        )
        .await;
        if s != 202 {
            break;
        }
    }
    // The changes, on a full disk: each is refused whole or made whole.
    let (verify_app, verify_id, verify_rx) = &waiting[0];
    let verify = || {
        post(
            &format!("/app/{verify_app}/endpoint/{verify_id}/verify"),
            json!({"code": code(verify_rx).unwrap()}),
        )
    };
    let delete_ep = || {
        send(
            reqwest::Method::DELETE,
            format!("/app/a/endpoint/{}", waiting[1].1),
            json!({}),
        )
    };
    let delete_app = || send(reqwest::Method::DELETE, "/app/b".into(), json!({}));
    let full = [verify().await.0, delete_ep().await.0, delete_app().await.0];
    println!(
        "on a full disk: verify {}, delete endpoint {}, delete app {}",
        full[0], full[1], full[2]
    );
    for s in full {
        assert!(s.is_success() || s.is_server_error(), "{s}");
    }
    // kill -9 while the disk is still full; space returns; a fresh start.
    let _ = server.0.kill();
    let _ = server.0.wait();
    std::fs::remove_file(&filler).unwrap();
    let mut server = start();
    healthy().await;
    // What was refused is done again now.
    assert!(verify().await.0.is_success());
    for (s, _) in [delete_ep().await, delete_app().await] {
        assert!(s.is_success() || s == 404, "{s}");
    }
    // The verified endpoint gets every message it was owed.
    common::eventually(Duration::from_secs(20), || async {
        verify_rx
            .received()
            .iter()
            .filter(|m| m.json().get("i").is_some())
            .count()
            >= N
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    server.0.wait().unwrap();
    let check = Command::new(BIN).arg("check").arg(&db).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.status.success(), "{report}");
    assert!(
        report.contains("to mend: parked on ready endpoints: 0, pending for deleted endpoints: 0"),
        "{report}"
    );
}
