//! Triggers: an application's routing rules as sentences ("When `order.updated` where ... →
//! call ... with an XML template, high priority, unique by ..."), and the editor with the
//! merge fields of the chosen event type beside the template and a preview rendered against
//! its example (live while typing when JavaScript runs; with the Preview button without).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};

use super::form::{Errors, FormData};
use super::session::{Authed, Posted};
use super::views::{self, Badge, Markup, esc};
use super::{AdminState, Layout, PageResult, Query, Section, app_path, render_status, see_other};
use crate::model::*;
use crate::service::triggers::{Preview, TriggerInput, TriggerView};
use crate::service::{ListParams, ServiceError, SessionView};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/apps/{app}/triggers", post(create))
        .route("/apps/{app}/triggers/new", get(new_form))
        .route("/apps/{app}/triggers/preview", post(preview_fragment))
        .route("/apps/{app}/triggers/{id}", get(edit_form).post(update))
        .route("/apps/{app}/triggers/{id}/delete", post(delete))
}

const FIELDS: &[&str] = &[
    "endpoint",
    "description",
    "eventTypes",
    "condition",
    "template",
    "uniqueKey",
    "delayMs",
    "priority",
];

/// A trigger as one row of the application page.
pub struct TriggerRow {
    pub sentence: Markup,
    pub state: Badge,
    pub href: String,
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", esc(text))
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

fn content_name(c: ContentType) -> &'static str {
    match c {
        ContentType::Json => "JSON",
        ContentType::Xml => "XML",
        ContentType::Text => "text",
    }
}

/// The sentence of a trigger.
fn sentence(view: &TriggerView, endpoint: Option<&Endpoint>, app: AppId) -> Markup {
    let call = |ep_id: EndpointId| match endpoint {
        Some(ep) => format!(
            r#"call <a class="mono" href="/apps/{app}/endpoints/{}">{}</a>"#,
            ep.id,
            esc(&views::clip(&ep.url, 60))
        ),
        None => format!("call {}", code(&ep_id.to_string())),
    };
    match view {
        TriggerView::Builtin(ep) => {
            let types = match &ep.event_types {
                None => "any event type".to_string(),
                Some(list) => list.iter().map(|t| code(t)).collect::<Vec<_>>().join(", "),
            };
            Markup(format!(
                "When {types} → {} with the payload as posted <span class=\"muted\">(its subscription)</span>",
                call(ep.id)
            ))
        }
        TriggerView::Custom(t) => {
            let types = t
                .event_types
                .iter()
                .map(|e| code(e))
                .collect::<Vec<_>>()
                .join(", ");
            let mut s = format!("When {types}");
            if let Some(c) = &t.condition {
                s.push_str(&format!(" where {}", code(c)));
            }
            s.push_str(&format!(" → {}", call(t.endpoint_id)));
            match &t.template {
                Some(_) => s.push_str(&format!(
                    " with a <b>{} template</b>",
                    content_name(t.content_type)
                )),
                None => s.push_str(" with the payload as posted"),
            }
            s.push_str(&format!(", <b>{} priority</b>", priority_name(t.priority)));
            if let Some(k) = &t.unique_key {
                s.push_str(&format!(", unique by {}", code(k)));
            }
            if t.delay_ms > 0 {
                s.push_str(&format!(
                    ", after {}",
                    views::duration_ms(t.delay_ms as f64)
                ));
            }
            if !t.description.is_empty() {
                s.push_str(&format!(
                    " <span class=\"muted\">— {}</span>",
                    esc(&t.description)
                ));
            }
            Markup(s)
        }
    }
}

/// The rows of an application's triggers, built-in ones first.
pub async fn trigger_rows(
    state: &AdminState,
    session: &SessionView,
    app: &App,
) -> Result<Vec<TriggerRow>, ServiceError> {
    let views = state
        .service
        .list_triggers(session.caller, &app.id.to_string())
        .await?;
    let endpoints = endpoints_of(state, session, app).await?;
    Ok(views
        .iter()
        .map(|v| {
            let (endpoint_id, enabled) = match v {
                TriggerView::Builtin(ep) => (ep.id, !ep.options.subscription_disabled),
                TriggerView::Custom(t) => (t.endpoint_id, t.enabled),
            };
            let ep = endpoints.iter().find(|e| e.id == endpoint_id);
            TriggerRow {
                sentence: sentence(v, ep, app.id),
                state: if enabled {
                    Badge::new("ok", "On")
                } else {
                    Badge::new("muted", "Off")
                },
                href: format!("{}/triggers/{}", app_path(app.id), v.id()),
            }
        })
        .collect())
}

