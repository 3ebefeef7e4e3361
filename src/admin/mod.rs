//! Front door 2: the server-rendered admin dashboard and the tenant portal.
//!
//! HTML pages from askama templates (`templates/`), one CSS file and a little JavaScript
//! (`static/`, compiled into the binary), forms that post back and redirect. Every page calls
//! the same service functions as the JSON API, with the `Caller` of its session: an operator's
//! session is `Caller::Admin`, a portal session is `Caller::App(app)`, so a tenant reaches
//! nothing of another application (404), exactly as with a scoped API token.
//!
//! Owns: paths under `/` (except `/api`), HTML, cookies, CSRF tokens, how things look. Must
//! never: touch storage, or hold a rule of its own (a rule missing here belongs in `service/`).

mod alerts;
mod apps;
mod assets;
mod auth;
mod chart;
mod endpoints;
mod event_types;
mod form;
mod overview;
mod queue;
pub mod session;
mod triggers;
mod views;

use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::model::{AppId, Caller};
use crate::service::{Service, ServiceError, SessionView};
use session::Authed;

/// What every dashboard handler gets.
#[derive(Clone)]
pub struct AdminState {
    pub service: Service,
}

/// The dashboard's routes; the server mounts them beside `/api`.
pub fn router(service: Service) -> Router {
    let state = AdminState { service };
    Router::new()
        .route("/", get(root))
        .merge(auth::routes())
        .merge(assets::routes())
        .merge(overview::routes())
        .merge(queue::routes())
        .merge(apps::routes())
        .merge(endpoints::routes())
        .merge(triggers::routes())
        .merge(event_types::routes())
        .merge(alerts::routes())
        .fallback(|| async { AdminError::NotFound })
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// `/`: the overview for operators, the application's page in the portal, else the login.
async fn root(auth: Result<Authed, Response>) -> Response {
    match auth {
        Ok(Authed { session }) => match session.portal_app() {
            Some(app) => Redirect::to(&app_path(app)).into_response(),
            None => Redirect::to("/overview").into_response(),
        },
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// Security headers on every answer, and the time the server spent (`Server-Timing`), which the
/// browser's developer tools show and the render-time measurement reads.
async fn headers(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let is_static = req.uri().path().starts_with("/static/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    if !is_static {
        set(h, "cache-control", "no-store");
    }
    let micros = started.elapsed().as_micros();
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={}.{:03}", micros / 1000, micros % 1000))
    {
        h.insert(HeaderName::from_static("server-timing"), v);
    }
    response
}

// ---- errors ---------------------------------------------------------------------------------

/// What a page answers when it cannot show what was asked.
#[derive(Debug)]
pub enum AdminError {
    NotFound,
    Forbidden(String),
    BadRequest(String),
    Unavailable,
    Internal(String),
}

impl From<ServiceError> for AdminError {
    fn from(e: ServiceError) -> Self {
        match e {
            // Forbidden only ever reaches a portal session asking for an operator's page:
            // to it, that page does not exist.
            ServiceError::NotFound(_) | ServiceError::Forbidden => AdminError::NotFound,
            ServiceError::Invalid(fields) => AdminError::BadRequest(
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.msg))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ServiceError::Conflict { detail, .. }
            | ServiceError::BadRequest { detail, .. }
            | ServiceError::PayloadTooLarge(detail) => AdminError::BadRequest(detail),
            ServiceError::Unauthorized => AdminError::Forbidden("Not allowed.".into()),
            ServiceError::AdminOnly(detail) => AdminError::Forbidden(format!("{detail}.")),
            ServiceError::Unavailable | ServiceError::Busy | ServiceError::BusyTenant => {
                AdminError::Unavailable
            }
            ServiceError::Internal(cause) => AdminError::Internal(cause),
            ServiceError::NotStored => AdminError::Internal(ServiceError::NotStored.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    detail: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, heading, detail) = match self {
            AdminError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it is not yours to see.".to_string(),
            ),
            AdminError::Forbidden(d) => (StatusCode::FORBIDDEN, "Refused", d),
            AdminError::BadRequest(d) => (StatusCode::BAD_REQUEST, "That did not work", d),
            AdminError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "Herald is busy or restarting. Try again in a moment.".to_string(),
            ),
            AdminError::Internal(cause) => {
                tracing::error!(%cause, "dashboard: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Herald could not show this page; the cause is in its log.".to_string(),
                )
            }
        };
        let page = ErrorPage {
            layout: Layout::bare(heading),
            heading,
            detail,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, heading).into_response(),
        }
    }
}

