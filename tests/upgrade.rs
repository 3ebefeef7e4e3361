//! The upgrade path: a database written by an earlier build (a fixture committed in
//! `tests/fixtures/`) opens and reads correctly with this one. Record layouts are versioned
//! (`storage/redb/codec.rs`) and the table layout has a version row; when either changes, the old
//! fixture stays and this test proves the upgrade reads it.
//!
//! `herald-v1.redb` was written by `write_the_v1_fixture` below (layout 1, records version 1)
//! and is never rewritten: regenerate it only to add a new fixture beside it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/herald-v1.redb");

#[tokio::test]
async fn a_database_written_by_the_first_layout_reads_correctly() {
    // Work on a copy: opening a file may write to it.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.redb");
    std::fs::copy(FIXTURE, &db).unwrap();
    let report = herald::storage::Store::check(&db).unwrap();
    assert!(report.contains("messages           3"), "{report}");
    assert!(report.contains("layout             1"), "{report}");

    let s = start_on(herald::config::Config {
        db,
        ..test_config(dir.path())
    })
    .await;
    let (_, app) = s.get("/app/fixture-shop").await;
    assert_eq!(app["name"], "Fixture shop");
    assert_eq!(app["metadata"], json!({"region": "eu"}));
    let (_, et) = s.get("/event-type/order.created").await;
    assert_eq!(et["example"], json!({"orderId": "o-1"}));
    let (_, eps) = s.get("/app/fixture-shop/endpoint").await;
    let ep = &eps["data"][0];
    assert_eq!(ep["uid"], "books");
    assert_eq!(ep["basicAuthUsername"], "books");
    assert_eq!(ep["maxAttempts"], 5);
    let (_, secret) = s.get("/app/fixture-shop/endpoint/books/secret").await;
    assert_eq!(secret["key"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let (_, triggers) = s.get("/app/fixture-shop/trigger").await;
    let custom = triggers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["builtin"] == false)
        .unwrap()
        .clone();
    assert_eq!(custom["uniqueKey"], "{{ payload.orderId }}");
    assert_eq!(custom["contentType"], "application/xml");
    let (_, msgs) = s.get("/app/fixture-shop/msg").await;
    assert_eq!(order_ids(&msgs), vec!["o-3", "o-2", "o-1"]);
    let (_, attempts) = s
        .get(&format!(
            "/app/fixture-shop/attempt/msg/{}",
            msgs["data"][2]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(attempts["data"][0]["responseStatusCode"], 200);

    // The fixture's messages, deliveries and attempts are version 1 records (the whole record);
    // what this build writes is version 2 (without the key's ids). Both must live side by side.
    s.send("fixture-shop", "order.created", json!({"orderId": "o-4"}))
        .await;
    let (_, msgs) = s.get("/app/fixture-shop/msg").await;
    assert_eq!(order_ids(&msgs), vec!["o-4", "o-3", "o-2", "o-1"]);
    let db = s.db.clone();
    s.stop().await;
    let report = herald::storage::Store::check(&db).unwrap();
    assert!(report.contains("messages           4"), "{report}");
    assert!(report.contains("layout             3"), "{report}");
    assert!(report.contains("deliveries         8"), "{report}");
}

/// The order ids of a page of messages, in the page's order.
fn order_ids(page: &serde_json::Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["orderId"].as_str().unwrap())
        .collect()
}

/// Wrote the fixture (run by hand: `cargo test --test upgrade -- --ignored write_the_v1`).
/// Do not run it again: this build writes version 2 records, and the fixture is there to prove
/// version 1 records still read.
#[tokio::test]
#[ignore]
async fn write_the_v1_fixture() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start_on(test_config(dir.path())).await;
    s.post(
        "/event-type",
        json!({"name": "order.created", "description": "An order", "example": {"orderId": "o-1"}}),
    )
    .await;
    s.post(
        "/app",
        json!({"name": "Fixture shop", "uid": "fixture-shop", "metadata": {"region": "eu"}}),
    )
    .await;
    let (_, ep) = s
        .post("/app/fixture-shop/endpoint", json!({
            "url": receiver.url(), "uid": "books", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "basicAuth": {"username": "books", "password": "pw"}, "maxAttempts": 5
        }))
        .await;
    s.post("/app/fixture-shop/trigger", json!({
        "endpointId": ep["id"], "eventTypes": ["order.*"], "template": "<o>{{ payload.orderId }}</o>",
        "contentType": "application/xml", "uniqueKey": "{{ payload.orderId }}"
    }))
    .await;
    for id in ["o-1", "o-2", "o-3"] {
        s.send("fixture-shop", "order.created", json!({"orderId": id}))
            .await;
    }
    receiver.wait_for(6, Duration::from_secs(10)).await;
    let db = s.db.clone();
    s.stop().await;
    std::fs::copy(&db, FIXTURE).unwrap();
}
