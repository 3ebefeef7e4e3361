//! The typed reads on PostgreSQL, for both a read snapshot and the writer's transaction: the
//! same operations as `redb/reads.rs` (trait `TxRead`), over the tables of `schema_v1.sql`.
//!
//! Where redb walks a range and may stop early (a filter, a visitor, a first match), the walk
//! here fetches the range in bounded chunks (`Txn::walk`), so a scan never reads more rows than
//! redb's would by more than one chunk. Text keys (event type names, usernames) are ordered
//! `COLLATE "C"`: by their bytes, as redb orders `&str`, whatever the database's collation.

use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::pg_error;
use super::session::{Params, Txn, big, bytes_of, id, id_of, lane, n, n_of, storable, u64_of};
use crate::model::*;
use crate::storage::codec::{Record, decode};
use crate::storage::rows::{KeyedRecord, decode_attempt_head, decode_keyed, decode_message_head};
use crate::storage::*;

/// The record in the first column of `row`, if there is a row.
pub(super) fn record<T: Record>(
    row: Option<&tokio_postgres::Row>,
) -> Result<Option<T>, StoreError> {
    row.map(|r| Ok(decode(bytes_of(r, 0)?)?)).transpose()
}

/// `record` for a record stored without its key's fields (`rows.rs`), stored under `key`.
fn keyed<T: KeyedRecord + DeserializeOwned>(
    key: T::Key,
    row: Option<&Row>,
) -> Result<Option<T>, StoreError> {
    row.map(|r| Ok(decode_keyed(key, bytes_of(r, 0)?)?))
        .transpose()
}

/// A `bigint` row limit.
fn limit_of(limit: usize) -> i64 {
    big(limit as u64)
}

/// Rows fetched per statement by a walk that may stop early or pass over many.
const CHUNK: usize = 256;
/// The most queue entries fetched per statement by `due_deliveries`.
const QUEUE_CHUNK: usize = 1024;

const APPS_UP: &str = "SELECT id, rec FROM apps WHERE id BETWEEN $1 AND $2 ORDER BY id LIMIT $3";
const APPS_DOWN: &str =
    "SELECT id, rec FROM apps WHERE id BETWEEN $1 AND $2 ORDER BY id DESC LIMIT $3";

const EVENT_TYPES_FIRST: &str =
    "SELECT name, rec FROM event_types ORDER BY name COLLATE \"C\" LIMIT $1";
const EVENT_TYPES_AFTER: &str = "SELECT name, rec FROM event_types WHERE name COLLATE \"C\" > $1 \
     ORDER BY name COLLATE \"C\" LIMIT $2";
const EVENT_TYPES_BEFORE: &str = "SELECT name, rec FROM event_types WHERE name COLLATE \"C\" < $1 \
     ORDER BY name COLLATE \"C\" DESC LIMIT $2";

const MESSAGES_UP: &str = "SELECT id, rec FROM messages WHERE id BETWEEN $1 AND $2 AND app_id = $4 \
     ORDER BY id LIMIT $3";
const MESSAGES_DOWN: &str = "SELECT id, rec FROM messages \
     WHERE id BETWEEN $1 AND $2 AND app_id = $4 ORDER BY id DESC LIMIT $3";

/// A message's deliveries numbered below `$2`, newest first.
const DELIVERIES_DOWN: &str =
    "SELECT n, rec FROM deliveries WHERE msg_id = $1 AND n < $2 ORDER BY n DESC LIMIT $3";

const ATTEMPTS_UP: &str = "SELECT id, rec FROM attempts WHERE id BETWEEN $1 AND $2 AND msg_id = $4 \
     ORDER BY id LIMIT $3";
const ATTEMPTS_DOWN: &str = "SELECT id, rec FROM attempts \
     WHERE id BETWEEN $1 AND $2 AND msg_id = $4 ORDER BY id DESC LIMIT $3";
/// A message's attempts with only the first bytes of each version 2 row: enough for
/// `decode_attempt_head` (version, n as a varint of at most 3 bytes, app and endpoint as 16
/// bytes each: 36), without the stored response. Older rows are whole (their head is not at a
/// fixed place).
const ATTEMPT_HEADS_UP: &str = "SELECT id, \
     CASE WHEN substring(rec FROM 1 FOR 1) = '\\x02'::bytea THEN substring(rec FROM 1 FOR 36) \
     ELSE rec END \
     FROM attempts WHERE id BETWEEN $1 AND $2 AND msg_id = $4 ORDER BY id LIMIT $3";

