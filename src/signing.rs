//! Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
//!
//! Owns: secret generation and parsing (`whsec_` + base64), and the signature of
//! `"{id}.{timestamp}.{body}"` with HMAC-SHA256. Must never: do I/O, or put a secret in an
//! error message or log line.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of every symmetric secret, as Standard Webhooks and Svix write them.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret (Svix: 24).
pub const GENERATED_SECRET_BYTES: usize = 24;
/// Accepted length of a client-supplied secret's key bytes (Svix: 24 to 75).
pub const SECRET_BYTES_MIN: usize = 24;
pub const SECRET_BYTES_MAX: usize = 75;

/// A fresh random signing key.
pub fn generate_key() -> Vec<u8> {
    let mut key = vec![0u8; GENERATED_SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

/// The text form of a key: `whsec_` + base64.
pub fn format_secret(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// A masked form safe to show: `whsec_••••` + the last four characters.
pub fn mask_secret(key: &[u8]) -> String {
    let full = format_secret(key);
    let tail = &full[full.len().saturating_sub(4)..];
    format!("{SECRET_PREFIX}••••{tail}")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret must be base64, optionally prefixed with whsec_")]
    NotBase64,
    #[error("secret must decode to between 24 and 75 bytes")]
    Length,
}

/// Parses a client-supplied secret (`whsec_` prefix optional) into key bytes.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, SecretError> {
    let body = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    let key = STANDARD.decode(body).map_err(|_| SecretError::NotBase64)?;
    if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&key.len()) {
        return Err(SecretError::Length);
    }
    Ok(key)
}

/// One `v1,<base64>` signature of `body` sent as message `msg_id` at `timestamp` (seconds).
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one signature per live key, space-separated, so a
/// receiver holding either the old or the new secret verifies during rotation.
pub fn signature_header<'a>(
    keys: impl Iterator<Item = &'a [u8]>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = String::new();
    for key in keys {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&sign(key, msg_id, timestamp, body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The two vectors published with the Standard Webhooks reference libraries.
    #[test]
    fn signs_the_first_published_vector() {
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn signs_the_second_published_vector() {
        let key = parse_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let sig = sign(
            &key,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn a_changed_body_changes_the_signature() {
        let key = generate_key();
        assert_ne!(
            sign(&key, "msg_1", 1, b"{}"),
            sign(&key, "msg_1", 1, b"{ }")
        );
    }

    #[test]
    fn generated_secrets_round_trip_and_mask() {
        let key = generate_key();
        let text = format_secret(&key);
        assert!(text.starts_with("whsec_"));
        assert_eq!(text.len(), 6 + 32);
        assert_eq!(parse_secret(&text).unwrap(), key);
        let masked = mask_secret(&key);
        assert!(masked.ends_with(&text[text.len() - 4..]));
        assert!(!masked.contains(&text[6..20]));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(
            parse_secret("whsec_not base64!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(parse_secret("whsec_AAAA"), Err(SecretError::Length));
    }

    #[test]
    fn every_live_key_signs() {
        let (a, b) = (generate_key(), generate_key());
        let header = signature_header([a.as_slice(), b.as_slice()].into_iter(), "msg_x", 5, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            vec![sign(&a, "msg_x", 5, b"{}"), sign(&b, "msg_x", 5, b"{}")]
        );
    }
}
