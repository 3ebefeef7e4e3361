//! Applications: the tenants that receive webhooks.

use std::collections::BTreeMap;

use super::endpoints::PARKED_BATCH;
use super::validate::{self, Problems};
use super::{ListPage, ListParams, Result, Service, ServiceError, find_app, list_page};
use crate::model::*;
use crate::storage::StoreError;

/// Applications one search page looks at.
pub const APP_SEARCH_SCAN_MAX: usize = 100_000;

/// Whether an application's name or uid contains `needle` (lower case), or it is empty.
fn matches(app: &App, needle: &str) -> bool {
    needle.is_empty()
        || app.name.to_lowercase().contains(needle)
        || app
            .uid
            .as_deref()
            .is_some_and(|u| u.to_lowercase().contains(needle))
}

#[derive(Clone, Debug, Default)]
pub struct AppInput {
    pub name: String,
    pub uid: Option<String>,
    pub throttle_rate: Option<u16>,
    pub metadata: BTreeMap<String, String>,
}

/// A PATCH of an application: `None` keeps a field, `Some(None)` clears a nullable one.
#[derive(Clone)]
struct AppPatch {
    name: Option<String>,
    uid: Option<Option<String>>,
    throttle_rate: Option<Option<u16>>,
    metadata: Option<BTreeMap<String, String>>,
}

impl AppPatch {
    /// The whole input this patch makes of `app`.
    fn over(self, app: &App) -> AppInput {
        AppInput {
            name: self.name.unwrap_or_else(|| app.name.clone()),
            uid: self.uid.unwrap_or_else(|| app.uid.clone()),
            throttle_rate: self.throttle_rate.unwrap_or(app.throttle_rate),
            metadata: self.metadata.unwrap_or_else(|| app.metadata.clone()),
        }
    }
}

impl AppInput {
    /// `app` with these fields, updated now.
    fn over(self, app: &App) -> App {
        App {
            name: self.name,
            uid: self.uid,
            throttle_rate: self.throttle_rate,
            metadata: self.metadata,
            updated_at: now_micros(),
            ..app.clone()
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let mut p = Problems::default();
        p.check(validate::text(&self.name, true), "name");
        if let Some(uid) = &self.uid {
            p.check(validate::uid(uid, AppId::PREFIX), "uid");
        }
        if self.throttle_rate == Some(0) {
            p.add("throttleRate", "must be at least 1");
        }
        p.check(validate::metadata(&self.metadata), "metadata");
        p.finish()
    }

    /// Only an admin changes an application's uid (sets, replaces or removes it): uids are
    /// unique across every tenant, so a tenant free to pick one would learn from the conflict
    /// which uids other tenants have. Sending its current uid again is fine.
    pub(super) fn validate_uid_change(&self, caller: Caller, current: &App) -> Result<()> {
        if caller != Caller::Admin && self.uid != current.uid {
            return Err(ServiceError::AdminOnly(
                "Only an operator (an admin token) may change an application's uid",
            ));
        }
        Ok(())
    }
}

impl Service {
    /// Creates an application. With `get_if_exists`, an application with the same uid is
    /// answered instead (and `false` says it was not created).
    pub async fn create_app(
        &self,
        caller: Caller,
        input: AppInput,
        get_if_exists: bool,
    ) -> Result<(App, bool)> {
        super::require_admin(caller)?;
        input.validate()?;
        let now = now_micros();
        let result = self
            .write(move |w| {
                if let (true, Some(uid)) = (get_if_exists, &input.uid)
                    && let Some(id) = w.app_id_by_uid(uid)?
                {
                    return Ok((w.app(id)?.ok_or(StoreError::NotFound)?, false));
                }
                let app = App {
                    id: AppId(w.new_id()),
                    uid: input.uid.clone(),
                    name: input.name.clone(),
                    throttle_rate: input.throttle_rate,
                    metadata: input.metadata.clone(),
                    created_at: now,
                    updated_at: now,
                };
                w.insert_app(&app)?;
                Ok((app, true))
            })
            .await?;
        Ok(result)
    }

    /// Applications newest first whose id or uid is `needle`, or whose name or uid contains it
    /// (any case); every application when `needle` is empty. Pages by id like `list_apps`,
    /// looking at no more than `APP_SEARCH_SCAN_MAX` applications per page.
    pub async fn search_apps(
        &self,
        caller: Caller,
        needle: &str,
        params: ListParams,
    ) -> Result<ListPage<App>> {
        let query = self.page_query(&params, true, |s| AppId::parse(s).map(|i| i.0))?;
        let raw = needle.trim().to_string();
        let needle = raw.to_lowercase();
        let page = self
            .read(move |r| {
                if let Caller::App(own) = caller {
                    let app = r.app(own)?;
                    let items: Vec<App> = app.into_iter().filter(|a| matches(a, &needle)).collect();
                    return Ok(crate::storage::Page { items, done: true });
                }
                // An exact id or uid is answered directly, whatever the page.
                let exact = match AppId::parse(&raw) {
                    Some(id) => r.app(id)?,
                    None if raw.is_empty() => None,
                    None => match r.app_id_by_uid(&raw)? {
                        Some(id) => r.app(id)?,
                        None => None,
                    },
                };
                if let (Some(app), crate::storage::Cursor::First) = (exact, query.cursor) {
                    return Ok(crate::storage::Page {
                        items: vec![app],
                        done: true,
                    });
                }
                Ok(r.apps_matching(&query, &|a| matches(a, &needle), APP_SEARCH_SCAN_MAX)?)
            })
            .await?;
        Ok(list_page(page, |a| a.id.to_string()))
    }