/// An endpoint's attempts through its index, each with its row (NULL: gone meanwhile).
const ENDPOINT_ATTEMPTS_UP: &str = "SELECT e.attempt_id, e.msg_id, a.rec FROM endpoint_attempts e \
     LEFT JOIN attempts a ON a.msg_id = e.msg_id AND a.id = e.attempt_id \
     WHERE e.attempt_id BETWEEN $1 AND $2 AND e.endpoint_id = $4 ORDER BY e.attempt_id LIMIT $3";
const ENDPOINT_ATTEMPTS_DOWN: &str = "SELECT e.attempt_id, e.msg_id, a.rec \
     FROM endpoint_attempts e \
     LEFT JOIN attempts a ON a.msg_id = e.msg_id AND a.id = e.attempt_id \
     WHERE e.attempt_id BETWEEN $1 AND $2 AND e.endpoint_id = $4 \
     ORDER BY e.attempt_id DESC LIMIT $3";
/// `ENDPOINT_ATTEMPTS_*` with each row's head only (see `ATTEMPT_HEADS_UP`).
const ENDPOINT_ATTEMPT_HEADS_UP: &str = "SELECT e.attempt_id, e.msg_id, \
     CASE WHEN substring(a.rec FROM 1 FOR 1) = '\\x02'::bytea \
     THEN substring(a.rec FROM 1 FOR 36) ELSE a.rec END \
     FROM endpoint_attempts e \
     LEFT JOIN attempts a ON a.msg_id = e.msg_id AND a.id = e.attempt_id \
     WHERE e.attempt_id BETWEEN $1 AND $2 AND e.endpoint_id = $4 ORDER BY e.attempt_id LIMIT $3";
const ENDPOINT_ATTEMPT_HEADS_DOWN: &str = "SELECT e.attempt_id, e.msg_id, \
     CASE WHEN substring(a.rec FROM 1 FOR 1) = '\\x02'::bytea \
     THEN substring(a.rec FROM 1 FOR 36) ELSE a.rec END \
     FROM endpoint_attempts e \
     LEFT JOIN attempts a ON a.msg_id = e.msg_id AND a.id = e.attempt_id \
     WHERE e.attempt_id BETWEEN $1 AND $2 AND e.endpoint_id = $4 \
     ORDER BY e.attempt_id DESC LIMIT $3";

/// A lane's queue entries in (due, message, n) order, from the start, and strictly after an
/// entry; an entry another node holds a claim on (`lease_until` after now, `leases.rs`) is
/// not there for this scan.
const QUEUE_FIRST: &str = "SELECT due_ms, msg_id, n, endpoint_id FROM queue WHERE lane = $1 \
     AND (lease_until <= $3 OR lease_node = $4) ORDER BY due_ms, msg_id, n LIMIT $2";
const QUEUE_AFTER: &str = "SELECT due_ms, msg_id, n, endpoint_id FROM queue \
     WHERE lane = $1 AND (due_ms, msg_id, n) > ($3, $4, $5) \
     AND (lease_until <= $6 OR lease_node = $7) \
     ORDER BY due_ms, msg_id, n LIMIT $2";

const TASKS_UP: &str = "SELECT id, rec FROM tasks WHERE id BETWEEN $1 AND $2 ORDER BY id LIMIT $3";
const TASKS_DOWN: &str =
    "SELECT id, rec FROM tasks WHERE id BETWEEN $1 AND $2 ORDER BY id DESC LIMIT $3";
const APP_TASKS_UP: &str = "SELECT id, rec FROM tasks WHERE id BETWEEN $1 AND $2 AND app_id = $4 \
     ORDER BY id LIMIT $3";
const APP_TASKS_DOWN: &str = "SELECT id, rec FROM tasks \
     WHERE id BETWEEN $1 AND $2 AND app_id = $4 ORDER BY id DESC LIMIT $3";

