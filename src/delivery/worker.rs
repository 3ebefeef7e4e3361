//! One attempt of one delivery: load, check the endpoint, build the body, sign, send, decide,
//! record.

use super::client::Sent;
use super::retry;
use super::{EndpointSlot, Engine};
use crate::model::*;
use crate::routing::template;
use crate::storage::{AttemptOutcome, DispatchLoads, QueueEntry, Read, StoreError};

/// Everything an attempt needs, read in the scheduler's scan transaction (see `load`).
pub(super) struct Work {
    delivery: Delivery,
    message: Message,
    /// Shared by the deliveries of one dispatch to the same endpoint.
    endpoint: Option<std::sync::Arc<Endpoint>>,
    /// The trigger that shaped the body, with the application for its merge fields.
    shaping: Option<(Trigger, App)>,
}

impl Work {
    /// The concurrency cap of the delivery's endpoint, when it sets one.
    pub(super) fn concurrency_cap(&self) -> Option<u32> {
        self.endpoint.as_ref()?.options.concurrency_max
    }

    /// The attempt's request timeout, where the endpoint sets one.
    pub(super) fn timeout_ms(&self) -> Option<u64> {
        self.endpoint.as_ref()?.options.timeout_ms
    }
}

/// What a queue entry loads to.
pub(super) enum Loaded {
    Work(Work),
    /// No pending, queued delivery is behind the entry (it is gone, ended or parked).
    Stale,
    /// The delivery cannot be attempted, ever: the text says why.
    Unreadable(String),
}

/// Reads what an attempt of `id` needs. The scheduler calls it inside the transaction that
/// chose the delivery, which spares each attempt a read of its own. An error of a record that
/// does not decode (`StoreError::Corrupt`) is as final as `Unreadable`. An entry that is not
/// the delivery's own (another due time or lane: a leftover) is `Stale`, never attempted, or
/// its retries would follow each other at once, the real entry's due time unheeded.
pub(super) fn load(
    r: &dyn Read,
    batch: &mut dyn DispatchLoads,
    lane: Priority,
    entry: QueueEntry,
) -> Result<Loaded, StoreError> {
    let Some(delivery) = batch.delivery(entry.id)? else {
        return Ok(Loaded::Stale);
    };
    #[cfg(feature = "fault-injection")]
    if crate::faults::fires(delivery.endpoint_id, crate::faults::Fault::Unreadable) {
        return Err(StoreError::corrupt("fault injected: unreadable"));
    }
    if delivery.state != DeliveryState::Pending
        || delivery.due_ms != Some(entry.due_ms)
        || delivery.priority != lane
    {
        return Ok(Loaded::Stale);
    }
    let Some(message) = batch.message(delivery.app_id, delivery.msg_id)? else {
        return Ok(Loaded::Unreadable(format!(
            "its message {} is gone",
            delivery.msg_id
        )));
    };
    let endpoint = batch.endpoint(delivery.endpoint_id)?;
    let shaping = match delivery.trigger_id {
        Some(t) => match (r.trigger(delivery.app_id, t)?, r.app(delivery.app_id)?) {
            (Some(trigger), Some(app)) if trigger.template.is_some() => Some((trigger, app)),
            _ => None,
        },
        None => None,
    };
    Ok(Loaded::Work(Work {
        delivery,
        message,
        endpoint,
        shaping,
    }))
}

pub(super) async fn attempt(
    engine: &Engine,
    id: DeliveryId,
    work: Work,
    slot: &mut EndpointSlot<'_>,
) {
    match try_attempt(engine, id, work, slot).await {
        Ok(()) => engine.recorded(id),
        Err(e) => {
            // The delivery stays queued. Held back, it is not sent again before its hold
            // ends (growing with each failure): a failing store must not make Herald
            // hammer the receiver.
            tracing::error!(delivery = %id, error = %e, "attempt could not be recorded; held back");
            engine.hold_back(id, "unrecorded");
        }
    }
}

