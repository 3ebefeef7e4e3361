//! Mutations of the dashboard's records: users, sessions, portal links, setup tokens, and the
//! acknowledgement of alerts. Each checks what it must before its first write (the writer's
//! contract) and decides no rule: `service/` decides who may do what.

use crate::storage::counters::SWEEP_MAX;
use redb::ReadableTable;

use super::codec::{decode, encode};
use super::tables::*;
use super::{StoreError, Writer};
use crate::model::*;

impl Writer<'_> {
    /// Creates or replaces a user.
    pub fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        self.table_mut(USERS)?
            .insert(user.username.as_str(), encode(user).as_slice())?;
        Ok(())
    }

    /// Removes a user and answers whether there was one. Their sessions end at their next
    /// request, when the user is no longer found.
    pub fn remove_user(&mut self, username: &str) -> Result<bool, StoreError> {
        if self.tx.open_table(USERS)?.get(username)?.is_none() {
            return Ok(false);
        }
        self.table_mut(USERS)?.remove(username)?;
        Ok(true)
    }

    pub fn insert_session(&mut self, hash: &[u8; 32], session: &Session) -> Result<(), StoreError> {
        self.table_mut(SESSIONS)?
            .insert(hash, encode(session).as_slice())?;
        Ok(())
    }

    pub fn remove_session(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.table_mut(SESSIONS)?.remove(hash)?;
        Ok(())
    }

    /// Removes up to `SWEEP_MAX` sessions, portal links and setup tokens that expired before
    /// `now`; answers how many went.
    pub fn sweep_expired(&mut self, now: Micros) -> Result<usize, StoreError> {
        let mut removed = 0;
        removed += sweep(
            self,
            SESSIONS,
            now,
            |v| Ok(decode::<Session>(v)?.expires_at),
        )?;
        removed += sweep(self, PORTAL_LINKS, now, |v| {
            Ok(decode::<PortalLink>(v)?.expires_at)
        })?;
        removed += sweep(self, SETUP_TOKENS, now, |v| {
            Ok(decode::<SetupToken>(v)?.expires_at)
        })?;
        Ok(removed)
    }

    pub fn insert_portal_link(
        &mut self,
        hash: &[u8; 32],
        link: &PortalLink,
    ) -> Result<(), StoreError> {
        self.table_mut(PORTAL_LINKS)?
            .insert(hash, encode(link).as_slice())?;
        Ok(())
    }

    /// Replaces every setup token by this one: only the newest printed link works.
    pub fn replace_setup_token(
        &mut self,
        hash: &[u8; 32],
        token: &SetupToken,
    ) -> Result<(), StoreError> {
        let mut t = self.table_mut(SETUP_TOKENS)?;
        t.retain(|_, _| false)?;
        t.insert(hash, encode(token).as_slice())?;
        Ok(())
    }

    /// Removes the setup token with this hash and answers it, if there was one: a setup link
    /// works once.
    pub fn take_setup_token(&mut self, hash: &[u8; 32]) -> Result<Option<SetupToken>, StoreError> {
        let found: Option<SetupToken> = match self.tx.open_table(SETUP_TOKENS)?.get(hash)? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        if found.is_some() {
            self.table_mut(SETUP_TOKENS)?.remove(hash)?;
        }
        Ok(found)
    }

    /// Removes every setup token (a user now exists).
    pub fn clear_setup_tokens(&mut self) -> Result<(), StoreError> {
        self.table_mut(SETUP_TOKENS)?.retain(|_, _| false)?;
        Ok(())
    }

    /// Replaces a stored alert (same id), e.g. with its acknowledgement time set.
    pub fn replace_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        self.table_mut(ALERTS)?
            .insert(alert.id.0, encode(alert).as_slice())?;
        Ok(())
    }
}

/// Removes up to `SWEEP_MAX` rows of a table keyed by hash whose expiry is before `now`.
fn sweep(
    w: &mut Writer<'_>,
    def: redb::TableDefinition<&[u8; 32], &[u8]>,
    now: Micros,
    expiry: impl Fn(&[u8]) -> Result<Micros, StoreError>,
) -> Result<usize, StoreError> {
    let mut expired = Vec::new();
    for e in w.tx.open_table(def)?.iter()? {
        let (k, v) = e?;
        if expiry(v.value())? < now {
            expired.push(*k.value());
            if expired.len() >= SWEEP_MAX {
                break;
            }
        }
    }
    if !expired.is_empty() {
        let mut t = w.table_mut(def)?;
        for k in &expired {
            t.remove(k)?;
        }
    }
    Ok(expired.len())
}
