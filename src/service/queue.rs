//! The webhook queue as operators and tenants browse it: every message and its deliveries,
//! filtered by application, endpoint, event type, state and time, newest first, paged by
//! message id (never an offset); and one message in full, with each delivery's attempts and
//! the request headers they carried.

use std::collections::HashMap;

use super::{Result, Service, ServiceError, find_app, find_endpoint, find_message};
use crate::model::*;
use crate::signing;
use crate::storage::{Cursor, QueueQuery};

/// Index entries one queue page may pass over before answering with what it found (so a
/// filter that matches rarely still answers fast, with a link to look further).
pub const QUEUE_SCAN_MAX: usize = 20_000;
/// Deliveries of an endpoint looked at to count the pending ones.
pub const PENDING_SCAN: usize = 1_000;
/// Most attempts of one message shown on its page.
pub const MESSAGE_ATTEMPTS_MAX: usize = 1_000;

/// Which deliveries to show, by their status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Waiting for an attempt: not tried yet, or failed and retrying.
    Pending,
    /// Failed at least once, with another attempt scheduled.
    Retrying,
    Succeeded,
    /// Failed for good: every attempt was used.
    Failed,
    Cancelled,
    /// Messages that no endpoint was owed.
    NoDestination,
}

impl StateFilter {
    pub const ALL: [StateFilter; 6] = [
        StateFilter::Pending,
        StateFilter::Retrying,
        StateFilter::Succeeded,
        StateFilter::Failed,
        StateFilter::Cancelled,
        StateFilter::NoDestination,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Pending => "pending",
            StateFilter::Retrying => "retrying",
            StateFilter::Succeeded => "succeeded",
            StateFilter::Failed => "failed",
            StateFilter::Cancelled => "cancelled",
            StateFilter::NoDestination => "none",
        }
    }

    pub fn parse(s: &str) -> Option<StateFilter> {
        StateFilter::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn matches(self, delivery: Option<&Delivery>) -> bool {
        let Some(d) = delivery else {
            return self == StateFilter::NoDestination;
        };
        let status = MessageStatus::of_delivery(d);
        match self {
            StateFilter::Pending => {
                matches!(status, MessageStatus::Pending | MessageStatus::Sending)
            }
            StateFilter::Retrying => status == MessageStatus::Sending,
            StateFilter::Succeeded => status == MessageStatus::Success,
            StateFilter::Failed => status == MessageStatus::Fail,
            StateFilter::Cancelled => status == MessageStatus::Canceled,
            StateFilter::NoDestination => false,
        }
    }
}

/// Where a queue page starts: older or newer than a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueCursor {
    Older(MessageId),
    Newer(MessageId),
}

#[derive(Clone, Debug, Default)]
pub struct QueueFilter {
    /// Application id or uid.
    pub app: Option<String>,
    /// Endpoint id (or uid, with `app`).
    pub endpoint: Option<String>,
    pub event_type: Option<String>,
    pub state: Option<StateFilter>,
    pub since: Option<Micros>,
    pub until: Option<Micros>,
    pub cursor: Option<QueueCursor>,
    pub limit: usize,
}

/// One row: a message and one of its deliveries (or none), with what a reader needs to
/// understand it at a glance.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub message: Message,
    pub app: Option<App>,
    pub delivery: Option<Delivery>,
    pub endpoint: Option<Endpoint>,
    pub status: Option<MessageStatus>,
    pub last_attempt: Option<Attempt>,
}

#[derive(Clone, Debug)]
pub struct QueueListing {
    pub items: Vec<QueueItem>,
    pub older: Option<QueueCursor>,
    pub newer: Option<QueueCursor>,
    /// The page stopped after `QUEUE_SCAN_MAX` messages without filling up: there may be more
    /// matches further on (`older`).
    pub scan_capped: bool,
}

/// A message with everything that happened to it.
#[derive(Clone, Debug)]
pub struct MessageDetail {
    pub message: Message,
    pub app: App,
    pub destinations: Vec<DestinationDetail>,
}

/// One endpoint a message was owed to, with every delivery made to it (routing, resends).
#[derive(Clone, Debug)]
pub struct DestinationDetail {
    pub endpoint_id: EndpointId,
    /// `None` once the endpoint was deleted.
    pub endpoint: Option<Endpoint>,
    pub deliveries: Vec<DeliveryDetail>,
}

#[derive(Clone, Debug)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub status: MessageStatus,
    /// Oldest first.
    pub attempts: Vec<AttemptDetail>,
}

