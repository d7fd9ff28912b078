//! `${VAR}` substitution in string values.
//!
//! It runs after parsing, on string *values* only (never on keys), so whatever a
//! variable holds can never change the shape of the document. Forms:
//!
//! | written              | becomes                                                  |
//! |----------------------|----------------------------------------------------------|
//! | `${NAME}`            | the variable's value; an error when it is not set        |
//! | `${NAME:-default}`   | the value, or `default` when the variable is unset or empty |
//! | `${NAME-default}`    | the value, or `default` when the variable is unset       |
//! | `$${...}`            | a literal `${...}` (the escape)                          |
//!
//! `NAME` is letters, digits and `_`, not starting with a digit. A default runs to
//! the first `}` (defaults do not nest: one holding `${` is an error). A `$` not followed by `{` is kept as is.
//! Every string that fails is reported with its path and the variable's name,
//! never a value; mappings are walked in key order.
//!
//! A string that substitution leaves empty (`${OTLP:-}` with `OTLP` unset) is
//! noted in the report: an optional key holding one counts as absent, so the
//! environment can leave any optional key unset. A literal `""` is not noted.

use serde_json::Value;

use crate::error::Report;
use crate::path::Path;

/// Looks up one environment variable; `None` when it is not set.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces placeholders in every string value under `value`, reporting failures.
pub(crate) fn substitute_tree(
    value: &mut Value,
    path: &Path,
    env: EnvLookup<'_>,
    report: &mut Report,
) {
    match value {
        Value::String(s) => match expand(s, env) {
            Ok(Some(new)) => {
                if new.is_empty() {
                    report.mark_emptied(path);
                }
                *s = new;
            }
            Ok(None) => {}
            Err(message) => report.error_and_suppress(path, message),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_tree(item, &path.index(i), env, report);
            }
        }
        Value::Object(map) => {
            // Sorted, so the order of errors does not depend on serde_json's map features.
            let mut entries: Vec<(&String, &mut Value)> = map.iter_mut().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                substitute_tree(item, &path.key(key), env, report);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Expands the placeholders of one string: `Ok(None)` when it has none.
fn expand(text: &str, env: EnvLookup<'_>) -> Result<Option<String>, String> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(
                    "unterminated `${` (no closing `}`); write `$${` for a literal `${`".into(),
                );
            };
            let inner = &after[..end];
            let ph = Placeholder::parse(inner)?;
            if ph.default.is_some_and(|d| d.text.contains("${")) {
                // `${A:-${B:-x}}` would end at the first `}` and leave a
                // stray one: refused rather than read as something else.
                return Err(format!(
                    "the default of `${{{}}}` holds another `${{`: defaults do not nest",
                    ph.name
                ));
            }
            match (env(ph.name), ph.default) {
                (Some(v), Some(d)) if v.is_empty() && d.also_when_empty => out.push_str(d.text),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d.text),
                (None, None) => missing.push(ph.name),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    match missing.as_slice() {
        [] => Ok(Some(out)),
        [one] => Err(format!(
            "environment variable `{one}` is not set (write `${{{one}:-default}}` to give a default)"
        )),
        many => Err(format!(
            "environment variables {} are not set",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The inside of one `${...}`.
struct Placeholder<'a> {
    name: &'a str,
    default: Option<DefaultText<'a>>,
}

/// The default of a placeholder.
#[derive(Clone, Copy)]
struct DefaultText<'a> {
    text: &'a str,
    /// `:-` (also replaces an empty value) rather than `-` (only an unset one).
    also_when_empty: bool,
}

impl<'a> Placeholder<'a> {
    /// Reads `NAME`, `NAME:-default` or `NAME-default`.
    fn parse(inner: &'a str) -> Result<Self, String> {
        let name_len = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let name = &inner[..name_len];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            return Err(
                "invalid placeholder: expected `${NAME}`, `${NAME:-default}` or `${NAME-default}` \
                 with NAME made of letters, digits and `_`"
                    .into(),
            );
        }
        let tail = &inner[name_len..];
        let default = if tail.is_empty() {
            None
        } else if let Some(text) = tail.strip_prefix(":-") {
            Some(DefaultText {
                text,
                also_when_empty: true,
            })
        } else if let Some(text) = tail.strip_prefix('-') {
            Some(DefaultText {
                text,
                also_when_empty: false,
            })
        } else {
            return Err(format!(
                "invalid placeholder for `{name}`: expected `${{{name}}}`, `${{{name}:-default}}` or `${{{name}-default}}`"
            ));
        };
        Ok(Placeholder { name, default })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn x(s: &str) -> Result<Option<String>, String> {
        expand(s, &env)
    }

    #[test]
    fn forms() {
        assert_eq!(x("plain"), Ok(None));
        assert_eq!(
            x("https://${HOST}/v1").unwrap().unwrap(),
            "https://example.org/v1"
        );
        assert_eq!(x("${NOPE:-8080}").unwrap().unwrap(), "8080");
        assert_eq!(x("${EMPTY:-d}").unwrap().unwrap(), "d");
        assert_eq!(x("${EMPTY-d}").unwrap().unwrap(), "");
        assert_eq!(x("${NOPE-d}").unwrap().unwrap(), "d");
        assert_eq!(x("${NOPE:-}").unwrap().unwrap(), "");
        assert_eq!(
            x("$${HOST} and ${HOST}").unwrap().unwrap(),
            "${HOST} and example.org"
        );
        assert_eq!(x("cost: $5 $HOST").unwrap().unwrap(), "cost: $5 $HOST");
        assert_eq!(x("${NOPE:-a:b-c}").unwrap().unwrap(), "a:b-c");
    }

    #[test]
    fn failures_name_the_variable() {
        let e = x("${MISSING}").unwrap_err();
        assert!(e.contains("`MISSING` is not set"), "{e}");
        let e = x("${A}${B}").unwrap_err();
        assert!(e.contains("`A`, `B`"), "{e}");
        assert!(x("${HOST").unwrap_err().contains("unterminated"));
        assert!(x("${}").unwrap_err().contains("invalid placeholder"));
        assert!(x("${1X}").unwrap_err().contains("invalid placeholder"));
        assert!(
            x("${HOST:default}")
                .unwrap_err()
                .contains("invalid placeholder for `HOST`")
        );
        let e = x("${A:-${B:-x}}").unwrap_err();
        assert!(e.contains("defaults do not nest"), "{e}");
    }
}
