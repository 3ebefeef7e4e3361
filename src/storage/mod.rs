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

pub(crate) mod codec;
pub(crate) mod counters;
mod interface;
pub(crate) mod jobs;
pub mod migrate;
pub(crate) mod pages;
mod postgres;
mod redb;
pub(crate) mod rows;
mod transitions;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use self::interface::{DispatchLoads, Read, Reader, Snapshot, Write, Writer};
pub use self::jobs::WriterStats;
pub use self::pages::{Cursor, Page, PageQuery};
pub use self::redb::{
    AttemptOutcome, BackupReport, Counter, Create, DueDeliveries, EndpointOutcomes, HourCounts,
    IdempotentResponse, LATENCY_BUCKETS_MS, Mend, MessageHead, Purged, QueueCursor, QueueEntry,
    QueuePage, QueueQuery, QueueRow, RememberedAnswer, RouteFn, StrayParked, Strays, day_of,
    decode_any_record, hour_of, open_private,
};

/// Settings the store needs from the configuration.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub writer_batch_max: usize,
    pub writer_queue_max: usize,
    /// Where the writer reports each batch's size and commit time.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// PostgreSQL: connections a node keeps for reads at most (`db_pool_max`).
    pub pool_max: usize,
}

impl StoreSettings {
    /// The settings `config` gives, reporting to `metrics`.
    pub fn from_config(
        config: &crate::config::Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> StoreSettings {
        StoreSettings {
            writer_batch_max: config.writer_batch_max,
            writer_queue_max: config.writer_queue_max,
            metrics,
            cache_bytes: config.db_cache_bytes,
            pool_max: config.db_pool_max,
        }
    }
}

#[cfg(test)]
impl StoreSettings {
    /// Small settings for unit tests: batches and queue of 8, a 1 MiB page cache.
    pub(crate) fn for_tests() -> StoreSettings {
        StoreSettings {
            writer_batch_max: 8,
            writer_queue_max: 8,
            metrics: Default::default(),
            cache_bytes: 1 << 20,
            pool_max: 4,
        }
    }
}

/// The database Herald keeps everything in: a cheap `Clone` handle. Reads run a closure over a
/// `Reader` on a blocking thread; writes send a closure over a `Writer` to the backend's one
/// writer thread, which runs waiting jobs in one transaction and answers them after one durable
/// commit (`jobs.rs`). Which backend holds the data is chosen by `open`, from the database's
/// name; nothing above `storage` asks.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    jobs: mpsc::Sender<jobs::Msg>,
    stats: Arc<WriterStats>,
}

#[derive(Clone)]
enum Backend {
    Redb(redb::Store),
    Postgres(postgres::Store),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the database named `db` and starts its writer: a `postgres://` (or
    /// `postgresql://`) URL is a PostgreSQL database, anything else the path of an embedded
    /// redb file. A URL must be opened inside the runtime.
    pub fn open(db: &Path, settings: &StoreSettings) -> Result<Store, StoreError> {
        let (jobs, rx) = mpsc::channel(settings.writer_queue_max);
        let stats = Arc::new(WriterStats::default());
        let backend = match postgres_url(db) {
            Some(url) => {
                Backend::Postgres(postgres::Store::open(url, settings, rx, stats.clone())?)
            }
            None => Backend::Redb(redb::Store::open(
                db,
                settings,
                jobs.clone(),
                rx,
                stats.clone(),
            )?),
        };
        Ok(Store {
            backend,
            jobs,
            stats,
        })
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.read_as(f).await
    }

    /// `read` whose closure fails with the caller's error type (a rule it found broken, or
    /// the store's error turned into one).
    pub async fn read_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Reader) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match &self.backend {
            Backend::Redb(s) => s.read_as(f).await,
            Backend::Postgres(s) => s.read_as(f).await,
        }
    }

    /// Runs `f` in the writer's next batch and answers after that batch is durably committed.
    /// `f` should check before it writes, and may run more than once (when another job of its
    /// batch fails), so it must have no effect outside the transaction: see `jobs.rs`.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        jobs::send(&self.jobs, f).await
    }

    /// `write` whose job fails with the caller's error type: a rule the job finds broken is
    /// its answer as it is (and, like any failure, keeps what the job wrote out of the commit).
    pub async fn write_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut Writer<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        jobs::send(&self.jobs, f).await
    }

    /// Like `write`, but when the writer's queue is full it answers `Busy` at once instead of
    /// waiting for room: the API sheds load this way rather than piling up requests.
    pub async fn write_or_shed<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        jobs::send_or_shed(&self.jobs, f).await
    }

    /// `write_or_shed` with the caller's error type, as `write_as`.
    pub async fn write_or_shed_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&mut Writer<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        jobs::send_or_shed(&self.jobs, f).await
    }

    /// Commits what the writer holds, stops it, and lets go of the database; later calls on
    /// any clone answer `Closed`.
    pub async fn close(&self) {
        jobs::stop(&self.jobs).await;
        match &self.backend {
            Backend::Redb(s) => s.close().await,
            Backend::Postgres(s) => s.close().await,
        }
    }

    /// Whether other processes may deliver from this database at the same time (PostgreSQL):
    /// dispatch then claims what it attempts (`claim`).
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Claims queued deliveries for this process until the time given with each, so no other node
    /// attempts them meanwhile (`postgres/leases.rs`); answers those claimed. A redb file has
    /// one process: every entry is its own.
    pub async fn claim(
        &self,
        now_ms: u64,
        leases: &[(QueueEntry, u64)],
    ) -> Result<Vec<crate::model::DeliveryId>, StoreError> {
        match &self.backend {
            Backend::Postgres(s) => s.claim(now_ms, leases).await,
            Backend::Redb(_) => Ok(leases.iter().map(|(e, _)| e.id).collect()),
        }
    }

    /// Jobs sent to the writer and not yet taken into a batch.
    pub fn jobs_waiting(&self) -> usize {
        jobs::waiting(&self.jobs)
    }

    pub fn writer_stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes a consistent copy of the live database to `path` (which must not exist), while
    /// the server keeps serving.
    pub async fn backup(&self, path: &Path) -> Result<BackupReport, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.backup(path).await,
            Backend::Postgres(_) => Err(StoreError::backend(
                "backup",
                "a PostgreSQL database is backed up with its own tools (pg_dump, base backups)",
            )),
        }
    }

    /// The redb backend, for its own unit tests.
    #[cfg(test)]
    pub(crate) fn redb(&self) -> &redb::Store {
        match &self.backend {
            Backend::Redb(s) => s,
            Backend::Postgres(_) => panic!("not a redb store"),
        }
    }

    /// Verifies a database file that no server has open. Answers a short report, or the
    /// first problem found. (A PostgreSQL database is checked with `check_open`, on a store
    /// opened on it, while nodes may serve.)
    pub fn check(path: &Path) -> Result<String, StoreError> {
        redb::Store::check(path)
    }

    /// Verifies the database this store has open: PostgreSQL only (a redb file is checked
    /// closed, with `check`).
    pub async fn check_open(&self) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Postgres(s) => s.check().await,
            Backend::Redb(_) => Err(StoreError::backend(
                "check",
                "a database file is checked while no server has it open",
            )),
        }
    }
}

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

/// The PostgreSQL URL `db` is, if it is one.
pub fn postgres_url(db: &Path) -> Option<&str> {
    let text = db.to_str()?;
    (text.starts_with("postgres://") || text.starts_with("postgresql://")).then_some(text)
}

impl From<codec::CodecError> for StoreError {
    fn from(e: codec::CodecError) -> Self {
        StoreError::Corrupt(std::sync::Arc::new(e))
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
