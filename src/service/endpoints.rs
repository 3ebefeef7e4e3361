//! Endpoints: where and how an application's webhooks are delivered.

use std::collections::BTreeMap;

use super::validate::{self, Problems};
use super::{
    ListPage, ListParams, Result, Service, ServiceError, find_app, find_endpoint, list_page,
};
use crate::model::*;
use crate::signing;
use crate::storage::Read;

/// A PATCH of an endpoint: `None` keeps a field, `Some(None)` clears a nullable one.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub uid: Option<Option<String>>,
    pub event_types: Option<Option<Vec<String>>>,
    pub channels: Option<Option<Vec<String>>>,
    pub disabled: Option<bool>,
    pub throttle_rate: Option<Option<u16>>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub basic_auth: Option<Option<BasicAuth>>,
    pub client_cert: Option<Option<ClientCert>>,
    pub timeout_ms: Option<Option<u64>>,
    pub retry_schedule_ms: Option<Option<Vec<u64>>>,
    pub attempts_max: Option<Option<u32>>,
    pub concurrency_max: Option<Option<u32>>,
}

impl EndpointPatch {
    /// The whole input this patch makes of `ep`: its own fields where given, `ep`'s elsewhere.
    fn over(self, ep: &Endpoint) -> EndpointInput {
        EndpointInput {
            url: self.url.unwrap_or_else(|| ep.url.clone()),
            description: self.description.unwrap_or_else(|| ep.description.clone()),
            uid: self.uid.unwrap_or_else(|| ep.uid.clone()),
            event_types: self.event_types.unwrap_or_else(|| ep.event_types.clone()),
            channels: self.channels.unwrap_or_else(|| ep.channels.clone()),
            secret: None,
            disabled: self.disabled.unwrap_or(ep.disabled),
            throttle_rate: self.throttle_rate.unwrap_or(ep.throttle_rate),
            metadata: self.metadata.unwrap_or_else(|| ep.metadata.clone()),
            headers: ep.headers.clone(),
            options: EndpointOptions {
                basic_auth: self
                    .basic_auth
                    .unwrap_or_else(|| ep.options.basic_auth.clone()),
                client_cert: self
                    .client_cert
                    .unwrap_or_else(|| ep.options.client_cert.clone()),
                timeout_ms: self.timeout_ms.unwrap_or(ep.options.timeout_ms),
                retry_schedule_ms: self
                    .retry_schedule_ms
                    .unwrap_or_else(|| ep.options.retry_schedule_ms.clone()),
                attempts_max: self.attempts_max.unwrap_or(ep.options.attempts_max),
                concurrency_max: self.concurrency_max.unwrap_or(ep.options.concurrency_max),
                ..ep.options.clone()
            },
            verify: false,
        }
    }
}

/// Counts of an endpoint's deliveries in a time window, by their latest status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
    pub canceled: u64,
}