#[derive(Clone, Debug)]
pub struct AttemptDetail {
    pub attempt: Attempt,
    /// The request's headers as Herald sends them (see `sent_headers`).
    pub request_headers: Vec<(String, String)>,
}

/// How a withheld header value is shown.
pub const MASK: &str = "••••••";

/// The headers of an attempt's request. Herald does not store them per attempt; they are
/// rebuilt from what it does store: the endpoint's custom headers (secret-bearing values
/// masked), the content type, `webhook-id` (the message id), `webhook-timestamp` (the second the
/// request started: the attempt's time less its duration), and the signature of `body` at that
/// second with the keys that were live then. The signing secret is never part of it.
pub fn sent_headers(
    msg: &Message,
    a: &Attempt,
    ep: Option<&Endpoint>,
    body: Option<&SentBody>,
) -> Vec<(String, String)> {
    let started_us = a.created_at - a.duration_ms as i64 * 1000;
    let keys: Vec<&[u8]> = ep
        .map(|ep| ep.live_keys(started_us).collect())
        .unwrap_or_default();
    request_headers(msg, started_us, ep.map(|ep| &ep.headers), &keys, body)
}

/// The body a delivery sends: the payload as posted, or its trigger's template rendered.
#[derive(Clone, Debug)]
pub struct SentBody {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// The body of a delivery, built as the delivery side builds it (with the trigger's current
/// template); `None` when the payload is gone or the template does not render within
/// `limits` by `deadline` (one deadline for a whole page, however many deliveries it shows).
fn sent_body(
    msg: &Message,
    shaping: Option<(&Trigger, &App)>,
    limits: &crate::routing::template::Limits,
    deadline: std::time::Instant,
) -> Option<SentBody> {
    let payload = msg.payload.as_ref()?;
    match shaping {
        None => Some(SentBody {
            bytes: payload.as_bytes().to_vec(),
            content_type: ContentType::Json.mime(),
        }),
        Some((trigger, app)) => {
            let source = trigger.template.as_deref()?;
            let parsed: serde_json::Value =
                serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
            let fields = crate::routing::template::merge_fields(&parsed, msg, app);
            let body = crate::routing::template::body(
                source,
                trigger.content_type,
                &fields,
                limits,
                deadline,
            )
            .ok()?;
            Some(SentBody {
                bytes: body.into_bytes(),
                content_type: trigger.content_type.mime(),
            })
        }
    }
}

fn request_headers(
    msg: &Message,
    started_us: Micros,
    custom: Option<&std::collections::BTreeMap<String, String>>,
    keys: &[&[u8]],
    body: Option<&SentBody>,
) -> Vec<(String, String)> {
    let timestamp = started_us.div_euclid(1_000_000);
    let mut out = Vec::new();
    for (name, value) in custom.into_iter().flatten() {
        let shown = if super::validate::is_sensitive_header(name) {
            MASK.to_string()
        } else {
            value.clone()
        };
        out.push((name.to_ascii_lowercase(), shown));
    }
    out.push((
        "content-type".into(),
        body.map_or(ContentType::Json.mime(), |b| b.content_type)
            .to_string(),
    ));
    out.push(("webhook-id".into(), msg.id.to_string()));
    out.push(("webhook-timestamp".into(), timestamp.to_string()));
    let signature = match body {
        Some(body) if !keys.is_empty() => signing::signature_header(
            keys.iter().copied(),
            &msg.id.to_string(),
            timestamp,
            &body.bytes,
        ),
        _ => "(not available: the payload, the template or the endpoint is gone)".to_string(),
    };
    out.push(("webhook-signature".into(), signature));
    out
}

impl Service {
    /// A page of the webhook queue. A scoped caller sees its application only; naming another
    /// application or its endpoint is `NotFound`.
    pub async fn queue(&self, caller: Caller, filter: QueueFilter) -> Result<QueueListing> {
        let limit = filter.limit.clamp(1, self.config.page_limit_max);
        let ms = |us: Micros| (us.max(0) / 1000) as u64;
        let lo = filter.since.map_or(0, |t| id_floor_at_millis(ms(t)));
        let hi = filter.until.map_or(u128::MAX, |t| {
            id_floor_at_millis(ms(t) + 1).saturating_sub(1)
        });
        if lo > hi {
            return Err(ServiceError::invalid("since", "must be before until"));
        }
        let cursor = match filter.cursor {
            None => Cursor::First,
            Some(QueueCursor::Older(m)) => Cursor::After(m.0),
            Some(QueueCursor::Newer(m)) => Cursor::Before(m.0),
        };
        self.read(move |r| {
            let app = match (&filter.app, caller) {
                (Some(a), _) => match find_app(r, caller, a) {
                    Ok(app) => Some(app.id),
                    Err(e) => return Err(e),
                },
                (None, Caller::App(own)) => Some(own),
                (None, Caller::Admin) => None,
            };
            let endpoint = match &filter.endpoint {
                None => None,
                Some(key) => {
                    let found = match (EndpointId::parse(key), app) {
                        (Some(id), _) => r
                            .endpoint(id)?
                            .filter(|ep| caller.may_access(ep.app_id))
                            .filter(|ep| app.is_none_or(|a| a == ep.app_id)),
                        (None, Some(app)) => find_endpoint(r, app, key).ok(),
                        (None, None) => None,
                    };
                    match found {
                        Some(ep) => Some(ep.id),
                        None => return Err(ServiceError::NotFound("Endpoint")),
                    }
                }
            };
            let query = QueueQuery {
                app,
                endpoint,
                only_failed: filter.state == Some(StateFilter::Failed),
                within: lo..=hi,
                cursor,
                limit,
                scan_max: QUEUE_SCAN_MAX,
            };
            let event_type = filter.event_type.clone();
            let state = filter.state;
            let keep_message = |m: &Message| event_type.as_ref().is_none_or(|t| &m.event_type == t);
            let keep = |_: &Message, d: Option<&Delivery>| {
                state.is_none_or(|s| s.matches(d)) && (endpoint.is_none() || d.is_some())
            };
            let page = r.queue_page(&query, &keep_message, &keep)?;
            let mut apps: HashMap<AppId, Option<App>> = HashMap::new();
            let mut endpoints: HashMap<EndpointId, Option<Endpoint>> = HashMap::new();
            let mut items = Vec::with_capacity(page.rows.len());
            for row in page.rows {
                let app_id = row.message.app_id;
                if let std::collections::hash_map::Entry::Vacant(e) = apps.entry(app_id) {
                    e.insert(r.app(app_id)?);
                }
                let endpoint = match &row.delivery {
                    Some(d) => {
                        if let std::collections::hash_map::Entry::Vacant(e) =
                            endpoints.entry(d.endpoint_id)
                        {
                            e.insert(r.endpoint(d.endpoint_id)?);
                        }
                        endpoints[&d.endpoint_id].clone()
                    }
                    None => None,
                };
                items.push(QueueItem {
                    app: apps[&app_id].clone(),
                    status: row.delivery.as_ref().map(MessageStatus::of_delivery),
                    message: row.message,
                    delivery: row.delivery,
                    endpoint,
                    last_attempt: row.last_attempt,
                });
            }
            Ok(QueueListing {
                items,
                older: page.older.map(|m| QueueCursor::Older(MessageId(m))),
                newer: page.newer.map(|m| QueueCursor::Newer(MessageId(m))),
                scan_capped: page.scan_capped,
            })
        })
        .await
    }

