//! Dashboard sessions and tenant portal links: who a browser is, and what it may touch.
//!
//! A session is a random token in a cookie; only its SHA-256 is stored, with its owner (an
//! operator, or one application through a portal link) and the CSRF token its forms carry.
//! An operator's session calls the service as `Caller::Admin`; a portal session as
//! `Caller::App(app)`, so every scope check of the API applies to it unchanged, and a
//! read-only portal session may not change anything.
//!
//! Must never: store a session or link token itself, or let a portal session act as admin.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Result, Service, ServiceError, find_app, require_admin};
use crate::model::*;

/// Path of the portal's entrance; the link token follows it.
pub const PORTAL_ACCESS_PATH: &str = "/portal/access/";
/// Shortest and longest life of a portal link, in seconds (Svix allows up to 7 days).
pub const PORTAL_EXPIRY_MIN_S: u64 = 60;
pub const PORTAL_EXPIRY_MAX_S: u64 = 7 * 86_400;

/// A session as the front door sees it.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub owner: SessionOwner,
    /// How this session calls the service.
    pub caller: Caller,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub expires_at: Micros,
}

impl SessionView {
    /// A portal session opened with a read-only link.
    pub fn read_only(&self) -> bool {
        matches!(
            self.owner,
            SessionOwner::Portal {
                read_only: true,
                ..
            }
        )
    }

    /// The application a portal session is confined to.
    pub fn portal_app(&self) -> Option<AppId> {
        match self.owner {
            SessionOwner::Portal { app_id, .. } => Some(app_id),
            SessionOwner::User(_) => None,
        }
    }

    /// Refuses a change through a read-only portal session.
    pub fn may_change(&self) -> Result<()> {
        if self.read_only() {
            return Err(ServiceError::Forbidden);
        }
        Ok(())
    }
}

/// A session just started: `token` goes into the cookie and is not kept anywhere else.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub view: SessionView,
}

/// What `POST /api/v1/auth/app-portal-access/{app}` answers.
#[derive(Clone, Debug)]
pub struct PortalAccess {
    pub url: String,
    pub token: String,
}

/// The SHA-256 under which a token is stored.
pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 256 random bits, URL-safe, after `prefix`.
pub(super) fn random_token(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(raw))
}

fn view(session: Session) -> SessionView {
    let caller = match &session.owner {
        SessionOwner::User(_) => Caller::Admin,
        SessionOwner::Portal { app_id, .. } => Caller::App(*app_id),
    };
    SessionView {
        owner: session.owner,
        caller,
        csrf: session.csrf,
        expires_at: session.expires_at,
    }
}

impl Service {
    /// Records the address the server listens on (once; the first one stays).
    pub fn listening_on(&self, addr: std::net::SocketAddr) {
        let _ = self.listening.set(addr);
    }

