//! The dashboard's counters as one write batch adds them up (both backends): every message and
//! attempt bumps a few counters, mostly the same ones (this hour, this endpoint, this
//! application today), so a batch sums them in memory and its backend writes each once before
//! the commit (`flush_counters`): they still commit, or not, with the data they count. What
//! each event counts is decided here, once; where the sums are written is the backend's.

use std::collections::HashMap;

use super::{Counter, LATENCY_BUCKETS_MS, day_of, hour_of};
use crate::model::{Attempt, Delivery, DeliveryState, Message};

// How much history each backend keeps and removes at once: one set of windows, so a redb file
// and a PostgreSQL database keep the same.

/// Hours of hourly counters and latency kept (90 days).
pub(crate) const HOURLY_KEEP_HOURS: u64 = 90 * 24;
/// Hours of per-endpoint outcomes kept (30 days): the overview and endpoint pages look at 24 h.
pub(crate) const ENDPOINT_HOURLY_KEEP_HOURS: u64 = 30 * 24;
/// Days of per-application counts kept.
pub(crate) const APP_DAILY_KEEP_DAYS: u64 = 35;
/// Most rows one prune removes per table, so a new hour never stalls the writer.
pub(crate) const PRUNE_MAX: usize = 20_000;
/// Most expired rows of each kind (sessions, portal links, setup tokens) one sweep removes.
pub(crate) const SWEEP_MAX: usize = 1_000;
/// The shortest retention a message may have: younger ones are never looked at by a purge.
pub(crate) const RETENTION_DAYS_MIN: i64 = 1;

/// The bucket of the latency histogram (`LATENCY_BUCKETS_MS`) that holds `ms`.
pub fn latency_bucket(ms: u64) -> u8 {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|&b| ms <= b)
        .unwrap_or(LATENCY_BUCKETS_MS.len() - 1) as u8
}

/// Counter increments made by one write batch.
#[derive(Default)]
pub(crate) struct Deltas {
    /// (hour, counter) -> increment.
    pub(crate) hourly: HashMap<(u64, u8), u64>,
    /// (hour, latency bucket) -> increment.
    pub(crate) latency: HashMap<(u64, u8), u64>,
    /// (hour, endpoint) -> (succeeded, failed, newest failure as (message, attempt) or 0s).
    pub(crate) endpoint_hourly: HashMap<(u64, u128), (u64, u64, u128, u128)>,
    /// (day, app) -> (messages, failed deliveries).
    pub(crate) app_daily: HashMap<(u64, u128), (u64, u64)>,
}

impl Deltas {
    /// A message stored, with `deliveries` routed for it.
    pub(crate) fn ingested(&mut self, msg: &Message, deliveries: usize) {
        let hour = hour_of(msg.created_at);
        *self
            .hourly
            .entry((hour, Counter::Messages as u8))
            .or_default() += 1;
        if deliveries > 0 {
            *self
                .hourly
                .entry((hour, Counter::Deliveries as u8))
                .or_default() += deliveries as u64;
        }
        let key = (day_of(msg.created_at), msg.app_id.0);
        self.app_daily.entry(key).or_default().0 += 1;
    }

    /// An attempt recorded, with its delivery as it now stands.
    pub(crate) fn attempted(&mut self, attempt: &Attempt, delivery: &Delivery) {
        let hour = hour_of(attempt.created_at);
        let ok = attempt.succeeded();
        let counter = if ok {
            Counter::AttemptsSucceeded
        } else {
            Counter::AttemptsFailed
        };
        *self.hourly.entry((hour, counter as u8)).or_default() += 1;
        *self
            .latency
            .entry((hour, latency_bucket(attempt.duration_ms)))
            .or_default() += 1;
        let outcome = self
            .endpoint_hourly
            .entry((hour, attempt.endpoint_id.0))
            .or_default();
        if ok {
            outcome.0 += 1;
        } else {
            outcome.1 += 1;
            // Attempts of a batch are recorded in id order: the last failure is the newest.
            (outcome.2, outcome.3) = (attempt.msg_id.0, attempt.id.0);
        }
        if delivery.state == DeliveryState::Failed {
            *self
                .hourly
                .entry((hour, Counter::DeliveriesFailed as u8))
                .or_default() += 1;
            let key = (day_of(attempt.created_at), delivery.app_id.0);
            self.app_daily.entry(key).or_default().1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_cover_every_duration() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 1);
        assert_eq!(latency_bucket(101), 12);
        assert_eq!(
            latency_bucket(u64::MAX) as usize,
            LATENCY_BUCKETS_MS.len() - 1
        );
        assert!(LATENCY_BUCKETS_MS.windows(2).all(|w| w[0] < w[1]));
    }
}
