//! Herald on PostgreSQL (`--db postgres://...`), against the machine's server.
//!
//! The whole behaviour suite runs on PostgreSQL with `HERALD_TEST_BACKEND=postgres cargo test`
//! (see `common/pg.rs`; `.ci/run` does so). This file holds what is PostgreSQL's own: the
//! schema's migrations, and a first round trip through a real database, which a plain
//! `cargo test` runs too when a server answers, and says it skipped when none does.

mod common;

use common::pg;

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
