//! `herald migrate --from FILE --to postgres://...`: every table of a redb file copied into a
//! PostgreSQL database, secrets and pending deliveries included, so a node started on the
//! database carries on where the file's server stopped.
//!
//! The file is read in one read transaction (`redb/export.rs`: one consistent snapshot, and
//! the file stays locked, so no server starts on it meanwhile) and handed over in chunks of
//! `Row`s, the neutral shape of a PostgreSQL row, which `postgres/import.rs` writes with one
//! multi-row statement per chunk. Reading and writing overlap: the export runs on a blocking
//! thread, a chunk or two ahead of the import.
//!
//! Records are copied as the bytes stored, never re-encoded (both backends store the same
//! bytes); only what a PostgreSQL column holds apart from its record is taken from the key or
//! the record, as `postgres/ops.rs` fills that column. Index tables of the file whose entries
//! are columns there (`app_uids` is `apps.uid`, ...) are checked against their records instead
//! of copied (`Folded`). redb's `meta` (its layout version) is read, not copied: the database
//! has its own schema version.
//!
//! Re-running is safe: every row is inserted `ON CONFLICT (its key) DO NOTHING`, so a second
//! run finds every row there and writes none (no counter is added twice), and a run that
//! stopped half-way is completed. A row that clashes with a different row already in the
//! database on another unique rule (an application uid, an endpoint uid, an eventId) fails
//! the migration rather than being dropped.
//!
//! Must never: write to the file, or print the database URL's password.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Backend, Store, StoreError, StoreSettings, postgres_url};
use crate::model::Priority;

/// Most rows in one chunk (one statement).
pub(crate) const CHUNK_ROWS: usize = 5_000;
/// Most bytes (records and keys, roughly) in one chunk: messages may be large.
pub(crate) const CHUNK_BYTES: usize = 8 << 20;
/// Chunks read ahead of the import: bounds the memory a migration holds.
const CHUNKS_AHEAD: usize = 2;

/// One row of a PostgreSQL table (`postgres/schema_v1.sql`), as read from the file: ids as the
/// numbers they are, records as the bytes stored.
#[derive(Clone, Debug)]
pub(crate) enum Row {
    App {
        id: u128,
        uid: Option<String>,
        rec: Vec<u8>,
    },
    EventType {
        name: String,
        rec: Vec<u8>,
    },
    Endpoint {
        id: u128,
        app_id: u128,
        uid: Option<String>,
        rec: Vec<u8>,
    },
    Trigger {
        app_id: u128,
        id: u128,
        endpoint_id: u128,
        rec: Vec<u8>,
    },
    Message {
        app_id: u128,
        id: u128,
        event_id: Option<String>,
        rec: Vec<u8>,
    },
    Delivery {
        msg: u128,
        n: u16,
        rec: Vec<u8>,
    },
    /// A queue entry of any lane; its lease is left to the column defaults (no node holds it).
    Queue {
        lane: Priority,
        due_ms: u64,
        msg: u128,
        n: u16,
        endpoint: u128,
    },
    Parked {
        endpoint: u128,
        msg: u128,
        n: u16,
    },
    /// `key` as the file holds it: the import escapes it as `unique_keys.key` holds keys.
    UniqueKey {
        endpoint: u128,
        key: String,
        msg: u128,
        n: u16,
    },
    Attempt {
        msg: u128,
        id: u128,
        rec: Vec<u8>,
    },
    EndpointAttempt {
        endpoint: u128,
        attempt: u128,
        msg: u128,
    },
    Alert {
        id: u128,
        rec: Vec<u8>,
    },
    Cursor {
        name: String,
        position: u128,
    },
    Task {
        id: u128,
        app_id: u128,
        running: bool,
        rec: Vec<u8>,
    },
    /// A record keyed by a SHA-256 (tokens, idempotency, sessions, portal links, setup tokens).
    Hashed {
        table: Hashed,
        hash: [u8; 32],
        rec: Vec<u8>,
    },
    User {
        username: String,
        rec: Vec<u8>,
    },
    MessageTimeline {
        msg: u128,
        app_id: u128,
    },
    EndpointDelivery {
        endpoint: u128,
        msg: u128,
        n: u16,
    },
    FailedDelivery {
        msg: u128,
        n: u16,
    },
    Hourly {
        hour: u64,
        counter: u8,
        count: u64,
    },
    Latency {
        hour: u64,
        bucket: u8,
        count: u64,
    },
    EndpointHourly {
        hour: u64,
        endpoint: u128,
        succeeded: u64,
        failed: u64,
        last_failed_msg: u128,
        last_failed_attempt: u128,
    },
    AppDaily {
        day: u64,
        app_id: u128,
        messages: u64,
        failed: u64,
    },
}

