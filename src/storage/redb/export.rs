//! The file's side of `herald migrate` (`storage/migrate.rs`): every table walked in ONE read
//! transaction, each entry handed on as the PostgreSQL row it becomes (`migrate::Row`), in
//! chunks.
//!
//! Records go on as the bytes stored. What a PostgreSQL column holds besides its record comes
//! from the key, or from the record as `postgres/ops.rs` fills that column (`apps.uid`,
//! `endpoints.app_id` and `uid`, `triggers.endpoint_id`, `messages.event_id`, `tasks.app_id`
//! and `running`). The index tables those columns replace are walked too, and each entry
//! checked against the record it points at (`migrate::Folded`).
//!
//! Owns: the list of tables a migration reads (`export_tx`); a test proves it names every table
//! a fresh database has, so a new table cannot be forgotten.

use std::path::Path;

use redb::{
    AccessGuard, Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle,
};

use super::codec::decode;
use super::rows::decode_keyed;
use super::tables::*;
use super::{StoreError, ops::lane_table};
use crate::model::*;
use crate::storage::migrate::{CHUNK_BYTES, CHUNK_ROWS, Exported, Folded, Hashed, Row};

/// A database file opened for a migration: locked (no server may start on it meanwhile), its
/// layout version checked.
pub(crate) struct Source {
    db: Database,
    layout: u64,
}

impl Source {
    /// Opens the file at `path`, which must exist and be of a layout this build reads.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Source, StoreError> {
        if !path.exists() {
            return Err(StoreError::file("database", path, "does not exist"));
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .open(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::file(
                    "database",
                    path,
                    "is open in another process: stop the server using it first",
                ),
                e => e.into(),
            })?;
        let layout = layout(&db.begin_read()?)?;
        Ok(Source { db, layout })
    }

    /// Walks every table in one read transaction, handing `each` the rows in chunks (each
    /// chunk rows of one table); stops at the first error `each` answers.
    pub(crate) fn export(
        &self,
        each: &mut dyn FnMut(Vec<Row>) -> Result<(), StoreError>,
    ) -> Result<Exported, StoreError> {
        let tx = self.db.begin_read()?;
        let mut exported = export_tx(&tx, each)?;
        exported.layout = self.layout;
        Ok(exported)
    }
}

/// The layout version `meta` holds, if this build reads it.
fn layout(tx: &ReadTransaction) -> Result<u64, StoreError> {
    let found = match tx.open_table(META) {
        Ok(meta) => meta.get("schema_version")?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    match found {
        Some(v) if (SCHEMA_VERSION_OLDEST..=SCHEMA_VERSION).contains(&v) => Ok(v),
        Some(v) => Err(StoreError::Layout {
            found: v,
            oldest: SCHEMA_VERSION_OLDEST,
            newest: SCHEMA_VERSION,
        }),
        None => Err(StoreError::corrupt(
            "no layout version: not a Herald database file",
        )),
    }
}

/// The walk in progress: the chunk being filled, and what was read.
struct Walk<'e> {
    each: &'e mut dyn FnMut(Vec<Row>) -> Result<(), StoreError>,
    chunk: Vec<Row>,
    bytes: usize,
    exported: Exported,
}

/// A table, or `None` when the file does not have it yet (a layout 1 file has no tasks
/// tables: they are made at the next start).
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match tx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A record of `table` under `key` that does not read.
fn unreadable(table: &str, key: impl std::fmt::Debug, e: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("{table} {key:?}: {e}"))
}

