//! Faults in the delivery engine, injected through the test-only hooks (`herald::faults`,
//! feature `fault-injection`) where the real fault cannot be produced on demand, and slow or
//! failing receivers that must not slow the rest:
//! - an attempt that panics gives back its place and is tried again, held back first;
//! - an attempt whose record fails is held back with a growing delay, not re-sent at once;
//! - a queue entry that cannot be loaded is taken out as failed, with an alert;
//! - a 429 with `Retry-After` pauses the whole endpoint; a run of timeouts pauses it and
//!   shrinks what it may have in flight;
//! - a pile of deliveries blocked behind a hanging endpoint does not make another endpoint's
//!   steady traffic wait for the periodic wide scan.

mod common;

use std::time::{Duration, Instant};

use common::{
    Behaviour, Receiver, TestServer, eventually, start_server, start_server_with,
    write_back_page_cache,
};
use herald::faults::{self, Fault};
use herald::model::{AlertKind, DeliveryState, EndpointId, MessageId, Priority};
use serde_json::json;

const EVENT: &str = "fault.test";

fn endpoint_id(text: &str) -> EndpointId {
    EndpointId::parse(text).expect("an endpoint id")
}

async fn delivery_state(s: &TestServer, msg: &serde_json::Value) -> Vec<DeliveryState> {
    let id = MessageId::parse(msg["id"].as_str().unwrap()).unwrap();
    s.service
        .store()
        .read(move |r| r.message_deliveries(id))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.state)
        .collect()
}

/// The value of one sample of /metrics (0 when absent: a counter not yet incremented).
async fn metric(s: &TestServer, name: &str) -> f64 {
    s.metric(name).await.unwrap_or(0.0)
}

#[tokio::test]
async fn a_panicking_attempt_gives_back_its_place_and_is_tried_again() {
    let s = start_server().await;
    let receiver = Receiver::start().await;
    let (app, ep) = s.setup(EVENT, &receiver.url()).await;
    faults::inject(endpoint_id(&ep), Fault::PanicInAttempt, 1);
    let msg = s.send(&app, EVENT, json!({"n": 1})).await;
    // The panicking attempt sent nothing; held back a second, the delivery goes again.
    receiver.wait_for(1, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(5), || async {
        delivery_state(&s, &msg).await == [DeliveryState::Succeeded]
    })
    .await;
    assert_eq!(
        metric(&s, "herald_delivery_faults_total{kind=\"panicked\"}").await,
        1.0
    );
    eventually(Duration::from_secs(5), || async {
        s.metric("herald_deliveries_in_flight").await == Some(0.0)
    })
    .await;
    assert_eq!(receiver.calls(), 1);
}

#[tokio::test]
async fn an_attempt_that_cannot_be_recorded_is_held_back_not_resent_at_once() {
    let s = start_server().await;
    let receiver = Receiver::start().await;
    let (app, ep) = s.setup(EVENT, &receiver.url()).await;
    let ep = endpoint_id(&ep);
    faults::inject(ep, Fault::RecordFails, u32::MAX);
    let msg = s.send(&app, EVENT, json!({"n": 1})).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let first = Instant::now();
    // Holds of 1 s, 2 s, 4 s: by 3.5 s after the first attempt, at most three in all.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let calls = receiver.calls();
    assert!(
        (2..=3).contains(&calls),
        "{calls} attempts in {:?}: the receiver must not be hammered",
        first.elapsed()
    );
    assert!(
        metric(&s, "herald_delivery_faults_total{kind=\"unrecorded\"}").await >= 2.0,
        "unrecorded attempts are counted"
    );
    assert_eq!(delivery_state(&s, &msg).await, [DeliveryState::Pending]);
    // Once the store records again, the delivery ends at its next attempt.
    faults::clear(ep);
    eventually(Duration::from_secs(15), || async {
        delivery_state(&s, &msg).await == [DeliveryState::Succeeded]
    })
    .await;
}

#[tokio::test]
async fn a_queue_entry_that_cannot_be_loaded_is_dead_lettered_with_an_alert() {
    let s = start_server().await;
    let broken = Receiver::start().await;
    let healthy = Receiver::start().await;
    let (app, ep) = s.setup(EVENT, &broken.url()).await;
    let (status, other) = s
        .post(
            &format!("/app/{app}/endpoint"),
            json!({"url": healthy.url(), "eventTypes": [EVENT]}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let ep = endpoint_id(&ep);
    faults::inject(ep, Fault::Unreadable, u32::MAX);
    let msg = s.send(&app, EVENT, json!({"n": 1})).await;
    healthy.wait_for(1, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), || async {
        let states = delivery_state(&s, &msg).await;
        states.contains(&DeliveryState::Failed) && states.contains(&DeliveryState::Succeeded)
    })
    .await;
    let (alerts, queued) = s
        .service
        .store()
        .read(|r| Ok((r.alerts(100, None)?, r.queue_depth(Priority::Normal)?)))
        .await
        .unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.kind == AlertKind::DeliveryUnreadable)
        .expect("an alert for the unreadable delivery");
    assert_eq!(alert.endpoint_id, ep);
    assert!(
        alert.detail.contains("could not be loaded"),
        "{}",
        alert.detail
    );
    assert_eq!(queued, 0, "the entry left the queue");
    assert_eq!(broken.calls(), 0);
    assert_eq!(
        metric(&s, "herald_delivery_faults_total{kind=\"dead_lettered\"}").await,
        1.0
    );
    faults::clear(ep);
}

