//! The schema as embedded, versioned migrations, applied at start.
//!
//! `herald_schema` records each version applied. Nodes starting together take a transaction
//! advisory lock first, so one applies what is missing and the others find it done; a migration
//! and its record commit together, so a crash leaves either both or neither. A database whose
//! newest version is past this build's is refused, as redb refuses a newer layout.

use super::pg_error;
use crate::storage::StoreError;

/// Every migration, in order: (version, SQL). Append only; never edit one that has shipped.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("schema_v1.sql"))];

/// Any constant: the advisory lock that lets one node at a time migrate.
const MIGRATION_LOCK: i64 = 0x4865_7261_6c64; // "Herald"

/// The newest version this build knows.
pub(super) fn newest() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Applies what is missing of `MIGRATIONS` (nothing, when another node already did).
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    // Locked first: two nodes creating `herald_schema` at once would collide.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS herald_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let found: Option<i32> = tx
        .query_one("SELECT max(version) FROM herald_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let found = found.unwrap_or(0);
    if found > newest() {
        return Err(StoreError::Layout {
            found: found as u64,
            oldest: 1,
            newest: newest() as u64,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO herald_schema (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version, "database schema migrated");
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(())
}
