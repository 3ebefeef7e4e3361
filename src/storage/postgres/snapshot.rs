//! Reads only a snapshot answers on PostgreSQL: the dashboard's aggregates, the queue listing,
//! the repair pass's scans and dispatch's batched loads: the same operations as
//! `redb/stats.rs`, `redb/check.rs` and `redb/reads.rs`'s `DispatchReads`.
//!
//! Where redb walks an index and gets each row it points at, one statement here walks the
//! index (a `LIMIT` on the index alone, in a subquery) and joins the rows; a walk that may pass
//! over many entries takes them a chunk at a time, so a page never reads more of the index than
//! redb's walk would, give or take one chunk.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::pg_error;
use super::session::{Params, Txn, big, bytes_of, id, id_of, n, n_of, u64_of};
use crate::model::*;
use crate::storage::codec::decode;
use crate::storage::rows::{KeyedRecord, decode_keyed};
use crate::storage::*;

/// Index entries one statement of a queue page reads at most.
const CHUNK_MAX: usize = 256;
/// A message's newest attempts read for every message of a queue page in one statement; a
/// message whose shown deliveries are not all among them reads on `ATTEMPTS_CHUNK` at a time.
const ATTEMPTS_FIRST: usize = 8;
const ATTEMPTS_CHUNK: usize = 64;

/// A count or a limit as a `bigint` parameter.
fn count(v: usize) -> i64 {
    v.min(i64::MAX as usize) as i64
}

/// A nullable id column's value (a column of a LEFT JOIN's missing side).
fn opt_id_of(row: &Row, column: usize) -> Result<Option<u128>, StoreError> {
    let bytes: Option<&[u8]> = row.try_get(column).map_err(pg_error)?;
    bytes
        .map(|b| {
            <[u8; 16]>::try_from(b)
                .map(u128::from_be_bytes)
                .map_err(|_| StoreError::corrupt(format!("an id of {} bytes", b.len())))
        })
        .transpose()
}

/// A record stored without its key's fields (`rows.rs`) in a nullable column, decoded.
fn keyed_of<T: KeyedRecord + DeserializeOwned>(
    key: T::Key,
    row: &Row,
    column: usize,
) -> Result<Option<T>, StoreError> {
    let bytes: Option<&[u8]> = row.try_get(column).map_err(pg_error)?;
    Ok(bytes.map(|b| decode_keyed(key, b)).transpose()?)
}

/// The zero id: what `endpoint_hourly` holds as the newest failure of an hour without one.
fn no_failure() -> Vec<u8> {
    id(0)
}

const STRAY_PARKED: &str = "WITH RECURSIVE walk(endpoint_id, k) AS ( \
         (SELECT endpoint_id, 1::bigint FROM parked WHERE endpoint_id >= $1 \
          ORDER BY endpoint_id LIMIT 1) \
         UNION ALL \
         SELECT (SELECT p.endpoint_id FROM parked p WHERE p.endpoint_id > w.endpoint_id \
                 ORDER BY p.endpoint_id LIMIT 1), w.k + 1 \
         FROM walk w WHERE w.endpoint_id IS NOT NULL AND w.k < $2) \
     SELECT w.endpoint_id, e.rec FROM walk w LEFT JOIN endpoints e ON e.id = w.endpoint_id \
     WHERE w.endpoint_id IS NOT NULL ORDER BY w.endpoint_id";

const STRAY_QUEUED: &str = "SELECT q.lane, q.due_ms, q.msg_id, q.n, \
         NOT EXISTS (SELECT 1 FROM endpoints e WHERE e.id = q.endpoint_id) \
     FROM queue q WHERE (q.lane, q.due_ms, q.msg_id, q.n) >= ($1, $2, $3, $4) \
     ORDER BY q.lane, q.due_ms, q.msg_id, q.n LIMIT $5";

// The queue page's walks: $1 and $2 the inclusive message id bounds, $3 how many index entries.
const ENDPOINT_ASC: &str = "SELECT e.msg_id, e.n, d.rec, m.app_id, m.rec FROM \
         (SELECT msg_id, n FROM endpoint_deliveries \
          WHERE endpoint_id = $4 AND msg_id BETWEEN $1 AND $2 ORDER BY msg_id LIMIT $3) e \
     LEFT JOIN deliveries d ON d.msg_id = e.msg_id AND d.n = e.n \
     LEFT JOIN messages m ON m.id = e.msg_id \
     ORDER BY e.msg_id";
