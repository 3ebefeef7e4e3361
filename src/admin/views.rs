//! How values look on the dashboard: times (relative, with the exact UTC time beside),
//! statuses as coloured labels, durations, counts, and JSON pretty-printed in its own key
//! order. Pure functions, unit-tested; templates only place what these produce.

use std::fmt;

use crate::model::*;

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A point in time as shown: "3 min ago", with the exact UTC time for the `title` and the
/// machine form for `<time datetime>`.
#[derive(Clone, Debug)]
pub struct Time {
    pub rel: String,
    pub exact: String,
    pub iso: String,
}

/// `<time>` with the relative time shown and the exact UTC time on hover.
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#"<time datetime="{}" title="{}">{}</time>"#,
            esc(&self.iso),
            esc(&self.exact),
            esc(&self.rel)
        )
    }
}

impl askama::filters::HtmlSafe for Time {}

pub fn time(us: Micros, now: Micros) -> Time {
    let t = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
    Time {
        rel: relative(us, now),
        exact: t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        iso: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

pub fn time_ms(ms: Millis, now: Micros) -> Time {
    time(ms as i64 * 1000, now)
}

/// "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago", or "in 5 min" for the future.
pub fn relative(us: Micros, now: Micros) -> String {
    let delta_s = (now - us) / 1_000_000;
    let (future, s) = if delta_s < 0 {
        (true, -delta_s)
    } else {
        (false, delta_s)
    };
    let amount = match s {
        0..=4 => {
            return if future {
                "in a moment".into()
            } else {
                "just now".into()
            };
        }
        5..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=172_799 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A status label: the CSS class carries the colour, the text says it too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Badge {
    /// One of `ok`, `warn`, `bad`, `muted`, `info`.
    pub class: &'static str,
    pub label: String,
}

impl Badge {
    pub fn new(class: &'static str, label: impl Into<String>) -> Badge {
        Badge {
            class,
            label: label.into(),
        }
    }
}

/// `<span class="badge ok">Succeeded</span>`: colour and words together.
impl fmt::Display for Badge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#"<span class="badge {}">{}</span>"#,
            self.class,
            esc(&self.label)
        )
    }
}

impl askama::filters::HtmlSafe for Badge {}

/// A value shown in monospace with a copy button beside it (the button appears when
/// JavaScript runs; the value stays selectable without it).
#[derive(Clone, Debug)]
pub struct Copyable {
    pub text: String,
    /// Where the value links to, if anywhere.
    pub href: Option<String>,
}

impl Copyable {
    pub fn new(text: impl Into<String>) -> Copyable {
        Copyable {
            text: text.into(),
            href: None,
        }
    }

    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Copyable {
        Copyable {
            text: text.into(),
            href: Some(href.into()),
        }
    }
}

impl fmt::Display for Copyable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = esc(&self.text);
        match &self.href {
            Some(href) => write!(f, r#"<a class="mono" href="{}">{text}</a>"#, esc(href))?,
            None => write!(f, r#"<span class="mono">{text}</span>"#)?,
        }
        write!(
            f,
            r#"<button type="button" class="copy" data-copy="{text}" title="Copy to clipboard" aria-label="Copy {text}">copy</button>"#
        )
    }
}

impl askama::filters::HtmlSafe for Copyable {}

/// Markup built here from escaped pieces (e.g. a trigger's sentence); safe to place as is.
#[derive(Clone, Debug, Default)]
pub struct Markup(pub String);

impl fmt::Display for Markup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for Markup {}

/// The state of a delivery, in the dashboard's one colour language.
pub fn delivery_badge(d: &Delivery) -> Badge {
    match d.state {
        DeliveryState::Succeeded => Badge::new("ok", "Succeeded"),
        DeliveryState::Failed => Badge::new("bad", "Failed"),
        DeliveryState::Cancelled => Badge::new("muted", "Cancelled"),
        DeliveryState::Superseded => Badge::new("muted", "Superseded"),
        DeliveryState::Pending if d.attempts == 0 => Badge::new("warn", "Pending"),
        DeliveryState::Pending => Badge::new("warn", "Retrying"),
    }
}

/// An attempt on its own: succeeded, or why it failed.
pub fn attempt_badge(a: &Attempt) -> Badge {
    match a.error {
        None => Badge::new("ok", "Succeeded"),
        Some(AttemptError::Status) => Badge::new("bad", format!("HTTP {}", a.status_code)),
        Some(e) => Badge::new("bad", error_label(e)),
    }
}

pub fn error_label(e: AttemptError) -> &'static str {
    match e {
        AttemptError::Status => "HTTP error",
        AttemptError::Timeout => "Timeout",
        AttemptError::Connect => "Connection failed",
        AttemptError::Tls => "TLS error",
        AttemptError::Dns => "DNS error",
        AttemptError::BlockedAddress => "Blocked address",
        AttemptError::BlockedScheme => "Blocked scheme",
        AttemptError::Request => "Request error",
        AttemptError::Template => "Template error",
        #[allow(unreachable_patterns)]
        _ => "Error",
    }
}

/// The status code column: the code, or an em dash when no response came.
pub fn status_code(a: &Attempt) -> String {
    if a.status_code == 0 {
        "—".into()
    } else {
        a.status_code.to_string()
    }
}

