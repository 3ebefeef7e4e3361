//! Applications: the list with search, create and edit, and one application's page with its
//! endpoints, triggers, recent messages, and the tenant portal link.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::chart::{Svg, sparkline};
use super::form::{Errors, FormData, pairs};
use super::session::{Authed, Posted};
use super::triggers::{TriggerRow, trigger_rows};
use super::views::{self, Badge, Copyable, Time};
use super::{
    AdminError, AdminState, Layout, PageResult, Query, Section, app_path, q, query_string, render,
    render_status, see_other,
};
use crate::model::*;
use crate::service::{AppInput, ListParams, QueueFilter, ServiceError, SessionView};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/new", get(new_form))
        .route("/apps/{app}", get(show).post(update))
        .route("/apps/{app}/edit", get(edit_form))
        .route("/apps/{app}/portal-link", post(portal_link))
}

const FIELDS: &[&str] = &["name", "uid", "throttleRate", "metadata"];

struct Row {
    name: String,
    href: String,
    id: Copyable,
    uid: String,
    endpoints: String,
    messages_today: String,
    failed_today: String,
    failed: bool,
    failed_href: String,
    created: Time,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct ListPage {
    layout: Layout,
    search: String,
    rows: Vec<Row>,
    older: String,
    newer: String,
}

async fn list(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    query: Query,
) -> PageResult {
    if let Some(app) = session.portal_app() {
        return see_other(&app_path(app));
    }
    let search = q(&query, "q").trim().to_string();
    let iterator = Some(q(&query, "iterator").to_string()).filter(|s| !s.is_empty());
    let page = state
        .service
        .search_apps(
            session.caller,
            &search,
            ListParams {
                limit: Some(50),
                iterator: iterator.clone(),
            },
        )
        .await?;
    let ids: Vec<AppId> = page.data.iter().map(|a| a.id).collect();
    let activity = state.service.app_activity(session.caller, ids).await?;
    let now = now_micros();
    let going_back = iterator.as_deref().is_some_and(|i| i.starts_with('-'));
    let link = |it: &str| format!("/apps{}", query_string(&[("q", &search), ("iterator", it)]));
    let older = match &page.iterator {
        Some(it) if !page.done || going_back => link(it),
        _ => String::new(),
    };
    let newer = match &page.prev_iterator {
        Some(it) if iterator.is_some() && (!page.done || !going_back) => link(it),
        _ => String::new(),
    };
    let rows = page
        .data
        .iter()
        .zip(activity)
        .map(|(a, act)| Row {
            name: a.name.clone(),
            href: app_path(a.id),
            id: Copyable::new(a.id.to_string()),
            uid: a.uid.clone().unwrap_or_default(),
            endpoints: views::count(act.endpoints),
            messages_today: views::count(act.messages_today),
            failed_today: views::count(act.failed_today),
            failed: act.failed_today > 0,
            failed_href: format!("/queue?app={}&state=failed", a.id),
            created: views::time(a.created_at, now),
        })
        .collect();
    render(ListPage {
        layout: Layout::new(
            &state,
            &session,
            "Applications",
            Section::Apps,
            query.0.get("done").map(String::as_str),
        )
        .await,
        search,
        rows,
        older,
        newer,
    })
}

struct EndpointRow {
    url: String,
    href: String,
    id: Copyable,
    types: Vec<String>,
    all_types: bool,
    state: Badge,
    spark: Svg,
    failed: String,
    last_error: Option<(Badge, Time, String)>,
}

struct MessageRow {
    href: String,
    id: String,
    event_type: String,
    state: Option<Badge>,
    endpoint: String,
    time: Time,
}

#[derive(Template)]
#[template(path = "app.html")]
struct ShowPage {
    layout: Layout,
    app: App,
    path: String,
    id: Copyable,
    uid: Option<Copyable>,
    created: Time,
    metadata: Vec<(String, String)>,
    endpoints: Vec<EndpointRow>,
    triggers: Vec<TriggerRow>,
    messages: Vec<MessageRow>,
    portal: bool,
    admin: bool,
    portal_link: String,
    portal_expires: String,
}

async fn show(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path(app): Path<String>,
    query: Query,
) -> PageResult {
    show_page(
        &state,
        &session,
        &app,
        query.0.get("done").map(String::as_str),
        None,
    )
    .await
}

/// The application page; `portal_link` is a link just made, shown once.
async fn show_page(
    state: &AdminState,
    session: &SessionView,
    app_key: &str,
    done: Option<&str>,
    portal_link: Option<(String, String)>,
) -> PageResult {
    let service = &state.service;
    let app = service.get_app(session.caller, app_key).await?;
    let key = app.id.to_string();
    let endpoints = service
        .list_endpoints(
            session.caller,
            &key,
            ListParams {
                limit: Some(250),
                iterator: None,
            },
            false,
        )
        .await?;
    let now = now_micros();
    let mut endpoint_rows = Vec::new();
    for ep in &endpoints.data {
        let activity = service
            .endpoint_activity(session.caller, &key, &ep.id.to_string())
            .await?;
        let (ok, bad) = activity
            .hours
            .iter()
            .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
        endpoint_rows.push(EndpointRow {
            url: ep.url.clone(),
            href: format!("/apps/{}/endpoints/{}", app.id, ep.id),
            id: Copyable::new(ep.id.to_string()),
            all_types: ep.event_types.is_none(),
            types: ep.event_types.clone().unwrap_or_default(),
            state: views::endpoint_badge(ep),
            spark: sparkline(
                &activity.hours,
                &format!("Last 24 h: {ok} attempts succeeded, {bad} failed"),
            ),
            failed: views::count(bad),
            last_error: activity.last_failure.as_ref().map(|a| {
                (
                    views::attempt_badge(a),
                    views::time(a.created_at, now),
                    format!("/apps/{}/messages/{}", app.id, a.msg_id),
                )
            }),
        });
    }
    let triggers = trigger_rows(state, session, &app).await?;
    let recent = service
        .queue(
            session.caller,
            QueueFilter {
                app: Some(key.clone()),
                limit: 10,
                ..Default::default()
            },
        )
        .await?;
    let messages = recent
        .items
        .iter()
        .map(|i| MessageRow {
            href: format!("/apps/{}/messages/{}", app.id, i.message.id),
            id: i.message.id.to_string(),
            event_type: i.message.event_type.clone(),
            state: i.delivery.as_ref().map(views::delivery_badge),
            endpoint: i
                .endpoint
                .as_ref()
                .map(|e| e.url.clone())
                .unwrap_or_default(),
            time: views::time(i.message.created_at, now),
        })
        .collect();
    let (portal_link, portal_expires) = portal_link.unwrap_or_default();
    render(ShowPage {
        layout: Layout::new(state, session, app.name.clone(), Section::Apps, done).await,
        path: app_path(app.id),
        id: Copyable::new(app.id.to_string()),
        uid: app.uid.clone().map(Copyable::new),
        created: views::time(app.created_at, now),
        metadata: app
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        endpoints: endpoint_rows,
        triggers,
        messages,
        portal: session.portal_app().is_some(),
        admin: session.caller == Caller::Admin,
        portal_link,
        portal_expires,
        app,
    })
}

#[derive(Template)]
#[template(path = "app_form.html")]
struct FormPage {
    layout: Layout,
    editing: bool,
    action: String,
    cancel: String,
    name: String,
    uid: String,
    /// Only an operator changes a uid (`AppInput::validate_uid_change`): shown, not editable.
    uid_locked: bool,
    throttle_rate: String,
    metadata: String,
    errors: Errors,
}

async fn new_form(State(state): State<AdminState>, Authed { session }: Authed) -> PageResult {
    if session.caller != Caller::Admin {
        return Err(AdminError::NotFound);
    }
    render(FormPage {
        layout: Layout::new(&state, &session, "New application", Section::Apps, None).await,
        editing: false,
        action: "/apps".into(),
        cancel: "/apps".into(),
        name: String::new(),
        uid: String::new(),
        uid_locked: false,
        throttle_rate: String::new(),
        metadata: String::new(),
        errors: Errors::default(),
    })
}

async fn edit_form(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path(app): Path<String>,
) -> PageResult {
    session.may_change()?;
    let app = state.service.get_app(session.caller, &app).await?;
    render(FormPage {
        layout: Layout::new(
            &state,
            &session,
            format!("Edit {}", app.name),
            Section::Apps,
            None,
        )
        .await,
        editing: true,
        action: app_path(app.id),
        cancel: app_path(app.id),
        name: app.name.clone(),
        uid: app.uid.clone().unwrap_or_default(),
        uid_locked: session.caller != Caller::Admin,
        throttle_rate: app.throttle_rate.map(|r| r.to_string()).unwrap_or_default(),
        metadata: app
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        errors: Errors::default(),
    })
}

/// The service input from the form, or the form's own errors (numbers, lines that do not
/// split).
fn input(f: &FormData) -> Result<AppInput, Errors> {
    let mut errors = Errors::default();
    let throttle_rate = match f.opt("throttleRate") {
        None => None,
        Some(s) => match s.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add(
                    "throttleRate",
                    "must be a whole number of messages per second",
                );
                None
            }
        },
    };
    let metadata = match pairs(&f.text("metadata"), '=') {
        Ok(p) => p.into_iter().collect(),
        Err(e) => {
            errors.add("metadata", e);
            Default::default()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AppInput {
        name: f.text("name"),
        uid: f.opt("uid"),
        throttle_rate,
        metadata,
    })
}

