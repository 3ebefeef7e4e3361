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

mod redb;

pub use self::redb::{
    AttemptOutcome, BackupReport, Counter, Create, Cursor, DispatchReads, EndpointOutcomes,
    HourCounts, IdempotentResponse, LATENCY_BUCKETS_MS, Mend, MessageHead, Page, PageQuery, Purged,
    QueueCursor, QueueEntry, QueuePage, QueueQuery, QueueRow, Read, Reader, RememberedAnswer,
    Store, StoreSettings, Strays, Tx, Writer, WriterStats, day_of, decode_any_record, hour_of,
    open_private,
};

use crate::model::MessageId;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("stored record does not decode: {0}")]
    Corrupt(String),
    /// The job was not run (its batch was given up before it).
    #[error("write batch rolled back")]
    Aborted,
    /// The job panicked; nothing it wrote was committed (the writer lives on).
    #[error("the write job panicked; nothing of it was stored")]
    Panicked,
    /// The write would pass a limit of what can be stored; the text says which, for people.
    #[error("{0}")]
    Limit(String),
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

/// Which uniqueness rule a write would break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    AppUid,
    EndpointUid,
    EventTypeExists,
    /// The application already has a message with this eventId.
    EventId(MessageId),
}
