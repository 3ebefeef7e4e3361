//! A `Txn`: one transaction, as storage's interface sees it, and the few helpers every
//! statement uses (running it, and the column codecs of ids and times).
//!
//! Ids are written as 16 big-endian bytes (`id`), which `bytea` orders as the numbers they are;
//! times and counts as `bigint`; a delivery's number as `integer`. Records are the bytes of
//! `storage/codec.rs` and `storage/rows.rs`, the same as in a redb file.

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::pg_error;
use crate::storage::pages::{SCAN_MAX, plan};
use crate::storage::{Page, PageQuery, StoreError};

/// Parameters of a statement.
pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// One transaction: a read snapshot, or the writer's batch transaction lent to one job.
pub struct Txn<'a> {
    /// This node's name in the claims it holds (`leases.rs`): a read's scan of the queue takes
    /// the entries this node holds, and those no node holds.
    pub(super) node: &'a str,
    tx: TxRef<'a>,
    rt: Blocker<'a>,
    /// The writer's id generator (monotonic, so ids made in the writer follow commit order);
    /// `None` in a read.
    ids: Option<&'a mut ulid::Generator>,
    /// Set by every mutation; tells the writer a failing job wrote something.
    pub(super) dirty: bool,
    /// Set when a statement failed: PostgreSQL then refuses every later statement of the
    /// transaction, and answers its COMMIT by rolling back, so the writer must not go on with
    /// the batch as if only the job had failed.
    broken: std::cell::RefCell<Option<StoreError>>,
    /// The batch's counter increments (writer only), written once per counter by
    /// `flush_counters` before the commit (`ops.rs`).
    pub(super) counters: crate::storage::counters::Deltas,
    /// Endpoints and triggers of the applications this batch routed messages for (writer
    /// only); forgotten whenever a job writes an endpoint or a trigger (`ops.rs`).
    pub(super) routing: super::ops::RoutingCache,
    /// Applications and event types read in this transaction (every message of a batch reads
    /// both, mostly the same few): forgotten by every write to either (`forget_known`).
    pub(super) known: std::cell::RefCell<Known>,
}

/// See `Txn::known`.
#[derive(Default)]
pub(super) struct Known {
    pub(super) apps: std::collections::HashMap<u128, Option<crate::model::App>>,
    pub(super) event_types: std::collections::HashMap<String, Option<crate::model::EventType>>,
}

impl Txn<'_> {
    /// Forgets the applications and event types read so far (their tables are written).
    pub(super) fn forget_known(&mut self) {
        *self.known.get_mut() = Known::default();
    }
}

/// How a `Txn` waits for its statements on a blocking thread.
#[derive(Clone, Copy)]
pub(super) enum Blocker<'a> {
    /// A read's: the connection runs on the server's runtime, whose threads drive its I/O.
    Handle(&'a Handle),
    /// The writer's: the connection runs on the writer thread's own runtime, which only drives
    /// I/O inside its `block_on`.
    Runtime(&'a tokio::runtime::Runtime),
}

impl Blocker<'_> {
    pub(super) fn block_on<F: std::future::Future>(self, f: F) -> F::Output {
        match self {
            Blocker::Handle(h) => h.block_on(f),
            Blocker::Runtime(rt) => rt.block_on(f),
        }
    }
}

/// Prepared statements of one connection, by their text.
pub(super) type Statements = std::cell::RefCell<std::collections::HashMap<String, Statement>>;

/// The transaction a `Txn` runs its statements in, and where its prepared statements are kept.
enum TxRef<'a> {
    /// A read's, on a connection of the pool (whose statement cache is the pool's).
    Pooled(&'a deadpool_postgres::Transaction<'a>),
    /// The writer's, on its own connection.
    Own(&'a tokio_postgres::Transaction<'a>, &'a Statements),
}

