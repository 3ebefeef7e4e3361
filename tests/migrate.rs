//! `herald migrate --from FILE --to postgres://...`: a database file made by the real binary
//! (an application, endpoints with basic auth, a client certificate and custom headers,
//! triggers, a task, 10,000 messages of which a few hundred still owe deliveries) copied into a
//! fresh PostgreSQL database twice; `herald check` agrees on both sides, and a node started on
//! the database delivers every pending delivery once, signed with the endpoint's secret.
//! Skipped, saying so, when no PostgreSQL server answers.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::child::{BIN, HeraldProcess, create_token};
use common::{Receiver, pg, verify_signature};
use futures::StreamExt;
use serde_json::{Value, json};

/// Messages delivered while the file was served.
const CREATED: usize = 9_700;
/// Messages to e1 (normal lane, queued) and e2 (not verified yet: parked).
const PAID: usize = 150;
/// Messages a trigger sends to e1 in the high lane, each with a unique key.
const REFUNDED: usize = 100;
/// Messages a trigger sends to e1 in the low lane.
const DISPUTED: usize = 50;
/// Deliveries pending in the file.
const PENDING: usize = 2 * PAID + REFUNDED + DISPUTED;
const WAIT: Duration = Duration::from_secs(60);

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

/// `herald ARGS...`, its output.
fn herald(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HERALD_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `herald check` on a file or a database; panics unless it passes.
fn check(db: &str) -> String {
    let out = herald(&["check", db]);
    assert!(
        out.status.success(),
        "herald check {db} failed: {}",
        text(&out)
    );
    let report = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(report.ends_with("ok"), "{report}");
    report
}

/// The record counts of a check report (`name count` lines, the layout left out).
fn counts(report: &str) -> BTreeMap<String, u64> {
    report
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, n] if name != "layout" => Some((name.to_string(), n.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// The rows and new rows of each PostgreSQL table in a migrate report.
fn migrated(report: &str) -> BTreeMap<String, (u64, u64)> {
    let tables: BTreeMap<String, (u64, u64)> = report
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, rows, new] if herald::storage::migrate::TABLES.contains(&name) => {
                Some((name.to_string(), (rows.parse().ok()?, new.parse().ok()?)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        tables.len(),
        herald::storage::migrate::TABLES.len(),
        "{report}"
    );
    tables
}

/// `url` with a password in it (the test server trusts, so it is never asked for): the one
/// the output must never show.
fn with_password(url: &str) -> (String, &'static str) {
    const PASSWORD: &str = "migrate-pw-never-shown";
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap_or(("postgres", rest));
    let user = user.split(':').next().unwrap();
    (format!("{scheme}://{user}:{PASSWORD}@{host}"), PASSWORD)
}

/// Creates messages through `node`, `CLIENTS` at a time; answers their ids in order.
async fn send(node: &HeraldProcess, bodies: Vec<Value>) -> Vec<String> {
    const CLIENTS: usize = 16;
    let path = format!("{}/app/shop/msg", node.base);
    let results: Vec<(usize, String)> = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let (client, path, token) = (node.client.clone(), path.clone(), node.token.clone());
            async move {
                let resp = client
                    .post(&path)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202, "{body}");
                let msg: Value = resp.json().await.unwrap();
                (i, msg["id"].as_str().unwrap().to_string())
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let mut ids = vec![String::new(); results.len()];
    for (i, id) in results {
        ids[i] = id;
    }
    ids
}

async fn ok(node: &HeraldProcess, path: &str, body: Value) -> Value {
    let (status, answer) = node.post(path, body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_migrated_twice_to_postgresql_delivers_what_was_pending_once() {
    if !postgres_or_skip("a_file_migrated_twice_to_postgresql_delivers_what_was_pending_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let file = db.to_str().unwrap().to_string();
    let token = create_token(&db, None);
    // r0 takes what the file's server delivers; r1 and r2 what stays pending in the file.
    let r0 = Receiver::start().await;
    let r1 = Receiver::start().await;
    let r2 = Receiver::start().await;
    let r1_base = format!("http://127.0.0.1:{}", r1.addr.port());

    // ---- the file, served as usual: its setup, and messages delivered -----------------
    let started = Instant::now();
    let mut node = HeraldProcess::start_with_token(&db, Some(&token), &[]).await;
    for t in [
        "order.created",
        "order.paid",
        "order.refunded",
        "order.disputed",
    ] {
        ok(&node, "/event-type", json!({"name": t, "description": ""})).await;
    }
    ok(&node, "/app", json!({"name": "Shop", "uid": "shop"})).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["herald-client".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    ok(
        &node,
        "/app/shop/endpoint",
        json!({"url": r0.url(), "uid": "e0", "eventTypes": ["order.created"]}),
    )
    .await;
    let e1 = ok(
        &node,
        "/app/shop/endpoint",
        json!({
            "url": format!("{r1_base}/e1"),
            "uid": "e1",
            "eventTypes": ["order.paid"],
            "basicAuth": {"username": "shop", "password": "s3cret"},
            "clientCertificate": {"certificate": cert.pem(), "privateKey": key.serialize_pem()},
            "headers": {"X-Endpoint": "e1", "X-Shop": "1"},
        }),
    )
    .await;
    assert_eq!(e1["clientCertificate"], true, "{e1}");
    let e1_id = e1["id"].as_str().unwrap().to_string();
    // e2 asks for the verification handshake: its deliveries are parked until it is done.
    ok(
        &node,
        "/app/shop/endpoint",
        json!({
            "url": r2.url(),
            "uid": "e2",
            "eventTypes": ["order.paid"],
            "verify": true,
            "headers": {"X-Endpoint": "e2"},
        }),
    )
    .await;
    let hello = r2.wait_for(1, WAIT).await;
    let code = hello[0].json()["verificationCode"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &node,
        "/app/shop/trigger",
        json!({"endpointId": e1_id, "eventTypes": ["order.refunded"], "priority": "high",
               "uniqueKey": "refund\\{{ payload.n }}"}),
    )
    .await;
    ok(
        &node,
        "/app/shop/trigger",
        json!({"endpointId": e1_id, "eventTypes": ["order.disputed"], "priority": "low"}),
    )
    .await;
    let created: Vec<Value> = (0..CREATED)
        .map(|i| json!({"eventType": "order.created", "payload": {"n": i}}))
        .collect();
    let t = Instant::now();
    send(&node, created).await;
    eprintln!("{CREATED} messages created in {:?}", t.elapsed());
    r0.wait_for(CREATED, WAIT).await;
    // Every attempt recorded before the server stops.
    common::eventually(WAIT, || async {
        node.get("/app/shop/endpoint/e0/stats").await.1["success"] == CREATED
    })
    .await;
    // A background task (it finds nothing to recover).
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let task = ok(
        &node,
        "/app/shop/endpoint/e0/recover",
        json!({"since": since}),
    )
    .await;
    let task_path = format!("/background-task/{}", task["id"].as_str().unwrap());
    common::eventually(WAIT, || async {
        node.get(&task_path).await.1["status"] == "finished"
    })
    .await;
    // The secrets, as the file holds them.
    let mut secrets = HashMap::new();
    for ep in ["e1", "e2"] {
        let (status, s) = node.get(&format!("/app/shop/endpoint/{ep}/secret")).await;
        assert!(status.is_success(), "{s}");
        secrets.insert(ep, s["key"].as_str().unwrap().to_string());
    }
    node.terminate();

    // ---- the file, served by an API-only node: deliveries left pending -----------------
    let mut node =
        HeraldProcess::start_with_token(&db, Some(&token), &[("HERALD_ROLE", "api")]).await;
    let mut pending: Vec<Value> = Vec::new();
    for i in 0..PAID {
        pending.push(
            json!({"eventType": "order.paid", "eventId": format!("paid-{i}"), "payload": {"n": i}}),
        );
    }
    for i in 0..REFUNDED {
        pending.push(json!({"eventType": "order.refunded", "payload": {"n": i}}));
    }
    for i in 0..DISPUTED {
        pending.push(json!({"eventType": "order.disputed", "payload": {"n": i}}));
    }
    let ids = send(&node, pending).await;
    let (paid, to_e1_only) = ids.split_at(PAID);
    node.terminate();
    eprintln!(
        "file of {} messages made in {:?}",
        CREATED + ids.len(),
        started.elapsed()
    );
    assert_eq!(r1.count(), 0, "nothing was delivered to e1 from the file");
    assert_eq!(r2.count(), 1, "nothing but the handshake was sent to e2");
    let file_report = check(&file);
    let file_counts = counts(&file_report);
    assert_eq!(file_counts["messages"], (CREATED + ids.len()) as u64);
    assert_eq!(file_counts["queued"], (PAID + REFUNDED + DISPUTED) as u64);
    assert_eq!(common::child::to_mend(&file_report), (0, 0));

    // ---- what migrate refuses -------------------------------------------------------------
    let url = pg::fresh_database();
    let (secret_url, password) = with_password(&url);
    for (from, to, says) in [
        (file.as_str(), file.as_str(), "not a postgres:// URL"),
        (
            secret_url.as_str(),
            secret_url.as_str(),
            "is a PostgreSQL database",
        ),
        (
            "/nonexistent/herald.redb",
            secret_url.as_str(),
            "does not exist",
        ),
    ] {
        let out = herald(&["migrate", "--from", from, "--to", to]);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains(says), "{said}");
        assert!(!said.contains(password), "the password is shown: {said}");
    }

    // ---- migrated, twice -----------------------------------------------------------------
    let mut runs = Vec::new();
    for run in 0..2 {
        let t = Instant::now();
        let out = herald(&["migrate", "--from", &file, "--to", &secret_url]);
        let took = t.elapsed();
        let said = text(&out);
        assert!(out.status.success(), "herald migrate failed: {said}");
        assert!(!said.contains(password), "the password is shown: {said}");
        eprintln!("migrate run {} took {took:?}:\n{said}", run + 1);
        runs.push(migrated(&said));
    }
    let (first, second) = (&runs[0], &runs[1]);
    for (table, &(rows, new)) in first {
        assert_eq!(new, rows, "{table}: the first run writes every row");
        assert_eq!(
            second[table],
            (rows, 0),
            "{table}: the second run reads the same rows and writes none"
        );
    }
    let rows = |t: &str| first[t].0 as usize;
    assert_eq!(rows("messages"), CREATED + PAID + REFUNDED + DISPUTED);
    assert_eq!(rows("deliveries"), CREATED + PENDING);
    assert_eq!(rows("queue"), PAID + REFUNDED + DISPUTED);
    assert_eq!(rows("parked"), PAID);
    assert_eq!(rows("unique_keys"), REFUNDED);
    assert_eq!(rows("attempts"), CREATED);
    assert_eq!(rows("endpoint_attempts"), CREATED);
    assert_eq!(rows("endpoints"), 3);
    assert_eq!(rows("tasks"), 1);
    assert!(rows("triggers") >= 2);
    assert!(rows("tokens") >= 1);
    // Every record table as many rows as the file's check counted.
    for (table, n) in &file_counts {
        if let Some(&(rows, _)) = first.get(table) {
            assert_eq!(rows, *n, "{table}");
        }
    }

    // Queue rows in their lanes, held by no node; unique keys escaped as ops.rs stores them
    // (`\` doubled, so `refund\0` never meets a key holding a NUL, stored `refund\0`).
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let lanes: BTreeMap<i16, i64> = client
        .query(
            "SELECT lane, count(*) FROM queue WHERE lease_until = 0 AND lease_node IS NULL \
             GROUP BY lane",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        lanes,
        BTreeMap::from([(0, REFUNDED as i64), (1, PAID as i64), (2, DISPUTED as i64)])
    );
    let keys: HashSet<String> = client
        .query("SELECT key FROM unique_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let escaped: HashSet<String> = (0..REFUNDED).map(|n| format!("refund\\\\{n}")).collect();
    assert_eq!(keys, escaped);
    drop(client);

    // ---- both sides check, and agree -------------------------------------------------------
    assert_eq!(
        counts(&check(&file)),
        file_counts,
        "the file is left as it was"
    );
    let db_report = check(&url);
    assert_eq!(
        counts(&db_report),
        file_counts,
        "{file_report}\n{db_report}"
    );
    assert_eq!(common::child::to_mend(&db_report), (0, 0));

    // ---- a node on the database delivers what was pending, once ----------------------------
    let mut node = HeraldProcess::start_with_token(Path::new(&url), Some(&token), &[]).await;
    r1.wait_for(PAID + REFUNDED + DISPUTED, WAIT).await;
    // The verification code came along: verifying e2 queues what was parked for it.
    let (status, e2) = node
        .post("/app/shop/endpoint/e2/verify", json!({"code": code}))
        .await;
    assert!(status.is_success(), "{e2}");
    assert_eq!(e2["verified"], true, "{e2}");
    r2.wait_for(1 + PAID, WAIT).await;
    // Time for a second delivery, were any made.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got: Vec<_> = r1
        .received()
        .into_iter()
        .chain(r2.received().into_iter().skip(1))
        .collect();
    assert_eq!(got.len(), PENDING, "a pending delivery arrived twice");
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for r in &got {
        let ep = r.header("x-endpoint").to_string();
        assert!(
            verify_signature(&secrets[ep.as_str()], r),
            "{ep}: not signed with the secret the file held"
        );
        if ep == "e1" {
            assert_eq!(r.header("authorization"), "Basic c2hvcDpzM2NyZXQ=");
            assert_eq!(r.header("x-shop"), "1");
        }
        assert!(
            seen.insert((ep, r.header("webhook-id").to_string())),
            "delivered twice"
        );
    }
    let expected: HashSet<(String, String)> = paid
        .iter()
        .chain(to_e1_only)
        .map(|id| ("e1".to_string(), id.clone()))
        .chain(paid.iter().map(|id| ("e2".to_string(), id.clone())))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        r0.count(),
        CREATED,
        "a delivered message was delivered again"
    );
    // The endpoints' options came along, and the eventIds: one is refused again.
    let (_, e1) = node.get("/app/shop/endpoint/e1").await;
    assert_eq!(e1["basicAuthUsername"], "shop", "{e1}");
    assert_eq!(e1["clientCertificate"], true, "{e1}");
    let (status, again) = node
        .post(
            "/app/shop/msg",
            json!({"eventType": "order.paid", "eventId": "paid-0", "payload": {}}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    node.terminate();
    let after = check(&url);
    assert_eq!(common::child::to_mend(&after), (0, 0));
    assert_eq!(counts(&after)["queued"], 0, "{after}");
}
