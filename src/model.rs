//! The domain types every layer speaks: applications, event types, endpoints, messages,
//! deliveries, attempts, alerts, tokens, and their ids.
//!
//! Owns: the shape of Herald's data. Must never: know about HTTP, JSON field names of the API,
//! redb, or byte layouts (those live in `api/` and `storage/`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC. Every stored time uses this unit.
pub type Micros = i64;

/// Milliseconds since the Unix epoch, UTC. Queue due times use this unit.
pub type Millis = u64;

pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

/// The earliest and the latest time a request may name: the years 0000 to 9999, what RFC 3339
/// can write. A time beyond them is refused where it is read, so no window, difference or
/// conversion of a requested time can overflow.
pub const TIME_MIN: Micros = -62_167_219_200 * 1_000_000;
pub const TIME_MAX: Micros = 253_402_300_800 * 1_000_000 - 1;

/// A time a request names, or `None` when it is not one or lies outside `TIME_MIN..=TIME_MAX`:
/// RFC 3339; a date-time without an offset, taken as UTC (older SDKs send those); or the
/// dashboard's `datetime-local` value (to the minute). Every time in a query, a body or a form
/// becomes `Micros` here and nowhere else.
pub fn parse_time(s: &str) -> Option<Micros> {
    let s = s.trim();
    let utc = match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.naive_utc(),
        Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(s, format).ok())?,
    };
    let us = utc.and_utc().timestamp_micros();
    (TIME_MIN..=TIME_MAX).contains(&us).then_some(us)
}

