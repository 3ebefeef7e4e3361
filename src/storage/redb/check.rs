//! `herald check`: open a database file and prove every record decodes and every queue entry
//! belongs to a pending delivery; count the strays a crash between two commits can leave
//! (deliveries parked on a ready endpoint, deliveries pending for a deleted one).
//!
//! Also the bounded searches for those strays that the repair pass (`ops/repair.rs`) mends
//! with: `Reader::stray_parked`, `Reader::stray_queued`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::codec::{CodecError, Record, decode};
use super::rows::{KeyedRecord, decode_keyed};
use super::tables::*;
use super::{Reader, Store, StoreError, TxRead};
use crate::model::*;

/// Decodes every value of a table with `decode` (given the entry's key and value bytes) and
/// adds the table's count to the report.
fn decode_table<K: redb::Key + 'static>(
    tx: &redb::ReadTransaction,
    def: TableDefinition<K, &[u8]>,
    report: &mut String,
    decode: impl Fn(&redb::AccessGuard<'_, K>, &[u8]) -> Result<(), CodecError>,
) -> Result<u64, StoreError> {
    // A table added after the file was written (the tasks tables, to a layout 1 file) is made
    // at the next start; until then it holds nothing.
    let table = match tx.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            let _ = writeln!(report, "{:<18} 0", def.name());
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let mut n = 0;
    for entry in table.iter()? {
        let (k, v) = entry?;
        decode(&k, v.value()).map_err(|e| StoreError::corrupt(format!("{}: {e}", def.name())))?;
        n += 1;
    }
    let _ = writeln!(report, "{:<18} {n}", def.name());
    Ok(n)
}

fn decode_all<K: redb::Key + 'static, T: Record>(
    tx: &redb::ReadTransaction,
    def: TableDefinition<K, &[u8]>,
    report: &mut String,
) -> Result<u64, StoreError> {
    decode_table(tx, def, report, |_, v| decode::<T>(v).map(drop))
}

/// `decode_all` for a record stored without its key's fields.
fn decode_all_keyed<K, T>(
    tx: &redb::ReadTransaction,
    def: TableDefinition<K, &[u8]>,
    report: &mut String,
) -> Result<u64, StoreError>
where
    K: redb::Key + 'static + for<'k> redb::Value<SelfType<'k> = K>,
    T: KeyedRecord<Key = K> + serde::de::DeserializeOwned,
{
    decode_table(tx, def, report, |k, v| {
        decode_keyed::<T>(k.value(), v).map(drop)
    })
}

