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
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
/// How far past the deliveries in flight and the room to fill a narrow scan looks. The queue
/// is in due order, so the next deliveries of the endpoints being served are right behind
/// those in flight; a wide scan (`SCAN_MAX`) is needed only to find other endpoints' deliveries
/// behind a busy endpoint's backlog, and costs ~2 ms of CPU, too much to pay on every dispatch.
const NARROW_SCAN_SLACK: usize = 256;
/// How often a scan may be wide. While due deliveries wait behind busy endpoints, the scheduler
/// also looks again this often, so the others are found within this time; and while wide scans
/// keep finding deliveries past the narrow window, every scan stays wide (it pays for itself).
const WIDE_SCAN_EVERY: Duration = Duration::from_millis(100);
/// Workers wake the scheduler when they free capacity (an endpoint slot, a permit) once 1/n of
/// the deliveries in flight at the last dispatch have done so (at least one): a busy engine
/// dispatches in batches instead of one scan per finished attempt; a quiet one still at once.
const WAKE_BATCH_DIVISOR: usize = 8;
/// Most endpoints whose own concurrency cap (other than the server default) the scheduler
/// remembers while they are idle; beyond it the memory is cleared, which only costs a few
/// deliveries read and left queued until the caps are known again.
const KNOWN_CAPS_MAX: usize = 4_096;
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
    /// Concurrency caps other than the server default, as read with the endpoints of the
    /// deliveries dispatched, so a scan admits no more than an endpoint takes (see
    /// `KNOWN_CAPS_MAX`). The one place caps are kept: dispatch checks each delivery against
    /// the cap of the endpoint it just read, so a forgotten cap costs reads, never an excess.
    known_caps: Mutex<HashMap<EndpointId, u32>>,
    permits: Arc<Semaphore>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Workers finished since the last dispatch, and how many wake the scheduler.
    finished_since_dispatch: AtomicUsize,
    wake_every: AtomicUsize,
    /// When the last wide scan began, and whether it found deliveries past the narrow window
    /// (see `WIDE_SCAN_EVERY`).
    last_wide_scan: Mutex<(Option<Instant>, bool)>,
}

/// A worker's share of its endpoint's concurrency cap. It is given back as soon as the receiver
/// has answered (`release`), before the attempt is committed: the cap bounds the requests a
/// receiver sees at once, and holding it through the commit (a batch's fsync) would leave the
/// receiver's slots idle for most of every attempt. The delivery itself stays in flight, and
/// its global permit held, until the commit.
pub(super) struct EndpointSlot<'a> {
    engine: &'a Engine,
    endpoint: EndpointId,
    held: bool,
}

impl EndpointSlot<'_> {
    pub(super) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.engine.finished(self.endpoint);
            self.engine.worker_done();
        }
    }
}

