//! Hooks that keep aggregate views up to date inside the same commits as the data they
//! summarise: called by `ingest_message` and `record_attempt`, so the dashboard's overview and
//! queue pages read a few rows instead of scanning history.
//!
//! Must never: fail a write for a reason of its own (they only add to counters and indexes).

use super::{StoreError, Writer};
use crate::model::{Attempt, Delivery, Message};

impl Writer<'_> {
    /// Called once per stored message, after its row is written.
    pub(super) fn note_ingest(&mut self, _msg: &Message, _deliveries: usize) -> Result<(), StoreError> {
        Ok(())
    }

    /// Called once per recorded attempt, with the delivery as it now stands.
    pub(super) fn note_attempt(&mut self, _attempt: &Attempt, _delivery: &Delivery) -> Result<(), StoreError> {
        Ok(())
    }
}
