//! The mutations on PostgreSQL: the same operations as the redb backend's `Writer` methods
//! (`redb/ops.rs` and beside it), keeping the same indexes and aggregates in step, over the
//! tables of `schema_v1.sql`.
//!
//! Where redb loops over rows, a statement here takes them all at once (arrays `unnest`ed),
//! so a batch costs a few round trips, not one per row. Every delivery write, one or many,
//! goes through `put_deliveries`, which keeps the queue, the parked list and the unique keys
//! in step with the records as redb's `put_delivery` does.

use crate::storage::counters::{
    APP_DAILY_KEEP_DAYS, ENDPOINT_HOURLY_KEEP_HOURS, HOURLY_KEEP_HOURS, PRUNE_MAX,
    RETENTION_DAYS_MIN, SWEEP_MAX,
};
use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Row;

use super::session::{Params, Txn, big, bytes_of, id, id_of, n, n_of, u64_of};
use crate::model::*;
use crate::storage::codec::{Record, decode, encode};
use crate::storage::rows::{decode_keyed, encode_keyed};
use crate::storage::*;

/// An application's endpoints and triggers, as routing reads them, by application.
pub(super) type RoutingCache = HashMap<AppId, Arc<(Vec<Endpoint>, Vec<Trigger>)>>;

/// A queue lane as its column holds it.
fn lane_of(p: Priority) -> i16 {
    super::session::lane(p)
}

/// A unique key as the `unique_keys.key` column holds it. A key is rendered from a message's
/// payload and may hold a NUL, which PostgreSQL's `text` refuses: `\` is doubled and NUL
/// written `\0`, so distinct keys stay distinct (the column is only ever compared, and only
/// here).
pub(super) fn key_text(key: &str) -> std::borrow::Cow<'_, str> {
    if !key.contains(['\0', '\\']) {
        return std::borrow::Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A hash key as its `bytea` column holds it.
fn hash_of(row: &Row, column: usize) -> Result<[u8; 32], StoreError> {
    let bytes = bytes_of(row, column)?;
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("a hash of {} bytes", bytes.len())))
}

/// The record in `column` of `row`.
fn record_of<T: Record>(row: &Row, column: usize) -> Result<T, StoreError> {
    Ok(decode(bytes_of(row, column)?)?)
}

/// Writes deliveries, new and changed, with every index that follows them (see
/// `put_deliveries`). Each sub-statement touches rows of its own: a delivery's queue row is
/// either deleted or put, its parked row either deleted or inserted, never both.
const PUT_DELIVERIES: &str = "\
WITH dn AS (
    INSERT INTO deliveries (msg_id, n, rec)
    SELECT * FROM unnest($1::bytea[], $2::integer[], $3::bytea[])
), du AS (
    UPDATE deliveries AS d SET rec = x.rec
    FROM unnest($4::bytea[], $5::integer[], $6::bytea[]) AS x(msg_id, n, rec)
    WHERE d.msg_id = x.msg_id AND d.n = x.n
), qd AS (
    DELETE FROM queue AS q USING unnest($7::bytea[], $8::integer[]) AS x(msg_id, n)
    WHERE q.msg_id = x.msg_id AND q.n = x.n
), qp AS (
    INSERT INTO queue (msg_id, n, lane, due_ms, endpoint_id)
    SELECT * FROM unnest($9::bytea[], $10::integer[], $11::smallint[], $12::bigint[], $13::bytea[])
    ON CONFLICT (msg_id, n) DO UPDATE SET lane = excluded.lane, due_ms = excluded.due_ms,
        endpoint_id = excluded.endpoint_id, lease_until = DEFAULT, lease_node = DEFAULT
), pd AS (
    DELETE FROM parked AS p
    USING unnest($14::bytea[], $15::bytea[], $16::integer[]) AS x(endpoint_id, msg_id, n)
    WHERE p.endpoint_id = x.endpoint_id AND p.msg_id = x.msg_id AND p.n = x.n
), pp AS (
    INSERT INTO parked (endpoint_id, msg_id, n)
    SELECT * FROM unnest($17::bytea[], $18::bytea[], $19::integer[])
    ON CONFLICT DO NOTHING
), kd AS (
    DELETE FROM unique_keys AS u
    USING unnest($20::bytea[], $21::text[], $22::bytea[], $23::integer[])
        AS x(endpoint_id, key, msg_id, n)
    WHERE u.endpoint_id = x.endpoint_id AND u.key = x.key AND u.msg_id = x.msg_id AND u.n = x.n
)
SELECT 1";

/// Removes purged messages with their deliveries, attempts and every index entry pointing at
/// them (redb's `remove_message`, for many messages at once).
const REMOVE_MESSAGES: &str = "\
WITH a AS (
    DELETE FROM attempts WHERE msg_id = ANY($1::bytea[])
), ea AS (
    DELETE FROM endpoint_attempts AS e USING unnest($2::bytea[], $3::bytea[]) AS x(ep, id)
    WHERE e.endpoint_id = x.ep AND e.attempt_id = x.id
), d AS (
    DELETE FROM deliveries WHERE msg_id = ANY($1::bytea[])
), ed AS (
    DELETE FROM endpoint_deliveries AS e USING unnest($4::bytea[], $5::bytea[]) AS x(ep, msg)
    WHERE e.endpoint_id = x.ep AND e.msg_id = x.msg
), f AS (
    DELETE FROM failed_deliveries AS f USING unnest($6::bytea[], $7::integer[]) AS x(msg, n)
    WHERE f.msg_id = x.msg AND f.n = x.n
), m AS (
    DELETE FROM messages AS m USING unnest($8::bytea[], $1::bytea[]) AS x(app, id)
    WHERE m.app_id = x.app AND m.id = x.id
)
DELETE FROM message_timeline WHERE msg_id = ANY($1::bytea[])";

/// Drops counters that fell out of their window: `$1` the first hour (or day) kept, `$2` the
/// most rows removed.
const PRUNES: [&str; 4] = [
    "DELETE FROM hourly WHERE (hour, counter) IN (SELECT hour, counter FROM hourly \
     WHERE hour < $1 ORDER BY hour, counter LIMIT $2)",
    "DELETE FROM latency WHERE (hour, bucket) IN (SELECT hour, bucket FROM latency \
     WHERE hour < $1 ORDER BY hour, bucket LIMIT $2)",
    "DELETE FROM endpoint_hourly WHERE (hour, endpoint_id) IN (SELECT hour, endpoint_id \
     FROM endpoint_hourly WHERE hour < $1 ORDER BY hour, endpoint_id LIMIT $2)",
    "DELETE FROM app_daily WHERE (day, app_id) IN (SELECT day, app_id FROM app_daily \
     WHERE day < $1 ORDER BY day, app_id LIMIT $2)",
];

