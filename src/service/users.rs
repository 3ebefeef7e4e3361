//! Operators of the dashboard: users with argon2id password hashes, logging in (throttled),
//! and the one-time setup link that creates the first user.
//!
//! Must never: keep or log a password, or answer differently (in content or much in time)
//! for an unknown user and a wrong password.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use rand::RngCore;

use super::sessions::{NewSession, digest, random_token};
use super::validate::Problems;
use super::{Result, Service, ServiceError};
use crate::model::*;

/// Longest username.
pub const USERNAME_LEN_MAX: usize = 64;
/// Shortest password accepted (NIST SP 800-63B asks for at least 8).
pub const PASSWORD_LEN_MIN: usize = 8;
/// Longest password accepted, so hashing cost stays bounded.
pub const PASSWORD_LEN_MAX: usize = 1024;
/// How long a setup link works.
pub const SETUP_LINK_TTL_MS: i64 = 24 * 3_600_000;
/// Path of the setup page; the token follows it.
pub const SETUP_PATH: &str = "/setup/";
/// Distinct keys a login throttle remembers before it forgets those at rest, so a spray of
/// made-up usernames cannot grow memory without bound.
const THROTTLE_KEYS_MAX: usize = 10_000;

/// Login attempts allowed per minute, per username and (more generously, for offices behind
/// one address) per client address.
pub struct LoginThrottle {
    by_user: DefaultKeyedRateLimiter<String>,
    by_addr: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginThrottle {
    pub fn new(per_minute: u32) -> LoginThrottle {
        let per_user = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
        let per_addr = NonZeroU32::new(per_minute.max(1).saturating_mul(4)).expect("at least 1");
        LoginThrottle {
            by_user: governor::RateLimiter::keyed(Quota::per_minute(per_user)),
            by_addr: governor::RateLimiter::keyed(Quota::per_minute(per_addr)),
        }
    }

    /// Takes one attempt for this user and address; answers how many seconds to wait when
    /// either has no attempt left.
    fn check(&self, username: &str, addr: Option<IpAddr>) -> std::result::Result<(), u64> {
        for limiter_len in [self.by_user.len(), self.by_addr.len()] {
            if limiter_len > THROTTLE_KEYS_MAX {
                self.by_user.retain_recent();
                self.by_addr.retain_recent();
            }
        }
        let now = DefaultClock::default().now();
        let wait = |not_until: governor::NotUntil<_>| not_until.wait_time_from(now).as_secs() + 1;
        if let Some(addr) = addr {
            self.by_addr.check_key(&addr).map_err(wait)?;
        }
        self.by_user
            .check_key(&username.to_ascii_lowercase())
            .map_err(wait)
    }
}

/// Checks a username and password as the user forms and the CLI give them.
fn validate_credentials(username: &str, password: &str) -> Result<()> {
    let mut p = Problems::default();
    let name_ok = !username.is_empty()
        && username.len() <= USERNAME_LEN_MAX
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !name_ok {
        p.add(
            "username",
            format!("must be 1 to {USERNAME_LEN_MAX} of letters, digits, '.', '_', '@' and '-'"),
        );
    }
    let chars = password.chars().count();
    if chars < PASSWORD_LEN_MIN {
        p.add(
            "password",
            format!("must be at least {PASSWORD_LEN_MIN} characters"),
        );
    } else if password.len() > PASSWORD_LEN_MAX {
        p.add(
            "password",
            format!("must be at most {PASSWORD_LEN_MAX} bytes"),
        );
    }
    p.finish()
}

/// The argon2id hash (PHC string) of a password, with a fresh random salt. Slow on purpose
/// (tens of milliseconds): call it on a blocking thread.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches a stored hash. A hash that does not parse matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that case costs the same time.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password(&random_token("decoy_")).unwrap_or_else(|_| String::from("$invalid"))
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("blocking task failed: {e}")))
}

impl Service {
    /// Creates a user; a user of that name already existing is a conflict.
    pub async fn add_user(&self, username: &str, password: &str) -> Result<User> {
        validate_credentials(username, password)?;
        let password = password.to_string();
        let password_hash = blocking(move || hash_password(&password)).await??;
        let now = now_micros();
        let user = User {
            username: username.to_string(),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let stored = user.clone();
        self.write(move |w| {
            if w.user(&stored.username)?.is_some() {
                return Err(ServiceError::Conflict {
                    code: "conflict",
                    detail: format!("a user named '{}' already exists", stored.username),
                });
            }
            w.put_user(&stored)?;
            w.clear_setup_tokens()?;
            Ok(())
        })
        .await?;
        Ok(user)
    }

    /// Sets a new password for an existing user.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        validate_credentials(username, password)?;
        let password = password.to_string();
        let password_hash = blocking(move || hash_password(&password)).await??;
        let username = username.to_string();
        self.write(move |w| {
            let Some(mut user) = w.user(&username)? else {
                return Err(ServiceError::NotFound("User"));
            };
            user.password_hash = password_hash.clone();
            user.updated_at = now_micros();
            w.put_user(&user)?;
            Ok(())
        })
        .await
    }

