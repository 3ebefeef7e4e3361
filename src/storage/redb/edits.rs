//! Mutations of history records (messages and attempts) made by operators: expunging content.
//! Kept apart from `ops.rs`, whose ingest and attempt paths are the hot ones.

use super::rows::{KeyedRecord, encode_keyed};
use super::tables::*;
use super::{StoreError, Writer};
use crate::model::*;

impl Writer<'_> {
    /// Moves a background task's named position.
    pub fn set_cursor(&mut self, name: &str, position: u128) -> Result<(), StoreError> {
        self.table_mut(CURSORS)?.insert(name, position)?;
        Ok(())
    }

    /// Replaces a stored message (same key), e.g. with its payload removed.
    pub fn replace_message(&mut self, msg: &Message) -> Result<(), StoreError> {
        self.table_mut(MESSAGES)?
            .insert(msg.key(), encode_keyed(msg).as_slice())?;
        Ok(())
    }

    /// Replaces a stored attempt (same key), e.g. with its response body removed.
    pub fn replace_attempt(&mut self, attempt: &Attempt) -> Result<(), StoreError> {
        self.table_mut(ATTEMPTS)?
            .insert(attempt.key(), encode_keyed(attempt).as_slice())?;
        Ok(())
    }
}
