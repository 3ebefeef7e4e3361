//! Liveness of the two threads everything depends on: the writer (every commit) and the
//! delivery thread (the scheduler and every attempt).
//!
//! Each ticks its part's heartbeat once per loop, idle or not (the writer waits for jobs at
//! most `TICK` at a time), and holds an `Alive` guard that marks the part dead when its thread
//! ends, by return or by panic. `/api/v1/health` answers 503 for a part that is dead or has not
//! ticked within `STALE_AFTER`; the watchdog in `Herald::serve` ends the process (non-zero) for
//! a part that is dead or has not ticked within `DEAD_AFTER`, so a supervisor restarts it.
//!
//! With the `fault-injection` feature (tests only) a part can be told to die (`kill`).
//!
//! Owns: what "alive" and "stuck" mean. Must never: block (every call is a few atomics).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// The longest the writer waits for a job before it ticks again.
pub const TICK: Duration = Duration::from_millis(500);
/// A part that has not ticked for this long is stuck: health answers 503. Longer than the
/// writer's slowest legitimate step (closing and reopening the file after a full disk takes
/// up to ~10 s) and far longer than a scheduler round (at most ~1 s apart).
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// A part that has not ticked for this long is given up on: the process exits.
pub const DEAD_AFTER: Duration = Duration::from_secs(60);

/// The parts watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Writer,
    Scheduler,
}

impl Part {
    pub const ALL: [Part; 2] = [Part::Writer, Part::Scheduler];

    pub fn name(self) -> &'static str {
        match self {
            Part::Writer => "writer",
            Part::Scheduler => "scheduler",
        }
    }
}

#[derive(Default)]
struct Beat {
    /// Milliseconds since `Heartbeats::epoch` at the last tick.
    at_ms: AtomicU64,
    /// Cleared by the `Alive` guard when the part's thread ends.
    alive: AtomicBool,
    /// Set when this node does not run the part at all (`Config::role`): never dead, never
    /// stuck.
    absent: AtomicBool,
    #[cfg(feature = "fault-injection")]
    kill: AtomicBool,
}

/// A part's state as seen now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ok,
    /// Alive, but no tick for this long (over `STALE_AFTER`).
    Stuck(Duration),
    /// Its thread ended.
    Dead,
}

pub struct Heartbeats {
    epoch: Instant,
    writer: Beat,
    scheduler: Beat,
}

impl Default for Heartbeats {
    fn default() -> Self {
        let hb = Heartbeats {
            epoch: Instant::now(),
            writer: Beat::default(),
            scheduler: Beat::default(),
        };
        // Not started yet counts as alive and fresh, so a server is healthy from its start.
        for part in Part::ALL {
            hb.beat(part).alive.store(true, Relaxed);
        }
        hb
    }
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Heartbeats")
    }
}

