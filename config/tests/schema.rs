//! The committed `schema/config.schema.json` is what the types generate, and the
//! example configs satisfy it.

use std::path::PathBuf;

use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../schema/config.schema.json")
}

fn examples() -> Vec<PathBuf> {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../examples/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn committed_schema_is_fresh() {
    let path = committed_path();
    let generated = openagentio_config::json_schema();
    let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed: Option<Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    assert!(
        committed.as_ref() == Some(&generated),
        "{} is missing or stale: regenerate it with\n    UPDATE_SCHEMA=1 cargo test -p openagentio-config --test schema\nand commit the result",
        path.display()
    );
}

#[test]
fn examples_satisfy_the_schema() {
    let validator = jsonschema::validator_for(&openagentio_config::json_schema()).unwrap();
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let value: Value = if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).unwrap()
        } else {
            serde_norway::from_str(&text).unwrap()
        };
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            file.display(),
            errors.join("\n")
        );
    }
}

#[test]
fn booleans_and_whole_numbers_may_be_placeholders_as_in_the_loader() {
    let validator = jsonschema::validator_for(&openagentio_config::json_schema()).unwrap();
    let doc = serde_json::json!({"version": "openagentio.bridge/v1",
        "http": {"enabled": "${HE:-true}"},
        "telemetry": {"metrics": "false"},
        "bridges": [{"name": "s", "type": "openai_chat_sse",
            "config": {"base_url": "http://a", "model": "m", "retries": "${R:-2}"}},
            {"name": "fs", "type": "mcp_tool", "config": {"command": "x",
                "supervision": {"max_restarts": " 5 ", "jitter_enabled": "${J:-true}"}}}]});
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // The loader takes the same document.
    let env = |_: &str| None;
    openagentio_config::from_value(doc, &env).unwrap();
    for bad in [
        serde_json::json!({"version": "openagentio.bridge/v1", "http": {"enabled": "yes"}}),
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [{"name": "s",
            "type": "openai_chat_sse", "config": {"base_url": "http://a", "model": "m", "retries": "two"}}]}),
    ] {
        assert!(!validator.is_valid(&bad), "schema accepted {bad}");
    }
}

#[test]
fn schema_rejects_what_the_loader_rejects() {
    let validator = jsonschema::validator_for(&openagentio_config::json_schema()).unwrap();
    let bad = [
        // unknown top-level key
        serde_json::json!({"version": "openagentio.bridge/v1", "buss": {}}),
        // wrong version
        serde_json::json!({"version": "openagentio.bridge/v2"}),
        // unknown key inside a bridge's config
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [
            {"name": "fs", "type": "mcp_tool", "config": {"command": "x", "comand": "y"}}]}),
        // stdio without command
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [
            {"name": "fs", "type": "mcp_tool", "config": {"transport": "stdio"}}]}),
        // streamable_http without http_url
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [
            {"name": "fs", "type": "mcp_tool", "config": {"transport": "streamable_http"}}]}),
        // matrix without any credentials
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [
            {"name": "mx", "type": "matrix_event", "config": {
                "homeserver_url": "http://hs", "user_id": "@a:hs", "room_ids": ["!r:hs"]}}]}),
        // unknown bridge type
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [
            {"name": "x", "type": "kafka", "config": {}}]}),
        // zero timeout
        serde_json::json!({"version": "openagentio.bridge/v1", "bridges": [
            {"name": "fs", "type": "mcp_tool", "config": {"command": "x", "timeout": 0}}]}),
    ];
    for doc in bad {
        assert!(!validator.is_valid(&doc), "schema accepted {doc}");
    }
}

