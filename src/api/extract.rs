//! Request extractors that fail in the Svix error shape: JSON bodies (422 naming the field),
//! query strings (400 for what does not parse), and the authenticated caller.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::model::{Caller, Micros};

/// A JSON body. Syntax errors, wrong types and missing fields answer 422 with the field's
/// location; an over-long body answers 413.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The request body is too large",
                )
            } else {
                ApiError::bad_request("The request body could not be read")
            }
        })?;
        parse_json(&bytes).map(Body)
    }
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped), counted without
/// parsing, so a hostile document costs one pass whatever its depth.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A JSON body that may be absent (no body, or only whitespace): then `T::default()`. Svix
/// SDKs send some POSTs without a body. Failures answer as `Body` does.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The request body is too large",
                )
            } else {
                ApiError::bad_request("The request body could not be read")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        parse_json(&bytes).map(OptionalBody)
    }
}

/// Deepest nesting of a JSON body accepted anywhere (payloads, schemas, examples): deeper
/// documents are refused rather than stored, since clients (serde_json: 128; Python's json
/// module) could not read them back.
pub const JSON_DEPTH_MAX: usize = 64;

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body is a JSON object. serde would otherwise fill a struct from an array,
    // by position.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::invalid(
                &["body"],
                "the body must be a JSON object",
                "type_error.dict",
            ));
        }
        None => {
            return Err(ApiError::invalid(
                &["body"],
                "the body is empty; a JSON object is needed",
                "value_error.missing",
            ));
        }
    }
    if json_depth(bytes) > JSON_DEPTH_MAX {
        return Err(ApiError::invalid(
            &["body"],
            format!("the JSON is nested deeper than {JSON_DEPTH_MAX} levels"),
            "value_error.jsondecode",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if value.is_ok()
        && let Err(e) = de.end()
    {
        return Err(ApiError::invalid(
            &["body"],
            e.to_string(),
            "value_error.jsondecode",
        ));
    }
    value.map_err(|e| {
        let inner = e.inner();
        let mut loc = vec!["body".to_string()];
        for segment in e.path().iter() {
            use serde_path_to_error::Segment;
            match segment {
                Segment::Seq { index } => loc.push(index.to_string()),
                Segment::Map { key } => loc.push(key.clone()),
                Segment::Enum { variant } => loc.push(variant.clone()),
                Segment::Unknown => {}
            }
        }
        let msg = inner.to_string();
        // serde names a missing field only in its message: put it in `loc` too.
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            loc.push(field.to_string());
        }
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "value_error.jsondecode"
            }
            serde_json::error::Category::Data if msg.starts_with("missing field") => {
                "value_error.missing"
            }
            _ => "type_error",
        };
        ApiError::Validation(vec![super::error::ValidationItem {
            loc,
            msg,
            kind: kind.into(),
        }])
    })
}

/// The query string as name -> values. Repeated names, `name[]` and comma-separated lists
/// are all accepted for list parameters; unknown names are ignored, as Svix clients expect.
pub struct QueryArgs(HashMap<String, Vec<String>>);

impl<S: Send + Sync> FromRequestParts<S> for QueryArgs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(q) = parts.uri.query() {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                let k = k.trim_end_matches(']');
                let k = k.split_once('[').map_or(k, |(base, _)| base);
                map.entry(k.to_string()).or_default().push(v.into_owned());
            }
        }
        Ok(QueryArgs(map))
    }
}

impl QueryArgs {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.str(name) {
            None => Ok(default),
            Some("true") | Some("True") | Some("1") => Ok(true),
            Some("false") | Some("False") | Some("0") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "query parameter {name}: '{other}' is not a boolean"
            ))),
        }
    }

    pub fn usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        self.str(name)
            .map(|s| {
                s.parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!("query parameter {name}: '{s}' is not a number"))
                })
            })
            .transpose()
    }

    pub fn u16(&self, name: &str) -> Result<Option<u16>, ApiError> {
        self.str(name)
            .map(|s| {
                s.parse::<u16>().map_err(|_| {
                    ApiError::bad_request(format!("query parameter {name}: '{s}' is not a number"))
                })
            })
            .transpose()
    }

    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let values = self.0.get(name)?;
        let items: Vec<String> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!items.is_empty()).then_some(items)
    }

    /// A time (`model::parse_time`: RFC 3339, or without an offset taken as UTC); one out of
    /// the years 0000 to 9999 is refused like one that does not parse.
    pub fn time(&self, name: &str) -> Result<Option<Micros>, ApiError> {
        self.str(name)
            .map(|s| checked_time(s, &["query", name]))
            .transpose()
    }
}

/// A time from the request at `loc`, or the 422 that names it.
pub fn checked_time(value: &str, loc: &[&str]) -> Result<Micros, ApiError> {
    crate::model::parse_time(value).ok_or_else(|| {
        ApiError::invalid(
            loc,
            format!("'{value}' is not an RFC 3339 date-time of the years 0000 to 9999"),
            "value_error",
        )
    })
}

/// The authenticated caller, put in the request by the auth middleware.
pub struct Auth(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .copied()
            .map(Auth)
            .ok_or_else(ApiError::unauthorized)
    }
}
