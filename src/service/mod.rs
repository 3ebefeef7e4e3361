//! Every rule of Herald, once: validation, scope checks (which application a caller may
//! touch), create/update/delete, sending messages, tokens.
//!
//! Both front doors (the JSON API and the dashboard) call these functions with plain Rust
//! inputs and get plain Rust results or a `ServiceError` naming the field at fault.
//!
//! Owns: the rules. Must never: know HTTP or JSON shapes, touch redb (it asks `storage/`),
//! or let a caller scoped to one application see that another exists (that is a 404).

mod alerts;
mod apps;
mod endpoints;
mod event_types;
mod messages;
mod overview;
mod queue;
mod sessions;
mod share;
mod tasks;
mod tokens;
pub mod triggers;
mod users;
pub mod validate;

use std::sync::Arc;

pub use alerts::AlertPage;
pub use apps::AppInput;
pub use endpoints::{EndpointInput, EndpointPatch, EndpointStats, PING_EVENT_TYPE};
pub use endpoints::{EndpointTest, TestResult, example_payload};
pub use event_types::{EventTypeInput, EventTypePatch};
pub use messages::{
    AttemptFilter, Created, Destination, EndpointMessage, MessageFilter, MessageInput, Remember,
};
pub use overview::{
    AppActivity, EndpointActivity, FailingEndpoint, OVERVIEW_HOURS, Overview, percentile,
};
pub use queue::{
    AttemptDetail, DeliveryDetail, DestinationDetail, MASK, MessageDetail, QueueCursor,
    QueueFilter, QueueItem, QueueListing, StateFilter,
};
pub use sessions::{NewSession, PORTAL_ACCESS_PATH, PortalAccess, SessionView};
pub use tasks::{Estimate, TaskFilter};
pub use tokens::{NewToken, Replay};
pub use users::SETUP_PATH;

use crate::config::Config;
use crate::delivery::Waker;
use crate::guard::DestinationPolicy;
use crate::model::*;
use crate::storage::{Conflict, Cursor, Page, PageQuery, Read, Store, StoreError};

/// A field that failed validation: its name as the API spells it, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub msg: String,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("authentication failed")]
    Unauthorized,
    #[error("only an admin token may do this")]
    Forbidden,
    /// Refused to a scoped caller, saying what only an admin may do (a tenant is told why,
    /// where `Forbidden` pages are simply not found).
    #[error("{0}")]
    AdminOnly(&'static str),
    /// A transient condition (writer restarting): the client should retry.
    #[error("temporarily unavailable")]
    Unavailable,
    /// Too much at once: the client should retry after a moment.
    #[error("too busy")]
    Busy,
    /// This application's triggers used their share of the writer (`routing_share_ms`): its
    /// own creates wait a moment, no one else's.
    #[error("this application's triggers are using their share of the writer")]
    BusyTenant,
    #[error("internal error: {0}")]
    Internal(String),
    /// A fault inside the write (a panic) refused it; nothing of it was stored.
    #[error("the write failed on an internal error; nothing of it was stored")]
    NotStored,
}

impl ServiceError {
    /// A cap reached (per application, endpoint or message): a 422 that names the setting
    /// which sets it. `field` is the input at fault, or `""` for the request as a whole.
    pub fn cap_reached(field: &str, what: &str, max: usize, setting: &str) -> ServiceError {
        ServiceError::invalid(field, cap_message(what, max, setting))
    }

    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(vec![FieldError {
            field: field.into(),
            msg: msg.into(),
        }])
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound("entity"),
            StoreError::Aborted | StoreError::Closed => ServiceError::Unavailable,
            StoreError::Busy => ServiceError::Busy,
            StoreError::Conflict(Conflict::AppUid) => ServiceError::Conflict {
                code: "conflict",
                detail: "An application with this uid already exists".into(),
            },
            StoreError::Conflict(Conflict::EndpointUid) => ServiceError::Conflict {
                code: "conflict",
                detail: "An endpoint with this uid already exists".into(),
            },
            StoreError::Conflict(Conflict::EventTypeExists) => ServiceError::Conflict {
                code: "event_type_exists",
                detail: "An event type with this name already exists".into(),
            },
            StoreError::Conflict(Conflict::EventId(id)) => ServiceError::Conflict {
                code: "conflict",
                detail: format!("A message with this eventId already exists ({id})"),
            },
            StoreError::Panicked => ServiceError::NotStored,
            StoreError::Unreachable(_) => ServiceError::Unavailable,
            e @ (StoreError::Backend { .. }
            | StoreError::Corrupt(_)
            | StoreError::Layout { .. }
            | StoreError::File { .. }
            | StoreError::Stale(_)) => ServiceError::Internal(e.to_string()),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// How a reached cap is told: what, the limit, and the setting that sets it.
fn cap_message(what: &str, max: usize, setting: &str) -> String {
    format!("{what}: the limit is {max} (setting {setting})")
}

/// A page of a list, with the Svix cursors.
#[derive(Clone, Debug)]
pub struct ListPage<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub prev_iterator: Option<String>,
    pub done: bool,
}