pub type PageResult = Result<Response, AdminError>;

/// Renders a template as a 200 page.
pub fn render(t: impl Template) -> PageResult {
    render_status(StatusCode::OK, t)
}

/// Renders a template with a status (422 for a form shown again with its errors).
pub fn render_status(status: StatusCode, t: impl Template) -> PageResult {
    let html = t
        .render()
        .map_err(|e| AdminError::Internal(format!("template: {e}")))?;
    Ok((status, Html(html)).into_response())
}

/// Redirect after a successful post (303, so the browser GETs the page). Every redirect of the
/// dashboard goes through `local_path`; a target that is not one goes to `/`.
pub fn see_other(to: &str) -> PageResult {
    Ok(Redirect::to(local_path(to).unwrap_or("/")).into_response())
}

/// `to` when it is a plain path of this site: one leading `/` (`//host` and `/\host` are
/// other sites to browsers), no backslash or control character (browsers drop tabs and
/// newlines from URLs, so `/\t/host` is `//host`; CR LF would split the header), and the same
/// once percent-decoded, since some browsers and proxies decode before they look.
pub fn local_path(to: &str) -> Option<&str> {
    let plain = |p: &str| {
        let mut chars = p.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && !p.chars().any(|c| c == '\\' || c.is_control())
    };
    let decoded = percent_encoding::percent_decode_str(to)
        .decode_utf8()
        .ok()?;
    (plain(to) && plain(&decoded)).then_some(to)
}

// ---- the frame of every page --------------------------------------------------------------

pub struct NavItem {
    pub href: String,
    pub label: &'static str,
    pub active: bool,
    pub count: Option<usize>,
}

pub struct Notice {
    pub class: &'static str,
    pub text: String,
}

/// The frame around every page: title, navigation, who is logged in, the CSRF token for its
/// forms, and a notice after a redirect.
pub struct Layout {
    pub title: String,
    pub nav: Vec<NavItem>,
    pub home: String,
    pub who: String,
    pub csrf: String,
    pub logged_in: bool,
    pub portal: bool,
    pub read_only: bool,
    pub notice: Option<Notice>,
    /// Reload the page's `[data-refresh]` part every this many seconds (0: never).
    pub refresh_s: u32,
    pub asset_version: &'static str,
}

/// Sections of the operator's navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Queue,
    Apps,
    EventTypes,
    Alerts,
    None,
}

