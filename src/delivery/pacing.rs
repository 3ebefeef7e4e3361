//! Endpoint pacing and held-back deliveries: what the engine remembers, in memory, to keep a
//! failing receiver from being hammered and from holding the engine's slots.
//!
//! - A 429 or 503 with `Retry-After` pauses the whole endpoint until then (bounded by
//!   `retry_after_max_ms`); a run of `endpoint_failures_to_pause` timeouts or connection
//!   failures pauses it for a growing time (1 s doubling to 5 min). During a pause nothing is
//!   attempted against it; when the pause ends it may have one attempt in flight (a probe, as
//!   a circuit breaker's half-open state).
//! - An endpoint starts with `FIRST_ALLOWED` attempts in flight, and each success adds one,
//!   up to its cap (a slow start, as TCP's): a receiver that answers fast reaches its cap
//!   within a few dozen answers, one that hangs from the start never holds more than
//!   `FIRST_ALLOWED` slots, even before its first timeout tells anything.
//! - The endpoint's recent share of timeouts and connection failures is kept as a moving
//!   average (each attempt weighs a fifth). While it is at least half, each such failure
//!   halves the attempts the endpoint may have in flight (at least one); each success adds one
//!   back, up to its cap. A hanging receiver so holds a slot or two, not dozens, while one that
//!   times out now and then keeps its concurrency. A run of failures pauses only while the
//!   share is at least `PAUSE_SHARE` too, so a flaky but living receiver is not paused by
//!   chance runs.
//! - A delivery whose attempt could not be recorded (or panicked) is held back for a growing,
//!   bounded time (`hold_ms`) before it may be attempted again.
//!
//! Owns: those rules, as pure functions of the state and the clock. Must never: do I/O, or
//! outlive a restart (a restarted engine starts every endpoint unpaused, which costs at most
//! one attempt per endpoint to learn again).

use crate::model::AttemptError;

/// The moving average of failures, in thousandths: each attempt moves it a fifth of the way
/// to 1000 (a timeout or connection failure) or to 0 (an answer).
const SHARE_FULL: u16 = 1_000;
/// At or above this share, timeouts and connection failures halve the concurrency.
const SHRINK_SHARE: u16 = 500;
/// At or above this share, a run of failures pauses the endpoint (from 0, eight failures in a
/// row reach it: 1 - 0.8^8 = 0.83).
const PAUSE_SHARE: u16 = 800;
/// The first pause after a run of failures; each further one doubles, up to the maximum
/// (Svix's second retry comes after 5 min too).
const FAILURE_PAUSE_MIN_MS: u64 = 1_000;
const FAILURE_PAUSE_MAX_MS: u64 = 300_000;
/// A held-back delivery waits this long after its first unrecorded attempt, doubling after
/// each further one, up to the maximum.
const HOLD_MIN_MS: u64 = 1_000;
const HOLD_MAX_MS: u64 = 60_000;
/// Deliveries of a paused endpoint are moved to its pause's end plus a random spread of at
/// least this much (and at most the pause's own length), so they come back over a while
/// instead of all at once, and a long pile is moved about once per pause, not once per probe.
pub(super) const RELEASE_SPREAD_MS: u64 = 1_000;
/// Attempts a fresh endpoint (or one forgotten while idle) may have in flight before its
/// answers show it takes more. 4: a hanging receiver holds 4 of the 512 slots until its
/// timeouts shrink it (the first come only after the 15 s request timeout), and a fast one is
/// at a cap of 64 after 60 successes, a few milliseconds at a burst's pace.
pub(super) const FIRST_ALLOWED: u32 = 4;
/// How long an endpoint's pacing is remembered after its last attempt started or answered,
/// when there is nothing else to remember: a burst's brief gaps (nothing in flight between two
/// dispatches) keep what its ramp reached; an endpoint idle longer starts small again.
pub(super) const WARM_MS: u64 = 10_000;
/// Most held-back deliveries remembered; past it the engine stops dispatching for a while
/// (the store is failing: more attempts would only be lost too).
pub(super) const HELD_BACK_MAX: usize = 65_536;
/// A hold that ended this long ago is forgotten (its count of failures with it).
pub(super) const HELD_BACK_FORGET_MS: u64 = 600_000;
/// Most endpoints whose pacing is remembered while idle (see `Engine::remember_endpoint`).
pub(super) const ENDPOINT_STATES_MAX: usize = 16_384;