/// How a caller asks for a page: `iterator` as Svix writes it (`id` for the next page,
/// `-id` for the previous one).
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub limit: Option<usize>,
    pub iterator: Option<String>,
}

/// The application's operations, shared by the API and the dashboard. Cloned for every request
/// (axum hands each handler and middleware its own copy), so a clone is one reference count:
/// the parts live behind one `Arc`.
#[derive(Clone)]
pub struct Service(Arc<Parts>);

impl std::ops::Deref for Service {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What a `Service` holds.
pub struct Parts {
    store: Store,
    config: Arc<Config>,
    waker: Waker,
    policy: DestinationPolicy,
    /// Signed requests the service sends itself: endpoint tests, verification handshakes.
    outbound: Arc<crate::delivery::Outbound>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Dashboard login attempts per user and address.
    logins: users::LoginThrottle,
    /// Bearer tokens already looked up; see `tokens::TokenCache`.
    tokens: tokens::TokenCache,
    /// Trigger previews and saves rendering at once (`template_previews_max`).
    renders: tokio::sync::Semaphore,
    /// The writer time each application's triggers took (`routing_share_ms`).
    writer_share: share::WriterShare,
    /// The address the server listens on (`Service::listening_on`), for links when no
    /// `public_url` is set, and whether the operator was told so.
    listening: std::sync::OnceLock<std::net::SocketAddr>,
    told_public_url: std::sync::atomic::AtomicBool,
}

/// The store's calls with the service's error: a closure may fail with a rule it finds broken
/// (`ServiceError`) or with the store's own error (`?` turns it into one), and the caller gets
/// one `Result` back, never a result inside a result.
impl Parts {
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&crate::storage::Reader) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.store.read_as(f).await
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: Fn(&mut crate::storage::Writer<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.store.write_as(f).await
    }

    async fn write_or_shed<T, F>(&self, f: F) -> Result<T>
    where
        F: Fn(&mut crate::storage::Writer<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.store.write_or_shed_as(f).await
    }
}

