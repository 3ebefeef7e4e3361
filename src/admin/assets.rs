//! The dashboard's one stylesheet and one script, compiled into the binary: no CDN, no web
//! fonts. Served with an ETag so browsers revalidate cheaply after an upgrade.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AdminState;

const CSS: &str = include_str!("../../static/herald.css");
const JS: &str = include_str!("../../static/herald.js");
const ICON: &str = include_str!("../../static/herald.svg");

/// Changes with every release, so pages ask for the new assets after an upgrade.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Content hashes of the assets, as ETags.
static ETAGS: LazyLock<[String; 3]> = LazyLock::new(|| {
    [CSS, JS, ICON].map(|text| {
        let hash = Sha256::digest(text.as_bytes());
        format!(
            "\"{}\"",
            hash[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    })
});

pub fn routes() -> Router<AdminState> {
    Router::new().route("/static/{file}", get(asset))
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let (body, mime, etag) = match file.as_str() {
        "herald.css" => (CSS, "text/css; charset=utf-8", &ETAGS[0]),
        "herald.js" => (JS, "text/javascript; charset=utf-8", &ETAGS[1]),
        "herald.svg" => (ICON, "image/svg+xml", &ETAGS[2]),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag.as_str());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, mime)], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}
