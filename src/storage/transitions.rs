//! How a stored delivery changes when an attempt is recorded or it is cancelled: the one place
//! both backends take it from, so the redb file and a PostgreSQL database never disagree on
//! what a delivery becomes.

use super::AttemptOutcome;
use crate::model::{Delivery, DeliveryState, Micros};

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
