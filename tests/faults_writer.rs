//! Faults inside the one writer: a job that panics or fails after writing fails alone; the
//! other jobs of its batch commit, and the writer keeps working.
//!
//! A batch is made on purpose: one job holds the writer while the jobs under test queue
//! behind it, so they are taken into the same next batch (in the order they were sent).

mod common;

use std::time::Duration;

use common::{TestServer, eventually, start_server};
use herald::model::{AppId, EndpointId, MessageId, Priority};
use herald::storage::{StoreError, Writer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A writer job that blocks the writer until released.
struct Held {
    release: std::sync::mpsc::Sender<()>,
    job: JoinHandle<Result<(), StoreError>>,
}

async fn hold_writer(s: &TestServer) -> Held {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    let store = s.service.store().clone();
    let job = tokio::spawn(async move {
        store
            .write(move |_| {
                let _ = started.send(());
                let _ = released.recv();
                Ok(())
            })
            .await
    });
    tokio::task::spawn_blocking(move || running.recv().unwrap())
        .await
        .unwrap();
    Held { release, job }
}

/// Waits until `n` jobs wait behind the held one.
async fn queued(s: &TestServer, n: usize) {
    let store = s.service.store().clone();
    eventually(Duration::from_secs(10), || {
        let store = store.clone();
        async move { store.jobs_waiting() >= n }
    })
    .await;
}

impl Held {
    async fn release(self) {
        self.release.send(()).unwrap();
        self.job.await.unwrap().unwrap();
    }
}

/// Sends a job straight to the writer (the fault cannot be produced through the API).
fn job<T, F>(s: &TestServer, f: F) -> JoinHandle<Result<T, StoreError>>
where
    F: Fn(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = s.service.store().clone();
    tokio::spawn(async move { store.write(f).await })
}

fn create(s: &TestServer, app: &str, n: u64) -> JoinHandle<(StatusCode, Value)> {
    let (client, url, token) = (
        s.client.clone(),
        s.url(&format!("/app/{app}/msg")),
        s.token.clone(),
    );
    tokio::spawn(async move {
        let resp = client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"eventType": "w.fault", "payload": {"n": n}}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

async fn cursor(s: &TestServer, name: &'static str) -> Option<u128> {
    s.service
        .store()
        .read(move |r| r.cursor(name))
        .await
        .unwrap()
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    s.metric(name)
        .await
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

fn msg_id(body: &Value) -> MessageId {
    MessageId::parse(body["id"].as_str().unwrap()).unwrap()
}

/// Two applications with an endpoint each that nothing listens on: deliveries are not the
/// point here.
async fn two_tenants(s: &TestServer) -> (String, String) {
    let (a, _) = s.setup("w.fault", "http://127.0.0.1:9/").await;
    let (b, _) = s.setup("w.fault", "http://127.0.0.1:9/").await;
    (a, b)
}

#[tokio::test]
async fn a_panicking_write_job_fails_alone_and_the_writer_lives_on() {
    let s = start_server().await;
    let (a, b) = two_tenants(&s).await;
    let (status, first) = create(&s, &a, 0).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");

    let held = hold_writer(&s).await;
    // Before the panicking job in the batch, so it had run and must run again.
    let before = job(&s, |w| w.set_cursor("before", 1));
    queued(&s, 1).await;
    let ahead = create(&s, &a, 1);
    queued(&s, 2).await;
    let panics = job(&s, |w| -> Result<(), StoreError> {
        w.set_cursor("half", 7)?;
        panic!("injected fault: a job panics after writing");
    });
    queued(&s, 3).await;
    let after = create(&s, &b, 2);
    queued(&s, 4).await;
    held.release().await;

    let err = panics.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    before.await.unwrap().unwrap();
    let (status, ahead) = ahead.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{ahead}");
    let (status, after) = after.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{after}");
    assert_eq!(cursor(&s, "before").await, Some(1));
    assert_eq!(
        cursor(&s, "half").await,
        None,
        "half a panicked job committed"
    );
    // Ids made in the writer stay ordered across the re-run of the batch.
    assert!(msg_id(&first) < msg_id(&ahead), "{first} {ahead}");
    assert!(msg_id(&ahead) < msg_id(&after), "{ahead} {after}");
    for (app, body) in [(&a, &ahead), (&b, &after)] {
        let (status, got) = s
            .get(&format!("/app/{app}/msg/{}", body["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
    }

    // The writer lives on.
    let (status, later) = create(&s, &b, 3).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{later}");
    assert!(msg_id(&after) < msg_id(&later));
    assert_eq!(metric(&s, "herald_writer_jobs_panicked_total").await, 1.0);
}

#[tokio::test]
async fn a_job_that_fails_after_writing_costs_no_other_job_its_commit() {
    let s = start_server().await;
    let (a, b) = two_tenants(&s).await;

    let held = hold_writer(&s).await;
    let ahead = create(&s, &a, 1);
    queued(&s, 1).await;
    let fails = job(&s, |w| -> Result<(), StoreError> {
        w.set_cursor("half", 7)?;
        Err(StoreError::NotFound)
    });
    queued(&s, 2).await;
    let after = create(&s, &b, 2);
    queued(&s, 3).await;
    let also = job(&s, |w| w.set_cursor("after", 3));
    queued(&s, 4).await;
    held.release().await;

    // The failing job gets its own error, not a rollback of the batch.
    let err = fails.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    let (status, ahead) = ahead.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{ahead}");
    let (status, after) = after.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{after}");
    also.await.unwrap().unwrap();
    assert_eq!(cursor(&s, "after").await, Some(3));
    assert_eq!(
        cursor(&s, "half").await,
        None,
        "a failed job's rows committed"
    );
    assert!(msg_id(&ahead) < msg_id(&after));
    for (app, body) in [(&a, &ahead), (&b, &after)] {
        let (status, got) = s
            .get(&format!("/app/{app}/msg/{}", body["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
    }
    assert!(metric(&s, "herald_writer_batch_reruns_total").await >= 1.0);
}

#[tokio::test]
async fn the_manual_resend_past_the_last_delivery_number_is_refused_alone() {
    let s = start_server().await;
    let (_, b) = two_tenants(&s).await;
    // The endpoint is disabled so that 65,536 deliveries wait parked instead of being sent.
    let (status, app) = s.post("/app", json!({"name": "Resent"})).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let a = app["id"].as_str().unwrap().to_string();
    let (status, ep) = s
        .post(
            &format!("/app/{a}/endpoint"),
            json!({"url": "http://127.0.0.1:9/", "disabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ep}");
    let ep_id = EndpointId::parse(ep["id"].as_str().unwrap()).unwrap();
    let (status, msg) = create(&s, &a, 0).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{msg}");
    let (app_id, id) = (AppId::parse(&a).unwrap(), msg_id(&msg));

    // Fill the message's delivery numbers up to the last one, in a few large jobs.
    loop {
        let last = job(&s, move |w| {
            let ep = w.endpoint(ep_id)?.unwrap();
            let mut n = 0;
            for _ in 0..8_192 {
                n = w
                    .enqueue_manual((app_id, id), &ep, Priority::Normal)?
                    .unwrap()
                    .n;
                if n == u16::MAX {
                    break;
                }
            }
            Ok(n)
        })
        .await
        .unwrap()
        .unwrap();
        if last == u16::MAX {
            break;
        }
    }

    let held = hold_writer(&s).await;
    let ahead = create(&s, &b, 1);
    queued(&s, 1).await;
    let (client, url, token) = (
        s.client.clone(),
        s.url(&format!("/app/{a}/msg/{id}/endpoint/{ep_id}/resend")),
        s.token.clone(),
    );
    let resend = tokio::spawn(async move {
        let resp = client.post(url).bearer_auth(token).send().await.unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    });
    queued(&s, 2).await;
    // The same refusal at the storage level, whatever the service checks before.
    let direct = job(&s, move |w| {
        let ep = w.endpoint(ep_id)?.unwrap();
        w.enqueue_manual((app_id, id), &ep, Priority::Normal)
    });
    queued(&s, 3).await;
    let after = create(&s, &b, 2);
    queued(&s, 4).await;
    held.release().await;

    let (status, body) = resend.await.unwrap();
    // Refused by the resend cap (resends_per_message_max) before the numbers matter.
    assert!(status.is_client_error(), "{status} {body}");
    assert!(
        body.to_string().contains("resends_per_message_max"),
        "{body}"
    );
    let refused = direct.await.unwrap().unwrap();
    assert!(
        refused.is_none(),
        "no delivery past the last number: {refused:?}"
    );
    let (status, ahead) = ahead.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{ahead}");
    let (status, after) = after.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{after}");
    let deliveries = s
        .service
        .store()
        .read(move |r| r.message_deliveries(id))
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 65_536);
}
