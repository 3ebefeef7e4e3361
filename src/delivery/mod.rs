//! Delivery: the background side that empties the queue.
//!
//! The scheduler range-scans the redb queue lanes for due deliveries (highest lane first, the
//! lower lanes always keeping a share), and hands each to a worker task, at most
//! `deliveries_in_flight_max` at once, at most an endpoint's concurrency cap against one
//! endpoint, and never the same delivery twice. A worker attempts it (`worker.rs`) and records
//! the attempt through the writer; the queue entry leaves redb only in that same commit, so a
//! crash at any moment leaves every unfinished delivery queued.
//!
//! Owns: scheduling, attempts, retries, rate limits, the outbound client. Must never: keep the
//! backlog in memory (only the deliveries in flight are), or decide routing.

pub mod client;
pub mod outbound;
pub mod retry;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::model::{DeliveryId, EndpointId, Priority, now_millis};
use crate::storage::{Read, Store};
pub use outbound::Outbound;

/// The longest the scheduler sleeps without looking at the queue, so deliveries re-queued by
/// another path are never waited on for long.
const IDLE_RESCAN: Duration = Duration::from_millis(1_000);
/// Queue entries one scan of a lane may pass over (busy endpoints, in flight) before it stops:
/// bounds a scan's work however large the backlog.
const SCAN_MAX: usize = 20_000;
/// How early a rate-limited delivery may go before its reserved slot.
const SLOT_SLACK_MS: u64 = 2;

/// Handle to wake the scheduler when new deliveries were committed.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What the engine remembers of an endpoint between attempts (in memory only; bounded by the
/// endpoints that have deliveries in flight or a rate limit).
#[derive(Default, Clone, Copy)]
struct EndpointState {
    in_flight: u32,
    /// Its concurrency cap as last read (the server default until then).
    cap: u32,
    /// Next free slot of its rate limit, in microseconds since the epoch.
    next_slot_us: u64,
}

