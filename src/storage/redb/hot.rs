//! The writer's transaction, with the tables every message and attempt writes kept open for
//! the whole batch.
//!
//! Opening a redb table looks it up in the table tree and checks its key and value types, and
//! closing it stages its new root: the profile of a burst showed a quarter of the writer
//! thread's CPU in those two, because each job opened each table it wrote afresh (an ingest
//! ~5 tables, an attempt ~5). `WriteTx` keeps one handle per hot table (see `Slot`) from its
//! first use until the batch ends, and every other way of opening a table goes through
//! `WriteTx::open_table`, which first closes the cached handle of that table: redb allows one
//! open handle per table, and this keeps that true without the callers knowing.
//!
//! Must never: keep a handle past the batch (the handles drop with the `Writer`, before the
//! commit), or lend a cached handle to code that could open another table meanwhile (`with`
//! takes a closure over the one table).

use std::cell::RefCell;

use redb::{Key, Table, TableDefinition, TableHandle, Value, WriteTransaction};

use super::{StoreError, Tx};

type Handles<'a, K, V> = Vec<(String, Table<'a, K, V>)>;

/// The open handles, one list per key and value type of the hot tables.
#[derive(Default)]
pub struct HotTables<'a> {
    /// messages, attempts
    records_by_pair: Handles<'a, (u128, u128), &'static [u8]>,
    /// deliveries
    records_by_delivery: Handles<'a, (u128, u16), &'static [u8]>,
    /// the three queue lanes
    lanes: Handles<'a, (u64, u128, u16), u128>,
    /// endpoint_attempts
    ids_by_pair: Handles<'a, (u128, u128), u128>,
    /// message_timeline
    ids_by_id: Handles<'a, u128, u128>,
    /// endpoint_deliveries
    numbers_by_pair: Handles<'a, (u128, u128), u16>,
}

impl HotTables<'_> {
    /// Closes the cached handle of the table `name`, if there is one.
    fn close(&mut self, name: &str) {
        fn drop_named<K: Key + 'static, V: Value + 'static>(
            list: &mut Handles<'_, K, V>,
            name: &str,
        ) {
            list.retain(|(n, _)| *n != name);
        }
        drop_named(&mut self.records_by_pair, name);
        drop_named(&mut self.records_by_delivery, name);
        drop_named(&mut self.lanes, name);
        drop_named(&mut self.ids_by_pair, name);
        drop_named(&mut self.ids_by_id, name);
        drop_named(&mut self.numbers_by_pair, name);
    }
}

/// A key and value type whose tables may be kept open: where their handles are kept.
pub trait Slot<'a>: Sized {
    type K: Key + 'static;
    type V: Value + 'static;
    fn handles<'h>(hot: &'h mut HotTables<'a>) -> &'h mut Handles<'a, Self::K, Self::V>;
}

macro_rules! slot {
    ($k:ty, $v:ty, $field:ident) => {
        impl<'a> Slot<'a> for ($k, $v) {
            type K = $k;
            type V = $v;
            fn handles<'h>(hot: &'h mut HotTables<'a>) -> &'h mut Handles<'a, $k, $v> {
                &mut hot.$field
            }
        }
    };
}

slot!((u128, u128), &'static [u8], records_by_pair);
slot!((u128, u16), &'static [u8], records_by_delivery);
slot!((u64, u128, u16), u128, lanes);
slot!((u128, u128), u128, ids_by_pair);
slot!(u128, u128, ids_by_id);
slot!((u128, u128), u16, numbers_by_pair);

/// The batch's write transaction and its open hot tables.
pub struct WriteTx<'a> {
    tx: &'a WriteTransaction,
    hot: RefCell<HotTables<'a>>,
}

impl<'a> WriteTx<'a> {
    pub fn new(tx: &'a WriteTransaction) -> WriteTx<'a> {
        WriteTx {
            tx,
            hot: RefCell::default(),
        }
    }

    /// Opens a table afresh (closed again when the handle drops), first closing the batch's
    /// cached handle of it.
    pub fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<Table<'a, K, V>, redb::TableError> {
        self.hot.borrow_mut().close(def.name());
        self.tx.open_table(def)
    }

    /// Runs `f` over the batch's open handle of a hot table, opening it on first use.
    pub fn with<K, V, R>(
        &self,
        def: TableDefinition<K, V>,
        f: impl FnOnce(&mut Table<'a, K, V>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>
    where
        K: Key + 'static,
        V: Value + 'static,
        (K, V): Slot<'a, K = K, V = V>,
    {
        let mut hot = self.hot.borrow_mut();
        let handles = <(K, V) as Slot<'a>>::handles(&mut hot);
        let at = match handles.iter().position(|(n, _)| *n == def.name()) {
            Some(at) => at,
            None => {
                handles.push((def.name().to_string(), self.tx.open_table(def)?));
                handles.len() - 1
            }
        };
        f(&mut handles[at].1)
    }
}

impl<'a> Tx for WriteTx<'a> {
    type Table<'t, K: Key + 'static, V: Value + 'static>
        = Table<'a, K, V>
    where
        Self: 't;
    fn table<'t, K: Key + 'static, V: Value + 'static>(
        &'t self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'t, K, V>, StoreError> {
        Ok(self.open_table(def)?)
    }
}
