//! The event catalog: every event type with its group, description, schema and example, the
//! endpoints that subscribe to it; create, edit, archive and restore.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::form::{Errors, FormData};
use super::session::{Authed, Posted};
use super::views::{self, Badge, Copyable, Time};
use super::{
    AdminState, Layout, PageResult, Query, Section, q, query_string, render, render_status,
    see_other,
};
use crate::model::*;
use crate::service::{EventTypeInput, EventTypePatch, ListParams, ServiceError};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/event-types", get(list).post(create))
        .route("/event-types/new", get(new_form))
        .route("/event-types/{name}", get(show).post(update))
        .route("/event-types/{name}/edit", get(edit_form))
        .route("/event-types/{name}/archive", post(archive))
        .route("/event-types/{name}/restore", post(restore))
}

/// Fields of the form, by the service's names.
const FIELDS: &[&str] = &["name", "description", "groupName", "schemas", "example"];

struct Row {
    name: Copyable,
    group: String,
    description: String,
    states: Vec<Badge>,
    updated: Time,
}

#[derive(Template)]
#[template(path = "event_types.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    archived: bool,
    next: String,
    prev: String,
    admin: bool,
}

fn path(name: &str) -> String {
    format!(
        "/event-types/{}",
        url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    )
}

async fn list(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    query: Query,
) -> PageResult {
    let archived = q(&query, "archived") == "1";
    let iterator = Some(q(&query, "iterator").to_string()).filter(|s| !s.is_empty());
    let page = state
        .service
        .list_event_types(
            ListParams {
                limit: Some(100),
                iterator: iterator.clone(),
            },
            archived,
        )
        .await?;
    let now = now_micros();
    let flag = if archived { "1" } else { "" };
    let next = match (
        &page.iterator,
        page.done && !iterator.as_deref().is_some_and(|i| i.starts_with('-')),
    ) {
        (Some(it), false) => format!(
            "/event-types{}",
            query_string(&[("archived", flag), ("iterator", it)])
        ),
        _ => String::new(),
    };
    let prev = match (&page.prev_iterator, &iterator) {
        (Some(it), Some(_)) => format!(
            "/event-types{}",
            query_string(&[("archived", flag), ("iterator", it)])
        ),
        _ => String::new(),
    };
    let rows = page
        .data
        .into_iter()
        .map(|et| {
            let mut states = Vec::new();
            if et.archived {
                states.push(Badge::new("muted", "Archived"));
            }
            if et.deprecated {
                states.push(Badge::new("warn", "Deprecated"));
            }
            Row {
                name: Copyable::link(et.name.clone(), path(&et.name)),
                group: et.group_name.clone().unwrap_or_default(),
                description: et.description.clone(),
                states,
                updated: views::time(et.updated_at, now),
            }
        })
        .collect();
    render(ListPage {
        layout: Layout::new(
            &state,
            &session,
            "Event types",
            Section::EventTypes,
            query.0.get("done").map(String::as_str),
        )
        .await,
        rows,
        archived,
        next,
        prev,
        admin: session.caller == Caller::Admin,
    })
}

struct Subscriber {
    app: String,
    app_href: String,
    url: String,
    href: String,
}

#[derive(Template)]
#[template(path = "event_type.html")]
struct ShowPage {
    layout: Layout,
    path: String,
    et: EventType,
    states: Vec<Badge>,
    schema: String,
    example: String,
    example_generated: bool,
    subscribers: Vec<Subscriber>,
    every_type: usize,
    created: Time,
    updated: Time,
    admin: bool,
}

async fn show(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path(name): Path<String>,
    query: Query,
) -> PageResult {
    let et = state.service.get_event_type(&name).await?;
    let (subs, every_type) = state
        .service
        .event_type_subscribers(session.caller, &name)
        .await?;
    let now = now_micros();
    let mut states = Vec::new();
    if et.archived {
        states.push(Badge::new("muted", "Archived"));
    }
    if et.deprecated {
        states.push(Badge::new("warn", "Deprecated"));
    }
    let example = crate::service::example_payload(&et, 0);
    let page = ShowPage {
        layout: Layout::new(
            &state,
            &session,
            et.name.clone(),
            Section::EventTypes,
            query.0.get("done").map(String::as_str),
        )
        .await,
        path: path(&et.name),
        states,
        schema: et
            .schemas_json
            .as_deref()
            .map(views::pretty_json)
            .unwrap_or_default(),
        example_generated: example.is_some() && et.example_json != example,
        example: example
            .as_deref()
            .map(views::pretty_json)
            .unwrap_or_default(),
        subscribers: subs
            .into_iter()
            .map(|(app, ep)| Subscriber {
                app: app.name.clone(),
                app_href: format!("/apps/{}", app.id),
                url: ep.url.clone(),
                href: format!("/apps/{}/endpoints/{}", app.id, ep.id),
            })
            .collect(),
        every_type,
        created: views::time(et.created_at, now),
        updated: views::time(et.updated_at, now),
        admin: session.caller == Caller::Admin,
        et,
    };
    render(page)
}

#[derive(Template)]
#[template(path = "event_type_form.html")]
struct FormPage {
    layout: Layout,
    editing: bool,
    action: String,
    name: String,
    description: String,
    group: String,
    schemas: String,
    example: String,
    deprecated: bool,
    errors: Errors,
}