/// The tables of records keyed by a SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hashed {
    Tokens,
    Idempotency,
    Sessions,
    PortalLinks,
    SetupTokens,
}

impl Hashed {
    pub(crate) fn table(self) -> &'static str {
        match self {
            Hashed::Tokens => "tokens",
            Hashed::Idempotency => "idempotency",
            Hashed::Sessions => "sessions",
            Hashed::PortalLinks => "portal_links",
            Hashed::SetupTokens => "setup_tokens",
        }
    }
}

/// Every table of the PostgreSQL schema a migration fills, in the order it fills them (the
/// order of the report).
pub const TABLES: [&str; 27] = [
    "apps",
    "event_types",
    "endpoints",
    "triggers",
    "messages",
    "deliveries",
    "queue",
    "parked",
    "unique_keys",
    "attempts",
    "endpoint_attempts",
    "alerts",
    "cursors",
    "tasks",
    "tokens",
    "idempotency",
    "users",
    "sessions",
    "portal_links",
    "setup_tokens",
    "message_timeline",
    "endpoint_deliveries",
    "failed_deliveries",
    "hourly",
    "latency",
    "endpoint_hourly",
    "app_daily",
];

impl Row {
    /// The PostgreSQL table the row goes to.
    pub(crate) fn table(&self) -> &'static str {
        match self {
            Row::App { .. } => "apps",
            Row::EventType { .. } => "event_types",
            Row::Endpoint { .. } => "endpoints",
            Row::Trigger { .. } => "triggers",
            Row::Message { .. } => "messages",
            Row::Delivery { .. } => "deliveries",
            Row::Queue { .. } => "queue",
            Row::Parked { .. } => "parked",
            Row::UniqueKey { .. } => "unique_keys",
            Row::Attempt { .. } => "attempts",
            Row::EndpointAttempt { .. } => "endpoint_attempts",
            Row::Alert { .. } => "alerts",
            Row::Cursor { .. } => "cursors",
            Row::Task { .. } => "tasks",
            Row::Hashed { table, .. } => table.table(),
            Row::User { .. } => "users",
            Row::MessageTimeline { .. } => "message_timeline",
            Row::EndpointDelivery { .. } => "endpoint_deliveries",
            Row::FailedDelivery { .. } => "failed_deliveries",
            Row::Hourly { .. } => "hourly",
            Row::Latency { .. } => "latency",
            Row::EndpointHourly { .. } => "endpoint_hourly",
            Row::AppDaily { .. } => "app_daily",
        }
    }

    /// About the bytes the row takes in a statement: what bounds a chunk.
    pub(crate) fn size(&self) -> usize {
        let variable = match self {
            Row::App { uid, rec, .. } | Row::Endpoint { uid, rec, .. } => {
                rec.len() + uid.as_ref().map_or(0, String::len)
            }
            Row::Message { event_id, rec, .. } => {
                rec.len() + event_id.as_ref().map_or(0, String::len)
            }
            Row::EventType { name, rec }
            | Row::User {
                username: name,
                rec,
            } => name.len() + rec.len(),
            Row::Trigger { rec, .. }
            | Row::Delivery { rec, .. }
            | Row::Attempt { rec, .. }
            | Row::Alert { rec, .. }
            | Row::Task { rec, .. }
            | Row::Hashed { rec, .. } => rec.len(),
            Row::UniqueKey { key, .. } => key.len(),
            Row::Cursor { name, .. } => name.len(),
            _ => 0,
        };
        64 + variable
    }
}

/// An index table of the file whose entries are columns of PostgreSQL rows, not rows of their
/// own: each entry is checked against the record it indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// The file's table.
    pub table: String,
    /// The columns it is, e.g. `apps.uid`.
    pub into: &'static str,
    pub entries: u64,
    /// Entries that do not agree with a record, and records whose field no entry indexes.
    /// The columns follow the records (as `postgres/ops.rs` fills them), so on PostgreSQL a
    /// lookup may find what it did not in the file. 0 in any file Herald wrote.
    pub disagreeing: u64,
}

/// What the export read, besides the rows it handed on.
#[derive(Clone, Debug, Default)]
pub struct Exported {
    /// The file's layout version (`meta`).
    pub layout: u64,
    /// Every table of the file, with its entries read (a table the file does not have yet,
    /// as a layout 1 file has no tasks tables: 0).
    pub tables: Vec<(String, u64)>,
    pub folded: Vec<Folded>,
}

/// Rows of one PostgreSQL table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    /// Rows read from the file.
    pub rows: u64,
    /// Rows the database did not hold yet (a re-run: 0).
    pub new: u64,
}

/// What a migration did.
#[derive(Clone, Debug)]
pub struct MigrateReport {
    pub exported: Exported,
    /// Every table of `TABLES`, in that order.
    pub tables: Vec<TableCount>,
    pub elapsed: Duration,
}