/// What the engine remembers of an endpoint between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EndpointState {
    pub in_flight: u32,
    /// Next free slot of its rate limit, in microseconds since the epoch.
    pub next_slot_us: u64,
    /// No attempt starts before this (milliseconds since the epoch).
    pub paused_until: u64,
    /// Attempts it may have in flight: from `FIRST_ALLOWED`, one more per success, and
    /// `u32::MAX` once that reached its cap (the cap applies).
    pub allowed: u32,
    /// Timeouts or connection failures in a row since the last answer or pause.
    pub failures: u32,
    /// Pauses for failures since the last success (the next one's length grows with it).
    pub pauses: u32,
    /// Recent share of timeouts and connection failures among its attempts, in thousandths.
    pub failure_share: u16,
    /// When an attempt last started or answered (milliseconds since the epoch).
    pub last_used_ms: u64,
}

impl Default for EndpointState {
    fn default() -> Self {
        EndpointState {
            in_flight: 0,
            next_slot_us: 0,
            paused_until: 0,
            allowed: FIRST_ALLOWED,
            failures: 0,
            pauses: 0,
            failure_share: 0,
            last_used_ms: 0,
        }
    }
}

/// Why an attempt paused its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Paused {
    RetryAfter,
    Failures,
}

impl Paused {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Paused::RetryAfter => "retry_after",
            Paused::Failures => "failures",
        }
    }
}

/// The settings one endpoint's pacing follows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Its concurrency cap.
    pub cap: u32,
    pub retry_after_max_ms: u64,
    /// `endpoint_failures_to_pause` (0: never).
    pub failures_to_pause: u32,
}

/// What the pacing needs to know of one attempt's result.
#[derive(Clone, Copy, Debug)]
pub(super) struct Answer {
    /// The HTTP status, 0 when none came.
    pub status_code: u16,
    pub error: Option<AttemptError>,
    /// The `Retry-After` of a 429 or 503, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl EndpointState {
    pub(super) fn paused(&self, now_ms: u64) -> bool {
        self.paused_until > now_ms
    }

    /// Whether there is nothing to remember once nothing is in flight (forgotten, it starts
    /// again at `FIRST_ALLOWED`, which costs a ramp of a few answers, nothing else).
    pub(super) fn forgettable(&self, now_ms: u64) -> bool {
        self.in_flight == 0
            && self.failure_share < SHRINK_SHARE / 10
            && self.next_slot_us <= now_ms * 1000
            && !self.paused(now_ms)
            && self.allowed >= FIRST_ALLOWED
            && now_ms >= self.last_used_ms.saturating_add(WARM_MS)
            && self.failures == 0
    }

    /// Learns from one attempt's answer; says when it paused the endpoint.
    pub(super) fn learn(&mut self, answer: Answer, limits: Limits, now_ms: u64) -> Option<Paused> {
        let Limits {
            cap,
            retry_after_max_ms,
            failures_to_pause,
        } = limits;
        let cap = cap.max(1);
        self.last_used_ms = self.last_used_ms.max(now_ms);
        if let Some(asked) = answer.retry_after_ms.filter(|ms| *ms > 0) {
            // `now_ms` is rounded down: one more millisecond so that the next attempt never
            // comes sooner than asked (measured from this answer, it would by up to 1 ms).
            let until = now_ms
                .saturating_add(asked.min(retry_after_max_ms))
                .saturating_add(1);
            self.paused_until = self.paused_until.max(until);
            self.allowed = 1;
            self.failures = 0;
            return Some(Paused::RetryAfter);
        }
        match answer.error {
            Some(AttemptError::Timeout | AttemptError::Connect) => {
                self.failure_share += (SHARE_FULL - self.failure_share) / 5;
                if self.failure_share >= SHRINK_SHARE {
                    self.allowed = (self.allowed.min(cap) / 2).max(1);
                }
                if self.paused(now_ms) {
                    // Attempts that were in flight when the pause began: already counted.
                    return None;
                }
                self.failures += 1;
                if failures_to_pause == 0
                    || self.failures < failures_to_pause
                    || self.failure_share < PAUSE_SHARE
                {
                    return None;
                }
                let ms = FAILURE_PAUSE_MIN_MS
                    .saturating_mul(1 << self.pauses.min(16))
                    .min(FAILURE_PAUSE_MAX_MS)
                    .min(retry_after_max_ms.max(FAILURE_PAUSE_MIN_MS));
                self.paused_until = now_ms + ms;
                self.pauses += 1;
                self.failures = 0;
                self.allowed = 1;
                Some(Paused::Failures)
            }
            _ if answer.status_code == 0 => None,
            _ => {
                // The receiver answered: it is there, whatever it said.
                self.failures = 0;
                self.failure_share -= self.failure_share / 5;
                if (200..300).contains(&answer.status_code) {
                    self.pauses = 0;
                    self.allowed = match self.allowed.saturating_add(1) {
                        a if a >= cap => u32::MAX,
                        a => a,
                    };
                }
                None
            }
        }
    }
}

