//! The webhook queue (every message and delivery, filtered, newest first, cursor-paged) and
//! the message page (payload, each destination's deliveries and attempts with the request
//! headers sent and the response; resend).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use super::session::{Authed, Posted};
use super::views::{self, Badge, Copyable, Time};
use super::{
    AdminError, AdminState, Layout, PageResult, Query, Section, app_path, q, query_string, render,
    see_other,
};
use crate::model::*;
use crate::service::{ListParams, QueueCursor, QueueFilter, ServiceError, StateFilter};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/queue", get(queue))
        .route("/messages/find", get(find))
        .route("/apps/{app}/messages/{msg}", get(message))
        .route("/apps/{app}/messages/{msg}/resend", post(resend))
}

/// Time windows offered by the filter bar.
const WINDOWS: [(&str, &str, i64); 5] = [
    ("1h", "Last hour", 3_600),
    ("24h", "Last 24 hours", 86_400),
    ("7d", "Last 7 days", 7 * 86_400),
    ("30d", "Last 30 days", 30 * 86_400),
    ("all", "Any time", 0),
];

struct Row {
    href: String,
    time: Time,
    event_type: String,
    msg_id: String,
    app: String,
    app_href: String,
    endpoint: String,
    endpoint_href: String,
    state: Badge,
    attempts: String,
    code: String,
    next: Option<Time>,
}

struct Opt {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    layout: Layout,
    rows: Vec<Row>,
    app: String,
    endpoint: String,
    event_types: Vec<Opt>,
    states: Vec<Opt>,
    windows: Vec<Opt>,
    since: String,
    until: String,
    search: String,
    older: String,
    newer: String,
    first: String,
    scan_capped: bool,
    filtered: bool,
    live: bool,
    portal: bool,
    endpoint_path: String,
    since_default: String,
    problem: String,
}

