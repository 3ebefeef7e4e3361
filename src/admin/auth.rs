//! Getting in and out: the login form (throttled), logout, the one-time setup link that
//! creates the first user, and the entrance of the tenant portal.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::form::{Errors, FormData};
use super::session::{
    self, Authed, CSRF_FIELD, FORM_BODY_MAX, LOGIN_COOKIE, SESSION_COOKIE, same_token, set_cookie,
};
use super::{AdminError, AdminState, Layout, PageResult, app_path, render_status};
use crate::model::SessionOwner;
use crate::service::{NewSession, PORTAL_ACCESS_PATH, ServiceError, SessionView};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/setup/{token}", get(setup_form).post(setup))
        .route("/portal/access/{token}", get(portal_access))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    username: String,
    error: String,
    no_users: bool,
}

/// Where a login returns to: a plain local path (`super::local_path`), and not the API or the
/// login form itself; anything else returns to `/`.
fn safe_next(next: &str) -> String {
    match super::local_path(next) {
        Some(p) if !p.starts_with("/api") && !p.starts_with("/login") => p.to_string(),
        _ => "/".to_string(),
    }
}

/// The login form's CSRF token: the browser's `herald_login` cookie, or a fresh one (with the
/// `Set-Cookie` to send).
fn login_token(state: &AdminState, headers: &HeaderMap) -> (String, Option<String>) {
    match session::cookie(headers, LOGIN_COOKIE) {
        Some(t) => (t.to_string(), None),
        None => {
            let t = session::random_token();
            let cookie = set_cookie(LOGIN_COOKIE, &t, 3600, session::secure(state, headers));
            (t, Some(cookie))
        }
    }
}

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for c in cookies {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn login_form(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: super::Query,
    auth: Result<Authed, Response>,
) -> PageResult {
    let next = safe_next(super::q(&query, "next"));
    if auth.is_ok() {
        return super::see_other(&next);
    }
    let (csrf, cookie) = login_token(&state, &headers);
    let page = LoginPage {
        layout: Layout::bare("Log in"),
        csrf,
        next,
        username: String::new(),
        error: String::new(),
        no_users: !state.service.has_users().await?,
    };
    Ok(with_cookies(render_status(StatusCode::OK, page)?, cookie))
}

async fn read_form(body: axum::body::Body) -> Result<FormData, AdminError> {
    let bytes = axum::body::to_bytes(body, FORM_BODY_MAX)
        .await
        .map_err(|_| AdminError::BadRequest("The form is too large.".into()))?;
    Ok(FormData::parse(&bytes))
}

/// The login and setup forms carry the `herald_login` cookie's value (double submit).
fn check_login_csrf(headers: &HeaderMap, form: &FormData) -> Result<(), AdminError> {
    let cookie = session::cookie(headers, LOGIN_COOKIE).unwrap_or("");
    let sent = form.get(CSRF_FIELD).unwrap_or("");
    if cookie.is_empty() || !same_token(cookie, sent) {
        return Err(AdminError::Forbidden(
            "This form has expired or did not come from this dashboard (CSRF token missing or \
             wrong). Reload the page and try again."
                .into(),
        ));
    }
    Ok(())
}

/// Answers the redirect that starts a session: the session cookie set, the login cookie gone.
fn start(state: &AdminState, headers: &HeaderMap, new: &NewSession, to: &str) -> Response {
    let secure = session::secure(state, headers);
    let max_age = ((new.view.expires_at - crate::model::now_micros()) / 1_000_000).max(1);
    with_cookies(
        Redirect::to(super::local_path(to).unwrap_or("/")).into_response(),
        [
            set_cookie(SESSION_COOKIE, &new.token, max_age, secure),
            set_cookie(LOGIN_COOKIE, "", 0, secure),
        ],
    )
}

async fn login(State(state): State<AdminState>, req: Request) -> PageResult {
    let (parts, body) = req.into_parts();
    let addr = session::client_addr(&parts);
    let form = read_form(body).await?;
    check_login_csrf(&parts.headers, &form)?;
    let username = form.text("username");
    let password = form.get("password").unwrap_or("").to_string();
    let next = safe_next(form.get("next").unwrap_or("/"));
    match state.service.login(&username, &password, addr).await {
        Ok(new) => Ok(start(&state, &parts.headers, &new, &next)),
        Err(e) => {
            let (status, error) = match e {
                ServiceError::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong username or password.".to_string(),
                ),
                ServiceError::BadRequest { detail, .. } => (StatusCode::TOO_MANY_REQUESTS, detail),
                other => return Err(other.into()),
            };
            let page = LoginPage {
                layout: Layout::bare("Log in"),
                csrf: session::cookie(&parts.headers, LOGIN_COOKIE)
                    .unwrap_or("")
                    .to_string(),
                next,
                username,
                error,
                no_users: false,
            };
            render_status(status, page)
        }
    }
}