/// A delivery held back after an attempt that could not be recorded, or panicked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HeldBack {
    pub failures: u32,
    /// Not attempted again before this (milliseconds since the epoch).
    pub until: u64,
}

impl HeldBack {
    /// The hold after one more failure, from `now_ms`.
    pub(super) fn again(previous: Option<HeldBack>, now_ms: u64) -> HeldBack {
        let failures = previous.map_or(0, |h| h.failures) + 1;
        let ms = HOLD_MIN_MS
            .saturating_mul(1 << (failures - 1).min(16))
            .min(HOLD_MAX_MS);
        HeldBack {
            failures,
            until: now_ms + ms,
        }
    }
}

/// Forgets the holds that ended long ago (a later failure starts over from the shortest
/// hold) and, past `max`, every hold that ended; answers `Err(until)` when `max` holds are
/// still running (the store is failing: dispatch waits until the first of them ends).
pub(super) fn prune_held<K>(
    held: &mut std::collections::HashMap<K, HeldBack>,
    now_ms: u64,
    max: usize,
) -> Result<(), u64> {
    held.retain(|_, h| h.until.saturating_add(HELD_BACK_FORGET_MS) > now_ms);
    if held.len() >= max {
        held.retain(|_, h| h.until > now_ms);
        if held.len() >= max {
            let soonest = held.values().map(|h| h.until).min().unwrap_or(now_ms);
            return Err(soonest.max(now_ms + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;
    const L: Limits = Limits {
        cap: 16,
        retry_after_max_ms: 3_600_000,
        failures_to_pause: 3,
    };

    fn timeout() -> Answer {
        Answer {
            status_code: 0,
            error: Some(AttemptError::Timeout),
            retry_after_ms: None,
        }
    }

    fn ok() -> Answer {
        Answer {
            status_code: 200,
            error: None,
            retry_after_ms: None,
        }
    }

    #[test]
    fn retry_after_pauses_the_endpoint_bounded() {
        let mut s = EndpointState::default();
        let asked = Answer {
            status_code: 429,
            error: Some(AttemptError::Status),
            retry_after_ms: Some(5_000),
        };
        assert_eq!(s.learn(asked, L, NOW), Some(Paused::RetryAfter));
        assert_eq!((s.paused_until, s.allowed), (NOW + 5_001, 1));
        let mut s = EndpointState::default();
        s.learn(
            Answer {
                retry_after_ms: Some(86_400_000),
                ..asked
            },
            Limits {
                retry_after_max_ms: 60_000,
                ..L
            },
            NOW,
        );
        assert_eq!(s.paused_until, NOW + 60_001);
    }

    #[test]
    fn a_run_of_timeouts_shrinks_concurrency_and_pauses_with_growing_length() {
        let mut s = EndpointState::default();
        // The share climbs 200, 360, 488, 590, ...: halving starts at the fourth failure, the
        // pause at the eighth.
        for _ in 0..3 {
            assert_eq!(s.learn(timeout(), L, NOW), None);
        }
        assert_eq!(s.allowed, FIRST_ALLOWED);
        let mut paused_at = None;
        for n in 4..=10 {
            if s.learn(timeout(), L, NOW) == Some(Paused::Failures) {
                paused_at.get_or_insert(n);
            }
        }
        assert_eq!(paused_at, Some(8));
        assert_eq!((s.paused_until, s.allowed), (NOW + 1_000, 1));
        // After the pause, the next run (the share is still high) pauses twice as long.
        let later = NOW + 2_000;
        for _ in 0..L.failures_to_pause {
            s.learn(timeout(), L, later);
        }
        assert_eq!(s.paused_until, later + 2_000);
        // Successes grow it back one by one to its cap; once the share has decayed, nothing
        // is left to remember.
        let after = later + 3_000;
        for expected in 2..16 {
            s.learn(ok(), L, after);
            assert_eq!(s.allowed, expected);
        }
        s.learn(ok(), L, after);
        assert_eq!(s.allowed, u32::MAX);
        for _ in 0..30 {
            s.learn(ok(), L, after);
        }
        assert!(!s.forgettable(after), "still warm");
        assert!(s.forgettable(after + WARM_MS));
    }

    #[test]
    fn a_receiver_that_fails_now_and_then_keeps_its_concurrency_and_is_never_paused() {
        let mut s = EndpointState::default();
        // Three failures in ten, in runs of three: a flaky receiver, not a dead one.
        for round in 0..200 {
            for i in 0..10 {
                let answer = if i < 3 { timeout() } else { ok() };
                assert_eq!(s.learn(answer, L, NOW + round), None);
            }
        }
        assert!(s.allowed >= 8, "{}", s.allowed);
    }

    #[test]
    fn a_fresh_endpoint_starts_small_and_grows_to_its_cap_with_each_success() {
        let mut s = EndpointState::default();
        assert_eq!(s.allowed, FIRST_ALLOWED);
        // A receiver that never answers learns nothing before its timeouts: it stays small.
        s.in_flight = FIRST_ALLOWED;
        assert_eq!(s.allowed, FIRST_ALLOWED);
        for expected in FIRST_ALLOWED + 1..L.cap {
            s.learn(ok(), L, NOW);
            assert_eq!(s.allowed, expected);
        }
        s.learn(ok(), L, NOW);
        assert_eq!(s.allowed, u32::MAX, "at its cap: the cap applies");
    }

    #[test]
    fn failures_never_pause_when_set_so() {
        let mut s = EndpointState::default();
        let never = Limits {
            failures_to_pause: 0,
            ..L
        };
        for _ in 0..10 {
            assert_eq!(s.learn(timeout(), never, NOW), None);
        }
        assert!(!s.paused(NOW));
        assert_eq!(s.allowed, 1, "timeouts still shrink what it may hold");
    }

    #[test]
    fn a_full_map_of_ended_holds_never_stops_dispatching() {
        let mut held: std::collections::HashMap<u32, HeldBack> =
            (0..8).map(|i| (i, HeldBack::again(None, NOW))).collect();
        // Running: dispatch waits for the first to end.
        assert_eq!(prune_held(&mut held, NOW, 8), Err(NOW + 1_000));
        // Ended a moment ago (well within the time they are remembered): dispatch goes on, and
        // the ended ones make room.
        assert_eq!(prune_held(&mut held, NOW + 1_001, 8), Ok(()));
        assert!(held.is_empty());
        // Under the bound, ended holds are kept (for their count of failures) until forgotten.
        let mut held: std::collections::HashMap<u32, HeldBack> =
            [(1, HeldBack::again(None, NOW))].into();
        assert_eq!(prune_held(&mut held, NOW + 1_001, 8), Ok(()));
        assert_eq!(held.len(), 1);
        assert_eq!(
            prune_held(&mut held, NOW + 1_000 + HELD_BACK_FORGET_MS, 8),
            Ok(())
        );
        assert!(held.is_empty());
    }

    #[test]
    fn holds_grow_and_are_bounded() {
        let first = HeldBack::again(None, NOW);
        assert_eq!(first.until, NOW + 1_000);
        let second = HeldBack::again(Some(first), NOW);
        assert_eq!(second.until, NOW + 2_000);
        let mut h = second;
        for _ in 0..40 {
            h = HeldBack::again(Some(h), NOW);
        }
        assert_eq!(h.until, NOW + 60_000);
    }
}
