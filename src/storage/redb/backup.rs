//! Consistent backups of a live database.
//!
//! A backup copies every table from ONE read transaction into a new redb file, so it is a
//! snapshot of a single instant even while the writer keeps committing; readers never block
//! the writer, so the server keeps serving. The copy is written to `<path>.partial` and renamed
//! into place only when complete and durable.
//!
//! Owns: the list of tables a backup copies (`copy_all`); a test proves it names every table a
//! fresh database has, so a new table cannot be forgotten.

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::tables::*;
use super::{Store, StoreError};

/// Rows copied per write transaction of the new file: bounds the copy's memory.
const COPY_CHUNK_ROWS: usize = 50_000;

/// The new file's page cache: redb's default, which `Database::create` used.
const COPY_CACHE_BYTES: usize = 1024 * 1024 * 1024;

fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst_db: &Database,
    dst: &mut Option<WriteTransaction>,
    def: TableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<u64, StoreError> {
    use redb::TableHandle;
    copied.push(def.name().to_string());
    let table = src.open_table(def)?;
    let mut rows = 0u64;
    let mut iter = table.iter()?;
    loop {
        let tx =
            dst.get_or_insert_with(|| dst_db.begin_write().expect("the new file is ours alone"));
        let mut out = tx.open_table(def)?;
        let mut n = 0;
        for entry in iter.by_ref() {
            let (k, v) = entry?;
            out.insert(k.value(), v.value())?;
            n += 1;
            if n == COPY_CHUNK_ROWS {
                break;
            }
        }
        drop(out);
        rows += n as u64;
        if n < COPY_CHUNK_ROWS {
            return Ok(rows);
        }
        // A full chunk: commit it and go on with a fresh transaction.
        let mut tx = dst.take().expect("set above");
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::backend("durability", e))?;
        tx.commit()?;
    }
}

/// Copies every table; answers the names copied and the number of rows.
fn copy_all(src: &ReadTransaction, dst_db: &Database) -> Result<(Vec<String>, u64), StoreError> {
    let mut dst = None;
    let mut names = Vec::new();
    let mut rows = 0;
    macro_rules! each {
        ($($t:ident),* $(,)?) => {$(
            rows += copy(src, dst_db, &mut dst, $t, &mut names)?;
        )*};
    }
    each!(
        META,
        APPS,
        APP_UIDS,
        EVENT_TYPES,
        ENDPOINTS,
        APP_ENDPOINTS,
        ENDPOINT_UIDS,
        TRIGGERS,
        MESSAGES,
        MESSAGE_EVENT_IDS,
        DELIVERIES,
        QUEUE_HIGH,
        QUEUE_NORMAL,
        QUEUE_LOW,
        PARKED,
        UNIQUE_KEYS,
        ATTEMPTS,
        ENDPOINT_ATTEMPTS,
        ALERTS,
        CURSORS,
        TASKS,
        APP_TASKS,
        TOKENS,
        IDEMPOTENCY,
        USERS,
        SESSIONS,
        PORTAL_LINKS,
        SETUP_TOKENS,
        MESSAGE_TIMELINE,
        ENDPOINT_DELIVERIES,
        FAILED_DELIVERIES,
        HOURLY,
        LATENCY,
        ENDPOINT_HOURLY,
        APP_DAILY,
    );
    let mut tx = match dst.take() {
        Some(tx) => tx,
        None => dst_db.begin_write()?,
    };
    tx.set_durability(redb::Durability::Immediate)
        .map_err(|e| StoreError::backend("durability", e))?;
    tx.commit()?;
    Ok((names, rows))
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
}

impl Store {
    /// Writes a consistent copy of the live database to `path` (which must not exist).
    /// Runs on a blocking thread; the server keeps serving meanwhile.
    pub async fn backup(&self, path: &Path) -> Result<BackupReport, StoreError> {
        let db = self.database()?;
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let src = db.begin_read()?;
            write_backup(&src, &path)
        })
        .await
        .map_err(|e| StoreError::backend("backup task failed", e))?
    }
}

fn write_backup(src: &ReadTransaction, path: &Path) -> Result<BackupReport, StoreError> {
    if path.exists() {
        return Err(StoreError::file("backup", path, "already exists"));
    }
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let _ = std::fs::remove_file(&partial);
    let result = (|| {
        let file = super::open_private(&partial, super::Create::New)
            .map_err(|e| StoreError::file("backup", &partial, e))?;
        let dst = super::database_in(file, COPY_CACHE_BYTES)?;
        let (names, rows) = copy_all(src, &dst)?;
        drop(dst);
        std::fs::rename(&partial, path)
            .map_err(|e| StoreError::file("backup (renaming it into place)", path, e))?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(BackupReport {
            tables: names.len(),
            rows,
            bytes,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreSettings;

    #[tokio::test]
    async fn a_backup_copies_every_table_of_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreSettings::for_tests();
        let store = crate::storage::Store::open(&dir.path().join("live.redb"), &settings).unwrap();
        let db = store.redb().database().unwrap();
        let tx = db.begin_read().unwrap();
        let mut live: Vec<String> = tx
            .list_tables()
            .unwrap()
            .map(|h| redb::TableHandle::name(&h).to_string())
            .collect();
        let target = dir.path().join("copy.redb");
        let partial = Database::create(dir.path().join("names.redb")).unwrap();
        let (mut copied, _) = copy_all(&tx, &partial).unwrap();
        live.sort();
        copied.sort();
        assert_eq!(
            live, copied,
            "backup.rs must copy every table init_tables creates"
        );
        drop(tx);
        drop(db);
        let report = store.backup(&target).await.unwrap();
        assert_eq!(report.tables, copied.len());
        assert!(
            store.backup(&target).await.is_err(),
            "an existing file is never overwritten"
        );
        store.close().await;
        Store::check(&target).unwrap();
    }
}