/// Every `default` the schema states, with the `$ref`s it sits beside, and
/// where in the schema it is.
fn defaults_with_their_schemas(node: &Value, at: String, out: &mut Vec<(String, Value, Value)>) {
    match node {
        Value::Object(m) => {
            if let Some(default) = m.get("default") {
                let mut own = m.clone();
                own.remove("default");
                out.push((at.clone(), default.clone(), Value::Object(own)));
            }
            for (k, v) in m {
                defaults_with_their_schemas(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                defaults_with_their_schemas(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_default_is_valid_under_its_own_schema() {
    let schema = openagentio_config::json_schema();
    let mut found = Vec::new();
    defaults_with_their_schemas(&schema, String::new(), &mut found);
    assert!(found.len() > 10, "{found:?}");
    let mut bad = Vec::new();
    for (at, default, mut own) in found {
        // The `$ref`s inside point at the root's `$defs`.
        own.as_object_mut()
            .unwrap()
            .insert("$defs".into(), schema["$defs"].clone());
        let validator = jsonschema::validator_for(&own).unwrap();
        if !validator.is_valid(&default) {
            bad.push(format!("{at}: {default}"));
        }
    }
    assert!(
        bad.is_empty(),
        "defaults their schema rejects:\n{}",
        bad.join("\n")
    );
}

/// The schema and the loader agree on what a demanding user may write at
/// the edges: an empty section or key (`bus:` is the default bus), names
/// of choices in any case, and how a duration's number is written.
#[test]
fn schema_and_loader_agree_at_the_edges() {
    let validator = jsonschema::validator_for(&openagentio_config::json_schema()).unwrap();
    let env = |_: &str| None;
    let v = "openagentio.bridge/v1";
    let doc = |extra: serde_json::Value| {
        let mut d = serde_json::json!({"version": v});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    let accepted = [
        serde_json::json!({"bus": null, "http": null, "bridges": null, "telemetry": null}),
        serde_json::json!({"bus": {"transport": "nats", "nats": null}}),
        serde_json::json!({"http": {"tokens": null, "listen": null}}),
        serde_json::json!({"shutdown": {"drain_timeout": null}}),
        serde_json::json!({"bridges": [{"name": "e", "type": "echo", "config": null, "mappings": null}]}),
        serde_json::json!({"bus": {"transport": "NATS"}}),
        serde_json::json!({"bus": {"transport": " Memory "}}),
        serde_json::json!({"telemetry": {"log_format": "JSON"}}),
        serde_json::json!({"bridges": [{"name": "m", "type": "mcp_tool",
            "config": {"command": "x", "transport": "STDIO"}}]}),
        serde_json::json!({"bridges": [{"name": "x", "type": "matrix_event", "config": {
            "homeserver_url": "http://hs", "user_id": "@a:hs", "access_token": "t",
            "room_ids": ["!r:hs"], "outbound_msgtype": "M.Notice",
            "initial_sync_behavior": "REPLAY"}}]}),
        serde_json::json!({"shutdown": {"drain_timeout": "1.5m"}}),
        serde_json::json!({"shutdown": {"drain_timeout": " 10 s "}}),
        serde_json::json!({"shutdown": {"drain_timeout": "2.5"}}),
        serde_json::json!({"shutdown": {"drain_timeout": 1e2}}),
    ];
    for extra in accepted {
        let d = doc(extra);
        let errors: Vec<String> = validator.iter_errors(&d).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "the schema refused {d}: {errors:?}");
        if let Err(e) = openagentio_config::from_value(d.clone(), &env) {
            panic!("the loader refused {d}: {e}");
        }
    }
    let refused = [
        serde_json::json!({"bus": {"transport": "nats!"}}),
        serde_json::json!({"bus": {"transport": "na ts"}}),
        serde_json::json!({"bridges": [{"name": "m", "type": "mcp_tool",
            "config": {"command": "x", "transport": "stdioo"}}]}),
        serde_json::json!({"bridges": [{"name": "x", "type": "matrix_event", "config": {
            "homeserver_url": "http://hs", "user_id": "@a:hs", "access_token": "t",
            "room_ids": ["!r:hs"], "outbound_msgtype": "mxtext"}}]}),
        serde_json::json!({"bridges": [{"name": null, "type": "echo"}]}),
        serde_json::json!({"version": null}),
    ]
    .into_iter()
    .chain(
        [
            "1e2", "1e2s", "+5", ".5", "5.", ".5s", "inf", "10S", "1_000",
        ]
        .into_iter()
        .map(|t| serde_json::json!({"shutdown": {"drain_timeout": t}})),
    );
    for extra in refused {
        let d = doc(extra);
        assert!(!validator.is_valid(&d), "the schema accepted {d}");
        assert!(
            openagentio_config::from_value(d.clone(), &env).is_err(),
            "the loader accepted {d}"
        );
    }
}