async fn form_again(
    state: &AdminState,
    session: &SessionView,
    form: &FormData,
    errors: Errors,
    editing: Option<&App>,
) -> PageResult {
    let (action, cancel, title) = match editing {
        Some(app) => (
            app_path(app.id),
            app_path(app.id),
            format!("Edit {}", app.name),
        ),
        None => ("/apps".into(), "/apps".into(), "New application".into()),
    };
    render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        FormPage {
            layout: Layout::new(state, session, title, Section::Apps, None).await,
            editing: editing.is_some(),
            action,
            cancel,
            name: form.text("name"),
            uid: form.text("uid"),
            uid_locked: session.caller != Caller::Admin,
            throttle_rate: form.text("throttleRate"),
            metadata: form.text("metadata"),
            errors,
        },
    )
}

async fn create(State(state): State<AdminState>, Posted { session, form }: Posted) -> PageResult {
    let input = match input(&form) {
        Ok(i) => i,
        Err(errors) => return form_again(&state, &session, &form, errors, None).await,
    };
    match state.service.create_app(session.caller, input, false).await {
        Ok((app, _)) => see_other(&format!("{}?done=created", app_path(app.id))),
        Err(e) => match Errors::from_service(&e, FIELDS) {
            Some(errors) => form_again(&state, &session, &form, errors, None).await,
            None => Err(e.into()),
        },
    }
}

