//! API tokens and idempotency: who may call, and replaying a repeated POST.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Result, Service, ServiceError, find_app};
use crate::model::*;
use crate::storage::{IdempotentResponse, Read, RememberedAnswer, StoreError};

/// Prefix of Herald's API tokens, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "hrld_";

/// A token just made: the text is shown once and never stored.
#[derive(Debug)]
pub struct NewToken {
    pub token: Token,
    pub text: String,
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Valid tokens already looked up, by hash: every API request authenticates, and a read on a
/// blocking thread per request costs more than the rest of a message's ingest. A revocation
/// in this process clears the cache, so it takes effect here at once; one made elsewhere (the
/// CLI, or another node on the same PostgreSQL database) takes effect within
/// `TOKEN_CACHE_TTL`, after which a cached token is looked up again. Unknown tokens are never
/// cached, and the cache is bounded (cleared when full), so guessing tokens cannot grow it.
#[derive(Default)]
pub(super) struct TokenCache(std::sync::Mutex<CachedTokens>);

#[derive(Default)]
pub(super) struct CachedTokens {
    /// Each caller, with when it was looked up.
    callers: std::collections::HashMap<[u8; 32], (Caller, std::time::Instant)>,
    /// Bumped by every clear, so a lookup that read the table before a revocation cannot put
    /// its stale answer back after it.
    generation: u64,
}

/// Most tokens the cache holds before it starts over.
const TOKEN_CACHE_MAX: usize = 1_024;
/// How long a looked-up token is trusted before it is looked up again: the bound on how late a
/// revocation made by another process is seen.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl TokenCache {
    /// The cached caller, or the generation a lookup in the table must present to `put`.
    fn get(&self, hash: &[u8; 32]) -> Result<Caller, u64> {
        let cached = self.0.lock().expect("not poisoned");
        match cached.callers.get(hash) {
            Some((caller, at)) if at.elapsed() < TOKEN_CACHE_TTL => Ok(*caller),
            _ => Err(cached.generation),
        }
    }

    fn put(&self, hash: [u8; 32], caller: Caller, generation: u64) {
        let mut cached = self.0.lock().expect("not poisoned");
        if cached.generation != generation {
            return;
        }
        if cached.callers.len() >= TOKEN_CACHE_MAX {
            cached.callers.clear();
        }
        cached
            .callers
            .insert(hash, (caller, std::time::Instant::now()));
    }

    fn clear(&self) {
        let mut cached = self.0.lock().expect("not poisoned");
        cached.callers.clear();
        cached.generation += 1;
    }
}

impl Service {
    /// Who a bearer token belongs to. Tokens are 256 random bits, so a plain SHA-256 is the
    /// right hash (no password stretching needed) and lookup is by that hash.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller> {
        if !bearer.starts_with(TOKEN_PREFIX) {
            return Err(ServiceError::Unauthorized);
        }
        let h = hash(bearer);
        let generation = match self.tokens.get(&h) {
            Ok(caller) => return Ok(caller),
            Err(generation) => generation,
        };
        let token = self.read(move |r| Ok(r.token(&h)?)).await?;
        match token {
            Some(t) => {
                let caller = t.app_id.map_or(Caller::Admin, Caller::App);
                self.tokens.put(h, caller, generation);
                Ok(caller)
            }
            None => Err(ServiceError::Unauthorized),
        }
    }

    /// Makes a token: admin when `app` is `None`, else scoped to that application.
    pub async fn create_token(&self, name: &str, app: Option<&str>) -> Result<NewToken> {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let text = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        let h = hash(&text);
        let name = name.to_string();
        let app = app.map(str::to_owned);
        let token = self
            .write(move |w| {
                // Found in the job that writes, so no token is made for an application
                // deleted meanwhile.
                let app_id = match app.as_ref().map(|key| find_app(w, Caller::Admin, key)) {
                    Some(Ok(app)) => Some(app.id),
                    Some(Err(e)) => return Err(e),
                    None => None,
                };
                let token = Token {
                    id: TokenId(w.new_id()),
                    name: name.clone(),
                    app_id,
                    created_at: now_micros(),
                };
                w.insert_token(&h, &token)?;
                Ok(token)
            })
            .await?;
        Ok(NewToken { token, text })
    }

    pub async fn list_tokens(&self) -> Result<Vec<Token>> {
        Ok(self.read(|r| Ok(r.tokens()?)).await?)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let id = TokenId::parse(id).ok_or(ServiceError::NotFound("Token"))?;
        let revoked = self.write(move |w| Ok(w.revoke_token(id)?)).await?;
        // After the commit: a request checked from now on reads the token table again.
        self.tokens.clear();
        match revoked {
            true => Ok(()),
            false => Err(ServiceError::NotFound("Token")),
        }
    }

    /// The key under which a POST's answer is remembered: its credentials, Idempotency-Key
    /// and full URI, as Svix scopes it.
    pub fn idempotency_key(authorization: &str, key: &str, uri: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [authorization, key, uri] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// The remembered answer for this key, if still fresh.
    pub async fn idempotent_response(&self, key: [u8; 32]) -> Result<Option<Replay>> {
        Ok(self.read(move |r| Ok(replay(r, &key)?)).await?)
    }

    pub async fn remember_response(&self, key: [u8; 32], status: u16, body: Vec<u8>) -> Result<()> {
        let Some(response) = self.answer_to_remember(status, body) else {
            return Ok(());
        };
        Ok(self
            .write(move |w| Ok(w.put_idempotent_response(&key, &response)?))
            .await?)
    }

    /// The record of an answer remembered now, for `idempotency_ttl_ms`; `None` when it is
    /// larger than `idempotency_body_max_bytes` (answered, but not kept).
    pub(super) fn answer_to_remember(
        &self,
        status: u16,
        body: Vec<u8>,
    ) -> Option<IdempotentResponse> {
        (body.len() <= self.config.idempotency_body_max_bytes).then(|| IdempotentResponse {
            expires_ms: now_millis() + self.config.idempotency_ttl_ms,
            answer: RememberedAnswer::Sent { status, body },
        })
    }

    /// The record of a message create's answer, remembered now: a reference to `msg`, replayed
    /// for `idempotency_ttl_ms` but never past the time retention may remove the message, so a
    /// retry with the key cannot find the message gone and make it again.
    pub(super) fn remembered_message(
        &self,
        msg: &Message,
        with_content: bool,
    ) -> IdempotentResponse {
        reference(
            msg,
            with_content,
            now_millis() + self.config.idempotency_ttl_ms,
        )
    }
}

