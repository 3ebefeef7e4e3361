//! Trigger expressions and templates, evaluated with minijinja in a sandbox.
//!
//! The merge fields of a message are `payload` (the JSON payload), `eventType`, `msgId`,
//! `timestamp` (RFC 3339) and `app` (`{id, uid, name}`). Conditions are expressions
//! (`payload.status in ["FULFILLED", "FAILED_PERMANENTLY"]`), templates render a body whose
//! values are escaped for its content type (JSON-encoded in JSON templates, XML-escaped in XML
//! ones), and unique keys render a short string.
//!
//! Whatever a tenant writes here is bounded where it runs (DESIGN.md section 11): the source is
//! rewritten so that every operator that can allocate is a checked call (`rewrite.rs`), and
//! every evaluation runs under a budget of time, of size per value, of memory in all and of
//! output (`bounded.rs`, [`Limits`]). A bound that stops an evaluation is a
//! [`TemplateError::Bound`], told apart from the template's own mistakes.
//!
//! Owns: evaluation and its limits. Must never: do I/O (minijinja has no loader here), or run
//! a tenant's source that has not been through `rewrite`.

mod bounded;
pub mod pool;
mod rewrite;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Value};
use serde::Serialize;

use crate::model::ContentType;

pub use bounded::FUEL;

/// Longest rendered unique key kept.
pub const UNIQUE_KEY_LEN_MAX: usize = 256;
/// Longest template or condition source accepted.
pub const SOURCE_LEN_MAX: usize = 64 * 1024;

/// The bounds of one evaluation (settings `template_*`, see `config.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest string, list or map one evaluation may build.
    pub value_max_bytes: usize,
    /// Largest output one render may write.
    pub output_max_bytes: usize,
    /// All that one evaluation may build together.
    pub memory_max_bytes: usize,
    /// Wall-clock time one evaluation may take.
    pub render_ms: u64,
}

impl Limits {
    /// When an evaluation that starts now must stop.
    pub fn deadline(&self) -> Instant {
        Instant::now() + std::time::Duration::from_millis(self.render_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            value_max_bytes: 1024 * 1024,
            output_max_bytes: 1024 * 1024,
            memory_max_bytes: 8 * 1024 * 1024,
            render_ms: 100,
        }
    }
}

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
    /// A construct Herald cannot bound, refused when the trigger is saved.
    #[error("{0}")]
    Unsupported(String),
    /// A bound stopped the evaluation: the tenant's template, not a transient failure.
    #[error("the template was stopped: {0}")]
    Bound(String),
}

impl TemplateError {
    /// Whether a bound stopped it (rather than the template's own error).
    pub fn is_bound(&self) -> bool {
        matches!(self, TemplateError::Bound(_))
    }
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

#[derive(Clone, Copy)]
enum Kind {
    Template,
    Expression,
}

/// Rewritten sources by what was written: routing evaluates the same few conditions for every
/// message. Bounded; emptied when full.
fn rewritten(kind: Kind, source: &str) -> Result<Arc<str>, TemplateError> {
    type Cache = std::collections::HashMap<Box<str>, Result<Arc<str>, TemplateError>>;
    // One map per kind, looked up by the borrowed source: a hit (every message's conditions,
    // in the writer) copies nothing.
    static CACHES: [Mutex<Option<Cache>>; 2] = [Mutex::new(None), Mutex::new(None)];
    const ENTRIES_MAX: usize = 1024;
    if source.len() > SOURCE_LEN_MAX {
        return Err(TemplateError::TooLong);
    }
    let cache = &CACHES[kind as usize];
    if let Some(hit) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|c| c.get(source))
    {
        return hit.clone();
    }
    let made = match kind {
        Kind::Template => rewrite::template(source),
        Kind::Expression => rewrite::expression(source),
    }
    .map(Arc::from);
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    let entries = guard.get_or_insert_with(Default::default);
    if entries.len() >= ENTRIES_MAX {
        entries.clear();
    }
    entries.insert(source.into(), made.clone());
    made
}

/// An evaluation's error: the bound that stopped it, if one did, else the template's own.
fn failed(scope: &bounded::Scope, e: minijinja::Error) -> TemplateError {
    match scope.tripped() {
        Some(reason) => TemplateError::Bound(reason),
        // Fuel is a bound too: the count of steps, as the others bound what each step does.
        None if e.kind() == minijinja::ErrorKind::OutOfFuel => {
            TemplateError::Bound(format!("it ran more than its {FUEL} steps"))
        }
        None => render_error(e),
    }
}

