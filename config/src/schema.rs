//! The JSON Schema (draft 2020-12) of the config file, generated from the config
//! types, so it cannot drift from what the loader accepts. The repository keeps a
//! copy in `schema/config.schema.json`; a test fails when that copy is stale.
//!
//! The schema describes the file as written: durations are numbers of seconds or
//! strings like `"10s"`, sizes numbers or strings like `"4MiB"`. Strings that hold a
//! `${VAR}` placeholder are allowed where a duration, size, boolean or whole
//! number is expected, as the loader allows them (JSON Schema cannot tell `3.0`
//! from `3`, which the loader refuses where a whole number is expected).

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};

use crate::bridge::echo::{EchoMappings, EchoSettings};
use crate::bridge::matrix::{MatrixMappings, MatrixSettings};
use crate::bridge::mcp::{McpToolMappings, McpToolSettings};
use crate::bridge::openai_sse::{OpenAiSseMappings, OpenAiSseSettings};
use crate::bridge::{BRIDGE_TYPES, BridgeConfig, REFERENCE_MAPPING_KEYS};
use crate::config::Config;

/// The JSON Schema of a whole config file, with keys sorted.
///
/// ```
/// let schema = openagentio_config::json_schema();
/// assert_eq!(schema["title"], "OpenAgentIO config");
/// assert!(schema["properties"]["bridges"].is_object());
/// ```
pub fn json_schema() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Config>();
    let mut schema = schema.to_value();
    allow_placeholders(&mut schema);
    allow_null_when_optional(&mut schema);
    tidy(schema)
}

/// Lets every optional property also be `null`, which the loader reads as
/// absent (`bus:` with nothing under it is the default bus).
fn allow_null_when_optional(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let required: Vec<String> = m
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if required.contains(name) {
                        continue;
                    }
                    let Value::Object(own) = prop else { continue };
                    let null = serde_json::json!({ "type": "null" });
                    if let Some(Value::Array(alternatives)) = own.get_mut("anyOf") {
                        alternatives.push(null);
                        continue;
                    }
                    // Description and default stay on the property, for editors.
                    let mut outer = Map::new();
                    for key in ["description", "default"] {
                        if let Some(x) = own.remove(key) {
                            outer.insert(key.into(), x);
                        }
                    }
                    let typed = Value::Object(std::mem::take(own));
                    outer.insert("anyOf".into(), Value::Array(vec![typed, null]));
                    *own = outer;
                }
            }
            m.values_mut().for_each(allow_null_when_optional);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_null_when_optional),
        _ => {}
    }
}

/// The schema transform of an enum the loader reads with
/// [`choice`](crate::values::choice): its names in any case, with
/// whitespace around them. Each name stays a `const` (for editors'
/// completion) beside a pattern that takes it in any case.
pub(crate) fn any_case(schema: &mut Schema) {
    let any_case_of = |name: &str| {
        let letters: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                } else if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect();
        serde_json::json!({
            "anyOf": [
                { "const": name },
                { "type": "string", "pattern": format!(r"^\s*{letters}\s*$") }
            ]
        })
    };
    if let Some(Value::Array(variants)) = schema.get_mut("oneOf") {
        for variant in variants {
            let Value::Object(own) = variant else {
                continue;
            };
            let Some(Value::String(name)) = own.remove("const") else {
                continue;
            };
            own.remove("type");
            if let Value::Object(alternatives) = any_case_of(&name) {
                own.extend(alternatives);
            }
        }
    } else if let Some(Value::Array(names)) = schema.remove("enum") {
        schema.remove("type");
        let variants: Vec<Value> = names
            .iter()
            .filter_map(Value::as_str)
            .map(any_case_of)
            .collect();
        schema.insert("oneOf".into(), Value::Array(variants));
    }
}

/// Lets every boolean and whole-number property also be a string that the
/// loader reads as one: `"true"`, `"3"`, or a `${VAR}` placeholder (which
/// only substitution can turn into a value).
fn allow_placeholders(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for prop in props.values_mut() {
                    let pattern = match prop.get("type").and_then(Value::as_str) {
                        Some("boolean") => BOOLEAN_STRING_PATTERN,
                        Some("integer") => WHOLE_NUMBER_STRING_PATTERN,
                        _ => continue,
                    };
                    let Value::Object(own) = prop else { continue };
                    // Description and default stay on the property, for editors.
                    let mut outer = Map::new();
                    for key in ["description", "default"] {
                        if let Some(x) = own.remove(key) {
                            outer.insert(key.into(), x);
                        }
                    }
                    let typed = Value::Object(std::mem::take(own));
                    outer.insert(
                        "anyOf".into(),
                        serde_json::json!([typed, { "type": "string", "pattern": pattern }]),
                    );
                    *own = outer;
                }
            }
            m.values_mut().for_each(allow_placeholders);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_placeholders),
        _ => {}
    }
}