/// Declares an id type: a ULID (time-ordered, 128 bits) shown with a Svix-style prefix.
macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u128);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Parses `prefix` + 26 Crockford base32 characters; anything else is not an id
            /// of this kind (it may still be a uid).
            pub fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?;
                if rest.len() != ulid::ULID_LEN {
                    return None;
                }
                ulid::Ulid::from_string(rest).ok().map(|u| Self(u.0))
            }

            /// Milliseconds since the epoch at which this id was made.
            pub fn millis(self) -> u64 {
                ulid::Ulid(self.0).timestamp_ms()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, ulid::Ulid(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

id_type!(AppId, "app_");
id_type!(EndpointId, "ep_");
id_type!(MessageId, "msg_");
id_type!(AttemptId, "atmpt_");
id_type!(TriggerId, "trg_");
id_type!(AlertId, "alrt_");
id_type!(TokenId, "tok_");
id_type!(TaskId, "qtask_");

/// A delivery is the n-th one made for its message: its id is the pair, so a message's
/// deliveries are found without an index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeliveryId {
    pub msg: MessageId,
    pub n: u16,
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dlv_{}_{}", ulid::Ulid(self.msg.0), self.n)
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Smallest id whose ULID time is `ms`: used to turn a time bound into an id bound.
pub fn id_floor_at_millis(ms: u64) -> u128 {
    (ms.min((1u64 << 48) - 1) as u128) << 80
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub id: AppId,
    pub uid: Option<String>,
    pub name: String,
    pub throttle_rate: Option<u16>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// JSON text of the versioned schema map (`{"1": {...}}`), kept as text so the stored
    /// form is exactly what was posted.
    pub schemas_json: Option<String>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    /// JSON text of an example payload (a Herald extension), used by send-example and tests.
    pub example_json: Option<String>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// One signing key of an endpoint. The current key has no expiry; rotated-out keys keep
/// signing until `expires_at`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub key: Vec<u8>,
    pub expires_at: Option<Micros>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: AppId,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    /// `None` means every event type (Svix semantics).
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    /// The current key first, then older keys still inside their grace period.
    pub keys: Vec<SigningKey>,
    pub disabled: bool,
    pub throttle_rate: Option<u16>,
    pub metadata: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    /// Herald's extensions: auth, timeouts, retries, verification, the built-in trigger.
    pub options: EndpointOptions,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// Endpoint settings beyond Svix's. `None` means "the server's default".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointOptions {
    pub basic_auth: Option<BasicAuth>,
    pub client_cert: Option<ClientCert>,
    pub timeout_ms: Option<u64>,
    /// Delays before each retry; the last one repeats when `attempts_max` asks for more.
    pub retry_schedule_ms: Option<Vec<u64>>,
    pub attempts_max: Option<u32>,
    /// Attempts in flight against this endpoint at once.
    pub concurrency_max: Option<u32>,
    /// Present when the endpoint must confirm a verification code before deliveries start.
    pub verification: Option<Verification>,
    /// The built-in trigger (the `eventTypes` subscription) is switched off; extra triggers
    /// still route to the endpoint.
    pub subscription_disabled: bool,
    /// Why Herald disabled the endpoint (410 Gone, failing too long), shown to operators.
    pub disabled_reason: Option<String>,
    /// When the current run of failures began; cleared by a success.
    pub failing_since: Option<Micros>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A client certificate chain and its private key, PEM, presented in the TLS handshake.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub code: String,
    pub verified_at: Option<Micros>,
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verification")
            .field("code", &"<redacted>")
            .field("verified_at", &self.verified_at)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint with an id, an application and a URL, everything else at its default (no
    /// keys, subscribed to everything, enabled).
    pub fn plain(id: EndpointId, app_id: AppId, url: impl Into<String>) -> Endpoint {
        Endpoint {
            id,
            app_id,
            uid: None,
            url: url.into(),
            description: String::new(),
            event_types: None,
            channels: None,
            keys: vec![],
            disabled: false,
            throttle_rate: None,
            metadata: Default::default(),
            headers: Default::default(),
            options: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Deliveries may be attempted: enabled and, when verification is asked, verified.
    pub fn ready(&self) -> bool {
        !self.disabled
            && self
                .options
                .verification
                .as_ref()
                .is_none_or(|v| v.verified_at.is_some())
    }

    /// Keys that sign a request sent at `now`: the current one and those still in grace.
    pub fn live_keys(&self, now: Micros) -> impl Iterator<Item = &[u8]> {
        self.keys
            .iter()
            .filter(move |k| k.expires_at.is_none_or(|t| t > now))
            .map(|k| k.key.as_slice())
    }
}

/// The body a trigger's template produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    #[default]
    Json,
    Xml,
    Text,
}

impl ContentType {
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Xml => "application/xml",
            ContentType::Text => "text/plain",
        }
    }

    pub fn from_mime(s: &str) -> Option<ContentType> {
        match s.split(';').next().unwrap_or("").trim() {
            "application/json" => Some(ContentType::Json),
            "application/xml" | "text/xml" => Some(ContentType::Xml),
            "text/plain" => Some(ContentType::Text),
            _ => None,
        }
    }
}

/// A routing rule of one endpoint: which event types, an optional condition over the
/// message, the payload as sent or a template, a priority, and a unique key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: TriggerId,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub description: String,
    /// Exact names, `prefix.*` patterns, or `*`.
    pub event_types: Vec<String>,
    /// A minijinja expression over the message; the trigger fires when it is true.
    pub condition: Option<String>,
    /// A minijinja template rendering the body; `None` sends the payload as posted.
    pub template: Option<String>,
    pub content_type: ContentType,
    pub priority: Priority,
    /// A minijinja template rendering a key: a newer delivery with the same endpoint and key
    /// supersedes one still waiting.
    pub unique_key: Option<String>,
    /// How long a delivery waits before its first attempt (the window in which a newer one
    /// with the same unique key can supersede it).
    pub delay_ms: u64,
    pub enabled: bool,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl Trigger {
    /// Whether routing evaluates a tenant's source for it: an enabled condition or unique key.
    pub fn evaluates(&self) -> bool {
        self.enabled && (self.condition.is_some() || self.unique_key.is_some())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    /// Compact JSON text of the payload; `None` once expunged or past retention.
    pub payload: Option<String>,
    pub created_at: Micros,
    /// How long the payload is kept, in days.
    pub retention_days: u16,
}

impl Message {
    /// A message with an id, an application and an event type, sent now with `{}` as its
    /// payload, no event id or channels, and the default retention (90 days).
    pub fn plain(id: MessageId, app_id: AppId, event_type: impl Into<String>) -> Message {
        Message {
            id,
            app_id,
            event_type: event_type.into(),
            event_id: None,
            channels: None,
            payload: Some("{}".into()),
            created_at: now_micros(),
            retention_days: 90,
        }
    }

    /// When retention may remove the message (once nothing of it is pending): `retention_days`
    /// after it was sent. Nothing that points at the message may be kept past this.
    pub fn retained_until(&self) -> Micros {
        self.created_at + self.retention_days as i64 * 86_400_000_000
    }
}

/// Delivery lanes; higher lanes are served first and lower lanes never starve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting in the queue for its next attempt.
    Pending,
    Succeeded,
    /// Every attempt failed; an alert was raised.
    Failed,
    /// The endpoint was deleted before it succeeded.
    Cancelled,
    /// A newer delivery with the same endpoint and unique key replaced it while it waited.
    Superseded,
}

/// A delivery that routing decided a new message owes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub endpoint_id: EndpointId,
    pub priority: Priority,
    /// The trigger that made it; `None` for the endpoint's built-in subscription.
    pub trigger_id: Option<TriggerId>,
    /// The rendered unique key: a newer delivery with the same endpoint and key supersedes
    /// this one while it waits.
    pub unique_key: Option<String>,
    /// Wait before the first attempt.
    pub delay_ms: u64,
}

impl NewDelivery {
    /// A plain delivery: now, normal priority, no trigger.
    pub fn plain(endpoint_id: EndpointId, priority: Priority) -> NewDelivery {
        NewDelivery {
            endpoint_id,
            priority,
            trigger_id: None,
            unique_key: None,
            delay_ms: 0,
        }
    }
}

/// One message owed to one endpoint: the unit of the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub msg_id: MessageId,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub priority: Priority,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, while pending. Mirrors the queue index entry.
    pub due_ms: Option<Millis>,
    /// Whether the delivery was created by an operator (resend, recover) or by routing.
    pub trigger_type: TriggerType,
    /// The trigger that routed it (its template and content type shape the body); `None` for
    /// the built-in subscription and for manual deliveries.
    pub trigger_id: Option<TriggerId>,
    pub unique_key: Option<String>,
    /// Its due time is a slot reserved under the endpoint's rate limit: attempt it then
    /// without reserving another.
    pub slot_reserved: bool,
    pub created_at: Micros,
    pub updated_at: Micros,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerType {
    Scheduled,
    Manual,
}

/// The status Svix reports for a message to an endpoint, or for an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    Success = 0,
    Pending = 1,
    Fail = 2,
    /// Failed so far, with another attempt scheduled.
    Sending = 3,
    Canceled = 4,
}