async fn logout(State(state): State<AdminState>, req: Request) -> PageResult {
    let (mut parts, body) = req.into_parts();
    let secure = session::secure(&state, &parts.headers);
    let token = session::cookie(&parts.headers, SESSION_COOKIE).map(str::to_string);
    let form = read_form(body).await?;
    // Logging out is allowed to read-only portal sessions too, but still needs the CSRF token.
    let authed = <Authed as axum::extract::FromRequestParts<AdminState>>::from_request_parts(
        &mut parts, &state,
    )
    .await;
    let Authed { session } = match authed {
        Ok(a) => a,
        Err(_) => return super::see_other("/login"),
    };
    if !same_token(form.get(CSRF_FIELD).unwrap_or(""), &session.csrf) {
        return Err(AdminError::Forbidden(
            "The logout form was not sent by this dashboard session.".into(),
        ));
    }
    if let Some(token) = token {
        state.service.end_session(&token).await?;
    }
    Ok(with_cookies(
        Redirect::to("/login").into_response(),
        [set_cookie(SESSION_COOKIE, "", 0, secure)],
    ))
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    layout: Layout,
    csrf: String,
    username: String,
    errors: Errors,
}

async fn setup_form(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> PageResult {
    if !state.service.setup_link_valid(&token).await? {
        return Err(setup_gone());
    }
    let (csrf, cookie) = login_token(&state, &headers);
    let page = SetupPage {
        layout: Layout::bare("Create the first user"),
        csrf,
        username: String::new(),
        errors: Errors::default(),
    };
    Ok(with_cookies(render_status(StatusCode::OK, page)?, cookie))
}

fn setup_gone() -> AdminError {
    AdminError::Forbidden(
        "This setup link was used already or has expired. Log in, or create a user with \
         `herald user add USERNAME` while the server is stopped."
            .into(),
    )
}

async fn setup(
    State(state): State<AdminState>,
    Path(token): Path<String>,
    req: Request,
) -> PageResult {
    let (parts, body) = req.into_parts();
    let form = read_form(body).await?;
    check_login_csrf(&parts.headers, &form)?;
    let username = form.text("username");
    let password = form.get("password").unwrap_or("").to_string();
    let mut errors = Errors::default();
    if password != form.get("confirm").unwrap_or("") {
        errors.add("confirm", "does not match the password");
    }
    if errors.is_empty() {
        match state
            .service
            .complete_setup(&token, &username, &password)
            .await
        {
            Ok(new) => return Ok(start(&state, &parts.headers, &new, "/overview")),
            Err(ServiceError::NotFound(_)) => return Err(setup_gone()),
            Err(e) => match Errors::from_service(&e, &["username", "password"]) {
                Some(found) => errors = found,
                None => return Err(e.into()),
            },
        }
    }
    let page = SetupPage {
        layout: Layout::bare("Create the first user"),
        csrf: form.text(CSRF_FIELD),
        username,
        errors,
    };
    render_status(StatusCode::UNPROCESSABLE_ENTITY, page)
}

#[derive(Template)]
#[template(path = "portal_welcome.html")]
struct PortalWelcome {
    layout: Layout,
    /// The entrance's second step, carrying the `herald_login` cookie's value.
    to: String,
    /// Forward there at once; not when a second step came without its cookie (cookies off,
    /// or a link that skipped the first step), which waits for a click instead of looping.
    forward: bool,
}

/// The operator logged in in this browser, if any: their session is never replaced by a
/// portal session.
async fn operator_here(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<Option<String>, AdminError> {
    let Some(token) = session::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(match state.service.session(token).await? {
        Some(SessionView {
            owner: SessionOwner::User(name),
            ..
        }) => Some(name),
        _ => None,
    })
}

/// The portal link, in two steps. The link usually arrives from another site (an e-mail, a
/// customer's own app), and browsers send no `SameSite=Strict` cookie with such a request: the
/// first step cannot see whether an operator is logged in here, so it starts no session; it
/// sets the `herald_login` cookie and forwards (a page, not a redirect: a redirect begun on
/// another site stays cross-site) to the second step, a same-site request that carries the
/// browser's cookies and the login cookie's value. That step refuses while an operator is
/// logged in (a portal session would silently end theirs), else starts the portal session.
async fn portal_access(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    query: super::Query,
) -> PageResult {
    if let Some(name) = operator_here(&state, &headers).await? {
        return Err(AdminError::Forbidden(format!(
            "You are logged in to this dashboard as the operator {name}, and opening a tenant \
             portal link here would end that session, so it was not opened. Log out first, or \
             open the link in another browser profile or a private window."
        )));
    }
    let sent = super::q(&query, "enter");
    let cookie = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if sent.is_empty() || cookie.is_empty() || !same_token(cookie, sent) {
        let (nonce, set) = login_token(&state, &headers);
        let page = PortalWelcome {
            layout: Layout::bare("Webhook portal"),
            to: format!("{PORTAL_ACCESS_PATH}{token}?enter={nonce}"),
            forward: sent.is_empty(),
        };
        return Ok(with_cookies(render_status(StatusCode::OK, page)?, set));
    }
    let new = state
        .service
        .open_portal_link(&token)
        .await
        .map_err(|e| match e {
            ServiceError::NotFound(_) => AdminError::Forbidden(
                "This portal link has expired or is not valid. Ask for a new one.".into(),
            ),
            e => e.into(),
        })?;
    let Some(app) = new.view.portal_app() else {
        return Err(AdminError::NotFound);
    };
    Ok(start(&state, &headers, &new, &app_path(app)))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn a_login_returns_only_to_a_dashboard_path() {
        assert_eq!(safe_next("/queue?app=x"), "/queue?app=x");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/\t/evil.example"), "/");
        assert_eq!(safe_next("/login"), "/");
        assert_eq!(safe_next("/api/v1/app"), "/");
        assert_eq!(safe_next(""), "/");
    }
}
