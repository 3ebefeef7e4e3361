//! Delivery: the background side that empties the queue.
//!
//! The scheduler range-scans the redb queue lanes for due deliveries (highest lane first, the
//! lower lanes always keeping a share), and hands each to a worker task, at most
//! `deliveries_in_flight_max` at once, at most an endpoint's concurrency cap against one
//! endpoint, and never the same delivery twice. A worker attempts it (`worker.rs`) and records
//! the attempt through the writer; the queue entry leaves redb only in that same commit, so a
//! crash at any moment leaves every unfinished delivery queued.
//!
//! Each endpoint is paced (`pacing.rs`): a 429/503 with `Retry-After`, or a run of timeouts or
//! connection failures, pauses it as a whole, and timeouts shrink the number of attempts it
//! may have in flight; the scheduler moves a paused endpoint's due deliveries to its pause's
//! end, so they never stand between it and deliveries that can go. A delivery whose attempt
//! could not be recorded (or panicked) is held back, with a growing delay, instead of being
//! sent again at once; a queue entry that cannot be loaded is taken out as failed, with an
//! alert (a dead letter).
//!
//! Owns: scheduling, attempts, retries, rate limits, endpoint pacing, the outbound client.
//! Must never: keep the backlog in memory (only the deliveries in flight, held back, and the
//! pacing of active endpoints are), run long work on its own thread (scans read on a blocking
//! thread, templates render on their pool), or decide routing.

pub mod client;
pub mod outbound;
mod pacing;
pub mod retry;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::model::{DeliveryId, EndpointId, Priority, now_millis};
use crate::storage::{QueueEntry, Store};
pub use outbound::Outbound;
use pacing::{EndpointState, HeldBack};

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
/// How long a delivery found deep in a lane keeps narrow scans that deep (see
/// `Engine::found_at_depth`).
const DEPTH_MEMORY: Duration = Duration::from_secs(1);
/// Most deliveries of paused endpoints one dispatch moves to their pause's end (one write
/// job): a large pile is moved over a few dispatches rather than in one long job.
const DEFER_CHUNK: usize = 512;
/// Most queue entries that could not be loaded, or are stale, one dispatch takes out.
const MEND_CHUNK: usize = 64;
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

pub struct Engine {
    store: Store,
    config: Arc<Config>,
    outbound: Arc<Outbound>,
    waker: Waker,
    /// Deliveries being attempted now. A std mutex: it is held for a few instructions and
    /// never across an `.await`.
    in_flight: Mutex<HashSet<DeliveryId>>,
    /// Pacing of the endpoints that have deliveries in flight, a rate limit, or a pause or
    /// reduced concurrency to remember (`pacing.rs`).
    endpoints: Mutex<HashMap<EndpointId, EndpointState>>,
    /// Deliveries whose last attempt could not be recorded, or panicked: not attempted again
    /// before their hold ends (`pacing.rs`).
    held_back: Mutex<HashMap<DeliveryId, HeldBack>>,
    /// How deep in a lane a recent scan found a delivery to start, and when: for
    /// `DEPTH_MEMORY` after it, narrow scans look that much further, so deliveries behind a
    /// pile of blocked ones (a hanging endpoint at its cap) are found on every dispatch, not
    /// only by the periodic wide scan. A busy endpoint's own backlog, with nothing behind it
    /// to find, does not widen the scans.
    found_at_depth: Mutex<(usize, Option<Instant>)>,
    /// Whether a move of paused endpoints' deliveries is being written (`defer_paused`).
    deferring: AtomicBool,
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

/// A claim on a delivery outlasts its attempt's request timeout by this much at least, so the
/// attempt is recorded before another node may take the delivery over.
const LEASE_MARGIN_MS: u64 = 5_000;

/// A worker's share of its endpoint's concurrency cap. It is given back as soon as the receiver
/// has answered (`release`), before the attempt is committed: the cap bounds the requests a
/// receiver sees at once, and holding it through the commit (a batch's fsync) would leave the
/// receiver's slots idle for most of every attempt. The delivery itself stays in flight, and
/// its global permit held, until the commit.
pub(super) struct EndpointSlot<'a> {
    engine: &'a Engine,
    endpoint: EndpointId,
    /// The endpoint's concurrency cap, as read for this attempt.
    cap: u32,
    held: bool,
}

