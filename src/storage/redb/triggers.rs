//! Mutations of triggers: an application's routing rules.

use super::codec::encode;
use super::tables::TRIGGERS;
use super::{StoreError, Writer};
use crate::model::{AppId, EndpointId, Trigger, TriggerId};

impl Writer<'_> {
    /// Inserts or replaces a trigger.
    pub fn put_trigger(&mut self, trigger: &Trigger) -> Result<(), StoreError> {
        self.table_mut(TRIGGERS)?
            .insert((trigger.app_id.0, trigger.id.0), encode(trigger).as_slice())?;
        Ok(())
    }

    pub fn delete_trigger(&mut self, app: AppId, id: TriggerId) -> Result<(), StoreError> {
        self.table_mut(TRIGGERS)?.remove((app.0, id.0))?;
        Ok(())
    }

    /// Removes every trigger that calls `endpoint` (when the endpoint is deleted).
    pub fn delete_endpoint_triggers(
        &mut self,
        app: AppId,
        endpoint: EndpointId,
    ) -> Result<(), StoreError> {
        use super::reads::TxRead;
        let doomed: Vec<TriggerId> = self
            .app_triggers(app)?
            .into_iter()
            .filter(|t| t.endpoint_id == endpoint)
            .map(|t| t.id)
            .collect();
        for id in doomed {
            self.delete_trigger(app, id)?;
        }
        Ok(())
    }
}
