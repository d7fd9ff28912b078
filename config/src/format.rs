//! The two file formats, YAML and JSON, both parsed into one [`serde_json::Value`]
//! tree that the rest of the crate walks.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::error::ConfigError;

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
                let mut yaml: serde_norway::Value = serde_norway::from_str(text).map_err(syntax)?;
                yaml.apply_merge().map_err(syntax)?;
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
    fn duplicate_yaml_keys_are_rejected() {
        assert!(Format::Yaml.parse("a: 1\na: 2\n").is_err());
    }
}
