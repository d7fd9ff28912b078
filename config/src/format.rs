//! The two file formats, YAML and JSON, both parsed into one [`serde_json::Value`]
//! tree that the rest of the crate walks.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::error::{ConfigError, Report};
use crate::path::Path as KeyPath;

/// The syntax of a config document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// YAML 1.2 (anchors and `<<` merge keys are applied).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format of a file by its name: `.json` (any case) is JSON, anything else YAML.
    ///
    /// ```
    /// use openagentio_config::Format;
    /// assert_eq!(Format::from_path("bridges.JSON".as_ref()), Format::Json);
    /// assert_eq!(Format::from_path("bridges.yml".as_ref()), Format::Yaml);
    /// ```
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }

    /// Parses `text` into a JSON value tree.
    pub(crate) fn parse(self, text: &str) -> Result<Value, ConfigError> {
        // Editors on some systems start UTF-8 files with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        match self {
            Format::Json => serde_json::from_str(text)
                .map(|crate::strict_json::StrictValue(v)| v)
                .map_err(|e| ConfigError::Syntax {
                    format: self,
                    message: e.to_string(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                }),
            Format::Yaml => {
                let syntax = |e: serde_norway::Error| {
                    let loc = e.location();
                    ConfigError::Syntax {
                        format: self,
                        message: e.to_string(),
                        line: loc.as_ref().map(|l| l.line()),
                        column: loc.as_ref().map(|l| l.column()),
                    }
                };
                let mut yaml: serde_norway::Value = serde_norway::from_str(text)
                    .map_err(|e| too_long_integer(&e).unwrap_or_else(|| syntax(e)))?;
                yaml.apply_merge().map_err(syntax)?;
                // JSON has no NaN or infinity: converted, they would become
                // `null` and the key would read as absent.
                let mut report = Report::default();
                non_finite_numbers(&yaml, &KeyPath::root(), &mut report);
                if !report.is_empty() {
                    return Err(ConfigError::Invalid {
                        errors: report.into_errors(),
                    });
                }
                serde_json::to_value(&yaml).map_err(|e| ConfigError::Syntax {
                    format: self,
                    message: format!(
                        "unsupported YAML content (mapping keys must be strings, and numbers \
                         whole numbers of at most 64 bits or finite decimals): {e}"
                    ),
                    line: None,
                    column: None,
                })
            }
        }
    }
}

/// The error of a whole number too long for 64 bits, which the YAML parser
/// refuses: the document is well-formed, so it is reported at its path (as a
/// config error) rather than as broken YAML. The parser says
/// ``a.b: invalid type: integer `N` as u128, expected any YAML value``.
fn too_long_integer(e: &serde_norway::Error) -> Option<ConfigError> {
    let text = e.to_string();
    let (path, rest) = text.split_once(": invalid type: integer `")?;
    let (number, rest) = rest.split_once('`')?;
    if !(rest.starts_with(" as u128") || rest.starts_with(" as i128")) {
        return None;
    }
    let mut errors = crate::error::FieldErrors::default();
    errors.0.push(crate::error::FieldError {
        path: if path.contains(' ') {
            String::new()
        } else {
            path.to_owned()
        },
        message: format!("{number} is not a supported number (whole numbers have at most 64 bits)"),
    });
    Some(ConfigError::Invalid { errors })
}

/// Reports every `.nan` and `.inf` in `value`, at its path.
fn non_finite_numbers(value: &serde_norway::Value, path: &KeyPath, report: &mut Report) {
    use serde_norway::Value as Y;
    match value {
        Y::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => report.error(
            path,
            format!("{n} is not a supported number (only finite ones are)"),
        ),
        Y::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                non_finite_numbers(item, &path.index(i), report);
            }
        }
        Y::Mapping(map) => {
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                non_finite_numbers(v, &path.key(&key), report);
            }
        }
        Y::Tagged(tagged) => non_finite_numbers(&tagged.value, path, report),
        _ => {}
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_give_the_same_tree() {
        let y = Format::Yaml
            .parse("a: 1\nb: [x, 'y']\nc: {d: 1.5}\n")
            .unwrap();
        let j = Format::Json
            .parse(r#"{"a":1,"b":["x","y"],"c":{"d":1.5}}"#)
            .unwrap();
        assert_eq!(y, j);
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let y = Format::Yaml
            .parse("base: &b {timeout: 5}\nother:\n  <<: *b\n  command: x\n")
            .unwrap();
        assert_eq!(y["other"]["timeout"], 5);
        assert!(y["other"].get("<<").is_none());
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = Format::Yaml.parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(
            matches!(e, ConfigError::Syntax { line: Some(_), .. }),
            "{e}"
        );
        let e = Format::Json.parse("{\"a\": }").unwrap_err();
        assert!(
            matches!(e, ConfigError::Syntax { line: Some(1), .. }),
            "{e}"
        );
    }

    #[test]
    fn non_finite_yaml_numbers_are_errors_at_their_paths() {
        let e = Format::Yaml
            .parse("shutdown: {drain_timeout: .inf}\nbridges: [{name: -.inf, n: .nan}]\nok: 1.5\n")
            .unwrap_err();
        let lines = e
            .field_errors()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        assert_eq!(
            lines,
            [
                "shutdown.drain_timeout: .inf is not a supported number (only finite ones are)",
                "bridges[0].name: -.inf is not a supported number (only finite ones are)",
                "bridges[0].n: .nan is not a supported number (only finite ones are)",
            ]
        );
    }

    #[test]
    fn integers_beyond_64_bits_are_errors_at_their_paths() {
        let e = Format::Yaml
            .parse("bus: {default_timeout: 99999999999999999999}\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config (1 error):\nbus.default_timeout: 99999999999999999999 is not a \
             supported number (whole numbers have at most 64 bits)"
        );
        let e = Format::Yaml
            .parse("x: [-99999999999999999999]\n")
            .unwrap_err();
        assert_eq!(e.field_errors()[0].path, "x[0]");
    }

    #[test]
    fn duplicate_yaml_keys_are_rejected() {
        assert!(Format::Yaml.parse("a: 1\na: 2\n").is_err());
    }
}
