//! Crash safety of the real binary: under concurrent load, `kill -9` at random moments,
//! restart on the same file, and prove every message answered 202 reached the receiver.

mod common;

use std::collections::HashSet;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::child::{HeraldProcess, create_token, free_port};
use common::{Receiver, eventually};
use rand::Rng;
use serde_json::json;

/// Messages acknowledged before the test stops loading.
const ACKED_MIN: usize = 2_000;
const KILLS: usize = 4;
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let port = free_port();
    let token = create_token(&db, None);

    let receiver = Receiver::start().await;
    let mut herald = HeraldProcess::start_on(&db, port, &[("HERALD_LOG", "warn")]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    assert!(
        post(
            "/event-type",
            json!({"name": "load.tick", "description": ""})
        )
        .await
        .unwrap()
        .status()
        .is_success()
    );
    assert!(
        post("/app", json!({"name": "Load", "uid": "load"}))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let r = post("/app/load/endpoint", json!({"url": receiver.url()}))
        .await
        .unwrap();
    assert!(r.status().is_success());

    // Clients send numbered messages; a number counts once Herald answered 202 for it.
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (acked, next, stop, client, base, token) = (
            acked.clone(),
            next.clone(),
            stop.clone(),
            client.clone(),
            base.clone(),
            token.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && sent < 100_000 {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                sent += 1;
                let r = client
                    .post(format!("{base}/app/load/msg"))
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "load.tick", "payload": {"seq": seq}}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        acked.lock().unwrap().insert(seq);
                    }
                    // Refused, reset or 5xx while Herald is down: not acknowledged, not counted.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    let seed: u64 = rand::thread_rng().r#gen();
    println!("kill schedule seed {seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    for kill in 0..KILLS {
        let wait = Duration::from_millis(rng.gen_range(150..900));
        tokio::time::sleep(wait).await; // a random moment under load, not a wait for a state
        herald.kill9();
        let report = herald.check();
        println!(
            "kill {kill} after {wait:?}: acked so far {}; check:\n{report}",
            acked.lock().unwrap().len()
        );
        herald = HeraldProcess::start_on(&db, port, &[("HERALD_LOG", "warn")]).await;
    }
    eventually(Duration::from_secs(60), || async {
        acked.lock().unwrap().len() >= ACKED_MIN
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    let delivered = || -> HashSet<u64> {
        receiver
            .received()
            .iter()
            .map(|r| r.json()["seq"].as_u64().unwrap())
            .collect()
    };
    eventually(Duration::from_secs(60), || async {
        acked.is_subset(&delivered())
    })
    .await;
    let missing = acked.difference(&delivered()).count();
    println!(
        "acknowledged {}, delivered {} distinct ({} requests), missing {missing}",
        acked.len(),
        delivered().len(),
        receiver.count()
    );
    assert_eq!(missing, 0);

    // Wait for the queue to go quiet (no arrival for half a second, bounded), then stop
    // cleanly and prove nothing is left pending.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let before = receiver.count();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if receiver.count() == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries never stopped"
        );
    }
    herald.terminate();
    let report = herald.check();
    println!("final check:\n{report}");
    assert!(
        report.contains("queued             0"),
        "no delivery may be left pending:\n{report}"
    );
}
