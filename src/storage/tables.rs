//! Every redb table of Herald, with its key layout.
//!
//! Keys are redb's fixed-width integers and tuples, which sort numerically, so ids (ULIDs,
//! time-ordered `u128`) and due times (`u64` milliseconds) give range scans in time order.
//! Values are versioned postcard records (see `codec.rs`) unless noted. Tables written at a high
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

/// (app id, message id) -> `Message`. Keyed by application first so a tenant's messages are
/// one contiguous, time-ordered range.
pub const MESSAGES: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("messages");
/// (app id, eventId) -> message id: de-duplication of client-supplied event ids.
pub const MESSAGE_EVENT_IDS: TableDefinition<(u128, &str), u128> =
    TableDefinition::new("message_event_ids");

/// (message id, n) -> `Delivery`: the n-th delivery of a message. A message's deliveries are
/// one range, and no separate index is needed to find them.
pub const DELIVERIES: TableDefinition<(u128, u16), &[u8]> = TableDefinition::new("deliveries");

/// The delivery queue, one table per priority lane: (due ms, message id, n) -> ().
/// An entry exists exactly while its delivery is pending; the scheduler range-scans from the
/// start for due entries, so memory never holds the backlog.
pub const QUEUE_HIGH: TableDefinition<(u64, u128, u16), ()> = TableDefinition::new("queue_high");
pub const QUEUE_NORMAL: TableDefinition<(u64, u128, u16), ()> =
    TableDefinition::new("queue_normal");
pub const QUEUE_LOW: TableDefinition<(u64, u128, u16), ()> = TableDefinition::new("queue_low");

/// (message id, attempt id) -> `Attempt`: a message's attempts are one range.
pub const ATTEMPTS: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("attempts");
/// (endpoint id, attempt id) -> message id: an endpoint's attempts in time order.
pub const ENDPOINT_ATTEMPTS: TableDefinition<(u128, u128), u128> =
    TableDefinition::new("endpoint_attempts");

/// alert id -> `Alert`.
pub const ALERTS: TableDefinition<u128, &[u8]> = TableDefinition::new("alerts");

/// SHA-256 of the token text -> `Token`. The token itself is never stored.
pub const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");

/// SHA-256 of (authorization, Idempotency-Key, URI) -> `IdempotentResponse`.
pub const IDEMPOTENCY: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("idempotency");

/// Version of the layout above. Bump it with an upgrade step when a key layout changes.
pub const SCHEMA_VERSION: u64 = 1;
