//! How much of the writer's time each application's triggers may take.
//!
//! Conditions and unique keys run in the writer, which every tenant's writes wait for. One
//! message's are held to `routing_budget_ms`, but a tenant sending many messages at once
//! could still fill every batch with its own budget-long evaluations. So each application
//! has a bucket of writer time: it refills at `routing_share_ms` per second up to two
//! messages' budgets, routing draws from it, and while it is empty that application's message
//! creates are refused (429, nothing written): its own traffic waits, no one else's. The small
//! bucket is what keeps other tenants' latency flat: an application can never put more than
//! about two budget-long routings into one batch.
//!
//! Owns: the ledger. Must never: grow with the number of applications beyond those whose
//! bucket is not full (full ones are dropped when the map grows).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::AppId;

/// Entries kept before full buckets are dropped.
const ENTRIES_MAX: usize = 4_096;

pub struct WriterShare {
    /// Microseconds of writer time an application earns per second.
    rate_us: f64,
    /// Most an application may have saved up, in microseconds.
    burst_us: f64,
    buckets: Mutex<HashMap<AppId, (Instant, f64)>>,
}

impl WriterShare {
    pub fn new(share_ms: u64, budget_ms: u64) -> WriterShare {
        WriterShare {
            rate_us: share_ms as f64 * 1000.0,
            burst_us: (2 * budget_ms.max(1)) as f64 * 1000.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, at: &mut (Instant, f64)) {
        let now = Instant::now();
        let earned = now.duration_since(at.0).as_secs_f64() * self.rate_us;
        *at = (now, (at.1 + earned).min(self.burst_us));
    }

    /// Whether the application has no writer time left just now.
    pub fn exhausted(&self, app: AppId) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(&app) {
            Some(bucket) => {
                self.refill(bucket);
                bucket.1 <= 0.0
            }
            None => false,
        }
    }

    /// Draws routing time from the application's bucket (it may go into debt).
    pub fn charge(&self, app: AppId, took: Duration) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= ENTRIES_MAX {
            let full = self.burst_us;
            buckets.retain(|_, (since, balance)| {
                *balance + since.elapsed().as_secs_f64() * self.rate_us < full
            });
        }
        let bucket = buckets
            .entry(app)
            .or_insert((Instant::now(), self.burst_us));
        self.refill(bucket);
        bucket.1 -= took.as_secs_f64() * 1e6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_past_its_share_waits_and_others_do_not() {
        // 100 ms a second, 5 ms a message: a bucket of 10 ms.
        let share = WriterShare::new(100, 5);
        let (a, b) = (AppId(1), AppId(2));
        share.charge(a, Duration::from_millis(5));
        assert!(!share.exhausted(a));
        share.charge(a, Duration::from_millis(6));
        assert!(
            share.exhausted(a),
            "two budget-long routings empty the bucket"
        );
        assert!(!share.exhausted(b));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!share.exhausted(a), "it refills at 100 ms a second");
    }
}