impl FormPage {
    fn from_form(
        layout: Layout,
        action: String,
        name: Option<String>,
        f: &FormData,
        errors: Errors,
    ) -> FormPage {
        FormPage {
            layout,
            editing: name.is_some(),
            action,
            name: name.unwrap_or_else(|| f.text("name")),
            description: f.text("description"),
            group: f.text("group"),
            schemas: f.get("schemas").unwrap_or("").to_string(),
            example: f.get("example").unwrap_or("").to_string(),
            deprecated: f.checked("deprecated"),
            errors,
        }
    }
}

async fn new_form(State(state): State<AdminState>, Authed { session }: Authed) -> PageResult {
    if session.caller != Caller::Admin {
        return Err(super::AdminError::NotFound);
    }
    render(FormPage {
        layout: Layout::new(
            &state,
            &session,
            "New event type",
            Section::EventTypes,
            None,
        )
        .await,
        editing: false,
        action: "/event-types".into(),
        name: String::new(),
        description: String::new(),
        group: String::new(),
        schemas: String::new(),
        example: String::new(),
        deprecated: false,
        errors: Errors::default(),
    })
}

async fn edit_form(
    State(state): State<AdminState>,
    Authed { session }: Authed,
    Path(name): Path<String>,
) -> PageResult {
    if session.caller != Caller::Admin {
        return Err(super::AdminError::NotFound);
    }
    let et = state.service.get_event_type(&name).await?;
    render(FormPage {
        layout: Layout::new(
            &state,
            &session,
            format!("Edit {}", et.name),
            Section::EventTypes,
            None,
        )
        .await,
        editing: true,
        action: path(&et.name),
        name: et.name.clone(),
        description: et.description.clone(),
        group: et.group_name.clone().unwrap_or_default(),
        schemas: et
            .schemas_json
            .as_deref()
            .map(views::pretty_json)
            .unwrap_or_default(),
        example: et
            .example_json
            .as_deref()
            .map(views::pretty_json)
            .unwrap_or_default(),
        deprecated: et.deprecated,
        errors: Errors::default(),
    })
}

/// The service input from the form. JSON is sent compact, as the API stores it.
fn input(
    f: &FormData,
    name: String,
    archived: bool,
    feature_flags: Option<Vec<String>>,
) -> EventTypeInput {
    let json = |field: &str| {
        f.opt(field)
            .map(|text| crate::service::validate::compact_json(&text))
    };
    EventTypeInput {
        name,
        description: f.text("description"),
        archived,
        deprecated: f.checked("deprecated"),
        schemas_json: json("schemas"),
        group_name: f.opt("group"),
        feature_flags,
        example_json: json("example"),
    }
}

async fn create(State(state): State<AdminState>, Posted { session, form }: Posted) -> PageResult {
    let name = form.text("name");
    match state
        .service
        .create_event_type(session.caller, input(&form, name.clone(), false, None))
        .await
    {
        Ok(et) => see_other(&format!("{}?done=created", path(&et.name))),
        Err(e) => form_error(&state, &session, e, None, "/event-types".into(), &form).await,
    }
}

async fn form_error(
    state: &AdminState,
    session: &crate::service::SessionView,
    e: ServiceError,
    editing: Option<String>,
    action: String,
    form: &FormData,
) -> PageResult {
    let Some(mut errors) = Errors::from_service(&e, FIELDS) else {
        return Err(e.into());
    };
    // The form calls the group "group"; the service, like the API, "groupName".
    if errors.has("groupName") {
        let msg = errors.get("groupName").to_string();
        errors.add("group", msg);
    }
    let title = if editing.is_some() {
        "Edit event type"
    } else {
        "New event type"
    };
    let layout = Layout::new(state, session, title, Section::EventTypes, None).await;
    render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        FormPage::from_form(layout, action, editing, form, errors),
    )
}

async fn update(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Posted { session, form }: Posted,
) -> PageResult {
    let current = state.service.get_event_type(&name).await?;
    // A patch of what the form shows: whether it is archived and its feature flags stay as
    // they are when the save is written, not as they were when the form was read.
    let edited = input(&form, current.name.clone(), false, None);
    let patch = EventTypePatch {
        description: Some(edited.description),
        deprecated: Some(edited.deprecated),
        schemas_json: Some(edited.schemas_json),
        group_name: Some(edited.group_name),
        example_json: Some(edited.example_json),
        ..Default::default()
    };
    let result = state
        .service
        .patch_event_type(session.caller, &current.name, patch)
        .await;
    match result {
        Ok(et) => see_other(&format!("{}?done=saved", path(&et.name))),
        Err(e) => {
            form_error(
                &state,
                &session,
                e,
                Some(current.name.clone()),
                path(&current.name),
                &form,
            )
            .await
        }
    }
}

async fn archive(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Posted { session, .. }: Posted,
) -> PageResult {
    state
        .service
        .delete_event_type(session.caller, &name, false)
        .await?;
    see_other(&format!("{}?done=archived", path(&name)))
}

async fn restore(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Posted { session, .. }: Posted,
) -> PageResult {
    state
        .service
        .patch_event_type(
            session.caller,
            &name,
            EventTypePatch {
                archived: Some(false),
                ..Default::default()
            },
        )
        .await?;
    see_other(&format!("{}?done=unarchived", path(&name)))
}
