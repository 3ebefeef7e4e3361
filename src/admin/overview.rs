//! The overview: is anything failing, for whom, since when. Volumes and outcomes per hour
//! for 24 hours, success rate, attempt latency, queue depth per lane, the endpoints failing
//! most, and open alerts.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::alerts::{AlertRow, alert_rows};
use super::chart::{Bar, Part, Svg, bars};
use super::session::Authed;
use super::views::{self, Badge, Copyable, Time};
use super::{AdminState, Layout, PageResult, Section, render};
use crate::model::*;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/overview", get(overview))
}

struct Card {
    label: &'static str,
    value: String,
    class: &'static str,
    hint: String,
}

struct FailingRow {
    endpoint: Copyable,
    url: String,
    href: String,
    app: String,
    app_href: String,
    failed: String,
    rate: String,
    last_error: Option<Badge>,
    last_response: String,
    last_time: Option<Time>,
    last_href: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    cards: Vec<Card>,
    lanes: Vec<(&'static str, String)>,
    outcomes: Svg,
    volume: Svg,
    failing: Vec<FailingRow>,
    alerts: Vec<AlertRow>,
    open_alerts: usize,
    quiet: bool,
    curl: String,
}

async fn overview(State(state): State<AdminState>, Authed { session }: Authed) -> PageResult {
    let o = state.service.overview(session.caller).await?;
    let now = now_micros();
    let alerts = state
        .service
        .list_alerts(session.caller, true, None, 5)
        .await?;
    let open_alerts = state.service.open_alert_count(session.caller).await?;
    let t = &o.totals;
    let attempts = t.attempts_succeeded + t.attempts_failed;
    let rate_class = match o.success_rate {
        None => "",
        Some(r) if r >= 0.99 => "ok",
        Some(r) if r >= 0.9 => "warn",
        Some(_) => "bad",
    };
    let cards = vec![
        Card {
            label: "Messages, 24 h",
            value: views::count(t.messages),
            class: "",
            hint: format!("{} deliveries owed", views::count(t.deliveries)),
        },
        Card {
            label: "Attempt success rate",
            value: o.success_rate.map_or("—".into(), views::percent),
            class: rate_class,
            hint: format!(
                "{} of {} attempts",
                views::count(t.attempts_succeeded),
                views::count(attempts)
            ),
        },
        Card {
            label: "Failed for good, 24 h",
            value: views::count(t.deliveries_failed),
            class: if t.deliveries_failed > 0 { "bad" } else { "" },
            hint: "every retry used".into(),
        },
        Card {
            label: "Latency p50 / p95",
            value: match (o.p50_ms, o.p95_ms) {
                (Some(a), Some(b)) => views::duration_pair(a, b),
                _ => "—".into(),
            },
            class: "",
            hint: "attempt duration".into(),
        },
        Card {
            label: "Open alerts",
            value: views::count(open_alerts as u64),
            class: if open_alerts > 0 { "bad" } else { "" },
            hint: "exhausted deliveries, disabled endpoints".into(),
        },
    ];
    let lanes = o
        .queue_depth
        .iter()
        .map(|(lane, n)| {
            let name = match lane {
                Priority::High => "high",
                Priority::Normal => "normal",
                Priority::Low => "low",
            };
            (name, views::count(*n))
        })
        .collect();
    let hour_label = |hour: u64| {
        chrono::DateTime::from_timestamp((hour * 3600) as i64, 0)
            .unwrap_or_default()
            .format("%H:00")
            .to_string()
    };
    let last = o.hours.len().saturating_sub(1);
    let tick = |i: usize, hour: u64| {
        // Every third hour, counted back from the current one, so the last bar has its label.
        if (last - i).is_multiple_of(3) {
            hour_label(hour)
        } else {
            String::new()
        }
    };
    let outcome_bars: Vec<Bar> = o
        .hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let retried = h.attempts_failed.saturating_sub(h.deliveries_failed);
            Bar {
                parts: vec![
                    Part {
                        class: "ok",
                        value: h.attempts_succeeded,
                    },
                    Part {
                        class: "warn",
                        value: retried,
                    },
                    Part {
                        class: "bad",
                        value: h.deliveries_failed,
                    },
                ],
                title: format!(
                    "{}–{} UTC: {} succeeded, {} failed and retried, {} failed for good",
                    hour_label(h.hour),
                    hour_label(h.hour + 1),
                    h.attempts_succeeded,
                    retried,
                    h.deliveries_failed
                ),
                tick: tick(i, h.hour),
            }
        })
        .collect();
    let volume_bars: Vec<Bar> = o
        .hours
        .iter()
        .enumerate()
        .map(|(i, h)| Bar {
            parts: vec![Part {
                class: "muted",
                value: h.messages,
            }],
            title: format!(
                "{}–{} UTC: {} messages, {} deliveries owed",
                hour_label(h.hour),
                hour_label(h.hour + 1),
                h.messages,
                h.deliveries
            ),
            tick: tick(i, h.hour),
        })
        .collect();
    let failing = o
        .failing
        .iter()
        .map(|f| {
            let total = f.outcomes.succeeded + f.outcomes.failed;
            let (href, url, app, app_href) = match (&f.endpoint, &f.app) {
                (Some(ep), Some(app)) => (
                    format!("/apps/{}/endpoints/{}", app.id, ep.id),
                    ep.url.clone(),
                    app.name.clone(),
                    format!("/apps/{}", app.id),
                ),
                _ => (
                    String::new(),
                    "(deleted)".into(),
                    String::new(),
                    String::new(),
                ),
            };
            FailingRow {
                endpoint: if href.is_empty() {
                    Copyable::new(f.outcomes.endpoint_id.to_string())
                } else {
                    Copyable::link(f.outcomes.endpoint_id.to_string(), href.clone())
                },
                url,
                href,
                app,
                app_href: app_href.clone(),
                failed: views::count(f.outcomes.failed),
                rate: views::percent(f.outcomes.succeeded as f64 / total.max(1) as f64),
                last_error: f.last_failure.as_ref().map(views::attempt_badge),
                last_response: f
                    .last_failure
                    .as_ref()
                    .map(|a| views::clip(a.response.trim(), 140))
                    .unwrap_or_default(),
                last_time: f
                    .last_failure
                    .as_ref()
                    .map(|a| views::time(a.created_at, now)),
                last_href: f
                    .last_failure
                    .as_ref()
                    .map(|a| format!("{app_href}/messages/{}", a.msg_id))
                    .unwrap_or_default(),
            }
        })
        .collect();
    let quiet = t.messages == 0 && attempts == 0;
    let page = OverviewPage {
        layout: Layout::new(&state, &session, "Overview", Section::Overview, None).await,
        cards,
        lanes,
        outcomes: bars(
            &outcome_bars,
            720,
            150,
            "Delivery attempts per hour by outcome",
        ),
        volume: bars(&volume_bars, 720, 110, "Messages per hour"),
        failing,
        alerts: alert_rows(&state, session.caller, alerts.alerts, now).await,
        open_alerts,
        quiet,
        curl: format!(
            "curl -H \"Authorization: Bearer $TOKEN\" {}/api/v1/app/APP_ID/msg \\\n  -d '{{\"eventType\": \"order.created\", \"payload\": {{\"orderId\": 1001}}}}'",
            state.service.public_base()
        ),
    };
    render(page)
}
