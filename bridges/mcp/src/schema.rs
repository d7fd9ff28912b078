//! Checking tool arguments against the tool's `inputSchema` before any call.
//!
//! As the reference bridge does, missing `required` properties are reported
//! first, all together; then the arguments are validated with the full JSON
//! Schema (`jsonschema`). A violation names the failing field by its JSON
//! Pointer (instance path). A schema that cannot be compiled (for example one
//! that refers to a remote document) is logged once and not enforced: the
//! server still validates on its side.

use serde_json::{Map, Value};

/// The validator of one tool's arguments.
pub struct ArgumentValidator {
    required: Vec<String>,
    compiled: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for ArgumentValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentValidator")
            .field("required", &self.required)
            .field("compiled", &self.compiled.is_some())
            .finish()
    }
}

/// Why arguments were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    /// The payload is neither a JSON object nor null.
    #[error("tool arguments must be a JSON object")]
    NotAnObject,
    /// Required properties are missing.
    #[error("missing required argument(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    /// The arguments violate the schema at `path` (a JSON Pointer; empty for the whole object).
    #[error("argument validation failed at {}: {message}", if .path.is_empty() { "/" } else { .path.as_str() })]
    Invalid {
        /// Where: the JSON Pointer of the failing value, e.g. `/count`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ArgumentValidator {
    /// Compiles `schema` (an empty or absent schema accepts anything).
    pub fn new(tool: &str, schema: &Map<String, Value>) -> Self {
        let required = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let compiled = if schema.is_empty() {
            None
        } else {
            match jsonschema::validator_for(&Value::Object(schema.clone())) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(tool, error = %e, "input schema cannot be compiled; arguments are not checked against it");
                    None
                }
            }
        };
        ArgumentValidator { required, compiled }
    }

    /// Turns a request payload into tool arguments: an object as it is, null as `{}`.
    pub fn arguments(payload: &Value) -> Result<Map<String, Value>, ArgumentError> {
        match payload {
            Value::Null => Ok(Map::new()),
            Value::Object(m) => Ok(m.clone()),
            _ => Err(ArgumentError::NotAnObject),
        }
    }

    /// Checks `args`, an object (anything else is [`ArgumentError::NotAnObject`]).
    pub fn check(&self, args: &Value) -> Result<(), ArgumentError> {
        let Value::Object(obj) = args else {
            return Err(ArgumentError::NotAnObject);
        };
        let missing: Vec<String> = self
            .required
            .iter()
            .filter(|k| !obj.contains_key(k.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ArgumentError::Missing(missing));
        }
        let Some(v) = &self.compiled else {
            return Ok(());
        };
        let first = v.iter_errors(args).next();
        match first {
            None => Ok(()),
            Some(e) => Err(ArgumentError::Invalid {
                path: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(
            ArgumentValidator::arguments(&Value::Null).unwrap(),
            Map::new()
        );
        assert_eq!(
            ArgumentValidator::arguments(&json!([1])),
            Err(ArgumentError::NotAnObject)
        );
    }

    #[test]
    fn missing_fields_are_listed_first() {
        let v = ArgumentValidator::new(
            "add",
            &schema(
                json!({"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}),
            ),
        );
        let e = v.check(&json!({})).unwrap_err();
        assert_eq!(e.to_string(), "missing required argument(s): a, b");
    }

    #[test]
    fn violations_name_the_field() {
        let v = ArgumentValidator::new(
            "add",
            &schema(
                json!({"type":"object","properties":{"a":{"type":"number"},"o":{"type":"object","properties":{"n":{"type":"integer","minimum":1}}}},"additionalProperties":false}),
            ),
        );
        let e = v.check(&json!({"a": "x"})).unwrap_err();
        assert!(
            matches!(&e, ArgumentError::Invalid { path, .. } if path == "/a"),
            "{e}"
        );
        let e = v.check(&json!({"o": {"n": 0}})).unwrap_err();
        assert!(e.to_string().contains("/o/n"), "{e}");
        let e = v.check(&json!({"zzz": 1})).unwrap_err();
        assert!(e.to_string().contains("zzz"), "{e}");
        assert!(v.check(&json!({"a": 1})).is_ok());
        assert_eq!(v.check(&json!(3)), Err(ArgumentError::NotAnObject));
    }

    #[test]
    fn empty_schema_accepts_anything() {
        let v = ArgumentValidator::new("x", &Map::new());
        assert!(v.check(&json!({"q": [1, 2]})).is_ok());
    }
}