const ENDPOINT_DESC: &str = "SELECT e.msg_id, e.n, d.rec, m.app_id, m.rec FROM \
         (SELECT msg_id, n FROM endpoint_deliveries \
          WHERE endpoint_id = $4 AND msg_id BETWEEN $1 AND $2 ORDER BY msg_id DESC LIMIT $3) e \
     LEFT JOIN deliveries d ON d.msg_id = e.msg_id AND d.n = e.n \
     LEFT JOIN messages m ON m.id = e.msg_id \
     ORDER BY e.msg_id DESC";
// The failures are keyed (message, n): $4 is the n the walk goes on after, at the bound's
// message.
const FAILED_ASC: &str = "SELECT f.msg_id, f.n, d.rec, m.app_id, m.rec FROM \
         (SELECT msg_id, n FROM failed_deliveries \
          WHERE (msg_id, n) > ($1, $4) AND msg_id <= $2 ORDER BY msg_id, n LIMIT $3) f \
     LEFT JOIN deliveries d ON d.msg_id = f.msg_id AND d.n = f.n \
     LEFT JOIN messages m ON m.id = f.msg_id \
     ORDER BY f.msg_id, f.n";
const FAILED_DESC: &str = "SELECT f.msg_id, f.n, d.rec, m.app_id, m.rec FROM \
         (SELECT msg_id, n FROM failed_deliveries \
          WHERE (msg_id, n) < ($2, $4) AND msg_id >= $1 ORDER BY msg_id DESC, n DESC LIMIT $3) f \
     LEFT JOIN deliveries d ON d.msg_id = f.msg_id AND d.n = f.n \
     LEFT JOIN messages m ON m.id = f.msg_id \
     ORDER BY f.msg_id DESC, f.n DESC";
const APP_ASC: &str = "SELECT id, rec FROM messages \
     WHERE app_id = $4 AND id BETWEEN $1 AND $2 ORDER BY id LIMIT $3";
const APP_DESC: &str = "SELECT id, rec FROM messages \
     WHERE app_id = $4 AND id BETWEEN $1 AND $2 ORDER BY id DESC LIMIT $3";
const TIMELINE_ASC: &str = "SELECT t.msg_id, t.app_id, m.rec FROM \
         (SELECT msg_id, app_id FROM message_timeline \
          WHERE msg_id BETWEEN $1 AND $2 ORDER BY msg_id LIMIT $3) t \
     LEFT JOIN messages m ON m.app_id = t.app_id AND m.id = t.msg_id \
     ORDER BY t.msg_id";
const TIMELINE_DESC: &str = "SELECT t.msg_id, t.app_id, m.rec FROM \
         (SELECT msg_id, app_id FROM message_timeline \
          WHERE msg_id BETWEEN $1 AND $2 ORDER BY msg_id DESC LIMIT $3) t \
     LEFT JOIN messages m ON m.app_id = t.app_id AND m.id = t.msg_id \
     ORDER BY t.msg_id DESC";
const MESSAGES_DELIVERIES: &str =
    "SELECT msg_id, n, rec FROM deliveries WHERE msg_id = ANY($1) ORDER BY msg_id, n";
const NEWEST_ATTEMPTS: &str = "SELECT a.msg_id, a.id, a.rec FROM unnest($1::bytea[]) AS w(msg_id) \
     CROSS JOIN LATERAL (SELECT msg_id, id, rec FROM attempts WHERE attempts.msg_id = w.msg_id \
                         ORDER BY id DESC LIMIT $2) a \
     ORDER BY a.msg_id, a.id DESC";
const OLDER_ATTEMPTS: &str = "SELECT msg_id, id, rec FROM attempts \
     WHERE msg_id = $1 AND id <= $2 ORDER BY id DESC LIMIT $3";

