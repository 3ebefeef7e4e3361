//! One attempt of one delivery: load, sign, send, decide, record.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::Engine;
use super::client::Sent;
use super::retry;
use crate::model::*;
use crate::signing;
use crate::storage::{AttemptOutcome, Read};

/// Everything an attempt needs, read in one transaction.
struct Work {
    delivery: Delivery,
    message: Message,
    endpoint: Option<Endpoint>,
}

pub(super) async fn attempt(engine: &Engine, id: DeliveryId) {
    if let Err(e) = try_attempt(engine, id).await {
        // The delivery stays queued; the scheduler will pick it up again.
        tracing::error!(delivery = %id, error = %e, "attempt could not be recorded");
    }
}

async fn try_attempt(engine: &Engine, id: DeliveryId) -> Result<(), crate::storage::StoreError> {
    let work = engine
        .store
        .read(move |r| {
            let Some(delivery) = r.delivery(id)? else {
                return Ok(None);
            };
            if delivery.state != DeliveryState::Pending {
                return Ok(None);
            }
            let Some(message) = r.message(delivery.app_id, delivery.msg_id)? else {
                return Ok(None);
            };
            let endpoint = r.endpoint(delivery.endpoint_id)?;
            Ok(Some(Work {
                delivery,
                message,
                endpoint,
            }))
        })
        .await?;
    let Some(Work {
        delivery,
        message,
        endpoint,
    }) = work
    else {
        return Ok(());
    };
    let Some(endpoint) = endpoint else {
        // The endpoint was deleted: the delivery has nowhere to go.
        return engine.store.write(move |w| w.cancel_delivery(id)).await;
    };

    let sent = match &message.payload {
        Some(payload) => send(engine, &message, &endpoint, payload.as_bytes().to_vec()).await,
        None => Sent {
            status_code: 0,
            duration_ms: 0,
            error: Some(AttemptError::Request),
            response: "the message payload has expired or was expunged".into(),
            retry_after: None,
        },
    };

    let attempt = Attempt {
        id: AttemptId(0), // assigned by the writer, in commit order
        delivery_id: id,
        msg_id: message.id,
        app_id: message.app_id,
        endpoint_id: endpoint.id,
        url: endpoint.url.clone(),
        status_code: sent.status_code,
        duration_ms: sent.duration_ms,
        error: sent.error,
        response: sent.response,
        trigger_type: delivery.trigger_type,
        created_at: now_micros(),
    };
    let outcome = decide(engine, &delivery, &attempt, sent.retry_after.as_deref());
    // 410 Gone: the receiver says this endpoint is no more; stop sending to it.
    let gone = attempt.status_code == 410;
    let endpoint_id = endpoint.id;
    let app_id = endpoint.app_id;
    engine
        .store
        .write(move |w| {
            let current = if gone { w.endpoint(endpoint_id)? } else { None };
            w.record_attempt(attempt, outcome)?;
            if let Some(ep) = current.filter(|ep| !ep.disabled) {
                let mut disabled = ep.clone();
                disabled.disabled = true;
                disabled.updated_at = now_micros();
                w.update_endpoint(&ep, &disabled)?;
                w.insert_alert(Alert {
                    id: AlertId(0),
                    kind: AlertKind::EndpointDisabled,
                    app_id,
                    endpoint_id,
                    msg_id: None,
                    detail: "the receiver answered 410 Gone".into(),
                    created_at: now_micros(),
                    acknowledged_at: None,
                })?;
            }
            Ok(())
        })
        .await
}

/// Succeeded, try again later, or give up and alert.
fn decide(
    engine: &Engine,
    delivery: &Delivery,
    attempt: &Attempt,
    retry_after: Option<&str>,
) -> AttemptOutcome {
    if attempt.succeeded() {
        return AttemptOutcome::Succeeded;
    }
    let config = &engine.config;
    let made = delivery.attempts + 1;
    let asked = match attempt.status_code {
        429 | 503 => retry_after.and_then(|v| retry::parse_retry_after(v, chrono::Utc::now())),
        _ => None,
    };
    let delay = if attempt.status_code == 410 {
        None
    } else {
        retry::next_delay_ms(
            &config.retry_schedule_ms,
            made,
            config.retry_jitter_percent,
            asked,
            config.retry_after_max_ms,
            &mut rand::thread_rng(),
        )
    };
    match delay {
        Some(ms) => AttemptOutcome::RetryAt(now_millis() + ms),
        None => AttemptOutcome::Exhausted(Alert {
            id: AlertId(0),
            kind: AlertKind::AttemptsExhausted,
            app_id: delivery.app_id,
            endpoint_id: delivery.endpoint_id,
            msg_id: Some(delivery.msg_id),
            detail: format!(
                "delivery failed after {made} attempt(s); last: {}",
                describe(attempt)
            ),
            created_at: now_micros(),
            acknowledged_at: None,
        }),
    }
}

fn describe(a: &Attempt) -> String {
    match a.error {
        Some(AttemptError::Status) => format!("HTTP {}", a.status_code),
        Some(kind) => kind.as_str().to_string(),
        None => "success".into(),
    }
}

/// Signs and POSTs the payload.
async fn send(engine: &Engine, msg: &Message, ep: &Endpoint, body: Vec<u8>) -> Sent {
    let msg_id = msg.id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature =
        signing::signature_header(ep.live_keys(now_micros()), &msg_id, timestamp, &body);
    let mut headers = HeaderMap::with_capacity(4 + ep.headers.len());
    // Custom headers first, so Herald's own cannot be overridden by them.
    for (name, value) in &ep.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.insert(n, v);
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "webhook-id",
        HeaderValue::try_from(msg_id).expect("ids are ASCII"),
    );
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "webhook-signature",
        HeaderValue::try_from(signature).expect("signatures are base64"),
    );
    let timeout = Duration::from_millis(engine.config.request_timeout_ms);
    engine.client.post(&ep.url, headers, body, timeout).await
}
