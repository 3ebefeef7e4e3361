//! Who is at the browser: the session cookie, the CSRF check of every form, and the
//! extractors pages use (`Authed` for pages, `Posted` for form posts).
//!
//! The session itself lives in the service (stored in redb, only its hash); this module only
//! moves its token in and out of a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind
//! TLS) and compares form tokens in constant time.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::form::FormData;
use super::{AdminError, AdminState};
use crate::service::SessionView;

/// The session cookie.
pub const SESSION_COOKIE: &str = "herald_session";
/// The login form's CSRF cookie (double submit: the form carries the same value), so a
/// foreign site cannot log a browser into an account of its choosing.
pub const LOGIN_COOKIE: &str = "herald_login";
/// Name of the hidden CSRF field of every form.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body accepted (schemas and templates are the big ones).
pub const FORM_BODY_MAX: usize = 1024 * 1024;

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, Secure when `secure`;
/// `max_age_s` 0 removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token for the login form's cookie.
pub fn random_token() -> String {
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether cookies must be `Secure`: the public URL is https, or a proxy in front says the
/// browser's request was.
pub fn secure(state: &AdminState, headers: &HeaderMap) -> bool {
    state.service.public_https()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The address a connection came from, recorded by the server for every request (plain or
/// TLS listener alike).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// For each kind of listener Herald serves on: plain TCP and built-in TLS.
macro_rules! client_addr_of {
    ($($listener:ty),*) => {$(
        impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, $listener>>
            for ClientAddr
        {
            fn connect_info(stream: axum::serve::IncomingStream<'_, $listener>) -> Self {
                ClientAddr(*stream.remote_addr())
            }
        }
    )*};
}

client_addr_of!(tokio::net::TcpListener, crate::tls::TlsListener);

/// The client's address, when the server recorded it.
pub fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
}

/// A page request with a live session. Without one, pages redirect to the login form (which
/// comes back here afterwards).
pub struct Authed {
    pub session: SessionView,
}

impl FromRequestParts<AdminState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            match state.service.session(token).await {
                Ok(Some(session)) => return Ok(Authed { session }),
                Ok(None) => {}
                Err(e) => return Err(AdminError::from(e).into_response()),
            }
        }
        if parts.method == Method::GET {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let to = format!(
                "/login?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            return Err(Redirect::to(&to).into_response());
        }
        Err(AdminError::Forbidden(
            "Your session has ended. Log in again, then repeat what you were doing.".into(),
        )
        .into_response())
    }
}

/// A form post: a live session, a CSRF token equal to the session's, and a session allowed
/// to change things (a read-only portal link is not).
pub struct Posted {
    pub session: SessionView,
    pub form: FormData,
}

impl FromRequest<AdminState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AdminState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Authed { session } = Authed::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_BODY_MAX)
            .await
            .map_err(|_| {
                AdminError::BadRequest("The form is larger than Herald accepts (1 MiB).".into())
                    .into_response()
            })?;
        let form = FormData::parse(&bytes);
        let sent = form.get(CSRF_FIELD).unwrap_or("");
        if !same_token(sent, &session.csrf) {
            tracing::warn!(path = %parts.uri.path(), "form refused: missing or wrong CSRF token");
            return Err(AdminError::Forbidden(
                "This form was not sent by this dashboard session (its CSRF token is missing or \
                 wrong). Reload the page and try again."
                    .into(),
            )
            .into_response());
        }
        if session.may_change().is_err() {
            return Err(AdminError::Forbidden(
                "This portal link is read-only: it can look, but not change anything.".into(),
            )
            .into_response());
        }
        Ok(Posted { session, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; herald_session=tok; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("herald_login=x"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn session_cookies_are_http_only_strict_and_secure_behind_tls() {
        let c = set_cookie(SESSION_COOKIE, "v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false).contains("Secure"));
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "abc"));
        let t = random_token();
        assert_eq!(t.len(), 32);
        assert_ne!(t, random_token());
    }
}
