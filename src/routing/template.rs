//! Trigger expressions and templates, evaluated with minijinja in a sandbox.
//!
//! The merge fields of a message are `payload` (the JSON payload), `eventType`, `msgId`,
//! `timestamp` (RFC 3339) and `app` (`{id, uid, name}`). Conditions are expressions
//! (`payload.status in ["FULFILLED", "FAILED_PERMANENTLY"]`), templates render a body whose
//! values are escaped for its content type (JSON-encoded in JSON templates, XML-escaped in XML
//! ones), and unique keys render a short string.
//!
//! Owns: evaluation and its limits. Must never: do I/O (minijinja has no loader here and runs
//! on a fuel budget, so a template cannot read files or loop forever).

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Value};
use serde::Serialize;

use crate::model::ContentType;

/// Instructions one evaluation may spend before it is stopped: bounds loops in templates that
/// tenants' operators write.
pub const FUEL: u64 = 100_000;
/// Longest rendered unique key kept.
pub const UNIQUE_KEY_LEN_MAX: usize = 256;
/// Longest template or condition source accepted.
pub const SOURCE_LEN_MAX: usize = 64 * 1024;

/// What a template sees of the application.
#[derive(Clone, Debug, Serialize)]
pub struct AppFields {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
}

/// The merge fields of one message.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeFields<'a> {
    pub payload: &'a serde_json::Value,
    pub event_type: &'a str,
    pub msg_id: String,
    pub timestamp: String,
    pub app: AppFields,
}

/// The merge fields of a stored message whose parsed payload is `payload`.
pub fn merge_fields<'a>(
    payload: &'a serde_json::Value,
    msg: &'a crate::model::Message,
    app: &crate::model::App,
) -> MergeFields<'a> {
    MergeFields {
        payload,
        event_type: &msg.event_type,
        msg_id: msg.id.to_string(),
        timestamp: chrono::DateTime::from_timestamp_micros(msg.created_at)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        app: AppFields {
            id: app.id.to_string(),
            uid: app.uid.clone(),
            name: app.name.clone(),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template error: {0}")]
    Render(String),
    #[error("the JSON template did not render valid JSON: {0}")]
    InvalidJson(String),
    #[error("the template is too long (at most {SOURCE_LEN_MAX} bytes)")]
    TooLong,
}

fn environment<'s>(escape: AutoEscape) -> Environment<'s> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(move |_| escape.clone());
    env
}

fn render_error(e: minijinja::Error) -> TemplateError {
    // The display of a minijinja error names the kind, the line and what was wrong.
    let mut text = e.to_string();
    if let Some(detail) = e.detail()
        && !text.contains(detail)
    {
        text.push_str(": ");
        text.push_str(detail);
    }
    TemplateError::Render(text)
}

/// Evaluates a condition: true when the expression's value is truthy.
pub fn condition(source: &str, fields: &MergeFields<'_>) -> Result<bool, TemplateError> {
    if source.len() > SOURCE_LEN_MAX {
        return Err(TemplateError::TooLong);
    }
    let env = environment(AutoEscape::None);
    let expr = env.compile_expression(source).map_err(render_error)?;
    let value = expr
        .eval(Value::from(Serde(fields)))
        .map_err(render_error)?;
    Ok(value.is_true())
}

/// Renders a body template for its content type. JSON output must parse.
pub fn body(
    source: &str,
    content_type: ContentType,
    fields: &MergeFields<'_>,
) -> Result<String, TemplateError> {
    if source.len() > SOURCE_LEN_MAX {
        return Err(TemplateError::TooLong);
    }
    let escape = match content_type {
        ContentType::Json => AutoEscape::Json,
        ContentType::Xml => AutoEscape::Html, // escapes & < > " ' : valid in XML text and attributes
        ContentType::Text => AutoEscape::None,
    };
    let env = environment(escape);
    let out = env
        .render_str(source, Value::from(Serde(fields)))
        .map_err(render_error)?;
    if content_type == ContentType::Json {
        serde_json::from_str::<serde::de::IgnoredAny>(&out)
            .map_err(|e| TemplateError::InvalidJson(e.to_string()))?;
    }
    Ok(out)
}

/// Renders a unique key (no escaping, surrounding whitespace trimmed, length capped).
pub fn unique_key(source: &str, fields: &MergeFields<'_>) -> Result<String, TemplateError> {
    if source.len() > SOURCE_LEN_MAX {
        return Err(TemplateError::TooLong);
    }
    let env = environment(AutoEscape::None);
    let out = env
        .render_str(source, Value::from(Serde(fields)))
        .map_err(render_error)?;
    let key = out.trim();
    Ok(key.chars().take(UNIQUE_KEY_LEN_MAX).collect())
}

/// Checks that an expression parses (for saving a trigger).
pub fn check_condition(source: &str) -> Result<(), TemplateError> {
    if source.len() > SOURCE_LEN_MAX {
        return Err(TemplateError::TooLong);
    }
    environment(AutoEscape::None)
        .compile_expression(source)
        .map(|_| ())
        .map_err(render_error)
}

/// Checks that a template parses (for saving a trigger).
pub fn check_template(source: &str) -> Result<(), TemplateError> {
    if source.len() > SOURCE_LEN_MAX {
        return Err(TemplateError::TooLong);
    }
    let env = environment(AutoEscape::None);
    env.template_from_str(source)
        .map(|_| ())
        .map_err(render_error)
}

