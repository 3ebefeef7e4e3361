//! Herald on PostgreSQL (`--db postgres://...`), against the machine's server.
//!
//! The whole behaviour suite runs on PostgreSQL with `HERALD_TEST_BACKEND=postgres cargo test`
//! (see `common/pg.rs`; `.ci/run` does so). This file holds what is PostgreSQL's own: the
//! schema's migrations, and a first round trip through a real database, which a plain
//! `cargo test` runs too when a server answers, and says it skipped when none does.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::child::{HeraldProcess, create_token};
use common::pg;
use rand::Rng;
use serde_json::json;

/// Whether PostgreSQL answers; prints why the test is skipped when it does not.
fn postgres_or_skip(test: &str) -> bool {
    match pg::reachable() {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: PostgreSQL does not answer at {} ({e}); set HERALD_TEST_POSTGRES to a server to run it",
                pg::server_url()
            );
            false
        }
    }
}

#[tokio::test]
async fn a_fresh_database_is_migrated_and_keeps_what_the_api_stores() {
    if !postgres_or_skip("a_fresh_database_is_migrated_and_keeps_what_the_api_stores") {
        return;
    }
    let url = pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.db = url.clone().into();
    let s = common::start_on(config.clone()).await;
    let (status, app) = s
        .request(
            reqwest::Method::POST,
            "/app/",
            Some(serde_json::json!({"name": "Shop", "uid": "shop"})),
            Some(&s.token),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, again) = s
        .request(
            reqwest::Method::POST,
            "/app/",
            Some(serde_json::json!({"name": "Shop", "uid": "shop"})),
            Some(&s.token),
        )
        .await;
    assert_eq!(status, 409, "a second app with the uid: {again}");
    s.stop().await;

    // Opened again: nothing to migrate, and the application is there.
    let s = common::start_on(config).await;
    let (status, found) = s
        .request(reqwest::Method::GET, "/app/shop/", None, Some(&s.token))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], app["id"]);
    s.stop().await;
}

/// Three nodes on one database, each started as the real binary.
async fn three_nodes(url: &str, env: &[(&str, &str)]) -> (String, Vec<HeraldProcess>) {
    let db = Path::new(url);
    // `herald token create` works on a database no node has started on: it applies the schema.
    let token = create_token(db, None);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(HeraldProcess::start_with_token(db, Some(&token), env).await);
    }
    (token, nodes)
}

/// An event type, an application and an endpoint to `receiver`, made through node 0.
async fn tenant(node: &HeraldProcess, receiver: &common::Receiver) -> String {
    let (s, _) = node
        .post(
            "/event-type",
            json!({"name": "order.paid", "description": "x"}),
        )
        .await;
    assert!(s.is_success(), "{s}");
    let (s, app) = node.post("/app", json!({"name": "Shop"})).await;
    assert!(s.is_success(), "{app}");
    let app = app["id"].as_str().unwrap().to_string();
    let (s, ep) = node
        .post(
            &format!("/app/{app}/endpoint"),
            json!({"url": receiver.url(), "eventTypes": ["order.paid"]}),
        )
        .await;
    assert!(s.is_success(), "{ep}");
    app
}

