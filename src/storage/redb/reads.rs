//! Typed reads, written once for both a read transaction (`Reader`) and the writer's
//! transaction (`Writer`), so a write can check what is there before it writes: trait
//! `TxRead`, whose methods are storage's `Read` (see `interface.rs`).

use redb::{ReadableTable, ReadableTableMetadata};
use serde::de::DeserializeOwned;

use super::codec::{IdempotentResponse, Record, decode};
use super::pages::page_by_prefix;
use super::rows::{KeyedRecord, decode_keyed};
use super::tables::*;
use super::{Reader, StoreError, Tx, Writer};
use crate::model::*;
use crate::storage::{Page, PageQuery};

/// The record stored under a key, decoded.
fn decoded<T: Record>(
    found: Option<redb::AccessGuard<'_, &'static [u8]>>,
) -> Result<Option<T>, StoreError> {
    Ok(found.map(|v| decode(v.value())).transpose()?)
}

/// `decoded` for a record stored without its key's fields (`rows.rs`).
pub(super) fn keyed<T: KeyedRecord + DeserializeOwned>(
    key: T::Key,
    found: Option<redb::AccessGuard<'_, &'static [u8]>>,
) -> Result<Option<T>, StoreError> {
    Ok(found.map(|v| decode_keyed(key, v.value())).transpose()?)
}

/// A range entry of a table stored without its key's fields (`rows.rs`), decoded.
pub(super) fn keyed_entry<K, T>(
    entry: Result<
        (
            redb::AccessGuard<'_, K>,
            redb::AccessGuard<'_, &'static [u8]>,
        ),
        redb::StorageError,
    >,
) -> Result<T, StoreError>
where
    K: redb::Key + 'static + for<'k> redb::Value<SelfType<'k> = T::Key>,
    T: KeyedRecord + DeserializeOwned,
{
    let (k, v) = entry?;
    Ok(decode_keyed(k.value(), v.value())?)
}

/// One entry of a queue lane: the delivery, its endpoint, and the due time that keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: DeliveryId,
    pub endpoint: EndpointId,
    pub due_ms: Millis,
}

/// Deliveries due now, and when the next one after them is due.
pub type DueDeliveries = (Vec<QueueEntry>, Option<Millis>);

/// A transaction that can be read. Implemented by `Reader` and `Writer`.
pub trait TxRead {
    #[doc(hidden)]
    type X: Tx;
    #[doc(hidden)]
    fn tx(&self) -> &Self::X;

    fn app(&self, id: AppId) -> Result<Option<App>, StoreError> {
        let t = self.tx().table(APPS)?;
        decoded(t.get(id.0)?)
    }

    fn app_id_by_uid(&self, uid: &str) -> Result<Option<AppId>, StoreError> {
        let t = self.tx().table(APP_UIDS)?;
        Ok(t.get(uid)?.map(|v| AppId(v.value())))
    }

    fn apps(&self, query: &PageQuery) -> Result<Page<App>, StoreError> {
        // Applications are keyed by id alone; page them as the single prefix 0 over an index
        // built on the fly would cost a scan, so walk the table directly.
        let t = self.tx().table(APPS)?;
        let (lo, hi) = (*query.within.start(), *query.within.end());
        let mut items = Vec::new();
        let (from, to, forward, flip) = match (query.cursor, query.descending) {
            (crate::storage::Cursor::First, d) => (lo, hi, !d, false),
            (crate::storage::Cursor::After(k), false) => (k.saturating_add(1), hi, true, false),
            (crate::storage::Cursor::After(k), true) => (lo, k.saturating_sub(1), false, false),
            (crate::storage::Cursor::Before(k), false) => (lo, k.saturating_sub(1), false, true),
            (crate::storage::Cursor::Before(k), true) => (k.saturating_add(1), hi, true, true),
        };
        if from > to {
            return Ok(Page { items, done: true });
        }
        let range = t.range(from..=to)?;
        let take = query.limit + 1;
        if forward {
            for e in range.take(take) {
                items.push(decode::<App>(e?.1.value())?);
            }
        } else {
            for e in range.rev().take(take) {
                items.push(decode::<App>(e?.1.value())?);
            }
        }
        let done = items.len() <= query.limit;
        items.truncate(query.limit);
        if flip {
            items.reverse();
        }
        Ok(Page { items, done })
    }