impl EndpointSlot<'_> {
    /// The receiver answered (or did not): the endpoint's pacing learns from it, and the
    /// slot is given back.
    fn answered(&mut self, answer: pacing::Answer) {
        self.engine.paced(self.endpoint, self.cap, answer);
        self.release();
    }

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

/// A delivery's place in flight and its global permit, given back when the worker ends,
/// however it ends: a panicking attempt must not keep its delivery out of every later scan
/// until a restart. A panic also holds the delivery back (it would panic again at once).
struct InFlight {
    engine: Arc<Engine>,
    id: DeliveryId,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(delivery = %self.id, "the attempt panicked; it is held back");
            self.engine.hold_back(self.id, "panicked");
        }
        self.engine.metrics.in_flight_change(-1);
        // Only now, after the attempt is committed, may the delivery be seen again.
        self.engine
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
        drop(self.permit.take());
        self.engine.worker_done();
    }
}

/// An endpoint's pacing as one scan sees it.
struct Pace {
    in_flight: u32,
    allowed: u32,
    paused_until: Option<u64>,
}

/// What one scan found.
/// A queue entry a scan chose, and what loading it found.
type Dispatched = (
    Priority,
    QueueEntry,
    Result<worker::Loaded, crate::storage::StoreError>,
);

struct Scan {
    loaded: Vec<Dispatched>,
    /// Due deliveries of paused endpoints, with their pause's end.
    paused: Vec<(QueueEntry, u64)>,
    next: Option<u64>,
    cut: bool,
    /// A due delivery waits for its endpoint's attempts in flight.
    blocked: bool,
    found_deep: bool,
    /// The deepest position in a lane at which a delivery was admitted.
    deepest: usize,
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
            held_back: Mutex::new(HashMap::new()),
            found_at_depth: Mutex::new((0, None)),
            deferring: AtomicBool::new(false),
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

