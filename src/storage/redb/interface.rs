//! How the redb backend answers storage's interface (`storage/interface.rs`): every call goes
//! to the redb code of the same name (the reads in `reads.rs`, written once for both kinds of
//! transaction as `TxRead`; the mutations on `Writer` in `ops.rs` and beside it). Nothing here
//! decides anything.

use super::{DispatchReads, Reader, TxRead, Writer};
use crate::model::*;
use crate::storage::{
    AttemptOutcome, DispatchLoads, DueDeliveries, EndpointOutcomes, HourCounts, IdempotentResponse,
    MessageHead, Page, PageQuery, Purged, QueueCursor, QueueEntry, QueuePage, QueueQuery, Read,
    RouteFn, Snapshot, StoreError, StrayParked, Write,
};

impl<T: TxRead> Read for T {
    fn app(&self, id: AppId) -> Result<Option<App>, StoreError> {
        TxRead::app(self, id)
    }
    fn app_id_by_uid(&self, uid: &str) -> Result<Option<AppId>, StoreError> {
        TxRead::app_id_by_uid(self, uid)
    }
    fn apps(&self, query: &PageQuery) -> Result<Page<App>, StoreError> {
        TxRead::apps(self, query)
    }
    fn event_type(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        TxRead::event_type(self, name)
    }
    fn event_types(
        &self,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
        include_archived: bool,
    ) -> Result<Page<EventType>, StoreError> {
        TxRead::event_types(self, after, before, limit, include_archived)
    }
    fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        TxRead::endpoint(self, id)
    }
    fn endpoint_id_by_uid(&self, app: AppId, uid: &str) -> Result<Option<EndpointId>, StoreError> {
        TxRead::endpoint_id_by_uid(self, app, uid)
    }
    fn app_endpoints(&self, app: AppId) -> Result<Vec<Endpoint>, StoreError> {
        TxRead::app_endpoints(self, app)
    }
    fn endpoints(&self, app: AppId, query: &PageQuery) -> Result<Page<Endpoint>, StoreError> {
        TxRead::endpoints(self, app, query)
    }
    fn trigger(&self, app: AppId, id: TriggerId) -> Result<Option<Trigger>, StoreError> {
        TxRead::trigger(self, app, id)
    }
    fn app_triggers(&self, app: AppId) -> Result<Vec<Trigger>, StoreError> {
        TxRead::app_triggers(self, app)
    }
    fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError> {
        TxRead::message(self, app, id)
    }
    fn message_id_by_event_id(
        &self,
        app: AppId,
        event_id: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        TxRead::message_id_by_event_id(self, app, event_id)
    }
    fn messages(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError> {
        TxRead::messages(self, app, query, keep)
    }
    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        TxRead::delivery(self, id)
    }
    fn message_deliveries(&self, msg: MessageId) -> Result<Vec<Delivery>, StoreError> {
        TxRead::message_deliveries(self, msg)
    }
    fn attempt(&self, msg: MessageId, id: AttemptId) -> Result<Option<Attempt>, StoreError> {
        TxRead::attempt(self, msg, id)
    }
    fn message_attempts(
        &self,
        msg: MessageId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        TxRead::message_attempts(self, msg, query, keep)
    }
    fn endpoint_attempts(
        &self,
        endpoint: EndpointId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        TxRead::endpoint_attempts(self, endpoint, query, keep)
    }
    fn is_latest_attempt(&self, attempt: &Attempt) -> Result<bool, StoreError> {
        TxRead::is_latest_attempt(self, attempt)
    }
    fn endpoint_attempts_between(
        &self,
        endpoint: EndpointId,
        lo: u128,
        hi: u128,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        TxRead::endpoint_attempts_between(self, endpoint, lo, hi, limit)
    }
    fn due_deliveries(
        &self,
        lane: Priority,
        now_ms: Millis,
        limit: usize,
        scan_max: usize,
        skip: &mut dyn FnMut(QueueEntry) -> bool,
    ) -> Result<DueDeliveries, StoreError> {
        TxRead::due_deliveries(self, lane, now_ms, limit, scan_max, skip)
    }
    fn parked_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        TxRead::parked_deliveries(self, endpoint, limit)
    }
    fn queue_depth(&self, lane: Priority) -> Result<u64, StoreError> {
        TxRead::queue_depth(self, lane)
    }
    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError> {
        TxRead::token(self, hash)
    }
    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        TxRead::tokens(self)
    }
    fn idempotent_response(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<IdempotentResponse>, StoreError> {
        TxRead::idempotent_response(self, key)
    }
    fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        TxRead::user(self, username)
    }
    fn users(&self) -> Result<Vec<User>, StoreError> {
        TxRead::users(self)
    }
    fn user_count(&self) -> Result<u64, StoreError> {
        TxRead::user_count(self)
    }
    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        TxRead::session(self, hash)
    }
    fn portal_link(&self, hash: &[u8; 32]) -> Result<Option<PortalLink>, StoreError> {
        TxRead::portal_link(self, hash)
    }
    fn setup_token(&self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        TxRead::setup_token(self, hash)
    }
    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        TxRead::alert(self, id)
    }
    fn app_endpoint_count(&self, app: AppId) -> Result<u64, StoreError> {
        TxRead::app_endpoint_count(self, app)
    }
    fn endpoints_upto(&self, limit: usize) -> Result<Vec<Endpoint>, StoreError> {
        TxRead::endpoints_upto(self, limit)
    }
    fn apps_matching(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&App) -> bool,
        scan_max: usize,
    ) -> Result<Page<App>, StoreError> {
        TxRead::apps_matching(self, query, keep, scan_max)
    }
    fn message_attempts_upto(
        &self,
        msg: MessageId,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        TxRead::message_attempts_upto(self, msg, limit)
    }
    fn alerts_after(&self, after: u128, limit: usize) -> Result<Vec<Alert>, StoreError> {
        TxRead::alerts_after(self, after, limit)
    }
    fn cursor(&self, name: &str) -> Result<Option<u128>, StoreError> {
        TxRead::cursor(self, name)
    }
    fn visit_endpoint_attempts(
        &self,
        endpoint: EndpointId,
        within: (u128, u128),
        newest_first: bool,
        limit: usize,
        visit: &mut dyn FnMut(AttemptId, DeliveryId) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        TxRead::visit_endpoint_attempts(self, endpoint, within, newest_first, limit, visit)
    }
    fn later_attempt_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
        after: AttemptId,
    ) -> Result<bool, StoreError> {
        TxRead::later_attempt_to(self, msg, endpoint, after)
    }
    fn visit_message_heads(
        &self,
        app: AppId,
        within: (u128, u128),
        limit: usize,
        visit: &mut dyn FnMut(MessageHead) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError> {
        TxRead::visit_message_heads(self, app, within, limit, visit)
    }
    fn message_head(&self, app: AppId, id: MessageId) -> Result<Option<MessageHead>, StoreError> {
        TxRead::message_head(self, app, id)
    }
    fn newest_delivery_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
    ) -> Result<Option<Delivery>, StoreError> {
        TxRead::newest_delivery_to(self, msg, endpoint)
    }
    fn manual_deliveries(&self, msg: MessageId, upto: usize) -> Result<usize, StoreError> {
        TxRead::manual_deliveries(self, msg, upto)
    }
    fn task(&self, id: TaskId) -> Result<Option<BackgroundTask>, StoreError> {
        TxRead::task(self, id)
    }
    fn app_tasks(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        TxRead::app_tasks(self, app, query, keep)
    }
    fn tasks(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        TxRead::tasks(self, query, keep)
    }
    fn running_tasks_of(&self, app: AppId) -> Result<usize, StoreError> {
        TxRead::running_tasks_of(self, app)
    }
    fn running_tasks(&self, limit: usize) -> Result<Vec<TaskId>, StoreError> {
        TxRead::running_tasks(self, limit)
    }
    fn alerts(&self, limit: usize, before: Option<AlertId>) -> Result<Vec<Alert>, StoreError> {
        TxRead::alerts(self, limit, before)
    }
}

