//! Endpoints: create and edit every option, enable and disable, verify, the signing secret
//! (masked, reveal on request, rotate), custom headers, test and send-example, recover and
//! replay (each confirmed with the number of deliveries it will touch), delete, and the
//! messages attempted to the endpoint with their status.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::chart::{Bar, Part, Svg, bars as bars_chart};
use super::form::{Errors, FormData, pairs};
use super::session::{Authed, Posted};
use super::views::{self, Badge, Copyable, Time};
use super::{
    AdminError, AdminState, Layout, PageResult, Query, Section, app_path, query_string, render,
    render_status, see_other,
};
use crate::model::*;
use crate::service::{
    AttemptFilter, EndpointInput, EndpointPatch, EndpointTest, ListParams, ServiceError,
    SessionView,
};
use crate::signing;

pub fn routes() -> Router<AdminState> {
    let ep = "/apps/{app}/endpoints/{ep}";
    Router::new()
        .route("/apps/{app}/endpoints", post(create))
        .route("/apps/{app}/endpoints/new", get(new_form))
        .route(ep, get(show).post(update))
        .route(&format!("{ep}/edit"), get(edit_form))
        .route(&format!("{ep}/enable"), post(enable))
        .route(&format!("{ep}/disable"), post(disable))
        .route(&format!("{ep}/secret"), post(reveal))
        .route(&format!("{ep}/rotate"), post(rotate))
        .route(&format!("{ep}/headers"), post(headers))
        .route(&format!("{ep}/test"), post(test))
        .route(&format!("{ep}/send-example"), post(send_example))
        .route(&format!("{ep}/verify"), post(verify))
        .route(&format!("{ep}/recover"), post(recover))
        .route(&format!("{ep}/replay"), post(replay))
        .route(&format!("{ep}/delete"), post(delete))
}

/// Fields of the form by the service's names.
const FIELDS: &[&str] = &[
    "url",
    "description",
    "uid",
    "eventTypes",
    "channels",
    "secret",
    "throttleRate",
    "metadata",
    "headers",
    "basicAuth",
    "clientCertificate",
    "timeoutMs",
    "retrySchedule",
    "maxAttempts",
    "concurrencyLimit",
];

fn ep_path(app: AppId, ep: EndpointId) -> String {
    format!("/apps/{app}/endpoints/{ep}")
}

// ---- the endpoint page ---------------------------------------------------------------------

struct Setting {
    label: &'static str,
    value: String,
    mono: bool,
}

struct HeaderRow {
    name: String,
    value: String,
    sensitive: bool,
}

struct MessageRow {
    time: Time,
    event_type: String,
    id: Copyable,
    state: Badge,
    next: Option<Time>,
}