    fn event_type(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        let t = self.tx().table(EVENT_TYPES)?;
        decoded(t.get(name)?)
    }

    /// Event types by name, ascending, strictly after `after` (or before `before`).
    fn event_types(
        &self,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
        include_archived: bool,
    ) -> Result<Page<EventType>, StoreError> {
        let t = self.tx().table(EVENT_TYPES)?;
        let mut items = Vec::new();
        let mut push = |v: &[u8]| -> Result<bool, StoreError> {
            let et: EventType = decode(v)?;
            if include_archived || !et.archived {
                items.push(et);
            }
            Ok(items.len() > limit)
        };
        match (after, before) {
            (_, Some(b)) => {
                for e in t.range::<&str>(..b)?.rev() {
                    if push(e?.1.value())? {
                        break;
                    }
                }
            }
            (Some(a), None) => {
                for e in t.range::<&str>(a..)? {
                    let e = e?;
                    if e.0.value() == a {
                        continue;
                    }
                    if push(e.1.value())? {
                        break;
                    }
                }
            }
            (None, None) => {
                for e in t.iter()? {
                    if push(e?.1.value())? {
                        break;
                    }
                }
            }
        }
        let done = items.len() <= limit;
        items.truncate(limit);
        if before.is_some() {
            items.reverse();
        }
        Ok(Page { items, done })
    }

    fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let t = self.tx().table(ENDPOINTS)?;
        decoded(t.get(id.0)?)
    }

    fn endpoint_id_by_uid(&self, app: AppId, uid: &str) -> Result<Option<EndpointId>, StoreError> {
        let t = self.tx().table(ENDPOINT_UIDS)?;
        Ok(t.get((app.0, uid))?.map(|v| EndpointId(v.value())))
    }

    /// Every endpoint of an application (bounded by how many an application may have).
    fn app_endpoints(&self, app: AppId) -> Result<Vec<Endpoint>, StoreError> {
        let index = self.tx().table(APP_ENDPOINTS)?;
        let eps = self.tx().table(ENDPOINTS)?;
        let mut out = Vec::new();
        for e in index.range((app.0, 0)..=(app.0, u128::MAX))? {
            let (_, id) = e?.0.value();
            if let Some(v) = eps.get(id)? {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    fn endpoints(&self, app: AppId, query: &PageQuery) -> Result<Page<Endpoint>, StoreError> {
        let index = self.tx().table(APP_ENDPOINTS)?;
        let eps = self.tx().table(ENDPOINTS)?;
        page_by_prefix(&index, app.0, query, |id, ()| decoded(eps.get(id)?))
    }

    fn trigger(&self, app: AppId, id: TriggerId) -> Result<Option<Trigger>, StoreError> {
        let t = self.tx().table(TRIGGERS)?;
        decoded(t.get((app.0, id.0))?)
    }

    /// Every trigger of an application, oldest first.
    fn app_triggers(&self, app: AppId) -> Result<Vec<Trigger>, StoreError> {
        let t = self.tx().table(TRIGGERS)?;
        let mut out = Vec::new();
        for e in t.range((app.0, 0)..=(app.0, u128::MAX))? {
            out.push(decode(e?.1.value())?);
        }
        Ok(out)
    }

    fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError> {
        let t = self.tx().table(MESSAGES)?;
        let key = (app.0, id.0);
        keyed(key, t.get(key)?)
    }

    fn message_id_by_event_id(
        &self,
        app: AppId,
        event_id: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        let t = self.tx().table(MESSAGE_EVENT_IDS)?;
        Ok(t.get((app.0, event_id))?.map(|v| MessageId(v.value())))
    }

    /// Messages of an application; `keep` filters (event type, channel).
    fn messages(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError> {
        let t = self.tx().table(MESSAGES)?;
        page_by_prefix(&t, app.0, query, |id, v| {
            let m: Message = decode_keyed((app.0, id), v)?;
            Ok(keep(&m).then_some(m))
        })
    }

    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let t = self.tx().table(DELIVERIES)?;
        let key = (id.msg.0, id.n);
        keyed(key, t.get(key)?)
    }

    /// Every delivery of a message, in the order they were made.
    fn message_deliveries(&self, msg: MessageId) -> Result<Vec<Delivery>, StoreError> {
        let t = self.tx().table(DELIVERIES)?;
        let mut out = Vec::new();
        for e in t.range((msg.0, 0)..=(msg.0, u16::MAX))? {
            out.push(keyed_entry(e)?);
        }
        Ok(out)
    }

    fn attempt(&self, msg: MessageId, id: AttemptId) -> Result<Option<Attempt>, StoreError> {
        let t = self.tx().table(ATTEMPTS)?;
        let key = (msg.0, id.0);
        keyed(key, t.get(key)?)
    }

    fn message_attempts(
        &self,
        msg: MessageId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        let t = self.tx().table(ATTEMPTS)?;
        page_by_prefix(&t, msg.0, query, |id, v| {
            let a: Attempt = decode_keyed((msg.0, id), v)?;
            Ok(keep(&a).then_some(a))
        })
    }

    fn endpoint_attempts(
        &self,
        endpoint: EndpointId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        let index = self.tx().table(ENDPOINT_ATTEMPTS)?;
        let attempts = self.tx().table(ATTEMPTS)?;
        page_by_prefix(&index, endpoint.0, query, |id, msg| {
            let a: Option<Attempt> = keyed((msg, id), attempts.get((msg, id))?)?;
            Ok(a.filter(|a| keep(a)))
        })
    }

    /// Whether `attempt` is the newest attempt of its message to its endpoint.
    fn is_latest_attempt(&self, attempt: &Attempt) -> Result<bool, StoreError> {
        let t = self.tx().table(ATTEMPTS)?;
        let lo = attempt.id.0.saturating_add(1);
        if lo == 0 || attempt.id.0 == u128::MAX {
            return Ok(true);
        }
        for e in t.range((attempt.msg_id.0, lo)..=(attempt.msg_id.0, u128::MAX))? {
            let later: Attempt = keyed_entry(e)?;
            if later.endpoint_id == attempt.endpoint_id {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Attempts of an endpoint between two attempt ids, newest first, at most `limit`.
    fn endpoint_attempts_between(
        &self,
        endpoint: EndpointId,
        lo: u128,
        hi: u128,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        let index = self.tx().table(ENDPOINT_ATTEMPTS)?;
        let attempts = self.tx().table(ATTEMPTS)?;
        let mut out = Vec::new();
        if lo > hi {
            return Ok(out);
        }
        for e in index
            .range((endpoint.0, lo)..=(endpoint.0, hi))?
            .rev()
            .take(limit)
        {
            let (k, msg) = e?;
            let key = (msg.value(), k.value().1);
            out.extend(keyed(key, attempts.get(key)?)?);
        }
        Ok(out)
    }

    /// Up to `limit` due deliveries of one lane (due at or before `now_ms`), oldest due first,
    /// with their endpoints, passing over those `skip` refuses (already in flight, or their
    /// endpoint is busy). Looks at no more than `scan_max` entries. Also answers when the
    /// earliest not-yet-due entry of the lane falls due.
    fn due_deliveries(
        &self,
        lane: Priority,
        now_ms: Millis,
        limit: usize,
        scan_max: usize,
        skip: &mut dyn FnMut(QueueEntry) -> bool,
    ) -> Result<DueDeliveries, StoreError> {
        let t = self.tx().table(super::ops::lane_table(lane))?;
        let mut due = Vec::new();
        let mut next = None;
        if limit == 0 {
            return Ok((due, None));
        }
        for (scanned, e) in t.iter()?.enumerate() {
            let (k, v) = e?;
            let (due_ms, msg, n) = k.value();
            if due_ms > now_ms {
                next = Some(due_ms);
                break;
            }
            if scanned >= scan_max {
                next = Some(now_ms);
                break;
            }
            let id = DeliveryId {
                msg: MessageId(msg),
                n,
            };
            let entry = QueueEntry {
                id,
                endpoint: EndpointId(v.value()),
                due_ms,
            };
            if skip(entry) {
                continue;
            }
            due.push(entry);
            if due.len() >= limit {
                break;
            }
        }
        Ok((due, next))
    }

    /// Deliveries parked for an endpoint (disabled or unverified), at most `limit`.
    fn parked_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        let t = self.tx().table(PARKED)?;
        let mut out = Vec::new();
        for e in t
            .range((endpoint.0, 0, 0)..=(endpoint.0, u128::MAX, u16::MAX))?
            .take(limit)
        {
            let (_, msg, n) = e?.0.value();
            out.push(DeliveryId {
                msg: MessageId(msg),
                n,
            });
        }
        Ok(out)
    }

    /// Pending entries of a lane.
    fn queue_depth(&self, lane: Priority) -> Result<u64, StoreError> {
        Ok(self.tx().table(super::ops::lane_table(lane))?.len()?)
    }

    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError> {
        let t = self.tx().table(TOKENS)?;
        decoded(t.get(hash)?)
    }

    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let t = self.tx().table(TOKENS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            out.push(decode(e?.1.value())?);
        }
        Ok(out)
    }

    fn idempotent_response(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        let t = self.tx().table(IDEMPOTENCY)?;
        decoded(t.get(key)?)
    }

    // ---- the dashboard's records ----------------------------------------------------------

    fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let t = self.tx().table(USERS)?;
        decoded(t.get(username)?)
    }

    /// Every user, by name (operators are few).
    fn users(&self) -> Result<Vec<User>, StoreError> {
        let t = self.tx().table(USERS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            out.push(decode(e?.1.value())?);
        }
        Ok(out)
    }

    fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self.tx().table(USERS)?.len()?)
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let t = self.tx().table(SESSIONS)?;
        decoded(t.get(hash)?)
    }

    fn portal_link(&self, hash: &[u8; 32]) -> Result<Option<PortalLink>, StoreError> {
        let t = self.tx().table(PORTAL_LINKS)?;
        decoded(t.get(hash)?)
    }

    fn setup_token(&self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        let t = self.tx().table(SETUP_TOKENS)?;
        decoded(t.get(hash)?)
    }

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        let t = self.tx().table(ALERTS)?;
        decoded(t.get(id.0)?)
    }

    /// How many endpoints an application has.
    fn app_endpoint_count(&self, app: AppId) -> Result<u64, StoreError> {
        let t = self.tx().table(APP_ENDPOINTS)?;
        let mut n = 0;
        for e in t.range((app.0, 0)..=(app.0, u128::MAX))? {
            e?;
            n += 1;
        }
        Ok(n)
    }

    /// Endpoints of every application, oldest first, at most `limit` (e.g. to find the
    /// subscribers of an event type).
    fn endpoints_upto(&self, limit: usize) -> Result<Vec<Endpoint>, StoreError> {
        let t = self.tx().table(ENDPOINTS)?;
        let mut out = Vec::new();
        for e in t.iter()?.take(limit) {
            out.push(decode(e?.1.value())?);
        }
        Ok(out)
    }

    /// Applications, newest first, that `keep` accepts; pages like `apps`, passing over at
    /// most `scan_max` applications per page.
    fn apps_matching(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&App) -> bool,
        scan_max: usize,
    ) -> Result<Page<App>, StoreError> {
        let t = self.tx().table(APPS)?;
        let (lo, hi) = (*query.within.start(), *query.within.end());
        let (from, to, upward) = match query.cursor {
            crate::storage::Cursor::First => (lo, hi, false),
            crate::storage::Cursor::After(k) => (lo, k.saturating_sub(1).min(hi), false),
            crate::storage::Cursor::Before(k) => (k.saturating_add(1).max(lo), hi, true),
        };
        let mut items = Vec::new();
        if from > to {
            return Ok(Page { items, done: true });
        }
        let mut scanned = 0;
        let mut done = true;
        let range = t.range(from..=to)?;
        let iter: Box<dyn Iterator<Item = _>> = if upward {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        for e in iter {
            let app: App = decode(e?.1.value())?;
            scanned += 1;
            if keep(&app) {
                if items.len() == query.limit {
                    done = false;
                    break;
                }
                items.push(app);
            }
            if scanned >= scan_max {
                done = false;
                break;
            }
        }
        if upward {
            items.reverse();
        }
        Ok(Page { items, done })
    }

    /// Every attempt of a message, oldest first, at most `limit`.
    fn message_attempts_upto(
        &self,
        msg: MessageId,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        let t = self.tx().table(ATTEMPTS)?;
        let mut out = Vec::new();
        for e in t.range((msg.0, 0)..=(msg.0, u128::MAX))?.take(limit) {
            out.push(keyed_entry(e)?);
        }
        Ok(out)
    }

    /// Alerts, newest first.
    /// Alerts newer than `after`, oldest first.
    fn alerts_after(&self, after: u128, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let t = self.tx().table(ALERTS)?;
        let mut out = Vec::new();
        if after == u128::MAX {
            return Ok(out);
        }
        for e in t.range(after + 1..)?.take(limit) {
            out.push(decode(e?.1.value())?);
        }
        Ok(out)
    }

    /// A named position kept by a background task (e.g. the last alert sent as a webhook).
    fn cursor(&self, name: &str) -> Result<Option<u128>, StoreError> {
        let t = self.tx().table(CURSORS)?;
        Ok(t.get(name)?.map(|v| v.value()))
    }

    // ---- bulk scans (recover, replay-missing, stats): ids and small fields only ---------

    /// Visits the endpoint's attempts with ids in `from..=to` (oldest first, or newest first),
    /// each as its id and delivery, without decoding the stored response; stops when `visit`
    /// answers false or after `limit` attempts. Answers how many it passed and the id of the
    /// last one.
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
        let index = self.tx().table(ENDPOINT_ATTEMPTS)?;
        let attempts = self.tx().table(ATTEMPTS)?;
        let range = index.range((endpoint.0, from)..=(endpoint.0, to))?;
        let entries: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut visited = 0;
        for e in entries.take(limit) {
            let (k, msg) = e?;
            visited += 1;
            let key = (msg.value(), k.value().1);
            last = Some(key.1);
            let Some(row) = attempts.get(key)? else {
                continue; // removed by retention meanwhile
            };
            let (delivery, _) = super::rows::decode_attempt_head(key, row.value())?;
            if !visit(AttemptId(key.1), delivery)? {
                break;
            }
        }
        Ok((visited, last))
    }

    /// Whether `msg` has an attempt to `endpoint` made after `after`.
    fn later_attempt_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
        after: AttemptId,
    ) -> Result<bool, StoreError> {
        let Some(lo) = after.0.checked_add(1) else {
            return Ok(false);
        };
        let t = self.tx().table(ATTEMPTS)?;
        for e in t.range((msg.0, lo)..=(msg.0, u128::MAX))? {
            let (k, v) = e?;
            if super::rows::decode_attempt_head(k.value(), v.value())?.1 == endpoint {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Visits the application's messages with ids in `from..=to`, oldest first, without their
    /// payloads; stops when `visit` answers false or after `limit`. Answers how many it passed
    /// and the id of the last one.
    fn visit_message_heads(
        &self,
        app: AppId,
        (from, to): (u128, u128),
        limit: usize,
        visit: &mut dyn FnMut(super::rows::MessageHead) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        let mut last = None;
        if from > to {
            return Ok((0, last));
        }
        let t = self.tx().table(MESSAGES)?;
        let mut visited = 0;
        for e in t.range((app.0, from)..=(app.0, to))?.take(limit) {
            let (k, v) = e?;
            visited += 1;
            last = Some(k.value().1);
            if !visit(super::rows::decode_message_head(k.value(), v.value())?)? {
                break;
            }
        }
        Ok((visited, last))
    }

    fn message_head(
        &self,
        app: AppId,
        id: MessageId,
    ) -> Result<Option<super::rows::MessageHead>, StoreError> {
        let t = self.tx().table(MESSAGES)?;
        let key = (app.0, id.0);
        Ok(t.get(key)?
            .map(|v| super::rows::decode_message_head(key, v.value()))
            .transpose()?)
    }

    /// The newest delivery of a message to one endpoint.
    fn newest_delivery_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
    ) -> Result<Option<Delivery>, StoreError> {
        newest_delivery_in(&self.tx().table(DELIVERIES)?, msg, endpoint)
    }

    /// How many deliveries of a message were made by hand (resend, recover, replay), counted
    /// up to `upto`. They follow the routed ones, which are all made at ingest, so this counts
    /// back from the newest.
    fn manual_deliveries(&self, msg: MessageId, upto: usize) -> Result<usize, StoreError> {
        manual_deliveries_in(&self.tx().table(DELIVERIES)?, msg, upto)
    }

    // ---- background tasks ------------------------------------------------------------

    fn task(&self, id: TaskId) -> Result<Option<BackgroundTask>, StoreError> {
        let t = self.tx().table(TASKS)?;
        decoded(t.get(id.0)?)
    }

    /// An application's tasks, paged by id, that `keep` accepts.
    fn app_tasks(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        let index = self.tx().table(APP_TASKS)?;
        let tasks = self.tx().table(TASKS)?;
        page_by_prefix(&index, app.0, query, |id, _| {
            let task: Option<BackgroundTask> = decoded(tasks.get(id)?)?;
            Ok(task.filter(|t| keep(t)))
        })
    }

    /// Every application's tasks, paged by id, that `keep` accepts.
    fn tasks(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        let t = self.tx().table(TASKS)?;
        super::pages::page_by_id(&t, query, |_, v| {
            let task: BackgroundTask = decode(v)?;
            Ok(keep(&task).then_some(task))
        })
    }

    /// How many of an application's tasks are running.
    fn running_tasks_of(&self, app: AppId) -> Result<usize, StoreError> {
        let t = self.tx().table(APP_TASKS)?;
        let mut n = 0;
        for e in t.range((app.0, 0)..=(app.0, u128::MAX))? {
            n += usize::from(e?.1.value());
        }
        Ok(n)
    }

    /// The running tasks of every application, oldest first, at most `limit` (to carry on
    /// after a restart).
    fn running_tasks(&self, limit: usize) -> Result<Vec<TaskId>, StoreError> {
        let t = self.tx().table(APP_TASKS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, running) = e?;
            if running.value() {
                out.push(TaskId(k.value().1));
                if out.len() == limit {
                    break;
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn alerts(&self, limit: usize, before: Option<AlertId>) -> Result<Vec<Alert>, StoreError> {
        let t = self.tx().table(ALERTS)?;
        let upper = before.map(|b| b.0.saturating_sub(1)).unwrap_or(u128::MAX);
        let mut out = Vec::new();
        for e in t.range(..=upper)?.rev().take(limit) {
            out.push(decode(e?.1.value())?);
        }
        Ok(out)
    }
}

/// `Read::newest_delivery_to` over an open deliveries table.
fn newest_delivery_in(
    t: &impl ReadableTable<(u128, u16), &'static [u8]>,
    msg: MessageId,
    endpoint: EndpointId,
) -> Result<Option<Delivery>, StoreError> {
    for e in t.range((msg.0, 0)..=(msg.0, u16::MAX))?.rev() {
        let d: Delivery = keyed_entry(e)?;
        if d.endpoint_id == endpoint {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// `Read::manual_deliveries` over an open deliveries table.
fn manual_deliveries_in(
    t: &impl ReadableTable<(u128, u16), &'static [u8]>,
    msg: MessageId,
    upto: usize,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for e in t.range((msg.0, 0)..=(msg.0, u16::MAX))?.rev() {
        let d: Delivery = keyed_entry(e)?;
        if d.trigger_type != TriggerType::Manual || n >= upto {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// Deliveries with their messages and endpoints, read for the scheduler's dispatch: each
/// table is opened once and each endpoint decoded once however many deliveries of one dispatch
/// share it (opening a table and decoding an endpoint per delivery were a tenth of the
/// delivery side's CPU under load).
pub struct DispatchReads<'r> {
    _reader: std::marker::PhantomData<&'r Reader>,
    deliveries: redb::ReadOnlyTable<(u128, u16), &'static [u8]>,
    messages: redb::ReadOnlyTable<(u128, u128), &'static [u8]>,
    endpoints: redb::ReadOnlyTable<u128, &'static [u8]>,
    known: std::collections::HashMap<EndpointId, Option<std::sync::Arc<Endpoint>>>,
}

impl DispatchReads<'_> {
    pub fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let key = (id.msg.0, id.n);
        keyed(key, self.deliveries.get(key)?)
    }

    pub fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError> {
        let key = (app.0, id.0);
        keyed(key, self.messages.get(key)?)
    }

    pub fn endpoint(
        &mut self,
        id: EndpointId,
    ) -> Result<Option<std::sync::Arc<Endpoint>>, StoreError> {
        if let Some(known) = self.known.get(&id) {
            return Ok(known.clone());
        }
        let read = decoded(self.endpoints.get(id.0)?)?.map(std::sync::Arc::new);
        self.known.insert(id, read.clone());
        Ok(read)
    }
}

impl Reader {
    pub fn dispatch_reads(&self) -> Result<DispatchReads<'_>, StoreError> {
        Ok(DispatchReads {
            _reader: std::marker::PhantomData,
            deliveries: self.tx.open_table(DELIVERIES)?,
            messages: self.tx.open_table(MESSAGES)?,
            endpoints: self.tx.open_table(ENDPOINTS)?,
            known: Default::default(),
        })
    }
}

impl TxRead for Reader {
    type X = redb::ReadTransaction;
    fn tx(&self) -> &Self::X {
        &self.tx
    }
}

impl<'a> TxRead for Writer<'a> {
    type X = super::hot::WriteTx<'a>;
    fn tx(&self) -> &Self::X {
        &self.tx
    }

    /// Remembered for the batch (see `Writer::known`).
    fn app(&self, id: AppId) -> Result<Option<App>, StoreError> {
        if let Some(known) = self.known.borrow().apps.get(&id) {
            return Ok(known.clone());
        }
        let read = decoded::<App>(self.tx.table(APPS)?.get(id.0)?)?;
        self.known.borrow_mut().apps.insert(id, read.clone());
        Ok(read)
    }

    /// Remembered for the batch (see `Writer::known`).
    fn event_type(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        if let Some(known) = self.known.borrow().event_types.get(name) {
            return Ok(known.clone());
        }
        let read = decoded::<EventType>(self.tx.table(EVENT_TYPES)?.get(name)?)?;
        self.known
            .borrow_mut()
            .event_types
            .insert(name.to_string(), read.clone());
        Ok(read)
    }

    /// Through the batch's open handle: every attempt reads its delivery before writing it.
    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let key = (id.msg.0, id.n);
        self.tx.with(DELIVERIES, |t| keyed(key, t.get(key)?))
    }

    /// Through the batch's open handle: a task's chunk asks this of every message it queues.
    fn newest_delivery_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
    ) -> Result<Option<Delivery>, StoreError> {
        self.tx
            .with(DELIVERIES, |t| newest_delivery_in(t, msg, endpoint))
    }

    /// Through the batch's open handle, as `newest_delivery_to`.
    fn manual_deliveries(&self, msg: MessageId, upto: usize) -> Result<usize, StoreError> {
        self.tx
            .with(DELIVERIES, |t| manual_deliveries_in(t, msg, upto))
    }
}