async fn update(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    let current = state.service.get_app(session.caller, &app).await?;
    let input = match input(&form) {
        Ok(i) => i,
        Err(errors) => return form_again(&state, &session, &form, errors, Some(&current)).await,
    };
    match state
        .service
        .put_app(session.caller, &current.id.to_string(), input)
        .await
    {
        Ok((app, _)) => see_other(&format!("{}?done=saved", app_path(app.id))),
        Err(e) => match Errors::from_service(&e, FIELDS) {
            Some(errors) => form_again(&state, &session, &form, errors, Some(&current)).await,
            None => Err(e.into()),
        },
    }
}

/// Makes a portal link for this application and shows it once on its page.
async fn portal_link(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    let expiry: u64 = match form.text("expiry").as_str() {
        "86400" => 86_400,
        "604800" => 604_800,
        _ => 3_600,
    };
    let read_only = form.checked("read_only");
    let access = match state
        .service
        .create_portal_link(session.caller, &app, Some(expiry), read_only)
        .await
    {
        Ok(a) => a,
        Err(ServiceError::NotFound(_)) => return Err(AdminError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let expires = views::time(now_micros() + expiry as i64 * 1_000_000, now_micros());
    let label = format!(
        "{}, expires {} ({})",
        if read_only { "Read-only link" } else { "Link" },
        expires.rel,
        expires.exact
    );
    tracing::info!(app = %app, read_only, expiry, "portal link made from the dashboard");
    show_page(&state, &session, &app, None, Some((access.url, label))).await
}