impl Store {
    /// Verifies a database that no server has open. Answers a short report, or the first
    /// problem found.
    pub fn check(path: &Path) -> Result<String, StoreError> {
        if !path.exists() {
            return Err(StoreError::file("database", path, "does not exist"));
        }
        let db = Database::open(path)?;
        let tx = db.begin_read()?;
        let version = tx
            .open_table(META)?
            .get("schema_version")?
            .map(|v| v.value());
        if !version.is_some_and(|v| (SCHEMA_VERSION_OLDEST..=SCHEMA_VERSION).contains(&v)) {
            return Err(StoreError::corrupt(format!(
                "layout version {version:?}, expected {SCHEMA_VERSION_OLDEST} to {SCHEMA_VERSION}"
            )));
        }
        let mut report = format!("{:<18} {}\n", "layout", version.unwrap_or(0));
        decode_all::<u128, App>(&tx, APPS, &mut report)?;
        decode_all::<&str, EventType>(&tx, EVENT_TYPES, &mut report)?;
        decode_all::<u128, Endpoint>(&tx, ENDPOINTS, &mut report)?;
        decode_all::<(u128, u128), Trigger>(&tx, TRIGGERS, &mut report)?;
        decode_all_keyed::<(u128, u128), Message>(&tx, MESSAGES, &mut report)?;
        decode_all_keyed::<(u128, u16), Delivery>(&tx, DELIVERIES, &mut report)?;
        decode_all_keyed::<(u128, u128), Attempt>(&tx, ATTEMPTS, &mut report)?;
        decode_all::<u128, Alert>(&tx, ALERTS, &mut report)?;
        decode_all::<u128, BackgroundTask>(&tx, TASKS, &mut report)?;
        decode_all::<&[u8; 32], Token>(&tx, TOKENS, &mut report)?;
        decode_all::<&str, User>(&tx, USERS, &mut report)?;
        decode_all::<&[u8; 32], Session>(&tx, SESSIONS, &mut report)?;
        decode_all::<&[u8; 32], PortalLink>(&tx, PORTAL_LINKS, &mut report)?;
        decode_all::<&[u8; 32], SetupToken>(&tx, SETUP_TOKENS, &mut report)?;
        decode_all::<&[u8; 32], super::codec::IdempotentResponse>(&tx, IDEMPOTENCY, &mut report)?;
        // Every queue entry must point at a pending delivery due at that time.
        let deliveries = tx.open_table(DELIVERIES)?;
        let mut queued = 0u64;
        for lane in Priority::ALL {
            let table = tx.open_table(super::ops::lane_table(lane))?;
            for entry in table.iter()? {
                let (due, msg, n) = entry?.0.value();
                let d: Delivery = match deliveries.get((msg, n))? {
                    Some(v) => decode_keyed((msg, n), v.value())?,
                    None => {
                        return Err(StoreError::corrupt(format!(
                            "queue entry for missing delivery {msg}/{n}"
                        )));
                    }
                };
                if d.state != DeliveryState::Pending || d.due_ms != Some(due) || d.priority != lane
                {
                    return Err(StoreError::corrupt(format!(
                        "queue entry disagrees with delivery {}",
                        d.id
                    )));
                }
                queued += 1;
            }
        }
        let _ = writeln!(report, "{:<18} {queued}", "queued");
        let strays = count_strays(&Reader {
            tx: db.begin_read()?,
        })?;
        let _ = writeln!(
            report,
            "to mend: parked on ready endpoints: {}, pending for deleted endpoints: {}{}",
            strays.parked_on_ready,
            strays.pending_for_deleted,
            if strays == Strays::default() {
                ""
            } else {
                " (a crash between two commits leaves these; the next start mends them)"
            }
        );
        space(&db, &tx, path, &mut report)?;
        report.push_str("ok");
        Ok(report)
    }
}

/// Where the file's bytes go, table by table: what an operator reads to see why a file is the
/// size it is (and what the benchmark's bytes-per-message figure is made of).
fn space(
    db: &Database,
    tx: &redb::ReadTransaction,
    path: &Path,
    report: &mut String,
) -> Result<(), StoreError> {
    use redb::ReadableTableMetadata;
    // Whole-file figures come from a write transaction (redb keeps them there); it is
    // dropped without committing, so checking writes nothing.
    let db_stats = db.begin_write()?.stats()?;
    let page = db_stats.page_size() as u64;
    let _ = writeln!(
        report,
        "\n{:<20} {:>10} {:>12} {:>12} {:>12}",
        "table", "entries", "pages KiB", "stored KiB", "unused KiB"
    );
    let mut rows = Vec::new();
    for handle in tx.list_tables()? {
        let table = tx.open_untyped_table(handle.clone())?;
        let stats = table.stats()?;
        let pages = (stats.leaf_pages() + stats.branch_pages()) * page;
        rows.push((pages, handle.name().to_string(), table.len()?, stats));
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    for (pages, name, len, stats) in rows {
        let _ = writeln!(
            report,
            "{name:<20} {len:>10} {:>12} {:>12} {:>12}",
            pages / 1024,
            stats.stored_bytes() / 1024,
            stats.fragmented_bytes() / 1024
        );
    }
    let _ = writeln!(
        report,
        "allocated {} KiB of pages, {} KiB stored",
        db_stats.allocated_pages() * page / 1024,
        db_stats.stored_bytes() / 1024
    );
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = writeln!(report, "file {} KiB", meta.len() / 1024);
    }
    Ok(())
}

/// What a crash between an endpoint's change and the jobs that follow it can leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strays {
    /// Deliveries parked under an endpoint that is enabled and verified: nothing would ever
    /// queue them.
    pub parked_on_ready: u64,
    /// Deliveries pending (parked or queued) for an endpoint that no longer exists (it, or its
    /// application, was deleted): nothing cancels the parked ones, and the queued ones only
    /// when due, so retention keeps their messages meanwhile.
    pub pending_for_deleted: u64,
}

/// How the deliveries parked under one endpoint are mended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mend {
    /// The endpoint is ready: queue them.
    Release,
    /// The endpoint is gone: cancel them.
    Cancel,
}