    /// How many of the endpoint's newest `PENDING_SCAN` deliveries are still pending (waiting
    /// or retrying); the flag says the count may be higher (older ones were not looked at).
    pub async fn endpoint_pending(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
    ) -> Result<(usize, bool)> {
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        self.read(move |r| {
            let recent = r.endpoint_recent_deliveries(ep.id, PENDING_SCAN)?;
            let pending = recent
                .iter()
                .filter(|d| d.state == DeliveryState::Pending)
                .count();
            Ok((pending, recent.len() == PENDING_SCAN))
        })
        .await
        .map_err(Into::into)
    }

    /// Finds a message by id across the applications the caller may see, or by eventId
    /// within `app`. Answers its application and the message.
    pub async fn locate_message(
        &self,
        caller: Caller,
        key: &str,
        app: Option<&str>,
    ) -> Result<(App, Message)> {
        let (key, app) = (key.trim().to_string(), app.map(str::to_string));
        self.read(move |r| {
            let app = match (MessageId::parse(&key), app) {
                (Some(id), _) => match r.message_app(id)? {
                    Some(a) => find_app(r, caller, &a.to_string()),
                    None => Err(ServiceError::NotFound("Message")),
                },
                (None, Some(a)) => find_app(r, caller, &a),
                (None, None) => Err(ServiceError::NotFound("Message")),
            };
            Ok(app.and_then(|app| {
                let m = find_message(r, app.id, &key)?;
                Ok((app, m))
            }))
        })
        .await?
    }