impl Walk<'_> {
    fn push(&mut self, row: Row) -> Result<(), StoreError> {
        self.bytes += row.size();
        self.chunk.push(row);
        if self.chunk.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.bytes = 0;
        if self.chunk.is_empty() {
            return Ok(());
        }
        (self.each)(std::mem::take(&mut self.chunk))
    }

    /// Hands on every entry of `def` as the row `row` makes of it; answers the entries read.
    fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        tx: &ReadTransaction,
        def: TableDefinition<K, V>,
        mut row: impl FnMut(&AccessGuard<'_, K>, &AccessGuard<'_, V>) -> Result<Row, StoreError>,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        if let Some(table) = open(tx, def)? {
            for entry in table.iter()? {
                let (k, v) = entry?;
                self.push(row(&k, &v)?)?;
                n += 1;
            }
        }
        self.flush()?;
        self.exported.tables.push((def.name().to_string(), n));
        Ok(n)
    }

    /// Checks every entry of the index table `def` with `agrees` (whether the record it
    /// points at says the same); `records` is how many records have the indexed field, each
    /// of which one entry must agree with.
    fn fold<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        tx: &ReadTransaction,
        def: TableDefinition<K, V>,
        into: &'static str,
        records: u64,
        mut agrees: impl FnMut(&AccessGuard<'_, K>, &AccessGuard<'_, V>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (mut entries, mut agreeing) = (0u64, 0u64);
        if let Some(table) = open(tx, def)? {
            for entry in table.iter()? {
                let (k, v) = entry?;
                entries += 1;
                agreeing += u64::from(agrees(&k, &v)?);
            }
        }
        // An entry agrees with one record only (its key holds the field that record has), so
        // the records no entry agrees with are those beyond the agreeing entries.
        let disagreeing = (entries - agreeing) + records.saturating_sub(agreeing);
        if disagreeing > 0 {
            tracing::warn!(
                table = def.name(),
                disagreeing,
                "index entries disagree with their records; the PostgreSQL column follows the record"
            );
        }
        self.exported.tables.push((def.name().to_string(), entries));
        self.exported.folded.push(Folded {
            table: def.name().to_string(),
            into,
            entries,
            disagreeing,
        });
        Ok(())
    }
}

/// Records whose field an index table holds, counted while they are copied.
#[derive(Default)]
struct Indexed {
    apps_with_uid: u64,
    endpoints: u64,
    endpoints_with_uid: u64,
    messages_with_event_id: u64,
    tasks: u64,
}

