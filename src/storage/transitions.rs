//! The deliveries routing makes of a message, and how a stored delivery changes when an attempt
//! is recorded or it is cancelled: the one place both backends take them from, so the redb file and a PostgreSQL database never disagree on
//! what a delivery becomes.

use super::AttemptOutcome;
use crate::model::{
    Delivery, DeliveryId, DeliveryState, Endpoint, Message, Micros, Millis, NewDelivery,
    TriggerType,
};

/// A pending delivery after an attempt made `at` with `outcome`: counted, its reserved
/// rate-limit slot used, and ended or due again.
pub(crate) fn attempted(old: &Delivery, outcome: &AttemptOutcome, at: Micros) -> Delivery {
    let mut d = old.clone();
    d.attempts += 1;
    d.slot_reserved = false;
    d.updated_at = at;
    match outcome {
        AttemptOutcome::Succeeded => {
            d.state = DeliveryState::Succeeded;
            d.due_ms = None;
        }
        AttemptOutcome::RetryAt(due) => d.due_ms = Some(*due),
        AttemptOutcome::Exhausted(_) | AttemptOutcome::Abandoned => {
            d.state = DeliveryState::Failed;
            d.due_ms = None;
        }
    }
    d
}

/// A pending delivery ended without an attempt (its endpoint is gone), at `at`.
pub(crate) fn cancelled(old: &Delivery, at: Micros) -> Delivery {
    let mut d = old.clone();
    d.state = DeliveryState::Cancelled;
    d.due_ms = None;
    d.updated_at = at;
    d
}

/// The deliveries of a newly stored message, numbered in routing order: due `now_ms` plus the
/// route's delay, or parked (no due time) while its endpoint is not ready.
pub(crate) fn routed(
    msg: &Message,
    routes: &[NewDelivery],
    endpoints: &[Endpoint],
    now_ms: Millis,
) -> Vec<Delivery> {
    routes
        .iter()
        .enumerate()
        .map(|(n, route)| {
            let ready = endpoints
                .iter()
                .find(|e| e.id == route.endpoint_id)
                .is_some_and(Endpoint::ready);
            Delivery {
                id: DeliveryId {
                    msg: msg.id,
                    n: n as u16,
                },
                msg_id: msg.id,
                app_id: msg.app_id,
                endpoint_id: route.endpoint_id,
                priority: route.priority,
                state: DeliveryState::Pending,
                attempts: 0,
                due_ms: ready.then_some(now_ms + route.delay_ms),
                trigger_type: TriggerType::Scheduled,
                trigger_id: route.trigger_id,
                unique_key: route.unique_key.clone(),
                slot_reserved: false,
                created_at: msg.created_at,
                updated_at: msg.created_at,
            }
        })
        .collect()
}