impl MessageStatus {
    pub fn text(self) -> &'static str {
        match self {
            MessageStatus::Success => "success",
            MessageStatus::Pending => "pending",
            MessageStatus::Fail => "fail",
            MessageStatus::Sending => "sending",
            MessageStatus::Canceled => "canceled",
        }
    }

    pub fn from_code(code: u8) -> Option<MessageStatus> {
        Some(match code {
            0 => MessageStatus::Success,
            1 => MessageStatus::Pending,
            2 => MessageStatus::Fail,
            3 => MessageStatus::Sending,
            4 => MessageStatus::Canceled,
            _ => return None,
        })
    }

    /// The status of a delivery as a whole.
    pub fn of_delivery(d: &Delivery) -> MessageStatus {
        match d.state {
            DeliveryState::Succeeded => MessageStatus::Success,
            DeliveryState::Failed => MessageStatus::Fail,
            DeliveryState::Cancelled | DeliveryState::Superseded => MessageStatus::Canceled,
            DeliveryState::Pending if d.attempts == 0 => MessageStatus::Pending,
            DeliveryState::Pending => MessageStatus::Sending,
        }
    }
}

/// Why an attempt failed, when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptError {
    /// The receiver answered, but not with a 2xx.
    Status,
    Timeout,
    Connect,
    Tls,
    Dns,
    /// The destination resolved to an address the SSRF guard refuses.
    BlockedAddress,
    /// The URL scheme is not allowed (http without `allow_http_destinations`).
    BlockedScheme,
    /// The request could not be built (bad URL, expired payload, ...).
    Request,
    /// The trigger's template did not render (or, for JSON, not to valid JSON).
    Template,
}

impl AttemptError {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptError::Status => "status",
            AttemptError::Timeout => "timeout",
            AttemptError::Connect => "connect",
            AttemptError::Tls => "tls",
            AttemptError::Dns => "dns",
            AttemptError::BlockedAddress => "blocked_address",
            AttemptError::BlockedScheme => "blocked_scheme",
            AttemptError::Request => "request",
            AttemptError::Template => "template",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: AttemptId,
    pub delivery_id: DeliveryId,
    pub msg_id: MessageId,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub url: String,
    /// HTTP status, or 0 when no response arrived.
    pub status_code: u16,
    pub duration_ms: u64,
    /// `None` on success.
    pub error: Option<AttemptError>,
    /// The response body (capped), or a description of the error.
    pub response: String,
    pub trigger_type: TriggerType,
    pub created_at: Micros,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    /// A delivery used all its attempts.
    AttemptsExhausted,
    /// An endpoint was disabled by Herald (410 Gone, or failing too long).
    EndpointDisabled,
    /// A queued delivery could not be loaded (its record or its message did not read) and
    /// was taken out of the queue as failed, unattempted.
    DeliveryUnreadable,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub kind: AlertKind,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub msg_id: Option<MessageId>,
    pub detail: String,
    pub created_at: Micros,
    pub acknowledged_at: Option<Micros>,
}

