//! Endpoints: where and how an application's webhooks are delivered.

use std::collections::BTreeMap;

use super::validate::{self, Problems};
use super::{
    ListPage, ListParams, Result, Service, ServiceError, find_app, find_endpoint, list_page,
};
use crate::model::*;
use crate::signing;
use crate::storage::Read;

#[derive(Clone, Debug, Default)]
pub struct EndpointInput {
    pub url: String,
    pub description: String,
    pub uid: Option<String>,
    /// `None`: every event type.
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    /// A client-chosen secret (`whsec_...`); `None` generates one.
    pub secret: Option<String>,
    pub disabled: bool,
    pub throttle_rate: Option<u16>,
    pub metadata: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
}

impl Service {
    /// Checks everything that needs no database; `event_types` are checked against the catalog
    /// by `check_event_types` inside the write.
    fn validate_endpoint(&self, input: &EndpointInput) -> Result<()> {
        let mut p = Problems::default();
        p.check(self.validate_url(&input.url), "url");
        p.check(validate::text(&input.description, false), "description");
        if let Some(uid) = &input.uid {
            p.check(validate::uid(uid, EndpointId::PREFIX), "uid");
        }
        if let Some(types) = &input.event_types {
            if types.is_empty() {
                p.add(
                    "eventTypes",
                    "must list at least one event type, or be null for all",
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for t in types {
                if !seen.insert(t) {
                    p.add("eventTypes", format!("'{t}' is listed twice"));
                }
            }
        }
        if let Some(channels) = &input.channels {
            p.check(validate::channels(channels), "channels");
        }
        if let Some(secret) = &input.secret {
            if let Err(e) = signing::parse_secret(secret) {
                p.add("secret", e.to_string());
            }
        }
        if input.throttle_rate == Some(0) {
            p.add("throttleRate", "must be at least 1");
        }
        p.check(validate::metadata(&input.metadata), "metadata");
        if input.headers.len() > self.config.headers_per_endpoint_max {
            p.add(
                "headers",
                format!("at most {} headers", self.config.headers_per_endpoint_max),
            );
        }
        for (name, value) in &input.headers {
            p.check(validate::header(name, value), "headers");
        }
        p.finish()
    }

    /// An endpoint URL: absolute http(s), not too long, and not pointing at an address the
    /// SSRF guard refuses (when that can be seen without resolving).
    pub(super) fn validate_url(&self, url: &str) -> Result<(), String> {
        if url.len() > self.config.url_max_len {
            return Err(format!(
                "must be at most {} characters",
                self.config.url_max_len
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        self.policy.check_url(&parsed).map_err(|b| b.to_string())
    }

    pub async fn create_endpoint(
        &self,
        caller: Caller,
        app: &str,
        input: EndpointInput,
    ) -> Result<Endpoint> {
        self.validate_endpoint(&input)?;
        let key = match &input.secret {
            Some(s) => signing::parse_secret(s)
                .map_err(|e| ServiceError::invalid("secret", e.to_string()))?,
            None => signing::generate_key(),
        };
        let app = app.to_string();
        self.store
            .write(move |w| {
                let app = match find_app(w, caller, &app) {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                if let Err(e) = check_event_types(w, input.event_types.as_deref())? {
                    return Ok(Err(e));
                }
                let now = now_micros();
                let ep = Endpoint {
                    id: EndpointId(w.new_id()),
                    app_id: app.id,
                    uid: input.uid,
                    url: input.url,
                    description: input.description,
                    event_types: input.event_types,
                    channels: input.channels,
                    keys: vec![SigningKey {
                        key,
                        expires_at: None,
                    }],
                    disabled: input.disabled,
                    throttle_rate: input.throttle_rate,
                    metadata: input.metadata,
                    headers: input.headers,
                    created_at: now,
                    updated_at: now,
                };
                w.insert_endpoint(&ep)?;
                Ok(Ok(ep))
            })
            .await?
    }

    pub async fn get_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
    ) -> Result<Endpoint> {
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        self.store
            .read(move |r| {
                Ok(find_app(r, caller, &app).and_then(|app| find_endpoint(r, app.id, &endpoint)))
            })
            .await?
    }

    pub async fn list_endpoints(
        &self,
        caller: Caller,
        app: &str,
        params: ListParams,
        descending: bool,
    ) -> Result<ListPage<Endpoint>> {
        let query = self.page_query(&params, descending, |s| EndpointId::parse(s).map(|i| i.0))?;
        let app = app.to_string();
        let page = self
            .store
            .read(move |r| {
                let app = match find_app(r, caller, &app) {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(r.endpoints(app.id, &query)?))
            })
            .await??;
        Ok(list_page(page, |e| e.id.to_string()))
    }

    /// The endpoint's current signing secret, in full (`whsec_...`).
    pub async fn endpoint_secret(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
    ) -> Result<String> {
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        let current = ep
            .keys
            .first()
            .ok_or_else(|| ServiceError::Internal("endpoint has no key".into()))?;
        Ok(signing::format_secret(&current.key))
    }

    pub async fn delete_endpoint(&self, caller: Caller, app: &str, endpoint: &str) -> Result<()> {
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        self.store
            .write(move |w| {
                let ep = match find_app(w, caller, &app)
                    .and_then(|a| find_endpoint(w, a.id, &endpoint))
                {
                    Ok(ep) => ep,
                    Err(e) => return Ok(Err(e)),
                };
                w.delete_endpoint(&ep)?;
                Ok(Ok(()))
            })
            .await?
    }
}

/// Every listed event type must be in the catalog and not archived.
pub(super) fn check_event_types(
    r: &impl Read,
    types: Option<&[String]>,
) -> std::result::Result<Result<()>, crate::storage::StoreError> {
    let mut p = Problems::default();
    for name in types.unwrap_or_default() {
        match r.event_type(name)? {
            None => p.add("eventTypes", format!("event type '{name}' does not exist")),
            Some(et) if et.archived => {
                p.add("eventTypes", format!("event type '{name}' is archived"))
            }
            Some(_) => {}
        }
    }
    Ok(p.finish())
}
