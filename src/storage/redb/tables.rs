//! Every redb table of Herald, with its key layout.
//!
//! Keys are redb's fixed-width integers and tuples, which sort numerically, so ids (ULIDs,
//! time-ordered `u128`) and due times (`u64` milliseconds) give range scans in time order.
//! Values are versioned postcard records (see `codec.rs`; messages, deliveries and attempts
//! without the ids their key holds, see `rows.rs`) unless noted. Tables written at a high
//! rate (messages, deliveries, queue, attempts) take time-ordered keys: redb inserts random keys
//! several times slower.

use redb::TableDefinition;

/// `"schema_version"` -> version of the layout below (a `u64`, not a record).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// app id -> `App`.
pub const APPS: TableDefinition<u128, &[u8]> = TableDefinition::new("apps");
/// app uid -> app id.
pub const APP_UIDS: TableDefinition<&str, u128> = TableDefinition::new("app_uids");

/// event type name -> `EventType`.
pub const EVENT_TYPES: TableDefinition<&str, &[u8]> = TableDefinition::new("event_types");

/// endpoint id -> `Endpoint`.
pub const ENDPOINTS: TableDefinition<u128, &[u8]> = TableDefinition::new("endpoints");
/// (app id, endpoint id) -> (): the endpoints of an application, in creation order.
pub const APP_ENDPOINTS: TableDefinition<(u128, u128), ()> = TableDefinition::new("app_endpoints");
/// (app id, endpoint uid) -> endpoint id.
pub const ENDPOINT_UIDS: TableDefinition<(u128, &str), u128> =
    TableDefinition::new("endpoint_uids");

/// (app id, trigger id) -> `Trigger`: an application's routing rules, read by every ingest of
/// that application.
pub const TRIGGERS: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("triggers");

/// (app id, message id) -> `Message`. Keyed by application first so a tenant's messages are
/// one contiguous, time-ordered range.
pub const MESSAGES: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("messages");
/// (app id, eventId) -> message id: de-duplication of client-supplied event ids.
pub const MESSAGE_EVENT_IDS: TableDefinition<(u128, &str), u128> =
    TableDefinition::new("message_event_ids");

/// (message id, n) -> `Delivery`: the n-th delivery of a message. A message's deliveries are
/// one range, and no separate index is needed to find them.
pub const DELIVERIES: TableDefinition<(u128, u16), &[u8]> = TableDefinition::new("deliveries");

/// The delivery queue, one table per priority lane: (due ms, message id, n) -> endpoint id.
/// An entry exists exactly while its delivery is pending and not parked; the scheduler
/// range-scans from the start for due entries, so memory never holds the backlog. The endpoint
/// id in the value lets the scheduler pass over a busy endpoint without reading the delivery.
pub const QUEUE_HIGH: TableDefinition<(u64, u128, u16), u128> = TableDefinition::new("queue_high");
pub const QUEUE_NORMAL: TableDefinition<(u64, u128, u16), u128> =
    TableDefinition::new("queue_normal");
pub const QUEUE_LOW: TableDefinition<(u64, u128, u16), u128> = TableDefinition::new("queue_low");

/// (endpoint id, message id, n) -> (): pending deliveries parked while their endpoint is
/// disabled or not yet verified. Enabling or verifying moves them back into the queue.
pub const PARKED: TableDefinition<(u128, u128, u16), ()> = TableDefinition::new("parked");

/// (endpoint id, unique key) -> (message id, n): the pending delivery holding that key, which a
/// newer delivery with the same key supersedes.
pub const UNIQUE_KEYS: TableDefinition<(u128, &str), (u128, u16)> =
    TableDefinition::new("unique_keys");

/// (message id, attempt id) -> `Attempt`: a message's attempts are one range.
pub const ATTEMPTS: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("attempts");
/// (endpoint id, attempt id) -> message id: an endpoint's attempts in time order.
pub const ENDPOINT_ATTEMPTS: TableDefinition<(u128, u128), u128> =
    TableDefinition::new("endpoint_attempts");