/// What a background task does (Svix's `BackgroundTaskType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Sends again the messages whose delivery to the endpoint failed for good
    /// (`endpoint.recover`).
    Recover,
    /// Sends the messages the endpoint is subscribed to but never had a delivery of
    /// (`endpoint.replay`).
    Replay,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    Running,
    Finished,
    Failed,
}

/// Bulk work a tenant asked for (recover, replay-missing), done in small writer jobs from its
/// cursor: each chunk's deliveries and the cursor past them commit together, so a restart
/// carries on where the last commit left off, neither repeating nor skipping a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackgroundTask {
    pub id: TaskId,
    pub app_id: AppId,
    pub endpoint_id: EndpointId,
    pub kind: TaskKind,
    pub status: TaskStatus,
    /// The window, inclusive, as ids: the endpoint's attempts for recover, the application's
    /// messages for replay (ids are time-ordered).
    pub lo: u128,
    pub hi: u128,
    /// Everything before it is done: the next chunk starts here.
    pub cursor: u128,
    /// Deliveries queued so far.
    pub deliveries: u64,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// An API token. Only the SHA-256 of the token text is stored, as the record's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: TokenId,
    pub name: String,
    /// `None`: admin (every application); `Some`: only this application.
    pub app_id: Option<AppId>,
    pub created_at: Micros,
}

/// An operator of the dashboard. Only an argon2id hash of the password is stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    /// The PHC string of the argon2id hash (`$argon2id$v=19$m=...`), salt included.
    pub password_hash: String,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Who a dashboard session belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOwner {
    /// An operator who logged in with a password: every application.
    User(String),
    /// An application's owner who opened a portal link: that application only.
    Portal { app_id: AppId, read_only: bool },
}

/// A dashboard session, stored under the SHA-256 of its cookie value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub owner: SessionOwner,
    /// The token every form of this session must carry (CSRF).
    pub csrf: String,
    pub created_at: Micros,
    pub expires_at: Micros,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("owner", &self.owner)
            .field("csrf", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A link into the tenant portal of one application, made through the API; stored under the
/// SHA-256 of its token. Opening it starts a portal session; it works until it expires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortalLink {
    pub app_id: AppId,
    pub read_only: bool,
    pub created_at: Micros,
    pub expires_at: Micros,
}

/// A one-time link that creates the first user, printed in the log while no user exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetupToken {
    pub created_at: Micros,
    pub expires_at: Micros,
}

/// Who is calling, after authentication. Every service call takes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    App(AppId),
}

impl Caller {
    /// Whether this caller may see or change things of `app`.
    pub fn may_access(self, app: AppId) -> bool {
        match self {
            Caller::Admin => true,
            Caller::App(own) => own == app,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_with_their_prefix() {
        let id = MessageId(ulid::Ulid::new().0);
        let text = id.to_string();
        assert!(text.starts_with("msg_"));
        assert_eq!(text.len(), 4 + 26);
        assert_eq!(MessageId::parse(&text), Some(id));
        assert_eq!(AppId::parse(&text), None, "a msg_ id is not an app id");
        assert_eq!(MessageId::parse("msg_short"), None);
    }

    #[test]
    fn id_floor_orders_by_time() {
        let early = ulid::Ulid::from_parts(1_000, u128::MAX).0;
        let late = ulid::Ulid::from_parts(1_001, 0).0;
        assert!(id_floor_at_millis(1_001) > early);
        assert_eq!(id_floor_at_millis(1_001), late);
    }

    #[test]
    fn times_from_requests_are_parsed_within_years_0000_to_9999() {
        let t = |s| parse_time(s);
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("1970-01-01T00:00:01.5+00:00"), Some(1_500_000));
        assert_eq!(t("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(t("1970-01-01T00:00:02"), Some(2_000_000));
        assert_eq!(t("1970-01-01T00:00:02.25"), Some(2_250_000));
        assert_eq!(t(" 1970-01-01T00:01 "), Some(60_000_000));
        assert_eq!(t("1970-01-01 00:01"), Some(60_000_000));
        assert_eq!(t("0000-01-01T00:00:00Z"), Some(TIME_MIN));
        assert_eq!(t("9999-12-31T23:59:59.999999Z"), Some(TIME_MAX));
        for out in [
            "9999-12-31T23:59:59-01:00",
            "+10000-01-01T00:00:00",
            "-0001-12-31T23:59:59",
            "-9999-01-01T00:00:00",
            "-262000-01-01T00:00:00",
            "+262000-01-01T00:00:00",
            "9999999-01-01T00:00:00Z",
            "99999999999999999999",
            "yesterday",
            "",
        ] {
            assert_eq!(t(out), None, "{out}");
        }
    }
}
