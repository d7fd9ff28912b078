//! The example configs in `examples/config/` (the reference SDK's examples,
//! unchanged, and one file with every section) load, with the values they say.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openagentio_config::{
    BridgeKind, Config, InitialSyncBehavior, LogFormat, McpTransport, McpUpstream, OutboundMsgtype,
    SessionStrategy, TargetClaim, Transport, load_file_with_env,
};

fn example(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../examples/config")
        .join(name)
}

fn env(name: &str) -> Option<String> {
    match name {
        "OPENCLAW_GATEWAY_TOKEN" => Some("oc-token".into()),
        "MATRIX_TOKEN" => Some("syt_matrix".into()),
        "GATEWAY_TOKEN" => Some("gw-token".into()),
        "ACME_TOKEN" => Some("acme-token".into()),
        _ => None,
    }
}

fn load(name: &str) -> Config {
    load_file_with_env(example(name), &env).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_file_loads() {
    let dir = example("");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            load_file_with_env(&path, &env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} example files");
}

#[test]
fn reference_mcp_stdio() {
    let cfg = load("mcp_stdio.yaml");
    // Our sections take their defaults.
    assert_eq!(cfg.bus.transport, Transport::Memory);
    assert_eq!(cfg.bus.subject_prefix, "acp.v1");
    assert_eq!(
        cfg.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(cfg.shutdown.drain_timeout, Duration::from_secs(10));
    let b = &cfg.bridges[0];
    assert_eq!(
        (b.name.as_str(), b.type_name.as_str()),
        ("mcp-fs", "mcp_tool")
    );
    let BridgeKind::McpTool(mcp) = &b.kind else {
        panic!("{b:?}")
    };
    assert_eq!(mcp.config.transport, McpTransport::Stdio);
    assert_eq!(mcp.config.timeout, Duration::from_secs(10));
    assert_eq!(mcp.mappings.target_prefix, "mcp-fs");
    let Some(McpUpstream::Stdio {
        command,
        args,
        env,
        cwd,
    }) = mcp.config.upstream()
    else {
        panic!("not stdio")
    };
    assert_eq!(command, "npx");
    assert_eq!(
        args,
        ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
    );
    assert_eq!(env["NODE_ENV"].expose(), "production");
    assert_eq!(cwd, None);
    assert_eq!(b.targets(), [TargetClaim::Prefix("mcp-fs".into())]);
}

#[test]
fn reference_mcp_streamable_http() {
    let cfg = load("mcp_http.yaml");
    let BridgeKind::McpTool(mcp) = &cfg.bridges[0].kind else {
        panic!()
    };
    let Some(McpUpstream::StreamableHttp {
        url,
        headers,
        token,
    }) = mcp.config.upstream()
    else {
        panic!("not http")
    };
    assert_eq!(url.as_str(), "http://localhost:8000/mcp");
    assert_eq!(headers["X-Custom-Header"].expose(), "openagentio");
    assert!(token.is_none());
    assert_eq!(mcp.config.timeout, Duration::from_secs(30));
}

#[test]
fn reference_matrix() {
    let cfg = load("matrix.yaml");
    let b = &cfg.bridges[0];
    let BridgeKind::MatrixEvent(mx) = &b.kind else {
        panic!()
    };
    let c = &mx.config;
    assert_eq!(c.homeserver_url.as_str(), "https://matrix.example.com/");
    assert_eq!(c.user_id, "@bot:example.com");
    assert_eq!(
        c.access_token.as_ref().unwrap().expose(),
        "your-access-token"
    );
    assert_eq!(c.room_ids, ["!roomid:example.com"]);
    assert_eq!(c.sync_timeout, Duration::from_secs(30));
    assert_eq!(c.reconnect_delay, Duration::from_secs(2));
    assert_eq!(c.supervision.base_delay, Duration::from_secs(2));
    // A sync loop rides out homeserver outages by default.
    assert_eq!(c.supervision.max_restarts, 10);
    assert_eq!(c.supervision.restart_window, Duration::from_secs(60));
    assert_eq!(c.supervision.max_delay, Duration::from_secs(300));
    assert_eq!(c.initial_sync_behavior, InitialSyncBehavior::Skip);
    assert_eq!(c.outbound_msgtype, OutboundMsgtype::Text);
    assert!(c.ignore_notices);
    assert_eq!(mx.mappings.event_prefix, "matrix");
    assert_eq!(mx.mappings.inbound_message_event, "matrix.message.received");
    assert_eq!(mx.mappings.outbound_message_event, "matrix.message.send");
    assert_eq!(mx.mappings.session_strategy, SessionStrategy::Room);
    assert_eq!(b.targets(), [TargetClaim::Exact("matrix-main.send".into())]);
}

#[test]
fn reference_openclaw_sse() {
    let cfg = load("openclaw_sse.yaml");
    let b = &cfg.bridges[0];
    assert_eq!(b.type_name, "openclaw_chat_sse");
    let BridgeKind::OpenAiChatSse(sse) = &b.kind else {
        panic!()
    };
    assert_eq!(sse.config.base_url.as_str(), "https://gateway.example/v1");
    assert_eq!(sse.config.token.as_ref().unwrap().expose(), "oc-token");
    assert_eq!(sse.config.model, "openclaw/default");
    assert_eq!(sse.config.timeout, Duration::from_secs(30));
    assert_eq!(sse.config.idle_timeout, Duration::from_secs(30));
    assert_eq!(sse.mappings.target, "openclaw.wechat");
    assert_eq!(sse.mappings.text_field, "text");
    assert_eq!(
        sse.mappings.session_field.as_deref(),
        Some("x-openclaw-session-key")
    );
    assert_eq!(sse.mappings.metadata_prefix.as_deref(), Some("openclaw."));
}

#[test]
fn openai_sse_json_with_defaults_from_the_environment() {
    let cfg = load("openai_sse.json");
    let BridgeKind::OpenAiChatSse(sse) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert_eq!(sse.config.base_url.as_str(), "http://127.0.0.1:8000/v1");
    assert_eq!(sse.config.model, "qwen2.5-0.5b-instruct");
    assert_eq!(sse.config.params["max_tokens"], 512);
    assert_eq!(sse.config.connect_timeout, Duration::from_secs(2));
    assert_eq!(sse.config.first_token_timeout, Duration::from_secs(30));
    assert_eq!(sse.config.idle_timeout, Duration::from_secs(15));
    assert_eq!(sse.config.total_timeout, Some(Duration::from_secs(300)));
    assert_eq!(sse.config.timeout, Duration::from_secs(60));
    assert_eq!(sse.config.retries, 2);
    assert_eq!(sse.mappings.target, "llm.chat");
    // The generic type has no session header or metadata prefix unless given.
    assert_eq!(sse.mappings.session_field, None);
    assert_eq!(sse.mappings.metadata_prefix, None);
}

#[test]
fn full_example_with_every_section() {
    let cfg = load("full.yaml");
    assert_eq!(cfg.bus.transport, Transport::Nats);
    assert_eq!(cfg.bus.nats.url_list(), "nats://127.0.0.1:4222");
    assert_eq!(cfg.bus.nats.name.as_deref(), Some("openagentio-demo"));
    assert_eq!(cfg.bus.default_timeout, Duration::from_secs(30));
    assert_eq!(cfg.http.tokens.len(), 2);
    assert_eq!(cfg.http.tokens[0].token.expose(), "gw-token");
    assert_eq!(cfg.http.tokens[1].tenant.as_deref(), Some("acme"));
    assert_eq!(cfg.http.body_limit, 4 * 1024 * 1024);
    assert_eq!(cfg.http.cors_origins, ["http://localhost:5173"]);
    assert_eq!(cfg.telemetry.log_format, LogFormat::Json);
    assert_eq!(cfg.telemetry.log_level, "info,openagentio=debug");

    let names: Vec<&str> = cfg.bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["fs", "llm", "matrix"]);
    let BridgeKind::McpTool(fs) = &cfg.bridges[0].kind else {
        panic!()
    };
    assert!(fs.config.exposes("read_file"));
    assert!(!fs.config.exposes("write_file"));
    assert!(!fs.config.exposes("read_media_file"));
    assert_eq!(
        fs.config.timeout_for("read_multiple_files"),
        Duration::from_secs(30)
    );
    assert_eq!(fs.config.timeout_for("read_file"), Duration::from_secs(10));
    let BridgeKind::MatrixEvent(mx) = &cfg.bridges[2].kind else {
        panic!()
    };
    assert_eq!(mx.config.responder[0].target, "llm.chat");
    assert_eq!(
        mx.config.responder[0].edit_throttle,
        Duration::from_millis(500)
    );
    assert_eq!(mx.config.responder[0].max_edits, 50);
    assert_eq!(mx.mappings.session_strategy, SessionStrategy::RoomSender);
    assert!(mx.config.sender_allowlist[0].matches("@alice:localhost"));
}