async fn try_attempt(
    engine: &Engine,
    id: DeliveryId,
    work: Work,
    slot: &mut EndpointSlot<'_>,
) -> Result<(), StoreError> {
    let Work {
        delivery,
        message,
        endpoint,
        shaping,
    } = work;
    #[cfg(feature = "fault-injection")]
    if crate::faults::fires(delivery.endpoint_id, crate::faults::Fault::PanicInAttempt) {
        panic!("fault injected: the attempt of {id} panicked");
    }
    let Some(endpoint) = endpoint else {
        // The endpoint was deleted: the delivery has nowhere to go.
        return engine.store.write(move |w| w.cancel_delivery(id)).await;
    };
    if !endpoint.ready() {
        // Disabled or unverified: wait, unattempted, until it is enabled or verified.
        return engine.store.write(move |w| w.park_delivery(id)).await;
    }
    if let (Some(rate), false) = (endpoint.throttle_rate, delivery.slot_reserved) {
        let slot = engine.reserve_slot(endpoint.id, rate);
        if slot > now_millis() + super::slot_slack_ms() {
            return engine.store.write(move |w| w.defer_to_slot(id, slot)).await;
        }
    }

    let built = match shaping {
        None => build_body(&message, None, &engine.config.template_limits()),
        // A tenant's template renders on a render thread, not on this one, which drives
        // every outbound connection; its own bounds (template_render_ms, ...) stop it.
        Some(shaping) => {
            let (msg, limits) = (message.clone(), engine.config.template_limits());
            template::pool::run(move || build_body(&msg, Some(&shaping), &limits))
                .await
                .unwrap_or_else(|| Err((AttemptError::Template, "the template failed".into())))
        }
    };
    let sent = match built {
        Ok((body, content_type)) => {
            engine
                .outbound
                .send(&endpoint, &message.id.to_string(), body, content_type)
                .await
        }
        Err((kind, reason)) => Sent {
            status_code: 0,
            duration_ms: 0,
            error: Some(kind),
            response: reason,
            retry_after: None,
        },
    };
    let asked = match sent.status_code {
        429 | 503 => sent
            .retry_after
            .as_deref()
            .and_then(|v| retry::parse_retry_after(v, chrono::Utc::now())),
        _ => None,
    };
    // The receiver is done with this request: its pacing learns from the answer, and its slot
    // may serve the next delivery while this attempt waits for its commit.
    slot.answered(super::pacing::Answer {
        status_code: sent.status_code,
        error: sent.error,
        retry_after_ms: asked,
    });

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
    let outcome = decide(engine, &delivery, &endpoint, &attempt, asked);
    engine.metrics.attempt(
        attempt.error.map_or("success", AttemptError::as_str),
        std::time::Duration::from_millis(attempt.duration_ms),
    );
    match &outcome {
        AttemptOutcome::Succeeded => engine.metrics.delivery_finished("succeeded"),
        AttemptOutcome::Exhausted(_) | AttemptOutcome::Abandoned => {
            engine.metrics.delivery_finished("failed")
        }
        AttemptOutcome::RetryAt(_) => {}
    }
    let succeeded = attempt.succeeded();
    let gone = attempt.status_code == 410;
    let auto_disable_after_us = engine.config.auto_disable_after_ms as i64 * 1000;
    let endpoint_id = endpoint.id;
    // The endpoint's record changes only on a transition (`endpoint_change`). A success
    // against an endpoint that was not failing when this delivery was dispatched makes none,
    // so the common case skips reading and decoding the endpoint in the writer. (Should
    // another attempt have marked it failing since, the next success clears the mark.)
    let may_change = !succeeded || endpoint.options.failing_since.is_some();
    engine
        .store
        .write(move |w| {
            #[cfg(feature = "fault-injection")]
            if crate::faults::fires(endpoint_id, crate::faults::Fault::RecordFails) {
                return Err(StoreError::backend("fault injected", "the record failed"));
            }
            // Read before writing (the writer's contract), then record.
            let current = if may_change {
                w.endpoint(endpoint_id)?
            } else {
                None
            };
            w.record_attempt(attempt.clone(), outcome.clone())?;
            if let Some(ep) = current
                && let Some(change) = endpoint_change(&ep, succeeded, gone, auto_disable_after_us)
            {
                let mut new = ep.clone();
                change.apply(&mut new);
                w.update_endpoint(&ep, &new)?;
                if let EndpointChange::Disable(reason) = change {
                    w.insert_alert(Alert {
                        id: AlertId(0),
                        kind: AlertKind::EndpointDisabled,
                        app_id: ep.app_id,
                        endpoint_id: ep.id,
                        msg_id: None,
                        detail: reason,
                        created_at: now_micros(),
                        acknowledged_at: None,
                    })?;
                }
            }
            Ok(())
        })
        .await
}