impl Snapshot for Txn<'_> {
    fn stray_parked(
        &self,
        from: Option<EndpointId>,
        endpoints_max: usize,
    ) -> Result<StrayParked, StoreError> {
        let start = from.map_or(0, |e| e.0);
        if endpoints_max == 0 {
            return Ok((Vec::new(), Some(EndpointId(start))));
        }
        // Each distinct endpoint of `parked` is one index descent (a skip scan), with its
        // record joined: one lookup per endpoint, however many deliveries it holds.
        let rows = self.rows(STRAY_PARKED, &[&id(start), &count(endpoints_max)])?;
        let mut found = Vec::new();
        let mut last = start;
        for row in &rows {
            let endpoint = id_of(row, 0)?;
            last = endpoint;
            let rec: Option<&[u8]> = row.try_get(1).map_err(pg_error)?;
            let mend = match rec {
                None => Some(Mend::Cancel),
                Some(bytes) => decode::<Endpoint>(bytes)?.ready().then_some(Mend::Release),
            };
            if let Some(mend) = mend {
                found.push((EndpointId(endpoint), mend));
            }
        }
        if rows.len() < endpoints_max {
            return Ok((found, None));
        }
        Ok((found, last.checked_add(1).map(EndpointId)))
    }

    fn stray_queued(
        &self,
        from: QueueCursor,
        entries_max: usize,
    ) -> Result<(Vec<DeliveryId>, Option<QueueCursor>), StoreError> {
        if from.lane >= Priority::ALL.len() || entries_max == 0 {
            return Ok((Vec::new(), (entries_max == 0).then_some(from)));
        }
        let (due, msg, at) = from.from;
        let rows = self.rows(
            STRAY_QUEUED,
            &[
                &(from.lane as i16),
                &big(due),
                &id(msg),
                &n(at),
                &count(entries_max),
            ],
        )?;
        let mut found = Vec::new();
        for row in &rows {
            let gone: bool = row.try_get(4).map_err(pg_error)?;
            if gone {
                found.push(DeliveryId {
                    msg: MessageId(id_of(row, 2)?),
                    n: n_of(row, 3)?,
                });
            }
        }
        // As many as asked for: there may be more, from just after the last one.
        let next = match rows.last() {
            Some(last) if rows.len() >= entries_max => {
                let lane: i16 = last.try_get(0).map_err(pg_error)?;
                let (due, msg, at) = (u64_of(last, 1)?, id_of(last, 2)?, n_of(last, 3)?);
                Some(QueueCursor {
                    lane: lane as usize,
                    from: match at.checked_add(1) {
                        Some(at) => (due, msg, at),
                        None => (due, msg.saturating_add(1), 0),
                    },
                })
            }
            _ => None,
        };
        Ok((found, next))
    }

    fn hourly_counts(&self, from: u64, to: u64) -> Result<Vec<HourCounts>, StoreError> {
        let mut out: Vec<HourCounts> = (from..=to)
            .map(|hour| HourCounts {
                hour,
                ..Default::default()
            })
            .collect();
        if from > to {
            return Ok(out);
        }
        let rows = self.rows(
            "SELECT hour, counter, count FROM hourly WHERE hour BETWEEN $1 AND $2",
            &[&big(from), &big(to)],
        )?;
        for row in &rows {
            let hour = u64_of(row, 0)?;
            let counter: i16 = row.try_get(1).map_err(pg_error)?;
            let v = u64_of(row, 2)?;
            let Some(slot) = hour
                .checked_sub(from)
                .and_then(|i| out.get_mut(usize::try_from(i).ok()?))
            else {
                continue;
            };
            match counter {
                c if c == Counter::Messages as i16 => slot.messages = v,
                c if c == Counter::Deliveries as i16 => slot.deliveries = v,
                c if c == Counter::AttemptsSucceeded as i16 => slot.attempts_succeeded = v,
                c if c == Counter::AttemptsFailed as i16 => slot.attempts_failed = v,
                c if c == Counter::DeliveriesFailed as i16 => slot.deliveries_failed = v,
                _ => {}
            }
        }
        Ok(out)
    }

    fn latency_histogram(&self, from: u64, to: u64) -> Result<Vec<u64>, StoreError> {
        let mut out = vec![0u64; LATENCY_BUCKETS_MS.len()];
        let rows = self.rows(
            "SELECT bucket, sum(count)::bigint FROM latency WHERE hour BETWEEN $1 AND $2 \
             GROUP BY bucket",
            &[&big(from), &big(to)],
        )?;
        for row in &rows {
            let bucket: i16 = row.try_get(0).map_err(pg_error)?;
            if let Some(slot) = usize::try_from(bucket).ok().and_then(|b| out.get_mut(b)) {
                *slot += u64_of(row, 1)?;
            }
        }
        Ok(out)
    }

    fn endpoint_outcomes(&self, from: u64, to: u64) -> Result<Vec<EndpointOutcomes>, StoreError> {
        // Summed per endpoint in the statement; the newest failure is the one with the
        // greatest attempt id (ids are time-ordered).
        let rows = self.rows(
            "SELECT endpoint_id, sum(succeeded)::bigint, sum(failed)::bigint, \
                 (array_agg(last_failed_msg ORDER BY last_failed_attempt DESC) \
                      FILTER (WHERE last_failed_attempt <> $3))[1], \
                 (array_agg(last_failed_attempt ORDER BY last_failed_attempt DESC) \
                      FILTER (WHERE last_failed_attempt <> $3))[1] \
             FROM endpoint_hourly WHERE hour BETWEEN $1 AND $2 GROUP BY endpoint_id",
            &[&big(from), &big(to), &no_failure()],
        )?;
        rows.iter()
            .map(|row| {
                let last_failure = match (opt_id_of(row, 3)?, opt_id_of(row, 4)?) {
                    (Some(msg), Some(attempt)) if attempt != 0 => {
                        Some((MessageId(msg), AttemptId(attempt)))
                    }
                    _ => None,
                };
                Ok(EndpointOutcomes {
                    endpoint_id: EndpointId(id_of(row, 0)?),
                    succeeded: u64_of(row, 1)?,
                    failed: u64_of(row, 2)?,
                    last_failure,
                })
            })
            .collect()
    }

    fn endpoint_hourly(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        // One point lookup per hour, as redb's gets.
        let hours: Vec<i64> = (from..=to).map(big).collect();
        let mut out = vec![(0, 0); hours.len()];
        if hours.is_empty() {
            return Ok(out);
        }
        let rows = self.rows(
            "SELECT hour, succeeded, failed FROM endpoint_hourly \
             WHERE endpoint_id = $1 AND hour = ANY($2)",
            &[&id(endpoint.0), &hours],
        )?;
        for row in &rows {
            let hour = u64_of(row, 0)?;
            if let Some(slot) = hour
                .checked_sub(from)
                .and_then(|i| out.get_mut(usize::try_from(i).ok()?))
            {
                *slot = (u64_of(row, 1)?, u64_of(row, 2)?);
            }
        }
        Ok(out)
    }

    fn message_app(&self, msg: MessageId) -> Result<Option<AppId>, StoreError> {
        let row = self.row(
            "SELECT app_id FROM message_timeline WHERE msg_id = $1",
            &[&id(msg.0)],
        )?;
        row.map(|r| id_of(&r, 0).map(AppId)).transpose()
    }

    fn endpoint_recent_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // The newest `limit` index entries, and the deliveries of those that still exist.
        let rows = self.rows(
            "SELECT e.msg_id, e.n, d.rec FROM \
                 (SELECT msg_id, n FROM endpoint_deliveries WHERE endpoint_id = $1 \
                  ORDER BY msg_id DESC LIMIT $2) e \
             JOIN deliveries d ON d.msg_id = e.msg_id AND d.n = e.n \
             ORDER BY e.msg_id DESC",
            &[&id(endpoint.0), &count(limit)],
        )?;
        rows.iter()
            .map(|row| {
                let key = (id_of(row, 0)?, n_of(row, 1)?);
                Ok(decode_keyed(key, bytes_of(row, 2)?)?)
            })
            .collect()
    }

    fn endpoint_last_failure(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Option<(MessageId, AttemptId)>, StoreError> {
        // The newest hour holding a failure, among one point lookup per hour.
        let hours: Vec<i64> = (from..=to).map(big).collect();
        if hours.is_empty() {
            return Ok(None);
        }
        let row = self.row(
            "SELECT last_failed_msg, last_failed_attempt FROM endpoint_hourly \
             WHERE endpoint_id = $1 AND hour = ANY($2) AND last_failed_attempt <> $3 \
             ORDER BY hour DESC LIMIT 1",
            &[&id(endpoint.0), &hours, &no_failure()],
        )?;
        let Some(row) = row else { return Ok(None) };
        let (msg, attempt) = (id_of(&row, 0)?, id_of(&row, 1)?);
        Ok((attempt != 0).then_some((MessageId(msg), AttemptId(attempt))))
    }

    fn app_daily(&self, app: AppId, day: u64) -> Result<(u64, u64), StoreError> {
        let row = self.row(
            "SELECT messages, failed FROM app_daily WHERE day = $1 AND app_id = $2",
            &[&big(day), &id(app.0)],
        )?;
        match row {
            Some(r) => Ok((u64_of(&r, 0)?, u64_of(&r, 1)?)),
            None => Ok((0, 0)),
        }
    }

    fn queue_page(
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
        let span = Span { from, to, upward };
        let mut walk = Walk {
            q,
            keep,
            rows: Vec::new(),
            scanned: 0,
            first_seen: None,
            last_seen: None,
            stopped_early: false,
            scan_capped: false,
            chunks: 0,
        };
        if let Some(endpoint) = q.endpoint {
            self.walk_endpoint(&mut walk, span, endpoint, keep_message)?;
        } else if q.only_failed {
            self.walk_failed(&mut walk, span, keep_message)?;
        } else if let Some(app) = q.app {
            let app_id = id(app.0);
            self.walk_ids(
                APP_ASC,
                APP_DESC,
                &[&app_id],
                span,
                &mut walk,
                |txn, walk, rows| {
                    let mut messages = Vec::with_capacity(rows.len());
                    for row in rows {
                        let msg = id_of(row, 0)?;
                        let m = bytes_of(row, 1)
                            .and_then(|b| Ok(Some(decode_keyed::<Message>((app.0, msg), b)?)));
                        messages.push((msg, m));
                    }
                    txn.visit_messages(walk, messages, keep_message)
                },
            )?;
        } else {
            self.walk_ids(
                TIMELINE_ASC,
                TIMELINE_DESC,
                &[],
                span,
                &mut walk,
                |txn, walk, rows| {
                    let mut messages = Vec::with_capacity(rows.len());
                    for row in rows {
                        let msg = id_of(row, 0)?;
                        let app = id_of(row, 1)?;
                        messages.push((msg, keyed_of::<Message>((app, msg), row, 2)));
                    }
                    txn.visit_messages(walk, messages, keep_message)
                },
            )?;
        }
        let Walk {
            mut rows,
            first_seen,
            last_seen,
            stopped_early,
            scan_capped,
            ..
        } = walk;

        self.last_attempts(&mut rows)?;

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

    fn dispatch_loads(&self) -> Result<Box<dyn DispatchLoads + '_>, StoreError> {
        Ok(Box::new(Loads {
            session: self,
            endpoints: Default::default(),
            ahead: Default::default(),
            ahead_messages: Default::default(),
        }))
    }
}

