//! Herald's metrics, exposed at `GET /metrics` in the Prometheus text format.
//!
//! One `Metrics` value (in an `Arc`) is shared by the parts that observe: the service counts
//! ingested messages, the delivery side counts attempts by outcome and their latency, the
//! writer reports each batch's size and commit time (and the jobs that panicked or made it run a
//! batch again), and the scrape itself reads the queue depth per lane, the deliveries in
//! flight and the age of the writer's and the scheduler's heartbeats (`heartbeat.rs`, kept
//! here so every part that observes already holds it). The repair pass (`ops/repair.rs`)
//! counts what it mends.
//!
//! Owns: metric names and buckets. Must never: be a global (several servers run in one test
//! process), or block an observer (every observation is a few atomic operations).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::heartbeat::{Heartbeats, Part};

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub messages_ingested: Counter,
    attempts: Family<Labels, Counter>,
    deliveries_finished: Family<Labels, Counter>,
    attempt_seconds: Histogram,
    writer_batch_jobs: Histogram,
    writer_commit_seconds: Histogram,
    writer_jobs_panicked: Counter,
    writer_batch_reruns: Counter,
    queue_depth: Family<Labels, Gauge>,
    in_flight: Gauge,
    in_flight_now: AtomicI64,
    /// The writer's and the scheduler's liveness, read by health, the watchdog and the scrape.
    pub heartbeats: Arc<Heartbeats>,
    heartbeat_age: Family<Labels, Gauge<f64, AtomicU64>>,
    repaired: Family<Labels, Counter>,
    repair_passes: Counter,
    delivery_faults: Family<Labels, Counter>,
    endpoint_pauses: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("herald");
        let messages_ingested = Counter::default();
        registry.register(
            "messages_ingested",
            "Messages accepted and stored",
            messages_ingested.clone(),
        );
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "attempts",
            "Delivery attempts by outcome (success, or the failure's kind)",
            attempts.clone(),
        );
        let deliveries_finished = Family::<Labels, Counter>::default();
        registry.register(
            "deliveries_finished",
            "Deliveries that ended, by outcome",
            deliveries_finished.clone(),
        );
        // 1 ms to ~33 s.
        let attempt_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "attempt_duration_seconds",
            "Time from request to response of an attempt",
            attempt_seconds.clone(),
        );
        // 1 to 4096 jobs per commit.
        let writer_batch_jobs = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "writer_batch_jobs",
            "Write requests folded into one commit",
            writer_batch_jobs.clone(),
        );
        // 50 us to ~0.8 s.
        let writer_commit_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 15));
        registry.register(
            "writer_commit_seconds",
            "Time to run and durably commit one write batch",
            writer_commit_seconds.clone(),
        );
        let writer_jobs_panicked = Counter::default();
        registry.register(
            "writer_jobs_panicked",
            "Write jobs that panicked: each failed alone, nothing of it committed",
            writer_jobs_panicked.clone(),
        );
        let writer_batch_reruns = Counter::default();
        registry.register(
            "writer_batch_reruns",
            "Write batches run again without a job that failed after writing or panicked",
            writer_batch_reruns.clone(),
        );
        let queue_depth = Family::<Labels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting in each priority lane",
            queue_depth.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "deliveries_in_flight",
            "Attempts being made right now",
            in_flight.clone(),
        );
        let heartbeat_age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "heartbeat_age_seconds",
            "Time since the part (writer, scheduler) last went round its loop",
            heartbeat_age.clone(),
        );
        let repaired = Family::<Labels, Counter>::default();
        registry.register(
            "repaired_deliveries",
            "Deliveries the repair pass mended, by what it did (released: parked on a ready \
             endpoint, queued again; cancelled: pending for a deleted endpoint)",
            repaired.clone(),
        );
        let repair_passes = Counter::default();
        registry.register(
            "repair_passes",
            "Complete passes of the repair over the parked deliveries and the queue",
            repair_passes.clone(),
        );
        let delivery_faults = Family::<Labels, Counter>::default();
        registry.register(
            "delivery_faults",
            "Deliveries the engine could not carry through, by kind (unrecorded: the attempt \
             could not be committed, held back; panicked: the attempt panicked, held back; \
             dead_lettered: the queue entry could not be read, moved to failed with an alert; \
             stale_entry: a queue entry with no pending delivery behind it, removed)",
            delivery_faults.clone(),
        );
        let endpoint_pauses = Family::<Labels, Counter>::default();
        registry.register(
            "endpoint_pauses",
            "Times an endpoint was paused as a whole, by reason (retry_after: a 429 or 503 \
             with Retry-After; failures: a run of timeouts or connection failures)",
            endpoint_pauses.clone(),
        );
        Metrics {
            registry,
            messages_ingested,
            attempts,
            deliveries_finished,
            attempt_seconds,
            writer_batch_jobs,
            writer_commit_seconds,
            writer_jobs_panicked,
            writer_batch_reruns,
            queue_depth,
            in_flight,
            in_flight_now: AtomicI64::new(0),
            heartbeats: Arc::default(),
            heartbeat_age,
            repaired,
            repair_passes,
            delivery_faults,
            endpoint_pauses,
        }
    }

    pub fn attempt(&self, outcome: &str, duration: Duration) {
        self.attempts
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
        self.attempt_seconds.observe(duration.as_secs_f64());
    }

    pub fn delivery_finished(&self, outcome: &str) {
        self.deliveries_finished
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }

    pub fn writer_batch(&self, jobs: usize, took: Duration) {
        self.writer_batch_jobs.observe(jobs as f64);
        self.writer_commit_seconds.observe(took.as_secs_f64());
    }

    pub fn writer_job_panicked(&self) {
        self.writer_jobs_panicked.inc();
    }

    pub fn writer_batch_rerun(&self) {
        self.writer_batch_reruns.inc();
    }

    pub fn in_flight_change(&self, delta: i64) {
        self.in_flight_now.fetch_add(delta, Ordering::Relaxed);
    }

    /// The repair pass mended `n` deliveries: `released` or `cancelled`.
    pub fn repaired(&self, what: &str, n: usize) {
        if n > 0 {
            self.repaired
                .get_or_create(&vec![("action".into(), what.into())])
                .inc_by(n as u64);
        }
    }

    /// A delivery fault (see the `delivery_faults` help text for the kinds).
    pub fn delivery_fault(&self, kind: &str) {
        self.delivery_faults
            .get_or_create(&vec![("kind".into(), kind.into())])
            .inc();
    }

    pub fn endpoint_paused(&self, reason: &str) {
        self.endpoint_pauses
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    pub fn repair_pass_done(&self) {
        self.repair_passes.inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, queue_depths: &[(&str, u64)]) -> String {
        for (lane, depth) in queue_depths {
            self.queue_depth
                .get_or_create(&vec![("lane".into(), (*lane).into())])
                .set(*depth as i64);
        }
        self.in_flight
            .set(self.in_flight_now.load(Ordering::Relaxed));
        for part in Part::ALL {
            self.heartbeat_age
                .get_or_create(&vec![("part".into(), part.name().into())])
                .set(self.heartbeats.age(part).as_secs_f64());
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_observed() {
        let m = Metrics::new();
        m.messages_ingested.inc_by(3);
        m.attempt("success", Duration::from_millis(4));
        m.attempt("status", Duration::from_millis(40));
        m.writer_batch(17, Duration::from_micros(300));
        m.in_flight_change(2);
        m.writer_job_panicked();
        let text = m.render(&[("high", 5), ("normal", 0), ("low", 1)]);
        assert!(text.contains("herald_messages_ingested_total 3"), "{text}");
        assert!(
            text.contains("herald_attempts_total{outcome=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_queue_depth{lane=\"high\"} 5"),
            "{text}"
        );
        assert!(text.contains("herald_deliveries_in_flight 2"), "{text}");
        assert!(text.contains("herald_writer_batch_jobs_count 1"), "{text}");
        assert!(
            text.contains("herald_writer_jobs_panicked_total 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_writer_batch_reruns_total 0"),
            "{text}"
        );
        assert!(
            text.contains("herald_heartbeat_age_seconds{part=\"writer\"}"),
            "{text}"
        );
        assert!(
            text.contains("herald_heartbeat_age_seconds{part=\"scheduler\"}"),
            "{text}"
        );
        assert!(
            text.contains("herald_attempt_duration_seconds_bucket"),
            "{text}"
        );
    }
}