impl Snapshot for Reader {
    fn stray_parked(
        &self,
        from: Option<EndpointId>,
        endpoints_max: usize,
    ) -> Result<StrayParked, StoreError> {
        Reader::stray_parked(self, from, endpoints_max)
    }
    fn stray_queued(
        &self,
        from: QueueCursor,
        entries_max: usize,
    ) -> Result<(Vec<DeliveryId>, Option<QueueCursor>), StoreError> {
        Reader::stray_queued(self, from, entries_max)
    }
    fn hourly_counts(&self, from: u64, to: u64) -> Result<Vec<HourCounts>, StoreError> {
        Reader::hourly_counts(self, from, to)
    }
    fn latency_histogram(&self, from: u64, to: u64) -> Result<Vec<u64>, StoreError> {
        Reader::latency_histogram(self, from, to)
    }
    fn endpoint_outcomes(&self, from: u64, to: u64) -> Result<Vec<EndpointOutcomes>, StoreError> {
        Reader::endpoint_outcomes(self, from, to)
    }
    fn endpoint_hourly(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        Reader::endpoint_hourly(self, endpoint, from, to)
    }
    fn message_app(&self, msg: MessageId) -> Result<Option<AppId>, StoreError> {
        Reader::message_app(self, msg)
    }
    fn endpoint_recent_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        Reader::endpoint_recent_deliveries(self, endpoint, limit)
    }
    fn endpoint_last_failure(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Option<(MessageId, AttemptId)>, StoreError> {
        Reader::endpoint_last_failure(self, endpoint, from, to)
    }
    fn app_daily(&self, app: AppId, day: u64) -> Result<(u64, u64), StoreError> {
        Reader::app_daily(self, app, day)
    }
    fn queue_page(
        &self,
        q: &QueueQuery,
        keep_message: &dyn Fn(&Message) -> bool,
        keep: &dyn Fn(&Message, Option<&Delivery>) -> bool,
    ) -> Result<QueuePage, StoreError> {
        Reader::queue_page(self, q, keep_message, keep)
    }
    fn dispatch_loads(&self) -> Result<Box<dyn DispatchLoads + '_>, StoreError> {
        Ok(Box::new(self.dispatch_reads()?))
    }
}

