//! The storage interface: every read and write Herald makes of what it keeps, as traits a
//! backend implements. `service/`, `delivery/`, `ops/`, `api/` and `admin/` are written against
//! these and nothing else, so each rule of what may be stored lives once, above the backend.
//!
//! A read runs a closure over a `Reader` (one consistent snapshot); a write runs a closure over a
//! `Writer` inside the backend's group commit: the backend runs many callers' closures in one
//! transaction and answers them after one durable commit (see `Store::write`). The closures
//! see these traits as objects (`dyn`), so a backend is chosen at start, not at build.
//!
//! - `Read`: what both a snapshot and a write transaction answer, so a write can check what
//!   is there before it writes.
//! - `Snapshot`: reads only a read transaction answers: the dashboard's aggregates, the queue
//!   listing, the repair pass's scans, and the dispatch's batched loads.
//! - `Write`: the mutations. Each keeps every index of what it changes in step (queue entries,
//!   parked lists, unique keys, the dashboard's counters) inside the same transaction; a caller
//!   never maintains an index by hand.
//!
//! Must never: name a backend's types (redb's, SQL), or hold a rule about what may be stored.

use super::{
    AttemptOutcome, DueDeliveries, EndpointOutcomes, HourCounts, IdempotentResponse, MessageHead,
    Page, PageQuery, Purged, QueueCursor, QueueEntry, QueuePage, QueueQuery, RouteFn, StoreError,
    StrayParked,
};
use crate::model::*;

/// Reads that both a snapshot (`Reader`) and the writer's transaction (`Writer`) answer.
pub trait Read {
    fn app(&self, id: AppId) -> Result<Option<App>, StoreError>;

    fn app_id_by_uid(&self, uid: &str) -> Result<Option<AppId>, StoreError>;

    fn apps(&self, query: &PageQuery) -> Result<Page<App>, StoreError>;

    fn event_type(&self, name: &str) -> Result<Option<EventType>, StoreError>;

    /// Event types by name, ascending, strictly after `after` (or before `before`).
    fn event_types(
        &self,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
        include_archived: bool,
    ) -> Result<Page<EventType>, StoreError>;

    fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError>;

    fn endpoint_id_by_uid(&self, app: AppId, uid: &str) -> Result<Option<EndpointId>, StoreError>;

    /// Every endpoint of an application (bounded by how many an application may have).
    fn app_endpoints(&self, app: AppId) -> Result<Vec<Endpoint>, StoreError>;

    fn endpoints(&self, app: AppId, query: &PageQuery) -> Result<Page<Endpoint>, StoreError>;

    fn trigger(&self, app: AppId, id: TriggerId) -> Result<Option<Trigger>, StoreError>;

    /// Every trigger of an application, oldest first.
    fn app_triggers(&self, app: AppId) -> Result<Vec<Trigger>, StoreError>;

    fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError>;

    fn message_id_by_event_id(
        &self,
        app: AppId,
        event_id: &str,
    ) -> Result<Option<MessageId>, StoreError>;

