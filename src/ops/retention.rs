//! The retention task: removes expired messages, attempts and idempotency answers in bounded
//! batches, so the database stays flat under steady traffic without stalling ingest.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::model::now_micros;
use crate::storage::Store;

/// Messages removed per write: small enough that ingest waiting behind it waits milliseconds.
const BATCH: usize = 500;
/// Pause between batches while there is work, and between rounds when there is none.
const BUSY_PAUSE: Duration = Duration::from_millis(50);
const IDLE_PAUSE: Duration = Duration::from_secs(60);

pub(super) async fn run(
    store: Store,
    config: Arc<Config>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = config;
    let (mut from, mut idem_from) = (None, None);
    loop {
        let now = now_micros();
        let (f, i) = (from, idem_from);
        let pause = match store
            .write(move |w| w.purge_expired(now, f, i, BATCH))
            .await
        {
            Ok(p) => {
                if p.messages + p.idempotency > 0 {
                    tracing::debug!(
                        messages = p.messages,
                        attempts = p.attempts,
                        idempotency = p.idempotency,
                        "retention removed history"
                    );
                }
                from = p.next_message;
                idem_from = p.next_idempotency;
                if from.is_some() || idem_from.is_some() {
                    BUSY_PAUSE
                } else {
                    IDLE_PAUSE
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention batch failed; will retry");
                IDLE_PAUSE
            }
        };
        if super::pause(&mut stop, pause).await {
            return;
        }
    }
}