impl Service {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        waker: Waker,
        outbound: Arc<crate::delivery::Outbound>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Service {
        let policy = DestinationPolicy {
            allow: config.allow_destination.clone(),
            allow_http: config.allow_http_destinations,
        };
        let logins = users::LoginThrottle::new(config.login_attempts_per_minute);
        let renders = tokio::sync::Semaphore::new(config.template_previews_max);
        let writer_share =
            share::WriterShare::new(config.routing_share_ms, config.routing_budget_ms);
        Service(Arc::new(Parts {
            store,
            config,
            waker,
            policy,
            outbound,
            metrics,
            logins,
            tokens: tokens::TokenCache::default(),
            renders,
            writer_share,
            listening: std::sync::OnceLock::new(),
            told_public_url: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The page size to use: default 50, at most `page_limit_max`.
    fn limit(&self, params: &ListParams) -> Result<usize> {
        match params.limit {
            None => Ok(50.min(self.config.page_limit_max)),
            Some(0) => Err(ServiceError::invalid("limit", "limit must be at least 1")),
            Some(n) if n > self.config.page_limit_max => Err(ServiceError::invalid(
                "limit",
                format!("limit must be at most {}", self.config.page_limit_max),
            )),
            Some(n) => Ok(n),
        }
    }

    /// Builds the storage page query from Svix list parameters over ids of one kind.
    fn page_query(
        &self,
        params: &ListParams,
        descending: bool,
        parse: fn(&str) -> Option<u128>,
    ) -> Result<PageQuery> {
        let limit = self.limit(params)?;
        let cursor = match params.iterator.as_deref() {
            None | Some("") => Cursor::First,
            Some(text) => {
                let (before, id) = match text.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, text),
                };
                let id = parse(id)
                    .ok_or_else(|| ServiceError::invalid("iterator", "invalid iterator"))?;
                if before {
                    Cursor::Before(id)
                } else {
                    Cursor::After(id)
                }
            }
        };
        Ok(PageQuery::new(cursor, limit, descending))
    }
}

/// Turns a storage page into the Svix envelope: `iterator` is the last item's key,
/// `prevIterator` is `-` + the first item's key.
fn list_page<T>(page: Page<T>, key: impl Fn(&T) -> String) -> ListPage<T> {
    let iterator = page.items.last().map(&key);
    let prev_iterator = page.items.first().map(|f| format!("-{}", key(f)));
    ListPage {
        data: page.items,
        iterator,
        prev_iterator,
        done: page.done,
    }
}

/// Finds an application by id or uid, as `caller` may see it.
fn find_app(r: &dyn Read, caller: Caller, id_or_uid: &str) -> Result<App> {
    let id = match AppId::parse(id_or_uid) {
        Some(id) => Some(id),
        None => r.app_id_by_uid(id_or_uid)?,
    };
    match id {
        Some(id) if caller.may_access(id) => {
            r.app(id)?.ok_or(ServiceError::NotFound("Application"))
        }
        _ => Err(ServiceError::NotFound("Application")),
    }
}

/// Finds an endpoint of `app` by id or uid.
fn find_endpoint(r: &dyn Read, app: AppId, id_or_uid: &str) -> Result<Endpoint> {
    let id = match EndpointId::parse(id_or_uid) {
        Some(id) => Some(id),
        None => r.endpoint_id_by_uid(app, id_or_uid)?,
    };
    match id.map(|id| r.endpoint(id)).transpose()?.flatten() {
        Some(ep) if ep.app_id == app => Ok(ep),
        _ => Err(ServiceError::NotFound("Endpoint")),
    }
}

/// Finds a message of `app` by id or eventId.
fn find_message(r: &dyn Read, app: AppId, id_or_event_id: &str) -> Result<Message> {
    let id = match MessageId::parse(id_or_event_id) {
        Some(id) => Some(id),
        None => r.message_id_by_event_id(app, id_or_event_id)?,
    };
    match id.map(|id| r.message(app, id)).transpose()?.flatten() {
        Some(m) => Ok(m),
        None => Err(ServiceError::NotFound("Message")),
    }
}

fn require_admin(caller: Caller) -> Result<()> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::App(_) => Err(ServiceError::Forbidden),
    }
}

impl Service {
    /// Whether the database answers a read.
    pub async fn health(&self) -> Result<()> {
        self.read(|r| Ok(r.queue_depth(Priority::High)?)).await?;
        Ok(())
    }

    /// The writer's and the scheduler's liveness (`heartbeat.rs`).
    pub fn heartbeats(&self) -> &crate::heartbeat::Heartbeats {
        &self.metrics.heartbeats
    }
}

/// A backup written to a temporary file, ready to be streamed; the file is removed when the
/// reader is dropped (it was unlinked right after opening).
pub struct BackupFile {
    pub reader: tokio::fs::File,
    pub len: u64,
}

impl Service {
    /// Writes a consistent backup to a temporary file beside the database and opens it.
    pub async fn backup_to_temp(&self, caller: Caller) -> Result<BackupFile> {
        require_admin(caller)?;
        let dir = self
            .config
            .db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let path = dir.join(format!(".herald-backup-{}.redb", ulid::Ulid::new()));
        let report = self.store.backup(&path).await?;
        let reader = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()));
        // Unlinked at once: the open handle keeps the data until the response is sent.
        let _ = std::fs::remove_file(&path);
        Ok(BackupFile {
            reader: reader?,
            len: report.bytes,
        })
    }
}

impl Service {
    /// The Prometheus text exposition, with the queue depth read now.
    pub async fn metrics_text(&self) -> Result<String> {
        let depths = self
            .read(|r| {
                Ok([
                    r.queue_depth(Priority::High)?,
                    r.queue_depth(Priority::Normal)?,
                    r.queue_depth(Priority::Low)?,
                ])
            })
            .await?;
        Ok(self.metrics.render(&[
            ("high", depths[0]),
            ("normal", depths[1]),
            ("low", depths[2]),
        ]))
    }
}
