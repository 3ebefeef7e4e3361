//! Field checks shared by every resource. Each answers the message a user sees.

use std::collections::BTreeMap;

use super::{FieldError, ServiceError};

/// Most characters of a uid, eventId or event type name (Svix: 256).
pub const UID_LEN_MAX: usize = 256;
/// Most characters of a channel name (Svix: 128).
pub const CHANNEL_LEN_MAX: usize = 128;
/// Most channels on a message or endpoint (Svix: 10).
pub const CHANNELS_MAX: usize = 10;
/// Most bytes of an application's or endpoint's metadata, keys and values together (Svix).
pub const METADATA_BYTES_MAX: usize = 4096;
/// Longest description or name.
pub const TEXT_LEN_MAX: usize = 4096;
/// Longest custom header value (Svix).
pub const HEADER_VALUE_LEN_MAX: usize = 4096;

/// Collects field errors so one answer lists every problem.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            msg: msg.into(),
        });
    }

    pub fn check(&mut self, result: Result<(), String>, field: &str) {
        if let Err(msg) = result {
            self.add(field, msg);
        }
    }

    /// Refuses a value given outside `range`, naming the range (with `unit`, e.g. " ms").
    pub fn in_range<T>(
        &mut self,
        value: Option<T>,
        range: &std::ops::RangeInclusive<T>,
        field: &str,
        unit: &str,
    ) where
        T: PartialOrd + std::fmt::Display,
    {
        if let Some(v) = value
            && !range.contains(&v)
        {
            self.add(
                field,
                format!("must be {} to {}{unit}", range.start(), range.end()),
            );
        }
    }

    pub fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(self.0))
        }
    }
}

fn id_charset(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A uid (application, endpoint) or eventId: 1-256 of `[a-zA-Z0-9-_.]`, not looking like an id.
pub fn uid(value: &str, reserved_prefix: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > UID_LEN_MAX {
        return Err(format!("must be 1 to {UID_LEN_MAX} characters"));
    }
    if !id_charset(value) {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    if !reserved_prefix.is_empty() && value.starts_with(reserved_prefix) {
        return Err(format!("may not start with '{reserved_prefix}'"));
    }
    Ok(())
}

pub fn event_type_name(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > UID_LEN_MAX {
        return Err(format!("must be 1 to {UID_LEN_MAX} characters"));
    }
    if !id_charset(value) {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

pub fn channels(values: &[String]) -> Result<(), String> {
    if values.is_empty() || values.len() > CHANNELS_MAX {
        return Err(format!("must list 1 to {CHANNELS_MAX} channels"));
    }
    for c in values {
        let ok = !c.is_empty()
            && c.len() <= CHANNEL_LEN_MAX
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+".contains(&b));
        if !ok {
            return Err(format!(
                "channel '{c}' must be 1 to {CHANNEL_LEN_MAX} of [a-zA-Z0-9-_.:+]"
            ));
        }
    }
    Ok(())
}

pub fn metadata(values: &BTreeMap<String, String>) -> Result<(), String> {
    let size: usize = values.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > METADATA_BYTES_MAX {
        return Err(format!("must be at most {METADATA_BYTES_MAX} bytes in all"));
    }
    Ok(())
}

pub fn text(value: &str, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > TEXT_LEN_MAX {
        return Err(format!("must be at most {TEXT_LEN_MAX} bytes"));
    }
    if value.chars().any(|c| (c as u32) < 0x09) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Header names Svix refuses on endpoints: hop-by-hop, framing, caching, and the signing
/// headers' own prefixes.
const FORBIDDEN_HEADERS: &[&str] = &[
    "user-agent",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "age",
    "cache-control",
    "clear-site-data",
    "expires",
    "pragma",
    "warning",
    "content-length",
    "content-type",
    "content-encoding",
    "content-language",
    "content-location",
    "host",
    "connection",
];
const FORBIDDEN_HEADER_PREFIXES: &[&str] = &[
    "x-amz-", "x-amzn-", "x-google", "x-goog-", "x-gfe", "x-azure-", "x-fd-", "x-svix-", "svix-",
    "webhook-",
];

pub fn header(name: &str, value: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("'{name}' is not a valid header name"));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str())
        || FORBIDDEN_HEADER_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
    {
        return Err(format!("header '{name}' may not be set"));
    }
    if value.len() > HEADER_VALUE_LEN_MAX
        || value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
    {
        return Err(format!("header '{name}' has an invalid value"));
    }
    Ok(())
}

/// Header names whose values are secrets: never shown back.
pub fn is_sensitive_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "authorization" | "www-authenticate" | "x-api-key" | "x-auth-token"
    ) || lower.starts_with("proxy-")
}

/// Removes insignificant whitespace from valid JSON text, keeping key order and every value's
/// spelling, so the bytes signed and sent are the payload as posted, compactly.
pub fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_follow_the_svix_rules() {
        assert!(uid("shop-1.eu_A", "app_").is_ok());
        assert!(uid("", "app_").is_err());
        assert!(uid("has space", "app_").is_err());
        assert!(uid("app_123", "app_").is_err());
        assert!(uid(&"a".repeat(257), "app_").is_err());
        assert!(uid("../etc/passwd", "app_").is_err());
    }

    #[test]
    fn compacting_keeps_strings_and_order() {
        let raw = "{ \"b\" : 1,\n \"a\": \"x y\\\" z\" , \"c\": [1, 2] }";
        assert_eq!(compact_json(raw), r#"{"b":1,"a":"x y\" z","c":[1,2]}"#);
    }

    #[test]
    fn forbidden_headers_are_refused() {
        assert!(header("X-Shop-Token", "abc").is_ok());
        assert!(header("Content-Type", "x").is_err());
        assert!(header("svix-id", "x").is_err());
        assert!(header("bad name", "x").is_err());
        assert!(header("x-ok", "line\nbreak").is_err());
        assert!(is_sensitive_header("Authorization"));
        assert!(!is_sensitive_header("x-shop"));
    }
}
