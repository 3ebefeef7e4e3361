//! The repair pass: mends what a crash (or a failed write) between an endpoint's change and
//! the jobs that follow it leaves behind. Enabling or verifying an endpoint queues its parked
//! deliveries, and deleting one (or its application) cancels them, in the same commit only up
//! to one batch; the rest follow in later jobs. So, at start and every `EVERY`:
//! - deliveries parked under an endpoint that is enabled and verified are queued;
//! - deliveries pending (parked or queued) for an endpoint that no longer exists are cancelled,
//!   so retention can remove their messages.
//!
//! It searches in read transactions, in bounded steps (`storage::Reader::stray_parked`,
//! `stray_queued`), and mends in small writer jobs that check again what they change. What it
//! mends is counted in `/metrics`; `herald check` counts what is left to mend.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::model::{DeliveryId, DeliveryState, EndpointId};
use crate::storage::{Mend, QueueCursor, Store, StoreError};

/// How often a whole pass runs after the one at start.
const EVERY: Duration = Duration::from_secs(300);
/// Endpoints holding parked deliveries looked at per read.
const ENDPOINTS_PER_READ: usize = 1_000;
/// Queue entries looked at per read (a few milliseconds of reading).
const ENTRIES_PER_READ: usize = 10_000;
/// Deliveries changed per write: small enough that ingest waiting behind it waits little.
const PER_WRITE: usize = 1_000;
/// Pause between two steps of a pass, so a large queue is read without hogging a core.
const STEP_PAUSE: Duration = Duration::from_millis(20);

pub(super) async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match pass(&store, &metrics, &mut stop).await {
            Ok(Some(mended)) => {
                metrics.repair_pass_done();
                if mended > 0 {
                    tracing::warn!(mended, "repair pass mended stranded deliveries");
                }
            }
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "repair pass failed; will retry"),
        }
        if super::pause(&mut stop, EVERY).await {
            return;
        }
    }
}

/// One whole pass; answers how many deliveries it mended, or `None` when told to stop.
async fn pass(
    store: &Store,
    metrics: &Metrics,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Option<usize>, StoreError> {
    let mut mended = 0;
    let mut from: Option<EndpointId> = None;
    loop {
        let (found, next) = store
            .read(move |r| r.stray_parked(from, ENDPOINTS_PER_READ))
            .await?;
        for (endpoint, mend) in found {
            mended += mend_parked(store, metrics, endpoint, mend).await?;
        }
        if super::pause(stop, STEP_PAUSE).await {
            return Ok(None);
        }
        match next {
            Some(n) => from = Some(n),
            None => break,
        }
    }
    let mut at = QueueCursor::default();
    loop {
        let (found, next) = store
            .read(move |r| r.stray_queued(at, ENTRIES_PER_READ))
            .await?;
        for chunk in found.chunks(PER_WRITE) {
            let n = cancel_queued(store, chunk.to_vec()).await?;
            metrics.repaired("cancelled", n);
            mended += n;
        }
        if super::pause(stop, STEP_PAUSE).await {
            return Ok(None);
        }
        match next {
            Some(n) => at = n,
            None => return Ok(Some(mended)),
        }
    }
}

/// Queues (endpoint ready) or cancels (endpoint gone) an endpoint's parked deliveries, a
/// batch per job, each job checking the endpoint again.
async fn mend_parked(
    store: &Store,
    metrics: &Metrics,
    endpoint: EndpointId,
    mend: Mend,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let n = store
            .write(move |w| match (mend, w.endpoint(endpoint)?) {
                (Mend::Release, Some(ep)) if ep.ready() => w.unpark_endpoint(endpoint, PER_WRITE),
                (Mend::Cancel, None) => w.cancel_parked(endpoint, PER_WRITE),
                // Changed since the search: no longer this pass's to mend.
                _ => Ok(0),
            })
            .await?;
        let action = match mend {
            Mend::Release => "released",
            Mend::Cancel => "cancelled",
        };
        metrics.repaired(action, n);
        total += n;
        if n < PER_WRITE {
            return Ok(total);
        }
    }
}

/// Cancels those of `ids` still pending for an endpoint that does not exist.
async fn cancel_queued(store: &Store, ids: Vec<DeliveryId>) -> Result<usize, StoreError> {
    store
        .write(move |w| {
            // Every check before the first write (the writer's contract).
            let mut stray = Vec::new();
            for &id in &ids {
                let Some(d) = w.delivery(id)? else { continue };
                if d.state == DeliveryState::Pending && w.endpoint(d.endpoint_id)?.is_none() {
                    stray.push(id);
                }
            }
            for id in &stray {
                w.cancel_delivery(*id)?;
            }
            Ok(stray.len())
        })
        .await
}
