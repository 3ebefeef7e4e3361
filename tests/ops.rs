//! Operating Herald: metrics, operational webhooks, auto-disable, backups over the API.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn metrics_count_what_happened() {
    let receiver = Receiver::start().await;
    let s = start_server().await;
    let (app, _) = s.setup("a.b", &receiver.url()).await;
    for i in 0..3 {
        s.send(&app, "a.b", json!({"i": i})).await;
    }
    receiver.wait_for(3, WAIT).await;
    let root = s.base.trim_end_matches("/api/v1").to_string();
    let text = || async {
        reqwest::get(format!("{root}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // An attempt is counted when the receiver answers, the queue when its record commits.
    eventually(WAIT, || async {
        let body = text().await;
        body.contains("herald_attempts_total{outcome=\"success\"} 3")
            && body.contains("herald_queue_depth{lane=\"normal\"} 0")
    })
    .await;
    let body = text().await;
    assert!(body.contains("herald_messages_ingested_total 3"), "{body}");
    assert!(
        body.contains("herald_queue_depth{lane=\"normal\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("herald_writer_commit_seconds_count"),
        "{body}"
    );
    assert!(
        body.contains("herald_attempt_duration_seconds_bucket"),
        "{body}"
    );
    assert!(body.contains("herald_deliveries_in_flight 0"), "{body}");
}

#[tokio::test]
async fn alerts_are_sent_as_signed_operational_webhooks() {
    let ops = Receiver::start().await;
    let failing = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ops_url = ops.url();
    let s = start_server_with(move |c| {
        c.operational_webhook_url = Some(ops_url);
        c.operational_webhook_secret = Some(herald::config::Redacted(secret.into()));
    })
    .await;
    let (app, ep) = s.setup("a.b", &failing.url()).await;
    let msg = s.send(&app, "a.b", json!({})).await;
    let got = ops.wait_for(1, WAIT).await;
    assert!(verify_signature(secret, &got[0]));
    let body = got[0].json();
    assert_eq!(body["type"], "message.attempt.exhausted");
    assert_eq!(body["data"]["appId"], app.as_str());
    assert_eq!(body["data"]["endpointId"], ep.as_str());
    assert_eq!(body["data"]["msgId"], msg["id"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ops.count(), 1, "each alert once");
}

#[tokio::test]
async fn an_endpoint_failing_for_longer_than_the_limit_is_disabled_with_its_reason() {
    let failing = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let s = start_server_with(|c| {
        c.auto_disable_after_ms = 300;
        c.retry_schedule_ms = vec![100; 30];
    })
    .await;
    let (app, ep) = s.setup("a.b", &failing.url()).await;
    s.send(&app, "a.b", json!({})).await;
    eventually(WAIT, || async {
        s.get(&format!("/app/{app}/endpoint/{ep}")).await.1["disabled"] == true
    })
    .await;
    let (_, endpoint) = s.get(&format!("/app/{app}/endpoint/{ep}")).await;
    assert!(
        endpoint["disabledReason"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{endpoint}"
    );
    let (_, alerts) = s.get("/alert").await;
    assert!(
        alerts["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "endpoint.disabled" && a["endpointId"] == ep.as_str())
    );
    // Further attempts stop (the pending delivery is parked).
    let n = failing.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(failing.count() <= n + 1);
}

#[tokio::test]
async fn a_backup_over_the_api_is_a_consistent_database_that_serves_what_was_pending() {
    if common::pg::selected() {
        // A PostgreSQL database is backed up with PostgreSQL's tools; the API refuses.
        eprintln!("skipped on PostgreSQL: the backup API copies a redb file");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let placeholder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = placeholder.local_addr().unwrap();
    drop(placeholder);
    let mut config = test_config(dir.path());
    config.retry_schedule_ms = vec![100; 50];
    let s = start_on(config.clone()).await;
    let (app, _) = s.setup("a.b", &format!("http://{addr}/hook")).await;
    let msg = s.send(&app, "a.b", json!({"pending": true})).await;

    let response = s
        .client
        .get(s.url("/admin/backup"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::write(&copy, &bytes).unwrap();
    let report = herald::storage::Store::check(&copy).unwrap();
    assert!(report.contains("messages           1"), "{report}");
    let scoped = s
        .service
        .create_token("tenant", Some(&app))
        .await
        .unwrap()
        .text;
    let (st, _) = s
        .request(reqwest::Method::GET, "/admin/backup", None, Some(&scoped))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;

    // A server started on the copy delivers what was pending.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::on(listener, Behaviour::default()).await;
    let restored = start_on(herald::config::Config { db: copy, ..config }).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), msg["id"].as_str().unwrap());
    restored.stop().await;
}

#[tokio::test]
async fn a_full_writer_queue_sheds_load_with_429_and_loses_nothing_acknowledged() {
    let s = start_server_with(|c| {
        c.writer_queue_max = 1;
        c.writer_batch_max = 1;
    })
    .await;
    let (app, _) = s.setup("a.b", "http://127.0.0.1:9/hook").await;
    let sends = (0..200).map(|i| {
        s.client
            .post(s.url(&format!("/app/{app}/msg")))
            .bearer_auth(&s.token)
            .json(&json!({"eventType": "a.b", "payload": {"i": i}}))
            .send()
    });
    let mut accepted = 0;
    let mut shed = 0;
    for r in futures::future::join_all(sends).await {
        let r = r.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.headers()["retry-after"], "1");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["code"], "too_many_requests");
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    println!("accepted {accepted}, shed {shed}");
    assert!(
        shed > 0,
        "a queue of one must overflow under 200 concurrent requests"
    );
    let mut listed = 0;
    let mut iterator: Option<String> = None;
    loop {
        let path = match &iterator {
            Some(it) => format!("/app/{app}/msg?limit=250&iterator={it}"),
            None => format!("/app/{app}/msg?limit=250"),
        };
        let (_, page) = s.get(&path).await;
        listed += page["data"].as_array().unwrap().len();
        if page["done"] == true {
            break;
        }
        iterator = page["iterator"].as_str().map(str::to_owned);
    }
    assert_eq!(listed, accepted, "every 202 is stored, nothing else");
}

#[tokio::test]
async fn the_dashboard_counters_add_up_to_what_the_receivers_saw() {
    // One endpoint fails its first three requests, then succeeds; the other always fails, so
    // each of its deliveries uses every attempt.
    let flaky = Receiver::start_with(Behaviour {
        script: vec![500, 500, 500],
        ..Behaviour::default()
    })
    .await;
    let broken = Receiver::start_with(Behaviour {
        then: 500,
        ..Behaviour::default()
    })
    .await;
    let s = start_server().await;
    s.post("/event-type", json!({"name": "a.b", "description": ""}))
        .await;
    let (_, app) = s.post("/app", json!({"name": "A", "uid": "a"})).await;
    let app_id = herald::model::AppId::parse(app["id"].as_str().unwrap()).unwrap();
    for url in [flaky.url(), broken.url()] {
        let (st, ep) = s.post("/app/a/endpoint", json!({"url": url})).await;
        assert_eq!(st, StatusCode::CREATED, "{ep}");
    }
    // Concurrent sends, so messages and attempts share write batches.
    let sends = (0..10).map(|i| s.send("a", "a.b", json!({"i": i})));
    futures::future::join_all(sends).await;

    let caller = herald::model::Caller::Admin;
    eventually(Duration::from_secs(20), || async {
        s.service.app_activity(caller, vec![app_id]).await.unwrap()[0].failed_today == 10
    })
    .await;
    flaky.wait_for(13, Duration::from_secs(10)).await;
    let overview = s.service.overview(caller).await.unwrap();
    let t = overview.totals;
    assert_eq!(t.messages, 10);
    assert_eq!(t.deliveries, 20);
    assert_eq!(t.attempts_succeeded, 10, "the flaky endpoint's deliveries");
    assert_eq!(
        t.attempts_failed as usize,
        3 + broken.count(),
        "every 500 the receivers answered"
    );
    assert_eq!(t.deliveries_failed, 10, "the broken endpoint's deliveries");
    let activity = s.service.app_activity(caller, vec![app_id]).await.unwrap();
    assert_eq!(
        (activity[0].messages_today, activity[0].failed_today),
        (10, 10)
    );
    let failing: Vec<_> = overview
        .failing
        .iter()
        .map(|f| (f.outcomes.succeeded, f.outcomes.failed))
        .collect();
    assert!(failing.contains(&(0, broken.count() as u64)), "{failing:?}");
    assert!(failing.contains(&(10, 3)), "{failing:?}");
    // The newest failure shown for the broken endpoint is its newest attempt.
    let worst = overview
        .failing
        .iter()
        .find(|f| f.outcomes.succeeded == 0)
        .unwrap();
    let (st, attempts) = s
        .get(&format!(
            "/app/a/attempt/endpoint/{}?limit=1",
            worst.endpoint.as_ref().unwrap().id
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{attempts}");
    assert_eq!(
        worst.last_failure.as_ref().unwrap().id.to_string(),
        attempts["data"][0]["id"].as_str().unwrap()
    );
}

/// `herald check`'s line of what is left to mend: (parked on ready, pending for deleted).
fn to_mend(db: &std::path::Path) -> (u64, u64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check")
        .arg(db)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herald check failed:\n{text}");
    common::child::to_mend(&text)
}

/// What a crash between an endpoint's commit and the jobs after it leaves: written straight
/// into a stopped server's file with the store's own operations, as the crashed process had
/// committed them (the endpoint change), without what it had not (moving its deliveries).
async fn strand(db: &std::path::Path, verify: String, delete: String, delete_app: String) {
    use herald::model::{AppId, EndpointId};
    use herald::storage::{Store, StoreSettings};
    let store = Store::open(
        db,
        &StoreSettings {
            writer_batch_max: 8,
            writer_queue_max: 8,
            metrics: Default::default(),
            cache_bytes: 1 << 20,
            pool_max: 4,
        },
    )
    .unwrap();
    store
        .write(move |w| {
            let old = w.endpoint(EndpointId::parse(&verify).unwrap())?.unwrap();
            let mut new = old.clone();
            new.options.verification.as_mut().unwrap().verified_at = Some(1);
            w.update_endpoint(&old, &new)?;
            let gone = w.endpoint(EndpointId::parse(&delete).unwrap())?.unwrap();
            w.delete_endpoint(&gone)?;
            let app = w.app(AppId::parse(&delete_app).unwrap())?.unwrap();
            w.delete_app(&app)
        })
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_pass_mends_deliveries_stranded_by_a_crash() {
    let receiver = Receiver::start().await;
    let late_rx = Receiver::start().await;
    let sink = Receiver::start().await;
    let failing = Receiver::start_with(Behaviour {
        then: 500,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Retries an hour away: a failed delivery stays queued, not due.
    let config = || {
        let mut c = test_config(dir.path());
        c.retry_schedule_ms = vec![3_600_000];
        c
    };
    let s = start_on(config()).await;
    // This server's own pass at start must be over before anything is stranded, or it mends
    // (part of) what the test strands below.
    eventually(WAIT, || async {
        s.metric("herald_repair_passes_total").await == Some(1.0)
    })
    .await;
    let (app, _) = s.setup("a.b", &receiver.url()).await;
    let (_, other_app) = s.post("/app", json!({"name": "Other"})).await;
    let other_app = other_app["id"].as_str().unwrap().to_string();
    let endpoint = |app: String, url: String, verify: bool| {
        let s = &s;
        async move {
            let (st, ep) = s
                .post(
                    &format!("/app/{app}/endpoint"),
                    json!({"url": url, "verify": verify, "eventTypes": ["a.b"]}),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{ep}");
            ep["id"].as_str().unwrap().to_string()
        }
    };
    // Unverified endpoints park what they are owed; `failing` keeps its deliveries queued.
    let verified_late = endpoint(app.clone(), late_rx.url(), true).await;
    let deleted = endpoint(app.clone(), sink.url(), true).await;
    endpoint(other_app.clone(), sink.url(), true).await;
    let deleted_queued = endpoint(app.clone(), failing.url(), false).await;
    const N: usize = 5;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(s.send(&app, "a.b", json!({"i": i})).await["id"].clone());
        s.send(&other_app, "a.b", json!({"i": i})).await;
    }
    // The first endpoint of `setup` got them all; `failing` answered each once.
    receiver.wait_for(N, WAIT).await;
    failing.wait_for(N, WAIT).await;
    // The receiver answering is not the attempt being recorded: wait for Herald's record, or the
    // delete below races the outcome of the last attempt.
    eventually(WAIT, || async {
        let (_, list) = s
            .get(&format!(
                "/app/{app}/attempt/endpoint/{deleted_queued}?limit=50"
            ))
            .await;
        list["data"].as_array().map_or(0, |d| d.len()) == N
    })
    .await;
    // Deleted through the API: its queued deliveries (due in an hour) are left to the scheduler.
    let (st, _) = s
        .delete(&format!("/app/{app}/endpoint/{deleted_queued}"))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let db = s.db.clone();
    s.stop().await;
    strand(
        &db,
        verified_late.clone(),
        deleted.clone(),
        other_app.clone(),
    )
    .await;
    // Parked on a ready endpoint: N; pending for deleted ones: N parked (`deleted`), N parked
    // (`in_deleted_app`), N queued (`deleted_queued`).
    assert_eq!(to_mend(&db), (N as u64, 3 * N as u64));

    // The next start mends them: the verified endpoint gets its messages, the rest are
    // cancelled.
    let s = start_on(config()).await;
    let late = || {
        late_rx
            .received()
            .iter()
            .filter(|r| r.json().get("i").is_some())
            .count()
    };
    eventually(WAIT, || async { late() == N }).await;
    let root = s.base.trim_end_matches("/api/v1").to_string();
    let metrics = || async {
        reqwest::get(format!("{root}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually(WAIT, || async {
        metrics().await.contains("herald_repair_passes_total 1")
    })
    .await;
    let text = metrics().await;
    assert!(
        text.contains(&format!(
            "herald_repaired_deliveries_total{{action=\"released\"}} {N}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "herald_repaired_deliveries_total{{action=\"cancelled\"}} {}",
            3 * N
        )),
        "{text}"
    );
    for id in &ids {
        let (_, list) = s
            .get(&format!("/app/{app}/msg/{}/endpoint", id.as_str().unwrap()))
            .await;
        for d in list["data"].as_array().unwrap() {
            let ep = d["id"].as_str().unwrap();
            if ep == deleted || ep == deleted_queued {
                assert_eq!(d["status"], 4, "cancelled: {d}");
            }
        }
    }
    s.stop().await;
    assert_eq!(to_mend(&db), (0, 0));
    drop(dir);
}

#[test]
fn a_database_url_never_shows_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // A scheme Herald does not speak is refused before anything is opened; a PostgreSQL URL
    // whose user does not exist (or whose server does not answer) fails to connect. Either
    // way the password is never printed, and the URL is named without it.
    for (url, says) in [
        (
            "mysql://herald:s3cret-pw@127.0.0.1:3306/herald",
            "is a database URL Herald does not speak",
        ),
        ("postgres://herald:s3cret-pw@127.0.0.1:5432/herald", ""),
    ] {
        let config = dir.path().join("herald.toml");
        std::fs::write(&config, format!("db = \"{url}\"\n")).unwrap();
        let runs: Vec<(Vec<&str>, Option<&str>)> = vec![
            (vec!["serve", "--db", url], None),
            (vec!["serve", "--config", config.to_str().unwrap()], None),
            (vec!["serve"], Some(url)),
            (vec!["check", url], None),
            (vec!["token", "list", "--db", url], None),
            (vec!["user", "list"], Some(url)),
        ];
        for (args, env) in runs {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
            command.args(&args).current_dir(dir.path());
            match env {
                Some(db) => command.env("HERALD_DB", db),
                None => command.env_remove("HERALD_DB"),
            };
            let out = command.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} succeeded:\n{text}");
            assert!(text.contains(says), "{args:?}:\n{text}");
            assert!(text.contains("herald:***@127.0.0.1"), "{args:?}:\n{text}");
            assert!(
                !text.contains("s3cret"),
                "{args:?} printed the password:\n{text}"
            );
        }
        std::fs::remove_file(&config).unwrap();
    }
    // Nothing was made of the URLs.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