pub struct Engine {
    store: Store,
    config: Arc<Config>,
    outbound: Arc<Outbound>,
    waker: Waker,
    /// Deliveries being attempted now. A std mutex: it is held for a few instructions and
    /// never across an `.await`.
    in_flight: Mutex<HashSet<DeliveryId>>,
    endpoints: Mutex<HashMap<EndpointId, EndpointState>>,
    permits: Arc<Semaphore>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Engine {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        waker: Waker,
        outbound: Arc<Outbound>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Engine> {
        let permits = Arc::new(Semaphore::new(config.deliveries_in_flight_max));
        Arc::new(Engine {
            store,
            config,
            outbound,
            waker,
            in_flight: Mutex::new(HashSet::new()),
            endpoints: Mutex::new(HashMap::new()),
            permits,
            metrics,
        })
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

    /// Starts workers for what is due now, as far as permits and endpoint caps allow. Answers
    /// when to look again: `Some(0)` for at once (more is due), `Some(ms)` for the next due
    /// time, `None` when nothing is queued.
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
        let busy: HashMap<EndpointId, (u32, u32)> = self
            .endpoints
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, s)| (*id, (s.in_flight, s.cap)))
            .collect();
        let default_cap = self.config.endpoint_concurrency_max as u32;
        let now = now_millis();
        let scan = self
            .store
            .read(move |r| {
                let mut chosen: Vec<(DeliveryId, EndpointId)> = Vec::new();
                let mut taken: HashSet<DeliveryId> = HashSet::new();
                let mut load: HashMap<EndpointId, u32> = HashMap::new();
                let mut next: Option<u64> = None;
                let mut note_next = |n: Option<u64>| {
                    if let Some(n) = n {
                        next = Some(next.map_or(n, |m: u64| m.min(n)));
                    }
                };
                // A delivery may go unless it is in flight, already chosen, or its endpoint is
                // at its concurrency cap.
                let admit = |id: DeliveryId,
                             ep: EndpointId,
                             taken: &HashSet<DeliveryId>,
                             load: &mut HashMap<EndpointId, u32>| {
                    if skip.contains(&id) || taken.contains(&id) {
                        return false;
                    }
                    let (running, cap) = busy.get(&ep).copied().unwrap_or((0, default_cap));
                    let planned = load.entry(ep).or_insert(running);
                    if *planned >= cap.max(1) {
                        return false;
                    }
                    *planned += 1;
                    true
                };
                // Lower lanes keep a share of every round so they never starve.
                let reserve = if capacity >= 3 {
                    (capacity / 8).max(1)
                } else {
                    0
                };
                let shares = [capacity - 2 * reserve, capacity - reserve, capacity];
                for pass in 0..2 {
                    for (lane, share) in Priority::ALL.into_iter().zip(shares) {
                        // Second pass: room the lower lanes left unused goes back to all lanes.
                        let room =
                            if pass == 0 { share } else { capacity }.saturating_sub(chosen.len());
                        if room == 0 {
                            continue;
                        }
                        let (due, n) =
                            r.due_deliveries(lane, now, room, SCAN_MAX, &mut |id, ep| {
                                !admit(id, ep, &taken, &mut load)
                            })?;
                        if pass == 0 {
                            note_next(n);
                        }
                        for (id, ep) in due {
                            taken.insert(id);
                            chosen.push((id, ep));
                        }
                    }
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
        for (id, endpoint) in chosen {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            self.in_flight.lock().expect("not poisoned").insert(id);
            self.endpoints
                .lock()
                .expect("not poisoned")
                .entry(endpoint)
                .or_insert(EndpointState {
                    cap: default_cap,
                    ..Default::default()
                })
                .in_flight += 1;
            let engine = self.clone();
            self.metrics.in_flight_change(1);
            workers.spawn(async move {
                worker::attempt(&engine, id).await;
                engine.metrics.in_flight_change(-1);
                engine.in_flight.lock().expect("not poisoned").remove(&id);
                engine.finished(endpoint);
                drop(permit);
                engine.waker.wake();
            });
        }
        if full { Some(0) } else { next }
    }

    /// Bookkeeping when a worker is done with an endpoint's delivery.
    fn finished(&self, endpoint: EndpointId) {
        let mut states = self.endpoints.lock().expect("not poisoned");
        if let Some(s) = states.get_mut(&endpoint) {
            s.in_flight = s.in_flight.saturating_sub(1);
            // Forget idle endpoints without a rate-limit slot in the future: the map stays as
            // small as what is active.
            if s.in_flight == 0 && s.next_slot_us <= (now_millis() * 1000) {
                states.remove(&endpoint);
            }
        }
    }

    /// Records an endpoint's concurrency cap as read by a worker; answers whether the
    /// endpoint is over it (the scheduler dispatched before it knew the cap).
    fn note_cap(&self, endpoint: EndpointId, cap: Option<u32>) -> bool {
        let cap = cap.unwrap_or(self.config.endpoint_concurrency_max as u32).max(1);
        match self.endpoints.lock().expect("not poisoned").get_mut(&endpoint) {
            Some(s) => {
                s.cap = cap;
                s.in_flight > cap
            }
            None => false,
        }
    }

    /// Reserves the next slot of an endpoint's rate limit (`per_second` deliveries a second):
    /// answers when this delivery may go, in milliseconds since the epoch. Slots are spaced
    /// evenly, so a burst is spread out rather than refused.
    fn reserve_slot(&self, endpoint: EndpointId, per_second: u16) -> u64 {
        let interval_us = 1_000_000 / per_second.max(1) as u64;
        let now_us = now_millis() * 1000;
        let mut states = self.endpoints.lock().expect("not poisoned");
        let s = states.entry(endpoint).or_insert(EndpointState {
            cap: self.config.endpoint_concurrency_max as u32,
            ..Default::default()
        });
        let slot = s.next_slot_us.max(now_us);
        s.next_slot_us = slot + interval_us;
        slot / 1000
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }
}

pub(crate) const fn slot_slack_ms() -> u64 {
    SLOT_SLACK_MS
}