impl Txn<'_> {
    /// Walks the rows `sql` answers over the ids `from..=to`, in the order `sql` gives them
    /// (`forward`: ascending), handing each to `visit` until it answers false or `max` rows
    /// were handed. `sql` takes the inclusive id bounds as `$1` and `$2`, a row limit as `$3`
    /// (`bigint`), then `extra` from `$4`, and selects the id first; it is run once per chunk
    /// of at most `CHUNK` rows.
    fn walk(
        &self,
        sql: &str,
        forward: bool,
        (mut from, mut to): (u128, u128),
        max: usize,
        extra: &Params<'_>,
        mut visit: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut left = max;
        while left > 0 && from <= to {
            let chunk = left.min(CHUNK);
            let (lo, hi, limit) = (id(from), id(to), limit_of(chunk));
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lo, &hi, &limit];
            params.extend_from_slice(extra);
            let rows = self.rows(sql, &params)?;
            for row in &rows {
                let key = id_of(row, 0)?;
                left -= 1;
                if !visit(row)? || left == 0 {
                    return Ok(());
                }
                // Past the last key either way, nothing can follow.
                if forward {
                    let Some(next) = key.checked_add(1) else {
                        return Ok(());
                    };
                    from = next;
                } else {
                    let Some(next) = key.checked_sub(1) else {
                        return Ok(());
                    };
                    to = next;
                }
            }
            if rows.len() < chunk {
                break;
            }
        }
        Ok(())
    }

    /// Walks a message's deliveries newest first, at most `max`, handing each to `visit` until
    /// it answers false.
    fn deliveries_down(
        &self,
        msg: MessageId,
        max: usize,
        mut visit: impl FnMut(Delivery) -> bool,
    ) -> Result<(), StoreError> {
        let key = id(msg.0);
        // Above every delivery number (a u16).
        let mut below: i32 = 1 << 16;
        let mut left = max;
        while left > 0 {
            let chunk = left.min(CHUNK);
            let rows = self.rows(DELIVERIES_DOWN, &[&key, &below, &limit_of(chunk)])?;
            for row in &rows {
                let at = n_of(row, 0)?;
                left -= 1;
                let d: Delivery = decode_keyed((msg.0, at), bytes_of(row, 1)?)?;
                if !visit(d) || left == 0 {
                    return Ok(());
                }
                below = n(at);
            }
            if rows.len() < chunk {
                break;
            }
        }
        Ok(())
    }

    /// Whether `msg` has an attempt to `endpoint` with an id above `after`.
    fn attempt_after(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
        after: u128,
    ) -> Result<bool, StoreError> {
        let Some(lo) = after.checked_add(1) else {
            return Ok(false);
        };
        let mut found = false;
        self.walk(
            ATTEMPT_HEADS_UP,
            true,
            (lo, u128::MAX),
            usize::MAX,
            &[&id(msg.0)],
            |row| {
                let key = (msg.0, id_of(row, 0)?);
                found = decode_attempt_head(key, bytes_of(row, 1)?)?.1 == endpoint;
                Ok(!found)
            },
        )?;
        Ok(found)
    }
}

