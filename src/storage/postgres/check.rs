//! `herald check postgres://...`: the PostgreSQL side of `redb/check.rs`. Runs while nodes
//! serve (PostgreSQL has no file lock): one read snapshot decodes every record and checks that
//! each queue entry points at a pending delivery due at that time, in that lane.

use std::fmt::Write as _;

use super::session::{Txn, bytes_of, id, id_of, n_of, u64_of};
use crate::model::*;
use crate::storage::codec::{Record, decode};
use crate::storage::rows::{KeyedRecord, decode_keyed};
use crate::storage::{Snapshot, StoreError, Strays};

/// Rows read per statement while a table is decoded.
const CHUNK: i64 = 1_000;

/// The report of a check, or the first problem found.
pub(super) fn check(txn: &Txn<'_>, version: i32) -> Result<String, StoreError> {
    let mut report = format!("{:<18} {version}\n", "layout");
    whole::<App>(txn, "apps", "id", &mut report)?;
    whole::<EventType>(txn, "event_types", "name", &mut report)?;
    whole::<Endpoint>(txn, "endpoints", "id", &mut report)?;
    whole::<Trigger>(txn, "triggers", "id", &mut report)?;
    whole::<Alert>(txn, "alerts", "id", &mut report)?;
    whole::<BackgroundTask>(txn, "tasks", "id", &mut report)?;
    whole::<Token>(txn, "tokens", "hash", &mut report)?;
    whole::<User>(txn, "users", "username", &mut report)?;
    whole::<Session>(txn, "sessions", "hash", &mut report)?;
    whole::<PortalLink>(txn, "portal_links", "hash", &mut report)?;
    whole::<SetupToken>(txn, "setup_tokens", "hash", &mut report)?;
    whole::<crate::storage::IdempotentResponse>(txn, "idempotency", "hash", &mut report)?;
    keyed::<Message>(
        txn,
        "messages",
        "SELECT app_id, id, rec FROM messages WHERE (app_id, id) > ($1, $2) \
         ORDER BY app_id, id LIMIT $3",
        |r| Ok((id_of(r, 0)?, id_of(r, 1)?)),
        &mut report,
    )?;
    keyed::<Attempt>(
        txn,
        "attempts",
        "SELECT msg_id, id, rec FROM attempts WHERE (msg_id, id) > ($1, $2) \
         ORDER BY msg_id, id LIMIT $3",
        |r| Ok((id_of(r, 0)?, id_of(r, 1)?)),
        &mut report,
    )?;
    deliveries(txn, &mut report)?;
    // Every queue entry must point at a pending delivery due at that time, in that lane.
    let wrong = txn.rows(
        "SELECT q.msg_id, q.n, q.lane, q.due_ms, d.rec FROM queue q \
         LEFT JOIN deliveries d ON d.msg_id = q.msg_id AND d.n = q.n",
        &[],
    )?;
    let mut queued = 0u64;
    for row in &wrong {
        let (msg, n) = (id_of(row, 0)?, n_of(row, 1)?);
        let lane: i16 = row.try_get(2).map_err(super::pg_error)?;
        let due = u64_of(row, 3)?;
        let rec: Option<&[u8]> = row.try_get(4).map_err(super::pg_error)?;
        let Some(rec) = rec else {
            return Err(StoreError::corrupt(format!(
                "queue entry for missing delivery {msg}/{n}"
            )));
        };
        let d: Delivery = decode_keyed((msg, n), rec)?;
        if d.state != DeliveryState::Pending
            || d.due_ms != Some(due)
            || super::session::lane(d.priority) != lane
        {
            return Err(StoreError::corrupt(format!(
                "queue entry disagrees with delivery {}",
                d.id
            )));
        }
        queued += 1;
    }
    let _ = writeln!(report, "{:<18} {queued}", "queued");
    let strays = count_strays(txn)?;
    let _ = writeln!(
        report,
        "to mend: parked on ready endpoints: {}, pending for deleted endpoints: {}{}",
        strays.parked_on_ready,
        strays.pending_for_deleted,
        if strays == Strays::default() {
            ""
        } else {
            " (a crash between two commits leaves these; the repair pass mends them)"
        }
    );
    report.push_str("ok");
    Ok(report)
}