    /// Starts workers for what is due now, as far as permits, endpoint caps and pacing allow,
    /// and answers when to look again.
    async fn dispatch(self: &Arc<Self>, workers: &mut JoinSet<()>) -> Next {
        self.finished_since_dispatch.store(0, Relaxed);
        let capacity = self.permits.available_permits();
        if capacity == 0 {
            // Every worker is busy; finishing workers wake us.
            self.set_wake_every();
            return Next::Busy;
        }
        let now = now_millis();
        // Snapshot in-flight ids *before* the read transaction begins: a worker leaves the set
        // only after its commit, so anything absent from the snapshot is seen in its committed
        // state by the read below, and nothing is dispatched twice. Held-back deliveries are
        // passed over the same way until their hold ends.
        let mut skip: HashSet<DeliveryId> = self.in_flight.lock().expect("not poisoned").clone();
        match self.held_back_now(now, &mut skip) {
            Ok(()) => {}
            // Too many deliveries could not be recorded: the store is failing. Try again
            // later rather than pile up more attempts whose outcome would be lost.
            Err(until) => return Next::At(until),
        }
        let pacing = self.pacing_snapshot(now);
        let caps: HashMap<EndpointId, u32> = self.known_caps.lock().expect("not poisoned").clone();
        let default_cap = self.config.endpoint_concurrency_max as u32;
        let depth = match *self.found_at_depth.lock().expect("not poisoned") {
            (depth, Some(at)) if at.elapsed() < DEPTH_MEMORY => depth,
            _ => 0,
        };
        let narrow_max = (skip.len().max(depth) + capacity + NARROW_SCAN_SLACK).min(SCAN_MAX);
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
        // On a blocking thread: a scan (up to `SCAN_MAX` entries) and the loads of up to
        // `capacity` messages must not stall the connections this thread drives.
        let scan = self
            .store
            .read(move |r| {
                let mut chosen: Vec<(Priority, QueueEntry)> = Vec::new();
                let mut taken: HashSet<DeliveryId> = HashSet::new();
                let mut load: HashMap<EndpointId, u32> = HashMap::new();
                let mut paused: Vec<(QueueEntry, u64)> = Vec::new();
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
                // A delivery may go unless its endpoint is paused or at the number of attempts
                // it may have in flight, or it is in flight, held back or already chosen. Loads
                // only fill up during a scan, so the last endpoint found full stays full:
                // consecutive entries of a busy endpoint (a backlog) are refused without a
                // lookup.
                let mut full_endpoint: Option<EndpointId> = None;
                // Whether a due delivery was refused because its endpoint was full.
                let mut blocked = false;
                let mut admit =
                    |entry: QueueEntry,
                     taken: &HashSet<DeliveryId>,
                     load: &mut HashMap<EndpointId, u32>,
                     paused_seen: &mut Vec<(QueueEntry, u64)>| {
                        let (id, ep) = (entry.id, entry.endpoint);
                        if full_endpoint == Some(ep) || skip.contains(&id) || taken.contains(&id) {
                            return false;
                        }
                        let pace = pacing.get(&ep);
                        if let Some(until) = pace.and_then(|p| p.paused_until) {
                            if paused_seen.len() < DEFER_CHUNK {
                                paused_seen.push((entry, until));
                            }
                            return false;
                        }
                        let running = pace.map_or(0, |p| p.in_flight);
                        let cap = caps.get(&ep).copied().unwrap_or(default_cap);
                        let allowed = pace
                            .map_or(pacing::FIRST_ALLOWED, |p| p.allowed)
                            .min(cap)
                            .max(1);
                        let planned = load.entry(ep).or_insert(running);
                        if *planned >= allowed {
                            full_endpoint = Some(ep);
                            blocked = true;
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
                // Whether a delivery was found past the narrow window (so wide scans pay), and
                // the deepest position in its lane at which one was found.
                let mut found_deep = false;
                let mut deepest = 0usize;
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
                            r.due_deliveries(lane, now, room, scan_max, &mut |entry| {
                                position += 1;
                                let admitted = admit(entry, &taken, &mut load, &mut paused);
                                found_deep |= admitted && position > narrow_max;
                                if admitted {
                                    deepest = deepest.max(position);
                                }
                                !admitted
                            })?;
                        if pass == 0 {
                            note_next(n);
                            filled[i] = due.len() >= room;
                        }
                        for entry in due {
                            taken.insert(entry.id);
                            chosen.push((lane, entry));
                        }
                    }
                }
                // What each attempt needs, read in this same transaction. A delivery that does
                // not load must not stop the others: it is mended below.
                let mut batch = r.dispatch_loads()?;
                let ids: Vec<DeliveryId> = chosen.iter().map(|(_, e)| e.id).collect();
                batch.prefetch(&ids)?;
                let loaded: Vec<_> = chosen
                    .into_iter()
                    .map(|(lane, entry)| (lane, entry, worker::load(r, &mut *batch, lane, entry)))
                    .collect();
                Ok(Scan {
                    loaded,
                    paused,
                    next,
                    cut,
                    blocked,
                    found_deep,
                    deepest,
                })
            })
            .await;
        let scan = match scan {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "queue scan failed");
                return Next::At(now + IDLE_RESCAN.as_millis() as u64);
            }
        };
        if wide {
            self.last_wide_scan.lock().expect("not poisoned").1 = scan.found_deep;
        }
        if scan.deepest > capacity + NARROW_SCAN_SLACK {
            *self.found_at_depth.lock().expect("not poisoned") =
                (scan.deepest, Some(Instant::now()));
        }
        self.defer_paused(workers, scan.paused);
        let loaded = if self.store.shared() {
            match self.claim(now, scan.loaded).await {
                Some(claimed) => claimed,
                None => return Next::At(now + WIDE_SCAN_EVERY.as_millis() as u64),
            }
        } else {
            scan.loaded
        };
        let mut mend: Vec<(Priority, QueueEntry, Option<String>)> = Vec::new();
        let mut started = 0;
        for (lane, entry, work) in loaded {
            let (id, endpoint) = (entry.id, entry.endpoint);
            let work = match work {
                Ok(worker::Loaded::Work(work)) => work,
                Ok(worker::Loaded::Stale) => {
                    mend.push((lane, entry, None));
                    continue;
                }
                Ok(worker::Loaded::Unreadable(why)) => {
                    mend.push((lane, entry, Some(why)));
                    continue;
                }
                Err(e @ crate::storage::StoreError::Corrupt(_)) => {
                    mend.push((lane, entry, Some(e.to_string())));
                    continue;
                }
                Err(e) => {
                    // Not the record's fault (the database answered an error): try later.
                    tracing::error!(delivery = %id, error = %e, "delivery could not be read");
                    self.hold_back(id, "unreadable");
                    continue;
                }
            };
            // The scan admitted it under the cap it knew; the endpoint just read has the true
            // one. Over it, the delivery stays queued (not in flight) for a later scan.
            let cap = work.concurrency_cap().unwrap_or(default_cap).max(1);
            self.remember_cap(endpoint, cap, default_cap);
            // The permit first: once `may_start` counted the attempt at its endpoint, it
            // must start.
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            if !self.may_start(endpoint, cap, now) {
                continue;
            }
            started += 1;
            self.in_flight.lock().expect("not poisoned").insert(id);
            self.metrics.in_flight_change(1);
            let guard = InFlight {
                engine: self.clone(),
                id,
                permit: Some(permit),
            };
            workers.spawn(async move {
                let engine = guard.engine.clone();
                let mut slot = EndpointSlot {
                    engine: &engine,
                    endpoint,
                    cap,
                    held: true,
                };
                worker::attempt(&engine, id, work, &mut slot).await;
                // `slot`, then `guard`: the endpoint's share, then the delivery's place in
                // flight and its permit, are given back however the attempt ended (a panic
                // included).
                drop(slot);
                drop(guard);
            });
        }
        // More to take out than one dispatch does: the rest at once, they may stand in front
        // of everything else in their lane.
        let mend_left = mend.len() > MEND_CHUNK;
        self.mend_entries(workers, mend);
        self.set_wake_every();
        if started >= capacity || mend_left {
            Next::Now
        } else if scan.cut {
            // Due deliveries were left unread behind busy endpoints: do not spin on them;
            // finishing workers, new messages or the next wide scan bring them.
            Next::Busy
        } else if scan.blocked {
            // Due deliveries wait for their endpoints' attempts: finishing workers wake the
            // scheduler in batches, so look again soon in any case (an endpoint growing from
            // its first few attempts must not wait for a batch of others).
            let soon = now + WIDE_SCAN_EVERY.as_millis() as u64;
            Next::At(scan.next.map_or(soon, |n| n.min(soon)))
        } else {
            scan.next.map_or(Next::Idle, Next::At)
        }
    }

    /// On a database other nodes deliver from too: claims the deliveries a scan chose before
    /// any is attempted, and keeps those claimed (another node may have taken some since the
    /// scan). What is not an attempt (entries to mend) is kept as it is. `None` when the claim
    /// failed: nothing is attempted, the next dispatch tries again.
    async fn claim(&self, now: u64, loaded: Vec<Dispatched>) -> Option<Vec<Dispatched>> {
        let default_timeout = self.config.request_timeout_ms;
        let leases: Vec<(QueueEntry, u64)> = loaded
            .iter()
            .filter_map(|(_, entry, work)| match work {
                Ok(worker::Loaded::Work(work)) => {
                    let timeout = work.timeout_ms().unwrap_or(default_timeout);
                    let lease = self.config.lease_ms.max(timeout + LEASE_MARGIN_MS);
                    Some((*entry, now + lease))
                }
                _ => None,
            })
            .collect();
        let claimed: HashSet<DeliveryId> = match self.store.claim(now, &leases).await {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                tracing::error!(error = %e, "deliveries could not be claimed");
                return None;
            }
        };
        Some(
            loaded
                .into_iter()
                .filter(|(_, entry, work)| {
                    !matches!(work, Ok(worker::Loaded::Work(_))) || claimed.contains(&entry.id)
                })
                .collect(),
        )
    }

    /// Adds the deliveries held back now to `skip`; answers `Err(until)` when so many are
    /// held back that dispatching should stop until then (see `HELD_BACK_MAX`).
    fn held_back_now(&self, now: u64, skip: &mut HashSet<DeliveryId>) -> Result<(), u64> {
        let mut held = self.held_back.lock().expect("not poisoned");
        if held.is_empty() {
            return Ok(());
        }
        pacing::prune_held(&mut held, now, pacing::HELD_BACK_MAX)?;
        skip.extend(
            held.iter()
                .filter(|(_, h)| h.until > now)
                .map(|(id, _)| *id),
        );
        Ok(())
    }

    /// Holds a delivery back after an attempt that could not be recorded or panicked.
    fn hold_back(&self, id: DeliveryId, kind: &str) {
        self.metrics.delivery_fault(kind);
        let now = now_millis();
        let mut held = self
            .held_back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let hold = HeldBack::again(held.get(&id).copied(), now);
        held.insert(id, hold);
    }

    /// An attempt of `id` was recorded: it is no longer held back.
    fn recorded(&self, id: DeliveryId) {
        let mut held = self.held_back.lock().expect("not poisoned");
        if !held.is_empty() {
            held.remove(&id);
        }
    }

    /// What the scan needs of each endpoint with pacing state.
    fn pacing_snapshot(&self, now: u64) -> HashMap<EndpointId, Pace> {
        let mut states = self.endpoints.lock().expect("not poisoned");
        // Forget endpoints with nothing left to remember: the map stays as small as what is
        // active, warm (`pacing::WARM_MS`) or paced.
        states.retain(|_, s| !s.forgettable(now));
        states
            .iter()
            .map(|(id, s)| {
                let pace = Pace {
                    in_flight: s.in_flight,
                    allowed: s.allowed,
                    paused_until: s.paused(now).then_some(s.paused_until),
                };
                (*id, pace)
            })
            .collect()
    }

    /// Whether a delivery to `endpoint` may start now, and if so counts it in flight there.
    fn may_start(&self, endpoint: EndpointId, cap: u32, now: u64) -> bool {
        let mut states = self.endpoints.lock().expect("not poisoned");
        // An endpoint not known yet starts as a fresh one does (`pacing::FIRST_ALLOWED`).
        let s = states.get(&endpoint).copied().unwrap_or_default();
        if s.paused(now) || s.in_flight >= cap.min(s.allowed).max(1) {
            return false;
        }
        if states.len() >= pacing::ENDPOINT_STATES_MAX && !states.contains_key(&endpoint) {
            // Forget the pacing of idle endpoints. Those in flight or paused are kept even
            // past the bound: forgetting a pause would let its endpoint be attempted early,
            // and there are no more of them than endpoints.
            states.retain(|_, s| s.in_flight > 0 || s.paused(now));
        }
        let s = states.entry(endpoint).or_default();
        s.in_flight += 1;
        s.last_used_ms = s.last_used_ms.max(now);
        true
    }

    /// Learns from an attempt's answer (see `pacing.rs`).
    fn paced(&self, endpoint: EndpointId, cap: u32, answer: pacing::Answer) {
        let now = now_millis();
        let limits = pacing::Limits {
            cap,
            retry_after_max_ms: self.config.retry_after_max_ms,
            failures_to_pause: self.config.endpoint_failures_to_pause,
        };
        let paused = self
            .endpoints
            .lock()
            .expect("not poisoned")
            .entry(endpoint)
            .or_default()
            .learn(answer, limits, now);
        if let Some(why) = paused {
            self.metrics.endpoint_paused(why.as_str());
            tracing::warn!(endpoint = %endpoint, reason = why.as_str(), "endpoint paused");
        }
    }

    /// Moves deliveries of paused endpoints to their pause's end (spread, so they come back
    /// gradually). They are marked in flight while the move is written, so no scan meanwhile
    /// dispatches one of them and the move cannot overtake an attempt.
    fn defer_paused(self: &Arc<Self>, workers: &mut JoinSet<()>, paused: Vec<(QueueEntry, u64)>) {
        // One move at a time: a large pile is moved a chunk per dispatch, never in a flood of
        // jobs that would crowd the writer.
        if paused.is_empty() || self.deferring.swap(true, Relaxed) {
            return;
        }
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let now = now_millis();
        let moves: Vec<(QueueEntry, u64)> = paused
            .into_iter()
            .map(|(e, until)| {
                let spread = pacing::RELEASE_SPREAD_MS.max(until.saturating_sub(now));
                (e, until + rng.gen_range(0..=spread))
            })
            .collect();
        let ids: Vec<DeliveryId> = moves.iter().map(|(e, _)| e.id).collect();
        self.in_flight.lock().expect("not poisoned").extend(&ids);
        let engine = self.clone();
        workers.spawn(async move {
            // However this task ends (a panic, an abort), the next move may begin.
            struct Deferring<'a>(&'a AtomicBool);
            impl Drop for Deferring<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Relaxed);
                }
            }
            let _deferring = Deferring(&engine.deferring);
            let moves = Arc::new(moves);
            let written = engine
                .store
                .write({
                    let moves = moves.clone();
                    move |w| w.defer_deliveries(&moves)
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "deliveries of a paused endpoint could not be moved");
            }
            let mut in_flight = engine.in_flight.lock().expect("not poisoned");
            for id in &ids {
                in_flight.remove(id);
            }
        });
    }

    /// Takes out queue entries that could not be loaded (`Some(why)`: dead letters, failed
    /// with an alert) or have no pending delivery behind them (`None`: stale). Marked in flight
    /// meanwhile, like `defer_paused`, so they are not seen again before the write.
    fn mend_entries(
        self: &Arc<Self>,
        workers: &mut JoinSet<()>,
        mut entries: Vec<(Priority, QueueEntry, Option<String>)>,
    ) {
        entries.truncate(MEND_CHUNK);
        if entries.is_empty() {
            return;
        }
        let ids: Vec<DeliveryId> = entries.iter().map(|(_, e, _)| e.id).collect();
        self.in_flight.lock().expect("not poisoned").extend(&ids);
        let engine = self.clone();
        workers.spawn(async move {
            for (lane, entry, why) in entries {
                let written = match why {
                    Some(why) => {
                        tracing::error!(delivery = %entry.id, error = %why,
                            "delivery could not be loaded; taken out of the queue as failed");
                        let why = Arc::new(why);
                        let done = engine
                            .store
                            .write(move |w| w.dead_letter(lane, entry, &why))
                            .await;
                        done.map(|()| Some("dead_lettered"))
                    }
                    None => engine
                        .store
                        .write(move |w| w.drop_stale_entry(lane, entry))
                        .await
                        .map(|dropped| dropped.then_some("stale_entry")),
                };
                match written {
                    Ok(None) => engine.recorded(entry.id),
                    Ok(Some(kind)) => {
                        engine.metrics.delivery_fault(kind);
                        engine.recorded(entry.id);
                    }
                    Err(e) => {
                        tracing::error!(delivery = %entry.id, error = %e,
                            "a queue entry could not be taken out");
                        engine.hold_back(entry.id, "unreadable");
                    }
                }
                engine
                    .in_flight
                    .lock()
                    .expect("not poisoned")
                    .remove(&entry.id);
            }
            // What stood behind them may go now.
            engine.waker.wake();
        });
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
        let mut states = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = states.get_mut(&endpoint) {
            s.in_flight = s.in_flight.saturating_sub(1);
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
