//! The mutations on PostgreSQL: the same operations as the redb backend's `Writer` methods
//! (`redb/ops.rs` and beside it), keeping the same indexes and aggregates in step, over the
//! tables of `schema_v1.sql`.

#![allow(unused_imports)]

use super::session::{Txn, big, bytes_of, id, id_of, lane, n, n_of, u64_of};
use crate::model::*;
use crate::storage::*;

use super::not_yet;
use crate::storage::codec::encode;

impl Txn<'_> {
    /// Writes the batch's counter sums, once per counter, before the commit.
    pub(super) fn flush_counters(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Write for Txn<'_> {
    fn put_user(&mut self, _user: &User) -> Result<(), StoreError> {
        Err(not_yet("put_user"))
    }

    fn remove_user(&mut self, _username: &str) -> Result<bool, StoreError> {
        Err(not_yet("remove_user"))
    }

    fn insert_session(&mut self, _hash: &[u8; 32], _session: &Session) -> Result<(), StoreError> {
        Err(not_yet("insert_session"))
    }

    fn remove_session(&mut self, _hash: &[u8; 32]) -> Result<(), StoreError> {
        Err(not_yet("remove_session"))
    }

    fn sweep_expired(&mut self, _now: Micros) -> Result<usize, StoreError> {
        Err(not_yet("sweep_expired"))
    }

    fn insert_portal_link(
        &mut self,
        _hash: &[u8; 32],
        _link: &PortalLink,
    ) -> Result<(), StoreError> {
        Err(not_yet("insert_portal_link"))
    }

    fn replace_setup_token(
        &mut self,
        _hash: &[u8; 32],
        _token: &SetupToken,
    ) -> Result<(), StoreError> {
        Err(not_yet("replace_setup_token"))
    }

    fn take_setup_token(&mut self, _hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        Err(not_yet("take_setup_token"))
    }

    fn clear_setup_tokens(&mut self) -> Result<(), StoreError> {
        Err(not_yet("clear_setup_tokens"))
    }

    fn replace_alert(&mut self, _alert: &Alert) -> Result<(), StoreError> {
        Err(not_yet("replace_alert"))
    }

    fn set_cursor(&mut self, _name: &str, _position: u128) -> Result<(), StoreError> {
        Err(not_yet("set_cursor"))
    }

    fn replace_message(&mut self, _msg: &Message) -> Result<(), StoreError> {
        Err(not_yet("replace_message"))
    }

    fn replace_attempt(&mut self, _attempt: &Attempt) -> Result<(), StoreError> {
        Err(not_yet("replace_attempt"))
    }

    fn new_id(&mut self) -> u128 {
        self.next_id()
    }

    fn insert_app(&mut self, app: &App) -> Result<(), StoreError> {
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

    fn update_app(&mut self, _old: &App, _new: &App) -> Result<(), StoreError> {
        Err(not_yet("update_app"))
    }

    fn delete_app(&mut self, _app: &App) -> Result<(), StoreError> {
        Err(not_yet("delete_app"))
    }

    fn put_event_type(&mut self, et: &EventType) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO event_types (name, rec) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET rec = excluded.rec",
            &[&et.name, &encode(et)],
        )?;
        Ok(())
    }

    fn remove_event_type(&mut self, name: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM event_types WHERE name = $1", &[&name])?;
        Ok(())
    }

    fn insert_endpoint(&mut self, _ep: &Endpoint) -> Result<(), StoreError> {
        Err(not_yet("insert_endpoint"))
    }

    fn update_endpoint(&mut self, _old: &Endpoint, _new: &Endpoint) -> Result<(), StoreError> {
        Err(not_yet("update_endpoint"))
    }

    fn delete_endpoint(&mut self, _ep: &Endpoint) -> Result<(), StoreError> {
        Err(not_yet("delete_endpoint"))
    }

    fn ingest_message(
        &mut self,
        _msg: Message,
        _route: &RouteFn,
    ) -> Result<(Message, usize), StoreError> {
        Err(not_yet("ingest_message"))
    }

    fn enqueue_manual(
        &mut self,
        _message: (AppId, MessageId),
        _endpoint: &Endpoint,
        _priority: Priority,
    ) -> Result<Option<DeliveryId>, StoreError> {
        Err(not_yet("enqueue_manual"))
    }

    fn defer_to_slot(&mut self, _id: DeliveryId, _due_ms: Millis) -> Result<(), StoreError> {
        Err(not_yet("defer_to_slot"))
    }

    fn park_delivery(&mut self, _id: DeliveryId) -> Result<(), StoreError> {
        Err(not_yet("park_delivery"))
    }

    fn unpark_endpoint(
        &mut self,
        _endpoint: EndpointId,
        _limit: usize,
    ) -> Result<usize, StoreError> {
        Err(not_yet("unpark_endpoint"))
    }

    fn cancel_parked(&mut self, _endpoint: EndpointId, _limit: usize) -> Result<usize, StoreError> {
        Err(not_yet("cancel_parked"))
    }

    fn record_attempt(
        &mut self,
        _attempt: Attempt,
        _outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>, StoreError> {
        Err(not_yet("record_attempt"))
    }

    fn cancel_delivery(&mut self, _id: DeliveryId) -> Result<(), StoreError> {
        Err(not_yet("cancel_delivery"))
    }

    fn defer_deliveries(&mut self, _moves: &[(QueueEntry, Millis)]) -> Result<usize, StoreError> {
        Err(not_yet("defer_deliveries"))
    }

    fn dead_letter(
        &mut self,
        _lane: Priority,
        _entry: QueueEntry,
        _reason: &str,
    ) -> Result<(), StoreError> {
        Err(not_yet("dead_letter"))
    }

    fn drop_stale_entry(
        &mut self,
        _lane: Priority,
        _entry: QueueEntry,
    ) -> Result<bool, StoreError> {
        Err(not_yet("drop_stale_entry"))
    }

    fn insert_alert(&mut self, _alert: Alert) -> Result<AlertId, StoreError> {
        Err(not_yet("insert_alert"))
    }

    fn insert_token(&mut self, _hash: &[u8; 32], _token: &Token) -> Result<(), StoreError> {
        Err(not_yet("insert_token"))
    }

    fn revoke_token(&mut self, _id: TokenId) -> Result<bool, StoreError> {
        Err(not_yet("revoke_token"))
    }

    fn put_idempotent_response(
        &mut self,
        _key: &[u8; 32],
        _response: &IdempotentResponse,
    ) -> Result<(), StoreError> {
        Err(not_yet("put_idempotent_response"))
    }

    fn purge_expired(
        &mut self,
        _now: Micros,
        _from: Option<u128>,
        _idem_from: Option<[u8; 32]>,
        _limit: usize,
    ) -> Result<Purged, StoreError> {
        Err(not_yet("purge_expired"))
    }

    fn note_ingest(&mut self, _msg: &Message, _routed: &[EndpointId]) -> Result<(), StoreError> {
        Err(not_yet("note_ingest"))
    }

    fn note_attempt(&mut self, _attempt: &Attempt, _delivery: &Delivery) -> Result<(), StoreError> {
        Err(not_yet("note_attempt"))
    }

    fn flush_counters(&mut self) -> Result<(), StoreError> {
        Err(not_yet("flush_counters"))
    }

    fn insert_task(&mut self, _task: &BackgroundTask, _kept_max: usize) -> Result<(), StoreError> {
        Err(not_yet("insert_task"))
    }

    fn put_task(&mut self, _task: &BackgroundTask) -> Result<(), StoreError> {
        Err(not_yet("put_task"))
    }

    fn remove_task(&mut self, _app: AppId, _id: TaskId) -> Result<(), StoreError> {
        Err(not_yet("remove_task"))
    }

    fn remove_app_tasks(&mut self, _app: AppId) -> Result<(), StoreError> {
        Err(not_yet("remove_app_tasks"))
    }

    fn put_trigger(&mut self, _trigger: &Trigger) -> Result<(), StoreError> {
        Err(not_yet("put_trigger"))
    }

    fn delete_trigger(&mut self, _app: AppId, _id: TriggerId) -> Result<(), StoreError> {
        Err(not_yet("delete_trigger"))
    }

    fn delete_endpoint_triggers(
        &mut self,
        _app: AppId,
        _endpoint: EndpointId,
    ) -> Result<(), StoreError> {
        Err(not_yet("delete_endpoint_triggers"))
    }
}
