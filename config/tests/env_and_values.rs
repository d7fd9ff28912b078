//! `${VAR}` substitution through the loader, and the two forms of durations and sizes.

use std::time::Duration;

use openagentio_config::{
    BridgeKind, Config, ConfigError, Format, OutboundMsgtype, Transport, load_with_env,
};

fn env(name: &str) -> Option<String> {
    match name {
        "HS" => Some("https://matrix.example.org".into()),
        "TOKEN" => Some("syt_abc".into()),
        "ROOM" => Some("!room:example.org".into()),
        "EMPTY" => Some(String::new()),
        "TIMEOUT" => Some("45".into()),
        "TRANSPORT" => Some("nats".into()),
        // A value that looks like YAML structure stays one string.
        "TRICKY" => Some("x\n  injected: true\n- [1]".into()),
        _ => None,
    }
}

fn load(yaml: &str) -> Result<Config, ConfigError> {
    load_with_env(yaml, Format::Yaml, &env)
}

fn errors(yaml: &str) -> Vec<String> {
    load(yaml)
        .unwrap_err()
        .field_errors()
        .iter()
        .map(ToString::to_string)
        .collect()
}

const MATRIX: &str = r#"version: openagentio.bridge/v1
bus: {transport: "${TRANSPORT}", default_timeout: "${TIMEOUT}"}
bridges:
  - name: mx
    type: matrix_event
    config:
      homeserver_url: "${HS}"
      access_token: "${TOKEN}"
      user_id: "${USER:-@bot:example.org}"
      device_id: "${EMPTY:-DEV1}"
      room_ids: ["${ROOM}"]
      state_dir: "${STATE-/var/lib/oaio}"
      outbound_msgtype: "${UNSET-m.notice}"
"#;

#[test]
fn set_variables_and_defaults() {
    let cfg = load(MATRIX).unwrap();
    assert_eq!(cfg.bus.transport, Transport::Nats);
    assert_eq!(cfg.bus.default_timeout, Duration::from_secs(45));
    let BridgeKind::MatrixEvent(mx) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(
        mx.config.homeserver_url.as_str(),
        "https://matrix.example.org/"
    );
    assert_eq!(mx.config.access_token.as_ref().unwrap().expose(), "syt_abc");
    assert_eq!(mx.config.user_id, "@bot:example.org");
    // `:-` also replaces an empty value; `-` only an unset one.
    assert_eq!(mx.config.device_id.as_deref(), Some("DEV1"));
    assert_eq!(mx.config.room_ids, ["!room:example.org"]);
    assert_eq!(
        mx.config.state_dir.as_deref(),
        Some("/var/lib/oaio".as_ref())
    );
    assert_eq!(mx.config.outbound_msgtype, OutboundMsgtype::Notice);
}

#[test]
fn an_empty_substitution_fails_a_required_key_and_says_why() {
    // `${EMPTY-...}` keeps the empty value: a required key is then missing.
    let yaml = MATRIX.replace("${USER:-@bot:example.org}", "${EMPTY-@bot:example.org}");
    assert_eq!(
        errors(&yaml),
        ["bridges[0].config.user_id: missing required key; its `${...}` gave an empty string"]
    );
    let yaml = "version: openagentio.bridge/v1
bridges: [{name: fs, type: mcp_tool, config: {command: '${EMPTY}'}}]
";
    assert_eq!(
        errors(yaml),
        [
            "bridges[0].config.command: missing required key (transport `stdio` needs it); its `${...}` gave an empty string"
        ]
    );
}