    /// One message with every delivery and attempt, grouped by destination endpoint.
    pub async fn message_detail(
        &self,
        caller: Caller,
        app: &str,
        msg: &str,
    ) -> Result<MessageDetail> {
        let (app, msg) = (app.to_string(), msg.to_string());
        let limits = self.config.template_limits();
        self.read(move |r| {
            let deadline = limits.deadline();
            let found =
                find_app(r, caller, &app).and_then(|a| Ok((find_message(r, a.id, &msg)?, a)));
            let (message, app) = found?;
            let attempts = r.message_attempts_upto(message.id, MESSAGE_ATTEMPTS_MAX)?;
            let mut destinations: Vec<DestinationDetail> = Vec::new();
            for d in r.message_deliveries(message.id)? {
                let at = match destinations
                    .iter()
                    .position(|x| x.endpoint_id == d.endpoint_id)
                {
                    Some(i) => i,
                    None => {
                        destinations.push(DestinationDetail {
                            endpoint_id: d.endpoint_id,
                            endpoint: r.endpoint(d.endpoint_id)?,
                            deliveries: Vec::new(),
                        });
                        destinations.len() - 1
                    }
                };
                let dest = &mut destinations[at];
                let trigger = match d.trigger_id {
                    Some(t) => r.trigger(app.id, t)?.filter(|t| t.template.is_some()),
                    None => None,
                };
                let body = sent_body(
                    &message,
                    trigger.as_ref().map(|t| (t, &app)),
                    &limits,
                    deadline,
                );
                let mine = attempts
                    .iter()
                    .filter(|a| a.delivery_id == d.id)
                    .map(|a| AttemptDetail {
                        request_headers: sent_headers(
                            &message,
                            a,
                            dest.endpoint.as_ref(),
                            body.as_ref(),
                        ),
                        attempt: a.clone(),
                    })
                    .collect();
                dest.deliveries.push(DeliveryDetail {
                    status: MessageStatus::of_delivery(&d),
                    delivery: d,
                    attempts: mine,
                });
            }
            Ok(MessageDetail {
                message,
                app,
                destinations,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(state: DeliveryState, attempts: u32) -> Delivery {
        Delivery {
            id: DeliveryId {
                msg: MessageId(1),
                n: 0,
            },
            msg_id: MessageId(1),
            app_id: AppId(1),
            endpoint_id: EndpointId(1),
            priority: Priority::Normal,
            state,
            attempts,
            due_ms: None,
            trigger_type: TriggerType::Scheduled,
            trigger_id: None,
            unique_key: None,
            slot_reserved: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn state_filters_follow_the_delivery_status() {
        let fresh = delivery(DeliveryState::Pending, 0);
        let retrying = delivery(DeliveryState::Pending, 2);
        let failed = delivery(DeliveryState::Failed, 8);
        assert!(StateFilter::Pending.matches(Some(&fresh)));
        assert!(StateFilter::Pending.matches(Some(&retrying)));
        assert!(!StateFilter::Retrying.matches(Some(&fresh)));
        assert!(StateFilter::Retrying.matches(Some(&retrying)));
        assert!(StateFilter::Failed.matches(Some(&failed)));
        assert!(!StateFilter::Succeeded.matches(Some(&failed)));
        assert!(StateFilter::NoDestination.matches(None));
        assert!(!StateFilter::Pending.matches(None));
        for f in StateFilter::ALL {
            assert_eq!(StateFilter::parse(f.as_str()), Some(f));
        }
    }

    #[test]
    fn sent_headers_mask_secrets_and_sign_like_a_delivery() {
        let key = vec![7u8; 24];
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("Authorization".to_string(), "Bearer s3cret".to_string());
        headers.insert("X-Shop".to_string(), "acme".to_string());
        let msg = Message {
            id: MessageId(5),
            app_id: AppId(1),
            event_type: "a".into(),
            event_id: None,
            channels: None,
            payload: Some(r#"{"a":1}"#.into()),
            created_at: 0,
            retention_days: 1,
        };
        let a = Attempt {
            id: AttemptId(1),
            delivery_id: DeliveryId {
                msg: MessageId(5),
                n: 0,
            },
            msg_id: MessageId(5),
            app_id: AppId(1),
            endpoint_id: EndpointId(1),
            url: "https://example.com".into(),
            status_code: 200,
            duration_ms: 250,
            error: None,
            response: String::new(),
            trigger_type: TriggerType::Scheduled,
            created_at: 1_700_000_001_100_000,
        };
        let started = a.created_at - a.duration_ms as i64 * 1000;
        let limits = crate::routing::template::Limits::default();
        let body = sent_body(&msg, None, &limits, limits.deadline()).unwrap();
        let h: HashMap<_, _> = request_headers(
            &msg,
            started,
            Some(&headers),
            &[key.as_slice()],
            Some(&body),
        )
        .into_iter()
        .collect();
        assert_eq!(h["authorization"], MASK);
        assert_eq!(h["x-shop"], "acme");
        assert_eq!(h["webhook-id"], msg.id.to_string());
        assert_eq!(h["webhook-timestamp"], "1700000000");
        let expected = signing::sign(&key, &msg.id.to_string(), 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(h["webhook-signature"], expected);
        assert!(!h.values().any(|v| v.contains("whsec_")));
    }

    /// A service over a fresh database, without the delivery engine: deliveries stay as the
    /// test makes them.
    async fn service() -> (Service, crate::storage::Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            db: dir.path().join("h.redb"),
            allow_destination: vec!["127.0.0.0/8".parse().unwrap()],
            allow_http_destinations: true,
            ..Default::default()
        };
        let store = crate::storage::Store::open(
            &config.db,
            &crate::storage::StoreSettings {
                writer_batch_max: 64,
                writer_queue_max: 64,
                metrics: Default::default(),
                cache_bytes: 1 << 20,
                pool_max: 4,
            },
        )
        .unwrap();
        let outbound = std::sync::Arc::new(crate::delivery::Outbound::new(&config).unwrap());
        let s = Service::new(
            store.clone(),
            std::sync::Arc::new(config),
            crate::delivery::Waker::default(),
            outbound,
            Default::default(),
        );
        (s, store, dir)
    }

    fn attempt_of(d: &Delivery, ok: bool) -> Attempt {
        Attempt {
            id: AttemptId(0),
            delivery_id: d.id,
            msg_id: d.msg_id,
            app_id: d.app_id,
            endpoint_id: d.endpoint_id,
            url: "http://127.0.0.1:9/".into(),
            status_code: if ok { 200 } else { 500 },
            duration_ms: if ok { 12 } else { 800 },
            error: (!ok).then_some(AttemptError::Status),
            response: if ok { "ok".into() } else { "boom".into() },
            trigger_type: TriggerType::Scheduled,
            created_at: now_micros(),
        }
    }

    #[tokio::test]
    async fn the_queue_pages_filters_and_scopes_and_the_overview_counts() {
        use super::super::{AppInput, EndpointInput, EventTypeInput};
        use crate::storage::AttemptOutcome;
        let (s, store, _dir) = service().await;
        let admin = Caller::Admin;
        s.create_event_type(
            admin,
            EventTypeInput {
                name: "order.created".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut apps = Vec::new();
        let mut eps = Vec::new();
        for name in ["A", "B"] {
            let (app, _) = s
                .create_app(
                    admin,
                    AppInput {
                        name: name.into(),
                        ..Default::default()
                    },
                    false,
                )
                .await
                .unwrap();
            let ep = s
                .create_endpoint(
                    admin,
                    &app.id.to_string(),
                    EndpointInput {
                        url: format!("http://127.0.0.1:9/{name}"),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            apps.push(app);
            eps.push(ep);
        }
        let mut sent = Vec::new();
        for i in 0..35 {
            let app = &apps[if i % 7 == 6 { 1 } else { 0 }];
            let m = s
                .send_message(
                    admin,
                    &app.id.to_string(),
                    super::super::MessageInput {
                        event_type: "order.created".into(),
                        payload_json: format!(r#"{{"n":{i}}}"#),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            sent.push(m);
        }
        // The first three of A succeed at once; the fourth fails for good.
        let a_msgs: Vec<_> = sent.iter().filter(|m| m.app_id == apps[0].id).collect();
        for (i, m) in a_msgs.iter().take(4).enumerate() {
            let id = m.id;
            let d = store
                .read(move |r| r.message_deliveries(id))
                .await
                .unwrap()
                .remove(0);
            let ok = i < 3;
            let outcome = if ok {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Exhausted(Alert {
                    id: AlertId(0),
                    kind: AlertKind::AttemptsExhausted,
                    app_id: d.app_id,
                    endpoint_id: d.endpoint_id,
                    msg_id: Some(d.msg_id),
                    detail: "failed".into(),
                    created_at: now_micros(),
                    acknowledged_at: None,
                })
            };
            let a = attempt_of(&d, ok);
            store
                .write(move |w| w.record_attempt(a.clone(), outcome.clone()))
                .await
                .unwrap();
        }

        // Every message, newest first, in pages that neither overlap nor skip.
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = s
                .queue(
                    admin,
                    QueueFilter {
                        cursor,
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            pages += 1;
            seen.extend(page.items.iter().map(|i| i.message.id));
            if pages == 2 {
                // Going back from the second page gives the first one again.
                let back = s
                    .queue(
                        admin,
                        QueueFilter {
                            cursor: page.newer,
                            limit: 10,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                let first: Vec<_> = back.items.iter().map(|i| i.message.id).collect();
                assert_eq!(first, seen[..10].to_vec());
            }
            match page.older {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut expected: Vec<_> = sent.iter().map(|m| m.id).collect();
        expected.reverse();
        assert_eq!(seen, expected);
        assert_eq!(pages, 4);

        let only_b = s
            .queue(
                admin,
                QueueFilter {
                    app: Some(apps[1].id.to_string()),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(only_b.items.len(), 5);
        let by_endpoint = s
            .queue(
                admin,
                QueueFilter {
                    endpoint: Some(eps[1].id.to_string()),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(by_endpoint.items.len(), 5);
        assert!(
            by_endpoint
                .items
                .iter()
                .all(|i| i.endpoint.as_ref().unwrap().id == eps[1].id)
        );
        let failed = s
            .queue(
                admin,
                QueueFilter {
                    state: Some(StateFilter::Failed),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(failed.items.len(), 1);
        assert_eq!(
            failed.items[0].last_attempt.as_ref().unwrap().status_code,
            500
        );
        let succeeded = s
            .queue(
                admin,
                QueueFilter {
                    state: Some(StateFilter::Succeeded),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(succeeded.items.len(), 3);

        // A tenant sees its own messages only, and another application is not found.
        let tenant = Caller::App(apps[1].id);
        let own = s
            .queue(
                tenant,
                QueueFilter {
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(own.items.len(), 5);
        let other = s
            .queue(
                tenant,
                QueueFilter {
                    app: Some(apps[0].id.to_string()),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(other, Err(ServiceError::NotFound(_))));
        let other_ep = s
            .queue(
                tenant,
                QueueFilter {
                    endpoint: Some(eps[0].id.to_string()),
                    limit: 50,
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(other_ep, Err(ServiceError::NotFound(_))));
        let a_msg = a_msgs[0].id.to_string();
        assert!(s.locate_message(tenant, &a_msg, None).await.is_err());
        assert_eq!(
            s.locate_message(admin, &a_msg, None).await.unwrap().0.id,
            apps[0].id
        );

        // The overview counts what happened, from the aggregate views.
        let o = s.overview(admin).await.unwrap();
        assert_eq!(o.totals.messages, 35);
        assert_eq!(o.totals.deliveries, 35);
        assert_eq!(o.totals.attempts_succeeded, 3);
        assert_eq!(o.totals.attempts_failed, 1);
        assert_eq!(o.totals.deliveries_failed, 1);
        assert_eq!(o.success_rate, Some(0.75));
        assert!(o.p50_ms.unwrap() <= 15.0 && o.p95_ms.unwrap() >= 500.0);
        assert_eq!(o.queue_depth.iter().map(|(_, n)| n).sum::<u64>(), 31);
        assert_eq!(o.failing.len(), 1);
        assert_eq!(o.failing[0].outcomes.endpoint_id, eps[0].id);
        assert_eq!(o.failing[0].last_failure.as_ref().unwrap().response, "boom");
        assert!(s.overview(tenant).await.is_err());
        let activity = s
            .app_activity(admin, vec![apps[0].id, apps[1].id])
            .await
            .unwrap();
        assert_eq!(
            (
                activity[0].messages_today,
                activity[0].failed_today,
                activity[0].endpoints
            ),
            (30, 1, 1)
        );
        assert_eq!(activity[1].messages_today, 5);

        let detail = s
            .message_detail(admin, &apps[0].id.to_string(), &a_msgs[3].id.to_string())
            .await
            .unwrap();
        assert_eq!(detail.destinations.len(), 1);
        let d = &detail.destinations[0].deliveries[0];
        assert_eq!(d.status, MessageStatus::Fail);
        assert_eq!(d.attempts.len(), 1);
        store.close().await;
    }
}
