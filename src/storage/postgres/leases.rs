//! Claims on queued deliveries, so that on a database several nodes share no delivery is
//! attempted by two of them at once.
//!
//! The protocol (ARCHITECTURE.md, "Several nodes"):
//! - A node's scan reads due queue entries whose lease has ended (`lease_until <= now`).
//! - Before it attempts them it claims them in one short transaction of its own: each entry
//!   still there, still due at the time the scan saw, and not leased meanwhile, is locked
//!   `FOR UPDATE SKIP LOCKED` and given `lease_until` and `lease_node`. Only the entries the
//!   claim answers are attempted. `SKIP LOCKED` makes two nodes claiming the same entry at
//!   once split it (one gets it, the other skips it) instead of waiting on each other.
//! - Recording the attempt replaces the entry (a later due time, or none), which ends the
//!   lease. A node that dies leaves its leases to expire; the others' scans then find the
//!   entries and attempt them again: the receiver sees a duplicate only for an attempt that was
//!   in flight when the node died.
//! - A lease lasts `lease_ms`, and never less than the attempt's request timeout plus
//!   `LEASE_MARGIN_MS` (the caller computes `until`), so it never expires under an attempt
//!   still running.
//!
//! Claims do not go through the writer: they are coordination, not data, and must not wait
//! behind a batch of ingests.

use super::session::{id, n};
use super::{Store, pg_error, pool_error};
use crate::model::{DeliveryId, MessageId};
use crate::storage::{QueueEntry, StoreError};

impl Store {
    /// Claims `leases` (each entry with the time its lease should end) for this node; answers
    /// the deliveries claimed. An entry gone, moved or leased by another node is not; one this
    /// node holds already (an attempt held back after a failure) is claimed again.
    pub async fn claim(
        &self,
        now_ms: u64,
        leases: &[(QueueEntry, u64)],
    ) -> Result<Vec<DeliveryId>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let msgs: Vec<Vec<u8>> = leases.iter().map(|(e, _)| id(e.id.msg.0)).collect();
        let ns: Vec<i32> = leases.iter().map(|(e, _)| n(e.id.n)).collect();
        let dues: Vec<i64> = leases.iter().map(|(e, _)| e.due_ms as i64).collect();
        let untils: Vec<i64> = leases.iter().map(|(_, u)| *u as i64).collect();
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client
            .prepare_cached(
                "WITH want AS ( \
                   SELECT * FROM unnest($1::bytea[], $2::integer[], $3::bigint[], $4::bigint[]) \
                     AS w(msg_id, n, due_ms, until) \
                 ), free AS ( \
                   SELECT q.msg_id, q.n, w.until FROM queue q \
                   JOIN want w ON q.msg_id = w.msg_id AND q.n = w.n AND q.due_ms = w.due_ms \
                   WHERE (q.lease_until <= $5 OR q.lease_node = $6) \
                   FOR UPDATE OF q SKIP LOCKED \
                 ) \
                 UPDATE queue q SET lease_until = free.until, lease_node = $6 \
                 FROM free WHERE q.msg_id = free.msg_id AND q.n = free.n \
                 RETURNING q.msg_id, q.n",
            )
            .await
            .map_err(pg_error)?;
        let now = now_ms as i64;
        let rows = client
            .query(
                &statement,
                &[&msgs, &ns, &dues, &untils, &now, &&*self.node],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let msg: &[u8] = row.try_get(0).map_err(pg_error)?;
                let n: i32 = row.try_get(1).map_err(pg_error)?;
                let msg: [u8; 16] = msg
                    .try_into()
                    .map_err(|_| StoreError::corrupt("a claimed id of the wrong length"))?;
                Ok(DeliveryId {
                    msg: MessageId(u128::from_be_bytes(msg)),
                    n: n as u16,
                })
            })
            .collect()
    }
}
