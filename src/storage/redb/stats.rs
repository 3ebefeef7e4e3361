//! Aggregate views kept up to date inside the same commits as the data they summarise:
//! `note_ingest` and `note_attempt` are called by `ingest_message` and `record_attempt`, so the
//! dashboard's overview and queue pages read a few rows instead of scanning history.
//!
//! What is kept (tables in `tables.rs`):
//! - `MESSAGE_TIMELINE` (message -> app): every message in time order, across applications;
//! - `ENDPOINT_DELIVERIES` (endpoint, message) -> n: the queue filtered by endpoint;
//! - `FAILED_DELIVERIES` (message, n): deliveries that used every attempt;
//! - `HOURLY` counters, the `LATENCY` histogram and `ENDPOINT_HOURLY` outcomes per hour;
//! - `APP_DAILY` messages and failed deliveries per application and day.
//!
//! Every key is time-ordered (hours, days and ULIDs), so the hooks append near the end of each
//! table; each hook costs a handful of B-tree operations. Counters older than their window are
//! pruned in bounded batches when a new hour starts. The message indexes point at messages;
//! a reader skips an entry whose message is gone (retention removes history first).
//!
//! Must never: fail a write for a reason of its own (they only add to counters and indexes),
//! or make the hot path scan anything.

use crate::storage::counters::{
    APP_DAILY_KEEP_DAYS, ENDPOINT_HOURLY_KEEP_HOURS, HOURLY_KEEP_HOURS, PRUNE_MAX,
};
use std::collections::HashMap;

use redb::ReadableTable;

use super::reads::{keyed, keyed_entry};
use super::rows::decode_keyed;
use super::tables::*;
use super::{Reader, StoreError, Tx, Writer};
use crate::model::*;
use crate::storage::Cursor;

/// The counters of the `HOURLY` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Counter {
    /// Messages stored.
    Messages = 0,
    /// Deliveries routing made for them.
    Deliveries = 1,
    /// Attempts that succeeded (each ends its delivery).
    AttemptsSucceeded = 2,
    /// Attempts that failed, whether retried or not.
    AttemptsFailed = 3,
    /// Deliveries that failed for good: their last attempt failed.
    DeliveriesFailed = 4,
}

/// Upper bounds (inclusive, in milliseconds) of the latency histogram's buckets; the last bucket
/// takes everything longer. Roughly logarithmic, so percentiles are within ~25%.
pub const LATENCY_BUCKETS_MS: [u64; 24] = [
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    30,
    50,
    70,
    100,
    150,
    200,
    300,
    500,
    700,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    10_000,
    u64::MAX,
];

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Hours since the epoch of a time in microseconds.
pub fn hour_of(us: Micros) -> u64 {
    (us.max(0) / MICROS_PER_HOUR) as u64
}

/// Days since the epoch of a time in microseconds.
pub fn day_of(us: Micros) -> u64 {
    hour_of(us) / 24
}