impl MigrateReport {
    /// The count of PostgreSQL table `table`.
    pub fn table(&self, table: &str) -> Option<&TableCount> {
        self.tables.iter().find(|t| t.table == table)
    }

    /// Rows new to the database, all tables together.
    pub fn new_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.new).sum()
    }

    /// Index entries that do not agree with their records, all index tables together.
    pub fn disagreeing(&self) -> u64 {
        self.exported.folded.iter().map(|f| f.disagreeing).sum()
    }
}

impl std::fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "file layout {} (meta is not copied: the database keeps its own schema version)",
            self.exported.layout
        )?;
        writeln!(f, "{:<20} {:>12} {:>12}", "table", "rows", "new")?;
        for t in &self.tables {
            writeln!(f, "{:<20} {:>12} {:>12}", t.table, t.rows, t.new)?;
        }
        let lanes: Vec<String> = self
            .exported
            .tables
            .iter()
            .filter(|(name, _)| name.starts_with("queue_"))
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        writeln!(f, "queue from {}", lanes.join(", "))?;
        for x in &self.exported.folded {
            write!(f, "{} {} kept as {}", x.table, x.entries, x.into)?;
            if x.disagreeing > 0 {
                write!(
                    f,
                    " (WARNING: {} entries or records disagree; the column follows the record)",
                    x.disagreeing
                )?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{} rows new, {} already there, in {:.2} s",
            self.new_rows(),
            self.tables.iter().map(|t| t.rows - t.new).sum::<u64>(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Copies every table of the redb file `from` (which no server may have open) into the
/// PostgreSQL database at `to`, applying its schema first as any node would.
pub async fn migrate(
    from: &Path,
    to: &str,
    settings: &StoreSettings,
) -> Result<MigrateReport, StoreError> {
    if postgres_url(Path::new(to)).is_none() {
        return Err(StoreError::backend(
            "migrate",
            "the destination must be a postgres:// URL",
        ));
    }
    if postgres_url(from).is_some() {
        return Err(StoreError::backend(
            "migrate",
            "the source must be a database file, not a URL",
        ));
    }
    let started = Instant::now();
    // The file first: one in use, or of a layout this build does not read, is refused before
    // the database is touched.
    let source = super::redb::export::Source::open(from, settings.cache_bytes)?;
    let store = Store::open(Path::new(to), settings)?;
    let copied = match &store.backend {
        Backend::Postgres(pg) => copy(source, pg).await,
        Backend::Redb(_) => Err(StoreError::backend("migrate", "not a PostgreSQL database")),
    };
    store.close().await;
    let (exported, counts) = copied?;
    let tables = TABLES
        .iter()
        .map(|&table| {
            let (rows, new) = counts.get(table).copied().unwrap_or_default();
            TableCount { table, rows, new }
        })
        .collect();
    Ok(MigrateReport {
        exported,
        tables,
        elapsed: started.elapsed(),
    })
}

/// Rows read and rows new, by PostgreSQL table.
type Counts = BTreeMap<&'static str, (u64, u64)>;

/// Streams the file's rows into the database: the export on a blocking thread, the import
/// here, a bounded channel between them.
async fn copy(
    source: super::redb::export::Source,
    pg: &super::postgres::Store,
) -> Result<(Exported, Counts), StoreError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Row>>(CHUNKS_AHEAD);
    let reading = tokio::task::spawn_blocking(move || {
        source.export(&mut |rows| {
            // The import stopped (it failed): so does the export.
            tx.blocking_send(rows).map_err(|_| StoreError::Aborted)
        })
    });
    let mut counts = Counts::new();
    let mut failed = None;
    match pg.importer().await {
        Ok(mut importer) => {
            while let Some(rows) = rx.recv().await {
                match importer.write(&rows).await {
                    Ok(new) => {
                        let c = counts.entry(rows[0].table()).or_default();
                        c.0 += rows.len() as u64;
                        c.1 += new;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        Err(e) => failed = Some(e),
    }
    drop(rx);
    let exported = reading
        .await
        .map_err(|e| StoreError::backend("export task failed", e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok((exported?, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_the_postgresql_schema_is_one_a_migration_fills() {
        let schema = include_str!("postgres/schema_v1.sql");
        let mut created: Vec<&str> = schema
            .lines()
            .filter_map(|l| l.trim().strip_prefix("CREATE TABLE "))
            .map(|rest| rest.split([' ', '(']).next().unwrap_or_default())
            .collect();
        let mut filled = TABLES.to_vec();
        created.sort_unstable();
        filled.sort_unstable();
        assert_eq!(
            created, filled,
            "migrate.rs must fill every table of schema_v1.sql"
        );
    }
}
