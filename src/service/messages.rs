//! Messages and their attempts: sending, reading, and the history of deliveries.

use super::tokens::{Replay, replay};
use super::validate::{self, Problems};
use super::{
    ListPage, ListParams, Result, Service, ServiceError, find_app, find_endpoint, find_message,
    list_page,
};
use crate::model::*;
use crate::routing;

#[derive(Clone, Debug, Default)]
pub struct MessageInput {
    pub event_type: String,
    /// The payload as posted: JSON text of an object.
    pub payload_json: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    /// Days to keep the payload; `None` for the server default.
    pub retention_days: Option<u16>,
    /// Creates the application on the fly when it does not exist yet (Svix semantics); its
    /// uid must be the one in the path.
    pub application: Option<super::AppInput>,
}

/// Filters of the message list.
#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    pub event_types: Option<Vec<String>>,
    pub channel: Option<String>,
    pub before: Option<Micros>,
    pub after: Option<Micros>,
}

/// Filters of the attempt lists.
#[derive(Clone, Debug, Default)]
pub struct AttemptFilter {
    pub status: Option<MessageStatus>,
    /// 0 (no response), 100, 200, 300, 400 or 500: a range of status codes.
    pub status_code_class: Option<u16>,
    pub endpoint: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub before: Option<Micros>,
    pub after: Option<Micros>,
}

/// A create that carries an Idempotency-Key (every POST of the official SDKs does). Its answer
/// is remembered in the message's own commit, and a key already answered is found in that same
/// transaction, so a message and its remembered answer are durable together, and two creates
/// racing with one key make one message. The answer is remembered by reference to the message
/// (`Service::remembered_message`) and rendered again from it when replayed.
pub struct Remember {
    /// The key's scope (`Service::idempotency_key`).
    pub key: [u8; 32],
    /// Whether the answer shows the payload (`with_content`), as the first request asked.
    pub with_content: bool,
}

/// What a create with a `Remember` came to.
pub enum Created {
    /// Stored now.
    New(Message),
    /// The key was already answered: that answer. Nothing was stored.
    Replayed(Replay),
}

/// Longest payload retention a message may ask for, in days (Svix: 90).
pub const RETENTION_DAYS_MAX: u16 = 90;

impl Service {
    /// Validates and durably stores a message with the deliveries it owes; answers only after
    /// the commit, so an acknowledged message is never lost.
    pub async fn send_message(
        &self,
        caller: Caller,
        app: &str,
        input: MessageInput,
    ) -> Result<Message> {
        match self
            .send_message_remembered(caller, app, input, None)
            .await?
        {
            Created::New(msg) => Ok(msg),
            Created::Replayed(_) => unreachable!("nothing is replayed without a key"),
        }
    }