/// The merge fields a template may use for an event type, as dotted paths, from its example
/// payload and its JSON Schema (`[]` marks an array's items).
pub fn merge_field_names(
    example: Option<&serde_json::Value>,
    schema: Option<&serde_json::Value>,
) -> Vec<String> {
    let mut out = vec![
        "eventType".to_string(),
        "msgId".into(),
        "timestamp".into(),
        "app.id".into(),
        "app.uid".into(),
        "app.name".into(),
    ];
    let mut fields = std::collections::BTreeSet::new();
    if let Some(example) = example {
        flatten_value("payload", example, &mut fields, 0);
    }
    if let Some(schema) = schema {
        flatten_schema("payload", schema, &mut fields, 0);
    }
    out.extend(fields);
    out
}

/// Deepest nesting listed; deeper fields are still usable, just not listed.
const FIELD_DEPTH_MAX: usize = 8;

fn flatten_value(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut std::collections::BTreeSet<String>,
    depth: usize,
) {
    if depth > FIELD_DEPTH_MAX {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                flatten_value(&path, child, out, depth + 1);
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(first) = items.first() {
                flatten_value(&format!("{prefix}[]"), first, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn flatten_schema(
    prefix: &str,
    schema: &serde_json::Value,
    out: &mut std::collections::BTreeSet<String>,
    depth: usize,
) {
    if depth > FIELD_DEPTH_MAX {
        return;
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (k, child) in props {
            let path = format!("{prefix}.{k}");
            out.insert(path.clone());
            flatten_schema(&path, child, out, depth + 1);
        }
    }
    if let Some(items) = schema.get("items") {
        flatten_schema(&format!("{prefix}[]"), items, out, depth + 1);
    }
}

/// Whether an event type name matches a trigger's pattern: exact, `prefix.*`, or `*`.
pub fn event_type_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => {
            name.len() > prefix.len() + 1
                && name.starts_with(prefix)
                && name.as_bytes()[prefix.len()] == b'.'
        }
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(payload: &serde_json::Value) -> MergeFields<'_> {
        MergeFields {
            payload,
            event_type: "order.updated",
            msg_id: "msg_1".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            app: AppFields {
                id: "app_1".into(),
                uid: Some("shop".into()),
                name: "Shop & Co".into(),
            },
        }
    }

    #[test]
    fn conditions_see_the_payload() {
        let p = json!({"status": "FULFILLED", "total": 12});
        let f = fields(&p);
        assert!(
            condition(
                r#"payload.status in ["FULFILLED", "FAILED_PERMANENTLY"]"#,
                &f
            )
            .unwrap()
        );
        assert!(!condition(r#"payload.status == "NEW""#, &f).unwrap());
        assert!(
            condition(
                "payload.total > 10 and eventType is startingwith('order.')",
                &f
            )
            .unwrap()
        );
        assert!(
            !condition("payload.missing", &f).unwrap(),
            "an absent field is falsy, not an error"
        );
        assert!(condition("payload.status ==", &f).is_err());
    }

    #[test]
    fn json_templates_encode_values_and_must_be_valid() {
        let p = json!({"id": "o-1", "note": "say \"hi\"", "lines": [1, 2]});
        let f = fields(&p);
        let out = body(r#"{"order": {{ payload.id }}, "note": {{ payload.note }}, "n": {{ payload.lines|length }}, "app": {{ app.name }}}"#, ContentType::Json, &f).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"order": "o-1", "note": "say \"hi\"", "n": 2, "app": "Shop & Co"})
        );
        assert!(matches!(
            body(r#"{"order": {{ payload.id }""#, ContentType::Json, &f),
            Err(TemplateError::Render(_)) | Err(TemplateError::InvalidJson(_))
        ));
        assert!(matches!(
            body(r#"{"order": }"#, ContentType::Json, &f),
            Err(TemplateError::InvalidJson(_))
        ));
    }

    #[test]
    fn xml_templates_escape_markup() {
        let p = json!({"id": "<o&1>"});
        let out = body(
            "<order id=\"{{ payload.id }}\">{{ app.name }}</order>",
            ContentType::Xml,
            &fields(&p),
        )
        .unwrap();
        assert_eq!(out, "<order id=\"&lt;o&amp;1&gt;\">Shop &amp; Co</order>");
    }

    #[test]
    fn unique_keys_render_trimmed() {
        let p = json!({"orderId": 42});
        assert_eq!(
            unique_key(" order-{{ payload.orderId }} ", &fields(&p)).unwrap(),
            "order-42"
        );
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let p = json!({});
        let r = body(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            ContentType::Text,
            &fields(&p),
        );
        assert!(r.is_err());
    }

    #[test]
    fn event_type_patterns() {
        assert!(event_type_matches("order.*", "order.created"));
        assert!(event_type_matches("order.*", "order.line.added"));
        assert!(!event_type_matches("order.*", "order"));
        assert!(!event_type_matches("order.*", "orders.created"));
        assert!(event_type_matches("*", "anything"));
        assert!(event_type_matches("order.created", "order.created"));
        assert!(!event_type_matches("order.created", "order.created2"));
    }

    #[test]
    fn merge_fields_come_from_example_and_schema() {
        let example = json!({"orderId": "o", "lines": [{"sku": "a"}]});
        let schema = json!({"type": "object", "properties": {"status": {"type": "string"}, "customer": {"properties": {"email": {}}}}});
        let names = merge_field_names(Some(&example), Some(&schema));
        for n in [
            "eventType",
            "app.uid",
            "payload.orderId",
            "payload.lines",
            "payload.lines[].sku",
            "payload.status",
            "payload.customer.email",
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
    }
}