/// The body and its content type: the payload as posted, or the trigger's template rendered.
fn build_body(
    message: &Message,
    shaping: Option<&(Trigger, App)>,
    limits: &template::Limits,
) -> Result<(Vec<u8>, &'static str), (AttemptError, String)> {
    let Some(payload) = &message.payload else {
        return Err((
            AttemptError::Request,
            "the message payload has expired or was expunged".into(),
        ));
    };
    let Some((trigger, app)) = shaping else {
        return Ok((payload.as_bytes().to_vec(), ContentType::Json.mime()));
    };
    let source = trigger.template.as_deref().unwrap_or_default();
    let parsed: serde_json::Value =
        serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
    let fields = template::merge_fields(&parsed, message, app);
    match template::body(
        source,
        trigger.content_type,
        &fields,
        limits,
        limits.deadline(),
    ) {
        Ok(body) => Ok((body.into_bytes(), trigger.content_type.mime())),
        Err(e) => Err((
            AttemptError::Template,
            format!("trigger {}: {e}", trigger.id),
        )),
    }
}

/// A change an attempt makes to its endpoint's record; only transitions write.
enum EndpointChange {
    /// The first failure after a success: remember when the failing began.
    StartFailing(Micros),
    /// A success after failures.
    Recovered,
    Disable(String),
}

impl EndpointChange {
    fn apply(&self, ep: &mut Endpoint) {
        match self {
            EndpointChange::StartFailing(t) => ep.options.failing_since = Some(*t),
            EndpointChange::Recovered => ep.options.failing_since = None,
            EndpointChange::Disable(reason) => {
                ep.disabled = true;
                ep.options.disabled_reason = Some(reason.clone());
            }
        }
        ep.updated_at = now_micros();
    }
}

fn endpoint_change(
    ep: &Endpoint,
    succeeded: bool,
    gone: bool,
    auto_disable_after_us: i64,
) -> Option<EndpointChange> {
    if ep.disabled {
        return None;
    }
    if gone {
        return Some(EndpointChange::Disable(
            "the receiver answered 410 Gone".into(),
        ));
    }
    let now = now_micros();
    match (succeeded, ep.options.failing_since) {
        (true, Some(_)) => Some(EndpointChange::Recovered),
        (true, None) => None,
        (false, None) => Some(EndpointChange::StartFailing(now)),
        (false, Some(since)) if now - since >= auto_disable_after_us => {
            Some(EndpointChange::Disable(format!(
                "every attempt failed for {} hours",
                (now - since) / 3_600_000_000
            )))
        }
        (false, Some(_)) => None,
    }
}

/// Succeeded, try again later, or give up and alert. The endpoint's own schedule and attempt
/// count win over the server's.
fn decide(
    engine: &Engine,
    delivery: &Delivery,
    ep: &Endpoint,
    attempt: &Attempt,
    asked: Option<u64>,
) -> AttemptOutcome {
    if attempt.succeeded() {
        return AttemptOutcome::Succeeded;
    }
    let config = &engine.config;
    let made = delivery.attempts + 1;
    let schedule = ep
        .options
        .retry_schedule_ms
        .as_deref()
        .unwrap_or(&config.retry_schedule_ms);
    let attempts_max = ep.options.attempts_max.unwrap_or(schedule.len() as u32 + 1);
    if attempt.status_code == 410 {
        return AttemptOutcome::Abandoned;
    }
    let delay = if made >= attempts_max {
        None
    } else {
        // Past the end of the schedule (an endpoint allowing more attempts), the last delay
        // repeats.
        let index = (made as usize).min(schedule.len().max(1)) as u32;
        retry::next_delay_ms(
            schedule,
            index,
            config.retry_jitter_percent,
            asked,
            config.retry_after_max_ms,
            &mut rand::thread_rng(),
        )
    };
    match delay {
        Some(ms) => AttemptOutcome::RetryAt(now_millis().saturating_add(ms)),
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