async fn queue(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    query: Query,
) -> PageResult {
    let now = now_micros();
    let app = q(&query, "app").trim().to_string();
    let endpoint = q(&query, "endpoint").trim().to_string();
    let event_type = q(&query, "event_type").trim().to_string();
    let state_s = q(&query, "state").to_string();
    let window = match q(&query, "window") {
        "" => "all".to_string(),
        w => w.to_string(),
    };
    let since_s = q(&query, "since").to_string();
    let until_s = q(&query, "until").to_string();
    let mut problem = String::new();
    let mut since = if since_s.is_empty() {
        None
    } else {
        let t = views::parse_datetime(&since_s);
        if t.is_none() {
            problem = "The start of the time window is not a date and time.".into();
        }
        t
    };
    let until = if until_s.is_empty() {
        None
    } else {
        let t = views::parse_datetime(&until_s);
        if t.is_none() {
            problem = "The end of the time window is not a date and time.".into();
        }
        t
    };
    if since.is_none()
        && let Some((_, _, secs)) = WINDOWS.iter().find(|(k, _, _)| *k == window)
        && *secs > 0
    {
        since = Some(now - secs * 1_000_000);
    }
    let cursor = match (
        MessageId::parse(q(&query, "before")),
        MessageId::parse(q(&query, "after")),
    ) {
        (Some(m), _) => Some(QueueCursor::Older(m)),
        (None, Some(m)) => Some(QueueCursor::Newer(m)),
        _ => None,
    };
    let filter = QueueFilter {
        app: Some(app.clone()).filter(|s| !s.is_empty()),
        endpoint: Some(endpoint.clone()).filter(|s| !s.is_empty()),
        event_type: Some(event_type.clone()).filter(|s| !s.is_empty()),
        state: StateFilter::parse(&state_s),
        since,
        until,
        cursor,
        limit: 50,
    };
    let listing = match state.service.queue(session.caller, filter.clone()).await {
        Ok(l) => l,
        // A filter naming something that does not exist (or is not the caller's) shows an
        // empty queue with the reason, not an error page: the filter bar stays usable.
        Err(ServiceError::NotFound(what)) => {
            problem = format!("{what} not found: check the filter.");
            crate::service::QueueListing {
                items: Vec::new(),
                older: None,
                newer: None,
                scan_capped: false,
            }
        }
        Err(ServiceError::Invalid(fields)) => {
            problem = fields
                .iter()
                .map(|f| f.msg.clone())
                .collect::<Vec<_>>()
                .join("; ");
            crate::service::QueueListing {
                items: Vec::new(),
                older: None,
                newer: None,
                scan_capped: false,
            }
        }
        Err(e) => return Err(e.into()),
    };
    let base = [
        ("app", app.as_str()),
        ("endpoint", endpoint.as_str()),
        ("event_type", event_type.as_str()),
        ("state", state_s.as_str()),
        ("window", if window == "all" { "" } else { window.as_str() }),
        ("since", since_s.as_str()),
        ("until", until_s.as_str()),
    ];
    let link = |extra: (&str, &str)| {
        let mut pairs = base.to_vec();
        pairs.push(extra);
        format!("/queue{}", query_string(&pairs))
    };
    let older = match listing.older {
        Some(QueueCursor::Older(m)) => link(("before", &m.to_string())),
        _ => String::new(),
    };
    let newer = match listing.newer {
        Some(QueueCursor::Newer(m)) => link(("after", &m.to_string())),
        _ => String::new(),
    };
    let rows = listing
        .items
        .iter()
        .map(|i| {
            let app_href = app_path(i.message.app_id);
            Row {
                href: format!("{app_href}/messages/{}", i.message.id),
                time: views::time(i.message.created_at, now),
                event_type: i.message.event_type.clone(),
                msg_id: i.message.id.to_string(),
                app: i
                    .app
                    .as_ref()
                    .map_or_else(|| i.message.app_id.to_string(), |a| a.name.clone()),
                endpoint: match (&i.endpoint, &i.delivery) {
                    (Some(ep), _) => ep.url.clone(),
                    (None, Some(d)) => format!("{} (deleted)", d.endpoint_id),
                    (None, None) => String::new(),
                },
                endpoint_href: match &i.endpoint {
                    Some(ep) => format!("{app_href}/endpoints/{}", ep.id),
                    None => String::new(),
                },
                app_href,
                state: match &i.delivery {
                    Some(d) => views::delivery_badge(d),
                    None => Badge::new("muted", "No destination"),
                },
                attempts: i
                    .delivery
                    .as_ref()
                    .map(|d| d.attempts.to_string())
                    .unwrap_or_default(),
                code: i
                    .last_attempt
                    .as_ref()
                    .map(views::status_code)
                    .unwrap_or_default(),
                next: i
                    .delivery
                    .as_ref()
                    .and_then(|d| d.due_ms)
                    .filter(|_| {
                        i.delivery
                            .as_ref()
                            .is_some_and(|d| d.state == DeliveryState::Pending)
                    })
                    .map(|ms| views::time_ms(ms, now)),
            }
        })
        .collect();
    let catalog = state
        .service
        .list_event_types(
            ListParams {
                limit: Some(250),
                iterator: None,
            },
            true,
        )
        .await?;
    let mut event_types: Vec<Opt> = catalog
        .data
        .iter()
        .map(|e| Opt {
            selected: e.name == event_type,
            value: e.name.clone(),
            label: e.name.clone(),
        })
        .collect();
    if !event_type.is_empty() && !event_types.iter().any(|o| o.selected) {
        event_types.push(Opt {
            value: event_type.clone(),
            label: event_type.clone(),
            selected: true,
        });
    }
    let states = StateFilter::ALL
        .iter()
        .map(|s| Opt {
            value: s.as_str().into(),
            label: match s {
                StateFilter::Pending => "Pending or retrying",
                StateFilter::Retrying => "Retrying",
                StateFilter::Succeeded => "Succeeded",
                StateFilter::Failed => "Failed",
                StateFilter::Cancelled => "Cancelled or superseded",
                StateFilter::NoDestination => "No destination",
            }
            .into(),
            selected: s.as_str() == state_s,
        })
        .collect();
    let windows = WINDOWS
        .iter()
        .map(|(k, label, _)| Opt {
            value: (*k).into(),
            label: (*label).into(),
            selected: *k == window,
        })
        .collect();
    // Recover and replay act on one endpoint: offered when the queue is filtered to one.
    let endpoint_path = match (&filter.endpoint, listing.items.first()) {
        (Some(_), Some(i)) if i.endpoint.is_some() => format!(
            "{}/endpoints/{}",
            app_path(i.message.app_id),
            i.endpoint
                .as_ref()
                .map(|e| e.id.to_string())
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let filtered = base.iter().any(|(_, v)| !v.is_empty());
    let page = QueuePage {
        layout: Layout::new(
            &state,
            &session,
            if session.portal_app().is_some() {
                "Messages"
            } else {
                "Webhook queue"
            },
            Section::Queue,
            query.0.get("done").map(String::as_str),
        )
        .await,
        rows,
        app: app.clone(),
        endpoint: endpoint.clone(),
        event_types,
        states,
        windows,
        since: since_s.clone(),
        until: until_s.clone(),
        search: String::new(),
        first: if cursor.is_some() {
            link(("", ""))
        } else {
            String::new()
        },
        older,
        newer,
        scan_capped: listing.scan_capped,
        filtered,
        live: cursor.is_none(),
        portal: session.portal_app().is_some(),
        endpoint_path,
        since_default: views::datetime_local(now - 24 * 3_600_000_000),
        problem,
    };
    render(page)
}

/// The message search box: a message id (any application the caller may see), or an eventId
/// within the application filter.
async fn find(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    query: Query,
) -> PageResult {
    let key = q(&query, "q").trim().to_string();
    let app = Some(q(&query, "app").trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| session.portal_app().map(|a| a.to_string()));
    match state
        .service
        .locate_message(session.caller, &key, app.as_deref())
        .await
    {
        Ok((app, m)) => see_other(&format!("{}/messages/{}", app_path(app.id), m.id)),
        Err(ServiceError::NotFound(_)) => Err(AdminError::BadRequest(format!(
            "No message “{key}” found. Search takes a message id (msg_…), or an eventId together with the application filter."
        ))),
        Err(e) => Err(e.into()),
    }
}

struct AttemptRow {
    n: usize,
    time: Time,
    duration: String,
    state: Badge,
    code: String,
    response: String,
    response_line: String,
    headers: Vec<(String, String)>,
    url: String,
}

struct DeliveryView {
    state: Badge,
    manual: bool,
    trigger: String,
    next: Option<Time>,
    attempts: Vec<AttemptRow>,
    created: Time,
}

struct DestinationView {
    url: String,
    href: String,
    endpoint_id: String,
    deliveries: Vec<DeliveryView>,
    resendable: bool,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    layout: Layout,
    app: App,
    app_path: String,
    message: Message,
    id: Copyable,
    created: Time,
    payload: String,
    size: String,
    destinations: Vec<DestinationView>,
    pending: bool,
}

async fn message(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path((app, msg)): Path<(String, String)>,
    query: Query,
) -> PageResult {
    let d = state
        .service
        .message_detail(session.caller, &app, &msg)
        .await?;
    let now = now_micros();
    let mut pending = false;
    let destinations = d
        .destinations
        .iter()
        .map(|dest| DestinationView {
            url: dest.endpoint.as_ref().map_or_else(
                || format!("{} (deleted)", dest.endpoint_id),
                |e| e.url.clone(),
            ),
            href: dest
                .endpoint
                .as_ref()
                .map(|e| format!("{}/endpoints/{}", app_path(d.app.id), e.id))
                .unwrap_or_default(),
            endpoint_id: dest.endpoint_id.to_string(),
            resendable: dest.endpoint.is_some() && d.message.payload.is_some(),
            deliveries: dest
                .deliveries
                .iter()
                .rev()
                .map(|dv| {
                    if dv.delivery.state == DeliveryState::Pending {
                        pending = true;
                    }
                    DeliveryView {
                        state: views::delivery_badge(&dv.delivery),
                        manual: dv.delivery.trigger_type == TriggerType::Manual,
                        trigger: dv
                            .delivery
                            .trigger_id
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                        next: dv
                            .delivery
                            .due_ms
                            .filter(|_| dv.delivery.state == DeliveryState::Pending)
                            .map(|ms| views::time_ms(ms, now)),
                        created: views::time(dv.delivery.created_at, now),
                        attempts: dv
                            .attempts
                            .iter()
                            .enumerate()
                            .map(|(i, a)| AttemptRow {
                                n: i + 1,
                                time: views::time(a.attempt.created_at, now),
                                duration: views::duration_whole_ms(a.attempt.duration_ms),
                                state: views::attempt_badge(&a.attempt),
                                code: views::status_code(&a.attempt),
                                response: if a.attempt.response.trim_start().starts_with(['{', '['])
                                {
                                    views::pretty_json(&a.attempt.response)
                                } else {
                                    a.attempt.response.clone()
                                },
                                response_line: views::clip(
                                    a.attempt.response.lines().next().unwrap_or("").trim(),
                                    60,
                                ),
                                headers: a.request_headers.clone(),
                                url: a.attempt.url.clone(),
                            })
                            .rev()
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    let page = MessagePage {
        layout: {
            let mut l = Layout::new(
                &state,
                &session,
                format!("{} {}", d.message.event_type, d.message.id),
                Section::Queue,
                query.0.get("done").map(String::as_str),
            )
            .await;
            if pending {
                l.refresh_s = 3;
            }
            l
        },
        app_path: app_path(d.app.id),
        id: Copyable::new(d.message.id.to_string()),
        created: views::time(d.message.created_at, now),
        payload: d
            .message
            .payload
            .as_deref()
            .map(views::pretty_json)
            .unwrap_or_default(),
        size: d
            .message
            .payload
            .as_ref()
            .map(|p| format!("{} bytes", views::count(p.len() as u64)))
            .unwrap_or_default(),
        destinations,
        pending,
        app: d.app,
        message: d.message,
    };
    render(page)
}

async fn resend(
    State(state): State<AdminState>,
    Path((app, msg)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let endpoint = form.text("endpoint");
    let app = state.service.get_app(session.caller, &app).await?;
    match state
        .service
        .resend(session.caller, &app.id.to_string(), &msg, &endpoint)
        .await
    {
        Ok(()) => see_other(&format!("{}/messages/{msg}?done=resent", app_path(app.id))),
        Err(e) => Err(e.into()),
    }
}