/// Renders a rewritten template under a budget, into at most `max` bytes.
fn render(
    source: &str,
    escape: AutoEscape,
    fields: &MergeFields<'_>,
    limits: &Limits,
    deadline: Instant,
    max: usize,
) -> Result<String, TemplateError> {
    let rewritten = rewritten(Kind::Template, source)?;
    let scope = bounded::Scope::enter(limits, deadline);
    let env = bounded::environment(escape);
    let tmpl = env.template_from_str(&rewritten).map_err(render_error)?;
    let mut out = bounded::CappedWriter::new(max);
    if let Err(e) = tmpl.render_captured_to(Value::from(Serde(fields)), &mut out) {
        if e.kind() == minijinja::ErrorKind::WriteFailure {
            scope.trip(format!("its output passed its bound ({max} bytes)"));
        }
        return Err(failed(&scope, e));
    }
    String::from_utf8(out.buf).map_err(|e| TemplateError::Render(e.to_string()))
}

/// Evaluates a condition: true when the expression's value is truthy.
pub fn condition(
    source: &str,
    fields: &MergeFields<'_>,
    limits: &Limits,
    deadline: Instant,
) -> Result<bool, TemplateError> {
    let rewritten = rewritten(Kind::Expression, source)?;
    let scope = bounded::Scope::enter(limits, deadline);
    let env = bounded::environment(AutoEscape::None);
    let expr = env.compile_expression(&rewritten).map_err(render_error)?;
    let value = expr
        .eval(Value::from(Serde(fields)))
        .map_err(|e| failed(&scope, e))?;
    Ok(value.is_true())
}

/// Renders a body template for its content type. JSON output must parse.
pub fn body(
    source: &str,
    content_type: ContentType,
    fields: &MergeFields<'_>,
    limits: &Limits,
    deadline: Instant,
) -> Result<String, TemplateError> {
    let escape = match content_type {
        ContentType::Json => AutoEscape::Json,
        ContentType::Xml => AutoEscape::Html, // escapes & < > " ' : valid in XML text and attributes
        ContentType::Text => AutoEscape::None,
    };
    let out = render(
        source,
        escape,
        fields,
        limits,
        deadline,
        limits.output_max_bytes,
    )?;
    if content_type == ContentType::Json {
        serde_json::from_str::<serde::de::IgnoredAny>(&out)
            .map_err(|e| TemplateError::InvalidJson(e.to_string()))?;
    }
    Ok(out)
}

/// Renders a unique key (no escaping, surrounding whitespace trimmed, length capped).
pub fn unique_key(
    source: &str,
    fields: &MergeFields<'_>,
    limits: &Limits,
    deadline: Instant,
) -> Result<String, TemplateError> {
    // A key is short: its render may not write much more than the longest key kept.
    let max = limits.output_max_bytes.min(64 * UNIQUE_KEY_LEN_MAX);
    let out = render(source, AutoEscape::None, fields, limits, deadline, max)?;
    let key = out.trim();
    Ok(key.chars().take(UNIQUE_KEY_LEN_MAX).collect())
}

/// Checks that an expression parses and uses only what Herald can bound (for saving a trigger).
pub fn check_condition(source: &str) -> Result<(), TemplateError> {
    let rewritten = rewritten(Kind::Expression, source)?;
    bounded::environment(AutoEscape::None)
        .compile_expression(&rewritten)
        .map(|_| ())
        .map_err(render_error)
}