impl Drop for EndpointSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// When the scheduler should look at the queue again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// At once: more is due and may start.
    Now,
    /// Nothing is due before this time (milliseconds since the epoch).
    At(u64),
    /// Due deliveries wait for permits or for their endpoints' workers: look again when
    /// workers finish, or after `WIDE_SCAN_EVERY` at the latest.
    Busy,
    /// Nothing is queued.
    Idle,
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
            known_caps: Mutex::new(HashMap::new()),
            permits,
            metrics,
            finished_since_dispatch: AtomicUsize::new(0),
            wake_every: AtomicUsize::new(1),
            last_wide_scan: Mutex::new((None, false)),
        })
    }

    /// Runs the scheduler until `shutdown` resolves, then waits (up to the grace period) for
    /// the attempts in flight to be recorded.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut workers = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            self.metrics.heartbeats.scheduler_tick();
            let next_due = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                next = self.dispatch(&mut workers) => next,
            };
            // Reap finished workers so the set stays as small as what is in flight.
            while workers.try_join_next().is_some() {}
            let sleep = match next_due {
                Next::Now => continue,
                Next::At(due) => {
                    Duration::from_millis(due.saturating_sub(now_millis())).min(IDLE_RESCAN)
                }
                Next::Busy => WIDE_SCAN_EVERY,
                Next::Idle => IDLE_RESCAN,
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

    /// Starts workers for what is due now, as far as permits and endpoint caps allow, and
    /// answers when to look again.
    async fn dispatch(self: &Arc<Self>, workers: &mut JoinSet<()>) -> Next {
        self.finished_since_dispatch.store(0, Relaxed);
        let capacity = self.permits.available_permits();
        if capacity == 0 {
            // Every worker is busy; finishing workers wake us.
            self.set_wake_every();
            return Next::Busy;
        }
        // Snapshot in-flight ids *before* the read transaction begins: a worker leaves the set
        // only after its commit, so anything absent from the snapshot is seen in its committed
        // state by the read below, and nothing is dispatched twice.
        let skip: HashSet<DeliveryId> = self.in_flight.lock().expect("not poisoned").clone();
        let busy: HashMap<EndpointId, u32> = self
            .endpoints
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, s)| (*id, s.in_flight))
            .collect();
        let caps: HashMap<EndpointId, u32> = self.known_caps.lock().expect("not poisoned").clone();
        let default_cap = self.config.endpoint_concurrency_max as u32;
        let now = now_millis();
        let narrow_max = (skip.len() + capacity + NARROW_SCAN_SLACK).min(SCAN_MAX);
        let wide = {
            let mut last = self.last_wide_scan.lock().expect("not poisoned");
            let (at, productive) = *last;
            let due = productive || at.is_none_or(|at| at.elapsed() >= WIDE_SCAN_EVERY);
            if due {
                last.0 = Some(Instant::now());
            }
            due
        };
        let scan_max = if wide { SCAN_MAX } else { narrow_max };
        // Read on the engine's own thread (see `Store::read_here`).
        let scan = self
            .store
            .read_here(move |r| {
                let mut chosen: Vec<(DeliveryId, EndpointId)> = Vec::new();
                let mut taken: HashSet<DeliveryId> = HashSet::new();
                let mut load: HashMap<EndpointId, u32> = HashMap::new();
                let mut next: Option<u64> = None;
                // A lane whose scan stopped at `scan_max` with due entries left behind.
                let mut cut = false;
                let mut note_next = |n: Option<u64>| match n {
                    // `due_deliveries` answers `now` when it stopped at `scan_max`; a real next
                    // due time is always later than `now`.
                    Some(n) if n <= now => cut = true,
                    Some(n) => next = Some(next.map_or(n, |m: u64| m.min(n))),
                    None => {}
                };
                // A delivery may go unless its endpoint is at its concurrency cap, or it is in
                // flight or already chosen. Caps only fill up during a scan, so the last endpoint
                // found full stays full: consecutive entries of a busy endpoint (a backlog) are
                // refused without a lookup.
                let mut full_endpoint: Option<EndpointId> = None;
                let mut admit =
                    |id: DeliveryId,
                     ep: EndpointId,
                     taken: &HashSet<DeliveryId>,
                     load: &mut HashMap<EndpointId, u32>| {
                        if full_endpoint == Some(ep) {
                            return false;
                        }
                        if skip.contains(&id) || taken.contains(&id) {
                            return false;
                        }
                        let running = busy.get(&ep).copied().unwrap_or(0);
                        let cap = caps.get(&ep).copied().unwrap_or(default_cap);
                        let planned = load.entry(ep).or_insert(running);
                        if *planned >= cap.max(1) {
                            full_endpoint = Some(ep);
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
                // Whether a delivery was found past the narrow window (so wide scans pay).
                let mut found_deep = false;
                // Lanes whose first-pass scan stopped because their share was filled: only
                // they can have more to give in the second pass.
                let mut filled = [false; 3];
                for pass in 0..2 {
                    for (i, (lane, share)) in Priority::ALL.into_iter().zip(shares).enumerate() {
                        // Second pass: room the lower lanes left unused goes back to all lanes.
                        let room =
                            if pass == 0 { share } else { capacity }.saturating_sub(chosen.len());
                        if room == 0 || (pass == 1 && !filled[i]) {
                            continue;
                        }
                        let mut position = 0;
                        let (due, n) =
                            r.due_deliveries(lane, now, room, scan_max, &mut |id, ep| {
                                position += 1;
                                let admitted = admit(id, ep, &taken, &mut load);
                                found_deep |= admitted && position > narrow_max;
                                !admitted
                            })?;
                        if pass == 0 {
                            note_next(n);
                            filled[i] = due.len() >= room;
                        }
                        for (id, ep) in due {
                            taken.insert(id);
                            chosen.push((id, ep));
                        }
                    }
                }
                // What each attempt needs, read in this same transaction. A delivery that does
                // not read is left queued and logged; it must not stop the others.
                let mut batch = r.dispatch_reads()?;
                let loaded: Vec<_> = chosen
                    .into_iter()
                    .map(|(id, ep)| (id, ep, worker::load(&mut batch, id)))
                    .collect();
                Ok((loaded, next, cut, found_deep))
            })
            .await;
        let (chosen, next, cut, found_deep) = match scan {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "queue scan failed");
                return Next::At(now + IDLE_RESCAN.as_millis() as u64);
            }
        };
        if wide {
            self.last_wide_scan.lock().expect("not poisoned").1 = found_deep;
        }
        let full = chosen.len() >= capacity;
        for (id, endpoint, work) in chosen {
            let work = match work {
                Ok(Some(work)) => work,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(delivery = %id, error = %e, "delivery could not be read");
                    continue;
                }
            };
            // The scan admitted it under the cap it knew; the endpoint just read has the true
            // one. Over it, the delivery stays queued (not in flight) for a later scan.
            let cap = work.concurrency_cap().unwrap_or(default_cap).max(1);
            self.remember_cap(endpoint, cap, default_cap);
            let running = self
                .endpoints
                .lock()
                .expect("not poisoned")
                .get(&endpoint)
                .map_or(0, |s| s.in_flight);
            if running >= cap {
                continue;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            self.in_flight.lock().expect("not poisoned").insert(id);
            self.endpoints
                .lock()
                .expect("not poisoned")
                .entry(endpoint)
                .or_default()
                .in_flight += 1;
            let engine = self.clone();
            self.metrics.in_flight_change(1);
            workers.spawn(async move {
                {
                    let mut slot = EndpointSlot {
                        engine: &engine,
                        endpoint,
                        held: true,
                    };
                    worker::attempt(&engine, id, work, &mut slot).await;
                }
                engine.metrics.in_flight_change(-1);
                // Only now, after the attempt is committed, may the delivery be seen again.
                engine.in_flight.lock().expect("not poisoned").remove(&id);
                drop(permit);
                engine.worker_done();
            });
        }
        self.set_wake_every();
        if full {
            Next::Now
        } else if cut {
            // Due deliveries were left unread behind busy endpoints: do not spin on them;
            // finishing workers, new messages or the next wide scan bring them.
            Next::Busy
        } else {
            next.map_or(Next::Idle, Next::At)
        }
    }

    /// Remembers an endpoint's concurrency cap when it is not the server default.
    fn remember_cap(&self, endpoint: EndpointId, cap: u32, default_cap: u32) {
        let mut caps = self.known_caps.lock().expect("not poisoned");
        if cap == default_cap {
            caps.remove(&endpoint);
        } else if caps.get(&endpoint) != Some(&cap) {
            if caps.len() >= KNOWN_CAPS_MAX {
                caps.clear();
            }
            caps.insert(endpoint, cap);
        }
    }

    /// How many finishing workers wake the scheduler, from what is in flight now.
    fn set_wake_every(&self) {
        let in_flight = self
            .config
            .deliveries_in_flight_max
            .saturating_sub(self.permits.available_permits());
        self.wake_every
            .store((in_flight / WAKE_BATCH_DIVISOR).max(1), Relaxed);
    }

    /// A worker freed capacity: wake the scheduler when enough did (see `WAKE_BATCH_DIVISOR`).
    fn worker_done(&self) {
        let finished = self.finished_since_dispatch.fetch_add(1, Relaxed) + 1;
        if finished >= self.wake_every.load(Relaxed) {
            self.waker.wake();
        }
    }

    /// Bookkeeping when a worker gives back its endpoint's slot.
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

    /// Reserves the next slot of an endpoint's rate limit (`per_second` deliveries a second):
    /// answers when this delivery may go, in milliseconds since the epoch. Slots are spaced
    /// evenly, so a burst is spread out rather than refused.
    fn reserve_slot(&self, endpoint: EndpointId, per_second: u16) -> u64 {
        let interval_us = 1_000_000 / per_second.max(1) as u64;
        let now_us = now_millis() * 1000;
        let mut states = self.endpoints.lock().expect("not poisoned");
        let s = states.entry(endpoint).or_default();
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