/// Endpoints whose parked deliveries must be mended, and the endpoint to search on from.
pub type StrayParked = (Vec<(EndpointId, Mend)>, Option<EndpointId>);

/// Where a search of the queue lanes goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCursor {
    /// The lane (index into `Priority::ALL`) the search is in.
    pub(crate) lane: usize,
    /// The first key (due ms, message id, n) of `lane` not yet looked at.
    pub(crate) from: (u64, u128, u16),
}

/// An endpoint's state as the strays depend on it, remembered per search.
fn endpoint_mend(
    r: &impl TxRead,
    known: &mut HashMap<u128, Option<Mend>>,
    id: u128,
) -> Result<Option<Mend>, StoreError> {
    if let Some(m) = known.get(&id) {
        return Ok(*m);
    }
    let mend = match r.endpoint(EndpointId(id))? {
        None => Some(Mend::Cancel),
        Some(ep) if ep.ready() => Some(Mend::Release),
        Some(_) => None,
    };
    known.insert(id, mend);
    Ok(mend)
}

impl Reader {
    /// The endpoints, from `from` on and at most `endpoints_max` of those holding parked
    /// deliveries, whose parked deliveries must be mended, and the endpoint to go on from
    /// (`None`: none are left). One lookup per endpoint, however many it holds.
    pub fn stray_parked(
        &self,
        from: Option<EndpointId>,
        endpoints_max: usize,
    ) -> Result<StrayParked, StoreError> {
        let t = self.tx.open_table(PARKED)?;
        let mut known = HashMap::new();
        let mut found = Vec::new();
        let mut next = from.map_or(0, |e| e.0);
        for _ in 0..endpoints_max {
            let Some(entry) = t.range((next, 0, 0)..)?.next() else {
                return Ok((found, None));
            };
            let (endpoint, _, _) = entry?.0.value();
            if let Some(mend) = endpoint_mend(self, &mut known, endpoint)? {
                found.push((EndpointId(endpoint), mend));
            }
            match endpoint.checked_add(1) {
                Some(n) => next = n,
                None => return Ok((found, None)),
            }
        }
        Ok((found, Some(EndpointId(next))))
    }

    /// The queued deliveries whose endpoint is gone, among at most `entries_max` queue entries
    /// from `from` on (every lane in turn), and where to go on (`None`: the lanes are done).
    pub fn stray_queued(
        &self,
        from: QueueCursor,
        entries_max: usize,
    ) -> Result<(Vec<DeliveryId>, Option<QueueCursor>), StoreError> {
        let mut known = HashMap::new();
        let mut found = Vec::new();
        let mut seen = 0;
        let mut at = from;
        while at.lane < Priority::ALL.len() {
            let t = self
                .tx
                .open_table(super::ops::lane_table(Priority::ALL[at.lane]))?;
            for entry in t.range(at.from..)? {
                if seen >= entries_max {
                    return Ok((found, Some(at)));
                }
                let (key, endpoint) = entry?;
                let (due, msg, n) = key.value();
                seen += 1;
                if endpoint_mend(self, &mut known, endpoint.value())? == Some(Mend::Cancel) {
                    found.push(DeliveryId {
                        msg: MessageId(msg),
                        n,
                    });
                }
                at.from = match n.checked_add(1) {
                    Some(n) => (due, msg, n),
                    None => (due, msg.saturating_add(1), 0),
                };
            }
            at = QueueCursor {
                lane: at.lane + 1,
                from: (0, 0, 0),
            };
        }
        Ok((found, None))
    }
}

/// Every stray in the file (for `herald check`, which reads it all anyway).
fn count_strays(r: &Reader) -> Result<Strays, StoreError> {
    let mut strays = Strays::default();
    let mut known = HashMap::new();
    for entry in r.tx.open_table(PARKED)?.iter()? {
        let (endpoint, _, _) = entry?.0.value();
        match endpoint_mend(r, &mut known, endpoint)? {
            Some(Mend::Release) => strays.parked_on_ready += 1,
            Some(Mend::Cancel) => strays.pending_for_deleted += 1,
            None => {}
        }
    }
    let (queued, _) = r.stray_queued(QueueCursor::default(), usize::MAX)?;
    strays.pending_for_deleted += queued.len() as u64;
    Ok(strays)
}