/// Sorts keys and drops `"default": null` (an absent optional key).
fn tidy(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m
                .into_iter()
                .filter(|(k, v)| !(k == "default" && v.is_null()))
                .map(|(k, v)| (k, tidy(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(tidy).collect()),
        other => other,
    }
}

const DURATION_PATTERN: &str = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h)\s*)+$|^\s*\d+(\.\d+)?\s*$|\$\{";
const BOOLEAN_STRING_PATTERN: &str = r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\s*$|\$\{";
const WHOLE_NUMBER_STRING_PATTERN: &str = r"^\s*\d+\s*$|\$\{";
const SIZE_PATTERN: &str = r"^\s*\d+\s*([kKmMgG][iI]?[bB]|[bB])?\s*$|\$\{";

fn positive_duration_schema() -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "number", "exclusiveMinimum": 0 },
            { "type": "string", "pattern": DURATION_PATTERN }
        ]
    })
}

macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident, $id:literal, $body:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                $id.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    };
}

schema_type!(
    /// A duration greater than zero: seconds, or `"500ms"`, `"10s"`, `"2m"`, `"1h"`.
    PositiveDuration,
    "PositiveDuration",
    positive_duration_schema()
);

schema_type!(
    /// A duration that may be zero.
    NonNegativeDuration,
    "NonNegativeDuration",
    json_schema!({
        "anyOf": [
            { "type": "number", "minimum": 0 },
            { "type": "string", "pattern": DURATION_PATTERN }
        ]
    })
);

schema_type!(
    /// A positive size in bytes: a number, or `"4MiB"`, `"512KiB"`, `"1MB"`.
    ByteSize,
    "ByteSize",
    json_schema!({
        "anyOf": [
            { "type": "integer", "minimum": 1 },
            { "type": "string", "pattern": SIZE_PATTERN }
        ]
    })
);

schema_type!(
    /// NATS server URLs: one string (comma-separated for several) or a list.
    NatsUrls,
    "NatsUrls",
    json_schema!({
        "anyOf": [
            { "type": "string", "minLength": 1 },
            { "type": "array", "items": { "type": "string", "minLength": 1 }, "minItems": 1 }
        ]
    })
);

/// Adds the reference's `request_timeout` (another name for `timeout`) to the
/// SSE bridge's `config`.
pub(crate) fn add_request_timeout(schema: &mut Schema) {
    let mut prop = positive_duration_schema();
    prop.insert(
        "description".into(),
        "The reference's name for `timeout` (give one of them).".into(),
    );
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        props.insert("request_timeout".into(), prop.to_value());
    }
}

/// Adds the reference's generic `mappings` keys that a bridge type does not
/// read: any value is accepted, and it changes nothing.
pub(crate) fn add_reference_mapping_keys(schema: &mut Schema) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for key in REFERENCE_MAPPING_KEYS {
            props.entry(key).or_insert_with(|| {
                serde_json::json!({
                    "description": "Read by the reference parser for every bridge type; changes nothing for this one."
                })
            });
        }
    }
}

/// Adds `text_field` to the `mcp_tool` bridge's `mappings`: only the
/// reference's default, `text`, which this bridge always behaves as.
pub(crate) fn add_mcp_text_field(schema: &mut Schema) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        props.insert(
            "text_field".into(),
            serde_json::json!({
                "description": "Only `text` (the reference's default): the answer always has its top-level `text`.",
                "enum": ["text", ""]
            }),
        );
    }
}

/// A bridge entry: `config` and `mappings` take the schema of the bridge's `type`.
impl JsonSchema for BridgeConfig {
    fn schema_name() -> Cow<'static, str> {
        "Bridge".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let branch = |types: &[&str], config: Schema, mappings: Schema| {
            json_schema!({
                "if": { "properties": { "type": { "enum": types } }, "required": ["type"] },
                "then": {
                    "required": ["config"],
                    "properties": { "config": config, "mappings": mappings }
                }
            })
        };
        let mcp = branch(
            &["mcp_tool"],
            g.subschema_for::<McpToolSettings>(),
            g.subschema_for::<McpToolMappings>(),
        );
        let matrix = branch(
            &["matrix_event"],
            g.subschema_for::<MatrixSettings>(),
            g.subschema_for::<MatrixMappings>(),
        );
        let echo = json_schema!({
            "if": { "properties": { "type": { "const": "echo" } }, "required": ["type"] },
            "then": {
                "properties": {
                    "config": g.subschema_for::<EchoSettings>(),
                    "mappings": g.subschema_for::<EchoMappings>()
                }
            }
        });
        let sse = branch(
            &["openai_chat_sse", "openclaw_chat_sse"],
            g.subschema_for::<OpenAiSseSettings>(),
            g.subschema_for::<OpenAiSseMappings>(),
        );
        json_schema!({
            "description": "One bridge: `type` decides what `config` and `mappings` hold.",
            "type": "object",
            "required": ["name", "type"],
            "additionalProperties": false,
            "properties": {
                "name": {
                    "description": "Unique in the file; also the default target (or target prefix), so a valid subject name: no spaces, `*`, `>` or empty `.`-separated tokens.",
                    "type": "string",
                    "pattern": r"^[^\s*>.]+(\.[^\s*>.]+)*$"
                },
                "type": { "description": "The kind of bridge.", "enum": BRIDGE_TYPES },
                "config": { "type": "object" },
                "mappings": { "type": "object" }
            },
            "allOf": [echo, mcp, matrix, sse]
        })
    }
}