async fn endpoints_of(
    state: &AdminState,
    session: &SessionView,
    app: &App,
) -> Result<Vec<Endpoint>, ServiceError> {
    Ok(state
        .service
        .list_endpoints(
            session.caller,
            &app.id.to_string(),
            ListParams {
                limit: Some(250),
                iterator: None,
            },
            false,
        )
        .await?
        .data)
}

/// What the form shows: its values as typed.
struct Values {
    endpoint: String,
    description: String,
    event_types: Vec<String>,
    patterns: String,
    condition: String,
    template: String,
    content_type: String,
    priority: String,
    unique_key: String,
    delay_s: String,
    enabled: bool,
    preview_type: String,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct PreviewView {
    condition: Markup,
    body: String,
    body_error: String,
    content_type: String,
    unique_key: String,
    unique_key_error: String,
}

#[derive(Template)]
#[template(path = "trigger_form.html")]
struct FormPage {
    layout: Layout,
    app: App,
    app_path: String,
    action: String,
    builtin: bool,
    editing: bool,
    delete_action: String,
    values: Values,
    endpoints: Vec<Choice>,
    catalog: Vec<Choice>,
    preview_types: Vec<Choice>,
    merge_fields: Vec<String>,
    preview: Option<PreviewView>,
    preview_error: String,
    preview_type: String,
    errors: Errors,
}

#[derive(Template)]
#[template(path = "trigger_preview.html")]
struct PreviewFragment {
    preview: Option<PreviewView>,
    preview_error: String,
    merge_fields: Vec<String>,
    preview_type: String,
}

fn values_of(view: Option<&TriggerView>, endpoint: Option<String>) -> Values {
    let mut v = Values {
        endpoint: endpoint.unwrap_or_default(),
        description: String::new(),
        event_types: Vec::new(),
        patterns: String::new(),
        condition: String::new(),
        template: String::new(),
        content_type: "json".into(),
        priority: "normal".into(),
        unique_key: String::new(),
        delay_s: String::new(),
        enabled: true,
        preview_type: String::new(),
    };
    match view {
        None => {}
        Some(TriggerView::Builtin(ep)) => {
            v.endpoint = ep.id.to_string();
            v.event_types = ep.event_types.clone().unwrap_or_else(|| vec!["*".into()]);
            v.enabled = !ep.options.subscription_disabled;
        }
        Some(TriggerView::Custom(t)) => {
            v.endpoint = t.endpoint_id.to_string();
            v.description = t.description.clone();
            let (patterns, exact): (Vec<String>, Vec<String>) = t
                .event_types
                .iter()
                .cloned()
                .partition(|e| e.ends_with(".*") || e == "*");
            v.event_types = exact;
            v.patterns = patterns.join(", ");
            v.condition = t.condition.clone().unwrap_or_default();
            v.template = t.template.clone().unwrap_or_default();
            v.content_type = match t.content_type {
                ContentType::Json => "json",
                ContentType::Xml => "xml",
                ContentType::Text => "text",
            }
            .into();
            v.priority = priority_name(t.priority).into();
            v.unique_key = t.unique_key.clone().unwrap_or_default();
            v.delay_s = if t.delay_ms > 0 {
                format!("{}", t.delay_ms as f64 / 1000.0)
            } else {
                String::new()
            };
            v.enabled = t.enabled;
        }
    }
    v.preview_type = v
        .event_types
        .iter()
        .find(|t| *t != "*")
        .cloned()
        .unwrap_or_default();
    v
}

fn values_from(f: &FormData) -> Values {
    let event_types = f.all("event_types");
    let preview_type = f
        .opt("preview_type")
        .filter(|t| event_types.contains(t))
        .or_else(|| event_types.iter().find(|t| *t != "*").cloned())
        .unwrap_or_default();
    Values {
        endpoint: f.text("endpoint"),
        description: f.text("description"),
        patterns: f.text("patterns"),
        condition: f.get("condition").unwrap_or("").trim().to_string(),
        template: f.get("template").unwrap_or("").to_string(),
        content_type: f.text("content_type"),
        priority: f.text("priority"),
        unique_key: f.text("unique_key"),
        delay_s: f.text("delay_s"),
        enabled: f.checked("enabled"),
        preview_type,
        event_types,
    }
}

/// The service input from the form values, or the form's own errors.
fn input(v: &Values) -> Result<TriggerInput, Errors> {
    let mut errors = Errors::default();
    let mut event_types = v.event_types.clone();
    event_types.extend(
        v.patterns
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    let delay_ms = match v.delay_s.trim() {
        "" => 0,
        s => match s.parse::<f64>() {
            Ok(secs) if secs >= 0.0 && secs.is_finite() => (secs * 1000.0).round() as u64,
            _ => {
                errors.add("delayMs", "must be a number of seconds");
                0
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TriggerInput {
        endpoint: v.endpoint.clone(),
        description: v.description.clone(),
        event_types,
        condition: Some(v.condition.clone()).filter(|s| !s.trim().is_empty()),
        template: Some(v.template.clone()).filter(|s| !s.trim().is_empty()),
        content_type: match v.content_type.as_str() {
            "xml" => ContentType::Xml,
            "text" => ContentType::Text,
            _ => ContentType::Json,
        },
        priority: Some(match v.priority.as_str() {
            "high" => Priority::High,
            "low" => Priority::Low,
            _ => Priority::Normal,
        }),
        unique_key: Some(v.unique_key.clone()).filter(|s| !s.trim().is_empty()),
        delay_ms,
        enabled: v.enabled,
    })
}

fn preview_view(p: Preview) -> PreviewView {
    let condition = match &p.condition {
        Ok(true) => Markup(Badge::new("ok", "Condition true: a delivery is made").to_string()),
        Ok(false) => Markup(Badge::new("muted", "Condition false: no delivery").to_string()),
        Err(e) => Markup(format!(
            "{} <span class=\"mono small\">{}</span>",
            Badge::new("bad", "Condition error"),
            esc(e)
        )),
    };
    let (body, body_error) = match p.body {
        Ok(b) => (
            if p.content_type == ContentType::Json {
                views::pretty_json(&b)
            } else {
                b
            },
            String::new(),
        ),
        Err(e) => (String::new(), e),
    };
    let (unique_key, unique_key_error) = match p.unique_key {
        Some(Ok(k)) => (k, String::new()),
        Some(Err(e)) => (String::new(), e),
        None => (String::new(), String::new()),
    };
    PreviewView {
        condition,
        body,
        body_error,
        content_type: p.content_type.mime().to_string(),
        unique_key,
        unique_key_error,
    }
}

/// Renders the preview and merge fields for the form's chosen event type.
async fn preview_of(
    state: &AdminState,
    session: &SessionView,
    app: &App,
    values: &Values,
    input: Option<&TriggerInput>,
) -> (Option<PreviewView>, String, Vec<String>) {
    if values.preview_type.is_empty() {
        return (
            None,
            "Choose an event type to preview against its example.".into(),
            Vec::new(),
        );
    }
    let fields = state
        .service
        .event_type_merge_fields(&values.preview_type)
        .await
        .unwrap_or_default();
    let Some(input) = input else {
        return (None, String::new(), fields);
    };
    match state
        .service
        .preview_trigger(
            session.caller,
            &app.id.to_string(),
            &values.preview_type,
            None,
            input,
        )
        .await
    {
        Ok(p) => (Some(preview_view(p)), String::new(), fields),
        Err(e) => (None, error_text(&e), fields),
    }
}

fn error_text(e: &ServiceError) -> String {
    match e {
        ServiceError::Invalid(fields) => fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.msg))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn form_page(
    state: &AdminState,
    session: &SessionView,
    app: App,
    id: Option<String>,
    builtin: bool,
    values: Values,
    errors: Errors,
    status: StatusCode,
    done: Option<&str>,
) -> PageResult {
    let endpoints = endpoints_of(state, session, &app).await?;
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
    let input_ok = input(&values).ok();
    let (preview, preview_error, merge_fields) =
        preview_of(state, session, &app, &values, input_ok.as_ref()).await;
    let base = app_path(app.id);
    let title = match (&id, builtin) {
        (None, _) => "New trigger".to_string(),
        (Some(_), true) => "Subscription".to_string(),
        (Some(_), false) => "Edit trigger".to_string(),
    };
    let mut catalog_choices: Vec<Choice> = catalog
        .iter()
        .map(|et| Choice {
            selected: values.event_types.contains(&et.name),
            value: et.name.clone(),
            label: et.description.clone(),
        })
        .collect();
    if builtin {
        catalog_choices.insert(
            0,
            Choice {
                selected: values.event_types.iter().any(|t| t == "*"),
                value: "*".into(),
                label: "every event type, present and future".into(),
            },
        );
    }
    let page = FormPage {
        layout: Layout::new(state, session, title, Section::Apps, done).await,
        app_path: base.clone(),
        action: match &id {
            Some(id) => format!("{base}/triggers/{id}"),
            None => format!("{base}/triggers"),
        },
        delete_action: match (&id, builtin) {
            (Some(id), false) => format!("{base}/triggers/{id}/delete"),
            _ => String::new(),
        },
        editing: id.is_some(),
        builtin,
        endpoints: endpoints
            .iter()
            .map(|e| Choice {
                selected: values.endpoint == e.id.to_string()
                    || e.uid.as_deref() == Some(values.endpoint.as_str()),
                value: e.id.to_string(),
                label: e.url.clone(),
            })
            .collect(),
        preview_types: values
            .event_types
            .iter()
            .filter(|t| *t != "*")
            .map(|t| Choice {
                selected: *t == values.preview_type,
                value: t.clone(),
                label: t.clone(),
            })
            .collect(),
        catalog: catalog_choices,
        merge_fields,
        preview,
        preview_error,
        preview_type: values.preview_type.clone(),
        values,
        errors,
        app,
    };
    render_status(status, page)
}

async fn new_form(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path(app): Path<String>,
    query: Query,
) -> PageResult {
    session.may_change()?;
    let app = state.service.get_app(session.caller, &app).await?;
    let endpoint = query.0.get("endpoint").cloned();
    let values = values_of(None, endpoint);
    form_page(
        &state,
        &session,
        app,
        None,
        false,
        values,
        Errors::default(),
        StatusCode::OK,
        None,
    )
    .await
}

async fn edit_form(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path((app, id)): Path<(String, String)>,
    query: Query,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let view = state
        .service
        .get_trigger(session.caller, &app.id.to_string(), &id)
        .await?;
    let builtin = matches!(view, TriggerView::Builtin(_));
    let values = values_of(Some(&view), None);
    form_page(
        &state,
        &session,
        app,
        Some(view.id()),
        builtin,
        values,
        Errors::default(),
        StatusCode::OK,
        query.0.get("done").map(String::as_str),
    )
    .await
}

/// Saves a new or changed trigger; the Preview button shows the form again with the preview.
async fn save(
    state: AdminState,
    session: SessionView,
    app: String,
    id: Option<String>,
    form: FormData,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let builtin = id.as_deref().is_some_and(|i| i.starts_with("builtin_"));
    let values = values_from(&form);
    if form.get("action") == Some("preview") {
        return form_page(
            &state,
            &session,
            app,
            id,
            builtin,
            values,
            Errors::default(),
            StatusCode::OK,
            None,
        )
        .await;
    }
    let input = match input(&values) {
        Ok(i) => i,
        Err(errors) => {
            return form_page(
                &state,
                &session,
                app,
                id,
                builtin,
                values,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            )
            .await;
        }
    };
    let key = app.id.to_string();
    let result = match &id {
        None => state
            .service
            .create_trigger(session.caller, &key, input)
            .await
            .map(|t| TriggerView::Custom(t).id()),
        Some(id) => state
            .service
            .update_trigger(session.caller, &key, id, input)
            .await
            .map(|v| v.id()),
    };
    match result {
        Ok(saved) => see_other(&format!(
            "{}/triggers/{saved}?done={}",
            app_path(app.id),
            if id.is_some() { "saved" } else { "created" }
        )),
        Err(e) => match Errors::from_service(&e, FIELDS) {
            Some(errors) => {
                form_page(
                    &state,
                    &session,
                    app,
                    id,
                    builtin,
                    values,
                    errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

async fn create(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    save(state, session, app, None, form).await
}

async fn update(
    State(state): State<AdminState>,
    Path((app, id)): Path<(String, String)>,
    Posted { session, form }: Posted,
) -> PageResult {
    save(state, session, app, Some(id), form).await
}

async fn delete(
    State(state): State<AdminState>,
    Path((app, id)): Path<(String, String)>,
    Posted { session, .. }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    state
        .service
        .delete_trigger(session.caller, &app.id.to_string(), &id)
        .await?;
    see_other(&format!("{}?done=deleted", app_path(app.id)))
}

/// The preview part of the form, for the live preview (JavaScript posts the form here).
async fn preview_fragment(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    let app = state.service.get_app(session.caller, &app).await?;
    let values = values_from(&form);
    let input_ok = input(&values).ok();
    let (preview, preview_error, merge_fields) =
        preview_of(&state, &session, &app, &values, input_ok.as_ref()).await;
    // A template a bound stopped is refused, as the API's preview refuses it.
    let refused = preview.is_none()
        && input_ok.is_some()
        && !values.preview_type.is_empty()
        && !preview_error.is_empty();
    let fragment = PreviewFragment {
        preview,
        preview_error,
        merge_fields,
        preview_type: values.preview_type,
    };
    let html = fragment
        .render()
        .map_err(|e| super::AdminError::Internal(e.to_string()))?;
    let status = if refused {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Html(html)).into_response())
}
