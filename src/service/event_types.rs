//! The event catalog: names, descriptions, schemas and example payloads.

use super::validate::{self, Problems};
use super::{ListPage, ListParams, Result, Service, ServiceError, require_admin};
use crate::model::*;
use crate::storage::{Conflict, StoreError};

/// Endpoints looked at to find an event type's subscribers.
pub const SUBSCRIBERS_SCAN_MAX: usize = 10_000;

#[derive(Clone, Debug, Default)]
pub struct EventTypeInput {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// JSON text of the versioned schema map.
    pub schemas_json: Option<String>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    /// JSON text of an example payload.
    pub example_json: Option<String>,
}

/// A PATCH of an event type: `None` keeps a field, `Some(None)` clears a nullable one.
#[derive(Clone, Debug, Default)]
pub struct EventTypePatch {
    pub description: Option<String>,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    pub schemas_json: Option<Option<String>>,
    pub group_name: Option<Option<String>>,
    pub feature_flags: Option<Option<Vec<String>>>,
    pub example_json: Option<Option<String>>,
}

impl EventTypePatch {
    /// The whole input this patch makes of `et`.
    fn over(self, et: &EventType) -> EventTypeInput {
        EventTypeInput {
            name: et.name.clone(),
            description: self.description.unwrap_or_else(|| et.description.clone()),
            archived: self.archived.unwrap_or(et.archived),
            deprecated: self.deprecated.unwrap_or(et.deprecated),
            schemas_json: self.schemas_json.unwrap_or_else(|| et.schemas_json.clone()),
            group_name: self.group_name.unwrap_or_else(|| et.group_name.clone()),
            feature_flags: self
                .feature_flags
                .unwrap_or_else(|| et.feature_flags.clone()),
            example_json: self.example_json.unwrap_or_else(|| et.example_json.clone()),
        }
    }
}

impl EventTypeInput {
    fn validate(&self) -> Result<()> {
        let mut p = Problems::default();
        p.check(validate::event_type_name(&self.name), "name");
        p.check(validate::text(&self.description, false), "description");
        if let Some(schemas) = &self.schemas_json {
            match serde_json::from_str::<serde_json::Value>(schemas) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => p.add("schemas", "must be an object of version -> JSON Schema"),
                Err(e) => p.add("schemas", format!("is not valid JSON: {e}")),
            }
        }
        if let Some(example) = &self.example_json {
            match serde_json::from_str::<serde_json::Value>(example) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => p.add("example", "must be a JSON object"),
                Err(e) => p.add("example", format!("is not valid JSON: {e}")),
            }
        }
        if let Some(g) = &self.group_name {
            p.check(validate::text(g, false), "groupName");
        }
        p.finish()
    }

    fn into_event_type(self, created_at: Micros) -> EventType {
        EventType {
            name: self.name,
            description: self.description,
            archived: self.archived,
            deprecated: self.deprecated,
            schemas_json: self.schemas_json,
            group_name: self.group_name,
            feature_flags: self.feature_flags,
            example_json: self.example_json,
            created_at,
            updated_at: now_micros(),
        }
    }
}

impl Service {
    /// Adds an event type. An archived one of the same name is brought back and overwritten
    /// (Svix semantics); a live one is a conflict.
    pub async fn create_event_type(
        &self,
        caller: Caller,
        input: EventTypeInput,
    ) -> Result<EventType> {
        require_admin(caller)?;
        input.validate()?;
        let et = self
            .write(move |w| {
                if let Some(existing) = w.event_type(&input.name)?
                    && !existing.archived
                {
                    return Err(StoreError::Conflict(Conflict::EventTypeExists).into());
                }
                let et = input.clone().into_event_type(now_micros());
                w.put_event_type(&et)?;
                Ok(et)
            })
            .await?;
        Ok(et)
    }