    /// `send_message`, remembering the answer under an Idempotency-Key in the same commit (or
    /// answering with what that key was answered before).
    pub async fn send_message_remembered(
        &self,
        caller: Caller,
        app: &str,
        input: MessageInput,
        remember: Option<Remember>,
    ) -> Result<Created> {
        let mut p = Problems::default();
        p.check(validate::event_type_name(&input.event_type), "eventType");
        if input.payload_json.len() > self.config.payload_max_bytes {
            return Err(ServiceError::PayloadTooLarge(format!(
                "the payload is {} bytes; the limit is {}",
                input.payload_json.len(),
                self.config.payload_max_bytes
            )));
        }
        if !input.payload_json.trim_start().starts_with('{') {
            p.add("payload", "must be a JSON object");
        }
        if let Some(id) = &input.event_id {
            p.check(validate::uid(id, MessageId::PREFIX), "eventId");
        }
        if let Some(channels) = &input.channels {
            p.check(validate::channels(channels), "channels");
        }
        p.in_range(
            input.retention_days,
            &(1..=RETENTION_DAYS_MAX),
            "payloadRetentionPeriod",
            " days",
        );
        if let Some(a) = &input.application {
            match &a.uid {
                None => p.add(
                    "application.uid",
                    "the application must have a uid to be created with a message",
                ),
                Some(uid) if uid != app => {
                    p.add("application.uid", "must equal the application in the path")
                }
                Some(_) => {}
            }
            if let Err(ServiceError::Invalid(fields)) = a.validate() {
                p.0.extend(fields.into_iter().map(|f| super::FieldError {
                    field: format!("application.{}", f.field),
                    msg: f.msg,
                }));
            }
            if caller != Caller::Admin {
                return Err(ServiceError::Forbidden);
            }
        }
        p.finish()?;
        let payload = validate::compact_json(&input.payload_json);
        let retention_days = input.retention_days.unwrap_or(self.config.retention_days);
        let app = app.to_string();
        let service = self.clone();
        let limits = self.config.template_limits();
        let budget = std::time::Duration::from_millis(self.config.routing_budget_ms);
        let created = self
            .write_or_shed(move |w| {
                if let Some(r) = &remember
                    && let Some(answer) = replay(w, &r.key)?
                {
                    return Ok((Created::Replayed(answer), 0));
                }
                let app = match (find_app(w, caller, &app), input.application.clone()) {
                    (Ok(a), _) => a,
                    (Err(ServiceError::NotFound(_)), Some(new)) => {
                        let now = now_micros();
                        let created = App {
                            id: AppId(w.new_id()),
                            uid: new.uid,
                            name: new.name,
                            throttle_rate: new.throttle_rate,
                            metadata: new.metadata,
                            created_at: now,
                            updated_at: now,
                        };
                        // Check the event type first: nothing may be written before a refusal.
                        if w.event_type(&input.event_type)?
                            .is_none_or(|et| et.archived)
                        {
                            return Err(ServiceError::invalid(
                                "eventType",
                                format!("event type '{}' does not exist", input.event_type),
                            ));
                        }
                        w.insert_app(&created)?;
                        created
                    }
                    (Err(e), _) => return Err(e),
                };
                if service.writer_share.exhausted(app.id) {
                    return Err(ServiceError::BusyTenant);
                }
                match w.event_type(&input.event_type)? {
                    Some(et) if !et.archived => {}
                    Some(_) => {
                        return Err(ServiceError::invalid(
                            "eventType",
                            "this event type is archived",
                        ));
                    }
                    None => {
                        return Err(ServiceError::invalid(
                            "eventType",
                            format!("event type '{}' does not exist", input.event_type),
                        ));
                    }
                }
                let msg = Message {
                    id: MessageId(0), // assigned by the writer, in commit order
                    app_id: app.id,
                    event_type: input.event_type.clone(),
                    event_id: input.event_id.clone(),
                    channels: input.channels.clone(),
                    payload: Some(payload.clone()),
                    created_at: now_micros(),
                    retention_days,
                };
                let route = |m: &Message, endpoints: &[Endpoint], triggers: &[Trigger]| {
                    // Only a tenant's own source is charged: plain routing costs every
                    // tenant alike and is not what a share protects against.
                    if !triggers.iter().any(Trigger::evaluates) {
                        return routing::route(m, &app, endpoints, triggers, &limits, budget);
                    }
                    let started = std::time::Instant::now();
                    let routes = routing::route(m, &app, endpoints, triggers, &limits, budget);
                    service.writer_share.charge(app.id, started.elapsed());
                    routes
                };
                let (msg, deliveries) = w.ingest_message(msg, &route)?;
                if let Some(r) = &remember {
                    let record = service.remembered_message(&msg, r.with_content);
                    w.put_idempotent_response(&r.key, &record)?;
                }
                Ok((Created::New(msg), deliveries))
            })
            .await?;
        if let (Created::New(..), deliveries) = &created {
            self.metrics.messages_ingested.inc();
            if *deliveries > 0 {
                self.waker.wake();
            }
        }
        Ok(created.0)
    }

    pub async fn get_message(&self, caller: Caller, app: &str, msg: &str) -> Result<Message> {
        let (app, msg) = (app.to_string(), msg.to_string());
        self.read(move |r| Ok(find_app(r, caller, &app).and_then(|a| find_message(r, a.id, &msg))))
            .await?
    }

