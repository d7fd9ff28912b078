//! Reading a `tools/list` page that rmcp's types refuse.
//!
//! Some servers leave out a tool's required `inputSchema`. rmcp then cannot
//! read the page as a tool list and hands it over as an untyped result; a
//! strict reading would fail the whole server for one tool. Here each tool
//! is read on its own: one without `inputSchema` takes the schema of "any
//! object" (what such a server accepts in practice), and one that still
//! cannot be read is left out, with a warning naming it.

use rmcp::model::Tool;
use serde_json::{Value, json};

use crate::errors::McpError;

/// The tools and next cursor of an untyped `tools/list` result.
pub(crate) fn lenient_page(result: &Value) -> Result<(Vec<Tool>, Option<String>), McpError> {
    let Some(list) = result.get("tools").and_then(Value::as_array) else {
        return Err(McpError::Transport(
            "tools/list answered with something else than a tool list (no `tools` array)"
                .to_owned(),
        ));
    };
    let mut tools = Vec::with_capacity(list.len());
    for raw in list {
        let name = raw.get("name").and_then(Value::as_str).unwrap_or("?");
        let mut tool = raw.clone();
        if let Some(obj) = tool.as_object_mut()
            && obj.get("inputSchema").is_none_or(Value::is_null)
        {
            tracing::warn!(tool = %name, "MCP tool has no inputSchema (the protocol requires one); it takes any object");
            obj.insert("inputSchema".into(), json!({"type": "object"}));
        }
        match serde_json::from_value::<Tool>(tool) {
            Ok(t) => tools.push(t),
            Err(e) => {
                tracing::warn!(tool = %name, error = %e, "MCP tool left out: its description cannot be read");
            }
        }
    }
    let cursor = result
        .get("nextCursor")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((tools, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_schema_is_any_object_and_an_unreadable_tool_is_left_out() {
        let page = json!({
            "tools": [
                {"name": "plain", "description": "no schema"},
                {"name": "typed", "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}}}},
                {"description": "no name"},
            ],
            "nextCursor": "p2",
        });
        let (tools, cursor) = lenient_page(&page).unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["plain", "typed"]);
        assert_eq!(
            *tools[0].input_schema,
            *json!({"type": "object"}).as_object().unwrap()
        );
        assert_eq!(cursor.as_deref(), Some("p2"));
        assert!(lenient_page(&json!({"nope": 1})).is_err());
    }
}
