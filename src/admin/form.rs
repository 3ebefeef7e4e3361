//! HTML form bodies (`application/x-www-form-urlencoded`) with repeated names, as checkboxes
//! send them, and the errors shown next to the field that caused them.

use std::collections::HashMap;

use crate::service::{FieldError, ServiceError};

/// A decoded form: every (name, value) pair in order.
#[derive(Clone, Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> FormData {
        FormData(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `name`, as sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, trimmed; empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_string()
    }

    /// The trimmed value, or `None` when absent or empty.
    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.text(name)).filter(|s| !s.is_empty())
    }

    /// Every value of `name` (checkboxes), non-empty ones only.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// A checkbox: present and not "off"/"false".
    pub fn checked(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| !matches!(v, "" | "off" | "false" | "0"))
    }
}

/// Field name -> message, for the template to place beside each field. Field names are the
/// service's (the API's camelCase ones), so the same rule speaks through both front doors.
#[derive(Clone, Debug, Default)]
pub struct Errors {
    fields: HashMap<String, String>,
    /// Problems that belong to no field shown on the form.
    pub general: Vec<String>,
}

impl Errors {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_empty()
    }

    /// The message for `field`, or an empty string (templates test with `is_empty`).
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        let msg = msg.into();
        self.fields
            .entry(field.to_string())
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&msg);
            })
            .or_insert(msg);
    }

    /// Sorts each problem to the field shown under `known` names, or to the general list.
    pub fn from_fields(fields: Vec<FieldError>, known: &[&str]) -> Errors {
        let mut e = Errors::default();
        for f in fields {
            if known.contains(&f.field.as_str()) {
                e.add(&f.field, f.msg);
            } else {
                e.general.push(format!("{}: {}", f.field, f.msg));
            }
        }
        e
    }

    /// The field errors of a service answer, or `None` for every other error (which is not
    /// the user's input, and is shown as an error page instead).
    pub fn from_service(err: &ServiceError, known: &[&str]) -> Option<Errors> {
        match err {
            ServiceError::Invalid(fields) => Some(Errors::from_fields(fields.clone(), known)),
            ServiceError::Conflict { detail, .. } => {
                let mut e = Errors::default();
                // Conflicts are about the unique name of the thing.
                let field = ["uid", "name", "username"]
                    .into_iter()
                    .find(|f| known.contains(f) && detail.contains(f));
                match field {
                    Some(f) => e.add(f, detail.clone()),
                    None => e.general.push(detail.clone()),
                }
                Some(e)
            }
            ServiceError::BadRequest { detail, .. } => {
                let mut e = Errors::default();
                e.general.push(detail.clone());
                Some(e)
            }
            _ => None,
        }
    }
}

/// Lines of `Name: value` (headers) or `key=value` (metadata) into pairs; a line that does not
/// split is reported by its number.
pub fn pairs(text: &str, sep: char) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once(sep) {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((k.trim().to_string(), v.trim().to_string()))
            }
            _ => return Err(format!("line {}: expected name{sep}value", i + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_and_checkboxes() {
        let f = FormData::parse(b"t=a.b&t=c.d&t=&name=+Shop+&on=on&off=off&x=%E2%9C%93");
        assert_eq!(f.all("t"), ["a.b", "c.d"]);
        assert_eq!(f.text("name"), "Shop");
        assert!(f.checked("on"));
        assert!(!f.checked("off"));
        assert!(!f.checked("missing"));
        assert_eq!(f.get("x"), Some("✓"));
        assert_eq!(f.opt("missing"), None);
    }

    #[test]
    fn service_errors_go_next_to_their_field() {
        let err = ServiceError::Invalid(vec![
            FieldError {
                field: "url".into(),
                msg: "bad".into(),
            },
            FieldError {
                field: "url".into(),
                msg: "worse".into(),
            },
            FieldError {
                field: "metadata".into(),
                msg: "too big".into(),
            },
        ]);
        let e = Errors::from_service(&err, &["url"]).unwrap();
        assert_eq!(e.get("url"), "bad; worse");
        assert_eq!(e.get("uid"), "");
        assert_eq!(e.general, ["metadata: too big"]);
        assert!(Errors::from_service(&ServiceError::Unavailable, &[]).is_none());
    }

    #[test]
    fn header_lines_split_once() {
        assert_eq!(
            pairs("X-A: 1\n\n X-B : a:b ", ':').unwrap(),
            [("X-A".into(), "1".into()), ("X-B".into(), "a:b".into())]
        );
        assert!(pairs("nonsense", ':').unwrap_err().contains("line 1"));
    }
}
