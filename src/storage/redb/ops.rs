//! Typed mutations. Each checks what it must before its first write (the writer's contract),
//! keeps every index in step with its table, and never decides a rule of its own: callers
//! (in `service/` and `delivery/`) decide, storage records.

use redb::{ReadableTable, TableDefinition};

use super::codec::{IdempotentResponse, encode};
use super::reads::{QueueEntry, TxRead};
use super::rows::{KeyedRecord, encode_keyed};
use super::tables::*;
use super::{Conflict, StoreError, Writer};
use crate::model::*;

pub(super) fn lane_table(lane: Priority) -> TableDefinition<'static, (u64, u128, u16), u128> {
    match lane {
        Priority::High => QUEUE_HIGH,
        Priority::Normal => QUEUE_NORMAL,
        Priority::Low => QUEUE_LOW,
    }
}

/// The routing decision `ingest_message` asks for: the deliveries a message owes, given the
/// application's endpoints and triggers.
pub type RouteFn<'r> = dyn Fn(&Message, &[Endpoint], &[Trigger]) -> Vec<NewDelivery> + 'r;

/// What became of an attempt, as the delivery side decided it.
#[derive(Clone, Debug)]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed; try again at this time.
    RetryAt(Millis),
    /// Failed for the last time; raise this alert.
    Exhausted(Alert),
    /// Failed for good without an alert of its own (410 Gone: the endpoint is disabled and
    /// that raises the alert).
    Abandoned,
}

/// An update whose `old` is not what is stored: read in an earlier job, it would bring back a
/// deleted row or undo a change committed since (a PATCH re-enabling an endpoint Herald just
/// disabled). Read and write in one job; this refuses the write that did not.
fn stale_update(what: &'static str) -> StoreError {
    StoreError::Stale(what)
}