/// Every table of the file, in one read transaction.
fn export_tx(
    tx: &ReadTransaction,
    each: &mut dyn FnMut(Vec<Row>) -> Result<(), StoreError>,
) -> Result<Exported, StoreError> {
    let mut w = Walk {
        each,
        chunk: Vec::new(),
        bytes: 0,
        exported: Exported::default(),
    };
    // Read for its version (`Source::open`), not copied.
    let meta = open(tx, META)?.map_or(Ok(0), |t| redb::ReadableTableMetadata::len(&t))?;
    w.exported.tables.push((META.name().to_string(), meta));

    let mut ix = Indexed::default();
    w.copy(tx, APPS, |k, v| {
        let app: App = decode(v.value()).map_err(|e| unreadable("apps", k.value(), e))?;
        ix.apps_with_uid += u64::from(app.uid.is_some());
        Ok(Row::App {
            id: k.value(),
            uid: app.uid,
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, EVENT_TYPES, |k, v| {
        Ok(Row::EventType {
            name: k.value().to_string(),
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, ENDPOINTS, |k, v| {
        let ep: Endpoint = decode(v.value()).map_err(|e| unreadable("endpoints", k.value(), e))?;
        ix.endpoints += 1;
        ix.endpoints_with_uid += u64::from(ep.uid.is_some());
        Ok(Row::Endpoint {
            id: k.value(),
            app_id: ep.app_id.0,
            uid: ep.uid,
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, TRIGGERS, |k, v| {
        let (app_id, id) = k.value();
        let t: Trigger = decode(v.value()).map_err(|e| unreadable("triggers", (app_id, id), e))?;
        Ok(Row::Trigger {
            app_id,
            id,
            endpoint_id: t.endpoint_id.0,
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, MESSAGES, |k, v| {
        let (app_id, id) = k.value();
        let m: Message =
            decode_keyed((app_id, id), v.value()).map_err(|e| unreadable("messages", id, e))?;
        ix.messages_with_event_id += u64::from(m.event_id.is_some());
        Ok(Row::Message {
            app_id,
            id,
            event_id: m.event_id,
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, DELIVERIES, |k, v| {
        let (msg, n) = k.value();
        Ok(Row::Delivery {
            msg,
            n,
            rec: v.value().to_vec(),
        })
    })?;
    for lane in Priority::ALL {
        w.copy(tx, lane_table(lane), |k, v| {
            let (due_ms, msg, n) = k.value();
            Ok(Row::Queue {
                lane,
                due_ms,
                msg,
                n,
                endpoint: v.value(),
            })
        })?;
    }
    w.copy(tx, PARKED, |k, _| {
        let (endpoint, msg, n) = k.value();
        Ok(Row::Parked { endpoint, msg, n })
    })?;
    w.copy(tx, UNIQUE_KEYS, |k, v| {
        let (endpoint, key) = k.value();
        let (msg, n) = v.value();
        Ok(Row::UniqueKey {
            endpoint,
            key: key.to_string(),
            msg,
            n,
        })
    })?;
    w.copy(tx, ATTEMPTS, |k, v| {
        let (msg, id) = k.value();
        Ok(Row::Attempt {
            msg,
            id,
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, ENDPOINT_ATTEMPTS, |k, v| {
        let (endpoint, attempt) = k.value();
        Ok(Row::EndpointAttempt {
            endpoint,
            attempt,
            msg: v.value(),
        })
    })?;
    w.copy(tx, ALERTS, |k, v| {
        Ok(Row::Alert {
            id: k.value(),
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, CURSORS, |k, v| {
        Ok(Row::Cursor {
            name: k.value().to_string(),
            position: v.value(),
        })
    })?;
    w.copy(tx, TASKS, |k, v| {
        let t: BackgroundTask = decode(v.value()).map_err(|e| unreadable("tasks", k.value(), e))?;
        ix.tasks += 1;
        Ok(Row::Task {
            id: k.value(),
            app_id: t.app_id.0,
            running: t.status == TaskStatus::Running,
            rec: v.value().to_vec(),
        })
    })?;
    for (def, table) in [
        (TOKENS, Hashed::Tokens),
        (IDEMPOTENCY, Hashed::Idempotency),
        (SESSIONS, Hashed::Sessions),
        (PORTAL_LINKS, Hashed::PortalLinks),
        (SETUP_TOKENS, Hashed::SetupTokens),
    ] {
        w.copy(tx, def, |k, v| {
            Ok(Row::Hashed {
                table,
                hash: *k.value(),
                rec: v.value().to_vec(),
            })
        })?;
    }
    w.copy(tx, USERS, |k, v| {
        Ok(Row::User {
            username: k.value().to_string(),
            rec: v.value().to_vec(),
        })
    })?;
    w.copy(tx, MESSAGE_TIMELINE, |k, v| {
        Ok(Row::MessageTimeline {
            msg: k.value(),
            app_id: v.value(),
        })
    })?;
    w.copy(tx, ENDPOINT_DELIVERIES, |k, v| {
        let (endpoint, msg) = k.value();
        Ok(Row::EndpointDelivery {
            endpoint,
            msg,
            n: v.value(),
        })
    })?;
    w.copy(tx, FAILED_DELIVERIES, |k, _| {
        let (msg, n) = k.value();
        Ok(Row::FailedDelivery { msg, n })
    })?;
    w.copy(tx, HOURLY, |k, v| {
        let (hour, counter) = k.value();
        Ok(Row::Hourly {
            hour,
            counter,
            count: v.value(),
        })
    })?;
    w.copy(tx, LATENCY, |k, v| {
        let (hour, bucket) = k.value();
        Ok(Row::Latency {
            hour,
            bucket,
            count: v.value(),
        })
    })?;
    w.copy(tx, ENDPOINT_HOURLY, |k, v| {
        let (hour, endpoint) = k.value();
        let (succeeded, failed, last_failed_msg, last_failed_attempt) = v.value();
        Ok(Row::EndpointHourly {
            hour,
            endpoint,
            succeeded,
            failed,
            last_failed_msg,
            last_failed_attempt,
        })
    })?;
    w.copy(tx, APP_DAILY, |k, v| {
        let (day, app_id) = k.value();
        let (messages, failed) = v.value();
        Ok(Row::AppDaily {
            day,
            app_id,
            messages,
            failed,
        })
    })?;

    // The index tables that are columns on PostgreSQL: checked, not copied.
    let apps = open(tx, APPS)?;
    let endpoints = open(tx, ENDPOINTS)?;
    let messages = open(tx, MESSAGES)?;
    let tasks = open(tx, TASKS)?;
    let endpoint = |id: u128| -> Result<Option<Endpoint>, StoreError> {
        let Some(t) = &endpoints else { return Ok(None) };
        let Some(v) = t.get(id)? else { return Ok(None) };
        Ok(Some(
            decode(v.value()).map_err(|e| unreadable("endpoints", id, e))?,
        ))
    };
    w.fold(tx, APP_UIDS, "apps.uid", ix.apps_with_uid, |k, v| {
        let Some(t) = &apps else { return Ok(false) };
        let Some(rec) = t.get(v.value())? else {
            return Ok(false);
        };
        let app: App = decode(rec.value()).map_err(|e| unreadable("apps", v.value(), e))?;
        Ok(app.uid.as_deref() == Some(k.value()))
    })?;
    w.fold(
        tx,
        APP_ENDPOINTS,
        "endpoints.app_id",
        ix.endpoints,
        |k, _| {
            let (app, id) = k.value();
            Ok(endpoint(id)?.is_some_and(|ep| ep.app_id.0 == app))
        },
    )?;
    w.fold(
        tx,
        ENDPOINT_UIDS,
        "endpoints.uid",
        ix.endpoints_with_uid,
        |k, v| {
            let (app, uid) = k.value();
            Ok(endpoint(v.value())?
                .is_some_and(|ep| ep.app_id.0 == app && ep.uid.as_deref() == Some(uid)))
        },
    )?;
    w.fold(
        tx,
        MESSAGE_EVENT_IDS,
        "messages.event_id",
        ix.messages_with_event_id,
        |k, v| {
            let (app, event_id) = k.value();
            let Some(t) = &messages else { return Ok(false) };
            let Some(rec) = t.get((app, v.value()))? else {
                return Ok(false);
            };
            let m: Message = decode_keyed((app, v.value()), rec.value())
                .map_err(|e| unreadable("messages", v.value(), e))?;
            Ok(m.event_id.as_deref() == Some(event_id))
        },
    )?;
    w.fold(
        tx,
        APP_TASKS,
        "tasks.app_id, tasks.running",
        ix.tasks,
        |k, v| {
            let (app, id) = k.value();
            let Some(t) = &tasks else { return Ok(false) };
            let Some(rec) = t.get(id)? else {
                return Ok(false);
            };
            let task: BackgroundTask =
                decode(rec.value()).map_err(|e| unreadable("tasks", id, e))?;
            Ok(task.app_id.0 == app && (task.status == TaskStatus::Running) == v.value())
        },
    )?;
    Ok(w.exported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreSettings;

    #[tokio::test]
    async fn a_migration_reads_every_table_of_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.redb");
        let store = crate::storage::Store::open(&path, &StoreSettings::for_tests()).unwrap();
        store.close().await;
        let source = Source::open(&path, 1 << 20).unwrap();
        let mut rows = 0;
        let exported = source
            .export(&mut |chunk| {
                rows += chunk.len();
                Ok(())
            })
            .unwrap();
        assert_eq!(exported.layout, SCHEMA_VERSION);
        let tx = source.db.begin_read().unwrap();
        let mut live: Vec<String> = tx
            .list_tables()
            .unwrap()
            .map(|h| h.name().to_string())
            .collect();
        let mut read: Vec<String> = exported.tables.iter().map(|t| t.0.clone()).collect();
        live.sort();
        read.sort();
        assert_eq!(
            live, read,
            "export.rs must read every table init_tables creates"
        );
        // A fresh file holds its layout version and nothing else.
        assert_eq!(rows, 0);
        assert!(exported.folded.iter().all(|f| f.disagreeing == 0));
    }

    #[tokio::test]
    async fn a_file_in_use_or_of_a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.redb");
        let store = crate::storage::Store::open(&path, &StoreSettings::for_tests()).unwrap();
        let in_use = Source::open(&path, 1 << 20)
            .err()
            .expect("refused while open");
        assert!(in_use.to_string().contains("stop the server"), "{in_use}");
        store.close().await;
        {
            let db = Database::open(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", SCHEMA_VERSION + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let newer = Source::open(&path, 1 << 20).err().expect("refused");
        assert!(matches!(newer, StoreError::Layout { .. }), "{newer}");
        assert!(Source::open(&dir.path().join("none.redb"), 1 << 20).is_err());
    }
}
