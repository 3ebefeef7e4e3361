//! The redb backend: the only code that knows redb, its tables and the byte layout of
//! records; everything Herald keeps, in one file.
//!
//! `Store` is a cheap `Clone` handle. Reads run a closure over a `Reader` (one read
//! transaction) on a blocking thread; writes send a closure over a `Writer` to the one writer
//! thread, which commits batches of them durably (group commit, see `writer.rs`; a closure is
//! an `Fn` because the writer runs it again when another job of its batch fails). The typed
//! reads live in `reads.rs` (trait `Read`, shared by `Reader` and `Writer` so a write can check
//! before it writes); the typed mutations in `ops.rs`.
//!
//! Must never: hold a transaction across an `.await`, make a rule about what may be stored
//! (that is `service/`), or let redb types escape `storage`.

mod admin;
mod backup;
mod check;
mod edits;
pub(super) mod export;
mod hot;
mod interface;
mod ops;
mod pages;
mod reads;
mod retention;
mod stats;
mod tables;
mod tasks;
mod triggers;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::sync::mpsc;

pub use backup::BackupReport;
pub use check::StrayParked;
pub use check::{Mend, QueueCursor, Strays};
pub use codec::{IdempotentResponse, RememberedAnswer, decode_any_record};
pub use ops::AttemptOutcome;
pub use ops::RouteFn;
pub(crate) use reads::TxRead;
pub use reads::{DispatchReads, DueDeliveries, QueueEntry};
pub use retention::Purged;
pub use rows::MessageHead;
pub use stats::{
    Counter, EndpointOutcomes, HourCounts, LATENCY_BUCKETS_MS, QueuePage, QueueQuery, QueueRow,
    day_of, hour_of,
};

use crate::model::{App, AppId, Endpoint, EventType, Trigger};

use super::jobs::{Msg, WriterStats};
use super::{Conflict, StoreError, StoreSettings};
use super::{codec, rows};

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::backend("failed", e)
            }
        }
    )*};
}
db_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[derive(Clone)]
pub struct Store {
    /// Taken out by `close`, so the file is released even while clones of `Store` live on.
    db: Arc<std::sync::RwLock<Option<Arc<Database>>>>,
    /// The writer's queue, to know when it has stopped for good.
    jobs: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the database file, creates missing tables, checks the layout
    /// version, and starts the writer thread, which takes its jobs from `rx`.
    pub(crate) fn open(
        path: &Path,
        settings: &StoreSettings,
        jobs: mpsc::Sender<Msg>,
        rx: mpsc::Receiver<Msg>,
        stats: Arc<WriterStats>,
    ) -> Result<Store, StoreError> {
        let db = open_file(path, settings.cache_bytes)?;
        init_tables(&db)?;
        let slot: writer::Slot = Arc::new(std::sync::RwLock::new(Some(Arc::new(db))));
        writer::spawn(
            slot.clone(),
            path.to_path_buf(),
            settings.cache_bytes,
            rx,
            settings.writer_batch_max,
            stats,
            settings.metrics.clone(),
        )
        .map_err(|e| StoreError::backend("writer thread did not start", e))?;
        Ok(Store { db: slot, jobs })
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .expect("not poisoned")
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// The database for a read. While the writer closes and reopens the file after an I/O
    /// failure (a full disk), reads wait for it (bounded) instead of failing; once the store
    /// is closed for good they fail at once.
    async fn database_for_read(&self) -> Result<Arc<Database>, StoreError> {
        const STEP: std::time::Duration = std::time::Duration::from_millis(20);
        const STEPS: usize = 100;
        for _ in 0..STEPS {
            match self.database() {
                Ok(db) => return Ok(db),
                Err(e) if self.jobs.is_closed() => return Err(e),
                Err(_) => tokio::time::sleep(STEP).await,
            }
        }
        self.database()
    }

    /// Closes the file once the writer has stopped (`jobs::stop`); later calls on any clone
    /// answer `Closed`. Waits (bounded) for reads in progress to let go of the database.
    pub async fn close(&self) {
        let Some(mut db) = self.db.write().expect("not poisoned").take() else {
            return;
        };
        for _ in 0..500 {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    return;
                }
                Err(shared) => {
                    db = shared;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
        tracing::warn!("database still in use after close; it is released when the last read ends");
    }

    /// Runs `f` in one read transaction on a blocking thread.
    pub async fn read_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&crate::storage::Reader) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = self.database_for_read().await?;
        tokio::task::spawn_blocking(move || {
            let reader = Reader {
                tx: db.begin_read().map_err(StoreError::from)?,
            };
            f(&reader)
        })
        .await
        .map_err(|e| StoreError::backend("read task failed", e))?
    }
}