    pub async fn remove_user(&self, username: &str) -> Result<()> {
        let username = username.to_string();
        match self.write(move |w| Ok(w.remove_user(&username)?)).await? {
            true => Ok(()),
            false => Err(ServiceError::NotFound("User")),
        }
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(self.read(|r| Ok(r.users()?)).await?)
    }

    pub async fn has_users(&self) -> Result<bool> {
        Ok(self.read(|r| Ok(r.user_count()?)).await? > 0)
    }

    /// Logs a user in: answers a new session, `Unauthorized` for a wrong name or password (the
    /// same answer for both), or `BadRequest { code: "too_many_attempts" }` when the user or
    /// the address used up its attempts for the minute.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        addr: Option<IpAddr>,
    ) -> Result<NewSession> {
        if let Err(wait_s) = self.logins.check(username, addr) {
            // What was typed as the username is not logged: people type passwords there.
            tracing::warn!(?addr, "login throttled");
            return Err(ServiceError::BadRequest {
                code: "too_many_attempts",
                detail: format!("Too many login attempts. Try again in {wait_s} s."),
            });
        }
        if username.len() > USERNAME_LEN_MAX || password.len() > PASSWORD_LEN_MAX {
            return Err(ServiceError::Unauthorized);
        }
        let name = username.to_string();
        let user = self.read(move |r| Ok(r.user(&name)?)).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
        let password = password.to_string();
        let matches = blocking(move || verify_password(&password, &hash)).await?;
        match user {
            Some(user) if matches => {
                tracing::info!(username = %user.username, "dashboard login");
                self.start_session(SessionOwner::User(user.username), None)
                    .await
            }
            _ => {
                tracing::warn!(?addr, "dashboard login refused");
                Err(ServiceError::Unauthorized)
            }
        }
    }

    /// While no user exists: makes a new one-time setup link (replacing any earlier one) and
    /// answers its URL; `None` once a user exists.
    pub async fn setup_link(&self) -> Result<Option<String>> {
        let token = random_token("");
        let hash = digest(&token);
        let now = now_micros();
        let made = self
            .write(move |w| {
                if w.user_count()? > 0 {
                    return Ok(false);
                }
                w.replace_setup_token(
                    &hash,
                    &SetupToken {
                        created_at: now,
                        expires_at: now + SETUP_LINK_TTL_MS * 1000,
                    },
                )?;
                Ok(true)
            })
            .await?;
        Ok(made.then(|| format!("{}{SETUP_PATH}{token}", self.public_base())))
    }

    /// Whether a setup link still works (unused, unexpired, and no user exists yet).
    pub async fn setup_link_valid(&self, token: &str) -> Result<bool> {
        let hash = digest(token);
        let now = now_micros();
        Ok(self
            .read(move |r| {
                Ok(r.user_count()? == 0
                    && r.setup_token(&hash)?.is_some_and(|t| t.expires_at > now))
            })
            .await?)
    }

    /// Uses a setup link: creates the first user and logs them in. The link works once.
    pub async fn complete_setup(
        &self,
        token: &str,
        username: &str,
        password: &str,
    ) -> Result<NewSession> {
        if !self.setup_link_valid(token).await? {
            return Err(ServiceError::NotFound("Setup link"));
        }
        validate_credentials(username, password)?;
        let password = password.to_string();
        let password_hash = blocking(move || hash_password(&password)).await??;
        let hash = digest(token);
        let now = now_micros();
        let user = User {
            username: username.to_string(),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let name = user.username.clone();
        let created = self
            .write(move |w| {
                if w.user_count()? > 0 {
                    return Ok(false);
                }
                match w.setup_token(&hash)? {
                    Some(t) if t.expires_at > now => {}
                    _ => return Ok(false),
                }
                w.take_setup_token(&hash)?;
                w.put_user(&user)?;
                w.clear_setup_tokens()?;
                Ok(true)
            })
            .await?;
        if !created {
            return Err(ServiceError::NotFound("Setup link"));
        }
        tracing::info!(username = %name, "first user created through the setup link");
        self.start_session(SessionOwner::User(name), None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("", &hash));
        assert!(!verify_password("x", "not a hash"));
        let again = hash_password("correct horse battery").unwrap();
        assert_ne!(hash, again, "each hash has its own salt");
    }

    #[test]
    fn credentials_are_checked_by_field() {
        assert!(validate_credentials("ops", "longenough").is_ok());
        let Err(ServiceError::Invalid(fields)) = validate_credentials("bad name", "short") else {
            panic!("expected invalid")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["username", "password"]);
    }

    #[test]
    fn the_throttle_refuses_after_the_quota_per_user_and_address() {
        let t = LoginThrottle::new(3);
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check("Ops", Some(addr)).is_ok());
        }
        let wait = t.check("ops", Some(addr)).unwrap_err();
        assert!((1..=61).contains(&wait), "{wait}");
        assert!(
            t.check("other", Some(addr)).is_ok(),
            "another user still may"
        );
        // The address allows four times the per-user quota in all.
        for i in 0..7 {
            let _ = t.check(&format!("user{i}"), Some(addr));
        }
        assert!(t.check("fresh", Some(addr)).is_err());
        assert!(t.check("fresh", None).is_ok());
    }
}