    pub async fn list_messages(
        &self,
        caller: Caller,
        app: &str,
        params: ListParams,
        filter: MessageFilter,
    ) -> Result<ListPage<Message>> {
        let query = self.window_query(&params, filter.before, filter.after, |s| {
            MessageId::parse(s).map(|i| i.0)
        })?;
        let app = app.to_string();
        let page = self
            .read(move |r| {
                let app = find_app(r, caller, &app)?;
                let keep = |m: &Message| {
                    filter
                        .event_types
                        .as_ref()
                        .is_none_or(|t| t.contains(&m.event_type))
                        && filter
                            .channel
                            .as_ref()
                            .is_none_or(|c| m.channels.as_ref().is_some_and(|cs| cs.contains(c)))
                };
                Ok(r.messages(app.id, &query, &keep)?)
            })
            .await?;
        Ok(list_page(page, |m| m.id.to_string()))
    }

    /// Attempts of one message, newest first.
    pub async fn list_message_attempts(
        &self,
        caller: Caller,
        app: &str,
        msg: &str,
        params: ListParams,
        filter: AttemptFilter,
    ) -> Result<ListPage<(Attempt, MessageStatus)>> {
        let query = self.window_query(&params, filter.before, filter.after, |s| {
            AttemptId::parse(s).map(|i| i.0)
        })?;
        let (app, msg) = (app.to_string(), msg.to_string());
        let page = self
            .read(move |r| {
                let found = find_app(r, caller, &app).and_then(|a| {
                    let m = find_message(r, a.id, &msg)?;
                    let ep = match &filter.endpoint {
                        Some(e) => Some(find_endpoint(r, a.id, e)?.id),
                        None => None,
                    };
                    Ok((m, ep))
                });
                let (m, ep) = found?;
                let keep = |a: &Attempt| {
                    ep.is_none_or(|ep| a.endpoint_id == ep) && attempt_matches(a, &filter)
                };
                Ok(r.message_attempts(m.id, &query, &keep)?)
            })
            .await?;
        Ok(list_page(
            page.map(|a| {
                let status = attempt_status(&a);
                (a, status)
            }),
            |(a, _)| a.id.to_string(),
        ))
    }

    /// A page query over time-ordered ids, newest first, narrowed to a time window. With
    /// `after` and no iterator, the oldest items after that time come first (Svix semantics).
    fn window_query(
        &self,
        params: &ListParams,
        before: Option<Micros>,
        after: Option<Micros>,
        parse: fn(&str) -> Option<u128>,
    ) -> Result<crate::storage::PageQuery> {
        let mut query = self.page_query(params, true, parse)?;
        let ms = |us: Micros| (us.max(0) / 1000) as u64;
        let lo = after.map_or(0, |t| id_floor_at_millis(ms(t) + 1));
        let hi = before.map_or(u128::MAX, |t| id_floor_at_millis(ms(t)).saturating_sub(1));
        query.within = lo..=hi;
        if after.is_some() && query.cursor == crate::storage::Cursor::First && lo > 0 {
            query.cursor = crate::storage::Cursor::Before(lo - 1);
        }
        Ok(query)
    }
}

/// An attempt on its own is a success or a failure.
pub(super) fn attempt_status(a: &Attempt) -> MessageStatus {
    if a.succeeded() {
        MessageStatus::Success
    } else {
        MessageStatus::Fail
    }
}

pub(super) fn attempt_matches(a: &Attempt, filter: &AttemptFilter) -> bool {
    let status_ok = match filter.status {
        None => true,
        Some(MessageStatus::Success) => a.succeeded(),
        Some(MessageStatus::Fail) | Some(MessageStatus::Sending) => !a.succeeded(),
        Some(_) => false,
    };
    let class_ok = filter.status_code_class.is_none_or(|class| match class {
        0 => a.status_code == 0,
        c => a.status_code >= c && a.status_code < c + 100,
    });
    status_ok && class_ok
}

/// A message as seen from one endpoint: the status of its latest delivery there.
#[derive(Clone, Debug)]
pub struct EndpointMessage {
    pub message: Message,
    pub status: MessageStatus,
    pub next_attempt_ms: Option<Millis>,
}

/// An endpoint a message was sent to, with the status of the latest delivery there.
#[derive(Clone, Debug)]
pub struct Destination {
    pub endpoint: Option<Endpoint>,
    pub endpoint_id: EndpointId,
    pub status: MessageStatus,
    pub next_attempt_ms: Option<Millis>,
}

