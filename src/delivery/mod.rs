//! Delivery: the background side that empties the queue.
//!
//! The scheduler range-scans the redb queue lanes for due deliveries (highest lane first, the
//! lower lanes always keeping a share), and hands each to a worker task, at most
//! `deliveries_in_flight_max` at once and never the same delivery twice. A worker attempts it
//! (`worker.rs`) and records the attempt through the writer; the queue entry leaves redb only
//! in that same commit, so a crash at any moment leaves every unfinished delivery queued.
//!
//! Owns: scheduling, attempts, retries, the HTTP client and SSRF guard. Must never: keep the
//! backlog in memory (only the deliveries in flight are), or decide routing.

pub mod client;
pub mod retry;
mod worker;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::model::{DeliveryId, Priority, now_millis};
use crate::storage::{Read, Store};

/// The longest the scheduler sleeps without looking at the queue, so deliveries re-queued by
/// another path are never waited on for long.
const IDLE_RESCAN: Duration = Duration::from_millis(1_000);

/// Handle to wake the scheduler when new deliveries were committed.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Engine {
    store: Store,
    config: Arc<Config>,
    client: client::HttpClient,
    waker: Waker,
    /// Deliveries being attempted now. A std mutex: it is held for a few instructions and
    /// never across an `.await`.
    in_flight: Mutex<HashSet<DeliveryId>>,
    permits: Arc<Semaphore>,
}

impl Engine {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        waker: Waker,
    ) -> Result<Arc<Engine>, reqwest::Error> {
        let client = client::HttpClient::new(
            crate::guard::DestinationPolicy {
                allow: config.allow_destination.clone(),
                allow_http: config.allow_http_destinations,
            },
            Duration::from_millis(config.connect_timeout_ms),
            config.response_body_max_bytes,
        )?;
        let permits = Arc::new(Semaphore::new(config.deliveries_in_flight_max));
        Ok(Arc::new(Engine {
            store,
            config,
            client,
            waker,
            in_flight: Mutex::new(HashSet::new()),
            permits,
        }))
    }

    /// Runs the scheduler until `shutdown` resolves, then waits (up to the grace period) for
    /// the attempts in flight to be recorded.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut workers = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let next_due = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                next = self.dispatch(&mut workers) => next,
            };
            // Reap finished workers so the set stays as small as what is in flight.
            while workers.try_join_next().is_some() {}
            let sleep = match next_due {
                Some(0) => continue,
                Some(due) => {
                    Duration::from_millis(due.saturating_sub(now_millis())).min(IDLE_RESCAN)
                }
                None => IDLE_RESCAN,
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let drained = tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = workers.len(),
                "attempts still in flight after the grace period; they stay queued"
            );
            workers.abort_all();
        }
    }

    /// Starts workers for what is due now, as far as permits allow. Answers when to look
    /// again: `Some(0)` for at once (more is due), `Some(ms)` for the next due time, `None`
    /// when nothing is queued.
    async fn dispatch(self: &Arc<Self>, workers: &mut JoinSet<()>) -> Option<u64> {
        let capacity = self.permits.available_permits();
        if capacity == 0 {
            // Every worker is busy; a finishing worker wakes us.
            return Some(now_millis() + IDLE_RESCAN.as_millis() as u64);
        }
        // Snapshot in-flight ids *before* the read transaction begins: a worker leaves the set
        // only after its commit, so anything absent from the snapshot is seen in its committed
        // state by the read below, and nothing is dispatched twice.
        let skip: HashSet<DeliveryId> = self.in_flight.lock().expect("not poisoned").clone();
        let now = now_millis();
        let scan = self
            .store
            .read(move |r| {
                let mut chosen: Vec<DeliveryId> = Vec::new();
                let mut next: Option<u64> = None;
                let mut note_next = |n: Option<u64>| {
                    if let Some(n) = n {
                        next = Some(next.map_or(n, |m: u64| m.min(n)));
                    }
                };
                // Lower lanes keep a share of every round so they never starve.
                let reserve = if capacity >= 3 {
                    (capacity / 8).max(1)
                } else {
                    0
                };
                let shares = [capacity - 2 * reserve, capacity - reserve, capacity];
                for (lane, share) in Priority::ALL.into_iter().zip(shares) {
                    let room = share.saturating_sub(chosen.len());
                    let taken: HashSet<DeliveryId> = chosen.iter().copied().collect();
                    let (due, n) = r.due_deliveries(lane, now, room, &|id| {
                        skip.contains(&id) || taken.contains(&id)
                    })?;
                    note_next(n);
                    chosen.extend(due);
                }
                // Room the lower lanes left unused goes back to the higher ones.
                for lane in Priority::ALL {
                    let room = capacity.saturating_sub(chosen.len());
                    if room == 0 {
                        break;
                    }
                    let taken: HashSet<DeliveryId> = chosen.iter().copied().collect();
                    let (due, _) = r.due_deliveries(lane, now, room, &|id| {
                        skip.contains(&id) || taken.contains(&id)
                    })?;
                    chosen.extend(due);
                }
                Ok((chosen, next))
            })
            .await;
        let (chosen, next) = match scan {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "queue scan failed");
                return Some(now + IDLE_RESCAN.as_millis() as u64);
            }
        };
        let full = chosen.len() >= capacity;
        for id in chosen {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            self.in_flight.lock().expect("not poisoned").insert(id);
            let engine = self.clone();
            workers.spawn(async move {
                worker::attempt(&engine, id).await;
                engine.in_flight.lock().expect("not poisoned").remove(&id);
                drop(permit);
                engine.waker.wake();
            });
        }
        if full { Some(0) } else { next }
    }
}