/// Most old keys that may still be in their grace period at once (Svix: 10).
pub const OLD_KEYS_MAX: usize = 10;
/// Longest grace period for a rotated-out key (Svix: 7 days).
pub const GRACE_SECONDS_MAX: u64 = 604_800;
/// Grace period when none is given (Svix: 24 h).
pub const GRACE_SECONDS_DEFAULT: u64 = 86_400;
/// Most attempts the stats of one call look at, so a busy endpoint's stats stay cheap.
pub const STATS_ATTEMPTS_MAX: usize = 100_000;

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
    /// Herald's extensions (auth, client certificate, timeout, retries); only the settable
    /// ones are taken (see `settable_options`).
    pub options: EndpointOptions,
    /// Ask for the verification handshake (at creation only).
    pub verify: bool,
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
        if let Some(secret) = &input.secret
            && let Err(e) = signing::parse_secret(secret)
        {
            p.add("secret", e.to_string());
        }
        if input.throttle_rate == Some(0) {
            p.add("throttleRate", "must be at least 1");
        }
        p.check(validate::metadata(&input.metadata), "metadata");
        p.check(self.headers_fit(input.headers.len()), "headers");
        for (name, value) in &input.headers {
            p.check(validate::header(name, value), "headers");
        }
        validate_options(&input.options, &mut p);
        p.finish()
    }

    /// Whether an endpoint may carry `n` custom headers (`headers_per_endpoint_max`).
    fn headers_fit(&self, n: usize) -> Result<(), String> {
        let max = self.config.headers_per_endpoint_max;
        if n > max {
            return Err(super::cap_message(
                "too many custom headers for one endpoint",
                max,
                "headers_per_endpoint_max",
            ));
        }
        Ok(())
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
        mut input: EndpointInput,
    ) -> Result<Endpoint> {
        self.validate_endpoint(&input)?;
        // Only what an operator may set comes from the input; the rest is Herald's to keep.
        let verify = input.verify;
        input.options = settable_options(&input.options, &EndpointOptions::default());
        if verify {
            input.options.verification = Some(Verification {
                code: ulid::Ulid::new().to_string(),
                verified_at: None,
            });
        }
        let key = match &input.secret {
            Some(s) => signing::parse_secret(s)
                .map_err(|e| ServiceError::invalid("secret", e.to_string()))?,
            None => signing::generate_key(),
        };
        let app = app.to_string();
        let endpoints_max = self.config.endpoints_per_app_max;
        let ep = self
            .write(move |w| {
                let app = find_app(w, caller, &app)?;
                // Counted in the job that inserts, so racing creates cannot pass the cap.
                if w.app_endpoint_count(app.id)? >= endpoints_max as u64 {
                    return Err(ServiceError::cap_reached(
                        "",
                        "this application has as many endpoints as it may",
                        endpoints_max,
                        "endpoints_per_app_max",
                    ));
                }
                check_event_types(w, input.event_types.as_deref())?;
                let now = now_micros();
                let ep = Endpoint {
                    id: EndpointId(w.new_id()),
                    app_id: app.id,
                    uid: input.uid.clone(),
                    url: input.url.clone(),
                    description: input.description.clone(),
                    event_types: input.event_types.clone(),
                    channels: input.channels.clone(),
                    keys: vec![SigningKey {
                        key: key.clone(),
                        expires_at: None,
                    }],
                    disabled: input.disabled,
                    throttle_rate: input.throttle_rate,
                    metadata: input.metadata.clone(),
                    headers: input.headers.clone(),
                    options: input.options.clone(),
                    created_at: now,
                    updated_at: now,
                };
                w.insert_endpoint(&ep)?;
                Ok(ep)
            })
            .await?;
        if ep.options.verification.is_some() {
            self.start_handshake(ep.clone());
        }
        Ok(ep)
    }

    /// Sends the verification handshake, `{"verificationCode": "..."}`, signed like any
    /// delivery, in the background; the endpoint's owner confirms the code through the API or
    /// the dashboard. The outcome is logged, never the code.
    fn start_handshake(&self, ep: Endpoint) {
        let Some(v) = ep.options.verification.clone() else {
            return;
        };
        let outbound = self.outbound.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({ "verificationCode": v.code })
                .to_string()
                .into_bytes();
            let id = format!("{}verify_{}", MessageId::PREFIX, ulid::Ulid::new());
            let sent = outbound
                .send(&ep, &id, body, ContentType::Json.mime())
                .await;
            tracing::info!(endpoint = %ep.id, status = sent.status_code, error = ?sent.error, "verification handshake sent");
        });
    }

    /// Confirms an endpoint's verification code; its waiting deliveries then go out.
    pub async fn verify_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        code: &str,
    ) -> Result<Endpoint> {
        let (app, endpoint, code) = (
            app.to_string(),
            endpoint.to_string(),
            code.trim().to_string(),
        );
        let ep = self
            .write(move |w| {
                let old =
                    find_app(w, caller, &app).and_then(|a| find_endpoint(w, a.id, &endpoint))?;
                let Some(v) = &old.options.verification else {
                    return Err(ServiceError::BadRequest {
                        code: "not_required",
                        detail: "this endpoint needs no verification".into(),
                    });
                };
                if v.verified_at.is_some() {
                    // Verified before: a retry after a failure also releases what is parked.
                    let moved = if old.ready() {
                        w.unpark_endpoint(old.id, PARKED_BATCH)?
                    } else {
                        0
                    };
                    return Ok((old, moved));
                }
                if !constant_time_eq(v.code.as_bytes(), code.as_bytes()) {
                    return Err(ServiceError::invalid(
                        "code",
                        "the verification code is not right",
                    ));
                }
                let mut new = old.clone();
                new.options.verification = Some(Verification {
                    code: v.code.clone(),
                    verified_at: Some(now_micros()),
                });
                new.updated_at = now_micros();
                w.update_endpoint(&old, &new)?;
                // In the same commit, so a crash cannot leave them parked on a ready endpoint
                // (beyond one batch, the repair pass mends what a crash leaves: ops/repair.rs).
                let moved = w.unpark_endpoint(new.id, PARKED_BATCH)?;
                Ok((new, moved))
            })
            .await?;
        let (ep, moved) = ep;
        self.release_parked(ep.id, moved).await?;
        Ok(ep)
    }

    /// Moves the rest of an endpoint's parked deliveries back into the queue, in bounded
    /// batches, after the job that made it ready moved the first `moved`.
    async fn release_parked(&self, endpoint: EndpointId, mut moved: usize) -> Result<()> {
        loop {
            if moved > 0 {
                self.waker.wake();
            }
            if moved < PARKED_BATCH {
                return Ok(());
            }
            moved = self
                .write(move |w| Ok(w.unpark_endpoint(endpoint, PARKED_BATCH)?))
                .await?;
        }
    }

    /// Sends each subscribed event type's example (or just `event_type`'s) to the endpoint
    /// now, directly (not queued, not stored), and reports each answer.
    pub async fn test_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        event_type: Option<&str>,
    ) -> Result<EndpointTest> {
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        let types: Vec<String> = match (event_type, &ep.event_types) {
            (Some(t), _) => vec![t.to_string()],
            (None, Some(list)) => list.clone(),
            (None, None) => {
                let page = self
                    .list_event_types(
                        ListParams {
                            limit: Some(TESTS_MAX),
                            iterator: None,
                        },
                        false,
                    )
                    .await?;
                page.data.into_iter().map(|e| e.name).collect()
            }
        };
        let started_at = now_micros();
        let mut tests = Vec::new();
        for name in types.into_iter().take(TESTS_MAX) {
            let payload = if name == PING_EVENT_TYPE {
                Some(r#"{"success":true}"#.to_string())
            } else {
                match self.get_event_type(&name).await {
                    Ok(et) => example_payload(&et, 0),
                    Err(_) => None,
                }
            };
            let Some(payload) = payload else {
                tests.push(TestResult {
                    event_type: name,
                    status_code: 0,
                    duration_ms: 0,
                    success: false,
                    error: Some("this event type has no example payload".into()),
                });
                continue;
            };
            let id = format!("{}test_{}", MessageId::PREFIX, ulid::Ulid::new());
            let sent = self
                .outbound
                .send(&ep, &id, payload.into_bytes(), ContentType::Json.mime())
                .await;
            tests.push(TestResult {
                event_type: name,
                status_code: sent.status_code,
                duration_ms: sent.duration_ms,
                success: sent.error.is_none(),
                error: sent.error.map(|e| match e {
                    AttemptError::Status => format!("HTTP {}", sent.status_code),
                    _ => sent.response.chars().take(500).collect(),
                }),
            });
        }
        Ok(EndpointTest { started_at, tests })
    }

    pub async fn get_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
    ) -> Result<Endpoint> {
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        self.read(move |r| {
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
            .read(move |r| {
                let app = find_app(r, caller, &app)?;
                Ok(r.endpoints(app.id, &query)?)
            })
            .await?;
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
        let deleted = self
            .write(move |w| {
                let ep =
                    find_app(w, caller, &app).and_then(|a| find_endpoint(w, a.id, &endpoint))?;
                w.delete_endpoint_triggers(ep.app_id, ep.id)?;
                w.delete_endpoint(&ep)?;
                // The first batch in the same commit; a crash before the rest is mended by the
                // repair pass (ops/repair.rs).
                let cancelled = w.cancel_parked(ep.id, PARKED_BATCH)?;
                Ok((ep.id, cancelled == PARKED_BATCH))
            })
            .await?;
        match deleted {
            (endpoint, true) => self.cancel_parked_of(endpoint).await,
            (_, false) => Ok(()),
        }
    }

    /// Cancels the deliveries still parked for a deleted endpoint (they would never be
    /// attempted), in bounded batches. Queued ones are cancelled by the delivery side when it
    /// finds the endpoint gone, or by the repair pass, whichever comes first.
    pub(super) async fn cancel_parked_of(&self, endpoint: EndpointId) -> Result<()> {
        loop {
            let n = self
                .write(move |w| Ok(w.cancel_parked(endpoint, PARKED_BATCH)?))
                .await?;
            if n < PARKED_BATCH {
                return Ok(());
            }
        }
    }
}

impl Service {
    /// Replaces an endpoint's settings (PUT); its secret and headers stay. Creates it (with a
    /// new secret) when the id or uid is unknown, as Svix does.
    pub async fn put_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        input: EndpointInput,
    ) -> Result<(Endpoint, bool)> {
        self.validate_endpoint(&input)?;
        // An unknown uid is created; should another PUT create it first, this one updates it.
        let mut attempts = 2;
        loop {
            let fields = input.clone();
            match self
                .replace_endpoint(caller, app, endpoint, move |_| fields.clone())
                .await
            {
                // Unknown: an id names nothing to create (it may be another application's); a
                // uid names the endpoint to create, so a second PUT updates it.
                Err(ServiceError::NotFound("Endpoint"))
                    if EndpointId::parse(endpoint).is_none() =>
                {
                    let input = EndpointInput {
                        uid: input.uid.clone().or_else(|| Some(endpoint.to_string())),
                        ..input.clone()
                    };
                    attempts -= 1;
                    match self.create_endpoint(caller, app, input).await {
                        Err(ServiceError::Conflict { .. }) if attempts > 0 => continue,
                        created => return Ok((created?, true)),
                    }
                }
                replaced => return Ok((replaced?, false)),
            }
        }
    }

    /// Changes only the given fields (PATCH).
    pub async fn patch_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        patch: EndpointPatch,
    ) -> Result<Endpoint> {
        // Validated over what is read now, off the writer; written over what is current in the
        // write. The fields it does not name are stored ones, so it holds there too.
        let read = self.get_endpoint(caller, app, endpoint).await?;
        self.validate_endpoint(&patch.clone().over(&read))?;
        self.replace_endpoint(caller, app, endpoint, move |current| {
            patch.clone().over(current)
        })
        .await
    }

    /// Finds the endpoint and writes `change(current)` over it in one writer job, keeping id,
    /// keys, headers and creation time: so a delete committed meanwhile is a 404 (nothing is
    /// made again), and what Herald changed meanwhile (disabling it after failures or a 410)
    /// or another edit is not overwritten with what an earlier read saw. Event types are
    /// checked in the same job, so a concurrent archive cannot slip through.
    async fn replace_endpoint(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        change: impl Fn(&Endpoint) -> EndpointInput + Send + 'static,
    ) -> Result<Endpoint> {
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        self.write(move |w| {
            let current =
                find_app(w, caller, &app).and_then(|a| find_endpoint(w, a.id, &endpoint))?;
            let input = change(&current);
            check_event_types(w, input.event_types.as_deref())?;
            let mut new = current.clone();
            new.url = input.url;
            new.description = input.description;
            new.uid = input.uid;
            new.event_types = input.event_types;
            new.channels = input.channels;
            new.disabled = input.disabled;
            new.throttle_rate = input.throttle_rate;
            new.metadata = input.metadata;
            new.options = settable_options(&input.options, &current.options);
            if current.disabled && !new.disabled {
                // Enabled again by hand: forget why Herald disabled it and the failure run.
                new.options.disabled_reason = None;
                new.options.failing_since = None;
            }
            // Headers change only through their own calls (Svix: PUT has no headers).
            new.updated_at = now_micros();
            w.update_endpoint(&current, &new)?;
            // Made ready (enabled, or its verification dropped): its parked deliveries go
            // back in the same commit, a first batch of them (see `verify_endpoint`).
            let moved = if !current.ready() && new.ready() {
                Some(w.unpark_endpoint(new.id, PARKED_BATCH)?)
            } else {
                None
            };
            Ok((moved, new))
        })
        .await?
        .pipe_release(self)
        .await
    }

    /// Makes `key` (or a new random key) the current secret. The old current key keeps signing
    /// for `grace_seconds`, so receivers can switch without losing a webhook. Answers the new
    /// secret.
    pub async fn rotate_secret(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        key: Option<String>,
        grace_seconds: Option<u64>,
    ) -> Result<String> {
        let grace = grace_seconds.unwrap_or(GRACE_SECONDS_DEFAULT);
        if grace > GRACE_SECONDS_MAX {
            return Err(ServiceError::invalid(
                "gracePeriodSeconds",
                format!("must be at most {GRACE_SECONDS_MAX}"),
            ));
        }
        let new_key = match key {
            Some(k) => signing::parse_secret(&k)
                .map_err(|e| ServiceError::invalid("key", e.to_string()))?,
            None => signing::generate_key(),
        };
        let text = signing::format_secret(&new_key);
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        self.write(move |w| {
            let old = find_app(w, caller, &app).and_then(|a| find_endpoint(w, a.id, &endpoint))?;
            let now = now_micros();
            let mut keys: Vec<SigningKey> = vec![SigningKey {
                key: new_key.clone(),
                expires_at: None,
            }];
            for (i, k) in old.keys.iter().enumerate() {
                let expires_at = if i == 0 {
                    Some(now + grace as i64 * 1_000_000)
                } else {
                    k.expires_at
                };
                if expires_at.is_some_and(|t| t > now) {
                    keys.push(SigningKey {
                        key: k.key.clone(),
                        expires_at,
                    });
                }
            }
            if keys.len() - 1 > OLD_KEYS_MAX {
                return Err(ServiceError::BadRequest {
                    code: "limit_reached",
                    detail: format!(
                        "at most {OLD_KEYS_MAX} old secrets may be in their grace period"
                    ),
                });
            }
            let mut new = old.clone();
            new.keys = keys;
            new.updated_at = now;
            w.update_endpoint(&old, &new)?;
            Ok(())
        })
        .await?;
        Ok(text)
    }

    /// The endpoint's custom headers, split into those shown and the names of those withheld.
    pub async fn endpoint_headers(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
    ) -> Result<(BTreeMap<String, String>, Vec<String>)> {
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        let (sensitive, shown): (Vec<_>, Vec<_>) = ep
            .headers
            .into_iter()
            .partition(|(name, _)| validate::is_sensitive_header(name));
        Ok((
            shown.into_iter().collect(),
            sensitive.into_iter().map(|(k, _)| k).collect(),
        ))
    }

    /// Replaces (`replace`) or merges the custom headers; `remove` lists names to drop.
    pub async fn set_endpoint_headers(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        headers: BTreeMap<String, Option<String>>,
        remove: Vec<String>,
        replace: bool,
    ) -> Result<()> {
        let mut p = Problems::default();
        for (name, value) in &headers {
            if let Some(v) = value {
                p.check(validate::header(name, v), "headers");
            }
        }
        p.finish()?;
        let service = self.clone();
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        self.write(move |w| {
            let old = find_app(w, caller, &app).and_then(|a| find_endpoint(w, a.id, &endpoint))?;
            let mut merged = if replace {
                BTreeMap::new()
            } else {
                old.headers.clone()
            };
            for (name, value) in headers.clone() {
                // Header names are case-insensitive: one spelling per name.
                merged.retain(|k, _| !k.eq_ignore_ascii_case(&name));
                if let Some(v) = value {
                    merged.insert(name, v);
                }
            }
            for name in &remove {
                merged.retain(|k, _| !k.eq_ignore_ascii_case(name));
            }
            if let Err(msg) = service.headers_fit(merged.len()) {
                return Err(ServiceError::invalid("headers", msg));
            }
            let mut new = old.clone();
            new.headers = merged;
            new.updated_at = now_micros();
            w.update_endpoint(&old, &new)?;
            Ok(())
        })
        .await
    }

    /// Deliveries to the endpoint whose latest attempt falls in `[since, until]`, counted by
    /// status. Looks at no more than `STATS_ATTEMPTS_MAX` attempts.
    pub async fn endpoint_stats(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> Result<EndpointStats> {
        let now = now_micros();
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until.saturating_sub(28 * 86_400 * 1_000_000));
        if until > now + 60_000_000
            || since > until
            || until.saturating_sub(since) > (28 * 86_400 + 300) * 1_000_000
        {
            return Err(ServiceError::BadRequest {
                code: "invalid_range",
                detail: "the range must end by now and span at most 28 days".into(),
            });
        }
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        let ms = |us: Micros| (us.max(0) / 1000) as u64;
        let (lo, hi) = (
            id_floor_at_millis(ms(since)),
            id_floor_at_millis(ms(until) + 1).saturating_sub(1),
        );
        self.read(move |r| {
            let mut stats = EndpointStats::default();
            // Ids only (no stored responses are read): at most STATS_ATTEMPTS_MAX of them.
            let mut seen = std::collections::HashSet::new();
            let mut count = |_, delivery| {
                if !seen.insert(delivery) {
                    return Ok(true); // counted at its newest attempt
                }
                let status = match r.delivery(delivery)? {
                    Some(d) => MessageStatus::of_delivery(&d),
                    // Gone with its message: its attempts are being removed too.
                    None => return Ok(true),
                };
                match status {
                    MessageStatus::Success => stats.success += 1,
                    MessageStatus::Pending => stats.pending += 1,
                    MessageStatus::Sending => stats.sending += 1,
                    MessageStatus::Fail => stats.fail += 1,
                    MessageStatus::Canceled => stats.canceled += 1,
                }
                Ok(true)
            };
            r.visit_endpoint_attempts(ep.id, (lo, hi), true, STATS_ATTEMPTS_MAX, &mut count)?;
            Ok(stats)
        })
        .await
        .map_err(Into::into)
    }

    /// Sends an example payload of an event type to this one endpoint, as a new message: the
    /// `example_index`-th entry of the newest schema's `examples`, or the event type's own
    /// example. `svix.ping` needs no catalog entry: its payload is `{"success": true}`.
    pub async fn send_example(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        event_type: &str,
        example_index: usize,
    ) -> Result<Message> {
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        let payload = if event_type == PING_EVENT_TYPE {
            r#"{"success":true}"#.to_string()
        } else {
            let et = self.get_event_type(event_type).await?;
            example_payload(&et, example_index).ok_or_else(|| ServiceError::BadRequest {
                code: "invalid_scheme",
                detail: format!(
                    "event type '{event_type}' has no example payload at index {example_index}"
                ),
            })?
        };
        let target = ep.id;
        let event_type = event_type.to_string();
        let app_id = ep.app_id;
        let (msg, _) = self
            .write(move |w| {
                // Deleted since it was read: no message for an endpoint that is gone.
                if w.endpoint(target)?.is_none() {
                    return Err(ServiceError::NotFound("Endpoint"));
                }
                let msg = Message {
                    id: MessageId(0),
                    app_id,
                    event_type: event_type.clone(),
                    event_id: None,
                    channels: None,
                    payload: Some(payload.clone()),
                    created_at: now_micros(),
                    retention_days: crate::service::messages::RETENTION_DAYS_MAX,
                };
                let only_target = move |_: &Message, _: &[Endpoint], _: &[Trigger]| {
                    vec![NewDelivery::plain(target, Priority::High)]
                };
                Ok(w.ingest_message(msg, &only_target)?)
            })
            .await?;
        self.waker.wake();
        Ok(msg)
    }
}

