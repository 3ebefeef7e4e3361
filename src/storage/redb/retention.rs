//! Retention: removing history past its time, in bounded batches.
//!
//! A message is kept for its `retention_days`; after that it is removed with everything that
//! hangs off it (deliveries, attempts, the indexes that point at them), unless a delivery of it
//! is still pending. Idempotency answers are removed once expired. Each call does a bounded
//! amount of work, so the writer (and ingest behind it) never waits long for it; the caller
//! repeats until a batch finds nothing more.

use crate::storage::counters::RETENTION_DAYS_MIN;
use redb::ReadableTable;

use super::codec::{IdempotentResponse, decode};
use super::reads::TxRead;
use super::reads::keyed_entry;
use super::tables::*;
use super::{StoreError, Writer};
use crate::model::*;

/// What one purge batch removed, and where the next batch should start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    pub attempts: u64,
    pub idempotency: u64,
    /// Where the next message batch starts (`None`: back to the oldest).
    pub next_message: Option<u128>,
    /// Where the next idempotency batch starts.
    pub next_idempotency: Option<[u8; 32]>,
}

impl Writer<'_> {
    /// Removes up to `limit` expired messages (looking at no more than `limit * 4`), starting
    /// at `from` in time order, and up to `limit` expired idempotency answers starting at
    /// `idem_from`.
    pub fn purge_expired(
        &mut self,
        now: Micros,
        from: Option<u128>,
        idem_from: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let mut out = Purged::default();
        // Read first (the writer's contract), then write.
        let youngest_examined =
            id_floor_at_millis(((now / 1000) - RETENTION_DAYS_MIN * 86_400_000).max(0) as u64);
        let mut doomed: Vec<Message> = Vec::new();
        {
            let timeline = self.tx.open_table(MESSAGE_TIMELINE)?;
            let start = from.unwrap_or(0);
            let mut examined = 0;
            for e in timeline.range(start..youngest_examined.max(start))? {
                let (k, app) = e?;
                let (msg_id, app_id) = (k.value(), app.value());
                examined += 1;
                out.next_message = Some(msg_id.saturating_add(1));
                if let Some(m) = self.message(AppId(app_id), MessageId(msg_id))? {
                    let expires = m.retained_until();
                    let settled = self
                        .message_deliveries(m.id)?
                        .iter()
                        .all(|d| d.state != DeliveryState::Pending);
                    if expires <= now && settled {
                        doomed.push(m);
                    }
                }
                if doomed.len() >= limit || examined >= limit * 4 {
                    break;
                }
            }
            if examined < limit * 4 && doomed.len() < limit {
                out.next_message = None; // reached the young end: start over next time
            }
        }
        let mut idem_doomed: Vec<[u8; 32]> = Vec::new();
        {
            let t = self.tx.open_table(IDEMPOTENCY)?;
            let start = idem_from.unwrap_or([0; 32]);
            let mut examined = 0;
            let now_ms = (now / 1000).max(0) as u64;
            for e in t.range::<&[u8; 32]>(&start..)? {
                let (k, v) = e?;
                let key = *k.value();
                examined += 1;
                out.next_idempotency = Some(key);
                if decode::<IdempotentResponse>(v.value())?.expires_ms <= now_ms {
                    idem_doomed.push(key);
                }
                if examined >= limit * 4 {
                    break;
                }
            }
            if examined < limit * 4 {
                out.next_idempotency = None;
            }
        }
        for m in &doomed {
            out.attempts += self.remove_message(m)?;
            out.messages += 1;
        }
        for key in &idem_doomed {
            self.table_mut(IDEMPOTENCY)?.remove(key)?;
            out.idempotency += 1;
        }
        Ok(out)
    }

    /// Removes a message with its deliveries, attempts and every index entry pointing at them;
    /// answers how many attempts went.
    fn remove_message(&mut self, m: &Message) -> Result<u64, StoreError> {
        let deliveries = self.message_deliveries(m.id)?;
        let attempts: Vec<(u128, EndpointId)> = {
            let t = self.tx.open_table(ATTEMPTS)?;
            let mut v = Vec::new();
            for e in t.range((m.id.0, 0)..=(m.id.0, u128::MAX))? {
                let a: Attempt = keyed_entry(e)?;
                v.push((a.id.0, a.endpoint_id));
            }
            v
        };
        {
            let mut t = self.table_mut(ATTEMPTS)?;
            for (id, _) in &attempts {
                t.remove((m.id.0, *id))?;
            }
        }
        {
            let mut t = self.table_mut(ENDPOINT_ATTEMPTS)?;
            for (id, ep) in &attempts {
                t.remove((ep.0, *id))?;
            }
        }
        {
            let mut t = self.table_mut(DELIVERIES)?;
            let mut by_endpoint = self.table_mut(ENDPOINT_DELIVERIES)?;
            let mut failed = self.table_mut(FAILED_DELIVERIES)?;
            for d in &deliveries {
                t.remove((m.id.0, d.id.n))?;
                by_endpoint.remove((d.endpoint_id.0, m.id.0))?;
                failed.remove((m.id.0, d.id.n))?;
            }
        }
        if let Some(event_id) = &m.event_id {
            self.table_mut(MESSAGE_EVENT_IDS)?
                .remove((m.app_id.0, event_id.as_str()))?;
        }
        self.table_mut(MESSAGES)?.remove((m.app_id.0, m.id.0))?;
        self.table_mut(MESSAGE_TIMELINE)?.remove(m.id.0)?;
        Ok(attempts.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{AttemptOutcome, RememberedAnswer, Store, StoreSettings};

    const DAY_US: i64 = 86_400_000_000;

    fn message(app: AppId, retention_days: u16) -> Message {
        Message {
            event_id: Some(format!("e-{}", ulid::Ulid::new())),
            retention_days,
            ..Message::plain(MessageId(0), app, "a.b")
        }
    }

    #[tokio::test]
    async fn expired_history_goes_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreSettings::for_tests();
        let path = dir.path().join("r.redb");
        let store = crate::storage::Store::open(&path, &settings).unwrap();
        let (app, ep) = (AppId(1), EndpointId(2));
        store
            .write(move |w| {
                w.insert_app(&App {
                    id: app,
                    uid: None,
                    name: "a".into(),
                    throttle_rate: None,
                    metadata: Default::default(),
                    created_at: 0,
                    updated_at: 0,
                })?;
                w.insert_endpoint(&Endpoint::plain(ep, app, "https://example.com"))?;
                w.put_idempotent_response(
                    &[7; 32],
                    &IdempotentResponse {
                        expires_ms: 1,
                        answer: RememberedAnswer::Sent {
                            status: 200,
                            body: vec![],
                        },
                    },
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let route = move |_: &Message, _: &[Endpoint], _: &[Trigger]| {
            vec![NewDelivery::plain(ep, Priority::Normal)]
        };
        // Two short-lived messages delivered, one long-lived delivered, one short-lived still pending.
        let mut delivered = Vec::new();
        for days in [1u16, 1, 90] {
            let (m, _) = store
                .write(move |w| w.ingest_message(message(app, days), &route))
                .await
                .unwrap();
            let attempt = Attempt {
                id: AttemptId(0),
                delivery_id: DeliveryId { msg: m.id, n: 0 },
                msg_id: m.id,
                app_id: app,
                endpoint_id: ep,
                url: String::new(),
                status_code: 200,
                duration_ms: 1,
                error: None,
                response: String::new(),
                trigger_type: TriggerType::Scheduled,
                created_at: now_micros(),
            };
            store
                .write(move |w| w.record_attempt(attempt.clone(), AttemptOutcome::Succeeded))
                .await
                .unwrap();
            delivered.push(m);
        }
        let (pending, _) = store
            .write(move |w| w.ingest_message(message(app, 1), &route))
            .await
            .unwrap();

        let later = now_micros() + 2 * DAY_US;
        let purged = store
            .write(move |w| w.purge_expired(later, None, None, 100))
            .await
            .unwrap();
        assert_eq!(
            (purged.messages, purged.attempts, purged.idempotency),
            (2, 2, 1)
        );
        assert_eq!(purged.next_message, None, "everything examined");
        let (short, long, pend) = (delivered[0].id, delivered[2].id, pending.id);
        let (gone, kept, still) = store
            .read(move |r| {
                Ok((
                    r.message(app, short)?,
                    r.message(app, long)?,
                    r.message(app, pend)?,
                ))
            })
            .await
            .unwrap();
        assert!(gone.is_none());
        assert!(kept.is_some(), "90 days of retention are kept");
        assert!(still.is_some(), "a pending delivery keeps its message");
        let event_id = delivered[0].event_id.clone().unwrap();
        assert_eq!(
            store
                .read(move |r| r.message_id_by_event_id(app, &event_id))
                .await
                .unwrap(),
            None
        );
        store.close().await;
        Store::check(&path).unwrap();
    }
}
