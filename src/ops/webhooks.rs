//! Operational webhooks: every alert (`message.attempt.exhausted`, `endpoint.disabled`) is
//! POSTed, signed with the configured secret, to the configured URL, in order, at least once.
//! The position of the last alert sent is kept in redb, so a restart neither loses nor repeats
//! more than the one alert that was in flight.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::delivery::Outbound;
use crate::model::*;
use crate::storage::Store;

const CURSOR: &str = "operational_webhooks";
/// Alerts read per round.
const BATCH: usize = 100;
const IDLE_PAUSE: Duration = Duration::from_secs(1);
/// Backoff after a failed send, doubling up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The event type of an alert's operational webhook.
pub fn event_type(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::AttemptsExhausted => "message.attempt.exhausted",
        AlertKind::EndpointDisabled => "endpoint.disabled",
        // Herald's own: the delivery ended failed without an attempt.
        AlertKind::DeliveryUnreadable => "message.delivery.unreadable",
    }
}

/// The body of an alert's operational webhook (Svix's operational webhook shape).
pub fn body(alert: &Alert) -> serde_json::Value {
    let ts = |us: Micros| {
        chrono::DateTime::from_timestamp_micros(us)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    serde_json::json!({
        "type": event_type(alert.kind),
        "timestamp": ts(alert.created_at),
        "data": {
            "alertId": alert.id.to_string(),
            "appId": alert.app_id.to_string(),
            "endpointId": alert.endpoint_id.to_string(),
            "msgId": alert.msg_id.map(|m| m.to_string()),
            "detail": alert.detail,
        }
    })
}

pub(super) async fn run(
    store: Store,
    config: Arc<Config>,
    outbound: Arc<Outbound>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (Some(url), Some(secret)) = (
        config.operational_webhook_url.clone(),
        config.operational_webhook_secret.clone(),
    ) else {
        return;
    };
    let Ok(key) = crate::signing::parse_secret(&secret.0) else {
        return;
    };
    // A stand-in endpoint, so operational webhooks are signed and sent exactly like deliveries.
    let target = Endpoint {
        description: "operational webhooks".into(),
        keys: vec![SigningKey {
            key,
            expires_at: None,
        }],
        ..Endpoint::plain(EndpointId(0), AppId(0), url)
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let pending = store.read(|r| {
            let after = r.cursor(CURSOR)?.unwrap_or(0);
            r.alerts_after(after, BATCH)
        });
        let alerts = match pending.await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading alerts for operational webhooks failed");
                Vec::new()
            }
        };
        let mut failed = false;
        for alert in &alerts {
            let body = body(alert).to_string().into_bytes();
            let sent = outbound
                .send(&target, &alert.id.to_string(), body, "application/json")
                .await;
            if sent.error.is_some() {
                tracing::warn!(alert = %alert.id, status = sent.status_code, "operational webhook not accepted; will retry");
                failed = true;
                break;
            }
            let id = alert.id.0;
            if let Err(e) = store.write(move |w| w.set_cursor(CURSOR, id)).await {
                tracing::warn!(error = %e, "operational webhook cursor not saved");
            }
        }
        let pause = if failed {
            let p = backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            p
        } else {
            backoff = BACKOFF_MIN;
            if alerts.len() == BATCH {
                Duration::ZERO
            } else {
                IDLE_PAUSE
            }
        };
        if super::pause(&mut stop, pause).await {
            return;
        }
    }
}