/// An endpoint's state: enabled, disabled (by whom and why), waiting for verification.
pub fn endpoint_badge(ep: &Endpoint) -> Badge {
    if ep.disabled {
        return match &ep.options.disabled_reason {
            Some(why) => Badge::new("bad", format!("Disabled by Herald: {why}")),
            None => Badge::new("muted", "Disabled"),
        };
    }
    if ep
        .options
        .verification
        .as_ref()
        .is_some_and(|v| v.verified_at.is_none())
    {
        return Badge::new("warn", "Unverified");
    }
    Badge::new("ok", "Enabled")
}

/// A duration in milliseconds: "12 ms", "1.25 s", "2 min 5 s".
pub fn duration_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1_000.0)
    } else {
        let s = (ms / 1_000.0) as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// A whole number of milliseconds, as attempts record them: "<1 ms", "12 ms", "1.25 s".
pub fn duration_whole_ms(ms: u64) -> String {
    match ms {
        0 => "<1 ms".into(),
        1..=999 => format!("{ms} ms"),
        _ => duration_ms(ms as f64),
    }
}

/// Two durations with one unit when they share it: "0.7 / 16 ms".
pub fn duration_pair(a: f64, b: f64) -> String {
    let (x, y) = (duration_ms(a), duration_ms(b));
    match (x.strip_suffix(" ms"), y.strip_suffix(" ms")) {
        (Some(x), Some(y)) => format!("{x} / {y} ms"),
        _ => format!("{x} / {y}"),
    }
}

/// A count with thousands separated: "1 234 567" (thin spaces, unambiguous in any locale).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// A share as a percentage with one decimal: "99.2 %".
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 99.9 && p < 100.0 {
        // Never round a failure away.
        return "99.9 %".into();
    }
    format!("{p:.1} %")
}

/// Pretty-prints JSON text with two-space indentation, keeping its key order and the exact
/// spelling of every value. Text that is not JSON comes back as it was.
pub fn pretty_json(text: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Keep empty containers on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    out.push(chars.next().expect("peeked"));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A value for a `datetime-local` input (UTC, minutes).
pub fn datetime_local(us: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// Reads a `datetime-local` value (taken as UTC) or an RFC 3339 time, within the years 0000 to
/// 9999 (`model::parse_time`, as the API).
pub fn parse_datetime(s: &str) -> Option<Micros> {
    crate::model::parse_time(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn snippets_escape_what_they_show() {
        assert_eq!(
            esc(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;"
        );
        let b = Badge::new("bad", "Disabled by Herald: <410>");
        assert_eq!(
            b.to_string(),
            r#"<span class="badge bad">Disabled by Herald: &lt;410&gt;</span>"#
        );
        let c = Copyable::link("msg_<1>", "/m?a=1&b=2").to_string();
        assert!(c.contains(r#"href="/m?a=1&amp;b=2""#) && c.contains("msg_&lt;1&gt;"));
        assert!(!c.contains("<1>"));
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = 1_000_000 * S;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - 42 * S, now), "42 s ago");
        assert_eq!(relative(now - 180 * S, now), "3 min ago");
        assert_eq!(relative(now - 5 * 3600 * S, now), "5 h ago");
        assert_eq!(relative(now - 3 * 86_400 * S, now), "3 d ago");
        assert_eq!(relative(now + 300 * S, now), "in 5 min");
        let t = time(0, now);
        assert_eq!(t.exact, "1970-01-01 00:00:00.000 UTC");
        assert_eq!(t.iso, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn pretty_json_keeps_key_order_and_values() {
        let text = r#"{"z":1,"a":{"b":[1,2.50,"x, y: {z}"],"e":{}},"n":null,"q":"\"}"}"#;
        let pretty = pretty_json(text);
        assert_eq!(
            pretty,
            "{\n  \"z\": 1,\n  \"a\": {\n    \"b\": [\n      1,\n      2.50,\n      \"x, y: {z}\"\n    ],\n    \"e\": {}\n  },\n  \"n\": null,\n  \"q\": \"\\\"}\"\n}"
        );
        let back: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        let orig: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
        assert_eq!(pretty_json("not json {"), "not json {");
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234), "1\u{2009}234");
        assert_eq!(count(1234567), "1\u{2009}234\u{2009}567");
        assert_eq!(duration_ms(3.25), "3.2 ms");
        assert_eq!(duration_ms(120.0), "120 ms");
        assert_eq!(duration_ms(1250.0), "1.25 s");
        assert_eq!(duration_whole_ms(0), "<1 ms");
        assert_eq!(duration_whole_ms(15), "15 ms");
        assert_eq!(duration_pair(0.7, 16.0), "0.7 / 16 ms");
        assert_eq!(duration_pair(20.0, 1500.0), "20 ms / 1.50 s");
        assert_eq!(percent(0.9995), "99.9 %");
        assert_eq!(percent(1.0), "100.0 %");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ab", 3), "ab");
    }

    #[test]
    fn datetimes_round_trip_through_the_form_field() {
        let us = 1_700_000_040 * S;
        assert_eq!(parse_datetime(&datetime_local(us)), Some(us));
        assert_eq!(
            parse_datetime("2023-11-14T22:14:00Z"),
            Some(1_700_000_040 * S)
        );
        assert_eq!(parse_datetime("yesterday"), None);
    }
}