/// An example payload of an event type, as compact JSON text: the `index`-th of the newest
/// schema version's `examples` (JSON Schema's keyword, which Svix uses), else the event type's
/// own example at index 0.
pub fn example_payload(et: &EventType, index: usize) -> Option<String> {
    let from_schema = et.schemas_json.as_deref().and_then(|text| {
        let schemas: serde_json::Value = serde_json::from_str(text).ok()?;
        let versions = schemas.as_object()?;
        // Newest version: the largest numeric key, else the last in key order.
        let newest = versions
            .iter()
            .max_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0))
            .map(|(_, v)| v)?;
        let example = newest.get("examples")?.as_array()?.get(index)?;
        example.is_object().then(|| example.to_string())
    });
    from_schema.or_else(|| {
        if index == 0 {
            et.example_json.clone()
        } else {
            None
        }
    })
}

/// After a replace: release the rest of the endpoint's parked deliveries when it was just
/// made ready (the replace moved the first `Some(n)`).
trait PipeRelease {
    async fn pipe_release(self, service: &Service) -> Result<Endpoint>;
}

impl PipeRelease for (Option<usize>, Endpoint) {
    async fn pipe_release(self, service: &Service) -> Result<Endpoint> {
        if let (Some(moved), ep) = &self {
            service.release_parked(ep.id, *moved).await?;
        }
        Ok(self.1)
    }
}