#[tokio::test]
async fn retry_after_pauses_the_whole_endpoint() {
    let s = start_server().await;
    let receiver = Receiver::start_with(Behaviour {
        then: 429,
        extra_headers: vec![("retry-after".into(), "2".into())],
        ..Behaviour::default()
    })
    .await;
    let (app, _) = s.setup(EVENT, &receiver.url()).await;
    s.send(&app, EVENT, json!({"n": 0})).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let answered = Instant::now();
    for n in 1..5 {
        s.send(&app, EVENT, json!({"n": n})).await;
    }
    // New messages wait for the pause without being attempted.
    tokio::time::sleep(Duration::from_millis(1_500).saturating_sub(answered.elapsed())).await;
    assert_eq!(
        receiver.calls(),
        1,
        "attempted during the endpoint's Retry-After"
    );
    receiver.set_behaviour(Behaviour::default());
    receiver.wait_for(6, Duration::from_secs(15)).await;
    assert!(answered.elapsed() >= Duration::from_millis(1_900));
    assert_eq!(
        metric(&s, "herald_endpoint_pauses_total{reason=\"retry_after\"}").await,
        1.0
    );
}

#[tokio::test]
async fn a_run_of_timeouts_pauses_the_endpoint_and_shrinks_what_it_may_hold() {
    let s = start_server_with(|c| c.request_timeout_ms = 300).await;
    let receiver = Receiver::start_with(Behaviour {
        delay: Duration::from_secs(30),
        ..Behaviour::default()
    })
    .await;
    let (app, _) = s.setup(EVENT, &receiver.url()).await;
    let begin = Instant::now();
    for n in 0..40 {
        s.send(&app, EVENT, json!({"n": n})).await;
    }
    tokio::time::sleep(Duration::from_millis(2_500).saturating_sub(begin.elapsed())).await;
    // One wave of at most what a fresh endpoint may hold (4, below its cap of 64), fewer as
    // its timeouts shrink it, then one at a time after each pause.
    let calls = receiver.calls();
    assert!(
        calls <= 22,
        "{calls} requests to a hanging endpoint in 2.5 s"
    );
    assert!(metric(&s, "herald_endpoint_pauses_total{reason=\"failures\"}").await >= 1.0);
}

#[tokio::test]
async fn deliveries_behind_a_pile_of_blocked_ones_go_at_once() {
    // No timeout within the test: the hanging endpoint stays at its cap, with a pile of due
    // deliveries in front of every other endpoint's in the queue.
    let s = start_server_with(|c| c.request_timeout_ms = 120_000).await;
    let hanging = Receiver::start_with(Behaviour {
        delay: Duration::from_secs(120),
        ..Behaviour::default()
    })
    .await;
    let healthy = Receiver::start().await;
    let (stuck_app, _) = s.setup(EVENT, &hanging.url()).await;
    let pile = 3_000;
    let mut sends = tokio::task::JoinSet::new();
    let s = std::sync::Arc::new(s);
    for worker in 0..16 {
        let (s, app) = (s.clone(), stuck_app.clone());
        sends.spawn(async move {
            for n in (worker..pile).step_by(16) {
                s.send(&app, EVENT, json!({"n": n})).await;
            }
        });
    }
    while sends.join_next().await.is_some() {}
    // Holding all it may: a fresh endpoint's 4 (it never answers, so it never grows).
    eventually(Duration::from_secs(10), || async { hanging.calls() >= 4 }).await;
    write_back_page_cache();
    // Healthy traffic at 50 messages/s, as a steady neighbour sends it.
    let (app, _) = s.setup(EVENT, &healthy.url()).await;
    let count = 100;
    let mut sent = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..count {
        tick.tick().await;
        let (s, app) = (s.clone(), app.clone());
        sent.spawn(async move {
            let at = Instant::now();
            s.send(&app, EVENT, json!({"n": n})).await;
            (n, at)
        });
    }
    let mut created = vec![Instant::now(); count];
    while let Some(done) = sent.join_next().await {
        let (n, at) = done.unwrap();
        created[n] = at;
    }
    let arrivals = healthy.wait_for(count, Duration::from_secs(20)).await;
    let mut waits: Vec<Duration> = arrivals
        .iter()
        .map(|r| {
            let n = r.json()["n"].as_u64().unwrap() as usize;
            r.at.saturating_duration_since(created[n])
        })
        .collect();
    waits.sort();
    let p90 = waits[waits.len() * 9 / 10];
    // The wide scan runs every 100 ms: a delivery waiting for it waits up to that long.
    assert!(
        p90 < Duration::from_millis(40),
        "create-to-receipt p90 {p90:?} behind {pile} blocked deliveries ({waits:?})"
    );
}
