//! Triggers: an application's routing rules beyond the plain subscription.
//!
//! Every endpoint has a built-in trigger, its `eventTypes` subscription; it is listed with the
//! others under the id `builtin_<endpoint id>` and can be switched off or have its event types
//! changed, nothing else. Extra triggers add conditions, templates, priority and unique keys.

use super::validate::{self, Problems};
use super::{Result, Service, ServiceError, find_app, find_endpoint};
use crate::model::*;
use crate::routing::template;
use crate::storage::Read;

/// Prefix of a built-in trigger's id; the rest is its endpoint's id.
pub const BUILTIN_PREFIX: &str = "builtin_";
/// Longest wait before a first attempt (a unique key's window).
pub const DELAY_MS_MAX: u64 = 24 * 3_600_000;

#[derive(Clone, Debug, Default)]
pub struct TriggerInput {
    /// The endpoint it calls, by id or uid.
    pub endpoint: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub condition: Option<String>,
    pub template: Option<String>,
    pub content_type: ContentType,
    pub priority: Option<Priority>,
    pub unique_key: Option<String>,
    pub delay_ms: u64,
    pub enabled: bool,
}

/// A trigger as listed: an extra one, or an endpoint's built-in subscription.
#[derive(Clone, Debug)]
pub enum TriggerView {
    Builtin(Endpoint),
    Custom(Trigger),
}

impl TriggerView {
    pub fn id(&self) -> String {
        match self {
            TriggerView::Builtin(ep) => format!("{BUILTIN_PREFIX}{}", ep.id),
            TriggerView::Custom(t) => t.id.to_string(),
        }
    }
}

/// What a trigger would do with an event type's example payload.
#[derive(Clone, Debug)]
pub struct Preview {
    pub condition: std::result::Result<bool, String>,
    pub body: std::result::Result<String, String>,
    pub content_type: ContentType,
    pub unique_key: Option<std::result::Result<String, String>>,
}

pub use crate::routing::template::merge_fields;

impl TriggerInput {
    fn validate(&self, r: &dyn Read) -> Result<()> {
        let mut p = Problems::default();
        p.check(validate::text(&self.description, false), "description");
        if self.event_types.is_empty() {
            p.add("eventTypes", "must list at least one event type or pattern");
        }
        for pattern in &self.event_types {
            let name = pattern.strip_suffix(".*").unwrap_or(pattern);
            if pattern == "*" {
                continue;
            }
            if let Err(e) = validate::event_type_name(name) {
                p.add("eventTypes", format!("'{pattern}': {e}"));
            } else if !pattern.ends_with(".*")
                && r.event_type(pattern)?.is_none_or(|et| et.archived)
            {
                p.add(
                    "eventTypes",
                    format!("event type '{pattern}' does not exist"),
                );
            }
        }
        if let Some(c) = &self.condition
            && let Err(e) = template::check_condition(c)
        {
            p.add("condition", e.to_string());
        }
        if let Some(t) = &self.template
            && let Err(e) = template::check_template(t)
        {
            p.add("template", e.to_string());
        }
        if let Some(k) = &self.unique_key
            && let Err(e) = template::check_template(k)
        {
            p.add("uniqueKey", e.to_string());
        }
        if self.delay_ms > DELAY_MS_MAX {
            p.add("delayMs", format!("must be at most {DELAY_MS_MAX}"));
        }
        p.finish()
    }
}

impl Service {
    /// Every trigger of an application: the built-in ones (one per endpoint) first.
    pub async fn list_triggers(&self, caller: Caller, app: &str) -> Result<Vec<TriggerView>> {
        let app = app.to_string();
        self.read(move |r| {
            let app = find_app(r, caller, &app)?;
            let mut out: Vec<TriggerView> = r
                .app_endpoints(app.id)?
                .into_iter()
                .map(TriggerView::Builtin)
                .collect();
            out.extend(r.app_triggers(app.id)?.into_iter().map(TriggerView::Custom));
            Ok(out)
        })
        .await
    }