impl Service {
    /// Removes a message's payload; it reads as expired afterwards and cannot be resent.
    pub async fn expunge_message_content(
        &self,
        caller: Caller,
        app: &str,
        msg: &str,
    ) -> Result<()> {
        let (app, msg) = (app.to_string(), msg.to_string());
        self.write(move |w| {
            let m = find_app(w, caller, &app).and_then(|a| find_message(w, a.id, &msg))?;
            let mut expunged = m.clone();
            expunged.payload = None;
            w.replace_message(&expunged)?;
            Ok(())
        })
        .await
    }

    /// Queues the message again for one endpoint, now, as a manual attempt. The event-type
    /// and channel filters do not apply (Svix semantics); the payload must still exist.
    pub async fn resend(&self, caller: Caller, app: &str, msg: &str, endpoint: &str) -> Result<()> {
        let (app, msg, endpoint) = (app.to_string(), msg.to_string(), endpoint.to_string());
        let max = self.config.resends_per_message_max;
        self.write(move |w| {
            let found = find_app(w, caller, &app).and_then(|a| {
                Ok((
                    find_message(w, a.id, &msg)?,
                    find_endpoint(w, a.id, &endpoint)?,
                ))
            });
            let (m, ep) = found?;
            if m.payload.is_none() {
                return Err(ServiceError::BadRequest {
                    code: "missing_payload",
                    detail: "the message payload has expired or was expunged".into(),
                });
            }
            // Refused before anything is written: a refusal in the writer must not roll back
            // the other jobs of its batch.
            let refused = || {
                ServiceError::cap_reached(
                    "",
                    "this message was sent again as often as it may be",
                    max,
                    "resends_per_message_max",
                )
            };
            if w.manual_deliveries(m.id, max)? >= max {
                return Err(refused());
            }
            if w.enqueue_manual((m.app_id, m.id), &ep, Priority::High)?
                .is_none()
            {
                return Err(refused());
            }
            Ok(())
        })
        .await?;
        self.waker.wake();
        Ok(())
    }

    /// Attempts to one endpoint, newest first.
    pub async fn list_endpoint_attempts(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        params: ListParams,
        filter: AttemptFilter,
    ) -> Result<ListPage<(Attempt, MessageStatus)>> {
        let query = self.window_query(&params, filter.before, filter.after, |s| {
            AttemptId::parse(s).map(|i| i.0)
        })?;
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        let page = self
            .read(move |r| {
                let ep =
                    find_app(r, caller, &app).and_then(|a| find_endpoint(r, a.id, &endpoint))?;
                let types = filter.event_types.clone();
                let keep = |a: &Attempt| {
                    attempt_matches(a, &filter)
                        && types.as_ref().is_none_or(|t| {
                            // The event type only: a payload is not read for a filter.
                            r.message_head(a.app_id, a.msg_id)
                                .ok()
                                .flatten()
                                .is_some_and(|m| t.contains(&m.event_type))
                        })
                };
                Ok(r.endpoint_attempts(ep.id, &query, &keep)?)
            })
            .await?;
        Ok(list_page(
            page.map(|a| {
                let s = attempt_status(&a);
                (a, s)
            }),
            |(a, _)| a.id.to_string(),
        ))
    }

    pub async fn get_attempt(
        &self,
        caller: Caller,
        app: &str,
        msg: &str,
        attempt: &str,
    ) -> Result<(Attempt, MessageStatus)> {
        let id = AttemptId::parse(attempt).ok_or(ServiceError::NotFound("Message attempt"))?;
        let (app, msg) = (app.to_string(), msg.to_string());
        let a = self
            .read(move |r| {
                let m = find_app(r, caller, &app).and_then(|a| find_message(r, a.id, &msg))?;
                r.attempt(m.id, id)?
                    .ok_or(ServiceError::NotFound("Message attempt"))
            })
            .await?;
        let s = attempt_status(&a);
        Ok((a, s))
    }

    pub async fn expunge_attempt_content(
        &self,
        caller: Caller,
        app: &str,
        msg: &str,
        attempt: &str,
    ) -> Result<()> {
        let id = AttemptId::parse(attempt).ok_or(ServiceError::NotFound("Message attempt"))?;
        let (app, msg) = (app.to_string(), msg.to_string());
        self.write(move |w| {
            let found = find_app(w, caller, &app)
                .and_then(|a| find_message(w, a.id, &msg))
                .and_then(|m| {
                    w.attempt(m.id, id)?
                        .ok_or(ServiceError::NotFound("Message attempt"))
                });
            let mut a = found?;
            a.response = "EXPUNGED".into();
            w.replace_attempt(&a)?;
            Ok(())
        })
        .await
    }