/// Decodes every record of a table whose records carry their whole key, in chunks by `key`.
fn whole<T: Record>(
    txn: &Txn<'_>,
    table: &str,
    key: &str,
    report: &mut String,
) -> Result<(), StoreError> {
    // Table and column names come from the calls above, never from input.
    let sql = format!("SELECT {key}::text, rec FROM {table} ORDER BY {key} OFFSET $1 LIMIT $2");
    let mut rows = 0i64;
    loop {
        let chunk = txn.rows(&sql, &[&rows, &CHUNK])?;
        for row in &chunk {
            decode::<T>(bytes_of(row, 1)?)
                .map_err(|e| StoreError::corrupt(format!("{table}: {e}")))?;
        }
        rows += chunk.len() as i64;
        if (chunk.len() as i64) < CHUNK {
            break;
        }
    }
    let _ = writeln!(report, "{table:<18} {rows}");
    Ok(())
}

/// Decodes every record of a table keyed by two ids whose records leave their key's fields to
/// the key, in keyset chunks (`sql` takes the last key seen as `$1`, `$2` and a limit `$3`).
fn keyed<T>(
    txn: &Txn<'_>,
    table: &str,
    sql: &str,
    key_of: impl Fn(&tokio_postgres::Row) -> Result<T::Key, StoreError>,
    report: &mut String,
) -> Result<(), StoreError>
where
    T: KeyedRecord<Key = (u128, u128)> + serde::de::DeserializeOwned,
{
    let (mut a, mut b) = (0u128, 0u128);
    let mut first = true;
    let mut rows = 0u64;
    loop {
        // The very first key (0, 0) is included by starting just below it.
        let (pa, pb) = if first {
            (Vec::new(), Vec::new())
        } else {
            (id(a), id(b))
        };
        let chunk = txn.rows(sql, &[&pa, &pb, &CHUNK])?;
        for row in &chunk {
            let key = key_of(row)?;
            decode_keyed::<T>(key, bytes_of(row, 2)?)
                .map_err(|e| StoreError::corrupt(format!("{table}: {e}")))?;
            (a, b) = key;
        }
        first = false;
        rows += chunk.len() as u64;
        if (chunk.len() as i64) < CHUNK {
            break;
        }
    }
    let _ = writeln!(report, "{table:<18} {rows}");
    Ok(())
}

/// `keyed` for deliveries, keyed by (message id, n).
fn deliveries(txn: &Txn<'_>, report: &mut String) -> Result<(), StoreError> {
    let (mut msg, mut last_n) = (Vec::new(), -1i32);
    let mut rows = 0u64;
    loop {
        let chunk = txn.rows(
            "SELECT msg_id, n, rec FROM deliveries WHERE (msg_id, n) > ($1, $2) \
             ORDER BY msg_id, n LIMIT $3",
            &[&msg, &last_n, &CHUNK],
        )?;
        for row in &chunk {
            let key = (id_of(row, 0)?, n_of(row, 1)?);
            decode_keyed::<Delivery>(key, bytes_of(row, 2)?)
                .map_err(|e| StoreError::corrupt(format!("deliveries: {e}")))?;
            (msg, last_n) = (id(key.0), i32::from(key.1));
        }
        rows += chunk.len() as u64;
        if (chunk.len() as i64) < CHUNK {
            break;
        }
    }
    let _ = writeln!(report, "{:<18} {rows}", "deliveries");
    Ok(())
}

/// What a crash between an endpoint's change and the jobs after it left (as `redb/check.rs`).
fn count_strays(txn: &Txn<'_>) -> Result<Strays, StoreError> {
    let row = txn
        .row(
            "SELECT \
               count(*) FILTER (WHERE e.id IS NOT NULL), \
               count(*) FILTER (WHERE e.id IS NULL) \
             FROM parked p LEFT JOIN endpoints e ON e.id = p.endpoint_id",
            &[],
        )?
        .expect("an aggregate answers a row");
    let (parked_with_endpoint, parked_for_deleted) = (u64_of(&row, 0)?, u64_of(&row, 1)?);
    // Parked under an endpoint that exists: a stray only if that endpoint is ready.
    let mut parked_on_ready = 0;
    if parked_with_endpoint > 0 {
        for row in txn.rows(
            "SELECT e.rec, count(*) FROM parked p JOIN endpoints e ON e.id = p.endpoint_id \
             GROUP BY e.id, e.rec",
            &[],
        )? {
            let ep: Endpoint = decode(bytes_of(&row, 0)?)?;
            if ep.ready() {
                parked_on_ready += u64_of(&row, 1)?;
            }
        }
    }
    let (queued, _) = txn.stray_queued(crate::storage::QueueCursor::default(), usize::MAX)?;
    Ok(Strays {
        parked_on_ready,
        pending_for_deleted: parked_for_deleted + queued.len() as u64,
    })
}
