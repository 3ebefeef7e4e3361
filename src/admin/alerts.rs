//! Alerts: exhausted deliveries and endpoints Herald disabled, newest first, and their
//! acknowledgement.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use super::session::{Authed, Posted};
use super::views::{self, Badge, Time};
use super::{AdminState, Layout, PageResult, Query, Section, q, query_string, render, see_other};
use crate::model::*;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/alerts", get(list))
        .route("/alerts/{id}/ack", post(acknowledge))
}

pub struct AlertRow {
    pub id: String,
    pub kind: Badge,
    pub time: Time,
    pub detail: String,
    pub app: String,
    pub app_href: String,
    pub endpoint_url: String,
    pub endpoint_href: String,
    pub message_href: String,
    pub acknowledged: Option<Time>,
}

/// Alerts as rows, with their application's name and links to what they are about.
pub async fn alert_rows(
    state: &AdminState,
    caller: Caller,
    alerts: Vec<Alert>,
    now: Micros,
) -> Vec<AlertRow> {
    let mut names: HashMap<AppId, Option<String>> = HashMap::new();
    let mut urls: HashMap<EndpointId, Option<String>> = HashMap::new();
    let mut rows = Vec::with_capacity(alerts.len());
    for a in alerts {
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(a.app_id) {
            let name = state
                .service
                .get_app(caller, &a.app_id.to_string())
                .await
                .ok()
                .map(|app| app.name);
            e.insert(name);
        }
        let name = names[&a.app_id].clone();
        if let std::collections::hash_map::Entry::Vacant(e) = urls.entry(a.endpoint_id) {
            let url = state
                .service
                .get_endpoint(caller, &a.app_id.to_string(), &a.endpoint_id.to_string())
                .await
                .ok()
                .map(|ep| ep.url);
            e.insert(url);
        }
        let endpoint_url = urls[&a.endpoint_id].clone().unwrap_or_default();
        let app_href = match name {
            Some(_) => format!("/apps/{}", a.app_id),
            None => String::new(),
        };
        let kind = match a.kind {
            AlertKind::AttemptsExhausted => Badge::new("bad", "Delivery failed"),
            AlertKind::EndpointDisabled => Badge::new("bad", "Endpoint disabled"),
            AlertKind::DeliveryUnreadable => Badge::new("bad", "Delivery unreadable"),
        };
        rows.push(AlertRow {
            id: a.id.to_string(),
            kind,
            time: views::time(a.created_at, now),
            detail: a.detail.clone(),
            app: name.unwrap_or_else(|| format!("{} (deleted)", a.app_id)),
            endpoint_url,
            endpoint_href: if app_href.is_empty() {
                String::new()
            } else {
                format!("{app_href}/endpoints/{}", a.endpoint_id)
            },
            message_href: match (&a.msg_id, app_href.is_empty()) {
                (Some(m), false) => format!("{app_href}/messages/{m}"),
                _ => String::new(),
            },
            app_href,
            acknowledged: a.acknowledged_at.map(|t| views::time(t, now)),
        });
    }
    rows
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    rows: Vec<AlertRow>,
    all: bool,
    next: String,
    first: String,
}

async fn list(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    query: Query,
) -> PageResult {
    let all = q(&query, "all") == "1";
    let before = AlertId::parse(q(&query, "before"));
    let page = state
        .service
        .list_alerts(session.caller, !all, before, 50)
        .await?;
    let now = now_micros();
    let all_s = if all { "1" } else { "" };
    let next = match page.next {
        Some(id) => format!(
            "/alerts{}",
            query_string(&[("all", all_s), ("before", &id.to_string())])
        ),
        None => String::new(),
    };
    let first = if before.is_some() {
        format!("/alerts{}", query_string(&[("all", all_s)]))
    } else {
        String::new()
    };
    let page = AlertsPage {
        layout: Layout::new(
            &state,
            &session,
            "Alerts",
            Section::Alerts,
            query.0.get("done").map(String::as_str),
        )
        .await,
        rows: alert_rows(&state, session.caller, page.alerts, now).await,
        all,
        next,
        first,
    };
    render(page)
}

async fn acknowledge(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    state.service.acknowledge_alert(session.caller, &id).await?;
    let back = if form.get("all") == Some("1") {
        "/alerts?all=1&done=acknowledged"
    } else {
        "/alerts?done=acknowledged"
    };
    see_other(back)
}
