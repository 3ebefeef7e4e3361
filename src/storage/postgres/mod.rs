//! The PostgreSQL backend (`--db postgres://...`): the only code that writes SQL. Several
//! Herald nodes may share one database; it is their only shared state and their only
//! coordinator.
//!
//! Reads run a closure over a `Txn` in one `REPEATABLE READ READ ONLY` transaction (a
//! consistent snapshot, as a redb read transaction is) on a blocking thread, with a connection
//! from the pool. Writes go to this node's one writer thread (`writer.rs`), which runs a batch
//! of waiting jobs in one transaction and commits once: group commit, as on redb. The typed
//! reads are in `reads.rs`, the mutations in `ops.rs`, the snapshot-only reads in
//! `snapshot.rs`, each the same operation as the redb backend's method of the same name over
//! the same table shapes (`schema_v1.sql`).
//!
//! The async driver is driven from those blocking threads with `Handle::block_on`: storage's
//! closures are synchronous (they run inside a transaction that must not be held across an
//! `.await` of the caller's), and the connection's I/O stays on the runtime.
//!
//! Must never: hold a transaction across an `.await` of a caller, make a rule about what may be
//! stored (that is `service/`), let a driver type escape `storage`, or put the database URL's
//! password in a log line or an error.

mod check;
mod import;
mod leases;
mod ops;
mod reads;
mod schema;
mod session;
mod snapshot;
mod writer;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::jobs::{Msg, WriterStats};
use super::{StoreError, StoreSettings};
pub(super) use session::Txn;

/// How long a read waits for a connection of the pool before it answers `Unreachable`.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    rt: Handle,
    /// This node's name in its claims on deliveries (`leases.rs`), unique per process start.
    node: Arc<str>,
}

impl Store {
    /// Connects to the database at `url`, applies the schema's migrations (one node at a time),
    /// and starts the writer thread, which takes its jobs from `rx`. Must be called inside the
    /// runtime (the pool's connections run on it).
    pub(crate) fn open(
        url: &str,
        settings: &StoreSettings,
        rx: mpsc::Receiver<Msg>,
        stats: Arc<WriterStats>,
    ) -> Result<Store, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::backend("URL", format!("{}: {e}", crate::config::redact_url(url)))
        })?;
        let rt = Handle::try_current().map_err(|e| StoreError::backend("runtime", e))?;
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_max.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::backend("pool", e))?;
        // Migrations run on a thread and a connection of their own: `open` may be called on a
        // runtime thread, which must not block on the runtime it would be blocking.
        std::thread::scope(|s| {
            s.spawn(|| -> Result<(), StoreError> {
                let once = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::backend("runtime", e))?;
                once.block_on(async {
                    let mut client = connect(&config).await?;
                    schema::migrate(&mut client).await
                })
            })
            .join()
            .unwrap_or(Err(StoreError::Panicked))
        })?;
        writer::spawn(
            config,
            rx,
            settings.writer_batch_max,
            stats,
            settings.metrics.clone(),
        )
        .map_err(|e| StoreError::backend("writer thread did not start", e))?;
        let node = format!("{}-{}", std::process::id(), ulid::Ulid::new()).into();
        let store = Store { pool, rt, node };
        Ok(store)
    }

    /// Runs `f` in one read-only snapshot transaction on a blocking thread.
    pub async fn read_as<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&crate::storage::Reader) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.snapshot(move |txn| f(txn)).await
    }

    /// Verifies the database while nodes may serve on it: every record decodes, every queue
    /// entry points at its pending delivery. Answers a short report, or the first problem.
    pub async fn check(&self) -> Result<String, StoreError> {
        self.snapshot(|txn| check::check(txn, schema::newest()))
            .await
    }

    /// Runs `f` over one `REPEATABLE READ READ ONLY` transaction, on a blocking thread with a
    /// connection of the pool.
    async fn snapshot<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Txn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let rt = self.rt.clone();
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let tx = rt
                .block_on(
                    client
                        .build_transaction()
                        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start(),
                )
                .map_err(pg_error)?;
            let answer = f(&Txn::reading(&tx, &rt, &node));
            // Nothing was written: ending it only hands the connection back clean, and a
            // failure to (the connection dropped after the last row) must not cost the answer.
            if let Err(e) = rt.block_on(tx.rollback()) {
                tracing::debug!(error = %e, "a read transaction did not end cleanly");
            }
            answer
        })
        .await
        .map_err(|e| StoreError::backend("read task failed", e))?
    }

    /// Lets go of every connection. The writer has stopped by now (`jobs::stop`).
    pub async fn close(&self) {
        self.pool.close();
    }
}

/// A connection of its own (not the pool's), driven by the runtime it is made on.
async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(pg_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
    Ok(client)
}

/// A driver error as storage tells it: a lost or refused connection is `Unreachable` (the same
/// call may succeed once the database is back); anything else is the backend failing the
/// statement.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        return StoreError::Unreachable(Arc::new(e));
    }
    let admin_shutdown = e
        .code()
        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
    if admin_shutdown {
        // Connection exceptions (08xxx) and operator intervention (57Pxx: the server is
        // shutting down or restarting).
        return StoreError::Unreachable(Arc::new(e));
    }
    StoreError::backend("statement", e)
}

/// A connection that could not be had from the pool.
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        e => StoreError::Unreachable(Arc::new(e)),
    }
}