impl Writer<'_> {
    /// Called once per stored message, after its row and its deliveries (numbered in the
    /// order of `routed`, the endpoint of each) are written.
    pub(super) fn note_ingest(
        &mut self,
        msg: &Message,
        routed: &[EndpointId],
    ) -> Result<(), StoreError> {
        self.hot_mut(MESSAGE_TIMELINE, |t| {
            t.insert(msg.id.0, msg.app_id.0)?;
            Ok(())
        })?;
        self.counters.ingested(msg, routed.len());
        if !routed.is_empty() {
            self.hot_mut(ENDPOINT_DELIVERIES, |index| {
                for (n, endpoint) in routed.iter().enumerate() {
                    index.insert((endpoint.0, msg.id.0), n as u16)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Called once per recorded attempt, with the delivery as it now stands.
    pub(super) fn note_attempt(
        &mut self,
        attempt: &Attempt,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        self.counters.attempted(attempt, delivery);
        if delivery.attempts == 1 && delivery.trigger_type == TriggerType::Manual {
            // Deliveries made outside routing (resend, recover, replay) enter the endpoint's
            // index at their first attempt; routed ones entered it at ingest (writing them
            // again would only rewrite a page).
            self.hot_mut(ENDPOINT_DELIVERIES, |t| {
                t.insert((delivery.endpoint_id.0, delivery.msg_id.0), delivery.id.n)?;
                Ok(())
            })?;
        }
        if delivery.state == DeliveryState::Failed {
            self.table_mut(FAILED_DELIVERIES)?
                .insert((delivery.msg_id.0, delivery.id.n), ())?;
        }
        Ok(())
    }

    /// Adds the batch's counter increments to the stored counters, once per counter, and
    /// prunes old counters when this batch started a new hour.
    pub(super) fn flush_counters(&mut self) -> Result<(), StoreError> {
        let c = std::mem::take(&mut self.counters);
        let mut new_hour = None;
        for (def, deltas, hourly) in [(HOURLY, c.hourly, true), (LATENCY, c.latency, false)] {
            if deltas.is_empty() {
                continue;
            }
            let mut t = self.table_mut(def)?;
            for (key, by) in deltas {
                let old = t.get(key)?.map(|v| v.value());
                if old.is_none() && hourly {
                    new_hour = new_hour.max(Some(key.0));
                }
                t.insert(key, old.unwrap_or(0) + by)?;
            }
        }
        if !c.endpoint_hourly.is_empty() {
            let mut t = self.table_mut(ENDPOINT_HOURLY)?;
            for (key, (good, bad, msg, attempt)) in c.endpoint_hourly {
                let (g, b, m, a) = t.get(key)?.map_or((0, 0, 0, 0), |v| v.value());
                let last = if bad > 0 { (msg, attempt) } else { (m, a) };
                t.insert(key, (g + good, b + bad, last.0, last.1))?;
            }
        }
        if !c.app_daily.is_empty() {
            let mut t = self.table_mut(APP_DAILY)?;
            for (key, (messages, failed)) in c.app_daily {
                let (m, f) = t.get(key)?.map_or((0, 0), |v| v.value());
                t.insert(key, (m + messages, f + failed))?;
            }
        }
        if let Some(hour) = new_hour {
            self.prune_counters(hour)?;
        }
        Ok(())
    }

    /// Drops counters that fell out of their window. Runs when a counter of a new hour is
    /// first written, removing at most `PRUNE_MAX` rows per table.
    fn prune_counters(&mut self, hour: u64) -> Result<(), StoreError> {
        // Keys start with the hour or day, so the old rows are one range at the start.
        macro_rules! prune {
            ($def:expr, $below:expr) => {{
                let mut t = self.table_mut($def)?;
                let mut old = Vec::new();
                for e in t.range(..$below)?.take(PRUNE_MAX) {
                    old.push(e?.0.value());
                }
                for k in old {
                    t.remove(k)?;
                }
            }};
        }
        let hourly_floor = hour.saturating_sub(HOURLY_KEEP_HOURS);
        let endpoint_floor = hour.saturating_sub(ENDPOINT_HOURLY_KEEP_HOURS);
        let day_floor = (hour / 24).saturating_sub(APP_DAILY_KEEP_DAYS);
        prune!(HOURLY, (hourly_floor, 0u8));
        prune!(LATENCY, (hourly_floor, 0u8));
        prune!(ENDPOINT_HOURLY, (endpoint_floor, 0u128));
        prune!(APP_DAILY, (day_floor, 0u128));
        Ok(())
    }
}

/// The hourly counters of one hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourCounts {
    pub hour: u64,
    pub messages: u64,
    pub deliveries: u64,
    pub attempts_succeeded: u64,
    pub attempts_failed: u64,
    pub deliveries_failed: u64,
}

/// One endpoint's attempts over a window of hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointOutcomes {
    pub endpoint_id: EndpointId,
    pub succeeded: u64,
    pub failed: u64,
    /// The newest failed attempt in the window: (message, attempt).
    pub last_failure: Option<(MessageId, AttemptId)>,
}

/// Which rows of the webhook queue to list. Rows are deliveries (a message without any is one
/// row of its own), newest message first; cursors are message ids.
#[derive(Clone, Debug)]
pub struct QueueQuery {
    pub app: Option<AppId>,
    pub endpoint: Option<EndpointId>,
    /// Only deliveries that failed for good can match: read the failure index.
    pub only_failed: bool,
    /// Message ids inside this range (a time window).
    pub within: std::ops::RangeInclusive<u128>,
    /// `After(id)`: older than `id`; `Before(id)`: newer than `id`.
    pub cursor: Cursor,
    /// Rows wanted; a message's rows are never split across pages.
    pub limit: usize,
    /// Index entries one page may pass over before it answers with what it found.
    pub scan_max: usize,
}

/// One row of the queue: a message and one of its deliveries, with the newest attempt.
#[derive(Clone, Debug)]
pub struct QueueRow {
    pub message: Message,
    pub delivery: Option<Delivery>,
    pub last_attempt: Option<Attempt>,
}

#[derive(Clone, Debug)]
pub struct QueuePage {
    pub rows: Vec<QueueRow>,
    /// Continue with older messages from here (`After`), if there may be any.
    pub older: Option<u128>,
    /// Continue with newer messages from here (`Before`), if there may be any.
    pub newer: Option<u128>,
    /// The page stopped because it passed over `scan_max` entries, not because it was full.
    pub scan_capped: bool,
}

impl Reader {
    /// Hourly counters for `from..=to` (hours since the epoch), one entry per hour, zeros where
    /// nothing happened.
    pub fn hourly_counts(&self, from: u64, to: u64) -> Result<Vec<HourCounts>, StoreError> {
        let t = self.tx.table(HOURLY)?;
        let mut out: Vec<HourCounts> = (from..=to)
            .map(|hour| HourCounts {
                hour,
                ..Default::default()
            })
            .collect();
        for e in t.range((from, 0)..=(to, u8::MAX))? {
            let (k, v) = e?;
            let (hour, counter) = k.value();
            let slot = &mut out[(hour - from) as usize];
            let v = v.value();
            match counter {
                c if c == Counter::Messages as u8 => slot.messages = v,
                c if c == Counter::Deliveries as u8 => slot.deliveries = v,
                c if c == Counter::AttemptsSucceeded as u8 => slot.attempts_succeeded = v,
                c if c == Counter::AttemptsFailed as u8 => slot.attempts_failed = v,
                c if c == Counter::DeliveriesFailed as u8 => slot.deliveries_failed = v,
                _ => {}
            }
        }
        Ok(out)
    }

    /// The latency histogram summed over `from..=to`: attempts per bucket of
    /// `LATENCY_BUCKETS_MS`.
    pub fn latency_histogram(&self, from: u64, to: u64) -> Result<Vec<u64>, StoreError> {
        let t = self.tx.table(LATENCY)?;
        let mut out = vec![0u64; LATENCY_BUCKETS_MS.len()];
        for e in t.range((from, 0)..=(to, u8::MAX))? {
            let (k, v) = e?;
            if let Some(slot) = out.get_mut(k.value().1 as usize) {
                *slot += v.value();
            }
        }
        Ok(out)
    }

    /// Every endpoint with an attempt in `from..=to`, with its outcomes summed.
    pub fn endpoint_outcomes(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<EndpointOutcomes>, StoreError> {
        let t = self.tx.table(ENDPOINT_HOURLY)?;
        let mut by_endpoint: HashMap<u128, EndpointOutcomes> = HashMap::new();
        for e in t.range((from, 0)..=(to, u128::MAX))? {
            let (k, v) = e?;
            let (_, endpoint) = k.value();
            let (good, bad, msg, attempt) = v.value();
            let slot = by_endpoint.entry(endpoint).or_insert(EndpointOutcomes {
                endpoint_id: EndpointId(endpoint),
                succeeded: 0,
                failed: 0,
                last_failure: None,
            });
            slot.succeeded += good;
            slot.failed += bad;
            if attempt != 0 && slot.last_failure.is_none_or(|(_, a)| a.0 < attempt) {
                slot.last_failure = Some((MessageId(msg), AttemptId(attempt)));
            }
        }
        Ok(by_endpoint.into_values().collect())
    }

    /// One endpoint's (succeeded, failed) attempts per hour of `from..=to`.
    pub fn endpoint_hourly(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let t = self.tx.table(ENDPOINT_HOURLY)?;
        let mut out = Vec::with_capacity((to.saturating_sub(from) + 1) as usize);
        for hour in from..=to {
            let (good, bad, _, _) = t
                .get((hour, endpoint.0))?
                .map_or((0, 0, 0, 0), |v| v.value());
            out.push((good, bad));
        }
        Ok(out)
    }

    /// The application a message belongs to, from the timeline (any application).
    pub fn message_app(&self, msg: MessageId) -> Result<Option<AppId>, StoreError> {
        let t = self.tx.table(MESSAGE_TIMELINE)?;
        Ok(t.get(msg.0)?.map(|v| AppId(v.value())))
    }

    /// The newest `limit` deliveries made to an endpoint (one per message: the latest), newest
    /// first.
    pub fn endpoint_recent_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let index = self.tx.table(ENDPOINT_DELIVERIES)?;
        let deliveries = self.tx.table(DELIVERIES)?;
        let mut out = Vec::new();
        for e in index
            .range((endpoint.0, 0)..=(endpoint.0, u128::MAX))?
            .rev()
            .take(limit)
        {
            let (k, n) = e?;
            let key = (k.value().1, n.value());
            out.extend(keyed(key, deliveries.get(key)?)?);
        }
        Ok(out)
    }

    /// The newest failed attempt of an endpoint in hours `from..=to`: (message, attempt).
    pub fn endpoint_last_failure(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Option<(MessageId, AttemptId)>, StoreError> {
        let t = self.tx.table(ENDPOINT_HOURLY)?;
        for hour in (from..=to).rev() {
            if let Some(v) = t.get((hour, endpoint.0))? {
                let (_, _, msg, attempt) = v.value();
                if attempt != 0 {
                    return Ok(Some((MessageId(msg), AttemptId(attempt))));
                }
            }
        }
        Ok(None)
    }

    /// (messages, deliveries failed for good) of an application on one day.
    pub fn app_daily(&self, app: AppId, day: u64) -> Result<(u64, u64), StoreError> {
        let t = self.tx.table(APP_DAILY)?;
        Ok(t.get((day, app.0))?.map_or((0, 0), |v| v.value()))
    }

    /// A page of the webhook queue. `keep_message` passes over a message before its deliveries
    /// are read (event type); `keep` decides which rows belong (state...). The query picks the
    /// narrowest index: the endpoint's deliveries, the failures, the application's messages, or
    /// the timeline of every message.
    pub fn queue_page(
        &self,
        q: &QueueQuery,
        keep_message: &dyn Fn(&Message) -> bool,
        keep: &dyn Fn(&Message, Option<&Delivery>) -> bool,
    ) -> Result<QueuePage, StoreError> {
        let (lo, hi) = (*q.within.start(), *q.within.end());
        // Which stretch of message ids to walk, and which way: newest first, except when
        // paging back towards newer messages, which walks up and is flipped at the end.
        let (from, to, upward) = match q.cursor {
            Cursor::First => (lo, hi, false),
            Cursor::After(k) => (lo, k.saturating_sub(1).min(hi), false),
            Cursor::Before(k) => (k.saturating_add(1).max(lo), hi, true),
        };
        let empty = QueuePage {
            rows: Vec::new(),
            older: None,
            newer: match q.cursor {
                Cursor::After(k) => Some(k.saturating_sub(1)),
                _ => None,
            },
            scan_capped: false,
        };
        if from > to {
            return Ok(empty);
        }
        let messages = self.tx.table(MESSAGES)?;
        let deliveries = self.tx.table(DELIVERIES)?;
        let attempts = self.tx.table(ATTEMPTS)?;
        let load_message = |app: u128, msg: u128| -> Result<Option<Message>, StoreError> {
            keyed((app, msg), messages.get((app, msg))?)
        };
        let load_delivery = |msg: u128, n: u16| -> Result<Option<Delivery>, StoreError> {
            keyed((msg, n), deliveries.get((msg, n))?)
        };
        let all_deliveries = |msg: u128| -> Result<Vec<Delivery>, StoreError> {
            let mut out = Vec::new();
            for e in deliveries.range((msg, 0)..=(msg, u16::MAX))? {
                out.push(keyed_entry(e)?);
            }
            Ok(out)
        };

        // Walk the chosen index as a sequence of (message id, rows of that message).
        let mut rows: Vec<QueueRow> = Vec::new();
        let mut scanned = 0usize;
        let mut first_seen: Option<u128> = None;
        let mut last_seen: Option<u128> = None;
        let mut stopped_early = false;
        let mut scan_capped = false;
        let mut visit = |msg_id: u128,
                         found: Vec<(Message, Option<Delivery>)>,
                         rows: &mut Vec<QueueRow>|
         -> bool {
            // Answers whether to stop before this message (the page is full).
            if rows.len() >= q.limit {
                stopped_early = true;
                return true;
            }
            scanned += 1;
            first_seen.get_or_insert(msg_id);
            last_seen = Some(msg_id);
            for (m, d) in found {
                if keep(&m, d.as_ref()) {
                    rows.push(QueueRow {
                        message: m,
                        delivery: d,
                        last_attempt: None,
                    });
                }
            }
            if scanned >= q.scan_max {
                scan_capped = true;
                stopped_early = true;
                return true;
            }
            false
        };
        macro_rules! walk {
            ($iter:expr, $body:expr) => {{
                let iter = $iter;
                if upward {
                    for e in iter {
                        if $body(e?)? {
                            break;
                        }
                    }
                } else {
                    for e in iter.rev() {
                        if $body(e?)? {
                            break;
                        }
                    }
                }
            }};
        }
        if let Some(endpoint) = q.endpoint {
            let index = self.tx.table(ENDPOINT_DELIVERIES)?;
            walk!(
                index.range((endpoint.0, from)..=(endpoint.0, to))?,
                |(k, v): (
                    redb::AccessGuard<'_, (u128, u128)>,
                    redb::AccessGuard<'_, u16>
                )|
                 -> Result<bool, StoreError> {
                    let msg = k.value().1;
                    let mut found = Vec::new();
                    if let Some(d) = load_delivery(msg, v.value())?
                        && q.app.is_none_or(|a| a == d.app_id)
                        && let Some(m) = load_message(d.app_id.0, msg)?
                        && keep_message(&m)
                    {
                        found.push((m, Some(d)));
                    }
                    Ok(visit(msg, found, &mut rows))
                }
            );
        } else if q.only_failed {
            // Failures of one message are adjacent: group them before visiting.
            let index = self.tx.table(FAILED_DELIVERIES)?;
            let mut pending: Option<(u128, Vec<u16>)> = None;
            let mut flush =
                |group: (u128, Vec<u16>), rows: &mut Vec<QueueRow>| -> Result<bool, StoreError> {
                    let (msg, mut ns) = group;
                    ns.sort_unstable();
                    let mut found = Vec::new();
                    for n in ns {
                        if let Some(d) = load_delivery(msg, n)?
                            && q.app.is_none_or(|a| a == d.app_id)
                            && let Some(m) = load_message(d.app_id.0, msg)?
                            && keep_message(&m)
                        {
                            found.push((m, Some(d)));
                        }
                    }
                    Ok(visit(msg, found, rows))
                };
            let mut stop = false;
            walk!(index.range((from, 0)..=(to, u16::MAX))?, |(k, _): (
                redb::AccessGuard<'_, (u128, u16)>,
                redb::AccessGuard<'_, ()>
            )|
             -> Result<
                bool,
                StoreError,
            > {
                let (msg, n) = k.value();
                match &mut pending {
                    Some((m, ns)) if *m == msg => ns.push(n),
                    _ => {
                        if let Some(group) = pending.replace((msg, vec![n]))
                            && flush(group, &mut rows)?
                        {
                            stop = true;
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            });
            if !stop && let Some(group) = pending.take() {
                flush(group, &mut rows)?;
            }
        } else if let Some(app) = q.app {
            walk!(messages.range((app.0, from)..=(app.0, to))?, |(k, v): (
                redb::AccessGuard<'_, (u128, u128)>,
                redb::AccessGuard<'_, &[u8]>
            )|
             -> Result<
                bool,
                StoreError,
            > {
                let msg = k.value().1;
                let m: Message = decode_keyed(k.value(), v.value())?;
                let found = if keep_message(&m) {
                    with_deliveries(m, all_deliveries(msg)?)
                } else {
                    Vec::new()
                };
                Ok(visit(msg, found, &mut rows))
            });
        } else {
            let timeline = self.tx.table(MESSAGE_TIMELINE)?;
            walk!(timeline.range(from..=to)?, |(k, v): (
                redb::AccessGuard<'_, u128>,
                redb::AccessGuard<'_, u128>
            )|
             -> Result<bool, StoreError> {
                let msg = k.value();
                let found = match load_message(v.value(), msg)? {
                    Some(m) if keep_message(&m) => with_deliveries(m, all_deliveries(msg)?),
                    Some(_) => Vec::new(),
                    None => Vec::new(),
                };
                Ok(visit(msg, found, &mut rows))
            });
        }

        // The newest attempt of each delivery shown: a message's attempts are one range.
        for row in rows.iter_mut() {
            let Some(d) = &row.delivery else { continue };
            if d.attempts == 0 {
                continue;
            }
            for e in attempts
                .range((d.msg_id.0, 0)..=(d.msg_id.0, u128::MAX))?
                .rev()
            {
                let a: Attempt = keyed_entry(e)?;
                if a.delivery_id == d.id {
                    row.last_attempt = Some(a);
                    break;
                }
            }
        }

        // Cursors: where the walk stopped, and where it began.
        let (older, newer) = if upward {
            rows.reverse();
            let newer = if stopped_early { last_seen } else { None };
            let older = first_seen.or(Some(from));
            (older, newer)
        } else {
            let older = if stopped_early { last_seen } else { None };
            let newer = match q.cursor {
                Cursor::First => None,
                _ => first_seen.or(Some(to)),
            };
            (older, newer)
        };
        // When the walk stopped because the page was full, the cursor is the last message
        // *shown*; when the scan cap stopped it, the last message *examined*.
        Ok(QueuePage {
            rows,
            older,
            newer,
            scan_capped,
        })
    }
}

/// A message's rows: one per delivery, or one with none.
fn with_deliveries(m: Message, ds: Vec<Delivery>) -> Vec<(Message, Option<Delivery>)> {
    if ds.is_empty() {
        return vec![(m, None)];
    }
    ds.into_iter().map(|d| (m.clone(), Some(d))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_days_count_from_the_epoch() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(MICROS_PER_HOUR - 1), 0);
        assert_eq!(hour_of(MICROS_PER_HOUR), 1);
        assert_eq!(day_of(25 * MICROS_PER_HOUR), 1);
        assert_eq!(hour_of(-5), 0);
    }
}
