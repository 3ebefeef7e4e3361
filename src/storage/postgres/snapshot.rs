//! Reads only a snapshot answers on PostgreSQL: the dashboard's aggregates, the queue listing,
//! the repair pass's scans and dispatch's batched loads: the same operations as
//! `redb/stats.rs`, `redb/check.rs` and `redb/reads.rs`'s `DispatchReads`.

#![allow(unused_imports)]

use super::session::{Txn, big, bytes_of, id, id_of, lane, n, n_of, u64_of};
use crate::model::*;
use crate::storage::*;

use super::not_yet;

impl Snapshot for Txn<'_> {
    fn stray_parked(
        &self,
        _from: Option<EndpointId>,
        _endpoints_max: usize,
    ) -> Result<StrayParked, StoreError> {
        Err(not_yet("stray_parked"))
    }

    fn stray_queued(
        &self,
        _from: QueueCursor,
        _entries_max: usize,
    ) -> Result<(Vec<DeliveryId>, Option<QueueCursor>), StoreError> {
        Err(not_yet("stray_queued"))
    }

    fn hourly_counts(&self, _from: u64, _to: u64) -> Result<Vec<HourCounts>, StoreError> {
        Err(not_yet("hourly_counts"))
    }

    fn latency_histogram(&self, _from: u64, _to: u64) -> Result<Vec<u64>, StoreError> {
        Err(not_yet("latency_histogram"))
    }

    fn endpoint_outcomes(&self, _from: u64, _to: u64) -> Result<Vec<EndpointOutcomes>, StoreError> {
        Err(not_yet("endpoint_outcomes"))
    }

    fn endpoint_hourly(
        &self,
        _endpoint: EndpointId,
        _from: u64,
        _to: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        Err(not_yet("endpoint_hourly"))
    }

    fn message_app(&self, _msg: MessageId) -> Result<Option<AppId>, StoreError> {
        Err(not_yet("message_app"))
    }

    fn endpoint_recent_deliveries(
        &self,
        _endpoint: EndpointId,
        _limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        Err(not_yet("endpoint_recent_deliveries"))
    }

    fn endpoint_last_failure(
        &self,
        _endpoint: EndpointId,
        _from: u64,
        _to: u64,
    ) -> Result<Option<(MessageId, AttemptId)>, StoreError> {
        Err(not_yet("endpoint_last_failure"))
    }

    fn app_daily(&self, _app: AppId, _day: u64) -> Result<(u64, u64), StoreError> {
        Err(not_yet("app_daily"))
    }

    fn queue_page(
        &self,
        _q: &QueueQuery,
        _keep_message: &dyn Fn(&Message) -> bool,
        _keep: &dyn Fn(&Message, Option<&Delivery>) -> bool,
    ) -> Result<QueuePage, StoreError> {
        Err(not_yet("queue_page"))
    }

    fn dispatch_loads(&self) -> Result<Box<dyn DispatchLoads + '_>, StoreError> {
        Ok(Box::new(Loads {
            session: self,
            endpoints: Default::default(),
        }))
    }
}

/// Dispatch's loads for one scan, remembering the endpoints decoded.
pub(super) struct Loads<'s> {
    session: &'s Txn<'s>,
    endpoints: std::collections::HashMap<EndpointId, Option<std::sync::Arc<Endpoint>>>,
}

impl DispatchLoads for Loads<'_> {
    fn delivery(&self, _id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Err(not_yet("delivery"))
    }

    fn message(&self, _app: AppId, _id: MessageId) -> Result<Option<Message>, StoreError> {
        Err(not_yet("message"))
    }

    fn endpoint(
        &mut self,
        _id: EndpointId,
    ) -> Result<Option<std::sync::Arc<Endpoint>>, StoreError> {
        Err(not_yet("endpoint"))
    }
}