impl TxRef<'_> {
    async fn prepare(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        match self {
            TxRef::Pooled(tx) => tx.prepare_cached(sql).await,
            TxRef::Own(tx, cache) => {
                if let Some(st) = cache.borrow().get(sql) {
                    return Ok(st.clone());
                }
                let st = tx.prepare(sql).await?;
                cache.borrow_mut().insert(sql.to_string(), st.clone());
                Ok(st)
            }
        }
    }

    fn client(&self) -> &tokio_postgres::Transaction<'_> {
        match self {
            TxRef::Pooled(tx) => tx,
            TxRef::Own(tx, _) => tx,
        }
    }
}

impl<'a> Txn<'a> {
    pub(super) fn reading(
        tx: &'a deadpool_postgres::Transaction<'a>,
        rt: &'a Handle,
        node: &'a str,
    ) -> Self {
        Txn {
            node,
            tx: TxRef::Pooled(tx),
            rt: Blocker::Handle(rt),
            ids: None,
            dirty: false,
            broken: Default::default(),
            counters: Default::default(),
            routing: Default::default(),
            known: Default::default(),
        }
    }

    pub(super) fn writing(
        tx: &'a tokio_postgres::Transaction<'a>,
        statements: &'a Statements,
        rt: &'a tokio::runtime::Runtime,
        ids: &'a mut ulid::Generator,
    ) -> Self {
        Txn {
            node: "",
            tx: TxRef::Own(tx, statements),
            rt: Blocker::Runtime(rt),
            ids: Some(ids),
            dirty: false,
            broken: Default::default(),
            counters: Default::default(),
            routing: Default::default(),
            known: Default::default(),
        }
    }

    /// The error of the first statement of this transaction that failed, if one did (see
    /// `broken`).
    pub(super) fn broken(&self) -> Option<StoreError> {
        self.broken.borrow().clone()
    }

    /// A driver error, noted as breaking the transaction.
    fn failed(&self, e: tokio_postgres::Error) -> StoreError {
        let e = pg_error(e);
        self.broken.borrow_mut().get_or_insert_with(|| e.clone());
        e
    }

    /// A fresh time-ordered id, strictly greater than every id this node's writer made before.
    pub(super) fn next_id(&mut self) -> u128 {
        match self.ids.as_deref_mut() {
            Some(ids) => ids
                .generate()
                .map(|u| u.0)
                .unwrap_or_else(|_| ulid::Ulid::new().0),
            None => ulid::Ulid::new().0,
        }
    }

    /// Every row `sql` answers (a statement prepared once per connection and cached).
    pub(super) fn rows(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.rt
            .block_on(async {
                let statement = self.tx.prepare(sql).await?;
                self.tx.client().query(&statement, params).await
            })
            .map_err(|e| self.failed(e))
    }

    /// The one row `sql` answers, if any.
    pub(super) fn row(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, StoreError> {
        self.rt
            .block_on(async {
                let statement = self.tx.prepare(sql).await?;
                self.tx.client().query_opt(&statement, params).await
            })
            .map_err(|e| self.failed(e))
    }

    /// Runs a statement that changes rows; answers how many. Marks the job as having written.
    pub(super) fn exec(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        self.dirty = true;
        self.rt
            .block_on(async {
                let statement = self.tx.prepare(sql).await?;
                self.tx.client().execute(&statement, params).await
            })
            .map_err(|e| self.failed(e))
    }
}

impl Txn<'_> {
    /// `exec` for a statement a UNIQUE constraint may refuse: the refusal is `conflict` (another
    /// node inserted the same key since this job looked).
    pub(super) fn exec_unique(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        conflict: crate::storage::Conflict,
    ) -> Result<u64, StoreError> {
        match self.exec(sql, params) {
            Err(StoreError::Backend { cause, .. })
                if cause
                    .downcast_ref::<tokio_postgres::Error>()
                    .and_then(|e| e.code())
                    == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                Err(StoreError::Conflict(conflict))
            }
            other => other,
        }
    }
}

