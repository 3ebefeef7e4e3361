//! Routing: which endpoints a new message owes a delivery to.
//!
//! Every matching trigger makes one delivery. An endpoint's `eventTypes` subscription is its
//! built-in trigger: it matches when the endpoint is enabled, subscribes to the message's event
//! type (or to all, when `None`), and shares a channel with the message when it has channels.
//!
//! Owns: the matching rules. Must never: do I/O; it is called inside the ingest transaction.

pub mod template;

use crate::model::{App, Endpoint, Message, NewDelivery, Priority, Trigger};

/// The deliveries a message owes: one per endpoint whose built-in subscription matches, and
/// one per enabled trigger whose event types and condition match. A condition or unique key
/// that fails to evaluate never fails the ingest: the condition counts as false (and is
/// logged), the unique key as absent.
///
/// Routing runs in the writer, which every tenant waits for, so all the conditions and unique
/// keys of one message share one deadline, `budget` from when its payload has been parsed
/// (setting `routing_budget_ms`; the parse is bounded by the payload limit, not the tenant);
/// one that is stopped by it, or by another bound of `limits`, counts as failed.
pub fn route(
    msg: &Message,
    app: &App,
    endpoints: &[Endpoint],
    triggers: &[Trigger],
    limits: &template::Limits,
    budget: std::time::Duration,
) -> Vec<NewDelivery> {
    let mut deadline: Option<std::time::Instant> = None;
    let mut out: Vec<NewDelivery> = endpoints
        .iter()
        .filter(|ep| !ep.options.subscription_disabled && subscription_matches(ep, msg))
        .map(|ep| NewDelivery::plain(ep.id, Priority::Normal))
        .collect();
    // The payload is parsed once, and only when some trigger needs its fields.
    let mut payload: Option<serde_json::Value> = None;
    for t in triggers.iter().filter(|t| t.enabled) {
        let Some(ep) = endpoints.iter().find(|e| e.id == t.endpoint_id) else {
            continue;
        };
        if ep.disabled
            || !t
                .event_types
                .iter()
                .any(|p| template::event_type_matches(p, &msg.event_type))
        {
            continue;
        }
        let needs_fields = t.condition.is_some() || t.unique_key.is_some();
        if needs_fields && payload.is_none() {
            let text = msg.payload.as_deref().unwrap_or("{}");
            payload = Some(serde_json::from_str(text).unwrap_or(serde_json::Value::Null));
        }
        let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + budget);
        let null = serde_json::Value::Null;
        let fields = template::merge_fields(payload.as_ref().unwrap_or(&null), msg, app);
        if let Some(condition) = &t.condition {
            match template::condition(condition, &fields, limits, deadline) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(trigger = %t.id, error = %e, "trigger condition failed; treated as false");
                    continue;
                }
            }
        }
        let unique_key = t.unique_key.as_ref().and_then(|k| match template::unique_key(k, &fields, limits, deadline) {
            Ok(key) if !key.is_empty() => Some(key),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(trigger = %t.id, error = %e, "unique key failed to render; none used");
                None
            }
        });
        out.push(NewDelivery {
            endpoint_id: ep.id,
            priority: t.priority,
            trigger_id: Some(t.id),
            unique_key,
            delay_ms: t.delay_ms,
        });
    }
    out
}

/// The built-in trigger of an endpoint (Svix fan-out semantics).
pub fn subscription_matches(ep: &Endpoint, msg: &Message) -> bool {
    !ep.disabled && subscribed(ep, msg)
}

/// Whether the endpoint's subscription covers the message, enabled or not (replay-missing
/// asks this of messages that arrived while the endpoint was disabled).
pub fn subscribed(ep: &Endpoint, msg: &Message) -> bool {
    covers(ep, &msg.event_type, msg.channels.as_deref())
}