impl Layout {
    /// A page with no session (login, errors).
    pub fn bare(title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            nav: Vec::new(),
            home: "/".into(),
            who: String::new(),
            csrf: String::new(),
            logged_in: false,
            portal: false,
            read_only: false,
            notice: None,
            refresh_s: 0,
            asset_version: assets::VERSION,
        }
    }

    /// The frame of a page for this session; `done` is the notice code of a redirect.
    pub async fn new(
        state: &AdminState,
        session: &SessionView,
        title: impl Into<String>,
        section: Section,
        done: Option<&str>,
    ) -> Layout {
        let mut layout = Layout::bare("");
        layout.title = title.into();
        layout.logged_in = true;
        layout.csrf = session.csrf.clone();
        layout.notice = done.and_then(notice);
        match (&session.owner, session.portal_app()) {
            (_, Some(app)) => {
                let name = state
                    .service
                    .get_app(session.caller, &app.to_string())
                    .await
                    .map(|a| a.name)
                    .unwrap_or_default();
                layout.portal = true;
                layout.read_only = session.read_only();
                layout.who = name;
                layout.home = app_path(app);
                layout.nav = vec![
                    NavItem {
                        href: app_path(app),
                        label: "Endpoints",
                        active: section == Section::Apps,
                        count: None,
                    },
                    NavItem {
                        href: "/queue".into(),
                        label: "Messages",
                        active: section == Section::Queue,
                        count: None,
                    },
                    NavItem {
                        href: "/event-types".into(),
                        label: "Event types",
                        active: section == Section::EventTypes,
                        count: None,
                    },
                ];
            }
            (crate::model::SessionOwner::User(name), None) => {
                layout.who = name.clone();
                layout.home = "/overview".into();
                let open = state
                    .service
                    .open_alert_count(Caller::Admin)
                    .await
                    .unwrap_or(0);
                let item = |href: &str, label, s| NavItem {
                    href: href.into(),
                    label,
                    active: section == s,
                    count: None,
                };
                layout.nav = vec![
                    item("/overview", "Overview", Section::Overview),
                    item("/queue", "Webhook queue", Section::Queue),
                    item("/apps", "Applications", Section::Apps),
                    item("/event-types", "Event types", Section::EventTypes),
                    NavItem {
                        count: (open > 0).then_some(open),
                        ..item("/alerts", "Alerts", Section::Alerts)
                    },
                ];
            }
            // A portal owner always has an application; anything else has no navigation.
            _ => {}
        }
        layout
    }
}

/// The notice shown after a redirect, by its code (codes, not text, travel in the URL, so a
/// link cannot make the dashboard say something it did not).
fn notice(code: &str) -> Option<Notice> {
    let ok = |text: &str| {
        Some(Notice {
            class: "ok",
            text: text.to_string(),
        })
    };
    match code {
        "created" => ok("Created."),
        "saved" => ok("Saved."),
        "archived" => {
            ok("Archived. It is hidden from lists and endpoints can no longer subscribe to it.")
        }
        "unarchived" => ok("Restored from the archive."),
        "enabled" => ok("Enabled. Deliveries that were waiting go out now."),
        "disabled" => ok("Disabled. Its pending deliveries wait until it is enabled again."),
        "rotated" => ok("A new signing secret is in use; the old one keeps signing for 24 hours."),
        "headers" => ok("Headers saved."),
        "resent" => ok("Queued again; the new attempt appears below in a moment."),
        "sent" => ok("The example message was queued for this endpoint."),
        "verified" => ok("Verified. Deliveries that were waiting go out now."),
        "deleted" => ok("Deleted."),
        "acknowledged" => ok("Acknowledged."),
        "recovering" => ok("Recovering: the failed deliveries are queued again in the background."),
        "replaying" => {
            ok("Replaying: the missing messages are queued for this endpoint in the background.")
        }
        _ => None,
    }
}

/// The dashboard path of an application.
pub fn app_path(app: AppId) -> String {
    format!("/apps/{app}")
}

/// `?a=1&b=2` from pairs, skipping empty values.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", q.finish())
    } else {
        String::new()
    }
}

/// A page's `done` notice code from the query string.
#[derive(serde::Deserialize, Default)]
pub struct Done {
    pub done: Option<String>,
}

/// `GET` handlers read their query strings into this: every value a plain string.
pub type Query = axum::extract::Query<std::collections::HashMap<String, String>>;

/// The value of a query parameter, or "".
pub fn q<'a>(query: &'a Query, name: &str) -> &'a str {
    query.0.get(name).map(String::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_plain_local_paths_are_redirect_targets() {
        for ok in [
            "/",
            "/queue?state=failed&app=a%2Fb",
            "/apps/app_1?done=headers#headers",
        ] {
            assert_eq!(local_path(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "queue",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example/",
            "/%09/evil.example/",
            "/\r\nSet-Cookie: a=b",
            "/%0d%0aSet-Cookie:%20a=b",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/x\\y",
            "/\u{85}x",
            "/%C2%85x",
            "/%FF",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