    pub async fn get_trigger(&self, caller: Caller, app: &str, id: &str) -> Result<TriggerView> {
        let (app, id) = (app.to_string(), id.to_string());
        self.read(move |r| {
            let app = find_app(r, caller, &app)?;
            Ok(find_trigger(r, &app, &id))
        })
        .await?
    }

    pub async fn create_trigger(
        &self,
        caller: Caller,
        app: &str,
        input: TriggerInput,
    ) -> Result<Trigger> {
        let found = self.get_app(caller, app).await?;
        self.check_against_examples(&found, &input).await?;
        let app = app.to_string();
        let triggers_max = self.config.triggers_per_app_max;
        self.write(move |w| {
            let found = find_app(w, caller, &app)
                .and_then(|a| Ok((find_endpoint(w, a.id, &input.endpoint)?, a)));
            let (ep, app) = found?;
            input.validate(w)?;
            // Counted in the job that inserts, so racing creates cannot pass the cap.
            if w.app_triggers(app.id)?.len() >= triggers_max {
                return Err(ServiceError::cap_reached(
                    "",
                    "this application has as many triggers as it may",
                    triggers_max,
                    "triggers_per_app_max",
                ));
            }
            let now = now_micros();
            let trigger = Trigger {
                id: TriggerId(w.new_id()),
                app_id: app.id,
                endpoint_id: ep.id,
                description: input.description.clone(),
                event_types: input.event_types.clone(),
                condition: input.condition.clone(),
                template: input.template.clone(),
                content_type: input.content_type,
                priority: input.priority.unwrap_or(Priority::Normal),
                unique_key: input.unique_key.clone(),
                delay_ms: input.delay_ms,
                enabled: input.enabled,
                created_at: now,
                updated_at: now,
            };
            w.put_trigger(&trigger)?;
            Ok(trigger)
        })
        .await
    }

    /// Replaces a trigger's settings. For a built-in trigger only `event_types` (exact names,
    /// or `*` for all) and `enabled` apply: they are the endpoint's subscription.
    pub async fn update_trigger(
        &self,
        caller: Caller,
        app: &str,
        id: &str,
        input: TriggerInput,
    ) -> Result<TriggerView> {
        let found = self.get_app(caller, app).await?;
        self.check_against_examples(&found, &input).await?;
        let (app, id) = (app.to_string(), id.to_string());
        self.write(move |w| {
                let app = find_app(w, caller, &app)?;
                let current = find_trigger(w, &app, &id)?;
                match current {
                    TriggerView::Builtin(ep) => {
                        if input.condition.is_some() || input.template.is_some() || input.unique_key.is_some() || input.delay_ms > 0 {
                            return Err(ServiceError::invalid(
                                "eventTypes",
                                "a built-in trigger has only event types and enabled; add a trigger for the rest",
                            ));
                        }
                        let types = if input.event_types.iter().any(|t| t == "*") { None } else { Some(input.event_types.clone()) };
                        if let Some(list) = &types {
                            if list.iter().any(|t| t.ends_with(".*")) {
                                return Err(ServiceError::invalid("eventTypes", "a subscription lists exact event types, or * for all"));
                            }
                            super::endpoints::check_event_types(w, Some(list))?;
                        }
                        let mut new = ep.clone();
                        new.event_types = types;
                        new.options.subscription_disabled = !input.enabled;
                        new.updated_at = now_micros();
                        w.update_endpoint(&ep, &new)?;
                        Ok(TriggerView::Builtin(new))
                    }
                    TriggerView::Custom(old) => {
                        let ep = find_endpoint(w, app.id, &input.endpoint)?;
                        input.validate(w)?;
                        let new = Trigger {
                            endpoint_id: ep.id,
                            description: input.description.clone(),
                            event_types: input.event_types.clone(),
                            condition: input.condition.clone(),
                            template: input.template.clone(),
                            content_type: input.content_type,
                            priority: input.priority.unwrap_or(old.priority),
                            unique_key: input.unique_key.clone(),
                            delay_ms: input.delay_ms,
                            enabled: input.enabled,
                            updated_at: now_micros(),
                            ..old
                        };
                        w.put_trigger(&new)?;
                        Ok(TriggerView::Custom(new))
                    }
                }
            })
            .await
    }