impl Write for Writer<'_> {
    fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        Writer::put_user(self, user)
    }
    fn remove_user(&mut self, username: &str) -> Result<bool, StoreError> {
        Writer::remove_user(self, username)
    }
    fn insert_session(&mut self, hash: &[u8; 32], session: &Session) -> Result<(), StoreError> {
        Writer::insert_session(self, hash, session)
    }
    fn remove_session(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        Writer::remove_session(self, hash)
    }
    fn sweep_expired(&mut self, now: Micros) -> Result<usize, StoreError> {
        Writer::sweep_expired(self, now)
    }
    fn insert_portal_link(&mut self, hash: &[u8; 32], link: &PortalLink) -> Result<(), StoreError> {
        Writer::insert_portal_link(self, hash, link)
    }
    fn replace_setup_token(
        &mut self,
        hash: &[u8; 32],
        token: &SetupToken,
    ) -> Result<(), StoreError> {
        Writer::replace_setup_token(self, hash, token)
    }
    fn take_setup_token(&mut self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        Writer::take_setup_token(self, hash)
    }
    fn clear_setup_tokens(&mut self) -> Result<(), StoreError> {
        Writer::clear_setup_tokens(self)
    }
    fn replace_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        Writer::replace_alert(self, alert)
    }
    fn set_cursor(&mut self, name: &str, position: u128) -> Result<(), StoreError> {
        Writer::set_cursor(self, name, position)
    }
    fn replace_message(&mut self, msg: &Message) -> Result<(), StoreError> {
        Writer::replace_message(self, msg)
    }
    fn replace_attempt(&mut self, attempt: &Attempt) -> Result<(), StoreError> {
        Writer::replace_attempt(self, attempt)
    }
    fn new_id(&mut self) -> u128 {
        Writer::new_id(self)
    }
    fn insert_app(&mut self, app: &App) -> Result<(), StoreError> {
        Writer::insert_app(self, app)
    }
    fn update_app(&mut self, old: &App, new: &App) -> Result<(), StoreError> {
        Writer::update_app(self, old, new)
    }
    fn delete_app(&mut self, app: &App) -> Result<(), StoreError> {
        Writer::delete_app(self, app)
    }
    fn put_event_type(&mut self, et: &EventType) -> Result<(), StoreError> {
        Writer::put_event_type(self, et)
    }
    fn remove_event_type(&mut self, name: &str) -> Result<(), StoreError> {
        Writer::remove_event_type(self, name)
    }
    fn insert_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError> {
        Writer::insert_endpoint(self, ep)
    }
    fn update_endpoint(&mut self, old: &Endpoint, new: &Endpoint) -> Result<(), StoreError> {
        Writer::update_endpoint(self, old, new)
    }
    fn delete_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError> {
        Writer::delete_endpoint(self, ep)
    }
    fn ingest_message(
        &mut self,
        msg: Message,
        route: &RouteFn,
    ) -> Result<(Message, usize), StoreError> {
        Writer::ingest_message(self, msg, route)
    }
    fn enqueue_manual(
        &mut self,
        message: (AppId, MessageId),
        endpoint: &Endpoint,
        priority: Priority,
    ) -> Result<Option<DeliveryId>, StoreError> {
        Writer::enqueue_manual(self, message, endpoint, priority)
    }
    fn defer_to_slot(&mut self, id: DeliveryId, due_ms: Millis) -> Result<(), StoreError> {
        Writer::defer_to_slot(self, id, due_ms)
    }
    fn park_delivery(&mut self, id: DeliveryId) -> Result<(), StoreError> {
        Writer::park_delivery(self, id)
    }
    fn unpark_endpoint(&mut self, endpoint: EndpointId, limit: usize) -> Result<usize, StoreError> {
        Writer::unpark_endpoint(self, endpoint, limit)
    }
    fn cancel_parked(&mut self, endpoint: EndpointId, limit: usize) -> Result<usize, StoreError> {
        Writer::cancel_parked(self, endpoint, limit)
    }
    fn record_attempt(
        &mut self,
        attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>, StoreError> {
        Writer::record_attempt(self, attempt, outcome)
    }
    fn cancel_delivery(&mut self, id: DeliveryId) -> Result<(), StoreError> {
        Writer::cancel_delivery(self, id)
    }
    fn defer_deliveries(&mut self, moves: &[(QueueEntry, Millis)]) -> Result<usize, StoreError> {
        Writer::defer_deliveries(self, moves)
    }
    fn dead_letter(
        &mut self,
        lane: Priority,
        entry: QueueEntry,
        reason: &str,
    ) -> Result<(), StoreError> {
        Writer::dead_letter(self, lane, entry, reason)
    }
    fn drop_stale_entry(&mut self, lane: Priority, entry: QueueEntry) -> Result<bool, StoreError> {
        Writer::drop_stale_entry(self, lane, entry)
    }
    fn insert_alert(&mut self, alert: Alert) -> Result<AlertId, StoreError> {
        Writer::insert_alert(self, alert)
    }
    fn insert_token(&mut self, hash: &[u8; 32], token: &Token) -> Result<(), StoreError> {
        Writer::insert_token(self, hash, token)
    }
    fn revoke_token(&mut self, id: TokenId) -> Result<bool, StoreError> {
        Writer::revoke_token(self, id)
    }
    fn put_idempotent_response(
        &mut self,
        key: &[u8; 32],
        response: &IdempotentResponse,
    ) -> Result<(), StoreError> {
        Writer::put_idempotent_response(self, key, response)
    }
    fn purge_expired(
        &mut self,
        now: Micros,
        from: Option<u128>,
        idem_from: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        Writer::purge_expired(self, now, from, idem_from, limit)
    }
    fn note_ingest(&mut self, msg: &Message, routed: &[EndpointId]) -> Result<(), StoreError> {
        Writer::note_ingest(self, msg, routed)
    }
    fn note_attempt(&mut self, attempt: &Attempt, delivery: &Delivery) -> Result<(), StoreError> {
        Writer::note_attempt(self, attempt, delivery)
    }
    fn flush_counters(&mut self) -> Result<(), StoreError> {
        Writer::flush_counters(self)
    }
    fn insert_task(&mut self, task: &BackgroundTask, kept_max: usize) -> Result<(), StoreError> {
        Writer::insert_task(self, task, kept_max)
    }
    fn put_task(&mut self, task: &BackgroundTask) -> Result<(), StoreError> {
        Writer::put_task(self, task)
    }
    fn remove_task(&mut self, app: AppId, id: TaskId) -> Result<(), StoreError> {
        Writer::remove_task(self, app, id)
    }
    fn remove_app_tasks(&mut self, app: AppId) -> Result<(), StoreError> {
        Writer::remove_app_tasks(self, app)
    }
    fn put_trigger(&mut self, trigger: &Trigger) -> Result<(), StoreError> {
        Writer::put_trigger(self, trigger)
    }
    fn delete_trigger(&mut self, app: AppId, id: TriggerId) -> Result<(), StoreError> {
        Writer::delete_trigger(self, app, id)
    }
    fn delete_endpoint_triggers(
        &mut self,
        app: AppId,
        endpoint: EndpointId,
    ) -> Result<(), StoreError> {
        Writer::delete_endpoint_triggers(self, app, endpoint)
    }
}

impl DispatchLoads for DispatchReads<'_> {
    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        DispatchReads::delivery(self, id)
    }
    fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError> {
        DispatchReads::message(self, app, id)
    }
    fn endpoint(&mut self, id: EndpointId) -> Result<Option<std::sync::Arc<Endpoint>>, StoreError> {
        DispatchReads::endpoint(self, id)
    }
}