    /// Creates or replaces an event type (PUT); answers whether it was created.
    pub async fn put_event_type(
        &self,
        caller: Caller,
        input: EventTypeInput,
    ) -> Result<(EventType, bool)> {
        require_admin(caller)?;
        input.validate()?;
        Ok(self
            .write(move |w| {
                let existing = w.event_type(&input.name)?;
                let created = existing.is_none();
                let et = input
                    .clone()
                    .into_event_type(existing.map_or_else(now_micros, |e| e.created_at));
                w.put_event_type(&et)?;
                Ok((et, created))
            })
            .await?)
    }

    /// Changes only the given fields of an existing event type (PATCH). Validated over what
    /// is read now, off the writer (schemas can be large); written over what is current in one
    /// job, so an archive committed meanwhile stays and an expunged one is a 404, not made again.
    pub async fn patch_event_type(
        &self,
        caller: Caller,
        name: &str,
        patch: EventTypePatch,
    ) -> Result<EventType> {
        let read = self.get_event_type(name).await?;
        require_admin(caller)?;
        patch.clone().over(&read).validate()?;
        let name = name.to_string();
        self.write(move |w| {
            let Some(current) = w.event_type(&name)? else {
                return Err(ServiceError::NotFound("Event type"));
            };
            let et = patch
                .clone()
                .over(&current)
                .into_event_type(current.created_at);
            w.put_event_type(&et)?;
            Ok(et)
        })
        .await
    }

    pub async fn get_event_type(&self, name: &str) -> Result<EventType> {
        let name = name.to_string();
        self.read(move |r| Ok(r.event_type(&name)?))
            .await?
            .ok_or(ServiceError::NotFound("Event type"))
    }

    pub async fn list_event_types(
        &self,
        params: ListParams,
        include_archived: bool,
    ) -> Result<ListPage<EventType>> {
        let limit = self.limit(&params)?;
        let page = self
            .read(move |r| {
                let iter = params.iterator.as_deref().filter(|s| !s.is_empty());
                let (after, before) = match iter.map(|s| s.strip_prefix('-')) {
                    Some(Some(b)) => (None, Some(b)),
                    Some(None) => (iter, None),
                    None => (None, None),
                };
                Ok(r.event_types(after, before, limit, include_archived)?)
            })
            .await?;
        Ok(super::list_page(page, |e| e.name.clone()))
    }

    /// The endpoints subscribed to an event type by name, and how many more receive every type
    /// (`eventTypes` null), among the first `SUBSCRIBERS_SCAN_MAX` endpoints.
    pub async fn event_type_subscribers(
        &self,
        caller: Caller,
        name: &str,
    ) -> Result<(Vec<(App, Endpoint)>, usize)> {
        let name = name.to_string();
        Ok(self
            .read(move |r| {
                let mut named = Vec::new();
                let mut every = 0;
                for ep in r.endpoints_upto(SUBSCRIBERS_SCAN_MAX)? {
                    if !caller.may_access(ep.app_id) {
                        continue;
                    }
                    match &ep.event_types {
                        None => every += 1,
                        Some(types) if types.contains(&name) => {
                            if let Some(app) = r.app(ep.app_id)? {
                                named.push((app, ep));
                            }
                        }
                        Some(_) => {}
                    }
                }
                Ok((named, every))
            })
            .await?)
    }

    /// Archives an event type (kept, hidden from lists), or removes it with `expunge`.
    pub async fn delete_event_type(&self, caller: Caller, name: &str, expunge: bool) -> Result<()> {
        require_admin(caller)?;
        let name = name.to_string();
        self.write(move |w| {
            let Some(mut et) = w.event_type(&name)? else {
                return Err(ServiceError::NotFound("Event type"));
            };
            if expunge {
                Ok(w.remove_event_type(&name)?)
            } else {
                et.archived = true;
                et.updated_at = now_micros();
                Ok(w.put_event_type(&et)?)
            }
        })
        .await
    }
}