/// Opens (or creates) a database file with a bounded page cache, readable by its owner only
/// (`open_private`).
pub(crate) fn open_file(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let file =
        open_private(path, Create::IfMissing).map_err(|e| StoreError::file("database", path, e))?;
    database_in(file, cache_bytes)
}

fn database_in(file: std::fs::File, cache_bytes: usize) -> Result<Database, StoreError> {
    let backend =
        redb::backends::FileBackend::new(file).map_err(|e| StoreError::backend("file lock", e))?;
    Ok(Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(backend)?)
}

/// Whether `open_private` may create the file, and whether it may find one already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    IfMissing,
    /// Fails when the file exists.
    New,
}

/// Opens a file for reading and writing that only its owner may read: the database, its
/// backups and the first-start token file hold signing keys, basic-auth passwords and tokens.
/// A file it creates has mode 0600 from the `open` that creates it, so there is no moment it is
/// readable by others; a file found more open than that is tightened through the open handle
/// before anything is written to it, and a warning says so.
pub fn open_private(path: &Path, create: Create) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    match create {
        Create::IfMissing => options.create(true),
        Create::New => options.create_new(true),
    };
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let was = file.metadata()?.permissions().mode() & 0o777;
        if was & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                file = %path.display(),
                was = format!("{was:o}"),
                "the file holds secrets and was readable or writable by others: its mode is now 600"
            );
        }
    }
    Ok(file)
}

