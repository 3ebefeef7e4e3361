//! What the dashboard's overview and list pages summarise: volumes and outcomes per hour,
//! success rate, attempt latency percentiles, queue depth, failing endpoints, and per
//! application and per endpoint activity. Everything is read from the aggregate views that
//! storage keeps inside the ingest and attempt commits, never by scanning history.

use super::{Result, Service, find_app, find_endpoint, require_admin};
use crate::model::*;
use crate::storage::{EndpointOutcomes, HourCounts, LATENCY_BUCKETS_MS, day_of, hour_of};

/// Hours the overview looks back.
pub const OVERVIEW_HOURS: u64 = 24;
/// Failing endpoints the overview lists.
pub const FAILING_ENDPOINTS_MAX: usize = 5;

#[derive(Clone, Debug)]
pub struct Overview {
    /// One entry per hour, oldest first, the current hour last.
    pub hours: Vec<HourCounts>,
    pub totals: HourCounts,
    /// Share of attempts that succeeded, 0..=1; `None` without attempts.
    pub success_rate: Option<f64>,
    /// Attempt duration percentiles in milliseconds (estimated from the histogram).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Pending deliveries per lane: high, normal, low.
    pub queue_depth: [(Priority, u64); 3],
    pub failing: Vec<FailingEndpoint>,
}

/// An endpoint with failed attempts in the window, worst first.
#[derive(Clone, Debug)]
pub struct FailingEndpoint {
    pub outcomes: EndpointOutcomes,
    pub endpoint: Option<Endpoint>,
    pub app: Option<App>,
    pub last_failure: Option<Attempt>,
}

/// One endpoint's last 24 hours.
#[derive(Clone, Debug, Default)]
pub struct EndpointActivity {
    /// (succeeded, failed) attempts per hour, oldest first, the current hour last.
    pub hours: Vec<(u64, u64)>,
    /// The newest failed attempt of those hours.
    pub last_failure: Option<Attempt>,
}

/// Activity of one application today.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppActivity {
    pub endpoints: u64,
    pub messages_today: u64,
    pub failed_today: u64,
}

/// The `p` quantile (0..=1) of a histogram over `LATENCY_BUCKETS_MS`, interpolated linearly
/// inside the bucket it falls in; the open last bucket answers its lower bound.
pub fn percentile(histogram: &[u64], p: f64) -> Option<f64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut below = 0u64;
    for (i, &count) in histogram.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let lower = if i == 0 { 0 } else { LATENCY_BUCKETS_MS[i - 1] } as f64;
            let upper = LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX);
            if upper == u64::MAX {
                return Some(lower);
            }
            let within = (rank - below as f64) / count as f64;
            return Some(lower + (upper as f64 - lower) * within);
        }
        below += count;
    }
    None
}