/// How many times each message id reached the receiver.
fn arrivals(receiver: &common::Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in receiver.received() {
        *seen.entry(r.header("webhook-id").to_string()).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_message_once_and_agree() {
    if !postgres_or_skip("three_nodes_deliver_every_message_once_and_agree") {
        return;
    }
    let url = pg::fresh_database();
    let (_, nodes) = three_nodes(&url, &[]).await;
    // Slow enough that attempts of all three nodes overlap.
    let receiver = common::Receiver::start_with(common::Behaviour {
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let app = tenant(&nodes[0], &receiver).await;
    const MESSAGES: usize = 300;
    let mut sent = Vec::new();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..MESSAGES {
        let (client, base, token) = (
            nodes[i % 3].client.clone(),
            nodes[i % 3].base.clone(),
            nodes[i % 3].token.clone(),
        );
        let path = format!("{base}/app/{app}/msg");
        creates.spawn(async move {
            let resp = client
                .post(path)
                .bearer_auth(token)
                .json(&json!({"eventType": "order.paid", "payload": {"n": i}}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let msg: serde_json::Value = resp.json().await.unwrap();
            msg["id"].as_str().unwrap().to_string()
        });
    }
    while let Some(id) = creates.join_next().await {
        sent.push(id.unwrap());
    }
    common::eventually(Duration::from_secs(60), || async {
        receiver.count() >= MESSAGES
    })
    .await;
    // Time for a second attempt, were any made.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = arrivals(&receiver);
    for id in &sent {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "message {id} arrived {:?} times",
            seen.get(id)
        );
    }
    assert_eq!(receiver.count(), MESSAGES, "a delivery was attempted twice");
    // Every node answers the same: the messages, and one successful attempt each.
    let mut lists = Vec::new();
    for node in &nodes {
        let (s, page) = node.get(&format!("/app/{app}/msg?limit=250")).await;
        assert!(s.is_success(), "{page}");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        let (_, attempts) = node
            .get(&format!("/app/{app}/attempt/msg/{}", sent[0]))
            .await;
        lists.push((ids, attempts["data"].as_array().unwrap().len()));
    }
    assert_eq!(lists[0].0.len(), 250);
    assert!(lists.iter().all(|l| *l == lists[0]), "nodes disagree");
    assert_eq!(lists[0].1, 1);
    let report = check(&url);
    assert!(report.ends_with("ok"), "{report}");
    assert_eq!(common::child::to_mend(&report), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_and_its_deliveries_are_taken_over() {
    if !postgres_or_skip("a_node_killed_under_load_loses_nothing") {
        return;
    }
    let url = pg::fresh_database();
    // Short timeouts and leases, so a dead node's claims end within seconds.
    let env = [
        ("HERALD_REQUEST_TIMEOUT_MS", "1000"),
        ("HERALD_LEASE_MS", "2000"),
    ];
    let (token, mut nodes) = three_nodes(&url, &env).await;
    // Slow answers: each node has attempts in flight when it is killed.
    let receiver = common::Receiver::start_with(common::Behaviour {
        delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let app = tenant(&nodes[0], &receiver).await;
    let mut sent: Vec<String> = Vec::new();
    let mut last_kill = std::time::Instant::now();
    let mut rng = rand::thread_rng();
    for round in 0..5 {
        // Load through all three, then kill node 2 at a random moment of it.
        let mut creates = tokio::task::JoinSet::new();
        for i in 0..60 {
            let node = &nodes[i % 3];
            let (client, path, token) = (
                node.client.clone(),
                format!("{}/app/{app}/msg", node.base),
                node.token.clone(),
            );
            creates.spawn(async move {
                let resp = client
                    .post(path)
                    .bearer_auth(token)
                    .json(&json!({"eventType": "order.paid", "payload": {"round": round}}))
                    .send()
                    .await
                    .ok()?;
                // Only what was acknowledged counts.
                if resp.status() != 202 {
                    return None;
                }
                let msg: serde_json::Value = resp.json().await.ok()?;
                Some(msg["id"].as_str()?.to_string())
            });
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..400))).await;
        nodes[2].kill9();
        last_kill = std::time::Instant::now();
        while let Some(id) = creates.join_next().await {
            sent.extend(id.unwrap());
        }
        let killed_at = std::time::Instant::now();
        nodes[2] = HeraldProcess::start_with_token(Path::new(&url), Some(&token), &env).await;
        eprintln!(
            "round {round}: {} acknowledged so far, node 2 back after {:?}",
            sent.len(),
            killed_at.elapsed()
        );
    }
    // Every acknowledged message arrives, including those node 2 held when it died: within
    // the lease (request timeout + 5 s here) and a rescan.
    let deadline = Duration::from_secs(30);
    common::eventually(deadline, || async {
        let seen = arrivals(&receiver);
        sent.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let all_in = last_kill.elapsed();
    let seen = arrivals(&receiver);
    let twice = sent.iter().filter(|id| seen[*id] > 1).count();
    eprintln!(
        "{} acknowledged, all delivered {all_in:?} after the last kill; {twice} delivered twice \
         (in flight at a kill)",
        sent.len()
    );
    // The lease here is the request timeout + 5 s (6 s); a rescan (1 s) and the attempts
    // themselves come on top.
    assert!(
        all_in <= Duration::from_secs(6 + 10),
        "taken over after {all_in:?}"
    );
    assert!(sent.len() >= 150, "too few acknowledged: {}", sent.len());
    // At most what node 2 could have had in flight at its five deaths.
    assert!(twice <= 5 * 64, "{twice} duplicates");
    let report = check(&url);
    assert!(report.ends_with("ok"), "{report}");
}

/// `herald check` on the database while the nodes serve; panics unless it succeeds.
fn check(url: &str) -> String {
    let out = std::process::Command::new(common::child::BIN)
        .args(["check", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "herald check failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().to_string()
}

/// The cluster serving 127.0.0.1:5432, as `pg_ctlcluster` names it (version, name).
fn local_cluster() -> Option<(String, String)> {
    let out = std::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[2] == "5432").then(|| (f[0].to_string(), f[1].to_string()))
    })
}

fn pg_ctl(action: &str, cluster: &(String, String)) {
    let status = std::process::Command::new("pg_ctlcluster")
        .args([&cluster.0, &cluster.1, action])
        .args(if action == "stop" {
            &["-m", "fast"][..]
        } else {
            &[][..]
        })
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Stops and starts the machine's PostgreSQL under load: ignored by a plain `cargo test` (it
/// takes the server away from everything else using it); `.ci/run` runs it alone, last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn the_database_restarting_under_load_loses_nothing() {
    let Some(cluster) = local_cluster() else {
        panic!("no PostgreSQL cluster on port 5432 that pg_ctlcluster can restart");
    };
    let url = pg::fresh_database();
    let db = Path::new(&url);
    let token = create_token(db, None);
    let mut node = HeraldProcess::start_with_token(db, Some(&token), &[]).await;
    let receiver = common::Receiver::start().await;
    let app = tenant(&node, &receiver).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One create after another, all through the outage: what is acknowledged must arrive.
    let load = {
        let (client, path, token, stop) = (
            node.client.clone(),
            format!("{}/app/{app}/msg", node.base),
            node.token.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut acknowledged, mut unavailable, mut other) = (Vec::new(), 0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = client
                    .post(&path)
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(10))
                    .json(&json!({"eventType": "order.paid", "payload": {}}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 202 => {
                        let msg: serde_json::Value = r.json().await.unwrap();
                        acknowledged.push(msg["id"].as_str().unwrap().to_string());
                    }
                    Ok(r) if r.status() == 503 => unavailable += 1,
                    Ok(r) => {
                        other += 1;
                        eprintln!("create answered {}", r.status());
                    }
                    Err(_) => other += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acknowledged, unavailable, other)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg_ctl("stop", &cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (health, body) = node.get("/health").await;
    assert_eq!(health, 503, "health while the database is down: {body}");
    assert_eq!(body["code"], "database_unreachable", "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_ctl("start", &cluster);
    // Back without a restart of Herald.
    common::eventually(Duration::from_secs(30), || async {
        node.get("/health").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, unavailable, other) = load.await.unwrap();
    eprintln!(
        "{} acknowledged, {unavailable} answered 503 during the outage, {other} other",
        acknowledged.len()
    );
    assert!(node.alive(), "Herald exited");
    assert!(
        unavailable > 0,
        "nothing answered 503 while the database was down"
    );
    assert_eq!(other, 0, "answers other than 202 and 503");
    common::eventually(Duration::from_secs(30), || async {
        let seen = arrivals(&receiver);
        acknowledged.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let report = check(&url);
    assert!(report.ends_with("ok"), "{report}");
}
