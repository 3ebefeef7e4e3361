//! Storage: what Herald keeps, behind one interface, and the backends that keep it.
//!
//! Today there is one backend, `redb/` (everything in one embedded file); the types it exports
//! here are the interface the rest of Herald is written against: `Store` (reads as closures
//! over a `Reader`, group-committed writes as closures over a `Writer`), the typed reads of
//! `Read`, and the records and pages they answer. What both backends share, the errors, lives
//! in this file; a second backend goes beside `redb/`, exporting the same names.
//!
//! Must never: make a rule about what may be stored (that is `service/`), or let a backend's
//! own types (redb's, SQL) escape this module.

mod interface;
mod redb;

pub use self::interface::{DispatchLoads, Read, Reader, Snapshot, Write, Writer};
pub use self::redb::{
    AttemptOutcome, BackupReport, Counter, Create, Cursor, DueDeliveries, EndpointOutcomes,
    HourCounts, IdempotentResponse, LATENCY_BUCKETS_MS, Mend, MessageHead, Page, PageQuery, Purged,
    QueueCursor, QueueEntry, QueuePage, QueueQuery, QueueRow, RememberedAnswer, RouteFn, Store,
    StoreSettings, StrayParked, Strays, WriterStats, day_of, decode_any_record, hour_of,
    open_private,
};

use crate::model::MessageId;

/// What a backend's error came from, kept whole for the log line and the 500's detail; shared
/// (`Arc`) because a batch's failure is every one of its jobs' answer.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;
type BoxedCause = Box<dyn std::error::Error + Send + Sync>;

/// Why a storage call failed. Callers branch on the variant, never on text: `service/` maps
/// each to its answer (`From<StoreError> for ServiceError`), `delivery/` tells a record that
/// will never load (`Corrupt`) from a database that failed just now.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed the operation (an I/O error, a full disk, a refused statement);
    /// nothing of it was stored. `what` says which operation.
    #[error("database {what}: {cause}")]
    Backend { what: &'static str, cause: Cause },
    /// The database cannot be reached just now (a lost connection): nothing was stored, and
    /// the same call may succeed once it is back.
    #[error("database unreachable: {0}")]
    Unreachable(Cause),
    /// A stored record, or an entry pointing at one, does not read as this build expects.
    #[error("stored data does not read: {0}")]
    Corrupt(Cause),
    /// The database's layout version is not one this build reads.
    #[error(
        "database layout version {found} is not supported by this build (it reads {oldest} to {newest})"
    )]
    Layout {
        found: u64,
        oldest: u64,
        newest: u64,
    },
    /// A file the store was asked to use or make could not be (`what` the file's role).
    #[error("{what} {}: {cause}", path.display())]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        cause: Cause,
    },
    /// An update was built on a read of an earlier transaction and would undo what was
    /// committed since; refused (`what` names the record).
    #[error("an {0} update was built on a read of an earlier transaction")]
    Stale(&'static str),
    /// The job was not run (its batch was given up before it).
    #[error("write batch rolled back")]
    Aborted,
    /// The job panicked; nothing it wrote was committed (the writer lives on).
    #[error("the write job panicked; nothing of it was stored")]
    Panicked,
    /// The writer is gone (shutting down).
    #[error("writer stopped")]
    Closed,
    /// The writer's queue is full: the caller should come back shortly.
    #[error("writer busy")]
    Busy,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
}

impl StoreError {
    /// A backend failure of operation `what`.
    pub fn backend(what: &'static str, cause: impl Into<BoxedCause>) -> StoreError {
        StoreError::Backend {
            what,
            cause: Cause::from(cause.into()),
        }
    }

    /// Stored data that does not read; `detail` says what and where.
    pub fn corrupt(detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt(Cause::from(BoxedCause::from(detail.into())))
    }

    /// A file `what` at `path` that could not be used.
    pub fn file(
        what: &'static str,
        path: &std::path::Path,
        cause: impl Into<BoxedCause>,
    ) -> StoreError {
        StoreError::File {
            what,
            path: path.to_path_buf(),
            cause: Cause::from(cause.into()),
        }
    }
}

/// Which uniqueness rule a write would break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    AppUid,
    EndpointUid,
    EventTypeExists,
    /// The application already has a message with this eventId.
    EventId(MessageId),
}