    pub async fn delete_trigger(&self, caller: Caller, app: &str, id: &str) -> Result<()> {
        let (app, id) = (app.to_string(), id.to_string());
        self.write(move |w| {
            let app = find_app(w, caller, &app)?;
            match find_trigger(w, &app, &id) {
                Ok(TriggerView::Custom(t)) => {
                    w.delete_trigger(app.id, t.id)?;
                    Ok(())
                }
                Ok(TriggerView::Builtin(_)) => Err(ServiceError::BadRequest {
                    code: "builtin_trigger",
                    detail:
                        "a built-in trigger cannot be deleted; disable it, or delete its endpoint"
                            .into(),
                }),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Renders a trigger's condition, body and unique key against an event type's example
    /// payload (or a given one), as the delivery side would.
    pub async fn preview_trigger(
        &self,
        caller: Caller,
        app: &str,
        event_type: &str,
        payload_json: Option<String>,
        input: &TriggerInput,
    ) -> Result<Preview> {
        let app = self.get_app(caller, app).await?;
        let payload_text = match payload_json {
            Some(p) => p,
            None => {
                let et = self.get_event_type(event_type).await?;
                super::endpoints::example_payload(&et, 0).unwrap_or_else(|| "{}".into())
            }
        };
        let payload: serde_json::Value = serde_json::from_str(&payload_text)
            .map_err(|e| ServiceError::invalid("payload", format!("not JSON: {e}")))?;
        let msg = Message {
            id: MessageId(ulid::Ulid::new().0),
            app_id: app.id,
            event_type: event_type.to_string(),
            event_id: None,
            channels: None,
            payload: Some(payload_text.clone()),
            created_at: now_micros(),
            retention_days: 1,
        };
        let input = input.clone();
        self.render_off_workers(move |limits| {
            let fields = merge_fields(&payload, &msg, &app);
            let condition = match &input.condition {
                Some(c) => template::condition(c, &fields, limits, limits.deadline()),
                None => Ok(true),
            };
            let body = match &input.template {
                Some(t) => {
                    template::body(t, input.content_type, &fields, limits, limits.deadline())
                }
                None => Ok(crate::service::validate::compact_json(&payload_text)),
            };
            let unique_key = input
                .unique_key
                .as_ref()
                .map(|k| template::unique_key(k, &fields, limits, limits.deadline()));
            // A template's own errors are what a preview is for; a bound that stopped it is a
            // refusal, as saving the trigger would be.
            let mut p = Problems::default();
            for (field, e) in [
                ("condition", condition.as_ref().err()),
                ("template", body.as_ref().err()),
                (
                    "uniqueKey",
                    unique_key.as_ref().and_then(|k| k.as_ref().err()),
                ),
            ] {
                if let Some(e) = e.filter(|e| e.is_bound()) {
                    p.add(field, e.to_string());
                }
            }
            p.finish()?;
            let content_type = if input.template.is_some() {
                input.content_type
            } else {
                ContentType::Json
            };
            Ok(Preview {
                condition: condition.map_err(|e| e.to_string()),
                body: body.map_err(|e| e.to_string()),
                content_type,
                unique_key: unique_key.map(|k| k.map_err(|e| e.to_string())),
            })
        })
        .await?
    }

    /// Runs a tenant's template work on the render threads (`template::pool`), never on the
    /// API's async workers; at most `template_previews_max` wait or run at once (each is
    /// bounded by the template limits).
    async fn render_off_workers<T: Send + 'static>(
        &self,
        work: impl FnOnce(&template::Limits) -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .renders
            .acquire()
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        let limits = self.config.template_limits();
        template::pool::run(move || work(&limits))
            .await
            .ok_or_else(|| ServiceError::Internal("template evaluation failed".into()))
    }

    /// Refuses a trigger whose condition, template or unique key breaks a bound on the example
    /// of an event type it matches (422 naming the field and the bound): a trigger that would
    /// fail every delivery is better refused when it is saved. Errors that are the template's
    /// own (a field the example lacks) are not refused: real messages may have it.
    async fn check_against_examples(&self, app: &App, input: &TriggerInput) -> Result<()> {
        /// Event types a pattern is tried against, so a save stays quick.
        const EXAMPLES_MAX: usize = 8;
        let patterns = input.event_types.clone();
        let examples: Vec<(String, String)> = self
            .read(move |r| {
                let mut out = Vec::new();
                for pattern in &patterns {
                    let names: Vec<String> = if pattern == "*" || pattern.ends_with(".*") {
                        r.event_types(None, None, EXAMPLES_MAX * 4, false)?
                            .items
                            .into_iter()
                            .map(|et| et.name)
                            .filter(|n| template::event_type_matches(pattern, n))
                            .take(EXAMPLES_MAX)
                            .collect()
                    } else {
                        vec![pattern.clone()]
                    };
                    for name in names {
                        if let Some(et) = r.event_type(&name)?
                            && let Some(example) = super::endpoints::example_payload(&et, 0)
                        {
                            out.push((name, example));
                        }
                    }
                }
                out.truncate(EXAMPLES_MAX);
                Ok(out)
            })
            .await?;
        if examples.is_empty()
            || (input.condition.is_none() && input.template.is_none() && input.unique_key.is_none())
        {
            return Ok(());
        }
        let (app, input) = (app.clone(), input.clone());
        self.render_off_workers(move |limits| {
            let mut p = Problems::default();
            for (name, example) in &examples {
                let payload: serde_json::Value =
                    serde_json::from_str(example).unwrap_or(serde_json::Value::Null);
                let msg = Message {
                    payload: Some(example.clone()),
                    ..Message::plain(MessageId(ulid::Ulid::new().0), app.id, name.as_str())
                };
                let fields = merge_fields(&payload, &msg, &app);
                let bound = |r: std::result::Result<(), template::TemplateError>| match r {
                    Err(e) if e.is_bound() => Some(format!("on the example of '{name}': {e}")),
                    _ => None,
                };
                if let Some(c) = &input.condition
                    && let Some(e) = bound(
                        template::condition(c, &fields, limits, limits.deadline()).map(|_| ()),
                    )
                {
                    p.add("condition", e);
                }
                if let Some(t) = &input.template
                    && let Some(e) = bound(
                        template::body(t, input.content_type, &fields, limits, limits.deadline())
                            .map(|_| ()),
                    )
                {
                    p.add("template", e);
                }
                if let Some(k) = &input.unique_key
                    && let Some(e) = bound(
                        template::unique_key(k, &fields, limits, limits.deadline()).map(|_| ()),
                    )
                {
                    p.add("uniqueKey", e);
                }
                if !p.0.is_empty() {
                    break;
                }
            }
            p.finish()
        })
        .await?
    }

    /// The merge fields a template may use for an event type.
    pub async fn event_type_merge_fields(&self, event_type: &str) -> Result<Vec<String>> {
        let et = self.get_event_type(event_type).await?;
        let example: Option<serde_json::Value> =
            super::endpoints::example_payload(&et, 0).and_then(|e| serde_json::from_str(&e).ok());
        let schema: Option<serde_json::Value> = et
            .schemas_json
            .as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| {
                let versions = v.as_object()?.clone();
                versions
                    .into_iter()
                    .max_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0))
                    .map(|(_, s)| s)
            });
        Ok(template::merge_field_names(
            example.as_ref(),
            schema.as_ref(),
        ))
    }
}

/// Finds a trigger of `app` by id; `builtin_<endpoint>` names an endpoint's subscription.
fn find_trigger(r: &dyn Read, app: &App, id: &str) -> Result<TriggerView> {
    if let Some(ep) = id.strip_prefix(BUILTIN_PREFIX) {
        return find_endpoint(r, app.id, ep)
            .map(TriggerView::Builtin)
            .map_err(|_| ServiceError::NotFound("Trigger"));
    }
    let tid = TriggerId::parse(id).ok_or(ServiceError::NotFound("Trigger"))?;
    r.trigger(app.id, tid)?
        .map(TriggerView::Custom)
        .ok_or(ServiceError::NotFound("Trigger"))
}