    /// Messages of an application; `keep` filters (event type, channel).
    fn messages(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError>;

    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// Every delivery of a message, in the order they were made.
    fn message_deliveries(&self, msg: MessageId) -> Result<Vec<Delivery>, StoreError>;

    fn attempt(&self, msg: MessageId, id: AttemptId) -> Result<Option<Attempt>, StoreError>;

    fn message_attempts(
        &self,
        msg: MessageId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError>;

    fn endpoint_attempts(
        &self,
        endpoint: EndpointId,
        query: &PageQuery,
        keep: &dyn Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError>;

    /// Whether `attempt` is the newest attempt of its message to its endpoint.
    fn is_latest_attempt(&self, attempt: &Attempt) -> Result<bool, StoreError>;

    /// Attempts of an endpoint between two attempt ids, newest first, at most `limit`.
    fn endpoint_attempts_between(
        &self,
        endpoint: EndpointId,
        lo: u128,
        hi: u128,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError>;

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
    ) -> Result<DueDeliveries, StoreError>;

    /// Deliveries parked for an endpoint (disabled or unverified), at most `limit`.
    fn parked_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<DeliveryId>, StoreError>;

    /// Pending entries of a lane.
    fn queue_depth(&self, lane: Priority) -> Result<u64, StoreError>;

    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError>;

    fn tokens(&self) -> Result<Vec<Token>, StoreError>;

    fn idempotent_response(&self, key: &[u8; 32])
    -> Result<Option<IdempotentResponse>, StoreError>;

    fn user(&self, username: &str) -> Result<Option<User>, StoreError>;

    /// Every user, by name (operators are few).
    fn users(&self) -> Result<Vec<User>, StoreError>;

    fn user_count(&self) -> Result<u64, StoreError>;

    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError>;

    fn portal_link(&self, hash: &[u8; 32]) -> Result<Option<PortalLink>, StoreError>;

    fn setup_token(&self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError>;

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError>;

    /// How many endpoints an application has.
    fn app_endpoint_count(&self, app: AppId) -> Result<u64, StoreError>;

    /// Endpoints of every application, oldest first, at most `limit` (e.g. to find the
    /// subscribers of an event type).
    fn endpoints_upto(&self, limit: usize) -> Result<Vec<Endpoint>, StoreError>;

    /// Applications, newest first, that `keep` accepts; pages like `apps`, passing over at
    /// most `scan_max` applications per page.
    fn apps_matching(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&App) -> bool,
        scan_max: usize,
    ) -> Result<Page<App>, StoreError>;

    /// Every attempt of a message, oldest first, at most `limit`.
    fn message_attempts_upto(
        &self,
        msg: MessageId,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// Alerts, newest first.
    /// Alerts newer than `after`, oldest first.
    fn alerts_after(&self, after: u128, limit: usize) -> Result<Vec<Alert>, StoreError>;

    /// A named position kept by a background task (e.g. the last alert sent as a webhook).
    fn cursor(&self, name: &str) -> Result<Option<u128>, StoreError>;

    /// Visits the endpoint's attempts with ids in `from..=to` (oldest first, or newest first),
    /// each as its id and delivery, without decoding the stored response; stops when `visit`
    /// answers false or after `limit` attempts. Answers how many it passed and the id of the
    /// last one.
    fn visit_endpoint_attempts(
        &self,
        endpoint: EndpointId,
        within: (u128, u128),
        newest_first: bool,
        limit: usize,
        visit: &mut dyn FnMut(AttemptId, DeliveryId) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError>;

    /// Whether `msg` has an attempt to `endpoint` made after `after`.
    fn later_attempt_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
        after: AttemptId,
    ) -> Result<bool, StoreError>;

    /// Visits the application's messages with ids in `from..=to`, oldest first, without their
    /// payloads; stops when `visit` answers false or after `limit`. Answers how many it passed
    /// and the id of the last one.
    fn visit_message_heads(
        &self,
        app: AppId,
        within: (u128, u128),
        limit: usize,
        visit: &mut dyn FnMut(MessageHead) -> Result<bool, StoreError>,
    ) -> Result<(usize, Option<u128>), StoreError>;

    fn message_head(&self, app: AppId, id: MessageId) -> Result<Option<MessageHead>, StoreError>;

    /// The newest delivery of a message to one endpoint.
    fn newest_delivery_to(
        &self,
        msg: MessageId,
        endpoint: EndpointId,
    ) -> Result<Option<Delivery>, StoreError>;

    /// How many deliveries of a message were made by hand (resend, recover, replay), counted
    /// up to `upto`. They follow the routed ones, which are all made at ingest, so this counts
    /// back from the newest.
    fn manual_deliveries(&self, msg: MessageId, upto: usize) -> Result<usize, StoreError>;

    fn task(&self, id: TaskId) -> Result<Option<BackgroundTask>, StoreError>;

    /// An application's tasks, paged by id, that `keep` accepts.
    fn app_tasks(
        &self,
        app: AppId,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError>;

    /// Every application's tasks, paged by id, that `keep` accepts.
    fn tasks(
        &self,
        query: &PageQuery,
        keep: &dyn Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError>;

    /// How many of an application's tasks are running.
    fn running_tasks_of(&self, app: AppId) -> Result<usize, StoreError>;

    /// The running tasks of every application, oldest first, at most `limit` (to carry on
    /// after a restart).
    fn running_tasks(&self, limit: usize) -> Result<Vec<TaskId>, StoreError>;

    fn alerts(&self, limit: usize, before: Option<AlertId>) -> Result<Vec<Alert>, StoreError>;
}

/// Reads only a read transaction answers: aggregates kept for the dashboard, the webhook
/// queue's listing, the repair pass's scans, and dispatch's loads.
pub trait Snapshot: Read {
    /// The endpoints, from `from` on and at most `endpoints_max` of those holding parked
    /// deliveries, whose parked deliveries must be mended, and the endpoint to go on from
    /// (`None`: none are left). One lookup per endpoint, however many it holds.
    fn stray_parked(
        &self,
        from: Option<EndpointId>,
        endpoints_max: usize,
    ) -> Result<StrayParked, StoreError>;

    /// The queued deliveries whose endpoint is gone, among at most `entries_max` queue entries
    /// from `from` on (every lane in turn), and where to go on (`None`: the lanes are done).
    fn stray_queued(
        &self,
        from: QueueCursor,
        entries_max: usize,
    ) -> Result<(Vec<DeliveryId>, Option<QueueCursor>), StoreError>;

    /// Hourly counters for `from..=to` (hours since the epoch), one entry per hour, zeros where
    /// nothing happened.
    fn hourly_counts(&self, from: u64, to: u64) -> Result<Vec<HourCounts>, StoreError>;

    /// The latency histogram summed over `from..=to`: attempts per bucket of
    /// `LATENCY_BUCKETS_MS`.
    fn latency_histogram(&self, from: u64, to: u64) -> Result<Vec<u64>, StoreError>;

    /// Every endpoint with an attempt in `from..=to`, with its outcomes summed.
    fn endpoint_outcomes(&self, from: u64, to: u64) -> Result<Vec<EndpointOutcomes>, StoreError>;

    /// One endpoint's (succeeded, failed) attempts per hour of `from..=to`.
    fn endpoint_hourly(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError>;

    /// The application a message belongs to, from the timeline (any application).
    fn message_app(&self, msg: MessageId) -> Result<Option<AppId>, StoreError>;

    /// The newest `limit` deliveries made to an endpoint (one per message: the latest), newest
    /// first.
    fn endpoint_recent_deliveries(
        &self,
        endpoint: EndpointId,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The newest failed attempt of an endpoint in hours `from..=to`: (message, attempt).
    fn endpoint_last_failure(
        &self,
        endpoint: EndpointId,
        from: u64,
        to: u64,
    ) -> Result<Option<(MessageId, AttemptId)>, StoreError>;

    /// (messages, deliveries failed for good) of an application on one day.
    fn app_daily(&self, app: AppId, day: u64) -> Result<(u64, u64), StoreError>;

    /// A page of the webhook queue. `keep_message` passes over a message before its deliveries
    /// are read (event type); `keep` decides which rows belong (state...). The query picks the
    /// narrowest index: the endpoint's deliveries, the failures, the application's messages, or
    /// the timeline of every message.
    fn queue_page(
        &self,
        q: &QueueQuery,
        keep_message: &dyn Fn(&Message) -> bool,
        keep: &dyn Fn(&Message, Option<&Delivery>) -> bool,
    ) -> Result<QueuePage, StoreError>;
    /// Loads for a batch of attempts, sharing open tables and decoded endpoints.
    fn dispatch_loads(&self) -> Result<Box<dyn DispatchLoads + '_>, StoreError>;
}

/// The mutations, run by the writer inside a batch's transaction.
pub trait Write: Read {
    /// Creates or replaces a user.
    fn put_user(&mut self, user: &User) -> Result<(), StoreError>;

    /// Removes a user and answers whether there was one. Their sessions end at their next
    /// request, when the user is no longer found.
    fn remove_user(&mut self, username: &str) -> Result<bool, StoreError>;

    fn insert_session(&mut self, hash: &[u8; 32], session: &Session) -> Result<(), StoreError>;

    fn remove_session(&mut self, hash: &[u8; 32]) -> Result<(), StoreError>;

    /// Removes up to `SWEEP_MAX` sessions, portal links and setup tokens that expired before
    /// `now`; answers how many went.
    fn sweep_expired(&mut self, now: Micros) -> Result<usize, StoreError>;

    fn insert_portal_link(&mut self, hash: &[u8; 32], link: &PortalLink) -> Result<(), StoreError>;

    /// Replaces every setup token by this one: only the newest printed link works.
    fn replace_setup_token(
        &mut self,
        hash: &[u8; 32],
        token: &SetupToken,
    ) -> Result<(), StoreError>;

    /// Removes the setup token with this hash and answers it, if there was one: a setup link
    /// works once.
    fn take_setup_token(&mut self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError>;

    /// Removes every setup token (a user now exists).
    fn clear_setup_tokens(&mut self) -> Result<(), StoreError>;

    /// Replaces a stored alert (same id), e.g. with its acknowledgement time set.
    fn replace_alert(&mut self, alert: &Alert) -> Result<(), StoreError>;

    /// Moves a background task's named position.
    fn set_cursor(&mut self, name: &str, position: u128) -> Result<(), StoreError>;

    /// Replaces a stored message (same key), e.g. with its payload removed.
    fn replace_message(&mut self, msg: &Message) -> Result<(), StoreError>;

    /// Replaces a stored attempt (same key), e.g. with its response body removed.
    fn replace_attempt(&mut self, attempt: &Attempt) -> Result<(), StoreError>;

    /// A fresh time-ordered id, strictly greater than every id made before it.
    fn new_id(&mut self) -> u128;

    fn insert_app(&mut self, app: &App) -> Result<(), StoreError>;

    /// Replaces an application, moving its uid index entry when the uid changed. `old` must be
    /// the application as stored now, read in the same job (`stale_update`).
    fn update_app(&mut self, old: &App, new: &App) -> Result<(), StoreError>;

    /// Deletes an application with its endpoints. Messages and attempts stay until retention
    /// removes them (they are history); pending deliveries find no endpoint and are cancelled.
    fn delete_app(&mut self, app: &App) -> Result<(), StoreError>;

    fn put_event_type(&mut self, et: &EventType) -> Result<(), StoreError>;

    fn remove_event_type(&mut self, name: &str) -> Result<(), StoreError>;

    fn insert_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError>;

    /// Replaces an endpoint, moving its uid index entry when the uid changed. `old` must be the
    /// endpoint as stored now, read in the same job (`stale_update`).
    fn update_endpoint(&mut self, old: &Endpoint, new: &Endpoint) -> Result<(), StoreError>;

    /// Removes an endpoint. Its pending deliveries stay queued and are cancelled by the
    /// delivery side when it finds the endpoint gone (bounded work here, whatever the backlog).
    fn delete_endpoint(&mut self, ep: &Endpoint) -> Result<(), StoreError>;

    /// Stores a new message and the deliveries `route` decides it owes. `route` sees the
    /// message, the application's endpoints and triggers inside this transaction, so a change
    /// committed just before is taken into account. A delivery with a unique key supersedes
    /// the pending one holding the same endpoint and key. A delivery to an endpoint that is not
    /// ready (unverified) is parked until it is. Answers the message and how many deliveries
    /// were made; `Conflict::EventId` if its eventId was used.
    fn ingest_message(
        &mut self,
        msg: Message,
        route: &RouteFn,
    ) -> Result<(Message, usize), StoreError>;

    /// Queues a new manual delivery of a stored message to one endpoint (resend, recover,
    /// replay), parked if the endpoint is not ready. Answers `None`, having written nothing,
    /// when the message already has as many deliveries as their key can number.
    fn enqueue_manual(
        &mut self,
        message: (AppId, MessageId),
        endpoint: &Endpoint,
        priority: Priority,
    ) -> Result<Option<DeliveryId>, StoreError>;

    /// Moves a pending delivery to its reserved rate limit slot without an attempt.
    fn defer_to_slot(&mut self, id: DeliveryId, due_ms: Millis) -> Result<(), StoreError>;

    /// Parks a pending delivery: its endpoint is disabled or not verified.
    fn park_delivery(&mut self, id: DeliveryId) -> Result<(), StoreError>;

    /// Queues, due now, up to `limit` of the deliveries parked for an endpoint; answers how
    /// many it moved (fewer than `limit`: none are left).
    fn unpark_endpoint(&mut self, endpoint: EndpointId, limit: usize) -> Result<usize, StoreError>;

    /// Cancels up to `limit` of the deliveries parked for an endpoint (it is being deleted).
    fn cancel_parked(&mut self, endpoint: EndpointId, limit: usize) -> Result<usize, StoreError>;

    /// Records an attempt and moves its delivery on: succeeded, queued again, or failed with
    /// an alert. Answers the updated delivery, or `None` if it was no longer pending (superseded
    /// or cancelled meanwhile): then only the attempt itself is recorded.
    fn record_attempt(
        &mut self,
        attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Ends a pending delivery without an attempt (its endpoint is gone).
    fn cancel_delivery(&mut self, id: DeliveryId) -> Result<(), StoreError>;

    /// Moves pending deliveries to a later due time without an attempt (their endpoint is
    /// paused). One the scheduler saw at another due time, or no longer pending, has moved on
    /// meanwhile and stays as it is. Answers how many moved.
    fn defer_deliveries(&mut self, moves: &[(QueueEntry, Millis)]) -> Result<usize, StoreError>;

    /// Takes a queue entry whose delivery could not be loaded out of the queue (a dead
    /// letter): the delivery, when its own record still reads, ends failed, and an alert says
    /// why, so an operator sees it and can resend. The queue entry goes in any case: left
    /// there, it would be due for ever and never attempted.
    fn dead_letter(
        &mut self,
        lane: Priority,
        entry: QueueEntry,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// Removes a queue entry with no pending delivery behind it at that place (the delivery
    /// is gone, ended, parked, or queued elsewhere); answers whether it did.
    fn drop_stale_entry(&mut self, lane: Priority, entry: QueueEntry) -> Result<bool, StoreError>;

    fn insert_alert(&mut self, alert: Alert) -> Result<AlertId, StoreError>;

    fn insert_token(&mut self, hash: &[u8; 32], token: &Token) -> Result<(), StoreError>;

    /// Removes the token with this id; answers whether there was one.
    fn revoke_token(&mut self, id: TokenId) -> Result<bool, StoreError>;

    fn put_idempotent_response(
        &mut self,
        key: &[u8; 32],
        response: &IdempotentResponse,
    ) -> Result<(), StoreError>;

    /// Removes up to `limit` expired messages (looking at no more than `limit * 4`), starting
    /// at `from` in time order, and up to `limit` expired idempotency answers starting at
    /// `idem_from`.
    fn purge_expired(
        &mut self,
        now: Micros,
        from: Option<u128>,
        idem_from: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Purged, StoreError>;

    /// Called once per stored message, after its row and its deliveries (numbered in the
    /// order of `routed`, the endpoint of each) are written.
    fn note_ingest(&mut self, msg: &Message, routed: &[EndpointId]) -> Result<(), StoreError>;

    /// Called once per recorded attempt, with the delivery as it now stands.
    fn note_attempt(&mut self, attempt: &Attempt, delivery: &Delivery) -> Result<(), StoreError>;

    /// Adds the batch's counter increments to the stored counters, once per counter, and
    /// prunes old counters when this batch started a new hour.
    fn flush_counters(&mut self) -> Result<(), StoreError>;

    /// Records a new task. The application keeps at most `kept_max` tasks: the oldest
    /// finished or failed ones make room (a running one is never dropped).
    fn insert_task(&mut self, task: &BackgroundTask, kept_max: usize) -> Result<(), StoreError>;

    /// Writes a task's new state.
    fn put_task(&mut self, task: &BackgroundTask) -> Result<(), StoreError>;

    fn remove_task(&mut self, app: AppId, id: TaskId) -> Result<(), StoreError>;

    /// Removes every task of an application (when it is deleted).
    fn remove_app_tasks(&mut self, app: AppId) -> Result<(), StoreError>;

    /// Inserts or replaces a trigger.
    fn put_trigger(&mut self, trigger: &Trigger) -> Result<(), StoreError>;

    fn delete_trigger(&mut self, app: AppId, id: TriggerId) -> Result<(), StoreError>;

    /// Removes every trigger that calls `endpoint` (when the endpoint is deleted).
    fn delete_endpoint_triggers(
        &mut self,
        app: AppId,
        endpoint: EndpointId,
    ) -> Result<(), StoreError>;
}

/// What dispatch loads for each attempt it starts, read in the scan's own snapshot.
pub trait DispatchLoads {
    /// Reads ahead what `delivery` and `message` will be asked for these deliveries, where a
    /// backend gains by reading them at once (PostgreSQL: one statement instead of two per
    /// delivery). Nothing to do for an embedded file.
    fn prefetch(&mut self, _ids: &[DeliveryId]) -> Result<(), StoreError> {
        Ok(())
    }

    fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;

    fn message(&self, app: AppId, id: MessageId) -> Result<Option<Message>, StoreError>;

    fn endpoint(&mut self, id: EndpointId) -> Result<Option<std::sync::Arc<Endpoint>>, StoreError>;
}

/// A read transaction, as the closures of `Store::read` see it.
pub type Reader<'a> = dyn Snapshot + 'a;
/// The batch's write transaction, lent to one job at a time, as the closures of
/// `Store::write` see it.
pub type Writer<'a> = dyn Write + 'a;