    /// Where people reach this Herald, the base of every absolute link it makes (portal and
    /// setup links, the dashboard's examples): `public_url`, else the address it listens on.
    /// Never a request's `Host` header: any client sends any `Host`, and a link made from it
    /// would send a tenant, or the first user, wherever that client chose. Without
    /// `public_url` the first link made says, once, how to set it.
    pub fn public_base(&self) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let scheme = if self.config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let listen = self.listening.get().copied().unwrap_or(self.config.listen);
        let base = format!("{scheme}://{listen}");
        if !self
            .told_public_url
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "public_url is not set, so links Herald makes (portal and setup links, the \
                 dashboard's examples) use its listen address {base}; set public_url in \
                 herald.toml or HERALD_PUBLIC_URL to the address people reach Herald at"
            );
        }
        base
    }

    /// Whether the dashboard is reached over https (its cookies are then `Secure`): Herald
    /// serves TLS itself, or its public URL is https (a proxy in front terminates TLS).
    pub fn public_https(&self) -> bool {
        self.config.tls_cert.is_some()
            || self
                .config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }

    /// Stores a new session for `owner`; it ends after `session_ttl_ms`, or at `until` when
    /// that is sooner. Expired sessions and links are swept in the same write.
    pub(super) async fn start_session(
        &self,
        owner: SessionOwner,
        until: Option<Micros>,
    ) -> Result<NewSession> {
        let token = random_token("");
        let hash = digest(&token);
        let now = now_micros();
        let ttl_end = now + self.config.session_ttl_ms as i64 * 1000;
        let session = Session {
            owner,
            csrf: random_token(""),
            created_at: now,
            expires_at: until.map_or(ttl_end, |u| u.min(ttl_end)),
        };
        let stored = session.clone();
        self.write(move |w| {
            w.sweep_expired(now)?;
            Ok(w.insert_session(&hash, &stored)?)
        })
        .await?;
        Ok(NewSession {
            token,
            view: view(session),
        })
    }

    /// The live session of a cookie token, if any: unknown, expired, and sessions of a user who
    /// was removed answer `None`.
    pub async fn session(&self, token: &str) -> Result<Option<SessionView>> {
        let hash = digest(token);
        let now = now_micros();
        let found = self
            .read(move |r| {
                let Some(s) = r.session(&hash)? else {
                    return Ok(None);
                };
                if s.expires_at <= now {
                    return Ok(None);
                }
                if let SessionOwner::User(name) = &s.owner
                    && r.user(name)?.is_none()
                {
                    return Ok(None);
                }
                Ok(Some(s))
            })
            .await?;
        Ok(found.map(view))
    }

    /// Ends a session (logout). Unknown tokens are fine.
    pub async fn end_session(&self, token: &str) -> Result<()> {
        let hash = digest(token);
        self.write(move |w| Ok(w.remove_session(&hash)?)).await?;
        Ok(())
    }

    /// Makes a link into the tenant portal of one application (admin only): it opens a
    /// portal session confined to that application, read-only if asked, and works until
    /// `expiry_s` seconds from now.
    pub async fn create_portal_link(
        &self,
        caller: Caller,
        app: &str,
        expiry_s: Option<u64>,
        read_only: bool,
    ) -> Result<PortalAccess> {
        require_admin(caller)?;
        let expiry = expiry_s.unwrap_or(self.config.portal_link_expiry_default_s);
        if !(PORTAL_EXPIRY_MIN_S..=PORTAL_EXPIRY_MAX_S).contains(&expiry) {
            return Err(ServiceError::invalid(
                "expiry",
                format!("must be {PORTAL_EXPIRY_MIN_S} to {PORTAL_EXPIRY_MAX_S} seconds"),
            ));
        }
        let token = random_token("hpl_");
        let hash = digest(&token);
        let app = app.to_string();
        let now = now_micros();
        self.write(move |w| {
            let app = find_app(w, caller, &app)?;
            w.insert_portal_link(
                &hash,
                &PortalLink {
                    app_id: app.id,
                    read_only,
                    created_at: now,
                    expires_at: now + expiry as i64 * 1_000_000,
                },
            )?;
            Ok(())
        })
        .await?;
        Ok(PortalAccess {
            url: format!("{}{PORTAL_ACCESS_PATH}{token}", self.public_base()),
            token,
        })
    }

    /// Opens a portal link: a new portal session, ending when the link expires at the latest.
    /// Unknown and expired links, and links of a deleted application, are `NotFound`.
    pub async fn open_portal_link(&self, token: &str) -> Result<NewSession> {
        let hash = digest(token);
        let now = now_micros();
        let link = self
            .read(move |r| {
                let Some(link) = r.portal_link(&hash)? else {
                    return Ok(None);
                };
                let app_exists = r.app(link.app_id)?.is_some();
                Ok((link.expires_at > now && app_exists).then_some(link))
            })
            .await?
            .ok_or(ServiceError::NotFound("Portal link"))?;
        self.start_session(
            SessionOwner::Portal {
                app_id: link.app_id,
                read_only: link.read_only,
            },
            Some(link.expires_at),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let a = random_token("hpl_");
        let b = random_token("hpl_");
        assert!(a.starts_with("hpl_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a), digest(&a.clone()));
    }

    #[test]
    fn a_portal_session_calls_as_its_application_and_read_only_refuses_changes() {
        let s = view(Session {
            owner: SessionOwner::Portal {
                app_id: AppId(9),
                read_only: true,
            },
            csrf: "c".into(),
            created_at: 0,
            expires_at: 1,
        });
        assert_eq!(s.caller, Caller::App(AppId(9)));
        assert_eq!(s.portal_app(), Some(AppId(9)));
        assert!(matches!(s.may_change(), Err(ServiceError::Forbidden)));
        let admin = view(Session {
            owner: SessionOwner::User("ops".into()),
            csrf: "c".into(),
            created_at: 0,
            expires_at: 1,
        });
        assert_eq!(admin.caller, Caller::Admin);
        assert!(admin.may_change().is_ok());
    }
}
