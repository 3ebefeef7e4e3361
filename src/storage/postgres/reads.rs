//! The typed reads on PostgreSQL, for both a read snapshot and the writer's transaction: the
//! same operations as `redb/reads.rs` (trait `TxRead`), over the tables of `schema_v1.sql`.

#![allow(unused_imports)]

use super::session::{Txn, big, bytes_of, id, id_of, lane, n, n_of, u64_of};
use crate::model::*;
use crate::storage::*;

use super::not_yet;
use crate::storage::codec::{Record, decode};

/// The record in the first column of `row`, if there is a row.
pub(super) fn record<T: Record>(
    row: Option<&tokio_postgres::Row>,
) -> Result<Option<T>, StoreError> {
    row.map(|r| Ok(decode(bytes_of(r, 0)?)?)).transpose()
}

impl Read for Txn<'_> {
    fn app(&self, id: AppId) -> Result<Option<App>, StoreError> {
        let row = self.row("SELECT rec FROM apps WHERE id = $1", &[&self::id(id.0)])?;
        record(row.as_ref())
    }

    fn app_id_by_uid(&self, uid: &str) -> Result<Option<AppId>, StoreError> {
        let row = self.row("SELECT id FROM apps WHERE uid = $1", &[&uid])?;
        row.map(|r| id_of(&r, 0).map(AppId)).transpose()
    }

    fn apps(&self, query: &PageQuery) -> Result<Page<App>, StoreError> {
        self.page(
            "SELECT id, rec FROM apps WHERE id BETWEEN $1 AND $2 ORDER BY id LIMIT $3",
            "SELECT id, rec FROM apps WHERE id BETWEEN $1 AND $2 ORDER BY id DESC LIMIT $3",
            &[],
            query,
            |row| Ok(Some(decode(bytes_of(row, 1)?)?)),
        )
    }

    fn event_type(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        let row = self.row("SELECT rec FROM event_types WHERE name = $1", &[&name])?;
        record(row.as_ref())
    }

    fn event_types(
        &self,
        _after: Option<&str>,
        _before: Option<&str>,
        _limit: usize,
        _include_archived: bool,
    ) -> Result<Page<EventType>, StoreError> {
        Err(not_yet("event_types"))
    }

    fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let row = self.row(
            "SELECT rec FROM endpoints WHERE id = $1",
            &[&self::id(id.0)],
        )?;
        record(row.as_ref())
    }

    fn endpoint_id_by_uid(&self, app: AppId, uid: &str) -> Result<Option<EndpointId>, StoreError> {
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

    fn trigger(&self, _app: AppId, _id: TriggerId) -> Result<Option<Trigger>, StoreError> {
        Err(not_yet("trigger"))
    }

    fn app_triggers(&self, _app: AppId) -> Result<Vec<Trigger>, StoreError> {
        Err(not_yet("app_triggers"))
    }

    fn message(&self, _app: AppId, _id: MessageId) -> Result<Option<Message>, StoreError> {
        Err(not_yet("message"))
    }

    fn message_id_by_event_id(
        &self,
        _app: AppId,
        _event_id: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        Err(not_yet("message_id_by_event_id"))
    }

    fn messages(
        &self,
        _app: AppId,
        _query: &PageQuery,
        _keep: &dyn Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError> {
        Err(not_yet("messages"))
    }

    fn delivery(&self, _id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Err(not_yet("delivery"))
    }

    fn message_deliveries(&self, _msg: MessageId) -> Result<Vec<Delivery>, StoreError> {
        Err(not_yet("message_deliveries"))
    }

    fn attempt(&self, _msg: MessageId, _id: AttemptId) -> Result<Option<Attempt>, StoreError> {
        Err(not_yet("attempt"))
    }

    fn message_attempts(
        &self,
        _msg: MessageId,
        _query: &PageQuery,
        _keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        Err(not_yet("message_attempts"))
    }

    fn endpoint_attempts(
        &self,
        _endpoint: EndpointId,
        _query: &PageQuery,
        _keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        Err(not_yet("endpoint_attempts"))
    }

    fn is_latest_attempt(&self, _attempt: &Attempt) -> Result<bool, StoreError> {
        Err(not_yet("is_latest_attempt"))
    }

    fn endpoint_attempts_between(
        &self,
        _endpoint: EndpointId,
        _lo: u128,
        _hi: u128,
        _limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        Err(not_yet("endpoint_attempts_between"))
    }

    fn due_deliveries(
        &self,
        _lane: Priority,
        _now_ms: Millis,
        _limit: usize,
        _scan_max: usize,
        _skip: &mut dyn FnMut(QueueEntry) -> bool,
    ) -> Result<DueDeliveries, StoreError> {
        Err(not_yet("due_deliveries"))
    }

    fn parked_deliveries(
        &self,
        _endpoint: EndpointId,
        _limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        Err(not_yet("parked_deliveries"))
    }

    fn queue_depth(&self, _lane: Priority) -> Result<u64, StoreError> {
        Err(not_yet("queue_depth"))
    }

    fn token(&self, _hash: &[u8; 32]) -> Result<Option<Token>, StoreError> {
        Err(not_yet("token"))
    }

    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        Err(not_yet("tokens"))
    }

    fn idempotent_response(
        &self,
        _key: &[u8; 32],
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        Err(not_yet("idempotent_response"))
    }

    fn user(&self, _username: &str) -> Result<Option<User>, StoreError> {
        Err(not_yet("user"))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        Err(not_yet("users"))
    }

    fn user_count(&self) -> Result<u64, StoreError> {
        Err(not_yet("user_count"))
    }

    fn session(&self, _hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        Err(not_yet("session"))
    }

    fn portal_link(&self, _hash: &[u8; 32]) -> Result<Option<PortalLink>, StoreError> {
        Err(not_yet("portal_link"))
    }

    fn setup_token(&self, _hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        Err(not_yet("setup_token"))
    }

    fn alert(&self, _id: AlertId) -> Result<Option<Alert>, StoreError> {
        Err(not_yet("alert"))
    }

    fn app_endpoint_count(&self, _app: AppId) -> Result<u64, StoreError> {
        Err(not_yet("app_endpoint_count"))
    }

    fn endpoints_upto(&self, _limit: usize) -> Result<Vec<Endpoint>, StoreError> {
        Err(not_yet("endpoints_upto"))
    }

    fn apps_matching(
        &self,
        _query: &PageQuery,
        _keep: &dyn Fn(&App) -> bool,
        _scan_max: usize,
    ) -> Result<Page<App>, StoreError> {
        Err(not_yet("apps_matching"))
    }

    fn message_attempts_upto(
        &self,
        _msg: MessageId,
        _limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        Err(not_yet("message_attempts_upto"))
    }

    fn alerts_after(&self, _after: u128, _limit: usize) -> Result<Vec<Alert>, StoreError> {
        Err(not_yet("alerts_after"))
    }

    fn cursor(&self, _name: &str) -> Result<Option<u128>, StoreError> {
        Err(not_yet("cursor"))
    }

    fn visit_endpoint_attempts(
        &self,
        _endpoint: EndpointId,
        _within: (u128, u128),
        _newest_first: bool,
        _limit: usize,
        _visit: &mut dyn FnMut(AttemptId, DeliveryId) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        Err(not_yet("visit_endpoint_attempts"))
    }

    fn later_attempt_to(
        &self,
        _msg: MessageId,
        _endpoint: EndpointId,
        _after: AttemptId,
    ) -> Result<bool, StoreError> {
        Err(not_yet("later_attempt_to"))
    }

    fn visit_message_heads(
        &self,
        _app: AppId,
        _within: (u128, u128),
        _limit: usize,
        _visit: &mut dyn FnMut(MessageHead) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        Err(not_yet("visit_message_heads"))
    }

    fn message_head(&self, _app: AppId, _id: MessageId) -> Result<Option<MessageHead>, StoreError> {
        Err(not_yet("message_head"))
    }

    fn newest_delivery_to(
        &self,
        _msg: MessageId,
        _endpoint: EndpointId,
    ) -> Result<Option<Delivery>, StoreError> {
        Err(not_yet("newest_delivery_to"))
    }

    fn manual_deliveries(&self, _msg: MessageId, _upto: usize) -> Result<usize, StoreError> {
        Err(not_yet("manual_deliveries"))
    }

    fn task(&self, _id: TaskId) -> Result<Option<BackgroundTask>, StoreError> {
        Err(not_yet("task"))
    }

    fn app_tasks(
        &self,
        _app: AppId,
        _query: &PageQuery,
        _keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        Err(not_yet("app_tasks"))
    }

    fn tasks(
        &self,
        _query: &PageQuery,
        _keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        Err(not_yet("tasks"))
    }

    fn running_tasks_of(&self, _app: AppId) -> Result<usize, StoreError> {
        Err(not_yet("running_tasks_of"))
    }

    fn running_tasks(&self, _limit: usize) -> Result<Vec<TaskId>, StoreError> {
        Err(not_yet("running_tasks"))
    }

    fn alerts(&self, _limit: usize, _before: Option<AlertId>) -> Result<Vec<Alert>, StoreError> {
        Err(not_yet("alerts"))
    }
}