/// Whether a text key can be in a PostgreSQL `text` column, which holds no NUL. One with a NUL
/// was never stored (service validation refuses it in every name, uid and event id, and unique
/// keys are stored escaped), so a lookup of it finds nothing without asking: PostgreSQL would
/// refuse the statement, and that must be a 404, never a 500.
pub(super) fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// An id as its column holds it.
pub(super) fn id(v: u128) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// An id column's value.
pub(super) fn id_of(row: &Row, column: usize) -> Result<u128, StoreError> {
    let bytes: &[u8] = row.try_get(column).map_err(pg_error)?;
    let fixed: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("an id of {} bytes", bytes.len())))?;
    Ok(u128::from_be_bytes(fixed))
}

/// A `bigint` column holding an unsigned count or time.
pub(super) fn u64_of(row: &Row, column: usize) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(column).map_err(pg_error)?;
    Ok(v as u64)
}

/// An unsigned count or time as its `bigint` column holds it (times and counts never reach
/// 2^63).
pub(super) fn big(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A `bytea` column holding a record.
pub(super) fn bytes_of<'r>(row: &'r Row, column: usize) -> Result<&'r [u8], StoreError> {
    row.try_get(column).map_err(pg_error)
}

/// Rows fetched per statement while a page is filled: a filtered page may pass over many.
const PAGE_CHUNK: usize = 256;

impl Txn<'_> {
    /// One page of rows ordered by an id column (the first column of each row): the keyset
    /// pagination of `storage/pages.rs`. `asc` and `desc` are the same query ordered each way,
    /// taking the inclusive id bounds as `$1` and `$2` and a row limit as `$3` (`bigint`),
    /// then `extra` from `$4` on. `keep` answers `None` to filter a row out; at most
    /// `pages::SCAN_MAX` rows are passed over.
    pub(super) fn page<R>(
        &self,
        asc: &str,
        desc: &str,
        extra: &Params<'_>,
        query: &PageQuery,
        mut keep: impl FnMut(&Row) -> Result<Option<R>, StoreError>,
    ) -> Result<Page<R>, StoreError> {
        let Some((mut from, mut to, forward, flip)) = plan(query) else {
            return Ok(Page {
                items: Vec::new(),
                done: true,
            });
        };
        let mut items = Vec::new();
        let mut scanned = 0usize;
        let mut exhausted = false;
        let mut edge = false;
        while items.len() <= query.limit && scanned < SCAN_MAX {
            let chunk = (query.limit + 1 - items.len()).clamp(1, PAGE_CHUNK);
            let (lo, hi, n) = (id(from), id(to), chunk as i64);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lo, &hi, &n];
            params.extend_from_slice(extra);
            let rows = self.rows(if forward { asc } else { desc }, &params)?;
            for row in &rows {
                let key = id_of(row, 0)?;
                if let Some(item) = keep(row)? {
                    items.push(item);
                }
                scanned += 1;
                // Past the last key either way, nothing can follow.
                edge = if forward { key == u128::MAX } else { key == 0 };
                if forward {
                    from = key.saturating_add(1);
                } else {
                    to = key.saturating_sub(1);
                }
                if items.len() > query.limit {
                    break;
                }
            }
            if rows.len() < chunk || from > to || edge {
                exhausted = true;
                break;
            }
        }
        let done = items.len() <= query.limit && exhausted;
        items.truncate(query.limit);
        if flip {
            items.reverse();
        }
        Ok(Page { items, done })
    }
}

/// A priority lane as the `queue.lane` column holds it (0 high, 1 normal, 2 low: the order
/// dispatch takes them in).
pub(super) fn lane(p: crate::model::Priority) -> i16 {
    match p {
        crate::model::Priority::High => 0,
        crate::model::Priority::Normal => 1,
        crate::model::Priority::Low => 2,
    }
}

/// A delivery's number (`n`) as its `integer` column holds it, and back.
pub(super) fn n(v: u16) -> i32 {
    i32::from(v)
}

pub(super) fn n_of(row: &Row, column: usize) -> Result<u16, StoreError> {
    let v: i32 = row.try_get(column).map_err(pg_error)?;
    u16::try_from(v).map_err(|_| StoreError::corrupt(format!("a delivery number {v}")))
}