fn init_tables(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        fn touch<K: redb::Key + 'static, V: redb::Value + 'static>(
            tx: &WriteTransaction,
            def: TableDefinition<K, V>,
        ) -> Result<(), StoreError> {
            tx.open_table(def)?;
            Ok(())
        }
        touch(&tx, tables::APPS)?;
        touch(&tx, tables::APP_UIDS)?;
        touch(&tx, tables::EVENT_TYPES)?;
        touch(&tx, tables::ENDPOINTS)?;
        touch(&tx, tables::APP_ENDPOINTS)?;
        touch(&tx, tables::ENDPOINT_UIDS)?;
        touch(&tx, tables::TRIGGERS)?;
        touch(&tx, tables::MESSAGES)?;
        touch(&tx, tables::MESSAGE_EVENT_IDS)?;
        touch(&tx, tables::DELIVERIES)?;
        touch(&tx, tables::QUEUE_HIGH)?;
        touch(&tx, tables::QUEUE_NORMAL)?;
        touch(&tx, tables::QUEUE_LOW)?;
        touch(&tx, tables::PARKED)?;
        touch(&tx, tables::UNIQUE_KEYS)?;
        touch(&tx, tables::ATTEMPTS)?;
        touch(&tx, tables::ENDPOINT_ATTEMPTS)?;
        touch(&tx, tables::ALERTS)?;
        touch(&tx, tables::CURSORS)?;
        touch(&tx, tables::TASKS)?;
        touch(&tx, tables::APP_TASKS)?;
        touch(&tx, tables::TOKENS)?;
        touch(&tx, tables::IDEMPOTENCY)?;
        touch(&tx, tables::USERS)?;
        touch(&tx, tables::SESSIONS)?;
        touch(&tx, tables::PORTAL_LINKS)?;
        touch(&tx, tables::SETUP_TOKENS)?;
        touch(&tx, tables::MESSAGE_TIMELINE)?;
        touch(&tx, tables::ENDPOINT_DELIVERIES)?;
        touch(&tx, tables::FAILED_DELIVERIES)?;
        touch(&tx, tables::HOURLY)?;
        touch(&tx, tables::LATENCY)?;
        touch(&tx, tables::ENDPOINT_HOURLY)?;
        touch(&tx, tables::APP_DAILY)?;
        let mut meta = tx.open_table(tables::META)?;
        let found = meta.get("schema_version")?.map(|v| v.value());
        match found {
            None => {
                meta.insert("schema_version", tables::SCHEMA_VERSION)?;
            }
            Some(v) if v == tables::SCHEMA_VERSION => {}
            // Versions 1 to 3 differ only in how new records are written; every older record
            // reads as it is. Writing the new version keeps an older build from opening the
            // file and misreading what this one writes.
            Some(v) if (tables::SCHEMA_VERSION_OLDEST..tables::SCHEMA_VERSION).contains(&v) => {
                tracing::info!(
                    from = v,
                    to = tables::SCHEMA_VERSION,
                    "database layout upgraded"
                );
                meta.insert("schema_version", tables::SCHEMA_VERSION)?;
            }
            Some(v) => {
                return Err(StoreError::Layout {
                    found: v,
                    oldest: tables::SCHEMA_VERSION_OLDEST,
                    newest: tables::SCHEMA_VERSION,
                });
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Opening a table in either kind of transaction, so reads are written once for both.
#[doc(hidden)]
pub trait Tx {
    type Table<'t, K: redb::Key + 'static, V: redb::Value + 'static>: redb::ReadableTable<K, V>
    where
        Self: 't;
    fn table<'t, K: redb::Key + 'static, V: redb::Value + 'static>(
        &'t self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'t, K, V>, StoreError>;
}

impl Tx for ReadTransaction {
    type Table<'t, K: redb::Key + 'static, V: redb::Value + 'static> = redb::ReadOnlyTable<K, V>;
    fn table<'t, K: redb::Key + 'static, V: redb::Value + 'static>(
        &'t self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'t, K, V>, StoreError> {
        Ok(self.open_table(def)?)
    }
}

impl Tx for WriteTransaction {
    type Table<'t, K: redb::Key + 'static, V: redb::Value + 'static> = redb::Table<'t, K, V>;
    fn table<'t, K: redb::Key + 'static, V: redb::Value + 'static>(
        &'t self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'t, K, V>, StoreError> {
        Ok(self.open_table(def)?)
    }
}

/// One read transaction: a consistent snapshot.
pub struct Reader {
    tx: ReadTransaction,
}

/// The batch's write transaction, lent to one job at a time.
pub struct Writer<'a> {
    tx: hot::WriteTx<'a>,
    /// Set by every mutation; tells the writer a failing job wrote something.
    dirty: bool,
    /// Monotonic ULIDs: ids made inside the writer follow commit order.
    ids: &'a mut ulid::Generator,
    /// The batch's counter increments, written once per counter before the commit.
    counters: crate::storage::counters::Deltas,
    /// Endpoints and triggers of applications that messages of this batch were routed for;
    /// forgotten whenever a job opens one of `ROUTING_TABLES` for writing.
    routing: HashMap<AppId, Routing>,
    /// Applications and event types read in this batch (every message reads both; at most one
    /// of each per job); forgotten whenever a job opens `apps` or `event_types` for writing.
    known: std::cell::RefCell<Known>,
}

/// An application's endpoints and triggers, as routing reads them.
type Routing = Rc<(Vec<Endpoint>, Vec<Trigger>)>;

#[derive(Default)]
struct Known {
    apps: HashMap<AppId, Option<App>>,
    event_types: HashMap<String, Option<EventType>>,
}

/// The tables routing reads: a write to any of them invalidates `Writer::routing`.
const ROUTING_TABLES: [&str; 3] = ["endpoints", "app_endpoints", "triggers"];
/// The tables `Writer::known` remembers reads of: a write to either forgets them.
const KNOWN_TABLES: [&str; 2] = ["apps", "event_types"];

impl<'a> Writer<'a> {
    /// A fresh time-ordered id, strictly greater than every id made before it.
    pub fn new_id(&mut self) -> u128 {
        self.ids
            .generate()
            .map(|u| u.0)
            .unwrap_or_else(|_| ulid::Ulid::new().0)
    }

    /// Opens a table for writing and marks the job as having written.
    fn table_mut<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<redb::Table<'a, K, V>, StoreError> {
        use redb::TableHandle;
        self.dirty = true;
        if ROUTING_TABLES.contains(&def.name()) {
            self.routing.clear();
        }
        if KNOWN_TABLES.contains(&def.name()) {
            *self.known.get_mut() = Known::default();
        }
        Ok(self.tx.open_table(def)?)
    }

    /// Writes through the batch's open handle of a hot table (see `hot.rs`); marks the job as
    /// having written.
    fn hot_mut<K, V, R>(
        &mut self,
        def: TableDefinition<K, V>,
        f: impl FnOnce(&mut redb::Table<'a, K, V>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>
    where
        K: redb::Key + 'static,
        V: redb::Value + 'static,
        (K, V): hot::Slot<'a, K = K, V = V>,
    {
        self.dirty = true;
        self.tx.with(def, f)
    }

    /// An application's endpoints and triggers, read once per batch: a batch often holds many
    /// messages of one application, and decoding its endpoints for each was a tenth of the
    /// writer's time.
    fn routing_of(&mut self, app: AppId) -> Result<Routing, StoreError> {
        if let Some(known) = self.routing.get(&app) {
            return Ok(known.clone());
        }
        let read = Rc::new((self.app_endpoints(app)?, self.app_triggers(app)?));
        self.routing.insert(app, read.clone());
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_of(path: &Path) -> Option<u64> {
        let db = Database::open(path).unwrap();
        let tx = db.begin_read().unwrap();
        let meta = tx.open_table(tables::META).unwrap();
        meta.get("schema_version").unwrap().map(|v| v.value())
    }

    fn set_layout(path: &Path, version: u64) {
        let db = Database::open(path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(tables::META)
            .unwrap()
            .insert("schema_version", version)
            .unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn the_writers_remembered_reads_name_the_tables_they_come_from() {
        use redb::TableHandle;
        let routing = [tables::ENDPOINTS.name(), tables::APP_ENDPOINTS.name()];
        assert_eq!(ROUTING_TABLES[..2], routing);
        assert_eq!(ROUTING_TABLES[2], tables::TRIGGERS.name());
        assert_eq!(
            KNOWN_TABLES,
            [tables::APPS.name(), tables::EVENT_TYPES.name()]
        );
    }

    #[test]
    fn an_older_layout_is_upgraded_at_open_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        init_tables(&open_file(&path, 1 << 20).unwrap()).unwrap();
        assert_eq!(layout_of(&path), Some(tables::SCHEMA_VERSION));

        set_layout(&path, tables::SCHEMA_VERSION_OLDEST);
        init_tables(&open_file(&path, 1 << 20).unwrap()).unwrap();
        assert_eq!(layout_of(&path), Some(tables::SCHEMA_VERSION));

        set_layout(&path, tables::SCHEMA_VERSION + 1);
        let refused = init_tables(&open_file(&path, 1 << 20).unwrap()).unwrap_err();
        assert!(refused.to_string().contains("not supported"), "{refused}");
        assert_eq!(layout_of(&path), Some(tables::SCHEMA_VERSION + 1));
    }
}
