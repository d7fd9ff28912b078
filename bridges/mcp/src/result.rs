//! From an MCP `CallToolResult` to the bus response payload, as the reference
//! bridge (`openagentio` 0.3.0 with `mcp` 1.x) maps it:
//!
//! ```json
//! {
//!   "content": [
//!     {"type": "text", "text": "..."},
//!     {"type": "image", "mimeType": "image/png", "data": "<base64>"},
//!     {"type": "resource", "resource": {"uri": "...", "mimeType": null, "meta": null, "text": "..."}},
//!     {"type": "audio", "data": {"type": "audio", "data": "<base64>", "mimeType": "audio/wav", "annotations": null, "meta": null}},
//!     {"type": "resource_link", "data": {"name": "...", "title": null, "uri": "...", "description": null,
//!                                        "mimeType": null, "size": null, "icons": null, "annotations": null,
//!                                        "meta": null, "type": "resource_link"}}
//!   ],
//!   "structuredContent": {...},
//!   "meta": {...},
//!   "text": "..."
//! }
//! ```
//!
//! - `text`, `image` and `resource` items keep the fields shown; every other
//!   item type (`audio`, `resource_link`, and types this version does not
//!   know) is `{"type", "data": <the whole item>}`.
//! - Inside dumped items, the MCP `_meta` field is spelled `meta` and absent
//!   standard fields are `null`, as the reference's pydantic `model_dump()`
//!   writes them.
//! - `structuredContent` and `meta` (the result's `_meta`) appear when the
//!   server sent them (and not as null).
//! - `text` appears when `content` holds exactly one item and it is text.
//! - A result with `isError: true` is not mapped: the call fails with
//!   `INVALID_REQUEST` carrying [`error_text`].

use serde_json::{Map, Value, json};

/// Standard fields of an `audio` item, in the reference's order.
const AUDIO_FIELDS: [&str; 5] = ["type", "data", "mimeType", "annotations", "meta"];
/// Standard fields of a `resource_link` item, in the reference's order.
const LINK_FIELDS: [&str; 10] = [
    "name",
    "title",
    "uri",
    "description",
    "mimeType",
    "size",
    "icons",
    "annotations",
    "meta",
    "type",
];
/// Standard fields of embedded resource contents.
const RESOURCE_FIELDS: [&str; 3] = ["uri", "mimeType", "meta"];

