//! Messages and their attempts: sending, reading, and the history of deliveries.

use super::validate::{self, Problems};
use super::{
    ListPage, ListParams, Result, Service, ServiceError, find_app, find_endpoint, find_message,
    list_page,
};
use crate::model::*;
use crate::routing;
use crate::storage::Read;

#[derive(Clone, Debug, Default)]
pub struct MessageInput {
    pub event_type: String,
    /// The payload as posted: JSON text of an object.
    pub payload_json: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    /// Days to keep the payload; `None` for the server default.
    pub retention_days: Option<u16>,
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
        if let Some(days) = input.retention_days {
            if !(1..=RETENTION_DAYS_MAX).contains(&days) {
                p.add(
                    "payloadRetentionPeriod",
                    format!("must be 1 to {RETENTION_DAYS_MAX} days"),
                );
            }
        }
        p.finish()?;
        let payload = validate::compact_json(&input.payload_json);
        let retention_days = input.retention_days.unwrap_or(self.config.retention_days);
        let app = app.to_string();
        let (msg, deliveries) = self
            .store
            .write(move |w| {
                let app = match find_app(w, caller, &app) {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                match w.event_type(&input.event_type)? {
                    Some(et) if !et.archived => {}
                    Some(_) => {
                        return Ok(Err(ServiceError::invalid(
                            "eventType",
                            "this event type is archived",
                        )));
                    }
                    None => {
                        return Ok(Err(ServiceError::invalid(
                            "eventType",
                            format!("event type '{}' does not exist", input.event_type),
                        )));
                    }
                }
                let msg = Message {
                    id: MessageId(0), // assigned by the writer, in commit order
                    app_id: app.id,
                    event_type: input.event_type,
                    event_id: input.event_id,
                    channels: input.channels,
                    payload: Some(payload),
                    created_at: now_micros(),
                    retention_days,
                };
                Ok(Ok(w.ingest_message(msg, &routing::route)?))
            })
            .await??;
        if deliveries > 0 {
            self.waker.wake();
        }
        Ok(msg)
    }

    pub async fn get_message(&self, caller: Caller, app: &str, msg: &str) -> Result<Message> {
        let (app, msg) = (app.to_string(), msg.to_string());
        self.store
            .read(move |r| Ok(find_app(r, caller, &app).and_then(|a| find_message(r, a.id, &msg))))
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
        let page =
            self.store
                .read(move |r| {
                    let app = match find_app(r, caller, &app) {
                        Ok(a) => a,
                        Err(e) => return Ok(Err(e)),
                    };
                    let keep = |m: &Message| {
                        filter
                            .event_types
                            .as_ref()
                            .is_none_or(|t| t.contains(&m.event_type))
                            && filter.channel.as_ref().is_none_or(|c| {
                                m.channels.as_ref().is_some_and(|cs| cs.contains(c))
                            })
                    };
                    Ok(Ok(r.messages(app.id, &query, &keep)?))
                })
                .await??;
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
            .store
            .read(move |r| {
                let found = find_app(r, caller, &app).and_then(|a| {
                    let m = find_message(r, a.id, &msg)?;
                    let ep = match &filter.endpoint {
                        Some(e) => Some(find_endpoint(r, a.id, e)?.id),
                        None => None,
                    };
                    Ok((m, ep))
                });
                let (m, ep) = match found {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(e)),
                };
                let keep = |a: &Attempt| {
                    ep.is_none_or(|ep| a.endpoint_id == ep) && attempt_matches(a, &filter)
                };
                Ok(Ok(r.message_attempts(m.id, &query, &keep)?))
            })
            .await??;
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
