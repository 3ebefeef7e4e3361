//! Routing: which endpoints a new message owes a delivery to.
//!
//! Every matching trigger makes one delivery. An endpoint's `eventTypes` subscription is its
//! built-in trigger: it matches when the endpoint is enabled, subscribes to the message's event
//! type (or to all, when `None`), and shares a channel with the message when it has channels.
//!
//! Owns: the matching rules. Must never: do I/O; it is called inside the ingest transaction.

use crate::model::{Endpoint, Message, NewDelivery, Priority};

/// The deliveries a message owes, given its application's endpoints.
pub fn route(msg: &Message, endpoints: &[Endpoint]) -> Vec<NewDelivery> {
    endpoints
        .iter()
        .filter(|ep| subscription_matches(ep, msg))
        .map(|ep| NewDelivery {
            endpoint_id: ep.id,
            priority: Priority::Normal,
        })
        .collect()
}

/// The built-in trigger of an endpoint (Svix fan-out semantics).
pub fn subscription_matches(ep: &Endpoint, msg: &Message) -> bool {
    !ep.disabled && subscribed(ep, msg)
}

/// Whether the endpoint's subscription covers the message, enabled or not (replay-missing
/// asks this of messages that arrived while the endpoint was disabled).
pub fn subscribed(ep: &Endpoint, msg: &Message) -> bool {
    let type_ok = match &ep.event_types {
        None => true,
        Some(types) => types.iter().any(|t| t == &msg.event_type),
    };
    let channel_ok = match (&ep.channels, &msg.channels) {
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

    fn endpoint(types: Option<&[&str]>, channels: Option<&[&str]>, disabled: bool) -> Endpoint {
        Endpoint {
            id: EndpointId(1),
            app_id: AppId(1),
            uid: None,
            url: "https://example.com".into(),
            description: String::new(),
            event_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
            channels: channels.map(|t| t.iter().map(|s| s.to_string()).collect()),
            keys: vec![],
            disabled,
            throttle_rate: None,
            metadata: Default::default(),
            headers: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn message(event_type: &str, channels: Option<&[&str]>) -> Message {
        Message {
            id: MessageId(1),
            app_id: AppId(1),
            event_type: event_type.into(),
            event_id: None,
            channels: channels.map(|t| t.iter().map(|s| s.to_string()).collect()),
            payload: Some("{}".into()),
            created_at: 0,
            retention_days: 90,
        }
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
        let routes = route(&message("x", None), &[a, b, c]);
        let ids: Vec<_> = routes.iter().map(|r| r.endpoint_id).collect();
        assert_eq!(ids, vec![EndpointId(10), EndpointId(12)]);
    }
}