/// The stretch of message ids a queue page walks, and which way.
#[derive(Clone, Copy)]
struct Span {
    from: u128,
    to: u128,
    upward: bool,
}

impl Span {
    /// Narrows the span to what follows message `last` in the walk's direction; false when
    /// nothing can.
    fn past(&mut self, last: u128) -> bool {
        if self.upward {
            match last.checked_add(1) {
                Some(k) if k <= self.to => {
                    self.from = k;
                    true
                }
                _ => false,
            }
        } else {
            match last.checked_sub(1) {
                Some(k) if k >= self.from => {
                    self.to = k;
                    true
                }
                _ => false,
            }
        }
    }
}

/// A queue page being filled: redb's `visit` and what it keeps.
struct Walk<'q> {
    q: &'q QueueQuery,
    keep: &'q dyn Fn(&Message, Option<&Delivery>) -> bool,
    rows: Vec<QueueRow>,
    /// Messages visited.
    scanned: usize,
    first_seen: Option<u128>,
    last_seen: Option<u128>,
    stopped_early: bool,
    scan_capped: bool,
    /// Statements run so far.
    chunks: usize,
}

impl Walk<'_> {
    /// Visits one message with the rows found for it; answers whether to stop: before it (the
    /// page is full) or after it (the scan cap).
    fn visit(&mut self, msg_id: u128, found: Vec<(Message, Option<Delivery>)>) -> bool {
        if self.full() {
            self.stopped_early = true;
            return true;
        }
        self.scanned += 1;
        self.first_seen.get_or_insert(msg_id);
        self.last_seen = Some(msg_id);
        for (m, d) in found {
            if (self.keep)(&m, d.as_ref()) {
                self.rows.push(QueueRow {
                    message: m,
                    delivery: d,
                    last_attempt: None,
                });
            }
        }
        if self.scanned >= self.q.scan_max {
            self.scan_capped = true;
            self.stopped_early = true;
            return true;
        }
        false
    }

    fn full(&self) -> bool {
        self.rows.len() >= self.q.limit
    }

    /// How many index entries the next statement reads: enough to fill the page if every
    /// message shows, then larger chunks, never more than the scan cap leaves; one when the
    /// page is full (only whether another message follows is left to learn).
    fn chunk(&mut self) -> usize {
        let want = if self.full() {
            1
        } else if self.chunks == 0 {
            self.q.limit.saturating_add(1)
        } else {
            CHUNK_MAX
        };
        self.chunks += 1;
        let budget = self.q.scan_max.saturating_sub(self.scanned).max(1);
        want.clamp(1, CHUNK_MAX).min(budget)
    }
}