#[test]
fn an_empty_substitution_leaves_an_optional_key_unset() {
    let yaml = r#"version: openagentio.bridge/v1
bus:
  transport: nats
  serve_timeout: "${NOPE:-}"
  default_tenant: "${EMPTY}"
  default_timeout: "${EMPTY}"
  nats: {credentials_file: "${NOPE:-}", token: "${NOPE:-}", url: "${EMPTY}"}
http: {idle_timeout: "${NOPE:-}", default_timeout: "${NOPE:-}"}
telemetry: {otlp_endpoint: "${NOPE:-}"}
bridges:
  - name: fs
    type: mcp_tool
    # An env value may be empty: it stays "".
    config: {command: x, env: {A: "${EMPTY}"}}
"#;
    let cfg = load(yaml).unwrap();
    assert_eq!(cfg.bus.serve_timeout, None);
    assert_eq!(cfg.bus.default_tenant, None);
    assert_eq!(cfg.bus.default_timeout, Duration::from_secs(30));
    assert_eq!(cfg.bus.nats.credentials_file, None);
    assert!(cfg.bus.nats.token.is_none());
    assert_eq!(cfg.bus.nats.url_list(), "nats://127.0.0.1:4222");
    assert_eq!(cfg.http.idle_timeout, None);
    assert_eq!(cfg.http.default_timeout, None);
    assert_eq!(cfg.telemetry.otlp_endpoint, None);
    let BridgeKind::McpTool(mcp) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(mcp.config.env["A"].expose(), "");

    // An empty string written as such is still refused.
    assert_eq!(
        errors("version: openagentio.bridge/v1\nbus: {default_tenant: ''}\n"),
        ["bus.default_tenant: invalid subject token: must not be empty"]
    );
}

#[test]
fn missing_variables_are_errors_naming_path_and_variable() {
    let yaml = r#"version: openagentio.bridge/v1
http:
  tokens: [{token: "${GATEWAY_TOKEN}"}]
bridges:
  - name: chat
    type: openai_chat_sse
    config:
      base_url: "http://${LLM_HOST}:${LLM_PORT}/v1"
      model: m
      headers: {X-Key: "${API_KEY}"}
"#;
    assert_eq!(
        errors(yaml),
        // Substitution walks mappings in key order: `bridges` before `http`.
        [
            "bridges[0].config.base_url: environment variables `LLM_HOST`, `LLM_PORT` are not set",
            "bridges[0].config.headers.X-Key: environment variable `API_KEY` is not set (write `${API_KEY:-default}` to give a default)",
            "http.tokens[0].token: environment variable `GATEWAY_TOKEN` is not set (write `${GATEWAY_TOKEN:-default}` to give a default)",
        ]
    );
}

#[test]
fn escape_gives_a_literal_placeholder() {
    let yaml = r#"version: openagentio.bridge/v1
bridges:
  - name: fs
    type: mcp_tool
    config:
      command: sh
      args: ["-c", "echo $${HOME} ${TOKEN} $$HOME $5"]
"#;
    let cfg = load(yaml).unwrap();
    let BridgeKind::McpTool(mcp) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(mcp.config.args[1], "echo ${HOME} syt_abc $$HOME $5");
}

#[test]
fn substituted_values_never_change_the_document_structure() {
    let yaml = r#"version: openagentio.bridge/v1
bridges:
  - name: fs
    type: mcp_tool
    config: {command: "${TRICKY}"}
"#;
    let cfg = load(yaml).unwrap();
    let BridgeKind::McpTool(mcp) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(
        mcp.config.command.as_deref(),
        Some("x\n  injected: true\n- [1]")
    );
    // Keys are never substituted.
    let yaml = "version: openagentio.bridge/v1\n\"${TRANSPORT}\": 1\n";
    assert_eq!(
        errors(yaml),
        [
            "[\"${TRANSPORT}\"]: unknown key; accepted keys: bridges, bus, http, shutdown, telemetry, version"
        ]
    );
}

#[test]
fn a_failed_substitution_is_reported_once() {
    // The raw `${NOPE}` is not also reported as an invalid URL.
    let yaml = r#"version: openagentio.bridge/v1
telemetry: {otlp_endpoint: "${NOPE}"}
"#;
    assert_eq!(
        errors(yaml),
        [
            "telemetry.otlp_endpoint: environment variable `NOPE` is not set (write `${NOPE:-default}` to give a default)"
        ]
    );
    assert_eq!(
        errors("version: openagentio.bridge/v1\nbus: {subject_prefix: \"${X\"}\n"),
        ["bus.subject_prefix: unterminated `${` (no closing `}`); write `$${` for a literal `${`"]
    );
}