/// Whether the result reports a tool error (`isError: true`).
pub fn is_error(result: &Value) -> bool {
    result
        .get("isError")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The text of an error result: its text items joined by spaces, or
/// `unknown tool error` when it has none.
pub fn error_text(result: &Value) -> String {
    let texts: Vec<&str> = content(result)
        .iter()
        .filter(|i| item_type(i) == "text")
        .filter_map(|i| i.get("text").and_then(Value::as_str))
        .collect();
    let joined = texts.join(" ");
    let trimmed = joined.trim();
    if trimmed.is_empty() {
        "unknown tool error".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Maps a successful `CallToolResult` (as JSON, MCP spelling) to the response payload.
///
/// ```
/// use serde_json::json;
/// let mapped = openagentio_mcp::result::map_result(&json!({
///     "content": [{"type": "text", "text": "4"}],
///     "structuredContent": {"sum": 4}
/// }));
/// assert_eq!(mapped, json!({
///     "content": [{"type": "text", "text": "4"}],
///     "structuredContent": {"sum": 4},
///     "text": "4"
/// }));
/// ```
pub fn map_result(result: &Value) -> Value {
    let items: Vec<Value> = content(result).iter().map(map_item).collect();
    let mut out = Map::new();
    let single_text = match items.as_slice() {
        [only] if item_type(only) == "text" => only.get("text").cloned(),
        _ => None,
    };
    out.insert("content".to_owned(), Value::Array(items));
    if let Some(sc) = result.get("structuredContent").filter(|v| !v.is_null()) {
        out.insert("structuredContent".to_owned(), sc.clone());
    }
    if let Some(meta) = result.get("_meta").filter(|v| !v.is_null()) {
        out.insert("meta".to_owned(), meta.clone());
    }
    if let Some(text) = single_text {
        out.insert("text".to_owned(), text);
    }
    Value::Object(out)
}

fn content(result: &Value) -> &[Value] {
    result
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

fn str_or_empty(item: &Value, key: &str) -> Value {
    item.get(key)
        .cloned()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| Value::String(String::new()))
}

fn map_item(item: &Value) -> Value {
    match item_type(item) {
        "text" => json!({"type": "text", "text": str_or_empty(item, "text")}),
        "image" => json!({
            "type": "image",
            "mimeType": str_or_empty(item, "mimeType"),
            "data": str_or_empty(item, "data"),
        }),
        "resource" => json!({
            "type": "resource",
            "resource": item.get("resource").map(|r| dump(r, &RESOURCE_FIELDS)).unwrap_or(Value::Null),
        }),
        "audio" => json!({"type": "audio", "data": dump(item, &AUDIO_FIELDS)}),
        "resource_link" => json!({"type": "resource_link", "data": dump(item, &LINK_FIELDS)}),
        other => json!({"type": other, "data": dump(item, &["type", "annotations", "meta"])}),
    }
}

/// `value` as pydantic's `model_dump()` writes it: `_meta` spelled `meta`, the
/// `standard` fields present (null when absent), other fields kept.
fn dump(value: &Value, standard: &[&str]) -> Value {
    let Some(obj) = value.as_object() else {
        return value.clone();
    };
    let mut out = Map::new();
    for key in standard {
        let wire = if *key == "meta" { "_meta" } else { key };
        out.insert(
            (*key).to_owned(),
            obj.get(wire).cloned().unwrap_or(Value::Null),
        );
    }
    for (k, v) in obj {
        let name = if k == "_meta" { "meta" } else { k.as_str() };
        if !out.contains_key(name) {
            out.insert(name.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_content_type_maps_as_the_reference() {
        let r = json!({
            "content": [
                {"type": "text", "text": "hi", "annotations": {"priority": 1}},
                {"type": "image", "data": "AAA", "mimeType": "image/png"},
                {"type": "audio", "data": "BBB", "mimeType": "audio/wav"},
                {"type": "resource", "resource": {"uri": "file:///a", "mimeType": "text/plain", "text": "x"}},
                {"type": "resource", "resource": {"uri": "file:///b", "blob": "Zm9v", "_meta": {"k": 1}}},
                {"type": "resource_link", "uri": "file:///c", "name": "c", "description": "d"},
            ],
            "structuredContent": {"a": 1},
            "_meta": {"m": 2},
            "isError": false
        });
        let m = map_result(&r);
        assert_eq!(
            m,
            json!({
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "mimeType": "image/png", "data": "AAA"},
                    {"type": "audio", "data": {"type": "audio", "data": "BBB", "mimeType": "audio/wav", "annotations": null, "meta": null}},
                    {"type": "resource", "resource": {"uri": "file:///a", "mimeType": "text/plain", "meta": null, "text": "x"}},
                    {"type": "resource", "resource": {"uri": "file:///b", "mimeType": null, "meta": {"k": 1}, "blob": "Zm9v"}},
                    {"type": "resource_link", "data": {"name": "c", "title": null, "uri": "file:///c", "description": "d",
                        "mimeType": null, "size": null, "icons": null, "annotations": null, "meta": null, "type": "resource_link"}},
                ],
                "structuredContent": {"a": 1},
                "meta": {"m": 2}
            })
        );
    }

    #[test]
    fn top_level_text_only_for_a_single_text_item() {
        let two =
            json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert!(map_result(&two).get("text").is_none());
        let none = json!({"content": []});
        assert_eq!(map_result(&none), json!({"content": []}));
        let img = json!({"content": [{"type": "image", "data": "x", "mimeType": "image/png"}]});
        assert!(map_result(&img).get("text").is_none());
    }

    #[test]
    fn null_structured_content_is_left_out() {
        let r = json!({"content": [], "structuredContent": null, "_meta": null});
        assert_eq!(map_result(&r), json!({"content": []}));
    }

    #[test]
    fn error_text_joins_text_items() {
        let r = json!({"isError": true, "content": [{"type": "text", "text": " boom "}, {"type": "image", "data": "", "mimeType": ""}, {"type": "text", "text": "again"}]});
        assert!(is_error(&r));
        assert_eq!(error_text(&r), "boom  again");
        assert_eq!(error_text(&json!({"isError": true})), "unknown tool error");
    }
}
