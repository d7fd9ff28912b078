//! The catalog: which targets a tool list yields, and what they say about themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use openagentio_core::TargetInfo;
use rmcp::model::Tool;
use serde_json::Value;

use crate::call::ToolSpec;
use crate::config::McpConfig;
use crate::filter::ToolFilter;
use crate::naming::target_name;
use crate::schema::ArgumentValidator;

/// The targets a tool list yields: exposed tools by target name, and the
/// problems met (two tools claiming one target).
pub(crate) struct Plan {
    pub specs: BTreeMap<String, Arc<ToolSpec>>,
    pub problems: Vec<String>,
}

/// Builds the targets of `tools` under `prefix`, honouring `filter`.
pub(crate) fn plan(tools: Vec<Tool>, prefix: &str, filter: &ToolFilter, cfg: &McpConfig) -> Plan {
    let mut specs: BTreeMap<String, Arc<ToolSpec>> = BTreeMap::new();
    let mut problems = Vec::new();
    // A `tool_timeouts` entry for a tool the server does not have is a typo
    // (or a tool that went away): said, not ignored.
    for name in cfg.tool_timeouts.keys() {
        if !tools.iter().any(|t| t.name == name.as_str()) {
            problems.push(format!(
                "tool_timeouts names {name:?}, which the server does not offer"
            ));
        }
    }
    for tool in tools {
        let name = tool.name.to_string();
        if !filter.allows(&name) {
            continue;
        }
        let target = target_name(prefix, &name);
        if let Some(other) = specs.get(&target) {
            problems.push(format!(
                "tools {:?} and {name:?} both map to target {target}; only the first is served",
                other.name
            ));
            continue;
        }
        let description = tool
            .description
            .as_deref()
            .map(str::to_owned)
            .or_else(|| tool.title.clone())
            .unwrap_or_default();
        let schema = (*tool.input_schema).clone();
        let spec = ToolSpec {
            validator: ArgumentValidator::new(&name, &schema),
            timeout: cfg.timeout_for(&name),
            input_schema: Value::Object(schema),
            description,
            target: target.clone(),
            name,
        };
        specs.insert(target, Arc::new(spec));
    }
    Plan { specs, problems }
}

/// The catalog entry of a served tool.
pub(crate) fn info(spec: &ToolSpec, bridge: &str) -> TargetInfo {
    TargetInfo {
        name: spec.target.clone(),
        description: spec.description.clone(),
        streaming: true,
        input_schema: Some(spec.input_schema.clone()),
        bridge: bridge.to_owned(),
        upstream_name: Some(spec.name.clone()),
    }
}

/// Whether two specs describe the same tool (so a re-list need not replace it).
pub(crate) fn same(a: &ToolSpec, b: &ToolSpec) -> bool {
    a.name == b.name
        && a.description == b.description
        && a.input_schema == b.input_schema
        && a.timeout == b.timeout
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::McpTransport;

    fn tool(name: &str) -> Tool {
        let schema = json!({"type": "object"}).as_object().unwrap().clone();
        Tool::new(name.to_owned(), format!("does {name}"), Arc::new(schema))
    }

    #[test]
    fn plan_filters_maps_and_times() {
        let mut cfg = McpConfig::new(McpTransport::stdio("x", Vec::<String>::new()));
        cfg.tool_timeouts
            .insert("slow".into(), Duration::from_secs(99));
        let filter = ToolFilter::new(&[], &["hidden".into()]).unwrap();
        let p = plan(
            vec![tool("echo"), tool("hidden"), tool("slow"), tool("a b")],
            "demo",
            &filter,
            &cfg,
        );
        let names: Vec<_> = p.specs.keys().cloned().collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"demo.echo".to_owned()));
        assert!(names.iter().any(|n| n.starts_with("demo.a_b-")));
        assert_eq!(p.specs["demo.slow"].timeout, Duration::from_secs(99));
        assert_eq!(p.specs["demo.echo"].timeout, cfg.timeout);
        let i = info(&p.specs["demo.echo"], "b");
        assert!(i.streaming);
        assert_eq!(i.description, "does echo");
        assert_eq!(i.input_schema, Some(json!({"type": "object"})));
        assert_eq!(i.upstream_name.as_deref(), Some("echo"));
        let renamed = p.specs.keys().find(|n| n.starts_with("demo.a_b-")).unwrap();
        assert_eq!(
            info(&p.specs[renamed], "b").upstream_name.as_deref(),
            Some("a b")
        );
        assert!(p.problems.is_empty());

        cfg.tool_timeouts
            .insert("slwo".into(), Duration::from_secs(5));
        let p = plan(vec![tool("slow")], "demo", &filter, &cfg);
        assert_eq!(
            p.problems,
            ["tool_timeouts names \"slwo\", which the server does not offer"]
        );
    }
}