struct TestRow {
    event_type: String,
    state: Badge,
    code: String,
    duration: String,
    error: String,
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct ShowPage {
    layout: Layout,
    app: App,
    app_path: String,
    ep: Endpoint,
    path: String,
    id: Copyable,
    state: Badge,
    unverified: bool,
    created: Time,
    types: Vec<String>,
    settings: Vec<Setting>,
    secret_masked: String,
    secret_revealed: String,
    old_keys: usize,
    headers: Vec<HeaderRow>,
    catalog: Vec<String>,
    spark: Svg,
    succeeded_24h: String,
    failed_24h: String,
    last_error: Option<(Badge, Time, String, String)>,
    messages: Vec<MessageRow>,
    older: String,
    newer: String,
    tests: Vec<TestRow>,
    tests_summary: String,
    pending: String,
    since_default: String,
}

/// What the page shows beyond the endpoint itself: a secret just revealed, test results.
#[derive(Default)]
struct Extras {
    secret: Option<String>,
    test: Option<EndpointTest>,
}

#[allow(clippy::too_many_arguments)]
async fn show_page(
    state: &AdminState,
    session: &SessionView,
    app: &str,
    ep: &str,
    query: &std::collections::HashMap<String, String>,
    extras: Extras,
    done: Option<&str>,
) -> PageResult {
    let service = &state.service;
    let caller = session.caller;
    let app = service.get_app(caller, app).await?;
    let key = app.id.to_string();
    let ep = service.get_endpoint(caller, &key, ep).await?;
    let ep_key = ep.id.to_string();
    let now = now_micros();
    let iterator = query.get("iterator").filter(|s| !s.is_empty()).cloned();
    let attempted = service
        .attempted_messages(
            caller,
            &key,
            &ep_key,
            ListParams {
                limit: Some(25),
                iterator: iterator.clone(),
            },
            AttemptFilter::default(),
            None,
        )
        .await?;
    let path = ep_path(app.id, ep.id);
    let going_back = iterator.as_deref().is_some_and(|i| i.starts_with('-'));
    let older = match &attempted.iterator {
        Some(it) if !attempted.done || going_back => {
            format!("{path}{}", query_string(&[("iterator", it)]))
        }
        _ => String::new(),
    };
    let newer = match &attempted.prev_iterator {
        Some(it) if iterator.is_some() && (!attempted.done || !going_back) => {
            format!("{path}{}", query_string(&[("iterator", it)]))
        }
        _ => String::new(),
    };
    let messages = attempted
        .data
        .iter()
        .map(|m| MessageRow {
            time: views::time(m.message.created_at, now),
            event_type: m.message.event_type.clone(),
            id: Copyable::link(
                m.message.id.to_string(),
                format!("/apps/{}/messages/{}", app.id, m.message.id),
            ),
            state: status_badge(m.status),
            next: m.next_attempt_ms.map(|ms| views::time_ms(ms, now)),
        })
        .collect();
    let activity = service.endpoint_activity(caller, &key, &ep_key).await?;
    let last_error = activity.last_failure.as_ref().map(|a| {
        (
            views::attempt_badge(a),
            views::time(a.created_at, now),
            format!("/apps/{}/messages/{}", app.id, a.msg_id),
            views::clip(a.response.trim(), 160),
        )
    });
    let (ok, bad) = activity
        .hours
        .iter()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    let (shown, sensitive) = service.endpoint_headers(caller, &key, &ep_key).await?;
    let mut headers: Vec<HeaderRow> = shown
        .into_iter()
        .map(|(name, value)| HeaderRow {
            name,
            value,
            sensitive: false,
        })
        .collect();
    headers.extend(sensitive.into_iter().map(|name| HeaderRow {
        name,
        value: crate::service::MASK.to_string(),
        sensitive: true,
    }));
    headers.sort_by_key(|h| h.name.to_lowercase());
    let catalog: Vec<String> = match &ep.event_types {
        Some(list) => list.clone(),
        None => service
            .list_event_types(
                ListParams {
                    limit: Some(250),
                    iterator: None,
                },
                false,
            )
            .await?
            .data
            .into_iter()
            .map(|e| e.name)
            .collect(),
    };
    let (pending, more) = service.endpoint_pending(caller, &key, &ep_key).await?;
    let pending_text = if more && pending > 0 {
        format!("{pending}+")
    } else {
        pending.to_string()
    };
    let (tests, tests_summary) = match &extras.test {
        None => (Vec::new(), String::new()),
        Some(t) => {
            let passed = t.tests.iter().filter(|r| r.success).count();
            (
                t.tests
                    .iter()
                    .map(|r| TestRow {
                        event_type: r.event_type.clone(),
                        state: if r.success {
                            Badge::new("ok", "Succeeded")
                        } else {
                            Badge::new("bad", "Failed")
                        },
                        code: if r.status_code == 0 {
                            "—".into()
                        } else {
                            r.status_code.to_string()
                        },
                        duration: views::duration_ms(r.duration_ms as f64),
                        error: r.error.clone().unwrap_or_default(),
                    })
                    .collect(),
                format!(
                    "{passed} of {} succeeded, started {}",
                    t.tests.len(),
                    views::time(t.started_at, now).exact
                ),
            )
        }
    };
    let current_key = ep.keys.first().map(|k| k.key.clone()).unwrap_or_default();
    let old_keys = ep
        .keys
        .iter()
        .skip(1)
        .filter(|k| k.expires_at.is_none_or(|t| t > now))
        .count();
    let page = ShowPage {
        layout: Layout::new(
            state,
            session,
            views::clip(&ep.url, 60),
            Section::Apps,
            done,
        )
        .await,
        app_path: app_path(app.id),
        path,
        id: Copyable::new(ep.id.to_string()),
        state: views::endpoint_badge(&ep),
        unverified: ep
            .options
            .verification
            .as_ref()
            .is_some_and(|v| v.verified_at.is_none()),
        created: views::time(ep.created_at, now),
        types: ep.event_types.clone().unwrap_or_default(),
        settings: settings(&ep),
        secret_masked: signing::mask_secret(&current_key),
        secret_revealed: extras.secret.unwrap_or_default(),
        old_keys,
        headers,
        catalog,
        spark: activity_chart(&activity.hours),
        last_error,
        succeeded_24h: views::count(ok),
        failed_24h: views::count(bad),
        messages,
        older,
        newer,
        tests,
        tests_summary,
        pending: pending_text,
        since_default: views::datetime_local(now - 24 * 3_600_000_000),
        ep,
        app,
    };
    render(page)
}

/// The endpoint's attempts per hour over 24 hours, succeeded and failed.
fn activity_chart(activity: &[(u64, u64)]) -> Svg {
    let now_hour = crate::storage::hour_of(now_micros());
    let first = now_hour + 1 - activity.len() as u64;
    let label = |hour: u64| {
        chrono::DateTime::from_timestamp((hour * 3600) as i64, 0)
            .unwrap_or_default()
            .format("%H:00")
            .to_string()
    };
    let last = activity.len().saturating_sub(1);
    let bars: Vec<Bar> = activity
        .iter()
        .enumerate()
        .map(|(i, (ok, bad))| {
            let hour = first + i as u64;
            Bar {
                parts: vec![
                    Part {
                        class: "ok",
                        value: *ok,
                    },
                    Part {
                        class: "bad",
                        value: *bad,
                    },
                ],
                title: format!(
                    "{}–{} UTC: {ok} attempts succeeded, {bad} failed",
                    label(hour),
                    label(hour + 1)
                ),
                tick: if (last - i).is_multiple_of(6) {
                    label(hour)
                } else {
                    String::new()
                },
            }
        })
        .collect();
    bars_chart(&bars, 640, 110, "Attempts per hour, last 24 hours")
}

fn status_badge(s: MessageStatus) -> Badge {
    match s {
        MessageStatus::Success => Badge::new("ok", "Succeeded"),
        MessageStatus::Pending => Badge::new("warn", "Pending"),
        MessageStatus::Sending => Badge::new("warn", "Retrying"),
        MessageStatus::Fail => Badge::new("bad", "Failed"),
        MessageStatus::Canceled => Badge::new("muted", "Cancelled"),
    }
}

/// The endpoint's settings as label and value, in words.
fn settings(ep: &Endpoint) -> Vec<Setting> {
    let o = &ep.options;
    let text = |label, value: String| Setting {
        label,
        value,
        mono: false,
    };
    let mono = |label, value: String| Setting {
        label,
        value,
        mono: true,
    };
    let mut out = vec![text(
        "Event types",
        match &ep.event_types {
            None => "every event type".into(),
            Some(t) => format!("{} selected", t.len()),
        },
    )];
    if o.subscription_disabled {
        out.push(text(
            "Subscription",
            "switched off: only extra triggers route here".into(),
        ));
    }
    if let Some(c) = &ep.channels {
        out.push(mono("Channels", c.join(", ")));
    }
    if let Some(uid) = &ep.uid {
        out.push(mono("uid", uid.clone()));
    }
    out.push(text(
        "Rate limit",
        ep.throttle_rate
            .map_or("none".into(), |r| format!("{r} messages per second")),
    ));
    out.push(text(
        "Timeout",
        o.timeout_ms
            .map_or("server default".into(), |t| views::duration_ms(t as f64)),
    ));
    out.push(text(
        "Retries",
        match (&o.retry_schedule_ms, o.attempts_max) {
            (None, None) => "server default schedule".into(),
            (schedule, attempts) => {
                let s = schedule.as_ref().map_or("default delays".to_string(), |s| {
                    s.iter()
                        .map(|d| views::duration_ms(*d as f64))
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                match attempts {
                    Some(n) => format!("{s}; at most {n} attempts"),
                    None => s,
                }
            }
        },
    ));
    if let Some(c) = o.concurrency_max {
        out.push(text("Concurrency", format!("{c} attempts at once")));
    }
    out.push(text(
        "HTTP basic auth",
        o.basic_auth.as_ref().map_or("none".into(), |a| {
            format!("user {}, password {}", a.username, crate::service::MASK)
        }),
    ));
    out.push(text(
        "Client certificate",
        if o.client_cert.is_some() {
            "presented in TLS (private key stored, never shown)".into()
        } else {
            "none".into()
        },
    ));
    if let Some(v) = &o.verification {
        out.push(text(
            "Verification",
            match v.verified_at {
                Some(_) => "verified".into(),
                None => "waiting for the code sent to the URL".into(),
            },
        ));
    }
    if !ep.metadata.is_empty() {
        out.push(mono(
            "Metadata",
            ep.metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    out
}

async fn show(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path((app, ep)): Path<(String, String)>,
    query: Query,
) -> PageResult {
    show_page(
        &state,
        &session,
        &app,
        &ep,
        &query.0,
        Extras::default(),
        query.0.get("done").map(String::as_str),
    )
    .await
}

// ---- the form ------------------------------------------------------------------------------

struct TypeChoice {
    name: String,
    description: String,
    checked: bool,
    deprecated: bool,
}

#[derive(Template)]
#[template(path = "endpoint_form.html")]
struct FormPage {
    layout: Layout,
    app: App,
    app_path: String,
    editing: bool,
    action: String,
    cancel: String,
    v: Values,
    types: Vec<TypeChoice>,
    has_basic_password: bool,
    has_cert: bool,
    errors: Errors,
}

/// The form's values as typed.
#[derive(Default)]
struct Values {
    url: String,
    description: String,
    uid: String,
    scope: String,
    event_types: Vec<String>,
    channels: String,
    throttle_rate: String,
    metadata: String,
    secret: String,
    headers: String,
    verify: bool,
    timeout_ms: String,
    retry_schedule_s: String,
    attempts_max: String,
    concurrency_max: String,
    basic_user: String,
    basic_remove: bool,
    cert_remove: bool,
}

fn values_of(ep: &Endpoint) -> Values {
    let o = &ep.options;
    Values {
        url: ep.url.clone(),
        description: ep.description.clone(),
        uid: ep.uid.clone().unwrap_or_default(),
        scope: if ep.event_types.is_some() {
            "some"
        } else {
            "all"
        }
        .into(),
        event_types: ep.event_types.clone().unwrap_or_default(),
        channels: ep.channels.clone().unwrap_or_default().join(", "),
        throttle_rate: ep.throttle_rate.map(|t| t.to_string()).unwrap_or_default(),
        metadata: ep
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        timeout_ms: o.timeout_ms.map(|t| t.to_string()).unwrap_or_default(),
        retry_schedule_s: o
            .retry_schedule_ms
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|d| format!("{}", *d as f64 / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        attempts_max: o.attempts_max.map(|n| n.to_string()).unwrap_or_default(),
        concurrency_max: o.concurrency_max.map(|n| n.to_string()).unwrap_or_default(),
        basic_user: o
            .basic_auth
            .as_ref()
            .map(|a| a.username.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn values_from(f: &FormData) -> Values {
    Values {
        url: f.text("url"),
        description: f.text("description"),
        uid: f.text("uid"),
        scope: f.text("scope"),
        event_types: f.all("event_types"),
        channels: f.text("channels"),
        throttle_rate: f.text("throttleRate"),
        metadata: f.text("metadata"),
        secret: f.text("secret"),
        headers: f.text("headers"),
        verify: f.checked("verify"),
        timeout_ms: f.text("timeoutMs"),
        retry_schedule_s: f.text("retrySchedule"),
        attempts_max: f.text("maxAttempts"),
        concurrency_max: f.text("concurrencyLimit"),
        basic_user: f.text("basic_user"),
        basic_remove: f.checked("basic_remove"),
        cert_remove: f.checked("cert_remove"),
    }
}

/// The service input from the form; `current` keeps what a blank secret field leaves as it
/// is (basic auth password, client certificate) when editing.
fn input(f: &FormData, v: &Values, current: Option<&Endpoint>) -> Result<EndpointInput, Errors> {
    let mut errors = Errors::default();
    fn number<T: std::str::FromStr>(
        errors: &mut Errors,
        field: &str,
        text: &str,
        what: &str,
    ) -> Option<T> {
        if text.is_empty() {
            return None;
        }
        match text.parse::<T>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add(field, format!("must be {what}"));
                None
            }
        }
    }
    let event_types = match v.scope.as_str() {
        "all" => None,
        "some" => Some(v.event_types.clone()),
        _ => {
            errors.add(
                "eventTypes",
                "choose: every event type, or only the ones ticked below",
            );
            None
        }
    };
    let channels = Some(
        v.channels
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .filter(|c| !c.is_empty());
    let throttle_rate = number::<u16>(
        &mut errors,
        "throttleRate",
        &v.throttle_rate,
        "a whole number",
    );
    let metadata: BTreeMap<String, String> = match pairs(&v.metadata, '=') {
        Ok(p) => p.into_iter().collect(),
        Err(e) => {
            errors.add("metadata", e);
            BTreeMap::new()
        }
    };
    let headers: BTreeMap<String, String> = match pairs(&v.headers, ':') {
        Ok(p) => p.into_iter().collect(),
        Err(e) => {
            errors.add("headers", e);
            BTreeMap::new()
        }
    };
    let timeout_ms = number::<u64>(
        &mut errors,
        "timeoutMs",
        &v.timeout_ms,
        "a whole number of milliseconds",
    );
    let retry_schedule_ms = if v.retry_schedule_s.is_empty() {
        None
    } else {
        let parsed: Result<Vec<u64>, _> = v
            .retry_schedule_s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f64>()
                    .ok()
                    .filter(|x| *x >= 0.0 && x.is_finite())
                    .map(|x| (x * 1000.0).round() as u64)
                    .ok_or(())
            })
            .collect();
        match parsed {
            Ok(list) => Some(list),
            Err(()) => {
                errors.add(
                    "retrySchedule",
                    "must be delays in seconds, separated by commas",
                );
                None
            }
        }
    };
    let attempts_max = number::<u32>(
        &mut errors,
        "maxAttempts",
        &v.attempts_max,
        "a whole number",
    );
    let concurrency_max = number::<u32>(
        &mut errors,
        "concurrencyLimit",
        &v.concurrency_max,
        "a whole number",
    );
    let current_opts = current.map(|e| e.options.clone()).unwrap_or_default();
    let basic_auth = if v.basic_remove || v.basic_user.is_empty() {
        None
    } else {
        let password = match f.get("basic_password").unwrap_or("") {
            "" => current_opts
                .basic_auth
                .as_ref()
                .map(|a| a.password.clone())
                .unwrap_or_default(),
            p => p.to_string(),
        };
        Some(BasicAuth {
            username: v.basic_user.clone(),
            password,
        })
    };
    let cert_pem = f.get("cert_pem").unwrap_or("").trim().to_string();
    let key_pem = f.get("key_pem").unwrap_or("").trim().to_string();
    let client_cert = if v.cert_remove {
        None
    } else if cert_pem.is_empty() && key_pem.is_empty() {
        current_opts.client_cert.clone()
    } else {
        Some(ClientCert { cert_pem, key_pem })
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EndpointInput {
        url: v.url.clone(),
        description: v.description.clone(),
        uid: Some(v.uid.clone()).filter(|s| !s.is_empty()),
        event_types,
        channels,
        secret: Some(v.secret.clone()).filter(|s| !s.is_empty()),
        disabled: current.is_some_and(|e| e.disabled),
        throttle_rate,
        metadata,
        headers,
        options: EndpointOptions {
            basic_auth,
            client_cert,
            timeout_ms,
            retry_schedule_ms,
            attempts_max,
            concurrency_max,
            ..current_opts
        },
        verify: v.verify,
    })
}

async fn form_page(
    state: &AdminState,
    session: &SessionView,
    app: App,
    current: Option<&Endpoint>,
    v: Values,
    errors: Errors,
    status: StatusCode,
) -> PageResult {
    let catalog = state
        .service
        .list_event_types(
            ListParams {
                limit: Some(250),
                iterator: None,
            },
            false,
        )
        .await?
        .data;
    let mut types: Vec<TypeChoice> = catalog
        .iter()
        .map(|et| TypeChoice {
            checked: v.event_types.contains(&et.name),
            name: et.name.clone(),
            description: et.description.clone(),
            deprecated: et.deprecated,
        })
        .collect();
    // A subscribed type that left the catalog (archived) stays visible, ticked.
    for t in &v.event_types {
        if !types.iter().any(|c| &c.name == t) {
            types.push(TypeChoice {
                name: t.clone(),
                description: "archived".into(),
                checked: true,
                deprecated: true,
            });
        }
    }
    let base = app_path(app.id);
    let (action, cancel, title) = match current {
        Some(ep) => (
            ep_path(app.id, ep.id),
            ep_path(app.id, ep.id),
            "Edit endpoint".to_string(),
        ),
        None => (
            format!("{base}/endpoints"),
            base.clone(),
            "New endpoint".to_string(),
        ),
    };
    render_status(
        status,
        FormPage {
            layout: Layout::new(state, session, title, Section::Apps, None).await,
            app_path: base,
            editing: current.is_some(),
            action,
            cancel,
            types,
            has_basic_password: current.is_some_and(|e| {
                e.options
                    .basic_auth
                    .as_ref()
                    .is_some_and(|a| !a.password.is_empty())
            }),
            has_cert: current.is_some_and(|e| e.options.client_cert.is_some()),
            v,
            errors,
            app,
        },
    )
}

async fn new_form(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path(app): Path<String>,
) -> PageResult {
    session.may_change()?;
    let app = state.service.get_app(session.caller, &app).await?;
    form_page(
        &state,
        &session,
        app,
        None,
        Values::default(),
        Errors::default(),
        StatusCode::OK,
    )
    .await
}

async fn edit_form(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path((app, ep)): Path<(String, String)>,
) -> PageResult {
    session.may_change()?;
    let app = state.service.get_app(session.caller, &app).await?;
    let ep = state
        .service
        .get_endpoint(session.caller, &app.id.to_string(), &ep)
        .await?;
    let v = values_of(&ep);
    form_page(
        &state,
        &session,
        app,
        Some(&ep),
        v,
        Errors::default(),
        StatusCode::OK,
    )
    .await
}

async fn create(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let v = values_from(&form);
    let input = match input(&form, &v, None) {
        Ok(i) => i,
        Err(errors) => {
            return form_page(
                &state,
                &session,
                app,
                None,
                v,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state
        .service
        .create_endpoint(session.caller, &app.id.to_string(), input)
        .await
    {
        Ok(ep) => see_other(&format!("{}?done=created", ep_path(app.id, ep.id))),
        Err(e) => match Errors::from_service(&e, FIELDS) {
            Some(errors) => {
                form_page(
                    &state,
                    &session,
                    app,
                    None,
                    v,
                    errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

async fn update(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let key = app.id.to_string();
    let current = state
        .service
        .get_endpoint(session.caller, &key, &ep)
        .await?;
    let v = values_from(&form);
    let input = match input(&form, &v, Some(&current)) {
        Ok(i) => i,
        Err(errors) => {
            return form_page(
                &state,
                &session,
                app,
                Some(&current),
                v,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state
        .service
        .put_endpoint(session.caller, &key, &current.id.to_string(), input)
        .await
    {
        Ok((ep, _)) => see_other(&format!("{}?done=saved", ep_path(app.id, ep.id))),
        Err(e) => match Errors::from_service(&e, FIELDS) {
            Some(errors) => {
                form_page(
                    &state,
                    &session,
                    app,
                    Some(&current),
                    v,
                    errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

// ---- actions ---------------------------------------------------------------------------------

async fn set_disabled(
    state: &AdminState,
    session: &SessionView,
    app: &str,
    ep: &str,
    disabled: bool,
) -> PageResult {
    let app = state.service.get_app(session.caller, app).await?;
    let ep = state
        .service
        .patch_endpoint(
            session.caller,
            &app.id.to_string(),
            ep,
            EndpointPatch {
                disabled: Some(disabled),
                ..Default::default()
            },
        )
        .await?;
    see_other(&format!(
        "{}?done={}",
        ep_path(app.id, ep.id),
        if disabled { "disabled" } else { "enabled" }
    ))
}

async fn enable(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, .. }: Posted,
) -> PageResult {
    set_disabled(&state, &session, &app, &ep, false).await
}

async fn disable(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, .. }: Posted,
) -> PageResult {
    set_disabled(&state, &session, &app, &ep, true).await
}

/// Shows the full secret once, on this response only (never in a URL), and logs who saw it.
async fn reveal(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, .. }: Posted,
) -> PageResult {
    let secret = state
        .service
        .endpoint_secret(session.caller, &app, &ep)
        .await?;
    tracing::info!(owner = ?session.owner, app = %app, endpoint = %ep, "endpoint secret revealed in the dashboard");
    show_page(
        &state,
        &session,
        &app,
        &ep,
        &Default::default(),
        Extras {
            secret: Some(secret),
            ..Default::default()
        },
        None,
    )
    .await
}

async fn rotate(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, .. }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let endpoint = state
        .service
        .get_endpoint(session.caller, &app.id.to_string(), &ep)
        .await?;
    state
        .service
        .rotate_secret(session.caller, &app.id.to_string(), &ep, None, None)
        .await?;
    tracing::info!(owner = ?session.owner, endpoint = %endpoint.id, "endpoint secret rotated in the dashboard");
    see_other(&format!("{}?done=rotated", ep_path(app.id, endpoint.id)))
}

/// Adds or replaces one header (`name`, `value`), or removes one (`remove`).
async fn headers(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let endpoint = state
        .service
        .get_endpoint(session.caller, &app.id.to_string(), &ep)
        .await?;
    let (set, remove) = match form.opt("remove") {
        Some(name) => (BTreeMap::new(), vec![name]),
        None => {
            let name = form.text("name");
            if name.is_empty() {
                return Err(AdminError::BadRequest("A header needs a name.".into()));
            }
            (
                BTreeMap::from([(name, Some(form.text("value")))]),
                Vec::new(),
            )
        }
    };
    state
        .service
        .set_endpoint_headers(session.caller, &app.id.to_string(), &ep, set, remove, false)
        .await?;
    see_other(&format!(
        "{}?done=headers#headers",
        ep_path(app.id, endpoint.id)
    ))
}

/// Sends the examples now and shows each answer in a table on the endpoint's page.
async fn test(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let event_type = form.opt("event_type");
    let result = state
        .service
        .test_endpoint(session.caller, &app, &ep, event_type.as_deref())
        .await?;
    show_page(
        &state,
        &session,
        &app,
        &ep,
        &Default::default(),
        Extras {
            test: Some(result),
            ..Default::default()
        },
        None,
    )
    .await
}

/// Queues the example of an event type as a real message to this endpoint, and opens it.
async fn send_example(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let event_type = form
        .opt("event_type")
        .unwrap_or_else(|| crate::service::PING_EVENT_TYPE.into());
    let msg = state
        .service
        .send_example(session.caller, &app.id.to_string(), &ep, &event_type, 0)
        .await?;
    see_other(&format!("/apps/{}/messages/{}?done=sent", app.id, msg.id))
}

async fn verify(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    match state
        .service
        .verify_endpoint(session.caller, &app.id.to_string(), &ep, &form.text("code"))
        .await
    {
        Ok(e) => see_other(&format!("{}?done=verified", ep_path(app.id, e.id))),
        Err(ServiceError::Invalid(f)) => Err(AdminError::BadRequest(
            f.into_iter().map(|f| f.msg).collect::<Vec<_>>().join("; "),
        )),
        Err(e) => Err(e.into()),
    }
}

// ---- confirmed actions ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    heading: String,
    detail: String,
    count: String,
    nothing: bool,
    action: String,
    button: String,
    danger: bool,
    cancel: String,
    fields: Vec<(String, String)>,
}

#[allow(clippy::too_many_arguments)]
async fn confirm(
    state: &AdminState,
    session: &SessionView,
    heading: String,
    detail: String,
    count: String,
    action: String,
    button: &str,
    danger: bool,
    cancel: String,
    fields: Vec<(String, String)>,
) -> PageResult {
    render(ConfirmPage {
        layout: Layout::new(state, session, heading.clone(), Section::Apps, None).await,
        heading,
        detail,
        nothing: count.starts_with("0 ") && !danger,
        count,
        action,
        button: button.to_string(),
        danger,
        cancel,
        fields,
    })
}

fn since_of(form: &FormData) -> Result<Micros, AdminError> {
    views::parse_datetime(&form.text("since")).ok_or_else(|| {
        AdminError::BadRequest("Give the start of the time window as a date and time (UTC).".into())
    })
}

/// What the recover and replay forms queue again; they differ only in the service calls and
/// the words of their confirmation.
#[derive(Clone, Copy)]
enum Requeue {
    /// Deliveries that failed for good.
    Recover,
    /// Messages the endpoint was subscribed to but never received.
    Replay,
}

async fn recover(
    state: State<AdminState>,
    path: Path<(String, String)>,
    posted: Posted,
) -> PageResult {
    requeue(state, path, posted, Requeue::Recover).await
}

async fn replay(
    state: State<AdminState>,
    path: Path<(String, String)>,
    posted: Posted,
) -> PageResult {
    requeue(state, path, posted, Requeue::Replay).await
}

/// Shows how many would be queued and asks for confirmation; once confirmed, queues them.
async fn requeue(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
    kind: Requeue,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let key = app.id.to_string();
    let endpoint = state
        .service
        .get_endpoint(session.caller, &key, &ep)
        .await?;
    let since = since_of(&form)?;
    let path = ep_path(app.id, endpoint.id);
    let service = &state.service;
    if form.get("confirm") != Some("yes") {
        let estimate = match kind {
            Requeue::Recover => {
                service
                    .recover_preview(session.caller, &key, &ep, since, None)
                    .await?
            }
            Requeue::Replay => {
                service
                    .replay_preview(session.caller, &key, &ep, since, None)
                    .await?
            }
        };
        let when = views::time(since, now_micros());
        let (title, text, one, many, action, button) = match kind {
            Requeue::Recover => (
                "Recover failed deliveries",
                format!(
                    "Deliveries to {} that failed for good since {} ({}) are queued again, each as a new attempt.",
                    endpoint.url, when.exact, when.rel
                ),
                "delivery",
                "deliveries",
                "recover",
                "Recover",
            ),
            Requeue::Replay => (
                "Replay missing messages",
                format!(
                    "Messages since {} ({}) that {} is subscribed to but never received (it was disabled or not subscribed then) are sent to it now.",
                    when.exact, when.rel, endpoint.url
                ),
                "message",
                "messages",
                "replay",
                "Replay",
            ),
        };
        return confirm(
            &state,
            &session,
            title.into(),
            text,
            format!(
                "{}{} {}",
                if estimate.complete { "" } else { "at least " },
                estimate.count,
                if estimate.count == 1 { one } else { many }
            ),
            format!("{path}/{action}"),
            button,
            false,
            path,
            vec![
                ("since".into(), form.text("since")),
                ("confirm".into(), "yes".into()),
            ],
        )
        .await;
    }
    let task = match kind {
        Requeue::Recover => TaskKind::Recover,
        Requeue::Replay => TaskKind::Replay,
    };
    service
        .start_task(session.caller, &key, &ep, task, since, None)
        .await?;
    // A background task: it queues them chunk by chunk after this answer.
    let done = match kind {
        Requeue::Recover => "recovering",
        Requeue::Replay => "replaying",
    };
    see_other(&format!("{path}?done={done}"))
}

async fn delete(
    State(state): State<AdminState>,
    Path((app, ep)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let key = app.id.to_string();
    let endpoint = state
        .service
        .get_endpoint(session.caller, &key, &ep)
        .await?;
    let path = ep_path(app.id, endpoint.id);
    if form.get("confirm") != Some("yes") {
        let (pending, more) = state
            .service
            .endpoint_pending(session.caller, &key, &ep)
            .await?;
        let n = format!(
            "{pending}{} pending {}",
            if more && pending > 0 { "+" } else { "" },
            if pending == 1 {
                "delivery"
            } else {
                "deliveries"
            }
        );
        return confirm(
            &state,
            &session,
            "Delete endpoint".into(),
            format!(
                "{} stops receiving webhooks. Its pending deliveries are cancelled; its history of attempts stays until retention removes it. This cannot be undone.",
                endpoint.url
            ),
            n,
            format!("{path}/delete"),
            "Delete endpoint",
            true,
            path,
            vec![("confirm".into(), "yes".into())],
        )
        .await;
    }
    state
        .service
        .delete_endpoint(session.caller, &key, &ep)
        .await?;
    tracing::info!(owner = ?session.owner, endpoint = %endpoint.id, "endpoint deleted in the dashboard");
    see_other(&format!("{}?done=deleted", app_path(app.id)))
}