/// The arrays of one `PUT_DELIVERIES`.
#[derive(Default)]
struct DeliveryWrites {
    new: (Vec<Vec<u8>>, Vec<i32>, Vec<Vec<u8>>),
    changed: (Vec<Vec<u8>>, Vec<i32>, Vec<Vec<u8>>),
    unqueue: (Vec<Vec<u8>>, Vec<i32>),
    queue: (Vec<Vec<u8>>, Vec<i32>, Vec<i16>, Vec<i64>, Vec<Vec<u8>>),
    unpark: (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<i32>),
    park: (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<i32>),
    release: (Vec<Vec<u8>>, Vec<String>, Vec<Vec<u8>>, Vec<i32>),
}

impl Txn<'_> {
    /// `rows` for a statement that changes rows and answers some (`RETURNING`); marks the job
    /// as having written, as `exec` does.
    fn exec_rows(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.dirty = true;
        self.rows(sql, params)
    }

    /// Writes the batch's counter sums, once per counter, before the commit, and prunes old
    /// counters when this batch started a new hour. Each is added to what is stored (never
    /// read and written back), so two nodes' batches never overwrite each other's counts.
    /// Keys are written in order, so two nodes lock the rows they share in the same order.
    pub(super) fn flush_counters(&mut self) -> Result<(), StoreError> {
        let c = std::mem::take(&mut self.counters);
        let mut new_hour: Option<u64> = None;
        if !c.hourly.is_empty() {
            let (hours, counters, counts) = counter_arrays(c.hourly);
            // `xmax = 0`: the row was inserted, not updated: the first count of its hour.
            let rows = self.exec_rows(
                "INSERT INTO hourly AS t (hour, counter, count) \
                 SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[]) \
                 ON CONFLICT (hour, counter) DO UPDATE SET count = t.count + excluded.count \
                 RETURNING t.hour, (t.xmax = 0)",
                &[&hours, &counters, &counts],
            )?;
            for row in &rows {
                let inserted: bool = row.try_get(1).map_err(super::pg_error)?;
                if inserted {
                    new_hour = new_hour.max(Some(u64_of(row, 0)?));
                }
            }
        }
        if !c.latency.is_empty() {
            let (hours, buckets, counts) = counter_arrays(c.latency);
            self.exec(
                "INSERT INTO latency AS t (hour, bucket, count) \
                 SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[]) \
                 ON CONFLICT (hour, bucket) DO UPDATE SET count = t.count + excluded.count",
                &[&hours, &buckets, &counts],
            )?;
        }
        if !c.endpoint_hourly.is_empty() {
            let mut sums: Vec<_> = c.endpoint_hourly.into_iter().collect();
            sums.sort_unstable_by_key(|(key, _)| *key);
            let mut a = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut last = (Vec::new(), Vec::new());
            for ((hour, endpoint), (good, bad, msg, attempt)) in sums {
                a.0.push(big(hour));
                a.1.push(id(endpoint));
                a.2.push(big(good));
                a.3.push(big(bad));
                last.0.push(id(msg));
                last.1.push(id(attempt));
            }
            // The newest failure wins; ids are time-ordered, and 16 big-endian bytes compare
            // as the numbers they are.
            self.exec(
                "INSERT INTO endpoint_hourly AS t \
                 (hour, endpoint_id, succeeded, failed, last_failed_msg, last_failed_attempt) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], \
                     $5::bytea[], $6::bytea[]) \
                 ON CONFLICT (hour, endpoint_id) DO UPDATE SET \
                     succeeded = t.succeeded + excluded.succeeded, \
                     failed = t.failed + excluded.failed, \
                     last_failed_msg = CASE WHEN excluded.failed > 0 \
                         AND excluded.last_failed_attempt > t.last_failed_attempt \
                         THEN excluded.last_failed_msg ELSE t.last_failed_msg END, \
                     last_failed_attempt = CASE WHEN excluded.failed > 0 \
                         AND excluded.last_failed_attempt > t.last_failed_attempt \
                         THEN excluded.last_failed_attempt ELSE t.last_failed_attempt END",
                &[&a.0, &a.1, &a.2, &a.3, &last.0, &last.1],
            )?;
        }
        if !c.app_daily.is_empty() {
            let mut sums: Vec<_> = c.app_daily.into_iter().collect();
            sums.sort_unstable_by_key(|(key, _)| *key);
            let mut a = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((day, app), (messages, failed)) in sums {
                a.0.push(big(day));
                a.1.push(id(app));
                a.2.push(big(messages));
                a.3.push(big(failed));
            }
            self.exec(
                "INSERT INTO app_daily AS t (day, app_id, messages, failed) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[]) \
                 ON CONFLICT (day, app_id) DO UPDATE SET \
                     messages = t.messages + excluded.messages, failed = t.failed + excluded.failed",
                &[&a.0, &a.1, &a.2, &a.3],
            )?;
        }
        if let Some(hour) = new_hour {
            let floors = [
                hour.saturating_sub(HOURLY_KEEP_HOURS),
                hour.saturating_sub(HOURLY_KEEP_HOURS),
                hour.saturating_sub(ENDPOINT_HOURLY_KEEP_HOURS),
                (hour / 24).saturating_sub(APP_DAILY_KEEP_DAYS),
            ];
            for (sql, floor) in PRUNES.iter().zip(floors) {
                self.exec(sql, &[&big(floor), &(PRUNE_MAX as i64)])?;
            }
        }
        Ok(())
    }

    /// An application's endpoints and triggers, read once per batch (as redb's `routing_of`).
    fn routing_of(&mut self, app: AppId) -> Result<Arc<(Vec<Endpoint>, Vec<Trigger>)>, StoreError> {
        if let Some(known) = self.routing.get(&app) {
            return Ok(known.clone());
        }
        let read = Arc::new((self.app_endpoints(app)?, self.app_triggers(app)?));
        self.routing.insert(app, read.clone());
        Ok(read)
    }

    /// Writes deliveries, each with the record it replaces (`None`: a new delivery), and keeps
    /// their indexes in step (redb's `put_delivery`, for many at once): a pending delivery with
    /// a due time has a queue row (lane, due); a pending one without is parked under its
    /// endpoint; with `release_keys`, one that stops being pending releases the unique key it
    /// holds (`false`: redb's `put_delivery_keeping_key`). Each delivery appears once.
    fn put_deliveries(
        &mut self,
        changes: &[(&Delivery, Option<&Delivery>)],
        release_keys: bool,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut w = DeliveryWrites::default();
        for &(d, old) in changes {
            let (msg, k) = (id(d.id.msg.0), n(d.id.n));
            let was = old.filter(|o| o.state == DeliveryState::Pending);
            if release_keys
                && was.is_some()
                && d.state != DeliveryState::Pending
                && let Some(key) = &d.unique_key
            {
                w.release.0.push(id(d.endpoint_id.0));
                w.release.1.push(key_text(key).into_owned());
                w.release.2.push(msg.clone());
                w.release.3.push(k);
            }
            let was_queued = was.is_some_and(|o| o.due_ms.is_some());
            let was_parked = was.filter(|o| o.due_ms.is_none()).map(|o| o.endpoint_id);
            let pending = d.state == DeliveryState::Pending;
            let parked = pending && d.due_ms.is_none();
            match d.due_ms.filter(|_| pending) {
                // Moves the row if there is one: the old entry goes, the new one comes.
                Some(due) => {
                    w.queue.0.push(msg.clone());
                    w.queue.1.push(k);
                    w.queue.2.push(lane_of(d.priority));
                    w.queue.3.push(big(due));
                    w.queue.4.push(id(d.endpoint_id.0));
                }
                None if was_queued => {
                    w.unqueue.0.push(msg.clone());
                    w.unqueue.1.push(k);
                }
                None => {}
            }
            // Parked under the same endpoint before and after: the row stays as it is.
            let same_parked = parked && was_parked == Some(d.endpoint_id);
            if let Some(endpoint) = was_parked
                && !same_parked
            {
                w.unpark.0.push(id(endpoint.0));
                w.unpark.1.push(msg.clone());
                w.unpark.2.push(k);
            }
            if parked && !same_parked {
                w.park.0.push(id(d.endpoint_id.0));
                w.park.1.push(msg.clone());
                w.park.2.push(k);
            }
            let rows = if old.is_some() {
                &mut w.changed
            } else {
                &mut w.new
            };
            rows.0.push(msg);
            rows.1.push(k);
            rows.2.push(encode_keyed(d));
        }
        self.exec(
            PUT_DELIVERIES,
            &[
                &w.new.0,
                &w.new.1,
                &w.new.2,
                &w.changed.0,
                &w.changed.1,
                &w.changed.2,
                &w.unqueue.0,
                &w.unqueue.1,
                &w.queue.0,
                &w.queue.1,
                &w.queue.2,
                &w.queue.3,
                &w.queue.4,
                &w.unpark.0,
                &w.unpark.1,
                &w.unpark.2,
                &w.park.0,
                &w.park.1,
                &w.park.2,
                &w.release.0,
                &w.release.1,
                &w.release.2,
                &w.release.3,
            ],
        )?;
        Ok(())
    }

    /// Writes one changed delivery (redb's `put_delivery`).
    fn put_delivery(&mut self, d: &Delivery, old: &Delivery) -> Result<(), StoreError> {
        self.put_deliveries(&[(d, Some(old))], true)
    }

    /// Makes `newer` the holder of (endpoint, key), superseding the pending delivery that held
    /// it.
    fn supersede(
        &mut self,
        endpoint: EndpointId,
        key: &str,
        newer: DeliveryId,
    ) -> Result<(), StoreError> {
        if let Some(holder) = self.take_unique_key(endpoint, key, newer)?
            && let Some(old) = self
                .delivery(holder)?
                .filter(|d| d.state == DeliveryState::Pending)
        {
            let mut d = old.clone();
            d.state = DeliveryState::Superseded;
            d.due_ms = None;
            d.updated_at = now_micros();
            // The key now belongs to `newer`: write the old delivery without releasing it.
            self.put_deliveries(&[(&d, Some(&old))], false)?;
        }
        Ok(())
    }

    /// Points (endpoint, key) at `newer`; answers the delivery it pointed at before. The row
    /// is locked while it is read, and a row another node inserts meanwhile is found by the
    /// next turn, so the holder answered is the one replaced.
    fn take_unique_key(
        &mut self,
        endpoint: EndpointId,
        key: &str,
        newer: DeliveryId,
    ) -> Result<Option<DeliveryId>, StoreError> {
        let (ep, msg, k) = (id(endpoint.0), id(newer.msg.0), n(newer.n));
        let key = key_text(key);
        let key: &str = &key;
        for _ in 0..3 {
            let held = self.row(
                "SELECT msg_id, n FROM unique_keys WHERE endpoint_id = $1 AND key = $2 FOR UPDATE",
                &[&ep, &key],
            )?;
            if let Some(row) = held {
                let holder = DeliveryId {
                    msg: MessageId(id_of(&row, 0)?),
                    n: n_of(&row, 1)?,
                };
                self.exec(
                    "UPDATE unique_keys SET msg_id = $3, n = $4 \
                     WHERE endpoint_id = $1 AND key = $2",
                    &[&ep, &key, &msg, &k],
                )?;
                return Ok(Some(holder));
            }
            let inserted = self.exec(
                "INSERT INTO unique_keys (endpoint_id, key, msg_id, n) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (endpoint_id, key) DO NOTHING",
                &[&ep, &key, &msg, &k],
            )?;
            if inserted == 1 {
                return Ok(None);
            }
        }
        Err(StoreError::backend(
            "unique key",
            "taken and released by other writers in turn",
        ))
    }

    /// Stores a new message row; `Conflict::EventId` when another node stored one with the
    /// same eventId after this job looked (the UNIQUE constraint, waited for, says so without
    /// failing the transaction).
    fn insert_message(&mut self, msg: &Message) -> Result<(), StoreError> {
        let (app, msg_id, rec) = (id(msg.app_id.0), id(msg.id.0), encode_keyed(msg));
        for _ in 0..3 {
            let stored = self.exec(
                "INSERT INTO messages (app_id, id, event_id, rec) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app_id, event_id) DO NOTHING",
                &[&app, &msg_id, &msg.event_id, &rec],
            )?;
            if stored == 1 {
                return Ok(());
            }
            if let Some(event_id) = &msg.event_id
                && let Some(existing) = self.message_id_by_event_id(msg.app_id, event_id)?
            {
                return Err(StoreError::Conflict(Conflict::EventId(existing)));
            }
        }
        Err(StoreError::backend(
            "message",
            "its eventId was taken and released by other writers in turn",
        ))
    }

    /// The deliveries parked for an endpoint, at most `limit`, in the order redb's
    /// `parked_deliveries` answers them, each with its record if it has one.
    fn parked_with_records(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<(DeliveryId, Option<Delivery>)>, StoreError> {
        let rows = self.rows(
            "SELECT p.msg_id, p.n, d.rec FROM parked AS p \
             LEFT JOIN deliveries AS d ON d.msg_id = p.msg_id AND d.n = p.n \
             WHERE p.endpoint_id = $1 ORDER BY p.msg_id, p.n LIMIT $2",
            &[&id(endpoint.0), &(limit.min(i64::MAX as usize) as i64)],
        )?;
        rows.iter()
            .map(|row| {
                let key = (id_of(row, 0)?, n_of(row, 1)?);
                let rec: Option<&[u8]> = row.try_get(2).map_err(super::pg_error)?;
                let id = DeliveryId {
                    msg: MessageId(key.0),
                    n: key.1,
                };
                Ok((id, rec.map(|r| decode_keyed(key, r)).transpose()?))
            })
            .collect()
    }

    /// Removes up to `SWEEP_MAX` rows of a table keyed by hash whose record's expiry is
    /// before `now`, looking at them in key order (as redb's `sweep`).
    fn sweep<T: Record>(
        &mut self,
        select: &str,
        delete: &str,
        now: Micros,
        expiry: impl Fn(&T) -> Micros,
    ) -> Result<usize, StoreError> {
        // In chunks by key: the table is never sent whole to find `SWEEP_MAX` expired rows.
        const CHUNK: i64 = 500;
        let mut expired: Vec<Vec<u8>> = Vec::new();
        let mut after: Vec<u8> = Vec::new();
        'walk: loop {
            let rows = self.rows(select, &[&after, &CHUNK])?;
            for row in &rows {
                after = bytes_of(row, 0)?.to_vec();
                if expiry(&record_of::<T>(row, 1)?) < now {
                    expired.push(after.clone());
                    if expired.len() >= SWEEP_MAX {
                        break 'walk;
                    }
                }
            }
            if (rows.len() as i64) < CHUNK {
                break;
            }
        }
        if !expired.is_empty() {
            self.exec(delete, &[&expired])?;
        }
        Ok(expired.len())
    }
}