#[test]
fn durations_as_numbers_and_strings() {
    let yaml = r#"version: openagentio.bridge/v1
shutdown: {drain_timeout: 0}
bridges:
  - name: chat
    type: openai_chat_sse
    config:
      base_url: http://a
      model: m
      request_timeout: 12.5
      connect_timeout: 500ms
      first_token_timeout: 1m30s
      idle_timeout: "20"
      total_timeout: 1h
  - name: fs
    type: mcp_tool
    config:
      command: x
      timeout: 0.25
      tool_timeouts: {slow: 2m, fast: 100ms}
"#;
    let cfg = load(yaml).unwrap();
    assert_eq!(cfg.shutdown.drain_timeout, Duration::ZERO);
    let BridgeKind::OpenAiChatSse(sse) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(sse.config.timeout, Duration::from_millis(12_500));
    assert_eq!(sse.config.connect_timeout, Duration::from_millis(500));
    assert_eq!(sse.config.first_token_timeout, Duration::from_secs(90));
    assert_eq!(sse.config.idle_timeout, Duration::from_secs(20));
    assert_eq!(sse.config.total_timeout, Some(Duration::from_secs(3600)));
    let BridgeKind::McpTool(mcp) = &cfg.bridges[1].kind else {
        panic!()
    };
    assert_eq!(mcp.config.timeout, Duration::from_millis(250));
    assert_eq!(mcp.config.timeout_for("slow"), Duration::from_secs(120));
    assert_eq!(mcp.config.timeout_for("fast"), Duration::from_millis(100));
    assert_eq!(mcp.config.timeout_for("other"), Duration::from_millis(250));
}

#[test]
fn bad_durations() {
    let yaml = r#"version: openagentio.bridge/v1
bus: {default_timeout: 0}
bridges:
  - name: fs
    type: mcp_tool
    config:
      command: x
      timeout: -2
      tool_timeouts: {a: "0s", b: "10 parsecs", c: [1]}
  - name: chat
    type: openai_chat_sse
    config: {base_url: http://a, model: m, timeout: 5, request_timeout: 6}
"#;
    assert_eq!(
        errors(yaml),
        [
            "bus.default_timeout: expected a positive number",
            "bridges[0].config.timeout: expected a positive number",
            "bridges[0].config.tool_timeouts.a: expected a positive duration",
            "bridges[0].config.tool_timeouts.b: expected a duration: seconds as a number, or a string like \"500ms\", \"10s\", \"2m\", \"1h\"",
            "bridges[0].config.tool_timeouts.c: expected a duration (seconds as a number, or a string like \"500ms\", \"10s\", \"2m\"), found a list",
            "bridges[1].config.request_timeout: give either `timeout` or `request_timeout` (the reference's name for it), not both",
        ]
    );
}

#[test]
fn sizes_as_numbers_and_strings() {
    let cfg = load("version: openagentio.bridge/v1\nhttp: {body_limit: 512KiB}\n").unwrap();
    assert_eq!(cfg.http.body_limit, 512 * 1024);
    let cfg = load("version: openagentio.bridge/v1\nhttp: {body_limit: 1000}\n").unwrap();
    assert_eq!(cfg.http.body_limit, 1000);
}

#[test]
fn json_documents_load_the_same() {
    let json = r#"{"version": "openagentio.bridge/v1",
        "bridges": [{"name": "fs", "type": "mcp_tool",
                     "config": {"command": "npx", "timeout": "${TIMEOUT}"}}]}"#;
    let cfg = load_with_env(json, Format::Json, &env).unwrap();
    let BridgeKind::McpTool(mcp) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(mcp.config.timeout, Duration::from_secs(45));
}