/// Checks that a template parses and uses only what Herald can bound (for saving a trigger).
pub fn check_template(source: &str) -> Result<(), TemplateError> {
    let rewritten = rewritten(Kind::Template, source)?;
    bounded::environment(AutoEscape::None)
        .template_from_str(&rewritten)
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

    // The evaluations under the default bounds, as most tests want them.
    fn condition(source: &str, f: &MergeFields<'_>) -> Result<bool, TemplateError> {
        let l = Limits::default();
        super::condition(source, f, &l, l.deadline())
    }
    fn body(source: &str, ct: ContentType, f: &MergeFields<'_>) -> Result<String, TemplateError> {
        let l = Limits::default();
        super::body(source, ct, f, &l, l.deadline())
    }
    fn unique_key(source: &str, f: &MergeFields<'_>) -> Result<String, TemplateError> {
        let l = Limits::default();
        super::unique_key(source, f, &l, l.deadline())
    }

    /// Templates and conditions over many constructs: each renders the same through Herald's
    /// rewriting and bounded environment as through plain minijinja with its builtins.
    #[test]
    fn rewriting_keeps_the_meaning() {
        let p = json!({"id": "o-1", "n": 3, "f": 1.5, "items": [{"sku": "a", "q": 2}, {"sku": "b", "q": 0}],
                       "tags": ["x", "y", "x"], "s": "Hello, World", "nested": {"k": [1, 2, 3]}, "t": true});
        let f = fields(&p);
        let templates = [
            "{{ payload.id ~ '-' ~ payload.n }}",
            "{{ payload.n + 2 }} {{ payload.f * 2 }} {{ payload.n * 'ab' }} {{ 'x' + 'y' }}",
            "{{ [1, 2] + [3] }} {{ (1, 2) * 2 }} {{ payload.tags * 2 }}",
            "{{ payload.s[1:5] }}|{{ payload.s[::-1] }}|{{ payload.s[:3] }}|{{ payload.tags[1] }}|{{ payload['id'] }}",
            "{{ 1 < payload.n <= 3 }} {{ payload.n == 3 and payload.id != 'x' }} {{ 'x' in payload.tags }} {{ 'z' not in payload.tags }}",
            "{% for i in payload.items if i.q > 0 %}{{ loop.index }}:{{ i.sku|upper }}{% else %}none{% endfor %}",
            "{% for k, v in payload.nested|items %}{{ k }}={{ v|join(',') }}{% endfor %}",
            "{% set total = payload.items|map(attribute='q')|sum %}{{ total }} {{ -payload.n }} {{ not payload.t }}",
            "{% set ns = namespace(acc='') %}{% for t in payload.tags %}{% set ns.acc = ns.acc ~ t %}{% endfor %}{{ ns.acc }}",
            "{% if payload.n > 5 %}big{% elif payload.n > 2 %}mid{% else %}small{% endif %}",
            "{% with a = payload.n, b = 2 %}{{ a ** b }} {{ a // b }} {{ a % b }} {{ a / b }} {{ a - b }}{% endwith %}",
            "{{ payload.s|replace('l', 'L')|lower|title }} {{ payload.s|length }} {{ payload.tags|unique|list }}",
            "{{ payload.tags|sort|reverse|join('+') }} {{ payload.items|selectattr('q')|list|length }}",
            "{{ payload|tojson }} {{ payload.nested|tojson(indent=2) }} {{ '%05d-%s'|format(payload.n, payload.id) }}",
            "{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ dict(a=1)|items|list }} {{ [3, 1, 2]|batch(2)|list }}",
            "{{ payload.missing|default('none') }} {{ payload.missing is defined }} {{ payload.n is odd }} {{ payload.id is startingwith('o') }}",
            "{{ 'yes' if payload.t else 'no' }} {{ 'a' if false }} {{ 1.0 }} {{ 1e3 }} {{ 10000000000000000000000 }}",
            "text {{ \"q\\\"uote\\n\" }} {% raw %}{{ not evaluated }} {% if %}{% endraw %} tail\n",
            "{%- if true -%}  trimmed  {%- endif %} {# comment #} {{ payload.s|indent(2) }}",
            "{{ payload.items[0].sku }} {{ payload.nested.k|first }} {{ payload.nested.k|last }} {{ payload.nested.k|max }}",
            "{% autoescape false %}{{ '<a>' }}{% endautoescape %} {{ '<b>'|safe }} {{ payload.tags|length > 2 }}",
            "{{ payload.s|split(', ')|list }} {{ 'a b  c'|split|list }} {{ payload.items|groupby('sku')|length }}",
        ];
        let mut plain = minijinja::Environment::new();
        plain.set_fuel(Some(FUEL));
        for (n, t) in templates.iter().enumerate() {
            for (ct, escape) in [
                (ContentType::Text, AutoEscape::None),
                (ContentType::Xml, AutoEscape::Html),
            ] {
                plain.set_auto_escape_callback(move |_| escape.clone());
                let want = plain
                    .render_str(t, Value::from(Serde(&f)))
                    .unwrap_or_else(|e| panic!("template {n}: {e}"));
                let got = body(t, ct, &f).unwrap_or_else(|e| panic!("template {n}: {e}"));
                assert_eq!(got, want, "template {n}: {t}");
            }
        }
        let conditions = [
            "payload.n > 2 and payload.id is startingwith('o')",
            "payload.tags|length == 3",
            "'x' in payload.tags and payload.s[0] == 'H'",
            "payload.items|selectattr('q', 'gt', 1)|list|length == 1",
            "(payload.n * 2 + 1) ~ '' == '7'",
            "payload.missing",
            "not payload.t or payload.f >= 1.5",
        ];
        plain.set_auto_escape_callback(|_| AutoEscape::None);
        for c in conditions {
            let want = plain
                .compile_expression(c)
                .unwrap()
                .eval(Value::from(Serde(&f)))
                .unwrap()
                .is_true();
            assert_eq!(condition(c, &f).unwrap(), want, "condition {c}");
        }
    }

    /// Templates, conditions and keys that would allocate, iterate or write without end: each
    /// is stopped by a bound, quickly, with its reason.
    #[test]
    fn bombs_are_stopped_by_a_bound() {
        let big = "x".repeat(200_000);
        let p = json!({"s": big, "n": 1_000_000_000_000u64, "list": (0..1000).collect::<Vec<_>>()});
        let f = fields(&p);
        let limits = Limits {
            value_max_bytes: 1 << 20,
            output_max_bytes: 1 << 20,
            memory_max_bytes: 8 << 20,
            render_ms: 100,
        };
        let templates = [
            r#"{{ "a"|indent(1000000000000) }}"#,
            r#"{{ "a" * 100000000 }}"#,
            r#"{{ payload.s * 1000 }}"#,
            r#"{{ [0] * 100000000 }}"#,
            r#"{{ ([0] * 100000000)|sum }}"#,
            r#"{{ (0,) * 100000000 }}"#,
            r#"{% set s = payload.s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s|length }}"#,
            r#"{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"#,
            r#"{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"#,
            r#"{% for i in range(100000) %}{{ payload.s }}{% endfor %}"#,
            r#"{{ payload.s|replace("x", payload.s) }}"#,
            r#"{{ range(100000)|join(payload.s) }}"#,
            r#"{{ "%1000000000000d"|format(1) }}"#,
            r#"{{ "%*d"|format(100000000, 1) }}"#,
            r#"{{ payload|tojson(indent=1000000000) }}"#,
            r#"{{ payload.list|batch(1000000000000, 0)|list }}"#,
            r#"{{ payload.list|slice(1000000000000)|list }}"#,
            r#"{% for i in range(100000) %}{% for j in range(100000) %}{{ payload.s == payload.s }}{% endfor %}{% endfor %}"#,
            r#"{% for i in range(100000) %}{% if payload.s[::-1] %}{% endif %}{% endfor %}"#,
            r#"{% for i in range(100000) %}{% if payload.s in payload.s ~ "y" %}{% endif %}{% endfor %}"#,
            r#"{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [payload.s] %}{% endfor %}"#,
            r#"{{ (payload.s ~ " ")|split|list * 100000 }}"#,
            r#"{% for i in range(100000) %}{{ payload.s|upper|length }}{% endfor %}"#,
            r#"{{ payload.s|center(1000000000000) }}"#,
        ];
        for t in templates {
            let started = Instant::now();
            let r = super::body(t, ContentType::Text, &f, &limits, limits.deadline());
            let took = started.elapsed();
            assert!(r.is_err(), "{t} rendered");
            assert!(
                took < std::time::Duration::from_millis(1_000),
                "{t} took {took:?}"
            );
        }
        for t in &templates[..17] {
            let r = super::body(t, ContentType::Text, &f, &limits, limits.deadline());
            assert!(matches!(r, Err(TemplateError::Bound(_))), "{t}: {r:?}");
        }
        let conditions = [
            "([0]*100000000)|sum > 0",
            "('a' * 100000000)|length > 0",
            "payload.s|indent(1000000000000)",
            "range(100000)|map('string')|join(payload.s)|length > 0",
            "(payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s ~ payload.s)|length > 0",
        ];
        for c in conditions {
            let started = Instant::now();
            let r = super::condition(c, &f, &limits, limits.deadline());
            assert!(matches!(r, Err(TemplateError::Bound(_))), "{c}: {r:?}");
            assert!(
                started.elapsed() < std::time::Duration::from_millis(1_000),
                "{c}"
            );
        }
        let r = super::unique_key(
            "{{ payload.s ~ payload.s }}",
            &f,
            &limits,
            limits.deadline(),
        );
        assert!(matches!(r, Err(TemplateError::Bound(_))), "{r:?}");
    }

    #[test]
    fn constructs_that_cannot_be_bounded_are_refused_when_saved() {
        for t in [
            "{% set x %}{{ payload }}{% endset %}",
            "{% filter upper %}x{% endfilter %}",
            "{% for x in payload.tree recursive %}{{ loop(x.children) }}{% endfor %}",
        ] {
            assert!(
                matches!(check_template(t), Err(TemplateError::Unsupported(_))),
                "{t}"
            );
        }
        assert!(check_template("{{ payload.a ~ payload.b }}").is_ok());
        assert!(check_condition("payload.a * 2 > 3").is_ok());
    }

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