    pub async fn get_app(&self, caller: Caller, id_or_uid: &str) -> Result<App> {
        let key = id_or_uid.to_string();
        self.read(move |r| Ok(find_app(r, caller, &key))).await?
    }

    pub async fn list_apps(
        &self,
        caller: Caller,
        params: ListParams,
        descending: bool,
    ) -> Result<ListPage<App>> {
        let query = self.page_query(&params, descending, |s| AppId::parse(s).map(|i| i.0))?;
        let page = self
            .read(move |r| match caller {
                Caller::Admin => Ok(r.apps(&query)?),
                // A scoped token sees its own application only.
                Caller::App(own) => {
                    let app = r.app(own)?;
                    let mut page = r.apps(&crate::storage::PageQuery {
                        within: own.0..=own.0,
                        ..query
                    })?;
                    page.items
                        .retain(|a| Some(a.id) == app.as_ref().map(|x| x.id));
                    Ok(page)
                }
            })
            .await?;
        Ok(list_page(page, |a| a.id.to_string()))
    }

    /// Replaces an application's fields (PUT). Creates it when unknown, as Svix does.
    pub async fn put_app(
        &self,
        caller: Caller,
        id_or_uid: &str,
        input: AppInput,
    ) -> Result<(App, bool)> {
        input.validate()?;
        // Found and replaced in one job, so a delete committed meanwhile is seen (nothing is
        // brought back) and no other change is overwritten with what an earlier read saw. An
        // unknown uid is created; should another PUT create it first, this one updates it.
        let mut attempts = 2;
        loop {
            let key = id_or_uid.to_string();
            let fields = input.clone();
            let replaced = self
                .write(move |w| {
                    let old = find_app(w, caller, &key)?;
                    fields.validate_uid_change(caller, &old)?;
                    let new = fields.clone().over(&old);
                    w.update_app(&old, &new)?;
                    Ok(new)
                })
                .await;
            match replaced {
                Ok(app) => return Ok((app, false)),
                // Unknown: an id names nothing to create; a uid names the application to
                // create, so a second PUT to the same path updates it rather than making another.
                Err(ServiceError::NotFound(what)) if caller == Caller::Admin => {
                    if AppId::parse(id_or_uid).is_some() {
                        return Err(ServiceError::NotFound(what));
                    }
                    let input = AppInput {
                        uid: input.uid.clone().or_else(|| Some(id_or_uid.to_string())),
                        ..input.clone()
                    };
                    attempts -= 1;
                    match self.create_app(caller, input, false).await {
                        Err(ServiceError::Conflict { .. }) if attempts > 0 => continue,
                        created => return created,
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Changes only the given fields (PATCH). `Some(None)` clears a nullable field.
    pub async fn patch_app(
        &self,
        caller: Caller,
        id_or_uid: &str,
        name: Option<String>,
        uid: Option<Option<String>>,
        throttle_rate: Option<Option<u16>>,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Result<App> {
        let patch = AppPatch {
            name,
            uid,
            throttle_rate,
            metadata,
        };
        let key = id_or_uid.to_string();
        self.write(move |w| {
            // Read and written in one job: the fields not patched are the current ones,
            // and a delete committed meanwhile is a 404, not an application made again.
            let old = find_app(w, caller, &key)?;
            let input = patch.clone().over(&old);
            input
                .validate()
                .and_then(|()| input.validate_uid_change(caller, &old))?;
            let new = input.over(&old);
            w.update_app(&old, &new)?;
            Ok(new)
        })
        .await
    }

    pub async fn delete_app(&self, caller: Caller, id_or_uid: &str) -> Result<()> {
        // Another tenant's application is "not found" before it is "forbidden".
        self.get_app(caller, id_or_uid).await?;
        super::require_admin(caller)?;
        let key = id_or_uid.to_string();
        let endpoints = self
            .write(move |w| {
                let app =
                    find_app(w, caller, &key).map_err(|_| ServiceError::NotFound("Application"))?;
                let endpoints: Vec<EndpointId> =
                    w.app_endpoints(app.id)?.iter().map(|e| e.id).collect();
                w.delete_app(&app)?;
                // Deliveries parked for its endpoints will never go: cancel a first batch of
                // them in the same commit (a crash before the rest is mended by the repair
                // pass, ops/repair.rs), and answer the endpoints that may have more.
                let mut budget = PARKED_BATCH;
                let mut more = Vec::new();
                for endpoint in endpoints {
                    let n = if budget > 0 {
                        w.cancel_parked(endpoint, budget)?
                    } else {
                        0
                    };
                    if n == budget {
                        more.push(endpoint);
                    }
                    budget -= n;
                }
                Ok(more)
            })
            .await?;
        // The rest, in bounded batches.
        for endpoint in endpoints {
            self.cancel_parked_of(endpoint).await?;
        }
        Ok(())
    }
}