impl Writer<'_> {
    // ---- applications -------------------------------------------------------------------

    pub fn insert_app(&mut self, app: &App) -> Result<(), StoreError> {
        if let Some(uid) = &app.uid
            && self.app_id_by_uid(uid)?.is_some()
        {
            return Err(StoreError::Conflict(Conflict::AppUid));
        }
        self.put_app(app, None)
    }

    /// Replaces an application, moving its uid index entry when the uid changed. `old` must be
    /// the application as stored now, read in the same job (`stale_update`).
    pub fn update_app(&mut self, old: &App, new: &App) -> Result<(), StoreError> {
        if self.app(old.id)?.as_ref() != Some(old) {
            return Err(stale_update("application"));
        }
        if new.uid != old.uid
            && let Some(uid) = &new.uid
            && self.app_id_by_uid(uid)?.is_some_and(|id| id != new.id)
        {
            return Err(StoreError::Conflict(Conflict::AppUid));
        }
        self.put_app(new, Some(old))
    }

    fn put_app(&mut self, app: &App, old: Option<&App>) -> Result<(), StoreError> {
        let mut uids = self.table_mut(APP_UIDS)?;
        if let Some(old_uid) = old.and_then(|o| o.uid.as_deref())
            && app.uid.as_deref() != Some(old_uid)
        {
            uids.remove(old_uid)?;
        }
        if let Some(uid) = &app.uid {
            uids.insert(uid.as_str(), app.id.0)?;
        }
        self.table_mut(APPS)?
            .insert(app.id.0, encode(app).as_slice())?;
        Ok(())
    }

    /// Deletes an application with its endpoints. Messages and attempts stay until retention
    /// removes them (they are history); pending deliveries find no endpoint and are cancelled.
    pub fn delete_app(&mut self, app: &App) -> Result<(), StoreError> {
        for ep in self.app_endpoints(app.id)? {
            self.delete_endpoint_triggers(app.id, ep.id)?;
            self.delete_endpoint(&ep)?;
        }
        if let Some(uid) = &app.uid {
            self.table_mut(APP_UIDS)?.remove(uid.as_str())?;
        }
        self.remove_app_tasks(app.id)?;
        self.table_mut(APPS)?.remove(app.id.0)?;
        Ok(())
    }

    // ---- event types --------------------------------------------------------------------

    pub fn put_event_type(&mut self, et: &EventType) -> Result<(), StoreError> {
        self.table_mut(EVENT_TYPES)?
            .insert(et.name.as_str(), encode(et).as_slice())?;
        Ok(())
    }

    pub fn remove_event_type(&mut self, name: &str) -> Result<(), StoreError> {
        self.table_mut(EVENT_TYPES)?.remove(name)?;
        Ok(())
    }

    // ---- endpoints ----------------------------------------------------------------------

    pub fn insert_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError> {
        if let Some(uid) = &ep.uid
            && self.endpoint_id_by_uid(ep.app_id, uid)?.is_some()
        {
            return Err(StoreError::Conflict(Conflict::EndpointUid));
        }
        self.table_mut(APP_ENDPOINTS)?
            .insert((ep.app_id.0, ep.id.0), ())?;
        self.put_endpoint(ep, None)
    }

    /// Replaces an endpoint, moving its uid index entry when the uid changed. `old` must be the
    /// endpoint as stored now, read in the same job (`stale_update`).
    pub fn update_endpoint(&mut self, old: &Endpoint, new: &Endpoint) -> Result<(), StoreError> {
        if self.endpoint(old.id)?.as_ref() != Some(old) {
            return Err(stale_update("endpoint"));
        }
        if new.uid != old.uid
            && let Some(uid) = &new.uid
            && self
                .endpoint_id_by_uid(new.app_id, uid)?
                .is_some_and(|id| id != new.id)
        {
            return Err(StoreError::Conflict(Conflict::EndpointUid));
        }
        self.put_endpoint(new, Some(old))
    }

    fn put_endpoint(&mut self, ep: &Endpoint, old: Option<&Endpoint>) -> Result<(), StoreError> {
        let mut uids = self.table_mut(ENDPOINT_UIDS)?;
        if let Some(old_uid) = old.and_then(|o| o.uid.as_deref())
            && ep.uid.as_deref() != Some(old_uid)
        {
            uids.remove((ep.app_id.0, old_uid))?;
        }
        if let Some(uid) = &ep.uid {
            uids.insert((ep.app_id.0, uid.as_str()), ep.id.0)?;
        }
        self.table_mut(ENDPOINTS)?
            .insert(ep.id.0, encode(ep).as_slice())?;
        Ok(())
    }

    /// Removes an endpoint. Its pending deliveries stay queued and are cancelled by the
    /// delivery side when it finds the endpoint gone (bounded work here, whatever the backlog).
    pub fn delete_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError> {
        if let Some(uid) = &ep.uid {
            self.table_mut(ENDPOINT_UIDS)?
                .remove((ep.app_id.0, uid.as_str()))?;
        }
        self.table_mut(APP_ENDPOINTS)?
            .remove((ep.app_id.0, ep.id.0))?;
        self.table_mut(ENDPOINTS)?.remove(ep.id.0)?;
        Ok(())
    }

    // ---- messages and the queue ---------------------------------------------------------

    /// Stores a new message and the deliveries `route` decides it owes. `route` sees the
    /// message, the application's endpoints and triggers inside this transaction, so a change
    /// committed just before is taken into account. A delivery with a unique key supersedes
    /// the pending one holding the same endpoint and key. A delivery to an endpoint that is not
    /// ready (unverified) is parked until it is. Answers the message and how many deliveries
    /// were made; `Conflict::EventId` if its eventId was used.
    pub fn ingest_message(
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
        if let Some(event_id) = &msg.event_id {
            self.table_mut(MESSAGE_EVENT_IDS)?
                .insert((msg.app_id.0, event_id.as_str()), msg.id.0)?;
        }
        let record = encode_keyed(&msg);
        self.hot_mut(MESSAGES, |t| {
            t.insert(msg.key(), record.as_slice())?;
            Ok(())
        })?;
        let deliveries = crate::storage::transitions::routed(&msg, routes, endpoints, now_millis());
        for delivery in deliveries {
            if let Some(key) = &delivery.unique_key {
                self.supersede(delivery.endpoint_id, key, delivery.id)?;
            }
            self.put_delivery(&delivery, None)?;
        }
        let routed: Vec<EndpointId> = routes.iter().map(|r| r.endpoint_id).collect();
        self.note_ingest(&msg, &routed)?;
        Ok((msg, routes.len()))
    }

    /// Makes `newer` the holder of (endpoint, key), superseding the pending delivery that held
    /// it.
    fn supersede(
        &mut self,
        endpoint: EndpointId,
        key: &str,
        newer: DeliveryId,
    ) -> Result<(), StoreError> {
        let holder = self
            .table_mut(UNIQUE_KEYS)?
            .insert((endpoint.0, key), (newer.msg.0, newer.n))?
            .map(|g| g.value());
        if let Some((msg, n)) = holder {
            let id = DeliveryId {
                msg: MessageId(msg),
                n,
            };
            if let Some(old) = self
                .delivery(id)?
                .filter(|d| d.state == DeliveryState::Pending)
            {
                let mut d = old.clone();
                d.state = DeliveryState::Superseded;
                d.due_ms = None;
                d.updated_at = now_micros();
                // The key now belongs to `newer`: write the old delivery without releasing it.
                self.put_delivery_keeping_key(&d, Some(&old))?;
            }
        }
        Ok(())
    }

    /// Queues a new manual delivery of a stored message to one endpoint (resend, recover,
    /// replay), parked if the endpoint is not ready. Answers `None`, having written nothing,
    /// when the message already has as many deliveries as their key can number.
    pub fn enqueue_manual(
        &mut self,
        (app_id, msg_id): (AppId, MessageId),
        endpoint: &Endpoint,
        priority: Priority,
    ) -> Result<Option<DeliveryId>, StoreError> {
        // Read through the batch's open handle (no write yet): a task's chunk queues many.
        let last = self.tx.with(DELIVERIES, |t| {
            match t.range((msg_id.0, 0)..=(msg_id.0, u16::MAX))?.next_back() {
                Some(e) => Ok(Some(e?.0.value().1)),
                None => Ok(None),
            }
        })?;
        let next_n = match last.map(|n| n.checked_add(1)) {
            Some(Some(n)) => n,
            Some(None) => return Ok(None),
            None => 0,
        };
        let (endpoint_id, ready) = (endpoint.id, endpoint.ready());
        let now = now_micros();
        let delivery = Delivery {
            id: DeliveryId {
                msg: msg_id,
                n: next_n,
            },
            msg_id,
            app_id,
            endpoint_id,
            priority,
            state: DeliveryState::Pending,
            attempts: 0,
            due_ms: ready.then(now_millis),
            trigger_type: TriggerType::Manual,
            trigger_id: None,
            unique_key: None,
            slot_reserved: false,
            created_at: now,
            updated_at: now,
        };
        self.put_delivery(&delivery, None)?;
        Ok(Some(delivery.id))
    }

    /// Writes a delivery and keeps its indexes in step with it: a pending delivery with a due
    /// time has a queue entry (lane, due); a pending one without is parked under its endpoint;
    /// one that stops being pending releases its unique key.
    fn put_delivery(&mut self, d: &Delivery, old: Option<&Delivery>) -> Result<(), StoreError> {
        if let (Some(old), Some(key)) = (old, &d.unique_key)
            && old.state == DeliveryState::Pending
            && d.state != DeliveryState::Pending
        {
            let mut keys = self.table_mut(UNIQUE_KEYS)?;
            let holds = keys
                .get((d.endpoint_id.0, key.as_str()))?
                .is_some_and(|g| g.value() == (d.id.msg.0, d.id.n));
            if holds {
                keys.remove((d.endpoint_id.0, key.as_str()))?;
            }
        }
        self.put_delivery_keeping_key(d, old)
    }

    fn put_delivery_keeping_key(
        &mut self,
        d: &Delivery,
        old: Option<&Delivery>,
    ) -> Result<(), StoreError> {
        if let Some(old) = old.filter(|o| o.state == DeliveryState::Pending) {
            match old.due_ms {
                Some(due) => {
                    self.hot_mut(lane_table(old.priority), |t| {
                        t.remove((due, d.id.msg.0, d.id.n))?;
                        Ok(())
                    })?;
                }
                None => {
                    self.table_mut(PARKED)?
                        .remove((old.endpoint_id.0, d.id.msg.0, d.id.n))?;
                }
            }
        }
        if d.state == DeliveryState::Pending {
            match d.due_ms {
                Some(due) => {
                    self.hot_mut(lane_table(d.priority), |t| {
                        t.insert((due, d.id.msg.0, d.id.n), d.endpoint_id.0)?;
                        Ok(())
                    })?;
                }
                None => {
                    self.table_mut(PARKED)?
                        .insert((d.endpoint_id.0, d.id.msg.0, d.id.n), ())?;
                }
            }
        }
        let record = encode_keyed(d);
        self.hot_mut(DELIVERIES, |t| {
            t.insert(d.key(), record.as_slice())?;
            Ok(())
        })
    }

    /// Moves a pending delivery to its reserved rate limit slot without an attempt.
    pub fn defer_to_slot(&mut self, id: DeliveryId, due_ms: Millis) -> Result<(), StoreError> {
        let Some(old) = self
            .delivery(id)?
            .filter(|d| d.state == DeliveryState::Pending)
        else {
            return Ok(());
        };
        let mut d = old.clone();
        d.due_ms = Some(due_ms);
        d.slot_reserved = true;
        self.put_delivery(&d, Some(&old))
    }

    /// Parks a pending delivery: its endpoint is disabled or not verified.
    pub fn park_delivery(&mut self, id: DeliveryId) -> Result<(), StoreError> {
        let Some(old) = self
            .delivery(id)?
            .filter(|d| d.state == DeliveryState::Pending && d.due_ms.is_some())
        else {
            return Ok(());
        };
        let mut d = old.clone();
        d.due_ms = None;
        self.put_delivery(&d, Some(&old))
    }

    /// Queues, due now, up to `limit` of the deliveries parked for an endpoint; answers how
    /// many it moved (fewer than `limit`: none are left).
    pub fn unpark_endpoint(
        &mut self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let ids = self.parked_deliveries(endpoint, limit)?;
        let now = now_millis();
        for id in &ids {
            if let Some(old) = self.delivery(*id)? {
                let mut d = old.clone();
                d.due_ms = Some(now);
                self.put_delivery(&d, Some(&old))?;
            }
        }
        Ok(ids.len())
    }

    /// Cancels up to `limit` of the deliveries parked for an endpoint (it is being deleted).
    pub fn cancel_parked(
        &mut self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let ids = self.parked_deliveries(endpoint, limit)?;
        for id in &ids {
            self.cancel_delivery(*id)?;
        }
        Ok(ids.len())
    }

    /// Records an attempt and moves its delivery on: succeeded, queued again, or failed with
    /// an alert. Answers the updated delivery, or `None` if it was no longer pending (superseded
    /// or cancelled meanwhile): then only the attempt itself is recorded.
    pub fn record_attempt(
        &mut self,
        mut attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(old) = self.delivery(attempt.delivery_id)? else {
            return Ok(None);
        };
        attempt.id = AttemptId(self.new_id());
        let record = encode_keyed(&attempt);
        self.hot_mut(ATTEMPTS, |t| {
            t.insert(attempt.key(), record.as_slice())?;
            Ok(())
        })?;
        self.hot_mut(ENDPOINT_ATTEMPTS, |t| {
            t.insert((attempt.endpoint_id.0, attempt.id.0), attempt.msg_id.0)?;
            Ok(())
        })?;
        if old.state != DeliveryState::Pending {
            // Superseded or cancelled while this attempt was in flight: the attempt is history,
            // the delivery stays as it is.
            self.note_attempt(&attempt, &old)?;
            return Ok(None);
        }
        let d = crate::storage::transitions::attempted(&old, &outcome, attempt.created_at);
        self.put_delivery(&d, Some(&old))?;
        self.note_attempt(&attempt, &d)?;
        if let AttemptOutcome::Exhausted(alert) = outcome {
            self.insert_alert(alert)?;
        }
        Ok(Some(d))
    }

    /// Ends a pending delivery without an attempt (its endpoint is gone).
    pub fn cancel_delivery(&mut self, id: DeliveryId) -> Result<(), StoreError> {
        let Some(old) = self.delivery(id)? else {
            return Ok(());
        };
        if old.state != DeliveryState::Pending {
            return Ok(());
        }
        let d = crate::storage::transitions::cancelled(&old, now_micros());
        self.put_delivery(&d, Some(&old))
    }

    /// Moves pending deliveries to a later due time without an attempt (their endpoint is
    /// paused). One the scheduler saw at another due time, or no longer pending, has moved on
    /// meanwhile and stays as it is. Answers how many moved.
    pub fn defer_deliveries(
        &mut self,
        moves: &[(QueueEntry, Millis)],
    ) -> Result<usize, StoreError> {
        let mut moved = 0;
        for (entry, until) in moves {
            let Some(old) = self
                .delivery(entry.id)?
                .filter(|d| d.state == DeliveryState::Pending && d.due_ms == Some(entry.due_ms))
            else {
                continue;
            };
            let mut d = old.clone();
            d.due_ms = Some(*until);
            self.put_delivery(&d, Some(&old))?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Takes a queue entry whose delivery could not be loaded out of the queue (a dead
    /// letter): the delivery, when its own record still reads, ends failed, and an alert says
    /// why, so an operator sees it and can resend. The queue entry goes in any case: left
    /// there, it would be due for ever and never attempted.
    pub fn dead_letter(
        &mut self,
        lane: Priority,
        entry: QueueEntry,
        reason: &str,
    ) -> Result<(), StoreError> {
        // Reads first (the writer's contract); a record that does not decode is left as it
        // is for `herald check` to report.
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
        self.hot_mut(lane_table(lane), |t| {
            t.remove((entry.due_ms, entry.id.msg.0, entry.id.n))?;
            Ok(())
        })?;
        if let Some(old) = delivery.filter(|d| d.state == DeliveryState::Pending) {
            let mut d = old.clone();
            d.state = DeliveryState::Failed;
            d.due_ms = None;
            d.updated_at = now_micros();
            self.put_delivery(&d, Some(&old))?;
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

    /// Removes a queue entry with no pending delivery behind it at that place (the delivery
    /// is gone, ended, parked, or queued elsewhere); answers whether it did.
    pub fn drop_stale_entry(
        &mut self,
        lane: Priority,
        entry: QueueEntry,
    ) -> Result<bool, StoreError> {
        let current = self.delivery(entry.id)?;
        let live = current.is_some_and(|d| {
            d.state == DeliveryState::Pending
                && d.due_ms == Some(entry.due_ms)
                && d.priority == lane
        });
        if live {
            return Ok(false);
        }
        self.hot_mut(lane_table(lane), |t| {
            t.remove((entry.due_ms, entry.id.msg.0, entry.id.n))?;
            Ok(())
        })?;
        Ok(true)
    }

    // ---- alerts, tokens, idempotency ----------------------------------------------------

    pub fn insert_alert(&mut self, mut alert: Alert) -> Result<AlertId, StoreError> {
        alert.id = AlertId(self.new_id());
        self.table_mut(ALERTS)?
            .insert(alert.id.0, encode(&alert).as_slice())?;
        Ok(alert.id)
    }

    pub fn insert_token(&mut self, hash: &[u8; 32], token: &Token) -> Result<(), StoreError> {
        self.table_mut(TOKENS)?
            .insert(hash, encode(token).as_slice())?;
        Ok(())
    }

    /// Removes the token with this id; answers whether there was one.
    pub fn revoke_token(&mut self, id: TokenId) -> Result<bool, StoreError> {
        let hash = {
            let t = self.tx.open_table(TOKENS)?;
            let mut found = None;
            for e in t.iter()? {
                let (k, v) = e?;
                let token: Token = super::codec::decode(v.value())?;
                if token.id == id {
                    found = Some(*k.value());
                    break;
                }
            }
            found
        };
        match hash {
            Some(h) => {
                self.table_mut(TOKENS)?.remove(&h)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn put_idempotent_response(
        &mut self,
        key: &[u8; 32],
        response: &IdempotentResponse,
    ) -> Result<(), StoreError> {
        self.table_mut(IDEMPOTENCY)?
            .insert(key, encode(response).as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreSettings;

    fn endpoint(id: u128, app: AppId) -> Endpoint {
        Endpoint::plain(EndpointId(id), app, "https://example.com")
    }

    /// A message of `app` for the writer to ingest (it assigns the id).
    fn message(app: AppId) -> Message {
        Message {
            retention_days: 30,
            ..Message::plain(MessageId(0), app, "a.b")
        }
    }

    /// Routing that sends every message to every endpoint of its application.
    fn to_every_endpoint(_: &Message, eps: &[Endpoint], _: &[Trigger]) -> Vec<NewDelivery> {
        eps.iter()
            .map(|e| NewDelivery::plain(e.id, Priority::Normal))
            .collect()
    }

    #[tokio::test]
    async fn an_update_built_on_a_row_that_changed_or_went_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::storage::Store::open(&dir.path().join("s.redb"), &StoreSettings::for_tests())
                .unwrap();
        let app = AppId(1);
        let read = endpoint(10, app);
        store
            .write(move |w| w.insert_endpoint(&endpoint(10, app)))
            .await
            .unwrap();
        // Herald disables it after the row was read elsewhere.
        let disabled = Endpoint {
            disabled: true,
            ..read.clone()
        };
        let (old, new) = (read.clone(), disabled.clone());
        store
            .write(move |w| w.update_endpoint(&old, &new))
            .await
            .unwrap();
        let renamed = Endpoint {
            description: "renamed".into(),
            ..read.clone()
        };
        let (old, new) = (read.clone(), renamed.clone());
        assert!(
            store
                .write(move |w| w.update_endpoint(&old, &new))
                .await
                .is_err()
        );
        let stored = store.read(|r| r.endpoint(EndpointId(10))).await.unwrap();
        assert_eq!(stored, Some(disabled.clone()));
        // Deleted since: not brought back.
        let gone = disabled.clone();
        store
            .write(move |w| w.delete_endpoint(&gone))
            .await
            .unwrap();
        let (old, new) = (disabled, renamed);
        assert!(
            store
                .write(move |w| w.update_endpoint(&old, &new))
                .await
                .is_err()
        );
        assert_eq!(
            store.read(|r| r.endpoint(EndpointId(10))).await.unwrap(),
            None
        );
        let stale = App {
            id: AppId(2),
            uid: None,
            name: "gone".into(),
            throttle_rate: None,
            metadata: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let new = App {
            name: "back".into(),
            ..stale.clone()
        };
        assert!(
            store
                .write(move |w| w.update_app(&stale, &new))
                .await
                .is_err()
        );
        assert_eq!(store.read(|r| r.app(AppId(2))).await.unwrap(), None);
    }

    #[tokio::test]
    async fn routing_within_one_batch_sees_an_endpoint_added_by_an_earlier_job() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreSettings::for_tests();
        let store = crate::storage::Store::open(&dir.path().join("r.redb"), &settings).unwrap();
        let app = AppId(1);
        // One transaction, as one batch: the routing read for the first message must not
        // hide the endpoints written after it.
        let routed = store
            .write(move |w| {
                w.insert_endpoint(&endpoint(10, app))?;
                let first = w.ingest_message(message(app), &to_every_endpoint)?.1;
                w.insert_endpoint(&endpoint(11, app))?;
                let second = w.ingest_message(message(app), &to_every_endpoint)?.1;
                w.delete_endpoint(&endpoint(10, app))?;
                let third = w.ingest_message(message(app), &to_every_endpoint)?.1;
                Ok((first, second, third))
            })
            .await
            .unwrap();
        assert_eq!(routed, (1, 2, 1));
    }

    #[tokio::test]
    async fn reads_between_writes_through_the_open_hot_tables_see_those_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::storage::Store::open(&dir.path().join("h.redb"), &StoreSettings::for_tests())
                .unwrap();
        let app = AppId(1);
        // One job: the ingests write deliveries, messages and the queue through the batch's
        // open handles; the reads in between open those tables the ordinary way, which must
        // close the cached handles first (redb refuses a second handle) and see their writes.
        let (seen, due, msg) = store
            .write(move |w| {
                w.insert_endpoint(&endpoint(10, app))?;
                let (first, _) = w.ingest_message(message(app), &to_every_endpoint)?;
                let seen = w.message_deliveries(first.id)?.len();
                let (due, _) =
                    w.due_deliveries(Priority::Normal, now_millis() + 1, 10, 10, &mut |_| false)?;
                let (second, _) = w.ingest_message(message(app), &to_every_endpoint)?;
                let msg = w.message(app, second.id)?.map(|m| m.id == second.id);
                Ok((seen, due.len(), msg))
            })
            .await
            .unwrap();
        assert_eq!((seen, due, msg), (1, 1, Some(true)));
        // And after the commit, from a reader.
        let queued = store
            .read(|r| {
                Ok(
                    r.due_deliveries(Priority::Normal, now_millis() + 1, 10, 10, &mut |_| false)?
                        .0
                        .len(),
                )
            })
            .await
            .unwrap();
        assert_eq!(queued, 2);
    }
}