/// A counter table's sums as its statement's arrays, in key order.
fn counter_arrays(sums: HashMap<(u64, u8), u64>) -> (Vec<i64>, Vec<i16>, Vec<i64>) {
    let mut sums: Vec<_> = sums.into_iter().collect();
    sums.sort_unstable_by_key(|(key, _)| *key);
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for ((hour, which), count) in sums {
        out.0.push(big(hour));
        out.1.push(i16::from(which));
        out.2.push(big(count));
    }
    out
}

impl Write for Txn<'_> {
    fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO users (username, rec) VALUES ($1, $2) \
             ON CONFLICT (username) DO UPDATE SET rec = excluded.rec",
            &[&user.username, &encode(user)],
        )?;
        Ok(())
    }

    fn remove_user(&mut self, username: &str) -> Result<bool, StoreError> {
        let removed = self.exec("DELETE FROM users WHERE username = $1", &[&username])?;
        Ok(removed > 0)
    }

    fn insert_session(&mut self, hash: &[u8; 32], session: &Session) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO sessions (hash, rec) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET rec = excluded.rec",
            &[&hash.as_slice(), &encode(session)],
        )?;
        Ok(())
    }

    fn remove_session(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.exec("DELETE FROM sessions WHERE hash = $1", &[&hash.as_slice()])?;
        Ok(())
    }

    fn sweep_expired(&mut self, now: Micros) -> Result<usize, StoreError> {
        let mut removed = 0;
        removed += self.sweep(
            "SELECT hash, rec FROM sessions WHERE hash > $1 ORDER BY hash LIMIT $2",
            "DELETE FROM sessions WHERE hash = ANY($1::bytea[])",
            now,
            |s: &Session| s.expires_at,
        )?;
        removed += self.sweep(
            "SELECT hash, rec FROM portal_links WHERE hash > $1 ORDER BY hash LIMIT $2",
            "DELETE FROM portal_links WHERE hash = ANY($1::bytea[])",
            now,
            |l: &PortalLink| l.expires_at,
        )?;
        removed += self.sweep(
            "SELECT hash, rec FROM setup_tokens WHERE hash > $1 ORDER BY hash LIMIT $2",
            "DELETE FROM setup_tokens WHERE hash = ANY($1::bytea[])",
            now,
            |t: &SetupToken| t.expires_at,
        )?;
        Ok(removed)
    }

    fn insert_portal_link(&mut self, hash: &[u8; 32], link: &PortalLink) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO portal_links (hash, rec) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET rec = excluded.rec",
            &[&hash.as_slice(), &encode(link)],
        )?;
        Ok(())
    }

    fn replace_setup_token(
        &mut self,
        hash: &[u8; 32],
        token: &SetupToken,
    ) -> Result<(), StoreError> {
        self.exec("DELETE FROM setup_tokens", &[])?;
        self.exec(
            "INSERT INTO setup_tokens (hash, rec) VALUES ($1, $2)",
            &[&hash.as_slice(), &encode(token)],
        )?;
        Ok(())
    }

    fn take_setup_token(&mut self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        // One statement: of two nodes taking the same token, the second finds it gone.
        let rows = self.exec_rows(
            "DELETE FROM setup_tokens WHERE hash = $1 RETURNING rec",
            &[&hash.as_slice()],
        )?;
        rows.first().map(|row| record_of(row, 0)).transpose()
    }

    fn clear_setup_tokens(&mut self) -> Result<(), StoreError> {
        self.exec("DELETE FROM setup_tokens", &[])?;
        Ok(())
    }

    fn replace_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO alerts (id, rec) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET rec = excluded.rec",
            &[&id(alert.id.0), &encode(alert)],
        )?;
        Ok(())
    }

    fn set_cursor(&mut self, name: &str, position: u128) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO cursors (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            &[&name, &id(position)],
        )?;
        Ok(())
    }

    fn replace_message(&mut self, msg: &Message) -> Result<(), StoreError> {
        // Only the record changes: the eventId index (the column) stays as stored, as on redb.
        self.exec(
            "INSERT INTO messages (app_id, id, event_id, rec) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, id) DO UPDATE SET rec = excluded.rec",
            &[
                &id(msg.app_id.0),
                &id(msg.id.0),
                &msg.event_id,
                &encode_keyed(msg),
            ],
        )?;
        Ok(())
    }

    fn replace_attempt(&mut self, attempt: &Attempt) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO attempts (msg_id, id, rec) VALUES ($1, $2, $3) \
             ON CONFLICT (msg_id, id) DO UPDATE SET rec = excluded.rec",
            &[
                &id(attempt.msg_id.0),
                &id(attempt.id.0),
                &encode_keyed(attempt),
            ],
        )?;
        Ok(())
    }

    fn new_id(&mut self) -> u128 {
        self.next_id()
    }

    fn insert_app(&mut self, app: &App) -> Result<(), StoreError> {
        self.forget_known();
        // Checked first, as on redb, so a clash with a committed row is a clean refusal; the
        // UNIQUE constraint settles a clash with another node's concurrent insert.
        if let Some(uid) = &app.uid
            && self.app_id_by_uid(uid)?.is_some()
        {
            return Err(StoreError::Conflict(Conflict::AppUid));
        }
        self.exec_unique(
            "INSERT INTO apps (id, uid, rec) VALUES ($1, $2, $3)",
            &[&id(app.id.0), &app.uid, &encode(app)],
            Conflict::AppUid,
        )?;
        Ok(())
    }

    fn update_app(&mut self, old: &App, new: &App) -> Result<(), StoreError> {
        self.forget_known();
        // Read locked, so another node's update cannot land between this check and the write.
        let stored = self.row(
            "SELECT rec FROM apps WHERE id = $1 FOR UPDATE",
            &[&id(old.id.0)],
        )?;
        if stored
            .map(|r| record_of::<App>(&r, 0))
            .transpose()?
            .as_ref()
            != Some(old)
        {
            return Err(StoreError::Stale("application"));
        }
        if new.uid != old.uid
            && let Some(uid) = &new.uid
            && self
                .app_id_by_uid(uid)?
                .is_some_and(|found| found != new.id)
        {
            return Err(StoreError::Conflict(Conflict::AppUid));
        }
        self.exec_unique(
            "INSERT INTO apps (id, uid, rec) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET uid = excluded.uid, rec = excluded.rec",
            &[&id(new.id.0), &new.uid, &encode(new)],
            Conflict::AppUid,
        )?;
        Ok(())
    }

    fn delete_app(&mut self, app: &App) -> Result<(), StoreError> {
        self.forget_known();
        self.routing.clear();
        let app_id = id(app.id.0);
        // The triggers that call the application's endpoints, the endpoints, the tasks, and
        // the application (its uid is a column of its row).
        self.exec(
            "DELETE FROM triggers WHERE app_id = $1 \
             AND endpoint_id IN (SELECT id FROM endpoints WHERE app_id = $1)",
            &[&app_id],
        )?;
        self.exec("DELETE FROM endpoints WHERE app_id = $1", &[&app_id])?;
        self.remove_app_tasks(app.id)?;
        self.exec("DELETE FROM apps WHERE id = $1", &[&app_id])?;
        Ok(())
    }

    fn put_event_type(&mut self, et: &EventType) -> Result<(), StoreError> {
        self.forget_known();
        self.exec(
            "INSERT INTO event_types (name, rec) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET rec = excluded.rec",
            &[&et.name, &encode(et)],
        )?;
        Ok(())
    }

    fn remove_event_type(&mut self, name: &str) -> Result<(), StoreError> {
        self.forget_known();
        self.exec("DELETE FROM event_types WHERE name = $1", &[&name])?;
        Ok(())
    }

    fn insert_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError> {
        if let Some(uid) = &ep.uid
            && self.endpoint_id_by_uid(ep.app_id, uid)?.is_some()
        {
            return Err(StoreError::Conflict(Conflict::EndpointUid));
        }
        self.routing.clear();
        self.exec_unique(
            "INSERT INTO endpoints (id, app_id, uid, rec) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET app_id = excluded.app_id, uid = excluded.uid, \
                 rec = excluded.rec",
            &[&id(ep.id.0), &id(ep.app_id.0), &ep.uid, &encode(ep)],
            Conflict::EndpointUid,
        )?;
        Ok(())
    }

    fn update_endpoint(&mut self, old: &Endpoint, new: &Endpoint) -> Result<(), StoreError> {
        // Read locked, so another node's update (Herald disabling the endpoint) cannot land
        // between this check and the write.
        let stored = self.row(
            "SELECT rec FROM endpoints WHERE id = $1 FOR UPDATE",
            &[&id(old.id.0)],
        )?;
        if stored
            .map(|r| record_of::<Endpoint>(&r, 0))
            .transpose()?
            .as_ref()
            != Some(old)
        {
            return Err(StoreError::Stale("endpoint"));
        }
        if new.uid != old.uid
            && let Some(uid) = &new.uid
            && self
                .endpoint_id_by_uid(new.app_id, uid)?
                .is_some_and(|found| found != new.id)
        {
            return Err(StoreError::Conflict(Conflict::EndpointUid));
        }
        self.routing.clear();
        self.exec_unique(
            "UPDATE endpoints SET uid = $2, rec = $3 WHERE id = $1",
            &[&id(new.id.0), &new.uid, &encode(new)],
            Conflict::EndpointUid,
        )?;
        Ok(())
    }

    fn delete_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError> {
        self.routing.clear();
        self.exec("DELETE FROM endpoints WHERE id = $1", &[&id(ep.id.0)])?;
        Ok(())
    }

    fn ingest_message(
        &mut self,
        mut msg: Message,
        route: &RouteFn,
    ) -> Result<(Message, usize), StoreError> {
        if let Some(event_id) = &msg.event_id
            && let Some(existing) = self.message_id_by_event_id(msg.app_id, event_id)?
        {
            return Err(StoreError::Conflict(Conflict::EventId(existing)));
        }
        msg.id = MessageId(self.new_id());
        let routing = self.routing_of(msg.app_id)?;
        let (endpoints, triggers) = (&routing.0, &routing.1);
        let routes = route(&msg, endpoints, triggers);
        let routes = &routes[..routes.len().min(u16::MAX as usize)];
        self.insert_message(&msg)?;
        let deliveries = crate::storage::transitions::routed(&msg, routes, endpoints, now_millis());
        let new: Vec<(&Delivery, Option<&Delivery>)> =
            deliveries.iter().map(|d| (d, None)).collect();
        self.put_deliveries(&new, true)?;
        // Written all at once above, the deliveries take their unique keys in routing order
        // here: one that supersedes an earlier delivery of this same message finds it stored.
        for d in &deliveries {
            if let Some(key) = &d.unique_key {
                self.supersede(d.endpoint_id, key, d.id)?;
            }
        }
        let routed: Vec<EndpointId> = routes.iter().map(|r| r.endpoint_id).collect();
        self.note_ingest(&msg, &routed)?;
        Ok((msg, routes.len()))
    }

    fn enqueue_manual(
        &mut self,
        (app_id, msg_id): (AppId, MessageId),
        endpoint: &Endpoint,
        priority: Priority,
    ) -> Result<Option<DeliveryId>, StoreError> {
        let last = self.row(
            "SELECT n FROM deliveries WHERE msg_id = $1 ORDER BY n DESC LIMIT 1",
            &[&id(msg_id.0)],
        )?;
        let next_n = match last.map(|r| n_of(&r, 0)).transpose()? {
            Some(last) => match last.checked_add(1) {
                Some(next) => next,
                None => return Ok(None),
            },
            None => 0,
        };
        let now = now_micros();
        let delivery = Delivery {
            id: DeliveryId {
                msg: msg_id,
                n: next_n,
            },
            msg_id,
            app_id,
            endpoint_id: endpoint.id,
            priority,
            state: DeliveryState::Pending,
            attempts: 0,
            due_ms: endpoint.ready().then(now_millis),
            trigger_type: TriggerType::Manual,
            trigger_id: None,
            unique_key: None,
            slot_reserved: false,
            created_at: now,
            updated_at: now,
        };
        self.put_deliveries(&[(&delivery, None)], true)?;
        Ok(Some(delivery.id))
    }

    fn defer_to_slot(&mut self, delivery: DeliveryId, due_ms: Millis) -> Result<(), StoreError> {
        let Some(old) = self
            .delivery(delivery)?
            .filter(|d| d.state == DeliveryState::Pending)
        else {
            return Ok(());
        };
        let mut d = old.clone();
        d.due_ms = Some(due_ms);
        d.slot_reserved = true;
        self.put_delivery(&d, &old)
    }

    fn park_delivery(&mut self, delivery: DeliveryId) -> Result<(), StoreError> {
        let Some(old) = self
            .delivery(delivery)?
            .filter(|d| d.state == DeliveryState::Pending && d.due_ms.is_some())
        else {
            return Ok(());
        };
        let mut d = old.clone();
        d.due_ms = None;
        self.put_delivery(&d, &old)
    }

    fn unpark_endpoint(&mut self, endpoint: EndpointId, limit: usize) -> Result<usize, StoreError> {
        // One read of the parked entries with their records, one write of them all.
        let parked = self.parked_with_records(endpoint, limit)?;
        let now = now_millis();
        let moved: Vec<(Delivery, Delivery)> = parked
            .iter()
            .filter_map(|(_, old)| old.clone())
            .map(|old| {
                let mut d = old.clone();
                d.due_ms = Some(now);
                (d, old)
            })
            .collect();
        let changes: Vec<_> = moved.iter().map(|(d, old)| (d, Some(old))).collect();
        self.put_deliveries(&changes, true)?;
        Ok(parked.len())
    }

    fn cancel_parked(&mut self, endpoint: EndpointId, limit: usize) -> Result<usize, StoreError> {
        // `cancel_delivery` of each, in one read and one write.
        let parked = self.parked_with_records(endpoint, limit)?;
        let now = now_micros();
        let cancelled: Vec<(Delivery, Delivery)> = parked
            .iter()
            .filter_map(|(_, old)| old.clone())
            .filter(|old| old.state == DeliveryState::Pending)
            .map(|old| {
                let mut d = old.clone();
                d.state = DeliveryState::Cancelled;
                d.due_ms = None;
                d.updated_at = now;
                (d, old)
            })
            .collect();
        let changes: Vec<_> = cancelled.iter().map(|(d, old)| (d, Some(old))).collect();
        self.put_deliveries(&changes, true)?;
        Ok(parked.len())
    }

    fn record_attempt(
        &mut self,
        mut attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(old) = self.delivery(attempt.delivery_id)? else {
            return Ok(None);
        };
        attempt.id = AttemptId(self.new_id());
        self.exec(
            "WITH a AS (INSERT INTO attempts (msg_id, id, rec) \
                 VALUES ($1::bytea, $2::bytea, $3::bytea)) \
             INSERT INTO endpoint_attempts (endpoint_id, attempt_id, msg_id) \
             VALUES ($4::bytea, $2::bytea, $1::bytea)",
            &[
                &id(attempt.msg_id.0),
                &id(attempt.id.0),
                &encode_keyed(&attempt),
                &id(attempt.endpoint_id.0),
            ],
        )?;
        if old.state != DeliveryState::Pending {
            // Superseded or cancelled while this attempt was in flight: the attempt is history,
            // the delivery stays as it is.
            self.note_attempt(&attempt, &old)?;
            return Ok(None);
        }
        let d = crate::storage::transitions::attempted(&old, &outcome, attempt.created_at);
        self.put_delivery(&d, &old)?;
        self.note_attempt(&attempt, &d)?;
        if let AttemptOutcome::Exhausted(alert) = outcome {
            self.insert_alert(alert)?;
        }
        Ok(Some(d))
    }

    fn cancel_delivery(&mut self, delivery: DeliveryId) -> Result<(), StoreError> {
        let Some(old) = self.delivery(delivery)? else {
            return Ok(());
        };
        if old.state != DeliveryState::Pending {
            return Ok(());
        }
        let d = crate::storage::transitions::cancelled(&old, now_micros());
        self.put_delivery(&d, &old)
    }

    fn defer_deliveries(&mut self, moves: &[(QueueEntry, Millis)]) -> Result<usize, StoreError> {
        if moves.is_empty() {
            return Ok(0);
        }
        // One read of every delivery named, the moves applied in order in memory (a delivery
        // named twice is seen the second time as the first move left it), one write.
        let (msgs, ns): (Vec<Vec<u8>>, Vec<i32>) = moves
            .iter()
            .map(|(e, _)| (id(e.id.msg.0), n(e.id.n)))
            .unzip();
        let rows = self.rows(
            "SELECT d.msg_id, d.n, d.rec FROM deliveries AS d \
             JOIN unnest($1::bytea[], $2::integer[]) AS x(msg_id, n) \
                 ON d.msg_id = x.msg_id AND d.n = x.n",
            &[&msgs, &ns],
        )?;
        let mut stored: HashMap<DeliveryId, &Row> = HashMap::new();
        for row in &rows {
            let key = DeliveryId {
                msg: MessageId(id_of(row, 0)?),
                n: n_of(row, 1)?,
            };
            stored.insert(key, row);
        }
        // id -> (as stored, as it is now)
        let mut states: HashMap<DeliveryId, (Delivery, Delivery)> = HashMap::new();
        let mut order: Vec<DeliveryId> = Vec::new();
        let mut moved = 0;
        for (entry, until) in moves {
            if !states.contains_key(&entry.id) {
                let Some(row) = stored.get(&entry.id) else {
                    continue;
                };
                let d: Delivery = decode_keyed((entry.id.msg.0, entry.id.n), bytes_of(row, 2)?)?;
                states.insert(entry.id, (d.clone(), d));
            }
            let (_, now) = states.get_mut(&entry.id).expect("inserted above");
            if now.state != DeliveryState::Pending || now.due_ms != Some(entry.due_ms) {
                continue;
            }
            now.due_ms = Some(*until);
            if !order.contains(&entry.id) {
                order.push(entry.id);
            }
            moved += 1;
        }
        let changes: Vec<_> = order
            .iter()
            .map(|key| {
                let (old, d) = &states[key];
                (d, Some(old))
            })
            .collect();
        self.put_deliveries(&changes, true)?;
        Ok(moved)
    }

    fn dead_letter(
        &mut self,
        lane: Priority,
        entry: QueueEntry,
        reason: &str,
    ) -> Result<(), StoreError> {
        // Reads first; a record that does not decode is left as it is for a check to report.
        let delivery = match self.delivery(entry.id) {
            Ok(d) => d,
            // The record that does not decode is the reason for the dead letter: left as it is.
            Err(StoreError::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        let app_id = match &delivery {
            Some(d) => Some(d.app_id),
            None => self
                .endpoint(entry.endpoint)
                .ok()
                .flatten()
                .map(|e| e.app_id),
        };
        self.exec(
            "DELETE FROM queue WHERE msg_id = $1 AND n = $2 AND lane = $3 AND due_ms = $4",
            &[
                &id(entry.id.msg.0),
                &n(entry.id.n),
                &lane_of(lane),
                &big(entry.due_ms),
            ],
        )?;
        if let Some(old) = delivery.filter(|d| d.state == DeliveryState::Pending) {
            let mut d = old.clone();
            d.state = DeliveryState::Failed;
            d.due_ms = None;
            d.updated_at = now_micros();
            self.put_delivery(&d, &old)?;
        }
        self.insert_alert(Alert {
            id: AlertId(0),
            kind: AlertKind::DeliveryUnreadable,
            app_id: app_id.unwrap_or(AppId(0)),
            endpoint_id: entry.endpoint,
            msg_id: Some(entry.id.msg),
            detail: format!("delivery {} could not be loaded: {reason}", entry.id),
            created_at: now_micros(),
            acknowledged_at: None,
        })?;
        Ok(())
    }

    fn drop_stale_entry(&mut self, lane: Priority, entry: QueueEntry) -> Result<bool, StoreError> {
        let current = self.delivery(entry.id)?;
        let live = current.is_some_and(|d| {
            d.state == DeliveryState::Pending
                && d.due_ms == Some(entry.due_ms)
                && d.priority == lane
        });
        if live {
            return Ok(false);
        }
        // Only the entry at that place: the delivery may be queued elsewhere by now.
        self.exec(
            "DELETE FROM queue WHERE msg_id = $1 AND n = $2 AND lane = $3 AND due_ms = $4",
            &[
                &id(entry.id.msg.0),
                &n(entry.id.n),
                &lane_of(lane),
                &big(entry.due_ms),
            ],
        )?;
        Ok(true)
    }

    fn insert_alert(&mut self, mut alert: Alert) -> Result<AlertId, StoreError> {
        alert.id = AlertId(self.new_id());
        self.exec(
            "INSERT INTO alerts (id, rec) VALUES ($1, $2)",
            &[&id(alert.id.0), &encode(&alert)],
        )?;
        Ok(alert.id)
    }

    fn insert_token(&mut self, hash: &[u8; 32], token: &Token) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO tokens (hash, rec) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET rec = excluded.rec",
            &[&hash.as_slice(), &encode(token)],
        )?;
        Ok(())
    }

    fn revoke_token(&mut self, token: TokenId) -> Result<bool, StoreError> {
        // Tokens are few: looked for in key order, as on redb.
        let mut found = None;
        for row in &self.rows("SELECT hash, rec FROM tokens ORDER BY hash", &[])? {
            if record_of::<Token>(row, 1)?.id == token {
                found = Some(bytes_of(row, 0)?.to_vec());
                break;
            }
        }
        match found {
            Some(hash) => {
                self.exec("DELETE FROM tokens WHERE hash = $1", &[&hash])?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn put_idempotent_response(
        &mut self,
        key: &[u8; 32],
        response: &IdempotentResponse,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO idempotency (hash, rec) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET rec = excluded.rec",
            &[&key.as_slice(), &encode(response)],
        )?;
        Ok(())
    }

    fn purge_expired(
        &mut self,
        now: Micros,
        from: Option<u128>,
        idem_from: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let mut out = Purged::default();
        let scan_max = limit.saturating_mul(4);
        // Rows fetched: redb's loop looks at one entry even when `limit` is 0.
        let fetch = scan_max.clamp(1, i64::MAX as usize) as i64;
        // Read first, then write.
        let youngest_examined =
            id_floor_at_millis(((now / 1000) - RETENTION_DAYS_MIN * 86_400_000).max(0) as u64);
        let start = from.unwrap_or(0);
        let rows = self.rows(
            "SELECT t.msg_id, t.app_id, m.rec FROM message_timeline AS t \
             LEFT JOIN messages AS m ON m.app_id = t.app_id AND m.id = t.msg_id \
             WHERE t.msg_id >= $1 AND t.msg_id < $2 ORDER BY t.msg_id LIMIT $3",
            &[&id(start), &id(youngest_examined.max(start)), &fetch],
        )?;
        // Each entry's message, if it is still there.
        let mut examined: Vec<(u128, Option<Message>)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let (msg_id, app_id) = (id_of(row, 0)?, id_of(row, 1)?);
            let rec: Option<&[u8]> = row.try_get(2).map_err(super::pg_error)?;
            let m = rec.map(|r| decode_keyed((app_id, msg_id), r)).transpose()?;
            examined.push((msg_id, m));
        }
        // The deliveries of those past their retention, all in one read.
        let expired: Vec<Vec<u8>> = examined
            .iter()
            .filter_map(|(_, m)| m.as_ref())
            .filter(|m| m.retained_until() <= now)
            .map(|m| id(m.id.0))
            .collect();
        let mut deliveries: HashMap<u128, Vec<Delivery>> = HashMap::new();
        if !expired.is_empty() {
            let rows = self.rows(
                "SELECT msg_id, n, rec FROM deliveries WHERE msg_id = ANY($1::bytea[]) \
                 ORDER BY msg_id, n",
                &[&expired],
            )?;
            for row in &rows {
                let key = (id_of(row, 0)?, n_of(row, 1)?);
                let d: Delivery = decode_keyed(key, bytes_of(row, 2)?)?;
                deliveries.entry(key.0).or_default().push(d);
            }
        }
        let mut doomed: Vec<(Message, Vec<Delivery>)> = Vec::new();
        let mut seen = 0;
        for (msg_id, m) in examined {
            seen += 1;
            out.next_message = Some(msg_id.saturating_add(1));
            if let Some(m) = m
                && m.retained_until() <= now
            {
                let ds = deliveries.remove(&m.id.0).unwrap_or_default();
                if ds.iter().all(|d| d.state != DeliveryState::Pending) {
                    doomed.push((m, ds));
                }
            }
            if doomed.len() >= limit || seen >= scan_max {
                break;
            }
        }
        if seen < scan_max && doomed.len() < limit {
            out.next_message = None; // reached the young end: start over next time
        }

        let idem_rows = self.rows(
            "SELECT hash, rec FROM idempotency WHERE hash >= $1 ORDER BY hash LIMIT $2",
            &[&idem_from.unwrap_or([0; 32]).as_slice(), &fetch],
        )?;
        let now_ms = (now / 1000).max(0) as u64;
        let mut idem_doomed: Vec<Vec<u8>> = Vec::new();
        let mut seen = 0;
        for row in &idem_rows {
            let key = hash_of(row, 0)?;
            seen += 1;
            out.next_idempotency = Some(key);
            if record_of::<IdempotentResponse>(row, 1)?.expires_ms <= now_ms {
                idem_doomed.push(key.to_vec());
            }
            if seen >= scan_max {
                break;
            }
        }
        if seen < scan_max {
            out.next_idempotency = None;
        }

        if !doomed.is_empty() {
            let msgs: Vec<Vec<u8>> = doomed.iter().map(|(m, _)| id(m.id.0)).collect();
            let attempts = self.rows(
                "SELECT msg_id, id, rec FROM attempts WHERE msg_id = ANY($1::bytea[])",
                &[&msgs],
            )?;
            let mut by_endpoint = (Vec::new(), Vec::new());
            for row in &attempts {
                let a: Attempt = decode_keyed((id_of(row, 0)?, id_of(row, 1)?), bytes_of(row, 2)?)?;
                by_endpoint.0.push(id(a.endpoint_id.0));
                by_endpoint.1.push(id(a.id.0));
            }
            let mut indexed = (Vec::new(), Vec::new());
            let mut failed = (Vec::new(), Vec::new());
            for (m, ds) in &doomed {
                for d in ds {
                    indexed.0.push(id(d.endpoint_id.0));
                    indexed.1.push(id(m.id.0));
                    failed.0.push(id(m.id.0));
                    failed.1.push(n(d.id.n));
                }
            }
            let apps: Vec<Vec<u8>> = doomed.iter().map(|(m, _)| id(m.app_id.0)).collect();
            self.exec(
                REMOVE_MESSAGES,
                &[
                    &msgs,
                    &by_endpoint.0,
                    &by_endpoint.1,
                    &indexed.0,
                    &indexed.1,
                    &failed.0,
                    &failed.1,
                    &apps,
                ],
            )?;
            out.messages = doomed.len() as u64;
            out.attempts = attempts.len() as u64;
        }
        if !idem_doomed.is_empty() {
            self.exec(
                "DELETE FROM idempotency WHERE hash = ANY($1::bytea[])",
                &[&idem_doomed],
            )?;
            out.idempotency = idem_doomed.len() as u64;
        }
        Ok(out)
    }

    fn note_ingest(&mut self, msg: &Message, routed: &[EndpointId]) -> Result<(), StoreError> {
        // The newest delivery to each endpoint (a later one to the same endpoint wins), in
        // endpoint order.
        let mut newest: HashMap<u128, u16> = HashMap::new();
        for (n, endpoint) in routed.iter().enumerate() {
            newest.insert(endpoint.0, n as u16);
        }
        let mut newest: Vec<(u128, u16)> = newest.into_iter().collect();
        newest.sort_unstable();
        let (endpoints, ns): (Vec<Vec<u8>>, Vec<i32>) =
            newest.iter().map(|&(e, k)| (id(e), n(k))).unzip();
        self.exec(
            "WITH t AS ( \
                 INSERT INTO message_timeline (msg_id, app_id) VALUES ($1::bytea, $2::bytea) \
                 ON CONFLICT (msg_id) DO UPDATE SET app_id = excluded.app_id) \
             INSERT INTO endpoint_deliveries (endpoint_id, msg_id, n) \
             SELECT x.endpoint_id, $1::bytea, x.n \
             FROM unnest($3::bytea[], $4::integer[]) AS x(endpoint_id, n) \
             ON CONFLICT (endpoint_id, msg_id) DO UPDATE SET n = excluded.n",
            &[&id(msg.id.0), &id(msg.app_id.0), &endpoints, &ns],
        )?;
        self.counters.ingested(msg, routed.len());
        Ok(())
    }

    fn note_attempt(&mut self, attempt: &Attempt, delivery: &Delivery) -> Result<(), StoreError> {
        self.counters.attempted(attempt, delivery);
        if delivery.attempts == 1 && delivery.trigger_type == TriggerType::Manual {
            // Deliveries made outside routing (resend, recover, replay) enter the endpoint's
            // index at their first attempt; routed ones entered it at ingest.
            self.exec(
                "INSERT INTO endpoint_deliveries (endpoint_id, msg_id, n) VALUES ($1, $2, $3) \
                 ON CONFLICT (endpoint_id, msg_id) DO UPDATE SET n = excluded.n",
                &[
                    &id(delivery.endpoint_id.0),
                    &id(delivery.msg_id.0),
                    &n(delivery.id.n),
                ],
            )?;
        }
        if delivery.state == DeliveryState::Failed {
            self.exec(
                "INSERT INTO failed_deliveries (msg_id, n) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id(delivery.msg_id.0), &n(delivery.id.n)],
            )?;
        }
        Ok(())
    }

    fn flush_counters(&mut self) -> Result<(), StoreError> {
        Txn::flush_counters(self)
    }

    fn insert_task(&mut self, task: &BackgroundTask, kept_max: usize) -> Result<(), StoreError> {
        // The oldest finished or failed tasks beyond what the application keeps, this one
        // counted, in one statement.
        self.exec(
            "DELETE FROM tasks WHERE id IN ( \
                 SELECT id FROM tasks WHERE app_id = $1 AND NOT running ORDER BY id \
                 LIMIT GREATEST((SELECT count(*) FROM tasks WHERE app_id = $1) + 1 - $2, 0))",
            &[
                &id(task.app_id.0),
                &(kept_max.min(i64::MAX as usize) as i64),
            ],
        )?;
        self.put_task(task)
    }

    fn put_task(&mut self, task: &BackgroundTask) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO tasks (id, app_id, running, rec) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET app_id = excluded.app_id, \
                 running = excluded.running, rec = excluded.rec",
            &[
                &id(task.id.0),
                &id(task.app_id.0),
                &(task.status == TaskStatus::Running),
                &encode(task),
            ],
        )?;
        Ok(())
    }

    fn remove_task(&mut self, _app: AppId, task: TaskId) -> Result<(), StoreError> {
        // The record goes whatever application is named, as on redb (the index is its row).
        self.exec("DELETE FROM tasks WHERE id = $1", &[&id(task.0)])?;
        Ok(())
    }

    fn remove_app_tasks(&mut self, app: AppId) -> Result<(), StoreError> {
        self.exec("DELETE FROM tasks WHERE app_id = $1", &[&id(app.0)])?;
        Ok(())
    }

    fn put_trigger(&mut self, trigger: &Trigger) -> Result<(), StoreError> {
        self.routing.clear();
        self.exec(
            "INSERT INTO triggers (app_id, id, endpoint_id, rec) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, id) DO UPDATE SET endpoint_id = excluded.endpoint_id, \
                 rec = excluded.rec",
            &[
                &id(trigger.app_id.0),
                &id(trigger.id.0),
                &id(trigger.endpoint_id.0),
                &encode(trigger),
            ],
        )?;
        Ok(())
    }

    fn delete_trigger(&mut self, app: AppId, trigger: TriggerId) -> Result<(), StoreError> {
        self.routing.clear();
        self.exec(
            "DELETE FROM triggers WHERE app_id = $1 AND id = $2",
            &[&id(app.0), &id(trigger.0)],
        )?;
        Ok(())
    }

    fn delete_endpoint_triggers(
        &mut self,
        app: AppId,
        endpoint: EndpointId,
    ) -> Result<(), StoreError> {
        self.routing.clear();
        self.exec(
            "DELETE FROM triggers WHERE app_id = $1 AND endpoint_id = $2",
            &[&id(app.0), &id(endpoint.0)],
        )?;
        Ok(())
    }
}