    /// The endpoints a message was sent to, ascending by endpoint id, each with the status of
    /// its latest delivery there.
    pub async fn attempted_destinations(
        &self,
        caller: Caller,
        app: &str,
        msg: &str,
        params: ListParams,
    ) -> Result<ListPage<Destination>> {
        let limit = self.limit(&params)?;
        let (app, msg) = (app.to_string(), msg.to_string());
        let mut all = self
            .read(move |r| {
                let m = find_app(r, caller, &app).and_then(|a| find_message(r, a.id, &msg))?;
                let mut latest: std::collections::BTreeMap<EndpointId, Delivery> =
                    Default::default();
                for d in r.message_deliveries(m.id)? {
                    latest.insert(d.endpoint_id, d); // later deliveries replace earlier ones
                }
                let mut out = Vec::new();
                for (id, d) in latest {
                    out.push(Destination {
                        endpoint: r.endpoint(id)?,
                        endpoint_id: id,
                        status: MessageStatus::of_delivery(&d),
                        next_attempt_ms: d.due_ms,
                    });
                }
                Ok(out)
            })
            .await?;
        // A message has few destinations: page in memory, by endpoint id.
        let bad_iterator = || ServiceError::invalid("iterator", "invalid iterator");
        let (after, before) = match params.iterator.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => match s.strip_prefix('-') {
                Some(b) => (None, Some(EndpointId::parse(b).ok_or_else(bad_iterator)?)),
                None => (Some(EndpointId::parse(s).ok_or_else(bad_iterator)?), None),
            },
            None => (None, None),
        };
        all.retain(|d| {
            after.is_none_or(|a| d.endpoint_id > a) && before.is_none_or(|b| d.endpoint_id < b)
        });
        let done = all.len() <= limit;
        if before.is_some() && !done {
            all.drain(..all.len() - limit);
        } else {
            all.truncate(limit);
        }
        Ok(list_page(crate::storage::Page { items: all, done }, |d| {
            d.endpoint_id.to_string()
        }))
    }

    /// Messages attempted to this endpoint, newest first, each once with the status of its
    /// latest delivery there. Walks the application's messages (bounded per page by the
    /// storage scan limit) and keeps those with an attempt to this endpoint.
    pub async fn attempted_messages(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        params: ListParams,
        filter: AttemptFilter,
        channel: Option<String>,
    ) -> Result<ListPage<EndpointMessage>> {
        let query = self.window_query(&params, filter.before, filter.after, |s| {
            MessageId::parse(s).map(|i| i.0)
        })?;
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        let page = self
            .read(move |r| {
                let ep =
                    find_app(r, caller, &app).and_then(|a| find_endpoint(r, a.id, &endpoint))?;
                // The latest delivery of a message to this endpoint that was attempted.
                let latest = |m: &Message| -> Option<Delivery> {
                    let ds = r.message_deliveries(m.id).ok()?;
                    ds.into_iter()
                        .rev()
                        .find(|d| d.endpoint_id == ep.id && d.attempts > 0)
                };
                let keep = |m: &Message| {
                    filter
                        .event_types
                        .as_ref()
                        .is_none_or(|t| t.contains(&m.event_type))
                        && channel
                            .as_ref()
                            .is_none_or(|c| m.channels.as_ref().is_some_and(|cs| cs.contains(c)))
                        && latest(m).is_some_and(|d| {
                            filter
                                .status
                                .is_none_or(|s| s == MessageStatus::of_delivery(&d))
                        })
                };
                let page = r.messages(ep.app_id, &query, &keep)?;
                let items = page
                    .items
                    .into_iter()
                    .filter_map(|m| {
                        let d = latest(&m)?;
                        Some(EndpointMessage {
                            status: MessageStatus::of_delivery(&d),
                            next_attempt_ms: d.due_ms,
                            message: m,
                        })
                    })
                    .collect();
                Ok(crate::storage::Page {
                    items,
                    done: page.done,
                })
            })
            .await?;
        Ok(list_page(page, |m| m.message.id.to_string()))
    }
}