impl Heartbeats {
    fn beat(&self, part: Part) -> &Beat {
        match part {
            Part::Writer => &self.writer,
            Part::Scheduler => &self.scheduler,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn tick(&self, part: Part) {
        self.beat(part).at_ms.store(self.now_ms(), Relaxed);
    }

    /// The scheduler's one-line tick, once per round.
    pub fn scheduler_tick(&self) {
        self.tick(Part::Scheduler);
    }

    /// How long since the part last ticked.
    pub fn age(&self, part: Part) -> Duration {
        let at = self.beat(part).at_ms.load(Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(at))
    }

    pub fn state(&self, part: Part) -> State {
        self.state_within(part, STALE_AFTER)
    }

    /// Marks `part` as not run by this node (an `api` node runs no scheduler).
    pub fn absent(&self, part: Part) {
        self.beat(part).absent.store(true, Relaxed);
    }

    fn state_within(&self, part: Part, bound: Duration) -> State {
        if self.beat(part).absent.load(Relaxed) {
            return State::Ok;
        }
        if !self.beat(part).alive.load(Relaxed) {
            return State::Dead;
        }
        match self.age(part) {
            age if age > bound => State::Stuck(age),
            _ => State::Ok,
        }
    }

    /// The first part to give up on (dead, or stuck past `DEAD_AFTER`), if any.
    pub fn given_up(&self) -> Option<(Part, State)> {
        Part::ALL
            .into_iter()
            .map(|p| (p, self.state_within(p, DEAD_AFTER)))
            .find(|(_, s)| *s != State::Ok)
    }

    /// Marks `part` alive (and fresh) until the answer is dropped: held by the part's thread.
    pub fn alive(self: &Arc<Self>, part: Part) -> Alive {
        self.tick(part);
        self.beat(part).alive.store(true, Relaxed);
        Alive {
            heartbeats: self.clone(),
            part,
        }
    }

    /// The writer's side: its thread holds the answer, and waits for jobs through it.
    pub fn writer(self: &Arc<Self>) -> WriterBeat {
        WriterBeat {
            // A runtime for the timer only, so waiting for a job can time out and tick; without
            // one (it could not be made) the writer waits unticked, and health sees it stale.
            timer: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok(),
            alive: self.alive(Part::Writer),
        }
    }

    /// Tells `part` to die (tests only): the writer panics at its next tick, the delivery
    /// thread when `killed` resolves.
    #[cfg(feature = "fault-injection")]
    pub fn kill(&self, part: Part) {
        self.beat(part).kill.store(true, Relaxed);
    }

    /// Resolves once `part` has been told to die.
    #[cfg(feature = "fault-injection")]
    pub async fn killed(&self, part: Part) {
        while !self.beat(part).kill.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[cfg(feature = "fault-injection")]
    fn die_if_told(&self, part: Part) {
        if self.beat(part).kill.load(Relaxed) {
            panic!("fault injected: the {} was killed", part.name());
        }
    }
}

/// Held by a part's thread; marks the part dead when dropped (the thread returned or
/// unwound).
pub struct Alive {
    heartbeats: Arc<Heartbeats>,
    part: Part,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.heartbeats.beat(self.part).alive.store(false, Relaxed);
    }
}

/// The writer thread's heartbeat and its way of waiting for jobs.
pub struct WriterBeat {
    timer: Option<tokio::runtime::Runtime>,
    alive: Alive,
}

impl WriterBeat {
    /// `blocking_recv` that ticks the writer's heartbeat at least every `TICK` while it waits.
    pub fn recv<T>(&self, rx: &mut mpsc::Receiver<T>) -> Option<T> {
        let hb = &self.alive.heartbeats;
        loop {
            hb.tick(Part::Writer);
            #[cfg(feature = "fault-injection")]
            hb.die_if_told(Part::Writer);
            match rx.try_recv() {
                Ok(m) => return Some(m),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let Some(timer) = &self.timer else {
                return rx.blocking_recv();
            };
            if let Ok(m) = timer.block_on(async { tokio::time::timeout(TICK, rx.recv()).await }) {
                return m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_dead_once_its_guard_drops() {
        let hb = Arc::new(Heartbeats::default());
        let alive = hb.alive(Part::Scheduler);
        assert_eq!(hb.state(Part::Scheduler), State::Ok);
        assert_eq!(hb.given_up(), None);
        drop(alive);
        assert_eq!(hb.state(Part::Scheduler), State::Dead);
        assert_eq!(hb.given_up(), Some((Part::Scheduler, State::Dead)));
    }

    #[test]
    fn an_idle_writer_keeps_ticking() {
        let hb = Arc::new(Heartbeats::default());
        let (tx, mut rx) = mpsc::channel::<u8>(1);
        let writer = hb.writer();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(TICK * 3);
            let _ = tx.blocking_send(7);
        });
        assert_eq!(writer.recv(&mut rx), Some(7));
        assert!(started.elapsed() >= TICK * 3);
        // Ticked while it waited, not only when it began.
        assert!(hb.age(Part::Writer) < TICK + Duration::from_millis(200));
        assert_eq!(writer.recv(&mut rx), None);
    }

    #[test]
    fn a_stale_part_is_stuck() {
        let hb = Heartbeats::default();
        hb.writer.at_ms.store(0, Relaxed);
        let hb = Heartbeats {
            epoch: Instant::now() - STALE_AFTER - Duration::from_secs(1),
            ..hb
        };
        assert!(matches!(hb.state(Part::Writer), State::Stuck(_)));
        assert_eq!(hb.given_up(), None, "not yet past DEAD_AFTER");
    }
}