impl Read for Txn<'_> {
    fn app(&self, id: AppId) -> Result<Option<App>, StoreError> {
        if let Some(known) = self.known.borrow().apps.get(&id.0) {
            return Ok(known.clone());
        }
        let row = self.row("SELECT rec FROM apps WHERE id = $1", &[&self::id(id.0)])?;
        let app: Option<App> = record(row.as_ref())?;
        self.known.borrow_mut().apps.insert(id.0, app.clone());
        Ok(app)
    }

    fn app_id_by_uid(&self, uid: &str) -> Result<Option<AppId>, StoreError> {
        if !storable(uid) {
            return Ok(None);
        }
        let row = self.row("SELECT id FROM apps WHERE uid = $1", &[&uid])?;
        row.map(|r| id_of(&r, 0).map(AppId)).transpose()
    }

    fn apps(&self, query: &PageQuery) -> Result<Page<App>, StoreError> {
        self.page(APPS_UP, APPS_DOWN, &[], query, |row| {
            Ok(Some(decode(bytes_of(row, 1)?)?))
        })
    }

    fn event_type(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        if !storable(name) {
            return Ok(None);
        }
        if let Some(known) = self.known.borrow().event_types.get(name) {
            return Ok(known.clone());
        }
        let row = self.row("SELECT rec FROM event_types WHERE name = $1", &[&name])?;
        let et: Option<EventType> = record(row.as_ref())?;
        self.known
            .borrow_mut()
            .event_types
            .insert(name.to_string(), et.clone());
        Ok(et)
    }

    fn event_types(
        &self,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
        include_archived: bool,
    ) -> Result<Page<EventType>, StoreError> {
        let mut items = Vec::new();
        // `before` wins over `after`, as on redb; `bound` moves on with each chunk.
        let downward = before.is_some();
        // A cursor past a NUL is cut there: no stored name holds one, and every name after
        // "x\0..." in byte order is after "x" too (one before it is at most "x" itself).
        let mut bound: Option<String> = before
            .or(after)
            .map(|b| b.split('\0').next().unwrap_or_default().to_string());
        'walk: loop {
            let chunk = (limit.saturating_add(1) - items.len()).clamp(1, CHUNK);
            let n = limit_of(chunk);
            let rows = match (&bound, downward) {
                (Some(b), true) => self.rows(EVENT_TYPES_BEFORE, &[b, &n])?,
                (Some(a), false) => self.rows(EVENT_TYPES_AFTER, &[a, &n])?,
                (None, _) => self.rows(EVENT_TYPES_FIRST, &[&n])?,
            };
            for row in &rows {
                let et: EventType = decode(bytes_of(row, 1)?)?;
                if include_archived || !et.archived {
                    items.push(et);
                }
                if items.len() > limit {
                    break 'walk;
                }
                bound = Some(row.try_get::<_, String>(0).map_err(pg_error)?);
            }
            if rows.len() < chunk {
                break;
            }
        }
        let done = items.len() <= limit;
        items.truncate(limit);
        if downward {
            items.reverse();
        }
        Ok(Page { items, done })
    }

    fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let row = self.row(
            "SELECT rec FROM endpoints WHERE id = $1",
            &[&self::id(id.0)],
        )?;
        record(row.as_ref())
    }

    fn endpoint_id_by_uid(&self, app: AppId, uid: &str) -> Result<Option<EndpointId>, StoreError> {
        if !storable(uid) {
            return Ok(None);
        }
        let row = self.row(
            "SELECT id FROM endpoints WHERE app_id = $1 AND uid = $2",
            &[&id(app.0), &uid],
        )?;
        row.map(|r| id_of(&r, 0).map(EndpointId)).transpose()
    }

    fn app_endpoints(&self, app: AppId) -> Result<Vec<Endpoint>, StoreError> {
        let rows = self.rows(
            "SELECT rec FROM endpoints WHERE app_id = $1 ORDER BY id",
            &[&id(app.0)],
        )?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }

    fn endpoints(&self, app: AppId, query: &PageQuery) -> Result<Page<Endpoint>, StoreError> {
        self.page(
            "SELECT id, rec FROM endpoints WHERE id BETWEEN $1 AND $2 AND app_id = $4 \
             ORDER BY id LIMIT $3",
            "SELECT id, rec FROM endpoints WHERE id BETWEEN $1 AND $2 AND app_id = $4 \
             ORDER BY id DESC LIMIT $3",
            &[&id(app.0)],
            query,
            |row| Ok(Some(decode(bytes_of(row, 1)?)?)),
        )
    }

    fn trigger(&self, app: AppId, id: TriggerId) -> Result<Option<Trigger>, StoreError> {
        let row = self.row(
            "SELECT rec FROM triggers WHERE app_id = $1 AND id = $2",
            &[&self::id(app.0), &self::id(id.0)],
        )?;
        record(row.as_ref())
    }

    fn app_triggers(&self, app: AppId) -> Result<Vec<Trigger>, StoreError> {
        let rows = self.rows(
            "SELECT rec FROM triggers WHERE app_id = $1 ORDER BY id",
            &[&id(app.0)],
        )?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }

    fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError> {
        let row = self.row(
            "SELECT rec FROM messages WHERE app_id = $1 AND id = $2",
            &[&self::id(app.0), &self::id(id.0)],
        )?;
        keyed((app.0, id.0), row.as_ref())
    }

    fn message_id_by_event_id(
        &self,
        app: AppId,
        event_id: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        if !storable(event_id) {
            return Ok(None);
        }
        let row = self.row(
            "SELECT id FROM messages WHERE app_id = $1 AND event_id = $2",
            &[&id(app.0), &event_id],
        )?;
        row.map(|r| id_of(&r, 0).map(MessageId)).transpose()
    }

    fn messages(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError> {
        self.page(MESSAGES_UP, MESSAGES_DOWN, &[&id(app.0)], query, |row| {
            let m: Message = decode_keyed((app.0, id_of(row, 0)?), bytes_of(row, 1)?)?;
            Ok(keep(&m).then_some(m))
        })
    }

    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let row = self.row(
            "SELECT rec FROM deliveries WHERE msg_id = $1 AND n = $2",
            &[&self::id(id.msg.0), &n(id.n)],
        )?;
        keyed((id.msg.0, id.n), row.as_ref())
    }

    fn message_deliveries(&self, msg: MessageId) -> Result<Vec<Delivery>, StoreError> {
        let rows = self.rows(
            "SELECT n, rec FROM deliveries WHERE msg_id = $1 ORDER BY n",
            &[&id(msg.0)],
        )?;
        rows.iter()
            .map(|r| Ok(decode_keyed((msg.0, n_of(r, 0)?), bytes_of(r, 1)?)?))
            .collect()
    }

    fn attempt(&self, msg: MessageId, id: AttemptId) -> Result<Option<Attempt>, StoreError> {
        let row = self.row(
            "SELECT rec FROM attempts WHERE msg_id = $1 AND id = $2",
            &[&self::id(msg.0), &self::id(id.0)],
        )?;
        keyed((msg.0, id.0), row.as_ref())
    }

    fn message_attempts(
        &self,
        msg: MessageId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        self.page(ATTEMPTS_UP, ATTEMPTS_DOWN, &[&id(msg.0)], query, |row| {
            let a: Attempt = decode_keyed((msg.0, id_of(row, 0)?), bytes_of(row, 1)?)?;
            Ok(keep(&a).then_some(a))
        })
    }

    fn endpoint_attempts(
        &self,
        endpoint: EndpointId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        self.page(
            ENDPOINT_ATTEMPTS_UP,
            ENDPOINT_ATTEMPTS_DOWN,
            &[&id(endpoint.0)],
            query,
            |row| {
                // An index entry whose attempt is gone is passed over, as on redb.
                let Some(rec) = row.try_get::<_, Option<&[u8]>>(2).map_err(pg_error)? else {
                    return Ok(None);
                };
                let a: Attempt = decode_keyed((id_of(row, 1)?, id_of(row, 0)?), rec)?;
                Ok(keep(&a).then_some(a))
            },
        )
    }

    fn is_latest_attempt(&self, attempt: &Attempt) -> Result<bool, StoreError> {
        Ok(!self.attempt_after(attempt.msg_id, attempt.endpoint_id, attempt.id.0)?)
    }

    fn endpoint_attempts_between(
        &self,
        endpoint: EndpointId,
        lo: u128,
        hi: u128,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        if lo > hi {
            return Ok(Vec::new());
        }
        // The limit counts index entries, found or not, as redb's does.
        let rows = self.rows(
            ENDPOINT_ATTEMPTS_DOWN,
            &[&id(lo), &id(hi), &limit_of(limit), &id(endpoint.0)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(rec) = row.try_get::<_, Option<&[u8]>>(2).map_err(pg_error)? {
                out.push(decode_keyed((id_of(row, 1)?, id_of(row, 0)?), rec)?);
            }
        }
        Ok(out)
    }

    fn due_deliveries(
        &self,
        lane: Priority,
        now_ms: Millis,
        limit: usize,
        scan_max: usize,
        skip: &mut dyn FnMut(QueueEntry) -> bool,
    ) -> Result<DueDeliveries, StoreError> {
        let mut due = Vec::new();
        let mut next = None;
        if limit == 0 {
            return Ok((due, None));
        }
        let lane = self::lane(lane);
        // Entries looked at, and the last of them (where the next chunk starts).
        let mut scanned = 0usize;
        let mut last: Option<(i64, Vec<u8>, i32)> = None;
        // Enough for `limit` due entries and the one after them; doubled while `skip` refuses
        // many (a busy endpoint's backlog).
        let mut chunk = limit.saturating_add(1).clamp(16, QUEUE_CHUNK);
        'scan: loop {
            // The entry at `scan_max` is the last one looked at (whether it is due).
            let want = chunk.min((scan_max - scanned).saturating_add(1));
            let now = big(now_ms);
            let rows = match &last {
                None => self.rows(QUEUE_FIRST, &[&lane, &limit_of(want), &now, &self.node])?,
                Some((d, m, k)) => self.rows(
                    QUEUE_AFTER,
                    &[&lane, &limit_of(want), d, m, k, &now, &self.node],
                )?,
            };
            for row in &rows {
                let due_ms = u64_of(row, 0)?;
                if due_ms > now_ms {
                    next = Some(due_ms);
                    break 'scan;
                }
                if scanned >= scan_max {
                    next = Some(now_ms);
                    break 'scan;
                }
                scanned += 1;
                let (msg, at) = (id_of(row, 1)?, n_of(row, 2)?);
                last = Some((row.try_get(0).map_err(pg_error)?, id(msg), n(at)));
                let entry = QueueEntry {
                    id: DeliveryId {
                        msg: MessageId(msg),
                        n: at,
                    },
                    endpoint: EndpointId(id_of(row, 3)?),
                    due_ms,
                };
                if skip(entry) {
                    continue;
                }
                due.push(entry);
                if due.len() >= limit {
                    break 'scan;
                }
            }
            if rows.len() < want {
                break;
            }
            chunk = chunk.saturating_mul(2).min(QUEUE_CHUNK);
        }
        Ok((due, next))
    }

    fn parked_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        let rows = self.rows(
            "SELECT msg_id, n FROM parked WHERE endpoint_id = $1 ORDER BY msg_id, n LIMIT $2",
            &[&id(endpoint.0), &limit_of(limit)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryId {
                    msg: MessageId(id_of(r, 0)?),
                    n: n_of(r, 1)?,
                })
            })
            .collect()
    }

    fn queue_depth(&self, lane: Priority) -> Result<u64, StoreError> {
        let row = self.rows(
            "SELECT count(*) FROM queue WHERE lane = $1",
            &[&self::lane(lane)],
        )?;
        row.first().map_or(Ok(0), |r| u64_of(r, 0))
    }

    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError> {
        let row = self.row("SELECT rec FROM tokens WHERE hash = $1", &[&&hash[..]])?;
        record(row.as_ref())
    }

    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let rows = self.rows("SELECT rec FROM tokens ORDER BY hash", &[])?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }

    fn idempotent_response(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        let row = self.row("SELECT rec FROM idempotency WHERE hash = $1", &[&&key[..]])?;
        record(row.as_ref())
    }

    fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        if !storable(username) {
            return Ok(None);
        }
        let row = self.row("SELECT rec FROM users WHERE username = $1", &[&username])?;
        record(row.as_ref())
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self.rows("SELECT rec FROM users ORDER BY username COLLATE \"C\"", &[])?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }

    fn user_count(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT count(*) FROM users", &[])?;
        rows.first().map_or(Ok(0), |r| u64_of(r, 0))
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let row = self.row("SELECT rec FROM sessions WHERE hash = $1", &[&&hash[..]])?;
        record(row.as_ref())
    }

    fn portal_link(&self, hash: &[u8; 32]) -> Result<Option<PortalLink>, StoreError> {
        let row = self.row(
            "SELECT rec FROM portal_links WHERE hash = $1",
            &[&&hash[..]],
        )?;
        record(row.as_ref())
    }

    fn setup_token(&self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        let row = self.row(
            "SELECT rec FROM setup_tokens WHERE hash = $1",
            &[&&hash[..]],
        )?;
        record(row.as_ref())
    }

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        let row = self.row("SELECT rec FROM alerts WHERE id = $1", &[&self::id(id.0)])?;
        record(row.as_ref())
    }

    fn app_endpoint_count(&self, app: AppId) -> Result<u64, StoreError> {
        let rows = self.rows(
            "SELECT count(*) FROM endpoints WHERE app_id = $1",
            &[&id(app.0)],
        )?;
        rows.first().map_or(Ok(0), |r| u64_of(r, 0))
    }

    fn endpoints_upto(&self, limit: usize) -> Result<Vec<Endpoint>, StoreError> {
        let rows = self.rows(
            "SELECT rec FROM endpoints ORDER BY id LIMIT $1",
            &[&limit_of(limit)],
        )?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }

    fn apps_matching(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&App) -> bool,
        scan_max: usize,
    ) -> Result<Page<App>, StoreError> {
        // Newest first whatever `query.descending` says, with redb's own cursor arithmetic
        // (not `pages::plan`'s).
        let (lo, hi) = (*query.within.start(), *query.within.end());
        let (from, to, upward) = match query.cursor {
            Cursor::First => (lo, hi, false),
            Cursor::After(k) => (lo, k.saturating_sub(1).min(hi), false),
            Cursor::Before(k) => (k.saturating_add(1).max(lo), hi, true),
        };
        let mut items = Vec::new();
        if from > to {
            return Ok(Page { items, done: true });
        }
        let mut scanned = 0;
        let mut done = true;
        // At least one application is looked at, as on redb, whatever `scan_max`.
        self.walk(
            if upward { APPS_UP } else { APPS_DOWN },
            upward,
            (from, to),
            scan_max.max(1),
            &[],
            |row| {
                let app: App = decode(bytes_of(row, 1)?)?;
                scanned += 1;
                if keep(&app) {
                    if items.len() == query.limit {
                        done = false;
                        return Ok(false);
                    }
                    items.push(app);
                }
                if scanned >= scan_max {
                    done = false;
                    return Ok(false);
                }
                Ok(true)
            },
        )?;
        if upward {
            items.reverse();
        }
        Ok(Page { items, done })
    }

    fn message_attempts_upto(
        &self,
        msg: MessageId,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        let rows = self.rows(
            "SELECT id, rec FROM attempts WHERE msg_id = $1 ORDER BY id LIMIT $2",
            &[&id(msg.0), &limit_of(limit)],
        )?;
        rows.iter()
            .map(|r| Ok(decode_keyed((msg.0, id_of(r, 0)?), bytes_of(r, 1)?)?))
            .collect()
    }

    fn alerts_after(&self, after: u128, limit: usize) -> Result<Vec<Alert>, StoreError> {
        if after == u128::MAX {
            return Ok(Vec::new());
        }
        let rows = self.rows(
            "SELECT rec FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
            &[&id(after), &limit_of(limit)],
        )?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }

    fn cursor(&self, name: &str) -> Result<Option<u128>, StoreError> {
        if !storable(name) {
            return Ok(None);
        }
        let row = self.row("SELECT position FROM cursors WHERE name = $1", &[&name])?;
        row.map(|r| id_of(&r, 0)).transpose()
    }

    fn visit_endpoint_attempts(
        &self,
        endpoint: EndpointId,
        (from, to): (u128, u128),
        newest_first: bool,
        limit: usize,
        visit: &mut dyn FnMut(AttemptId, DeliveryId) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        let mut last = None;
        if from > to {
            return Ok((0, last));
        }
        let mut visited = 0;
        self.walk(
            if newest_first {
                ENDPOINT_ATTEMPT_HEADS_DOWN
            } else {
                ENDPOINT_ATTEMPT_HEADS_UP
            },
            !newest_first,
            (from, to),
            limit,
            &[&id(endpoint.0)],
            |row| {
                let key = (id_of(row, 1)?, id_of(row, 0)?);
                visited += 1;
                last = Some(key.1);
                let Some(head) = row.try_get::<_, Option<&[u8]>>(2).map_err(pg_error)? else {
                    return Ok(true); // removed by retention meanwhile
                };
                let (delivery, _) = decode_attempt_head(key, head)?;
                visit(AttemptId(key.1), delivery)
            },
        )?;
        Ok((visited, last))
    }

    fn later_attempt_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
        after: AttemptId,
    ) -> Result<bool, StoreError> {
        self.attempt_after(msg, endpoint, after.0)
    }

    fn visit_message_heads(
        &self,
        app: AppId,
        (from, to): (u128, u128),
        limit: usize,
        visit: &mut dyn FnMut(MessageHead) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        let mut last = None;
        if from > to {
            return Ok((0, last));
        }
        let mut visited = 0;
        // The whole row: whether a payload is kept is known only past the payload's length.
        self.walk(MESSAGES_UP, true, (from, to), limit, &[&id(app.0)], |row| {
            let key = (app.0, id_of(row, 0)?);
            visited += 1;
            last = Some(key.1);
            visit(decode_message_head(key, bytes_of(row, 1)?)?)
        })?;
        Ok((visited, last))
    }

    fn message_head(&self, app: AppId, id: MessageId) -> Result<Option<MessageHead>, StoreError> {
        let row = self.row(
            "SELECT rec FROM messages WHERE app_id = $1 AND id = $2",
            &[&self::id(app.0), &self::id(id.0)],
        )?;
        row.map(|r| Ok(decode_message_head((app.0, id.0), bytes_of(&r, 0)?)?))
            .transpose()
    }

    fn newest_delivery_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
    ) -> Result<Option<Delivery>, StoreError> {
        let mut found = None;
        self.deliveries_down(msg, usize::MAX, |d| {
            if d.endpoint_id == endpoint {
                found = Some(d);
            }
            found.is_none()
        })?;
        Ok(found)
    }

    fn manual_deliveries(&self, msg: MessageId, upto: usize) -> Result<usize, StoreError> {
        let mut count = 0;
        // The one after `upto` manual ones is read too, as on redb (and stops the count).
        self.deliveries_down(msg, upto.saturating_add(1), |d| {
            if d.trigger_type != TriggerType::Manual || count >= upto {
                return false;
            }
            count += 1;
            true
        })?;
        Ok(count)
    }

    fn task(&self, id: TaskId) -> Result<Option<BackgroundTask>, StoreError> {
        let row = self.row("SELECT rec FROM tasks WHERE id = $1", &[&self::id(id.0)])?;
        record(row.as_ref())
    }

    fn app_tasks(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        self.page(APP_TASKS_UP, APP_TASKS_DOWN, &[&id(app.0)], query, |row| {
            let task: BackgroundTask = decode(bytes_of(row, 1)?)?;
            Ok(keep(&task).then_some(task))
        })
    }

    fn tasks(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        self.page(TASKS_UP, TASKS_DOWN, &[], query, |row| {
            let task: BackgroundTask = decode(bytes_of(row, 1)?)?;
            Ok(keep(&task).then_some(task))
        })
    }

    fn running_tasks_of(&self, app: AppId) -> Result<usize, StoreError> {
        let rows = self.rows(
            "SELECT count(*) FROM tasks WHERE app_id = $1 AND running",
            &[&id(app.0)],
        )?;
        Ok(rows.first().map_or(Ok(0), |r| u64_of(r, 0))? as usize)
    }

    fn running_tasks(&self, limit: usize) -> Result<Vec<TaskId>, StoreError> {
        // The first `limit` running tasks in (application, task) order, then sorted by id, as
        // redb walks its (app id, task id) index; a `limit` of 0 takes them all, as redb's
        // loop does.
        let cap = if limit == 0 {
            i64::MAX
        } else {
            limit_of(limit)
        };
        let rows = self.rows(
            "SELECT id FROM tasks WHERE running ORDER BY app_id, id LIMIT $1",
            &[&cap],
        )?;
        let mut out = rows
            .iter()
            .map(|r| id_of(r, 0).map(TaskId))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }

    fn alerts(&self, limit: usize, before: Option<AlertId>) -> Result<Vec<Alert>, StoreError> {
        let upper = before.map(|b| b.0.saturating_sub(1)).unwrap_or(u128::MAX);
        let rows = self.rows(
            "SELECT rec FROM alerts WHERE id <= $1 ORDER BY id DESC LIMIT $2",
            &[&id(upper), &limit_of(limit)],
        )?;
        rows.iter().map(|r| Ok(decode(bytes_of(r, 0)?)?)).collect()
    }
}