/// alert id -> `Alert`.
pub const ALERTS: TableDefinition<u128, &[u8]> = TableDefinition::new("alerts");

/// task name -> position (an id): where a background task got to, kept across restarts.
pub const CURSORS: TableDefinition<&str, u128> = TableDefinition::new("cursors");

/// task id -> `BackgroundTask`: recover and replay-missing, worked through in chunks.
pub const TASKS: TableDefinition<u128, &[u8]> = TableDefinition::new("tasks");
/// (app id, task id) -> whether the task is running: an application's tasks in time order,
/// how many of them run, and which to carry on after a restart, without decoding records.
pub const APP_TASKS: TableDefinition<(u128, u128), bool> = TableDefinition::new("app_tasks");

/// SHA-256 of the token text -> `Token`. The token itself is never stored.
pub const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");

/// SHA-256 of (authorization, Idempotency-Key, URI) -> `IdempotentResponse`.
pub const IDEMPOTENCY: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("idempotency");

// ---- the dashboard: users, sessions, portal links --------------------------------------

/// username -> `User` (an operator of the dashboard; only an argon2id hash of the password).
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// SHA-256 of the session cookie value -> `Session`. The cookie value itself is never stored.
pub const SESSIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("sessions");
/// SHA-256 of a portal link token -> `PortalLink`.
pub const PORTAL_LINKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("portal_links");
/// SHA-256 of a one-time setup token -> `SetupToken` (creates the first user).
pub const SETUP_TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("setup_tokens");

// ---- aggregate views, kept by the hooks in `stats.rs` inside the ingest and attempt commits --
// Plain integers and tuples, not records: they are counters and indexes derived from the
// tables above, cheap to update on the hot path.

/// message id -> app id: every message of every application in time order (the webhook
/// queue's list across applications). Written once per message, at the end of the key range.
pub const MESSAGE_TIMELINE: TableDefinition<u128, u128> = TableDefinition::new("message_timeline");
/// (endpoint id, message id) -> n of the newest delivery of that message to that endpoint: the
/// queue filtered by endpoint, in time order.
pub const ENDPOINT_DELIVERIES: TableDefinition<(u128, u128), u16> =
    TableDefinition::new("endpoint_deliveries");
/// (message id, n) -> (): deliveries that failed for good (every attempt used).
pub const FAILED_DELIVERIES: TableDefinition<(u128, u16), ()> =
    TableDefinition::new("failed_deliveries");
/// (hour, counter) -> count, hour being hours since the epoch (UTC); counters in `stats.rs`.
pub const HOURLY: TableDefinition<(u64, u8), u64> = TableDefinition::new("hourly");
/// (hour, latency bucket) -> attempts whose duration fell in that bucket (see `stats.rs`).
pub const LATENCY: TableDefinition<(u64, u8), u64> = TableDefinition::new("latency");
/// (hour, endpoint id) -> (succeeded attempts, failed attempts, message id and attempt id of
/// the newest failed attempt, or zeros).
pub const ENDPOINT_HOURLY: TableDefinition<(u64, u128), (u64, u64, u128, u128)> =
    TableDefinition::new("endpoint_hourly");
/// (day, app id) -> (messages, deliveries failed for good), day being days since the epoch.
pub const APP_DAILY: TableDefinition<(u64, u128), (u64, u64)> = TableDefinition::new("app_daily");

/// Version of the layout above. Bump it with an upgrade step when a key layout or a record's
/// stored shape changes, so an older build refuses the file at open instead of failing on
/// reads later.
/// - 1: the first layout.
/// - 2: messages, deliveries and attempts stored without the ids their key holds (`rows.rs`).
///   A version 1 file is upgraded by writing 2 into `meta`: its records still read.
/// - 3: a message create's Idempotency-Key answer remembered by reference
///   (`codec::RememberedAnswer::Message`). Version 1 and 2 files are upgraded by writing 3:
///   their records still read.
pub const SCHEMA_VERSION: u64 = 3;
/// The oldest layout this build opens (upgrading it).
pub const SCHEMA_VERSION_OLDEST: u64 = 1;