/// A message's rows: one per delivery, or one with none.
fn with_deliveries(m: Message, ds: Vec<Delivery>) -> Vec<(Message, Option<Delivery>)> {
    if ds.is_empty() {
        return vec![(m, None)];
    }
    ds.into_iter().map(|d| (m.clone(), Some(d))).collect()
}

/// The entries of consecutive rows with the same key, as ranges of `rows`.
fn runs<K: PartialEq>(
    rows: &[Row],
    key: impl Fn(&Row) -> Result<K, StoreError>,
) -> Result<Vec<(K, std::ops::Range<usize>)>, StoreError> {
    let mut out: Vec<(K, std::ops::Range<usize>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let k = key(row)?;
        match out.last_mut() {
            Some((last, range)) if *last == k => range.end = i + 1,
            _ => out.push((k, i..i + 1)),
        }
    }
    Ok(out)
}

/// The message `msg` of application `app` among the rows a join on the message id found
/// (app id in column `column`, record in the next): the one redb gets by its key.
fn message_among(
    rows: &[Row],
    msg: u128,
    app: AppId,
    column: usize,
) -> Result<Option<Message>, StoreError> {
    for row in rows {
        if opt_id_of(row, column)? == Some(app.0) {
            return keyed_of((app.0, msg), row, column + 1);
        }
    }
    Ok(None)
}