impl Service {
    /// The last 24 hours across every application (admin only).
    pub async fn overview(&self, caller: Caller) -> Result<Overview> {
        require_admin(caller)?;
        let now_hour = hour_of(now_micros());
        let from = now_hour + 1 - OVERVIEW_HOURS;
        self.read(move |r| {
            let hours = r.hourly_counts(from, now_hour)?;
            let mut totals = HourCounts::default();
            for h in &hours {
                totals.messages += h.messages;
                totals.deliveries += h.deliveries;
                totals.attempts_succeeded += h.attempts_succeeded;
                totals.attempts_failed += h.attempts_failed;
                totals.deliveries_failed += h.deliveries_failed;
            }
            let attempts = totals.attempts_succeeded + totals.attempts_failed;
            let success_rate =
                (attempts > 0).then(|| totals.attempts_succeeded as f64 / attempts as f64);
            let histogram = r.latency_histogram(from, now_hour)?;
            let queue_depth = Priority::ALL.map(|lane| (lane, r.queue_depth(lane).unwrap_or(0)));
            let mut outcomes: Vec<EndpointOutcomes> = r
                .endpoint_outcomes(from, now_hour)?
                .into_iter()
                .filter(|o| o.failed > 0)
                .collect();
            outcomes.sort_by(|a, b| {
                b.failed
                    .cmp(&a.failed)
                    .then(a.succeeded.cmp(&b.succeeded))
                    .then(a.endpoint_id.cmp(&b.endpoint_id))
            });
            outcomes.truncate(FAILING_ENDPOINTS_MAX);
            let mut failing = Vec::with_capacity(outcomes.len());
            for o in outcomes {
                let endpoint = r.endpoint(o.endpoint_id)?;
                let app = match &endpoint {
                    Some(ep) => r.app(ep.app_id)?,
                    None => None,
                };
                let last_failure = match o.last_failure {
                    Some((msg, attempt)) => r.attempt(msg, attempt)?,
                    None => None,
                };
                failing.push(FailingEndpoint {
                    outcomes: o,
                    endpoint,
                    app,
                    last_failure,
                });
            }
            Ok(Overview {
                hours,
                totals,
                success_rate,
                p50_ms: percentile(&histogram, 0.5),
                p95_ms: percentile(&histogram, 0.95),
                queue_depth,
                failing,
            })
        })
        .await
        .map_err(Into::into)
    }

    /// Endpoint counts and today's messages and failures of some applications the caller may
    /// see (others are answered as zeros).
    pub async fn app_activity(&self, caller: Caller, apps: Vec<AppId>) -> Result<Vec<AppActivity>> {
        let today = day_of(now_micros());
        self.read(move |r| {
            let mut out = Vec::with_capacity(apps.len());
            for app in apps {
                if !caller.may_access(app) {
                    out.push(AppActivity::default());
                    continue;
                }
                let (messages_today, failed_today) = r.app_daily(app, today)?;
                out.push(AppActivity {
                    endpoints: r.app_endpoint_count(app)?,
                    messages_today,
                    failed_today,
                });
            }
            Ok(out)
        })
        .await
        .map_err(Into::into)
    }

    /// One endpoint's attempts per hour over the last 24 hours, and its newest failure.
    pub async fn endpoint_activity(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
    ) -> Result<EndpointActivity> {
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        let now_hour = hour_of(now_micros());
        let from = now_hour + 1 - OVERVIEW_HOURS;
        self.read(move |r| {
            let ep = find_app(r, caller, &app).and_then(|a| find_endpoint(r, a.id, &endpoint))?;
            let last_failure = match r.endpoint_last_failure(ep.id, from, now_hour)? {
                Some((msg, attempt)) => r.attempt(msg, attempt)?,
                None => None,
            };
            Ok(EndpointActivity {
                hours: r.endpoint_hourly(ep.id, from, now_hour)?,
                last_failure,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(points: &[(u64, u64)]) -> Vec<u64> {
        let mut h = vec![0; LATENCY_BUCKETS_MS.len()];
        for &(ms, n) in points {
            h[crate::storage::LATENCY_BUCKETS_MS
                .iter()
                .position(|&b| ms <= b)
                .unwrap()] += n;
        }
        h
    }

    #[test]
    fn percentiles_fall_in_the_right_bucket() {
        assert_eq!(percentile(&histogram(&[]), 0.5), None);
        // 90 fast attempts (about 10 ms), 10 slow ones (about 1 s).
        let h = histogram(&[(10, 90), (900, 10)]);
        let p50 = percentile(&h, 0.5).unwrap();
        assert!((7.0..=10.0).contains(&p50), "{p50}");
        let p95 = percentile(&h, 0.95).unwrap();
        assert!((700.0..=1000.0).contains(&p95), "{p95}");
        let p100 = percentile(&h, 1.0).unwrap();
        assert_eq!(p100, 1000.0);
    }

    #[test]
    fn the_open_last_bucket_answers_its_lower_bound() {
        let h = histogram(&[(60_000, 3)]);
        assert_eq!(percentile(&h, 0.5), Some(10_000.0));
    }
}