/// A reference to `msg` as a remembered answer, kept until `expires_ms` or until the message
/// may be removed, whichever is first.
fn reference(msg: &Message, with_content: bool, expires_ms: u64) -> IdempotentResponse {
    IdempotentResponse {
        expires_ms: expires_ms.min((msg.retained_until() / 1000).max(0) as u64),
        answer: RememberedAnswer::Message {
            app: msg.app_id.0,
            msg: msg.id.0,
            with_content,
        },
    }
}

/// An answer to send again, for a repeated Idempotency-Key.
#[derive(Debug)]
pub enum Replay {
    /// The status and body sent the first time.
    Sent(u16, Vec<u8>),
    /// A message create's answer: 202 and this message, rendered as the first time was asked
    /// (`with_content`).
    Message(Message, bool),
}

/// The answer remembered under `key`, if it has not expired. A message create's answer is
/// read back from its message, which outlives the record (`remembered_message`); were it gone
/// all the same, the key is treated as expired.
pub(super) fn replay(
    r: &dyn Read,
    key: &[u8; 32],
) -> std::result::Result<Option<Replay>, StoreError> {
    let Some(found) = r.idempotent_response(key)? else {
        return Ok(None);
    };
    if found.expires_ms <= now_millis() {
        return Ok(None);
    }
    Ok(match found.answer {
        RememberedAnswer::Sent { status, body } => Some(Replay::Sent(status, body)),
        RememberedAnswer::Message {
            app,
            msg,
            with_content,
        } => r
            .message(AppId(app), MessageId(msg))?
            .map(|m| Replay::Message(m, with_content)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    fn message(created_ms: u64, retention_days: u16) -> Message {
        Message {
            created_at: created_ms as i64 * 1000,
            retention_days,
            ..Message::plain(MessageId(2), AppId(1), "a.b")
        }
    }

    /// However long keys are configured to live, a remembered message create expires no later
    /// than retention may remove its message: a retry then runs again rather than finding the
    /// message gone.
    #[test]
    fn a_remembered_message_create_never_outlives_its_message() {
        let now = 1_790_000_000_000;
        let short = message(now, 1);
        assert_eq!(
            reference(&short, true, now + 3 * DAY_MS).expires_ms,
            now + DAY_MS
        );
        let long = message(now, 90);
        assert_eq!(
            reference(&long, true, now + DAY_MS / 2).expires_ms,
            now + DAY_MS / 2
        );
        assert_eq!(
            reference(&long, false, 0).answer,
            RememberedAnswer::Message {
                app: 1,
                msg: 2,
                with_content: false
            }
        );
    }
}