impl Txn<'_> {
    /// Walks an index keyed by message id over `span`, a chunk at a time: `asc` and `desc`
    /// take the bounds as `$1` and `$2` and how many entries as `$3`, `extra` from `$4`, and
    /// answer rows whose first column is the message id (several rows for one entry are
    /// adjacent). `each` gets each chunk and answers whether the walk stopped.
    fn walk_ids(
        &self,
        asc: &str,
        desc: &str,
        extra: &Params<'_>,
        mut span: Span,
        walk: &mut Walk<'_>,
        mut each: impl FnMut(&Self, &mut Walk<'_>, &[Row]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        loop {
            let chunk = walk.chunk();
            let (lo, hi, limit) = (id(span.from), id(span.to), count(chunk));
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lo, &hi, &limit];
            params.extend_from_slice(extra);
            let rows = self.rows(if span.upward { asc } else { desc }, &params)?;
            if each(self, walk, &rows)? {
                return Ok(());
            }
            let entries = runs(&rows, |r| id_of(r, 0))?;
            let Some((last, _)) = entries.last() else {
                return Ok(());
            };
            if entries.len() < chunk || !span.past(*last) {
                return Ok(());
            }
        }
    }

    /// The queue filtered by endpoint: its deliveries index, each entry's delivery and message
    /// joined.
    fn walk_endpoint(
        &self,
        walk: &mut Walk<'_>,
        span: Span,
        endpoint: EndpointId,
        keep_message: &dyn Fn(&Message) -> bool,
    ) -> Result<(), StoreError> {
        let app = walk.q.app;
        let endpoint_id = id(endpoint.0);
        self.walk_ids(
            ENDPOINT_ASC,
            ENDPOINT_DESC,
            &[&endpoint_id],
            span,
            walk,
            |_, walk, rows| {
                for (msg, range) in runs(rows, |r| id_of(r, 0))? {
                    let group = &rows[range];
                    let n = n_of(&group[0], 1)?;
                    let mut found = Vec::new();
                    if let Some(d) = keyed_of::<Delivery>((msg, n), &group[0], 2)?
                        && app.is_none_or(|a| a == d.app_id)
                        && let Some(m) = message_among(group, msg, d.app_id, 3)?
                        && keep_message(&m)
                    {
                        found.push((m, Some(d)));
                    }
                    if walk.visit(msg, found) {
                        return Ok(true);
                    }
                }
                Ok(false)
            },
        )
    }

    /// The deliveries that failed for good: their index is keyed (message, n), and one
    /// message's failures are one visit, gathered across chunks.
    fn walk_failed(
        &self,
        walk: &mut Walk<'_>,
        span: Span,
        keep_message: &dyn Fn(&Message) -> bool,
    ) -> Result<(), StoreError> {
        let app = walk.q.app;
        let (mut lo, mut hi) = (span.from, span.to);
        let mut after_n: i32 = if span.upward { -1 } else { i32::MAX };
        // The rows of the message being gathered.
        let mut pending: Option<(u128, Vec<Row>)> = None;
        let flush = |walk: &mut Walk<'_>, (msg, rows): (u128, Vec<Row>)| {
            let mut entries = runs(&rows, |r| n_of(r, 1))?;
            entries.sort_unstable_by_key(|(n, _)| *n);
            let mut found = Vec::new();
            for (n, range) in entries {
                let group = &rows[range];
                if let Some(d) = keyed_of::<Delivery>((msg, n), &group[0], 2)?
                    && app.is_none_or(|a| a == d.app_id)
                    && let Some(m) = message_among(group, msg, d.app_id, 3)?
                    && keep_message(&m)
                {
                    found.push((m, Some(d)));
                }
            }
            Ok::<bool, StoreError>(walk.visit(msg, found))
        };
        loop {
            let chunk = walk.chunk();
            let rows = self.rows(
                if span.upward { FAILED_ASC } else { FAILED_DESC },
                &[&id(lo), &id(hi), &count(chunk), &after_n],
            )?;
            let entries = runs(&rows, |r| Ok((id_of(r, 0)?, n_of(r, 1)?)))?;
            for ((msg, _), range) in &entries {
                match &mut pending {
                    Some((m, gathered)) if m == msg => {
                        gathered.extend_from_slice(&rows[range.clone()]);
                    }
                    _ => {
                        if let Some(done) = pending.replace((*msg, rows[range.clone()].to_vec()))
                            && flush(walk, done)?
                        {
                            return Ok(());
                        }
                    }
                }
            }
            let Some(&((msg, n), _)) = entries.last() else {
                break;
            };
            if entries.len() < chunk {
                break;
            }
            if walk.full() {
                // The message gathered is not shown (the page is full): it only tells that
                // the walk stopped before it.
                break;
            }
            if span.upward {
                lo = msg;
            } else {
                hi = msg;
            }
            after_n = self::n(n);
        }
        if let Some(done) = pending.take() {
            flush(walk, done)?;
        }
        Ok(())
    }

    /// Visits a chunk of messages (with the id each was found under; a message whose record
    /// is gone is `None`, one that does not decode an error raised when it is visited) with
    /// their deliveries, read in one statement for the messages `keep_message` keeps.
    fn visit_messages(
        &self,
        walk: &mut Walk<'_>,
        messages: Vec<(u128, Result<Option<Message>, StoreError>)>,
        keep_message: &dyn Fn(&Message) -> bool,
    ) -> Result<bool, StoreError> {
        let kept: Vec<bool> = messages
            .iter()
            .map(|(_, m)| matches!(m, Ok(Some(m)) if keep_message(m)))
            .collect();
        let wanted: Vec<Vec<u8>> = messages
            .iter()
            .zip(&kept)
            .filter(|(_, k)| **k)
            .map(|((msg, _), _)| id(*msg))
            .collect();
        let mut deliveries: HashMap<u128, Vec<Row>> = HashMap::new();
        if !wanted.is_empty() {
            for row in self.rows(MESSAGES_DELIVERIES, &[&wanted])? {
                deliveries.entry(id_of(&row, 0)?).or_default().push(row);
            }
        }
        for ((msg, m), kept) in messages.into_iter().zip(kept) {
            let found = match m? {
                Some(m) if kept => {
                    let mut ds = Vec::new();
                    for row in deliveries.remove(&msg).unwrap_or_default() {
                        ds.push(decode_keyed((msg, n_of(&row, 1)?), bytes_of(&row, 2)?)?);
                    }
                    with_deliveries(m, ds)
                }
                _ => Vec::new(),
            };
            if walk.visit(msg, found) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The newest attempt of each delivery shown: a message's attempts newest first, until
    /// each of its deliveries shown has found its own.
    fn last_attempts(&self, rows: &mut [QueueRow]) -> Result<(), StoreError> {
        let mut wanted: Vec<(u128, Vec<usize>)> = Vec::new();
        let mut slot_of: HashMap<u128, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let Some(d) = &row.delivery else { continue };
            if d.attempts == 0 {
                continue;
            }
            let slot = *slot_of.entry(d.msg_id.0).or_insert_with(|| {
                wanted.push((d.msg_id.0, Vec::new()));
                wanted.len() - 1
            });
            wanted[slot].1.push(i);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let msgs: Vec<Vec<u8>> = wanted.iter().map(|(m, _)| id(*m)).collect();
        let mut newest: HashMap<u128, Vec<Row>> = HashMap::new();
        for row in self.rows(NEWEST_ATTEMPTS, &[&msgs, &count(ATTEMPTS_FIRST)])? {
            newest.entry(id_of(&row, 0)?).or_default().push(row);
        }
        for (msg, mut open) in wanted {
            let mut batch = newest.remove(&msg).unwrap_or_default();
            let mut size = ATTEMPTS_FIRST;
            loop {
                let mut oldest = None;
                for r in &batch {
                    let attempt_id = id_of(r, 1)?;
                    oldest = Some(attempt_id);
                    let a: Attempt = decode_keyed((msg, attempt_id), bytes_of(r, 2)?)?;
                    open.retain(|&i| {
                        let row = &mut rows[i];
                        if row.delivery.as_ref().is_some_and(|d| d.id == a.delivery_id) {
                            row.last_attempt = Some(a.clone());
                            false
                        } else {
                            true
                        }
                    });
                    if open.is_empty() {
                        break;
                    }
                }
                if open.is_empty() || batch.len() < size {
                    break;
                }
                let Some(below) = oldest.and_then(|a| a.checked_sub(1)) else {
                    break;
                };
                size = ATTEMPTS_CHUNK;
                batch = self.rows(OLDER_ATTEMPTS, &[&id(msg), &id(below), &count(size)])?;
            }
        }
        Ok(())
    }
}

/// Dispatch's loads for one scan, remembering the endpoints decoded.
pub(super) struct Loads<'s> {
    session: &'s Txn<'s>,
    endpoints: HashMap<EndpointId, Option<Arc<Endpoint>>>,
    /// What `prefetch` read: each delivery's record, and each message's (app id, record).
    ahead: HashMap<DeliveryId, Vec<u8>>,
    ahead_messages: HashMap<MessageId, (u128, Vec<u8>)>,
}

