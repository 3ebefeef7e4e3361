//! Background upkeep beside the delivery engine: retention, the repair pass (stranded parked
//! and pending deliveries) and operational webhooks.
//!
//! Each task works in bounded batches through the one writer, sleeps between rounds, and
//! stops when the shutdown future resolves.
//!
//! Owns: when upkeep runs. Must never: hold the writer for long (every batch is bounded), or
//! touch storage except through the store's typed operations.

mod repair;
mod retention;
pub(crate) mod webhooks;

use std::sync::Arc;

use crate::config::Config;
use crate::delivery::Outbound;
use crate::metrics::Metrics;
use crate::storage::Store;

/// Starts every upkeep task; they end when `stop` turns true.
pub fn spawn(
    store: Store,
    config: Arc<Config>,
    outbound: Arc<Outbound>,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(retention::run(store.clone(), config.clone(), stop.clone())),
        tokio::spawn(repair::run(store.clone(), metrics, stop.clone())),
    ];
    if config.operational_webhook_url.is_some() {
        tasks.push(tokio::spawn(webhooks::run(store, config, outbound, stop)));
    }
    tasks
}

/// Sleeps for `d`, or less when `stop` turns true; answers whether to stop.
async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, d: std::time::Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}
