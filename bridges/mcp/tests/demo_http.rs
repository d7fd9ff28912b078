//! The bridge against our own rmcp demo server over Streamable HTTP.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Captured, demo_http, demo_http_on, eventually, free_port, start};
use futures::future::join_all;
use openagentio_core::{Bridge, Bus, ErrorCode, HealthState};
use openagentio_mcp::{McpBridge, McpConfig, McpTransport};
use serde_json::json;

fn http(url: String, token: Option<&str>) -> McpConfig {
    McpConfig::new(McpTransport::StreamableHttp {
        url,
        headers: BTreeMap::from([("X-Api-Key".to_owned(), "key-secret-7781".to_owned())]),
        token: token.map(str::to_owned),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_progress_over_http_with_a_bearer_token() {
    let server = demo_http(Some("tok-secret-1234"));
    let (bus, mut bridge) = start("web", http(server.url(), Some("tok-secret-1234"))).await;
    assert_eq!(bridge.targets().len(), 11);
    let r = bus
        .invoke("web.echo", json!({"text": "over http"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "over http");
    let mut s = bus
        .stream_invoke("web.slow", json!({"seconds": 0.2, "steps": 2}))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while let Some(f) = s.next().await {
        kinds.push(f.unwrap().event_type);
    }
    assert_eq!(
        kinds,
        [
            "agent.response.started",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.final"
        ]
    );
    assert!(bridge.server_pid().is_none());
    assert!(
        bridge
            .server_info()
            .unwrap()
            .starts_with("openagentio-mcp-demo")
    );
    bridge.stop().await.unwrap();
}

#[test]
fn a_wrong_token_fails_start_without_leaking_secrets() {
    // One thread, so the log capture sees every task of the bridge.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let server = demo_http(Some("right-token"));
    let (err, debug) = tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let bus = Bus::memory();
            let mut bridge =
                McpBridge::new("web", http(server.url(), Some("wrong-token-5150"))).unwrap();
            let err = bridge.start(&bus).await.unwrap_err();
            (err, format!("{bridge:?}"))
        })
    });
    assert!(err.permanent, "{err}");
    assert!(err.message.contains("authentication failed: 401"), "{err}");
    for secret in ["wrong-token-5150", "key-secret-7781"] {
        assert!(!err.message.contains(secret), "{err}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(!logs.text().contains(secret), "secret {secret} in the logs");
    }
    assert!(logs.text().contains("web"), "the capture saw nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_fails_calls_at_once_and_the_bridge_reconnects() {
    let mut server = demo_http(None);
    let port = server.port;
    let mut cfg = http(server.url(), None);
    cfg.timeout = Duration::from_secs(30);
    cfg.restart.initial_backoff = Duration::from_millis(100);
    cfg.restart.max_backoff = Duration::from_millis(500);
    let (bus, mut bridge) = start("web", cfg).await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let r = bus
                    .invoke("web.slow", json!({"seconds": 20, "steps": 20}))
                    .await;
                (r, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    server.kill();
    for r in join_all(calls).await {
        let (r, at) = r.unwrap();
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
        assert!(
            at - killed < Duration::from_secs(1),
            "failed after {:?}",
            at - killed
        );
    }
    // While the server is down, calls fail fast.
    let t0 = Instant::now();
    let e = bus
        .invoke("web.echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_ne!(bridge.health().state, HealthState::Healthy);
    // It comes back on the same port: the bridge connects again by itself.
    let _server = demo_http_on(port, None);
    assert!(eventually(Duration::from_secs(30), || bridge.is_connected()).await);
    let r = bus
        .invoke("web.echo", json!({"text": "back"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "back");
    assert!(bridge.restarts() >= 1);
    assert_eq!(bridge.health().state, HealthState::Healthy);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_not_yet_started_is_waited_for() {
    let port = free_port();
    let mut cfg = http(format!("http://127.0.0.1:{port}/mcp"), None);
    cfg.restart.initial_backoff = Duration::from_millis(100);
    cfg.restart.max_backoff = Duration::from_millis(300);
    let (bus, mut bridge) = start("late", cfg).await;
    assert_eq!(bridge.health().state, HealthState::Degraded);
    assert!(bridge.targets().is_empty());
    let _server = demo_http_on(port, None);
    // Healthy once its targets are registered (connected comes first).
    assert!(
        eventually(Duration::from_secs(30), || bridge.health().state
            == HealthState::Healthy)
        .await
    );
    let r = bus
        .invoke("late.add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["structuredContent"]["sum"], 3.0);
    assert_eq!(bridge.health().state, HealthState::Healthy);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_list_changes_arrive_over_http() {
    let server = demo_http(None);
    let (bus, mut bridge) = start("web", http(server.url(), None)).await;
    bus.invoke("web.register_tool", json!({"name": "extra"}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || bridge
            .targets()
            .iter()
            .any(|t| t.name == "web.extra"))
        .await
    );
    let r = bus.invoke("web.extra", json!({"k": "v"})).await.unwrap();
    assert_eq!(r.payload.unwrap()["structuredContent"], json!({"k": "v"}));
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_reinitialised_in_place() {
    let server = demo_http(None);
    let (bus, mut bridge) = start("web", http(server.url(), None)).await;
    let r = bus.invoke("web.forget_session", json!({})).await.unwrap();
    assert_eq!(r.payload.unwrap()["text"], "forgetting the session");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The server answers 404 for the old session: rmcp initialises a new one
    // and retries, and the caller sees nothing of it.
    let r = bus
        .invoke("web.echo", json!({"text": "new session"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "new session");
    let r = bus.invoke("web.stats", json!({})).await.unwrap();
    assert_eq!(r.payload.unwrap()["structuredContent"]["sessions"], 2);
    assert_eq!(bridge.restarts(), 0);
    assert_eq!(bridge.health().state, HealthState::Healthy);
    bridge.stop().await.unwrap();
}

/// An http_url that is not an MCP endpoint (a web server that refuses the
/// POST, or answers with a page) is named as such, not as a connection that
/// closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_not_mcp_is_named_as_such() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for answer in [
        "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<html></html>",
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        let mut cfg = http(url, None);
        cfg.connect_timeout = Duration::from_secs(5);
        let bus = Bus::memory();
        let mut bridge = McpBridge::new("web", cfg).unwrap();
        // Not a permanent error: the server may yet be fixed; it is retried.
        bridge.start(&bus).await.unwrap();
        let named = |r: &str| r.contains("does not answer as an MCP server") && r.contains("/mcp");
        let said = eventually(Duration::from_secs(10), || {
            named(&bridge.health().reason.unwrap_or_default())
        })
        .await;
        assert!(said, "{answer}: {:?}", bridge.health());
        bridge.stop().await.unwrap();
    }
}

/// An http_url where nothing listens is named as a server that cannot be
/// reached, with the cause, not as an endpoint that is not MCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_where_nothing_listens_is_named_as_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let mut cfg = http(url, None);
    cfg.connect_timeout = Duration::from_secs(5);
    let bus = Bus::memory();
    let mut bridge = McpBridge::new("web", cfg).unwrap();
    bridge.start(&bus).await.unwrap();
    let said = eventually(Duration::from_secs(10), || {
        let reason = bridge.health().reason.unwrap_or_default();
        reason.contains("cannot be reached") && reason.to_lowercase().contains("refused")
    })
    .await;
    assert!(said, "{:?}", bridge.health());
    assert!(
        !bridge
            .health()
            .reason
            .unwrap_or_default()
            .contains("does not answer as an MCP server")
    );
    bridge.stop().await.unwrap();
}