/// The deliveries of a dispatch with their messages, in one statement.
const PREFETCH: &str = "SELECT d.msg_id, d.n, d.rec, m.app_id, m.rec \
     FROM unnest($1::bytea[], $2::integer[]) AS w(msg_id, n) \
     JOIN deliveries d ON d.msg_id = w.msg_id AND d.n = w.n \
     LEFT JOIN messages m ON m.id = d.msg_id";

impl DispatchLoads for Loads<'_> {
    fn prefetch(&mut self, ids: &[DeliveryId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let msgs: Vec<Vec<u8>> = ids.iter().map(|d| id(d.msg.0)).collect();
        let ns: Vec<i32> = ids.iter().map(|d| n(d.n)).collect();
        for row in self.session.rows(PREFETCH, &[&msgs, &ns])? {
            let key = DeliveryId {
                msg: MessageId(id_of(&row, 0)?),
                n: n_of(&row, 1)?,
            };
            let app: Option<&[u8]> = row.try_get(3).map_err(pg_error)?;
            if app.is_some() {
                self.ahead_messages
                    .insert(key.msg, (id_of(&row, 3)?, bytes_of(&row, 4)?.to_vec()));
            }
            self.ahead.insert(key, bytes_of(&row, 2)?.to_vec());
        }
        Ok(())
    }

    fn delivery(&self, key: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        if let Some(rec) = self.ahead.get(&key) {
            return Ok(Some(decode_keyed((key.msg.0, key.n), rec)?));
        }
        let row = self.session.row(
            "SELECT rec FROM deliveries WHERE msg_id = $1 AND n = $2",
            &[&id(key.msg.0), &n(key.n)],
        )?;
        row.map(|r| Ok(decode_keyed((key.msg.0, key.n), bytes_of(&r, 0)?)?))
            .transpose()
    }

    fn message(&self, app: AppId, msg: MessageId) -> Result<Option<Message>, StoreError> {
        if let Some((stored_app, rec)) = self.ahead_messages.get(&msg)
            && *stored_app == app.0
        {
            return Ok(Some(decode_keyed((app.0, msg.0), rec)?));
        }
        let row = self.session.row(
            "SELECT rec FROM messages WHERE app_id = $1 AND id = $2",
            &[&id(app.0), &id(msg.0)],
        )?;
        row.map(|r| Ok(decode_keyed((app.0, msg.0), bytes_of(&r, 0)?)?))
            .transpose()
    }

    fn endpoint(&mut self, key: EndpointId) -> Result<Option<Arc<Endpoint>>, StoreError> {
        if let Some(known) = self.endpoints.get(&key) {
            return Ok(known.clone());
        }
        let row = self
            .session
            .row("SELECT rec FROM endpoints WHERE id = $1", &[&id(key.0)])?;
        let read = row
            .map(|r| Ok::<_, StoreError>(Arc::new(decode::<Endpoint>(bytes_of(&r, 0)?)?)))
            .transpose()?;
        self.endpoints.insert(key, read.clone());
        Ok(read)
    }
}