/// `subscribed`, for a message known by its event type and channels alone (a scan that does
/// not read payloads).
pub fn covers(ep: &Endpoint, event_type: &str, channels: Option<&[String]>) -> bool {
    let type_ok = match &ep.event_types {
        None => true,
        Some(types) => types.iter().any(|t| t == event_type),
    };
    let channel_ok = match (&ep.channels, channels) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(mine), Some(theirs)) => mine.iter().any(|c| theirs.contains(c)),
    };
    type_ok && channel_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    const LIMITS: template::Limits = template::Limits {
        value_max_bytes: 1 << 20,
        output_max_bytes: 1 << 20,
        memory_max_bytes: 8 << 20,
        render_ms: 1_000,
    };
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

    fn endpoint(types: Option<&[&str]>, channels: Option<&[&str]>, disabled: bool) -> Endpoint {
        Endpoint {
            event_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
            channels: channels.map(|t| t.iter().map(|s| s.to_string()).collect()),
            disabled,
            ..Endpoint::plain(EndpointId(1), AppId(1), "https://example.com")
        }
    }

    fn message(event_type: &str, channels: Option<&[&str]>) -> Message {
        Message {
            channels: channels.map(|t| t.iter().map(|s| s.to_string()).collect()),
            created_at: 0,
            ..Message::plain(MessageId(1), AppId(1), event_type)
        }
    }

    fn app() -> App {
        App {
            id: AppId(1),
            uid: Some("shop".into()),
            name: "Shop".into(),
            throttle_rate: None,
            metadata: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn trigger(types: &[&str], condition: Option<&str>) -> Trigger {
        Trigger {
            id: TriggerId(9),
            app_id: AppId(1),
            endpoint_id: EndpointId(1),
            description: String::new(),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            condition: condition.map(str::to_owned),
            template: None,
            content_type: ContentType::Json,
            priority: Priority::High,
            unique_key: Some("order-{{ payload.id }}".into()),
            delay_ms: 500,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn triggers_route_by_pattern_and_condition() {
        let mut ep = endpoint(Some(&["other.type"]), None, false);
        ep.options.subscription_disabled = true;
        let mut msg = message("order.updated", None);
        msg.payload = Some(r#"{"id": 7, "status": "FULFILLED"}"#.into());
        let t = trigger(
            &["order.*"],
            Some(r#"payload.status in ["FULFILLED", "FAILED_PERMANENTLY"]"#),
        );
        let routes = route(&msg, &app(), &[ep.clone()], &[t.clone()], &LIMITS, BUDGET);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].trigger_id, Some(TriggerId(9)));
        assert_eq!(routes[0].priority, Priority::High);
        assert_eq!(routes[0].unique_key.as_deref(), Some("order-7"));
        assert_eq!(routes[0].delay_ms, 500);

        msg.payload = Some(r#"{"id": 7, "status": "NEW"}"#.into());
        assert!(
            route(&msg, &app(), &[ep.clone()], &[t.clone()], &LIMITS, BUDGET).is_empty(),
            "condition false"
        );
        let broken = trigger(&["order.*"], Some("payload.status =="));
        assert!(
            route(&msg, &app(), &[ep.clone()], &[broken], &LIMITS, BUDGET).is_empty(),
            "a broken condition never fails routing"
        );
        let mut off = t.clone();
        off.enabled = false;
        assert!(route(&msg, &app(), &[ep.clone()], &[off], &LIMITS, BUDGET).is_empty());
        let mut disabled = ep.clone();
        disabled.disabled = true;
        assert!(route(&msg, &app(), &[disabled], &[t], &LIMITS, BUDGET).is_empty());
    }

    #[test]
    fn no_event_types_means_every_type() {
        assert!(subscription_matches(
            &endpoint(None, None, false),
            &message("a.b", None)
        ));
    }

    #[test]
    fn listed_types_only() {
        let ep = endpoint(Some(&["order.created"]), None, false);
        assert!(subscription_matches(&ep, &message("order.created", None)));
        assert!(!subscription_matches(&ep, &message("order.updated", None)));
    }

    #[test]
    fn disabled_endpoints_get_nothing() {
        assert!(!subscription_matches(
            &endpoint(None, None, true),
            &message("a", None)
        ));
    }

    #[test]
    fn channels_must_overlap_when_the_endpoint_has_them() {
        let ep = endpoint(None, Some(&["eu"]), false);
        assert!(subscription_matches(
            &ep,
            &message("a", Some(&["eu", "us"]))
        ));
        assert!(!subscription_matches(&ep, &message("a", Some(&["us"]))));
        assert!(!subscription_matches(&ep, &message("a", None)));
        assert!(subscription_matches(
            &endpoint(None, None, false),
            &message("a", Some(&["us"]))
        ));
    }

    #[test]
    fn route_makes_one_delivery_per_matching_endpoint() {
        let mut a = endpoint(Some(&["x"]), None, false);
        a.id = EndpointId(10);
        let mut b = endpoint(Some(&["y"]), None, false);
        b.id = EndpointId(11);
        let mut c = endpoint(None, None, false);
        c.id = EndpointId(12);
        let routes = route(
            &message("x", None),
            &app(),
            &[a, b, c],
            &[],
            &LIMITS,
            BUDGET,
        );
        let ids: Vec<_> = routes.iter().map(|r| r.endpoint_id).collect();
        assert_eq!(ids, vec![EndpointId(10), EndpointId(12)]);
    }
}
