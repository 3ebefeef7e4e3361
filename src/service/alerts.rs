//! Alerts: deliveries that used every attempt and endpoints Herald disabled, newest first,
//! and their acknowledgement by an operator.

use super::{Result, Service, ServiceError};
use crate::model::*;

/// Alerts one listing looks at, so a page stays cheap however many there are.
pub const ALERTS_SCAN_MAX: usize = 5_000;
/// Newest alerts the open count looks at (every dashboard page shows it).
pub const OPEN_COUNT_SCAN_MAX: usize = 1_000;

/// A page of alerts; `next` continues with older ones.
#[derive(Clone, Debug)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    pub next: Option<AlertId>,
}

impl Service {
    /// Alerts newest first, older than `before`; a scoped caller sees its application's only.
    pub async fn list_alerts(
        &self,
        caller: Caller,
        open_only: bool,
        before: Option<AlertId>,
        limit: usize,
    ) -> Result<AlertPage> {
        let limit = self.limit(&super::ListParams {
            limit: Some(limit),
            iterator: None,
        })?;
        self.read(move |r| {
            let mut alerts = Vec::new();
            let mut cursor = before;
            let mut scanned = 0;
            'scan: while scanned < ALERTS_SCAN_MAX {
                let chunk = r.alerts(500, cursor)?;
                if chunk.is_empty() {
                    break;
                }
                for a in chunk {
                    scanned += 1;
                    cursor = Some(a.id);
                    let visible = caller.may_access(a.app_id);
                    if visible && (!open_only || a.acknowledged_at.is_none()) {
                        alerts.push(a);
                        if alerts.len() > limit {
                            break 'scan;
                        }
                    }
                }
            }
            let more = alerts.len() > limit || scanned >= ALERTS_SCAN_MAX;
            alerts.truncate(limit);
            let next = if more {
                alerts.last().map(|a| a.id).or(cursor)
            } else {
                None
            };
            Ok(AlertPage { alerts, next })
        })
        .await
        .map_err(Into::into)
    }

    /// Open (unacknowledged) alerts among the newest `OPEN_COUNT_SCAN_MAX`.
    pub async fn open_alert_count(&self, caller: Caller) -> Result<usize> {
        self.read(move |r| {
            let all = r.alerts(OPEN_COUNT_SCAN_MAX, None)?;
            Ok(all
                .iter()
                .filter(|a| a.acknowledged_at.is_none() && caller.may_access(a.app_id))
                .count())
        })
        .await
        .map_err(Into::into)
    }

    /// Marks an alert as seen. Acknowledging twice keeps the first time.
    pub async fn acknowledge_alert(&self, caller: Caller, id: &str) -> Result<Alert> {
        let id = AlertId::parse(id).ok_or(ServiceError::NotFound("Alert"))?;
        self.write(move |w| {
            let mut alert = match w.alert(id)? {
                Some(a) if caller.may_access(a.app_id) => a,
                _ => return Err(ServiceError::NotFound("Alert")),
            };
            if alert.acknowledged_at.is_none() {
                alert.acknowledged_at = Some(now_micros());
                w.replace_alert(&alert)?;
            }
            Ok(alert)
        })
        .await
    }
}