/// Deliveries moved from parked to queued (or cancelled) per write.
pub(super) const PARKED_BATCH: usize = 5_000;
/// Most event types one endpoint test sends.
pub const TESTS_MAX: usize = 50;
/// Bounds of the per-endpoint options.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=120_000;
pub const RETRY_DELAY_MS_MAX: u64 = 7 * 24 * 3_600_000;
pub const RETRY_SCHEDULE_LEN_MAX: usize = 50;
pub const ATTEMPTS_MAX_RANGE: std::ops::RangeInclusive<u32> = 1..=100;
pub const CONCURRENCY_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000;

/// One event type sent by an endpoint test.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub event_type: String,
    pub status_code: u16,
    pub duration_ms: u64,
    pub success: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct EndpointTest {
    pub started_at: Micros,
    pub tests: Vec<TestResult>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The options an operator sets, taken from `wanted`; what Herald keeps itself (verification
/// state, the built-in trigger switch, why and since when it failed) stays as in `current`.
pub fn settable_options(wanted: &EndpointOptions, current: &EndpointOptions) -> EndpointOptions {
    EndpointOptions {
        basic_auth: wanted.basic_auth.clone(),
        client_cert: wanted.client_cert.clone(),
        timeout_ms: wanted.timeout_ms,
        retry_schedule_ms: wanted.retry_schedule_ms.clone(),
        attempts_max: wanted.attempts_max,
        concurrency_max: wanted.concurrency_max,
        ..current.clone()
    }
}

fn validate_options(o: &EndpointOptions, p: &mut Problems) {
    if let Some(auth) = &o.basic_auth {
        if auth.username.is_empty() || auth.username.contains(':') || auth.username.len() > 256 {
            p.add(
                "basicAuth",
                "the username must be 1 to 256 characters without ':'",
            );
        }
        if auth.password.len() > 1024 {
            p.add("basicAuth", "the password must be at most 1024 characters");
        }
    }
    if let Some(cert) = &o.client_cert {
        let pem = format!("{}\n{}\n", cert.cert_pem.trim(), cert.key_pem.trim());
        if reqwest::Identity::from_pem(pem.as_bytes()).is_err() {
            p.add(
                "clientCertificate",
                "the certificate and private key must be PEM and belong together",
            );
        }
    }
    p.in_range(o.timeout_ms, &TIMEOUT_MS_RANGE, "timeoutMs", " ms");
    if let Some(s) = &o.retry_schedule_ms
        && (s.is_empty()
            || s.len() > RETRY_SCHEDULE_LEN_MAX
            || s.iter().any(|d| *d > RETRY_DELAY_MS_MAX))
    {
        p.add(
            "retrySchedule",
            format!("must list 1 to {RETRY_SCHEDULE_LEN_MAX} delays of at most 7 days"),
        );
    }
    p.in_range(o.attempts_max, &ATTEMPTS_MAX_RANGE, "maxAttempts", "");
    p.in_range(
        o.concurrency_max,
        &CONCURRENCY_RANGE,
        "concurrencyLimit",
        "",
    );
}

/// The event type Svix uses for connectivity checks; always allowed, never in the catalog.
pub const PING_EVENT_TYPE: &str = "svix.ping";

/// Every listed event type must be in the catalog and not archived.
pub(super) fn check_event_types(r: &dyn Read, types: Option<&[String]>) -> Result<()> {
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
    p.finish()
}
